//! regiond and rackd against a throwaway PostgreSQL on loopback: the version endpoint,
//! heartbeats, users and API keys, the API the charms call, rack registration with good and
//! bad secrets, and what racks and regions see when the other side or the database goes away.

mod common;
use common::*;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

struct Region {
    sb: Sandbox,
    api: u16,
    internal: u16,
    temporal: u16,
}

impl Region {
    fn new(tag: &str, host: &str) -> Region {
        let (api, internal, temporal) = (free_port(), free_port(), free_port());
        let sb = Sandbox::new(tag)
            .with(
                "MAAS_STANDIN_PORTS",
                &format!("{api},{internal},{temporal}"),
            )
            .with("MAAS_STANDIN_BIND", "127.0.0.1")
            .with("MAAS_STANDIN_RPC_PORTS", &free_ports(4))
            .with("MAAS_STANDIN_HOSTNAME", host);
        Region {
            sb,
            api,
            internal,
            temporal,
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/MAAS", self.api)
    }
    fn version(&self) -> Option<(u16, String)> {
        get(&format!("{}/api/2.0/version/", self.url()))
    }
    fn wait_up(&self, host: &str) -> Value {
        wait_for("regiond version endpoint", T, || {
            let (s, b) = self.version()?;
            (s == 200)
                .then(|| serde_json::from_str::<Value>(&b).ok())
                .flatten()
                .filter(|v| v["hostname"] == host)
        })
    }
    /// Waits until the version endpoint answers 503 (no usable database); its answer.
    fn wait_503(&self, what: &str) -> (u16, String) {
        wait_for(what, T, || self.version().filter(|(s, _)| *s == 503))
    }
    /// regiond and the services it has started (nginx, Temporal) beside the apiserver.
    fn spawn_regiond(&self) -> RegionProcs {
        RegionProcs::spawn(&self.sb, "snap")
    }
}

/// `maas init MODE --maas-url URL --database-uri <pg> EXTRA` in `sb`.
fn maas_init(sb: &Sandbox, mode: &str, url: &str, pg: &Postgres, extra: &str) -> Output {
    sb.run_line(&format!(
        "maas init {mode} --maas-url {url} --database-uri {} {extra}",
        pg.uri()
    ))
}

fn json_out(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("{e}: stdout {:?} stderr {:?}", stdout(o), stderr(o)))
}

