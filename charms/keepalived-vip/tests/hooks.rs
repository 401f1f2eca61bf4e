//! State-transition tests: what each event does to the host, the relations and the status.

mod common;

use charm_lib::testing::{Harness, MachineState, Output, Relation, Secret, State, Trigger};
use charm_lib::{CmdOutput, FileOptions, Status};
use common::*;
use serde_json::json;

const METRICS: &str = "keepalived-vip-metrics-keepalived-vip.service";
const METRICS_UNIT: &str = "/etc/systemd/system/keepalived-vip-metrics-keepalived-vip.service";

fn ran(out: &Output, prefix: &str) -> bool {
    out.command_lines().iter().any(|c| c.starts_with(prefix))
}

fn config_changed(st: &State) -> Output {
    harness().run(Trigger::ConfigChanged, st).unwrap()
}

/// What postgresql-ha sends over `vip` once it runs: track its primary.
const POSTGRESQL_PRIMARY_CHECK: &[(&str, &str)] = &[
    ("check", "http://127.0.0.1:8008/primary"),
    ("service", "postgresql"),
];

/// The `vip` principal (relation 2) of a maas-region unit that asks to track haproxy.
fn haproxy_principal() -> Relation {
    Relation::new(2, "vip", "maas-region").remote_unit(0, &[("check", "process:haproxy")])
}

/// The principal unit 0 over `vip` (the second relation of `st`) now sends `data`.
fn principal_sends(st: &mut State, data: &[(&str, &str)]) {
    st.relations[1] = st.relations[1].clone().remote_unit(0, data);
}

/// The principal sends `data` (as [`principal_sends`]) and its relation-changed runs.
fn principal_changed(h: &Harness, st: &mut State, data: &[(&str, &str)]) -> Output {
    principal_sends(st, data);
    h.run(Trigger::RelationChanged(2, Some(0)), st).unwrap()
}

/// Asserts what this unit published to its `vip` principal (relation 2).
fn assert_published(out: &Output, vips: &str, vip_cidrs: &str, state: &str) {
    let vip = &out.state.relation(2).unwrap().local_unit_data;
    assert_eq!(
        (
            vip["vips"].as_str(),
            vip["vip-cidrs"].as_str(),
            vip["state"].as_str()
        ),
        (vips, vip_cidrs, state)
    );
}

/// Asserts the hook failed with an error that carries `needle`.
fn assert_hook_error_contains(out: &Output, needle: &str) {
    assert!(
        out.error.as_deref().unwrap().contains(needle),
        "{:?}",
        out.error
    );
}

/// Asserts `keepalived -t` checked the file (a command starting with `check`) before the first
/// `systemctl start` of the service.
fn assert_checked_before_started(out: &Output, check: &str) {
    let lines = out.command_lines();
    let test_at = lines
        .iter()
        .position(|c| c.starts_with(check))
        .unwrap_or_else(|| panic!("not checked: {lines:?}"));
    let start_at = lines
        .iter()
        .position(|c| c == "systemctl start keepalived-keepalived-vip")
        .unwrap_or_else(|| panic!("not started: {lines:?}"));
    assert!(test_at < start_at, "checked before it runs: {lines:?}");
}

/// Asserts the hook `trigger` succeeded and left the unit waiting with `message`.
fn assert_waiting(out: &Output, trigger: &Trigger, message: &str) {
    assert!(!out.failed(), "{trigger:?}: {:?}", out.error);
    assert_eq!(
        out.state.unit_status,
        Status::waiting(message),
        "{trigger:?}"
    );
}

/// Asserts the unit is active, standby for the base VIP 10.0.0.100/24.
fn assert_standby(out: &Output) {
    assert_eq!(
        out.state.unit_status,
        Status::active("VIP 10.0.0.100/24 standby")
    );
}

fn assert_status_starts_with(out: &Output, prefix: &str) {
    assert!(
        out.state.unit_status.message.starts_with(prefix),
        "{}",
        out.state.unit_status.message
    );
}

#[test]
fn install_installs_keepalived_and_retires_the_distribution_service() {
    let mut st = base();
    st.machine = running(st.machine, "keepalived.service");
    let out = harness().run_ok(Trigger::Install, &st);
    assert!(
        out.state.machine.packages.contains("keepalived")
            && out.state.machine.packages.contains("curl")
    );
    let distro = &out.state.machine.services["keepalived.service"];
    assert!(
        !distro.active && !distro.enabled,
        "the packaged keepalived.service is stopped and disabled"
    );
    assert!(out.state.machine.is_active(SERVICE));
}

#[test]
fn config_changed_renders_checks_and_starts_the_service() {
    let out = config_changed(&base());
    assert!(!out.failed(), "{:?}", out.error);
    assert_standby(&out);
    let conf = &out.state.machine.files[std::path::Path::new(CONF)];
    assert_eq!(
        conf.options,
        FileOptions::root(0o600),
        "the file holds the VRRP password"
    );
    assert!(conf.text().contains("auth_pass Zq7Lm2Xw"));
    let lines = out.command_lines();
    assert_checked_before_started(
        &out,
        "/usr/sbin/keepalived -t -f /etc/keepalived/.keepalived-keepalived-vip.conf.new",
    );
    assert!(
        !has_file(
            &out.state.machine,
            "/etc/keepalived/.keepalived-keepalived-vip.conf.new"
        ),
        "the candidate is removed"
    );
    assert!(file_contains(
        &out.state.machine,
        UNIT_FILE,
        "ExecStart=/usr/sbin/keepalived --dont-fork --vrrp"
    ));
    assert!(out.state.machine.services[SERVICE].enabled);
    assert_eq!(out.state.machine.text(SYSCTL).unwrap(), "# Managed by the keepalived-vip charm: lets services bind a VIP this host does not hold.\nnet.ipv4.ip_nonlocal_bind = 1\n");
    assert!(lines.contains(&format!("sysctl -p {SYSCTL}")));
    assert!(file_contains(
        &out.state.machine,
        CLAIMS,
        "\"keepalived-vip/0\""
    ));
    let peer = &out.state.relation(1).unwrap().local_unit_data;
    assert_eq!(
        (peer["address"].as_str(), peer["priority"].as_str()),
        ("10.0.0.10", "250")
    );
}

