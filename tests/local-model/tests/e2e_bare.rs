//! End-to-end in bare mode: the test bundle (3 units + a subordinate + peers + a relation
//! to another app) deployed through the daemon, checked against Juju's documented order.

mod common;

use common::*;
use local_model::{FaultOp, Substrate};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn expected_env_names(relation: bool) -> Vec<&'static str> {
    let mut v = vec![
        "APT_LISTCHANGES_FRONTEND",
        "CHARM_DIR",
        "CLOUD_API_VERSION",
        "DEBIAN_FRONTEND",
        "JUJU_AGENT_SOCKET_ADDRESS",
        "JUJU_AGENT_SOCKET_NETWORK",
        "JUJU_API_ADDRESSES",
        "JUJU_AVAILABILITY_ZONE",
        "JUJU_CHARM_DIR",
        "JUJU_CHARM_FTP_PROXY",
        "JUJU_CHARM_HTTPS_PROXY",
        "JUJU_CHARM_HTTP_PROXY",
        "JUJU_CHARM_NO_PROXY",
        "JUJU_CONTEXT_ID",
        "JUJU_DISPATCH_PATH",
        "JUJU_HOOK_NAME",
        "JUJU_MACHINE_ID",
        "JUJU_MODEL_NAME",
        "JUJU_MODEL_UUID",
        "JUJU_PRINCIPAL_UNIT",
        "JUJU_SLA",
        "JUJU_UNIT_NAME",
        "JUJU_VERSION",
        "LANG",
        "PATH",
        "TERM",
    ];
    if relation {
        v.extend([
            "JUJU_RELATION",
            "JUJU_RELATION_ID",
            "JUJU_REMOTE_APP",
            "JUJU_REMOTE_UNIT",
        ]);
    }
    v.sort();
    v
}

fn env_names(dir: &std::path::Path, unit: &str, hook: &str) -> Vec<String> {
    let p = dir
        .join("rec")
        .join(format!("env-{}-{hook}", unit.replace('/', "-")));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    // PWD, SHLVL and _ are bash's own
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .filter(|k| !["PWD", "SHLVL", "_"].contains(&k.as_str()))
        .collect();
    v.sort();
    v
}

