//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape jobs of this unit's rackd and maas-agent, the alert rules in
//! `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! rackd serves `/metrics` on 5249 (plain HTTP; MAAS's "Controller port settings"); the job
//! targets `localhost`, as the collector is a subordinate on this machine. A rack on a region's
//! host is run by the region's MAAS (region+rack), whose rackd answers there too.
//!
//! From MAAS 3.6 the rack's nginx (5248, which rackd renders from
//! src/provisioningserver/templates/http/rackd.nginx.conf.template in rackdservices/http.py
//! `RackHTTPService._configure`) proxies `/metrics/agent` to maas-agent's HTTP socket
//! (`agent-http.sock`, src/maasagent/cmd/maas-agent/main.go `setupHTTP`, `setupMetrics`): the
//! `agent` job, plain http on localhost:5248, as the official charm sends it in rack mode
//! (canonical/maas-charms maas-region `_generate_scrape_configs`, `MAAS_AGENT_METRICS_PORT`,
//! `MAAS_AGENT_METRICS_ENDPOINT`). 3.4 and 3.5 have no such location (their `location /`
//! sends the path to rackd's `/boot/`, a 404 that would fire HostDown), so the job goes only
//! while the MAAS this unit installed is 3.6 or later ([`installed_version`],
//! [`serves_agent_metrics`]). A rack co-located with a region runs in the region's MAAS
//! (region+rack), whose version is the region's: maas-region sends the job there.
//!
//! Logs: the cos_agent library carries snap slots only (`log_slots`, `snap:slot`). The maas
//! snap shares `$SNAP_COMMON/log` (/var/snap/maas/common/log: rackd.log, maas.log ...) through
//! its content slot `maas-logs` (canonical/maas snap/snapcraft.yaml `slots:`, since 3.3), so a
//! snap install sends [`SNAP_LOG_SLOT`]. The deb logs to /var/log/maas/*.log, which the
//! collectors read without being told (grafana-agent's machine charm
//! `_additional_log_configs`: `/var/log/**/*log`); the library has no field for a path.

use crate::maas::{Flavor, DEB_PACKAGE};
use charm_lib::cos_agent::{Dashboard, Provider, RuleFile, ScrapeJob, Topology, ENDPOINT};
use charm_lib::{Cmd, Context};

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "maas-rack";
/// rackd's Prometheus endpoint.
pub const RACKD_METRICS_PORT: u16 = 5249;
/// The rack's nginx (rackd.nginx.conf.template `listen 5248`).
pub const AGENT_METRICS_PORT: u16 = 5248;
/// maas-agent's metrics behind it (3.6+ `location /metrics/agent`).
pub const AGENT_METRICS_PATH: &str = "/metrics/agent";

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

/// Whether a MAAS of `version` (a snap channel or a deb's version) serves maas-agent's
/// metrics behind the rack's nginx: 3.6 and later.
pub fn serves_agent_metrics(version: &str) -> bool {
    contracts::maas_version::at_least(version, (3, 6))
}

/// What the MAAS this unit installed is: the snap channel it installed or last refreshed to
/// (charm state `snap-channel`), or the installed maas-rack-controller's version (dpkg).
/// `None` when this unit installed none (a rack co-located with a region, or not yet).
pub fn installed_version(
    ctx: &Context,
    installed: Option<Flavor>,
    channel: Option<&str>,
) -> anyhow::Result<Option<String>> {
    Ok(match installed {
        Some(Flavor::Snap) => channel.map(str::to_string),
        Some(Flavor::Deb) => {
            let out = ctx.machine.run(
                &Cmd::new("dpkg-query", ["-W", "-f=${Version}", DEB_PACKAGE]).allow_failure(),
            )?;
            let v = out.stdout.trim();
            (out.success() && !v.is_empty()).then(|| v.to_string())
        }
        None => None,
    })
}

/// The scrape jobs: rackd's, and maas-agent's when `agent` (the MAAS installed serves it).
pub fn jobs(agent: bool) -> Vec<ScrapeJob> {
    let mut jobs = vec![ScrapeJob {
        job_name: Some("rackd".into()),
        ..ScrapeJob::localhost("/metrics", RACKD_METRICS_PORT)
    }];
    if agent {
        jobs.push(ScrapeJob {
            job_name: Some("agent".into()),
            ..ScrapeJob::localhost(AGENT_METRICS_PATH, AGENT_METRICS_PORT)
        });
    }
    jobs
}

/// The metric names the jobs expose, from `src/metrics/rackd.names` and
/// `src/metrics/agent.names`, and the synthetic ones.
pub fn exposed() -> Vec<&'static str> {
    let mut all = SYNTHETIC.to_vec();
    for list in [
        include_str!("metrics/rackd.names"),
        include_str!("metrics/agent.names"),
    ] {
        all.extend(
            list.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        );
    }
    all
}

/// Writes this unit's data on every `cos-agent` relation (nothing to do without one); MAAS is
/// installed here as `installed`, from `channel` for a snap.
pub fn publish(
    ctx: &Context,
    installed: Option<Flavor>,
    channel: Option<&str>,
) -> anyhow::Result<()> {
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    let agent = installed_version(ctx, installed, channel)?
        .as_deref()
        .is_some_and(serves_agent_metrics);
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs: jobs(agent),
        log_slots: log_slots(installed),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}
