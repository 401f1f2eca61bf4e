//! The provider side of the `cos_agent` interface: what a principal charm puts in its unit
//! databag for the collector subordinate (opentelemetry-collector, grafana-agent) to scrape
//! its metrics and forward its alert rules and dashboards.
//!
//! The format is that of Canonical's charm library `charms.grafana_agent.v0.cos_agent`
//! (LIBAPI 0, LIBPATCH 25 and 26 write the same) over `cosl` 1.11: one key, `config`, holding
//! `CosAgentProviderUnitData` as JSON, in the library's field order:
//!
//! | field | what [`ProviderData::build`] puts there, as `COSAgentProvider` does |
//! | --- | --- |
//! | `metrics_alert_rules` | `{"groups": [...]}`: every rule file's groups (the file's own groups, or one group named after the file for a single rule), each group renamed `<model>_<uuid8>_<app>_<name>_rules`, each rule labelled `juju_model`, `juju_model_uuid`, `juju_application`, `juju_charm` (labels already set are kept); then cosl's generic `HostHealth` group (HostDown, HostMetricsMissing) |
//! | `log_alert_rules` | the same for LogQL rule files, `{}` when there are none |
//! | `dashboards` | each dashboard with `uid` = SHAKE-256 (20 bytes, hex) of `<charm>-<path>` and a `charm: <charm>` tag, as JSON, xz-compressed, base64 |
//! | `subordinate` | `null` |
//! | `metrics_scrape_jobs` | Prometheus `scrape_configs`, each `job_name` made `<app>_<name or default>_<blake2b-4 of the job's sorted JSON without job_name>`, sorted by it |
//! | `log_slots` | snap slots to read logs from (`snap:slot`) |
//! | `tracing_protocols` | `null` (no tracing) |
//!
//! Expressions are sent as written, like the library does without `cos-tool` beside the charm
//! (a machine charm ships none): Prometheus's side injects the topology matchers. Rule files and
//! dashboards are compiled into the charm (`include_str!`), so [`RuleFile`] and [`Dashboard`]
//! carry their path (what names groups and uids) and text.

use crate::model::Model;
use crate::tools::Databag;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// The endpoint name the library uses by default.
pub const ENDPOINT: &str = "cos-agent";
/// The unit databag key the whole structure is nested under.
pub const KEY: &str = "config";

/// Juju topology, as cosl's `JujuTopology`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Model name.
    pub model: String,
    /// Model UUID.
    pub model_uuid: String,
    /// Application name.
    pub application: String,
    /// Unit name.
    pub unit: String,
    /// Charm name (metadata.yaml `name`).
    pub charm_name: String,
}

impl Topology {
    /// The topology of the unit a hook runs on.
    pub fn of(event: &crate::Event, charm_name: &str) -> Topology {
        Topology {
            model: event.model_name.clone().unwrap_or_default(),
            model_uuid: event.model_uuid.clone().unwrap_or_default(),
            application: event.app.clone(),
            unit: event.unit.clone(),
            charm_name: charm_name.to_string(),
        }
    }

    /// `<model>_<first 8 characters of the uuid>_<application>`, as `JujuTopology.identifier`.
    pub fn identifier(&self) -> String {
        let short: String = self.model_uuid.chars().take(8).collect();
        format!("{}_{}_{}", self.model, short, self.application).replace('/', "_")
    }

