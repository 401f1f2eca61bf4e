//! Tests of the hook tools against a small model: exact output, `--format=json`, errors
//! and the transactional flush.

use crate::charm::parse_meta;
use crate::hookctx::HookContext;
use crate::hooktools::{run_tool, ToolOutput};
use crate::resolver::{HookKind, HookSpec};
use crate::state::*;
use std::collections::{BTreeMap, BTreeSet};

const META: &str = "name: t\nprovides: {web: {interface: w}}\nrequires: {client: {interface: w}}\npeers: {cluster: {interface: c}}\n";
const CONFIG: &str = "options:\n  port: {type: int, default: 80}\n  name: {type: string}\n  flag: {type: boolean, default: false}\n";

fn app(name: &str, leader: &str) -> Application {
    Application {
        name: name.into(),
        charm_path: "/nonexistent".into(),
        meta: parse_meta(
            META,
            Some(CONFIG),
            Some("go: {params: {n: {type: integer, default: 1}}}"),
        )
        .unwrap(),
        config: BTreeMap::new(),
        leader: Some(leader.into()),
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

fn unit(name: &str, rels: &[u32]) -> Unit {
    let mut view = UniterView {
        installed: true,
        started: true,
        ..Default::default()
    };
    for r in rels {
        view.relations.insert(*r, RelView::default());
    }
    Unit {
        name: name.into(),
        app: app_of(name).into(),
        machine: "0".into(),
        principal: None,
        life: Life::Alive,
        workload: Status::new("active", "fine"),
        agent: "idle".into(),
        agent_message: String::new(),
        ports: BTreeSet::new(),
        charm_state: BTreeMap::new(),
        view,
        error: None,
        pending_actions: vec![],
        pending_secret_changed: BTreeSet::new(),
        pending_secret_remove: BTreeSet::new(),
        status_ever_set: true,
        hooks_run: 0,
        hook_log: vec![],
        meter_status_seen: String::new(),
        failures: vec![],
    }
}

fn ep(app: &str, name: &str, st: &ModelState) -> RelEndpoint {
    RelEndpoint {
        app: app.into(),
        spec: st.applications[app].meta.endpoint(name).unwrap(),
    }
}

/// a/0 (leader), a/1 and b/0; peer relation cluster:0 of a; web:1 between a:web and b:client.
fn model() -> ModelState {
    let mut st = ModelState::new(Substrate::Bare, Settings::default());
    st.applications.insert("a".into(), app("a", "a/0"));
    st.applications.insert("b".into(), app("b", "b/0"));
    for u in ["a/0", "a/1"] {
        st.units.insert(u.into(), unit(u, &[0, 1]));
    }
    st.units.insert("b/0".into(), unit("b/0", &[1]));
    let peer = Relation {
        id: 0,
        endpoints: vec![ep("a", "cluster", &st)],
        container: false,
        dying: false,
        unit_bags: BTreeMap::new(),
        app_bags: BTreeMap::new(),
        in_scope: ["a/0", "a/1"].iter().map(|s| s.to_string()).collect(),
    };
    let mut web = Relation {
        id: 1,
        endpoints: vec![ep("a", "web", &st), ep("b", "client", &st)],
        container: false,
        dying: false,
        unit_bags: BTreeMap::new(),
        app_bags: BTreeMap::new(),
        in_scope: ["a/0", "a/1", "b/0"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    web.unit_bags.insert(
        "b/0".into(),
        Bag {
            data: [("host".to_string(), "10.0.0.9".to_string())].into(),
            version: 1,
        },
    );
    web.app_bags.insert(
        "b".into(),
        Bag {
            data: [("url".to_string(), "http://b".to_string())].into(),
            version: 1,
        },
    );
    web.app_bags.insert(
        "a".into(),
        Bag {
            data: [("secret".to_string(), "x".to_string())].into(),
            version: 1,
        },
    );
    st.relations.insert(0, peer);
    st.relations.insert(1, web);
    for u in ["a/0", "a/1"] {
        st.units
            .get_mut(u)
            .unwrap()
            .view
            .relations
            .get_mut(&1)
            .unwrap()
            .members
            .insert("b/0".into(), Some(1));
    }
    st
}

fn ctx(unit: &str, kind: HookKind, rel: Option<u32>, remote: &str) -> HookContext {
    HookContext {
        id: "ctx".into(),
        unit: unit.into(),
        hook: HookSpec {
            kind,
            name: "h".into(),
            relation: rel,
            endpoint: if rel == Some(1) {
                if unit.starts_with('a') {
                    "web".into()
                } else {
                    "client".into()
                }
            } else {
                String::new()
            },
            remote_app: if remote.is_empty() {
                String::new()
            } else {
                app_of(remote).into()
            },
            remote_unit: remote.into(),
            departing: String::new(),
            secret: None,
            action: None,
            snapshot: 0,
            snapshot_app: 0,
            config_hash: String::new(),
        },
        root: String::new(),
        ip: "10.0.0.2".into(),
        cidr: "10.0.0.2/24".into(),
        log_path: std::env::temp_dir().join(format!("lm-tools-test-{}.log", std::process::id())),
        reads: BTreeMap::new(),
        rel_writes: BTreeMap::new(),
        ports: vec![],
        state_writes: BTreeMap::new(),
        secret_ops: vec![],
        status_read: None,
        config: None,
    }
}

fn run(st: &mut ModelState, c: &mut HookContext, tool: &str, args: &[&str]) -> ToolOutput {
    let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_tool(st, c, tool, &a, b"")
}

fn ok(o: ToolOutput) -> String {
    assert_eq!(o.code, 0, "{o:?}");
    o.stdout
}

#[test]
fn relation_get_outputs_json_and_null_for_missing_keys() {
    let mut st = model();
    let mut c = ctx("a/1", HookKind::RelationChanged, Some(1), "b/0");
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["--format=json", "-", "b/0"]
        )),
        "{\"host\":\"10.0.0.9\"}\n"
    );
    assert_eq!(
        ok(run(&mut st, &mut c, "relation-get", &["--format=json"])),
        "{\"host\":\"10.0.0.9\"}\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["--format=json", "host"]
        )),
        "\"10.0.0.9\"\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["--format=json", "nope"]
        )),
        "null\n"
    );
    assert_eq!(ok(run(&mut st, &mut c, "relation-get", &["nope"])), "");
    assert_eq!(
        ok(run(&mut st, &mut c, "relation-get", &["host"])),
        "10.0.0.9\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["--format=json", "--app", "-", "b"]
        )),
        "{\"url\":\"http://b\"}\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["-r", "web:1", "--format=json", "--app"]
        )),
        "{\"url\":\"http://b\"}\n"
    );
    // other relations by id, from any hook
    let mut c2 = ctx("a/1", HookKind::UpdateStatus, None, "");
    assert_eq!(
        ok(run(
            &mut st,
            &mut c2,
            "relation-get",
            &["-r", "1", "--format=json", "host", "b/0"]
        )),
        "\"10.0.0.9\"\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c2,
            "relation-ids",
            &["--format=json", "web"]
        )),
        "[\"web:1\"]\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c2,
            "relation-ids",
            &["--format=json", "cluster"]
        )),
        "[\"cluster:0\"]\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c2,
            "relation-list",
            &["--format=json", "-r", "web:1"]
        )),
        "[\"b/0\"]\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c2,
            "relation-list",
            &["--format=json", "-r", "1", "--app"]
        )),
        "\"b\"\n"
    );
    let o = run(&mut st, &mut c2, "relation-get", &["host", "b/0"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "ERROR no relation id specified\n")
    );
}

