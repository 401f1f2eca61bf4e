//! Observability over `cos-agent` (Canonical's cos_agent interface, written by
//! [`charm_lib::cos_agent`]): the scrape jobs of this unit's regiond and haproxy, the alert
//! rules in `src/prometheus_alert_rules` and the dashboard in `src/grafana_dashboards`.
//!
//! Jobs target `localhost`: the collector is a subordinate on this machine. regiond serves
//! `/metrics` on 5239 (plain HTTP, whatever MAAS's TLS); haproxy's exporter listens on
//! 127.0.0.1:8405 ([`crate::render::HAPROXY_METRICS_PORT`]) when `haproxy` is on.
//!
//! MAAS's cluster statistics (machines by status, controllers, networks: canonical/maas
//! src/maasserver/prometheus/stats.py) are regiond's `/MAAS/metrics` behind MAAS's nginx, 404
//! until MAAS's `prometheus_enabled` setting is on. The leader turns it on once a collector is
//! related ([`enable_cluster_stats`]; the official charm's `enable_prometheus_metrics` turns it
//! on by default, but the page is public, so ours waits to be observed) and records it in the
//! peer databag; only then does any unit send the `cluster`
//! job, so no unit sends a target known to answer 404. Every region answers it from the same
//! database: each sends the job anyway, so that the statistics outlive any one region (a
//! dashboard takes one series per `maas_id`). With TLS applied, MAAS's nginx keeps
//! `/MAAS/metrics` off http (5240 answers it with a 301 to https: the
//! regiond.nginx.conf.template's http server when `tls_enabled`), so the job goes to
//! https://localhost:5443 and verifies the application's CA (the certificate names
//! `localhost`), where the official charm skips verification. The CA goes inline, from the
//! peer application databag every unit writes its CA file from: a strictly confined collector
//! cannot read that file (see [`charm_lib::cos_agent::TlsConfig`]).
//!
//! Temporal (MAAS 3.5+) serves its own metrics on 127.0.0.1:9000 only, and MAAS's nginx proxies
//! `/metrics/temporal` to it (canonical/maas production.yaml.template `metrics.prometheus`,
//! regiond.nginx.conf.template `upstream temporal-metrics`), in the same server block as
//! `/MAAS/metrics`: the `temporal` job goes the way the `cluster` job does ([`Nginx`]), without
//! waiting for `prometheus_enabled` (Temporal's listener is always on) but waiting for TLS
//! once it is wanted ([`Nginx::temporal`]), and only while the
//! MAAS installed here is 3.5 or later ([`installed_version`], [`serves_temporal`]): 3.4's
//! nginx answers the path 404, which would fire HostDown. The official charm sends the same
//! job (canonical/maas-charms maas-region: main's `_generate_scrape_configs`, the 3.7 and 3.8
//! tracks' `metrics_endpoints`; its 3.4 track has none).
//!
//! A region whose snap runs the rack too (`region+rack`: a maas-rack unit on this host, which
//! then installs nothing and sends no job for what it does not run) also serves, from MAAS 3.6,
//! maas-agent's metrics behind the rack's nginx on 5248 (`location /metrics/agent`,
//! src/provisioningserver/templates/http/rackd.nginx.conf.template): the `agent` job
//! ([`runs_rack`], [`serves_agent_metrics`]), plain http, as the official charm sends it in
//! rack mode (`enable_rack_mode`: `MAAS_AGENT_METRICS_PORT`, `MAAS_AGENT_METRICS_ENDPOINT`).
//!
//! Logs: the cos_agent library carries snap slots only (`log_slots`, `snap:slot`; the collector
//! connects its `logs` plug to each and reads what the slot shares). The maas snap shares
//! `$SNAP_COMMON/log` (/var/snap/maas/common/log: regiond.log, maas.log, nginx ...) through its
//! content slot `maas-logs` (canonical/maas snap/snapcraft.yaml `slots:`, since 3.3), so a snap
//! install sends [`SNAP_LOG_SLOT`]. The debs log to /var/log/maas/*.log, which the collectors
//! read without being told (grafana-agent's machine charm `_additional_log_configs`: job
//! `varlog`, `/var/log/**/*log`): there is nothing to declare, and the library has no field
//! for a path.

