//! Canonical's snap library (PyPI's charmlibs-snap 1.x: `SnapCache`, `Snap.ensure`, `snap.add`,
//! the API of charms.operator_libs_linux.v2.snap), unchanged, run inside a host against its
//! snapd API socket and `snap`: what it reads is what `snap install` did, and what it installs
//! (through the CLI, with the channel in literal quotes) is what `snap list` shows; the
//! configuration it sets (through the API) and gets (through `snap get -d`) round-trips.
//!
//! It needs a Python with the library: build/snaplib-venv, which `make check-snap-library`
//! (part of `make test`) builds from tests/snap_library/requirements.txt; `SNAP_LIBRARY_PYTHON`
//! names another (not under /tmp, which hosts have their own of). Without one the test is
//! skipped, saying so.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snap_library/snaps.py");

fn python() -> PathBuf {
    std::env::var_os("SNAP_LIBRARY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/snaplib-venv/bin/python")
        })
}

/// Two snaps with a daemon each; one offered on several channels.
fn catalog(prefix: &str) -> PathBuf {
    let dir = PathBuf::from("/tmp/hosts-catalogs").join(prefix);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, channels) in [
        (
            "lmlib",
            json!({"latest/stable": {"version": "3.6.1", "revision": "41"},
                   "3.8/edge": {"version": "3.8.0~beta1", "revision": "57"}}),
        ),
        (
            "lmother",
            json!({"latest/stable": {"version": "1.0", "revision": "3"},
                   "2.0/stable": {"version": "2.0.2", "revision": "9"}}),
        ),
    ] {
        let unit = format!("snap.{name}.daemon.service");
        std::fs::write(
            dir.join(&unit),
            "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        let snap = json!({
            "name": name, "kind": "snap",
            "files": [{"src": dir.join(&unit).display().to_string(),
                       "dst": format!("/etc/systemd/system/{unit}"), "mode": "0644"}],
            "enable": [unit],
            "channels": channels,
        });
        std::fs::write(dir.join(format!("{name}.json")), snap.to_string()).unwrap();
    }
    dir
}

/// Runs the library's script in the host; its JSON answer (Null when it prints nothing).
/// `p` (a path on the machine) as a host reaches it: through the machine's root, read-only at
/// `/run/local-model/machine` in every host (tests/hosts/README.md), because a checkout under
/// `/tmp` is not the host's own `/tmp` (CI clones there). The directory is resolved, the file
/// name kept: a venv's `python` is a link that must not be followed, or it is no venv.
fn seen_from_host(p: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(p.parent().unwrap()).unwrap();
    Path::new("/run/local-model/machine")
        .join(dir.strip_prefix("/").unwrap())
        .join(p.file_name().unwrap())
}

fn library(h: &hosts::Host, py: &Path, args: &[&str]) -> Value {
    let o = h
        .command(&seen_from_host(py).to_string_lossy())
        .arg(seen_from_host(Path::new(SCRIPT)))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "snaps.py {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

#[test]
fn canonicals_snap_library_reads_what_snap_installed() {
    if skip() {
        return;
    }
    let py = python();
    if !py.exists() {
        eprintln!(
            "SKIPPED: no Python with Canonical's snap library at {} (make check-snap-library builds it)",
            py.display()
        );
        return;
    }
    let mut t = TestLab::new("hslib", 66, Some(catalog("hslib")));
    let a = t.add("snaplib1");

    sh(&a, "snap install lmlib --channel=3.8/edge");
    let daemon = json!({"daemon": "simple", "daemon_scope": "system", "enabled": true,
                        "active": true, "activators": []});
    assert_eq!(
        library(&a, &py, &["read", "lmlib", "lmother", "nosuchsnap"]),
        json!({
            "lmlib": {"present": true, "state": "latest", "channel": "3.8/edge",
                      "revision": "57", "version": "3.8.0~beta1", "confinement": "strict",
                      "services": {"daemon": daemon}},
            // Not installed: looked up in the store (find), available on its default channel.
            "lmother": {"present": false, "state": "available", "channel": "latest/stable",
                        "revision": "3", "version": "1.0", "confinement": "strict"},
            "nosuchsnap": {"error": "SnapNotFoundError"},
        })
    );

    // The library installs and refreshes through `snap`, with `--channel="<channel>"` as one
    // argument and no shell: the channel must arrive unquoted.
    library(&a, &py, &["add", "lmother", "2.0/stable"]);
    assert!(
        sh(&a, "snap list lmother").contains("2.0/stable"),
        "{}",
        sh(&a, "snap list lmother")
    );
    library(&a, &py, &["ensure", "lmlib", "latest/stable"]);
    let read = library(&a, &py, &["read", "lmlib", "lmother"]);
    assert_eq!(
        (
            &read["lmlib"]["channel"],
            &read["lmlib"]["revision"],
            &read["lmlib"]["version"]
        ),
        (&json!("latest/stable"), &json!("41"), &json!("3.6.1"))
    );
    assert_eq!(
        (
            &read["lmother"]["present"],
            &read["lmother"]["channel"],
            &read["lmother"]["revision"]
        ),
        (&json!(true), &json!("2.0/stable"), &json!("9"))
    );

    // Configuration: set goes through the API (untyped: every value a string), get through
    // `snap get` (typed: `-d`, a JSON document).
    library(
        &a,
        &py,
        &["set", "lmlib", r#"{"mode": "region", "port": 5240}"#],
    );
    assert_eq!(sh(&a, "snap get lmlib port"), "5240");
    assert_eq!(
        library(&a, &py, &["get", "lmlib", "port", "typed"]),
        json!("5240")
    );
    library(
        &a,
        &py,
        &["set", "lmlib", r#"{"port": 5241, "debug": true}"#, "typed"],
    );
    assert_eq!(
        library(&a, &py, &["get", "lmlib", "port", "typed"]),
        json!(5241)
    );
    assert_eq!(
        library(&a, &py, &["get", "lmlib", "debug", "typed"]),
        json!(true)
    );
    assert_eq!(library(&a, &py, &["get", "lmlib", "mode"]), json!("region"));

    // A service the CLI stopped is inactive to the library.
    sh(&a, "snap stop lmother");
    let read = library(&a, &py, &["read", "lmother"]);
    assert_eq!(
        read["lmother"]["services"]["daemon"]["active"],
        json!(false)
    );
    t.destroy();
}