#[test]
fn unknown_relations_fail_like_juju() {
    let mut st = model();
    let mut c = ctx("a/1", HookKind::UpdateStatus, None, "");
    for r in ["99", "db:1", "cluster:1"] {
        let o = run(&mut st, &mut c, "relation-get", &["-r", r, "-", "b/0"]);
        assert_eq!(
            o.stderr,
            format!("ERROR invalid value \"{r}\" for option -r: relation not found\n")
        );
        assert_ne!(o.code, 0);
    }
    // not a number at all: jujuc (*relationIdValue).Set's strconv.Atoi
    let o = run(&mut st, &mut c, "relation-get", &["-r", "x", "-", "b/0"]);
    assert_eq!(
        o.stderr,
        "ERROR invalid value \"x\" for option -r: invalid relation id\n"
    );
    // b/0 does not know the peer relation of a
    let mut cb = ctx("b/0", HookKind::UpdateStatus, None, "");
    assert_ne!(run(&mut st, &mut cb, "relation-list", &["-r", "0"]).code, 0);
}

#[test]
fn app_databag_rules() {
    let mut st = model();
    let mut c = ctx("a/1", HookKind::RelationChanged, Some(1), "b/0");
    let o = run(&mut st, &mut c, "relation-set", &["--app", "k=v"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "ERROR cannot write relation settings\n")
    );
    let o = run(&mut st, &mut c, "relation-get", &["--app", "-", "a"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "ERROR permission denied\n")
    );
    // peers: every unit reads the app databag
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["-r", "0", "--app", "--format=json", "-", "a"]
        )),
        "{}\n"
    );
    // the leader reads and writes its own app databag
    let mut l = ctx("a/0", HookKind::RelationChanged, Some(1), "b/0");
    assert_eq!(
        ok(run(
            &mut st,
            &mut l,
            "relation-get",
            &["--app", "--format=json", "-", "a"]
        )),
        "{\"secret\":\"x\"}\n"
    );
    ok(run(&mut st, &mut l, "relation-set", &["--app", "k=v"]));
}

