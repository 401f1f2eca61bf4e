//! MAAS's Prometheus exporters: regiond's `/metrics` and `/metrics_endpoints` on 5239 and
//! rackd's `/metrics` on 5249 (canonical/maas, 3.4 to master; facts only, no code):
//!
//! - The metrics are `METRICS_DEFINITIONS` of src/provisioningserver/prometheus/metrics.py,
//!   every one with two more labels, `host` (the address of the interface of the default
//!   route, `get_machine_default_gateway_ip`, read once at start) and `maas_id` (the MAAS
//!   installation's UUID, `GLOBAL_LABELS["maas_uuid"]`, read at each observation: `None`
//!   until regiond's `MAASServices._set_globals` or the rack's registration sets it,
//!   clusterservice.py `ClusterClient.registerRackWithRegion`).
//! - MAAS runs prometheus_client in multiprocess mode (`prometheus_multiproc_dir`: the snap's
//!   run-pebble-daemon / run-supervisord, the debs' maas-regiond.service and maas-rackd.service),
//!   and `PrometheusMetrics.generate_latest` (src/provisioningserver/prometheus/utils.py)
//!   answers from a fresh registry with only a `MultiProcessCollector`. So a metric appears
//!   only once something observed it (every one is labelled; a child is created by its first
//!   observation), its HELP is the collector's `Multiprocess metric`, not the definition's
//!   description (prometheus_client multiprocess.py `MP_METRIC_HELP`), labels come sorted with
//!   `le` last, a histogram child shows all its buckets, `_count` and `_sum`, and there are no
//!   `_created` series and no process or platform collectors. Before any observation the
//!   answer is 200 with an empty body.
//! - `PrometheusMetricsResource.render_GET` (resource.py): `Content-Type: text/plain`; 404 with
//!   an empty body when there is no registry (`generate_latest` returns None; not a case here).
//! - `create_prometheus_exporter_service` (src/maasserver/prometheus/service.py): a Twisted
//!   site on `TCP6ServerEndpoint(reactor, 5239)` (all addresses) with `metrics` (a leaf, so
//!   `/metrics/anything` is the same) and `metrics_endpoints`, run by the master regiond
//!   process only (`"prometheus-exporter": {"only_on_master": True}` in
//!   src/maasserver/eventloop.py), started after `RegionEventLoop.prepare`. rackd's `metrics`
//!   is a child of its HTTP site on `::` 5249 (src/provisioningserver/plugin.py
//!   `_makeHTTPService`, rackdservices/http.py `HTTPResource`), started with rackd.
//!
//! - Up to 3.5 `PROMETHEUS_METRICS` also had `update_handlers` that set the host's memory
//!   (`maas_node_mem_<field>` gauges, labelled with the writer's `pid` as multiprocess gauges
//!   are) and CPU time (`maas_node_cpu_time` counter) from /proc before every answer
//!   (src/provisioningserver/prometheus/collectors.py, removed in 3.6), with a third global
//!   label, `service_type`; so those releases never answer an empty body.
//!
//! What the stand-in observes, because it really does it: regiond's HTTP requests
//! (`maas_http_request_latency`, `maas_http_response_size`, as
//! src/maasserver/prometheus/middleware.py `PrometheusRequestMetricsMiddleware`) and the rack's
//! `Ping` to each region (`maas_rack_region_rpc_call_latency{call="Ping"}`, recorded by
//! `Common.__call__` in src/provisioningserver/rpc/common.py through
//! `ClusterClientCheckerService._ping`). It does not count its SQL statements, so
//! `maas_http_request_query_*` never appear; nothing else it does has a metric.

use crate::http::{self, Request, Response};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

/// `REGION_PROMETHEUS_PORT` (src/maasserver/prometheus/service.py).
pub const REGION_PORT: u16 = 5239;
/// `RACK_PROMETHEUS_PORT` (same file; rackd binds 5249 in plugin.py `_makeHTTPService`).
pub const RACK_PORT: u16 = 5249;

/// prometheus_client's `Histogram.DEFAULT_BUCKETS` (+Inf is added to every histogram).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const SIZE_BUCKETS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
const QUERY_COUNT_BUCKETS: &[f64] = &[10.0, 25.0, 50.0, 100.0, 200.0, 500.0];

/// The two label names `PROMETHEUS_METRICS` adds to every definition (`extra_labels`).
pub const EXTRA_LABELS: &[&str] = &["host", "maas_id"];

