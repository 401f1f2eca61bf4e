//! Temporal's server (MAAS 3.5+): its own process, listening on 5271 on every address.
//!
//! Where MAAS does it (canonical/maas 3.6): the snap's pebble service `temporal`
//! (snap/local/tree/usr/share/maas/pebble/layers/002-maas-region-layer.yaml, `startup:
//! disabled`, run-temporal: `temporal-server -e production -r $SNAP_DATA/temporal/ ... start`)
//! and the deb's maas-temporal.service (debian/maas-region-api.maas-temporal.service,
//! `ConditionPathIsDirectory=/var/lib/maas/temporal`, no `Restart=`); regiond renders
//! production.yaml into that directory (`RegionTemporalService._configure`,
//! src/maasserver/regiondservices/temporal.py; the frontend's `bindOnIP: "0.0.0.0"`, `grpcPort:
//! 5271` in src/maasserver/templates/temporal/production.yaml.template) and its service monitor
//! starts it (src/maasserver/service_monitor.py `TemporalService`, an `AlwaysOnService`). Once
//! started it does not depend on regiond's process: killing regiond leaves 5271 open.
//!
//! The stand-in accepts TCP connections and holds them until the peer closes; it speaks no gRPC.
//!
//! Metrics (3.5+): production.yaml.template's `global.metrics.prometheus` (`framework:
//! "tally"`, `timerType: "histogram"`, `listenAddress: "127.0.0.1:9000"`, "metrics are exposed
//! via load balancer": nginx's `location /metrics/temporal`, see [`crate::nginx`]). Temporal's
//! tally reporter serves `/metrics` on its own mux there and nothing else (Go's
//! `http.NotFound`, `404 page not found`, for any other path). The names are Temporal's own
//! (temporalio/temporal common/metrics/metric_defs.go: `service_requests`, `service_errors`,
//! `service_latency` timers as histograms in seconds, `persistence_requests`,
//! `persistence_latency`), labelled as its frontend and persistence layers label them
//! (`operation`, `namespace`, `service_name`; client_golang prints labels sorted). What the
//! stand-in counts, since it speaks no gRPC: every connection its frontend accepts is one
//! `PollWorkflowTaskQueue` request (MAAS's workers, regiond's and maas-agent's, long-poll
//! their task queues), observed in `service_latency` for as long as it is held; and, as the
//! history service's shard keeping does on a real idle Temporal, one `UpdateShard` persistence
//! request a second. No request ever fails, so `service_errors` never appears (Temporal
//! creates a counter at its first increment).

use crate::paths::Flavor;
use anyhow::{Context, Result};
use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Temporal's Prometheus port on 127.0.0.1 (production.yaml.template's `listenAddress`; test
/// override: `MAAS_STANDIN_TEMPORAL_METRICS_PORT`, since parallel tests share 127.0.0.1).
pub fn metrics_port() -> u16 {
    std::env::var("MAAS_STANDIN_TEMPORAL_METRICS_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(9000)
}

/// The metric families the stand-in serves, in the order it prints them.
pub const FAMILIES: &[&str] = &[
    "persistence_latency",
    "persistence_requests",
    "service_latency",
    "service_requests",
];

/// `service_latency`'s and `persistence_latency`'s upper bounds, in seconds (tally's
/// histogram timers report seconds).
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0,
];

/// What Temporal has counted since it started.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Frontend requests (connections accepted).
    requests: u64,
    /// Latencies of the requests that ended, seconds.
    latencies: Vec<f64>,
}

impl Stats {
    /// Nothing counted yet, started now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            requests: 0,
            latencies: Vec::new(),
        }
    }

    /// Prometheus text (format 0.0.4) as Temporal's tally reporter prints it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let frontend =
            r#"namespace="_unknown_",operation="PollWorkflowTaskQueue",service_name="frontend""#;
        let history = r#"operation="UpdateShard",service_name="history""#;
        let shard_updates = self.started.elapsed().as_secs();
        // (bucket counts, sum, count) of a histogram.
        let histogram = |s: &mut String,
                         name: &str,
                         labels: &str,
                         le: &dyn Fn(f64) -> u64,
                         sum: f64,
                         n: u64| {
            s.push_str(&format!(
                "# HELP {name} {name} histogram\n# TYPE {name} histogram\n"
            ));
            for b in BUCKETS {
                s.push_str(&format!(
                    "{name}_bucket{{{labels},le=\"{b}\"}} {}\n",
                    le(*b)
                ));
            }
            s.push_str(&format!(
                "{name}_bucket{{{labels},le=\"+Inf\"}} {n}\n{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {n}\n"
            ));
        };
        // The stand-in's persistence answers at once: every shard update took no time.
        histogram(
            &mut s,
            "persistence_latency",
            history,
            &|_| shard_updates,
            0.0,
            shard_updates,
        );
        s.push_str(&format!(
            "# HELP persistence_requests persistence_requests counter\n# TYPE persistence_requests counter\npersistence_requests{{{history}}} {shard_updates}\n"
        ));
        if self.requests > 0 {
            let l = &self.latencies;
            let le = |b: f64| l.iter().filter(|v| **v <= b).count() as u64;
            histogram(
                &mut s,
                "service_latency",
                frontend,
                &le,
                l.iter().sum(),
                l.len() as u64,
            );
            s.push_str(&format!(
                "# HELP service_requests service_requests counter\n# TYPE service_requests counter\nservice_requests{{{frontend}}} {}\n",
                self.requests
            ));
        }
        s
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// Answers one request to Temporal's metrics listener: `/metrics` only.
pub fn handle(stats: &Mutex<Stats>, req: &crate::http::Request) -> crate::http::Response {
    if req.path != "/metrics" {
        // Go's http.NotFound.
        return crate::http::Response::text(404, "404 page not found\n");
    }
    crate::http::Response {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
        body: stats.lock().unwrap().render().into_bytes(),
    }
}