#[test]
fn relation_set_is_buffered_until_flush() {
    let mut st = model();
    let mut c = ctx("a/1", HookKind::RelationChanged, Some(1), "b/0");
    ok(run(&mut st, &mut c, "relation-set", &["a=1", "b=2"]));
    let a: Vec<String> = vec!["--file".into(), "-".into(), "c=3".into()];
    assert_eq!(
        run_tool(
            &mut st,
            &mut c,
            "relation-set",
            &a,
            b"{\"b\": \"\", \"d\": 4}"
        )
        .code,
        0
    );
    // the hook sees its own writes, the model does not yet
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "relation-get",
            &["--format=json", "-", "a/1"]
        )),
        "{\"a\":\"1\",\"c\":\"3\",\"d\":\"4\"}\n"
    );
    assert!(!st.relations[&1].unit_bags.contains_key("a/1"));
    ok(run(&mut st, &mut c, "open-port", &["8080"]));
    ok(run(&mut st, &mut c, "state-set", &["k=v"]));
    assert_eq!(
        ok(run(&mut st, &mut c, "opened-ports", &["--format=json"])),
        "[\"8080/tcp\"]\n"
    );
    assert_eq!(
        ok(run(&mut st, &mut c, "state-get", &["--format=json"])),
        "{\"k\":\"v\"}\n"
    );
    assert!(st.units["a/1"].ports.is_empty());
    c.flush(&mut st);
    let bag = &st.relations[&1].unit_bags["a/1"];
    assert_eq!(bag.data.len(), 3);
    assert_eq!(bag.version, 1);
    assert!(st.units["a/1"].ports.contains("8080/tcp"));
    assert_eq!(st.units["a/1"].charm_state["k"], "v");
}

