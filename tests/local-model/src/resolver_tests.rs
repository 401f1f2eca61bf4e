//! The resolver alone, on small models: which hooks each unit runs, in which order, when every
//! hook succeeds at once (no daemon, no processes, no clock).

use crate::charm::parse_meta;
use crate::resolver::{commit, next_op, sync_implicit_scopes};
use crate::state::*;
use std::collections::{BTreeMap, BTreeSet};

fn app(name: &str, meta: &str, leader: Option<&str>) -> Application {
    Application {
        name: name.into(),
        charm_path: "/nonexistent".into(),
        meta: parse_meta(meta, None, None).unwrap(),
        config: BTreeMap::new(),
        leader: leader.map(str::to_string),
        leader_term: 1,
        leader_settings: BTreeMap::new(),
        leader_settings_version: 1,
        status: None,
        workload_version: String::new(),
        next_unit: 0,
        resources: BTreeMap::new(),
        charm_revision: 0,
        force_units: false,
        base: String::new(),
    }
}

fn unit(name: &str, principal: Option<&str>) -> Unit {
    Unit {
        name: name.into(),
        app: app_of(name).into(),
        machine: "0".into(),
        principal: principal.map(str::to_string),
        life: Life::Alive,
        workload: Status::new("waiting", ""),
        agent: "idle".into(),
        agent_message: String::new(),
        ports: BTreeSet::new(),
        charm_state: BTreeMap::new(),
        view: UniterView::default(),
        error: None,
        pending_actions: vec![],
        pending_secret_changed: BTreeSet::new(),
        pending_secret_remove: BTreeSet::new(),
        status_ever_set: false,
        hooks_run: 0,
        hook_log: vec![],
        meter_status_seen: String::new(),
        failures: vec![],
    }
}

fn relation(st: &ModelState, id: u32, eps: &[(&str, &str)], container: bool) -> Relation {
    Relation {
        id,
        endpoints: eps
            .iter()
            .map(|(a, e)| RelEndpoint {
                app: a.to_string(),
                spec: st.applications[*a].meta.endpoint(e).unwrap(),
            })
            .collect(),
        container,
        dying: false,
        unit_bags: BTreeMap::new(),
        app_bags: BTreeMap::new(),
        in_scope: BTreeSet::new(),
    }
}

fn model() -> ModelState {
    let settings = Settings {
        update_status_ms: 0,
        ..Settings::default()
    };
    ModelState::new(Substrate::Bare, settings)
}

/// Run every hook the resolver asks for, each succeeding, until none is left; the hooks as
/// `unit hook-name remote-unit remote-app`, in the order they ran.
fn drive(st: &mut ModelState) -> Vec<String> {
    let mut ran = Vec::new();
    for _ in 0..500 {
        sync_implicit_scopes(st);
        let units: Vec<String> = st.units.keys().cloned().collect();
        let Some((u, h)) = units
            .iter()
            .find_map(|u| next_op(st, u, 0).map(|h| (u.clone(), h)))
        else {
            return ran;
        };
        ran.push(
            format!("{u} {} {} {}", h.name, h.remote_unit, h.remote_app)
                .trim_end()
                .to_string(),
        );
        commit(st, &u, &h, 0);
        crate::resolver::collect_relations(st);
    }
    panic!("no end: {ran:?}");
}

fn of<'a>(ran: &'a [String], unit: &str) -> Vec<&'a str> {
    ran.iter()
        .filter_map(|l| l.strip_prefix(&format!("{unit} ")))
        .collect()
}

const PRINCIPAL: &str = "name: p\n";
const SUB: &str =
    "name: s\nsubordinate: true\nrequires: {host: {interface: juju-info, scope: container}}\n";

