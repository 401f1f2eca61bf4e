//! The testing API, and the model's Juju rules, exercised through a small demo charm.

use super::*;
use crate::machine::{FileOptions, MachineExt};
use crate::spec::CharmSpec;
use crate::status::Status;
use crate::tools::{LogLevel, Port, SecretOptions};
use crate::{Context, EventKind};
use std::path::Path;

const META: &str = "
name: demo
summary: demo charm
description: exercises charm-lib
provides:
  db:
    interface: pgsql
requires:
  backend:
    interface: http
peers:
  cluster:
    interface: demo-peers
resources:
  wheelhouse:
    type: file
    filename: wheelhouse.tar
";
const CONFIG: &str = "
options:
  port:
    type: int
    default: 8080
    description: port
  greeting:
    type: string
    description: optional greeting
  fail:
    type: boolean
    default: false
    description: make the hook fail after writing
";
const ACTIONS: &str = "
get-secret:
  description: read the shared secret
rotate:
  description: new secret revision
  params:
    value:
      type: string
  required: [value]
  additionalProperties: false
";

#[derive(serde::Deserialize)]
struct Config {
    port: u16,
    greeting: Option<String>,
    fail: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Shared {
    #[serde(rename = "secret-id")]
    secret_id: Option<String>,
    port: Option<u16>,
}

/// A holistic demo: every event reconciles everything.
fn demo(ctx: &mut Context) -> anyhow::Result<()> {
    if let EventKind::Action { name, .. } = &ctx.event.kind {
        return match name.as_str() {
            "get-secret" => {
                let v = ctx.model.get_secret(None, Some("shared"), false)?;
                ctx.action_set(&serde_json::json!({"token": {"length": v["token"].len()}}))
            }
            "rotate" => {
                #[derive(serde::Deserialize)]
                struct P {
                    value: String,
                }
                let p: P = ctx.action_params()?;
                let (id, _) = ctx
                    .model
                    .secret_by_label("shared")?
                    .ok_or_else(|| anyhow::anyhow!("no shared secret yet"))?;
                ctx.model
                    .set_secret(&id, &[("token".to_string(), p.value)].into_iter().collect())?;
                ctx.action_log("rotated")?;
                ctx.action_set(&serde_json::json!({"id": id}))
            }
            _ => unreachable!("actions.yaml lists only these"),
        };
    }
    let cfg: Config = ctx.model.config()?;
    log::info!("reconciling for {}", ctx.event.name());
    let changed = ctx.machine.write_file(
        Path::new("/etc/demo/demo.conf"),
        format!("port={}\n", cfg.port).as_bytes(),
        &FileOptions::root(0o640),
    )?;
    ctx.machine.ensure_service("demo", changed)?;
    ctx.model.set_ports(&[Port::Tcp(cfg.port)])?;
    if let Some(peers) = ctx.model.relation("cluster")? {
        if ctx.model.is_leader()? {
            let mut shared: Shared = peers.read_my_app()?;
            if shared.secret_id.is_none() {
                let id = ctx.model.add_secret(
                    &[("token".to_string(), "s3cr3t-token".to_string())]
                        .into_iter()
                        .collect(),
                    &SecretOptions {
                        label: Some("shared".into()),
                        ..Default::default()
                    },
                )?;
                shared.secret_id = Some(id);
            }
            shared.port = Some(cfg.port);
            peers.write_my_app(&shared)?;
        }
        peers.write_my_unit(&Shared {
            secret_id: None,
            port: Some(cfg.port),
        })?;
    }
    for db in ctx.model.relations("db")? {
        db.set_my_unit_data(
            &[(
                "host".to_string(),
                ctx.model.ingress_address("db")?.unwrap_or_default(),
            )]
            .into_iter()
            .collect(),
        )?;
        if ctx.model.is_leader()? {
            db.set_my_app_data(
                &[("port".to_string(), cfg.port.to_string())]
                    .into_iter()
                    .collect(),
            )?;
        }
    }
    if let Some(g) = cfg.greeting {
        ctx.model.set_workload_version(&g)?;
    }
    if cfg.fail {
        anyhow::bail!("asked to fail");
    }
    ctx.status(Status::active(format!("serving on {}", cfg.port)));
    Ok(())
}

fn harness() -> Harness {
    Harness::from_spec(
        CharmSpec::parse(META, Some(CONFIG), Some(ACTIONS)).unwrap(),
        demo,
    )
}

fn peers() -> Relation {
    Relation::peer(1, "cluster")
}

#[test]
fn install_writes_config_starts_service_opens_port() {
    let out = harness().run_ok(Trigger::Install, &State::default());
    let f = &out.state.machine.files[Path::new("/etc/demo/demo.conf")];
    assert_eq!((f.text().as_str(), f.options.mode), ("port=8080\n", 0o640));
    assert!(out.state.machine.is_active("demo.service"));
    assert!(out.state.opened_ports.contains(&Port::Tcp(8080)));
    assert_eq!(out.state.unit_status, Status::active("serving on 8080"));
    assert_eq!(
        out.command_lines(),
        [
            "systemctl enable demo",
            "systemctl is-active --quiet demo",
            "systemctl start demo"
        ]
    );
    assert!(out
        .logs
        .contains(&(LogLevel::Info, "reconciling for install".into())));
}

#[test]
fn running_a_hook_twice_changes_nothing_the_second_time() {
    let h = harness();
    let st = State::default()
        .leader()
        .with_relation(peers().remote_unit(1, &[]));
    let once = h.run(Trigger::ConfigChanged, &st).unwrap();
    let twice = h.run(Trigger::ConfigChanged, &once.state).unwrap();
    let mut a = once.state.clone();
    let mut b = twice.state.clone();
    a.machine.commands.clear();
    b.machine.commands.clear();
    assert_eq!(a, b);
    assert_eq!(
        twice.command_lines(),
        ["systemctl enable demo", "systemctl is-active --quiet demo"],
        "no restart without a change"
    );
}

#[test]
fn config_change_restarts_and_moves_the_port() {
    let h = harness();
    let first = h.run(Trigger::ConfigChanged, &State::default()).unwrap();
    let out = h
        .run(
            Trigger::ConfigChanged,
            &first.state.clone().with_config("port", 9090),
        )
        .unwrap();
    assert!(out
        .command_lines()
        .contains(&"systemctl restart demo".to_string()));
    assert_eq!(
        out.state.opened_ports.iter().copied().collect::<Vec<_>>(),
        [Port::Tcp(9090)]
    );
}

#[test]
fn leader_creates_secret_and_writes_app_data() {
    let st = State::default().leader().with_relation(peers());
    let out = harness().run(Trigger::LeaderElected, &st).unwrap();
    let rel = out.state.relation(1).unwrap();
    let id = rel.local_app_data["secret-id"].clone();
    assert!(id.starts_with("secret:"));
    assert_eq!(rel.local_app_data["port"], "8080");
    assert_eq!(rel.local_unit_data["port"], "8080");
    assert_eq!(
        out.state.secret(&id).unwrap().latest_content()["token"],
        "s3cr3t-token"
    );
    assert!(
        !out.mentions("s3cr3t-token"),
        "the secret leaked into logs or status"
    );
}

#[test]
fn non_leader_leaves_app_data_alone() {
    let st = State::default().with_relation(peers().local_app_data(&[("port", "1")]));
    let out = harness().run_ok(Trigger::ConfigChanged, &st);
    assert_eq!(out.state.relation(1).unwrap().local_app_data["port"], "1");
}

fn leader_only_app_write(ctx: &mut Context) -> anyhow::Result<()> {
    let db = ctx.model.relation("db")?.expect("related");
    db.set_my_app_data(&[("k".to_string(), "v".to_string())].into_iter().collect())?;
    Ok(())
}

fn non_leader_reads_own_app(ctx: &mut Context) -> anyhow::Result<()> {
    let db = ctx.model.relation("db")?.expect("related");
    db.my_app_data()?;
    Ok(())
}

fn peer_reads_own_app(ctx: &mut Context) -> anyhow::Result<()> {
    let p = ctx.model.relation("cluster")?.expect("related");
    let bag = p.my_app_data()?;
    ctx.status(Status::active(bag.get("x").cloned().unwrap_or_default()));
    Ok(())
}

#[test]
fn leader_rules_are_enforced_before_any_tool_call() {
    let spec = || CharmSpec::parse(META, Some(CONFIG), Some(ACTIONS)).unwrap();
    let db = Relation::new(4, "db", "maas-region").remote_unit(0, &[]);
    let out = Harness::from_spec(spec(), leader_only_app_write)
        .run(
            Trigger::ConfigChanged,
            &State::default().with_relation(db.clone()),
        )
        .unwrap();
    assert!(
        out.error
            .as_deref()
            .unwrap()
            .contains("is not leader and cannot write application data on relation db:4"),
        "{:?}",
        out.error
    );
    assert!(!out.commands.iter().any(|c| c[0] == "relation-set"));
    let out = Harness::from_spec(spec(), leader_only_app_write)
        .run(
            Trigger::ConfigChanged,
            &State::default().leader().with_relation(db.clone()),
        )
        .unwrap();
    assert_eq!(out.state.relation(4).unwrap().local_app_data["k"], "v");
    let out = Harness::from_spec(spec(), non_leader_reads_own_app)
        .run(Trigger::ConfigChanged, &State::default().with_relation(db))
        .unwrap();
    assert!(out
        .error
        .as_deref()
        .unwrap()
        .contains("cannot read its own application databag"));
    let st = State::default().with_relation(peers().local_app_data(&[("x", "shared")]));
    let out = Harness::from_spec(spec(), peer_reads_own_app)
        .run(Trigger::ConfigChanged, &st)
        .unwrap();
    assert_eq!(
        out.state.unit_status,
        Status::active("shared"),
        "every peer reads the peer app databag"
    );
}

#[test]
fn a_failed_hook_discards_relation_data_ports_and_secrets_but_not_status_or_machine() {
    let st = State::default()
        .leader()
        .with_relation(peers())
        .with_config("fail", true)
        .with_config("greeting", "v1");
    let out = harness().run(Trigger::ConfigChanged, &st).unwrap();
    assert_eq!(out.error.as_deref(), Some("asked to fail"));
    assert!(out.state.relation(1).unwrap().local_app_data.is_empty());
    assert!(out.state.secrets.is_empty());
    assert!(out.state.opened_ports.is_empty());
    assert_eq!(
        out.state.workload_version, "v1",
        "application-version-set is immediate"
    );
    assert!(
        out.state
            .machine
            .files
            .contains_key(Path::new("/etc/demo/demo.conf")),
        "host changes are real"
    );
}

#[test]
fn relation_events_carry_remote_units_and_data() {
    fn record(ctx: &mut Context) -> anyhow::Result<()> {
        let r = ctx.event.relation().expect("a relation event").clone();
        let rel = ctx.model.relation_by_id(r.relation.clone())?;
        let remote = r.remote_unit.clone().unwrap_or_default();
        let data = if remote.is_empty() {
            rel.remote_app_data()?
        } else {
            rel.unit_data(&remote)?
        };
        ctx.status(Status::active(format!(
            "{:?} {} {} units={:?} data={:?}",
            r.phase,
            r.remote_app,
            remote,
            rel.units(),
            data
        )));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, Some(CONFIG), None).unwrap(), record);
    let db = Relation::new(3, "db", "region")
        .remote_unit(0, &[("database", "maas")])
        .remote_unit(1, &[])
        .remote_app_data(&[("v", "2")]);
    let st = State::default().with_relation(db);
    let out = h.run(Trigger::RelationChanged(3, Some(0)), &st).unwrap();
    assert_eq!(
        out.state.unit_status.message,
        r#"Changed region region/0 units=["region/0", "region/1"] data={"database": "maas"}"#
    );
    let out = h.run(Trigger::RelationChanged(3, None), &st).unwrap();
    assert!(out
        .state
        .unit_status
        .message
        .ends_with(r#"data={"v": "2"}"#));
    let out = h.run(Trigger::RelationDeparted(3, 1), &st).unwrap();
    assert!(
        out.state
            .unit_status
            .message
            .contains(r#"units=["region/0"]"#),
        "departing unit not listed: {}",
        out.state.unit_status.message
    );
    assert_eq!(
        out.state.relation(3).unwrap().remote_units.len(),
        1,
        "gone after departed"
    );
    assert!(
        h.run(Trigger::RelationBroken(3), &st)
            .unwrap()
            .state
            .relation(3)
            .is_none(),
        "gone after broken"
    );
}

#[test]
fn relation_id_of_another_endpoint_is_refused_clearly() {
    fn wrong(ctx: &mut Context) -> anyhow::Result<()> {
        ctx.model
            .relation_by_id(crate::RelationId::new("backend", 3))?;
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, Some(CONFIG), None).unwrap(), wrong);
    let st = State::default().with_relation(Relation::new(3, "db", "region"));
    let out = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert!(
        out.error
            .as_deref()
            .unwrap()
            .contains("relation backend:3 is not one of demo/0's relations"),
        "{:?}",
        out.error
    );
}

#[test]
fn actions_results_logs_and_failures() {
    let h = harness();
    let st = State::default()
        .leader()
        .with_secret(Secret::owned("secret:abc", &[("token", "hunter22")]).with_label("shared"));
    let out = h
        .run(
            Trigger::Action("get-secret".into(), serde_json::json!({})),
            &st,
        )
        .unwrap();
    assert_eq!(out.action.results["token.length"], "8");
    let out = h
        .run(
            Trigger::Action("rotate".into(), serde_json::json!({"value": "n3w"})),
            &st,
        )
        .unwrap();
    assert_eq!(out.action.results["id"], "secret:abc");
    assert_eq!(out.action.logs, ["rotated"]);
    assert_eq!(out.state.secret("shared").unwrap().latest(), 2);
    let out = h
        .run(
            Trigger::Action("rotate".into(), serde_json::json!({"value": "n3w"})),
            &State::default().leader(),
        )
        .unwrap();
    assert_eq!(out.action.failed.as_deref(), Some("no shared secret yet"));
    assert!(
        !out.failed(),
        "an action's failure does not put the unit in error"
    );
}

#[test]
fn action_tools_fail_outside_an_action() {
    // Juju's runner serves every tool in every hook (jujuc.NewCommand); outside an action the
    // action tools' Run fails (runner/context ActionParams: "not running an action")
    fn misuse(ctx: &mut Context) -> anyhow::Result<()> {
        ctx.tools().action_get()?;
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), misuse);
    let out = h.run(Trigger::Install, &State::default()).unwrap();
    let error = out.error.as_deref().unwrap();
    assert!(error.contains("not running an action"), "{error}");
}

#[test]
fn consumer_tracks_revisions_until_refresh() {
    fn read(ctx: &mut Context) -> anyhow::Result<()> {
        let refresh = matches!(ctx.event.kind, EventKind::Secret(_));
        let v = ctx.model.get_secret(Some("secret:xyz"), None, refresh)?;
        ctx.status(Status::active(v["pass"].clone()));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), read);
    let st = State::default().with_secret(Secret::granted("secret:xyz", &[("pass", "one")]));
    let first = h.run(Trigger::ConfigChanged, &st).unwrap();
    assert_eq!(first.state.unit_status.message, "one");
    let mut rotated = first.state.clone();
    rotated.secrets[0] = rotated.secrets[0].clone().with_revision(&[("pass", "two")]);
    assert_eq!(
        h.run(Trigger::ConfigChanged, &rotated)
            .unwrap()
            .state
            .unit_status
            .message,
        "one",
        "still tracking revision 1"
    );
    assert_eq!(
        h.run(Trigger::SecretChanged("secret:xyz".into()), &rotated)
            .unwrap()
            .state
            .unit_status
            .message,
        "two"
    );
}

