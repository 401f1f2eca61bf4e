//! Shared fixtures: a host with PostgreSQL 15 installed, a bootstrapped application, scripted
//! Patroni and etcd answers.
#![allow(dead_code)]

use charm_lib::testing::{Harness, MachineState, Output, Relation, Secret, State};
use charm_lib::{CmdOutput, FileOptions};
use std::collections::BTreeMap;

pub const SYS_SECRET: &str = "secret:sys-passwords-fixture";
pub const CA_SECRET: &str = "secret:tls-ca-fixture";
pub const SUPER_PW: &str = "SuperSecretPw0123456789abcdef";
pub const REPL_PW: &str = "ReplSecretPw0123456789abcdef";
pub const REWIND_PW: &str = "RewindSecretPw0123456789abcd";
pub const REST_PW: &str = "RestSecretPw0123456789abcdef";

pub fn harness() -> Harness {
    Harness::new(env!("CARGO_MANIFEST_DIR"), postgresql_ha::handle)
}

pub fn unit_harness(n: u32) -> Harness {
    harness().unit(n)
}

/// A host with PostgreSQL 15's binaries and nothing of the charm's yet.
pub fn host_with_postgres() -> MachineState {
    MachineState::default().with_file(
        "/usr/lib/postgresql/15/bin/postgres",
        "",
        FileOptions::root(0o755),
    )
}

/// A host where the package install already happened, its etcd member in a healthy cluster.
pub fn installed_host() -> MachineState {
    host_with_postgres()
        .with_file(
            "/opt/postgresql-ha/installed",
            "patroni==4.1.5\npackages=2\n",
            FileOptions::root(0o644),
        )
        .respond(
            &[
                "etcdctl",
                "--endpoints=https://127.0.0.1:2379",
                "--cacert=/etc/postgresql-ha/tls/ca.pem",
                "--cert=/etc/postgresql-ha/tls/unit.pem",
                "--key=/etc/postgresql-ha/tls/unit.key",
                "endpoint",
                "status",
            ],
            CmdOutput::ok(ETCD_STATUS_OK),
        )
}

pub const ETCD_STATUS_OK: &str = r#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":1},"version":"3.4.23","leader":161,"raftTerm":3}}]"#;
pub const ETCD_STATUS_NO_LEADER: &str = r#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":1},"version":"3.4.23","raftTerm":3,"errors":["etcdserver: no leader"]}}]"#;

/// etcd lost its quorum: the local member has no raft leader.
pub fn quorum_lost(mut m: MachineState) -> MachineState {
    let r = charm_lib::testing::Responder {
        prefix: [
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/postgresql-ha/tls/ca.pem",
            "--cert=/etc/postgresql-ha/tls/unit.pem",
            "--key=/etc/postgresql-ha/tls/unit.key",
            "endpoint",
            "status",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        output: CmdOutput::ok(ETCD_STATUS_NO_LEADER),
        times: None,
    };
    m.responders.insert(0, r);
    m.respond(
        &[
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/postgresql-ha/tls/ca.pem",
            "--cert=/etc/postgresql-ha/tls/unit.pem",
            "--key=/etc/postgresql-ha/tls/unit.key",
            "member",
            "list",
        ],
        CmdOutput::failed(1, "context deadline exceeded"),
    )
}

pub fn sys_secret() -> Secret {
    Secret::owned(
        SYS_SECRET,
        &[
            ("superuser", SUPER_PW),
            ("replication", REPL_PW),
            ("rewind", REWIND_PW),
            ("patroni", REST_PW),
        ],
    )
    .with_label("system-passwords")
}

/// The application's CA, as the leader created it (one real CA per test process).
pub fn ca_secret() -> Secret {
    static CA: std::sync::OnceLock<charm_lib::tls::KeyedCert> = std::sync::OnceLock::new();
    let ca = CA
        .get_or_init(|| charm_lib::tls::new_ca("postgresql-ha CA", charm_lib::tls::now()).unwrap());
    Secret::owned(
        CA_SECRET,
        &[
            ("ca-cert", ca.cert_pem.as_str()),
            ("ca-key", ca.key_pem.as_str()),
        ],
    )
    .with_label("tls-ca")
}

pub fn addr(n: u32) -> String {
    format!("10.0.0.{}", 10 + n)
}

/// The peer relation of an application whose etcd has `members` (unit numbers); `remote` are
/// the other units present, each with its address and a started etcd.
pub fn peers(members: &[u32], remote: &[u32]) -> Relation {
    let map: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|n| {
            (
                format!("postgresql-ha-{n}"),
                serde_json::Value::String(addr(*n)),
            )
        })
        .collect();
    let members_json = serde_json::Value::Object(map).to_string();
    let mut r = Relation::peer(1, "database-peers").local_app_data(&[
        ("system-secret", SYS_SECRET),
        ("tls-ca-secret", CA_SECRET),
        ("etcd-members", &members_json),
        ("etcd-epoch", "1"),
        ("etcd-bootstrap", "postgresql-ha-0"),
        ("etcd-token", "postgresql-ha-abcdefgh"),
        ("monitoring-role", "1"),
    ]);
    for n in remote {
        let started = if members.contains(n) { "1" } else { "" };
        r = r.remote_unit(*n, &[("address", &addr(*n)), ("etcd-started", started)]);
    }
    r
}

/// A member line for [`cluster`]: (unit number, role, state, lag).
pub type M<'a> = (u32, &'a str, &'a str, Option<u64>);