#[test]
fn running_a_hook_twice_changes_nothing_the_second_time() {
    let h = harness();
    let st = base().with_relation(haproxy_principal());
    let once = h.run(Trigger::ConfigChanged, &st).unwrap();
    let twice = h.run(Trigger::ConfigChanged, &once.state).unwrap();
    // Everything a hook can change; what ran is compared below.
    let (a, b) = (&once.state, &twice.state);
    assert_eq!(
        (&a.machine.files, &a.machine.services, &a.machine.packages),
        (&b.machine.files, &b.machine.services, &b.machine.packages)
    );
    assert_eq!(
        (
            &a.relations,
            &a.secrets,
            &a.unit_status,
            &a.app_status,
            &a.stored
        ),
        (
            &b.relations,
            &b.secrets,
            &b.unit_status,
            &b.app_status,
            &b.stored
        )
    );
    assert_eq!(
        twice.command_lines(),
        [
            "ip -j addr show",
            "systemctl is-active --quiet keepalived-keepalived-vip",
            "systemctl is-active --quiet keepalived-vip-metrics-keepalived-vip"
        ],
        "no write, check, reload or restart: only looks"
    );
}

#[test]
fn a_config_change_reloads_not_restarts() {
    let h = harness();
    let first = h.run(Trigger::ConfigChanged, &base()).unwrap();
    let out = h
        .run(
            Trigger::ConfigChanged,
            &first.state.clone().with_config("virtual-router-id", 52),
        )
        .unwrap();
    assert!(
        ran(&out, "systemctl reload keepalived-keepalived-vip"),
        "{:?}",
        out.command_lines()
    );
    assert!(
        !ran(&out, "systemctl restart keepalived-keepalived-vip")
            && !ran(&out, "systemctl stop keepalived-keepalived-vip")
    );
    assert!(file_contains(
        &out.state.machine,
        CONF,
        "virtual_router_id 52"
    ));
    // The exporter's port follows the router id (9700 + id): it restarts, keepalived does not.
    assert!(ran(
        &out,
        "systemctl restart keepalived-vip-metrics-keepalived-vip"
    ));
    assert!(file_contains(
        &out.state.machine,
        "/etc/systemd/system/keepalived-vip-metrics-keepalived-vip.service",
        "dispatch metrics keepalived-vip 9752 "
    ));
}

#[test]
fn invalid_config_blocks_renders_nothing_and_leaves_keepalived_alone() {
    let h = harness();
    let running = h.run(Trigger::ConfigChanged, &base()).unwrap().state;
    let before = running.machine.text(CONF).unwrap();
    #[rustfmt::skip]
    let cases = [
        ("virtual-router-id", json!(300), "invalid virtual-router-id \"300\": expected an integer 1-255"),
        ("vip", json!("10.0.0.100"), "invalid vip \"10.0.0.100\": 10.0.0.100: missing prefix length"),
        ("advert-int", json!(0.5), "invalid advert-int \"0.5\": expected whole seconds 1-255 with vrrp-version 2"),
        ("check", json!("nginx"), "invalid check \"nginx\""),
        ("priority", json!(0), "invalid priority \"0\": expected an integer 1-254"),
    ];
    for (opt, value, msg) in cases {
        let out = h.run_ok(
            Trigger::ConfigChanged,
            &running.clone().with_config(opt, value),
        );
        assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Blocked);
        assert!(
            out.state.unit_status.message.starts_with(msg),
            "{opt}: {}",
            out.state.unit_status.message
        );
        assert_eq!(
            out.state.machine.text(CONF).unwrap(),
            before,
            "{opt}: nothing rendered"
        );
        assert_eq!(
            out.command_lines(),
            Vec::<String>::new(),
            "{opt}: no command at all"
        );
        assert!(out.state.machine.is_active(SERVICE));
    }
}

#[test]
fn no_vip_asks_for_one() {
    let st = base().with_config("vip", "");
    let out = config_changed(&st);
    assert_eq!(out.state.unit_status, Status::blocked("set vip"));
    assert!(!has_file(&out.state.machine, CONF));
}

#[test]
fn a_vip_outside_every_local_subnet_or_a_missing_interface_blocks() {
    let out = config_changed(&base().with_config("vip", "172.16.0.100/24"));
    assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Blocked);
    assert_status_starts_with(
        &out,
        "vip 172.16.0.100/24 is not in the subnet of any interface of this host",
    );
    assert!(out.state.machine.files.is_empty());
    let out = config_changed(&base().with_config("interface", "eth9"));
    assert!(
        out.state
            .unit_status
            .message
            .starts_with("interface eth9 not found on this host (found: "),
        "{}",
        out.state.unit_status.message
    );
    // With an explicit interface, a VIP outside its subnets is placed on it (a routed VIP).
    let iface = real_iface();
    let out = config_changed(
        &base()
            .with_config("vip", "172.16.0.100/24")
            .with_config("interface", iface.as_str()),
    );
    assert_eq!(
        out.state.unit_status,
        Status::active("VIP 172.16.0.100/24 standby")
    );
    assert!(file_contains(
        &out.state.machine,
        CONF,
        &format!("172.16.0.100/24 dev {iface}")
    ));
}

