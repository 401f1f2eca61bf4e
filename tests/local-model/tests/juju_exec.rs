//! `juju-exec` in bare mode: the `/usr/bin/juju-exec` wrapper of a machine called from a
//! process with no Juju environment, as a charm's background service calls it.

mod common;

use common::*;
use local_model::{LocalModel, Request, Substrate};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// A charm whose every hook reports where it was dispatched; the `slow` action holds a
/// `busy` marker in the charm dir for a second.
const DISPATCH: &str = r#"#!/bin/bash
set -u
echo "${JUJU_DISPATCH_PATH:-none}" >> seen
case "${JUJU_DISPATCH_PATH:-}" in
  actions/slow) touch busy; sleep 1; rm -f busy ;;
  *) status-set active "from $JUJU_DISPATCH_PATH" ;;
esac
"#;

/// Deploy one unit of the charm above as `app` on a bare machine.
fn deploy(dir: &Path) -> LocalModel {
    use std::os::unix::fs::PermissionsExt;
    let src = dir.join("xc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("metadata.yaml"),
        "name: xc\nsummary: juju-exec test\ndescription: juju-exec test\n",
    )
    .unwrap();
    std::fs::write(
        src.join("actions.yaml"),
        "slow:\n  description: Holds the busy marker.\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testcharms/lm-test/manifest.yaml"),
        src.join("manifest.yaml"),
    )
    .unwrap();
    std::fs::write(src.join("dispatch"), DISPATCH).unwrap();
    std::fs::set_permissions(src.join("dispatch"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let charm = dir.join("xc.charm");
    local_model::charm::pack_dir(&src, &charm).unwrap();
    let plan =
        local_model::bundle::charm_plan(&charm, Some("app".into()), 1, None, &[], &[]).unwrap();
    let m = model(dir);
    m.deploy_plan(plan, Substrate::Bare).unwrap();
    m.wait(T).expect("settle after deploy");
    m
}

/// Run a machine's `/usr/bin/<name>` wrapper from a process with nothing of Juju in its
/// environment (a systemd service's).
fn wrapper(m: &LocalModel, name: &str, args: &[&str]) -> Output {
    wrapper_env(m, name, args, &[])
}

/// The same with some variables set, as a hook's children would have them.
fn wrapper_env(m: &LocalModel, name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let path: PathBuf = m.host_path("app/0", &format!("/usr/bin/{name}")).unwrap();
    std::process::Command::new(&path)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn workload(m: &LocalModel) -> (String, String) {
    let st = m.status().unwrap();
    let w = &unit_status(&st, "app/0")["workload-status"];
    (
        w["current"].as_str().unwrap_or("").into(),
        w["message"].as_str().unwrap_or("").into(),
    )
}

#[test]
fn juju_exec_runs_a_hook_on_demand_and_returns_the_command_result() {
    let dir = scratch("juju-exec");
    let m = deploy(&dir);
    let charm_dir = m
        .host_path("app/0", "/var/lib/juju/agents/unit-app-0/charm")
        .unwrap();
    let (_, before) = workload(&m);
    assert_ne!(before, "from hooks/update-status");
    let hooks_before = unit_status(&m.status().unwrap(), "app/0")["hooks-run"].clone();

    // the way postgresql-ha's observer runs its update-status hook
    let o = wrapper(
        &m,
        "juju-exec",
        &[
            "-u",
            "app/0",
            "JUJU_DISPATCH_PATH=hooks/update-status",
            "./dispatch",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        workload(&m),
        ("active".into(), "from hooks/update-status".into())
    );
    let seen = std::fs::read_to_string(charm_dir.join("seen")).unwrap();
    assert_eq!(seen.lines().last(), Some("hooks/update-status"), "{seen}");
    // not a hook the agent decided: no hook counted
    assert_eq!(
        unit_status(&m.status().unwrap(), "app/0")["hooks-run"],
        hooks_before
    );
    let log = std::fs::read_to_string(dir.join("model/logs/unit-app-0.log")).unwrap();
    assert!(
        log.contains("running juju-exec: JUJU_DISPATCH_PATH=hooks/update-status ./dispatch"),
        "{log}"
    );

    // the hook environment, minus what only a hook the agent dispatches gets; cwd = charm dir
    let o = wrapper(&m, "juju-run", &["app/0", "env; echo cwd=$PWD"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let var = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(String::from)
    };
    assert_eq!(var("JUJU_UNIT_NAME").as_deref(), Some("app/0"));
    assert!(
        var("JUJU_CONTEXT_ID").is_some_and(|c| !c.is_empty()),
        "{out}"
    );
    assert_eq!(
        var("JUJU_CHARM_DIR").map(PathBuf::from),
        Some(charm_dir.clone())
    );
    assert_eq!(var("JUJU_HOOK_NAME").as_deref(), Some(""));
    assert_eq!(var("JUJU_DISPATCH_PATH"), None, "{out}");
    assert!(var("JUJU_MODEL_UUID").is_some(), "{out}");
    assert_eq!(var("cwd").map(PathBuf::from), Some(charm_dir.clone()));

    // a failing command: its code and stderr come back and the unit is not in error; its
    // status-set stands, as in Juju, where status is not buffered with the hook's changes
    let o = wrapper(
        &m,
        "juju-exec",
        &[
            "-u",
            "app/0",
            "status-set blocked nope; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stderr), "oops\n");
    let st = m.status().unwrap();
    assert_eq!(unit_status(&st, "app/0")["juju-status"]["current"], "idle");
    assert_eq!(workload(&m), ("blocked".into(), "nope".into()));
    assert!(m.unsettled().unwrap().is_empty());

    // a unit that does not exist
    let o = wrapper(&m, "juju-exec", &["-u", "nope/7", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("nope/7"), "{}", text(&o.stderr));
    // options Juju has and this one does not: a usage error
    let o = wrapper(&m, "juju-exec", &["--no-context", "app/0", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = wrapper(&m, "juju-exec", &["--bogus", "app/0", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "ERROR flag provided but not defined: --bogus\n"
    );

    // several arguments are quoted as Juju quotes them (juju/utils CommandString): `$HOME`
    // and the double space reach the command as written
    let o = wrapper(&m, "juju-exec", &["-u", "app/0", "echo", "a  b", "$HOME"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "a  b $HOME\n");

    // inside a hook context (what a hook's children inherit), refused before anything runs
    let seen_before = std::fs::read_to_string(charm_dir.join("seen")).unwrap();
    let o = wrapper_env(
        &m,
        "juju-exec",
        &[
            "-u",
            "app/0",
            "JUJU_DISPATCH_PATH=hooks/update-status",
            "./dispatch",
        ],
        &[("JUJU_CONTEXT_ID", "app/0-config-changed-42")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "ERROR juju-exec cannot be called from within a hook, have context \"app/0-config-changed-42\"\n"
    );
    assert_eq!(
        std::fs::read_to_string(charm_dir.join("seen")).unwrap(),
        seen_before
    );
    m.destroy().unwrap();
}

#[test]
fn juju_exec_waits_for_the_running_hook_of_its_machine() {
    let dir = scratch("juju-exec-lock");
    let m = deploy(&dir);
    let busy = m
        .host_path("app/0", "/var/lib/juju/agents/unit-app-0/charm/busy")
        .unwrap();
    m.request(&Request::Run {
        unit: "app/0".into(),
        action: "slow".into(),
        params: vec![],
    })
    .unwrap();
    let deadline = Instant::now() + T;
    while !busy.exists() {
        assert!(Instant::now() < deadline, "the slow action never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // asked while the action holds the marker: run only once it has ended
    let o = wrapper(
        &m,
        "juju-exec",
        &[
            "-u",
            "app/0",
            "if [ -e busy ]; then echo ran during a hook >&2; exit 7; fi; echo after",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "after\n");
    m.wait(T).unwrap();
    m.destroy().unwrap();
}