fn heartbeats(pg: &Postgres, host: &str) -> i64 {
    pg.client()
        .query_one(
            "SELECT count(*) FROM standin_heartbeat WHERE hostname = $1",
            &[&host],
        )
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Waits until `host` has at least `at_least` heartbeat rows in `pg`.
fn wait_heartbeats(pg: &Postgres, host: &str, at_least: i64, what: &str) {
    wait_for(what, T, || (heartbeats(pg, host) >= at_least).then_some(()));
}

fn rack_log(sb: &Sandbox) -> Vec<Value> {
    std::fs::read_to_string(sb.path("/var/log/maas/rackd-standin.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the region answers for `host` again and `pg` gets `more` new heartbeats from it.
fn wait_heartbeats_resume(r: &Region, pg: &Postgres, host: &str, more: i64, what: &str) {
    r.wait_up(host);
    let before = heartbeats(pg, host);
    wait_heartbeats(pg, host, before + more, what);
}

/// Waits for a line of the rack's log that `matches`; the first such line.
fn wait_rack_log(sb: &Sandbox, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, T, || rack_log(sb).into_iter().find(|l| matches(l)))
}

/// Waits for the snap's shared secret file; its content.
fn wait_secret(sb: &Sandbox, what: &str) -> String {
    let p = sb.path("/var/snap/maas/common/maas/secret");
    wait_for(what, T, || std::fs::read_to_string(&p).ok())
        .trim()
        .to_string()
}

#[test]
fn region_init_heartbeats_users_and_api() {
    let pg = Postgres::start();
    let r = Region::new("region-api", "region-a");
    let o = maas_init(&r.sb, "region", &r.url(), &pg, "--force --num-workers 2");
    assert_ok(&o);
    assert!(stdout(&o).contains("migrations"), "{}", stdout(&o));

    // Files MAAS keeps, with MAAS's modes.
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    assert_eq!(mode_of(&conf_path), 0o640);
    let conf: serde_yaml::Value = serde_yaml::from_str(&read(&conf_path)).unwrap();
    assert_eq!(conf["maas_url"].as_str(), Some(r.url().as_str()));
    assert_eq!(conf["database_host"].as_str(), Some("127.0.0.1"));
    assert_eq!(conf["database_port"].as_u64(), Some(pg.port as u64));
    assert_eq!(conf["database_name"].as_str(), Some("maasdb"));
    assert_eq!(conf["database_user"].as_str(), Some("maas"));
    assert_eq!(conf["database_pass"].as_str(), Some(pg.password.as_str()));
    assert_eq!(conf["num_workers"].as_u64(), Some(2));
    assert_eq!(
        read_trimmed(&r.sb.path("/var/snap/maas/common/snap_mode")),
        "region"
    );
    // nginx's configuration is regiond's to render, after its start-up
    // (RegionHTTPService._configure, src/maasserver/regiondservices/http.py).
    assert!(!r
        .sb
        .path("/var/snap/maas/current/http/regiond.nginx.conf")
        .exists());
    // The shared secret, maas_id and maas_uuid are regiond's to write, at start-up.
    let secret_path = r.sb.path("/var/snap/maas/common/maas/secret");
    let uuid_path = r.sb.path("/var/snap/maas/common/maas/maas_uuid");
    for p in [&secret_path, &uuid_path] {
        assert!(!p.exists(), "{} before regiond started", p.display());
    }
    let _regiond = r.spawn_regiond();
    let secret = wait_secret(&r.sb, "regiond writes the shared secret");
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(mode_of(&secret_path) & 0o037, 0);
    assert!(r.sb.path("/var/snap/maas/common/maas/maas_id").exists());
    let uuid = read(&uuid_path);
    assert_eq!(uuid.trim().len(), 36, "{uuid}");
    // The secret is the database's: a second region initialised elsewhere gets the same one
    // from its own regiond.
    let r2 = Region::new("region-api-2", "region-b");
    let o = maas_init(&r2.sb, "region+rack", &r.url(), &pg, "");
    assert_ok(&o);
    assert!(
        !stdout(&o).contains("migrations"),
        "tables exist: no migration expected"
    );
    assert!(
        !r2.sb.path("/var/snap/maas/common/maas/secret").exists(),
        "init writes no secret"
    );
    let _regiond_b = r2.spawn_regiond();
    r2.wait_up("region-b");
    assert_eq!(
        wait_secret(&r2.sb, "the second regiond writes the shared secret"),
        secret
    );
    assert_eq!(
        read(&r2.sb.path("/var/snap/maas/common/maas/maas_uuid")),
        uuid
    );
    assert!(r2.sb.path("/var/snap/maas/current/rackd.conf").exists());

    // regiond: all three ports, the version names the host, heartbeats appear.
    let v = r.wait_up("region-a");
    assert_eq!(v["standin"], true);
    // 5242: nginx's stream server in front of the apiserver's internal socket (plain HTTP in the
    // stand-in, mTLS in MAAS); 5271: Temporal's frontend (a TCP listener in the stand-in).
    let (s, b) = get(&format!(
        "http://127.0.0.1:{}/MAAS/a/v3internal/",
        r.internal
    ))
    .unwrap();
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("\"kind\""), "{b}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", r.temporal)).is_ok());
    // `/MAAS/` is nginx's redirect to the UI (`location ~ ^/MAAS/?$`); the stand-in's region
    // page is under it.
    let (s, _) = get(&format!("{}/", r.url())).unwrap();
    assert_eq!(s, 301);
    let (s, page) = get(&format!("{}/r/", r.url())).unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("region-a"), "{page}");
    wait_heartbeats(&pg, "region-a", 3, "three heartbeat rows");

    // createadmin and apikey through the API (loopback test endpoints).
    let createadmin =
        |form: &str| post_form(&format!("{}/standin/createadmin", r.url()), form).unwrap();
    let (s, b) = createadmin("username=admin&password=pw&email=admin%40example.com");
    assert_eq!(s, 200, "{b}");
    let (s, b) = createadmin("username=admin&password=pw&email=other%40example.com");
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "A user with the email other@example.com already exists."
        ),
        "MAAS words a username clash so too"
    );
    // auth_user's email is unique as Django normalises it (the domain lowercased only:
    // `normalize_email`, src/maasserver/models/__init__.py); the message names it as given.
    let (s, b) = createadmin("username=admin2&password=pw&email=admin%40EXAMPLE.com");
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "A user with the email admin@EXAMPLE.com already exists."
        )
    );
    let (s, b) = createadmin("username=admin2&password=pw&email=ADMIN%40example.com");
    assert_eq!(s, 200, "another local part is another address: {b}");
    let (s, b) = get(&format!("{}/standin/apikey?username=admin", r.url())).unwrap();
    assert_eq!(s, 200);
    let keys: Vec<String> = serde_json::from_str(&b).unwrap();
    assert_eq!(keys.len(), 1);

    // The same through the CLI, as the charm's actions run it.
    assert_ok(&r.sb.run_line(
        "maas createadmin --username ops --password pw --email ops@example.com --ssh-import lp:ops",
    ));
    let o =
        r.sb.run_line("maas createadmin --username ops2 --password pw --email ops@example.com");
    // Django prints a CommandError subclass by its own name (BaseCommand.run_from_argv):
    // createadmin.py raises AlreadyExistingUser.
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "AlreadyExistingUser: A user with the email ops@example.com already exists.\n"
    );
    // MAAS prompts only for an option that is absent: `--email ""` is an admin without an
    // address (stored as none, so several may have none), `--username ""` fails in Django's
    // create_superuser, which the snap's maas reports through argparse (exit 2) and the deb's
    // maas-region as a traceback (exit 1).
    for user in ["noemail1", "noemail2"] {
        assert_ok(&r.sb.run(&[
            "maas",
            "createadmin",
            "--username",
            user,
            "--password",
            "pw",
            "--email",
            "",
        ]));
    }
    let o = r.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "",
        "--password",
        "pw",
        "--email",
        "",
    ]);
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (
            Some(2),
            "usage: maas [-h] COMMAND ...\nmaas: error: The given username must be set\n"
        )
    );
    let o = r.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "ops4",
        "--password",
        "pw",
        "--email",
        "ops4@example.com",
        "--ssh-import",
        "xx:bad id",
    ]);
    assert_fails_with(
        &o,
        1,
        "SSHKeysError: The input entered is not in a correct format.",
    );
    let o =
        r.sb.run_line("maas createadmin --username ops3 --email ops3@example.com");
    assert_eq!(o.status.code(), Some(1), "no password: MAAS would prompt");
    let o = r.sb.run_line("maas apikey --username admin");
    assert_eq!(stdout(&o).trim(), keys[0]);
    let o = r.sb.run_line("maas apikey --username nobody");
    assert_eq!(
        (o.status.code(), stderr(&o).as_str()),
        (Some(1), "CommandError: User does not exist.\n")
    );

    // login, then the API calls the charms make.
    assert_ok(&r.sb.run_line(&format!(
        "maas login admin {}/api/2.0/ {}",
        r.url(),
        keys[0]
    )));
    let o = r.sb.run_line(&format!(
        "maas login bad {} aaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbb:cccccccccccccccccccccccccccccccc",
        r.url()
    ));
    assert_eq!(o.status.code(), Some(1));
    let o = r.sb.run_line(&format!(
        "maas login local http://localhost:{}/MAAS/api/2.0/ {}",
        r.api, keys[0]
    ));
    assert!(
        o.status.success(),
        "localhost (maybe ::1 first) must reach an IPv4 listener: {}",
        stderr(&o)
    );
    assert_ok(&r.sb.run_line("maas logout local"));
    let v = json_out(&r.sb.run_line("maas admin version read"));
    assert_eq!(v["hostname"], "region-a");
    assert_ok(
        &r.sb
            .run_line("maas admin maas set-config name=prometheus_enabled value=true"),
    );
    // Settings keep MAAS's types: the form cleans `value` (a BooleanField: "True" is true),
    // and get_config answers json.dumps of the stored value (src/maasserver/api/maas.py).
    let get = |name: &str| {
        json_out(
            &r.sb
                .run_line(&format!("maas admin maas get-config name={name}")),
        )
    };
    assert_eq!(get("prometheus_enabled"), Value::Bool(true));
    assert_ok(
        &r.sb
            .run_line("maas admin maas set-config name=prometheus_enabled value=False"),
    );
    assert_eq!(get("prometheus_enabled"), Value::Bool(false));
    assert_ok(
        &r.sb
            .run_line("maas admin maas set-config name=promtail_port value=5239"),
    );
    assert_eq!(get("promtail_port"), serde_json::json!(5239));
    assert_eq!(
        get("promtail_enabled"),
        Value::Bool(false),
        "an unset setting reads as its default"
    );
    assert_eq!(get("prometheus_push_interval"), serde_json::json!(60));
    // An API error's body goes to stdout, nothing to stderr, exit 2 (`Action.__call__` and
    // `print_response_content`, src/maascli/api.py and utils.py).
    let o =
        r.sb.run_line("maas admin maas set-config name=promtail_port value=x");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str(), stderr(&o).as_str()),
        (
            Some(2),
            "{\"promtail_port\": [\"Enter a whole number.\"]}",
            ""
        )
    );
    let users = json_out(&r.sb.run_line("maas admin users read"));
    let noemail = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "noemail1")
        .unwrap();
    assert_eq!(noemail["email"], Value::Null);
    assert_api_error(
        &r.sb
            .run_line("maas admin maas set-config name=no_such_setting value=1"),
        "is not a valid config setting",
    );
    let v = json_out(&r.sb.run_line("maas admin region-controllers read"));
    assert_eq!(v[0]["hostname"], "region-a");
    assert_fails_with(
        &r.sb.run_line("maas admin machines read"),
        2,
        "invalid choice: 'machines'",
    );
    assert_fails_with(
        &r.sb.run_line("maas admin vlan update 0"),
        2,
        "required: vid",
    );
    let o = r.sb.run_line("maas nosuchprofile version read");
    assert_eq!(o.status.code(), Some(2));

    // A second region on the same database sees the same MAAS: same users, keys, settings.
    assert_ok(
        &r2.sb
            .run_line(&format!("maas login admin {} {}", r2.url(), keys[0])),
    );
    let o = r2
        .sb
        .run_line("maas admin maas get-config name=promtail_port");
    assert_eq!(json_out(&o), serde_json::json!(5239));
    let regions = wait_for("both regions listed", T, || {
        let v = json_out(&r2.sb.run_line("maas admin region-controllers read"));
        (v.as_array().map(|a| a.len()) == Some(2)).then_some(v)
    });
    assert_eq!(
        (
            regions[0]["hostname"].as_str(),
            regions[1]["hostname"].as_str()
        ),
        (Some("region-a"), Some("region-b"))
    );

    // The database goes away: the API answers 503; it comes back: heartbeats resume.
    pg.stop();
    r.wait_503("503 without a database");
    pg.pg_ctl_start();
    wait_heartbeats_resume(&r, &pg, "region-a", 2, "heartbeats resume");
}

