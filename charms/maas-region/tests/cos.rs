//! cos-agent: what the collector subordinate receives (Arrange state → Act one hook → Assert
//! databag), and that the dashboard and rules sent query only what the jobs expose.
mod common;

use charm_lib::cos_agent::{dashboard_uid, lzma_base64_decode, promql_metric_names};
use charm_lib::machine::CmdOutput;
use charm_lib::testing::{Relation, Trigger, MODEL_UUID};
use common::*;
use serde_json::Value;

const COS: u32 = 9;

fn collector() -> Relation {
    Relation::new(COS, "cos-agent", "opentelemetry-collector").remote_unit(0, &[])
}

fn sent(st: &charm_lib::testing::State) -> Value {
    let rel = st.relation(COS).expect("the cos-agent relation");
    serde_json::from_str(&rel.local_unit_data["config"]).expect("config is JSON")
}

fn alerts(data: &Value) -> Vec<String> {
    data["metrics_alert_rules"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_collector_gets_regiond_and_haproxy_jobs_the_rules_and_the_dashboard() {
    let st = fresh_leader().with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    let data = sent(&out.state);

    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    let targets: Vec<(String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j["job_name"].as_str().unwrap().to_string(),
                j["static_configs"][0]["targets"][0]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    // The default channel (3.6/stable) runs Temporal, whose metrics MAAS's nginx serves.
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(
        targets[0].0.starts_with("maas-region_haproxy_"),
        "{targets:?}"
    );
    assert_eq!(targets[0].1, "localhost:8405");
    assert!(
        targets[1].0.starts_with("maas-region_regiond_"),
        "{targets:?}"
    );
    assert_eq!(targets[1].1, "localhost:5239");
    assert!(
        targets[2].0.starts_with("maas-region_temporal_"),
        "{targets:?}"
    );
    assert_eq!(targets[2].1, "localhost:5240");

    let names = alerts(&data);
    for a in [
        "MaasRegionDown",
        "MaasRegionsAllDown",
        "HaproxyServerDown",
        "HostDown",
        "HostMetricsMissing",
    ] {
        assert!(names.contains(&a.to_string()), "{a} missing from {names:?}");
    }
    let group = data["metrics_alert_rules"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["name"]
                == format!(
                    "test_model_{}_maas_region_maas_region_rules",
                    &MODEL_UUID[..8]
                )
        })
        .expect("the maas_region group, renamed as the library does");
    let labels = &group["rules"][0]["labels"];
    assert_eq!(labels["juju_model_uuid"], MODEL_UUID);
    assert_eq!(labels["juju_application"], "maas-region");
    assert_eq!(labels["juju_charm"], "maas-region");
    assert_eq!(data["log_alert_rules"], serde_json::json!({}));

    let dashboards = data["dashboards"].as_array().unwrap();
    assert_eq!(dashboards.len(), 1);
    let dash: Value =
        serde_json::from_str(&lzma_base64_decode(dashboards[0].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(dash["title"], "MAAS regions");
    assert_eq!(
        dash["uid"],
        dashboard_uid("maas-region", "src/grafana_dashboards/maas-region.json")
    );
    assert!(dash["tags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("charm: maas-region")));
}

#[test]
fn without_haproxy_and_on_maas_3_4_only_regiond_is_scraped() {
    let st = fresh_leader()
        .with_config("haproxy", false)
        .with_config("channel", "3.4/stable")
        .with_relation(collector());
    let out = harness(0).run_ok(Trigger::ConfigChanged, &st);
    let data = sent(&out.state);
    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0]["job_name"]
        .as_str()
        .unwrap()
        .starts_with("maas-region_regiond_"));
}

#[test]
fn a_snap_install_names_the_maas_snaps_log_slot_a_deb_install_none() {
    // The snap shares $SNAP_COMMON/log through its content slot `maas-logs` (canonical/maas
    // snap/snapcraft.yaml); the debs' /var/log/maas is read by the collector unasked.
    let out = harness(0).run_ok(
        Trigger::RelationJoined(COS, 0),
        &fresh_leader().with_relation(collector()),
    );
    assert_eq!(
        sent(&out.state)["log_slots"],
        serde_json::json!(["maas:maas-logs"])
    );
    let deb = fresh_leader()
        .with_config("install-method", "deb")
        .with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &deb);
    assert_eq!(sent(&out.state)["log_slots"], serde_json::json!([]));
}

#[test]
fn without_the_relation_nothing_is_built_or_written() {
    let out = harness(0).run_ok(Trigger::ConfigChanged, &fresh_leader());
    assert!(out.state.relation(COS).is_none());
    assert!(!in_relation_data(&out.state, "metrics_scrape_jobs"));
}

/// Every metric the charm's jobs expose (with haproxy on), and the series Prometheus adds.
fn exposed() -> Vec<&'static str> {
    let mut all: Vec<&str> = maas_region::cos::SYNTHETIC.to_vec();
    all.extend(maas_region::cos::exposed("regiond"));
    all.extend(maas_region::cos::exposed("haproxy"));
    all.extend(maas_region::cos::exposed("cluster"));
    all.extend(maas_region::cos::exposed("temporal"));
    all.extend(maas_region::cos::exposed("agent"));
    all.extend(maas_region::cos::exposed("certificates"));
    all
}

#[test]
fn the_dashboard_queries_only_metrics_the_jobs_expose() {
    let exposed = exposed();
    assert!(
        exposed.contains(&"haproxy_server_status"),
        "the haproxy list is read"
    );
    assert!(
        exposed.contains(&"maas_machines"),
        "the cluster statistics' list is read"
    );
    for d in maas_region::cos::DASHBOARDS {
        let dash: Value = serde_json::from_str(d.json).unwrap();
        let mut queried = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                for m in promql_metric_names(expr) {
                    queried += 1;
                    assert!(
                        exposed.contains(&m.as_str()),
                        "{}: {m} in {expr:?} is not exposed",
                        d.path
                    );
                }
            }
        }
        assert!(queried >= 5, "{}: only {queried} metrics found", d.path);
    }
}