#[test]
fn resources_and_network() {
    fn use_them(ctx: &mut Context) -> anyhow::Result<()> {
        let p = ctx.tools().resource_get("wheelhouse")?;
        let addr = ctx.model.ingress_address("cluster")?.unwrap_or_default();
        ctx.status(Status::active(format!("{} {addr}", p.display())));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), use_them);
    let mut st = State::default();
    st.resources
        .insert("wheelhouse".into(), "/res/wheelhouse.tar".into());
    st.network.address = "10.77.0.5".into();
    assert_eq!(
        h.run(Trigger::Install, &st)
            .unwrap()
            .state
            .unit_status
            .message,
        "/res/wheelhouse.tar 10.77.0.5"
    );
    assert!(h
        .run(Trigger::Install, &State::default())
        .unwrap()
        .error
        .unwrap()
        .contains("has no file attached"));
}

#[test]
fn impossible_inputs_are_rejected_with_a_reason() {
    let h = harness();
    let cases: Vec<(State, Trigger, &str)> = vec![
        (
            State::default().with_config("port", "eighty"),
            Trigger::ConfigChanged,
            "is of type int",
        ),
        (
            State::default().with_config("colour", "red"),
            Trigger::ConfigChanged,
            "not in config.yaml",
        ),
        (
            State::default(),
            Trigger::RelationChanged(9, None),
            "relation 9 is not in the state",
        ),
        (
            State::default().with_relation(Relation::new(1, "nope", "x")),
            Trigger::Install,
            "endpoint \"nope\" is not in metadata.yaml",
        ),
        (
            State::default().with_relation(Relation::new(1, "cluster", "x")),
            Trigger::Install,
            "is a peer endpoint",
        ),
        (
            State::default().with_relation(Relation::peer(1, "db")),
            Trigger::Install,
            "is not a peer endpoint",
        ),
        (
            State::default()
                .with_relation(Relation::new(1, "db", "x"))
                .with_relation(Relation::new(1, "db", "y")),
            Trigger::Install,
            "used twice",
        ),
        (
            State::default().with_relation(Relation::new(1, "db", "x")),
            Trigger::RelationJoined(1, 5),
            "has no remote unit x/5",
        ),
        (
            State::default().with_relation(peers().remote_unit(0, &[])),
            Trigger::Install,
            "cannot be its own remote unit",
        ),
        (
            State::default(),
            Trigger::LeaderElected,
            "only on the leader",
        ),
        (
            State::default(),
            Trigger::Action("nope".into(), serde_json::json!({})),
            "not in actions.yaml",
        ),
        (
            State::default(),
            Trigger::Action("rotate".into(), serde_json::json!({})),
            "missing required parameter",
        ),
        (
            State::default(),
            Trigger::Action("rotate".into(), serde_json::json!({"value": 1})),
            "must be of type string",
        ),
        (
            State::default().with_secret(Secret::owned("secret:a", &[("x", "y")])),
            Trigger::SecretChanged("secret:a".into()),
            "fires for consumers",
        ),
        (
            State::default(),
            Trigger::SecretChanged("secret:zz".into()),
            "not in the state",
        ),
    ];
    for (st, t, want) in cases {
        let e = h.run(t.clone(), &st).expect_err(want);
        assert!(e.to_string().contains(want), "{t:?}: {e} (wanted {want:?})");
    }
}

