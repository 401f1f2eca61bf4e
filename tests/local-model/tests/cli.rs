//! The `lm` command line end to end (bare machines): deploy a charm, co-locate a unit,
//! integrate a subordinate, config, run an action, status in both formats, destroy.

mod common;

use common::*;
use std::process::Command;

fn lm(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(lm_bin())
        .args(args)
        .env("LM_MODEL_DIR", dir.join("model"))
        .env("LM_SUBSTRATE", "bare")
        .env("LM_RETRY_BASE_MS", "0")
        .env("LM_UPDATE_STATUS_MS", "0")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = lm(dir, args);
    assert_eq!(code, 0, "lm {args:?}: {err}");
    out
}

#[test]
fn cli_drives_a_model() {
    let dir = scratch("cli");
    write_bundle(&dir, "");
    let charm = dir.join("charms/lm-test.charm");
    let sub = dir.join("charms/lm-test-sub.charm");
    let rec = format!("record-dir={}", dir.join("rec").display());
    let blob = format!("blob={}", dir.join("blob.txt").display());
    let out = ok(
        &dir,
        &[
            "deploy",
            charm.to_str().unwrap(),
            "web",
            "-n",
            "2",
            "--config",
            &rec,
            "--config",
            "greeting=hey",
            "--resource",
            &blob,
        ],
    );
    assert_eq!(out, "Added unit web/0\nAdded unit web/1\n");
    ok(&dir, &["deploy", sub.to_str().unwrap(), "--config", &rec]);
    ok(&dir, &["integrate", "web", "lm-test-sub"]);
    assert_eq!(
        ok(&dir, &["add-unit", "web", "--to", "web/0"]),
        "Added unit web/2\n"
    );
    ok(&dir, &["wait", "--timeout", "60"]);

    let st: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["status", "--format=json"])).unwrap();
    assert_eq!(
        unit_status(&st, "web/2")["machine"],
        unit_status(&st, "web/0")["machine"],
        "co-located"
    );
    assert_eq!(
        units_in(&st),
        vec![
            "lm-test-sub/0",
            "lm-test-sub/1",
            "lm-test-sub/2",
            "web/0",
            "web/1",
            "web/2"
        ]
    );
    let table = ok(&dir, &["status"]);
    assert!(
        table.contains("web/0*") && table.contains("  lm-test-sub/0"),
        "{table}"
    );

    let cfg = ok(&dir, &["config", "web"]);
    assert!(cfg.contains("greeting: hey"), "{cfg}");
    let (code, _, err) = lm(&dir, &["config", "web", "serve-port=abc"]);
    assert_ne!(code, 0);
    assert!(err.contains("expected int"), "{err}");

    let run = ok(&dir, &["run", "web/leader", "hello", "who=cli"]);
    assert!(
        run.contains("greeting: hey cli") && run.contains("status: completed"),
        "{run}"
    );
    let (code, _, err) = lm(&dir, &["run", "web/1", "fail"]);
    assert_ne!(code, 0);
    assert!(err.contains("told to fail"), "{err}");

    let (code, _, err) = lm(&dir, &["integrate", "web", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("application \"nope\" not found"), "{err}");
    let (code, _, err) = lm(&dir, &["remove-unit", "lm-test-sub/0"]);
    assert_ne!(code, 0);
    assert!(err.contains("subordinate"), "{err}");

    let log = ok(&dir, &["logs", "web/0", "-n", "500"]);
    assert!(
        log.contains("INFO web/0 running install hook") && log.contains("tool is-leader"),
        "{log}"
    );
    ok(&dir, &["remove-unit", "web/2"]);
    ok(&dir, &["wait", "--timeout", "60"]);
    let st: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["status", "--format=json"])).unwrap();
    assert!(!units_in(&st).contains(&"web/2".to_string()));
    assert!(
        st["machines"].get("0").is_some(),
        "machine 0 still hosts web/0"
    );

    ok(&dir, &["destroy"]);
    assert!(!dir.join("model").exists());
    let (code, _, err) = lm(&dir, &["status"]);
    assert_ne!(code, 0);
    assert!(err.contains("no daemon answers"), "{err}");
}

/// `lm logs app/0 | head`: the reader goes away before the log is written out; lm stops
/// quietly with exit 0 instead of panicking on the broken pipe.
#[test]
fn logs_into_a_pipe_closed_early_end_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = scratch("cli-logs-pipe");
    let logs = dir.join("model/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // far more than a pipe holds, so lm is still writing when the reader leaves
    let line = "INFO app/0 juju-log a line of the unit's log\n";
    std::fs::write(logs.join("unit-app-0.log"), line.repeat(40_000)).unwrap();
    let mut child = Command::new(lm_bin())
        .args(["logs", "app/0"])
        .env("LM_MODEL_DIR", dir.join("model"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; line.len()];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(String::from_utf8_lossy(&first), line);
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );
}
