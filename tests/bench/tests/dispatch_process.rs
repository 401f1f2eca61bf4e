//! A charm-lib charm run as a real process, the way Juju runs `dispatch`: bad input gives a
//! clear error and a non-zero exit, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHARM: &str = env!("CARGO_BIN_EXE_bench-charm");

/// A directory of fake hook tools; each named tool prints `out` (or fails with `fail`).
struct Tools(PathBuf);

impl Tools {
    fn new(name: &str, tools: &[(&str, &str)]) -> Tools {
        let d =
            std::env::temp_dir().join(format!("charm-lib-process-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (tool, body) in tools {
            let p = d.join(tool);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Tools(d)
    }

    fn run(&self, env: &[(&str, &str)]) -> Output {
        let vars: BTreeMap<&str, &str> = [
            ("JUJU_UNIT_NAME", "bench/0"),
            ("JUJU_MODEL_NAME", "m"),
            ("JUJU_VERSION", "3.6.14"),
        ]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
        Command::new(CHARM)
            .env_clear()
            .envs(vars)
            .env("PATH", format!("{}:/usr/bin:/bin", self.0.display()))
            .env("BENCH_OUT", self.0.join("out.conf"))
            .env("BENCH_USER", "root")
            .output()
            .unwrap()
    }

    fn out(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 (not a panic's 101, not a signal) with `needle` in what Juju would log.
fn assert_clean_failure(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(o));
    assert!(
        stderr(o).contains(needle),
        "wanted {needle:?} in: {}",
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

const GOOD_TOOLS: &[(&str, &str)] = &[
    ("config-get", r#"echo '{"port": 8080, "name": "bench"}'"#),
    ("relation-ids", r#"echo '["db:1"]'"#),
    ("relation-list", r#"echo '["pg/0"]'"#),
    ("relation-get", r#"echo '{"host": "10.0.0.5"}'"#),
    (
        "status-set",
        "echo \"$@\" >> \"$(dirname \"$0\")/status.log\"",
    ),
    ("juju-log", "echo \"$@\" >> \"$(dirname \"$0\")/juju.log\""),
    ("is-leader", "echo true"),
];

#[test]
fn a_good_hook_exits_zero_and_sets_status() {
    let t = Tools::new("good", GOOD_TOOLS);
    let o = t.run(&[
        ("JUJU_DISPATCH_PATH", "hooks/config-changed"),
        ("JUJU_HOOK_NAME", "config-changed"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(t.out().join("status.log"))
            .unwrap()
            .trim(),
        "-- active bench on 8080"
    );
    assert_eq!(
        std::fs::read_to_string(t.out().join("out.conf")).unwrap(),
        "name=bench\nport=8080\n"
    );
}

#[test]
fn a_hook_tool_missing_from_path() {
    let t = Tools::new("missing", &[("status-set", "true"), ("juju-log", "true")]);
    let o = t.run(&[("JUJU_DISPATCH_PATH", "hooks/config-changed")]);
    assert_clean_failure(&o, "hook tool config-get not found on PATH");
}

#[test]
fn malformed_json_from_a_tool() {
    let t = Tools::new(
        "garbage",
        &[("config-get", "echo '{port: 80'"), ("juju-log", "true")],
    );
    let o = t.run(&[("JUJU_DISPATCH_PATH", "hooks/config-changed")]);
    assert_clean_failure(&o, "hook tool config-get printed unexpected output");
}

#[test]
fn a_failing_tool_carries_its_stderr() {
    let t = Tools::new(
        "failing",
        &[
            ("config-get", "echo 'ERROR permission denied' >&2; exit 1"),
            ("juju-log", "true"),
        ],
    );
    let o = t.run(&[("JUJU_DISPATCH_PATH", "hooks/config-changed")]);
    assert_clean_failure(&o, "config-get failed (exit 1): ERROR permission denied");
}

#[test]
fn an_unknown_dispatch_path() {
    let t = Tools::new("unknown", GOOD_TOOLS);
    let o = t.run(&[("JUJU_DISPATCH_PATH", "hooks/frobnicate")]);
    assert_clean_failure(&o, "JUJU_DISPATCH_PATH: unknown hook \"frobnicate\"");
    let o = t.run(&[]);
    assert_clean_failure(&o, "JUJU_DISPATCH_PATH: not set");
}

#[test]
fn a_relation_id_of_another_endpoint() {
    let t = Tools::new("other-endpoint", GOOD_TOOLS);
    let o = t.run(&[
        ("JUJU_DISPATCH_PATH", "hooks/db-relation-changed"),
        ("JUJU_RELATION", "db"),
        ("JUJU_RELATION_ID", "peers:1"),
        ("JUJU_REMOTE_APP", "pg"),
        ("JUJU_REMOTE_UNIT", "pg/0"),
    ]);
    assert_clean_failure(
        &o,
        "JUJU_RELATION_ID: \"peers:1\" belongs to another endpoint",
    );
}