/// The configuration regiond renders before the service may start.
pub fn config(flavor: Flavor) -> std::path::PathBuf {
    flavor.temporal_dir().join("production.yaml")
}

/// Port 5271 (test override: the third of `MAAS_STANDIN_PORTS`).
pub fn port() -> u16 {
    crate::regiond::ports()[2]
}

/// Writes production.yaml as `RegionTemporalService._configure` does (the parts that tell
/// where the frontend listens), 0600.
pub fn render(flavor: Flavor, broadcast: &str) -> Result<()> {
    std::fs::create_dir_all(flavor.temporal_dir())?;
    let bind = std::env::var("MAAS_STANDIN_BIND").unwrap_or_else(|_| "0.0.0.0".into());
    let text = format!(
        "# MAAS stand-in: src/maasserver/templates/temporal/production.yaml.template (listeners and metrics only)\n\
         global:\n  membership:\n    broadcastAddress: \"{broadcast}\"\n\
         \x20 metrics:\n    prometheus:\n      framework: \"tally\"\n      timerType: \"histogram\"\n\
         \x20     listenAddress: \"127.0.0.1:{}\"\n\
         services:\n  frontend:\n    rpc:\n      grpcPort: {}\n      bindOnIP: \"{bind}\"\n",
        metrics_port(),
        port()
    );
    crate::util::write_file(&config(flavor), text.as_bytes(), 0o600, None)
}

/// Runs the Temporal stand-in (process name `temporal-server`): never returns unless the
/// configuration is missing or the port cannot be bound.
pub fn run(flavor: Flavor) -> Result<()> {
    crate::util::set_comm("temporal-server");
    let conf = std::fs::read_to_string(config(flavor))
        .with_context(|| format!("temporal-server: reading {}", config(flavor).display()))?;
    let field = |k: &str| {
        conf.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let port: u16 = field("grpcPort:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(port);
    let bind = field("bindOnIP:").unwrap_or_else(|| "0.0.0.0".into());
    let l = TcpListener::bind((bind.as_str(), port))
        .with_context(|| format!("temporal-server: binding {bind}:{port}"))?;
    let stats = Arc::new(Mutex::new(Stats::new()));
    // Only with the configuration's metrics section (what MAAS 3.5+ renders).
    // A port taken leaves the frontend up (as regiond's exporter does): the scrape fails, which
    // is what a collector should see.
    match field("listenAddress:").map(|a| (TcpListener::bind(a.as_str()), a)) {
        Some((Ok(m), addr)) => {
            eprintln!("temporal-server: metrics on {addr}");
            let st = stats.clone();
            let handler: crate::http::Handler = Arc::new(move |req| handle(&st, &req));
            std::thread::spawn(move || crate::http::serve(m, handler));
        }
        Some((Err(e), addr)) => eprintln!("temporal-server: metrics cannot listen on {addr}: {e}"),
        None => {}
    }
    eprintln!("temporal-server: frontend on {bind}:{port}");
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        stats.lock().unwrap().requests += 1;
        let st = stats.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            st.lock().unwrap().latencies.push(t.elapsed().as_secs_f64());
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> crate::http::Request {
        crate::http::Request {
            method: "GET".into(),
            path: path.into(),
            query: vec![],
            headers: vec![],
            body: vec![],
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    /// Temporal's tally reporter serves `/metrics` only; its names are metric_defs.go's.
    #[test]
    fn metrics_only_on_slash_metrics_with_temporals_names() {
        let stats = Mutex::new(Stats::new());
        let r = handle(&stats, &get("/"));
        assert_eq!(
            (r.status, String::from_utf8(r.body).unwrap()),
            (404, "404 page not found\n".to_string())
        );
        let r = handle(&stats, &get("/metrics"));
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        // Nothing asked of the frontend yet: only the history service's persistence.
        assert!(
            text.contains("# TYPE persistence_requests counter"),
            "{text}"
        );
        assert!(!text.contains("service_requests"), "{text}");
        {
            let mut s = stats.lock().unwrap();
            s.requests = 2;
            s.latencies = vec![0.002, 30.0];
        }
        let text = String::from_utf8(handle(&stats, &get("/metrics")).body).unwrap();
        let l =
            r#"namespace="_unknown_",operation="PollWorkflowTaskQueue",service_name="frontend""#;
        for line in [
            format!("service_requests{{{l}}} 2"),
            format!("service_latency_bucket{{{l},le=\"0.005\"}} 1"),
            format!("service_latency_bucket{{{l},le=\"60\"}} 2"),
            format!("service_latency_count{{{l}}} 2"),
        ] {
            assert!(text.lines().any(|x| x == line), "{line} missing:\n{text}");
        }
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        families.sort();
        assert_eq!(families, FAMILIES);
    }
}
