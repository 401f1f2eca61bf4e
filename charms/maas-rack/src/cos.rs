//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape job of this unit's rackd, the alert rules in
//! `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! rackd serves `/metrics` on 5249 (plain HTTP; MAAS's "Controller port settings"); the job
//! targets `localhost`, as the collector is a subordinate on this machine. A rack on a region's
//! host is run by the region's MAAS (region+rack), whose rackd answers there too.

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

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one).
pub fn publish(ctx: &Context) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
