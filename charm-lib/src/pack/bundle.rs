//! Checking a bundle (and its overlays) against the charms it deploys, as Juju's
//! `BundleData.VerifyLocal` and `VerifyWithCharms` would, since no public tool does this for
//! modern bundles of local charms (reference/local-test-hosts.md, "Reference validators").

use super::check::Finding;
use super::read_archive;
use crate::spec::{CharmSpec, Role};
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One application of the merged bundle.
#[derive(Debug, Clone)]
struct App {
    charm: Option<PathBuf>,
    spec: Option<CharmSpec>,
    num_units: Option<i64>,
    to: Vec<String>,
    options: Mapping,
    resources: Mapping,
    resource_dir: PathBuf,
}

fn load_spec(path: &Path) -> Result<CharmSpec, String> {
    if path.is_dir() {
        return CharmSpec::load(path);
    }
    let files = read_archive(path)?;
    let text = |n: &str| {
        files
            .get(n)
            .map(|(c, _)| String::from_utf8_lossy(c).into_owned())
    };
    let meta =
        text("metadata.yaml").ok_or_else(|| format!("{}: no metadata.yaml", path.display()))?;
    CharmSpec::parse(
        &meta,
        text("config.yaml").as_deref(),
        text("actions.yaml").as_deref(),
    )
}

fn read_yaml(path: &Path) -> Result<Mapping, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match serde_yaml::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))? {
        Value::Mapping(m) => Ok(m),
        _ => Err(format!("{}: a bundle must be a YAML map", path.display())),
    }
}