#[test]
fn config_status_leader_network() {
    let mut st = model();
    st.applications
        .get_mut("a")
        .unwrap()
        .config
        .insert("name".into(), serde_json::json!("n"));
    let mut c = ctx("a/1", HookKind::ConfigChanged, None, "");
    assert_eq!(
        ok(run(&mut st, &mut c, "config-get", &["--format=json"])),
        "{\"flag\":false,\"name\":\"n\",\"port\":80}\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "config-get",
            &["--format=json", "port"]
        )),
        "80\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "config-get",
            &["--format=json", "missing"]
        )),
        "null\n"
    );
    st.applications.get_mut("a").unwrap().config.clear();
    // a hook keeps seeing the config it first read
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "config-get",
            &["--format=json", "name"]
        )),
        "\"n\"\n"
    );
    let mut c = ctx("a/1", HookKind::ConfigChanged, None, "");
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "config-get",
            &["--format=json", "--all"]
        )),
        "{\"flag\":false,\"name\":null,\"port\":80}\n"
    );
    assert_eq!(
        ok(run(&mut st, &mut c, "is-leader", &["--format=json"])),
        "false\n"
    );
    assert_eq!(ok(run(&mut st, &mut c, "is-leader", &[])), "False\n");
    ok(run(&mut st, &mut c, "status-set", &["blocked", "need db"]));
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "status-get",
            &["--format=json", "--include-data"]
        )),
        "{\"message\":\"need db\",\"status\":\"blocked\",\"status-data\":{}}\n"
    );
    assert_eq!(run(&mut st, &mut c, "status-set", &["error"]).code, 2);
    assert_eq!(
        run(&mut st, &mut c, "status-set", &["--application", "active"]).stderr,
        "ERROR this unit is not the leader\n"
    );
    assert_eq!(
        run(&mut st, &mut c, "leader-set", &["k=v"]).stderr,
        "ERROR cannot write leadership settings: cannot write settings: not the leader\n"
    );
    let net = ok(run(
        &mut st,
        &mut c,
        "network-get",
        &["--format=json", "web"],
    ));
    let v: serde_json::Value = serde_json::from_str(&net).unwrap();
    assert_eq!(v["ingress-addresses"][0], "10.0.0.2");
    assert_eq!(
        v["bind-addresses"][0]["addresses"][0]["cidr"],
        "10.0.0.0/24"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut c,
            "network-get",
            &["web", "--ingress-address"]
        )),
        "10.0.0.2\n"
    );
    assert_eq!(
        run(&mut st, &mut c, "network-get", &["nope"]).stderr,
        "ERROR no network config found for binding \"nope\"\n"
    );
    assert_eq!(
        ok(run(&mut st, &mut c, "unit-get", &["private-address"])),
        "10.0.0.2\n"
    );
    let mut l = ctx("a/0", HookKind::ConfigChanged, None, "");
    ok(run(&mut st, &mut l, "leader-set", &["k=v"]));
    assert_eq!(
        ok(run(&mut st, &mut c, "leader-get", &["--format=json"])),
        "{\"k\":\"v\"}\n"
    );
    assert_eq!(st.applications["a"].leader_settings_version, 2);
}

#[test]
fn action_tools_only_in_actions() {
    let mut st = model();
    let mut c = ctx("a/1", HookKind::ConfigChanged, None, "");
    let o = run(&mut st, &mut c, "action-get", &[]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "ERROR not running an action\n")
    );
    st.actions.insert(
        7,
        ActionRun {
            id: 7,
            unit: "a/1".into(),
            name: "go".into(),
            params: serde_json::json!({"n": 1, "deep": {"x": "y"}})
                .as_object()
                .unwrap()
                .clone(),
            status: "running".into(),
            message: String::new(),
            results: Default::default(),
            log: vec![],
        },
    );
    let mut a = ctx("a/1", HookKind::Action, None, "");
    a.hook.action = Some(7);
    assert_eq!(
        ok(run(
            &mut st,
            &mut a,
            "action-get",
            &["--format=json", "deep.x"]
        )),
        "\"y\"\n"
    );
    ok(run(&mut st, &mut a, "action-set", &["out.a=1", "b=2"]));
    assert_eq!(
        serde_json::Value::Object(st.actions[&7].results.clone()),
        serde_json::json!({"out": {"a": "1"}, "b": "2"})
    );
    assert_eq!(run(&mut st, &mut a, "action-set", &["stdout=x"]).code, 2);
    assert_eq!(run(&mut st, &mut a, "action-set", &["Bad=x"]).code, 2);
    ok(run(&mut st, &mut a, "action-fail", &["nope"]));
    assert_eq!(st.actions[&7].status, "failed");
}

