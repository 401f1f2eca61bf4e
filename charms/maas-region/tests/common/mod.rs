//! Shared fixtures: relations as postgresql-ha, keepalived-vip and maas-rack write them, and a
//! host as MAAS leaves it after `maas init`.
#![allow(dead_code)]

use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Harness, MachineState, Output, Relation, Secret, State};
use charm_lib::FileOptions;

pub const PEERS: u32 = 1;
pub const DB: u32 = 2;
pub const VIP: u32 = 3;
pub const RPC: u32 = 4;
pub const DATABASE: u32 = 5;

pub const DB_PASSWORD: &str = "Pa55-w0rd/with:odd@chars";
pub const DB_SECRET: &str = "secret:pgcreds0001";
pub const SHARED_SECRET: &str = "5f3c1e0a9b8d7c6e5f4a3b2c1d0e9f8a";
pub const SNAP_CONF: &str = "/var/snap/maas/current/regiond.conf";
pub const DEB_CONF: &str = "/etc/maas/regiond.conf";
pub const SNAP_SECRET: &str = "/var/snap/maas/common/maas/secret";
pub const DEB_SECRET: &str = "/var/lib/maas/secret";
pub const SNAP_MODE: &str = "/var/snap/maas/common/snap_mode";
pub const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";

pub fn harness(unit: u32) -> Harness {
    Harness::new(env!("CARGO_MANIFEST_DIR"), maas_region::handle).unit(unit)
}

/// The peer relation with the other units `others` (number, address) that published their data.
pub fn peers(others: &[(u32, &str)]) -> Relation {
    let mut r = Relation::peer(PEERS, "cluster");
    for (n, addr) in others {
        let host = format!("region-{n}");
        r = r.remote_unit(*n, &[("address", addr), ("hostname", &host)]);
    }
    r
}

/// `db` as postgresql-ha answers a client that asked for secrets, allowing `allowed`.
pub fn pgsql(host: &str, allowed: &str) -> Relation {
    Relation::new(DB, "db", "postgresql-ha").remote_unit(
        0,
        &[
            ("host", host),
            ("port", "5432"),
            ("database", "maas"),
            ("user", "maas"),
            ("secret-user", DB_SECRET),
            ("allowed-units", allowed),
            ("state", "master"),
            ("version", "16"),
        ],
    )
}

pub fn db_secret() -> Secret {
    Secret::granted(
        DB_SECRET,
        &[("username", "maas"), ("password", DB_PASSWORD)],
    )
}

pub fn vip(addr: &str) -> Relation {
    Relation::new(VIP, "vip", "keepalived-vip").remote_unit(
        0,
        &[
            ("vips", addr),
            ("vip-cidrs", &format!("{addr}/24")),
            ("state", "held"),
        ],
    )
}

pub fn rpc() -> Relation {
    Relation::new(RPC, "rpc", "maas-rack")
        .remote_unit(0, &[("hostname", "rack-a")])
        .remote_unit(1, &[("hostname", "rack-b"), ("system_id", "sys-rack-b")])
}

/// The encoded database URI MAAS gets for host `host`.
pub fn uri(host: &str) -> String {
    format!("postgres://maas:Pa55-w0rd%2Fwith%3Aodd%40chars@{host}:5432/maas")
}

/// regiond.conf as MAAS writes it, with the database keepalive the charm put there before
/// (`maas init` and `local_config_set` keep the keys they do not set).
pub fn regiond_conf(db_host: &str, url: &str) -> String {
    format!(
        "{}{KEEPALIVE_KEYS}",
        regiond_conf_without_keepalive(db_host, url)
    )
}

/// The keepalive keys the charm writes into regiond.conf.
pub const KEEPALIVE_KEYS: &str =
    "database_keepalive_idle: 3\ndatabase_keepalive_interval: 1\ndatabase_keepalive_count: 3\n";

/// regiond.conf as MAAS writes it on its own (a unit from before the charm set the keepalive).
pub fn regiond_conf_without_keepalive(db_host: &str, url: &str) -> String {
    format!("database_host: {db_host}\ndatabase_name: maas\ndatabase_pass: '{DB_PASSWORD}'\ndatabase_port: 5432\ndatabase_user: maas\nmaas_url: {url}\n")
}