#[test]
fn event_relation_uses_the_environment() {
    fn show(ctx: &mut Context) -> anyhow::Result<()> {
        let rel = ctx
            .model
            .event_relation(&ctx.event)?
            .expect("a relation hook");
        ctx.status(Status::active(format!(
            "{} {:?} {:?} peer={}",
            rel.id(),
            rel.remote_app(),
            rel.units(),
            rel.is_peer()
        )));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), show);
    let st = State::default()
        .with_relation(Relation::new(3, "db", "region").remote_unit(0, &[]))
        .with_relation(peers().remote_unit(2, &[]));
    let out = h.run(Trigger::RelationChanged(3, Some(0)), &st).unwrap();
    assert_eq!(
        out.state.unit_status.message,
        r#"db:3 Some("region") ["region/0"] peer=false"#
    );
    let out = h.run(Trigger::RelationJoined(1, 2), &st).unwrap();
    assert_eq!(
        out.state.unit_status.message,
        r#"cluster:1 Some("demo") ["demo/2"] peer=true"#
    );
    let out = h.run(Trigger::RelationBroken(3), &st).unwrap();
    assert_eq!(
        out.state.unit_status.message,
        r#"db:3 Some("region") [] peer=false"#
    );
}

#[test]
fn the_relation_being_broken_is_not_listed_but_is_still_the_event_relation() {
    fn show(ctx: &mut Context) -> anyhow::Result<()> {
        let listed: Vec<String> = ctx
            .model
            .relations("db")?
            .iter()
            .map(|r| r.id().to_string())
            .collect();
        let event = ctx
            .model
            .event_relation(&ctx.event)?
            .map(|r| r.id().to_string());
        ctx.status(Status::active(format!("{listed:?} {event:?}")));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), show);
    let st = State::default()
        .with_relation(Relation::new(3, "db", "a").remote_unit(0, &[]))
        .with_relation(Relation::new(4, "db", "b"));
    assert_eq!(
        h.run(Trigger::RelationBroken(3), &st)
            .unwrap()
            .state
            .unit_status
            .message,
        r#"["db:4"] Some("db:3")"#
    );
    assert_eq!(
        h.run(Trigger::RelationChanged(3, Some(0)), &st)
            .unwrap()
            .state
            .unit_status
            .message,
        r#"["db:3", "db:4"] Some("db:3")"#
    );
}

