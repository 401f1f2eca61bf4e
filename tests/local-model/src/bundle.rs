//! Bundles (reference §4.5): applications, machines, relations, multi-document overlays
//! and `--overlay` files, with local paths resolved relative to the file that names them.

use crate::protocol::{AppPlan, DeployPlan};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn abs(base: &Path, p: &str) -> PathBuf {
    let p = p.strip_prefix("local:").unwrap_or(p);
    let pb = Path::new(p);
    if pb.is_absolute() {
        pb.to_path_buf()
    } else {
        base.join(pb)
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Make the local paths of one bundle document absolute (charms and resources resolve
/// relative to the file the document came from).
fn absolutise(doc: &mut Value, dir: &Path) {
    let Some(apps) = doc.get_mut("applications").or(None) else {
        return;
    };
    let Some(apps) = apps.as_mapping_mut() else {
        return;
    };
    for (_, app) in apps.iter_mut() {
        let Some(app) = app.as_mapping_mut() else {
            continue;
        };
        if let Some(Value::String(c)) = app.get_mut("charm") {
            if c.starts_with('.') || c.starts_with('/') || c.starts_with("local:") {
                *c = abs(dir, c).display().to_string();
            }
        }
        if let Some(Value::Mapping(res)) = app.get_mut("resources") {
            for (_, r) in res.iter_mut() {
                if let Value::String(p) = r {
                    *p = abs(dir, p).display().to_string();
                }
            }
        }
    }
}

/// Merge an overlay document into the base as Juju does (charm package, overlay.go
/// `ReadAndMergeBundleData`, `applyOverlay`, `mergeStructs`): an application with an empty
/// body is removed together with every relation naming it; a new one is added; a known one is
/// merged field by field (see [`merge_app`]); relations are appended; `machines` replace the
/// base's; a non-empty `series` replaces it. Nothing else in an overlay is merged.
fn merge(base: &mut Mapping, overlay: &Mapping) {
    for (k, v) in overlay {
        match k.as_str() {
            Some("applications") | Some("services") => {
                let key = Value::String("applications".into());
                let apps = base
                    .entry(key)
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                let Some(apps) = apps.as_mapping_mut() else {
                    continue;
                };
                let mut removed = Vec::new();
                for (name, spec) in v.as_mapping().cloned().unwrap_or_default() {
                    match spec {
                        Value::Null => {
                            apps.remove(&name);
                            removed.push(name);
                        }
                        Value::Mapping(m) if m.is_empty() => {
                            apps.remove(&name);
                            removed.push(name);
                        }
                        Value::Mapping(m) => match apps.get_mut(&name) {
                            Some(Value::Mapping(old)) => merge_app(old, &m),
                            _ => {
                                apps.insert(name, Value::Mapping(m));
                            }
                        },
                        _ => {}
                    }
                }
                if let Some(Value::Sequence(rels)) = base.get_mut("relations") {
                    for name in removed.iter().filter_map(Value::as_str) {
                        rels.retain(|r| !relation_names(r, name));
                    }
                }
            }
            Some("relations") => {
                let rels = base
                    .entry(k.clone())
                    .or_insert_with(|| Value::Sequence(vec![]));
                if let (Some(r), Some(new)) = (rels.as_sequence_mut(), v.as_sequence()) {
                    r.extend(new.iter().cloned());
                }
            }
            Some("machines") => {
                base.insert(k.clone(), v.clone());
            }
            Some("series") if v.as_str().is_some_and(|s| !s.is_empty()) => {
                base.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// `mergeStructs` on one application: a scalar or a list (`charm`, `num_units`, `to`, ...)
/// replaces the base's; a map (`options`, `resources`, `annotations`, `bindings`, ...) given
/// empty or null clears the base's, otherwise each key replaces the base's, and a key given
/// null is deleted.
fn merge_app(old: &mut Mapping, new: &Mapping) {
    for (field, value) in new {
        let is_map_field =
            matches!(old.get(field), Some(Value::Mapping(_))) || matches!(value, Value::Mapping(_));
        match value {
            Value::Null if is_map_field => {
                old.insert(field.clone(), Value::Mapping(Mapping::new()));
            }
            Value::Mapping(m) if m.is_empty() => {
                old.insert(field.clone(), Value::Mapping(Mapping::new()));
            }
            Value::Mapping(m) => {
                let entry = old
                    .entry(field.clone())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if !entry.is_mapping() {
                    *entry = Value::Mapping(Mapping::new());
                }
                let Some(dst) = entry.as_mapping_mut() else {
                    continue;
                };
                for (key, v) in m {
                    if v.is_null() {
                        dst.remove(key);
                    } else {
                        dst.insert(key.clone(), v.clone());
                    }
                }
            }
            _ => {
                old.insert(field.clone(), value.clone());
            }
        }
    }
}

/// Whether a relation (`[a, b]`, each `app` or `app:endpoint`) names application `app`
/// (`removeRelations`; a malformed entry stays for validation to report).
fn relation_names(rel: &Value, app: &str) -> bool {
    let Some(ends) = rel.as_sequence().filter(|e| e.len() == 2) else {
        return false;
    };
    ends.iter().filter_map(Value::as_str).any(|end| {
        end == app
            || end
                .strip_prefix(app)
                .is_some_and(|rest| rest.starts_with(':'))
    })
}

fn read_docs(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .canonicalize()?;
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let mut v = Value::deserialize(d).with_context(|| format!("parsing {}", path.display()))?;
        if v.is_null() {
            continue;
        }
        absolutise(&mut v, &dir);
        docs.push(v);
    }
    Ok(docs)
}

fn str_list(v: Option<&Value>) -> Result<Vec<String>> {
    Ok(match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                o => Err(anyhow!("bad placement {o:?}")),
            })
            .collect::<Result<_>>()?,
        Some(o) => bail!("bad list {o:?}"),
    })
}

/// Load a bundle and its overlays into a deploy plan, with the verifier's main checks.
pub fn load_bundle(path: &Path, overlays: &[PathBuf]) -> Result<DeployPlan> {
    let mut docs = read_docs(path)?;
    for o in overlays {
        docs.extend(read_docs(o)?);
    }
    let mut base = docs
        .first()
        .and_then(|d| d.as_mapping().cloned())
        .ok_or_else(|| anyhow!("{}: empty bundle", path.display()))?;
    if let Some(s) = base.remove("services") {
        base.insert("applications".into(), s);
    }
    for d in &docs[1..] {
        merge(
            &mut base,
            d.as_mapping()
                .ok_or_else(|| anyhow!("overlay is not a map"))?,
        );
    }
    let apps = base
        .get("applications")
        .and_then(|a| a.as_mapping())
        .ok_or_else(|| anyhow!("bundle has no applications"))?;
    if apps.is_empty() {
        bail!("bundle has no applications");
    }
    let machines: Vec<String> = base
        .get("machines")
        .and_then(|m| m.as_mapping())
        .map(|m| {
            m.keys()
                .map(|k| match k {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    for m in &machines {
        if m.is_empty() || !m.chars().all(|c| c.is_ascii_digit()) {
            bail!("invalid machine id {m:?} found in machines");
        }
    }
    // the bundle's default base: `default-base`, else `series` (bundlechanges: an application
    // without its own base or series gets the bundle's; an overlay's applications too, as the
    // overlay is merged into the bundle before the changes are computed)
    let default_base = base
        .get("default-base")
        .or(base.get("series"))
        .and_then(|v| v.as_str())
        .map(String::from);
    let mut plan = DeployPlan {
        machines: machines.clone(),
        bundle: true,
        apps: vec![],
        relations: vec![],
    };
    for (name, spec) in apps {
        let name = name
            .as_str()
            .ok_or_else(|| anyhow!("bad application name"))?
            .to_string();
        let spec = spec
            .as_mapping()
            .ok_or_else(|| anyhow!("application {name:?}: not a map"))?;
        let charm = spec
            .get("charm")
            .and_then(|c| c.as_str())
            .ok_or_else(|| anyhow!("application {name:?}: no charm"))?;
        if !charm.starts_with('/') {
            bail!("application {name:?}: only local charms can be deployed here (got {charm:?})");
        }
        let charm = PathBuf::from(charm);
        if !charm.exists() {
            bail!(
                "charm path in application {name:?} does not exist: {}",
                charm.display()
            );
        }
        let num_units = match spec.get("num_units").or(spec.get("scale")) {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| anyhow!("application {name:?}: bad num_units"))?
                as u32,
        };
        let to = str_list(spec.get("to"))?;
        if to.len() > num_units as usize {
            bail!("too many placements for application {name:?}");
        }
        for t in &to {
            let m = t.rsplit(':').next().unwrap_or(t);
            if m.chars().all(|c| c.is_ascii_digit()) && !machines.contains(&m.to_string()) {
                bail!("placement {t:?} refers to a machine not defined in this bundle");
            }
            if let Some((app, _)) = t.split_once('/') {
                if !apps.contains_key(app) {
                    bail!("placement {t:?} refers to an application not defined in this bundle");
                }
            }
        }
        let options: BTreeMap<String, serde_json::Value> = spec
            .get("options")
            .and_then(|o| o.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v))))
                    .collect()
            })
            .unwrap_or_default();
        let mut resources = BTreeMap::new();
        if let Some(r) = spec.get("resources").and_then(|r| r.as_mapping()) {
            for (k, v) in r {
                let k = k.as_str().unwrap_or_default().to_string();
                match v {
                    Value::String(p) => {
                        resources.insert(k, PathBuf::from(p));
                    }
                    _ => bail!(
                        "application {name:?}: resource {k:?}: only local file paths are supported"
                    ),
                }
            }
        }
        let app_base = spec
            .get("base")
            .or(spec.get("series"))
            .and_then(|v| v.as_str())
            .map(String::from)
            .or(default_base.clone());
        plan.apps.push(AppPlan {
            name,
            charm,
            num_units,
            to,
            options,
            resources,
            base: app_base,
        });
    }
    for m in &machines {
        let used = plan
            .apps
            .iter()
            .any(|a| a.to.iter().any(|t| t.rsplit(':').next() == Some(m)));
        if !used {
            bail!("machine {m:?} is not referred to by a placement directive");
        }
    }
    for r in base
        .get("relations")
        .and_then(|r| r.as_sequence())
        .cloned()
        .unwrap_or_default()
    {
        let pair = r
            .as_sequence()
            .ok_or_else(|| anyhow!("relation {r:?}: not a list"))?;
        let eps: Vec<String> = pair
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        if eps.len() != 2 {
            bail!("relation {r:?} has {} endpoint(s), want 2", eps.len());
        }
        for e in &eps {
            let app = e.split(':').next().unwrap_or_default();
            if !apps.contains_key(app) {
                bail!("relation {e:?} refers to application {app:?} not defined in this bundle");
            }
        }
        let pair = (eps[0].clone(), eps[1].clone());
        if plan.relations.contains(&pair) {
            bail!("relation {:?} is defined more than once", pair);
        }
        plan.relations.push(pair);
    }
    Ok(plan)
}

/// Whether a path names a bundle (YAML) rather than a charm.
pub fn is_bundle(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The plan for deploying one charm (`lm deploy x.charm [name] -n N --to X --config k=v
/// --resource r=path`).
pub fn charm_plan(
    path: &Path,
    name: Option<String>,
    n: u32,
    to: Option<String>,
    config: &[String],
    resources: &[String],
) -> Result<DeployPlan> {
    let charm = path
        .canonicalize()
        .with_context(|| format!("charm {} not found", path.display()))?;
    let meta = crate::charm::read_charm(&charm)?;
    let mut options = BTreeMap::new();
    for kv in config {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--config expects key=value, got {kv:?}"))?;
        options.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut res = BTreeMap::new();
    for kv in resources {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--resource expects name=path, got {kv:?}"))?;
        res.insert(
            k.to_string(),
            Path::new(v)
                .canonicalize()
                .with_context(|| format!("resource file {v} not found"))?,
        );
    }
    let num_units = if meta.subordinate { 0 } else { n };
    Ok(DeployPlan {
        machines: vec![],
        bundle: false,
        apps: vec![AppPlan {
            name: name.unwrap_or(meta.name),
            charm,
            num_units,
            to: to.into_iter().collect(),
            options,
            resources: res,
            base: None,
        }],
        relations: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_merges_and_paths_are_relative_to_their_file() {
        let d = std::env::temp_dir().join(format!("lm-bundle-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.charm"), b"x").unwrap();
        std::fs::write(d.join("sub/r.bin"), b"x").unwrap();
        std::fs::write(
            d.join("b.yaml"),
            "applications:\n  a:\n    charm: ./a.charm\n    num_units: 2\n    to: ['0', '0']\n    options: {x: 1}\n  gone:\n    charm: ./a.charm\nmachines:\n  '0': {}\nrelations:\n- [a, b]\n---\napplications:\n  b: {charm: ./a.charm}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sub/o.yaml"),
            "applications:\n  a:\n    options: {y: two}\n    resources: {r: ./r.bin}\n  gone: {}\n",
        )
        .unwrap();
        let p = load_bundle(&d.join("b.yaml"), &[d.join("sub/o.yaml")]).unwrap();
        let names: Vec<&str> = p.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        let a = &p.apps[0];
        assert_eq!(a.options["x"], 1);
        assert_eq!(a.options["y"], "two");
        assert_eq!(
            a.resources["r"],
            d.canonicalize().unwrap().join("sub/./r.bin")
        );
        assert_eq!(a.to, vec!["0", "0"]);
        assert_eq!(p.relations, vec![("a".into(), "b".into())]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Juju's overlay rules (overlay.go applyOverlay, mergeStructs): removing an application
    /// removes its relations; maps merge key by key, null deletes a key, an empty map clears;
    /// lists and scalars replace; machines replace; keys other than those are not merged.
    #[test]
    fn overlays_follow_jujus_merge_rules() {
        let d = std::env::temp_dir().join(format!("lm-bundle-ovl-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.charm"), b"x").unwrap();
        std::fs::write(
            d.join("b.yaml"),
            "description: base\napplications:\n  a: {charm: ./a.charm, num_units: 1, to: ['0'], options: {x: 1, y: 2}, annotations: {k: v}}\n  b: {charm: ./a.charm}\n  c: {charm: ./a.charm}\nmachines:\n  '0': {}\n  '1': {}\nrelations:\n- ['a:db', 'c:db']\n- [a, b]\n- [b, 'c:x']\n",
        )
        .unwrap();
        std::fs::write(
            d.join("o.yaml"),
            "description: overlay\napplications:\n  a: {num_units: 2, to: ['1', '1'], options: {y: null, z: 3}, annotations: {}}\n  c:\nmachines:\n  '1': {}\nrelations:\n- ['c:db', b]\n",
        )
        .unwrap();
        let mut docs = read_docs(&d.join("b.yaml")).unwrap();
        let mut base = docs.remove(0).as_mapping().cloned().unwrap();
        let over = read_docs(&d.join("o.yaml")).unwrap()[0]
            .as_mapping()
            .cloned()
            .unwrap();
        merge(&mut base, &over);
        let a = &base["applications"]["a"];
        assert_eq!(a["num_units"], Value::from(2));
        assert_eq!(
            a["to"],
            serde_yaml::from_str::<Value>("['1', '1']").unwrap()
        );
        assert_eq!(
            a["options"],
            serde_yaml::from_str::<Value>("{x: 1, z: 3}").unwrap()
        );
        assert_eq!(a["annotations"], Value::Mapping(Mapping::new()));
        assert!(base["applications"].get("c").is_none());
        assert_eq!(
            base["relations"],
            serde_yaml::from_str::<Value>("[[a, b], ['c:db', b]]").unwrap(),
            "c's relations removed with it, the overlay's appended after"
        );
        assert_eq!(
            base["machines"],
            serde_yaml::from_str::<Value>("{'1': {}}").unwrap()
        );
        assert_eq!(base["description"], Value::from("base"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// An application's base: its own `base` or `series`, else the bundle's `default-base`
    /// or `series`, overlay applications included (bundlechanges, after the overlays merge).
    #[test]
    fn applications_get_their_base_or_the_bundles_default() {
        let d = std::env::temp_dir().join(format!("lm-bundle-base-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.charm"), b"x").unwrap();
        std::fs::write(
            d.join("b.yaml"),
            "default-base: ubuntu@22.04\napplications:\n  a: {charm: ./a.charm}\n  b: {charm: ./a.charm, base: ubuntu@24.04}\n  c: {charm: ./a.charm, series: noble}\n",
        )
        .unwrap();
        std::fs::write(d.join("o.yaml"), "applications:\n  o: {charm: ./a.charm}\n").unwrap();
        std::fs::write(
            d.join("s.yaml"),
            "series: jammy\napplications:\n  a: {charm: ./a.charm}\n",
        )
        .unwrap();
        std::fs::write(d.join("n.yaml"), "applications:\n  a: {charm: ./a.charm}\n").unwrap();
        let p = load_bundle(&d.join("b.yaml"), &[d.join("o.yaml")]).unwrap();
        let bases: Vec<(&str, Option<&str>)> = p
            .apps
            .iter()
            .map(|a| (a.name.as_str(), a.base.as_deref()))
            .collect();
        assert_eq!(
            bases,
            vec![
                ("a", Some("ubuntu@22.04")),
                ("b", Some("ubuntu@24.04")),
                ("c", Some("noble")),
                ("o", Some("ubuntu@22.04"))
            ]
        );
        let s = load_bundle(&d.join("s.yaml"), &[]).unwrap();
        assert_eq!(s.apps[0].base.as_deref(), Some("jammy"));
        let n = load_bundle(&d.join("n.yaml"), &[]).unwrap();
        assert_eq!(n.apps[0].base, None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
