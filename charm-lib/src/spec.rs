//! What a charm declares: `metadata.yaml`, `config.yaml`, `actions.yaml`.
//!
//! The testing layer checks its inputs against these, and the packer and charm checks
//! validate them the way Juju and charmcraft do.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One relation endpoint in `metadata.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Interface name, e.g. `pgsql`.
    pub interface: String,
    /// `global` (default) or `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Maximum number of relations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Whether the charm works without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl EndpointSpec {
    /// Whether the endpoint is container-scoped.
    pub fn is_container(&self) -> bool {
        self.scope.as_deref() == Some("container")
    }
}

/// A resource in `metadata.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// `file` or `oci-image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file name Juju stores it under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `metadata.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Charm name.
    pub name: String,
    /// Display name.
    #[serde(
        rename = "display-name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    /// One-line summary.
    #[serde(default)]
    pub summary: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Whether it is a subordinate.
    #[serde(default)]
    pub subordinate: bool,
    /// Endpoints it provides.
    #[serde(default)]
    pub provides: BTreeMap<String, EndpointSpec>,
    /// Endpoints it requires.
    #[serde(default)]
    pub requires: BTreeMap<String, EndpointSpec>,
    /// Peer endpoints.
    #[serde(default)]
    pub peers: BTreeMap<String, EndpointSpec>,
    /// Resources.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceSpec>,
    /// Extra network bindings.
    #[serde(rename = "extra-bindings", default)]
    pub extra_bindings: BTreeMap<String, serde_yaml::Value>,
    /// Everything else (assumes, docs, issues, website, ...).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// Where an endpoint is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `provides`
    Provides,
    /// `requires`
    Requires,
    /// `peers`
    Peers,
}

impl Metadata {
    /// Every endpoint with its role, including the implicit `juju-info` every charm provides.
    pub fn endpoints(&self) -> Vec<(Role, &str, EndpointSpec)> {
        let mut all: Vec<(Role, &str, EndpointSpec)> = Vec::new();
        for (role, map) in [
            (Role::Provides, &self.provides),
            (Role::Requires, &self.requires),
            (Role::Peers, &self.peers),
        ] {
            all.extend(map.iter().map(|(n, e)| (role, n.as_str(), e.clone())));
        }
        if !all.iter().any(|(_, n, _)| *n == "juju-info") {
            all.push((
                Role::Provides,
                "juju-info",
                EndpointSpec {
                    interface: "juju-info".into(),
                    scope: Some("container".into()),
                    limit: None,
                    optional: None,
                },
            ));
        }
        all
    }

    /// One endpoint by name.
    pub fn endpoint(&self, name: &str) -> Option<(Role, EndpointSpec)> {
        self.endpoints()
            .into_iter()
            .find(|(_, n, _)| *n == name)
            .map(|(r, _, e)| (r, e))
    }
}

/// One option in `config.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionSpec {
    /// `string`, `int`, `float`, `boolean` or `secret`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Default value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What it does.
    #[serde(default)]
    pub description: String,
}

/// The option types Juju knows.
pub const OPTION_TYPES: [&str; 5] = ["string", "int", "float", "boolean", "secret"];

impl OptionSpec {
    /// Whether `value` has this option's type (`null` always does: it means unset).
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (self.kind.as_str(), value) {
            (_, V::Null) => true,
            ("string", V::String(_)) => true,
            ("secret", V::String(s)) => s.starts_with("secret:"),
            ("int", V::Number(n)) => n.is_i64() || n.is_u64(),
            ("float", V::Number(_)) => true,
            ("boolean", V::Bool(_)) => true,
            _ => false,
        }
    }
}

/// `config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// The options.
    #[serde(default)]
    pub options: BTreeMap<String, OptionSpec>,
}

/// One action in `actions.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Parameters, each a JSON schema.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Required parameter names.
    #[serde(default)]
    pub required: Vec<String>,
    /// Whether parameters not declared are allowed (Juju 3 default: true).
    #[serde(
        rename = "additionalProperties",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub additional_properties: Option<bool>,
}

/// Everything a charm declares.
#[derive(Debug, Clone, PartialEq)]
pub struct CharmSpec {
    /// metadata.yaml
    pub metadata: Metadata,
    /// config.yaml (empty if absent)
    pub config: ConfigSpec,
    /// actions.yaml (empty if absent)
    pub actions: BTreeMap<String, ActionSpec>,
}