/// A metric's type, as prometheus_client names the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Counter`: `# TYPE x counter`, sample `x_total`.
    Counter,
    /// `Histogram`: `x_bucket{le=...}`, `x_count`, `x_sum`.
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn type_word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One `MetricDefinition`.
#[derive(Debug)]
pub struct Def {
    /// Counter or histogram.
    pub kind: Kind,
    /// The metric's name.
    pub name: &'static str,
    /// The definition's description (which the multiprocess endpoint does not serve).
    pub description: &'static str,
    /// The definition's own label names (the extra two follow).
    pub labels: &'static [&'static str],
    /// Upper bounds of a histogram's buckets, without +Inf.
    pub buckets: &'static [f64],
}

const HTTP: &[&str] = &["method", "path", "status", "op"];
const CALL: &[&str] = &["call"];

const fn h(name: &'static str, description: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        kind: Kind::Histogram,
        name,
        description,
        labels,
        buckets: DEFAULT_BUCKETS,
    }
}

const fn c(name: &'static str, description: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        kind: Kind::Counter,
        name,
        description,
        labels,
        buckets: &[],
    }
}

/// `METRICS_DEFINITIONS` (src/provisioningserver/prometheus/metrics.py), in its order. Both
/// regiond and rackd register all of them; each shows what its process observed.
pub const DEFINITIONS: &[Def] = &[
    h(
        "maas_rack_region_rpc_call_latency",
        "Latency of Rack-Region RPC call",
        CALL,
    ),
    h(
        "maas_tftp_file_transfer_latency",
        "Latency of TFTP file downloads",
        &["filename"],
    ),
    h("maas_http_request_latency", "HTTP request latency", HTTP),
    Def {
        buckets: SIZE_BUCKETS,
        ..h("maas_http_response_size", "HTTP response size", HTTP)
    },
    Def {
        buckets: QUERY_COUNT_BUCKETS,
        ..h(
            "maas_http_request_query_count",
            "HTTP request query count",
            HTTP,
        )
    },
    h(
        "maas_http_request_query_latency",
        "HTTP request query latency",
        HTTP,
    ),
    h(
        "maas_region_rack_rpc_call_latency",
        "Latency of Region-Rack RPC call",
        CALL,
    ),
    h(
        "maas_websocket_call_latency",
        "Latency of a Websocket handler call",
        CALL,
    ),
    Def {
        buckets: QUERY_COUNT_BUCKETS,
        ..h(
            "maas_websocket_call_query_count",
            "Websocket call query count",
            CALL,
        )
    },
    h(
        "maas_websocket_call_query_latency",
        "HTTP request query latency",
        CALL,
    ),
    c(
        "maas_virsh_fetch_description_failure",
        "dumpxml failures from virsh",
        &[],
    ),
    c(
        "maas_virsh_fetch_mac_failure",
        "domiflist failures from virsh",
        &[],
    ),
    c(
        "maas_virsh_storage_pool_creation_failure",
        "domiflist failures from virsh",
        &[],
    ),
    c(
        "maas_lxd_disk_creation_failure",
        "failures of LXD disk creation",
        &[],
    ),
    c(
        "maas_lxd_fetch_machine_failure",
        "failures for fetching LXD machines",
        &[],
    ),
    c(
        "maas_rpc_pool_exhaustion_count",
        "counts the number of occurances of the RPC connection pool allocate its maxmimum number of connections",
        &[],
    ),
    c(
        "maas_dns_full_zonefile_write_count",
        "counts the number of times MAAS writes to a zonefile rather than push a dynamic update per DNS zone",
        &["zone"],
    ),
    c(
        "maas_dns_dynamic_update_count",
        "counts the number of times MAAS pushes a dynamic update per DNS zone rather than writing a zonefile",
        &["zone"],
    ),
    h(
        "maas_dns_update_latency",
        "the time it takes MAAS to update BIND",
        &["update_type"],
    ),
];

/// The HELP text the multiprocess collector gives every metric (prometheus_client
/// multiprocess.py `MP_METRIC_HELP`).
pub const MULTIPROCESS_HELP: &str = "Multiprocess metric";

/// The definition named `name`.
pub fn def(name: &str) -> Option<&'static Def> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

#[derive(Clone, Debug)]
enum Value {
    Counter(f64),
    /// Per-bucket (not cumulative) counts, the last one +Inf, and the sum.
    Histogram(Vec<f64>, f64),
}

/// Label pairs, sorted by name (the multiprocess collector sorts them).
type LabelSet = Vec<(String, String)>;