#[test]
fn secrets_flow_from_owner_to_consumer() {
    let mut st = model();
    let mut l = ctx("a/0", HookKind::RelationChanged, Some(1), "b/0");
    let uri = ok(run(
        &mut st,
        &mut l,
        "secret-add",
        &["--label", "creds", "password=s3cret"],
    ))
    .trim()
    .to_string();
    let xid = uri
        .strip_prefix(&format!("secret://{}/", st.uuid))
        .unwrap_or_else(|| panic!("{uri} is not secret://<model-uuid>/<id>"))
        .to_string();
    assert_eq!(xid.len(), 20, "{uri}");
    ok(run(
        &mut st,
        &mut l,
        "secret-grant",
        &["--relation", "web:1", &uri],
    ));
    assert_eq!(
        ok(run(
            &mut st,
            &mut l,
            "secret-get",
            &["--format=json", "--label", "creds"]
        )),
        "{\"password\":\"s3cret\"}\n"
    );
    assert!(st.secrets.is_empty(), "buffered");
    l.flush(&mut st);
    assert_eq!(
        ok(run(
            &mut st,
            &mut ctx("a/0", HookKind::UpdateStatus, None, ""),
            "secret-ids",
            &["--format=json"]
        )),
        format!("[\"{xid}\"]\n")
    );
    // a non-leader of the owner app cannot add app secrets
    let mut n = ctx("a/1", HookKind::UpdateStatus, None, "");
    assert_eq!(
        run(&mut st, &mut n, "secret-add", &["key=vvv"]).stderr,
        "ERROR this unit is not the leader\n"
    );
    // the consumer, granted through the relation, tracks revision 1
    let mut b = ctx("b/0", HookKind::RelationChanged, Some(1), "a/0");
    assert_eq!(
        ok(run(&mut st, &mut b, "secret-get", &["--format=json", &uri])),
        "{\"password\":\"s3cret\"}\n"
    );
    assert_eq!(
        run(&mut st, &mut b, "secret-info-get", &[&uri]).stderr,
        format!("ERROR secret \"{xid}\" not found\n")
    );
    // a new revision: the consumer gets secret-changed and still sees its tracked revision
    let mut l2 = ctx("a/0", HookKind::UpdateStatus, None, "");
    ok(run(&mut st, &mut l2, "secret-set", &[&uri, "password=n3w"]));
    l2.flush(&mut st);
    assert!(st.units["b/0"].pending_secret_changed.contains(&xid));
    let mut b2 = ctx("b/0", HookKind::SecretChanged, None, "");
    assert_eq!(
        ok(run(
            &mut st,
            &mut b2,
            "secret-get",
            &["--format=json", &uri]
        )),
        "{\"password\":\"s3cret\"}\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut b2,
            "secret-get",
            &["--format=json", "--peek", &uri]
        )),
        "{\"password\":\"n3w\"}\n"
    );
    assert_eq!(
        ok(run(
            &mut st,
            &mut b2,
            "secret-get",
            &["--format=json", "--refresh", &uri]
        )),
        "{\"password\":\"n3w\"}\n"
    );
    assert_eq!(st.secrets[&xid].consumers["b/0"].tracked, 2);
    // revision 1 is tracked by nobody now: the owner (the leader) is told once
    st.queue_secret_removals();
    st.queue_secret_removals();
    assert_eq!(
        st.units["a/0"]
            .pending_secret_remove
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        vec![(xid.clone(), 1)]
    );
    let mut r = ctx("a/0", HookKind::SecretRemove, None, "");
    ok(run(
        &mut st,
        &mut r,
        "secret-remove",
        &[&uri, "--revision", "1"],
    ));
    r.flush(&mut st);
    assert_eq!(
        st.secrets[&xid]
            .revisions
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![2]
    );
    let info = ok(run(
        &mut st,
        &mut l2,
        "secret-info-get",
        &["--format=json", &uri],
    ));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v[&xid]["revision"], 2);
    assert_eq!(v[&xid]["label"], "creds");
}

