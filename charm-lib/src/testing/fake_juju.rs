//! An in-memory Juju: a [`ToolRunner`] that parses each hook tool's argv as Juju does and
//! answers from (and writes to) a [`State`], with Juju's messages for refused operations.
//!
//! Relation data, ports, charm state and secrets are written to a working copy that the
//! harness keeps only if the hook succeeds; status, logs and action output are immediate.

use super::state::{Relation, RelationKind, Secret, SecretHolder, State};
use crate::event::{Event, EventKind, RelationPhase};
use crate::spec::CharmSpec;
use crate::status::{Status, StatusKind};
use crate::tools::{Databag, LogLevel, Port, ToolError, ToolErrorKind, ToolRunner};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Action result keys Juju keeps for itself (action-set.go reservedKeys).
const RESERVED_RESULT_KEYS: &[&str] = &["stdout", "stdout-encoding", "stderr", "stderr-encoding"];

/// The model's UUID in every FakeJuju: the source part of the secret URIs `secret-add` prints.
pub const MODEL_UUID: &str = "6ac6d2f3-0b4e-4c43-8b3a-2a6e7c1f0d9e";

/// What an action produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionOutput {
    /// Results set with `action-set` (dotted keys).
    pub results: BTreeMap<String, String>,
    /// The message of `action-fail`, if it was called.
    pub failed: Option<String>,
    /// Messages from `action-log`.
    pub logs: Vec<String>,
}

/// The in-memory Juju for one hook.
pub struct FakeJuju<'s> {
    spec: &'s CharmSpec,
    event: &'s Event,
    action_params: serde_json::Map<String, serde_json::Value>,
    /// The working state.
    pub state: RefCell<State>,
    /// juju-log lines.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// Action output, for actions.
    pub action: RefCell<ActionOutput>,
    /// Every status set during the hook, in order.
    pub status_history: RefCell<Vec<Status>>,
    /// The unit status as the hook's first `status-get` read it: Juju reads it from the
    /// controller once per hook (context.go `UnitStatus`, kept in `ctx.status`).
    status_read: RefCell<Option<Status>>,
    next_secret: RefCell<u32>,
}

type R<T> = Result<T, ToolErrorKind>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(ToolErrorKind::Failed {
        code: Some(1),
        stderr: msg.into(),
    })
}

/// A usage error, as juju/cmd's Main reports an error from flags or from the command's Init:
/// exit 2.
fn usage<T>(msg: impl Into<String>) -> R<T> {
    Err(ToolErrorKind::Failed {
        code: Some(2),
        stderr: msg.into(),
    })
}

/// juju/cmd's CheckEmpty: arguments left over are refused, quoted as Go's `%q` of a slice.
fn check_empty(extra: &[String]) -> R<()> {
    if extra.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = extra.iter().map(|a| format!("{a:?}")).collect();
    usage(format!("ERROR unrecognized args: [{}]", quoted.join(" ")))
}

/// juju/utils keyvalues.Parse(args, true), as relation-set, state-set and leader-set read their
/// arguments: each `key=value` (empty value allowed), no key twice.
fn key_values(pos: &[String]) -> R<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in pos {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k, v),
            _ => return usage(format!("ERROR expected \"key=value\", got {kv:?}")),
        };
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return usage(format!("ERROR key {k:?} specified more than once"));
        }
    }
    Ok(out)
}

fn json(v: impl serde::Serialize) -> R<Vec<u8>> {
    Ok(serde_json::to_vec(&v).expect("tool output serializes"))
}

/// Splits argv into flags (with their values) and positional arguments, given which flags
/// take a value; `--` ends flags; `--flag=value` is accepted, for a boolean flag too
/// (`--app=false` leaves it unset).
fn parse(
    args: &[String],
    valued: &[&str],
    boolean: &[&str],
) -> R<(BTreeMap<String, String>, Vec<String>)> {
    let mut flags = BTreeMap::new();
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            pos.extend(it.cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            if valued.contains(&name.as_str()) {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or(ToolErrorKind::Failed {
                        code: Some(2),
                        stderr: format!("ERROR flag needs an argument: {name}"),
                    })?,
                };
                flags.insert(name, v);
            } else if boolean.contains(&name.as_str()) {
                // `--application=False` is how ops calls status-set: gnuflag reads the value
                // with Go's strconv.ParseBool (gnuflag.rs)
                let on = super::gnuflag::bool_flag(&name, inline.as_deref()).map_err(|e| {
                    ToolErrorKind::Failed {
                        code: Some(2),
                        stderr: format!("ERROR {e}"),
                    }
                })?;
                if on {
                    flags.insert(name, String::new());
                } else {
                    flags.remove(&name);
                }
            } else {
                return Err(ToolErrorKind::Failed {
                    code: Some(2),
                    stderr: format!("ERROR flag provided but not defined: {name}"),
                });
            }
        } else {
            pos.push(a.clone());
        }
    }
    Ok((flags, pos))
}