pub fn cluster_json(members: &[M]) -> String {
    let ms: Vec<serde_json::Value> = members
        .iter()
        .map(|(n, role, state, lag)| {
            let mut v = serde_json::json!({"name": format!("postgresql-ha-{n}"), "role": role, "state": state, "host": addr(*n), "port": 5432, "timeline": 3,
                "api_url": format!("http://{}:8008/patroni", addr(*n))});
            if let Some(l) = lag {
                v["lag"] = serde_json::json!(l);
            }
            v
        })
        .collect();
    serde_json::json!({"members": ms, "scope": "postgresql-ha"}).to_string()
}

/// Scripts `GET /cluster` and `GET /config` (already equal to the defaults' dynamic config).
pub fn with_cluster(m: MachineState, members: &[M]) -> MachineState {
    let config = serde_json::json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 3, "primary_start_timeout": 0, "maximum_lag_on_failover": 1048576,
        "synchronous_mode": "quorum", "synchronous_mode_strict": false, "synchronous_node_count": 2,
        "postgresql": {"use_pg_rewind": true, "use_slots": true, "parameters": {"wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
        "max_connections": 500, "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "256MB", "password_encryption": "scram-sha-256", "wal_retrieve_retry_interval": "1s"}}});
    m.respond(
        &["curl", "https://127.0.0.1:8008/cluster"],
        CmdOutput::ok(format!("{}\n200", cluster_json(members))),
    )
    .respond(
        &["curl", "https://127.0.0.1:8008/config"],
        CmdOutput::ok(format!("{config}\n200")),
    )
}

/// Scripts Patroni's `/sync` key in etcd (`leader`, `sync_standby`, `quorum`).
pub fn with_sync_key(m: MachineState, key: serde_json::Value) -> MachineState {
    m.respond(
        &[
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/postgresql-ha/tls/ca.pem",
            "--cert=/etc/postgresql-ha/tls/unit.pem",
            "--key=/etc/postgresql-ha/tls/unit.key",
            "get",
            "--print-value-only",
            "/postgresql-ha/postgresql-ha/sync",
        ],
        CmdOutput::ok(format!("{key}\n")),
    )
}

/// Patroni does not answer (curl: connection refused).
pub fn patroni_down(m: MachineState) -> MachineState {
    m.respond(
        &["curl"],
        CmdOutput::failed(7, "curl: (7) Failed to connect to 127.0.0.1 port 8008"),
    )
}

/// Scripts `etcdctl member list`: (unit number, id, learner).
pub fn with_etcd_members(m: MachineState, members: &[(u32, u64, bool)]) -> MachineState {
    let ms: Vec<serde_json::Value> = members
        .iter()
        .map(|(n, id, learner)| serde_json::json!({"ID": id, "name": format!("postgresql-ha-{n}"), "peerURLs": [format!("https://{}:2380", addr(*n))], "clientURLs": [format!("https://{}:2379", addr(*n))], "isLearner": learner}))
        .collect();
    m.respond(
        &[
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/postgresql-ha/tls/ca.pem",
            "--cert=/etc/postgresql-ha/tls/unit.pem",
            "--key=/etc/postgresql-ha/tls/unit.key",
            "member",
            "list",
        ],
        CmdOutput::ok(serde_json::json!({"members": ms}).to_string()),
    )
}

/// A bootstrapped single-unit leader whose Patroni runs as primary.
pub fn leader_primary() -> State {
    let mut st = State::default()
        .leader()
        .with_relation(peers(&[0], &[]))
        .with_secret(sys_secret())
        .with_secret(ca_secret());
    st.machine = with_etcd_members(
        with_cluster(installed_host(), &[(0, "leader", "running", None)]),
        &[(0, 0xa1, false)],
    );
    st
}

pub fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

pub const PATRONI_YML: &str = "/etc/postgresql-ha/patroni.yml";
pub const ETCD_YML: &str = "/etc/postgresql-ha/etcd.conf.yml";

/// The rendered `patroni.yml` of `st`, parsed.
pub fn patroni_yml(st: &State) -> serde_yaml::Value {
    yaml(&st.machine.text(PATRONI_YML).unwrap())
}

/// The rendered `etcd.conf.yml` of `st`, parsed.
pub fn etcd_yml(st: &State) -> serde_yaml::Value {
    yaml(&st.machine.text(ETCD_YML).unwrap())
}

/// A YAML sequence of strings (`pg_hba`, `etcd3.hosts`) as `&str`s.
pub fn strings(seq: &serde_yaml::Value) -> Vec<&str> {
    seq.as_sequence()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect()
}

/// `m` with `units` (systemd unit names) already running and enabled.
pub fn running(mut m: MachineState, units: &[&str]) -> MachineState {
    for unit in units {
        m.services.insert(
            unit.to_string(),
            charm_lib::testing::Service {
                active: true,
                enabled: true,
            },
        );
    }
    m
}

/// Asserts each `(key, value)` of `want` is in `map` (a databag or action results).
pub fn assert_fields(map: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (key, value) in want {
        assert_eq!(map.get(*key).map(String::as_str), Some(*value), "{key}");
    }
}

/// Whether a command line the hook ran matches `pred`.
pub fn ran(out: &Output, pred: impl Fn(&str) -> bool) -> bool {
    out.command_lines().iter().any(|l| pred(l))
}

/// Whether the hook logged a message containing `needle`.
pub fn logged(out: &Output, needle: &str) -> bool {
    out.logs.iter().any(|(_, m)| m.contains(needle))
}

/// The first command line the hook ran that matches `pred`; panics with `what` when none did.
pub fn find_command(out: &Output, pred: impl Fn(&str) -> bool, what: &str) -> String {
    out.command_lines()
        .into_iter()
        .find(|l| pred(l))
        .unwrap_or_else(|| panic!("{what}: {:#?}", out.command_lines()))
}