#[test]
fn app_data_change_fires_changed_with_empty_remote_unit_on_others_only() {
    use crate::resolver::next_op;
    let mut st = model();
    for u in ["a/0", "a/1"] {
        let other = if u == "a/0" { "a/1" } else { "a/0" };
        st.units
            .get_mut(u)
            .unwrap()
            .view
            .relations
            .get_mut(&0)
            .unwrap()
            .members
            .insert(other.into(), Some(0));
        st.units.get_mut(u).unwrap().view.config_hash =
            Some(crate::resolver::config_hash(&st, "a"));
    }
    st.units.get_mut("b/0").unwrap().view.config_hash =
        Some(crate::resolver::config_hash(&st, "b"));
    st.units
        .get_mut("b/0")
        .unwrap()
        .view
        .relations
        .get_mut(&1)
        .unwrap()
        .members
        .insert("a/0".into(), Some(0));
    st.units
        .get_mut("b/0")
        .unwrap()
        .view
        .relations
        .get_mut(&1)
        .unwrap()
        .members
        .insert("a/1".into(), Some(0));
    st.units
        .get_mut("b/0")
        .unwrap()
        .view
        .relations
        .get_mut(&1)
        .unwrap()
        .app_seen = 1;
    for u in ["a/0", "a/1", "b/0"] {
        let a = app_of(u).to_string();
        st.units.get_mut(u).unwrap().view.leader_term_seen = 1;
        st.units.get_mut(u).unwrap().view.leader_settings_seen =
            st.applications[&a].leader_settings_version;
    }
    st.units
        .get_mut("a/0")
        .unwrap()
        .view
        .relations
        .get_mut(&1)
        .unwrap()
        .app_seen = 1;
    st.units
        .get_mut("a/1")
        .unwrap()
        .view
        .relations
        .get_mut(&1)
        .unwrap()
        .app_seen = 1;
    for u in ["a/0", "a/1", "b/0"] {
        assert_eq!(next_op(&st, u, 0), None, "{u} settled");
    }
    // the leader writes the peer app databag and a's web app databag
    let mut c = ctx("a/0", HookKind::ConfigChanged, None, "");
    ok(run(
        &mut st,
        &mut c,
        "relation-set",
        &["-r", "cluster:0", "--app", "k=v"],
    ));
    ok(run(
        &mut st,
        &mut c,
        "relation-set",
        &["-r", "web:1", "--app", "k=v"],
    ));
    c.flush(&mut st);
    assert_eq!(
        next_op(&st, "a/0", 0),
        None,
        "no relation-changed for its own writes"
    );
    let h = next_op(&st, "a/1", 0).unwrap();
    assert_eq!(
        (
            h.name.as_str(),
            h.remote_unit.as_str(),
            h.remote_app.as_str()
        ),
        ("cluster-relation-changed", "", "a")
    );
    let h = next_op(&st, "b/0", 0).unwrap();
    assert_eq!(
        (
            h.name.as_str(),
            h.remote_unit.as_str(),
            h.remote_app.as_str()
        ),
        ("client-relation-changed", "", "a")
    );
    crate::resolver::commit(&mut st, "b/0", &h, 0);
    assert_eq!(next_op(&st, "b/0", 0), None);
}

// juju/gnuflag parseGnuFlagArg + boolValue.Set (strconv.ParseBool): how ops calls status-set
#[test]
fn boolean_flags_take_the_values_go_accepts_as_ops_passes_them() {
    let mut st = model();
    // a non-leader: `--application=False` is its own status, not the application's
    let mut c = ctx("a/1", HookKind::UpdateStatus, None, "");
    ok(run(
        &mut st,
        &mut c,
        "status-set",
        &["--application=False", "blocked", "--", "from ops"],
    ));
    let shown = |s: &Status| (s.status.clone(), s.message.clone());
    assert_eq!(
        shown(&st.units["a/1"].workload),
        ("blocked".into(), "from ops".into())
    );
    assert_eq!(
        run(
            &mut st,
            &mut c,
            "status-set",
            &["--application=1", "active"]
        )
        .stderr,
        "ERROR this unit is not the leader\n"
    );
    // the leader: every spelling Go accepts, the last occurrence winning
    let mut l = ctx("a/0", HookKind::UpdateStatus, None, "");
    ok(run(
        &mut st,
        &mut l,
        "status-set",
        &["--application=True", "waiting", "app"],
    ));
    ok(run(
        &mut st,
        &mut l,
        "status-set",
        &["--application", "--application=f", "maintenance", "unit"],
    ));
    assert_eq!(
        st.applications["a"].status.as_ref().map(shown),
        Some(("waiting".into(), "app".into()))
    );
    assert_eq!(
        shown(&st.units["a/0"].workload),
        ("maintenance".into(), "unit".into())
    );
    let o = run(
        &mut st,
        &mut l,
        "status-set",
        &["--application=yes", "active"],
    );
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "ERROR invalid value \"yes\" for flag --application: strconv.ParseBool: parsing \"yes\": invalid syntax\n"
    );
}

