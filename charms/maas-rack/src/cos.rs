//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape job of this unit's rackd, the alert rules in
//! `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! rackd serves `/metrics` on 5249 (plain HTTP; MAAS's "Controller port settings"); the job
//! targets `localhost`, as the collector is a subordinate on this machine. A rack on a region's
//! host is run by the region's MAAS (region+rack), whose rackd answers there too.
//!
//! Logs: the cos_agent library carries snap slots only (`log_slots`, `snap:slot`). The maas
//! snap shares `$SNAP_COMMON/log` (/var/snap/maas/common/log: rackd.log, maas.log ...) through
//! its content slot `maas-logs` (canonical/maas snap/snapcraft.yaml `slots:`, since 3.3), so a
//! snap install sends [`SNAP_LOG_SLOT`]. The deb logs to /var/log/maas/*.log, which the
//! collectors read without being told (grafana-agent's machine charm
//! `_additional_log_configs`: `/var/log/**/*log`); the library has no field for a path.

use crate::maas::Flavor;
use charm_lib::cos_agent::{Dashboard, Provider, RuleFile, ScrapeJob, Topology, ENDPOINT};
use charm_lib::Context;

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "maas-rack";
/// rackd's Prometheus endpoint.
pub const RACKD_METRICS_PORT: u16 = 5249;

/// The alert rules sent.
pub const RULES: &[RuleFile<'static>] = &[RuleFile {
    path: "maas_rack.rules",
    text: include_str!("prometheus_alert_rules/maas_rack.rules"),
}];

/// The dashboards sent.
pub const DASHBOARDS: &[Dashboard<'static>] = &[Dashboard {
    path: "src/grafana_dashboards/maas-rack.json",
    json: include_str!("grafana_dashboards/maas-rack.json"),
}];

/// The maas snap's content slot sharing its logs.
pub const SNAP_LOG_SLOT: &str = "maas:maas-logs";

/// The snap slots whose logs the collector should read, for MAAS installed as `installed`
/// (nothing yet: no slot to connect to).
pub fn log_slots(installed: Option<Flavor>) -> Vec<String> {
    match installed {
        Some(Flavor::Snap) => vec![SNAP_LOG_SLOT.to_string()],
        Some(Flavor::Deb) | None => Vec::new(),
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

/// The scrape jobs.
pub fn jobs() -> Vec<ScrapeJob> {
    vec![ScrapeJob {
        job_name: Some("rackd".into()),
        ..ScrapeJob::localhost("/metrics", RACKD_METRICS_PORT)
    }]
}

/// The metric names rackd's job exposes, from `src/metrics/rackd.names`, and the synthetic ones.
pub fn exposed() -> Vec<&'static str> {
    let mut all = SYNTHETIC.to_vec();
    all.extend(
        include_str!("metrics/rackd.names")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#')),
    );
    all
}

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one); MAAS is
/// installed here as `installed`.
pub fn publish(ctx: &Context, installed: Option<Flavor>) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(),
        log_slots: log_slots(installed),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