#[test]
fn mentions_searches_relation_data_and_charm_state() {
    fn leak(ctx: &mut Context) -> anyhow::Result<()> {
        let db = ctx.model.relation("db")?.expect("related");
        db.set_my_unit_data(
            &[("password".to_string(), "hunter2".to_string())]
                .into_iter()
                .collect(),
        )?;
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), leak);
    let out = h
        .run(
            Trigger::ConfigChanged,
            &State::default().with_relation(Relation::new(3, "db", "a")),
        )
        .unwrap();
    assert!(out.mentions("hunter2"));
    assert!(!out.mentions("not-there"));
}

/// A FakeJuju for one hook of `demo/0`, to call tools with the exact argv other libraries use.
fn raw_juju<'s>(spec: &'s CharmSpec, event: &'s crate::Event, state: State) -> FakeJuju<'s> {
    FakeJuju::new(spec, event, state, Default::default())
}

fn demo_event(kind: EventKind) -> crate::Event {
    crate::Event {
        kind,
        unit: "demo/0".into(),
        app: "demo".into(),
        model_name: None,
        model_uuid: None,
        juju_version: None,
        principal_unit: None,
        machine_id: None,
        juju_charm_dir: None,
    }
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn boolean_flags_take_the_values_go_accepts_as_ops_passes_them() {
    use crate::tools::{ToolErrorKind, ToolRunner};
    let spec = CharmSpec::parse(META, None, None).unwrap();
    let event = demo_event(EventKind::UpdateStatus);
    let juju = raw_juju(&spec, &event, State::default().leader());

    // ops' hookcmds.status_set always passes `--application={app}` with Python's bool
    juju.run(
        "status-set",
        &argv(&["--application=False", "blocked", "--", "unit"]),
        None,
    )
    .unwrap();
    juju.run(
        "status-set",
        &argv(&["--application=True", "waiting", "--", "app"]),
        None,
    )
    .unwrap();
    // the last one given wins, as gnuflag sets the value each time
    juju.run(
        "status-set",
        &argv(&["--application", "--application=0", "active", "unit again"]),
        None,
    )
    .unwrap();
    let st = juju.state.borrow().clone();
    assert_eq!(st.app_status, Status::waiting("app"));
    assert_eq!(st.unit_status, Status::active("unit again"));

    let err = juju
        .run("status-set", &argv(&["--application=yes", "active"]), None)
        .unwrap_err();
    assert_eq!(
        err.kind,
        ToolErrorKind::Failed {
            code: Some(2),
            stderr: r#"ERROR invalid value "yes" for flag --application: strconv.ParseBool: parsing "yes": invalid syntax"#.into()
        }
    );
}

#[test]
fn secret_add_prints_the_model_uri_and_every_tool_takes_each_form() {
    use crate::tools::ToolRunner;
    let spec = CharmSpec::parse(META, None, None).unwrap();
    let event = demo_event(EventKind::UpdateStatus);
    let juju = raw_juju(&spec, &event, State::default().leader());
    let out = juju
        .run("secret-add", &argv(&["--label", "k", "key=one"]), None)
        .unwrap();
    let uri = String::from_utf8(out).unwrap().trim().to_string();
    let xid = uri
        .strip_prefix(&format!("secret://{MODEL_UUID}/"))
        .unwrap_or_else(|| panic!("{uri}"))
        .to_string();
    let ids = juju
        .run("secret-ids", &argv(&["--format=json"]), None)
        .unwrap();
    assert_eq!(String::from_utf8(ids).unwrap(), format!("[\"{xid}\"]"));
    for (n, id) in [xid.clone(), format!("secret:{xid}"), uri.clone()]
        .iter()
        .enumerate()
    {
        juju.run("secret-set", &argv(&[id, &format!("key=v{n}")]), None)
            .unwrap();
        let got = juju
            .run("secret-get", &argv(&["--format=json", id]), None)
            .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            format!("{{\"key\":\"v{n}\"}}"),
            "{id}"
        );
        juju.run("secret-info-get", &argv(&["--format=json", id]), None)
            .unwrap();
    }
    let st = juju.state.borrow().clone();
    assert_eq!(st.secret(&uri).map(|s| s.latest()), Some(4));
    assert_eq!(
        st.secret(&xid).map(|s| s.id.clone()),
        Some(format!("secret:{xid}"))
    );
}

