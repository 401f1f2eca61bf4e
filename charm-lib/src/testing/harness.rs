//! `Harness::run(trigger, state) -> Output`: one event, as Juju would deliver it to one unit.

use super::fake_juju::{ActionOutput, FakeJuju};
use super::fake_machine::FakeMachine;
use super::state::{RelationKind, SecretHolder, State};
use crate::dispatch::{self, Context};
use crate::event::{Event, EventKind, RelationEvent, RelationPhase, SecretEvent, SecretPhase};
use crate::logger;
use crate::spec::{check_action_params, CharmSpec, Role};
use crate::status::Status;
use crate::tools::{LogLevel, RelationId};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

/// The event a test fires. Relations are named by id and remote units by number; the harness
/// fills in what Juju would (endpoint, remote app, unit names).
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// install
    Install,
    /// start
    Start,
    /// stop
    Stop,
    /// remove
    Remove,
    /// config-changed
    ConfigChanged,
    /// upgrade-charm
    UpgradeCharm,
    /// update-status
    UpdateStatus,
    /// leader-elected
    LeaderElected,
    /// leader-settings-changed
    LeaderSettingsChanged,
    /// `<endpoint>-relation-created`
    RelationCreated(u32),
    /// `<endpoint>-relation-joined` for remote unit n
    RelationJoined(u32, u32),
    /// `<endpoint>-relation-changed`, for remote unit n or (None) the remote app's data
    RelationChanged(u32, Option<u32>),
    /// `<endpoint>-relation-departed`: remote unit n leaves
    RelationDeparted(u32, u32),
    /// `<endpoint>-relation-departed` on the unit that is itself leaving, about remote unit n
    RelationDepartedSelf(u32, u32),
    /// `<endpoint>-relation-broken`
    RelationBroken(u32),
    /// secret-changed (consumer)
    SecretChanged(String),
    /// secret-rotate (owner)
    SecretRotate(String),
    /// secret-remove of a revision (owner)
    SecretRemove(String, u32),
    /// secret-expired of a revision (owner)
    SecretExpired(String, u32),
    /// An action with parameters (a JSON object)
    Action(String, serde_json::Value),
}

/// What one event did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The state after the event. If the hook failed, relation data, ports, charm state and
    /// secrets are as before it (Juju discards them); status and the machine keep what happened.
    pub state: State,
    /// The handler's error, if the hook failed (Juju would put the unit in error).
    pub error: Option<String>,
    /// juju-log lines (including `log::` records).
    pub logs: Vec<(LogLevel, String)>,
    /// Action output (empty for hooks).
    pub action: ActionOutput,
    /// Commands run during this event (argv, program first).
    pub commands: Vec<Vec<String>>,
    /// The same commands in full: user, environment, working directory, stdin.
    pub runs: Vec<crate::machine::Cmd>,
    /// Unit statuses set during this event, in order.
    pub status_history: Vec<Status>,
}

impl Output {
    /// Whether the hook failed.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The hook's juju-log lines, one per line, with their level: what Juju's debug-log shows.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|(level, line)| format!("{level:?} {line}\n"))
            .collect()
    }

    /// Commands run during this event, each joined with spaces (for readable assertions).
    pub fn command_lines(&self) -> Vec<String> {
        self.commands.iter().map(|c| c.join(" ")).collect()
    }

    /// Whether any log line, status, error, relation databag this unit or app wrote, or charm
    /// state contains `needle` (to prove a secret stays out of everything Juju shows or shares).
    /// Action results are not searched: actions such as get-password exist to return secrets.
    pub fn mentions(&self, needle: &str) -> bool {
        let in_bag = |b: &crate::tools::Databag| {
            b.iter()
                .any(|(k, v)| k.contains(needle) || v.contains(needle))
        };
        self.logs.iter().any(|(_, l)| l.contains(needle))
            || self
                .state
                .relations
                .iter()
                .any(|r| in_bag(&r.local_app_data) || in_bag(&r.local_unit_data))
            || in_bag(&self.state.stored)
            || self.state.unit_status.message.contains(needle)
            || self.state.app_status.message.contains(needle)
            || self
                .status_history
                .iter()
                .any(|s| s.message.contains(needle))
            || self.error.as_deref().is_some_and(|e| e.contains(needle))
    }
}

/// An input a real Juju could never produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistent(pub String);

impl std::fmt::Display for Inconsistent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inconsistent test input: {}", self.0)
    }
}

impl std::error::Error for Inconsistent {}

