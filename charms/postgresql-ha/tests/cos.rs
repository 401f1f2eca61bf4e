//! cos-agent: what the collector subordinate receives (Arrange state → Act one hook → Assert
//! databag), and that the dashboard and rules sent query only what the jobs expose.
mod common;

use charm_lib::cos_agent::{
    dashboard_exprs, dashboard_uid, lzma_base64_decode, promql_metric_names, rule_exprs,
};
use charm_lib::testing::{Relation, Trigger, MODEL_UUID};
use common::*;
use serde_json::Value;

const COS: u32 = 9;

fn collector() -> Relation {
    Relation::new(COS, "cos-agent", "opentelemetry-collector").remote_unit(0, &[])
}

fn sent(out: &charm_lib::testing::Output) -> Value {
    assert!(!out.failed(), "{:?}", out.error);
    let rel = out.state.relation(COS).expect("the cos-agent relation");
    serde_json::from_str(&rel.local_unit_data["config"]).expect("config is JSON")
}

#[test]
fn the_collector_gets_every_job_as_loopback_http_the_rules_and_the_dashboard() {
    let st = leader_primary().with_relation(collector());
    let out = harness().run(Trigger::RelationJoined(COS, 0), &st).unwrap();
    let data = sent(&out);

    assert!(
        out.state
            .machine
            .text("/etc/postgresql-ha/tls/ca.pem")
            .is_some_and(|ca| ca.starts_with("-----BEGIN CERTIFICATE-----")),
        "reconcile wrote the application's CA"
    );

    // Every job is plain http on 127.0.0.1 with no tls_config: no file a strictly confined
    // collector could not read, no key (Patroni through the charm's relay, etcd through its
    // own metrics listener).
    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    let by_name: Vec<(String, String)> = jobs
        .iter()
        .map(|j| {
            let name = j["job_name"].as_str().unwrap();
            let short = name
                .strip_prefix("postgresql-ha_")
                .and_then(|r| r.rsplit_once('_'))
                .map(|(n, _)| n.to_string())
                .unwrap_or_else(|| panic!("{name}"));
            (
                short,
                j["static_configs"][0]["targets"][0]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_name,
        [
            ("certificates".to_string(), "127.0.0.1:9957".to_string()),
            ("etcd".to_string(), "127.0.0.1:2381".to_string()),
            ("patroni".to_string(), "127.0.0.1:9956".to_string()),
            ("postgresql".to_string(), "127.0.0.1:9187".to_string()),
        ]
    );
    for j in jobs {
        assert!(
            j.get("tls_config").is_none_or(|t| t.is_null()),
            "loopback http: {j}"
        );
        assert!(
            j.get("scheme").is_none_or(|s| s.is_null() || s == "http"),
            "{j}"
        );
        assert_eq!(j["metrics_path"], "/metrics", "{j}");
        // the default synchronous-mode
        assert_eq!(
            j["static_configs"][0]["labels"]["patroni_synchronous_mode"], "quorum",
            "{j}"
        );
    }
    assert!(
        !data.to_string().contains("/etc/postgresql-ha/tls"),
        "no path under the unit's TLS directory: {data}"
    );

    let groups = data["metrics_alert_rules"]["groups"].as_array().unwrap();
    let alerts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for a in [
        "PostgresqlNoPrimary",
        "PostgresqlNoSynchronousStandby",
        "PostgresqlReplicationLag",
        "EtcdQuorumAtRisk",
        "EtcdNoLeader",
        "HostDown",
        "PostgresqlConnectionsNearMax",
        "CertificateNearExpiry",
        "CertificateUnreadable",
    ] {
        assert!(alerts.contains(&a), "{a} missing from {alerts:?}");
    }
    assert_eq!(
        groups[0]["rules"][0]["labels"]["juju_model_uuid"],
        MODEL_UUID
    );

    let dash: Value =
        serde_json::from_str(&lzma_base64_decode(data["dashboards"][0].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(dash["title"], "PostgreSQL HA (Patroni and etcd)");
    assert_eq!(
        dash["uid"],
        dashboard_uid("postgresql-ha", "src/grafana_dashboards/postgresql-ha.json")
    );
}

#[test]
fn the_synchronous_mode_label_follows_the_option() {
    let st = leader_primary()
        .with_config("synchronous-mode", "on")
        .with_relation(collector());
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();
    let data = sent(&out);
    for j in data["metrics_scrape_jobs"].as_array().unwrap() {
        assert_eq!(
            j["static_configs"][0]["labels"]["patroni_synchronous_mode"],
            "on"
        );
    }
}

#[test]
fn the_dashboard_and_rules_query_only_metrics_the_jobs_expose() {
    let exposed = postgresql_ha::cos::exposed();
    assert!(
        exposed.contains(&"patroni_sync_standby") && exposed.contains(&"etcd_server_has_leader")
    );
    let mut exprs = Vec::new();
    for d in postgresql_ha::cos::DASHBOARDS {
        exprs.extend(dashboard_exprs(d.json).unwrap());
    }
    for r in postgresql_ha::cos::RULES {
        exprs.extend(rule_exprs(r.text).unwrap());
    }
    assert!(exprs.len() >= 15, "{exprs:?}");
    for e in &exprs {
        let names = promql_metric_names(e);
        assert!(!names.is_empty(), "{e}");
        for m in names {
            assert!(exposed.contains(&m.as_str()), "{m} in {e:?} is not exposed");
        }
    }
}

#[test]
fn the_exporter_reads_postgresql_as_the_monitoring_role_on_loopback() {
    // Arrange: a running primary whose leader has not created the monitoring role yet.
    let mut st = leader_primary();
    st.relations
        .iter_mut()
        .find(|r| r.id == 1)
        .unwrap()
        .local_app_data
        .remove("monitoring-role");
    // Act
    let out = harness().run_ok(Trigger::UpdateStatus, &st);
    // Assert: the role (pg_monitor, no password), the exporter's settings, the key recorded.
    let role_sql = find_command(
        &out,
        |l| l.starts_with("psql"),
        "the monitoring role is created",
    );
    let stdin = out
        .runs
        .iter()
        .find(|c| c.argv().join(" ") == role_sql)
        .and_then(|c| c.stdin.clone())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        stdin.contains("GRANT pg_monitor TO \"monitoring\"") && stdin.contains("PASSWORD NULL"),
        "{stdin}"
    );
    let defaults = out
        .state
        .machine
        .text("/etc/default/prometheus-postgres-exporter")
        .unwrap();
    assert!(
        defaults.contains("user=monitoring") && defaults.contains("host=/run/postgresql-ha"),
        "{defaults}"
    );
    assert!(
        defaults.contains("--web.listen-address=127.0.0.1:9187"),
        "{defaults}"
    );
    assert!(
        !defaults.contains("password"),
        "peer authentication: no password"
    );
    let hba = strings(&patroni_yml(&out.state)["postgresql"]["pg_hba"]).join("\n");
    assert!(
        hba.contains("local postgres monitoring peer map=monitoring"),
        "{hba}"
    );
    assert_eq!(
        patroni_yml(&out.state)["postgresql"]["pg_ident"][0],
        "monitoring prometheus monitoring"
    );
    assert_eq!(
        out.state
            .relation(1)
            .unwrap()
            .local_app_data
            .get("monitoring-role")
            .map(String::as_str),
        Some("1")
    );
    // Once recorded, no more SQL for it.
    let again = harness().run_ok(Trigger::UpdateStatus, &out.state);
    assert!(!ran(&again, |l| l.starts_with("psql")));
}

#[test]
fn with_a_backup_repository_the_backup_age_is_scraped_and_alerted_on() {
    // Arrange: the collector, and an S3 provider that has answered.
    let st = leader_primary().with_relation(collector()).with_relation(
        Relation::new(20, "s3-parameters", "s3-integrator")
            .remote_unit(0, &[])
            .remote_app_data(&[
                ("access-key", "AK"),
                ("secret-key", "SK"),
                ("bucket", "b"),
                ("endpoint", "https://s3.example.com"),
            ]),
    );
    // Act
    let out = harness().run(Trigger::RelationJoined(COS, 0), &st).unwrap();
    // Assert: a fourth job, on the exporter's loopback port, and the backup rules.
    let data = sent(&out);
    let jobs = data["metrics_scrape_jobs"].as_array().unwrap();
    let backup = jobs
        .iter()
        .find(|j| j["job_name"].as_str().unwrap().contains("_pgbackrest_"))
        .unwrap_or_else(|| panic!("no pgbackrest job in {jobs:?}"));
    assert_eq!(backup["static_configs"][0]["targets"][0], "127.0.0.1:9959");
    assert_eq!(jobs.len(), 5);
    let alerts: Vec<&str> = data["metrics_alert_rules"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(alerts.contains(&"PostgresqlBackupTooOld"), "{alerts:?}");
    // The exporter runs on the unit.
    let svc = out
        .state
        .machine
        .services
        .get("postgresql-ha-backup-metrics.service")
        .expect("backup exporter service");
    assert!(svc.enabled && svc.active);
}

#[test]
fn without_the_applications_ca_on_the_unit_only_the_loopback_exporter_is_scraped() {
    // Arrange: a valid config, and no CA file yet (Patroni and etcd serve nothing without it)
    let spec: serde_json::Value = serde_yaml::from_str(include_str!("../config.yaml")).unwrap();
    let defaults = spec["options"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, o)| Some((k.clone(), o.get("default")?.clone())))
        .collect();
    let cfg = postgresql_ha::config::Config::from_raw(&defaults).expect("config.yaml's defaults");

    // Act
    let jobs = postgresql_ha::cos::jobs(&cfg, None, false);

    // Assert
    let names: Vec<_> = jobs.iter().map(|j| j.job_name.clone().unwrap()).collect();
    assert_eq!(names, ["postgresql"]);
    assert!(jobs.iter().all(|j| j.tls_config.is_none()));
}

#[test]
fn an_etcd_member_from_an_earlier_revision_gets_its_metrics_listener_at_its_next_start() {
    // Arrange: a running primary whose etcd configuration was rendered without the metrics
    // listener (by the revision before), etcd running on its data.
    let st = leader_primary().with_relation(collector());
    let settled = harness().run_ok(Trigger::UpdateStatus, &st);
    let yml = "/etc/postgresql-ha/etcd.conf.yml";
    let full = settled
        .state
        .machine
        .text(yml)
        .expect("etcd's configuration");
    let old: String = full
        .lines()
        .filter(|l| !l.starts_with("listen-metrics-urls:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, full, "the rendered file has the listener");
    let mut before = settled.state.clone();
    before.machine = before.machine.with_file(
        yml,
        &old,
        charm_lib::FileOptions::new("root", "etcd", 0o640),
    );
    // etcd has its data: the charm renders the file no more.
    before.machine = before.machine.with_file(
        "/var/lib/postgresql-ha-etcd/member",
        "",
        charm_lib::FileOptions::new("etcd", "etcd", 0o700),
    );

    // Act: a hook of the new revision; etcd's listener does not answer (etcd runs as started).
    let out = harness().run_ok(Trigger::UpgradeCharm, &before);

    // Assert: the key joined the file, nothing else changed, and etcd was not restarted for it
    // (a refresh does this on every unit at once); the etcd job stays on the client port with
    // the key by path until the listener answers.
    let now = out.state.machine.text(yml).unwrap();
    assert_eq!(
        now,
        format!("{old}listen-metrics-urls: http://127.0.0.1:2381\n")
    );
    assert!(
        !out.command_lines()
            .iter()
            .any(|l| l.starts_with("systemctl")
                && l.contains("postgresql-ha-etcd")
                && !l.starts_with("systemctl is-active")
                && !l.starts_with("systemctl enable")),
        "{:#?}",
        out.command_lines()
    );
    let etcd_job = |out: &charm_lib::testing::Output| {
        sent(out)["metrics_scrape_jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"].as_str().unwrap().contains("_etcd_"))
            .cloned()
            .unwrap()
    };
    let j = etcd_job(&out);
    assert_eq!(
        j["static_configs"][0]["targets"][0], "127.0.0.1:2379",
        "{j}"
    );
    assert_eq!(j["scheme"], "https");
    assert_eq!(
        j["tls_config"]["key_file"],
        "/etc/postgresql-ha/tls/unit.key"
    );
    assert!(j["tls_config"]["ca"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    // The file is not touched again by the next hook.
    let again = harness().run_ok(Trigger::UpdateStatus, &out.state);
    assert_eq!(again.state.machine.text(yml).unwrap(), now);
    assert_eq!(
        etcd_job(&again)["static_configs"][0]["targets"][0],
        "127.0.0.1:2379"
    );

    // Act: etcd restarted by something else (a reboot); its listener answers now.
    let mut restarted = again.state.clone();
    restarted.machine = restarted.machine.respond(
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "2",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:2381/health",
        ],
        charm_lib::CmdOutput::ok("200"),
    );
    let moved = harness().run_ok(Trigger::UpdateStatus, &restarted);

    // Assert: the job moves to the listener, plain http.
    let j = etcd_job(&moved);
    assert_eq!(
        j["static_configs"][0]["targets"][0], "127.0.0.1:2381",
        "{j}"
    );
    assert!(j.get("tls_config").is_none_or(|t| t.is_null()), "{j}");
}

#[test]
fn the_certificate_exporter_serves_the_units_certificates_until_the_unit_leaves() {
    // Arrange: a running primary with a collector, no exporter yet.
    let st = leader_primary().with_relation(collector());
    let unit = "/etc/systemd/system/postgresql-ha-cert-metrics.service";
    assert!(st.machine.text(unit).is_none());

    // Act: one hook.
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();

    // Assert: the charm's binary serves the CA and the unit certificate (postgresql.pem and
    // trusted.pem are copies of them without a site CA), and the job scrapes it.
    assert!(!out.failed(), "{:?}", out.error);
    let text = out.state.machine.text(unit).expect("the exporter's unit");
    assert!(
        text.contains("/charm/dispatch cert-metrics 9957 /etc/postgresql-ha/tls/ca.pem /etc/postgresql-ha/tls/unit.pem\n"),
        "{text}"
    );
    let svc = &out.state.machine.services["postgresql-ha-cert-metrics.service"];
    assert!(svc.enabled && svc.active);
    let jobs = sent(&out)["metrics_scrape_jobs"].clone();
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["static_configs"][0]["targets"][0] == "127.0.0.1:9957"),
        "{jobs}"
    );

    // A second hook neither rewrites nor restarts it.
    let again = harness().run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(
        !again
            .command_lines()
            .iter()
            .any(|l| l.contains("start postgresql-ha-cert-metrics") || l.contains("daemon-reload")),
        "{:#?}",
        again.command_lines()
    );

    // The unit stopping takes the exporter and its unit away.
    let stop = harness().run(Trigger::Stop, &out.state).unwrap();
    assert!(!stop.failed(), "{:?}", stop.error);
    assert!(stop.state.machine.text(unit).is_none());
    assert!(!stop
        .state
        .machine
        .is_active("postgresql-ha-cert-metrics.service"));
}

#[test]
fn patronis_metrics_relay_runs_once_the_unit_has_its_certificate_until_the_unit_leaves() {
    // Arrange: a running primary with a collector, no relay yet.
    let st = leader_primary().with_relation(collector());
    let unit = "/etc/systemd/system/postgresql-ha-patroni-metrics.service";
    assert!(st.machine.text(unit).is_none());

    // Act: one hook.
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();

    // Assert: the charm's binary relays on the port the patroni job scrapes, as root (the
    // unit's key is root:postgres 0640), with no path or secret on its command line; Patroni's
    // REST API still wants a client certificate.
    assert!(!out.failed(), "{:?}", out.error);
    let text = out.state.machine.text(unit).expect("the relay's unit");
    let exec = text
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.ends_with("/charm/dispatch patroni-metrics 9956"),
        "{text}"
    );
    assert!(!text.contains("User="), "{text}");
    let svc = &out.state.machine.services["postgresql-ha-patroni-metrics.service"];
    assert!(svc.enabled && svc.active);
    assert_eq!(
        patroni_yml(&out.state)["restapi"]["verify_client"],
        "required"
    );

    // A second hook neither rewrites nor restarts it.
    let again = harness().run(Trigger::UpdateStatus, &out.state).unwrap();
    assert!(
        !again
            .command_lines()
            .iter()
            .any(|l| l.contains("postgresql-ha-patroni-metrics")
                && !l.starts_with("systemctl is-active")
                && !l.starts_with("systemctl enable")
                || l.contains("daemon-reload")),
        "{:#?}",
        again.command_lines()
    );

    // The unit stopping takes the relay and its unit away.
    let stop = harness().run(Trigger::Stop, &out.state).unwrap();
    assert!(!stop.failed(), "{:?}", stop.error);
    assert!(stop.state.machine.text(unit).is_none());
    assert!(!stop
        .state
        .machine
        .is_active("postgresql-ha-patroni-metrics.service"));
}