#[test]
fn racks_register_with_the_secret_and_follow_their_region() {
    let pg = Postgres::start();
    let r = Region::new("rack-region", "region-r");
    assert_ok(&maas_init(&r.sb, "region", &r.url(), &pg, "--force"));
    let mut regiond = r.spawn_regiond();
    r.wait_up("region-r");
    let secret = wait_secret(&r.sb, "regiond writes the shared secret");

    // A rack with the wrong secret is refused, and the region records it.
    let rack = Sandbox::new("rack")
        .with("MAAS_STANDIN_HOSTNAME", "rack-1")
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.5/24");
    let wrong = "ffffffffffffffffffffffffffffffff";
    assert_ok(&rack.run_line(&format!(
        "maas init rack --maas-url {} --secret {wrong} --force",
        r.url()
    )));
    // rackd under the snap's supervisor, so `maas status` has a supervisor to ask.
    let _rackd = rack.spawn(&["pebble"], &[]);
    // The rack authenticates the region with its secret first (ClusterClient.authenticateRegion):
    // with the wrong one the region's digest does not match and the rack drops the connection.
    let refused = wait_rack_log(&rack, "a refused connection in the rack log", |l| {
        l["event"] == "connect-failed" && l["refused"] == true
    });
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("FAILED authentication"),
        "{refused}"
    );
    assert!(
        !rack_log(&rack).iter().any(|l| l["event"] == "connected"),
        "no connection is held with the wrong secret"
    );
    let log_text = read(&rack.path("/var/log/maas/rackd-standin.log"));
    assert!(
        !log_text.contains(wrong) && !log_text.contains(&secret),
        "the secret must never be logged"
    );

    // With the right secret the rack registers, gets a system id, and its subnet is learnt.
    assert_ok(&rack.run_line(&format!("maas config --secret {secret}")));
    let ok = wait_rack_log(&rack, "a successful registration", |l| {
        l["event"] == "connected"
    });
    assert_eq!(ok["region"], "region-r");
    let sid = ok["system_id"].as_str().unwrap().to_string();
    assert_eq!(
        read_trimmed(&rack.path("/var/snap/maas/common/maas/maas_id")),
        sid
    );

    // DHCP HA through the API, as maas-region's configure-dhcp action does it.
    let key = {
        assert_ok(
            &r.sb
                .run_line("maas createadmin --username admin --password pw --email a@example.com"),
        );
        stdout(&r.sb.run_line("maas apikey --username admin"))
            .trim()
            .to_string()
    };
    assert!(r
        .sb
        .run_line(&format!("maas login admin {} {key}", r.url()))
        .status
        .success());
    let racks = json_out(&r.sb.run_line("maas admin rack-controllers read"));
    assert_eq!(racks[0]["hostname"], "rack-1");
    assert_eq!(racks[0]["system_id"], sid.as_str());
    let subnets = json_out(&r.sb.run_line("maas admin subnets read"));
    assert_eq!(subnets[0]["cidr"], "10.77.0.0/24");
    assert_api_error(
        &r.sb
            .run_line("maas admin vlan update 0 0 primary_rack=rack-1 dhcp_on=true"),
        "dynamic IP range",
    );
    let create_range = |start: &str, end: &str| {
        r.sb.run_line(&format!(
            "maas admin ipranges create type=dynamic start_ip={start} end_ip={end}"
        ))
    };
    assert_ok(&create_range("10.77.0.100", "10.77.0.150"));
    let o = create_range("10.77.0.140", "10.77.0.160");
    assert_eq!(o.status.code(), Some(2), "overlapping range");
    let o =
        r.sb.run_line("maas admin vlan update 0 0 primary_rack=rack-1 secondary_rack=rack-1");
    assert_eq!(
        o.status.code(),
        Some(2),
        "primary and secondary must differ"
    );
    // A second rack (deb packaging) to be the secondary, as the seed's DHCP HA has it.
    let rack2 = Sandbox::new("rack2")
        .with("MAAS_STANDIN_HOSTNAME", "rack-2")
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.6/24");
    assert_ok(&rack2.run_line(&format!(
        "maas-rack register --url {} --secret {secret}",
        r.url()
    )));
    let _rackd2 = rack2.spawn(&["rackd", "--flavor", "deb"], &[]);
    let ok2 = wait_rack_log(&rack2, "the second rack registers", |l| {
        l["event"] == "connected"
    });
    let sid2 = ok2["system_id"].as_str().unwrap().to_string();
    assert_eq!(read_trimmed(&rack2.path("/var/lib/maas/maas_id")), sid2);
    assert_ok(&r.sb.run_line(&format!(
        "maas admin vlan update 0 0 primary_rack=rack-1 secondary_rack={sid2} dhcp_on=true"
    )));
    let vlan = json_out(&r.sb.run_line("maas admin vlan read 0 0"));
    assert_eq!(
        (
            vlan["primary_rack"].as_str(),
            vlan["secondary_rack"].as_str(),
            vlan["dhcp_on"].as_bool(),
            vlan["id"].as_i64()
        ),
        (
            Some(sid.as_str()),
            Some(sid2.as_str()),
            Some(true),
            Some(5001)
        )
    );
    // Each rack learns its role and writes the dhcpd.conf the maas-rack charm reads.
    wait_rack_log(&rack, "the primary learns it serves DHCP", |l| {
        l["dhcp"][0]["role"] == "primary" && l["dhcp_serving"] == true
    });
    wait_rack_log(&rack2, "the secondary learns it serves DHCP", |l| {
        l["dhcp"][0]["role"] == "secondary" && l["dhcp"][0]["peer"] == "rack-1"
    });
    let conf1 = read(&rack.path("/var/snap/maas/common/maas/dhcpd.conf"));
    assert!(
        conf1.contains("shared-network vlan-5001")
            && conf1.contains("primary;")
            && conf1.contains("peer address rack-2;"),
        "{conf1}"
    );
    assert!(conf1.contains("range 10.77.0.100 10.77.0.150;"), "{conf1}");
    let conf2 = read(&rack2.path("/var/lib/maas/dhcpd.conf"));
    assert!(
        conf2.contains("secondary;") && conf2.contains("peer address rack-1;"),
        "{conf2}"
    );
    let o = rack.run_line("maas status");
    let dhcpd = stdout(&o)
        .lines()
        .find(|l| l.starts_with("dhcpd "))
        .unwrap_or_default()
        .to_string();
    assert!(
        dhcpd.contains("enabled") && dhcpd.contains("active"),
        "{}",
        stdout(&o)
    );
    let racks = json_out(&r.sb.run_line("maas admin rack-controllers read"));
    assert_eq!(racks.as_array().map(|a| a.len()), Some(2));
    // DHCP off: the racks drop their dhcpd.conf.
    assert_ok(&r.sb.run_line("maas admin vlan update 0 0 dhcp_on=false"));
    wait_for("dhcpd.conf removed", T, || {
        (!rack2.path("/var/lib/maas/dhcpd.conf").exists()).then_some(())
    });
    assert_ok(&r.sb.run_line("maas admin vlan update 0 0 dhcp_on=true"));

    // The region goes away: the rack logs failures; it comes back: the rack logs success again.
    regiond.stop();
    let lost = wait_rack_log(&rack, "the rack loses its connections", |l| {
        l["event"] == "connections" && l["ok"] == false && l["unix"].as_f64() > ok["unix"].as_f64()
    });
    wait_rack_log(&rack, "the rack cannot fetch /MAAS/rpc/", |l| {
        l["event"] == "rpc-info"
            && l["ok"] == false
            && l["status"].is_null()
            && l["unix"].as_f64() > ok["unix"].as_f64()
    });
    let _regiond2 = r.spawn_regiond();
    let back = wait_rack_log(&rack, "the rack reaches its region again", |l| {
        l["event"] == "connected" && l["unix"].as_f64() > lost["unix"].as_f64()
    });
    assert_eq!(
        back["system_id"],
        sid.as_str(),
        "a rack keeps its system id"
    );
    assert!(back["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn regiond_follows_the_database_when_it_moves() {
    let pg1 = Postgres::start();
    let pg2 = Postgres::start();
    let r = Region::new("db-move", "region-m");
    assert_ok(&maas_init(&r.sb, "region", &r.url(), &pg1, "--force"));
    let _regiond = r.spawn_regiond();
    r.wait_up("region-m");
    wait_heartbeats(&pg1, "region-m", 1, "heartbeats on the first database");

    // Point regiond.conf at an empty database: no tables there, so the region answers 503.
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    let text = read(&conf_path).replace(
        &format!("database_port: {}", pg1.port),
        &format!("database_port: {}", pg2.port),
    );
    std::fs::write(&conf_path, text).unwrap();
    r.wait_503("503 on a database without tables");
    // Initialising against the new database (as the charm does when the DB relation changes)
    // creates the tables; the running region follows without a restart.
    assert_ok(&maas_init(&r.sb, "region", &r.url(), &pg2, "--force"));
    r.wait_up("region-m");
    wait_heartbeats(&pg2, "region-m", 2, "heartbeats on the second database");

    // The database turns read-only (a primary demoted to standby): the region refuses it,
    // since it only accepts a writable primary, and comes back when it is writable again.
    let set_read_only = |on: bool| {
        let sql = if on {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        for q in [sql, "SELECT pg_reload_conf()"] {
            let o = pg2.psql(q);
            assert!(o.status.success(), "{q}: {}", stderr(&o));
        }
    };
    set_read_only(true);
    r.wait_503("503 on a read-only database");
    set_read_only(false);
    wait_heartbeats_resume(
        &r,
        &pg2,
        "region-m",
        1,
        "heartbeats resume on the writable database",
    );

    // A frozen database (TCP still answered by the kernel): noticed by the heartbeat deadline.
    pg2.freeze(true);
    let stalled = r.wait_503("503 while the database is frozen");
    pg2.freeze(false);
    assert!(
        stalled.1.contains("Database is unavailable"),
        "{}",
        stalled.1
    );
    wait_heartbeats_resume(
        &r,
        &pg2,
        "region-m",
        1,
        "heartbeats resume after the freeze",
    );
}

/// `maas init` (src/maascli/snap.py, `cmd_init.handle`, `_finalize_init`): settings and the
/// secret's removal come before the database, `snap_mode` only after the migrations. A failed
/// first init leaves mode none (no regiond); a failed re-init leaves the old mode with the new
/// settings and no secret.
#[test]
fn a_failed_init_leaves_settings_no_secret_and_no_new_mode() {
    let r = Region::new("init-fails", "region-f");
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    let secret_path = r.sb.path("/var/snap/maas/common/maas/secret");
    let mode_path = r.sb.path("/var/snap/maas/common/snap_mode");
    std::fs::create_dir_all(secret_path.parent().unwrap()).unwrap();
    std::fs::write(&secret_path, "00112233445566778899aabbccddeeff\n").unwrap();

    // Nobody listens on the database port: the migrations fail and init exits 1.
    let dead = free_port();
    let uri = format!("postgres://maas:pw@127.0.0.1:{dead}/maasdb");
    let init_dead = format!(
        "maas init region --maas-url {} --database-uri {uri}",
        r.url()
    );
    // Off a terminal (as a charm runs it) MAAS's `migrate_db` runs dbupgrade with check_call:
    // dbupgrade's traceback reaches stderr (psycopg2's exception, then Django's raised from
    // it: `DatabaseErrorWrapper.__exit__`), then the CalledProcessError leaves `cmd_init`, a
    // `SnapCommand` whose exceptions maascli's `main` re-raises: a second traceback, exit 1
    // (src/maascli/snap.py `SnapCommand.__call__`, `migrate_db`; src/maascli/__init__.py).
    let o = r.sb.run_line(&init_dead);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let refused = format!("connection to server at \"127.0.0.1\", port {dead} failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n\n");
    assert!(
        err.starts_with("Traceback (most recent call last):\n"),
        "{err}"
    );
    assert!(
        err.contains(&format!("\npsycopg2.OperationalError: {refused}\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\ndjango.db.utils.OperationalError: {refused}Traceback (most recent call last):\n"
        )),
        "{err}"
    );
    assert!(
        err.ends_with("\n    raise CalledProcessError(retcode, cmd)\nsubprocess.CalledProcessError: Command '['/snap/maas/current/bin/maas-region', 'dbupgrade']' returned non-zero exit status 1.\n"),
        "{err}"
    );
    assert!(
        !err.contains("usage:") && !err.contains("maas: error:"),
        "{err}"
    );
    assert_eq!(
        err.matches("Traceback (most recent call last):").count(),
        3,
        "{err}"
    );
    assert!(stdout(&o).contains("Performing database migrations"));
    let conf: serde_yaml::Value = serde_yaml::from_str(&read(&conf_path)).unwrap();
    assert_eq!(conf["database_port"].as_u64(), Some(dead as u64));
    assert_eq!(conf["maas_url"].as_str(), Some(r.url().as_str()));
    assert!(!secret_path.exists(), "init deletes the secret first");
    assert!(!mode_path.exists(), "no snap_mode after failed migrations");
    let o = r.sb.run_line("maas status");
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(1), "MAAS is not configured\n")
    );

    // The database is there now: the same init (no --force needed: the mode is still none)
    // migrates and sets the mode; regiond then writes the secret.
    let pg = Postgres::start();

    // A wrong password: the server's FATAL, in libpq's words, through the same two
    // tracebacks; the password itself appears nowhere.
    let o = r.sb.run_line(&format!(
        "maas init region --maas-url {} --database-uri postgres://maas:wrong-pw-x@127.0.0.1:{}/maasdb",
        r.url(),
        pg.port
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("\ndjango.db.utils.OperationalError: connection to server at \"127.0.0.1\", port {} failed: FATAL:  password authentication failed for user \"maas\"\n\nTraceback (most recent call last):\n", pg.port)),
        "{err}"
    );
    assert!(err.ends_with("returned non-zero exit status 1.\n"), "{err}");
    assert!(
        !err.contains("wrong-pw-x") && !stdout(&o).contains("wrong-pw-x"),
        "{err}"
    );
    assert!(!mode_path.exists(), "no snap_mode after failed migrations");

    let o = maas_init(&r.sb, "region", &r.url(), &pg, "");
    assert_ok(&o);
    assert!(stdout(&o).contains("Performing database migrations"));
    assert_eq!(read_trimmed(&mode_path), "region");
    let mut regiond = r.spawn_regiond();
    let secret = wait_secret(&r.sb, "regiond writes the shared secret");
    regiond.stop();

    // A forced re-init against a database that is gone: new settings, no secret, and the
    // mode it had (MAAS only writes snap_mode after success).
    let o = r.sb.run_line(&format!("{init_dead} --force"));
    assert_fails_with(&o, 1, "Connection refused");
    assert!(stdout(&o).contains("Stopping services"), "{}", stdout(&o));
    let conf: serde_yaml::Value = serde_yaml::from_str(&read(&conf_path)).unwrap();
    assert_eq!(conf["database_port"].as_u64(), Some(dead as u64));
    assert!(!secret_path.exists(), "re-init deletes the secret");
    assert_eq!(read_trimmed(&mode_path), "region");

    // Back on the database that has tables: no migrations, and the database's secret again.
    let o = maas_init(&r.sb, "region", &r.url(), &pg, "--force");
    assert_ok(&o);
    assert!(!stdout(&o).contains("migrations"), "{}", stdout(&o));
    let _regiond = r.spawn_regiond();
    assert_eq!(wait_secret(&r.sb, "regiond writes it again"), secret);
}