use crate::certs;
use crate::config::{Config, InstallMethod};
use crate::peers::AppBag;
use crate::render::HAPROXY_METRICS_PORT;
use charm_lib::cos_agent::{
    Dashboard, Provider, RuleFile, ScrapeJob, StaticConfig, TlsConfig, Topology, ENDPOINT,
};
use charm_lib::{Cmd, Context, MachineExt};

/// metadata.yaml's name (the dashboards' uid and the rules' `juju_charm` come from it).
pub const CHARM: &str = "maas-region";
/// regiond's Prometheus endpoint.
pub const REGIOND_METRICS_PORT: u16 = 5239;
/// MAAS's HTTP port (nginx), where `/MAAS/metrics` is served without TLS.
pub const MAAS_HTTP_PORT: u16 = 5240;
/// The cluster statistics' path (canonical/maas src/maasserver/urls.py `path("metrics", ...)`).
pub const CLUSTER_METRICS_PATH: &str = "/MAAS/metrics";
/// Peer application databag key: `true` once the leader turned `prometheus_enabled` on.
pub const STATS_ENABLED: &str = crate::peers::keys::STATS_ENABLED;
/// The CLI profile [`enable_cluster_stats`] logs in with (and out of, when done).
pub const PROFILE: &str = "juju-maas-region-cos";

/// Temporal's metrics behind MAAS's nginx (3.5+ regiond.nginx.conf.template `location
/// /metrics/temporal { proxy_pass http://temporal-metrics/metrics; }`).
pub const TEMPORAL_METRICS_PATH: &str = "/metrics/temporal";
/// The rack's nginx port (rackd.nginx.conf.template `listen 5248`; the official charm's
/// `MAAS_AGENT_METRICS_PORT`).
pub const AGENT_METRICS_PORT: u16 = 5248;
/// maas-agent's metrics behind the rack's nginx (3.6+ rackd.nginx.conf.template `location
/// /metrics/agent { proxy_pass http://maas-agent-http/metrics; }`; the official charm's
/// `MAAS_AGENT_METRICS_ENDPOINT`).
pub const AGENT_METRICS_PATH: &str = "/metrics/agent";

/// How a job reaches MAAS's nginx (the `cluster` and `temporal` jobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nginx {
    /// Over http on 5240.
    Http,
    /// Over https on 5443, verified with `ca`.
    Https {
        /// The application's CA certificate (PEM).
        ca: String,
    },
}

impl Nginx {
    /// From the peer application databag: https once MAAS serves TLS (`tls-applied`) with it
    /// wanted, and `None` while that CA is not there to verify with (MAAS's http port would
    /// only redirect to https, or not serve the path at all).
    pub fn of(cfg: &Config, peer_app: &AppBag) -> Option<Nginx> {
        if !(cfg.tls_enabled && peer_app.tls_applied.is_some()) {
            return Some(Nginx::Http);
        }
        let ca = peer_app.tls_ca.as_ref().filter(|c| !c.trim().is_empty())?;
        Some(Nginx::Https { ca: ca.clone() })
    }

    /// How the `cluster` job goes: as [`Nginx::settled`], and none before the leader turned
    /// the statistics on.
    pub fn cluster(cfg: &Config, peer_app: &AppBag) -> Option<Nginx> {
        if peer_app.stats_enabled != Some(true) {
            return None;
        }
        Nginx::settled(cfg, peer_app)
    }

    /// How the `temporal` job goes: as [`Nginx::settled`].
    pub fn temporal(cfg: &Config, peer_app: &AppBag) -> Option<Nginx> {
        Nginx::settled(cfg, peer_app)
    }

