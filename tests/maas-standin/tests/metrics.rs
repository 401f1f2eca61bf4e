//! MAAS's Prometheus exporters, which maas-region's and maas-rack's cos-agent jobs scrape:
//! regiond's `/metrics` and `/metrics_endpoints` on 5239, rackd's `/metrics` on 5249.
//!
//! Sources (canonical/maas): src/maasserver/prometheus/service.py
//! (`create_prometheus_exporter_service`, `PrometheusDiscoveryResource`, `REGION_PROMETHEUS_PORT`,
//! `RACK_PROMETHEUS_PORT`), src/maasserver/eventloop.py (`prometheus-exporter` only on the
//! master, after `prepare`), src/provisioningserver/plugin.py (`_makeHTTPService`: `::` 5249),
//! src/provisioningserver/prometheus/metrics.py (`METRICS_DEFINITIONS`, the `host` and
//! `maas_id` extra labels), utils.py (`generate_latest` over a `MultiProcessCollector`),
//! resource.py (`text/plain`), src/maasserver/prometheus/middleware.py (what a request
//! records), src/provisioningserver/rpc/common.py and clusterservice.py (a rack's Ping).

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A parsed exposition: per family its HELP and TYPE, and every sample.
#[derive(Debug, Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

/// The text format (0.0.4): comment lines, then `name{k="v",...} value`.
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').unwrap();
            e.help.insert(n.into(), h.into());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap();
            e.types.insert(n.into(), t.into());
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            e.samples.push((name.into(), labels, value));
        }
    }
    e
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} in {s:?}");
        let mut v = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next().unwrap() {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        out.insert(name.trim_start_matches(',').to_string(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// The family a sample belongs to (`x_bucket` → `x` for a histogram, `x_total` for a counter).
fn family<'a>(e: &'a Exposition, sample: &str) -> Option<(&'a str, &'a str)> {
    e.types.iter().find_map(|(n, t)| {
        let suffixes: &[&str] = match t.as_str() {
            "histogram" => &["_bucket", "_count", "_sum"],
            "counter" => &["_total"],
            _ => &[""],
        };
        suffixes
            .iter()
            .any(|s| sample == format!("{n}{s}"))
            .then_some((n.as_str(), t.as_str()))
    })
}

/// The address of the default route's interface, as `get_machine_default_gateway_ip` finds
/// it, or Python's `None`.
fn default_gateway_ip() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let dev = text
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_string);
    let Some(dev) = dev else {
        return "None".into();
    };
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| "None".into())
}

/// Whether this machine can run the test (root, PostgreSQL 15, nginx); why not otherwise.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (PostgreSQL runs as postgres, MAAS's files are root's)".into());
    }
    for p in [
        "/usr/lib/postgresql/15/bin/postgres",
        "/usr/sbin/nginx",
        "/usr/sbin/runuser",
    ] {
        if !std::path::Path::new(p).exists() {
            return Some(format!("needs {p} (make deps)"));
        }
    }
    None
}

fn get_ok(url: &str) -> String {
    let (s, b) = get(url).unwrap_or_else(|| panic!("{url} did not answer"));
    assert_eq!(s, 200, "{url}: {b}");
    b
}

/// The labels MAAS gives a request's series: the definition's, then `host` and `maas_id`.
const HTTP_LABELS: &[&str] = &["host", "maas_id", "method", "op", "path", "status"];

