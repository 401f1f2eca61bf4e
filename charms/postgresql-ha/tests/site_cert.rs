//! The optional `certificates` relation (tls-certificates v4): PostgreSQL presents a
//! certificate from the site's CA; etcd and Patroni keep the application's own.

mod common;

use charm_lib::testing::{Relation, State, Trigger};
use charm_lib::tls;
use common::*;

const PG_CERT: &str = "/etc/postgresql-ha/tls/postgresql.pem";
const UNIT_CERT: &str = "/etc/postgresql-ha/tls/unit.pem";
const TRUSTED: &str = "/etc/postgresql-ha/tls/trusted.pem";

fn with_provider(st: &State, answer: Option<&str>) -> State {
    let mut rel = Relation::new(12, "certificates", "site-ca").remote_unit(0, &[]);
    if let Some(a) = answer {
        rel = rel.remote_app_data(&[("certificates", a)]);
    }
    st.clone().with_relation(rel)
}

/// The request this unit published.
fn request_of(st: &State) -> String {
    let bag = &st.relation(12).unwrap().local_unit_data;
    let v: serde_json::Value = serde_json::from_str(&bag["certificate_signing_requests"]).unwrap();
    assert_eq!(v[0]["ca"], false);
    v[0]["certificate_signing_request"]
        .as_str()
        .unwrap()
        .to_string()
}

fn provider_says(st: &mut State, data: [(String, String); 1]) {
    let r = st.relations.iter_mut().find(|r| r.id == 12).unwrap();
    r.remote_app_data = data.into_iter().collect();
}

fn answer(site: &tls::KeyedCert, csr: &str, keep_ips: bool) -> String {
    let cert = tls::sign_request(
        site,
        csr,
        |n| keep_ips || !matches!(n, tls::SanType::IpAddress(_)),
        tls::now(),
    )
    .unwrap();
    serde_json::json!([{"certificate_signing_request": csr, "certificate": cert, "ca": site.cert_pem, "chain": [cert, site.cert_pem]}]).to_string()
}

#[test]
fn the_site_certificate_serves_postgresql_once_the_provider_signs() {
    let h = harness();
    // Arrange: a running primary, related to a provider that has not answered.
    let st = with_provider(&leader_primary(), None);
    // Act
    let asked = h.run_ok(Trigger::RelationJoined(12, 0), &st);
    // Assert: a request naming the unit's addresses, a key that never left the unit, and
    // PostgreSQL still on the application CA's certificate meanwhile.
    let csr = request_of(&asked.state);
    let key = asked
        .state
        .machine
        .text("/etc/postgresql-ha/tls/site.key")
        .unwrap();
    let names: std::collections::BTreeSet<String> = ["10.0.0.10", "127.0.0.1", "localhost"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(tls::request_serves(&csr, &key, &names));
    assert!(!asked
        .state
        .relation(12)
        .unwrap()
        .local_unit_data
        .values()
        .any(|v| v.contains("PRIVATE")));
    assert!(
        asked
            .state
            .unit_status
            .message
            .contains("waiting for site-ca to sign"),
        "{:?}",
        asked.state.unit_status
    );
    assert_eq!(
        asked.state.machine.text(PG_CERT),
        asked.state.machine.text(UNIT_CERT)
    );

    // The provider signs: PostgreSQL presents the site's certificate (and its chain); what
    // connections trust holds both CAs; etcd's and Patroni's certificate is unchanged.
    let site = tls::new_ca("site CA", tls::now()).unwrap();
    let mut st = asked.state.clone();
    provider_says(
        &mut st,
        [("certificates".to_string(), answer(&site, &csr, true))],
    );
    let served = h.run_ok(Trigger::RelationChanged(12, Some(0)), &st);
    let pg = served.state.machine.text(PG_CERT).unwrap();
    assert!(
        tls::inspect(&pg, &site.cert_pem).unwrap().signed_by_ca,
        "{pg}"
    );
    assert_eq!(
        pg.matches("BEGIN CERTIFICATE").count(),
        2,
        "the certificate, then the site CA from the chain"
    );
    // The certificate exporter reads them too once they are the site's (before, copies of the
    // unit's certificate and CA, which it reads already).
    let exporter = "/etc/systemd/system/postgresql-ha-cert-metrics.service";
    let before = asked.state.machine.text(exporter).unwrap();
    assert!(
        !before.contains(PG_CERT) && !before.contains(TRUSTED),
        "{before}"
    );
    let after = served.state.machine.text(exporter).unwrap();
    assert!(
        after.contains(&format!(" {UNIT_CERT} {PG_CERT} {TRUSTED}\n")),
        "{after}"
    );
    assert_eq!(
        served
            .state
            .machine
            .text("/etc/postgresql-ha/tls/postgresql.key")
            .unwrap(),
        key
    );
    assert_eq!(
        served.state.machine.text(UNIT_CERT),
        asked.state.machine.text(UNIT_CERT)
    );
    let trusted = served.state.machine.text(TRUSTED).unwrap();
    assert!(
        trusted.contains(site.cert_pem.trim())
            && trusted.contains(ca_secret().latest_content()["ca-cert"].trim())
    );
    assert!(
        ran(&served, |l| l == "systemctl reload postgresql-ha-patroni")
            || !served
                .state
                .machine
                .services
                .get("postgresql-ha-patroni")
                .is_some_and(|s| s.active)
    );
    assert!(
        !served.state.unit_status.message.contains("certificates"),
        "{:?}",
        served.state.unit_status
    );

    // Running again changes nothing (the request stays the same).
    let again = h.run(Trigger::UpdateStatus, &served.state).unwrap();
    assert_eq!(request_of(&again.state), csr);
    assert_eq!(again.state.machine.files, served.state.machine.files);
}

#[test]
fn a_site_certificate_without_the_units_addresses_is_not_used() {
    let h = harness();
    let asked = h
        .run(
            Trigger::RelationJoined(12, 0),
            &with_provider(&leader_primary(), None),
        )
        .unwrap();
    let csr = request_of(&asked.state);
    let site = tls::new_ca("site CA", tls::now()).unwrap();
    let mut st = asked.state.clone();
    provider_says(
        &mut st,
        [("certificates".to_string(), answer(&site, &csr, false))],
    );
    let out = h.run_ok(Trigger::RelationChanged(12, Some(0)), &st);
    assert!(
        out.state
            .unit_status
            .message
            .contains("does not name 10.0.0.10, 127.0.0.1"),
        "{:?}",
        out.state.unit_status
    );
    assert_eq!(
        out.state.machine.text(PG_CERT),
        out.state.machine.text(UNIT_CERT),
        "members keep verify-full"
    );

    // Garbled provider data: waiting, never a panic.
    let mut st = asked.state.clone();
    provider_says(
        &mut st,
        [("certificates".to_string(), "{not json".to_string())],
    );
    let out = h.run_ok(Trigger::RelationChanged(12, Some(0)), &st);
    assert!(
        out.state.unit_status.message.contains("cannot read"),
        "{:?}",
        out.state.unit_status
    );
}