#[test]
fn the_implicit_juju_info_side_runs_no_hook_but_is_in_scope() {
    let mut st = model();
    st.applications
        .insert("p".into(), app("p", PRINCIPAL, Some("p/0")));
    st.applications
        .insert("s".into(), app("s", SUB, Some("s/0")));
    st.units.insert("p/0".into(), unit("p/0", None));
    st.units.insert("s/0".into(), unit("s/0", Some("p/0")));
    let rel = relation(&st, 0, &[("p", "juju-info"), ("s", "host")], true);
    st.relations.insert(0, rel);

    let ran = drive(&mut st);
    let p = of(&ran, "p/0");
    assert_eq!(
        p,
        vec!["install", "leader-elected", "config-changed", "start"],
        "{ran:?}"
    );
    let s = of(&ran, "s/0");
    assert_eq!(s[1], "host-relation-created  p", "{ran:?}");
    assert!(s.contains(&"host-relation-joined p/0 p"), "{ran:?}");
    assert!(s.contains(&"host-relation-changed p/0 p"), "{ran:?}");
    // the principal is in scope with its address keys, which the subordinate reads
    assert!(st.relations[&0].in_scope.contains("p/0"));
    assert!(st.relations[&0].unit_bags["p/0"]
        .data
        .contains_key("private-address"));

    // the relation goes: the subordinate departs and breaks, the principal leaves silently
    st.relations.get_mut(&0).unwrap().dying = true;
    let ran = drive(&mut st);
    assert!(of(&ran, "p/0").is_empty(), "{ran:?}");
    assert_eq!(
        of(&ran, "s/0"),
        vec!["host-relation-departed p/0 p", "host-relation-broken  p"],
        "{ran:?}"
    );
    assert!(!st.units["p/0"].view.relations.contains_key(&0));
    assert!(
        st.relations.is_empty(),
        "collected once nobody has it in view"
    );
}

#[test]
fn over_a_global_juju_info_relation_only_the_requirer_runs_hooks() {
    // only the provider side named juju-info is implicit (charm Relation.IsImplicit)
    let mut st = model();
    st.applications
        .insert("p".into(), app("p", PRINCIPAL, Some("p/0")));
    st.applications.insert(
        "q".into(),
        app(
            "q",
            "name: q\nrequires: {info: {interface: juju-info}}\n",
            Some("q/0"),
        ),
    );
    st.units.insert("p/0".into(), unit("p/0", None));
    st.units.insert("q/0".into(), unit("q/0", None));
    let rel = relation(&st, 0, &[("p", "juju-info"), ("q", "info")], false);
    st.relations.insert(0, rel);
    let ran = drive(&mut st);
    assert!(
        !of(&ran, "p/0").iter().any(|h| h.contains("relation")),
        "{ran:?}"
    );
    let q = of(&ran, "q/0");
    assert!(q.contains(&"info-relation-joined p/0 p"), "{ran:?}");
}

const WEB: &str = "name: a\nprovides: {web: {interface: w}}\npeers: {cluster: {interface: c}}\n";
const CLIENT: &str = "name: b\nrequires: {client: {interface: w}}\n";

#[test]
fn the_remote_apps_databag_runs_changed_without_a_remote_unit_even_before_any_join() {
    let mut st = model();
    st.applications
        .insert("a".into(), app("a", WEB, Some("a/0")));
    st.applications
        .insert("b".into(), app("b", CLIENT, Some("b/0")));
    st.units.insert("a/0".into(), unit("a/0", None));
    let rel = relation(&st, 1, &[("a", "web"), ("b", "client")], false);
    st.relations.insert(1, rel);
    let peer = relation(&st, 0, &[("a", "cluster")], false);
    st.relations.insert(0, peer);
    // no unit of b is in scope yet: a/0 must still hear of b's application databag
    st.relations.get_mut(&1).unwrap().app_bags.insert(
        "b".into(),
        Bag {
            data: [("url".to_string(), "http://b".to_string())].into(),
            version: 1,
        },
    );
    let ran = drive(&mut st);
    let a = of(&ran, "a/0");
    let i = a
        .iter()
        .position(|h| *h == "web-relation-changed  b")
        .unwrap_or_else(|| panic!("no app relation-changed (empty JUJU_REMOTE_UNIT): {ran:?}"));
    assert!(
        !a.iter().any(|h| h.starts_with("web-relation-joined")),
        "{ran:?}"
    );
    assert!(a[..i].contains(&"start"), "after start: {ran:?}");

    // b/0 arrives: joined then changed for it; the app databag is not announced again
    st.units.insert("b/0".into(), unit("b/0", None));
    let ran = drive(&mut st);
    let a = of(&ran, "a/0");
    assert_eq!(
        a,
        vec!["web-relation-joined b/0 b", "web-relation-changed b/0 b"],
        "{ran:?}"
    );

    // b's app databag changes again: app hook first, before a unit change that came with it
    {
        let r = st.relations.get_mut(&1).unwrap();
        r.app_bags.get_mut("b").unwrap().version = 2;
        r.unit_bags.get_mut("b/0").unwrap().version += 1;
    }
    let ran = drive(&mut st);
    assert_eq!(
        of(&ran, "a/0"),
        vec!["web-relation-changed  b", "web-relation-changed b/0 b"],
        "{ran:?}"
    );

    // a's peer app databag: non-leaders hear of it, the leader does not (`!isPeer || !leader`)
    st.units.insert("a/1".into(), unit("a/1", None));
    drive(&mut st);
    st.relations.get_mut(&0).unwrap().app_bags.insert(
        "a".into(),
        Bag {
            data: [("k".to_string(), "v".to_string())].into(),
            version: 1,
        },
    );
    let ran = drive(&mut st);
    assert_eq!(
        of(&ran, "a/1"),
        vec!["cluster-relation-changed  a"],
        "{ran:?}"
    );
    assert!(of(&ran, "a/0").is_empty(), "{ran:?}");
}

