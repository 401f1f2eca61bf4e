//! Every row of the shared table of Juju's hook-tool rules (tests/hook-tool-rules/rules.yaml),
//! run through `run_tool`, the entry point the daemon answers the multi-call binary with.

use super::run_tool;
use crate::charm::parse_meta;
use crate::hookctx::HookContext;
use crate::resolver::{HookKind, HookSpec};
use crate::state::*;
use hook_tool_rules::{check_all, world, Call, Fake, Given, Hook, Outcome};
use std::collections::{BTreeMap, BTreeSet};

const PG_META: &str =
    "name: pg\nsummary: s\ndescription: d\nprovides:\n  db:\n    interface: pgsql\n";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn application(name: &str, meta: crate::charm::CharmMeta) -> Application {
    Application {
        name: name.into(),
        charm_path: "/nonexistent".into(),
        meta,
        config: BTreeMap::new(),
        leader: None,
        leader_term: 1,
        leader_settings: BTreeMap::new(),
        leader_settings_version: 1,
        status: None,
        workload_version: String::new(),
        next_unit: 1,
        resources: BTreeMap::new(),
        charm_revision: 0,
        force_units: false,
        base: String::new(),
    }
}

fn unit(name: &str) -> Unit {
    Unit {
        name: name.into(),
        app: app_of(name).into(),
        machine: "0".into(),
        principal: None,
        life: Life::Alive,
        workload: Status::new("active", ""),
        agent: "idle".into(),
        agent_message: String::new(),
        ports: BTreeSet::new(),
        charm_state: BTreeMap::new(),
        view: UniterView {
            installed: true,
            started: true,
            ..Default::default()
        },
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

fn secret(xid: &str, owner: &str, revisions: &[&[(&str, &str)]]) -> Secret {
    Secret {
        xid: xid.trim_start_matches("secret:").into(),
        owner: owner.into(),
        label: None,
        description: None,
        expire: None,
        rotate: None,
        revisions: (1..).zip(revisions).map(|(n, c)| (n, map(c))).collect(),
        grants: vec![],
        consumers: BTreeMap::new(),
        obsolete_notified: Default::default(),
    }
}

/// The table's world (hook_tool_rules::world) as the local model's state and hook context.
fn world(given: &Given) -> (ModelState, HookContext) {
    let mut st = ModelState::new(Substrate::Bare, Settings::default());
    let demo_meta = parse_meta(world::METADATA, Some(world::CONFIG), Some(world::ACTIONS)).unwrap();
    let mut demo = application(world::APP, demo_meta);
    if given.leader {
        demo.leader = Some(world::UNIT.into());
    }
    demo.leader_settings = map(world::LEADER_SETTINGS);
    st.applications.insert(world::APP.into(), demo);
    let mut pg = application(world::REMOTE_APP, parse_meta(PG_META, None, None).unwrap());
    pg.leader = Some(world::REMOTE_UNIT.into());
    st.applications.insert(world::REMOTE_APP.into(), pg);

    let mut me = unit(world::UNIT);
    me.charm_state = map(world::CHARM_STATE);
    let mut db_view = RelView::default();
    db_view.members.insert(world::REMOTE_UNIT.into(), Some(1));
    me.view.relations.insert(world::DB_ID, db_view);
    me.view.relations.insert(world::PEER_ID, RelView::default());
    st.units.insert(world::UNIT.into(), me);
    let mut them = unit(world::REMOTE_UNIT);
    them.view.relations.insert(world::DB_ID, RelView::default());
    st.units.insert(world::REMOTE_UNIT.into(), them);

    let ep = |app: &str, name: &str, st: &ModelState| RelEndpoint {
        app: app.into(),
        spec: st.applications[app].meta.endpoint(name).unwrap(),
    };
    let mut db = Relation {
        id: world::DB_ID,
        endpoints: vec![
            ep(world::APP, world::DB_ENDPOINT, &st),
            ep(world::REMOTE_APP, "db", &st),
        ],
        container: false,
        dying: false,
        unit_bags: BTreeMap::new(),
        app_bags: BTreeMap::new(),
        in_scope: [world::UNIT, world::REMOTE_UNIT]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    db.unit_bags.insert(
        world::REMOTE_UNIT.into(),
        Bag {
            data: map(world::REMOTE_UNIT_DATA),
            version: 1,
        },
    );
    db.app_bags.insert(
        world::REMOTE_APP.into(),
        Bag {
            data: map(world::REMOTE_APP_DATA),
            version: 1,
        },
    );
    let peers = Relation {
        id: world::PEER_ID,
        endpoints: vec![ep(world::APP, world::PEER_ENDPOINT, &st)],
        container: false,
        dying: false,
        unit_bags: BTreeMap::new(),
        app_bags: BTreeMap::new(),
        in_scope: [world::UNIT.to_string()].into(),
    };
    st.relations.insert(world::DB_ID, db);
    st.relations.insert(world::PEER_ID, peers);

    let mut own = secret(
        world::OWN_SECRET,
        &format!("application:{}", world::APP),
        &[world::OWN_CONTENT],
    );
    own.label = Some(world::OWN_LABEL.into());
    st.secrets.insert(own.xid.clone(), own);
    let mut consumed = secret(
        world::CONSUMED_SECRET,
        &format!("application:{}", world::REMOTE_APP),
        world::CONSUMED_REVISIONS,
    );
    consumed.grants.push((world::DB_ID, None));
    consumed.consumers.insert(
        world::UNIT.into(),
        Consumer {
            tracked: 1,
            label: None,
        },
    );
    st.secrets.insert(consumed.xid.clone(), consumed);

    let (kind, name, relation, endpoint, remote_unit, action) = match given.hook {
        Hook::Install => (HookKind::Install, "install".to_string(), None, "", "", None),
        Hook::DbRelationChanged => (
            HookKind::RelationChanged,
            "db-relation-changed".to_string(),
            Some(world::DB_ID),
            world::DB_ENDPOINT,
            world::REMOTE_UNIT,
            None,
        ),
        Hook::Action => {
            st.actions.insert(
                1,
                ActionRun {
                    id: 1,
                    unit: world::UNIT.into(),
                    name: world::ACTION.into(),
                    params: serde_json::json!({"n": 1}).as_object().unwrap().clone(),
                    status: "running".into(),
                    message: String::new(),
                    results: Default::default(),
                    log: vec![],
                },
            );
            (
                HookKind::Action,
                world::ACTION.to_string(),
                None,
                "",
                "",
                Some(1),
            )
        }
    };
    let ctx = HookContext {
        id: "ctx".into(),
        unit: world::UNIT.into(),
        hook: HookSpec {
            kind,
            name,
            relation,
            endpoint: endpoint.into(),
            remote_app: if remote_unit.is_empty() {
                String::new()
            } else {
                world::REMOTE_APP.into()
            },
            remote_unit: remote_unit.into(),
            departing: String::new(),
            secret: None,
            action,
            snapshot: 0,
            snapshot_app: 0,
            config_hash: String::new(),
        },
        root: String::new(),
        ip: "10.0.0.2".into(),
        cidr: "10.0.0.2/24".into(),
        log_path: std::env::temp_dir().join(format!("lm-rules-test-{}.log", std::process::id())),
        reads: BTreeMap::new(),
        rel_writes: BTreeMap::new(),
        ports: vec![],
        state_writes: BTreeMap::new(),
        secret_ops: vec![],
        status_read: None,
        config: None,
    };
    (st, ctx)
}

#[test]
fn the_local_model_follows_every_hook_tool_rule_of_juju() {
    check_all(Fake::LocalModel, |given: &Given, calls: &[Call]| {
        let (mut st, mut ctx) = world(given);
        calls
            .iter()
            .map(|c| {
                let o = run_tool(&mut st, &mut ctx, &c.tool, &c.args, &c.stdin);
                Outcome {
                    code: o.code,
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            })
            .collect()
    });
}