    /// The `juju_*` labels every rule gets (`label_matcher_dict`: no unit, empty ones left out).
    pub fn label_matchers(&self) -> Vec<(&'static str, &str)> {
        [
            ("juju_model", self.model.as_str()),
            ("juju_model_uuid", self.model_uuid.as_str()),
            ("juju_application", self.application.as_str()),
            ("juju_charm", self.charm_name.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// A rule file: its path under the rules directory (`instance_down.rules`; a subdirectory
/// becomes part of the group names, as in the library) and its YAML text, in Prometheus's
/// format (`groups:`) or the library's one-rule format (`alert:` and `expr:`).
#[derive(Debug, Clone, Copy)]
pub struct RuleFile<'a> {
    /// Path relative to the rules directory.
    pub path: &'a str,
    /// YAML text.
    pub text: &'a str,
}

/// A Grafana dashboard: its path relative to the charm directory (the library's default
/// directory is `src/grafana_dashboards`, so `src/grafana_dashboards/<name>.json`) and its JSON.
#[derive(Debug, Clone, Copy)]
pub struct Dashboard<'a> {
    /// Path relative to the charm directory: with the charm name, it makes the dashboard's uid.
    pub path: &'a str,
    /// JSON text.
    pub json: &'a str,
}

/// One Prometheus `scrape_config` (the fields our charms need).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScrapeJob {
    /// A short name; the library makes it `<app>_<name>_<hash>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// e.g. `/metrics`.
    pub metrics_path: String,
    /// `http` (Prometheus's default) or `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Targets (`host:port`) and extra labels.
    pub static_configs: Vec<StaticConfig>,
    /// TLS for `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// e.g. `30s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
}

impl ScrapeJob {
    /// What the library's `metrics_endpoints` entry `{"path": path, "port": port}` becomes.
    pub fn localhost(path: &str, port: u16) -> ScrapeJob {
        ScrapeJob {
            metrics_path: path.to_string(),
            static_configs: vec![StaticConfig {
                targets: vec![format!("localhost:{port}")],
                labels: BTreeMap::new(),
            }],
            ..ScrapeJob::default()
        }
    }
}

/// A `static_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StaticConfig {
    /// `host:port` each.
    pub targets: Vec<String>,
    /// Extra labels on every series scraped.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A scrape's `tls_config`, as Prometheus's (prometheus/common config/http_config.go
/// `TLSConfig`): both collector charms put `COSAgentRequirer.metrics_jobs` into a Prometheus
/// scrape configuration unchanged (opentelemetry-collector-operator src/charm.py
/// `_reconcile`, the `prometheus/cos-agent/<unit>` receiver; grafana-agent-operator
/// src/grafana_agent.py `_generate_config`, `metrics.configs[0].scrape_configs`).
///
/// The CA goes inline (`ca`, PEM text), not as `ca_file`: the opentelemetry-collector snap is
/// strictly confined (canonical/opentelemetry-collector-snap snap/snapcraft.yaml: only its own
/// `/var/snap/opentelemetry-collector`, `/etc/otelcol/config.d` and `home`), so a path under
/// the principal's directories is unreadable there (snapd interfaces/apparmor/template.go
/// grants no other `/etc` or `/var/snap` files) and the scrape fails; an inline CA needs no
/// file. Both collectors read `ca` (inline TLS came with prometheus/common #472, in
/// grafana-agent since #3524 (v0.33) and in Prometheus since 2.45; the otel snap's otelcol 0.130
/// and grafana-agent 0.44.6 are newer; Debian 12's Prometheus 2.42 is not). There is no
/// `ca_file` beside it: `TLSConfig.Validate` refuses `ca` with `ca_file`.
/// A CA certificate is public, so it may sit in relation data; a private key may not, which
/// is why the client certificate stays file-based (`cert_file`, `key_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsConfig {
    /// CA certificate (PEM) to verify the target with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate, for a target that asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The name to verify instead of the target's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip verification (the library's own choice for localhost targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// What a provider publishes, before serialisation.
#[derive(Debug, Clone, Default)]
pub struct Provider<'a> {
    /// Whose data this is.
    pub topology: Option<Topology>,
    /// PromQL rule files (`src/prometheus_alert_rules` in the library).
    pub metrics_rules: &'a [RuleFile<'a>],
    /// LogQL rule files (`src/loki_alert_rules`).
    pub log_rules: &'a [RuleFile<'a>],
    /// Dashboards (`src/grafana_dashboards`).
    pub dashboards: &'a [Dashboard<'a>],
    /// Scrape jobs (`scrape_configs` and `metrics_endpoints` together).
    pub scrape_jobs: Vec<ScrapeJob>,
    /// Snap log slots, `snap:slot`.
    pub log_slots: Vec<String>,
}

/// `CosAgentProviderUnitData`, field for field and in its order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderData {
    /// `{"groups": [...]}`.
    pub metrics_alert_rules: Value,
    /// `{"groups": [...]}` or `{}`.
    pub log_alert_rules: Value,
    /// LZMA (xz) compressed, base64 encoded dashboards.
    pub dashboards: Vec<String>,
    /// Unused by the library; always `null`.
    pub subordinate: Option<bool>,
    /// Scrape configs with their final job names.
    pub metrics_scrape_jobs: Vec<Value>,
    /// Snap log slots.
    pub log_slots: Vec<String>,
    /// Tracing protocols requested; `null`.
    pub tracing_protocols: Option<Vec<String>>,
}