/// Deb: `maas-region dbupgrade` migrates and writes no file
/// (src/maasserver/management/commands/dbupgrade.py); regiond writes the secret at start-up
/// (src/maasserver/start_up.py, `inner_start_up`).
#[test]
fn deb_dbupgrade_writes_no_secret_regiond_does() {
    let r = Region::new("deb-secret", "region-d");
    // No database yet: the exception escapes dbupgrade (one `ensure_connection`, no retry)
    // and Python prints its traceback, exit 1.
    let dead = free_port();
    assert_ok(&r.sb.run(&[
        "maas-region",
        "local_config_set",
        "--database-host",
        "127.0.0.1",
        "--database-port",
        &dead.to_string(),
    ]));
    let o = r.sb.run_line("maas-region dbupgrade");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("Traceback (most recent call last):\n")
            && err.ends_with(&format!("django.db.utils.OperationalError: connection to server at \"127.0.0.1\", port {dead} failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n\n")),
        "{err}"
    );

    let pg = Postgres::start();
    assert_ok(&r.sb.run(&[
        "maas-region",
        "local_config_set",
        "--maas-url",
        &r.url(),
        "--database-host",
        "127.0.0.1",
        "--database-port",
        &pg.port.to_string(),
        "--database-name",
        "maasdb",
        "--database-user",
        "maas",
        "--database-pass",
        &pg.password,
    ]));
    let o = r.sb.run_line("maas-region dbupgrade");
    assert_ok(&o);
    // The debs are MAAS 3.6: the migrations of every release up to it, then none left.
    assert!(
        stdout(&o).contains("  Applying maasserver.3_5... OK\n  Applying maasserver.3_6... OK\n")
            && !stdout(&o).contains("3_7"),
        "{}",
        stdout(&o)
    );
    let again = r.sb.run_line("maas-region dbupgrade");
    assert_ok(&again);
    assert!(
        stdout(&again).contains("No migrations to apply."),
        "{}",
        stdout(&again)
    );
    let secret_path = r.sb.path("/var/lib/maas/secret");
    assert!(
        !secret_path.exists(),
        "dbupgrade wrote {}",
        secret_path.display()
    );
    let _regiond = r.sb.spawn(&["regiond", "--flavor", "deb"], &[]);
    let secret = wait_for("regiond writes the deb's secret", T, || {
        std::fs::read_to_string(&secret_path).ok()
    });
    let in_db: String = pg
        .client()
        .query_one(
            "SELECT value FROM standin_config WHERE name = 'rpc_shared_secret'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(secret.trim(), in_db);
    assert_eq!(mode_of(&secret_path) & 0o037, 0);

    // The deb's createadmin: an exception that is not a CommandError is a traceback, exit 1.
    let o = r.sb.run(&[
        "maas-region",
        "createadmin",
        "--username",
        "",
        "--password",
        "pw",
        "--email",
        "",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("Traceback (most recent call last):\n")
            && err.ends_with("\nValueError: The given username must be set\n"),
        "{err}"
    );
    assert_ok(&r.sb.run(&[
        "maas-region",
        "createadmin",
        "--username",
        "admin",
        "--password",
        "pw",
        "--email",
        "",
    ]));
}

/// A `snap` on PATH that reports the maas snap at the version in `<sandbox>/version` (as the
/// hosts' snap reports the catalog channel's version, tests/CONTRACTS.md §2).
fn snap_reporting_version(sb: &Sandbox, version: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = sb.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(sb.dir.0.join("version"), version).unwrap();
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = list ] || exit 1\nv=$(cat {})\nprintf 'Name  Version  Rev  Tracking  Publisher  Notes\\nmaas  %s  1  %s/stable  local-model  -\\n' \"$v\" \"${{v%.*}}\"\n",
        sb.dir.0.join("version").display()
    );
    std::fs::write(bin.join("snap"), script).unwrap();
    std::fs::set_permissions(bin.join("snap"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn migrations(pg: &Postgres) -> Vec<String> {
    pg.client()
        .query("SELECT name FROM standin_migration ORDER BY name", &[])
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// The snap's post-refresh hook is its install hook, `maas migrate --configure`
/// (snap/hooks/install, src/maascli/snap.py `cmd_migrate`): nothing in `none` and `rack` mode,
/// the migrations of the refreshed-to MAAS in region modes. A refresh to an older MAAS runs it
/// too and it succeeds: Django applies only the migrations it has and undoes none, so the
/// newer schema stays (dbupgrade.py `Command.handle` has no version check). regiond reports
/// the version snapd has linked.
#[test]
fn post_refresh_migrations_run_in_region_modes_and_keep_a_newer_schema() {
    let pg = Postgres::start();
    let r0 = Region::new("post-refresh", "region-pr");
    let path = snap_reporting_version(&r0.sb, "3.5.8");
    let r = Region {
        sb: r0.sb.with("PATH", &path),
        ..r0
    };
    let set_version = |v: &str| std::fs::write(r.sb.dir.0.join("version"), v).unwrap();

    let o = r.sb.run_line("maas migrate --configure");
    assert_eq!(o.status.code(), Some(0), "mode none: the hook does nothing");
    let o = r.sb.run_line("maas migrate");
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(1), "MAAS is not configured")
    );
    std::fs::create_dir_all(r.sb.path("/var/snap/maas/common")).unwrap();
    std::fs::write(r.sb.path("/var/snap/maas/common/snap_mode"), "rack\n").unwrap();
    assert_eq!(
        r.sb.run_line("maas migrate --configure").status.code(),
        Some(0)
    );
    let o = r.sb.run_line("maas migrate");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).trim(),
        "Mode 'rack' is not connected to a database. No migrations to perform."
    );
    assert!(migrations(&pg).is_empty(), "no database was touched");

    assert_ok(&maas_init(&r.sb, "region", &r.url(), &pg, "--force"));
    assert_eq!(migrations(&pg), ["maasserver.3_4", "maasserver.3_5"]);
    let mut procs = r.spawn_regiond();
    assert_eq!(r.wait_up("region-pr")["version"], "3.5.8");
    procs.stop();

    // Refreshed to 3.6: the hook applies 3.6's migration.
    set_version("3.6.3");
    let o = r.sb.run_line("maas migrate --configure");
    assert_ok(&o);
    assert!(
        stdout(&o).contains("  Applying maasserver.3_6... OK"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        migrations(&pg),
        ["maasserver.3_4", "maasserver.3_5", "maasserver.3_6"]
    );
    let mut procs = r.spawn_regiond();
    assert_eq!(r.wait_up("region-pr")["version"], "3.6.3");
    procs.stop();

    // Refreshed back to 3.5: the hook succeeds and leaves 3.6's migration applied.
    set_version("3.5.8");
    let o = r.sb.run_line("maas migrate --configure");
    assert_ok(&o);
    assert!(
        stdout(&o).contains("No migrations to apply."),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        migrations(&pg),
        ["maasserver.3_4", "maasserver.3_5", "maasserver.3_6"]
    );

    // A database that cannot be reached fails the hook (and so the refresh) as migrate_db
    // does: dbupgrade's traceback, then `cmd_migrate`'s (a `SnapCommand`) for the
    // CalledProcessError, exit 1.
    pg.stop();
    let o = r.sb.run_line("maas migrate --configure");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("django.db.utils.OperationalError")
            && err.contains("line 983, in handle\n    sys.exit(migrate_db())\n")
            && err.ends_with("\nsubprocess.CalledProcessError: Command '['/snap/maas/current/bin/maas-region', 'dbupgrade']' returned non-zero exit status 1.\n"),
        "{err}"
    );
}

