//! Every row of the shared table of Juju's hook-tool rules (tests/hook-tool-rules/rules.yaml),
//! run against [`FakeJuju`], the runner every charm unit test's hook talks to.

use super::fake_juju::FakeJuju;
use super::harness::{Harness, Trigger};
use super::state::{Relation, Secret, State};
use crate::spec::CharmSpec;
use crate::tools::{ToolErrorKind, ToolRunner};
use hook_tool_rules::{check_all, world, Call, Fake, Given, Hook, Outcome};

fn never_runs(_: &mut crate::dispatch::Context<'_>) -> anyhow::Result<()> {
    unreachable!("the rules call the tools directly")
}

/// The table's world (hook_tool_rules::world) as a charm-lib State.
fn state(given: &Given) -> State {
    let n = |unit: &str| unit.rsplit_once('/').unwrap().1.parse::<u32>().unwrap();
    let mut st = State::default()
        .with_relation(
            Relation::new(world::DB_ID, world::DB_ENDPOINT, world::REMOTE_APP)
                .remote_unit(n(world::REMOTE_UNIT), world::REMOTE_UNIT_DATA)
                .remote_app_data(world::REMOTE_APP_DATA),
        )
        .with_relation(Relation::peer(world::PEER_ID, world::PEER_ENDPOINT))
        .with_secret(
            Secret::owned(world::OWN_SECRET, world::OWN_CONTENT).with_label(world::OWN_LABEL),
        );
    let mut consumed = Secret::granted(world::CONSUMED_SECRET, world::CONSUMED_REVISIONS[0]);
    for r in &world::CONSUMED_REVISIONS[1..] {
        consumed = consumed.with_revision(r);
    }
    consumed.tracked = 1;
    st = st.with_secret(consumed);
    st.leader = given.leader;
    st.stored = world::CHARM_STATE
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    st
}

#[test]
fn fake_juju_follows_every_hook_tool_rule_of_juju() {
    let spec =
        CharmSpec::parse(world::METADATA, Some(world::CONFIG), Some(world::ACTIONS)).unwrap();
    let h = Harness::from_spec(spec, never_runs);
    check_all(Fake::CharmLib, |given: &Given, calls: &[Call]| {
        let st = state(given);
        let trigger = match given.hook {
            Hook::Install => Trigger::Install,
            Hook::DbRelationChanged => Trigger::RelationChanged(world::DB_ID, Some(0)),
            Hook::Action => Trigger::Action(world::ACTION.into(), serde_json::json!({"n": 1})),
        };
        let (event, params) = h.event_for(&trigger, &st).unwrap();
        let juju = FakeJuju::new(h.spec(), &event, st, params);
        calls
            .iter()
            .map(|c| match juju.run(&c.tool, &c.args, Some(&c.stdin)) {
                Ok(out) => Outcome {
                    code: 0,
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::new(),
                },
                Err(e) => match e.kind {
                    ToolErrorKind::Failed { code, stderr } => Outcome {
                        code: code.unwrap_or(-1),
                        stdout: String::new(),
                        stderr,
                    },
                    // a tool FakeJuju does not offer in this hook: the shell's "command not found"
                    other => Outcome {
                        code: 127,
                        stdout: String::new(),
                        stderr: format!("{other:?}"),
                    },
                },
            })
            .collect()
    });
}