// Juju 3.4 can leave JUJU_REMOTE_APP empty in relation hooks: charm-lib asks
// `relation-list --app`, as ops does (model.Relation via relation_remote_app_name)
#[test]
fn an_empty_juju_remote_app_is_asked_of_relation_list() {
    fn show(ctx: &mut Context) -> anyhow::Result<()> {
        let r = ctx.event.relation().expect("a relation hook");
        let rel = ctx
            .model
            .event_relation(&ctx.event)?
            .expect("a relation hook");
        ctx.status(Status::active(format!(
            "{} {:?} {:?}",
            r.remote_app,
            r.remote_unit,
            rel.remote_app()
        )));
        Ok(())
    }
    let h = Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), show)
        .juju_env("JUJU_REMOTE_APP", "");
    let st = State::default().with_relation(Relation::new(3, "db", "region").remote_unit(0, &[]));
    for t in [
        Trigger::RelationChanged(3, None),
        Trigger::RelationBroken(3),
        Trigger::RelationChanged(3, Some(0)),
    ] {
        let out = h.run(t.clone(), &st).unwrap();
        assert_eq!(out.error, None, "{t:?}");
        let unit = if t == Trigger::RelationChanged(3, Some(0)) {
            r#"Some("region/0")"#
        } else {
            "None"
        };
        assert_eq!(
            out.state.unit_status.message,
            format!(r#"region {unit} Some("region")"#),
            "{t:?}"
        );
    }
}