/// The TCP keepalive of every socket `pid` holds to `port` on loopback, as the kernel has it
/// (`getsockopt` on a copy of the descriptor, `pidfd_getfd`): on, idle, interval, count.
fn keepalives_to(pid: u32, port: u16) -> Vec<(bool, u32, u32, u32)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    // Columns: sl local rem st ... uid timeout inode; rem is HEXADDR:HEXPORT.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let rem_port = u16::from_str_radix(f.get(2)?.split(':').nth(1)?, 16).ok()?;
            // 01: ESTABLISHED.
            (rem_port == port && f.get(3)? == &"01").then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let get = |fd: libc::c_int, level: libc::c_int, opt: libc::c_int| -> u32 {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for writes of their sizes during the call.
        let r = unsafe {
            libc::getsockopt(
                fd,
                level,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt: {}", std::io::Error::last_os_error());
        v as u32
    };
    // SAFETY: plain system calls on integers; the descriptors they return are closed below.
    let pidfd =
        unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as libc::c_int;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let mut found = vec![];
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) else {
            continue;
        };
        if !inodes.iter().any(|i| i == inode) {
            continue;
        }
        let Ok(n) = e.file_name().to_string_lossy().parse::<libc::c_int>() else {
            continue;
        };
        // SAFETY: as above.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, n, 0) } as libc::c_int;
        if fd < 0 {
            continue; // closed meanwhile
        }
        found.push((
            get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE) != 0,
            get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        ));
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    // SAFETY: pidfd is ours.
    unsafe { libc::close(pidfd) };
    found
}