#[test]
fn the_rules_sent_query_only_metrics_the_jobs_expose() {
    let exposed = exposed();
    for f in maas_region::cos::RULES {
        let doc: Value = serde_yaml::from_str(f.text).unwrap();
        for g in doc["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let expr = r["expr"].as_str().unwrap();
                let names = promql_metric_names(expr);
                assert!(!names.is_empty(), "{expr}");
                for m in names {
                    assert!(
                        exposed.contains(&m.as_str()),
                        "{}: {m} in {expr:?} is not exposed",
                        f.path
                    );
                }
            }
        }
    }
}

const CA_FILE: &str = "/var/snap/maas/common/juju-maas-region-ca.pem";
const KEY: &str = "ck:tk:ts";

/// A leader whose MAAS runs (initialised, settled) and whose own administrator exists.
fn running_leader() -> charm_lib::testing::State {
    let st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    let st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    let st = settle(&harness(0), st);
    let app = &st.relation(PEERS).map(|r| r.local_app_data.clone());
    assert!(
        app.as_ref()
            .is_some_and(|a| a.contains_key("admin-secret-id")),
        "the fixture's administrator: {app:?}"
    );
    st
}

fn with_peer_app(
    mut st: charm_lib::testing::State,
    kv: &[(&str, &str)],
) -> charm_lib::testing::State {
    for r in st.relations.iter_mut().filter(|r| r.endpoint == "cluster") {
        for (k, v) in kv {
            r.local_app_data.insert(k.to_string(), v.to_string());
        }
    }
    st
}

fn job<'a>(data: &'a Value, name: &str) -> Option<&'a Value> {
    data["metrics_scrape_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| {
            j["job_name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("maas-region_{name}_"))
        })
}