    /// As [`Nginx::of`], and none while TLS is wanted but not applied yet. The moment TLS is
    /// applied MAAS's nginx stops serving both paths on http (`/metrics/temporal` is in the
    /// TLS server block only, a 404 on 5240; `/MAAS/metrics` answers 301 to https, which the
    /// http job has no CA to verify), and a job that then moves to https leaves its last http
    /// sample, `up` 0, in a Prometheus fed by remote-write (no staleness marker) for its
    /// 5-minute lookback: HostDown would go pending in a healthy model.
    fn settled(cfg: &Config, peer_app: &AppBag) -> Option<Nginx> {
        if cfg.tls_enabled && peer_app.tls_applied.is_none() {
            return None;
        }
        Nginx::of(cfg, peer_app)
    }

    fn job(&self, name: &str, path: &str) -> ScrapeJob {
        match self {
            Nginx::Http => ScrapeJob {
                job_name: Some(name.into()),
                ..ScrapeJob::localhost(path, MAAS_HTTP_PORT)
            },
            Nginx::Https { ca } => ScrapeJob {
                job_name: Some(name.into()),
                metrics_path: path.into(),
                scheme: Some("https".into()),
                static_configs: vec![StaticConfig {
                    targets: vec![format!("localhost:{}", certs::TLS_PORT)],
                    labels: Default::default(),
                }],
                tls_config: Some(TlsConfig {
                    ca: Some(ca.clone()),
                    ..TlsConfig::default()
                }),
                scrape_interval: None,
            },
        }
    }
}

/// Whether a MAAS of `version` serves Temporal's metrics, 3.5 and later (3.4 has no
/// Temporal: no production.yaml.template, no `/metrics/temporal` in its nginx template).
/// `version` is a snap channel (`3.6/stable`; a track that is not a version, `latest` or a
/// bare risk, is the newest MAAS, as [`crate::maas::agent_ports`] takes it) or a deb's
/// version (`1:3.5.2-16343-g…`: epoch and suffix ignored).
pub fn serves_temporal(version: &str) -> bool {
    contracts::maas_version::at_least(version, (3, 5))
}

/// Whether a MAAS of `version` running the rack serves maas-agent's metrics behind its nginx
/// on 5248: 3.6 and later (`location /metrics/agent` first appears in 3.6's
/// src/provisioningserver/templates/http/rackd.nginx.conf.template; 3.4 and 3.5 answer the
/// path from rackd's `/boot/`, a 404). `version` as for [`serves_temporal`].
pub fn serves_agent_metrics(version: &str) -> bool {
    contracts::maas_version::at_least(version, (3, 6))
}

/// What this unit's MAAS is, for [`serves_temporal`] and [`serves_agent_metrics`]: the snap channel it installed or last
/// refreshed to (charm state `snap-channel`, not the `channel` option, which leads it during
/// a refresh), or the installed maas-region-api's version (dpkg: the debs' version is in no
/// option). `None` before MAAS is installed.
pub fn installed_version(
    ctx: &Context,
    cfg: &Config,
    stored: &crate::state::Stored,
) -> anyhow::Result<Option<String>> {
    Ok(match cfg.install_method {
        InstallMethod::Snap => stored.channel.clone(),
        InstallMethod::Deb if stored.deb.0 => {
            let out = ctx.machine.run(
                &Cmd::new(
                    "dpkg-query",
                    ["-W", "-f=${Version}", crate::maas::DEB_PACKAGES[0]],
                )
                .allow_failure(),
            )?;
            let v = out.stdout.trim();
            (out.success() && !v.is_empty()).then(|| v.to_string())
        }
        InstallMethod::Deb => None,
    })
}

