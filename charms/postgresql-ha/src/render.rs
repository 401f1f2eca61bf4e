//! Pure rendering: Patroni's and etcd's configuration, systemd units, the role-change callback.
//! Nothing here touches the host; reconcile writes what these return.

use crate::config::Config;
use crate::paths;
use serde_json::{json, Value};

/// The system users' passwords (from the Juju secret).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Passwords {
    /// `postgres` (superuser).
    pub superuser: String,
    /// `replication`.
    pub replication: String,
    /// `rewind`.
    pub rewind: String,
    /// Patroni REST API user `patroni` (unsafe endpoints only).
    pub patroni: String,
}

/// One unit of the cluster: its Patroni/etcd member name and address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// e.g. `postgresql-ha-0`.
    pub name: String,
    /// Its ingress address.
    pub address: String,
}

/// What a client relation is allowed: one database, one role, from these addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaClient {
    /// Database name.
    pub database: String,
    /// Role name.
    pub user: String,
    /// Client unit addresses.
    pub addresses: Vec<String>,
}

/// Everything Patroni's configuration is derived from.
#[derive(Debug, Clone)]
pub struct PatroniInput<'a> {
    /// Patroni scope (the application name).
    pub scope: &'a str,
    /// This unit.
    pub me: &'a Member,
    /// Every etcd member (this unit included once it joined).
    pub etcd_members: &'a [Member],
    /// Every unit's address (for replication and rewind pg_hba lines).
    pub peers: &'a [Member],
    /// PostgreSQL major version (bin_dir).
    pub pg_version: u32,
    /// The system passwords.
    pub passwords: &'a Passwords,
    /// Validated config.
    pub config: &'a Config,
    /// max_connections.
    pub max_connections: i64,
    /// Client access, per relation.
    pub clients: &'a [HbaClient],
    /// WAL archiving and a restore under way (see [`crate::backup`]).
    pub archiving: &'a crate::backup::Archiving,
}

/// Patroni's dynamic (DCS-wide) configuration: written at bootstrap and kept equal later with
/// `PATCH /config`, so changes apply without restarts where PostgreSQL allows. Strict mode only
/// with 3 units or more, where it protects automatic failover: a single member has no standby
/// and would refuse every write, and 2 units cannot fail over by themselves (etcd quorum), so
/// strict mode would only stop writes while the standby is down, and after force-promote.
pub fn dynamic_config(config: &Config, max_connections: i64, units: usize) -> Value {
    json!({
        "ttl": config.ttl,
        "loop_wait": config.loop_wait,
        "retry_timeout": config.retry_timeout,
        "primary_start_timeout": config.primary_start_timeout,
        "maximum_lag_on_failover": config.maximum_lag_on_failover,
        "synchronous_mode": config.synchronous_mode.patroni_value(),
        "synchronous_mode_strict": config.synchronous_mode_strict && units >= 3,
        "synchronous_node_count": config.synchronous_node_count,
        "postgresql": {
            "use_pg_rewind": true,
            "use_slots": true,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "wal_log_hints": "on",
                "max_connections": max_connections,
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_keep_size": "256MB",
                "password_encryption": "scram-sha-256",
                // A standby whose stream broke (the primary it followed is gone, or the new
                // primary renamed the last segment of the old timeline to .partial) tries again
                // after this long; PostgreSQL's 5 s default went straight into the outage after
                // a second failover in strict synchronous mode, where commits wait for that
                // standby (issue 16: pg_drills' back-to-back drill, Patroni's log: 'requested
                // WAL segment … has already been removed', streaming again 5.0 s later).
                "wal_retrieve_retry_interval": "1s",
            },
        },
    })
}

