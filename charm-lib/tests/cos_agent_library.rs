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
                // inline PEM: newlines and dashes through the JSON and the job-name hash
                ca: Some("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n".into()),
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

    let stdout = run_check(
        Path::new(FIXTURE),
        &bag["config"],
        &topology,
        &jobs,
        &["maas:logs"],
    );
    assert!(
        stdout.contains("agrees: 2 jobs, 4 metrics rule groups, 1 log rule groups, 2 dashboards"),
        "{stdout}"
    );
}

/// Runs tests/scripts/cos-agent-check.py on `charm_dir` with what we wrote; panics with its
/// report when the library disagrees, returns its summary line otherwise.
fn run_check(
    charm_dir: &Path,
    ours: &str,
    topology: &Topology,
    jobs: &[ScrapeJob],
    log_slots: &[&str],
) -> String {
    let dir = std::env::temp_dir().join(format!(
        "cos-agent-check-{}-{}",
        std::process::id(),
        topology.charm_name
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ours_path = dir.join("ours.json");
    let input = dir.join("input.json");
    std::fs::write(&ours_path, ours).unwrap();
    let input_json = serde_json::json!({
        "model": topology.model,
        "model_uuid": topology.model_uuid,
        "unit": topology.unit,
        "scrape_configs": jobs,
        "log_slots": log_slots,
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
        .arg(charm_dir)
        .arg(&ours_path)
        .arg(&input)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}: the library disagrees:\n{stdout}\n{stderr}",
        topology.charm_name
    );
    stdout
}

/// The files of `dir` (sorted), as (name, text).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().to_string();
                    (name, std::fs::read_to_string(&p).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Each charm's own rule files and dashboards (all of them, sent or not), laid out as the
/// library reads them, through both writers: PyYAML and serde_yaml must read the rules alike.
#[test]
#[ignore = "needs build/venv with cosl and the cos_agent library: make check-cos-agent"]
fn the_library_agrees_on_every_charms_rules_and_dashboards() {
    let charms = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charms");
    let mut checked = 0;
    for charm in [
        "keepalived-vip",
        "maas-rack",
        "maas-region",
        "postgresql-ha",
    ] {
        let src = charms.join(charm).join("src");
        let rules = files(&src.join("prometheus_alert_rules"));
        let dashboards = files(&src.join("grafana_dashboards"));
        assert!(!rules.is_empty(), "{charm} has rule files");
        let dir =
            std::env::temp_dir().join(format!("cos-agent-charm-{}-{charm}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["src/prometheus_alert_rules", "src/grafana_dashboards"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(
            dir.join("metadata.yaml"),
            format!("name: {charm}\nsummary: s\ndescription: d\nprovides:\n  cos-agent:\n    interface: cos_agent\n    limit: 1\n"),
        )
        .unwrap();
        for (n, t) in &rules {
            std::fs::write(dir.join("src/prometheus_alert_rules").join(n), t).unwrap();
        }
        for (n, t) in &dashboards {
            std::fs::write(dir.join("src/grafana_dashboards").join(n), t).unwrap();
        }
        let rule_files: Vec<RuleFile> = rules
            .iter()
            .map(|(n, t)| RuleFile { path: n, text: t })
            .collect();
        let paths: Vec<String> = dashboards
            .iter()
            .map(|(n, _)| format!("src/grafana_dashboards/{n}"))
            .collect();
        let dash: Vec<Dashboard> = dashboards
            .iter()
            .zip(&paths)
            .map(|((_, t), p)| Dashboard { path: p, json: t })
            .collect();
        let topology = Topology {
            model: "m".into(),
            model_uuid: "6ac6d2f3-0b4e-4c43-8b3a-2a6e7c1f0d9e".into(),
            application: charm.into(),
            unit: format!("{charm}/0"),
            charm_name: charm.into(),
        };
        let jobs = vec![ScrapeJob::localhost("/metrics", 9100)];
        // The MAAS charms name the maas snap's log slot (canonical/maas snap/snapcraft.yaml
        // `maas-logs`) on snap installs; the library passes slots through as given.
        let slots: &[&str] = if charm.starts_with("maas-") {
            &["maas:maas-logs"]
        } else {
            &[]
        };
        let data = Provider {
            topology: Some(topology.clone()),
            metrics_rules: &rule_files,
            dashboards: &dash,
            scrape_jobs: jobs.clone(),
            log_slots: slots.iter().map(|s| s.to_string()).collect(),
            ..Provider::default()
        }
        .build()
        .unwrap_or_else(|e| panic!("{charm}: {e}"));
        let stdout = run_check(&dir, &data.to_databag()["config"], &topology, &jobs, slots);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(stdout.contains("agrees"), "{charm}: {stdout}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}