#[test]
fn regiond_and_rackd_serve_maas_metrics_on_5239_and_5249() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let pg = Postgres::start();
    let (api, internal, temporal) = (free_port(), free_port(), free_port());
    let (region_port, rack_port) = (free_port(), free_port());
    let sb = Sandbox::new("metrics-region")
        .with(
            "MAAS_STANDIN_PORTS",
            &format!("{api},{internal},{temporal}"),
        )
        .with(
            "MAAS_STANDIN_METRICS_PORTS",
            &format!("{region_port},{}", free_port()),
        )
        .with("MAAS_STANDIN_BIND", "127.0.0.1")
        .with("MAAS_STANDIN_RPC_PORTS", &free_ports(2))
        .with("MAAS_STANDIN_HOSTNAME", "region-m");
    let maas = format!("http://127.0.0.1:{api}/MAAS");
    let metrics = format!("http://127.0.0.1:{region_port}/metrics");
    assert_ok(&sb.run_line(&format!(
        "maas init region --maas-url {maas} --database-uri {} --num-workers 2 --force",
        pg.uri()
    )));
    let _procs = RegionProcs::spawn(&sb, "snap");

    // The exporter starts with the master's services, before the workers take requests:
    // nothing is observed yet, and a multiprocess registry then has nothing to say.
    let first = wait_for("regiond's exporter", T, || get(&metrics));
    assert_eq!(first, (200, String::new()));

    // One API request through nginx to a worker.
    let version = wait_for("the version endpoint", T, || {
        get(&format!("{maas}/api/2.0/version/")).filter(|(s, _)| *s == 200)
    })
    .1;
    let (s, _) = get(&format!("{maas}/nothing-here/?op=list")).unwrap();
    assert_eq!(s, 404);

    let text = get_ok(&metrics);
    let e = parse(&text);
    // Only what the stand-in really did: request latency and response size. It does not count
    // its SQL statements, so maas_http_request_query_* do not appear.
    assert_eq!(
        e.types,
        BTreeMap::from([
            ("maas_http_request_latency".into(), "histogram".into()),
            ("maas_http_response_size".into(), "histogram".into()),
        ]),
        "{text}"
    );
    for n in e.types.keys() {
        assert_eq!(
            e.help[n], "Multiprocess metric",
            "prometheus_client's MP_METRIC_HELP"
        );
    }
    let uuid = read_trimmed(&sb.path("/var/snap/maas/common/maas/maas_uuid"));
    let host = default_gateway_ip();
    for (name, labels, _) in &e.samples {
        let (fam, _) = family(&e, name).unwrap_or_else(|| panic!("{name} has no TYPE"));
        let mut want: BTreeSet<&str> = HTTP_LABELS.iter().copied().collect();
        if name.ends_with("_bucket") {
            want.insert("le");
        }
        let got: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(got, want, "{fam}: {name} {labels:?}");
        assert_eq!(
            labels["maas_id"], uuid,
            "maas_id is the installation's UUID"
        );
        assert_eq!(labels["host"], host, "host is the default route's address");
    }
    let series = |name: &str, path: &str, status: &str| -> Vec<&Sample> {
        e.samples
            .iter()
            .filter(|(n, l, _)| n == name && l["path"] == path && l["status"] == status)
            .collect()
    };
    let value = |name: &str, path: &str, status: &str| -> f64 {
        let s = series(name, path, status);
        assert_eq!(s.len(), 1, "{name} {path} {status}: {s:?}\n{text}");
        s[0].2
    };
    // The version request: exactly one with its body's size (earlier tries, if any, were
    // answered 502 by nginx before a worker listened, or 503 by a worker).
    let v = "/MAAS/api/2.0/version/";
    assert_eq!(value("maas_http_response_size_count", v, "200"), 1.0);
    assert_eq!(
        value("maas_http_response_size_sum", v, "200"),
        version.len() as f64
    );
    assert_eq!(value("maas_http_request_latency_count", v, "200"), 1.0);
    let latency = value("maas_http_request_latency_sum", v, "200");
    assert!(latency > 0.0 && latency < 20.0, "{latency}");
    let missing = "/MAAS/nothing-here/";
    assert_eq!(
        value("maas_http_request_latency_count", missing, "404"),
        1.0
    );
    let op = &series("maas_http_request_latency_count", missing, "404")[0].1["op"];
    assert_eq!(op, "list", "the query's op");
    // Histogram buckets: MAAS's bounds (prometheus_client's defaults for latency, the
    // definition's for sizes), cumulative, +Inf equal to _count.
    for (name, bounds) in [
        (
            "maas_http_request_latency",
            vec![
                "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0",
                "2.5", "5.0", "7.5", "10.0", "+Inf",
            ],
        ),
        (
            "maas_http_response_size",
            vec![
                "5.0", "10.0", "25.0", "50.0", "100.0", "250.0", "500.0", "1000.0", "2500.0",
                "5000.0", "10000.0", "+Inf",
            ],
        ),
    ] {
        let buckets = series(&format!("{name}_bucket"), v, "200");
        let les: Vec<&str> = buckets.iter().map(|(_, l, _)| l["le"].as_str()).collect();
        assert_eq!(les, bounds, "{name}");
        let counts: Vec<f64> = buckets.iter().map(|s| s.2).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {counts:?}"
        );
        assert_eq!(
            counts.last(),
            Some(&value(&format!("{name}_count"), v, "200"))
        );
    }
    let size = version.len() as f64;
    let size_buckets = series("maas_http_response_size_bucket", v, "200");
    for (_, l, n) in size_buckets {
        let le: f64 = if l["le"] == "+Inf" {
            f64::INFINITY
        } else {
            l["le"].parse().unwrap()
        };
        assert_eq!(
            *n,
            if size <= le { 1.0 } else { 0.0 },
            "le {le}, body of {size} bytes"
        );
    }

    // `metrics` is a leaf; anything else is Twisted's 404; only GET renders.
    assert_eq!(get(&format!("{metrics}/x")).unwrap().0, 200);
    assert_eq!(
        get(&format!("http://127.0.0.1:{region_port}/")).unwrap().0,
        404
    );
    assert_eq!(
        post_form(&metrics, "a=b").unwrap().0,
        405,
        "PrometheusMetricsResource renders GET only"
    );

    // `/metrics_endpoints`: every controller's addresses with 5239 (region) or 5249 (rack),
    // grouped by zone and role, as MAAS's service discovery lists them.
    let endpoints_url = format!("http://127.0.0.1:{region_port}/metrics_endpoints");
    let groups: Value = wait_for("the region's addresses in /metrics_endpoints", T, || {
        let v: Value = serde_json::from_str(&get_ok(&endpoints_url)).ok()?;
        (!v.as_array()?.is_empty()).then_some(v)
    });
    assert_eq!(
        groups,
        serde_json::json!([{"targets": ["127.0.0.1:5239"], "labels": {
            "__meta_prometheus_job": "maas", "maas_az": "default",
            "maas_region": "True", "maas_rack": "False"}}])
    );

    // A rack: its exporter answers at once, empty until it has observed something; it
    // registers, shows up in the region's discovery, and its first Ping to the region (every
    // 30 s, ClusterClientCheckerService) is recorded with the installation's UUID.
    let secret = read_trimmed(&sb.path("/var/snap/maas/common/maas/secret"));
    let rack = Sandbox::new("metrics-rack")
        .with(
            "MAAS_STANDIN_METRICS_PORTS",
            &format!("{},{rack_port}", free_port()),
        )
        .with("MAAS_STANDIN_HOSTNAME", "rack-m")
        .with("MAAS_STANDIN_INTERFACES", "10.77.9.5/24");
    assert_ok(&rack.run_line(&format!(
        "maas init rack --maas-url {maas} --secret {secret} --force"
    )));
    let _rackd = rack.spawn(&["pebble"], &[]);
    let rack_metrics = format!("http://127.0.0.1:{rack_port}/metrics");
    let first = wait_for("rackd's exporter", T, || get(&rack_metrics));
    assert_eq!(first, (200, String::new()));
    assert_eq!(
        get(&format!("http://127.0.0.1:{rack_port}/metrics_endpoints"))
            .unwrap()
            .0,
        404
    );
    wait_for("the rack in /metrics_endpoints", T, || {
        let v: Value = serde_json::from_str(&get_ok(&endpoints_url)).ok()?;
        v.as_array()?
            .iter()
            .any(|g| {
                g["targets"] == serde_json::json!(["10.77.9.5:5249"])
                    && g["labels"]["maas_rack"] == "True"
                    && g["labels"]["maas_region"] == "False"
            })
            .then_some(())
    });
    let text = wait_for(
        "the rack's first Ping recorded",
        Duration::from_secs(60),
        || {
            let t = get_ok(&rack_metrics);
            t.contains("maas_rack_region_rpc_call_latency_count")
                .then_some(t)
        },
    );
    let e = parse(&text);
    assert_eq!(
        e.types,
        BTreeMap::from([(
            "maas_rack_region_rpc_call_latency".into(),
            "histogram".into()
        )]),
        "{text}"
    );
    let counts: Vec<&Sample> = e
        .samples
        .iter()
        .filter(|(n, _, _)| n == "maas_rack_region_rpc_call_latency_count")
        .collect();
    assert_eq!(counts.len(), 1, "{text}");
    let (_, labels, n) = counts[0];
    assert!(*n >= 1.0);
    assert_eq!(
        labels.keys().map(String::as_str).collect::<Vec<_>>(),
        ["call", "host", "maas_id"]
    );
    assert_eq!(labels["call"], "Ping");
    assert_eq!(labels["maas_id"], uuid, "set when the rack registered");

    // The cluster statistics on the region's HTTP port (src/maasserver/prometheus/stats.py
    // `prometheus_stats_handler`): 404 while `prometheus_enabled` is off (MAAS's default),
    // public and counted from the database once an administrator turns it on.
    let stats = format!("{maas}/metrics");
    assert_eq!(get(&stats), Some((404, String::new())));
    assert_ok(
        &sb.run_line("maas createadmin --username ops --password pw --email ops@example.com"),
    );
    let key = stdout(&sb.run_line("maas apikey --username ops"))
        .trim()
        .to_string();
    assert_ok(&sb.run_line(&format!("maas login ops {maas}/api/2.0/ {key}")));
    assert_ok(&sb.run_line("maas ops maas set-config name=prometheus_enabled value=true"));
    let text = get_ok(&stats);
    let e = parse(&text);
    for (name, help, _) in maas_standin::metrics::STATS_DEFINITIONS {
        assert_eq!(
            e.types.get(*name).map(String::as_str),
            Some("gauge"),
            "{name}: {text}"
        );
        assert_eq!(e.help.get(*name).map(String::as_str), Some(*help), "{name}");
    }
    let nodes: BTreeMap<String, f64> = e
        .samples
        .iter()
        .filter(|(n, _, _)| n == "maas_nodes")
        .map(|(_, l, v)| {
            assert_eq!(l["maas_id"], uuid, "{l:?}");
            (l["type"].clone(), *v)
        })
        .collect();
    assert_eq!(
        nodes,
        BTreeMap::from([
            ("devices".into(), 0.0),
            ("machines".into(), 0.0),
            ("racks".into(), 1.0),
            ("regionracks".into(), 0.0),
            ("regions".into(), 1.0),
        ]),
        "region-m and rack-m: {text}"
    );
    let machines = e
        .samples
        .iter()
        .filter(|(n, _, _)| n == "maas_machines")
        .count();
    assert_eq!(
        machines, 11,
        "every status of get_machine_state_stats: {text}"
    );
    assert_eq!(get(&format!("{maas}/metrics/")).map(|r| r.0), Some(404));
}
