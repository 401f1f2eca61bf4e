//! What Juju requires of a charm before it deploys it (reference/juju-runtime.md §4), and what
//! charmcraft's linters let through (an `int` option with default `"abc"`).

use super::{max_glibc_version, read_archive, MAX_GLIBC};
use crate::spec::{CharmSpec, Role, OPTION_TYPES};
use std::fmt;
use std::path::Path;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Juju would refuse the charm, or it would misbehave.
    Error,
    /// Allowed, but not what a published charm should look like.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and where.
    pub message: String,
}

impl Finding {
    /// An error.
    pub fn error(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            message: message.into(),
        }
    }
    /// A warning.
    pub fn warning(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}", self.message)
    }
}

/// Juju's charm-name rule: lowercase words of letters and digits joined by single dashes,
/// starting with a letter, no word made only of digits after a dash.
fn valid_charm_name(n: &str) -> bool {
    let mut words = n.split('-');
    let first_ok = words.next().is_some_and(|w| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    first_ok
        && words.all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && w.chars().any(|c| c.is_ascii_lowercase())
        })
}

/// Juju's action-name rule: lowercase letters and inner dashes.
fn valid_action_name(n: &str) -> bool {
    !n.is_empty()
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.ends_with(|c: char| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

fn reserved(name: &str) -> bool {
    name == "juju" || name.starts_with("juju-")
}

/// Checks a charm's declarations.
pub fn check_spec(spec: &CharmSpec) -> Vec<Finding> {
    let mut f = Vec::new();
    let m = &spec.metadata;
    if !valid_charm_name(&m.name) {
        f.push(Finding::error(format!(
            "metadata.yaml: name {:?} is not a valid charm name",
            m.name
        )));
    }
    if m.summary.trim().is_empty() {
        f.push(Finding::error("metadata.yaml: summary is missing"));
    }
    if m.description.trim().is_empty() {
        f.push(Finding::error("metadata.yaml: description is missing"));
    }
    for key in ["series", "min-juju-version"] {
        if m.other.contains_key(key) {
            f.push(Finding::error(format!("metadata.yaml: {key:?} makes this a v1 charm, which Juju 3 refuses with manifest bases")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (role, map) in [
        (Role::Provides, &m.provides),
        (Role::Requires, &m.requires),
        (Role::Peers, &m.peers),
    ] {
        for (name, ep) in map {
            if !seen.insert(name.clone()) {
                f.push(Finding::error(format!(
                    "metadata.yaml: endpoint {name:?} is declared twice"
                )));
            }
            // Juju lets a subordinate's container-scoped requires use juju-* (e.g. juju-info).
            let exempt = m.subordinate && role == Role::Requires && ep.is_container();
            if reserved(name) && !exempt {
                f.push(Finding::error(format!(
                    "metadata.yaml: endpoint name {name:?} is reserved by Juju"
                )));
            }
            if ep.interface.trim().is_empty() {
                f.push(Finding::error(format!(
                    "metadata.yaml: endpoint {name:?} has no interface"
                )));
            }
            if let Some(s) = &ep.scope {
                if s != "global" && s != "container" {
                    f.push(Finding::error(format!("metadata.yaml: endpoint {name:?} has scope {s:?}; expected global or container")));
                }
            }
            if role == Role::Peers && ep.is_container() {
                f.push(Finding::error(format!(
                    "metadata.yaml: peer endpoint {name:?} cannot be container-scoped"
                )));
            }
        }
    }
    if m.subordinate && !m.requires.values().any(|e| e.is_container()) {
        f.push(Finding::error(format!("metadata.yaml: subordinate charm {:?} lacks a \"requires\" relation with container scope", m.name)));
    }
    for (name, r) in &m.resources {
        if r.kind != "file" && r.kind != "oci-image" {
            f.push(Finding::error(format!(
                "metadata.yaml: resource {name:?} has type {:?}; expected file or oci-image",
                r.kind
            )));
        }
    }
    for (name, o) in &spec.config.options {
        if !OPTION_TYPES.contains(&o.kind.as_str()) {
            f.push(Finding::error(format!(
                "config.yaml: option {name:?} has unknown type {:?}",
                o.kind
            )));
        } else if let Some(d) = &o.default {
            if !o.accepts(d) {
                f.push(Finding::error(format!(
                    "config.yaml: option {name:?} is of type {} but its default is {d}",
                    o.kind
                )));
            }
        }
        if o.description.trim().is_empty() {
            f.push(Finding::warning(format!(
                "config.yaml: option {name:?} has no description"
            )));
        }
    }
    for (name, a) in &spec.actions {
        if !valid_action_name(name) || reserved(name) {
            f.push(Finding::error(format!("actions.yaml: {name:?} is not a valid action name (lowercase letters and inner dashes, not juju-*)")));
        }
        if a.description.trim().is_empty() {
            f.push(Finding::warning(format!(
                "actions.yaml: action {name:?} has no description"
            )));
        }
        for (p, schema) in &a.params {
            match schema.get("type").and_then(|t| t.as_str()) {
                Some("string" | "integer" | "number" | "boolean" | "object" | "array") => {}
                Some(t) => f.push(Finding::error(format!(
                    "actions.yaml: {name}.{p} has unknown type {t:?}"
                ))),
                None if !schema.is_object() => f.push(Finding::error(format!(
                    "actions.yaml: {name}.{p} must be a JSON schema object"
                ))),
                None => {}
            }
        }
        for r in &a.required {
            if !a.params.contains_key(r) {
                f.push(Finding::error(format!(
                    "actions.yaml: {name} requires {r:?}, which is not a parameter"
                )));
            }
        }
    }
    f
}

/// Opens a `.charm` and checks it: declarations, manifest bases, `dispatch` present with mode
/// 0755 and runnable on Ubuntu 22.04, the files a published charm carries.
pub fn check_archive(path: &Path) -> Vec<Finding> {
    let files = match read_archive(path) {
        Ok(f) => f,
        Err(e) => return vec![Finding::error(e)],
    };
    let text = |n: &str| {
        files
            .get(n)
            .map(|(c, _)| String::from_utf8_lossy(c).into_owned())
    };
    let mut f = Vec::new();
    match text("metadata.yaml") {
        None => f.push(Finding::error("metadata.yaml is missing")),
        Some(meta) => match CharmSpec::parse(
            &meta,
            text("config.yaml").as_deref(),
            text("actions.yaml").as_deref(),
        ) {
            Ok(spec) => {
                f.extend(check_spec(&spec));
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !stem.starts_with(&spec.metadata.name) {
                    f.push(Finding::warning(format!(
                        "file name {stem:?} does not start with the charm name {:?}",
                        spec.metadata.name
                    )));
                }
            }
            Err(e) => f.push(Finding::error(e)),
        },
    }
    match text("manifest.yaml") {
        None => f.push(Finding::error(
            "manifest.yaml is missing: Juju 3 refuses a charm without bases",
        )),
        Some(m) => match serde_yaml::from_str::<serde_yaml::Value>(&m) {
            Ok(v) => {
                let bases = v
                    .get("bases")
                    .and_then(|b| b.as_sequence())
                    .cloned()
                    .unwrap_or_default();
                if bases.is_empty() {
                    f.push(Finding::error("manifest.yaml: no bases"));
                }
                for b in bases {
                    let name = b.get("name").and_then(|n| n.as_str()).unwrap_or("");
                    let channel = b.get("channel").and_then(|c| c.as_str()).unwrap_or("");
                    let archs = b
                        .get("architectures")
                        .and_then(|a| a.as_sequence())
                        .map(|a| a.len())
                        .unwrap_or(0);
                    if name != "ubuntu" || channel.is_empty() || archs == 0 {
                        f.push(Finding::error(format!("manifest.yaml: base {name:?} {channel:?} must be ubuntu with a channel and architectures")));
                    }
                }
            }
            Err(e) => f.push(Finding::error(format!("manifest.yaml: {e}"))),
        },
    }
    match files.get("dispatch") {
        None => f.push(Finding::error("dispatch is missing")),
        Some((content, mode)) => {
            if mode.map(|m| m & 0o777) != Some(0o755) {
                f.push(Finding::error(format!(
                    "dispatch has mode {:o}; Juju runs it only if it is 0755 in the zip",
                    mode.unwrap_or(0) & 0o777
                )));
            }
            match max_glibc_version(content) {
                Ok(Some(v)) if v > MAX_GLIBC => f.push(Finding::error(format!(
                    "dispatch needs GLIBC_{}.{}: too new for Ubuntu 22.04",
                    v.0, v.1
                ))),
                Ok(_) => {}
                Err(e) => f.push(Finding::error(format!("dispatch: {e}"))),
            }
        }
    }
    for name in ["README.md", "icon.svg", "LICENSE", "version"] {
        if !files.contains_key(name) {
            f.push(Finding::warning(format!("{name} is missing")));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(meta: &str, config: Option<&str>, actions: Option<&str>) -> Vec<String> {
        check_spec(&CharmSpec::parse(meta, config, actions).unwrap())
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.message)
            .collect()
    }

    const OK: &str = "name: good-charm\nsummary: s\ndescription: d\n";

    #[test]
    fn a_good_charm_has_no_errors() {
        assert!(spec(
            OK,
            Some("options:\n  port:\n    type: int\n    default: 1\n    description: p\n"),
            None
        )
        .is_empty());
    }

    #[test]
    fn names_summary_description() {
        assert!(
            spec("name: Bad_Name\nsummary: s\ndescription: d\n", None, None)[0]
                .contains("not a valid charm name")
        );
        assert!(spec("name: ok\ndescription: d\n", None, None)[0].contains("summary is missing"));
        assert!(spec("name: ok\nsummary: s\n", None, None)[0].contains("description is missing"));
        assert!(valid_charm_name("keepalived-vip"));
        assert!(valid_charm_name("maas2"));
        assert!(!valid_charm_name("maas-2"));
        assert!(!valid_charm_name("-x"));
    }

    #[test]
    fn reserved_endpoint_names() {
        let e = spec(
            &format!("{OK}provides:\n  juju-stuff:\n    interface: x\n"),
            None,
            None,
        );
        assert!(e[0].contains("reserved"), "{e:?}");
        let sub = "name: sub\nsummary: s\ndescription: d\nsubordinate: true\nrequires:\n  juju-info:\n    interface: juju-info\n    scope: container\n";
        assert!(
            spec(sub, None, None).is_empty(),
            "a subordinate's container requires may be juju-info"
        );
    }

    #[test]
    fn subordinate_needs_container_requires() {
        let e = spec("name: sub\nsummary: s\ndescription: d\nsubordinate: true\nrequires:\n  x:\n    interface: y\n", None, None);
        assert!(e[0].contains("lacks a \"requires\" relation with container scope"));
    }

    #[test]
    fn config_defaults_must_match_their_type() {
        let e = spec(
            OK,
            Some("options:\n  port:\n    type: int\n    default: abc\n    description: p\n"),
            None,
        );
        assert!(
            e[0].contains("is of type int but its default is \"abc\""),
            "{e:?}"
        );
        let e = spec(
            OK,
            Some("options:\n  x:\n    type: list\n    description: p\n"),
            None,
        );
        assert!(e[0].contains("unknown type"));
    }

    #[test]
    fn action_names_and_params() {
        assert!(spec(OK, None, Some("Bad_Action:\n  description: d\n"))[0]
            .contains("not a valid action name"));
        assert!(spec(OK, None, Some("juju-run:\n  description: d\n"))[0]
            .contains("not a valid action name"));
        assert!(spec(
            OK,
            None,
            Some("a:\n  description: d\n  params:\n    p:\n      type: text\n")
        )[0]
        .contains("unknown type"));
        assert!(
            spec(OK, None, Some("a:\n  description: d\n  required: [p]\n"))[0]
                .contains("not a parameter")
        );
    }
}