/// A rule file, dashboard or job the library would refuse (a charm bug: the files are
/// compiled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosAgentError(pub String);

impl std::fmt::Display for CosAgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cos_agent: {}", self.0)
    }
}

impl std::error::Error for CosAgentError {}

type Result<T, E = CosAgentError> = std::result::Result<T, E>;

fn invalid(what: String) -> CosAgentError {
    CosAgentError(what)
}

impl Provider<'_> {
    /// Everything the library computes, in its format.
    pub fn build(&self) -> Result<ProviderData> {
        let topology = self
            .topology
            .as_ref()
            .ok_or_else(|| invalid("cos_agent: no topology".into()))?;
        let mut groups = rule_groups(self.metrics_rules, topology, QueryType::PromQl)?;
        groups.extend(process_groups(
            host_health(),
            None,
            &topology.identifier(),
            topology,
            QueryType::PromQl,
        )?);
        let mut deduped: Vec<Value> = Vec::new();
        for g in groups {
            if !deduped.contains(&g) {
                deduped.push(g);
            }
        }
        let log_groups = rule_groups(self.log_rules, topology, QueryType::LogQl)?;
        let dashboards = self
            .dashboards
            .iter()
            .map(|d| encode_dashboard(d, &topology.charm_name))
            .collect::<Result<Vec<_>>>()?;
        Ok(ProviderData {
            metrics_alert_rules: json!({ "groups": deduped }),
            log_alert_rules: if log_groups.is_empty() {
                json!({})
            } else {
                json!({ "groups": log_groups })
            },
            dashboards,
            subordinate: None,
            metrics_scrape_jobs: deterministic_jobs(&self.scrape_jobs, &topology.application)?,
            log_slots: self.log_slots.clone(),
            tracing_protocols: None,
        })
    }
}

impl ProviderData {
    /// The unit databag: `config` = the JSON (compact, as pydantic's `.json()`).
    pub fn to_databag(&self) -> Databag {
        let text = serde_json::to_string(self).expect("ProviderData always serialises");
        Databag::from([(KEY.to_string(), text)])
    }

