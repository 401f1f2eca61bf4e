//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape job of this application's VIP-state exporter
//! (`metrics`, on 127.0.0.1), the alert rules in `src/prometheus_alert_rules` and the dashboard
//! in `src/grafana_dashboards`.

use charm_lib::cos_agent::{Dashboard, Provider, RuleFile, ScrapeJob, Topology, ENDPOINT};
use charm_lib::Context;

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "keepalived-vip";

/// The alert rules sent.
pub const RULES: &[RuleFile<'static>] = &[RuleFile {
    path: "vip.rules",
    text: include_str!("prometheus_alert_rules/vip.rules"),
}];

/// The dashboards sent.
pub const DASHBOARDS: &[Dashboard<'static>] = &[Dashboard {
    path: "src/grafana_dashboards/keepalived-vip.json",
    json: include_str!("grafana_dashboards/keepalived-vip.json"),
}];

/// Series Prometheus adds to every target.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The scrape job of the exporter on `port`.
pub fn jobs(port: u16) -> Vec<ScrapeJob> {
    vec![ScrapeJob {
        job_name: Some("vip".into()),
        ..ScrapeJob::localhost("/metrics", port)
    }]
}

/// The metric names the job exposes (`src/metrics/vip.names`) and the synthetic ones.
pub fn exposed() -> Vec<&'static str> {
    let mut all = SYNTHETIC.to_vec();
    all.extend(
        include_str!("metrics/vip.names")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#')),
    );
    all
}

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one).
pub fn publish(ctx: &Context, port: u16) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(port),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