impl<'s> FakeJuju<'s> {
    /// A Juju for `event` on a unit of the charm `spec`, starting from `state`.
    pub fn new(
        spec: &'s CharmSpec,
        event: &'s Event,
        state: State,
        action_params: serde_json::Map<String, serde_json::Value>,
    ) -> FakeJuju<'s> {
        FakeJuju {
            spec,
            event,
            action_params,
            state: RefCell::new(state),
            logs: RefCell::new(Vec::new()),
            action: RefCell::new(ActionOutput::default()),
            status_history: RefCell::new(Vec::new()),
            status_read: RefCell::new(None),
            next_secret: RefCell::new(0),
        }
    }

    fn app(&self) -> &str {
        &self.event.app
    }

    /// context.go: the action tools' Run outside an action.
    fn running_action(&self) -> R<()> {
        if self.event.is_action() {
            Ok(())
        } else {
            fail("ERROR not running an action")
        }
    }

    fn unit_number(&self) -> u32 {
        self.event
            .unit
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    fn remote_app_of(&self, r: &Relation) -> String {
        match r.kind {
            RelationKind::Peer => self.app().to_string(),
            RelationKind::Regular => r.remote_app.clone(),
        }
    }

    /// `-r` resolution: `<endpoint>:<n>` must name that endpoint; `<n>` alone is accepted;
    /// no `-r` means the hook's own relation.
    fn relation_id(&self, flag: Option<&String>) -> R<u32> {
        match flag {
            // jujuc NewRelationIdValue: the hook's relation, else Init's "no relation id specified"
            None => match &self.event.kind {
                EventKind::Relation(r) => Ok(r.relation.id),
                _ => usage("ERROR no relation id specified"),
            },
            Some(raw) => {
                let (endpoint, n) = match raw.rsplit_once(':') {
                    Some((e, n)) => (Some(e), n),
                    None => (None, raw.as_str()),
                };
                let id: u32 = n.parse().map_err(|_| ToolErrorKind::Failed {
                    code: Some(2),
                    stderr: format!(
                        "ERROR invalid value {raw:?} for option -r: invalid relation id"
                    ),
                })?;
                let st = self.state.borrow();
                match st.relation(id) {
                    Some(r) if endpoint.is_none_or(|e| e == r.endpoint) => Ok(id),
                    // a flag's value gnuflag refuses: usage, exit 2
                    _ => usage(format!(
                        "ERROR invalid value {raw:?} for option -r: relation not found"
                    )),
                }
            }
        }
    }

    fn is_broken(&self, id: u32) -> bool {
        matches!(&self.event.kind, EventKind::Relation(r) if r.relation.id == id && r.phase == RelationPhase::Broken)
    }

    fn departing(&self, id: u32) -> Option<&str> {
        match &self.event.kind {
            EventKind::Relation(r) if r.relation.id == id && r.phase == RelationPhase::Departed => {
                r.departing_unit.as_deref()
            }
            _ => None,
        }
    }

    fn dispatch(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> R<Vec<u8>> {
        match tool {
            "relation-ids" => {
                let (_, pos) = parse(args, &["--format"], &[])?;
                let endpoint = match pos.first() {
                    Some(e) => e.clone(),
                    None => match &self.event.kind {
                        EventKind::Relation(r) => r.relation.endpoint.clone(),
                        _ => return usage("ERROR no relation name specified"),
                    },
                };
                check_empty(pos.get(1..).unwrap_or_default())?;
                // relation-ids.go Run filters the unit's relations by name: an endpoint it
                // does not have lists nothing
                let st = self.state.borrow();
                json(
                    st.relations
                        .iter()
                        .filter(|r| r.endpoint == endpoint)
                        .map(|r| format!("{}:{}", r.endpoint, r.id))
                        .collect::<Vec<_>>(),
                )
            }
            "relation-list" => {
                let (flags, pos) = parse(args, &["--format", "-r", "--relation"], &["--app"])?;
                let id = self.relation_id(flags.get("-r").or(flags.get("--relation")))?;
                check_empty(&pos)?;
                let st = self.state.borrow();
                let r = st.relation(id).expect("checked");
                let remote = self.remote_app_of(r);
                if flags.contains_key("--app") {
                    return json(remote);
                }
                if self.is_broken(id) {
                    return json(Vec::<String>::new());
                }
                let departing = self.departing(id);
                json(
                    r.remote_units
                        .keys()
                        .map(|n| format!("{remote}/{n}"))
                        .filter(|u| Some(u.as_str()) != departing)
                        .collect::<Vec<_>>(),
                )
            }
            "relation-get" => self.relation_get(args),
            "relation-set" => self.relation_set(args, stdin),
            "config-get" => {
                let (flags, pos) = parse(args, &["--format"], &["--all", "-a"])?;
                let every = flags.contains_key("--all") || flags.contains_key("-a");
                if let Some(k) = pos.first().filter(|_| every) {
                    return usage(format!(
                        "ERROR cannot use argument --all together with key {k:?}"
                    ));
                }
                check_empty(pos.get(1..).unwrap_or_default())?;
                let all = self.spec.effective_config(&self.state.borrow().config);
                match pos.first() {
                    Some(k) => json(all.get(k).cloned().unwrap_or(serde_json::Value::Null)),
                    None if flags.contains_key("--all") || flags.contains_key("-a") => {
                        let mut m = all.clone();
                        for k in self.spec.config.options.keys() {
                            m.entry(k.clone()).or_insert(serde_json::Value::Null);
                        }
                        json(m)
                    }
                    None => json(all),
                }
            }
            "is-leader" => {
                let (_, pos) = parse(args, &["--format"], &[])?;
                check_empty(&pos)?;
                json(self.state.borrow().leader)
            }
            "status-set" => {
                let (flags, pos) = parse(args, &[], &["--application"])?;
                let Some(given) = pos.first() else {
                    return usage("ERROR invalid args, require <status> [message]");
                };
                let kind = StatusKind::parse(given).filter(|k| {
                    matches!(
                        k,
                        StatusKind::Active
                            | StatusKind::Blocked
                            | StatusKind::Maintenance
                            | StatusKind::Waiting
                    )
                });
                let Some(kind) = kind else {
                    return usage(format!("ERROR invalid status {given:?}, expected one of [maintenance blocked waiting active]"));
                };
                check_empty(pos.get(2..).unwrap_or_default())?;
                let status = Status {
                    kind,
                    message: pos.get(1).cloned().unwrap_or_default(),
                };
                let mut st = self.state.borrow_mut();
                if flags.contains_key("--application") {
                    if !st.leader {
                        // context.go SetApplicationStatus: ErrIsNotLeader
                        return fail("ERROR this unit is not the leader");
                    }
                    st.app_status = status;
                } else {
                    self.status_history.borrow_mut().push(status.clone());
                    st.unit_status = status;
                }
                Ok(Vec::new())
            }
            "status-get" => {
                let (flags, pos) =
                    parse(args, &["--format"], &["--application", "--include-data"])?;
                check_empty(&pos)?;
                // status-get.go toDetails: message and status-data only with --include-data
                let data = flags.contains_key("--include-data");
                let one = |s: &Status| {
                    if data {
                        serde_json::json!({"status": s.kind.as_str(), "message": s.message, "status-data": {}})
                    } else {
                        serde_json::json!({"status": s.kind.as_str()})
                    }
                };
                let st = self.state.borrow();
                if flags.contains_key("--application") {
                    if !st.leader {
                        return fail(
                            "ERROR finding application status: this unit is not the leader",
                        );
                    }
                    let mut app = one(&st.app_status);
                    app["units"] =
                        serde_json::json!({ self.event.unit.clone(): one(&st.unit_status) });
                    json(serde_json::json!({"application-status": app}))
                } else {
                    let read = self
                        .status_read
                        .borrow_mut()
                        .get_or_insert_with(|| st.unit_status.clone())
                        .clone();
                    json(one(&read))
                }
            }
            "juju-log" => {
                let (flags, pos) = parse(args, &["--log-level", "-l", "--format"], &["--debug"])?;
                if pos.is_empty() {
                    return usage("ERROR no message specified");
                }
                let level = match flags
                    .get("--log-level")
                    .or(flags.get("-l"))
                    .map(|s| s.as_str())
                {
                    _ if flags.contains_key("--debug") => LogLevel::Debug,
                    Some("TRACE") => LogLevel::Trace,
                    Some("DEBUG") => LogLevel::Debug,
                    Some("WARNING") => LogLevel::Warning,
                    Some("ERROR") => LogLevel::Error,
                    _ => LogLevel::Info,
                };
                self.logs.borrow_mut().push((level, pos.join(" ")));
                Ok(Vec::new())
            }
            "application-version-set" => {
                let (_, pos) = parse(args, &[], &[])?;
                let Some(version) = pos.first() else {
                    return usage("ERROR no version specified");
                };
                check_empty(&pos[1..])?;
                self.state.borrow_mut().workload_version = version.clone();
                Ok(Vec::new())
            }
            "open-port" | "close-port" => {
                let (_, pos) = parse(args, &["--endpoints", "--format"], &[])?;
                let Some(given) = pos.first() else {
                    return usage("ERROR no port or range specified");
                };
                // ports.go Init: network.ParsePortRange(strings.ToLower(args[0]))
                let p: Port =
                    given
                        .to_lowercase()
                        .parse()
                        .map_err(|e: String| ToolErrorKind::Failed {
                            code: Some(2),
                            stderr: format!("ERROR {e}"),
                        })?;
                check_empty(&pos[1..])?;
                let mut st = self.state.borrow_mut();
                if tool == "open-port" {
                    st.opened_ports.insert(p);
                } else {
                    st.opened_ports.remove(&p);
                }
                Ok(Vec::new())
            }
            "opened-ports" => {
                let (_, pos) = parse(args, &["--format"], &["--endpoints"])?;
                check_empty(&pos)?;
                json(
                    self.state
                        .borrow()
                        .opened_ports
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>(),
                )
            }
            "network-get" => {
                let (flags, pos) = parse(
                    args,
                    &["--format", "-r", "--relation"],
                    &[
                        "--bind-address",
                        "--ingress-address",
                        "--egress-subnets",
                        "--primary-address",
                    ],
                )?;
                if let Some(r) = flags.get("-r").or(flags.get("--relation")) {
                    self.relation_id(Some(r))?;
                }
                // network-get.go Init
                let Some(binding) = pos.first().cloned() else {
                    return usage("ERROR no arguments specified");
                };
                check_empty(&pos[1..])?;
                let known = self.spec.metadata.endpoint(&binding).is_some()
                    || self.spec.metadata.extra_bindings.contains_key(&binding);
                if !known {
                    return fail(format!(
                        "ERROR no network config found for binding {binding:?}"
                    ));
                }
                let n = self.state.borrow().network.clone();
                if flags.contains_key("--ingress-address") {
                    return json(&n.address);
                }
                json(serde_json::json!({
                    "bind-addresses": [{"mac-address": "", "interface-name": n.interface, "addresses": [{"hostname": "", "value": n.address, "cidr": n.cidr}]}],
                    "egress-subnets": [format!("{}/32", n.address)],
                    "ingress-addresses": [n.address],
                }))
            }
            "unit-get" => {
                let (_, pos) = parse(args, &["--format"], &[])?;
                // unit-get.go Init
                match pos.first().map(|s| s.as_str()) {
                    Some("private-address" | "public-address") => {
                        check_empty(&pos[1..])?;
                        json(&self.state.borrow().network.address)
                    }
                    Some(other) => usage(format!("ERROR unknown setting {other:?}")),
                    None => usage("ERROR no setting specified"),
                }
            }
            // Every hook has the action tools; outside an action their Init passes and Run
            // fails (context.go ActionParams, UpdateActionResults, SetActionMessage, ...)
            "action-get" => {
                let (_, pos) = parse(args, &["--format"], &[])?;
                check_empty(pos.get(1..).unwrap_or_default())?;
                self.running_action()?;
                match pos.first() {
                    None => json(&self.action_params),
                    Some(path) => json(
                        path.split('.')
                            .try_fold(
                                serde_json::Value::Object(self.action_params.clone()),
                                |v, k| v.get(k).cloned(),
                            )
                            .unwrap_or(serde_json::Value::Null),
                    ),
                }
            }
            "action-set" => {
                let (_, pos) = parse(args, &[], &[])?;
                // action-set.go Init: key...=value, every part of the key by the action-name
                // rule and none of them reserved
                let mut pairs = Vec::new();
                for kv in &pos {
                    let Some((k, v)) = kv.split_once('=') else {
                        return usage(format!(
                            "ERROR argument {kv:?} must be of the form key...=value"
                        ));
                    };
                    for part in k.split('.') {
                        if RESERVED_RESULT_KEYS.contains(&part) {
                            return usage(format!("ERROR cannot set reserved action key {part:?}"));
                        }
                        if !crate::dispatch::valid_result_key(part) {
                            return usage(format!("ERROR key {part:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"));
                        }
                    }
                    pairs.push((k.to_string(), v.to_string()));
                }
                self.running_action()?;
                self.action.borrow_mut().results.extend(pairs);
                Ok(Vec::new())
            }
            "action-log" => {
                let (_, pos) = parse(args, &[], &[])?;
                if pos.is_empty() {
                    return usage("ERROR no message specified");
                }
                self.running_action()?;
                self.action.borrow_mut().logs.push(pos.join(" "));
                Ok(Vec::new())
            }
            "action-fail" => {
                let (_, pos) = parse(args, &[], &[])?;
                // action-fail.go Init: one message, or Juju's default
                check_empty(pos.get(1..).unwrap_or_default())?;
                self.running_action()?;
                self.action.borrow_mut().failed = Some(pos.first().cloned().unwrap_or_else(|| {
                    "action failed without reason given, check action for errors".into()
                }));
                Ok(Vec::new())
            }
            "state-get" => {
                let (flags, pos) = parse(args, &["--format"], &["--strict"])?;
                check_empty(pos.get(1..).unwrap_or_default())?;
                let st = self.state.borrow();
                // state-get.go: no key or "-" is every key; a missing key is null unless
                // --strict (context.go GetCharmStateValue: NotFoundf("%q", key))
                match pos.first().filter(|k| *k != "-") {
                    Some(k) if flags.contains_key("--strict") && !st.stored.contains_key(k) => {
                        fail(format!("ERROR {k:?} not found"))
                    }
                    Some(k) => json(st.stored.get(k)),
                    None => json(&st.stored),
                }
            }
            "state-set" => {
                let (flags, pos) = parse(args, &["--file"], &[])?;
                let args = key_values(&pos)?;
                let mut values = read_map(flags.get("--file"), stdin)?;
                values.extend(args);
                let mut st = self.state.borrow_mut();
                for (k, v) in values {
                    if v.is_empty() {
                        st.stored.remove(&k);
                    } else {
                        st.stored.insert(k, v);
                    }
                }
                Ok(Vec::new())
            }
            "state-delete" => {
                let (_, pos) = parse(args, &[], &[])?;
                check_empty(pos.get(1..).unwrap_or_default())?;
                if let Some(k) = pos.first() {
                    self.state.borrow_mut().stored.remove(k);
                }
                Ok(Vec::new())
            }
            "resource-get" => {
                let (_, pos) = parse(args, &[], &[])?;
                // resource-get.go Init
                let Some(name) = pos.first().cloned() else {
                    return usage("ERROR missing required resource name");
                };
                check_empty(&pos[1..])?;
                if !self.spec.metadata.resources.contains_key(&name) {
                    return fail(format!("ERROR resource {name:?} not found in metadata"));
                }
                match self.state.borrow().resources.get(&name) {
                    Some(p) => Ok(format!("{}\n", p.display()).into_bytes()),
                    None => fail(format!(
                        "ERROR could not download resource: resource {name:?} has no file attached"
                    )),
                }
            }
            t if t.starts_with("secret-") => self.secret_tool(t, args),
            _ => Err(ToolErrorKind::NotFound),
        }
    }

    fn relation_get(&self, args: &[String]) -> R<Vec<u8>> {
        let (flags, pos) = parse(args, &["--format", "-r", "--relation"], &["--app"])?;
        let id = self.relation_id(flags.get("-r").or(flags.get("--relation")))?;
        let mut app_flag = flags.contains_key("--app");
        let key = pos.first().filter(|k| *k != "-").cloned();
        // relation-get.go determineUnitOrAppName: the unit or app given, else the hook's
        // remote unit, else the hook's remote app (as --app)
        let owner = match pos.get(1) {
            Some(o) => o.clone(),
            None => match &self.event.kind {
                EventKind::Relation(r) if r.relation.id == id && app_flag => r.remote_app.clone(),
                EventKind::Relation(r) if r.relation.id == id => match &r.remote_unit {
                    Some(u) => u.clone(),
                    None => {
                        app_flag = true;
                        r.remote_app.clone()
                    }
                },
                _ => return usage("ERROR no unit or application specified"),
            },
        };
        check_empty(pos.get(2..).unwrap_or_default())?;
        let st = self.state.borrow();
        let r = st.relation(id).expect("checked");
        let remote = self.remote_app_of(r);
        let bag: &Databag = if app_flag {
            if owner == self.app() {
                if r.kind == RelationKind::Regular && !st.leader {
                    return fail("ERROR permission denied");
                }
                &r.local_app_data
            } else if owner == remote {
                if r.kind == RelationKind::Peer {
                    &r.local_app_data
                } else {
                    &r.remote_app_data
                }
            } else {
                return fail(format!(
                    "ERROR application {owner:?} is not part of relation {}:{id}",
                    r.endpoint
                ));
            }
        } else if owner == self.event.unit {
            &r.local_unit_data
        } else {
            let n = owner
                .strip_prefix(&format!("{remote}/"))
                .and_then(|n| n.parse::<u32>().ok());
            match n.and_then(|n| r.remote_units.get(&n)) {
                Some(b) => b,
                None => return fail(format!("ERROR cannot read settings for unit {owner:?} in relation \"{}:{id}\": unit {owner:?}: settings not found", r.endpoint)),
            }
        };
        match key {
            Some(k) => json(bag.get(&k)),
            None => json(bag),
        }
    }

    fn relation_set(&self, args: &[String], stdin: Option<&[u8]>) -> R<Vec<u8>> {
        let (flags, pos) = parse(
            args,
            &["-r", "--relation", "--file", "--format"],
            &["--app"],
        )?;
        let id = self.relation_id(flags.get("-r").or(flags.get("--relation")))?;
        let args = key_values(&pos)?;
        // relation-set.go handleSettingsFile: the arguments override the file
        let mut changes = read_map(flags.get("--file"), stdin)?;
        changes.extend(args);
        let mut st = self.state.borrow_mut();
        let leader = st.leader;
        if flags.contains_key("--app") && !leader {
            return fail("ERROR cannot write relation settings");
        }
        let r = st
            .relations
            .iter_mut()
            .find(|r| r.id == id)
            .expect("checked");
        let bag = if flags.contains_key("--app") {
            &mut r.local_app_data
        } else {
            &mut r.local_unit_data
        };
        for (k, v) in changes {
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(Vec::new())
    }

    fn find_secret(&self, id: Option<&String>, label: Option<&String>) -> R<usize> {
        let st = self.state.borrow();
        // core/secrets ParseURI: `<id>`, `secret:<id>` and `secret://<uuid>/<id>` alike
        let by_id = id.map(|id| {
            st.secrets
                .iter()
                .position(|s| crate::tools::same_secret(&s.id, id))
        });
        let found = match (by_id, label) {
            (Some(found), _) => found,
            (None, Some(l)) => st.secrets.iter().position(|s| s.label.as_ref() == Some(l)),
            (None, None) => return fail("ERROR require either a secret URI or label"),
        };
        found.ok_or_else(|| ToolErrorKind::Failed {
            code: Some(1),
            stderr: format!("ERROR secret {:?} not found", id.or(label).unwrap()),
        })
    }

    fn owns(&self, s: &Secret) -> bool {
        match s.holder {
            SecretHolder::App => self.state.borrow().leader,
            SecretHolder::Unit => true,
            SecretHolder::Consumer => false,
        }
    }

    fn secret_tool(&self, tool: &str, args: &[String]) -> R<Vec<u8>> {
        let valued = [
            "--format",
            "--label",
            "--description",
            "--expire",
            "--rotate",
            "--owner",
            "--file",
            "--relation",
            "-r",
            "--unit",
            "--app",
            "--revision",
        ];
        let (flags, pos) = parse(args, &valued, &["--refresh", "--peek"])?;
        match tool {
            "secret-add" => {
                // secret-add.go Init, then (*secretUpsertCommand).Init
                if pos.is_empty() && !flags.contains_key("--file") {
                    return usage("ERROR missing secret value or filename");
                }
                let owner_unit = match flags.get("--owner").map(|s| s.as_str()) {
                    None | Some("application") => false,
                    Some("unit") => true,
                    Some(o) => return usage(format!("ERROR secret owner {o:?} not valid")),
                };
                let content = secret_content(flags.get("--file"), &pos)?;
                // context.go CreateSecret: an application's secret needs the leader
                if !owner_unit && !self.state.borrow().leader {
                    return fail("ERROR this unit is not the leader");
                }
                // context/secrets.go (*secretsChangeRecorder).create refuses a label already
                // pending in the hook; the controller refuses one a committed secret has when
                // the hook commits (the hook fails either way). FakeJuju applies changes at
                // once, so it refuses both here.
                if let Some(l) = flags.get("--label") {
                    let taken = self.state.borrow().secrets.iter().any(|s| {
                        s.holder != SecretHolder::Consumer && s.label.as_deref() == Some(l)
                    });
                    if taken {
                        return fail(format!("ERROR secret with label {l:?} already exists"));
                    }
                }
                // Juju's ids are xids, unique in the model: a counter that starts again in
                // every hook must step over the ids earlier hooks handed out.
                let mut n = self.next_secret.borrow_mut();
                let xid = loop {
                    *n += 1;
                    let xid = format!(
                        "{}{}{:04}",
                        self.app().replace('-', ""),
                        self.unit_number(),
                        *n
                    );
                    let taken = self
                        .state
                        .borrow()
                        .secrets
                        .iter()
                        .any(|s| s.id == format!("secret:{xid}"));
                    if !taken {
                        break xid;
                    }
                };
                let mut s = Secret::owned(&format!("secret:{xid}"), &[]);
                s.revisions = vec![content];
                s.holder = if owner_unit {
                    SecretHolder::Unit
                } else {
                    SecretHolder::App
                };
                s.label = flags.get("--label").cloned();
                s.description = flags.get("--description").cloned();
                self.state.borrow_mut().secrets.push(s);
                // jujuc secret-add.go prints the URI the controller made with the model as
                // its source (core/secrets URI.String): secret://<model-uuid>/<id>
                Ok(format!("secret://{MODEL_UUID}/{xid}\n").into_bytes())
            }
            "secret-get" => {
                // secret-get.go Init
                if pos.is_empty() && !flags.contains_key("--label") {
                    return usage("ERROR require either a secret URI or label");
                }
                if flags.contains_key("--peek") && flags.contains_key("--refresh") {
                    return usage("ERROR specify one of --peek or --refresh but not both");
                }
                check_empty(pos.get(2..).unwrap_or_default())?;
                let i = self.find_secret(pos.first(), flags.get("--label"))?;
                let mut st = self.state.borrow_mut();
                let s = &mut st.secrets[i];
                if !pos.is_empty() {
                    if let Some(l) = flags.get("--label") {
                        s.label = Some(l.clone());
                    }
                }
                // Every unit of the owning application reads the latest revision of its secrets.
                let owner = s.holder != SecretHolder::Consumer;
                let content = if owner || flags.contains_key("--peek") {
                    s.latest_content().clone()
                } else {
                    if flags.contains_key("--refresh") || s.tracked == 0 {
                        s.tracked = s.latest();
                    }
                    s.revisions[(s.tracked - 1) as usize].clone()
                };
                // secret-get.go Run: a key after the id prints that value alone
                match pos.get(1) {
                    Some(k) => match content.get(k) {
                        Some(v) => json(v),
                        None => fail(format!("ERROR secret key {k:?} not found")),
                    },
                    None => json(content),
                }
            }
            "secret-set" => {
                if pos.is_empty() {
                    return usage("ERROR missing secret URI");
                }
                let i = self.find_secret(pos.first(), None)?;
                if !self.owns(&self.state.borrow().secrets[i]) {
                    return fail("ERROR permission denied");
                }
                let content = secret_content(flags.get("--file"), &pos[1..])?;
                let mut st = self.state.borrow_mut();
                let s = &mut st.secrets[i];
                if !content.is_empty() {
                    s.revisions.push(content);
                }
                if let Some(l) = flags.get("--label") {
                    s.label = Some(l.clone());
                }
                Ok(Vec::new())
            }
            "secret-grant" | "secret-revoke" => {
                if pos.is_empty() {
                    return usage("ERROR missing secret URI");
                }
                let rel = flags.get("--relation").or(flags.get("-r"));
                // secret-grant.go Init: -r or the hook's relation; --unit of its remote app
                let rid = match rel {
                    Some(r) => Some(self.relation_id(Some(r))?),
                    None if tool == "secret-grant" => Some(self.relation_id(None)?),
                    None => None,
                };
                if let (true, Some(u), Some(id)) =
                    (tool == "secret-grant", flags.get("--unit"), rid)
                {
                    let remote = {
                        let st = self.state.borrow();
                        self.remote_app_of(st.relation(id).expect("checked"))
                    };
                    if !u.contains('/') {
                        return usage(format!("ERROR unit {u:?} not valid"));
                    }
                    if u.rsplit_once('/').map(|(a, _)| a) != Some(remote.as_str()) {
                        return usage(format!(
                            "ERROR cannot specify unit {u:?} in relation to application {remote:?}"
                        ));
                    }
                }
                if tool == "secret-revoke" {
                    // secret-revoke.go Init: a valid grantee, before anything is looked up
                    let app = flags.get("--app").or(flags.get("--application"));
                    if let Some(u) = flags.get("--unit").filter(|u| !u.contains('/')) {
                        return usage(format!("ERROR unit {u:?} not valid"));
                    }
                    if rid.is_none() && app.is_none() && !flags.contains_key("--unit") {
                        return usage("ERROR missing relation or application or unit");
                    }
                }
                check_empty(&pos[1..])?;
                let i = self.find_secret(pos.first(), None)?;
                if !self.owns(&self.state.borrow().secrets[i]) {
                    return fail("ERROR permission denied");
                }
                let mut st = self.state.borrow_mut();
                let s = &mut st.secrets[i];
                match (tool, rid) {
                    ("secret-grant", Some(id)) => {
                        s.grants.insert(id, flags.get("--unit").cloned());
                    }
                    (_, Some(id)) => {
                        s.grants.remove(&id);
                    }
                    _ => s.grants.clear(),
                }
                Ok(Vec::new())
            }
            "secret-remove" => {
                if pos.is_empty() {
                    return usage("ERROR missing secret URI");
                }
                check_empty(&pos[1..])?;
                let i = self.find_secret(pos.first(), None)?;
                if !self.owns(&self.state.borrow().secrets[i]) {
                    return fail("ERROR permission denied");
                }
                let mut st = self.state.borrow_mut();
                match flags
                    .get("--revision")
                    .and_then(|r| r.parse::<usize>().ok())
                {
                    // Revisions keep their numbers, so a removed one leaves an empty slot.
                    Some(r) if r >= 1 && r <= st.secrets[i].revisions.len() => {
                        st.secrets[i].revisions[r - 1].clear()
                    }
                    Some(_) => return fail("ERROR revision not found"),
                    None => {
                        st.secrets.remove(i);
                    }
                }
                Ok(Vec::new())
            }
            "secret-ids" => {
                let ids: Vec<String> = self
                    .state
                    .borrow()
                    .secrets
                    .iter()
                    .filter(|s| s.holder != SecretHolder::Consumer)
                    // jujuc secret-ids.go: the keys of SecretMetadata, bare ids
                    .map(|s| crate::tools::secret_xid(&s.id).to_string())
                    .collect();
                json(ids)
            }
            "secret-info-get" => {
                // secret-info-get.go Init: an id or a label, not both
                match (pos.first(), flags.get("--label")) {
                    (None, None) => return usage("ERROR require either a secret URI or label"),
                    (Some(_), Some(_)) => {
                        return usage("ERROR specify either a secret URI or label but not both")
                    }
                    _ => {}
                }
                check_empty(&pos[pos.len().min(1)..])?;
                let i = self.find_secret(pos.first(), flags.get("--label"))?;
                let st = self.state.borrow();
                let s = &st.secrets[i];
                let xid = crate::tools::secret_xid(&s.id).to_string();
                // Run: only the unit's own secrets have metadata (SecretMetadata)
                let owner = match s.holder {
                    SecretHolder::App => "application",
                    SecretHolder::Unit => "unit",
                    SecretHolder::Consumer => {
                        return fail(format!("ERROR secret {xid:?} not found"))
                    }
                };
                // metadataDisplay: revision, label and owner always; the rest omitempty
                let mut info = serde_json::json!({
                    "revision": s.latest(),
                    "label": s.label.clone().unwrap_or_default(),
                    "owner": owner,
                });
                if let Some(d) = s.description.as_ref().filter(|d| !d.is_empty()) {
                    info["description"] = d.clone().into();
                }
                json(serde_json::json!({ xid: info }))
            }
            _ => Err(ToolErrorKind::NotFound),
        }
    }
}

/// Reads a YAML map from `--file` (a path, or `-` for stdin).
fn read_map(file: Option<&String>, stdin: Option<&[u8]>) -> R<BTreeMap<String, String>> {
    let text = match file.map(|s| s.as_str()) {
        None => return Ok(BTreeMap::new()),
        Some("-") => String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned(),
        Some(path) => std::fs::read_to_string(path).map_err(|e| ToolErrorKind::Failed {
            code: Some(1),
            stderr: format!("ERROR cannot read {path}: {e}"),
        })?,
    };
    let v: Option<BTreeMap<String, serde_yaml::Value>> =
        serde_yaml::from_str(&text).map_err(|e| ToolErrorKind::Failed {
            code: Some(1),
            stderr: format!("ERROR cannot parse settings: {e}"),
        })?;
    v.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_yaml::Value::String(s) => Ok((k, s)),
            serde_yaml::Value::Null => Ok((k, String::new())),
            other => Ok((
                k,
                serde_yaml::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )),
        })
        .collect()
}

/// A secret's content as secret-add and secret-set read it (core/secrets CreateSecretData,
/// then the `--file` map over it; encodeBase64 checks every key).
fn secret_content(file: Option<&String>, pos: &[String]) -> R<BTreeMap<String, String>> {
    let mut content = BTreeMap::new();
    for kv in pos {
        // base64 padding is not the separator
        let idx = kv.trim_end_matches('=').find('=');
        let Some(idx) = idx.filter(|i| *i >= 1) else {
            return usage(format!("ERROR key value {kv:?} not valid"));
        };
        let k = &kv[..idx];
        content.insert(
            k.strip_suffix("#base64").unwrap_or(k).to_string(),
            kv[idx + 1..].to_string(),
        );
    }
    content.extend(read_map(file, None)?);
    if let Some(bad) = content.keys().find(|k| !crate::tools::valid_secret_key(k)) {
        return usage(format!("ERROR key {bad:?} not valid"));
    }
    Ok(content)
}

impl ToolRunner for FakeJuju<'_> {
    fn run(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
        self.dispatch(tool, args, stdin)
            .map_err(|kind| ToolError::new(tool, args, kind))
    }
}