/// One process's metrics (prometheus_client's global registry).
pub struct Registry {
    host: String,
    maas_id: Mutex<Option<String>>,
    /// `GLOBAL_LABELS["service_type"]` (3.4, 3.5: `region` or `rack`, set with the UUID).
    service_type: Mutex<Option<String>>,
    node: Option<crate::snapinfo::NodeMetrics>,
    values: Mutex<BTreeMap<(&'static str, LabelSet), Value>>,
}

/// 3.5's `MEMINFO_FIELDS` (src/provisioningserver/prometheus/collectors.py): each is a gauge
/// `maas_node_mem_<field>` labelled `service_type`, in kB as /proc/meminfo has it.
pub const MEMINFO_FIELDS: &[&str] = &[
    "AnonPages",
    "Buffers",
    "Cached",
    "CommitLimit",
    "Committed_AS",
    "Dirty",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "HugePages_Total",
    "Mapped",
    "MemAvailable",
    "MemFree",
    "MemTotal",
    "PageTables",
    "Shmem",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "SwapCached",
    "SwapFree",
    "SwapTotal",
    "VmallocChunk",
    "VmallocTotal",
    "VmallocUsed",
    "Writeback",
    "WritebackTmp",
];

/// collectors.py `CPU_TIME_FIELDS`: the `cpu` row of /proc/stat, in order.
pub const CPU_TIME_FIELDS: &[&str] = &[
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
];

/// collectors.py `USER_HZ`: CPU ticks per second.
const USER_HZ: f64 = 100.0;

impl Registry {
    /// An empty registry whose `host` label is `host` (`None` renders as Python's `None`).
    pub fn new(host: Option<String>) -> Registry {
        Registry::with_node_metrics(host, None)
    }