#[test]
fn bundle_in_bare_mode_follows_juju_order() {
    let dir = scratch("bare");
    let bundle = write_bundle(&dir, "");
    let m = model(&dir);
    let added = m
        .deploy_bundle(&bundle, &[], Substrate::Bare)
        .expect("deploy");
    assert_eq!(added, vec!["a/0", "a/1", "a/2", "b/0"]);
    m.wait(T).expect("settle after deploy");

    let st = m.status().unwrap();
    assert_eq!(
        units_in(&st),
        vec!["a/0", "a/1", "a/2", "b/0", "sub/0", "sub/1", "sub/2"]
    );
    assert_eq!(unit_status(&st, "a/0")["leader"], true);
    assert_eq!(st["applications"]["a"]["version"], "1.2.3");
    for u in ["a/0", "a/1", "a/2", "b/0"] {
        assert_eq!(
            unit_status(&st, u)["workload-status"]["current"],
            "active",
            "{u}: {st}"
        );
    }

    // --- setup order (reference §3.1) and relation order (§3.2) on every unit
    for u in ["a/0", "a/1", "a/2", "b/0", "sub/0", "sub/1", "sub/2"] {
        let recs = records(&dir, u);
        let hooks = names(&recs);
        let leader = u.ends_with("/0");
        let mut h = hooks.clone();
        // leader-set by the new leader may fire leader-settings-changed again: collapse repeats
        h.dedup_by(|a, b| a == b && a == "leader-settings-changed");
        let start = check_setup_order(u, &h, leader);
        let created: Vec<&String> = h[1..start]
            .iter()
            .filter(|x| x.ends_with("-relation-created"))
            .collect();
        // a's implicit juju-info side (towards sub) runs no hook, relation-created included
        let want_created = match u {
            _ if u.starts_with("sub") => 1,
            _ => 2,
        };
        assert_eq!(created.len(), want_created, "{u}: {hooks:?}");
        check_relation_order(u, &recs);
    }
    // the documented sequences, exactly, where timing cannot reorder them
    assert_eq!(
        names(&records(&dir, "sub/1")),
        vec![
            "install",
            "host-relation-created",
            "leader-settings-changed",
            "config-changed",
            "start",
            "host-relation-joined",
            "host-relation-changed"
        ]
    );
    assert_eq!(
        names(&records(&dir, "b/0"))[..6].to_vec(),
        vec![
            "install",
            "cluster-relation-created",
            "client-relation-created",
            "leader-elected",
            "config-changed",
            "start"
        ]
    );
    // peers: every a unit joined the two others; the subordinate only sees its principal
    for u in ["a/0", "a/1", "a/2"] {
        let recs = records(&dir, u);
        let mut peers: Vec<String> = recs
            .iter()
            .filter(|r| r.hook == "cluster-relation-joined")
            .map(|r| r.var("JUJU_REMOTE_UNIT").to_string())
            .collect();
        peers.sort();
        let want: Vec<String> = ["a/0", "a/1", "a/2"]
            .iter()
            .filter(|x| **x != u)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(peers, want, "{u}");
        // no hook on the implicit side of a juju-info relation (worker/uniter/relation/
        // resolver.go skips implicit relations), yet the principal is in scope for its sub
        assert!(
            !recs.iter().any(|r| r.hook.starts_with("juju-info-")),
            "{u}: {:?}",
            names(&recs)
        );
        // its subordinate: numbered in the order the principals entered the scope
        let subs = unit_status(&st, u)["subordinates"].as_object().unwrap();
        assert_eq!(subs.len(), 1, "{u}: {st}");
        let sub = subs.keys().next().unwrap().clone();
        let s = records(&dir, &sub);
        let principals: Vec<&str> = s
            .iter()
            .filter(|r| r.hook == "host-relation-joined")
            .map(|r| r.var("JUJU_REMOTE_UNIT"))
            .collect();
        assert_eq!(principals, vec![u], "{sub}: container scope");
        assert!(
            s.iter().all(|r| r.var("JUJU_PRINCIPAL_UNIT") == u),
            "{sub} principal"
        );
        assert!(
            s.iter()
                .any(|r| r.notes.iter().any(|x| x.starts_with("principal-addr 127."))),
            "{sub} read its principal's address"
        );
    }

    // --- each hook's wall time is logged once, after it ran, with its exit code (make bench
    // reads these lines); as many lines as hooks the unit ran
    let log = std::fs::read_to_string(dir.join("model/logs/unit-a-1.log")).unwrap();
    let ran: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("INFO a/1 ran "))
        .collect();
    assert_eq!(
        ran.len() as u64,
        unit_status(&st, "a/1")["hooks-run"].as_u64().unwrap(),
        "{log}"
    );
    let install = ran
        .iter()
        .find(|l| l.starts_with("INFO a/1 ran install hook in "))
        .unwrap_or_else(|| panic!("{ran:?}"));
    let ms: u64 = install
        .split(" in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{install}"));
    assert!(ms < 60_000 && install.ends_with("ms (exit 0)"), "{install}");
    let started = log.find("INFO a/1 running install hook").unwrap();
    assert!(
        log.find("INFO a/1 ran install hook").unwrap() > started,
        "logged after the hook ran"
    );

    // --- environment: exactly the documented variables, no HOME
    assert_eq!(env_names(&dir, "a/1", "install"), expected_env_names(false));
    assert_eq!(
        env_names(&dir, "a/1", "web-relation-joined"),
        expected_env_names(true)
    );
    let joined = records(&dir, "a/1")
        .into_iter()
        .find(|r| r.hook == "web-relation-joined")
        .unwrap();
    assert_eq!(
        joined.var("JUJU_DISPATCH_PATH"),
        "hooks/web-relation-joined"
    );
    assert!(joined.var("JUJU_RELATION_ID").starts_with("web:"));
    assert_eq!(joined.var("JUJU_REMOTE_APP"), "b");
    assert_eq!(joined.var("JUJU_REMOTE_UNIT"), "b/0");
    let created = records(&dir, "a/1")
        .into_iter()
        .find(|r| r.hook == "web-relation-created")
        .unwrap();
    assert!(
        created.vars.contains_key("JUJU_REMOTE_UNIT") && created.var("JUJU_REMOTE_UNIT").is_empty()
    );

    // --- relation data both ways, app data from the leaders, resource attached
    let b = records(&dir, "b/0");
    let a_seen: Vec<&String> = b
        .iter()
        .filter(|r| r.hook == "client-relation-changed")
        .flat_map(|r| r.notes.iter())
        .collect();
    assert!(
        a_seen.iter().any(|n| n.contains("\"unit\":\"a/2\"")),
        "b/0 saw a/2's data: {a_seen:?}"
    );
    assert!(
        a_seen.iter().any(|n| n.starts_with(
            "app-data {\"greeting\":\"hello\",\"leader\":\"a/0\",\"secret-id\":\"secret:"
        )),
        "{a_seen:?}"
    );
    let a2 = records(&dir, "a/2");
    let b_seen: Vec<&String> = a2
        .iter()
        .filter(|r| r.hook == "web-relation-changed")
        .flat_map(|r| r.notes.iter())
        .collect();
    assert!(
        b_seen
            .iter()
            .any(|n| n.contains("\"unit\":\"b/0\"") && n.contains("\"ingress-address\"")),
        "{b_seen:?}"
    );
    assert!(
        b_seen
            .iter()
            .any(|n| n.contains("\"greeting\":\"hi-from-b\"")),
        "{b_seen:?}"
    );
    assert!(
        a2[0].notes.iter().any(|n| n == "resource=blob-content"),
        "{:?}",
        a2[0].notes
    );

    // --- leader-only app data: a non-leader's write fails with Juju's message, and it
    // cannot read its own app databag on a non-peer relation
    let a1 = records(&dir, "a/1");
    let web_created = a1
        .iter()
        .find(|r| r.hook == "web-relation-created")
        .unwrap();
    assert!(
        web_created
            .notes
            .iter()
            .any(|n| n == "app-write rc=1 ERROR cannot write relation settings"),
        "{:?}",
        web_created.notes
    );
    assert!(
        web_created
            .notes
            .iter()
            .any(|n| n.starts_with("own-app-read rc=1 ERROR")),
        "{:?}",
        web_created.notes
    );
    let st = m.status().unwrap();
    assert!(!st.to_string().contains("sneaky"));

    // --- actions
    let run = m
        .run_action("a/leader", "hello", &["who=tester"], T)
        .unwrap();
    assert_eq!(run.status, "completed");
    assert_eq!(run.results["greeting"], "hello tester");
    assert_eq!(run.results["stdout"], "said hello\n");
    assert_eq!(run.log, vec!["greeting tester"]);
    let run = m.run_action("a/1", "fail", &[], T).unwrap();
    assert_eq!(
        (run.status.as_str(), run.message.as_str()),
        ("failed", "told to fail")
    );
    assert!(m.run_action("a/1", "nope", &[], T).is_err());

    // --- secrets: shared by a's leader over web, read by b/0; a new revision reaches b/0
    // as secret-changed, and the owner is told to remove the revision nobody tracks
    let b0 = records(&dir, "b/0");
    assert!(
        b0.iter()
            .flat_map(|r| r.notes.iter())
            .any(|n| n == "secret {\"password\":\"initial\"}"),
        "{:?}",
        b0.iter().flat_map(|r| r.notes.iter()).collect::<Vec<_>>()
    );
    let n = b0.len();
    let run = m
        .run_action("a/0", "rotate", &["password=rotated"], T)
        .unwrap();
    assert_eq!(run.status, "completed", "{run:?}");
    m.wait(T).unwrap();
    let b0 = records(&dir, "b/0");
    let changed: Vec<&common::Rec> = b0[n..]
        .iter()
        .filter(|r| r.hook == "secret-changed")
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", names(&b0[n..]));
    assert!(changed[0].var("JUJU_SECRET_ID").starts_with("secret:"));
    assert_eq!(changed[0].var("JUJU_SECRET_LABEL"), "web-creds");
    assert_eq!(
        changed[0].notes,
        vec!["secret-changed {\"password\":\"rotated\"}"]
    );
    let removed: Vec<common::Rec> = records(&dir, "a/0")
        .into_iter()
        .filter(|r| r.hook == "secret-remove")
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].var("JUJU_SECRET_REVISION"), "1");

    // --- add-unit: the new unit sets up; its peers and b/0 see it join
    let before: Vec<usize> = ["a/0", "a/1", "a/2", "b/0"]
        .iter()
        .map(|u| records(&dir, u).len())
        .collect();
    m.request(&local_model::Request::AddUnit {
        app: "a".into(),
        n: 1,
        to: None,
    })
    .unwrap();
    m.wait(T).expect("settle after add-unit");
    let a3 = records(&dir, "a/3");
    let s = check_setup_order("a/3", &names(&a3), false);
    check_relation_order("a/3", &a3);
    assert!(
        names(&a3)[s..]
            .iter()
            .filter(|h| *h == "cluster-relation-joined")
            .count()
            == 3
    );
    for (i, u) in ["a/0", "a/1", "a/2", "b/0"].iter().enumerate() {
        let recs = records(&dir, u);
        let new: Vec<(String, String)> = recs[before[i]..]
            .iter()
            .filter(|r| r.hook.contains("relation"))
            .map(|r| (r.hook.clone(), r.var("JUJU_REMOTE_UNIT").to_string()))
            .collect();
        let ep = if *u == "b/0" { "client" } else { "cluster" };
        assert_eq!(
            new,
            vec![
                (format!("{ep}-relation-joined"), "a/3".to_string()),
                (format!("{ep}-relation-changed"), "a/3".to_string())
            ],
            "{u}"
        );
    }
    assert!(units_in(&m.status().unwrap()).contains(&"sub/3".to_string()));

    // --- remove-unit of the leader: departed on the others, teardown on the unit, a new
    // leader elected
    let before: Vec<usize> = ["a/1", "a/2", "a/3", "b/0"]
        .iter()
        .map(|u| records(&dir, u).len())
        .collect();
    let st = m.status().unwrap();
    let sub_of_a0 = unit_status(&st, "a/0")["subordinates"]
        .as_object()
        .and_then(|s| s.keys().next().cloned())
        .unwrap_or_else(|| panic!("a/0 has a subordinate: {st}"));
    m.request(&local_model::Request::RemoveUnit {
        units: vec!["a/0".into()],
    })
    .unwrap();
    m.wait(T).expect("settle after remove-unit");
    let st = m.status().unwrap();
    assert!(
        !units_in(&st).contains(&"a/0".to_string()) && !units_in(&st).contains(&sub_of_a0),
        "{st}"
    );
    assert!(
        st["machines"].get("0").is_none(),
        "machine 0 removed with its unit"
    );
    let a0 = names(&records(&dir, "a/0"));
    let tail: Vec<&str> = a0.iter().rev().take(2).rev().map(|s| s.as_str()).collect();
    assert_eq!(tail, vec!["stop", "remove"], "{a0:?}");
    let stop_at = a0.iter().position(|h| h == "stop").unwrap();
    assert!(
        a0[stop_at - 2..stop_at].contains(&"web-relation-broken".to_string()),
        "{a0:?}"
    );
    assert!(
        !a0.contains(&"cluster-relation-broken".to_string()),
        "no peer broken: {a0:?}"
    );
    for (i, u) in ["a/1", "a/2", "a/3", "b/0"].iter().enumerate() {
        let recs = records(&dir, u);
        let dep: Vec<&common::Rec> = recs[before[i]..]
            .iter()
            .filter(|r| r.hook.ends_with("-relation-departed"))
            .collect();
        assert_eq!(dep.len(), 1, "{u}: {:?}", names(&recs[before[i]..]));
        assert_eq!(
            (
                dep[0].var("JUJU_REMOTE_UNIT"),
                dep[0].var("JUJU_DEPARTING_UNIT")
            ),
            ("a/0", "a/0")
        );
    }
    let a1 = names(&records(&dir, "a/1")[before[0]..]);
    assert!(
        a1.contains(&"leader-elected".to_string()),
        "a/1 is the new leader: {a1:?}"
    );
    assert_eq!(unit_status(&st, "a/1")["leader"], true);

    // --- a failing hook: error, no automatic retry here, resolve re-runs it
    m.request(&local_model::Request::Config {
        app: "a".into(),
        set: vec!["fail-hook=config-changed".into()],
        reset: vec![],
    })
    .unwrap();
    let st = m
        .wait_for(T, "a/1 in error", |s| {
            unit_status(s, "a/1")["workload-status"]["current"] == "error"
        })
        .unwrap();
    assert_eq!(
        unit_status(&st, "a/1")["workload-status"]["message"],
        "hook failed: \"config-changed\""
    );
    let err = m.wait(Duration::from_millis(300)).unwrap_err().to_string();
    assert!(
        err.contains("a/1: hook \"config-changed\" failed and no retry comes")
            && err.contains("failing config-changed on purpose"),
        "{err}"
    );
    let run = m.run_action("a/1", "hello", &[], T).unwrap();
    assert_eq!(run.status, "completed", "actions run on a unit in error");
    let st = m.status().unwrap();
    assert_eq!(unit_status(&st, "a/1")["juju-status"]["current"], "error");
    m.request(&local_model::Request::Config {
        app: "a".into(),
        set: vec!["fail-hook=".into()],
        reset: vec![],
    })
    .unwrap();
    for u in ["a/1", "a/2", "a/3"] {
        m.request(&local_model::Request::Resolve {
            unit: u.into(),
            no_retry: false,
        })
        .unwrap();
    }
    m.wait(T).expect("recovered after resolve");
    let st = m.status().unwrap();
    for u in ["a/1", "a/2", "a/3"] {
        assert_eq!(
            unit_status(&st, u)["workload-status"]["current"],
            "active",
            "{u}"
        );
        let h = records(&dir, u);
        let fails = h
            .iter()
            .filter(|r| r.notes.iter().any(|n| n == "failing on purpose"))
            .count();
        assert_eq!(fails, 1, "{u}");
        assert_eq!(h.last().unwrap().hook, "config-changed");
    }

    // --- refresh: upgrade-charm -> config-changed (+ leader-settings-changed on non-leaders),
    // no start on a started unit, no relation hooks
    let n = records(&dir, "b/0").len();
    m.request(&local_model::Request::Refresh {
        app: "b".into(),
        path: None,
        force_units: false,
    })
    .unwrap();
    m.wait(T).unwrap();
    assert_eq!(
        names(&records(&dir, "b/0")[n..]),
        vec!["upgrade-charm", "config-changed"]
    );
    let n = records(&dir, "a/2").len();
    m.request(&local_model::Request::Refresh {
        app: "a".into(),
        path: None,
        force_units: false,
    })
    .unwrap();
    m.wait(T).unwrap();
    assert_eq!(
        names(&records(&dir, "a/2")[n..]),
        vec!["upgrade-charm", "config-changed", "leader-settings-changed"]
    );

    // --- remove-relation: the subordinates depart, break and go away; the principal's
    // implicit juju-info side leaves the scope with no hook
    m.request(&local_model::Request::RemoveRelation {
        a: "a".into(),
        b: "sub".into(),
    })
    .unwrap();
    m.wait(T).unwrap();
    let st = m.status().unwrap();
    assert!(units_in(&st).iter().all(|u| !u.starts_with("sub/")), "{st}");
    let a2 = names(&records(&dir, "a/2"));
    assert!(!a2.iter().any(|h| h.starts_with("juju-info-")), "{a2:?}");

    // --- faults that bare machines cannot do are refused with a clear error
    let e = m.fault("a/1", FaultOp::Cut).unwrap_err().to_string();
    assert!(e.contains("not supported on bare machines"), "{e}");

    // --- destroy leaves nothing
    let pid = std::fs::read_to_string(dir.join("model/daemon.pid")).unwrap();
    m.destroy().unwrap();
    assert!(!dir.join("model").exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "daemon gone"
    );
}

