//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): scrape jobs for this unit's Patroni and etcd, the alert rules in
//! `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! Patroni's REST API (8008) and etcd's client port (2379) want a client certificate from the
//! application's CA (`verify_client: required`, `client-cert-auth`), and a collector may not be
//! able to read one: the opentelemetry-collector snap is strictly confined (it reads neither
//! /etc/postgresql-ha/tls nor any principal's file) and a key cannot be sent inline. So both
//! jobs are plain http on loopback (the collector runs on this machine) with no `tls_config`:
//! - `patroni` scrapes the charm's relay on 127.0.0.1:9956 (see [`crate::patroni_metrics`]),
//!   which fetches Patroni's /metrics with the unit's certificate. Patroni down, the relay
//!   answers 503 and Prometheus counts a failed scrape: `up{job="patroni"}` is 0, as when it
//!   scraped Patroni itself, and cosl's HostDown says so after 5 minutes.
//! - `etcd` scrapes etcd's own metrics listener, `listen-metrics-urls:
//!   http://127.0.0.1:2381` ([`paths::ETCD_METRICS`]: /metrics and /health only, read-only).
//!   A member started by an earlier revision serves it only from its next start (the charm
//!   does not restart etcd for it, see `membership`); until then its job stays the former one
//!   on 2379, with the CA inline and the unit's key by path, which only an unconfined
//!   collector (grafana-agent's classic snap) reads.
//!
//! Both are sent once the application's CA is on the unit (Patroni and etcd run only with
//! it; the relay starts in the same step). Every series carries `patroni_synchronous_mode`
//! (the `synchronous-mode` option), which the "no synchronous standby" rule needs.
//!
//! PostgreSQL's own statistics come from Debian's prometheus-postgres-exporter on
//! 127.0.0.1:9187 (plain http on loopback: the collector is on this machine), which reads them
//! as the `monitoring` role (pg_monitor, peer authentication from the OS user prometheus only).
//!
//! With a backup repository, the age of the last good backup comes from the charm's own
//! exporter on 127.0.0.1:9959 (see `backup_metrics`), plain http on loopback too.
//!
//! The dates of the unit's certificates come from charm-lib's certificate exporter on
//! 127.0.0.1:9957 (x509-certificate-exporter's metrics; `certificates.rules`).

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

fn loopback_job(name: &str, target: String, sync: SyncMode) -> ScrapeJob {
    ScrapeJob {
        job_name: Some(name.into()),
        metrics_path: "/metrics".into(),
        scheme: None,
        static_configs: vec![StaticConfig {
            targets: vec![target],
            labels: [(
                SYNC_MODE_LABEL.to_string(),
                sync_mode_name(sync).to_string(),
            )]
            .into(),
        }],
        tls_config: None,
        scrape_interval: None,
    }
}

/// Where this unit's etcd serves its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdMetrics<'a> {
    /// Its loopback http listener ([`paths::ETCD_METRICS`]).
    Listener,
    /// Only its client port, over TLS with a client certificate (`ca_pem`: the application's
    /// CA): a member started before the charm added the listener, until its next start.
    ClientPort {
        /// The application's CA.
        ca_pem: &'a str,
    },
}

/// The scrape jobs for `cfg`; `etcd`: once this unit has the application's CA (Patroni,
/// the relay and etcd run only with it, so without it there is nothing to scrape there),
/// where etcd serves its metrics; `backups`: the unit has a backup repository, so the backup
/// exporter runs (a job for a target that is not there would fire HostDown).
pub fn jobs(cfg: &Config, etcd: Option<EtcdMetrics>, backups: bool) -> Vec<ScrapeJob> {
    let sync = cfg.synchronous_mode;
    let mut jobs = Vec::new();
    if let Some(etcd) = etcd {
        jobs.push(loopback_job(
            "patroni",
            crate::patroni_metrics::target(),
            sync,
        ));
        jobs.push(match etcd {
            EtcdMetrics::Listener => loopback_job(
                "etcd",
                format!("127.0.0.1:{}", paths::ETCD_METRICS_PORT),
                sync,
            ),
            EtcdMetrics::ClientPort { ca_pem } => ScrapeJob {
                scheme: Some("https".into()),
                tls_config: Some(TlsConfig {
                    ca: Some(ca_pem.into()),
                    cert_file: Some(paths::UNIT_CERT.into()),
                    key_file: Some(paths::UNIT_KEY.into()),
                    ..TlsConfig::default()
                }),
                ..loopback_job("etcd", "127.0.0.1:2379".into(), sync)
            },
        });
    }
    jobs.push(loopback_job(
        "postgresql",
        format!("127.0.0.1:{}", paths::EXPORTER_PORT),
        sync,
    ));
    if backups {
        jobs.push(loopback_job(
            "pgbackrest",
            crate::backup_metrics::target(),
            sync,
        ));
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
    // The file reconcile wrote in this hook: the CA sent (to a member still on the client
    // port) is the one etcd uses.
    let ca_pem = ctx
        .machine
        .read_to_string(std::path::Path::new(paths::CA_CERT))?
        .filter(|pem| !pem.trim().is_empty());
    let etcd = match &ca_pem {
        None => None,
        Some(_)
            if ctx
                .machine
                .file_info(std::path::Path::new(paths::ETCD_METRICS_PENDING))?
                .is_none() =>
        {
            Some(EtcdMetrics::Listener)
        }
        Some(ca_pem) => Some(EtcdMetrics::ClientPort { ca_pem }),
    };
    let mut provider = Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(
            &cfg,
            etcd,
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