    /// Writes this unit's databag on every relation of `endpoint`, where it differs.
    pub fn publish(&self, model: &Model, endpoint: &str) -> crate::Result<()> {
        let bag = self.to_databag();
        for rel in model.relations(endpoint)? {
            if rel.my_unit_data()?.get(KEY) != bag.get(KEY) {
                rel.set_my_unit_data(&bag)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QueryType {
    PromQl,
    LogQl,
}

/// cosl's `generic_alert_groups.application_rules`.
fn host_health() -> Value {
    json!({"groups": [{"name": "HostHealth", "rules": [
        {
            "alert": "HostDown",
            "expr": "up < 1",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Host '{{ $labels.instance }}' is down.",
                "description": "Juju application '{{ $labels.juju_application }}' in model '{{ $labels.juju_model }}' is down. Prometheus has been unable to scrape it during at least the past five minutes.",
            },
        },
        {
            "alert": "HostMetricsMissing",
            "expr": "absent(up)",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Unit '{{ $labels.juju_unit }}' of application '{{ $labels.juju_application }}' is down or failing to remote write.",
                "description": "`Up` missing for unit '{{ $labels.juju_unit }}' of application {{ $labels.juju_application }} in model {{ $labels.juju_model }}. Please ensure the unit or the collector scraping it is up and is able to successfully reach the metrics backend.",
            },
        },
    ]}]})
}

const RULE_SUFFIXES: [&str; 4] = [".rule", ".rules", ".yml", ".yaml"];

/// `AlertRules.add_path(dir)`, non-recursive as the provider's default: files sorted by path,
/// each file's groups.
fn rule_groups(files: &[RuleFile], topology: &Topology, query: QueryType) -> Result<Vec<Value>> {
    let mut files: Vec<&RuleFile> = files
        .iter()
        .filter(|f| {
            RULE_SUFFIXES
                .iter()
                .any(|s| f.path.ends_with(s) && f.path.len() > s.len())
        })
        .collect();
    files.sort_by_key(|f| f.path);
    let mut groups = Vec::new();
    for f in files {
        let (dir, file) = f.path.rsplit_once('/').unwrap_or(("", f.path));
        let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
        let prefix = [topology.identifier(), dir.to_string()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let doc: serde_yaml::Value = serde_yaml::from_str(f.text)
            .map_err(|e| invalid(format!("rule file {}: {e}", f.path)))?;
        let doc: Value =
            serde_json::to_value(doc).map_err(|e| invalid(format!("rule file {}: {e}", f.path)))?;
        groups.extend(
            process_groups(doc, Some(stem), &prefix, topology, query)
                .map_err(|e| invalid(format!("rule file {}: {e}", f.path)))?,
        );
    }
    Ok(groups)
}

/// `Rules._from_dict`: groups renamed and labelled with the topology.
fn process_groups(
    doc: Value,
    group_name: Option<&str>,
    prefix: &str,
    topology: &Topology,
    query: QueryType,
) -> Result<Vec<Value>> {
    let Value::Object(mut doc) = doc else {
        return Err(invalid("not a mapping".into()));
    };
    let mut groups: Vec<Value> = if let Some(groups) = doc.remove("groups") {
        match groups {
            Value::Array(g) => g,
            Value::Null => Vec::new(),
            _ => return Err(invalid("groups is not a list".into())),
        }
    } else if doc.contains_key("expr") && (doc.contains_key("alert") || doc.contains_key("record"))
    {
        let name = group_name.ok_or_else(|| invalid("a single rule needs a name".into()))?;
        vec![json!({"name": name, "rules": [Value::Object(doc)]})]
    } else {
        return Err(invalid("Invalid rule format".into()));
    };
    for group in &mut groups {
        let g = group
            .as_object_mut()
            .ok_or_else(|| invalid("a group is not a mapping".into()))?;
        let name = g
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a group has no name".into()))?
            .to_string();
        let mut name = if already_modified(&name) {
            name
        } else {
            let mut n = [prefix, name.as_str()]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            if !n.ends_with("_rules") {
                n.push_str("_rules");
            }
            n
        };
        name = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        g.insert("name".into(), Value::String(name));
        let rules = g
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid("a group has no rules list".into()))?;
        for rule in rules {
            let r = rule
                .as_object_mut()
                .ok_or_else(|| invalid("a rule is not a mapping".into()))?;
            let labels = r.entry("labels").or_insert_with(|| json!({}));
            let labels = labels
                .as_object_mut()
                .ok_or_else(|| invalid("labels is not a mapping".into()))?;
            for (k, v) in topology.label_matchers() {
                labels
                    .entry(k.to_string())
                    .or_insert_with(|| Value::String(v.to_string()));
            }
            let expr = r
                .get("expr")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("a rule's expr is not a string".into()))?;
            let repl = if query == QueryType::LogQl {
                r#"job=~".+""#
            } else {
                ""
            };
            let expr = strip_topology_placeholder(expr, repl);
            r.insert("expr".into(), Value::String(expr));
        }
    }
    Ok(groups)
}

/// `re.sub(r"%%juju_topology%%,?", repl, expr)`.
fn strip_topology_placeholder(expr: &str, repl: &str) -> String {
    const P: &str = "%%juju_topology%%";
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(P) {
        out.push_str(&rest[..i]);
        out.push_str(repl);
        rest = &rest[i + P.len()..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out.push_str(rest);
    out
}

/// `re.compile(r"^.*?_[\da-f]{8}_.*?rules$").match(name)`: a name the library renamed already.
fn already_modified(name: &str) -> bool {
    if name.contains('\n') || !name.ends_with("rules") {
        return false;
    }
    let b = name.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'_'
            && b.len() > i + 9
            && b[i + 1..i + 9]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            && b[i + 9] == b'_'
            && name[i + 10..].ends_with("rules")
    })
}

/// `DashboardPath40UID.generate(charm, path)`: SHAKE-256 of `charm-path`, 20 bytes in hex.
pub fn dashboard_uid(charm: &str, path: &str) -> String {
    use shake::digest::{ExtendableOutput, Update, XofReader};
    let mut h = shake::Shake256::default();
    h.update(format!("{charm}-{path}").as_bytes());
    let mut out = [0u8; 20];
    h.finalize_xof().read(&mut out);
    hex(&out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_dashboard(d: &Dashboard, charm: &str) -> Result<String> {
    let mut dash: Value =
        serde_json::from_str(d.json).map_err(|e| invalid(format!("dashboard {}: {e}", d.path)))?;
    let obj = dash
        .as_object_mut()
        .ok_or_else(|| invalid(format!("dashboard {}: not an object", d.path)))?;
    obj.insert("uid".into(), Value::String(dashboard_uid(charm, d.path)));
    let mut tags: Vec<Value> = match obj.get("tags") {
        Some(Value::Array(t)) => t.clone(),
        _ => Vec::new(),
    };
    if !tags
        .iter()
        .any(|t| t.as_str().is_some_and(|t| t.starts_with("charm: ")))
    {
        tags.push(Value::String(format!("charm: {charm}")));
    }
    obj.insert("tags".into(), Value::Array(tags));
    lzma_base64(python_dumps(&dash).as_bytes())
}

/// `LZMABase64.compress`: xz (CRC64, preset 3, as cosl), base64.
pub fn lzma_base64(raw: &[u8]) -> Result<String> {
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(3))
        .map_err(|e| invalid(format!("xz: {e}")))?;
    w.write_all(raw).map_err(|e| invalid(format!("xz: {e}")))?;
    let xz = w.finish().map_err(|e| invalid(format!("xz: {e}")))?;
    Ok(base64(&xz))
}

/// `LZMABase64.decompress`: what the collector does with a dashboard (for tests and checks).
pub fn lzma_base64_decode(text: &str) -> Result<String> {
    use std::io::Read;
    let xz = unbase64(text).ok_or_else(|| invalid("not base64".into()))?;
    let mut out = String::new();
    lzma_rust2::XzReader::new(xz.as_slice(), false)
        .read_to_string(&mut out)
        .map_err(|e| invalid(format!("xz: {e}")))?;
    Ok(out)
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Every `expr` of a dashboard's panels' targets (rows' nested panels too).
pub fn dashboard_exprs(json: &str) -> Result<Vec<String>> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(targets)) = o.get("targets") {
                    out.extend(
                        targets
                            .iter()
                            .filter_map(|t| t["expr"].as_str().map(String::from)),
                    );
                }
                if let Some(Value::Array(panels)) = o.get("panels") {
                    panels.iter().for_each(|p| walk(p, out));
                }
            }
            Value::Array(a) => a.iter().for_each(|p| walk(p, out)),
            _ => {}
        }
    }
    let dash: Value = serde_json::from_str(json).map_err(|e| invalid(format!("dashboard: {e}")))?;
    let mut out = Vec::new();
    walk(&dash, &mut out);
    Ok(out)
}

