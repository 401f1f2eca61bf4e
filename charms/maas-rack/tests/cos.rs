//! cos-agent: what the collector subordinate receives (Arrange state → Act one hook → Assert
//! databag), and that the dashboard and rules sent query only what the job exposes.
mod common;

use charm_lib::cos_agent::{
    dashboard_exprs, dashboard_uid, lzma_base64_decode, promql_metric_names, rule_exprs,
};
use charm_lib::testing::{Relation, Trigger, MODEL_UUID};
use common::*;
use serde_json::Value;

const COS: u32 = 9;

#[test]
fn the_collector_gets_the_rackd_and_agent_jobs_the_rules_and_the_dashboard() {
    let st = ready().with_relation(
        Relation::new(COS, "cos-agent", "opentelemetry-collector").remote_unit(0, &[]),
    );
    let out = ok(&harness(), Trigger::RelationJoined(COS, 0), &st);
    let rel = out.state.relation(COS).unwrap();
    let data: Value = serde_json::from_str(&rel.local_unit_data["config"]).unwrap();

    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    // The default channel, 3.6/stable: maas-agent's metrics behind the rack's nginx too.
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let named = |n: &str| {
        jobs.iter()
            .find(|j| {
                j["job_name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("maas-rack_{n}_"))
            })
            .unwrap_or_else(|| panic!("no {n} job: {jobs:?}"))
    };
    let rackd = named("rackd");
    assert_eq!(rackd["static_configs"][0]["targets"][0], "localhost:5249");
    assert_eq!(rackd["metrics_path"], "/metrics");
    let agent = named("agent");
    assert_eq!(agent["static_configs"][0]["targets"][0], "localhost:5248");
    assert_eq!(agent["metrics_path"], "/metrics/agent");
    assert!(agent.get("scheme").is_none(), "{agent:?}");

    let groups = data["metrics_alert_rules"]["groups"].as_array().unwrap();
    let alerts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "MaasRackDown",
            "MaasRackGone",
            "HostDown",
            "HostMetricsMissing"
        ]
    );
    assert_eq!(
        groups[0]["rules"][0]["labels"]["juju_model_uuid"],
        MODEL_UUID
    );
    assert_eq!(groups[0]["rules"][0]["labels"]["juju_charm"], "maas-rack");

    let dash: Value =
        serde_json::from_str(&lzma_base64_decode(data["dashboards"][0].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(dash["title"], "MAAS rack controllers");
    assert_eq!(
        dash["uid"],
        dashboard_uid("maas-rack", "src/grafana_dashboards/maas-rack.json")
    );
}

#[test]
fn a_snap_install_names_the_maas_snaps_log_slot_a_deb_install_none() {
    // The snap shares $SNAP_COMMON/log through its content slot `maas-logs` (canonical/maas
    // snap/snapcraft.yaml); the deb's /var/log/maas is read by the collector unasked.
    let rel = || Relation::new(COS, "cos-agent", "opentelemetry-collector").remote_unit(0, &[]);
    let slots = |st: &charm_lib::testing::State| -> Value {
        let data: Value =
            serde_json::from_str(&st.relation(COS).unwrap().local_unit_data["config"]).unwrap();
        data["log_slots"].clone()
    };
    let out = ok(
        &harness(),
        Trigger::RelationJoined(COS, 0),
        &ready().with_relation(rel()),
    );
    assert_eq!(slots(&out.state), serde_json::json!(["maas:maas-logs"]));
    let out = ok(
        &harness(),
        Trigger::RelationJoined(COS, 0),
        &ready_deb().with_relation(rel()),
    );
    assert_eq!(slots(&out.state), serde_json::json!([]));
}

/// The short job names sent for `st` after the collector joined.
fn job_names(st: &charm_lib::testing::State) -> Vec<String> {
    let out = ok(&harness(), Trigger::RelationJoined(COS, 0), st);
    let data: Value =
        serde_json::from_str(&out.state.relation(COS).unwrap().local_unit_data["config"]).unwrap();
    data["metrics_scrape_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let n = j["job_name"].as_str().unwrap();
            n.trim_start_matches("maas-rack_")
                .rsplit_once('_')
                .unwrap()
                .0
                .to_string()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn the_agent_job_follows_the_maas_installed_3_6_and_later() {
    let rel = || Relation::new(COS, "cos-agent", "opentelemetry-collector").remote_unit(0, &[]);
    // Snap: by the channel installed (rackd.nginx.conf.template has /metrics/agent from 3.6).
    for (ch, want) in [
        ("3.4/stable", vec!["rackd"]),
        ("3.5/stable", vec!["rackd"]),
        ("3.6/stable", vec!["agent", "rackd"]),
        ("3.7/stable", vec!["agent", "rackd"]),
    ] {
        let st = ready().with_config("channel", ch).with_relation(rel());
        assert_eq!(job_names(&st), want, "{ch}");
    }
    // Deb: by the version dpkg reports for maas-rack-controller; none known, no agent job.
    let deb = |version: Option<&str>| {
        let mut st = ready_deb().with_relation(rel());
        if let Some(v) = version {
            st.machine = st.machine.respond(
                &["dpkg-query", "-W", "-f=${Version}", "maas-rack-controller"],
                charm_lib::machine::CmdOutput::ok(v),
            );
        }
        job_names(&st)
    };
    assert_eq!(deb(Some("1:3.6.3-0ubuntu1")), ["agent", "rackd"]);
    assert_eq!(deb(Some("1:3.5.8-16401-g.1f2e3d4c5-0ubuntu1")), ["rackd"]);
    assert_eq!(deb(None), ["rackd"]);
}

#[test]
fn without_the_relation_nothing_is_written() {
    let out = ok(&harness(), Trigger::ConfigChanged, &ready());
    assert!(out.state.relation(COS).is_none());
}

#[test]
fn the_dashboard_and_rules_query_only_metrics_the_job_exposes() {
    let exposed = maas_rack::cos::exposed();
    let mut exprs = Vec::new();
    for d in maas_rack::cos::DASHBOARDS {
        exprs.extend(dashboard_exprs(d.json).unwrap());
    }
    for r in maas_rack::cos::RULES {
        exprs.extend(rule_exprs(r.text).unwrap());
    }
    assert!(exprs.len() >= 5, "{exprs:?}");
    for e in &exprs {
        let names = promql_metric_names(e);
        assert!(!names.is_empty(), "{e}");
        for m in names {
            assert!(exposed.contains(&m.as_str()), "{m} in {e:?} is not exposed");
        }
    }
}
