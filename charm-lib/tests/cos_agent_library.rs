//! charm-lib's cos_agent writer against Canonical's own library: tests/scripts/cos-agent-check.py
//! runs `COSAgentProvider` (charms.grafana_agent.v0.cos_agent over cosl, from PyPI) on the same
//! charm directory and inputs and compares every field, then feeds what we wrote to
//! `COSAgentRequirer` as the collector would.
//!
//! It needs the Python venv that `make deps` builds (build/venv, with ops, cosl and the library),
//! so it is ignored in a plain `cargo test`; `make check-cos-agent` (part of `make test`) runs it.
//! `COS_AGENT_PYTHON` names another interpreter.

use charm_lib::cos_agent::{
    Dashboard, Provider, RuleFile, ScrapeJob, StaticConfig, TlsConfig, Topology,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cos_agent_fixture");

macro_rules! fixture {
    ($p:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cos_agent_fixture/",
            $p
        ))
    };
}

fn python() -> PathBuf {
    std::env::var_os("COS_AGENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/venv/bin/python"))
}

#[test]
#[ignore = "needs build/venv with cosl and the cos_agent library: make check-cos-agent"]
fn canonicals_library_reads_what_we_write_and_writes_the_same() {
    let metrics_rules = [
        RuleFile {
            path: "pg.rules",
            text: fixture!("src/prometheus_alert_rules/pg.rules"),
        },
        RuleFile {
            path: "single.yaml",
            text: fixture!("src/prometheus_alert_rules/single.yaml"),
        },
        RuleFile {
            path: "README.txt",
            text: fixture!("src/prometheus_alert_rules/README.txt"),
        },
    ];
    let log_rules = [RuleFile {
        path: "errors.rules",
        text: fixture!("src/loki_alert_rules/errors.rules"),
    }];
    let dashboards = [
        Dashboard {
            path: "src/grafana_dashboards/overview.json",
            json: fixture!("src/grafana_dashboards/overview.json"),
        },
        Dashboard {
            path: "src/grafana_dashboards/tagged.json",
            json: fixture!("src/grafana_dashboards/tagged.json"),
        },
    ];
    let jobs = vec![
        ScrapeJob::localhost("/metrics", 9187),
        ScrapeJob {
            job_name: Some("patroni".into()),
            metrics_path: "/metrics".into(),
            scheme: Some("https".into()),
            static_configs: vec![StaticConfig {
                targets: vec!["10.0.0.7:8008".into()],
                labels: [("role".to_string(), "ä".to_string())].into(),
            }],
            tls_config: Some(TlsConfig {
                ca_file: Some("/etc/ca.pem".into()),
                cert_file: Some("/etc/c.pem".into()),
                key_file: Some("/etc/k.pem".into()),
                ..TlsConfig::default()
            }),
            scrape_interval: Some("30s".into()),
        },
    ];
    let topology = Topology {
        model: "fixture-model".into(),
        model_uuid: "6ac6d2f3-0b4e-4c43-8b3a-2a6e7c1f0d9e".into(),
        // ops' Harness names the app after the charm and numbers the unit 0
        application: "fixture-charm".into(),
        unit: "fixture-charm/0".into(),
        charm_name: "fixture-charm".into(),
    };
    let provider = Provider {
        topology: Some(topology.clone()),
        metrics_rules: &metrics_rules,
        log_rules: &log_rules,
        dashboards: &dashboards,
        scrape_jobs: jobs.clone(),
        log_slots: vec!["maas:logs".into()],
    };
    let data = provider.build().expect("the fixture builds");
    let bag = data.to_databag();

    let dir = std::env::temp_dir().join(format!("cos-agent-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("ours.json");
    let input = dir.join("input.json");
    std::fs::write(&ours, &bag["config"]).unwrap();
    let input_json = serde_json::json!({
        "model": topology.model,
        "model_uuid": topology.model_uuid,
        "unit": topology.unit,
        "scrape_configs": jobs,
        "log_slots": ["maas:logs"],
    });
    std::fs::write(&input, input_json.to_string()).unwrap();

    let py = python();
    assert!(
        py.exists(),
        "{} is missing: `make deps` builds the venv with cosl and the cos_agent library",
        py.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/cos-agent-check.py");
    let out = Command::new(&py)
        .arg(script)
        .arg(FIXTURE)
        .arg(&ours)
        .arg(&input)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the library disagrees:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("agrees: 2 jobs, 4 metrics rule groups, 1 log rule groups, 2 dashboards"),
        "{stdout}"
    );
}