#[test]
fn the_cluster_statistics_are_scraped_once_maas_serves_them() {
    // Not before the leader turned MAAS's prometheus_enabled on: /MAAS/metrics is a 404.
    let st = fresh_leader().with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    assert!(job(&sent(&out.state), "cluster").is_none());

    // Then over http on MAAS's port.
    let st =
        with_peer_app(fresh_leader(), &[("prometheus-enabled", "true")]).with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    let data = sent(&out.state);
    let j = job(&data, "cluster").expect("the cluster job");
    assert_eq!(j["metrics_path"], "/MAAS/metrics");
    assert_eq!(j["static_configs"][0]["targets"][0], "localhost:5240");
    assert!(
        j.get("scheme").is_none() && j.get("tls_config").is_none(),
        "{j}"
    );
    assert_eq!(data["metrics_scrape_jobs"].as_array().unwrap().len(), 4);
}

#[test]
fn with_tls_applied_the_cluster_statistics_go_over_https_verified_with_the_apps_ca() {
    // Arrange: the leader has MAAS serve its certificate (tls-applied, tls-ca), then a
    // collector comes with the statistics on
    let st = harness(0)
        .run_ok(
            Trigger::ConfigChanged,
            &running_leader().with_config("tls-enabled", true),
        )
        .state;
    let st = with_peer_app(st, &[("prometheus-enabled", "true")]).with_relation(collector());

    // Act
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);

    // Assert
    let data = sent(&out.state);
    let j = job(&data, "cluster").expect("the cluster job");
    assert_eq!(j["scheme"], "https");
    assert_eq!(j["static_configs"][0]["targets"][0], "localhost:5443");
    // The CA inline, the one this unit's CLI trusts from its CA file; nothing else in
    // tls_config (Prometheus refuses `ca` beside `ca_file`).
    let ca = out.state.machine.text(CA_FILE).expect("the unit's CA file");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(j["tls_config"], serde_json::json!({ "ca": ca }));
    // Temporal's metrics are in the same nginx server block as /MAAS/metrics: https too.
    let t = job(&data, "temporal").expect("the temporal job");
    assert_eq!(t["metrics_path"], "/metrics/temporal");
    assert_eq!(t["scheme"], "https");
    assert_eq!(t["static_configs"][0]["targets"][0], "localhost:5443");
    assert_eq!(t["tls_config"], serde_json::json!({ "ca": ca }));

    // TLS wanted but not applied yet (on a region that is not the leader, before the
    // leader's config-tls): MAAS still serves http, but both jobs wait for https, since
    // their http paths stop answering (301, 404) once TLS is applied.
    let mut st = with_peer_app(
        fresh_leader().with_config("tls-enabled", true),
        &[("prometheus-enabled", "true")],
    )
    .with_relation(collector());
    st.leader = false;
    let out = harness(0)
        .run(Trigger::RelationJoined(COS, 0), &st)
        .unwrap();
    let data = sent(&out.state);
    assert!(job(&data, "cluster").is_none(), "{data}");
    assert!(job(&data, "temporal").is_none(), "{data}");

    // The leader that applies it in a hook sends the https job in that hook: no other region
    // tells it (peer relation-changed goes to the others).
    st.leader = true;
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    let applied = out
        .state
        .relations
        .iter()
        .find(|r| r.endpoint == "cluster")
        .and_then(|r| r.local_app_data.get("tls-applied").cloned());
    assert!(
        applied.as_ref().is_some_and(|a| !a.is_empty()),
        "{applied:?}"
    );
    let data = sent(&out.state);
    assert_eq!(
        job(&data, "cluster").unwrap()["static_configs"][0]["targets"][0],
        "localhost:5443"
    );
    assert_eq!(
        job(&data, "temporal").unwrap()["static_configs"][0]["targets"][0],
        "localhost:5443"
    );
}