fn queue_action(st: &mut ModelState, unit: &str, id: u32, name: &str) {
    st.actions.insert(
        id,
        ActionRun {
            id,
            unit: unit.into(),
            name: name.into(),
            params: Default::default(),
            status: "pending".into(),
            message: String::new(),
            results: Default::default(),
            log: vec![],
        },
    );
    st.units.get_mut(unit).unwrap().pending_actions.push(id);
}

#[test]
fn secret_hooks_and_queued_actions_come_before_config_changed_and_relation_hooks() {
    // queued while the unit installs: after install, relation-created and leader-elected come
    // the secret hook and the action, then config-changed and start
    let mut st = model();
    st.applications
        .insert("a".into(), app("a", WEB, Some("a/0")));
    st.units.insert("a/0".into(), unit("a/0", None));
    let peer = relation(&st, 0, &[("a", "cluster")], false);
    st.relations.insert(0, peer);
    queue_action(&mut st, "a/0", 1, "go");
    st.units
        .get_mut("a/0")
        .unwrap()
        .pending_secret_changed
        .insert("s1".into());
    let ran = drive(&mut st);
    assert_eq!(
        of(&ran, "a/0"),
        vec![
            "install",
            "cluster-relation-created  a",
            "leader-elected",
            "secret-changed",
            "go",
            "config-changed",
            "start"
        ],
        "{ran:?}"
    );

    // on a started unit, all at once: secret-changed, secret-remove, the action, then
    // upgrade-charm, config-changed and the relation hooks
    st.units.insert("a/1".into(), unit("a/1", None));
    drive(&mut st);
    let u = st.units.get_mut("a/0").unwrap();
    u.pending_secret_changed.insert("s2".into());
    u.pending_secret_remove.insert(("s3".into(), 1));
    queue_action(&mut st, "a/0", 2, "go");
    st.applications.get_mut("a").unwrap().charm_revision += 1;
    st.applications
        .get_mut("a")
        .unwrap()
        .config
        .insert("x".into(), serde_json::json!(1));
    st.relations
        .get_mut(&0)
        .unwrap()
        .unit_bags
        .get_mut("a/1")
        .unwrap()
        .version += 1;
    let ran = drive(&mut st);
    assert_eq!(
        of(&ran, "a/0"),
        vec![
            "secret-changed",
            "secret-remove",
            "go",
            "upgrade-charm",
            "config-changed",
            "cluster-relation-changed a/1 a"
        ],
        "{ran:?}"
    );
}

