//! Every action's result and refusal.

mod common;

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Output, State, Trigger};
use charm_lib::FileOptions;
use common::*;
use serde_json::json;

const KEY: &str = "ck3y:tok3n:s3cr3tpart";

fn ready() -> State {
    let mut st = installed_snap(
        fresh_leader()
            .with_relation(vip("10.0.0.100"))
            .with_relation(rpc()),
    );
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    settle(&harness(0), st)
}

fn run(st: &State, name: &str, params: serde_json::Value) -> Output {
    let out = harness(0)
        .run(Trigger::Action(name.into(), params), st)
        .unwrap();
    assert!(
        !out.failed(),
        "an action never fails the unit: {:?}",
        out.error
    );
    out
}

fn no_user(st: State) -> State {
    let mut st = st;
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "apikey"],
        CmdOutput::failed(1, "CommandError: User matching query does not exist.\n"),
    );
    st
}

fn with_key(st: State) -> State {
    let mut st = st;
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "apikey"],
        CmdOutput::ok(format!("{KEY}\n")),
    );
    st
}

#[test]
fn create_admin_creates_a_new_user_without_showing_the_password() {
    let out = run(
        &no_user(ready()),
        "create-admin",
        json!({"username": "admin", "password": "hunter2!", "email": "admin@example.com", "ssh-import": "gh:someone"}),
    );
    assert_eq!(out.action.failed, None);
    assert_eq!(out.command_lines(), ["/snap/bin/maas apikey --username admin", "/snap/bin/maas createadmin --username admin --password hunter2! --email admin@example.com --ssh-import gh:someone"]);
    assert_eq!(out.action.results["created"], "true");
    assert_eq!(out.action.results["username"], "admin");
    assert!(!out.mentions("hunter2!"));
    assert!(!out.action.results.values().any(|v| v.contains("hunter2!")));
}

#[test]
fn create_admin_reports_an_existing_user() {
    let out = run(
        &with_key(ready()),
        "create-admin",
        json!({"username": "admin", "password": "pw", "email": "admin@example.com"}),
    );
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["created"], "false");
    assert_eq!(
        out.action.results["message"],
        "user admin already exists; nothing changed"
    );
    assert!(!out
        .command_lines()
        .iter()
        .any(|c| c.contains("createadmin")));
    // MAAS's own "taken" answer is reported the same way.
    let mut st = no_user(ready());
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "createadmin"],
        CmdOutput::failed(1, "Error: That username is already taken.\n"),
    );
    let out = run(
        &st,
        "create-admin",
        json!({"username": "admin", "password": "pw", "email": "admin@example.com"}),
    );
    assert_eq!(
        (
            out.action.failed.as_deref(),
            out.action.results["created"].as_str()
        ),
        (None, "false")
    );
    // A duplicate e-mail belongs to another user: that is an error, not "already exists".
    let mut st = no_user(ready());
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "createadmin"],
        CmdOutput::failed(
            1,
            "A user with the email admin@example.com already exists.\n",
        ),
    );
    let out = run(
        &st,
        "create-admin",
        json!({"username": "admin", "password": "pw", "email": "admin@example.com"}),
    );
    assert_eq!(
        out.action.failed.as_deref(),
        Some(
            "MAAS refused to create admin: A user with the email admin@example.com already exists."
        )
    );
}

