//! Where the charm puts things on the host, and the names of its services.

/// The virtualenv holding Patroni.
pub const VENV: &str = "/opt/postgresql-ha/venv";
/// Where a wheelhouse resource is unpacked.
pub const WHEELHOUSE_DIR: &str = "/opt/postgresql-ha/wheelhouse";
/// Records what was installed (`patroni==<version>`); install runs again when it differs.
pub const INSTALL_STAMP: &str = "/opt/postgresql-ha/installed";
/// Rendered configuration.
pub const CONF_DIR: &str = "/etc/postgresql-ha";
/// Patroni's configuration (0600 postgres: it holds the passwords).
pub const PATRONI_YML: &str = "/etc/postgresql-ha/patroni.yml";
/// etcd's configuration.
pub const ETCD_YML: &str = "/etc/postgresql-ha/etcd.conf.yml";
/// Patroni's on_role_change callback.
pub const ROLE_CHANGE_SCRIPT: &str = "/etc/postgresql-ha/on-role-change";
/// Home of PostgreSQL's data (0700 postgres).
pub const PG_HOME: &str = "/var/lib/postgresql-ha";
/// PGDATA, created by Patroni (initdb or pg_basebackup).
pub const PGDATA: &str = "/var/lib/postgresql-ha/data";
/// The pgpass Patroni writes for its own connections.
pub const PATRONI_PGPASS: &str = "/var/lib/postgresql-ha/.pgpass-patroni";
/// The pgpass the charm's psql uses (superuser; 0600 postgres).
pub const CHARM_PGPASS: &str = "/var/lib/postgresql-ha/.pgpass-charm";
/// etcd's data (0700 etcd).
pub const ETCD_DATA: &str = "/var/lib/postgresql-ha-etcd";
/// Dropped by Patroni's role-change callback for the topology observer.
pub const ROLE_MARKER: &str = "/run/postgresql-ha/role-changed";
/// The topology observer's unit file.
pub const OBSERVER_UNIT_FILE: &str = "/etc/systemd/system/postgresql-ha-observer.service";
/// Where earlier revisions recorded the SHA-256 of the observer's binary; removed (the
/// observer's unit file carries the binary's fingerprint now).
pub const OLD_OBSERVER_BINARY_SUM: &str = "/etc/postgresql-ha/observer.sha256";
/// The topology observer's service.
pub const OBSERVER_SERVICE: &str = "postgresql-ha-observer";
/// PostgreSQL's unix socket directory (systemd RuntimeDirectory of the Patroni service).
pub const SOCKET_DIR: &str = "/run/postgresql-ha";
/// Written when this unit leaves the application (holds the unit name): later hooks of the
/// dying unit must not start its services again.
pub const DEPARTED: &str = "/etc/postgresql-ha/departed";
/// Stops the distribution's postinst from creating a default cluster.
pub const CREATECLUSTER_CONF: &str = "/etc/postgresql-common/createcluster.conf";
/// systemd unit files.
pub const ETCD_UNIT_FILE: &str = "/etc/systemd/system/postgresql-ha-etcd.service";
/// systemd unit files.
pub const PATRONI_UNIT_FILE: &str = "/etc/systemd/system/postgresql-ha-patroni.service";
/// The charm's etcd service.
pub const ETCD_SERVICE: &str = "postgresql-ha-etcd";
/// The charm's Patroni service.
pub const PATRONI_SERVICE: &str = "postgresql-ha-patroni";
/// Patroni's REST API (local; TLS, a client certificate required).
pub const PATRONI_API: &str = "https://127.0.0.1:8008";
/// The local etcd client URL (TLS, a client certificate required).
pub const ETCD_LOCAL: &str = "https://127.0.0.1:2379";
/// etcd's metrics listener (`listen-metrics-urls`): plain http on loopback only, serving
/// nothing but `/metrics` and `/health`, both read-only (etcd 3.4 embed/etcd.go
/// `serveMetrics`, etcdhttp `HandleMetricsHealth`), so a collector needs no client key.
/// 2381 as kubeadm's etcd has it; nothing else on a unit's machine listens there.
pub const ETCD_METRICS: &str = "http://127.0.0.1:2381";
/// Its port.
pub const ETCD_METRICS_PORT: u16 = 2381;
/// Written when the charm added the metrics listener to the configuration of a member that
/// was already running without it (a unit from an earlier revision): etcd serves it from its
/// next start, and until then the etcd job stays the one on the client port. Removed once
/// the listener answers.
pub const ETCD_METRICS_PENDING: &str = "/etc/postgresql-ha/etcd-metrics-pending";
/// Certificates: the application's CA and this unit's (root-owned directory: no service
/// account can plant a file in it).
pub const TLS_DIR: &str = "/etc/postgresql-ha/tls";
/// The application's CA certificate (public).
pub const CA_CERT: &str = "/etc/postgresql-ha/tls/ca.pem";
/// This unit's certificate: etcd server/peer/client, Patroni REST API server/client,
/// PostgreSQL server.
pub const UNIT_CERT: &str = "/etc/postgresql-ha/tls/unit.pem";
/// Its key for Patroni and PostgreSQL (root:postgres 0640, which PostgreSQL accepts).
pub const UNIT_KEY: &str = "/etc/postgresql-ha/tls/unit.key";
/// The same key for etcd (root:etcd 0640).
pub const ETCD_KEY: &str = "/etc/postgresql-ha/tls/etcd.key";
/// The certificate PostgreSQL presents: the site's (`certificates` relation) when it has
/// one, else a copy of the unit's.
pub const PG_CERT: &str = "/etc/postgresql-ha/tls/postgresql.pem";
/// Its key (root:postgres 0640).
pub const PG_KEY: &str = "/etc/postgresql-ha/tls/postgresql.key";
/// What a connection to PostgreSQL trusts: the application's CA and, with a `certificates`
/// relation, the site's.
pub const TRUSTED: &str = "/etc/postgresql-ha/tls/trusted.pem";
/// The key of this unit's request to the site's CA (root:postgres 0640).
pub const SITE_KEY: &str = "/etc/postgresql-ha/tls/site.key";
/// The request itself (public).
pub const SITE_CSR: &str = "/etc/postgresql-ha/tls/site.csr";