/// A charm's handler.
pub type Handler = fn(&mut Context<'_>) -> anyhow::Result<()>;

/// Runs a charm's handler against test states.
pub struct Harness {
    spec: CharmSpec,
    handler: Handler,
    unit: String,
    env: Vec<(String, String)>,
}

impl Harness {
    /// Loads the charm's metadata/config/actions from `charm_dir`; the unit is `<name>/0`.
    /// Panics with the reason if they cannot be read: a test cannot proceed without them.
    pub fn new(charm_dir: impl AsRef<Path>, handler: Handler) -> Harness {
        let spec = CharmSpec::load(charm_dir.as_ref())
            .unwrap_or_else(|e| panic!("cannot load the charm's metadata: {e}"));
        Harness::from_spec(spec, handler)
    }

    /// A harness for an already parsed spec.
    pub fn from_spec(spec: CharmSpec, handler: Handler) -> Harness {
        let unit = format!("{}/0", spec.metadata.name);
        Harness {
            spec,
            handler,
            unit,
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` in every event's environment, over what the trigger gives: how
    /// a test plays a Juju version that sets a variable differently (Juju 3.4 can leave
    /// `JUJU_REMOTE_APP` empty in relation hooks).
    pub fn juju_env(mut self, key: &str, value: &str) -> Harness {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs as unit number `n` instead of 0.
    pub fn unit(mut self, n: u32) -> Harness {
        self.unit = format!("{}/{n}", self.spec.metadata.name);
        self
    }

    /// The charm's declarations.
    pub fn spec(&self) -> &CharmSpec {
        &self.spec
    }

    /// Runs one event that must succeed: fails the test, showing the hook's error and its
    /// log, if the hook failed (Juju would put the unit in error) or if Juju could not
    /// produce these inputs.
    #[track_caller]
    pub fn run_ok(&self, trigger: Trigger, state: &State) -> Output {
        let out = match self.run(trigger.clone(), state) {
            Ok(out) => out,
            Err(e) => panic!("{trigger:?} on {}: {e:?}", self.unit),
        };
        if let Some(error) = &out.error {
            panic!(
                "{trigger:?} failed on {}: {error}\n--- its log ---\n{}",
                self.unit,
                out.log_text()
            );
        }
        out
    }

    /// Runs one event. Returns [`Inconsistent`] for inputs Juju could not produce.
    pub fn run(&self, trigger: Trigger, state: &State) -> Result<Output, Inconsistent> {
        self.check_state(state)?;
        let (event, params) = self.event_for(&trigger, state)?;
        // Go through the environment and back, as a real dispatch would.
        let mut env = event.to_env();
        env.extend(self.env.iter().cloned());
        let event = Event::from_env(&env)
            .map_err(|e| Inconsistent(format!("event does not survive the environment: {e}")))?;
        let juju = FakeJuju::new(&self.spec, &event, state.clone(), params);
        let machine = FakeMachine::new(state.machine.clone());
        let logs = Rc::new(RefCell::new(Vec::new()));
        let sink_logs = logs.clone();
        let handler = self.handler;
        let result = logger::with_sink(
            Box::new(move |l, m| sink_logs.borrow_mut().push((l, m.to_string()))),
            || dispatch::run(event.clone(), &juju, &machine, handler),
        );
        let error = result.err().map(|e| format!("{e:#}"));
        let working = juju.state.into_inner();
        let mut out_state = if error.is_none() {
            let mut s = working.clone();
            self.settle_membership(&event, &mut s);
            s
        } else {
            state.clone()
        };
        out_state.unit_status = working.unit_status;
        out_state.app_status = working.app_status;
        out_state.workload_version = working.workload_version;
        out_state.machine = machine.state.into_inner();
        let runs = machine.ran.into_inner();
        let mut all_logs = juju.logs.into_inner();
        all_logs.extend(logs.borrow().iter().cloned());
        Ok(Output {
            state: out_state,
            error,
            logs: all_logs,
            action: juju.action.into_inner(),
            commands: runs.iter().map(|c| c.argv()).collect(),
            runs,
            status_history: juju.status_history.into_inner(),
        })
    }

    /// After departed the unit is gone from the relation; after broken the relation is gone.
    fn settle_membership(&self, event: &Event, s: &mut State) {
        if let EventKind::Relation(r) = &event.kind {
            match r.phase {
                RelationPhase::Departed => {
                    if let Some(n) = r
                        .departing_unit
                        .as_deref()
                        .and_then(|u| u.rsplit_once('/'))
                        .and_then(|(_, n)| n.parse::<u32>().ok())
                    {
                        if r.departing_unit.as_deref() != Some(event.unit.as_str()) {
                            if let Some(rel) =
                                s.relations.iter_mut().find(|x| x.id == r.relation.id)
                            {
                                rel.remote_units.remove(&n);
                            }
                        }
                    }
                }
                RelationPhase::Broken => s.relations.retain(|x| x.id != r.relation.id),
                _ => {}
            }
        }
    }

    fn check_state(&self, state: &State) -> Result<(), Inconsistent> {
        let bad = |m: String| Err(Inconsistent(m));
        for (k, v) in &state.config {
            match self.spec.config.options.get(k) {
                None => return bad(format!("config option {k:?} is not in config.yaml")),
                Some(o) if !o.accepts(v) => {
                    return bad(format!(
                        "config option {k:?} is of type {} in config.yaml, got {v}",
                        o.kind
                    ))
                }
                _ => {}
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &state.relations {
            if !ids.insert(r.id) {
                return bad(format!("relation id {} is used twice", r.id));
            }
            let Some((role, ep)) = self.spec.metadata.endpoint(&r.endpoint) else {
                return bad(format!(
                    "relation {}:{}: endpoint {:?} is not in metadata.yaml",
                    r.endpoint, r.id, r.endpoint
                ));
            };
            match (role, r.kind) {
                (Role::Peers, RelationKind::Regular) => {
                    return bad(format!(
                        "relation {}:{}: {:?} is a peer endpoint; use Relation::peer",
                        r.endpoint, r.id, r.endpoint
                    ))
                }
                (Role::Provides | Role::Requires, RelationKind::Peer) => {
                    return bad(format!(
                        "relation {}:{}: {:?} is not a peer endpoint",
                        r.endpoint, r.id, r.endpoint
                    ))
                }
                _ => {}
            }
            if r.kind == RelationKind::Regular {
                if r.remote_app.is_empty() || r.remote_app == self.spec.metadata.name {
                    return bad(format!(
                        "relation {}:{}: remote application must be another application, got {:?}",
                        r.endpoint, r.id, r.remote_app
                    ));
                }
                if ep.is_container() && r.remote_units.len() > 1 {
                    return bad(format!(
                        "relation {}:{}: a container-scoped relation has at most one remote unit",
                        r.endpoint, r.id
                    ));
                }
            } else if r.remote_units.contains_key(&self.unit_number()) {
                return bad(format!(
                    "peer relation {}:{}: this unit ({}) cannot be its own remote unit",
                    r.endpoint, r.id, self.unit
                ));
            }
        }
        for s in &state.secrets {
            if !s.id.starts_with("secret:") {
                return bad(format!("secret id {:?} must start with secret:", s.id));
            }
            if s.revisions.is_empty() {
                return bad(format!("secret {} has no revision", s.id));
            }
            if s.tracked > s.latest() {
                return bad(format!(
                    "secret {} tracks revision {} but has only {}",
                    s.id,
                    s.tracked,
                    s.latest()
                ));
            }
        }
        for name in state.resources.keys() {
            if !self.spec.metadata.resources.contains_key(name) {
                return bad(format!("resource {name:?} is not in metadata.yaml"));
            }
        }
        Ok(())
    }

    fn unit_number(&self) -> u32 {
        self.unit
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    pub(super) fn event_for(
        &self,
        t: &Trigger,
        state: &State,
    ) -> Result<(Event, serde_json::Map<String, serde_json::Value>), Inconsistent> {
        let app = self.spec.metadata.name.clone();
        let mut params = serde_json::Map::new();
        let relation = |id: u32,
                        phase: RelationPhase,
                        remote: Option<u32>,
                        departing: Option<String>|
         -> Result<EventKind, Inconsistent> {
            let r = state
                .relation(id)
                .ok_or_else(|| Inconsistent(format!("relation {id} is not in the state")))?;
            let remote_app = if r.kind == RelationKind::Peer {
                app.clone()
            } else {
                r.remote_app.clone()
            };
            if let Some(n) = remote {
                if !r.remote_units.contains_key(&n) {
                    return Err(Inconsistent(format!(
                        "relation {}:{id} has no remote unit {remote_app}/{n}",
                        r.endpoint
                    )));
                }
            }
            Ok(EventKind::Relation(RelationEvent {
                phase,
                relation: RelationId::new(&r.endpoint, id),
                remote_unit: remote.map(|n| format!("{remote_app}/{n}")),
                remote_app,
                departing_unit: departing,
            }))
        };
        let remote_name = |id: u32, n: u32| -> String {
            state
                .relation(id)
                .map(|r| {
                    if r.kind == RelationKind::Peer {
                        format!("{app}/{n}")
                    } else {
                        format!("{}/{n}", r.remote_app)
                    }
                })
                .unwrap_or_default()
        };
        let secret = |id: &str,
                      phase: SecretPhase,
                      revision: Option<u32>|
         -> Result<EventKind, Inconsistent> {
            let s = state
                .secret(id)
                .ok_or_else(|| Inconsistent(format!("secret {id} is not in the state")))?;
            let consumer = s.holder == SecretHolder::Consumer;
            if (phase == SecretPhase::Changed) != consumer {
                return Err(Inconsistent(format!(
                    "{} fires for {} of a secret; {} is {}",
                    phase.hook_name(),
                    if phase == SecretPhase::Changed {
                        "consumers"
                    } else {
                        "owners"
                    },
                    s.id,
                    if consumer { "consumed" } else { "owned" }
                )));
            }
            Ok(EventKind::Secret(SecretEvent {
                phase,
                id: s.id.clone(),
                label: s.label.clone(),
                revision,
            }))
        };
        let kind = match t {
            Trigger::Install => EventKind::Install,
            Trigger::Start => EventKind::Start,
            Trigger::Stop => EventKind::Stop,
            Trigger::Remove => EventKind::Remove,
            Trigger::ConfigChanged => EventKind::ConfigChanged,
            Trigger::UpgradeCharm => EventKind::UpgradeCharm,
            Trigger::UpdateStatus => EventKind::UpdateStatus,
            Trigger::LeaderElected => {
                if !state.leader {
                    return Err(Inconsistent(
                        "leader-elected fires only on the leader: set state.leader".into(),
                    ));
                }
                EventKind::LeaderElected
            }
            Trigger::LeaderSettingsChanged => EventKind::LeaderSettingsChanged,
            Trigger::RelationCreated(id) => relation(*id, RelationPhase::Created, None, None)?,
            Trigger::RelationJoined(id, n) => relation(*id, RelationPhase::Joined, Some(*n), None)?,
            Trigger::RelationChanged(id, n) => relation(*id, RelationPhase::Changed, *n, None)?,
            Trigger::RelationDeparted(id, n) => relation(
                *id,
                RelationPhase::Departed,
                Some(*n),
                Some(remote_name(*id, *n)),
            )?,
            Trigger::RelationDepartedSelf(id, n) => relation(
                *id,
                RelationPhase::Departed,
                Some(*n),
                Some(self.unit.clone()),
            )?,
            Trigger::RelationBroken(id) => relation(*id, RelationPhase::Broken, None, None)?,
            Trigger::SecretChanged(id) => secret(id, SecretPhase::Changed, None)?,
            Trigger::SecretRotate(id) => secret(id, SecretPhase::Rotate, None)?,
            Trigger::SecretRemove(id, rev) => secret(id, SecretPhase::Remove, Some(*rev))?,
            Trigger::SecretExpired(id, rev) => secret(id, SecretPhase::Expired, Some(*rev))?,
            Trigger::Action(name, p) => {
                let spec = self.spec.actions.get(name).ok_or_else(|| {
                    Inconsistent(format!("action {name:?} is not in actions.yaml"))
                })?;
                let given = match p {
                    serde_json::Value::Object(m) => m.clone(),
                    serde_json::Value::Null => serde_json::Map::new(),
                    other => {
                        return Err(Inconsistent(format!(
                            "action parameters must be a JSON object, got {other}"
                        )))
                    }
                };
                check_action_params(name, spec, &given).map_err(Inconsistent)?;
                for (k, schema) in &spec.params {
                    if let Some(d) = schema.get("default") {
                        params.insert(k.clone(), d.clone());
                    }
                }
                params.extend(given);
                EventKind::Action {
                    name: name.clone(),
                    id: "1".into(),
                }
            }
        };
        let event = Event {
            kind,
            unit: self.unit.clone(),
            app,
            model_name: Some("test-model".into()),
            model_uuid: Some(super::MODEL_UUID.into()),
            juju_version: Some("3.6.14".into()),
            principal_unit: None,
            machine_id: Some("0".into()),
            juju_charm_dir: None,
        };
        Ok((event, params))
    }
}
