//! maas-agent (MAAS 3.5+), the rack's Go daemon beside rackd, as a process of its own (snap:
//! pebble's `agent` service, snap/local/tree/usr/share/maas/pebble/layers/
//! 003-maas-rack-layer.yaml, `startup: disabled`; deb: maas-agent.service,
//! debian/maas-agent.maas-agent.service), started by rackd's service monitor
//! (src/provisioningserver/service_monitor.py `AgentServiceOnRack`, an `AlwaysOnService`),
//! so a stopped rackd leaves it serving. canonical/maas 3.6 src/maasagent/cmd/maas-agent/
//! main.go:
//!
//! - It dials the first `maas_url`'s host on 5271 (Temporal) and, in 3.6 and 3.7, on 5242 (the
//!   internal API) (`RackAgent._getConfiguration` in src/provisioningserver/rackdservices/
//!   external.py; `Controllers[0]`); the stand-in holds both connections and logs each change
//!   to rackd's log (event `agent`).
//! - From 3.6 it serves HTTP on the Unix socket `agent-http.sock` in MAAS's run directory
//!   (`setupHTTP`: the old socket unlinked, the new one 0660), which the rack's nginx proxies
//!   `/metrics/agent` to; `/metrics` is `promhttp.Handler()` (`setupMetrics`) over
//!   client_golang's default registry, into which OpenTelemetry's Prometheus exporter
//!   (go.opentelemetry.io/otel/exporters/prometheus v0.50.0) also writes `target_info` and
//!   the agent's meters. The stand-in serves a few of those names ([`metrics_text`]): the Go
//!   collector's `go_goroutines` and `go_threads` (its threads), the process collector's
//!   series (from /proc/self), promhttp's request counter, `target_info`, and the image cache's
//!   `cache_usage_total` and `cache_size` (src/maasagent/internal/cache/file.go
//!   `WithMetricMeter`, meter `httpproxy`: the stand-in caches nothing, so its counters stay 0
//!   and `max` is rackd.conf's default `httpproxy_cache_size`, 20 GB). Anything else on the
//!   socket is Go's ServeMux 404. The stand-in has no caching proxy (`httpproxy.sock`): the
//!   rack's nginx answers 502 for an image it would fetch.

use crate::conf::ConfFile;
use crate::http;
use crate::paths::Flavor;
use crate::snapinfo::Features;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// maas-agent's HTTP socket (`setupHTTP`: `path.Join(getRunDir(), "agent-http.sock")`;
/// `RackHTTPService._configure`'s `maas_agent_http_socket_path`).
pub fn http_socket(flavor: Flavor) -> PathBuf {
    flavor.run_dir().join("agent-http.sock")
}

/// maas-agent's caching proxy socket (`MAAS_AGENT_HTTPPROXY_SOCKET_PATH`, default
/// `<run dir>/httpproxy.sock`), which the stand-in does not serve.
pub fn httpproxy_socket(flavor: Flavor) -> PathBuf {
    flavor.run_dir().join("httpproxy.sock")
}

/// rackd.conf's `httpproxy_cache_size` default (src/provisioningserver/config.py:
/// `Number(min=1, if_missing=20 * 1000**3)`), the agent's cache maximum.
pub const CACHE_SIZE: u64 = 20 * 1000 * 1000 * 1000;

/// The OpenTelemetry labels v0.50's exporter puts on every series of a meter.
const SCOPE: &str = "otel_scope_name=\"httpproxy\",otel_scope_version=\"\"";

/// This process's threads, CPU seconds, resident bytes, open descriptors and start time
/// (what client_golang's process collector reads from /proc/self).
fn process_stats() -> (u64, f64, u64, u64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let cpu = (n(14) + n(15)) as f64 / tick;
    let threads = n(20);
    let rss = n(24) * page;
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let start = boot + n(22) as f64 / tick;
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (threads, cpu, rss, fds, start)
}