/// etcdctl's TLS flags: verify etcd against the CA, present this unit's certificate.
pub fn etcdctl_tls_args() -> [String; 3] {
    [
        format!("--cacert={CA_CERT}"),
        format!("--cert={UNIT_CERT}"),
        format!("--key={UNIT_KEY}"),
    ]
}

/// curl's TLS flags for Patroni's REST API: verify it against the CA, present this unit's
/// certificate.
pub fn curl_tls_args() -> [String; 6] {
    [
        "--cacert".into(),
        CA_CERT.into(),
        "--cert".into(),
        UNIT_CERT.into(),
        "--key".into(),
        UNIT_KEY.into(),
    ]
}
/// prometheus-postgres-exporter's settings (Debian's package reads them as its environment).
pub const EXPORTER_DEFAULTS: &str = "/etc/default/prometheus-postgres-exporter";
/// prometheus-postgres-exporter's service (Debian's unit; runs as `prometheus`).
pub const EXPORTER_SERVICE: &str = "prometheus-postgres-exporter";
/// Its port, on loopback only (the collector runs on this machine).
pub const EXPORTER_PORT: u16 = 9187;
/// The exporter's PostgreSQL role: `pg_monitor` only, no password, reachable only over the
/// local socket from the OS user `prometheus` (pg_ident map `monitoring`).
pub const MONITORING_ROLE: &str = "monitoring";

/// The certificate exporter (charm-lib `cert_metrics`): x509-certificate-exporter's port,
/// loopback only; maas-region, which may share the machine, takes the next.
pub const CERT_METRICS: charm_lib::cert_metrics::Service = charm_lib::cert_metrics::Service {
    name: "postgresql-ha-cert-metrics",
    port: 9957,
};

/// PostgreSQL's port.
pub const PG_PORT: u16 = 5432;
/// Patroni's REST port.
pub const PATRONI_PORT: u16 = 8008;

/// Patroni's key prefix in etcd; its keys are `<namespace><scope>/...` (scope: the application).
pub const PATRONI_NAMESPACE: &str = "/postgresql-ha/";

/// `postgresql-ha/0` → `postgresql-ha-0` (Patroni member and etcd member names).
pub fn member_name(unit: &str) -> String {
    unit.replace('/', "-")
}

/// `postgresql-ha-0` → `postgresql-ha/0`.
pub fn unit_of_member(member: &str) -> String {
    match member.rsplit_once('-') {
        Some((app, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            format!("{app}/{n}")
        }
        _ => member.to_string(),
    }
}