#[test]
fn the_leader_turns_prometheus_enabled_on_once_a_collector_is_related_and_once_only() {
    let mut st = running_leader();
    st.machine = st.machine.respond(
        &[
            "/snap/bin/maas",
            "apikey",
            "--username",
            "maas-admin-internal",
        ],
        CmdOutput::ok(format!("{KEY}\n")),
    );
    // Without a collector nothing is turned on: the page would be public for nobody.
    let out = harness(0).run_ok(Trigger::UpdateStatus, &st);
    assert!(
        !out.command_lines().iter().any(|c| c.contains("set-config")),
        "{:?}",
        out.command_lines()
    );

    let st = st.with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    let lines = out.command_lines();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {lines:?}"))
    };
    let (login, set, logout) = (
        at("maas login juju-maas-region-cos http://localhost:5240/MAAS/api/2.0/ -"),
        at("maas juju-maas-region-cos maas set-config name=prometheus_enabled value=true"),
        at("maas logout juju-maas-region-cos"),
    );
    assert!(login < set && set < logout, "{lines:?}");
    assert!(
        !lines.iter().any(|c| c.contains(KEY)),
        "the key is on stdin only"
    );
    assert!(!out.log_text().contains(KEY), "never in a log");
    let app = &out.state.relation(PEERS).unwrap().local_app_data;
    assert_eq!(app["prometheus-enabled"], "true");
    // The leader sends its cluster job in the same hook (no peer relation-changed tells it).
    assert!(job(&sent(&out.state), "cluster").is_some());

    let again = harness(0).run_ok(Trigger::UpdateStatus, &out.state);
    assert!(
        !again
            .command_lines()
            .iter()
            .any(|c| c.contains("set-config") || c.contains("login")),
        "{:?}",
        again.command_lines()
    );
}

#[test]
fn a_refused_set_config_is_tried_again_at_the_next_hook_and_logs_out() {
    let mut st = running_leader().with_relation(collector());
    st.machine = st
        .machine
        .respond(
            &[
                "/snap/bin/maas",
                "apikey",
                "--username",
                "maas-admin-internal",
            ],
            CmdOutput::ok(format!("{KEY}\n")),
        )
        .respond(
            &[
                "/snap/bin/maas",
                "juju-maas-region-cos",
                "maas",
                "set-config",
            ],
            CmdOutput::failed(2, "503 Service Unavailable\n"),
        );
    let out = harness(0).run_ok(Trigger::UpdateStatus, &st);
    let app = &out.state.relation(PEERS).unwrap().local_app_data;
    assert!(!app.contains_key("prometheus-enabled"), "{app:?}");
    assert!(job(&sent(&out.state), "cluster").is_none());
    assert!(
        out.log_text().contains("503 Service Unavailable"),
        "{}",
        out.log_text()
    );
    assert!(out
        .command_lines()
        .iter()
        .any(|c| c.ends_with("maas logout juju-maas-region-cos")));
}

#[test]
fn with_tls_applied_but_no_ca_to_verify_with_no_cluster_job_is_sent() {
    // Arrange: statistics on, TLS applied, the CA missing from the peer application databag
    let spec: serde_json::Value = serde_yaml::from_str(include_str!("../config.yaml")).unwrap();
    let mut raw: serde_json::Map<String, Value> = spec["options"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, o)| Some((k.clone(), o.get("default")?.clone())))
        .collect();
    raw.insert("tls-enabled".into(), true.into());
    let cfg = maas_region::config::Config::from_json(raw).expect("config.yaml's defaults");
    let mut peer_app = maas_region::peers::AppBag {
        stats_enabled: Some(true),
        tls_applied: Some("abc123".into()),
        ..Default::default()
    };

    // Act, Assert: nothing (http would only be redirected to https)
    assert_eq!(maas_region::cos::Nginx::cluster(&cfg, &peer_app), None);

    // and with the CA there, https verified with that very PEM
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    peer_app.tls_ca = Some(pem.into());
    assert_eq!(
        maas_region::cos::Nginx::cluster(&cfg, &peer_app),
        Some(maas_region::cos::Nginx::Https { ca: pem.into() })
    );
}