/// A refresh reaches a unit in hook error only when forced (worker/uniter/resolver.go
/// nextOpHookError: `ForceCharmUpgrade && charmModified`); without force the failed hook is
/// all it runs, and the upgrade (upgrade-charm, config-changed) comes once it is out of
/// error (nextOp: charmModified). A forced upgrade runs no hook and keeps the failed hook
/// pending (operation/deploy.go Commit, interruptedHook): no upgrade-charm afterwards.
#[test]
fn a_unit_in_hook_error_upgrades_after_it_or_at_once_when_forced() {
    use crate::resolver::{commit_deploy, forced_upgrade};
    let setup = |force: bool| {
        let mut st = model();
        st.applications
            .insert("p".into(), app("p", PRINCIPAL, Some("p/0")));
        st.units.insert("p/0".into(), unit("p/0", None));
        drive(&mut st);
        // a config change, whose config-changed fails and waits for resolve
        st.applications
            .get_mut("p")
            .unwrap()
            .config
            .insert("x".into(), serde_json::json!(1));
        let h = next_op(&st, "p/0", 0).unwrap();
        assert_eq!(h.name, "config-changed");
        st.units.get_mut("p/0").unwrap().error = Some(HookError {
            hook: h,
            attempts: 1,
            retry_at_ms: None,
            message: String::new(),
            tail: vec![],
            same: 1,
        });
        let a = st.applications.get_mut("p").unwrap();
        a.charm_revision += 1;
        a.force_units = force;
        st
    };
    // not forced: nothing to do until resolved, then the retry, then the upgrade
    let mut st = setup(false);
    assert!(!forced_upgrade(&st, "p/0"));
    assert_eq!(next_op(&st, "p/0", 0), None);
    st.units
        .get_mut("p/0")
        .unwrap()
        .error
        .as_mut()
        .unwrap()
        .retry_at_ms = Some(0);
    let h = next_op(&st, "p/0", 0).unwrap();
    assert_eq!(h.name, "config-changed");
    st.units.get_mut("p/0").unwrap().error = None;
    commit(&mut st, "p/0", &h, 0);
    assert_eq!(
        of(&drive(&mut st), "p/0"),
        vec!["upgrade-charm", "config-changed"]
    );

    // forced: the new charm at once, still in error on config-changed; once that passes,
    // nothing is left (no upgrade-charm)
    let mut st = setup(true);
    assert!(forced_upgrade(&st, "p/0"));
    commit_deploy(&mut st, "p/0", true);
    assert!(!forced_upgrade(&st, "p/0"));
    let u = &st.units["p/0"];
    assert_eq!(u.error.as_ref().unwrap().hook.name, "config-changed");
    assert_eq!(u.view.charm_deployed, 1);
    st.units
        .get_mut("p/0")
        .unwrap()
        .error
        .as_mut()
        .unwrap()
        .retry_at_ms = Some(0);
    let h = next_op(&st, "p/0", 0).unwrap();
    assert_eq!(h.name, "config-changed");
    st.units.get_mut("p/0").unwrap().error = None;
    commit(&mut st, "p/0", &h, 0);
    assert_eq!(of(&drive(&mut st), "p/0"), Vec::<&str>::new());
}

/// meter-status-changed is Juju's before 3.6.11 only (canonical/operator #2126), owed once a
/// unit is installed, until its meter status worker stored the status it ran for.
#[test]
fn meter_status_changed_is_owed_once_before_juju_3_6_11() {
    use crate::resolver::{meter_status_due, runs_meter_status_changed};
    for (v, runs) in [
        ("3.6.10", true),
        ("3.5.7", true),
        ("2.9.51", true),
        ("3.6.11", false),
        ("3.6.11-beta1", false),
        ("3.6.14", false),
        ("4.0.0", false),
    ] {
        assert_eq!(runs_meter_status_changed(v), runs, "{v}");
    }
    let mut st = model();
    st.settings.juju_version = "3.6.10".into();
    st.applications
        .insert("p".into(), app("p", PRINCIPAL, Some("p/0")));
    let mut u = unit("p/0", None);
    u.view.installed = false;
    st.units.insert("p/0".into(), u);
    assert_eq!(meter_status_due(&st, "p/0"), None, "not before install");
    st.units.get_mut("p/0").unwrap().view.installed = true;
    assert_eq!(
        meter_status_due(&st, "p/0").map(|h| h.name),
        Some("meter-status-changed".into())
    );
    st.units.get_mut("p/0").unwrap().meter_status_seen = "AMBER not set".into();
    assert_eq!(meter_status_due(&st, "p/0"), None, "once");
    st.units.get_mut("p/0").unwrap().meter_status_seen.clear();
    st.settings.juju_version = "3.6.14".into();
    assert_eq!(meter_status_due(&st, "p/0"), None, "never from 3.6.11");
}