fn as_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks `bundle` with `overlays` applied in order. Paths in each file resolve relative to
/// that file's directory.
pub fn check_bundle(bundle: &Path, overlays: &[PathBuf]) -> Vec<Finding> {
    let mut f = Vec::new();
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    let mut machines: Option<BTreeSet<String>> = None;
    let mut relations: Vec<(Value, String)> = Vec::new();
    for (i, file) in std::iter::once(bundle.to_path_buf())
        .chain(overlays.iter().cloned())
        .enumerate()
    {
        let doc = match read_yaml(&file) {
            Ok(d) => d,
            Err(e) => return vec![Finding::error(e)],
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = file.display().to_string();
        for key in doc.keys().filter_map(|k| k.as_str()) {
            let known = [
                "applications",
                "services",
                "machines",
                "relations",
                "description",
                "default-base",
                "series",
                "tags",
                "saas",
                "bundle",
            ];
            if !known.contains(&key) {
                f.push(Finding::error(format!(
                    "{name}: unknown top-level key {key:?}"
                )));
            }
        }
        if let Some(base) = doc.get("default-base").and_then(|b| b.as_str()) {
            if !matches!(base, "ubuntu@22.04" | "ubuntu@24.04") {
                f.push(Finding::error(format!("{name}: default-base {base:?} is not one of the charms' bases (ubuntu@22.04, ubuntu@24.04)")));
            }
        }
        if let Some(Value::Mapping(m)) = doc.get("machines") {
            machines = Some(m.keys().filter_map(as_str).collect());
        }
        let app_map = doc.get("applications").or_else(|| doc.get("services"));
        if i == 0
            && app_map
                .and_then(|a| a.as_mapping())
                .is_none_or(|a| a.is_empty())
        {
            f.push(Finding::error(format!(
                "{name}: a bundle needs at least one application"
            )));
        }
        if let Some(Value::Mapping(m)) = app_map {
            for (k, v) in m {
                let Some(app_name) = k.as_str() else { continue };
                if v.is_null() {
                    apps.remove(app_name);
                    continue;
                }
                let Some(spec) = v.as_mapping() else {
                    f.push(Finding::error(format!(
                        "{name}: application {app_name:?} must be a map"
                    )));
                    continue;
                };
                let entry = apps.entry(app_name.to_string()).or_insert_with(|| App {
                    charm: None,
                    spec: None,
                    num_units: None,
                    to: Vec::new(),
                    options: Mapping::new(),
                    resources: Mapping::new(),
                    resource_dir: dir.clone(),
                });
                if let Some(c) = spec.get("charm").and_then(|c| c.as_str()) {
                    let local = c.strip_prefix("local:").unwrap_or(c);
                    if local.starts_with('.') || local.starts_with('/') {
                        let path = dir.join(local);
                        match load_spec(&path) {
                            Ok(s) => entry.spec = Some(s),
                            Err(e) => f.push(Finding::error(format!("{name}: charm path in application {app_name:?} does not exist or is not a charm: {e}"))),
                        }
                        entry.charm = Some(path);
                    } else {
                        f.push(Finding::warning(format!("{name}: application {app_name:?} uses a store charm {c:?}, not checked")));
                    }
                }
                if let Some(n) = spec.get("num_units") {
                    match n.as_i64() {
                        Some(n) if n >= 0 => entry.num_units = Some(n),
                        _ => f.push(Finding::error(format!("{name}: application {app_name:?}: num_units must be a non-negative integer"))),
                    }
                }
                if let Some(to) = spec.get("to") {
                    entry.to = to
                        .as_sequence()
                        .map(|s| s.iter().filter_map(as_str).collect())
                        .unwrap_or_else(|| as_str(to).into_iter().collect());
                }
                if let Some(Value::Mapping(o)) = spec.get("options") {
                    for (k, v) in o {
                        entry.options.insert(k.clone(), v.clone());
                    }
                }
                if let Some(Value::Mapping(r)) = spec.get("resources") {
                    for (k, v) in r {
                        entry.resources.insert(k.clone(), v.clone());
                    }
                    entry.resource_dir = dir.clone();
                }
            }
        }
        if let Some(rels) = doc.get("relations") {
            match rels.as_sequence() {
                Some(seq) => relations.extend(seq.iter().map(|r| (r.clone(), name.clone()))),
                None => f.push(Finding::error(format!("{name}: relations must be a list"))),
            }
        }
    }
    check_apps(&apps, machines.as_ref(), &mut f);
    check_relations(&apps, &relations, &mut f);
    f
}

fn check_apps(
    apps: &BTreeMap<String, App>,
    machines: Option<&BTreeSet<String>>,
    f: &mut Vec<Finding>,
) {
    let mut used_machines = BTreeSet::new();
    for (name, app) in apps {
        if app.charm.is_none() {
            f.push(Finding::error(format!("application {name:?} has no charm")));
        }
        for p in &app.to {
            let target = p
                .split_once(':')
                .map(|(c, t)| {
                    if matches!(c, "lxd" | "kvm") {
                        t
                    } else {
                        p.as_str()
                    }
                })
                .unwrap_or(p);
            if target == "new" {
                continue;
            }
            if target.chars().all(|c| c.is_ascii_digit()) {
                used_machines.insert(target.to_string());
                if !machines.is_some_and(|m| m.contains(target)) {
                    f.push(Finding::error(format!("application {name:?} is placed on machine {target:?}, which the bundle does not define")));
                }
            } else {
                let (other, idx) = match target.split_once('/') {
                    Some((a, i)) => (a, i.parse::<i64>().ok()),
                    None => (target, None),
                };
                match apps.get(other) {
                    None => f.push(Finding::error(format!(
                        "application {name:?} is placed on {p:?}: no such application"
                    ))),
                    Some(o) => {
                        if let Some(i) = idx {
                            if i >= o.num_units.unwrap_or(0) {
                                f.push(Finding::error(format!("application {name:?} is placed on {p:?}, but {other:?} has only {} units", o.num_units.unwrap_or(0))));
                            }
                        }
                    }
                }
            }
        }
        let Some(spec) = &app.spec else { continue };
        if spec.metadata.subordinate {
            if app.num_units.unwrap_or(0) != 0 {
                f.push(Finding::error(format!(
                    "application {name:?} is a subordinate and cannot have num_units"
                )));
            }
            if !app.to.is_empty() {
                f.push(Finding::error(format!(
                    "application {name:?} is a subordinate and cannot have a placement (to:)"
                )));
            }
        }
        let units = app.num_units.unwrap_or(0);
        if app.to.len() as i64 > units.max(1) && !spec.metadata.subordinate {
            f.push(Finding::error(format!(
                "application {name:?} has {} placements for {units} units",
                app.to.len()
            )));
        }
        for (k, v) in &app.options {
            let key = k.as_str().unwrap_or_default();
            match spec.config.options.get(key) {
                None => f.push(Finding::error(format!(
                    "application {name:?}: option {key:?} does not exist in charm {:?}",
                    spec.metadata.name
                ))),
                Some(o) => {
                    let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                    if !o.accepts(&json) {
                        f.push(Finding::error(format!(
                            "application {name:?}: option {key:?} must be of type {}, got {json}",
                            o.kind
                        )));
                    }
                }
            }
        }
        for (k, v) in &app.resources {
            let key = k.as_str().unwrap_or_default();
            if !spec.metadata.resources.contains_key(key) {
                f.push(Finding::error(format!(
                    "application {name:?}: resource {key:?} is not declared by charm {:?}",
                    spec.metadata.name
                )));
            } else if let Some(path) = v.as_str() {
                if !app.resource_dir.join(path).exists() {
                    f.push(Finding::warning(format!(
                        "application {name:?}: resource {key:?} file {path:?} does not exist yet"
                    )));
                }
            }
        }
    }
    if let Some(defined) = machines {
        for m in defined.difference(&used_machines) {
            f.push(Finding::error(format!(
                "machine {m:?} is defined but no application is placed on it"
            )));
        }
    }
}

/// Resolves `app[:endpoint]` against the other side, inferring the endpoint when exactly one
/// pairing with matching interfaces and roles exists.
fn check_relations(
    apps: &BTreeMap<String, App>,
    relations: &[(Value, String)],
    f: &mut Vec<Finding>,
) {
    let mut seen = BTreeSet::new();
    let mut related_subordinates = BTreeSet::new();
    for (rel, file) in relations {
        let ends: Vec<String> = rel
            .as_sequence()
            .map(|s| s.iter().filter_map(as_str).collect())
            .unwrap_or_default();
        if ends.len() != 2 {
            f.push(Finding::error(format!(
                "{file}: relation {rel:?} must have exactly two endpoints"
            )));
            continue;
        }
        let parse = |e: &str| match e.split_once(':') {
            Some((a, ep)) => (a.to_string(), Some(ep.to_string())),
            None => (e.to_string(), None),
        };
        let (a, a_ep) = parse(&ends[0]);
        let (b, b_ep) = parse(&ends[1]);
        if a == b {
            f.push(Finding::error(format!(
                "{file}: relation {ends:?} relates {a:?} to itself"
            )));
            continue;
        }
        let (Some(app_a), Some(app_b)) = (apps.get(&a), apps.get(&b)) else {
            for x in [&a, &b] {
                if !apps.contains_key(x) {
                    f.push(Finding::error(format!(
                        "{file}: relation {ends:?}: no application {x:?}"
                    )));
                }
            }
            continue;
        };
        let (Some(sa), Some(sb)) = (&app_a.spec, &app_b.spec) else {
            continue;
        };
        let candidates: Vec<(String, String, bool)> = sa
            .metadata
            .endpoints()
            .into_iter()
            .filter(|(_, n, _)| a_ep.as_deref().is_none_or(|e| e == *n))
            .flat_map(|(ra, na, ea)| {
                let (iface, a_container) = (ea.interface.clone(), ea.is_container());
                sb.metadata
                    .endpoints()
                    .into_iter()
                    .filter(|(_, n, _)| b_ep.as_deref().is_none_or(|e| e == *n))
                    .filter(move |(rb, _, eb)| {
                        iface == eb.interface
                            && matches!(
                                (ra, *rb),
                                (Role::Provides, Role::Requires) | (Role::Requires, Role::Provides)
                            )
                    })
                    .map(move |(_, nb, eb)| {
                        (
                            na.to_string(),
                            nb.to_string(),
                            a_container || eb.is_container(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let explain =
            |side: &str, app: &str, ep: &Option<String>, spec: &CharmSpec| -> Option<String> {
                let ep = ep.as_deref()?;
                match spec.metadata.endpoint(ep) {
                    None => Some(format!("{side} {app:?} has no endpoint {ep:?}")),
                    Some((Role::Peers, _)) => Some(format!(
                        "{app}:{ep} is a peer endpoint; peers are never listed in relations"
                    )),
                    _ => None,
                }
            };
        match candidates.as_slice() {
            [(na, nb, container)] => {
                let key = if (a.as_str(), na.as_str()) < (b.as_str(), nb.as_str()) {
                    format!("{a}:{na} {b}:{nb}")
                } else {
                    format!("{b}:{nb} {a}:{na}")
                };
                if !seen.insert(key.clone()) {
                    f.push(Finding::error(format!(
                        "{file}: relation {key} is listed twice"
                    )));
                }
                if *container {
                    match (sa.metadata.subordinate, sb.metadata.subordinate) {
                        (false, false) => f.push(Finding::error(format!("{file}: container-scoped relation {key} needs a subordinate on one side"))),
                        (true, _) => {
                            related_subordinates.insert(a.clone());
                        }
                        (_, true) => {
                            related_subordinates.insert(b.clone());
                        }
                    }
                }
            }
            [] => {
                let why = explain("application", &a, &a_ep, sa)
                    .or_else(|| explain("application", &b, &b_ep, sb))
                    .unwrap_or_else(|| "no endpoints with the same interface and compatible roles (provides/requires)".into());
                f.push(Finding::error(format!("{file}: relation {ends:?}: {why}")));
            }
            many => f.push(Finding::error(format!(
                "{file}: relation {ends:?} is ambiguous: name the endpoints ({})",
                many.iter()
                    .map(|(x, y, _)| format!("{a}:{x}-{b}:{y}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
    for (name, app) in apps {
        if app.spec.as_ref().is_some_and(|s| s.metadata.subordinate)
            && !related_subordinates.contains(name)
        {
            f.push(Finding::warning(format!(
                "subordinate {name:?} is not related to any principal, so it has no units"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Severity;

    /// A scratch directory with two principal charms, a subordinate and a bundle.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let d = std::env::temp_dir()
                .join(format!("charm-lib-bundle-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            let charm = |n: &str, meta: &str, config: &str| {
                let c = d.join("charms").join(n);
                std::fs::create_dir_all(&c).unwrap();
                std::fs::write(
                    c.join("metadata.yaml"),
                    format!("name: {n}\nsummary: s\ndescription: d\n{meta}"),
                )
                .unwrap();
                std::fs::write(c.join("config.yaml"), config).unwrap();
            };
            charm("db", "provides:\n  db:\n    interface: pgsql\n  vip:\n    interface: keepalived-vip\n    scope: container\npeers:\n  peers:\n    interface: db-peers\n", "options:\n  port:\n    type: int\n    default: 5432\n    description: p\n");
            charm(
                "region",
                "requires:\n  db:\n    interface: pgsql\n  other:\n    interface: pgsql\n",
                "options: {}\n",
            );
            charm("vip", "subordinate: true\nrequires:\n  juju-info:\n    interface: juju-info\n    scope: container\n  vip:\n    interface: keepalived-vip\n    scope: container\n", "options:\n  vip:\n    type: string\n    description: v\n");
            Fixture(d)
        }

        fn check(&self, bundle: &str, overlays: &[&str]) -> Vec<String> {
            let b = self.0.join("bundle.yaml");
            std::fs::write(&b, bundle).unwrap();
            let paths: Vec<PathBuf> = overlays
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let p = self.0.join(format!("overlay{i}.yaml"));
                    std::fs::write(&p, o).unwrap();
                    p
                })
                .collect();
            check_bundle(&b, &paths)
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| f.message)
                .collect()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const GOOD: &str = "
machines:
  '0': {}
  '1': {}
applications:
  db: {charm: ./charms/db, num_units: 2, to: ['0', '1'], options: {port: 6543}}
  region: {charm: ./charms/region, num_units: 1, to: ['db/0']}
  db-vip: {charm: ./charms/vip, options: {vip: 10.0.0.1/24}}
relations:
  - [region:db, db:db]
  - [db:vip, db-vip:vip]
";

    fn with(extra: &str) -> String {
        format!("{GOOD}{extra}")
    }

    #[test]
    fn a_good_bundle_passes() {
        assert_eq!(Fixture::new("good").check(GOOD, &[]), Vec::<String>::new());
    }

    #[test]
    fn relation_errors() {
        let fx = Fixture::new("rel");
        let e = fx.check(&with("  - [region, db]\n"), &[]);
        assert!(e[0].contains("ambiguous"), "{e:?}");
        let e = fx.check(&with("  - [region:nope, db:db]\n"), &[]);
        assert!(e[0].contains("has no endpoint \"nope\""), "{e:?}");
        let e = fx.check(&with("  - [db:peers, region:db]\n"), &[]);
        assert!(e[0].contains("peer endpoint"), "{e:?}");
        let e = fx.check(&with("  - [db:db, region:db]\n"), &[]);
        assert!(e[0].contains("listed twice"), "{e:?}");
        let e = fx.check(&with("  - [db:vip, region:db]\n"), &[]);
        assert!(
            e[0].contains("same interface and compatible roles"),
            "{e:?}"
        );
        let e = fx.check(&with("  - [ghost:db, db:db]\n"), &[]);
        assert!(e[0].contains("no application \"ghost\""), "{e:?}");
        let e = fx.check(&with("  - [db, db]\n"), &[]);
        assert!(e[0].contains("to itself"), "{e:?}");
    }

    #[test]
    fn application_errors() {
        let fx = Fixture::new("app");
        let e = fx.check(
            &GOOD.replace("{vip: 10.0.0.1/24}", "{vip: 10.0.0.1/24}, num_units: 2"),
            &[],
        );
        assert!(
            e[0].contains("subordinate and cannot have num_units"),
            "{e:?}"
        );
        let e = fx.check(&GOOD.replace("port: 6543", "port: sixty"), &[]);
        assert!(
            e[0].contains("option \"port\" must be of type int"),
            "{e:?}"
        );
        let e = fx.check(&GOOD.replace("port: 6543", "colour: red"), &[]);
        assert!(e[0].contains("option \"colour\" does not exist"), "{e:?}");
        let e = fx.check(&GOOD.replace("to: ['db/0']", "to: ['db/5']"), &[]);
        assert!(e[0].contains("has only 2 units"), "{e:?}");
        let e = fx.check(&GOOD.replace("to: ['0', '1']", "to: ['0', '7']"), &[]);
        assert!(
            e.iter()
                .any(|m| m.contains("machine \"7\", which the bundle does not define")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("machine \"1\" is defined but no application is placed on it")),
            "{e:?}"
        );
        let e = fx.check(&GOOD.replace("./charms/region", "./charms/missing"), &[]);
        assert!(
            e[0].contains("charm path in application \"region\" does not exist"),
            "{e:?}"
        );
    }

    #[test]
    fn overlays_merge_options_and_remove_applications() {
        let fx = Fixture::new("overlay");
        assert!(fx
            .check(
                GOOD,
                &["applications:\n  db:\n    options:\n      port: 1\n"]
            )
            .is_empty());
        let e = fx.check(
            GOOD,
            &["applications:\n  db:\n    options:\n      port: one\n"],
        );
        assert!(e[0].contains("must be of type int"), "{e:?}");
        let e = fx.check(GOOD, &["applications:\n  db-vip:\n"]);
        assert!(
            e[0].contains("no application \"db-vip\""),
            "removed by the overlay: {e:?}"
        );
    }
}