#[test]
fn hook_tools_reject_a_wrong_context_and_a_stale_model_is_cleaned() {
    let dir = scratch("ctx");
    let bundle = write_bundle(&dir, "");
    let m = model(&dir);
    // a crashed run: junk in the model dir, no daemon
    std::fs::create_dir_all(dir.join("model/machines/machine-9")).unwrap();
    std::fs::write(dir.join("model/state.json"), "{garbage").unwrap();
    m.deploy_bundle(&bundle, &[], Substrate::Bare).unwrap();
    assert!(
        !dir.join("model/machines/machine-9").exists(),
        "leftovers cleaned before deploy"
    );
    m.wait(T).unwrap();
    let tool = dir.join("model/tools/is-leader");
    let out = std::process::Command::new(&tool)
        .env("JUJU_CONTEXT_ID", "a/0-install-42")
        .env("JUJU_AGENT_SOCKET_ADDRESS", dir.join("model/agent.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR bad request: wrong context ID; got \"a/0-install-42\"\n"
    );
    m.destroy().unwrap();
}

#[test]
fn failed_hooks_are_retried_with_backoff_and_update_status_runs_when_idle() {
    let dir = scratch("retry");
    write_bundle(&dir, "");
    let charm = dir.join("charms/lm-test.charm");
    let rec = dir.join("rec");
    let plan = local_model::bundle::charm_plan(
        &charm,
        Some("r".into()),
        1,
        None,
        &[
            "fail-hook=install".into(),
            format!("record-dir={}", rec.display()),
        ],
        &["blob=".to_string() + &dir.join("blob.txt").display().to_string()],
    )
    .unwrap();
    let m = local_model::LocalModel::new(&dir.join("model"), &lm_bin())
        .with_env("LM_RETRY_BASE_MS", "50")
        .with_env("LM_RETRY_MAX_MS", "200")
        .with_env("LM_UPDATE_STATUS_MS", "300");
    m.deploy_plan(plan, Substrate::Bare).unwrap();
    // install fails, and is retried on its own
    let deadline = std::time::Instant::now() + T;
    while records(&dir, "r/0")
        .iter()
        .filter(|r| r.hook == "install")
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "install not retried: {:?}",
            names(&records(&dir, "r/0"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let un = m.unsettled().unwrap();
    assert!(
        un[0].1.contains("retry scheduled") || un[0].1.starts_with("executing"),
        "{un:?}"
    );
    // fixing the cause is enough: the next retry succeeds, no resolve needed
    m.request(&local_model::Request::Config {
        app: "r".into(),
        set: vec!["fail-hook=".into()],
        reset: vec![],
    })
    .unwrap();
    m.wait(T).expect("recovered by retry");
    // what a retry fixed is still reported: every failed run, with what it said
    let f = m.failures().unwrap();
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert!(f.failed.len() >= 3, "{:?}", f.failed);
    for x in &f.failed {
        assert_eq!(
            (x.unit.as_str(), x.hook.as_str(), x.code, x.message.as_str()),
            ("r/0", "install", 1, "failing install on purpose")
        );
    }
    let hooks = names(&records(&dir, "r/0"));
    let first_ok = hooks.iter().position(|h| h != "install").unwrap();
    assert!(first_ok >= 3, "{hooks:?}");
    check_setup_order("r/0", &hooks[first_ok - 1..], true);
    // update-status on its timer once idle
    let deadline = std::time::Instant::now() + T;
    while !names(&records(&dir, "r/0")).contains(&"update-status".to_string()) {
        assert!(std::time::Instant::now() < deadline, "no update-status");
        std::thread::sleep(Duration::from_millis(20));
    }
    m.destroy().unwrap();
}

#[test]
fn wait_stops_early_naming_unit_hook_and_error_when_retries_keep_failing_alike() {
    let dir = scratch("stuck");
    write_bundle(&dir, "");
    let plan = local_model::bundle::charm_plan(
        &dir.join("charms/lm-test.charm"),
        Some("s".into()),
        1,
        None,
        &[
            "fail-hook=install".into(),
            format!("record-dir={}", dir.join("rec").display()),
        ],
        &["blob=".to_string() + &dir.join("blob.txt").display().to_string()],
    )
    .unwrap();
    let m = local_model::LocalModel::new(&dir.join("model"), &lm_bin())
        .with_env("LM_RETRY_BASE_MS", "50")
        .with_env("LM_RETRY_MAX_MS", "200")
        .with_env("LM_UPDATE_STATUS_MS", "0");
    m.deploy_plan(plan, Substrate::Bare).unwrap();
    let t0 = std::time::Instant::now();
    let e = m
        .wait(Duration::from_secs(300))
        .expect_err("every unit keeps failing its install the same way");
    // retries come every 200 ms at most here: four failures in a row take well under a second
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let msg = format!("{e:#}");
    for want in [
        "s/0: hook \"install\" failed 4 times in a row with the same error",
        "failing install on purpose",
        "lm logs s/0",
    ] {
        assert!(msg.contains(want), "{want:?} not in:\n{msg}");
    }
    assert!(
        !msg.contains(" tool "),
        "hook-tool calls are left out:\n{msg}"
    );
    m.destroy().unwrap();
}

/// A subordinate unit appears when its principal enters the relation's scope, which the
/// principal's agent does after install (state/relationunit.go RelationUnit.subordinateOps,
/// worker/uniter/relation SynchronizeScopes), not when the relation is added: while the
/// principal's install is in error there is no subordinate unit.
#[test]
fn a_subordinate_appears_once_its_principal_is_installed_not_with_the_relation() {
    let dir = scratch("subscope");
    write_bundle(&dir, "");
    let rec = dir.join("rec");
    let blob = "blob=".to_string() + &dir.join("blob.txt").display().to_string();
    let plan = |charm: &str, name: &str, config: &[String], res: &[String]| {
        local_model::bundle::charm_plan(
            &dir.join("charms").join(charm),
            Some(name.into()),
            1,
            None,
            config,
            res,
        )
        .unwrap()
    };
    let m = model(&dir); // LM_RETRY_BASE_MS=0: a failed hook waits for resolve
    let record = format!("record-dir={}", rec.display());
    m.deploy_plan(
        plan(
            "lm-test.charm",
            "p",
            &["fail-hook=install".into(), record.clone()],
            &[blob],
        ),
        Substrate::Bare,
    )
    .unwrap();
    m.deploy_plan(
        plan("lm-test-sub.charm", "s", &[record], &[]),
        Substrate::Bare,
    )
    .unwrap();
    m.integrate("p", "s").unwrap();
    let st = m
        .wait_for(T, "p/0 in error on install", |st| {
            unit_status(st, "p/0")["juju-status"]["current"] == "error"
        })
        .unwrap();
    assert_eq!(
        units_in(&st),
        vec!["p/0"],
        "no subordinate before install: {st}"
    );

    m.config("p", &["fail-hook="]).unwrap();
    m.resolve("p/0").unwrap();
    m.wait(T).unwrap();
    let st = m.status().unwrap();
    assert_eq!(units_in(&st), vec!["p/0", "s/0"], "{st}");
    let s = names(&records(&dir, "s/0"));
    assert_eq!(s[0], "install", "{s:?}");
    assert!(s.contains(&"host-relation-joined".to_string()), "{s:?}");
    m.destroy().unwrap();
}

/// `refresh` changes the application's charm, not yet the charm of a unit in hook error: its
/// retries run the old charm's code, and it upgrades (upgrade-charm, then config-changed) only
/// once out of error (worker/uniter/resolver.go: nextOpHookError retries or resolves,
/// nextOp's charmModified runs the upgrade operation). With `--force-units` a unit in error
/// takes the new charm at once and stays in error on the same hook; it never runs
/// upgrade-charm (nextOpHookError: ForceCharmUpgrade; operation/deploy.go Commit keeps the
/// interrupted hook instead of queueing upgrade-charm). A unit added later installs the new
/// charm and has nothing to upgrade.
#[test]
fn refresh_leaves_a_unit_in_error_on_its_old_charm_unless_forced() {
    use local_model::Request;
    let dir = scratch("refresh");
    write_bundle(&dir, "");
    // v2: the same charm, but every hook notes "charm=v2" in its record
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testcharms/lm-test");
    let v2dir = dir.join("lm-test-v2");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&v2dir)
        .status()
        .unwrap()
        .success());
    let d = std::fs::read_to_string(v2dir.join("dispatch")).unwrap();
    let hook = "note() { echo \"  $*\" >> \"$REC\"; }\n";
    assert!(d.contains(hook));
    std::fs::write(
        v2dir.join("dispatch"),
        d.replace(hook, &format!("{hook}note charm=v2\n")),
    )
    .unwrap();
    let v2 = dir.join("charms/lm-test-v2.charm");
    local_model::charm::pack_dir(&v2dir, &v2).unwrap();
    let is_v2 = |r: &Rec| r.notes.iter().any(|n| n == "charm=v2");

    let rec = dir.join("rec");
    let plan = local_model::bundle::charm_plan(
        &dir.join("charms/lm-test.charm"),
        Some("r".into()),
        2,
        None,
        &[
            "fail-hook=install".into(),
            format!("record-dir={}", rec.display()),
        ],
        &["blob=".to_string() + &dir.join("blob.txt").display().to_string()],
    )
    .unwrap();
    let m = model(&dir); // LM_RETRY_BASE_MS=0: a failed hook waits for resolve
    m.deploy_plan(plan, Substrate::Bare).unwrap();
    let in_error = |st: &serde_json::Value, u: &str| {
        unit_status(st, u)["juju-status"]["current"] == "error"
            && unit_status(st, u)["juju-status"]["message"] == "hook failed: \"install\""
    };
    let installs = |u: &str| {
        records(&dir, u)
            .into_iter()
            .filter(|r| r.hook == "install")
            .collect::<Vec<_>>()
    };
    m.wait_for(T, "r/0 and r/1 in error on install", |st| {
        in_error(st, "r/0") && in_error(st, "r/1")
    })
    .unwrap();

    // refreshed, not forced: r/0's retry still runs the old charm
    m.request(&Request::Refresh {
        app: "r".into(),
        path: Some(v2.clone()),
        force_units: false,
    })
    .unwrap();
    m.resolve("r/0").unwrap();
    let st = m
        .wait_for(T, "r/0's install retried and failed again", |st| {
            installs("r/0").len() == 2 && in_error(st, "r/0")
        })
        .unwrap();
    // status says which charm a unit still runs
    assert_eq!(
        unit_status(&st, "r/0")["upgrading-from"],
        "local:lm-test-0",
        "{st}"
    );
    assert!(
        installs("r/0").iter().all(|r| !is_v2(r)),
        "old code retried"
    );
    // out of error, it upgrades: upgrade-charm then config-changed (and start: it had not
    // started), all on the new charm; the install that succeeded ran the old one
    m.config("r", &["fail-hook="]).unwrap();
    m.resolve("r/0").unwrap();
    m.wait_for(T, "r/0 started", |st| {
        // every hook it recorded has ended (a record's first line is written as it begins)
        let recs = records(&dir, "r/0");
        names(&recs).contains(&"start".to_string())
            && recs.len() as u64 <= unit_status(st, "r/0")["hooks-run"].as_u64().unwrap_or(0)
    })
    .unwrap();
    let r0 = records(&dir, "r/0");
    let after: Vec<&Rec> = r0
        .iter()
        .skip_while(|r| r.hook != "upgrade-charm")
        .collect();
    assert_eq!(
        after.iter().map(|r| r.hook.as_str()).collect::<Vec<_>>(),
        vec!["upgrade-charm", "config-changed", "start"],
        "{:?}",
        names(&r0)
    );
    assert!(after.iter().all(|r| is_v2(r)), "{:?}", names(&r0));
    assert!(r0
        .iter()
        .take_while(|r| r.hook != "upgrade-charm")
        .all(|r| !is_v2(r)));

    // forced: r/1 (still in error on install, old charm) takes the new charm at once and
    // stays in error; its retry runs the new code; no upgrade-charm ever
    m.request(&Request::Refresh {
        app: "r".into(),
        path: None,
        force_units: true,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let st = m.status().unwrap();
    assert!(in_error(&st, "r/1"), "{st}");
    assert!(
        unit_status(&st, "r/1").get("upgrading-from").is_none(),
        "{st}"
    );
    assert_eq!(installs("r/1").len(), 1);
    m.resolve("r/1").unwrap();
    m.wait(T).unwrap();
    let r1 = records(&dir, "r/1");
    assert!(is_v2(&installs("r/1")[1]), "{:?}", names(&r1));
    assert!(
        !names(&r1).contains(&"upgrade-charm".to_string()),
        "{:?}",
        names(&r1)
    );
    check_setup_order("r/1", &names(&r1)[1..], false);
    // the started r/0 (the leader) took the forced refresh like any refresh: upgrade-charm,
    // config-changed, and no start again
    let r0 = names(&records(&dir, "r/0"));
    let last = r0.iter().rposition(|h| h == "upgrade-charm").unwrap();
    assert_eq!(
        r0[last..last + 2].to_vec(),
        vec!["upgrade-charm", "config-changed"],
        "{r0:?}"
    );
    assert!(!r0[last..].contains(&"start".to_string()), "{r0:?}");

    // a unit added after the refresh installs the new charm: nothing to upgrade
    m.add_unit("r", 1, None).unwrap();
    m.wait(T).unwrap();
    let r2 = records(&dir, "r/2");
    assert!(r2.iter().all(is_v2), "{:?}", names(&r2));
    assert!(!names(&r2).contains(&"upgrade-charm".to_string()));
    m.destroy().unwrap();
}

/// Pack a copy of the test charm `name` whose manifest declares `bases` (channels).
fn charm_with_bases(
    dir: &std::path::Path,
    name: &str,
    out: &str,
    bases: &[&str],
) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testcharms")
        .join(name);
    let copy = dir.join(format!("{out}.d"));
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let mut manifest = String::from("bases:\n");
    for b in bases {
        manifest.push_str(&format!(
            "- name: ubuntu\n  channel: '{b}'\n  architectures:\n  - amd64\n"
        ));
    }
    std::fs::write(copy.join("manifest.yaml"), manifest).unwrap();
    let charm = dir.join("charms").join(format!("{out}.charm"));
    local_model::charm::pack_dir(&copy, &charm).unwrap();
    charm
}

/// Bases at deploy, as Juju checks them: a local charm is deployed only on a base its
/// manifest declares (core/charm charmpath.go charmBase: `base "…" not supported by charm,
/// the charm supported bases are: …`; in a bundle under bundlehandler.go addLocalCharm's
/// `cannot deploy local charm at "<path>"`), the bundle's default-base applying to every
/// application without its own, overlays' too; a machine holds units of one base (state/unit.go
/// validateUnitMachineAssignment); a subordinate's charm must share a base with its
/// principal's (state/state.go AddRelation). Status shows the bases as `juju status` does.
#[test]
fn a_charm_deploys_only_on_a_base_its_manifest_declares() {
    let dir = scratch("bases");
    write_bundle(&dir, "");
    let noble = dir.join("charms/lm-test.charm"); // the test charm declares ubuntu@24.04 only
    let both = charm_with_bases(&dir, "lm-test", "lm-test-both", &["22.04", "24.04"]);
    let jammy_sub = charm_with_bases(&dir, "lm-test-sub", "lm-test-sub-jammy", &["22.04"]);
    let blob = "blob=".to_string() + &dir.join("blob.txt").display().to_string();
    let plan = |charm: &std::path::Path, name: &str, to: Option<&str>, base: Option<&str>| {
        let mut p = local_model::bundle::charm_plan(
            charm,
            Some(name.into()),
            if name.starts_with("sub") { 0 } else { 1 },
            to.map(String::from),
            &[],
            std::slice::from_ref(&blob),
        )
        .unwrap();
        p.apps[0].base = base.map(String::from);
        if name.starts_with("sub") {
            p.apps[0].resources.clear();
        }
        p
    };
    let m = model(&dir);

    // a bundle whose default-base the charm does not declare: refused, nothing deployed
    let bundle = dir.join("jammy-bundle.yaml");
    std::fs::write(
        &bundle,
        format!(
            "default-base: ubuntu@22.04\napplications:\n  j:\n    charm: {}\n    num_units: 1\n",
            noble.display()
        ),
    )
    .unwrap();
    let e = m
        .deploy_bundle(&bundle, &[], Substrate::Bare)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "cannot deploy local charm at {:?}: base \"ubuntu@22.04\" not supported by charm, the charm supported bases are: ubuntu@24.04",
            noble.display().to_string()
        )),
        "{e}"
    );
    // the same for --base, without the bundle's words
    let e = m
        .deploy_plan(
            plan(&noble, "n", None, Some("ubuntu@22.04")),
            Substrate::Bare,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("base \"ubuntu@22.04\" not supported by charm, the charm supported bases are: ubuntu@24.04")
            && !e.contains("cannot deploy local charm"),
        "{e}"
    );
    assert!(units_in(&m.status().unwrap()).is_empty());

    // declared: deployed on it; the machine takes its first unit's base
    m.deploy_plan(plan(&both, "j", None, Some("jammy")), Substrate::Bare)
        .unwrap();
    let st = m.status().unwrap();
    let jammy = serde_json::json!({"name": "ubuntu", "channel": "22.04"});
    assert_eq!(st["applications"]["j"]["base"], jammy, "{st}");
    let machine = unit_status(&st, "j/0")["machine"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(st["machines"][&machine]["base"], jammy, "{st}");
    // no base asked for: ubuntu@24.04, which that machine is not
    let e = m
        .deploy_plan(plan(&noble, "n", Some(&machine), None), Substrate::Bare)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("cannot assign unit \"n/0\" to machine {machine}: base does not match: unit has \"ubuntu@24.04\", machine has \"ubuntu@22.04\"")),
        "{e}"
    );
    m.deploy_plan(plan(&noble, "n", None, None), Substrate::Bare)
        .unwrap();
    let st = m.status().unwrap();
    assert_eq!(
        st["applications"]["n"]["base"],
        serde_json::json!({"name": "ubuntu", "channel": "24.04"})
    );
    // a subordinate whose charm shares no base with the principal's cannot be related
    m.deploy_plan(plan(&jammy_sub, "sub", None, None), Substrate::Bare)
        .unwrap();
    let e = m.integrate("n", "sub").unwrap_err().to_string();
    assert!(
        e.contains("cannot add relation \"sub:host n:juju-info\": principal and subordinate applications' bases must match"),
        "{e}"
    );
    m.integrate("j", "sub").unwrap();
    m.wait(T).unwrap();
    let mut units = units_in(&m.status().unwrap());
    units.sort();
    assert_eq!(units, vec!["j/0", "n/0", "sub/0"]);
    m.destroy().unwrap();
}