    /// A registry of a MAAS whose endpoints also report the host's memory and CPU (3.4, 3.5).
    pub fn with_node_metrics(
        host: Option<String>,
        node: Option<crate::snapinfo::NodeMetrics>,
    ) -> Registry {
        Registry {
            host: host.unwrap_or_else(|| "None".into()),
            maas_id: Mutex::new(None),
            service_type: Mutex::new(None),
            node,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// `set_global_labels(maas_uuid=..., service_type=...)` (3.4 and 3.5 set both, later
    /// releases the UUID only): later observations carry them.
    pub fn set_maas_uuid(&self, uuid: &str, service_type: &str) {
        if let Ok(mut m) = self.maas_id.lock() {
            *m = Some(uuid.to_string());
        }
        if let Ok(mut t) = self.service_type.lock() {
            *t = Some(service_type.to_string());
        }
    }

    /// The node metrics' text, read from /proc now (`update_memory_metrics`,
    /// `update_cpu_metrics`, run before every answer). The memory fields are gauges, which the
    /// multiprocess collector labels with the writing process's `pid` (mode `all`); the CPU
    /// times are a counter `set` to ticks / USER_HZ.
    fn node_text(&self, node: crate::snapinfo::NodeMetrics) -> String {
        let lock = |m: &Mutex<Option<String>>| {
            m.lock()
                .ok()
                .and_then(|v| v.clone())
                .unwrap_or_else(|| "None".into())
        };
        let (maas_id, service_type) = (lock(&self.maas_id), lock(&self.service_type));
        let pid = std::process::id().to_string();
        let base = |extra: &[(&str, &str)]| -> LabelSet {
            let mut l: LabelSet = vec![
                ("host".into(), self.host.clone()),
                ("maas_id".into(), maas_id.clone()),
                ("service_type".into(), service_type.clone()),
            ];
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l.sort();
            l
        };
        let mut out = String::new();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        for line in meminfo.lines() {
            let mut it = line.split_whitespace();
            let (Some(key), Some(value)) = (it.next(), it.next()) else {
                continue;
            };
            let key = key.trim_end_matches(':');
            let listed = MEMINFO_FIELDS.contains(&key)
                && !(node == crate::snapinfo::NodeMetrics::V3_4
                    && (key == "VmallocChunk" || key == "VmallocTotal"));
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if listed {
                let name = format!("maas_node_mem_{key}");
                out.push_str(&format!(
                    "# HELP {name} {MULTIPROCESS_HELP}\n# TYPE {name} gauge\n"
                ));
                out.push_str(&sample(&name, &base(&[("pid", &pid)]), None, v));
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        if let Some(cpu) = stat.lines().next() {
            out.push_str(&format!(
                "# HELP maas_node_cpu_time {MULTIPROCESS_HELP}\n# TYPE maas_node_cpu_time counter\n"
            ));
            for (state, ticks) in CPU_TIME_FIELDS.iter().zip(cpu.split_whitespace().skip(1)) {
                if let Ok(t) = ticks.parse::<f64>() {
                    out.push_str(&sample(
                        "maas_node_cpu_time_total",
                        &base(&[("state", state)]),
                        None,
                        t / USER_HZ,
                    ));
                }
            }
        }
        out
    }

    fn label_set(&self, d: &Def, labels: &[(&str, &str)]) -> Option<LabelSet> {
        if labels.len() != d.labels.len()
            || d.labels.iter().any(|n| !labels.iter().any(|(k, _)| k == n))
        {
            // prometheus_client raises ValueError("Incorrect label names"); MAAS never does this.
            eprintln!(
                "metrics: {} takes labels {:?}, got {labels:?}",
                d.name, d.labels
            );
            return None;
        }
        let maas_id = self
            .maas_id
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or_else(|| "None".into());
        let mut set: LabelSet = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        set.push(("host".into(), self.host.clone()));
        set.push(("maas_id".into(), maas_id));
        set.sort();
        Some(set)
    }

    /// `update(name, "observe", value, labels)` on a histogram: the first bucket whose bound
    /// is at least `value` counts it (prometheus_client `Histogram.observe`).
    pub fn observe(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(d) = def(name).filter(|d| d.kind == Kind::Histogram) else {
            eprintln!("metrics: no histogram {name}");
            return;
        };
        let Some(set) = self.label_set(d, labels) else {
            return;
        };
        let Ok(mut values) = self.values.lock() else {
            return;
        };
        let v = values
            .entry((d.name, set))
            .or_insert_with(|| Value::Histogram(vec![0.0; d.buckets.len() + 1], 0.0));
        if let Value::Histogram(counts, sum) = v {
            let i = d
                .buckets
                .iter()
                .position(|b| value <= *b)
                .unwrap_or(d.buckets.len());
            counts[i] += 1.0;
            *sum += value;
        }
    }

    /// `update(name, "inc", 1, labels)` on a counter.
    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        let Some(d) = def(name).filter(|d| d.kind == Kind::Counter) else {
            eprintln!("metrics: no counter {name}");
            return;
        };
        let Some(set) = self.label_set(d, labels) else {
            return;
        };
        if let Ok(mut values) = self.values.lock() {
            if let Value::Counter(n) = values.entry((d.name, set)).or_insert(Value::Counter(0.0)) {
                *n += 1.0;
            }
        }
    }

    /// The text exposition format (0.0.4), as `generate_latest` over a `MultiProcessCollector`.
    pub fn render(&self) -> String {
        let Ok(values) = self.values.lock() else {
            return String::new();
        };
        let mut out = self.node.map(|n| self.node_text(n)).unwrap_or_default();
        for d in DEFINITIONS {
            let children: Vec<_> = values.iter().filter(|((n, _), _)| *n == d.name).collect();
            if children.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "# HELP {} {MULTIPROCESS_HELP}\n# TYPE {} {}\n",
                d.name,
                d.name,
                d.kind.type_word()
            ));
            for ((_, labels), v) in children {
                match v {
                    Value::Counter(n) => {
                        out.push_str(&sample(&format!("{}_total", d.name), labels, None, *n))
                    }
                    Value::Histogram(counts, sum) => {
                        let mut acc = 0.0;
                        for (i, n) in counts.iter().enumerate() {
                            acc += n;
                            let le = d
                                .buckets
                                .get(i)
                                .map(|b| go_float(*b))
                                .unwrap_or_else(|| "+Inf".into());
                            out.push_str(&sample(
                                &format!("{}_bucket", d.name),
                                labels,
                                Some(&le),
                                acc,
                            ));
                        }
                        out.push_str(&sample(&format!("{}_count", d.name), labels, None, acc));
                        out.push_str(&sample(&format!("{}_sum", d.name), labels, None, *sum));
                    }
                }
            }
        }
        out
    }
}

/// prometheus_client's `floatToGoString`: `1.0`, `0.005`, `+Inf`.
pub fn go_float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.is_nan() {
        return "NaN".into();
    }
    let s = format!("{v:?}");
    if s.contains('e') {
        // Python's repr switches to exponents at 1e16; Rust's Debug does too, spelled `1e16`.
        return s.replace("e", "e+").replace("e+-", "e-");
    }
    s
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn sample(name: &str, labels: &LabelSet, le: Option<&str>, value: f64) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{name}{{{}}} {}\n", parts.join(","), go_float(value))
}

/// The process's registry (prometheus_client's `REGISTRY`, `PROMETHEUS_METRICS`).
pub fn global() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let flavor = FLAVOR.get().copied().unwrap_or(crate::paths::Flavor::Deb);
        let f = crate::snapinfo::features(flavor);
        Registry::with_node_metrics(default_gateway_ip(), f.node_metrics)
    })
}

static FLAVOR: OnceLock<crate::paths::Flavor> = OnceLock::new();