// core/secrets/secret.go ParseURI: every secret tool takes `<id>`, `secret:<id>` and
// `secret://<model-uuid>/<id>` for the same secret
#[test]
fn secret_tools_take_the_bare_id_and_both_uri_forms() {
    let mut st = model();
    let mut l = ctx("a/0", HookKind::UpdateStatus, None, "");
    let uri = ok(run(&mut st, &mut l, "secret-add", &["password=one"]))
        .trim()
        .to_string();
    l.flush(&mut st);
    let xid = uri.rsplit('/').next().unwrap().to_string();
    let forms = [xid.clone(), format!("secret:{xid}"), uri.clone()];
    let mut current = "one".to_string();
    for (n, id) in forms.iter().enumerate() {
        let mut c = ctx("a/0", HookKind::UpdateStatus, None, "");
        assert_eq!(
            ok(run(&mut st, &mut c, "secret-get", &["--format=json", id])),
            format!("{{\"password\":\"{current}\"}}\n"),
            "{id}"
        );
        current = format!("v{n}");
        let info = ok(run(
            &mut st,
            &mut c,
            "secret-info-get",
            &["--format=json", id],
        ));
        assert!(info.contains(&format!("\"{xid}\"")), "{id}: {info}");
        ok(run(
            &mut st,
            &mut c,
            "secret-set",
            &[id, &format!("password=v{n}")],
        ));
        ok(run(&mut st, &mut c, "secret-grant", &["-r", "web:1", id]));
        ok(run(&mut st, &mut c, "secret-revoke", &["-r", "web:1", id]));
        c.flush(&mut st);
        assert_eq!(st.secrets[&xid].latest(), n as u64 + 2, "{id}");
    }
    let mut c = ctx("a/0", HookKind::UpdateStatus, None, "");
    ok(run(
        &mut st,
        &mut c,
        "secret-remove",
        &[&format!("secret:{xid}")],
    ));
    c.flush(&mut st);
    assert!(!st.secrets.contains_key(&xid));
}

/// Runs the resolver to quiescence, every decided hook succeeding; the hooks each unit ran.
fn settle(st: &mut ModelState) -> BTreeMap<String, Vec<String>> {
    use crate::resolver::{commit, next_op};
    let mut ran: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..1000 {
        let mut any = false;
        let units: Vec<String> = st.units.keys().cloned().collect();
        for u in units {
            if let Some(h) = next_op(st, &u, 0) {
                commit(st, &u, &h, 0);
                ran.entry(u).or_default().push(h.name.clone());
                any = true;
            }
        }
        if !any {
            return ran;
        }
    }
    panic!("the model never settles");
}

/// The test model with a third unit of a (a/2), settled.
fn settled_model() -> ModelState {
    let mut st = model();
    st.units.insert("a/2".into(), unit("a/2", &[0, 1]));
    for id in [0, 1] {
        st.relations
            .get_mut(&id)
            .unwrap()
            .in_scope
            .insert("a/2".into());
    }
    settle(&mut st);
    st
}

