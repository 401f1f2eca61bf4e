//! `tls-enabled`: the leader keeps one certificate for the region and has MAAS serve it
//! (`maas config-tls enable`), haproxy passes 443 through, every unit trusts the CA.

mod common;

use charm_lib::testing::{State, Trigger};
use charm_lib::{Port, Status};
use common::*;
use std::path::Path;

const KEY: &str = "/var/snap/maas/common/juju-tls/key.pem";
const CERT: &str = "/var/snap/maas/common/juju-tls/cert.pem";
const CA: &str = "/var/snap/maas/common/juju-tls/ca.pem";
const CA_FILE: &str = "/var/snap/maas/common/juju-maas-region-ca.pem";

fn enable_line() -> String {
    format!("/snap/bin/maas config-tls enable {KEY} {CERT} --cacert {CA} -p 5443 --yes")
}

/// An initialised, serving leader (VIP 10.0.0.100) with `tls-enabled`.
fn tls_leader() -> State {
    let st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    let st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    settle(&harness(0), st).with_config("tls-enabled", true)
}

fn peer_app(st: &State) -> &std::collections::BTreeMap<String, String> {
    &st.relation(PEERS).unwrap().local_app_data
}

/// The region certificate the leader keeps, and its CA, from the `maas-tls` secret.
fn kept_certificate(st: &State) -> (String, String) {
    let s = st
        .secrets
        .iter()
        .find(|s| s.label.as_deref() == Some("maas-tls"))
        .expect("the maas-tls secret");
    let content = s.revisions.last().unwrap();
    (content["cert"].clone(), content["ca-cert"].clone())
}

fn file(st: &State, path: &str) -> Option<String> {
    st.machine
        .files
        .get(Path::new(path))
        .map(|f| String::from_utf8_lossy(&f.content).into_owned())
}

#[test]
fn the_leader_issues_one_certificate_and_has_maas_serve_it() {
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &tls_leader());
    // Assert: MAAS got the certificate, once, and the key did not stay on disk.
    let lines = out.command_lines();
    assert_eq!(
        lines.iter().filter(|l| **l == enable_line()).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        file(&out.state, KEY),
        None,
        "the key is removed after config-tls"
    );
    let (cert, ca) = kept_certificate(&out.state);
    assert_eq!(file(&out.state, CERT).as_deref(), Some(cert.as_str()));
    let seen = charm_lib::tls::inspect(&cert, &ca).unwrap();
    assert!(seen.signed_by_ca);
    for name in ["10.0.0.100", "10.0.0.10", "localhost", "127.0.0.1"] {
        assert!(seen.sans.contains(name), "{name} not in {:?}", seen.sans);
    }
    // Every unit trusts the CA; the databag has only public material.
    assert_eq!(peer_app(&out.state)["tls-ca"], ca);
    assert_eq!(
        peer_app(&out.state)["tls-applied"],
        maas_region::certs::digest(&cert)
    );
    assert!(!in_relation_data(&out.state, "PRIVATE KEY"));
    assert_eq!(file(&out.state, CA_FILE).as_deref(), Some(ca.as_str()));
    // haproxy: 443 passed through to every region's 5443, checked on 5240.
    let cfg = file(&out.state, HAPROXY_CFG).unwrap();
    assert!(
        cfg.contains("bind *:443") && cfg.contains(":5443 "),
        "{cfg}"
    );
    assert_haproxy_accepts(&cfg);
    assert!(out.state.opened_ports.contains(&Port::Tcp(443)));
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS; users: https://10.0.0.100/MAAS")
    );
}

#[test]
fn a_second_hook_changes_nothing() {
    let h = harness(0);
    let once = h.run_ok(Trigger::ConfigChanged, &tls_leader());
    for trigger in [
        Trigger::UpdateStatus,
        Trigger::ConfigChanged,
        Trigger::LeaderElected,
    ] {
        let twice = h.run_ok(trigger.clone(), &once.state);
        assert!(
            mutating(&twice).is_empty(),
            "{trigger:?} ran {:?}",
            mutating(&twice)
        );
        assert_eq!(settled(&twice.state), settled(&once.state), "{trigger:?}");
    }
}