/// pg_hba lines: the postgres user locally by peer, replication/rewind/superuser from the
/// members, each client's role to its own database from exactly its units' addresses; TLS
/// required from every other host.
pub fn pg_hba(peers: &[Member], clients: &[HbaClient]) -> Vec<String> {
    // Loopback never leaves the host; every line for another host requires TLS (`hostssl`).
    let mut lines = vec![
        "local all postgres peer".to_string(),
        // The exporter's role, from the OS user `prometheus` only (pg_ident map below).
        format!(
            "local postgres {} peer map=monitoring",
            paths::MONITORING_ROLE
        ),
        "host all postgres 127.0.0.1/32 scram-sha-256".to_string(),
        "host replication replication 127.0.0.1/32 scram-sha-256".to_string(),
    ];
    for m in peers {
        let cidr = host_cidr(&m.address);
        lines.push(format!(
            "hostssl replication replication {cidr} scram-sha-256"
        ));
        lines.push(format!("hostssl all postgres {cidr} scram-sha-256"));
        lines.push(format!("hostssl postgres rewind {cidr} scram-sha-256"));
    }
    for c in clients {
        for a in &c.addresses {
            lines.push(format!(
                "hostssl {} {} {} scram-sha-256",
                quote_hba(&c.database),
                c.user,
                host_cidr(a)
            ));
        }
    }
    lines
}

/// `10.0.0.1` → `10.0.0.1/32`; IPv6 → `/128`.
/// A CIDR (`10.0.0.0/24`, from a client's `egress-subnets`) stays as it is.
pub fn host_cidr(addr: &str) -> String {
    if addr.contains('/') {
        addr.to_string()
    } else if addr.contains(':') {
        format!("{addr}/128")
    } else {
        format!("{addr}/32")
    }
}

/// pg_hba database names with characters beyond [a-z0-9_] must be double-quoted.
fn quote_hba(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_string()
    } else {
        format!("\"{name}\"")
    }
}

/// Patroni's YAML configuration.
pub fn patroni_yaml(i: &PatroniInput) -> String {
    let etcd_hosts: Vec<String> = i
        .etcd_members
        .iter()
        .map(|m| format!("{}:2379", m.address))
        .collect();
    let dcs = dynamic_config(i.config, i.max_connections, i.peers.len());
    let doc = json!({
        "scope": i.scope,
        "namespace": paths::PATRONI_NAMESPACE,
        "name": i.me.name,
        "log": {"level": "INFO"},
        // TLS with a client certificate from the application's CA for every request; the
        // unsafe endpoints also need the password. Members reach each other (the leader race
        // asks the others' state) with `ctl`'s certificate, verified against the CA.
        "restapi": {
            "listen": format!("0.0.0.0:{}", paths::PATRONI_PORT),
            "connect_address": format!("{}:{}", i.me.address, paths::PATRONI_PORT),
            "authentication": {"username": "patroni", "password": i.passwords.patroni},
            "certfile": paths::UNIT_CERT,
            "keyfile": paths::UNIT_KEY,
            "cafile": paths::CA_CERT,
            "verify_client": "required",
        },
        "ctl": {"certfile": paths::UNIT_CERT, "keyfile": paths::UNIT_KEY, "cacert": paths::CA_CERT},
        "etcd3": {
            "hosts": etcd_hosts,
            "protocol": "https",
            "cacert": paths::CA_CERT,
            "cert": paths::UNIT_CERT,
            "key": paths::UNIT_KEY,
        },
        "bootstrap": bootstrap(dcs, i.scope, i.archiving),
        "postgresql": {
            // Every address: clients come through the DB VIP, which only the primary's host
            // holds (a list of addresses takes one port at its end, `ADDR,127.0.0.1:5432`;
            // `ip:port,ip:port` makes Patroni bind 127.0.0.1 only). pg_hba does the filtering.
            "listen": format!("0.0.0.0:{}", paths::PG_PORT),
            "connect_address": format!("{}:{}", i.me.address, paths::PG_PORT),
            "data_dir": paths::PGDATA,
            "bin_dir": format!("/usr/lib/postgresql/{}/bin", i.pg_version),
            "pgpass": paths::PATRONI_PGPASS,
            "use_unix_socket": true,
            "use_unix_socket_repl": false,
            // Local parameters win over the DCS: these paths are this host's.
            "parameters": {
                "unix_socket_directories": paths::SOCKET_DIR,
                "ssl": "on",
                "ssl_cert_file": paths::PG_CERT,
                "ssl_key_file": paths::PG_KEY,
                "ssl_ca_file": paths::CA_CERT,
                "ssl_min_protocol_version": "TLSv1.2",
                // Pinned here, where they win over the DCS (Patroni config.py
                // `_build_effective_configuration`: local takes precedence): settings that
                // would make a DCS writer run commands or load code as postgres.
                // On even without a repository, so relating one needs no restart; without
                // one the command archives nothing (see `backup::archive_command`).
                "archive_mode": "on",
                "archive_command": crate::backup::archive_command(i.archiving.stanza.as_deref()),
                "archive_timeout": if i.archiving.stanza.is_some() { 60 } else { 0 },
                "ssl_passphrase_command": "",
                "shared_preload_libraries": "",
                "local_preload_libraries": "",
                "session_preload_libraries": "",
                "dynamic_library_path": "$libdir",
            },
            "pg_hba": pg_hba(i.peers, i.clients),
            "pg_ident": [format!("monitoring prometheus {}", paths::MONITORING_ROLE)],
            // Replication and pg_rewind reach the primary by its address, which its
            // certificate names: verify-full.
            "authentication": {
                "superuser": {"username": "postgres", "password": i.passwords.superuser},
                "replication": {
                    "username": "replication",
                    "password": i.passwords.replication,
                    "sslmode": "verify-full",
                    "sslrootcert": paths::TRUSTED,
                },
                "rewind": {
                    "username": "rewind",
                    "password": i.passwords.rewind,
                    "sslmode": "verify-full",
                    "sslrootcert": paths::TRUSTED,
                },
            },
            "callbacks": {"on_role_change": paths::ROLE_CHANGE_SCRIPT},
            // pg_basebackup waits for a spread checkpoint (minutes) unless told otherwise:
            // a new replica should not.
            "basebackup": [{"checkpoint": "fast"}],
            "remove_data_directory_on_rewind_failure": false,
            "remove_data_directory_on_diverged_timelines": false,
        },
        "tags": {"nofailover": false, "noloadbalance": false, "clonefrom": false, "nosync": false},
    });
    let body = serde_yaml::to_string(&doc).expect("a JSON value always serializes to YAML");
    format!("# Rendered by the postgresql-ha charm; edits are overwritten.\n{body}")
}

