//! Reading a packed `.charm` (a zip): its metadata, config options and actions, and
//! unpacking it the way Juju does (unix modes kept, escaping paths refused).

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

/// Role of an endpoint in a relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Provider,
    Requirer,
    Peer,
}

/// One endpoint declared by a charm (`provides`/`requires`/`peers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub name: String,
    pub interface: String,
    pub role: Role,
    /// `true` for `scope: container`.
    pub container: bool,
}

/// One option of config.yaml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigOption {
    /// string | int | float | boolean | secret
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

fn default_type() -> String {
    "string".into()
}

/// What the runtime needs to know about a charm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CharmMeta {
    pub name: String,
    pub subordinate: bool,
    pub endpoints: Vec<EndpointSpec>,
    pub extra_bindings: Vec<String>,
    pub options: BTreeMap<String, ConfigOption>,
    /// action name -> default params (from the JSON schema `params.<p>.default`).
    pub actions: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// declared resource names
    pub resources: Vec<String>,
    /// The bases manifest.yaml declares, as Juju displays them (`ubuntu@22.04`), in order
    /// (core/charm ComputedBases: the manifest's name and channel).
    #[serde(default)]
    pub bases: Vec<String>,
}

impl CharmMeta {
    /// The endpoint called `name`, including the implicit `juju-info` every charm provides.
    pub fn endpoint(&self, name: &str) -> Option<EndpointSpec> {
        if let Some(e) = self.endpoints.iter().find(|e| e.name == name) {
            return Some(e.clone());
        }
        (name == "juju-info").then(|| EndpointSpec {
            name: "juju-info".into(),
            interface: "juju-info".into(),
            role: Role::Provider,
            container: false,
        })
    }

    /// Every endpoint, including the implicit `juju-info` provider.
    pub fn all_endpoints(&self) -> Vec<EndpointSpec> {
        let mut v = self.endpoints.clone();
        if !v.iter().any(|e| e.name == "juju-info") {
            v.push(self.endpoint("juju-info").unwrap());
        }
        v
    }

    /// The peer endpoints.
    pub fn peers(&self) -> impl Iterator<Item = &EndpointSpec> {
        self.endpoints.iter().filter(|e| e.role == Role::Peer)
    }
}