#[test]
fn while_maas_serves_tls_the_certificate_exporter_reads_what_nginx_serves_until_the_unit_goes() {
    let unit = "/etc/systemd/system/maas-region-cert-metrics.service";
    let served = "/var/snap/maas/current/http/certs/regiond-proxy.pem";
    // Arrange: no exporter without TLS.
    let st = running_leader().with_relation(collector());
    assert!(st.machine.text(unit).is_none());
    assert!(job(&sent_or_empty(&st), "certificates").is_none());

    // Act: the leader has MAAS serve its certificate, in one hook.
    let on = harness(0).run_ok(Trigger::ConfigChanged, &st.with_config("tls-enabled", true));

    // Assert: the exporter runs over the file regiond renders, and its job is sent.
    let text = on.state.machine.text(unit).expect("the exporter's unit");
    assert!(
        text.contains(&format!("/charm/dispatch cert-metrics 9958 {served}\n")),
        "{text}"
    );
    assert!(on
        .state
        .machine
        .is_active("maas-region-cert-metrics.service"));
    let data = sent(&on.state);
    let j = job(&data, "certificates").expect("the certificates job");
    assert_eq!(j["static_configs"][0]["targets"][0], "127.0.0.1:9958");
    assert!(j.get("tls_config").is_none(), "{j}");
    assert!(alerts(&data).contains(&"CertificateNearExpiry".to_string()));
    assert!(alerts(&data).contains(&"CertificateUnreadable".to_string()));

    // TLS off again: the exporter and its job go.
    let off = harness(0).run_ok(
        Trigger::ConfigChanged,
        &on.state.clone().with_config("tls-enabled", false),
    );
    assert!(off.state.machine.text(unit).is_none());
    assert!(!off
        .state
        .machine
        .is_active("maas-region-cert-metrics.service"));
    assert!(job(&sent(&off.state), "certificates").is_none());

    // The unit removed with TLS on: teardown takes it away too.
    let gone = harness(0).run_ok(Trigger::Remove, &on.state);
    assert!(gone.state.machine.text(unit).is_none());
    assert!(!gone
        .state
        .machine
        .is_active("maas-region-cert-metrics.service"));
}

fn sent_or_empty(st: &charm_lib::testing::State) -> Value {
    st.relation(COS)
        .and_then(|r| r.local_unit_data.get("config"))
        .map(|c| serde_json::from_str(c).unwrap())
        .unwrap_or_else(|| serde_json::json!({"metrics_scrape_jobs": []}))
}

#[test]
fn temporals_metrics_are_scraped_from_maas_3_5_through_maass_nginx() {
    // 3.5 and later: /metrics/temporal on MAAS's http port, whatever the statistics setting
    // (Temporal's listener is always on: production.yaml.template `metrics.prometheus`).
    for ch in ["3.5/stable", "3.6/stable", "3.7/edge", "latest/edge"] {
        let st = fresh_leader()
            .with_config("channel", ch)
            .with_relation(collector());
        let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
        let data = sent(&out.state);
        let j = job(&data, "temporal").unwrap_or_else(|| panic!("{ch}: no temporal job"));
        assert_eq!(j["metrics_path"], "/metrics/temporal", "{ch}");
        assert_eq!(
            j["static_configs"][0]["targets"][0], "localhost:5240",
            "{ch}"
        );
        assert!(
            j.get("scheme").is_none() && j.get("tls_config").is_none(),
            "{ch}: {j}"
        );
    }
    // 3.4 has no Temporal, and its nginx no such location.
    let st = fresh_leader()
        .with_config("channel", "3.4/stable")
        .with_relation(collector());
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    assert!(job(&sent(&out.state), "temporal").is_none());
}

#[test]
fn the_temporal_job_follows_the_maas_installed_not_the_channel_option() {
    let racks = |ch: &str| {
        Relation::new(RPC, "rpc", "maas-rack")
            .remote_unit(0, &[("hostname", "rack-a"), ("maas_channel", ch)])
    };
    // Arrange: a serving 3.4 region whose channel option now says 3.6, its rack still on 3.4.
    let st = installed_snap(fresh_leader().with_relation(vip("10.0.0.100")));
    let mut st = snap_initialised_unit(st, "10.0.0.5", "http://10.0.0.100/MAAS");
    st.stored.insert("snap-channel".into(), "3.4/stable".into());
    st.machine.snaps.insert("maas".into(), "3.4/stable".into());
    let st = settle(
        &harness(0),
        st.with_config("channel", "3.4/stable")
            .with_relation(racks("3.4/stable")),
    )
    .with_config("channel", "3.6/stable")
    .with_relation(collector());

    // Act: the region waits for its rack (MAAS upgrades racks first): it still runs 3.4.
    let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
    // Assert
    assert_eq!(out.state.stored["snap-channel"], "3.4/stable");
    assert!(job(&sent(&out.state), "temporal").is_none());

    // Act: the rack runs 3.6; the region refreshes in this hook...
    let mut st = out.state;
    st.relations.retain(|r| r.id != RPC);
    let out = harness(0).run_ok(
        Trigger::ConfigChanged,
        &st.with_relation(racks("3.6/stable")),
    );
    // Assert: ...and sends the job in that same hook.
    assert_eq!(out.state.stored["snap-channel"], "3.6/stable");
    assert!(job(&sent(&out.state), "temporal").is_some());
}