/// Which MAAS this process is (its release decides whether node metrics are reported); call
/// before the first observation.
pub fn configure(flavor: crate::paths::Flavor) {
    let _ = FLAVOR.set(flavor);
}

/// `get_machine_default_gateway_ip` (src/provisioningserver/utils/ipaddr.py): the first
/// address of the default route's interface, IPv4 first, then IPv6; None without a default
/// route.
pub fn default_gateway_ip() -> Option<String> {
    let v4 = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| {
            t.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
            })
        });
    if let Some(ip) = v4.and_then(|i| first_address(&i, "-4")) {
        return Some(ip);
    }
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo")
                    .then(|| f[9].to_string())
            })
        });
    v6.and_then(|i| first_address(&i, "-6"))
}

fn first_address(iface: &str, family: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args([family, "-o", "addr", "show", "dev", iface])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split_whitespace();
        it.find(|w| *w == "inet" || *w == "inet6")?;
        it.next()?.split('/').next().map(str::to_string)
    })
}

/// The exporter's ports: regiond's and rackd's (test override:
/// `MAAS_STANDIN_METRICS_PORTS=region,rack`; parallel tests on one host cannot all have 5239).
pub fn ports() -> (u16, u16) {
    std::env::var("MAAS_STANDIN_METRICS_PORTS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or((REGION_PORT, RACK_PORT))
}

/// What a `/metrics_endpoints` request gets answered with (regiond reads the database).
pub type Endpoints = Arc<dyn Fn() -> anyhow::Result<serde_json::Value> + Send + Sync>;

/// Answers one request to the exporter. `endpoints` is regiond's `metrics_endpoints` child;
/// rackd has none.
pub fn handle(registry: &Registry, endpoints: Option<&Endpoints>, req: &Request) -> Response {
    let metrics = req.path == "/metrics" || req.path.starts_with("/metrics/");
    let discovery = endpoints.filter(|_| req.path == "/metrics_endpoints");
    if !metrics && discovery.is_none() {
        // Twisted's `NoResource`.
        return Response {
            status: 404,
            content_type: "text/html".into(),
            body: b"<html>\n  <head><title>404 - No Such Resource</title></head>\n  <body>\n    <h1>No Such Resource</h1>\n    <p>No such child resource.</p>\n  </body>\n</html>\n".to_vec(),
        };
    }
    if req.method != "GET" && req.method != "HEAD" {
        // Twisted's `UnsupportedMethod`: the resources render GET only (HEAD falls back to it).
        return Response::text(405, "Method Not Allowed\n");
    }
    if let Some(f) = discovery {
        return match f() {
            Ok(v) => Response::json(200, &v),
            Err(e) => Response::text(500, format!("{e:#}\n")),
        };
    }
    Response {
        status: 200,
        content_type: "text/plain".into(),
        body: registry.render().into_bytes(),
    }
}

/// Listens on every address (`::`, dual-stack; `0.0.0.0` without IPv6), or on the one
/// address a test pins with `MAAS_STANDIN_BIND`, and serves the exporter on its own threads.
/// A port already taken is logged and the daemon goes on without its exporter.
pub fn serve(what: &str, port: u16, endpoints: Option<Endpoints>) {
    let bind = std::env::var("MAAS_STANDIN_BIND")
        .ok()
        .filter(|s| !s.is_empty());
    let l = match &bind {
        Some(a) => TcpListener::bind((a.as_str(), port)),
        None if std::path::Path::new("/proc/net/if_inet6").exists() => {
            TcpListener::bind(("::", port))
        }
        None => TcpListener::bind(("0.0.0.0", port)),
    };
    match l {
        Ok(l) => {
            eprintln!("{what}: Prometheus exporter on port {port}");
            let handler: http::Handler =
                Arc::new(move |req| handle(global(), endpoints.as_ref(), &req));
            std::thread::spawn(move || http::serve(l, handler));
        }
        Err(e) => eprintln!("{what}: Prometheus exporter cannot listen on {port}: {e}"),
    }
}

/// MAAS's cluster statistics, `GET /MAAS/metrics` on the region's HTTP port (canonical/maas
/// src/maasserver/prometheus/stats.py `prometheus_stats_handler`, routed as `metrics` in
/// src/maasserver/urls.py and public: `reverse("metrics")` is in middleware.py's public paths).
///
/// - 404 with an empty body unless the `prometheus_enabled` setting is on (the handler reads it
///   at every request; MAAS's default is off).
/// - Otherwise a registry of its own (not multiprocess): `STATS_DEFINITIONS`, every one a gauge
///   with `maas_id` (the installation's uuid) after its own labels, in the order the definitions
///   register and with each definition's own HELP. prometheus_client prints labels in the
///   order of the label names (not sorted) and a metric nobody set (every one has a label) as
///   its HELP and TYPE lines only. `update_prometheus_stats` sets, from the database at each
///   request: machines by status (`get_machine_state_stats`: the 11 statuses), nodes by type
///   (`get_maas_stats`: regionracks, regions, racks, then machines, devices), the network
///   counts (`get_subnets_stats`), the machines' combined resources (`get_machine_stats`:
///   NotNullSum, 0 without machines), `site_manager_connection`, the racks' services, the
///   average deployment time (NaN without a deployed machine), arches, the subnets' IP use and
///   custom images.
///
/// What the stand-in has of that: controllers (its region and rack tables), VLANs, fabrics and
/// subnets its racks reported; no machines, devices, spaces, services (MAAS's service
/// monitor), images or Site Manager: those are the zeros and NaN MAAS itself reports without
/// them. Not served: `maas_net_subnet_ip_*` (the stand-in keeps no IP addresses to count), so
/// they show as MAAS shows a metric never set.
pub const STATS_DEFINITIONS: &[(&str, &str, &[&str])] = &[
    ("maas_machines", "Number of machines by status", &["status"]),
    (
        "maas_nodes",
        "Number of nodes per type (e.g. racks, machines, etc)",
        &["type"],
    ),
    ("maas_net_spaces", "Number of network spaces", &[]),
    ("maas_net_fabrics", "Number of network fabrics", &[]),
    ("maas_net_vlans", "Number of network VLANs", &[]),
    ("maas_net_subnets_v4", "Number of IPv4 subnets", &[]),
    ("maas_net_subnets_v6", "Number of IPv6 subnets", &[]),
    (
        "maas_net_subnet_ip_count",
        "Number of IPs in a subnet by status",
        &["cidr", "status"],
    ),
    (
        "maas_net_subnet_ip_dynamic",
        "Number of used IPs in a subnet",
        &["cidr", "status"],
    ),
    (
        "maas_net_subnet_ip_reserved",
        "Number of used IPs in a subnet",
        &["cidr", "status"],
    ),
    (
        "maas_net_subnet_ip_static",
        "Number of used IPs in a subnet",
        &["cidr"],
    ),
    (
        "maas_service_availability",
        "Availability of the services running in a rack",
        &["system_id", "service"],
    ),
    (
        "maas_machines_total_mem",
        "Amount of combined memory for all machines",
        &[],
    ),
    (
        "maas_machines_total_cpu",
        "Amount of combined CPU counts for all machines",
        &[],
    ),
    (
        "maas_machines_total_storage",
        "Amount of combined storage for all machines",
        &[],
    ),
    (
        "maas_machines_avg_deployment_time",
        "Average time in seconds of the last successful deployment of all machines",
        &[],
    ),
    (
        "maas_machine_arches",
        "Number of machines per architecture",
        &["arches"],
    ),
    (
        "maas_custom_static_images_uploaded",
        "Number of custom static OS images uploaded to MAAS",
        &["base_image", "file_type"],
    ),
    (
        "maas_custom_static_images_deployed",
        "Number of custom static OS images deployed",
        &[],
    ),
    (
        "site_manager_connection",
        "Whether this MAAS is connected to a Site Manager",
        &[],
    ),
];

/// `get_machine_state_stats`'s statuses, in its order.
pub const MACHINE_STATUSES: &[&str] = &[
    "new",
    "ready",
    "allocated",
    "deployed",
    "commissioning",
    "testing",
    "deploying",
    "failed_deployment",
    "failed_commissioning",
    "failed_testing",
    "broken",
];

/// What `update_prometheus_stats` reads, as far as the stand-in has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterStats {
    /// Hosts that run a region and a rack.
    pub regionracks: i64,
    /// Hosts that run a region only.
    pub regions: i64,
    /// Hosts that run a rack only.
    pub racks: i64,
    /// Fabrics.
    pub fabrics: i64,
    /// VLANs.
    pub vlans: i64,
    /// IPv4 subnets.
    pub subnets_v4: i64,
    /// IPv6 subnets.
    pub subnets_v6: i64,
}