#[test]
fn two_subordinates_in_container_scope_meet_only_on_the_same_principal_unit() {
    // a (provider) and b (requirer) are both subordinates, each on p's two units; b also sits
    // on q/0, where a has no unit. Juju: the subordinates' uniters hear of the relation
    // (subRelationsWatcher.shouldSendCheck: the other end is a subordinate), each enters the
    // scope of its own principal unit (Relation.unit: r#<id>#<principal>), and meets the
    // other subordinate's unit of that principal only.
    const A: &str = "name: a\nsubordinate: true\nrequires: {host: {interface: juju-info, scope: container}}\nprovides: {cos: {interface: cos_agent, scope: container}}\n";
    const B: &str = "name: b\nsubordinate: true\nrequires: {host: {interface: juju-info, scope: container}, cos: {interface: cos_agent, scope: container}}\n";
    let mut st = model();
    st.applications
        .insert("p".into(), app("p", PRINCIPAL, Some("p/0")));
    st.applications
        .insert("q".into(), app("q", "name: q\n", Some("q/0")));
    st.applications.insert("a".into(), app("a", A, Some("a/0")));
    st.applications.insert("b".into(), app("b", B, Some("b/0")));
    for (u, p) in [
        ("p/0", None),
        ("p/1", None),
        ("q/0", None),
        ("a/0", Some("p/0")),
        ("a/1", Some("p/1")),
        ("b/0", Some("p/0")),
        ("b/1", Some("p/1")),
        ("b/2", Some("q/0")),
    ] {
        st.units.insert(u.into(), unit(u, p));
    }
    let rels = [
        relation(&st, 0, &[("p", "juju-info"), ("a", "host")], true),
        relation(&st, 1, &[("p", "juju-info"), ("b", "host")], true),
        relation(&st, 2, &[("q", "juju-info"), ("b", "host")], true),
        relation(&st, 3, &[("a", "cos"), ("b", "cos")], true),
    ];
    for r in rels {
        st.relations.insert(r.id, r);
    }

    let ran = drive(&mut st);
    let cos = |u: &str| -> Vec<&str> {
        of(&ran, u)
            .into_iter()
            .filter(|h| h.starts_with("cos-"))
            .collect()
    };
    assert_eq!(
        cos("a/0"),
        vec![
            "cos-relation-created  b",
            "cos-relation-joined b/0 b",
            "cos-relation-changed b/0 b"
        ],
        "{ran:?}"
    );
    assert_eq!(
        cos("b/1"),
        vec![
            "cos-relation-created  a",
            "cos-relation-joined a/1 a",
            "cos-relation-changed a/1 a"
        ],
        "{ran:?}"
    );
    // b/2's principal has no unit of a: it is in the relation, alone in its scope
    assert_eq!(cos("b/2"), vec!["cos-relation-created  a"], "{ran:?}");
    // principals take no part in a relation between their subordinates
    for p in ["p/0", "p/1", "q/0"] {
        assert!(!st.units[p].view.relations.contains_key(&3), "{p}: {ran:?}");
    }
    let rel = &st.relations[&3];
    assert_eq!(st.members(rel, &st.units["a/1"]), vec!["b/1".to_string()]);
    assert!(st.members(rel, &st.units["b/2"]).is_empty());

    // the relation goes: each subordinate departs its one counterpart and breaks; the
    // subordinates stay, as their principal relations do
    st.relations.get_mut(&3).unwrap().dying = true;
    let ran = drive(&mut st);
    assert_eq!(
        of(&ran, "a/0"),
        vec!["cos-relation-departed b/0 b", "cos-relation-broken  b"],
        "{ran:?}"
    );
    assert_eq!(of(&ran, "b/2"), vec!["cos-relation-broken  a"], "{ran:?}");
    assert!(st.units.values().all(|u| u.life == Life::Alive));
    assert!(!st.relations.contains_key(&3));
}