#[derive(Deserialize)]
struct RawEndpoint {
    interface: String,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawMeta {
    name: String,
    #[serde(default)]
    subordinate: bool,
    #[serde(default)]
    provides: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    requires: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    peers: BTreeMap<String, RawEndpoint>,
    #[serde(default, rename = "extra-bindings")]
    extra_bindings: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    resources: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    options: BTreeMap<String, ConfigOption>,
}

/// Parse metadata.yaml, config.yaml and actions.yaml texts into a [`CharmMeta`], with the
/// checks Juju makes before deploying (subordinates need a container-scoped `requires`).
pub fn parse_meta(
    metadata: &str,
    config: Option<&str>,
    actions: Option<&str>,
) -> Result<CharmMeta> {
    let raw: RawMeta = serde_yaml::from_str(metadata).context("invalid metadata.yaml")?;
    let mut endpoints = Vec::new();
    for (role, map) in [
        (Role::Provider, &raw.provides),
        (Role::Requirer, &raw.requires),
        (Role::Peer, &raw.peers),
    ] {
        for (name, e) in map {
            if name == "juju" || name.starts_with("juju-") && name != "juju-info" {
                bail!(
                    "charm {:?} using a reserved relation name: {:?}",
                    raw.name,
                    name
                );
            }
            endpoints.push(EndpointSpec {
                name: name.clone(),
                interface: e.interface.clone(),
                role,
                container: e.scope.as_deref() == Some("container"),
            });
        }
    }
    if raw.subordinate
        && !endpoints
            .iter()
            .any(|e| e.role == Role::Requirer && e.container)
    {
        bail!(
            "subordinate charm {:?} lacks \"requires\" relation with container scope",
            raw.name
        );
    }
    let options = match config {
        Some(c) if !c.trim().is_empty() => {
            serde_yaml::from_str::<RawConfig>(c)
                .context("invalid config.yaml")?
                .options
        }
        _ => BTreeMap::new(),
    };
    for (name, o) in &options {
        if !["string", "int", "float", "boolean", "secret"].contains(&o.kind.as_str()) {
            bail!("option {name:?} has unknown type {:?}", o.kind);
        }
        if let Some(d) = &o.default {
            coerce_option(o, d).with_context(|| format!("default of option {name:?}"))?;
        }
    }
    let mut acts = BTreeMap::new();
    if let Some(a) = actions.filter(|a| !a.trim().is_empty()) {
        let v: serde_json::Value = serde_yaml::from_str(a).context("invalid actions.yaml")?;
        for (name, spec) in v.as_object().cloned().unwrap_or_default() {
            let mut defaults = serde_json::Map::new();
            if let Some(params) = spec.get("params").and_then(|p| p.as_object()) {
                for (p, ps) in params {
                    if let Some(d) = ps.get("default") {
                        defaults.insert(p.clone(), d.clone());
                    }
                }
            }
            acts.insert(name, defaults);
        }
    }
    Ok(CharmMeta {
        name: raw.name,
        subordinate: raw.subordinate,
        endpoints,
        extra_bindings: raw.extra_bindings.keys().cloned().collect(),
        options,
        actions: acts,
        resources: raw.resources.keys().cloned().collect(),
        bases: vec![],
    })
}

/// Check/convert a config value to the option's declared type. Strings given on a command
/// line (`k=v`) are converted; JSON values of the right type pass through.
pub fn coerce_option(opt: &ConfigOption, v: &serde_json::Value) -> Result<serde_json::Value> {
    use serde_json::Value as V;
    let s = v.as_str();
    Ok(match (opt.kind.as_str(), v) {
        ("string" | "secret", V::String(_)) => v.clone(),
        ("string" | "secret", V::Number(n)) => V::String(n.to_string()),
        ("string" | "secret", V::Bool(b)) => V::String(b.to_string()),
        ("int", V::Number(n)) if n.is_i64() => v.clone(),
        ("int", _) if s.is_some() => V::from(
            s.unwrap()
                .trim()
                .parse::<i64>()
                .map_err(|_| anyhow!("expected int, got {:?}", s.unwrap()))?,
        ),
        ("float", V::Number(_)) => V::from(v.as_f64().unwrap()),
        ("float", _) if s.is_some() => V::from(
            s.unwrap()
                .trim()
                .parse::<f64>()
                .map_err(|_| anyhow!("expected float, got {:?}", s.unwrap()))?,
        ),
        ("boolean", V::Bool(_)) => v.clone(),
        ("boolean", _) if s.is_some() => match s.unwrap().trim() {
            "true" | "True" | "yes" | "on" => V::Bool(true),
            "false" | "False" | "no" | "off" => V::Bool(false),
            o => bail!("expected boolean, got {o:?}"),
        },
        (t, v) => bail!("expected {t}, got {v}"),
    })
}

fn read_entry(zip: &mut zip::ZipArchive<fs::File>, name: &str) -> Result<Option<String>> {
    let mut f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {name}")),
    };
    let mut s = String::new();
    f.read_to_string(&mut s)
        .with_context(|| format!("reading {name}"))?;
    Ok(Some(s))
}

/// Read the metadata of a packed charm.
pub fn read_charm(path: &Path) -> Result<CharmMeta> {
    let file = fs::File::open(path).with_context(|| format!("opening charm {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", path.display()))?;
    let meta = read_entry(&mut zip, "metadata.yaml")?
        .ok_or_else(|| anyhow!("{}: metadata.yaml missing", path.display()))?;
    let manifest = read_entry(&mut zip, "manifest.yaml")?;
    if manifest.as_deref().is_none_or(|m| !m.contains("bases")) {
        bail!(
            "{}: charm metadata without bases in manifest not valid",
            path.display()
        );
    }
    let config = read_entry(&mut zip, "config.yaml")?;
    let actions = read_entry(&mut zip, "actions.yaml")?;
    let mut m = parse_meta(&meta, config.as_deref(), actions.as_deref())
        .with_context(|| format!("charm {}", path.display()))?;
    m.bases = manifest_bases(manifest.as_deref().unwrap_or_default())
        .with_context(|| format!("charm {}: manifest.yaml", path.display()))?;
    Ok(m)
}