#[test]
fn held_or_standby_follows_the_interface_and_update_status_refreshes_it() {
    let h = harness();
    let start = base().with_relation(haproxy_principal());
    let first = h.run(Trigger::ConfigChanged, &start).unwrap();
    assert_eq!(
        first.state.relation(3).map(|r| r.local_unit_data.len()),
        Some(0),
        "juju-info carries nothing"
    );
    let mut st = first.state.clone();
    st.machine.responders.clear();
    st.machine = st.machine.respond(
        &["ip", "-j", "addr", "show"],
        CmdOutput::ok(ip_json(&real_iface(), &["10.0.0.10/24", "10.0.0.100/24"])),
    );
    let out = h.run(Trigger::UpdateStatus, &st).unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::active("VIP 10.0.0.100/24 held")
    );
    assert_published(&out, "10.0.0.100", "10.0.0.100/24", "held");
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["address"],
        "10.0.0.10",
        "the VIP is never the unicast source"
    );
    assert!(
        !ran(&out, "systemctl reload"),
        "holding the VIP changes no configuration"
    );
}

#[test]
fn every_vrrp_state_change_asks_the_unit_agent_for_update_status() {
    // Arrange
    let h = harness();
    let st = base().with_relation(haproxy_principal());
    // The harness sets no JUJU_CHARM_DIR: the machine agents' layout.
    let charm_dir = "/var/lib/juju/agents/unit-keepalived-vip-0/charm";

    // Act
    let once = h.run(Trigger::ConfigChanged, &st).unwrap();
    let twice = h.run(Trigger::UpdateStatus, &once.state).unwrap();

    // Assert
    assert!(!once.failed(), "{:?}", once.error);
    let conf = once.state.machine.text(CONF).unwrap();
    for state in ["master", "backup", "fault"] {
        assert!(
            conf.contains(&format!("    notify_{state} \"{NOTIFY}\"\n")),
            "{conf}"
        );
    }
    let script = &once.state.machine.files[std::path::Path::new(NOTIFY)];
    assert_eq!(
        script.options,
        FileOptions::root(0o755),
        "keepalived's script security runs only what root alone can change"
    );
    let text = script.text();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    assert!(
        text.contains("for exec in /usr/bin/juju-exec /usr/bin/juju-run; do\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "/usr/bin/setsid \"$exec\" '-u' 'keepalived-vip/0' 'JUJU_DISPATCH_PATH=hooks/update-status' '{charm_dir}/dispatch' </dev/null >/dev/null 2>&1 &\n"
        )),
        "detached, so keepalived never waits for the hook lock: {text}"
    );
    assert_eq!(
        twice.state.machine.files, once.state.machine.files,
        "rendering again changes nothing"
    );
    assert!(!ran(&twice, "systemctl reload") && !ran(&twice, "/usr/sbin/keepalived -t"));
}

#[test]
fn the_principal_check_over_vip_becomes_vrrp_scripts() {
    let st = base().with_relation(Relation::new(2, "vip", "postgresql-ha").remote_unit(
        0,
        &[
            ("check", "http://127.0.0.1:8008/primary"),
            ("check-interval", "0.5"),
            ("service", "pg-primary"),
        ],
    ));
    let out = harness()
        .run(Trigger::RelationChanged(2, Some(0)), &st)
        .unwrap();
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("vrrp_instance keepalived_vip {") && !text.contains("pg_primary"),
        "the instance is named after the application, not the principal's service: {text}"
    );
    assert!(
        text.contains("http-check http://127.0.0.1:8008/primary\"\n    interval 1\n"),
        "sub-second intervals round up to keepalived's 1 s: {text}"
    );
    assert!(text.contains("track_script {\n        keepalived_vip_0_http\n    }"));
    assert_keepalived_accepts(&text);
    let vip = &out.state.relation(2).unwrap().local_unit_data;
    assert_eq!(vip["state"], "standby");
}

#[test]
fn an_https_check_presents_the_principals_client_certificate() {
    let tls = [
        ("check", "https://127.0.0.1:8008/primary"),
        ("check-tls-ca", "/etc/postgresql-ha/tls/ca.pem"),
        ("check-tls-cert", "/etc/postgresql-ha/tls/unit.pem"),
        ("check-tls-key", "/etc/postgresql-ha/tls/unit.key"),
    ];
    let st = base().with_relation(Relation::new(2, "vip", "postgresql-ha").remote_unit(0, &tls));
    let out = harness()
        .run(Trigger::RelationChanged(2, Some(0)), &st)
        .unwrap();
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("--cacert /etc/postgresql-ha/tls/ca.pem --cert /etc/postgresql-ha/tls/unit.pem --key /etc/postgresql-ha/tls/unit.key")
            && text.contains("http-check https://127.0.0.1:8008/primary\""),
        "{text}"
    );
    assert_keepalived_accepts(&text);

    // Part of the set, or a path the script line cannot carry: the principal is told.
    for bad in [
        vec![
            ("check", "https://127.0.0.1:8008/primary"),
            ("check-tls-ca", "/ca.pem"),
        ],
        vec![
            ("check", "https://127.0.0.1:8008/primary"),
            ("check-tls-ca", "/ca.pem"),
            ("check-tls-cert", "/c.pem; rm -rf /"),
            ("check-tls-key", "/k.pem"),
        ],
    ] {
        let st =
            base().with_relation(Relation::new(2, "vip", "postgresql-ha").remote_unit(0, &bad));
        let out = harness()
            .run(Trigger::RelationChanged(2, Some(0)), &st)
            .unwrap();
        assert!(
            out.state.unit_status.message.contains("check-tls")
                && format!("{:?}", out.state.unit_status).contains("Blocked"),
            "{:?}",
            out.state.unit_status
        );
        assert!(
            out.state.machine.text(CONF).is_none(),
            "nothing rendered from bad input"
        );
    }
}

#[test]
fn config_checks_add_to_the_principals() {
    let st = base()
        .with_config("check", "tcp:80,process:haproxy")
        .with_relation(
            Relation::new(2, "vip", "maas-region")
                .remote_unit(0, &[("check", "process:haproxy,process:named")]),
        );
    let text = config_changed(&st).state.machine.text(CONF).unwrap();
    let tracked: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("track_script {"))
        .skip(1)
        .take_while(|l| !l.contains('}'))
        .map(str::trim)
        .collect();
    assert_eq!(
        tracked,
        [
            "keepalived_vip_0_process_haproxy",
            "keepalived_vip_1_process_named",
            "keepalived_vip_2_tcp_80"
        ]
    );
}