/// A unit where the charm already installed the snap and haproxy.
pub fn installed_snap(st: State) -> State {
    let mut st = st;
    st.stored.insert("installed-method".into(), "snap".into());
    st.stored.insert("snap-channel".into(), "3.6/stable".into());
    st.stored.insert("snap-held".into(), "yes".into());
    st.stored.insert("haproxy-installed".into(), "yes".into());
    st.machine.snaps.insert("maas".into(), "3.6/stable".into());
    st
}

/// What MAAS leaves on the host after `maas init region` against `db_host` with `url`.
pub fn snap_initialised(mut m: MachineState, db_host: &str, url: &str) -> MachineState {
    m.snaps.insert("maas".into(), "3.6/stable".into());
    m.packages.insert("haproxy".into());
    m.with_file(
        SNAP_CONF,
        &regiond_conf(db_host, url),
        FileOptions::new("root", "root", 0o600),
    )
    .with_file(
        SNAP_SECRET,
        &format!("{SHARED_SECRET}\n"),
        FileOptions::root(0o640),
    )
    .with_file(
        "/var/snap/maas/common/snap_mode",
        "region\n",
        FileOptions::root(0o644),
    )
    .respond(
        &["snap", "services", "maas"],
        CmdOutput::ok("Service      Startup  Current  Notes\nmaas.pebble  enabled  active   -\n"),
    )
}

/// A unit whose `maas init region` against `db_host` with `url` exited 0: MAAS's files, and
/// the charm's record of that init.
pub fn snap_initialised_unit(mut st: State, db_host: &str, url: &str) -> State {
    st.machine = snap_initialised(st.machine, db_host, url);
    st.stored.insert(
        "init-done".into(),
        maas_region::maas::init_record("region", &db_settings(db_host)),
    );
    st
}

/// The database settings the `db` relation offers for `db_host`.
pub fn db_settings(db_host: &str) -> maas_region::maas::DbSettings {
    maas_region::maas::DbSettings {
        host: db_host.into(),
        port: 5432,
        name: "maas".into(),
        user: "maas".into(),
        password: DB_PASSWORD.into(),
    }
}

/// regiond writes the shared secret at start-up, soon after init: the leader's bounded wait
/// for the file sees it.
pub fn secret_appears(m: MachineState) -> MachineState {
    m.respond(&["timeout"], CmdOutput::ok(format!("{SHARED_SECRET}\n")))
}

pub fn hostname(m: MachineState, n: u32) -> MachineState {
    m.respond(&["hostname"], CmdOutput::ok(format!("region-{n}\n")))
}

/// The leader of a single-unit application with a ready database, as the first hook sees it
/// (its regiond will write the shared secret soon after it starts).
pub fn fresh_leader() -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[]))
        .with_relation(pgsql("10.0.0.5", "maas-region/0"))
        .with_secret(db_secret());
    st.machine = secret_appears(hostname(st.machine, 0));
    st
}

/// Runs one update-status so that haproxy is rendered and running, as after earlier hooks.
pub fn settle(h: &Harness, st: State) -> State {
    let out = h.run_ok(charm_lib::testing::Trigger::UpdateStatus, &st);
    out.state
}

/// Whether any relation databag of the state contains `needle`.
pub fn in_relation_data(st: &State, needle: &str) -> bool {
    st.relations.iter().any(|r| {
        r.local_app_data
            .values()
            .chain(r.local_unit_data.values())
            .any(|v| v.contains(needle))
    })
}

/// The commands that change the host (everything but queries, and `systemctl enable` of a
/// service the charm keeps enabled, which changes nothing when it already is).
pub fn mutating(out: &Output) -> Vec<String> {
    out.command_lines()
        .into_iter()
        .filter(|c| {
            !(c == "hostname"
                || c.starts_with("timeout ")
                || c.starts_with("systemctl is-active")
                || c == "snap services maas"
                || c == "systemctl enable haproxy"
                || c == "systemctl enable maas-regiond"
                || c == "systemctl enable maas-region-cert-metrics")
        })
        .collect()
}

/// The state without its command history, to compare two runs.
pub fn settled(st: &State) -> State {
    let mut s = st.clone();
    s.machine.commands.clear();
    s
}

/// Runs the real `haproxy -c` on a file the charm wrote (warnings count as refusals).
pub fn assert_haproxy_accepts(cfg: &str) {
    let path = std::env::temp_dir().join(format!(
        "maas-region-it-{}-{:x}.cfg",
        std::process::id(),
        cfg.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64))
    ));
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(&path)
        .output()
        .expect("haproxy is installed on the build machine");
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("WARNING"),
        "haproxy -c refused:\n{text}\n{cfg}"
    );
}
