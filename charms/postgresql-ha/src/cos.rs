//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): scrape jobs for this unit's Patroni and etcd, the alert rules in
//! `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! Patroni's REST API (8008) and etcd's client port (2379) serve `/metrics` over TLS and want a
//! client certificate from the application's CA (`verify_client: required`,
//! `client-cert-auth`): the jobs scrape 127.0.0.1 (named in every unit's certificate) with the
//! unit's own certificate and key, verifying the server with the application's CA. The CA is
//! sent inline, read from the file every unit keeps (see [`charm_lib::cos_agent::TlsConfig`]
//! for why not its path); the key stays a path under /etc/postgresql-ha/tls, which a collector
//! running unconfined as root reads (grafana-agent's default classic snap) and the strictly
//! confined opentelemetry-collector snap does not. Every series carries
//! `patroni_synchronous_mode` (the `synchronous-mode` option), which the "no synchronous
//! standby" rule needs.
//!
//! PostgreSQL's own statistics come from Debian's prometheus-postgres-exporter on
//! 127.0.0.1:9187 (plain http on loopback: the collector is on this machine), which reads them
//! as the `monitoring` role (pg_monitor, peer authentication from the OS user prometheus only).
//!
//! With a backup repository, the age of the last good backup comes from the charm's own
//! exporter on 127.0.0.1:9854 (see `backup_metrics`), plain http on loopback too.
//!
//! The dates of the unit's certificates come from charm-lib's certificate exporter on
//! 127.0.0.1:9793 (x509-certificate-exporter's metrics; `certificates.rules`).

use crate::config::{Config, SyncMode};
use crate::paths;
use charm_lib::cos_agent::{
    Dashboard, Provider, RuleFile, ScrapeJob, StaticConfig, TlsConfig, Topology, ENDPOINT,
};
use charm_lib::{Context, MachineExt};

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "postgresql-ha";

/// The alert rules sent.
pub const RULES: &[RuleFile<'static>] = &[
    RuleFile {
        path: "patroni.rules",
        text: include_str!("prometheus_alert_rules/patroni.rules"),
    },
    RuleFile {
        path: "postgresql_exporter.rules",
        text: include_str!("prometheus_alert_rules/postgresql_exporter.rules"),
    },
    RuleFile {
        path: "pgbackrest.rules",
        text: include_str!("prometheus_alert_rules/pgbackrest.rules"),
    },
    RuleFile {
        path: "certificates.rules",
        text: include_str!("prometheus_alert_rules/certificates.rules"),
    },
];

/// The dashboards sent.
pub const DASHBOARDS: &[Dashboard<'static>] = &[Dashboard {
    path: "src/grafana_dashboards/postgresql-ha.json",
    json: include_str!("grafana_dashboards/postgresql-ha.json"),
}];

/// Series Prometheus adds to every target.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The label every series gets with the `synchronous-mode` option's value.
pub const SYNC_MODE_LABEL: &str = "patroni_synchronous_mode";

fn sync_mode_name(m: SyncMode) -> &'static str {
    match m {
        SyncMode::On => "on",
        SyncMode::Quorum => "quorum",
        SyncMode::Off => "off",
    }
}

fn tls_job(name: &str, port: u16, sync: SyncMode, ca_pem: &str) -> ScrapeJob {
    ScrapeJob {
        job_name: Some(name.into()),
        metrics_path: "/metrics".into(),
        scheme: Some("https".into()),
        static_configs: vec![StaticConfig {
            targets: vec![format!("127.0.0.1:{port}")],
            labels: [(
                SYNC_MODE_LABEL.to_string(),
                sync_mode_name(sync).to_string(),
            )]
            .into(),
        }],
        tls_config: Some(TlsConfig {
            ca: Some(ca_pem.into()),
            cert_file: Some(paths::UNIT_CERT.into()),
            key_file: Some(paths::UNIT_KEY.into()),
            ..TlsConfig::default()
        }),
        scrape_interval: None,
    }
}

/// The scrape jobs for `cfg`; `ca_pem`: the application's CA, once this unit has it (Patroni
/// and etcd serve TLS only with it, so without it there is nothing to scrape there);
/// `backups`: the unit has a backup repository, so the backup exporter runs (a job for a
/// target that is not there would fire HostDown).
pub fn jobs(cfg: &Config, ca_pem: Option<&str>, backups: bool) -> Vec<ScrapeJob> {
    let mut jobs: Vec<ScrapeJob> = ca_pem
        .map(|ca| {
            vec![
                tls_job("patroni", paths::PATRONI_PORT, cfg.synchronous_mode, ca),
                tls_job("etcd", 2379, cfg.synchronous_mode, ca),
            ]
        })
        .unwrap_or_default();
    jobs.push(ScrapeJob {
        job_name: Some("postgresql".into()),
        metrics_path: "/metrics".into(),
        scheme: None,
        static_configs: vec![StaticConfig {
            targets: vec![format!("127.0.0.1:{}", paths::EXPORTER_PORT)],
            labels: [(
                SYNC_MODE_LABEL.to_string(),
                sync_mode_name(cfg.synchronous_mode).to_string(),
            )]
            .into(),
        }],
        tls_config: None,
        scrape_interval: None,
    });
    if backups {
        jobs.push(ScrapeJob {
            job_name: Some("pgbackrest".into()),
            metrics_path: "/metrics".into(),
            scheme: None,
            static_configs: vec![StaticConfig {
                targets: vec![crate::backup_metrics::target()],
                labels: [(
                    SYNC_MODE_LABEL.to_string(),
                    sync_mode_name(cfg.synchronous_mode).to_string(),
                )]
                .into(),
            }],
            tls_config: None,
            scrape_interval: None,
        });
    }
    jobs
}

/// The metric names the jobs expose (`src/metrics/*.names`), and the synthetic ones.
pub fn exposed() -> Vec<&'static str> {
    let mut all = SYNTHETIC.to_vec();
    for list in [
        include_str!("metrics/patroni.names"),
        include_str!("metrics/etcd.names"),
        include_str!("metrics/postgres_exporter.names"),
        include_str!("metrics/pgbackrest.names"),
    ] {
        all.extend(
            list.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        );
    }
    all.extend(charm_lib::cert_metrics::NAMES);
    all
}

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one, or while
/// the config is invalid: reconcile reports that).
pub fn publish(ctx: &Context) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    let Ok(cfg) = Config::from_raw(&ctx.model.config_raw()?) else {
        return Ok(());
    };
    // The file reconcile wrote in this hook, so the CA sent is the one Patroni and etcd use.
    let ca_pem = ctx
        .machine
        .read_to_string(std::path::Path::new(paths::CA_CERT))?
        .filter(|pem| !pem.trim().is_empty());
    let mut provider = Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(
            &cfg,
            ca_pem.as_deref(),
            matches!(
                crate::backup::repository(ctx)?,
                crate::backup::RepositoryState::Ready(_)
            ),
        ),
        ..Provider::default()
    };
    // Only once reconcile runs the exporter: a job without its target fires HostDown.
    let unit = charm_lib::cert_metrics::unit_path(&paths::CERT_METRICS);
    if ctx
        .machine
        .file_info(std::path::Path::new(&unit))?
        .is_some()
    {
        let mut job = charm_lib::cert_metrics::scrape_job(&paths::CERT_METRICS);
        job.static_configs[0].labels.insert(
            SYNC_MODE_LABEL.to_string(),
            sync_mode_name(cfg.synchronous_mode).to_string(),
        );
        provider.scrape_jobs.push(job);
    }
    provider.build()?.publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