#[test]
fn garbled_principal_data_blocks_without_touching_keepalived() {
    let h = harness();
    let running = h.run(Trigger::ConfigChanged, &base()).unwrap().state;
    for (key, value, want) in [
        (
            "check",
            "process:x;reboot",
            "principal maas-region/0 sent an invalid check: \"process:x;reboot\"",
        ),
        (
            "check-interval",
            "soon",
            "principal maas-region/0 sent an invalid check-interval \"soon\"",
        ),
    ] {
        let st = running
            .clone()
            .with_relation(Relation::new(2, "vip", "maas-region").remote_unit(0, &[(key, value)]));
        let out = h.run_ok(Trigger::RelationChanged(2, Some(0)), &st);
        assert_status_starts_with(&out, want);
        assert_eq!(out.state.machine.text(CONF), running.machine.text(CONF));
        assert_eq!(
            out.state.relation(2).unwrap().local_unit_data["state"],
            "blocked"
        );
    }
}

#[test]
fn keepalived_refusing_the_file_blocks_and_keeps_the_running_one() {
    let h = harness();
    let running = h.run(Trigger::ConfigChanged, &base()).unwrap().state;
    let mut st = running.clone().with_config("virtual-router-id", 60);
    st.machine = st.machine.respond(
        &["/usr/sbin/keepalived", "-t"],
        CmdOutput::failed(5, "(keepalived_vip) Zq7Lm2Xw is not valid\n"),
    );
    let out = h.run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(out.state.unit_status, Status::blocked("keepalived rejected the rendered configuration (configuration error, exit 5): (keepalived_vip) *** is not valid"));
    assert_eq!(
        out.state.machine.text(CONF),
        running.machine.text(CONF),
        "the running file stays"
    );
    assert!(!has_file(
        &out.state.machine,
        "/etc/keepalived/.keepalived-keepalived-vip.conf.new"
    ));
    assert!(!ran(&out, "systemctl reload") && !ran(&out, "systemctl restart"));
    assert!(!out.mentions(PASSWORD));
    st.machine
        .responders
        .retain(|r| r.prefix[0] != "/usr/sbin/keepalived");
    st.machine = st.machine.respond(
        &["/usr/sbin/keepalived", "-t"],
        CmdOutput::failed(
            6,
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled",
        ),
    );
    let out = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert!(
        out.state
            .unit_status
            .message
            .contains("(script security, exit 6): SECURITY VIOLATION"),
        "{}",
        out.state.unit_status.message
    );
    st.machine
        .responders
        .retain(|r| r.prefix[0] != "/usr/sbin/keepalived");
    st.machine = st.machine.respond(
        &["/usr/sbin/keepalived", "-t"],
        CmdOutput::failed(1, "cannot allocate memory"),
    );
    let out = h.run(Trigger::ConfigChanged, &st).unwrap();
    // An unexpected failure fails the hook (retry may help) and carries stderr.
    assert_hook_error_contains(&out, "cannot allocate memory");
}

#[test]
fn the_leader_creates_the_password_secret_once_and_it_stays_secret() {
    let mut st = base().leader();
    st.relations[0] = Relation::peer(1, "cluster");
    st.secrets.clear();
    let h = harness();
    let out = h.run_ok(Trigger::LeaderElected, &st);
    let id = out.state.relation(1).unwrap().local_app_data["auth-secret-id"].clone();
    let secret = out.state.secret(&id).expect("an application secret");
    assert_eq!(secret.label.as_deref(), Some("vrrp-auth"));
    let pw = secret.latest_content()["password"].clone();
    assert_eq!(pw.len(), 8);
    assert!(file_contains(
        &out.state.machine,
        CONF,
        &format!("auth_pass {pw}\n")
    ));
    assert!(!out.mentions(&pw), "the password is in no log or status");
    let relation_data = out
        .state
        .relations
        .iter()
        .flat_map(|r| r.local_app_data.values().chain(r.local_unit_data.values()))
        .any(|v| v.contains(&pw));
    assert!(!relation_data, "nor in relation data");
    assert!(
        !out.command_lines().iter().any(|c| c.contains(&pw)),
        "nor on a command line"
    );
    let again = h.run(Trigger::ConfigChanged, &out.state).unwrap();
    assert_eq!(again.state.secrets.len(), 1, "created once");
    assert_eq!(
        again.state.relation(1).unwrap().local_app_data["auth-secret-id"],
        id
    );
}

#[test]
fn a_non_leader_waits_for_the_password_then_reads_it_by_id() {
    let mut st = base();
    st.relations[0] = Relation::peer(1, "cluster").remote_unit(0, &[("address", "10.0.0.10")]);
    st.leader = false;
    st.secrets.clear();
    st.network.address = "10.0.0.11".into();
    st.machine = host(&["10.0.0.11/24"]);
    let h = harness().unit(1);
    let out = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the leader to share the VRRP password")
    );
    assert!(!has_file(&out.state.machine, CONF));
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["address"],
        "10.0.0.11",
        "its address is shared meanwhile"
    );
    st.relations[0] = st.relations[0]
        .clone()
        .local_app_data(&[("auth-secret-id", "secret:fromleader")]);
    st = st.with_secret(Secret::owned(
        "secret:fromleader",
        &[("password", "Ab3dEf6h")],
    ));
    let out = h.run(Trigger::RelationChanged(1, None), &st).unwrap();
    assert_standby(&out);
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("auth_pass Ab3dEf6h")
            && text.contains("priority 249")
            && text.contains("unicast_peer {\n        10.0.0.10\n")
    );
    // VRRP v3 has no authentication in keepalived: nothing to wait for.
    let mut v3 = st.clone().with_config("vrrp-version", 3);
    v3.relations[0] = Relation::peer(1, "cluster").remote_unit(0, &[("address", "10.0.0.10")]);
    v3.secrets.clear();
    assert_eq!(
        h.run(Trigger::ConfigChanged, &v3)
            .unwrap()
            .state
            .unit_status,
        Status::active("VIP 10.0.0.100/24 standby")
    );
}

