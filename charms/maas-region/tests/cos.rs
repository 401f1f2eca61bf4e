//! cos-agent: what the collector subordinate receives (Arrange state → Act one hook → Assert
//! databag), and that the dashboard and rules sent query only what the jobs expose.
mod common;

use charm_lib::cos_agent::{dashboard_uid, lzma_base64_decode, promql_metric_names};
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
    assert_eq!(targets.len(), 2, "{targets:?}");
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
    let group = &data["metrics_alert_rules"]["groups"][0];
    assert_eq!(
        group["name"],
        format!(
            "test_model_{}_maas_region_maas_region_rules",
            &MODEL_UUID[..8]
        )
    );
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
fn without_haproxy_only_regiond_is_scraped() {
    let st = fresh_leader()
        .with_config("haproxy", false)
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
    all
}

#[test]
fn the_dashboard_queries_only_metrics_the_jobs_expose() {
    let exposed = exposed();
    assert!(
        exposed.contains(&"haproxy_server_status"),
        "the haproxy list is read"
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