/// Every rule's `expr` in a rule file (either format).
pub fn rule_exprs(text: &str) -> Result<Vec<String>> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| invalid(format!("rules: {e}")))?;
    let rules: Vec<&Value> = match doc.get("groups") {
        Some(Value::Array(groups)) => groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect(),
        _ => vec![&doc],
    };
    rules
        .into_iter()
        .map(|r| {
            r["expr"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| invalid("a rule without expr".into()))
        })
        .collect()
}

/// The metric names a PromQL expression selects (not functions, aggregations, keywords, label
/// names or values, durations): what a dashboard or rule needs a scrape job to expose.
pub fn promql_metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 12] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
    ];
    let b = expr.as_bytes();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    // after by/without/on/ignoring/group_*: the next (...) holds label names
    let mut label_list_next = false;
    let mut label_list_depth: Option<usize> = None;
    let mut paren_depth = 0usize;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let q = c;
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'{' => depth_brace += 1,
            b'}' => depth_brace -= 1,
            b'[' => depth_bracket += 1,
            b']' => depth_bracket -= 1,
            b'(' => {
                paren_depth += 1;
                if label_list_next {
                    label_list_depth = Some(paren_depth);
                    label_list_next = false;
                }
            }
            b')' => {
                if label_list_depth == Some(paren_depth) {
                    label_list_depth = None;
                }
                paren_depth = paren_depth.saturating_sub(1);
            }
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let prev_digit = start > 0 && (b[start - 1].is_ascii_digit() || b[start - 1] == b'.');
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let rest = &expr[j..];
            let is_call = rest.starts_with('(')
                || ["by", "without"]
                    .iter()
                    .any(|k| rest.starts_with(k) && rest[k.len()..].trim_start().starts_with('('));
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                label_list_next = true;
            } else if depth_brace == 0
                && depth_bracket == 0
                && label_list_depth.is_none()
                && !is_call
                && !prev_digit
                && !KEYWORDS.contains(&lower.as_str())
                && lower != "nan"
                && !names.iter().any(|n| n == word)
            {
                names.push(word.to_string());
            }
            continue;
        }
        if !c.is_ascii_whitespace() && c != b'(' {
            label_list_next = false;
        }
        i += 1;
    }
    names
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(T[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `_deterministic_scrape_configs`: `<app>_<name or default>_<hash>`, sorted.
fn deterministic_jobs(jobs: &[ScrapeJob], app: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for job in jobs {
        let mut v = serde_json::to_value(job).map_err(|e| invalid(format!("scrape job: {e}")))?;
        let obj = v.as_object_mut().expect("a ScrapeJob is an object");
        let name = match obj.remove("job_name") {
            Some(Value::String(n)) => n,
            _ => "default".to_string(),
        };
        let short = job_hash(obj);
        obj.insert(
            "job_name".into(),
            Value::String(format!("{app}_{name}_{short}")),
        );
        out.push(v);
    }
    out.sort_by(|a, b| a["job_name"].as_str().cmp(&b["job_name"].as_str()));
    Ok(out)
}

/// `_dict_hash_except_key`: BLAKE2b with a 4-byte digest of `json.dumps(cfg, sort_keys=True)`.
fn job_hash(cfg: &Map<String, Value>) -> String {
    use blake2::digest::{consts::U4, Digest};
    let text = python_dumps(&Value::Object(cfg.clone()));
    hex(&blake2::Blake2b::<U4>::digest(text.as_bytes()))
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, keys sorted,
/// non-ASCII escaped as `\uXXXX` (`ensure_ascii`).
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => dump_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(k, out);
                out.push_str(": ");
                dump(&o[k], out);
            }
            out.push('}');
        }
    }
}

fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology {
            model: "m".into(),
            model_uuid: "6ac6d2f3-0b4e-4c43-8b3a-2a6e7c1f0d9e".into(),
            application: "pg".into(),
            unit: "pg/0".into(),
            charm_name: "postgresql-ha".into(),
        }
    }

    #[test]
    fn python_dumps_matches_json_dumps_sort_keys() {
        // Python: json.dumps({"b": [1, "é\n"], "a": {"y": None, "x": True}}, sort_keys=True)
        let v = json!({"b": [1, "é\n"], "a": {"y": null, "x": true}});
        assert_eq!(
            python_dumps(&v),
            r#"{"a": {"x": true, "y": null}, "b": [1, "\u00e9\n"]}"#
        );
        // Python escapes all but space..~ (DEL too), astral characters as surrogate pairs
        assert_eq!(python_dumps(&json!("\u{7f}😀")), r#""\u007f\ud83d\ude00""#);
    }

    #[test]
    fn job_names_are_the_librarys() {
        // COSAgentProvider(app "pg") with metrics_endpoints=[{"path": "/metrics", "port": 9187}]:
        // blake2b(b'{"metrics_path": "/metrics", "static_configs": [{"targets": ["localhost:9187"]}]}', digest_size=4)
        let jobs = deterministic_jobs(&[ScrapeJob::localhost("/metrics", 9187)], "pg").unwrap();
        assert_eq!(jobs[0]["job_name"], "pg_default_9e4340ff");
    }

    #[test]
    fn dashboard_uid_is_shake256_of_charm_and_path() {
        // hashlib.shake_256(b"postgresql-ha-src/grafana_dashboards/a.json").hexdigest(20)
        assert_eq!(
            dashboard_uid("postgresql-ha", "src/grafana_dashboards/a.json"),
            "1e15519e5f8e334275df2ea263749116de4d5fa9"
        );
    }

    #[test]
    fn promql_names_are_the_metrics_only() {
        let e = r#"sum by (job, server) (rate(haproxy_server_status{state="DOWN", x=~"a|b"}[5m])) / on(job) group_left(instance) max(up offset 5m) > 1e6 and on() count(time() - timestamp(patroni_version) < 90) > 0 or vector(0) unless nothing:recorded"#;
        assert_eq!(
            promql_metric_names(e),
            [
                "haproxy_server_status",
                "up",
                "patroni_version",
                "nothing:recorded"
            ]
        );
        assert_eq!(
            promql_metric_names("histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m])))"),
            ["x_bucket"]
        );
    }

    #[test]
    fn exprs_of_dashboards_and_rules() {
        let dash = r#"{"panels": [{"targets": [{"expr": "a"}, {"refId": "B"}]}, {"type": "row", "panels": [{"targets": [{"expr": "b"}]}]}]}"#;
        assert_eq!(dashboard_exprs(dash).unwrap(), ["a", "b"]);
        let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 1\n  - record: r\n    expr: sum(y)\n";
        assert_eq!(rule_exprs(rules).unwrap(), ["x > 1", "sum(y)"]);
        assert_eq!(rule_exprs("alert: S\nexpr: z\n").unwrap(), ["z"]);
        assert!(rule_exprs("groups:\n- name: g\n  rules:\n  - alert: A\n").is_err());
    }

    #[test]
    fn compressed_dashboards_decompress() {
        let text = "{\"title\": \"\\u00fc\"}".repeat(50);
        let packed = lzma_base64(text.as_bytes()).unwrap();
        assert!(
            packed.len() < text.len(),
            "compressed: {} of {}",
            packed.len(),
            text.len()
        );
        assert_eq!(lzma_base64_decode(&packed).unwrap(), text);
        assert_eq!(unbase64("Zm9vYg==").unwrap(), b"foob");
    }

    #[test]
    fn base64_pads_as_python() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn groups_are_renamed_and_labelled_and_host_health_follows() {
        let files = [
            RuleFile {
                path: "b.rules",
                text: "groups:\n- name: pg\n  rules:\n  - alert: X\n    expr: up{%%juju_topology%%,job=\"a\"} == 0\n    labels: {juju_charm: other}\n",
            },
            RuleFile {
                path: "a.yaml",
                text: "alert: Single\nexpr: vector(1)\n",
            },
            RuleFile {
                path: "notes.txt",
                text: "not a rule",
            },
        ];
        let data = Provider {
            topology: Some(topo()),
            metrics_rules: &files,
            ..Provider::default()
        }
        .build()
        .unwrap();
        let groups = data.metrics_alert_rules["groups"].as_array().unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "m_6ac6d2f3_pg_a_rules",
                "m_6ac6d2f3_pg_pg_rules",
                "m_6ac6d2f3_pg_HostHealth_rules"
            ]
        );
        let x = &groups[1]["rules"][0];
        assert_eq!(x["expr"], "up{job=\"a\"} == 0");
        assert_eq!(
            x["labels"]["juju_charm"], "other",
            "a label already set is kept"
        );
        assert_eq!(x["labels"]["juju_application"], "pg");
        assert_eq!(x["labels"]["juju_model_uuid"], topo().model_uuid);
        assert_eq!(data.log_alert_rules, json!({}));
        assert!(already_modified("m_6ac6d2f3_pg_pg_rules"));
        assert!(!already_modified("pg_rules"));
    }

    #[test]
    fn a_bad_rule_file_is_an_error_naming_it() {
        let files = [RuleFile {
            path: "x.rules",
            text: "foo: bar\n",
        }];
        let err = Provider {
            topology: Some(topo()),
            metrics_rules: &files,
            ..Provider::default()
        }
        .build()
        .unwrap_err();
        assert!(err.to_string().contains("x.rules"), "{err}");
    }

    #[test]
    fn the_databag_nests_everything_under_config_in_the_librarys_field_order() {
        let data = Provider {
            topology: Some(topo()),
            ..Provider::default()
        }
        .build()
        .unwrap();
        let bag = data.to_databag();
        assert_eq!(bag.len(), 1);
        let text = &bag["config"];
        let order = [
            "\"metrics_alert_rules\"",
            "\"log_alert_rules\"",
            "\"dashboards\"",
            "\"subordinate\":null",
            "\"metrics_scrape_jobs\"",
            "\"log_slots\"",
            "\"tracing_protocols\":null",
        ];
        let pos: Vec<usize> = order.iter().map(|k| text.find(k).expect(k)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
