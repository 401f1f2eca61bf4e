//! regiond and rackd against a throwaway PostgreSQL on loopback: the version endpoint,
//! heartbeats, users and API keys, the API the charms call, rack registration with good and
//! bad secrets, and what racks and regions see when the other side or the database goes away.

mod common;
use common::*;
use serde_json::Value;
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

fn rack_log(sb: &Sandbox) -> Vec<Value> {
    std::fs::read_to_string(sb.path("/var/log/maas/rackd-standin.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn region_init_heartbeats_users_and_api() {
    let pg = Postgres::start();
    let r = Region::new("region-api", "region-a");
    let o = r.sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        &r.url(),
        "--database-uri",
        &pg.uri(),
        "--force",
        "--num-workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("migrations"), "{}", stdout(&o));

    // Files MAAS keeps, with MAAS's modes.
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    assert_eq!(mode_of(&conf_path), 0o640);
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    assert_eq!(conf["maas_url"].as_str(), Some(r.url().as_str()));
    assert_eq!(conf["database_host"].as_str(), Some("127.0.0.1"));
    assert_eq!(conf["database_port"].as_u64(), Some(pg.port as u64));
    assert_eq!(conf["database_name"].as_str(), Some("maasdb"));
    assert_eq!(conf["database_user"].as_str(), Some("maas"));
    assert_eq!(conf["database_pass"].as_str(), Some(pg.password.as_str()));
    assert_eq!(conf["num_workers"].as_u64(), Some(2));
    let secret_path = r.sb.path("/var/snap/maas/common/maas/secret");
    let secret = std::fs::read_to_string(&secret_path)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(mode_of(&secret_path) & 0o037, 0);
    assert_eq!(
        std::fs::read_to_string(r.sb.path("/var/snap/maas/common/snap_mode"))
            .unwrap()
            .trim(),
        "region"
    );
    assert!(r
        .sb
        .path("/var/snap/maas/current/http/regiond.nginx.conf")
        .exists());
    assert!(r.sb.path("/var/snap/maas/common/maas/maas_id").exists());
    let uuid = std::fs::read_to_string(r.sb.path("/var/snap/maas/common/maas/maas_uuid")).unwrap();
    assert_eq!(uuid.trim().len(), 36, "{uuid}");
    // The secret is the database's: a second region initialised elsewhere gets the same one.
    let r2 = Region::new("region-api-2", "region-b");
    let o = r2.sb.run(&[
        "maas",
        "init",
        "region+rack",
        "--maas-url",
        &r.url(),
        "--database-uri",
        &pg.uri(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("migrations"),
        "tables exist: no migration expected"
    );
    assert_eq!(
        std::fs::read_to_string(r2.sb.path("/var/snap/maas/common/maas/secret"))
            .unwrap()
            .trim(),
        secret
    );
    assert_eq!(
        std::fs::read_to_string(r2.sb.path("/var/snap/maas/common/maas/maas_uuid")).unwrap(),
        uuid
    );
    assert!(r2.sb.path("/var/snap/maas/current/rackd.conf").exists());

    // regiond: all three ports, the version names the host, heartbeats appear.
    let _regiond = r.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    let v = r.wait_up("region-a");
    assert_eq!(v["standin"], true);
    for port in [r.internal, r.temporal] {
        let (s, _) = get(&format!("http://127.0.0.1:{port}/MAAS/api/2.0/version/")).unwrap();
        assert_eq!(s, 200);
    }
    let (s, page) = get(&format!("{}/", r.url())).unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("region-a"), "{page}");
    wait_for("three heartbeat rows", T, || {
        (heartbeats(&pg, "region-a") >= 3).then_some(())
    });

    // createadmin and apikey through the API (loopback test endpoints).
    let (s, b) = post_form(
        &format!("{}/standin/createadmin", r.url()),
        "username=admin&password=pw&email=admin%40example.com",
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = post_form(
        &format!("{}/standin/createadmin", r.url()),
        "username=admin&password=pw&email=other%40example.com",
    )
    .unwrap();
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "A user with the email other@example.com already exists."
        ),
        "MAAS words a username clash so too"
    );
    let (s, b) = post_form(
        &format!("{}/standin/createadmin", r.url()),
        "username=admin2&password=pw&email=ADMIN%40example.com",
    )
    .unwrap();
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            "A user with the email ADMIN@example.com already exists."
        )
    );
    let (s, b) = get(&format!("{}/standin/apikey?username=admin", r.url())).unwrap();
    assert_eq!(s, 200);
    let keys: Vec<String> = serde_json::from_str(&b).unwrap();
    assert_eq!(keys.len(), 1);

    // The same through the CLI, as the charm's actions run it.
    let o = r.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "ops",
        "--password",
        "pw",
        "--email",
        "ops@example.com",
        "--ssh-import",
        "lp:ops",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "ops2",
        "--password",
        "pw",
        "--email",
        "ops@example.com",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "CommandError: A user with the email ops@example.com already exists.\n"
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
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not in a correct format"),
        "{}",
        stderr(&o)
    );
    let o = r.sb.run(&[
        "maas",
        "createadmin",
        "--username",
        "ops3",
        "--email",
        "ops3@example.com",
    ]);
    assert_eq!(o.status.code(), Some(1), "no password: MAAS would prompt");
    let o = r.sb.run(&["maas", "apikey", "--username", "admin"]);
    assert_eq!(stdout(&o).trim(), keys[0]);
    let o = r.sb.run(&["maas", "apikey", "--username", "nobody"]);
    assert_eq!(o.status.code(), Some(1));

    // login, then the API calls the charms make.
    let o = r.sb.run(&[
        "maas",
        "login",
        "admin",
        &format!("{}/api/2.0/", r.url()),
        &keys[0],
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r.sb.run(&[
        "maas",
        "login",
        "bad",
        &r.url(),
        "aaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbb:cccccccccccccccccccccccccccccccc",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = r.sb.run(&[
        "maas",
        "login",
        "local",
        &format!("http://localhost:{}/MAAS/api/2.0/", r.api),
        &keys[0],
    ]);
    assert!(
        o.status.success(),
        "localhost (maybe ::1 first) must reach an IPv4 listener: {}",
        stderr(&o)
    );
    let o = r.sb.run(&["maas", "logout", "local"]);
    assert!(o.status.success());
    let o = r.sb.run(&["maas", "admin", "version", "read"]);
    let v: Value = json_out(&o);
    assert_eq!(v["hostname"], "region-a");
    let o = r.sb.run(&[
        "maas",
        "admin",
        "maas",
        "set-config",
        "name=prometheus_enabled",
        "value=true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r.sb.run(&[
        "maas",
        "admin",
        "maas",
        "get-config",
        "name=prometheus_enabled",
    ]);
    assert!(stdout(&o).contains("true"), "{}", stdout(&o));
    let o = r.sb.run(&[
        "maas",
        "admin",
        "maas",
        "set-config",
        "name=no_such_setting",
        "value=1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a valid config setting"),
        "{}",
        stderr(&o)
    );
    let o = r.sb.run(&["maas", "admin", "region-controllers", "read"]);
    let v: Value = json_out(&o);
    assert_eq!(v[0]["hostname"], "region-a");
    let o = r.sb.run(&["maas", "admin", "machines", "read"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid choice: 'machines'"),
        "{}",
        stderr(&o)
    );
    let o = r.sb.run(&["maas", "admin", "vlan", "update", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("required: vid"), "{}", stderr(&o));
    let o = r.sb.run(&["maas", "nosuchprofile", "version", "read"]);
    assert_eq!(o.status.code(), Some(2));

    // A second region on the same database sees the same MAAS: same users, keys, settings.
    let _regiond_b = r2.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    r2.wait_up("region-b");
    let o = r2.sb.run(&["maas", "login", "admin", &r2.url(), &keys[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r2.sb.run(&[
        "maas",
        "admin",
        "maas",
        "get-config",
        "name=prometheus_enabled",
    ]);
    assert!(stdout(&o).contains("true"), "{}", stdout(&o));
    let regions = wait_for("both regions listed", T, || {
        let o = r2.sb.run(&["maas", "admin", "region-controllers", "read"]);
        let v = json_out(&o);
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
    wait_for("503 without a database", T, || {
        r.version().filter(|(s, _)| *s == 503)
    });
    pg.pg_ctl_start();
    r.wait_up("region-a");
    let before = heartbeats(&pg, "region-a");
    wait_for("heartbeats resume", T, || {
        (heartbeats(&pg, "region-a") > before + 1).then_some(())
    });
}

#[test]
fn racks_register_with_the_secret_and_follow_their_region() {
    let pg = Postgres::start();
    let r = Region::new("rack-region", "region-r");
    let o = r.sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        &r.url(),
        "--database-uri",
        &pg.uri(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = std::fs::read_to_string(r.sb.path("/var/snap/maas/common/maas/secret"))
        .unwrap()
        .trim()
        .to_string();
    let mut regiond = r.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    r.wait_up("region-r");

    // A rack with the wrong secret is refused, and the region records it.
    let rack = Sandbox::new("rack")
        .with("MAAS_STANDIN_HOSTNAME", "rack-1")
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.5/24");
    let wrong = "ffffffffffffffffffffffffffffffff";
    let o = rack.run(&[
        "maas",
        "init",
        "rack",
        "--maas-url",
        &r.url(),
        "--secret",
        wrong,
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _rackd = rack.spawn(&["rackd", "--flavor", "snap"], &[]);
    wait_for("a refused registration in the rack log", T, || {
        rack_log(&rack)
            .into_iter()
            .find(|l| l["ok"] == false && l["status"] == 403 && l["refused"] == true)
    });
    let refused = pg
        .client()
        .query_one(
            "SELECT count(*) FROM standin_rack_event WHERE hostname = 'rack-1' AND NOT accepted",
            &[],
        )
        .unwrap();
    assert!(refused.get::<_, i64>(0) >= 1);
    let log_text = std::fs::read_to_string(rack.path("/var/log/maas/rackd-standin.log")).unwrap();
    assert!(
        !log_text.contains(wrong) && !log_text.contains(&secret),
        "the secret must never be logged"
    );

    // With the right secret the rack registers, gets a system id, and its subnet is learnt.
    let o = rack.run(&["maas", "config", "--secret", &secret]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ok = wait_for("a successful registration", T, || {
        rack_log(&rack).into_iter().find(|l| l["ok"] == true)
    });
    assert_eq!(ok["region"], "region-r");
    let sid = ok["system_id"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(rack.path("/var/snap/maas/common/maas/maas_id"))
            .unwrap()
            .trim(),
        sid
    );

    // DHCP HA through the API, as maas-region's configure-dhcp action does it.
    let key = {
        let o = r.sb.run(&[
            "maas",
            "createadmin",
            "--username",
            "admin",
            "--password",
            "pw",
            "--email",
            "a@example.com",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&r.sb.run(&["maas", "apikey", "--username", "admin"]))
            .trim()
            .to_string()
    };
    assert!(r
        .sb
        .run(&["maas", "login", "admin", &r.url(), &key])
        .status
        .success());
    let o = r.sb.run(&["maas", "admin", "rack-controllers", "read"]);
    let racks: Value = json_out(&o);
    assert_eq!(racks[0]["hostname"], "rack-1");
    assert_eq!(racks[0]["system_id"], sid.as_str());
    let o = r.sb.run(&["maas", "admin", "subnets", "read"]);
    let subnets: Value = json_out(&o);
    assert_eq!(subnets[0]["cidr"], "10.77.0.0/24");
    let o = r.sb.run(&[
        "maas",
        "admin",
        "vlan",
        "update",
        "0",
        "0",
        "primary_rack=rack-1",
        "dhcp_on=true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("dynamic IP range"), "{}", stderr(&o));
    let o = r.sb.run(&[
        "maas",
        "admin",
        "ipranges",
        "create",
        "type=dynamic",
        "start_ip=10.77.0.100",
        "end_ip=10.77.0.150",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r.sb.run(&[
        "maas",
        "admin",
        "ipranges",
        "create",
        "type=dynamic",
        "start_ip=10.77.0.140",
        "end_ip=10.77.0.160",
    ]);
    assert_eq!(o.status.code(), Some(2), "overlapping range");
    let o = r.sb.run(&[
        "maas",
        "admin",
        "vlan",
        "update",
        "0",
        "0",
        "primary_rack=rack-1",
        "secondary_rack=rack-1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "primary and secondary must differ"
    );
    // A second rack (deb packaging) to be the secondary, as the seed's DHCP HA has it.
    let rack2 = Sandbox::new("rack2")
        .with("MAAS_STANDIN_HOSTNAME", "rack-2")
        .with("MAAS_STANDIN_INTERFACES", "10.77.0.6/24");
    let o = rack2.run(&[
        "maas-rack",
        "register",
        "--url",
        &r.url(),
        "--secret",
        &secret,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _rackd2 = rack2.spawn(&["rackd", "--flavor", "deb"], &[]);
    let ok2 = wait_for("the second rack registers", T, || {
        rack_log(&rack2).into_iter().find(|l| l["ok"] == true)
    });
    let sid2 = ok2["system_id"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(rack2.path("/var/lib/maas/maas_id"))
            .unwrap()
            .trim(),
        sid2
    );
    let o = r.sb.run(&[
        "maas",
        "admin",
        "vlan",
        "update",
        "0",
        "0",
        "primary_rack=rack-1",
        &format!("secondary_rack={sid2}"),
        "dhcp_on=true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = r.sb.run(&["maas", "admin", "vlan", "read", "0", "0"]);
    let vlan: Value = json_out(&o);
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
    wait_for("the primary learns it serves DHCP", T, || {
        rack_log(&rack)
            .into_iter()
            .rev()
            .find(|l| l["dhcp"][0]["role"] == "primary" && l["dhcp_serving"] == true)
    });
    wait_for("the secondary learns it serves DHCP", T, || {
        rack_log(&rack2)
            .into_iter()
            .rev()
            .find(|l| l["dhcp"][0]["role"] == "secondary" && l["dhcp"][0]["peer"] == "rack-1")
    });
    let conf1 =
        std::fs::read_to_string(rack.path("/var/snap/maas/common/maas/dhcpd.conf")).unwrap();
    assert!(
        conf1.contains("shared-network vlan-5001")
            && conf1.contains("primary;")
            && conf1.contains("peer address rack-2;"),
        "{conf1}"
    );
    assert!(conf1.contains("range 10.77.0.100 10.77.0.150;"), "{conf1}");
    let conf2 = std::fs::read_to_string(rack2.path("/var/lib/maas/dhcpd.conf")).unwrap();
    assert!(
        conf2.contains("secondary;") && conf2.contains("peer address rack-1;"),
        "{conf2}"
    );
    let o = rack.run(&["maas", "status"]);
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
    let o = r.sb.run(&["maas", "admin", "rack-controllers", "read"]);
    let racks: Value = json_out(&o);
    assert_eq!(racks.as_array().map(|a| a.len()), Some(2));
    // DHCP off: the racks drop their dhcpd.conf.
    let o =
        r.sb.run(&["maas", "admin", "vlan", "update", "0", "0", "dhcp_on=false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("dhcpd.conf removed", T, || {
        (!rack2.path("/var/lib/maas/dhcpd.conf").exists()).then_some(())
    });
    let o =
        r.sb.run(&["maas", "admin", "vlan", "update", "0", "0", "dhcp_on=true"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The region goes away: the rack logs failures; it comes back: the rack logs success again.
    regiond.stop();
    let lost = wait_for("the rack notices its region is gone", T, || {
        rack_log(&rack).into_iter().find(|l| {
            l["ok"] == false && l["status"].is_null() && l["unix"].as_f64() > ok["unix"].as_f64()
        })
    });
    let _regiond2 = r.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    let back = wait_for("the rack reaches its region again", T, || {
        rack_log(&rack)
            .into_iter()
            .find(|l| l["ok"] == true && l["unix"].as_f64() > lost["unix"].as_f64())
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
    let o = r.sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        &r.url(),
        "--database-uri",
        &pg1.uri(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _regiond = r.sb.spawn(&["regiond", "--flavor", "snap"], &[]);
    r.wait_up("region-m");
    wait_for("heartbeats on the first database", T, || {
        (heartbeats(&pg1, "region-m") >= 1).then_some(())
    });

    // Point regiond.conf at an empty database: no tables there, so the region answers 503.
    let conf_path = r.sb.path("/var/snap/maas/current/regiond.conf");
    let text = std::fs::read_to_string(&conf_path).unwrap().replace(
        &format!("database_port: {}", pg1.port),
        &format!("database_port: {}", pg2.port),
    );
    std::fs::write(&conf_path, text).unwrap();
    wait_for("503 on a database without tables", T, || {
        r.version().filter(|(s, _)| *s == 503)
    });
    // Initialising against the new database (as the charm does when the DB relation changes)
    // creates the tables; the running region follows without a restart.
    let o = r.sb.run(&[
        "maas",
        "init",
        "region",
        "--maas-url",
        &r.url(),
        "--database-uri",
        &pg2.uri(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    r.wait_up("region-m");
    wait_for("heartbeats on the second database", T, || {
        (heartbeats(&pg2, "region-m") >= 2).then_some(())
    });

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
    wait_for("503 on a read-only database", T, || {
        r.version().filter(|(s, _)| *s == 503)
    });
    set_read_only(false);
    r.wait_up("region-m");
    let before = heartbeats(&pg2, "region-m");
    wait_for("heartbeats resume on the writable database", T, || {
        (heartbeats(&pg2, "region-m") > before).then_some(())
    });

    // A frozen database (TCP still answered by the kernel): noticed by the heartbeat deadline.
    pg2.freeze(true);
    let stalled = wait_for("503 while the database is frozen", T, || {
        r.version().filter(|(s, _)| *s == 503)
    });
    pg2.freeze(false);
    assert!(
        stalled.1.contains("Database is unavailable"),
        "{}",
        stalled.1
    );
    r.wait_up("region-m");
    let before = heartbeats(&pg2, "region-m");
    wait_for("heartbeats resume after the freeze", T, || {
        (heartbeats(&pg2, "region-m") > before).then_some(())
    });
}