#[test]
fn create_admin_refusals() {
    let cases = [
        (
            json!({"username": "admin", "password": "pw", "email": "not-an-email"}),
            "email \"not-an-email\" is not an e-mail address",
        ),
        (
            json!({"username": "", "password": "pw", "email": "a@b.c"}),
            "username must not be empty",
        ),
        (
            json!({"username": "a", "password": "", "email": "a@b.c"}),
            "password must not be empty",
        ),
        (
            json!({"username": "a", "password": "pw", "email": "a@b.c", "ssh-import": "someone"}),
            "ssh-import \"someone\" must be lp:<launchpad id> or gh:<github id>",
        ),
    ];
    for (p, want) in cases {
        let out = run(&ready(), "create-admin", p);
        assert_eq!(out.action.failed.as_deref(), Some(want));
        assert!(out.commands.is_empty());
    }
    let out = run(
        &fresh_leader(),
        "create-admin",
        json!({"username": "a", "password": "pw", "email": "a@b.c"}),
    );
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("MAAS is not initialised on this unit yet"));
    let mut st = no_user(ready());
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "createadmin"],
        CmdOutput::failed(
            1,
            "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/maasserver/management/commands/createadmin.py\", line 170, in handle\n    User.objects.db_manager(DEFAULT_DB_ALIAS).create_superuser(\nValueError: Password s3cret-pw is too common\n",
        ),
    );
    let out = run(
        &st,
        "create-admin",
        json!({"username": "bob", "password": "s3cret-pw", "email": "bob@example.com"}),
    );
    assert_eq!(
        out.action.failed.as_deref(),
        Some("MAAS refused to create bob: Password *** is too common"),
        "MAAS's reason, not its traceback"
    );
    assert!(!out.mentions("s3cret-pw"));
}

#[test]
fn get_api_key_returns_the_key_or_says_why_not() {
    let out = run(
        &with_key(ready()),
        "get-api-key",
        json!({"username": "admin"}),
    );
    assert_eq!(out.action.results["api-key"], KEY);
    assert!(!out.logs.iter().any(|(_, l)| l.contains(KEY)));
    let out = run(
        &no_user(ready()),
        "get-api-key",
        json!({"username": "ghost"}),
    );
    assert_eq!(out.action.failed.as_deref(), Some("MAAS has no API key for \"ghost\": does the user exist? (create it with the create-admin action)"));
}

#[test]
fn get_api_endpoint_is_the_published_url() {
    let out = run(&ready(), "get-api-endpoint", json!({}));
    assert_eq!(
        out.action.results["api-url"],
        "http://10.0.0.100/MAAS/api/2.0/"
    );
    assert_eq!(out.action.results["maas-url"], "http://10.0.0.100/MAAS");
    let out = run(
        &State::default().with_relation(peers(&[])),
        "get-api-endpoint",
        json!({}),
    );
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("the MAAS URL is not decided yet"));
}

#[test]
fn get_maas_secret_reads_what_maas_wrote() {
    let out = run(&ready(), "get-maas-secret", json!({}));
    assert_eq!(out.action.results["maas-secret"], SHARED_SECRET);
    assert!(!out.mentions(SHARED_SECRET));
    let out = run(&fresh_leader(), "get-maas-secret", json!({}));
    assert_eq!(out.action.failed.as_deref(), Some("MAAS has not written its shared secret (/var/snap/maas/common/maas/secret) yet: wait for the unit to be active"));
}

#[test]
fn get_maas_status_parses_the_service_table() {
    let mut st = ready();
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "status"],
        CmdOutput::ok("Service          Startup  Current  Since\nbind9            enabled  active   today at 10:02 UTC\nregiond          enabled  inactive -\ndhcpd            disabled inactive -\ntemporal-worker  enabled  active   today at 10:02 UTC\n"),
    );
    let out = run(&st, "get-maas-status", json!({}));
    assert_eq!(out.action.results["services.bind9.current"], "active");
    assert_eq!(
        out.action.results["services.bind9.since"],
        "today at 10:02 UTC"
    );
    assert_eq!(
        out.action.results["services.temporal-worker.startup"],
        "enabled"
    );
    assert_eq!(out.action.results["summary"], "not active: regiond");
    let out = run(&fresh_leader(), "get-maas-status", json!({}));
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("MAAS is not initialised"));
}