/// meter-status-changed on Juju before 3.6.11 (LM_JUJU_VERSION): each unit's meter status
/// worker runs it once, after install, with a limited environment (no JUJU_VERSION, the unit's
/// tag as JUJU_UNIT_NAME, JUJU_METER_STATUS=AMBER "not set": internal/worker/meterstatus
/// context.go and runner.go, apiserver MeterStatusWrapper) and a restricted context (every
/// tool but juju-log fails); its failure leaves the unit out of error and is not retried
/// (connected.go Handle stores the status either way). From 3.6.11 on, never.
#[test]
fn meter_status_changed_runs_once_before_juju_3_6_11_in_a_restricted_context() {
    let dir = scratch("meter");
    let charm_dir = dir.join("meter-charm");
    std::fs::create_dir_all(&charm_dir).unwrap();
    std::fs::write(
        charm_dir.join("metadata.yaml"),
        "name: meter\nsummary: s\ndescription: d\n",
    )
    .unwrap();
    std::fs::write(
        charm_dir.join("manifest.yaml"),
        "bases:\n- name: ubuntu\n  channel: '24.04'\n  architectures: [amd64]\n",
    )
    .unwrap();
    let dispatch = charm_dir.join("dispatch");
    std::fs::write(
        &dispatch,
        "#!/bin/bash\nOUT=\"$(dirname \"$JUJU_CHARM_DIR\")/out\"; mkdir -p \"$OUT\"\nH=\"${JUJU_DISPATCH_PATH#hooks/}\"\nenv | sort > \"$OUT/env-$H\"\necho \"$H\" >> \"$OUT/hooks\"\nis-leader > /dev/null 2>\"$OUT/is-leader-$H\"; echo $? >> \"$OUT/is-leader-$H\"\njuju-log hello; echo \"juju-log $?\" >> \"$OUT/hooks\"\n[ \"$H\" = meter-status-changed ] && exit 1\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.join("charms")).unwrap();
    let charm = dir.join("charms/meter.charm");
    local_model::charm::pack_dir(&charm_dir, &charm).unwrap();
    let plan = |name: &str| {
        local_model::bundle::charm_plan(&charm, Some(name.into()), 1, None, &[], &[]).unwrap()
    };
    let m = model(&dir).with_env("LM_JUJU_VERSION", "3.6.10");
    m.deploy_plan(plan("old"), Substrate::Bare).unwrap();
    m.wait(T).unwrap();
    let out = m
        .host_path("old/0", "/var/lib/juju/agents/unit-old-0/out")
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    let hooks: Vec<String> = read("hooks")
        .lines()
        .filter(|l| !l.starts_with("juju-log"))
        .map(String::from)
        .collect();
    assert_eq!(
        &hooks[..2],
        &["install".to_string(), "meter-status-changed".to_string()],
        "{hooks:?}"
    );
    assert_eq!(
        hooks
            .iter()
            .filter(|h| *h == "meter-status-changed")
            .count(),
        1,
        "once: {hooks:?}"
    );
    let env = read("env-meter-status-changed");
    for want in [
        "JUJU_UNIT_NAME=unit-old-0",
        "JUJU_METER_STATUS=AMBER",
        "JUJU_METER_INFO=not set",
        "JUJU_DISPATCH_PATH=hooks/meter-status-changed",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    for absent in [
        "JUJU_VERSION=",
        "JUJU_MODEL_NAME=",
        "JUJU_HOOK_NAME=",
        "JUJU_MACHINE_ID=",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(absent)),
            "{absent} in\n{env}"
        );
    }
    assert!(read("env-start").contains("JUJU_VERSION=3.6.10\n"));
    assert_eq!(
        read("is-leader-meter-status-changed"),
        "ERROR not implemented for restricted context not implemented\n1\n"
    );
    assert!(read("hooks").contains("meter-status-changed\njuju-log 0\n"));
    // its failure is reported, but the unit is not in error and nothing retries it
    let f = m.failures().unwrap();
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(f.failed.len(), 1, "{:?}", f.failed);
    assert_eq!(f.failed[0].hook, "meter-status-changed");
    let st = m.status().unwrap();
    assert_eq!(st["model"]["version"], "3.6.10");
    assert_eq!(unit_status(&st, "old/0")["juju-status"]["current"], "idle");
    m.destroy().unwrap();

    // from 3.6.11: no meter-status-changed
    let dir = scratch("meter-new");
    let m = model(&dir).with_env("LM_JUJU_VERSION", "3.6.11");
    m.deploy_plan(plan("new"), Substrate::Bare).unwrap();
    m.wait(T).unwrap();
    let out = m
        .host_path("new/0", "/var/lib/juju/agents/unit-new-0/out")
        .unwrap();
    let hooks = std::fs::read_to_string(out.join("hooks")).unwrap();
    assert!(!hooks.contains("meter-status-changed"), "{hooks}");
    assert!(m.failures().unwrap().failed.is_empty());
    m.destroy().unwrap();
}