/// regiond's database connections carry the TCP keepalive regiond.conf gives, with MAAS's
/// defaults (15 s idle, 15 s between probes, 2 probes) when it gives none
/// (src/maasserver/config.py `RegionConfiguration`, djangosettings/settings.py
/// `_get_default_db_config`); a value MAAS's validator refuses keeps regiond from the database;
/// the listener tries again 3 s after losing its connection and after each failed attempt
/// (src/maasserver/listener.py `connectionLost`, `tryConnection`).
#[test]
fn regiond_keeps_alive_as_regiond_conf_says_and_its_listener_retries_every_3_s() {
    let pg = Postgres::start();
    let r = Region::new("keepalive", "region-k");
    assert_ok(&maas_init(&r.sb, "region", &r.url(), &pg, "--force"));
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    let conf = read(&conf_path);
    assert!(
        !conf.contains("keepalive"),
        "init writes no keepalive key: {conf}"
    );

    let mut procs = r.spawn_regiond();
    r.wait_up("region-k");
    let pid = procs.regiond.child.id();
    // The listener and the request connections (a heartbeat is one) at least.
    let seen = wait_for("regiond's connections to the database", T, || {
        Some(keepalives_to(pid, pg.port)).filter(|k| k.len() >= 2)
    });
    assert!(seen.iter().all(|k| *k == (true, 15, 15, 2)), "{seen:?}");
    procs.stop();

    // As an operator (or a charm) sets them: the keys in regiond.conf.
    std::fs::write(
        &conf_path,
        format!("{conf}database_keepalive_idle: 3\ndatabase_keepalive_interval: 1\ndatabase_keepalive_count: 4\n"),
    )
    .unwrap();
    let mut procs = r.spawn_regiond();
    r.wait_up("region-k");
    let pid = procs.regiond.child.id();
    let seen = wait_for("regiond's connections with the new keepalive", T, || {
        Some(keepalives_to(pid, pg.port)).filter(|k| k.len() >= 2)
    });
    assert!(seen.iter().all(|k| *k == (true, 3, 1, 4)), "{seen:?}");

    // The database goes: the listener reports the loss, then one attempt every 3 s.
    pg.stop();
    r.wait_503("503 once the listener lost its connection");
    let attempts = |out: &str| {
        out.matches("listener: Unable to connect to database")
            .count()
    };
    let (first, n) = wait_for("a first failed reconnection", T, || {
        let n = attempts(&procs.regiond.output());
        (n >= 1).then(|| (std::time::Instant::now(), n))
    });
    wait_for("three more failed reconnections", T, || {
        (attempts(&procs.regiond.output()) >= n + 3).then_some(())
    });
    // Three waits of 3 s; the 1.5 s allowed off is this test's own polling.
    let took = first.elapsed();
    assert!(
        took >= Duration::from_millis(7500),
        "three retries took {took:?}, MAAS waits 3 s before each"
    );
    let out = procs.regiond.output();
    assert!(
        out.contains("listener: Connection lost") || out.contains("listener: Connection closed"),
        "{out}"
    );
    pg.pg_ctl_start();
    wait_heartbeats_resume(&r, &pg, "region-k", 1, "heartbeats resume");
    procs.stop();

    // A keepalive value MAAS's Int validator refuses: regiond does not reach the database.
    std::fs::write(&conf_path, format!("{conf}database_keepalive_idle: soon\n")).unwrap();
    let regiond = r.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    wait_for("regiond names the refused key", T, || {
        regiond
            .output()
            .contains("database_keepalive_idle: Please enter an integer value")
            .then_some(())
    });
}