/// Patroni's bootstrap section: initdb, or pgBackRest while a restore runs.
fn bootstrap(dcs: Value, scope: &str, archiving: &crate::backup::Archiving) -> Value {
    let mut b = json!({
        "dcs": dcs,
        "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
    });
    if let Some(r) = &archiving.restore {
        let custom = crate::backup::restore_bootstrap(&crate::backup::stanza(scope), r);
        if let (Some(b), Some(c)) = (b.as_object_mut(), custom.as_object()) {
            b.extend(c.clone());
        }
    }
    b
}

/// prometheus-postgres-exporter's settings: PostgreSQL over the local socket as the monitoring
/// role (peer authentication: no password anywhere), metrics on loopback only.
pub fn exporter_defaults() -> String {
    format!(
        "# Rendered by the postgresql-ha charm; edits are overwritten.\nDATA_SOURCE_NAME='host={} port={} user={} dbname=postgres sslmode=disable'\nARGS='--web.listen-address=127.0.0.1:{}'\n",
        paths::SOCKET_DIR,
        paths::PG_PORT,
        paths::MONITORING_ROLE,
        paths::EXPORTER_PORT
    )
}

/// Everything etcd's configuration is derived from.
#[derive(Debug, Clone)]
pub struct EtcdInput<'a> {
    /// This member.
    pub me: &'a Member,
    /// The members to start with (this unit included).
    pub initial: &'a [Member],
    /// `true` for the unit that bootstraps the cluster, `false` for one that joins it.
    pub new_cluster: bool,
    /// Cluster token (per application and epoch).
    pub token: &'a str,
    /// Start from this member's data as a one-member cluster (force-promote only).
    pub force_new_cluster: bool,
}