/// Whether this unit's MAAS runs the rack too: the snap in mode `region+rack` (only the snap
/// runs both; MAAS writes `snap_mode` once `maas init` succeeded, so this is what runs, not
/// what is wanted). The rack unit on this host then registers nothing and sends no `agent`
/// job of its own, so the job is this unit's, as the official charm sends it in rack mode.
pub fn runs_rack(ctx: &Context, cfg: &Config) -> anyhow::Result<bool> {
    if cfg.install_method != InstallMethod::Snap {
        return Ok(false);
    }
    let mode = ctx
        .machine
        .read_to_string(std::path::Path::new(crate::maas::SNAP_MODE))?;
    Ok(crate::maas::snap_mode(mode.as_deref()) == "region+rack")
}

/// The alert rules sent.
pub const RULES: &[RuleFile<'static>] = &[
    RuleFile {
        path: "maas_region.rules",
        text: include_str!("prometheus_alert_rules/maas_region.rules"),
    },
    RuleFile {
        path: "certificates.rules",
        text: include_str!("prometheus_alert_rules/certificates.rules"),
    },
];

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

/// The scrape jobs for `cfg`: regiond's, the cluster statistics' and Temporal's when `cluster`
/// and `temporal` say how, maas-agent's when `agent` (this unit's MAAS runs the rack and
/// serves them), haproxy's when it runs.
pub fn jobs(
    cfg: &Config,
    cluster: Option<&Nginx>,
    temporal: Option<&Nginx>,
    agent: bool,
) -> Vec<ScrapeJob> {
    let mut jobs = vec![ScrapeJob {
        job_name: Some("regiond".into()),
        ..ScrapeJob::localhost("/metrics", REGIOND_METRICS_PORT)
    }];
    jobs.extend(cluster.map(|n| n.job("cluster", CLUSTER_METRICS_PATH)));
    jobs.extend(temporal.map(|n| n.job("temporal", TEMPORAL_METRICS_PATH)));
    if agent {
        // Plain http whatever MAAS's TLS: the rack's nginx has no TLS server.
        jobs.push(ScrapeJob {
            job_name: Some("agent".into()),
            ..ScrapeJob::localhost(AGENT_METRICS_PATH, AGENT_METRICS_PORT)
        });
    }
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
        "cluster" => include_str!("metrics/cluster.names"),
        "temporal" => include_str!("metrics/temporal.names"),
        "agent" => include_str!("metrics/agent.names"),
        "certificates" => return charm_lib::cert_metrics::NAMES.to_vec(),
        _ => "",
    };
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Runs the certificate exporter while MAAS serves TLS ([`certs::apply_exporter`]), then
/// writes this unit's data on every `cos-agent` relation (nothing to do without one). The
/// exporter is decided here, where the jobs are, so that every call (the leader calls again
/// once it has applied TLS) sends its job exactly while it runs.
pub fn publish(ctx: &Context, cfg: &Config, stored: &crate::state::Stored) -> anyhow::Result<()> {
    // reconcile has read it before and stopped if it does not parse: this read does.
    let peer_app: AppBag = match ctx.model.relation(crate::relations::PEERS)? {
        Some(rel) => rel.read_my_app()?,
        None => AppBag::default(),
    };
    certs::apply_exporter(ctx, cfg.install_method, cfg.tls_enabled, &peer_app)?;
    if ctx.model.relations(ENDPOINT)?.is_empty() {
        return Ok(());
    }
    let cluster = Nginx::cluster(cfg, &peer_app);
    let version = installed_version(ctx, cfg, stored)?;
    let temporal = match &version {
        Some(v) if serves_temporal(v) => Nginx::temporal(cfg, &peer_app),
        _ => None,
    };
    let agent = version.as_deref().is_some_and(serves_agent_metrics) && runs_rack(ctx, cfg)?;
    let mut scrape_jobs = jobs(cfg, cluster.as_ref(), temporal.as_ref(), agent);
    // Only while its exporter runs: a job without its target fires HostDown.
    let unit = charm_lib::cert_metrics::unit_path(&certs::CERT_METRICS);
    if ctx
        .machine
        .file_info(std::path::Path::new(&unit))?
        .is_some()
    {
        scrape_jobs.push(charm_lib::cert_metrics::scrape_job(&certs::CERT_METRICS));
    }
    Provider {
        topology: Some(Topology::of(&ctx.event, CHARM)),
        metrics_rules: RULES,
        dashboards: DASHBOARDS,
        scrape_jobs,
        log_slots: log_slots(cfg),
        ..Provider::default()
    }
    .build()?
    .publish(&ctx.model, ENDPOINT)?;
    Ok(())
}