impl CharmSpec {
    /// Reads `metadata.yaml`, and `config.yaml` and `actions.yaml` when present, from `dir`.
    pub fn load(dir: &Path) -> Result<CharmSpec, String> {
        let read = |name: &str| -> Result<Option<String>, String> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", dir.join(name).display())),
            }
        };
        let meta =
            read("metadata.yaml")?.ok_or_else(|| format!("{}: no metadata.yaml", dir.display()))?;
        CharmSpec::parse(
            &meta,
            read("config.yaml")?.as_deref(),
            read("actions.yaml")?.as_deref(),
        )
    }

    /// Parses the three files' texts.
    pub fn parse(
        metadata: &str,
        config: Option<&str>,
        actions: Option<&str>,
    ) -> Result<CharmSpec, String> {
        let metadata: Metadata =
            serde_yaml::from_str(metadata).map_err(|e| format!("metadata.yaml: {e}"))?;
        let config = match config {
            Some(t) => serde_yaml::from_str::<Option<ConfigSpec>>(t)
                .map_err(|e| format!("config.yaml: {e}"))?
                .unwrap_or_default(),
            None => ConfigSpec::default(),
        };
        let actions = match actions {
            Some(t) => serde_yaml::from_str::<Option<BTreeMap<String, ActionSpec>>>(t)
                .map_err(|e| format!("actions.yaml: {e}"))?
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Ok(CharmSpec {
            metadata,
            config,
            actions,
        })
    }

    /// Config with every default filled in and `overrides` applied.
    pub fn effective_config(
        &self,
        overrides: &BTreeMap<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (k, o) in &self.config.options {
            if let Some(d) = &o.default {
                out.insert(k.clone(), d.clone());
            }
        }
        for (k, v) in overrides {
            if v.is_null() {
                out.remove(k);
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

/// Checks action parameters against an action's schema: required ones present, undeclared
/// ones refused when `additionalProperties: false`, JSON types as declared.
pub fn check_action_params(
    name: &str,
    spec: &ActionSpec,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    for r in &spec.required {
        if !params.contains_key(r) {
            return Err(format!("action {name}: missing required parameter {r:?}"));
        }
    }
    for (k, v) in params {
        match spec.params.get(k) {
            None if spec.additional_properties == Some(false) => {
                return Err(format!("action {name}: unknown parameter {k:?}"))
            }
            None => {}
            Some(schema) => {
                if let Some(t) = schema.get("type").and_then(|t| t.as_str()) {
                    let ok = match t {
                        "string" => v.is_string(),
                        "integer" => v.is_i64() || v.is_u64(),
                        "number" => v.is_number(),
                        "boolean" => v.is_boolean(),
                        "object" => v.is_object(),
                        "array" => v.is_array(),
                        _ => true,
                    };
                    if !ok {
                        return Err(format!(
                            "action {name}: parameter {k:?} must be of type {t}, got {v}"
                        ));
                    }
                }
                if let Some(allowed) = schema.get("enum").and_then(|e| e.as_array()) {
                    if !allowed.contains(v) {
                        return Err(format!(
                            "action {name}: parameter {k:?} must be one of {}",
                            serde_json::Value::Array(allowed.clone())
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "name: demo\nsummary: s\ndescription: d\nsubordinate: false\nprovides:\n  db:\n    interface: pgsql\nrequires:\n  vip:\n    interface: vip\n    scope: container\npeers:\n  cluster:\n    interface: demo-peers\nassumes:\n  - juju >= 3.1\n";
    const CONFIG: &str = "options:\n  port:\n    type: int\n    default: 5432\n    description: p\n  vip:\n    type: string\n    description: v\n";
    const ACTIONS: &str = "create-admin:\n  description: make one\n  params:\n    username:\n      type: string\n    role:\n      type: string\n      enum: [admin, user]\n  required: [username]\n  additionalProperties: false\n";

    #[test]
    fn parses_and_lists_endpoints() {
        let s = CharmSpec::parse(META, Some(CONFIG), Some(ACTIONS)).unwrap();
        assert_eq!(s.metadata.endpoint("db").unwrap().0, Role::Provides);
        assert!(s.metadata.endpoint("vip").unwrap().1.is_container());
        assert_eq!(s.metadata.endpoint("cluster").unwrap().0, Role::Peers);
        assert_eq!(s.metadata.endpoint("juju-info").unwrap().0, Role::Provides);
        assert!(s.metadata.other.contains_key("assumes"));
        let c = s.effective_config(
            &[("vip".to_string(), serde_json::json!("10.0.0.1/24"))]
                .into_iter()
                .collect(),
        );
        assert_eq!(c["port"], 5432);
        assert_eq!(c["vip"], "10.0.0.1/24");
    }

    #[test]
    fn option_types() {
        let o = |k: &str| OptionSpec {
            kind: k.into(),
            default: None,
            description: String::new(),
        };
        assert!(o("int").accepts(&serde_json::json!(3)));
        assert!(!o("int").accepts(&serde_json::json!(3.5)));
        assert!(!o("int").accepts(&serde_json::json!("abc")));
        assert!(o("float").accepts(&serde_json::json!(3)));
        assert!(o("boolean").accepts(&serde_json::json!(false)));
        assert!(!o("boolean").accepts(&serde_json::json!("false")));
        assert!(o("secret").accepts(&serde_json::json!("secret:abc")));
        assert!(!o("secret").accepts(&serde_json::json!("abc")));
        assert!(o("string").accepts(&serde_json::Value::Null));
    }

    #[test]
    fn action_params() {
        let s = CharmSpec::parse(META, None, Some(ACTIONS)).unwrap();
        let a = &s.actions["create-admin"];
        let p = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert!(
            check_action_params("create-admin", a, &p(serde_json::json!({"username": "x"})))
                .is_ok()
        );
        assert!(
            check_action_params("create-admin", a, &p(serde_json::json!({})))
                .unwrap_err()
                .contains("missing required parameter \"username\"")
        );
        assert!(
            check_action_params("create-admin", a, &p(serde_json::json!({"username": 1})))
                .unwrap_err()
                .contains("must be of type string")
        );
        assert!(check_action_params(
            "create-admin",
            a,
            &p(serde_json::json!({"username": "x", "x": 1}))
        )
        .unwrap_err()
        .contains("unknown parameter"));
        assert!(check_action_params(
            "create-admin",
            a,
            &p(serde_json::json!({"username": "x", "role": "root"}))
        )
        .unwrap_err()
        .contains("must be one of"));
    }

    #[test]
    fn broken_yaml_names_the_file() {
        assert!(CharmSpec::parse("name: [", None, None)
            .unwrap_err()
            .starts_with("metadata.yaml"));
        assert!(CharmSpec::parse(META, Some("options: 3"), None)
            .unwrap_err()
            .starts_with("config.yaml"));
    }
}