/// etcd's YAML configuration (`etcd --config-file`).
pub fn etcd_yaml(i: &EtcdInput) -> String {
    let initial: Vec<String> = i
        .initial
        .iter()
        .map(|m| format!("{}=https://{}:2380", m.name, m.address))
        .collect();
    // Clients and peers alike present a certificate from the application's CA; etcd reads
    // the files at each handshake, so a renewed certificate needs no restart.
    let security = json!({
        "cert-file": paths::UNIT_CERT,
        "key-file": paths::ETCD_KEY,
        "trusted-ca-file": paths::CA_CERT,
        "client-cert-auth": true,
    });
    let mut doc = json!({
        "name": i.me.name,
        "data-dir": paths::ETCD_DATA,
        "listen-peer-urls": format!("https://{}:2380", i.me.address),
        "listen-client-urls": format!("https://{}:2379,{}", i.me.address, paths::ETCD_LOCAL),
        "initial-advertise-peer-urls": format!("https://{}:2380", i.me.address),
        "advertise-client-urls": format!("https://{}:2379", i.me.address),
        // The collector scrapes here without a key (it may not be able to read one).
        "listen-metrics-urls": paths::ETCD_METRICS,
        "client-transport-security": security.clone(),
        "peer-transport-security": security,
        "initial-cluster": initial.join(","),
        "initial-cluster-state": if i.new_cluster { "new" } else { "existing" },
        "initial-cluster-token": i.token,
        // Without pre-vote a rejoining isolated member makes the healthy leader step down.
        "pre-vote": true,
        "enable-v2": false,
        // The flag defaults to true but a config file leaves it false: Patroni's etcd3 client
        // speaks to etcd through this JSON gateway (/v3/...).
        "enable-grpc-gateway": true,
        "strict-reconfig-check": true,
        "heartbeat-interval": 100,
        "election-timeout": 1000,
    });
    if i.force_new_cluster {
        doc["force-new-cluster"] = json!(true);
    }
    let body = serde_yaml::to_string(&doc).expect("a JSON value always serializes to YAML");
    format!("# Rendered by the postgresql-ha charm; edits are overwritten.\n{body}")
}

/// The etcd service (the distribution's `etcd.service` stays disabled).
pub fn etcd_unit() -> String {
    format!(
        "[Unit]\nDescription=etcd for postgresql-ha (Patroni's store)\nAfter=network-online.target\n\n\
[Service]\nType=simple\nUser=etcd\nGroup=etcd\nExecStart=/usr/bin/etcd --config-file {}\nRestart=always\nRestartSec=2\nLimitNOFILE=65536\n\n\
[Install]\nWantedBy=multi-user.target\n",
        paths::ETCD_YML
    )
}

/// The Patroni service. KillMode=process: Patroni stops PostgreSQL itself on SIGTERM.
/// RuntimeDirectoryPreserve=restart: the runtime directory is PostgreSQL's socket directory,
/// so when Patroni dies and systemd restarts it, the PostgreSQL it leaves running keeps its
/// socket; without it the restarted Patroni finds no PostgreSQL to talk to and, on the
/// primary, demotes and stops it ("primary startup is taking too long"): a failover.
pub fn patroni_unit() -> String {
    format!(
        "[Unit]\nDescription=Patroni for postgresql-ha\nAfter=network-online.target {etcd}.service\n\n\
[Service]\nType=simple\nUser=postgres\nGroup=postgres\nRuntimeDirectory=postgresql-ha\nRuntimeDirectoryMode=0755\nRuntimeDirectoryPreserve=restart\n\
ExecStart={venv}/bin/patroni {yml}\nExecReload=/bin/kill -s HUP $MAINPID\nKillMode=process\nTimeoutStopSec=60\nRestart=always\nRestartSec=2\n\n\
[Install]\nWantedBy=multi-user.target\n",
        etcd = paths::ETCD_SERVICE,
        venv = paths::VENV,
        yml = paths::PATRONI_YML
    )
}

/// Patroni's `on_role_change` callback. Patroni runs it as postgres, which cannot reach the
/// unit agent, so it drops a marker for the root topology observer.
pub fn role_change_script() -> String {
    format!("#!/bin/sh\n# Patroni callback: $1=action $2=role $3=scope. Rendered by the postgresql-ha charm.\ntouch {} 2>/dev/null\nexit 0\n", paths::ROLE_MARKER)
}