/// Leader, once a collector is related: turns MAAS's `prometheus_enabled` on once, through
/// the API as the charm's own administrator (canonical/maas-charms helper.py
/// `set_prometheus_metrics`: `maas <profile> maas set-config name=prometheus_enabled
/// value=true`), and returns whether it did, for the caller to record it in the peer databag
/// (`prometheus-enabled`). `false` while there is nothing to do or nothing can be done yet (the
/// administrator is made first; a refusal is logged with MAAS's answer and tried again at the
/// next hook: the statistics wait, nothing else does). Once recorded it is not set again, so
/// an operator who turns it off keeps it off.
pub fn enable_cluster_stats(
    ctx: &Context,
    peer_app: &AppBag,
    cfg: &Config,
) -> anyhow::Result<bool> {
    // Only for a collector: MAAS serves the statistics to anyone who reaches its port
    // (stats.py's handler is public), so nobody's machine counts go out unasked.
    if peer_app.stats_enabled == Some(true)
        || peer_app.admin_secret_id.is_none()
        || ctx.model.relations(ENDPOINT)?.is_empty()
    {
        return Ok(false);
    }
    let m = cfg.install_method;
    let key = ctx.machine.run(
        &Cmd::new(
            crate::maas::admin(m),
            ["apikey", "--username", crate::internal_admin::USERNAME],
        )
        .allow_failure(),
    )?;
    let key = key
        .success()
        .then(|| {
            key.stdout
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .flatten();
    let Some(key) = key else {
        log::warn!(
            "prometheus_enabled: MAAS has no API key for {} yet",
            crate::internal_admin::USERNAME
        );
        return Ok(false);
    };
    let cli = crate::maas::cli(m);
    let ca = certs::ca_file(m).to_string_lossy().into_owned();
    let tls = cfg.tls_enabled && peer_app.tls_applied.is_some();
    // The key goes on stdin (`-`), not on a command line other processes can read.
    let login: Vec<&str> = if tls {
        vec![
            "login",
            PROFILE,
            crate::actions::LOCAL_API_TLS,
            "-",
            "--cacerts",
            &ca,
        ]
    } else {
        vec!["login", PROFILE, crate::actions::LOCAL_API, "-"]
    };
    let login_cmd = Cmd::new(cli, login)
        .stdin(format!("{key}\n"))
        .sensitive(&key)
        .allow_failure();
    let result = ctx.machine.run(&login_cmd).and_then(|out| {
        if !out.success() {
            return Ok(out);
        }
        ctx.machine.run(
            &Cmd::new(
                cli,
                [
                    PROFILE,
                    "maas",
                    "set-config",
                    "name=prometheus_enabled",
                    "value=true",
                ],
            )
            .allow_failure(),
        )
    });
    // The profile holds the key: never left behind.
    if let Err(e) = ctx
        .machine
        .run(&Cmd::new(cli, ["logout", PROFILE]).allow_failure())
    {
        log::warn!("maas logout {PROFILE}: {e}");
    }
    let out = result?;
    if !out.success() {
        log::warn!(
            "prometheus_enabled: MAAS refused (the cluster statistics wait for the next hook): {}",
            login_cmd.redact(&crate::maas::reason(&format!(
                "{}\n{}",
                out.stdout, out.stderr
            )))
        );
        return Ok(false);
    }
    Ok(true)
}