/// A runner for the hooks that must call no tool at all.
struct NoTools;

impl crate::tools::ToolRunner for NoTools {
    fn run(
        &self,
        tool: &str,
        args: &[String],
        _: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::tools::ToolError> {
        panic!("{tool} {args:?} called")
    }
}

// Juju before 3.6.11 runs meter-status-changed from its meter-status worker, in a context
// where every tool fails and without JUJU_VERSION (worker/meterstatus context.go
// limitedContext.HookVars; runner.go adds JUJU_DISPATCH_PATH); collect-metrics concerns no
// charm here
#[test]
fn meter_status_changed_and_collect_metrics_exit_0_without_a_tool() {
    fn never(_: &mut Context) -> anyhow::Result<()> {
        panic!("the handler runs")
    }
    for hook in ["meter-status-changed", "collect-metrics"] {
        let env: std::collections::BTreeMap<String, String> = [
            ("JUJU_DISPATCH_PATH", format!("hooks/{hook}")),
            ("JUJU_UNIT_NAME", "demo/0".to_string()),
            ("JUJU_CONTEXT_ID", "demo/0-meter-status-1".to_string()),
            ("JUJU_METER_STATUS", "GREEN".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let machine = FakeMachine::new(MachineState::default());
        assert_eq!(
            crate::dispatch::exit_code(&env, &NoTools, &machine, never),
            0,
            "{hook}"
        );
        assert!(machine.ran.borrow().is_empty(), "{hook}");
    }
    // any other unknown hook is still a refused environment (exit 1, no tool either)
    let env = [
        ("JUJU_DISPATCH_PATH", "hooks/nope"),
        ("JUJU_UNIT_NAME", "demo/0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let machine = FakeMachine::new(MachineState::default());
    assert_eq!(
        crate::dispatch::exit_code(&env, &NoTools, &machine, never),
        1
    );
}

#[test]
#[should_panic(
    expected = "Install failed on demo/0: no disk\n--- its log ---\nWarning about to fail"
)]
fn run_ok_fails_the_test_with_the_hooks_error_and_log() {
    fn fails(ctx: &mut Context) -> anyhow::Result<()> {
        ctx.tools().juju_log(LogLevel::Warning, "about to fail")?;
        anyhow::bail!("no disk")
    }
    Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), fails)
        .run_ok(Trigger::Install, &State::default());
}

/// A config type through `CharmConfig`: the port must be above 1024.
struct Checked {
    port: u16,
}

impl crate::CharmConfig for Checked {
    type Error = String;
    fn from_options(o: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        match o.get("port").and_then(|v| v.as_u64()) {
            Some(p) if (1025..=65535).contains(&p) => Ok(Checked { port: p as u16 }),
            other => Err(format!(
                "invalid port: {other:?}: expected an integer from 1025 to 65535"
            )),
        }
    }
}

fn loads_checked(ctx: &mut Context) -> anyhow::Result<()> {
    let Some(cfg) = ctx.load_config::<Checked>()? else {
        return Ok(());
    };
    ctx.status(Status::active(format!("port {}", cfg.port)));
    Ok(())
}

#[test]
fn load_config_blocks_with_the_options_message_and_runs_nothing_else() {
    let h = Harness::from_spec(
        CharmSpec::parse(META, Some(CONFIG), Some(ACTIONS)).unwrap(),
        loads_checked,
    );
    let out = h.run_ok(
        Trigger::ConfigChanged,
        &State::default().with_config("port", 80),
    );
    assert_eq!(
        out.state.unit_status,
        Status::blocked("invalid port: Some(80): expected an integer from 1025 to 65535")
    );
    let out = h.run_ok(Trigger::ConfigChanged, &State::default());
    assert_eq!(out.state.unit_status, Status::active("port 8080"));
}