#[test]
fn a_region_restored_onto_another_host_with_its_maas_id_is_the_same_controller() {
    let pg = Postgres::start();
    let first = Region::new("region-restore-a", "region-old");
    assert_ok(&maas_init(
        &first.sb,
        "region",
        &first.url(),
        &pg,
        "--force",
    ));
    let regiond = first.spawn_regiond();
    first.wait_up("region-old");
    let secret = wait_secret(&first.sb, "the first regiond writes the shared secret");
    let id = read_trimmed(&first.sb.path("/var/snap/maas/common/maas/maas_id"));
    drop(regiond);

    // A fresh host given the first one's maas_id before its init (what maas-region's restore
    // action does) against the same database.
    let second = Region::new("region-restore-b", "region-new");
    let id_path = second.sb.path("/var/snap/maas/common/maas/maas_id");
    std::fs::create_dir_all(id_path.parent().unwrap()).unwrap();
    std::fs::write(&id_path, format!("{id}\n")).unwrap();
    assert_ok(&maas_init(
        &second.sb,
        "region",
        &second.url(),
        &pg,
        "--force",
    ));
    assert_eq!(read_trimmed(&id_path), id, "maas init keeps maas_id");
    let _regiond = second.spawn_regiond();
    let v = second.wait_up("region-new");
    assert_eq!(v["system_id"], id.as_str());
    assert_eq!(
        wait_secret(&second.sb, "the second regiond writes the shared secret"),
        secret
    );
    let rows: Vec<String> = pg
        .client()
        .query(
            "SELECT hostname || ' ' || system_id FROM standin_region ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![format!("region-new {id}")]);
}

/// An API error as MAAS's CLI reports it: the body on stdout, nothing on stderr, exit 2
/// (src/maascli/api.py `Action.__call__`, utils.py `print_response_content`).
fn assert_api_error(o: &std::process::Output, needle: &str) {
    assert_eq!(
        (o.status.code(), stderr(o).as_str()),
        (Some(2), ""),
        "{}",
        stdout(o)
    );
    assert!(stdout(o).contains(needle), "{}", stdout(o));
}