/// A container relation between two subordinate applications, through the daemon: no unit is
/// added for it, each subordinate unit joins the other application's unit of its own principal
/// unit only (juju/juju: subordinaterelationwatcher.go shouldSendCheck, state/relation.go
/// Relation.unit's per-principal scope), and removing it breaks it on both sides while every
/// unit stays.
#[test]
fn two_subordinates_relate_on_each_principal_unit() {
    let dir = scratch("subsub");
    write_bundle(&dir, "");
    let rec = dir.join("rec");
    let record = format!("record-dir={}", rec.display());
    let blob = "blob=".to_string() + &dir.join("blob.txt").display().to_string();
    let plan = |charm: &str, name: &str, n: u32, config: &[String], res: &[String]| {
        local_model::bundle::charm_plan(
            &dir.join("charms").join(charm),
            Some(name.into()),
            n,
            None,
            config,
            res,
        )
        .unwrap()
    };
    let m = model(&dir);
    m.deploy_plan(
        plan(
            "lm-test.charm",
            "p",
            2,
            std::slice::from_ref(&record),
            &[blob],
        ),
        Substrate::Bare,
    )
    .unwrap();
    for s in ["s", "t"] {
        m.deploy_plan(
            plan(
                "lm-test-sub.charm",
                s,
                0,
                std::slice::from_ref(&record),
                &[],
            ),
            Substrate::Bare,
        )
        .unwrap();
    }
    m.integrate("p", "s").unwrap();
    m.integrate("p", "t").unwrap();
    m.wait(T).unwrap();
    m.integrate("s:beside", "t:near").unwrap();
    m.wait(T).unwrap();
    let st = m.status().unwrap();
    let mut units = units_in(&st);
    units.sort();
    assert_eq!(
        units,
        vec!["p/0", "p/1", "s/0", "s/1", "t/0", "t/1"],
        "{st}"
    );
    // each subordinate unit's principal, from status
    let mut principal = std::collections::BTreeMap::new();
    for (p, ud) in st["applications"]["p"]["units"].as_object().unwrap() {
        for s in ud["subordinates"].as_object().unwrap().keys() {
            principal.insert(s.clone(), p.clone());
        }
    }
    for (unit, endpoint) in [
        ("s/0", "beside"),
        ("s/1", "beside"),
        ("t/0", "near"),
        ("t/1", "near"),
    ] {
        let recs = records(&dir, unit);
        let joined: Vec<&str> = recs
            .iter()
            .filter(|r| r.hook == format!("{endpoint}-relation-joined"))
            .map(|r| r.vars["JUJU_REMOTE_UNIT"].as_str())
            .collect();
        assert_eq!(joined.len(), 1, "{unit}: {:?}", names(&recs));
        assert_eq!(
            principal[joined[0]], principal[unit],
            "{unit} joined {} of another principal",
            joined[0]
        );
    }
    let s = &st["applications"]["s"];
    assert!(
        s["subordinate-to"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("t")),
        "juju status lists every container-related application: {s}"
    );

    m.remove_relation("s:beside", "t:near").unwrap();
    m.wait(T).unwrap();
    for (unit, endpoint) in [("s/0", "beside"), ("t/1", "near")] {
        let n = names(&records(&dir, unit));
        let tail: Vec<&str> = n.iter().rev().take(2).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            vec![
                format!("{endpoint}-relation-departed").as_str(),
                format!("{endpoint}-relation-broken").as_str()
            ],
            "{unit}: {n:?}"
        );
    }
    let mut units = units_in(&m.status().unwrap());
    units.sort();
    assert_eq!(units.len(), 6, "no unit goes with the relation: {units:?}");
    m.destroy().unwrap();
}