#[test]
fn a_peer_leaving_is_dropped_from_unicast_peers() {
    let mut st = base();
    st.relations[0] = peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]);
    let h = harness();
    let first = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert!(file_contains(
        &first.state.machine,
        CONF,
        "        10.0.0.11\n        10.0.0.12\n"
    ));
    let out = h
        .run(Trigger::RelationDeparted(1, 2), &first.state)
        .unwrap();
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("unicast_peer {\n        10.0.0.11\n    }"),
        "{text}"
    );
    assert!(ran(&out, "systemctl reload keepalived-keepalived-vip"));
}

/// keepalived treats a switch between unicast and multicast as a new instance: the holder
/// drops the VIP and takes it again only after a master-down interval (issue 17). The last
/// peer leaving must therefore not turn a unicast configuration into a multicast one.
#[test]
fn the_last_peer_leaving_keeps_unicast_to_it_until_another_peer_joins() {
    let mut st = base();
    st.relations[0] = peers(&[(1, "10.0.0.11")]);
    let h = harness();
    let first = h.run(Trigger::ConfigChanged, &st).unwrap();
    let unicast_to = |text: &str, peer: &str| {
        text.contains("    unicast_src_ip 10.0.0.10\n")
            && text.contains(&format!("    unicast_peer {{\n        {peer}\n    }}\n"))
    };
    assert!(unicast_to(
        &first.state.machine.text(CONF).unwrap(),
        "10.0.0.11"
    ));
    let out = h
        .run(Trigger::RelationDeparted(1, 1), &first.state)
        .unwrap();
    assert!(!out.failed(), "{:?}", out.error);
    let text = out.state.machine.text(CONF).unwrap();
    assert!(unicast_to(&text, "10.0.0.11"), "{text}");
    assert!(
        !ran(&out, "systemctl reload") && !ran(&out, "systemctl restart"),
        "nothing changed for keepalived: {:?}",
        out.command_lines()
    );
    // Still so at the next hooks, which see no peer either.
    let again = h.run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(unicast_to(
        &again.state.machine.text(CONF).unwrap(),
        "10.0.0.11"
    ));
    // A peer joining at another address replaces the departed one.
    let mut joined = again.state.clone();
    joined.relations[0] = joined.relations[0]
        .clone()
        .remote_unit(2, &[("address", "10.0.0.12"), ("priority", "1")]);
    let out = h.run(Trigger::RelationJoined(1, 2), &joined).unwrap();
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        unicast_to(&text, "10.0.0.12") && !text.contains("10.0.0.11"),
        "{text}"
    );
    assert!(ran(&out, "systemctl reload keepalived-keepalived-vip"));
    // A unit that never had a peer still advertises by multicast (keepalived has no unicast
    // without peers).
    let lone = h.run(Trigger::ConfigChanged, &base()).unwrap();
    assert!(!lone.state.machine.text(CONF).unwrap().contains("unicast"));
}

#[test]
fn a_leaving_unit_stops_keepalived_at_its_first_departed_hook_and_never_restarts_it() {
    let mut st = base();
    st.relations[0] = peers(&[(1, "10.0.0.11"), (2, "10.0.0.12")]);
    let h = harness();
    let serving = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert!(serving.state.machine.is_active(SERVICE));
    // Juju's first hook of a dying unit: -departed with itself departing. The peers still
    // list it, so the priority-0 advert of the stop reaches them; a reload without the
    // departing peers first would send it to nobody.
    let out = h
        .run(Trigger::RelationDepartedSelf(1, 2), &serving.state)
        .unwrap();
    assert!(!out.failed(), "{:?}", out.error);
    assert!(!ran(&out, "systemctl reload"), "{:?}", out.command_lines());
    assert!(ran(&out, "systemctl stop keepalived-keepalived-vip"));
    assert!(!out.state.machine.is_active(SERVICE));
    assert!(!has_file(&out.state.machine, CONF));
    assert_eq!(
        out.state.unit_status,
        Status::maintenance("keepalived-keepalived-vip stopped: this unit is leaving")
    );
    // The hooks after it (another departed, update-status, a config change) start nothing.
    let mut st = out.state.clone();
    for t in [
        Trigger::RelationDepartedSelf(1, 1),
        Trigger::UpdateStatus,
        Trigger::ConfigChanged,
    ] {
        let out = h.run(t.clone(), &st).unwrap();
        assert!(!out.failed(), "{t:?}: {:?}", out.error);
        assert!(!ran(&out, "systemctl start"), "{t:?}");
        assert!(!has_file(&out.state.machine, CONF), "{t:?}");
        st = out.state;
    }
    // A peer departing from a unit that stays is an ordinary reconcile.
    let out = h
        .run(Trigger::RelationDeparted(1, 2), &serving.state)
        .unwrap();
    assert!(out.state.machine.is_active(SERVICE));
    assert!(ran(&out, "systemctl reload keepalived-keepalived-vip"));
}

/// A host where another keepalived-vip application (db-vip, `vrid`, 10.0.0.150/24) runs.
fn other_app_on_this_host(vrid: u8) -> MachineState {
    let claims = format!("{{\"db-vip/0\": {{\"app\": \"db-vip\", \"interface\": \"{}\", \"virtual-router-id\": {vrid}, \"vips\": [\"10.0.0.150/24\"]}}}}", real_iface());
    running(
        host(&["10.0.0.10/24", "10.0.0.150/24"]),
        "keepalived-db-vip.service",
    )
    .with_file(CLAIMS, &claims, FileOptions::root(0o644))
    .with_file(
        "/etc/keepalived/keepalived-db-vip.conf",
        "db conf",
        FileOptions::root(0o600),
    )
    .with_file(
        "/etc/systemd/system/keepalived-db-vip.service",
        "db unit",
        FileOptions::root(0o644),
    )
    .with_file(
        "/etc/sysctl.d/60-keepalived-vip-db-vip.conf",
        "db sysctl",
        FileOptions::root(0o644),
    )
}