/// The bases of a manifest.yaml, `<name>@<channel>` in the manifest's order, each once.
pub fn manifest_bases(manifest: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Base {
        name: String,
        channel: String,
    }
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        bases: Vec<Base>,
    }
    let m: Manifest = serde_yaml::from_str(manifest)?;
    let mut out: Vec<String> = Vec::new();
    for b in m.bases {
        // a channel's risk (22.04/stable) is not displayed (core/base Channel.DisplayString)
        let track = b.channel.split('/').next().unwrap_or_default();
        let base = format!("{}@{track}", b.name);
        if !out.contains(&base) {
            out.push(base);
        }
    }
    if out.is_empty() {
        bail!("no bases");
    }
    Ok(out)
}

/// A base as a bundle or `--base` gives it (`ubuntu@22.04`, `ubuntu@22.04/stable`) or an
/// Ubuntu series name (`jammy`), as Juju displays it (`ubuntu@22.04`): core/base
/// ParseBaseFromString and GetBaseFromSeries (the Ubuntu series Juju 3 knows).
pub fn parse_base(s: &str) -> Result<String> {
    if let Some((os, ch)) = s.split_once('@') {
        let track = ch.split('/').next().unwrap_or_default();
        if os.is_empty() || track.is_empty() {
            bail!("base {s:?} not valid");
        }
        return Ok(format!("{os}@{track}"));
    }
    let v = match s {
        "bionic" => "18.04",
        "focal" => "20.04",
        "jammy" => "22.04",
        "noble" => "24.04",
        _ => bail!("series {s:?} not valid"),
    };
    Ok(format!("ubuntu@{v}"))
}

/// The base an application of this charm is deployed on: the requested one (`--base`, or a
/// bundle's application base/series or default-base/series), which the charm's manifest must
/// declare (core/charm charmpath.go charmBase: NewUnsupportedBaseError), else the latest
/// Ubuntu LTS if the charm declares it, else its first base (core/charm baseselector.go
/// BaseSelector.CharmBase).
pub fn select_base(meta: &CharmMeta, requested: Option<&str>) -> Result<String> {
    const LATEST_LTS: &str = "ubuntu@24.04";
    match requested {
        Some(r) => {
            let b = parse_base(r)?;
            if meta.bases.contains(&b) {
                Ok(b)
            } else {
                bail!(
                    "base {b:?} not supported by charm, the charm supported bases are: {}",
                    meta.bases.join(", ")
                )
            }
        }
        None if meta.bases.iter().any(|b| b == LATEST_LTS) => Ok(LATEST_LTS.into()),
        None => meta
            .bases
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("base not specified and charm does not define any")),
    }
}

/// Unpack a charm into `dest`, keeping unix modes (dispatch must stay executable) and
/// refusing entries that would escape `dest`.
pub fn unpack(path: &Path, dest: &Path) -> Result<()> {
    let file = fs::File::open(path).with_context(|| format!("opening charm {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", path.display()))?;
    fs::create_dir_all(dest)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| anyhow!("charm entry {:?} escapes the charm dir", entry.name()))?;
        let out = dest.join(rel);
        let mode = entry.unix_mode();
        let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if entry.is_dir() {
            fs::create_dir_all(&out)?;
            continue;
        }
        if let Some(p) = out.parent() {
            fs::create_dir_all(p)?;
        }
        if is_link {
            let mut target = String::new();
            entry.read_to_string(&mut target)?;
            if target.starts_with('/')
                || Path::new(&target)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                    && !out.parent().unwrap().join(&target).starts_with(dest)
            {
                bail!(
                    "charm symlink {:?} -> {target:?} escapes the charm dir",
                    entry.name()
                );
            }
            let _ = fs::remove_file(&out);
            std::os::unix::fs::symlink(&target, &out)?;
            continue;
        }
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf)?;
        // A file already there is removed and a new one created, as Juju's charm deployer
        // expands an upgrade (juju/utils zip/zip.go extractor.writeFile: os.RemoveAll, then
        // O_CREATE|O_EXCL; internal/charm CharmArchive.ExpandTo from worker/uniter/charm
        // manifest_deployer.go Deploy): a process running the old binary (a charm's own
        // service) keeps its inode, and writing in place would fail with ETXTBSY.
        match fs::symlink_metadata(&out) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&out)?,
            Ok(_) => fs::remove_file(&out)?,
            Err(_) => {}
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &buf))
            .with_context(|| format!("writing {}", out.display()))?;
        if let Some(m) = mode {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&out, fs::Permissions::from_mode(m & 0o7777))?;
        }
    }
    Ok(())
}

