//! The `database` relation in data_interfaces protocol v1, what a requirer built on PyPI's
//! `dpcharmlibs-interfaces` (`ResourceRequirerEventHandler`) speaks: its requests as a JSON
//! list, the answers as a JSON list, every credential in a Juju secret. Pure functions over
//! databags; the wire format is written down in charms/INTERFACES.md.
//!
//! Sources (dpcharmlibs-interfaces 1.2.2; canonical/data-platform-libs'
//! `lib/charms/data_platform_libs/v1/data_interfaces.py`, LIBPATCH 3, has the same functions):
//! - the requirer writes `version: v1` and `requests` in its app databag in
//!   `ResourceRequirerEventHandler._on_relation_created_event` (handlers.py), each request a
//!   `RequirerCommonModel` (models.py) dumped by `write_model` (repository_interfaces.py);
//! - the provider tells the protocols apart by that key alone, `version` absent meaning v0
//!   (`ResourceProviderEventHandler._on_relation_changed_event`, `set_response`: `version =
//!   repository.get_field('version') or 'v0'`);
//! - the requirer reads the provider's app databag as `DataContractV1[ResourceProviderModel]`
//!   (`version` must be the literal `v1`), and matches each answer by `request-id` to the
//!   request the provider stored in its `data` key (`_on_relation_changed_event`: "No request
//!   matching the response" otherwise), which the provider library writes in `compute_diff` →
//!   `store_new_data` (diff.py) as `{request-id: request}`;
//! - `resource_created` fires when an answer's `secret-user` first appears (`_handle_event`);
//!   `username`, `password`, `uris`, `read-only-uris` come from that secret (group `user`),
//!   `tls` and `tls-ca` from `secret-tls` (group `tls`; `tls` is read with `json.loads`, so it is
//!   `true`, not v0's `True`): types.py's `UserSecretStr`, `TlsSecretBool`, `TlsSecretStr`.

use crate::clients::{self, Request, Topology};
use crate::paths;
use charm_lib::Databag;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The databag key that carries the protocol, and v1's value.
pub const VERSION_KEY: &str = "version";
/// v1's `version`.
pub const V1: &str = "v1";

/// Whether a requirer's app databag speaks v1: `version` is `v1`; absent, empty or `v0` is v0,
/// as the library reads it. Any other value is neither: refused, naming the key.
pub fn speaks_v1(app: &Databag) -> Result<bool, String> {
    match app.get(VERSION_KEY).map(|v| v.trim()) {
        None | Some("") | Some("v0") => Ok(false),
        Some(V1) => Ok(true),
        Some(other) => Err(format!(
            "the requirer's {VERSION_KEY} {other:?} is not a data_interfaces protocol this charm serves (v0 or v1)"
        )),
    }
}

/// One v1 request: what identifies it on the wire, and what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct V1Request {
    /// `request-id`: the requirer's `gen_hash(resource, salt)`; answers carry it back.
    pub request_id: String,
    /// `salt`, echoed in the answer as the provider library does.
    pub salt: Option<String>,
    /// `resource`: the database.
    pub resource: String,
    /// The request as the requirer sent it, its null members left out (the provider library
    /// stores `model_dump(exclude_none=True)`): what goes back under `data`.
    pub echo: Map<String, Value>,
}

/// Keys of a request asking for something this charm does not do; each refuses the relation
/// with a message naming it rather than serving it half.
const UNSUPPORTED: [(&str, &str); 5] = [
    (
        "entity-type",
        "entity requests (a bare USER or GROUP) are not supported: ask for a database (resource)",
    ),
    (
        "entity-permissions",
        "entity permissions are not supported: extra-user-roles grants roles",
    ),
    (
        "mtls-cert",
        "client certificate authentication is not supported",
    ),
    (
        "secret-mtls",
        "client certificate authentication is not supported",
    ),
    (
        "prefix-matching",
        "database prefix requests are not supported: ask for one database name",
    ),
];

fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// The requests of a v1 requirer's app databag. This charm serves one database per relation
/// (one role, one grant): a list of more is refused, naming them. `Ok(None)` until the
/// requirer has written its list.
pub fn requests(app: &Databag) -> Result<Option<V1Request>, String> {
    let Some(raw) = app.get("requests").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let list: Vec<Value> = serde_json::from_str(raw)
        .map_err(|e| format!("requests is not a JSON list of requests: {e}"))?;
    let mut objs = Vec::new();
    for item in list {
        match item {
            Value::Object(o) => objs.push(o),
            other => return Err(format!("requests holds {other}, not a request object")),
        }
    }
    let Some(o) = objs.first() else {
        return Ok(None);
    };
    if objs.len() > 1 {
        let names: Vec<String> = objs
            .iter()
            .map(|o| text(o, "resource").unwrap_or_else(|| "?".into()))
            .collect();
        return Err(format!(
            "requests asks for {} databases ({}): this charm serves one per relation; relate once per database",
            objs.len(),
            names.join(", ")
        ));
    }
    for (k, why) in UNSUPPORTED {
        if o.get(k).is_some_and(|v| !v.is_null()) {
            return Err(format!("requests: {k}: {why}"));
        }
    }
    let Some(request_id) = text(o, "request-id") else {
        return Err(
            "requests: the request has no request-id (the library's requirer always sends one)"
                .into(),
        );
    };
    // The library's RequirerCommonModel reads the resource under its own name or any alias
    // (utils.py RESOURCE_ALIASES); a database client uses `resource` or `database`.
    let Some(resource) = text(o, "resource").or_else(|| text(o, "database")) else {
        return Ok(None);
    };
    let echo = o
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(V1Request {
        request_id,
        salt: text(o, "salt"),
        resource,
        echo,
    }))
}

/// The `database` request of a v1 requirer, as the v0 path has it: credentials always in a
/// secret, TLS settings too (v1 has no other place for them). `Ok(None)` until it asks.
pub fn database_request(
    app: &Databag,
    remote_units: &BTreeMap<String, Databag>,
) -> Result<Option<(Request, V1Request)>, String> {
    let Some(v1) = requests(app)? else {
        return Ok(None);
    };
    let extra = v1
        .echo
        .get("extra-user-roles")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut req = clients::database_request(
        &Databag::from([("database".to_string(), v1.resource.clone())]),
        remote_units,
    )?
    .expect("the database is set");
    req.roles = clients::role_list(extra);
    req.wants_secret = true;
    req.wants_tls_secret = true;
    Ok(Some((req, v1)))
}

/// The content of a v1 relation's `secret-tls` secret: `tls` as JSON (the library's
/// `TlsSecretBool` is read with `json.loads`), and the CA when there is one.
pub fn tls_secret_content(topo: &Topology) -> BTreeMap<String, String> {
    let mut c = BTreeMap::from([("tls".to_string(), "true".to_string())]);
    if !topo.ca.is_empty() {
        c.insert("tls-ca".into(), topo.ca.clone());
    }
    c
}

/// The label of relation `id`'s v1 `secret-tls` secret (its content differs from v0's).
pub fn tls_secret_label(id: u32) -> String {
    format!("client-{id}-tls-v1")
}

/// The provider's app databag for a v1 relation (`None` values: leave as is). Every v0 key is
/// deleted (v0's `version`, the server version, would make the requirer's `version: v1` check
/// fail). The answer goes out only once the writable address is known: the requirer's
/// `resource_created` fires once, on `secret-user`, and must find the endpoints with it.
pub fn database_data(
    v1: &V1Request,
    user_secret: &str,
    tls_secret: &str,
    topo: &Topology,
) -> BTreeMap<String, Option<String>> {
    let mut d: BTreeMap<String, Option<String>> = clients::DATABASE_KEYS
        .iter()
        .map(|k| (k.to_string(), Some(String::new())))
        .collect();
    d.insert(VERSION_KEY.into(), Some(V1.into()));
    let Some(host) = &topo.host else {
        d.insert("requests".into(), None);
        d.insert("data".into(), None);
        return d;
    };
    let ro: Vec<String> = if topo.standbys.is_empty() {
        vec![host.clone()]
    } else {
        topo.standbys.clone()
    };
    let version = if topo.full_version.is_empty() {
        topo.version.to_string()
    } else {
        topo.full_version.clone()
    };
    let mut answer = Map::new();
    answer.insert("resource".into(), v1.resource.clone().into());
    answer.insert("request-id".into(), v1.request_id.clone().into());
    if let Some(s) = &v1.salt {
        answer.insert("salt".into(), s.clone().into());
    }
    answer.insert(
        "endpoints".into(),
        format!("{host}:{}", paths::PG_PORT).into(),
    );
    answer.insert(
        "read-only-endpoints".into(),
        ro.iter()
            .map(|h| format!("{h}:{}", paths::PG_PORT))
            .collect::<Vec<_>>()
            .join(",")
            .into(),
    );
    answer.insert("secret-user".into(), user_secret.into());
    answer.insert("secret-tls".into(), tls_secret.into());
    answer.insert("version".into(), version.into());
    d.insert(
        "requests".into(),
        Some(Value::Array(vec![Value::Object(answer)]).to_string()),
    );
    let mut data = Map::new();
    data.insert(v1.request_id.clone(), Value::Object(v1.echo.clone()));
    d.insert("data".into(), Some(Value::Object(data).to_string()));
    d
}