#[test]
fn a_new_region_gets_a_certificate_naming_it_too() {
    let h = harness(0);
    let once = h.run_ok(Trigger::ConfigChanged, &tls_leader());
    let (before, _) = kept_certificate(&once.state);
    // Arrange: a second region joins with its address.
    let mut st = once.state.clone();
    st.relations.retain(|r| r.id != PEERS);
    let mut peer = peers(&[(1, "10.0.0.11")]);
    peer.local_app_data = peer_app(&once.state).clone();
    let st = st.with_relation(peer);
    // Act
    let out = h.run_ok(Trigger::RelationChanged(PEERS, Some(1)), &st);
    // Assert
    let (after, ca) = kept_certificate(&out.state);
    assert_ne!(before, after);
    let sans = charm_lib::tls::inspect(&after, &ca).unwrap().sans;
    assert!(
        sans.contains("10.0.0.11") && sans.contains("region-1"),
        "{sans:?}"
    );
    assert!(out.command_lines().contains(&enable_line()));
    assert_eq!(
        peer_app(&out.state)["tls-applied"],
        maas_region::certs::digest(&after)
    );
}

#[test]
fn turning_tls_off_disables_it_in_maas_and_forgets_the_ca_file() {
    let h = harness(0);
    let on = h.run_ok(Trigger::ConfigChanged, &tls_leader());
    let off = h.run_ok(
        Trigger::ConfigChanged,
        &on.state.clone().with_config("tls-enabled", false),
    );
    assert!(off
        .command_lines()
        .contains(&"/snap/bin/maas config-tls disable".to_string()));
    assert!(peer_app(&off.state)
        .get("tls-applied")
        .is_none_or(|v| v.is_empty()));
    assert_eq!(file(&off.state, CA_FILE), None);
    assert!(!off.state.opened_ports.contains(&Port::Tcp(443)));
    assert_eq!(
        off.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS")
    );
}

#[test]
fn nothing_is_handed_to_maas_before_it_runs() {
    // Arrange: TLS asked for, no database yet.
    let st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")))
        .with_config("tls-enabled", true);
    let mut st = st;
    st.relations.retain(|r| r.id != DB);
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert!(!out.command_lines().iter().any(|l| l.contains("config-tls")));
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for database")
    );
}

#[test]
fn a_non_leader_trusts_the_published_ca_and_waits_until_maas_serves_it() {
    let leader = harness(0)
        .run_ok(Trigger::ConfigChanged, &tls_leader())
        .state;
    let app = peer_app(&leader).clone();
    // Arrange: unit 1, initialised, sees the leader's peer data.
    let mut st = installed_snap(fresh_leader());
    st.leader = false;
    st.relations.retain(|r| r.id != PEERS && r.id != DB);
    st = st.with_relation(pgsql("10.0.0.5", "maas-region/0 maas-region/1"));
    let mut peer = peers(&[(0, "10.0.0.10")]);
    peer.local_app_data = app.clone();
    st = st.with_relation(peer).with_relation(vip("10.0.0.100"));
    st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    st.machine = hostname(st.machine, 1);
    let st = st.with_config("tls-enabled", true);
    // Act
    let out = harness(1).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert!(!out.command_lines().iter().any(|l| l.contains("config-tls")));
    assert_eq!(
        file(&out.state, CA_FILE).as_deref(),
        Some(app["tls-ca"].as_str())
    );
    assert_eq!(
        out.state.unit_status,
        Status::active("serving http://10.0.0.100/MAAS; users: https://10.0.0.100/MAAS")
    );
    // Before the leader has handed the certificate to MAAS, the unit does not claim TLS.
    let mut pending = st.clone();
    for r in pending.relations.iter_mut().filter(|r| r.id == PEERS) {
        r.local_app_data.remove("tls-applied");
    }
    let out = harness(1).run_ok(Trigger::ConfigChanged, &pending);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the leader to enable MAAS TLS (maas config-tls enable)")
    );
}

#[test]
fn a_region_whose_nginx_has_not_taken_the_certificate_yet_waits() {
    // Arrange: the TLS probe of this region's own 5443 times out.
    let mut st = tls_leader();
    st.machine = st.machine.respond_times(
        &[
            "timeout",
            "30",
            "sh",
            "-c",
            &format!("until curl -s -o /dev/null -f --max-time 3 --cacert {CA_FILE} https://127.0.0.1:5443/MAAS/rpc/; do sleep 1; done"),
        ],
        charm_lib::CmdOutput::failed(124, ""),
        1,
    );
    // Act
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    // Assert
    assert_eq!(
        out.state.unit_status,
        Status::waiting("MAAS does not answer https://127.0.0.1:5443/MAAS/rpc/ yet (nginx taking the certificate)")
    );
}