#[test]
fn two_applications_on_one_host_coexist_and_a_clash_blocks() {
    let h = harness();
    let mut st = base();
    st.machine = other_app_on_this_host(51);
    let out = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert_eq!(out.state.unit_status.kind, charm_lib::StatusKind::Blocked);
    assert_status_starts_with(&out, "virtual-router-id 51 on");
    assert!(out.state.unit_status.message.contains(
        "already used on this host by db-vip (db-vip/0); choose another virtual-router-id"
    ));
    assert!(!has_file(&out.state.machine, CONF), "never a silent fight");
    let out = h
        .run(
            Trigger::ConfigChanged,
            &st.clone().with_config("virtual-router-id", 52),
        )
        .unwrap();
    assert_standby(&out);
    let claims = out.state.machine.text(CLAIMS).unwrap();
    assert!(claims.contains("db-vip/0") && claims.contains("keepalived-vip/0"));
    assert!(
        out.state.machine.is_active(SERVICE)
            && out.state.machine.is_active("keepalived-db-vip.service")
    );
    assert_eq!(
        out.state.relation(1).unwrap().local_unit_data["address"],
        "10.0.0.10",
        "another application's VIP is not this unit's address"
    );
    let same_vip = h
        .run(
            Trigger::ConfigChanged,
            &st.clone()
                .with_config("virtual-router-id", 52)
                .with_config("vip", "10.0.0.150/24"),
        )
        .unwrap();
    assert!(
        same_vip
            .state
            .unit_status
            .message
            .starts_with("vip 10.0.0.150 is already managed on this host by db-vip"),
        "{}",
        same_vip.state.unit_status.message
    );
}

#[test]
fn stop_and_remove_take_away_only_this_applications_keepalived() {
    let h = harness();
    let mut st = base().with_config("virtual-router-id", 52);
    st.machine = other_app_on_this_host(51);
    let running = h.run(Trigger::ConfigChanged, &st).unwrap().state;
    assert!(running.machine.is_active(SERVICE));
    for trigger in [Trigger::Stop, Trigger::Remove] {
        let out = h.run_ok(trigger.clone(), &running);
        let m = &out.state.machine;
        assert!(
            !m.is_active(SERVICE) && !m.services[SERVICE].enabled,
            "{trigger:?}"
        );
        for gone in [CONF, UNIT_FILE, SYSCTL, NOTIFY, METRICS_UNIT] {
            assert!(!has_file(m, gone), "{trigger:?}: {gone} removed");
        }
        assert!(!m.is_active(METRICS), "{trigger:?}: the exporter stopped");
        assert!(
            m.is_active("keepalived-db-vip.service"),
            "the other VIP is untouched"
        );
        for kept in [
            "/etc/keepalived/keepalived-db-vip.conf",
            "/etc/systemd/system/keepalived-db-vip.service",
            "/etc/sysctl.d/60-keepalived-vip-db-vip.conf",
        ] {
            assert!(has_file(m, kept), "{trigger:?}: {kept} kept");
        }
        let claims = m.text(CLAIMS).unwrap();
        assert!(claims.contains("db-vip/0") && !claims.contains("keepalived-vip/0"));
        assert!(!out.command_lines().iter().any(|c| c.contains("db-vip")));
        let again = h.run_ok(trigger.clone(), &out.state);
        assert_eq!(
            again.state.machine.files, out.state.machine.files,
            "teardown is idempotent"
        );
    }
}

#[test]
fn losing_the_last_principal_relation_tears_down_but_not_before() {
    let h = harness();
    let st = base().with_relation(haproxy_principal());
    let running = h.run(Trigger::ConfigChanged, &st).unwrap().state;
    assert!(running.machine.is_active(SERVICE));
    let out = h.run(Trigger::RelationBroken(2), &running).unwrap();
    assert!(
        out.state.machine.is_active(SERVICE),
        "juju-info remains: keep serving"
    );
    assert_standby(&out);
    let out = h.run(Trigger::RelationBroken(3), &out.state).unwrap();
    assert!(!out.state.machine.is_active(SERVICE));
    assert!(!has_file(&out.state.machine, CONF));
    assert_eq!(
        out.state.unit_status,
        Status::maintenance("keepalived-keepalived-vip stopped: no principal relation left")
    );
}

#[test]
fn the_principal_learns_the_vips_and_a_block() {
    let st = base()
        .with_config("vip", "10.0.0.100/24 10.0.0.101/24")
        .with_relation(haproxy_principal());
    let out = harness().run(Trigger::RelationJoined(2, 0), &st).unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::active("VIPs 10.0.0.100/24, 10.0.0.101/24 standby")
    );
    assert_published(
        &out,
        "10.0.0.100,10.0.0.101",
        "10.0.0.100/24,10.0.0.101/24",
        "standby",
    );
    let out = config_changed(&out.state.clone().with_config("vip", ""));
    let vip = &out.state.relation(2).unwrap().local_unit_data;
    assert_eq!((vip.get("vips"), vip["state"].as_str()), (None, "blocked"));
}

#[test]
fn unicast_without_an_address_in_the_vip_family_blocks() {
    let mut st = base()
        .with_config("vip", "fd00::100/64")
        .with_config("vrrp-version", 3);
    st.machine = host(&["10.0.0.10/24", "fd00::100/64"]);
    let out = config_changed(&st.clone().with_config("interface", real_iface().as_str()));
    assert_status_starts_with(&out, "no IPv6 address on");
    assert!(out
        .state
        .unit_status
        .message
        .ends_with("to send unicast VRRP adverts from; add one or set unicast=false"));
    let out = config_changed(
        &st.with_config("interface", real_iface().as_str())
            .with_config("unicast", false),
    );
    assert_eq!(
        out.state.unit_status.kind,
        charm_lib::StatusKind::Active,
        "{:?}",
        out.state.unit_status
    );
}