#[test]
fn get_maas_status_reads_maas_3_4s_supervisorctl_lines_whatever_the_exit_status() {
    // MAAS 3.4 prints supervisorctl's status and passes on its exit status, 3 because
    // programs that do not autostart are stopped (src/maascli/snap.py `cmd_status.handle`).
    let mut st = ready().with_config("channel", "3.4/stable");
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "status"],
        CmdOutput {
            code: 3,
            stdout: "bind9                            RUNNING   pid 2101, uptime 0:12:03\nhttp                             RUNNING   pid 2102, uptime 0:12:03\nproxy                            STOPPED   Not started\nregiond                          BACKOFF   Exited too quickly (process log may have details)\n".into(),
            stderr: String::new(),
        },
    );
    let out = run(&st, "get-maas-status", json!({}));
    assert_eq!(out.action.failed, None);
    assert_eq!(out.action.results["services.bind9.current"], "active");
    assert_eq!(
        out.action.results["services.bind9.since"],
        "pid 2101, uptime 0:12:03"
    );
    assert_eq!(out.action.results["services.regiond.current"], "backoff");
    assert_eq!(
        out.action.results["summary"], "not active: regiond",
        "proxy was never started: not down"
    );

    // The supervisor down: MAAS's output is the reason.
    let mut st = ready();
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "status"],
        CmdOutput {
            code: 1,
            stdout: "Pebble exited with error code 1 and the following output:\n".into(),
            stderr: "error: cannot communicate with server: dial unix /var/snap/maas/common/pebble/.pebble.socket: connect: no such file or directory\n".into(),
        },
    );
    let out = run(&st, "get-maas-status", json!({}));
    assert_eq!(
        out.action.failed.as_deref(),
        Some("maas status failed (exit 1): error: cannot communicate with server: dial unix /var/snap/maas/common/pebble/.pebble.socket: connect: no such file or directory")
    );
}

#[test]
fn get_maas_status_on_deb_reads_the_services() {
    let mut st = fresh_leader().with_config("install-method", "deb");
    st.machine.services.insert(
        "maas-regiond.service".into(),
        charm_lib::testing::Service {
            active: true,
            enabled: true,
        },
    );
    let out = run(&st, "get-maas-status", json!({}));
    assert_eq!(
        out.action.results["services.maas-regiond.current"],
        "active"
    );
    assert_eq!(out.action.results["services.bind9.current"], "inactive");
    assert_eq!(out.action.results["summary"], "not active: bind9, haproxy");
}

const SUBNETS: &str = r#"[{"id": 7, "name": "10.20.0.0/24", "cidr": "10.20.0.0/24", "vlan": {"fabric_id": 2, "vid": 0, "fabric": "fabric-2", "dhcp_on": false}}]"#;