#[test]
fn a_deb_install_is_told_by_the_version_dpkg_has() {
    let deb = |version: &str| {
        let mut st = fresh_leader()
            .with_config("install-method", "deb")
            .with_relation(collector());
        st.machine = st.machine.respond(
            &["dpkg-query", "-W", "-f=${Version}", "maas-region-api"],
            CmdOutput::ok(version),
        );
        let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
        job(&sent(&out.state), "temporal").cloned()
    };
    let j = deb("1:3.5.8-16401-g.1f2e3d4c5-0ubuntu1~24.04.1").expect("3.5 debs run Temporal");
    assert_eq!(j["static_configs"][0]["targets"][0], "localhost:5240");
    assert!(deb("3.4.6-14344-g.f6a2c5b33-0ubuntu1~22.04.1").is_none());
}

#[test]
fn which_maas_serves_temporal() {
    use maas_region::cos::serves_temporal;
    for (v, want) in [
        ("3.4/stable", false),
        ("2.9/stable", false),
        ("3.5/stable", true),
        ("3.10/edge/fix", true),
        ("latest/edge", true),
        ("stable", true),
        ("1:3.4.6-14344-g.f6a2c5b33-0ubuntu1", false),
        ("3.5.0~beta1-15000-g.abc-0ubuntu1", true),
        ("1:3.6.3-16565-g.0d2d1e7c5-0ubuntu1~24.04.1", true),
    ] {
        assert_eq!(serves_temporal(v), want, "{v}");
    }
}

#[test]
fn a_region_whose_maas_runs_the_rack_sends_maas_agents_job_from_3_6() {
    // Arrange: MAAS in mode `mode` (what `maas init` wrote), installed from `ch`.
    let sent_with = |mode: &str, ch: &str| {
        let mut st = fresh_leader()
            .with_config("channel", ch)
            .with_relation(collector());
        st.machine = st.machine.with_file(
            SNAP_MODE,
            &format!("{mode}\n"),
            charm_lib::FileOptions::root(0o644),
        );
        // Act
        let out = harness(0).run_ok(Trigger::RelationJoined(COS, 0), &st);
        job(&sent(&out.state), "agent").cloned()
    };
    // Assert: 3.6's rackd.nginx.conf.template proxies /metrics/agent on 5248, plain http.
    for ch in ["3.6/stable", "3.7/stable", "latest/edge"] {
        let j = sent_with("region+rack", ch).unwrap_or_else(|| panic!("{ch}: no agent job"));
        assert_eq!(j["metrics_path"], "/metrics/agent", "{ch}");
        assert_eq!(
            j["static_configs"][0]["targets"][0], "localhost:5248",
            "{ch}"
        );
        assert!(j.get("scheme").is_none(), "{ch}: {j}");
    }
    // 3.4 and 3.5 have no such location; a region alone runs no rack.
    assert!(sent_with("region+rack", "3.5/stable").is_none());
    assert!(sent_with("region+rack", "3.4/stable").is_none());
    assert!(sent_with("region", "3.6/stable").is_none());
}

#[test]
fn which_maas_serves_agent_metrics() {
    use maas_region::cos::serves_agent_metrics;
    for (v, want) in [
        ("3.5/stable", false),
        ("3.6/stable", true),
        ("3.10/edge", true),
        ("latest/edge", true),
        ("1:3.5.8-16401-g.1f2e3d4c5-0ubuntu1", false),
        ("1:3.6.3-16565-g.0d2d1e7c5-0ubuntu1~24.04.1", true),
    ] {
        assert_eq!(serves_agent_metrics(v), want, "{v}");
    }
}