#[test]
fn a_failing_ip_command_fails_the_hook_with_its_stderr() {
    let mut st = base();
    st.machine = MachineState::default().respond(
        &["ip"],
        CmdOutput::failed(255, "Cannot open netlink socket: Permission denied"),
    );
    let out = harness().run(Trigger::UpdateStatus, &st).unwrap();
    assert_hook_error_contains(&out, "Cannot open netlink socket: Permission denied");
}

#[test]
fn upgrade_charm_with_a_new_unit_file_restarts_once() {
    let h = harness();
    let mut st = h.run(Trigger::ConfigChanged, &base()).unwrap().state;
    st.machine
        .files
        .get_mut(std::path::Path::new(UNIT_FILE))
        .unwrap()
        .content = b"[Service]\nExecStart=/usr/sbin/keepalived --old-flags\n".to_vec();
    let out = h.run_ok(Trigger::UpgradeCharm, &st);
    let lines = out.command_lines();
    assert!(
        lines.contains(&"systemctl daemon-reload".to_string())
            && lines.contains(&"systemctl restart keepalived-keepalived-vip".to_string()),
        "{lines:?}"
    );
    assert!(
        !ran(&out, "systemctl reload keepalived-keepalived-vip"),
        "the configuration did not change"
    );
    assert!(file_contains(
        &out.state.machine,
        UNIT_FILE,
        "--dont-fork --vrrp"
    ));
    let again = h.run(Trigger::UpgradeCharm, &out.state).unwrap();
    assert!(
        !ran(&again, "systemctl restart"),
        "{:?}",
        again.command_lines()
    );
}

#[test]
fn without_the_peer_relation_yet_it_waits_and_renders_nothing() {
    let mut st = base().leader();
    st.relations.remove(0);
    let out = harness().run_ok(Trigger::Install, &st);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the peer relation")
    );
    assert!(!has_file(&out.state.machine, CONF));
    assert!(
        out.state.secrets.len() == 1,
        "no secret created without a place to share its id"
    );
}

/// The bundle's case: db-vip related to postgresql-ha over `vip` only.
fn related_over_vip_only(principal_units: &[(u32, &[(&str, &str)])]) -> charm_lib::testing::State {
    let mut st = base();
    st.relations.retain(|r| r.endpoint != "juju-info");
    let rel = principal_units
        .iter()
        .fold(Relation::new(2, "vip", "postgresql-ha"), |r, (n, data)| {
            r.remote_unit(*n, data)
        });
    st.with_relation(rel)
}

#[test]
fn keepalived_waits_for_the_vip_principals_check_then_starts_with_it() {
    let h = harness();
    // relation-created, install, config-changed, start: the principal unit has not joined.
    let mut st = related_over_vip_only(&[]);
    for trigger in [
        Trigger::RelationCreated(2),
        Trigger::Install,
        Trigger::ConfigChanged,
        Trigger::Start,
    ] {
        let out = h.run(trigger.clone(), &st).unwrap();
        assert_waiting(&out, &trigger, "waiting for postgresql-ha's health check");
        assert!(
            !has_file(&out.state.machine, CONF),
            "{trigger:?}: nothing rendered"
        );
        assert!(
            !ran(&out, "systemctl start") && !out.state.machine.is_active(SERVICE),
            "{trigger:?}: keepalived not started: {:?}",
            out.command_lines()
        );
        st = out.state;
    }
    assert_eq!(
        st.relation(1).unwrap().local_unit_data["address"],
        "10.0.0.10",
        "the unicast address is shared meanwhile"
    );
    assert_eq!(
        st.relation(2).unwrap().local_unit_data["vips"],
        "10.0.0.100",
        "the principal learns its VIP meanwhile"
    );

    // The principal joined but has not published its check yet.
    principal_sends(&mut st, &[]);
    let out = h.run(Trigger::RelationJoined(2, 0), &st).unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for postgresql-ha/0's health check")
    );
    assert!(!out.state.machine.is_active(SERVICE));
    st = out.state;

    // The check arrives: rendered with it, checked, then started.
    let out = principal_changed(&h, &mut st, POSTGRESQL_PRIMARY_CHECK);
    assert!(!out.failed(), "{:?}", out.error);
    assert_standby(&out);
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("vrrp_script keepalived_vip_0_http {")
            && text.contains("    track_script {\n        keepalived_vip_0_http\n    }\n"),
        "{text}"
    );
    assert_keepalived_accepts(&text);
    // Started once the check is there.
    assert_checked_before_started(&out, "/usr/sbin/keepalived -t -f ");
    assert!(out.state.machine.is_active(SERVICE));
    assert!(out
        .logs
        .iter()
        .any(|(_, m)| m.contains("postgresql-ha/0 (postgresql)")));
    st = out.state;

    // The principal withdraws its check: waiting again, the running keepalived kept as it is.
    let out = principal_changed(&h, &mut st, &[]);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for postgresql-ha/0's health check")
    );
    assert_eq!(out.state.machine.text(CONF).unwrap(), text);
    assert!(out.state.machine.is_active(SERVICE));
    assert!(!ran(&out, "systemctl"), "{:?}", out.command_lines());
}

#[test]
fn a_juju_info_principal_does_not_wait() {
    // No `vip` relation: the `check` option is all there is, as before.
    let out = config_changed(&base().with_config("check", "process:haproxy"));
    assert_standby(&out);
    assert!(out.state.machine.is_active(SERVICE));
}