/// Pack a charm directory into a `.charm` zip, keeping each file's unix mode (what
/// `charmcraft pack` produces, for test charms that have no charmcraft project).
pub fn pack_dir(src: &Path, out: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let mut stack = vec![src.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let rel = p.strip_prefix(src).unwrap().to_string_lossy().to_string();
        let mode = fs::metadata(&p)?.permissions().mode() & 0o7777;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(rel, opts)?;
        zip.write_all(&fs::read(&p)?)?;
    }
    zip.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upgrade replaces each file with a new one (Juju's extractor.writeFile), so a process
    /// still running the old binary keeps it: a hard link to the old file keeps the old
    /// content, and a running executable does not make the upgrade fail.
    #[test]
    fn unpacking_over_a_charm_replaces_files_instead_of_rewriting_them() {
        let tmp = std::env::temp_dir().join(format!("lm-unpack-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let (src, dest) = (tmp.join("src"), tmp.join("dest"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&dest).unwrap();
        fs::write(src.join("dispatch"), "new").unwrap();
        let charm = tmp.join("c.charm");
        pack_dir(&src, &charm).unwrap();
        fs::write(dest.join("dispatch"), "old").unwrap();
        fs::hard_link(dest.join("dispatch"), tmp.join("running")).unwrap();
        unpack(&charm, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("dispatch")).unwrap(), "new");
        assert_eq!(fs::read_to_string(tmp.join("running")).unwrap(), "old");
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn parses_endpoints_config_and_actions() {
        let m = parse_meta(
            "name: t\nprovides: {web: {interface: http}}\nrequires: {db: {interface: pgsql}}\npeers: {cluster: {interface: c}}\n",
            Some("options:\n  port: {type: int, default: 80}\n  name: {type: string}\n"),
            Some("hello:\n  params:\n    who: {type: string, default: world}\n"),
        )
        .unwrap();
        assert_eq!(m.endpoints.len(), 3);
        assert_eq!(m.peers().count(), 1);
        assert_eq!(m.options["port"].default, Some(serde_json::json!(80)));
        assert_eq!(m.actions["hello"]["who"], "world");
        assert!(m.endpoint("juju-info").is_some());
    }

    #[test]
    fn subordinate_needs_container_requires() {
        let e = parse_meta(
            "name: s\nsubordinate: true\nrequires: {x: {interface: i}}\n",
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks"), "{e}");
    }

    #[test]
    fn bad_default_type_is_rejected() {
        assert!(parse_meta(
            "name: t\n",
            Some("options: {p: {type: int, default: abc}}"),
            None
        )
        .is_err());
    }

    /// Juju's base choice for a local charm (core/charm charmpath.go charmBase,
    /// baseselector.go CharmBase): a requested base must be one of the manifest's; without
    /// one, the latest LTS if declared, else the manifest's first.
    #[test]
    fn a_base_is_chosen_from_the_manifest_as_juju_does() {
        let manifest = "bases:\n- name: ubuntu\n  channel: '22.04'\n  architectures: [amd64]\n- name: ubuntu\n  channel: 24.04/stable\n  architectures: [amd64, arm64]\n";
        let both = CharmMeta {
            bases: manifest_bases(manifest).unwrap(),
            ..CharmMeta::default()
        };
        assert_eq!(both.bases, vec!["ubuntu@22.04", "ubuntu@24.04"]);
        assert_eq!(select_base(&both, None).unwrap(), "ubuntu@24.04");
        assert_eq!(select_base(&both, Some("jammy")).unwrap(), "ubuntu@22.04");
        assert_eq!(
            select_base(&both, Some("ubuntu@22.04/stable")).unwrap(),
            "ubuntu@22.04"
        );
        let noble = CharmMeta {
            bases: vec!["ubuntu@24.04".into()],
            ..CharmMeta::default()
        };
        assert_eq!(
            select_base(&noble, Some("ubuntu@22.04"))
                .unwrap_err()
                .to_string(),
            "base \"ubuntu@22.04\" not supported by charm, the charm supported bases are: ubuntu@24.04"
        );
        let jammy = CharmMeta {
            bases: vec!["ubuntu@22.04".into(), "ubuntu@20.04".into()],
            ..CharmMeta::default()
        };
        assert_eq!(select_base(&jammy, None).unwrap(), "ubuntu@22.04");
        assert!(select_base(&jammy, Some("trusty")).is_err());
        assert!(manifest_bases("bases: []\n").is_err());
    }
}