// worker/uniter/operation/runhook.go Commit: upgrade-charm queues config-changed, and
// config-changed queues start only when the unit has not started; the upgrade restarts the
// resolver loop (uniter.go, resolver.ErrRestart) with a LocalState whose
// LeaderSettingsVersion is 0, so non-leaders then run leader-settings-changed
// (leadership/resolver.go)
#[test]
fn upgrade_charm_is_followed_by_config_changed_and_start_does_not_run_again() {
    let mut st = settled_model();
    st.applications.get_mut("a").unwrap().charm_revision += 1;

    let ran = settle(&mut st);

    assert_eq!(ran["a/0"], ["upgrade-charm", "config-changed"]);
    for u in ["a/1", "a/2"] {
        assert_eq!(
            ran[u],
            ["upgrade-charm", "config-changed", "leader-settings-changed"],
            "{u}"
        );
    }
    assert!(!ran.contains_key("b/0"), "{ran:?}");
    assert!(st.units.values().all(|u| u.view.started));
}

// leadership/resolver.go: leader-settings-changed when LocalState.LeaderSettingsVersion differs
// from the remote one, which only the leader-settings watcher bumps (remotestate watcher.go
// leaderSettingsChanged; leadershipChanged only records who leads)
#[test]
fn leader_settings_changed_runs_on_non_leaders_only_when_leader_data_changes() {
    use crate::resolver::{commit, HookSpec};
    let mut st = settled_model();
    // the leader goes: a/1 leads; a/2 hears of the departure, not of the new leader
    commit(
        &mut st,
        "a/0",
        &HookSpec::simple(HookKind::Remove, "remove"),
        0,
    );
    assert_eq!(st.applications["a"].leader.as_deref(), Some("a/1"));
    let ran = settle(&mut st);
    assert!(ran["a/1"].iter().any(|h| h == "leader-elected"), "{ran:?}");
    assert!(
        !ran.values()
            .flatten()
            .any(|h| h == "leader-settings-changed"),
        "{ran:?}"
    );

    // the new leader changes the leader data: the non-leader hears of it, once
    let mut l = ctx("a/1", HookKind::UpdateStatus, None, "");
    ok(run(&mut st, &mut l, "leader-set", &["k=v"]));
    let ran = settle(&mut st);
    assert_eq!(
        ran,
        BTreeMap::from([(
            "a/2".to_string(),
            vec!["leader-settings-changed".to_string()]
        )])
    );
    // the same data again changes nothing
    ok(run(&mut st, &mut l, "leader-set", &["k=v"]));
    assert!(settle(&mut st).is_empty());
}

/// What maas-region's leader does with its TLS secret in one hook (create it, find it again by
/// label, put a new content): Juju shows the hook its own pending secret and folds the update
/// into the creation; a later hook that creates the label again fails at commit.
#[test]
fn a_secret_created_in_the_hook_is_found_by_label_and_a_label_is_created_once() {
    let mut st = model();
    let mut l = ctx("a/0", HookKind::UpdateStatus, None, "");
    let uri = ok(run(
        &mut st,
        &mut l,
        "secret-add",
        &["--label", "tls", "cacert=one"],
    ))
    .trim()
    .to_string();
    let info = ok(run(
        &mut st,
        &mut l,
        "secret-info-get",
        &["--format=json", "--label", "tls"],
    ));
    let xid = uri.rsplit('/').next().unwrap().to_string();
    assert!(info.contains(&xid), "{info}");
    ok(run(
        &mut st,
        &mut l,
        "secret-set",
        &[&uri, "cacert=one", "cert=two"],
    ));
    assert_eq!(
        run(
            &mut st,
            &mut l,
            "secret-add",
            &["--label", "tls", "cacert=three"]
        )
        .stderr,
        "ERROR secret with label \"tls\" already exists\n"
    );
    assert_eq!(l.commit_error(&st), None);
    l.flush(&mut st);
    let s = &st.secrets[&xid];
    assert_eq!(
        s.revisions.keys().collect::<Vec<_>>(),
        vec![&1],
        "one revision"
    );
    assert_eq!(s.revisions[&1].get("cert").map(String::as_str), Some("two"));
    // Next hook: the tool takes a second "tls", the commit refuses it.
    let mut again = ctx("a/0", HookKind::UpdateStatus, None, "");
    ok(run(
        &mut st,
        &mut again,
        "secret-add",
        &["--label", "tls", "cacert=four"],
    ));
    assert_eq!(
        again.commit_error(&st).as_deref(),
        Some("cannot apply changes: creating secrets: secret with label \"tls\" already exists")
    );
}
