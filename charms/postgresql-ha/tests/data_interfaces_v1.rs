//! The `database` relation with a requirer on data_interfaces protocol v1 (PyPI's
//! dpcharmlibs-interfaces): the same grant as v0, answered in v1's shape, credentials only in
//! secrets.

mod common;

use charm_lib::testing::{Output, Relation, Trigger};
use charm_lib::Status;
use common::*;
use serde_json::Value;

/// What dpcharmlibs-interfaces 1.2.2's `ResourceRequirerEventHandler` writes for
/// `RequirerCommonModel(resource="appdb", extra_user_roles="createdb")` (captured under ops'
/// Harness).
const LIBRARY_REQUESTS: &str = r#"[{"resource": "appdb", "request-id": "11f13cb8ceabb910", "salt": "yV6C3bWatawPJN5D", "extra-user-roles": "createdb", "extra-group-roles": null, "external-node-connectivity": false, "entity-type": null, "entity-permissions": null, "secret-mtls": null, "mtls-cert": null, "secret-requested-entity": null, "entity-name": null, "password": null, "prefix-matching": null, "entity-password": null}]"#;

fn v1_client(requests: &str) -> Relation {
    Relation::new(7, "database", "app")
        .remote_app_data(&[("version", "v1"), ("requests", requests)])
        .remote_unit(0, &[("ingress-address", "10.0.0.60")])
}

fn answers(out: &Output) -> Vec<Value> {
    let bag = &out.state.relation(7).unwrap().local_app_data;
    serde_json::from_str(&bag["requests"]).unwrap()
}

#[test]
fn a_v1_requirer_gets_its_database_answered_by_request_id_with_credentials_in_secrets() {
    // Arrange
    let st = leader_primary()
        .with_config("allowed-extra-user-roles", "createdb")
        .with_relation(v1_client(LIBRARY_REQUESTS));

    // Act
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);

    // Assert
    let bag = &out.state.relation(7).unwrap().local_app_data;
    assert_eq!(bag["version"], "v1");
    for k in [
        "database",
        "username",
        "password",
        "tls",
        "tls-ca",
        "endpoints",
        "secret-user",
    ] {
        assert!(!bag.contains_key(k), "v0's {k} in a v1 answer: {bag:?}");
    }
    let a = &answers(&out)[0];
    assert_eq!(a["request-id"], "11f13cb8ceabb910");
    assert_eq!(a["resource"], "appdb");
    assert_eq!(a["endpoints"], "10.0.0.10:5432");
    let data: Value = serde_json::from_str(&bag["data"]).unwrap();
    assert_eq!(data["11f13cb8ceabb910"]["salt"], "yV6C3bWatawPJN5D");
    let user = out
        .state
        .secret(a["secret-user"].as_str().unwrap())
        .unwrap();
    assert_eq!(user.grants.get(&7), Some(&None));
    assert_eq!(user.latest_content()["username"], "relation_7");
    assert!(user.latest_content()["uris"].ends_with("@10.0.0.10:5432/appdb"));
    let tls = out.state.secret(a["secret-tls"].as_str().unwrap()).unwrap();
    assert_eq!(tls.grants.get(&7), Some(&None));
    assert_eq!(
        tls.latest_content()["tls"],
        "true",
        "JSON, as the library reads it"
    );
    assert_eq!(
        tls.latest_content()["tls-ca"].as_str(),
        ca_secret().latest_content()["ca-cert"].as_str()
    );
    let grant: Value =
        serde_json::from_str(&out.state.relation(1).unwrap().local_app_data["client-7"]).unwrap();
    assert_eq!(grant["attributes"], serde_json::json!(["createdb"]));
    assert_eq!(grant["database"], "appdb");
}

#[test]
fn the_next_hook_changes_nothing_and_the_relation_gone_takes_both_secrets() {
    // Arrange
    let st = leader_primary().with_relation(v1_client(LIBRARY_REQUESTS));
    let first = harness().run_ok(Trigger::RelationChanged(7, None), &st);
    let before = first.state.relation(7).unwrap().local_app_data.clone();

    // Act
    let again = harness().run_ok(Trigger::RelationChanged(7, None), &first.state);
    let gone = harness().run_ok(Trigger::RelationBroken(7), &again.state);

    // Assert
    assert_eq!(again.state.relation(7).unwrap().local_app_data, before);
    assert_eq!(
        again
            .state
            .secret("client-7-tls-v1")
            .unwrap()
            .revisions
            .len(),
        1,
        "no new revision when nothing changed"
    );
    let a = &answers(&first)[0];
    assert!(gone
        .state
        .secret(a["secret-user"].as_str().unwrap())
        .is_none());
    assert!(gone.state.secret("client-7-tls-v1").is_none());
}

#[test]
fn a_request_this_charm_cannot_serve_blocks_naming_the_key_and_grants_nothing() {
    // Arrange
    let st = leader_primary().with_relation(v1_client(
        r#"[{"resource":"appdb","request-id":"1","entity-type":"USER"}]"#,
    ));

    // Act
    let out = harness().run_ok(Trigger::RelationChanged(7, None), &st);

    // Assert
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "database:7 (app): requests: entity-type: entity requests (a bare USER or GROUP) are not supported: ask for a database (resource)"
        )
    );
    assert!(!out
        .state
        .relation(1)
        .unwrap()
        .local_app_data
        .contains_key("client-7"));
    assert!(!out
        .state
        .relation(7)
        .unwrap()
        .local_app_data
        .contains_key("requests"));
}