/// The stand-in's counts from its tables (one statement, so one snapshot).
pub fn cluster_stats(c: &mut postgres::Client) -> anyhow::Result<ClusterStats> {
    let r = c.query_one(
        "SELECT
           (SELECT count(*) FROM standin_region r JOIN standin_rack k USING (hostname)),
           (SELECT count(*) FROM standin_region r WHERE NOT EXISTS
              (SELECT 1 FROM standin_rack k WHERE k.hostname = r.hostname)),
           (SELECT count(*) FROM standin_rack k WHERE NOT EXISTS
              (SELECT 1 FROM standin_region r WHERE r.hostname = k.hostname)),
           (SELECT count(DISTINCT fabric_id) FROM
              (SELECT fabric_id FROM standin_vlan UNION SELECT fabric_id FROM standin_subnet) f),
           (SELECT count(*) FROM standin_vlan),
           (SELECT count(*) FROM standin_subnet WHERE cidr NOT LIKE '%:%'),
           (SELECT count(*) FROM standin_subnet WHERE cidr LIKE '%:%')",
        &[],
    )?;
    Ok(ClusterStats {
        regionracks: r.get(0),
        regions: r.get(1),
        racks: r.get(2),
        fabrics: r.get(3),
        vlans: r.get(4),
        subnets_v4: r.get(5),
        subnets_v6: r.get(6),
    })
}