/// The topology observer service (see `observer`): the charm's binary in `observe` mode, as
/// root (juju-exec's socket is root-only); `binary_line` is `Context::charm_binary_line`.
pub fn observer_unit(unit: &str, charm_dir: &str, binary_line: &str) -> String {
    format!(
        "{binary_line}[Unit]\nDescription=postgresql-ha: a hook when the Patroni primary changes; etcd leadership off the primary\nAfter={}.service\n\n\
[Service]\nType=simple\nExecStart={charm_dir}/dispatch observe {unit} {charm_dir}\nRestart=always\nRestartSec=5\n\n\
[Install]\nWantedBy=multi-user.target\n",
        paths::PATRONI_SERVICE
    )
}

/// The charm's own pgpass: the superuser, for psql against the primary.
pub fn charm_pgpass(superuser_password: &str) -> String {
    let esc = superuser_password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:postgres:{esc}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            ttl: 20,
            loop_wait: 2,
            retry_timeout: 3,
            primary_start_timeout: 0,
            synchronous_mode: crate::config::SyncMode::Quorum,
            synchronous_mode_strict: true,
            synchronous_node_count: 2,
            maximum_lag_on_failover: 1048576,
            max_connections: 0,
            patroni_version: "4.1.5".into(),
            pip_index_url: String::new(),
            allowed_extensions: String::new(),
            allowed_extra_user_roles: String::new(),
            backup_retention_full: 4,
            backup_schedule: String::new(),
        }
    }

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                name: format!("postgresql-ha-{i}"),
                address: format!("10.0.0.{}", 10 + i),
            })
            .collect()
    }

    fn pw() -> Passwords {
        Passwords {
            superuser: "SUPERpw".into(),
            replication: "REPLpw".into(),
            rewind: "REWINDpw".into(),
            patroni: "RESTpw".into(),
        }
    }

    fn parse(yaml: &str) -> serde_yaml::Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn patroni_for_one_two_three_units() {
        for n in 1..=3 {
            let ms = members(n);
            let clients = [HbaClient {
                database: "maas-region".into(),
                user: "relation_5".into(),
                addresses: vec!["10.0.0.50".into()],
            }];
            let c = cfg();
            let y = parse(&patroni_yaml(&PatroniInput {
                scope: "postgresql-ha",
                me: &ms[0],
                etcd_members: &ms,
                peers: &ms,
                pg_version: 15,
                passwords: &pw(),
                config: &c,
                max_connections: 160,
                clients: &clients,
                archiving: &crate::backup::Archiving::default(),
            }));
            assert_eq!(y["scope"], "postgresql-ha");
            assert_eq!(y["name"], "postgresql-ha-0");
            assert_eq!(y["restapi"]["listen"], "0.0.0.0:8008");
            assert_eq!(y["restapi"]["connect_address"], "10.0.0.10:8008");
            let hosts: Vec<String> = y["etcd3"]["hosts"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                hosts,
                ms.iter()
                    .map(|m| format!("{}:2379", m.address))
                    .collect::<Vec<_>>()
            );
            let dcs = &y["bootstrap"]["dcs"];
            assert_eq!(
                (
                    dcs["ttl"].as_i64(),
                    dcs["loop_wait"].as_i64(),
                    dcs["retry_timeout"].as_i64(),
                    dcs["primary_start_timeout"].as_i64()
                ),
                (Some(20), Some(2), Some(3), Some(0))
            );
            assert_eq!(dcs["synchronous_mode"], "quorum");
            assert_eq!(dcs["synchronous_node_count"].as_i64(), Some(2));
            assert_eq!(
                dcs["synchronous_mode_strict"],
                n >= 3,
                "strict only where a standby can exist ({n} units)"
            );
            assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
            assert_eq!(dcs["postgresql"]["use_slots"], true);
            assert_eq!(dcs["postgresql"]["parameters"]["wal_log_hints"], "on");
            assert_eq!(
                dcs["postgresql"]["parameters"]["wal_retrieve_retry_interval"],
                "1s"
            );
            assert_eq!(dcs["postgresql"]["parameters"]["hot_standby"], "on");
            assert_eq!(
                dcs["postgresql"]["parameters"]["max_connections"].as_i64(),
                Some(160)
            );
            let pg = &y["postgresql"];
            assert_eq!(
                pg["listen"], "0.0.0.0:5432",
                "the VIP must reach PostgreSQL on the primary"
            );
            assert_eq!(pg["connect_address"], "10.0.0.10:5432");
            assert_eq!(
                pg["parameters"]["unix_socket_directories"],
                "/run/postgresql-ha"
            );
            assert_eq!(pg["bin_dir"], "/usr/lib/postgresql/15/bin");
            assert_eq!(
                pg["basebackup"][0]["checkpoint"], "fast",
                "a new replica must not wait minutes for a checkpoint"
            );
            assert_eq!(pg["authentication"]["superuser"]["password"], "SUPERpw");
            assert_eq!(pg["authentication"]["rewind"]["username"], "rewind");
            let hba: Vec<String> = pg["pg_hba"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            for m in &ms {
                assert!(
                    hba.contains(&format!(
                        "hostssl replication replication {}/32 scram-sha-256",
                        m.address
                    )),
                    "{hba:?}"
                );
                assert!(hba.contains(&format!(
                    "hostssl postgres rewind {}/32 scram-sha-256",
                    m.address
                )));
            }
            assert_eq!(
                hba.iter()
                    .filter(|l| l.contains("replication replication") && !l.contains("127.0.0.1"))
                    .count(),
                n
            );
            assert!(
                hba.contains(
                    &"hostssl \"maas-region\" relation_5 10.0.0.50/32 scram-sha-256".to_string()
                ),
                "{hba:?}"
            );
            assert!(
                !hba.iter().any(|l| l.contains("0.0.0.0/0")),
                "no open-to-all line"
            );
            assert!(
                hba.iter()
                    .filter(|l| l.starts_with("host ") || l.starts_with("hostssl "))
                    .all(|l| l.starts_with("hostssl ") || l.contains(" 127.0.0.1/32 ")),
                "every line for another host requires TLS: {hba:?}"
            );
            // TLS everywhere, verified against the application's CA.
            assert_eq!(pg["parameters"]["ssl"], "on");
            assert_eq!(
                pg["parameters"]["archive_command"], "/bin/true",
                "nothing archived without a repository"
            );
            assert_eq!(pg["parameters"]["archive_mode"], "on");
            for pinned in ["shared_preload_libraries", "ssl_passphrase_command"] {
                assert_eq!(pg["parameters"][pinned], "", "{pinned} pinned locally");
            }
            assert_eq!(pg["parameters"]["ssl_key_file"], paths::PG_KEY);
            for user in ["replication", "rewind"] {
                assert_eq!(pg["authentication"][user]["sslmode"], "verify-full");
                assert_eq!(pg["authentication"][user]["sslrootcert"], paths::TRUSTED);
            }
            let api = &y["restapi"];
            assert_eq!(
                (
                    api["certfile"].as_str(),
                    api["cafile"].as_str(),
                    api["verify_client"].as_str()
                ),
                (
                    Some(paths::UNIT_CERT),
                    Some(paths::CA_CERT),
                    Some("required")
                )
            );
            assert_eq!(
                y["ctl"]["certfile"],
                paths::UNIT_CERT,
                "members call each other with a certificate"
            );
            assert_eq!(y["etcd3"]["protocol"], "https");
            assert_eq!(y["etcd3"]["cert"], paths::UNIT_CERT);
        }
    }

    #[test]
    fn archiving_and_restore_are_local_settings() {
        let ms = members(1);
        let c = cfg();
        let archiving = crate::backup::Archiving {
            stanza: Some("postgresql-ha".into()),
            restore: Some(crate::backup::Restore {
                set: None,
                time: Some("2026-12-07 07:30:00+00".into()),
                stanza: None,
            }),
            unchecked: None,
        };
        let y = parse(&patroni_yaml(&PatroniInput {
            scope: "postgresql-ha",
            me: &ms[0],
            etcd_members: &ms,
            peers: &ms,
            pg_version: 15,
            passwords: &pw(),
            config: &c,
            max_connections: 500,
            clients: &[],
            archiving: &archiving,
        }));
        let p = &y["postgresql"]["parameters"];
        assert_eq!(p["archive_command"], "pgbackrest --config=/etc/postgresql-ha/pgbackrest.conf --stanza=postgresql-ha archive-push %p");
        assert_eq!(p["archive_timeout"], 60);
        let b = &y["bootstrap"];
        assert_eq!(b["method"], "pgbackrest");
        assert!(b["pgbackrest"]["command"]
            .as_str()
            .unwrap()
            .contains("--type=time"));
        assert!(
            b["dcs"]["synchronous_mode"].is_string(),
            "the DCS settings stay"
        );
    }

    #[test]
    fn etcd_bootstrap_and_join() {
        let ms = members(3);
        let y = parse(&etcd_yaml(&EtcdInput {
            me: &ms[0],
            initial: &ms[..1],
            new_cluster: true,
            token: "postgresql-ha-0",
            force_new_cluster: false,
        }));
        assert_eq!(
            y["initial-cluster"],
            "postgresql-ha-0=https://10.0.0.10:2380"
        );
        assert_eq!(y["initial-cluster-state"], "new");
        assert_eq!(y["pre-vote"], true);
        assert_eq!(
            y["enable-grpc-gateway"], true,
            "Patroni's etcd3 client needs the gateway"
        );
        assert_eq!(
            y["listen-client-urls"],
            "https://10.0.0.10:2379,https://127.0.0.1:2379"
        );
        // Metrics on loopback plain http only: no other address, no other port.
        assert_eq!(y["listen-metrics-urls"], "http://127.0.0.1:2381");
        assert!(y.get("force-new-cluster").is_none());
        for side in ["client-transport-security", "peer-transport-security"] {
            assert_eq!(y[side]["client-cert-auth"], true, "{side}");
            assert_eq!(y[side]["trusted-ca-file"], paths::CA_CERT, "{side}");
            assert_eq!(
                y[side]["key-file"],
                paths::ETCD_KEY,
                "{side}: etcd's own copy of the key"
            );
        }
        for n in 2..=3 {
            let y = parse(&etcd_yaml(&EtcdInput {
                me: &ms[n - 1],
                initial: &ms[..n],
                new_cluster: false,
                token: "t",
                force_new_cluster: false,
            }));
            assert_eq!(y["initial-cluster-state"], "existing");
            assert_eq!(y["listen-metrics-urls"], "http://127.0.0.1:2381");
            assert_eq!(y["initial-cluster"].as_str().unwrap().split(',').count(), n);
            assert_eq!(y["name"], format!("postgresql-ha-{}", n - 1));
            assert_eq!(
                y["initial-advertise-peer-urls"],
                format!("https://10.0.0.{}:2380", 9 + n)
            );
        }
        let y = parse(&etcd_yaml(&EtcdInput {
            me: &ms[0],
            initial: &ms[..1],
            new_cluster: true,
            token: "t",
            force_new_cluster: true,
        }));
        assert_eq!(y["force-new-cluster"], true);
        assert_eq!(
            y["listen-metrics-urls"], "http://127.0.0.1:2381",
            "force-promote's rewrite keeps the listener"
        );
    }

    #[test]
    fn pgpass_escapes_separators() {
        assert_eq!(charm_pgpass("a:b\\c"), "*:*:*:postgres:a\\:b\\\\c\n");
    }

    #[test]
    fn units_run_as_their_users() {
        assert!(patroni_unit().contains("User=postgres"));
        assert!(patroni_unit().contains("KillMode=process"));
        // The socket directory survives Patroni's automatic restart (PostgreSQL keeps running).
        assert!(
            patroni_unit().contains("RuntimeDirectory=postgresql-ha\n")
                && patroni_unit().contains("RuntimeDirectoryPreserve=restart\n")
        );
        assert!(etcd_unit().contains("User=etcd"));
        assert!(role_change_script().contains("touch /run/postgresql-ha/role-changed"));
        assert!(observer_unit("postgresql-ha/1", "/var/lib/juju/agents/unit-postgresql-ha-1/charm", "")
            .contains("ExecStart=/var/lib/juju/agents/unit-postgresql-ha-1/charm/dispatch observe postgresql-ha/1 /var/lib/juju/agents/unit-postgresql-ha-1/charm\n"));
    }
}