/// The text `/metrics` answers, as client_golang's text encoder writes the default registry
/// (families sorted by name); `served` is promhttp's count of earlier 200s.
pub fn metrics_text(served: u64) -> String {
    let (threads, cpu, rss, fds, start) = process_stats();
    let mut s = String::new();
    let mut fam = |name: &str, help: &str, kind: &str, lines: &[String]| {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
    };
    fam(
        "cache_size",
        "",
        "gauge",
        &[
            format!("cache_size{{{SCOPE},type=\"current\"}} 0"),
            format!("cache_size{{{SCOPE},type=\"max\"}} {CACHE_SIZE}"),
        ],
    );
    fam(
        "cache_usage_total",
        "",
        "counter",
        &["errors", "hits", "misses"]
            .map(|t| format!("cache_usage_total{{{SCOPE},type=\"{t}\"}} 0")),
    );
    fam(
        "go_goroutines",
        "Number of goroutines that currently exist.",
        "gauge",
        &[format!("go_goroutines {threads}")],
    );
    fam(
        "go_threads",
        "Number of OS threads created.",
        "gauge",
        &[format!("go_threads {threads}")],
    );
    fam(
        "otel_scope_info",
        "Instrumentation Scope metadata",
        "gauge",
        &[format!("otel_scope_info{{{SCOPE}}} 1")],
    );
    fam(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        "counter",
        &[format!("process_cpu_seconds_total {cpu}")],
    );
    fam(
        "process_open_fds",
        "Number of open file descriptors.",
        "gauge",
        &[format!("process_open_fds {fds}")],
    );
    fam(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        "gauge",
        &[format!("process_resident_memory_bytes {rss}")],
    );
    fam(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        &[format!("process_start_time_seconds {start}")],
    );
    fam(
        "promhttp_metric_handler_requests_total",
        "Total number of scrapes by HTTP status code.",
        "counter",
        &[
            format!("promhttp_metric_handler_requests_total{{code=\"200\"}} {served}"),
            "promhttp_metric_handler_requests_total{code=\"500\"} 0".to_string(),
            "promhttp_metric_handler_requests_total{code=\"503\"} 0".to_string(),
        ],
    );
    fam(
        "target_info",
        "Target metadata",
        "gauge",
        &["target_info{service_name=\"maas.agent\",telemetry_sdk_language=\"go\",telemetry_sdk_name=\"opentelemetry\",telemetry_sdk_version=\"1.29.0\"} 1".to_string()],
    );
    s
}

/// Listens on [`http_socket`] (0660, an old socket unlinked first) and answers `/metrics`.
fn serve_http(flavor: Flavor) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let path = http_socket(flavor);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("unlinking {}", path.display()))
        }
        _ => {}
    }
    let l = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    let served = Arc::new(AtomicU64::new(0));
    let handler: http::Handler = Arc::new(move |req: http::Request| {
        if req.path == "/metrics" {
            // promhttp counts a scrape once it is answered: this one is not in its own text.
            let text = metrics_text(served.load(Ordering::SeqCst));
            served.fetch_add(1, Ordering::SeqCst);
            http::Response::text(200, text)
        } else {
            http::Response::text(404, "404 page not found\n")
        }
    });
    http::serve_unix(l, handler);
    Ok(())
}

/// Runs maas-agent forever.
pub fn run(flavor: Flavor) -> anyhow::Result<()> {
    crate::util::set_comm("maas-agent");
    let f = crate::snapinfo::features(flavor);
    if !f.apiserver_and_temporal {
        anyhow::bail!("maas-agent: MAAS 3.4 has no agent");
    }
    std::thread::spawn(move || hold_connections(flavor, f));
    if f.internal_api {
        serve_http(flavor)
    } else {
        // 3.5's agent serves no HTTP (3.5 main.go has no setupHTTP).
        loop {
            std::thread::park();
        }
    }
}

/// maas-agent's connections (3.5+): the first `maas_url`'s host on Temporal's port and, from
/// 3.6, on the internal API's; reconnected every 5 s while down; changes logged.
fn hold_connections(flavor: Flavor, f: Features) {
    let mut held: BTreeMap<&'static str, (String, Option<TcpStream>)> = BTreeMap::new();
    let mut logged: Option<Value> = None;
    loop {
        let conf = ConfFile::load(&flavor.rackd_conf()).unwrap_or_default();
        let host = conf
            .maas_urls()
            .first()
            .and_then(|u| http::parse_url(u).ok())
            .map(|u| u.host);
        let ports = crate::regiond::ports();
        let mut want: Vec<(&'static str, u16)> = vec![("temporal", ports[2])];
        if f.internal_api {
            want.push(("internal", ports[1]));
        }
        let mut state = json!({});
        for (what, port) in want {
            let Some(h) = host.as_deref() else { continue };
            let target = if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            };
            let alive = match held.get(what) {
                Some((t, Some(s))) if *t == target => {
                    let _ = s.set_nonblocking(true);
                    let mut b = [0u8; 1];
                    let r = s.peek(&mut b);
                    let _ = s.set_nonblocking(false);
                    !matches!(r, Ok(0))
                        && !matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
                }
                _ => false,
            };
            if !alive {
                let s = target
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .and_then(|a| TcpStream::connect_timeout(&a, crate::rackd::FETCH_TIMEOUT).ok());
                held.insert(what, (target.clone(), s));
            }
            let up = held.get(what).is_some_and(|(_, s)| s.is_some());
            state[what] = json!({"target": target, "connected": up});
        }
        if logged.as_ref() != Some(&state) {
            let ok = state
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.values().all(|v| v["connected"] == true));
            let mut fields = state.clone();
            fields["maas_agent"] = json!(true);
            crate::rackd::log("agent", ok, fields);
            logged = Some(state);
        }
        std::thread::sleep(crate::rackd::INTERVAL_MID);
    }
}