#[test]
fn the_vrrp_instance_keeps_its_name_whatever_service_the_principal_names() {
    let h = harness();
    let mut st = related_over_vip_only(&[(0, &[("check", "http://127.0.0.1:8008/primary")])]);
    st = h.run(Trigger::ConfigChanged, &st).unwrap().state;
    let first = st.machine.text(CONF).unwrap();
    assert!(
        first.contains("\nvrrp_instance keepalived_vip {\n"),
        "{first}"
    );

    // A `service` key arriving a hook later changes nothing at all.
    let out = principal_changed(&h, &mut st, POSTGRESQL_PRIMARY_CHECK);
    assert_eq!(out.state.machine.text(CONF).unwrap(), first);
    assert!(!ran(&out, "systemctl reload") && !ran(&out, "systemctl restart"));
    st = out.state;

    // A new check and another service name: the same instance, reloaded.
    let out = principal_changed(
        &h,
        &mut st,
        &[
            ("check", "http://127.0.0.1:8008/primary,tcp:5432"),
            ("service", "pg-renamed"),
        ],
    );
    let text = out.state.machine.text(CONF).unwrap();
    assert!(
        text.contains("\nvrrp_instance keepalived_vip {\n") && !text.contains("renamed"),
        "{text}"
    );
    assert!(text.contains("keepalived_vip_1_tcp_5432"), "{text}");
    assert_keepalived_accepts(&text);
    assert!(
        ran(&out, "systemctl reload keepalived-keepalived-vip")
            && !ran(&out, "systemctl restart")
            && !ran(&out, "systemctl stop"),
        "{:?}",
        out.command_lines()
    );
}

#[test]
fn nothing_starts_before_the_principal_relation_is_created() {
    // Juju runs install before the relation-created of the relation that placed the
    // subordinate: the principal might speak `vip` and send a check later.
    let h = harness();
    let mut st = base();
    st.relations.retain(|r| r.endpoint != "juju-info");
    for trigger in [Trigger::Install, Trigger::ConfigChanged, Trigger::Start] {
        let out = h.run(trigger.clone(), &st).unwrap();
        assert_waiting(&out, &trigger, "waiting for the principal relation");
        assert!(
            !has_file(&out.state.machine, CONF) && !ran(&out, "systemctl start"),
            "{trigger:?}: {:?}",
            out.command_lines()
        );
        st = out.state;
    }
    // A juju-info principal: the `check` option is all there is, so it starts at once.
    let st = st.with_relation(Relation::new(3, "juju-info", "ubuntu").remote_unit(0, &[]));
    let out = h.run(Trigger::RelationCreated(3), &st).unwrap();
    assert_standby(&out);
    assert!(out.state.machine.is_active(SERVICE));
}

#[test]
fn the_vip_state_exporter_runs_and_the_collector_gets_its_job_rules_and_dashboard() {
    use charm_lib::cos_agent::{
        dashboard_exprs, lzma_base64_decode, promql_metric_names, rule_exprs,
    };
    // Arrange: a running unit (router id 51) related to a collector.
    let st = base().with_config("virtual-router-id", 51).with_relation(
        Relation::new(9, "cos-agent", "opentelemetry-collector").remote_unit(0, &[]),
    );
    // Act
    let out = harness().run_ok(Trigger::RelationJoined(9, 0), &st);
    // Assert: the exporter serves this application's VIP on 9751, and the collector is told so.
    assert!(out.state.machine.is_active(METRICS));
    assert!(file_contains(
        &out.state.machine,
        METRICS_UNIT,
        "dispatch metrics keepalived-vip 9751 10.0.0.100\n"
    ));
    let data: serde_json::Value =
        serde_json::from_str(&out.state.relation(9).unwrap().local_unit_data["config"]).unwrap();
    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    assert_eq!(
        jobs[0]["static_configs"][0]["targets"][0], "localhost:9751",
        "{jobs:?}"
    );
    let alerts: Vec<&str> = data["metrics_alert_rules"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(
        alerts.contains(&"VipHeldByNoUnit") && alerts.contains(&"VipSplitBrain"),
        "{alerts:?}"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&lzma_base64_decode(data["dashboards"][0].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(dash["title"], "Virtual IPs (keepalived-vip)");

    // Everything the dashboard and the rules query is exposed by the job.
    let exposed = keepalived_vip::cos::exposed();
    let mut exprs = Vec::new();
    for d in keepalived_vip::cos::DASHBOARDS {
        exprs.extend(dashboard_exprs(d.json).unwrap());
    }
    for r in keepalived_vip::cos::RULES {
        exprs.extend(rule_exprs(r.text).unwrap());
    }
    assert!(exprs.len() >= 4, "{exprs:?}");
    for e in &exprs {
        for name in promql_metric_names(e) {
            assert!(
                exposed.contains(&name.as_str()),
                "{name} (in {e}) is not exposed"
            );
        }
    }
}

/// The exporter is the charm's own binary: a refresh that brings another one restarts it (else
/// it would serve the old code until the host reboots); a refresh with the same binary, none.
#[test]
fn a_refresh_with_another_charm_binary_restarts_the_exporter_and_only_then() {
    const DISPATCH: &str = "/var/lib/juju/agents/unit-keepalived-vip-0/charm/dispatch";
    const METRICS: &str = "keepalived-vip-metrics-keepalived-vip";
    let h = harness();
    let mut st = base();
    st.machine = st
        .machine
        .with_file(DISPATCH, "binary one", FileOptions::root(0o755));
    let first = h.run_ok(Trigger::ConfigChanged, &st);
    let same = h.run_ok(Trigger::UpgradeCharm, &first.state);
    assert!(
        !ran(&same, &format!("systemctl restart {METRICS}")),
        "{:?}",
        same.command_lines()
    );
    let mut st = same.state.clone();
    st.machine = st
        .machine
        .with_file(DISPATCH, "binary two", FileOptions::root(0o755));
    let refreshed = h.run_ok(Trigger::UpgradeCharm, &st);
    assert!(
        ran(&refreshed, &format!("systemctl restart {METRICS}")),
        "{:?}",
        refreshed.command_lines()
    );
    assert!(
        !ran(&refreshed, "systemctl restart keepalived-keepalived-vip"),
        "keepalived itself is not the charm's binary"
    );
}
