//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape jobs of this unit's regiond and haproxy, the alert
//! rules in `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! Jobs target `localhost`: the collector is a subordinate on this machine. regiond serves
//! `/metrics` on 5239 (plain HTTP, whatever MAAS's TLS); haproxy's exporter listens on
//! 127.0.0.1:8405 ([`crate::render::HAPROXY_METRICS_PORT`]) when `haproxy` is on.
//!
//! Logs: the cos_agent library carries snap slots only (`log_slots`, `snap:slot`; the collector
//! connects its `logs` plug to each and reads what the slot shares). The maas snap shares
//! `$SNAP_COMMON/log` (/var/snap/maas/common/log: regiond.log, maas.log, nginx ...) through its
//! content slot `maas-logs` (canonical/maas snap/snapcraft.yaml `slots:`, since 3.3), so a snap
//! install sends [`SNAP_LOG_SLOT`]. The debs log to /var/log/maas/*.log, which the collectors
//! read without being told (grafana-agent's machine charm `_additional_log_configs`: job
//! `varlog`, `/var/log/**/*log`): there is nothing to declare, and the library has no field
//! for a path.

use crate::config::{Config, InstallMethod};
use crate::render::HAPROXY_METRICS_PORT;
use charm_lib::cos_agent::{Dashboard, Provider, RuleFile, ScrapeJob, Topology, ENDPOINT};
use charm_lib::Context;

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "maas-region";
/// regiond's Prometheus endpoint.
pub const REGIOND_METRICS_PORT: u16 = 5239;

/// The alert rules sent.
pub const RULES: &[RuleFile<'static>] = &[RuleFile {
    path: "maas_region.rules",
    text: include_str!("prometheus_alert_rules/maas_region.rules"),
}];

/// The dashboards sent.
pub const DASHBOARDS: &[Dashboard<'static>] = &[Dashboard {
    path: "src/grafana_dashboards/maas-region.json",
    json: include_str!("grafana_dashboards/maas-region.json"),
}];

/// The maas snap's content slot sharing its logs.
pub const SNAP_LOG_SLOT: &str = "maas:maas-logs";

/// The snap slots whose logs the collector should read.
pub fn log_slots(cfg: &Config) -> Vec<String> {
    match cfg.install_method {
        InstallMethod::Snap => vec![SNAP_LOG_SLOT.to_string()],
        InstallMethod::Deb => Vec::new(),
    }
}

/// Series Prometheus adds to every target.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The scrape jobs for `cfg`.
pub fn jobs(cfg: &Config) -> Vec<ScrapeJob> {
    let mut jobs = vec![ScrapeJob {
        job_name: Some("regiond".into()),
        ..ScrapeJob::localhost("/metrics", REGIOND_METRICS_PORT)
    }];
    if cfg.haproxy {
        jobs.push(ScrapeJob {
            job_name: Some("haproxy".into()),
            ..ScrapeJob::localhost("/metrics", HAPROXY_METRICS_PORT)
        });
    }
    jobs
}

/// The metric names a job (by its short name) exposes, from `src/metrics/<job>.names`.
pub fn exposed(job: &str) -> Vec<&'static str> {
    let list = match job {
        "regiond" => include_str!("metrics/regiond.names"),
        "haproxy" => include_str!("metrics/haproxy.names"),
        _ => "",
    };
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one).
pub fn publish(ctx: &Context, cfg: &Config) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(cfg),
        log_slots: log_slots(cfg),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