/// The secret id this relation's answer already carries under `key` (`secret-user`,
/// `secret-tls`), so that a secret published in one form is not re-published in the other.
pub fn published_secret(mine: &Databag, key: &str) -> Option<String> {
    let list: Vec<Value> = serde_json::from_str(mine.get("requests")?).ok()?;
    list.first()?.get(key)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use charm_lib::testing::bag;

    /// What `ResourceRequirerEventHandler` (dpcharmlibs-interfaces 1.2.2, ops 3.9.0) wrote in
    /// its app databag for `RequirerCommonModel(resource="appdb", extra_user_roles="createdb")`,
    /// captured from the library under ops' Harness.
    const LIBRARY_REQUESTS: &str = r#"[{"resource": "appdb", "request-id": "11f13cb8ceabb910", "salt": "yV6C3bWatawPJN5D", "extra-user-roles": "createdb", "extra-group-roles": null, "external-node-connectivity": false, "entity-type": null, "entity-permissions": null, "secret-mtls": null, "mtls-cert": null, "secret-requested-entity": null, "entity-name": null, "password": null, "prefix-matching": null, "entity-password": null}]"#;

    fn library_app() -> Databag {
        bag(&[("version", "v1"), ("requests", LIBRARY_REQUESTS)])
    }

    fn units() -> BTreeMap<String, Databag> {
        BTreeMap::from([(
            "app/0".to_string(),
            bag(&[
                ("ingress-address", "10.9.0.5"),
                ("egress-subnets", "10.9.0.5/32"),
            ]),
        )])
    }

    fn topo(host: Option<&str>, standbys: &[&str]) -> Topology {
        Topology {
            host: host.map(str::to_string),
            standbys: standbys.iter().map(|s| s.to_string()).collect(),
            state: "master".into(),
            version: 16,
            full_version: "16.4".into(),
            ca: "CA PEM".into(),
        }
    }

    #[test]
    fn the_protocol_is_the_version_key_absent_meaning_v0() {
        // Arrange
        let cases = [
            (bag(&[]), Ok(false)),
            (bag(&[("database", "x")]), Ok(false)),
            (bag(&[("version", "v0")]), Ok(false)),
            (library_app(), Ok(true)),
        ];
        for (app, want) in cases {
            // Act
            let got = speaks_v1(&app);
            // Assert
            assert_eq!(got, want, "{app:?}");
        }
        // Act
        let err = speaks_v1(&bag(&[("version", "v2")])).unwrap_err();
        // Assert
        assert!(err.contains("version") && err.contains("\"v2\""), "{err}");
    }

    #[test]
    fn the_library_requirers_request_is_read_with_its_roles_and_secrets_wanted() {
        // Arrange
        let app = library_app();
        // Act
        let (req, v1) = database_request(&app, &units()).unwrap().unwrap();
        // Assert
        assert_eq!(req.database, "appdb");
        assert_eq!(req.roles, vec!["createdb".to_string()]);
        assert!(req.wants_secret && req.wants_tls_secret);
        assert_eq!(req.units[0].subnets, vec!["10.9.0.5/32".to_string()]);
        assert_eq!(v1.request_id, "11f13cb8ceabb910");
        assert_eq!(v1.salt.as_deref(), Some("yV6C3bWatawPJN5D"));
        assert!(
            v1.echo.values().all(|v| !v.is_null()),
            "nulls are left out of the echo: {:?}",
            v1.echo
        );
        assert_eq!(v1.echo["external-node-connectivity"], Value::Bool(false));
    }

    #[test]
    fn requests_this_charm_cannot_serve_are_refused_naming_the_key() {
        // Arrange
        let two = r#"[{"resource":"a","request-id":"1"},{"resource":"b","request-id":"2"}]"#;
        let cases = [
            (two, "a, b"),
            (
                r#"[{"resource":"a","request-id":"1","entity-type":"USER"}]"#,
                "entity-type",
            ),
            (
                r#"[{"resource":"a","request-id":"1","mtls-cert":"PEM"}]"#,
                "mtls-cert",
            ),
            (r#"[{"resource":"a*","request-id":"1"}]"#, "prefix"),
            (r#"[{"resource":"postgres","request-id":"1"}]"#, "reserved"),
            (r#"[{"resource":"a"}]"#, "request-id"),
            (r#"{"resource":"a"}"#, "requests is not a JSON list"),
        ];
        for (raw, needle) in cases {
            let app = bag(&[("version", "v1"), ("requests", raw)]);
            // Act
            let err = database_request(&app, &units()).unwrap_err();
            // Assert
            assert!(err.contains(needle), "{raw}: {err}");
        }
    }

    #[test]
    fn nothing_is_asked_until_the_list_names_a_database() {
        // Arrange
        let cases = [
            bag(&[("version", "v1")]),
            bag(&[("version", "v1"), ("requests", "[]")]),
            bag(&[
                ("version", "v1"),
                ("requests", r#"[{"request-id":"1","resource":""}]"#),
            ]),
        ];
        for app in cases {
            // Act
            let got = database_request(&app, &units()).unwrap();
            // Assert
            assert!(got.is_none(), "{app:?}");
        }
    }

    #[test]
    fn the_answer_carries_the_request_id_endpoints_and_secrets_and_no_credentials() {
        // Arrange
        let (_, v1) = database_request(&library_app(), &units()).unwrap().unwrap();
        // Act
        let d = database_data(
            &v1,
            "secret:user1",
            "secret:tls1",
            &topo(Some("10.0.0.9"), &["10.0.0.10", "10.0.0.11"]),
        );
        // Assert
        assert_eq!(d["version"].as_deref(), Some("v1"));
        for k in [
            "database",
            "username",
            "password",
            "tls",
            "tls-ca",
            "secret-user",
            "endpoints",
        ] {
            assert_eq!(d[k].as_deref(), Some(""), "v0's {k} is deleted");
        }
        let answers: Vec<Value> = serde_json::from_str(d["requests"].as_ref().unwrap()).unwrap();
        assert_eq!(answers.len(), 1);
        let a = &answers[0];
        assert_eq!(a["request-id"], "11f13cb8ceabb910");
        assert_eq!(a["salt"], "yV6C3bWatawPJN5D");
        assert_eq!(a["resource"], "appdb");
        assert_eq!(a["endpoints"], "10.0.0.9:5432");
        assert_eq!(a["read-only-endpoints"], "10.0.0.10:5432,10.0.0.11:5432");
        assert_eq!(a["secret-user"], "secret:user1");
        assert_eq!(a["secret-tls"], "secret:tls1");
        assert_eq!(a["version"], "16.4");
        for k in ["username", "password", "uris", "tls", "tls-ca"] {
            assert!(a.get(k).is_none(), "{k} goes in a secret, not the databag");
        }
        let data: Value = serde_json::from_str(d["data"].as_ref().unwrap()).unwrap();
        assert_eq!(data["11f13cb8ceabb910"]["resource"], "appdb");
        assert_eq!(data["11f13cb8ceabb910"]["extra-user-roles"], "createdb");
    }

    #[test]
    fn no_answer_before_the_writable_address_is_known() {
        // Arrange
        let (_, v1) = database_request(&library_app(), &units()).unwrap().unwrap();
        // Act
        let d = database_data(&v1, "secret:user1", "secret:tls1", &topo(None, &[]));
        // Assert
        assert_eq!(d["requests"], None, "left as it is");
        assert_eq!(d["data"], None);
        assert_eq!(d["version"].as_deref(), Some("v1"));
    }

    #[test]
    fn a_lone_primary_is_its_own_read_only_endpoint_and_tls_is_json() {
        // Arrange
        let (_, v1) = database_request(&library_app(), &units()).unwrap().unwrap();
        let t = topo(Some("10.0.0.9"), &[]);
        // Act
        let d = database_data(&v1, "secret:u", "secret:t", &t);
        let tls = tls_secret_content(&t);
        // Assert
        let answers: Vec<Value> = serde_json::from_str(d["requests"].as_ref().unwrap()).unwrap();
        assert_eq!(answers[0]["read-only-endpoints"], "10.0.0.9:5432");
        assert!(serde_json::from_str::<bool>(&tls["tls"]).unwrap());
        assert_eq!(tls["tls-ca"], "CA PEM");
    }

    #[test]
    fn the_published_secret_is_read_back_from_the_answer() {
        // Arrange
        let (_, v1) = database_request(&library_app(), &units()).unwrap().unwrap();
        let d = database_data(&v1, "secret://uuid/u1", "secret:t1", &topo(Some("h"), &[]));
        let mine: Databag = d
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        // Act
        let user = published_secret(&mine, "secret-user");
        let none = published_secret(&bag(&[]), "secret-user");
        // Assert
        assert_eq!(user.as_deref(), Some("secret://uuid/u1"));
        assert_eq!(none, None);
    }
}
