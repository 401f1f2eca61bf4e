//! postgresql-ha's v1 answer against Canonical's own requirer: tests/scripts/data-interfaces-v1-check.py
//! runs dpcharmlibs-interfaces' `ResourceRequirerEventHandler` (PyPI, the versions
//! database-requirer-v1-ops pins) in an ops Harness. Its request goes to postgresql-ha's hook
//! (the Harness of charm-lib), and what the hook wrote (app databag and secrets) goes back to
//! the library, which must fire `resource_created` with everything a client needs.
//!
//! It needs the venv `make check-data-interfaces` builds (build/dpv1-venv), so it is ignored in
//! a plain `cargo test`; `DATA_INTERFACES_PYTHON` names another interpreter.

mod common;

use charm_lib::testing::{Relation, Trigger};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    std::env::var_os("DATA_INTERFACES_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/dpv1-venv/bin/python")
        })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scripts/data-interfaces-v1-check.py")
}

/// Runs the script; its stdout as JSON (stderr shown on failure).
fn run(args: &[&str], stdin: Option<&Value>) -> Value {
    let mut child = Command::new(python())
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (make check-data-interfaces builds it)",
                python().display()
            )
        });
    if let Some(v) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(v.to_string().as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
#[ignore = "needs build/dpv1-venv with dpcharmlibs-interfaces: make check-data-interfaces"]
fn the_librarys_requirer_gets_resource_created_from_our_answer() {
    // Arrange: the library's request, as its leader writes it on relation-created.
    let requested: BTreeMap<String, String> =
        serde_json::from_value(run(&["request", "appdb", "createdb"], None)).unwrap();
    let bag: Vec<(&str, &str)> = requested
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let st = leader_primary().with_relation(
        Relation::new(7, "database", "requirer")
            .remote_app_data(&bag)
            .remote_unit(0, &[("ingress-address", "10.0.0.60")]),
    );

    // Act: postgresql-ha answers; the library reads the answer.
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    let provider = out.state.relation(7).unwrap().local_app_data.clone();
    let answer: Vec<Value> = serde_json::from_str(&provider["requests"]).unwrap();
    let mut secrets = serde_json::Map::new();
    for key in ["secret-user", "secret-tls"] {
        let id = answer[0][key].as_str().unwrap();
        let s = out.state.secret(id).unwrap();
        assert_eq!(
            s.grants.get(&7),
            Some(&None),
            "{key} granted to the relation"
        );
        secrets.insert(id.to_string(), json!(s.latest_content()));
    }
    let got = run(
        &["answer"],
        Some(&json!({"requirer_app": requested, "provider_app": provider, "secrets": secrets})),
    );

    // Assert
    assert!(got.get("error").is_none(), "{got:#}");
    let ours = out
        .state
        .secret(answer[0]["secret-user"].as_str().unwrap())
        .unwrap();
    let password = ours.latest_content()["password"].clone();
    assert_eq!(got["resource"], "appdb");
    assert_eq!(got["username"], "relation_7");
    assert_eq!(got["password"], password.as_str());
    assert_eq!(got["endpoints"], "10.0.0.10:5432");
    assert_eq!(
        got["uris"],
        format!("postgresql://relation_7:{password}@10.0.0.10:5432/appdb")
    );
    assert_eq!(got["tls"], true);
    assert_eq!(
        got["tls-ca"].as_str(),
        ca_secret()
            .latest_content()
            .get("ca-cert")
            .map(String::as_str)
    );
    let request_id =
        serde_json::from_str::<Value>(&requested["requests"]).unwrap()[0]["request-id"].clone();
    assert_eq!(got["request-id"], request_id);
}