fn maas_api(st: State, ranges: &str) -> State {
    let mut st = with_key(st);
    st.machine = st
        .machine
        .respond(
            &["/snap/bin/maas", "juju-maas-region", "subnets", "read"],
            CmdOutput::ok(SUBNETS),
        )
        .respond(
            &["/snap/bin/maas", "juju-maas-region", "ipranges", "read"],
            CmdOutput::ok(ranges),
        )
        .respond(
            &["/snap/bin/maas", "juju-maas-region", "ipranges", "create"],
            CmdOutput::ok(r#"{"id": 1, "type": "dynamic"}"#),
        )
        .respond(
            &["/snap/bin/maas", "juju-maas-region", "vlan", "update"],
            CmdOutput::ok(r#"{"dhcp_on": true, "primary_rack": "sys-rack-b"}"#),
        );
    st
}

#[test]
fn configure_dhcp_creates_the_range_and_turns_dhcp_on_with_both_racks() {
    let st = maas_api(ready(), "[]");
    let out = run(
        &st,
        "configure-dhcp",
        json!({"subnet": "10.20.0.0/24", "start": "10.20.0.100", "end": "10.20.0.199", "primary-rack": "rack-b", "secondary-rack": "rack-a"}),
    );
    assert_eq!(out.action.failed, None);
    assert_eq!(
        out.command_lines(),
        [
            "/snap/bin/maas apikey --username maas-admin-internal".to_string(),
            "/snap/bin/maas login juju-maas-region http://localhost:5240/MAAS/api/2.0/ -".to_string(),
            "/snap/bin/maas juju-maas-region subnets read".into(),
            "/snap/bin/maas juju-maas-region ipranges read".into(),
            "/snap/bin/maas juju-maas-region ipranges create type=dynamic start_ip=10.20.0.100 end_ip=10.20.0.199 subnet=7".into(),
            "/snap/bin/maas juju-maas-region vlan update 2 0 dhcp_on=true primary_rack=sys-rack-b secondary_rack=rack-a".into(),
            "/snap/bin/maas logout juju-maas-region".into(),
        ]
    );
    let r = &out.action.results;
    assert_eq!(
        (
            r["fabric-id"].as_str(),
            r["vid"].as_str(),
            r["range-created"].as_str()
        ),
        ("2", "0", "true")
    );
    assert_eq!(
        (
            r["primary-rack"].as_str(),
            r["secondary-rack"].as_str(),
            r["dhcp-on"].as_str()
        ),
        ("sys-rack-b", "rack-a", "true")
    );
    assert!(!out.mentions(KEY));
    assert!(
        !out.command_lines().iter().any(|c| c.contains(KEY)),
        "the key never is on a command line"
    );
}

#[test]
fn configure_dhcp_says_why_maas_refused_the_login() {
    // What MAAS's CLI prints (src/maascli/cli.py `cmd_login`, auth.py `check_valid_apikey`,
    // __init__.py `main`; the stand-in's tests/failures.rs holds it to the same).
    let cases = [
        (
            1,
            "The MAAS server rejected your API key.\n".to_string(),
            "The MAAS server rejected your API key.".to_string(),
        ),
        (
            2,
            "usage: maas [-h] COMMAND ...\nmaas: error: [Errno 111] Connection refused\n".into(),
            "[Errno 111] Connection refused".into(),
        ),
        (
            2,
            format!("usage: maas [-h] COMMAND ...\nmaas: error: Malformed credentials string.  Expected 3 colon-separated items, got '{KEY}x:y'.\n"),
            "Malformed credentials string.  Expected 3 colon-separated items, got '***x:y'.".into(),
        ),
    ];
    for (code, stderr, why) in cases {
        let mut st = maas_api(ready(), "[]");
        st.machine = st.machine.respond(
            &["/snap/bin/maas", "login"],
            CmdOutput::failed(code, stderr.clone()),
        );
        let out = run(
            &st,
            "configure-dhcp",
            json!({"subnet": "10.20.0.0/24", "start": "10.20.0.100", "end": "10.20.0.199", "primary-rack": "rack-b"}),
        );
        assert_eq!(
            out.action.failed.as_deref(),
            Some(format!("maas login to the local region failed: {why}").as_str()),
            "{stderr}"
        );
        assert!(!out.mentions(KEY));
        assert!(
            !out.command_lines()
                .iter()
                .any(|c| c.contains("subnets read")),
            "nothing asked of MAAS without a login"
        );
    }
}

#[test]
fn configure_dhcp_reuses_an_existing_range() {
    let st = maas_api(
        ready(),
        r#"[{"id": 3, "type": "dynamic", "start_ip": "10.20.0.100", "end_ip": "10.20.0.199"}]"#,
    );
    let out = run(
        &st,
        "configure-dhcp",
        json!({"subnet": "7", "start": "10.20.0.100", "end": "10.20.0.199", "primary-rack": "sys-rack-b"}),
    );
    assert_eq!(out.action.failed, None);
    assert!(!out
        .command_lines()
        .iter()
        .any(|c| c.contains("ipranges create")));
    assert_eq!(out.action.results["range-created"], "false");
    assert!(out
        .command_lines()
        .iter()
        .any(|c| c.ends_with("vlan update 2 0 dhcp_on=true primary_rack=sys-rack-b")));
}

#[test]
fn configure_dhcp_refusals() {
    let st = maas_api(ready(), "[]");
    let p = |subnet: &str, start: &str, end: &str, primary: &str, secondary: &str| json!({"subnet": subnet, "start": start, "end": end, "primary-rack": primary, "secondary-rack": secondary});
    let cases = [
        (
            p("10.20.0.0/24", "10.20.0.300", "10.20.0.310", "rack-a", ""),
            "start \"10.20.0.300\" is not an IPv4 address",
        ),
        (
            p("10.20.0.0/24", "10.20.0.200", "10.20.0.100", "rack-a", ""),
            "the dynamic range is empty: start 10.20.0.200 comes after end 10.20.0.100",
        ),
        (
            p("10.20.0.0/24", "10.20.0.1", "10.20.0.9", "rack-a", "rack-a"),
            "primary-rack and secondary-rack must be different rack controllers",
        ),
        (
            p("10.99.0.0/24", "10.99.0.1", "10.99.0.9", "rack-a", ""),
            "MAAS knows no subnet \"10.99.0.0/24\" (by CIDR, name or id)",
        ),
        (
            p("10.20.0.0/24", "10.20.1.1", "10.20.1.9", "rack-a", ""),
            "the range 10.20.1.1-10.20.1.9 is not inside subnet 10.20.0.0/24",
        ),
    ];
    for (params, want) in cases {
        let out = run(&st, "configure-dhcp", params.clone());
        assert_eq!(out.action.failed.as_deref(), Some(want), "{params}");
        let logged_in = out.command_lines().iter().any(|c| c.contains(" login "));
        let logged_out = out.command_lines().iter().any(|c| c.contains(" logout "));
        assert_eq!(
            logged_in, logged_out,
            "a login is always followed by a logout"
        );
    }
    let out = run(
        &no_user(ready()),
        "configure-dhcp",
        p("10.20.0.0/24", "10.20.0.1", "10.20.0.9", "rack-a", ""),
    );
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("MAAS has no API key for \"maas-admin-internal\""));
    let mut st = maas_api(ready(), "[]");
    st.machine
        .responders
        .retain(|r| r.prefix.get(3).map(String::as_str) != Some("update"));
    // MAAS's CLI writes an API error's body to stdout and exits 2 with nothing on stderr
    // (src/maascli/api.py `Action.__call__`, utils.py `print_response_content`).
    st.machine = st.machine.respond(
        &["/snap/bin/maas", "juju-maas-region", "vlan", "update"],
        CmdOutput {
            code: 2,
            stdout: "{\"dhcp_on\": [\"dhcp can only be turned on when a primary rack controller is set.\"]}".into(),
            stderr: String::new(),
        },
    );
    let out = run(
        &st,
        "configure-dhcp",
        p("10.20.0.0/24", "10.20.0.1", "10.20.0.9", "nope", ""),
    );
    assert!(out
        .action
        .failed
        .clone()
        .unwrap()
        .contains("dhcp can only be turned on when a primary rack controller is set"));
    assert!(out
        .command_lines()
        .last()
        .unwrap()
        .ends_with("logout juju-maas-region"));
}

#[test]
fn actions_refuse_while_the_config_is_invalid() {
    let out = run(
        &ready().with_config("install-method", "rpm"),
        "get-maas-secret",
        json!({}),
    );
    assert!(out
        .action
        .failed
        .unwrap()
        .starts_with("the charm's configuration is invalid: invalid install-method"));
}

#[test]
fn deb_actions_use_maas_region_for_admin_commands() {
    let mut st = fresh_leader().with_config("install-method", "deb");
    st.machine = st.machine.with_file(
        DEB_CONF,
        &regiond_conf("10.0.0.5", "http://10.0.0.100/MAAS"),
        FileOptions::new("root", "maas", 0o640),
    );
    st.machine = st.machine.respond(
        &["maas-region", "apikey"],
        CmdOutput::ok(format!("{KEY}\n")),
    );
    let out = run(&st, "get-api-key", json!({"username": "admin"}));
    assert_eq!(out.command_lines(), ["maas-region apikey --username admin"]);
    assert_eq!(out.action.results["api-key"], KEY);
}