/// One gauge child: its own labels and value.
type StatSample = (Vec<(&'static str, String)>, f64);

/// The text `generate_latest` gives for `s` on the installation `maas_id`.
pub fn render_stats(maas_id: &str, s: &ClusterStats) -> String {
    let mut samples: BTreeMap<&str, Vec<StatSample>> = BTreeMap::new();
    let mut set = |name: &'static str, labels: Vec<(&'static str, String)>, v: f64| {
        samples.entry(name).or_default().push((labels, v));
    };
    for st in MACHINE_STATUSES {
        set("maas_machines", vec![("status", st.to_string())], 0.0);
    }
    for (t, n) in [
        ("regionracks", s.regionracks),
        ("regions", s.regions),
        ("racks", s.racks),
        ("machines", 0),
        ("devices", 0),
    ] {
        set("maas_nodes", vec![("type", t.to_string())], n as f64);
    }
    for (name, n) in [
        ("maas_net_spaces", 0),
        ("maas_net_fabrics", s.fabrics),
        ("maas_net_vlans", s.vlans),
        ("maas_net_subnets_v4", s.subnets_v4),
        ("maas_net_subnets_v6", s.subnets_v6),
        ("maas_machines_total_cpu", 0),
        ("maas_machines_total_mem", 0),
        ("maas_machines_total_storage", 0),
        ("site_manager_connection", 0),
        ("maas_custom_static_images_deployed", 0),
    ] {
        set(name, vec![], n as f64);
    }
    set("maas_machines_avg_deployment_time", vec![], f64::NAN);
    let mut out = String::new();
    for (name, help, _) in STATS_DEFINITIONS {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in samples.get(name).into_iter().flatten() {
            let mut parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            parts.push(format!("maas_id=\"{}\"", escape_label(maas_id)));
            out.push_str(&format!("{name}{{{}}} {}\n", parts.join(","), go_float(*v)));
        }
    }
    out
}

/// `prometheus_stats_handler`: 404 (empty) unless `prometheus_enabled`, else the statistics.
pub fn stats_response(c: &mut postgres::Client) -> anyhow::Result<Response> {
    let enabled = crate::db::get_config(c, "prometheus_enabled")?;
    if enabled != serde_json::Value::Bool(true) {
        // Django's HttpResponseNotFound().
        return Ok(Response {
            status: 404,
            content_type: "text/html; charset=utf-8".into(),
            body: Vec::new(),
        });
    }
    let uuid = crate::db::maas_uuid(c)?;
    Ok(Response {
        status: 200,
        content_type: "text/plain".into(),
        body: render_stats(&uuid, &cluster_stats(c)?).into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_floats_are_pythons() {
        assert_eq!(go_float(1.0), "1.0");
        assert_eq!(go_float(0.005), "0.005");
        assert_eq!(go_float(10000.0), "10000.0");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_float(3.0), "3.0");
    }

    #[test]
    fn nothing_observed_is_an_empty_answer() {
        assert_eq!(Registry::new(None).render(), "");
    }

    #[test]
    fn a_histogram_child_has_every_bucket_cumulated_then_count_and_sum() {
        let r = Registry::new(Some("10.0.0.5".into()));
        r.set_maas_uuid("u-1", "region");
        let l = [
            ("method", "GET"),
            ("path", "/MAAS/x"),
            ("status", "200"),
            ("op", ""),
        ];
        r.observe("maas_http_response_size", &l, 7.0);
        r.observe("maas_http_response_size", &l, 5.0);
        r.observe("maas_http_response_size", &l, 20000.0);
        let text = r.render();
        let labels =
            r#"host="10.0.0.5",maas_id="u-1",method="GET",op="",path="/MAAS/x",status="200""#;
        assert!(text.starts_with("# HELP maas_http_response_size Multiprocess metric\n# TYPE maas_http_response_size histogram\n"), "{text}");
        for (le, n) in [
            ("5.0", "1.0"),
            ("10.0", "2.0"),
            ("10000.0", "2.0"),
            ("+Inf", "3.0"),
        ] {
            let line = format!("maas_http_response_size_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} not in {text}");
        }
        assert!(text.contains(&format!("maas_http_response_size_count{{{labels}}} 3.0\n")));
        assert!(text.contains(&format!(
            "maas_http_response_size_sum{{{labels}}} 20012.0\n"
        )));
    }

    #[test]
    fn node_metrics_of_3_4_and_3_5_come_from_proc_with_the_writers_pid() {
        use crate::snapinfo::NodeMetrics;
        let r = Registry::with_node_metrics(Some("h".into()), Some(NodeMetrics::V3_5));
        let text = r.render();
        let pid = std::process::id();
        assert!(text.contains("# HELP maas_node_mem_MemTotal Multiprocess metric\n# TYPE maas_node_mem_MemTotal gauge\n"), "{text}");
        let mem_total: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert!(text.contains(&format!(
            "maas_node_mem_MemTotal{{host=\"h\",maas_id=\"None\",pid=\"{pid}\",service_type=\"None\"}} {}\n",
            go_float(mem_total)
        )), "{text}");
        assert!(
            text.contains("# TYPE maas_node_cpu_time counter\n"),
            "{text}"
        );
        assert!(text.contains("maas_node_cpu_time_total{host=\"h\",maas_id=\"None\",service_type=\"None\",state=\"user\"} "), "{text}");
        assert!(text.contains("maas_node_mem_VmallocTotal{"), "{text}");
        // 3.4's list joins two names by a missing comma: neither is reported.
        r.set_maas_uuid("u", "rack");
        let old = Registry::with_node_metrics(Some("h".into()), Some(NodeMetrics::V3_4));
        old.set_maas_uuid("u", "rack");
        let text = old.render();
        assert!(
            !text.contains("maas_node_mem_VmallocTotal")
                && !text.contains("maas_node_mem_VmallocChunk"),
            "{text}"
        );
        assert!(text.contains(&format!("maas_node_mem_MemFree{{host=\"h\",maas_id=\"u\",pid=\"{pid}\",service_type=\"rack\"}} ")), "{text}");
        // 3.6 and later report none of it.
        assert_eq!(Registry::new(None).render(), "");
    }

    #[test]
    fn wrong_labels_are_not_recorded_and_maas_id_is_none_until_set() {
        let r = Registry::new(None);
        r.observe("maas_rack_region_rpc_call_latency", &[("nope", "x")], 0.1);
        r.inc("maas_dns_dynamic_update_count", &[("zone", "maas")]);
        let text = r.render();
        assert!(!text.contains("rpc_call"), "{text}");
        assert!(text.contains(
            "# TYPE maas_dns_dynamic_update_count counter\nmaas_dns_dynamic_update_count_total{host=\"None\",maas_id=\"None\",zone=\"maas\"} 1.0\n"
        ), "{text}");
    }

    #[test]
    fn cluster_stats_are_every_definition_with_its_help_and_maas_id_last() {
        let s = ClusterStats {
            regionracks: 1,
            regions: 2,
            racks: 3,
            fabrics: 1,
            vlans: 2,
            subnets_v4: 1,
            subnets_v6: 0,
        };
        let text = render_stats("u-1", &s);
        let mut pos = 0;
        for (name, help, _) in STATS_DEFINITIONS {
            let head = format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
            let at = text[pos..]
                .find(&head)
                .unwrap_or_else(|| panic!("{head} not after {pos} in {text}"));
            pos += at + head.len();
        }
        for line in [
            "maas_machines{status=\"new\",maas_id=\"u-1\"} 0.0\n",
            "maas_machines{status=\"broken\",maas_id=\"u-1\"} 0.0\n",
            "maas_nodes{type=\"regionracks\",maas_id=\"u-1\"} 1.0\n",
            "maas_nodes{type=\"regions\",maas_id=\"u-1\"} 2.0\n",
            "maas_nodes{type=\"racks\",maas_id=\"u-1\"} 3.0\n",
            "maas_net_vlans{maas_id=\"u-1\"} 2.0\n",
            "maas_net_subnets_v4{maas_id=\"u-1\"} 1.0\n",
            "maas_machines_avg_deployment_time{maas_id=\"u-1\"} NaN\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        // A metric never set: its HELP and TYPE, no sample.
        assert!(
            text.contains(
                "# TYPE maas_net_subnet_ip_static gauge\n# HELP maas_service_availability"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("maas_machines{").count(),
            MACHINE_STATUSES.len()
        );
    }
}
