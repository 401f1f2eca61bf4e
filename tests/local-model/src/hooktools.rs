//! The hook tools, server side: argument parsing, checks and output of every tool of
//! reference §2, run against the model state and the calling hook's context.
//!
//! The multi-call binary only forwards argv, stdin and the context id here; all of Juju's
//! behaviour (syntax, `--format`, error messages, exit codes) lives in this module.

use crate::hookctx::{HookContext, SecretOp};
use crate::resolver::HookKind;
use crate::state::{app_of, Consumer, ModelState, Secret, Status};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

// Boolean flags as Juju's gnuflag reads them (Go's strconv.ParseBool): the same source file
// charm-lib's FakeJuju uses, so the two Juju stand-ins agree on it.
#[path = "../../../charm-lib/src/testing/gnuflag.rs"]
mod gnuflag;

/// Every tool name the multi-call binary answers to.
pub const TOOLS: &[&str] = &[
    "relation-get",
    "relation-set",
    "relation-ids",
    "relation-list",
    "relation-model-get",
    "config-get",
    "status-set",
    "status-get",
    "is-leader",
    "juju-log",
    "open-port",
    "close-port",
    "opened-ports",
    "network-get",
    "unit-get",
    "action-get",
    "action-set",
    "action-log",
    "action-fail",
    "secret-add",
    "secret-get",
    "secret-set",
    "secret-grant",
    "secret-revoke",
    "secret-ids",
    "secret-info-get",
    "secret-remove",
    "application-version-set",
    "state-get",
    "state-set",
    "state-delete",
    "leader-get",
    "leader-set",
    "goal-state",
    "resource-get",
];

/// What a tool invocation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A tool failure: exit 2 for bad usage (like juju/cmd), 1 otherwise.
#[derive(Debug)]
pub enum ToolError {
    Usage(String),
    Fail(String),
}

type R<T> = Result<T, ToolError>;

fn fail<T>(m: impl Into<String>) -> R<T> {
    Err(ToolError::Fail(m.into()))
}
fn usage<T>(m: impl Into<String>) -> R<T> {
    Err(ToolError::Usage(m.into()))
}

/// Parsed command line: flag values by long name, and positional arguments.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub flags: HashMap<String, Vec<String>>,
    pub pos: Vec<String>,
}

impl Parsed {
    /// Last value of a flag.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.flags
            .get(long)
            .and_then(|v| v.last())
            .map(|s| s.as_str())
    }
    /// Whether a flag was given.
    pub fn has(&self, long: &str) -> bool {
        self.flags.contains_key(long)
    }
}

/// A flag: long name, optional short name, and whether it takes a value.
pub type FlagSpec = (&'static str, Option<char>, bool);

/// gnuflag-style parsing: `--f v`, `--f=v`, `-f v`, `-f=v`, flags interspersed with
/// positionals, `--` ends flags.
pub fn parse_args(args: &[String], spec: &[FlagSpec]) -> R<Parsed> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.pos.extend(args[i..].iter().cloned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            p.pos.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let f = if let Some(long) = name.strip_prefix("--") {
            spec.iter().find(|s| s.0 == long)
        } else {
            let short = name[1..].to_string();
            spec.iter()
                .find(|s| short.chars().count() == 1 && s.1 == short.chars().next() || s.0 == short)
        };
        let Some(f) = f else {
            return usage(format!("flag provided but not defined: {name}"));
        };
        let value = if f.2 {
            match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => return usage(format!("flag needs an argument: {name}")),
            }
        } else {
            // juju/gnuflag parseGnuFlagArg: `--flag=<v>` sets a boolean to
            // strconv.ParseBool(v) (ops passes `status-set --application=False`); the last
            // occurrence wins
            match gnuflag::bool_flag(&name, inline.as_deref()) {
                Ok(true) => {}
                Ok(false) => {
                    p.flags.remove(f.0);
                    continue;
                }
                Err(e) => return usage(e),
            }
            String::new()
        };
        p.flags.entry(f.0.to_string()).or_default().push(value);
    }
    Ok(p)
}

/// Render a value in one of juju/cmd's output formats.
pub fn format_value(v: &Value, format: &str) -> R<String> {
    match format {
        "json" => Ok(format!(
            "{}\n",
            serde_json::to_string(v).unwrap_or_default()
        )),
        "yaml" => Ok(if v.is_null() {
            String::new()
        } else {
            serde_yaml::to_string(v).unwrap_or_default()
        }),
        "smart" | "" => Ok(match v {
            Value::Null => String::new(),
            Value::Bool(b) => format!("{}\n", if *b { "True" } else { "False" }),
            Value::String(s) => format!("{s}\n"),
            Value::Number(n) => format!("{n}\n"),
            Value::Array(a) if a.iter().all(|x| x.is_string()) => a
                .iter()
                .map(|x| format!("{}\n", x.as_str().unwrap()))
                .collect(),
            other => serde_yaml::to_string(other).unwrap_or_default(),
        }),
        other => usage(format!(
            "invalid value {other:?} for option --format: unknown format {other:?}"
        )),
    }
}

const FMT: FlagSpec = ("format", None, true);

fn out(p: &Parsed, v: Value) -> R<String> {
    format_value(&v, p.get("format").unwrap_or("smart"))
}

fn no_extra(p: &Parsed, max: usize) -> R<()> {
    if p.pos.len() > max {
        return usage(format!(
            "unrecognized args: [\"{}\"]",
            p.pos[max..].join("\" \"")
        ));
    }
    Ok(())
}

/// Run one tool for a hook. Never panics on bad input: every problem becomes a
/// `ToolOutput` with `ERROR ...` on stderr and a non-zero code.
pub fn run_tool(
    state: &mut ModelState,
    ctx: &mut HookContext,
    tool: &str,
    args: &[String],
    stdin: &[u8],
) -> ToolOutput {
    match dispatch(state, ctx, tool, args, stdin) {
        Ok(stdout) => ToolOutput {
            stdout,
            stderr: String::new(),
            code: 0,
        },
        Err(ToolError::Usage(m)) => ToolOutput {
            stdout: String::new(),
            stderr: format!("ERROR {m}\n"),
            code: 2,
        },
        Err(ToolError::Fail(m)) => ToolOutput {
            stdout: String::new(),
            stderr: format!("ERROR {m}\n"),
            code: 1,
        },
    }
}

fn dispatch(
    st: &mut ModelState,
    ctx: &mut HookContext,
    tool: &str,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    let in_action = ctx.hook.kind == HookKind::Action;
    if tool.starts_with("action-") && TOOLS.contains(&tool) && !in_action {
        return fail("not running an action");
    }
    match tool {
        "relation-ids" => relation_ids(st, ctx, args),
        "relation-list" => relation_list(st, ctx, args),
        "relation-get" => relation_get(st, ctx, args),
        "relation-set" => relation_set(st, ctx, args, stdin),
        "relation-model-get" => {
            let p = parse_args(args, &[FMT, ("relation", Some('r'), true)])?;
            resolve_relation(st, ctx, p.get("relation"))?;
            out(&p, json!({"uuid": st.uuid}))
        }
        "config-get" => config_get(st, ctx, args),
        "status-set" => status_set(st, ctx, args),
        "status-get" => status_get(st, ctx, args),
        "is-leader" => {
            let p = parse_args(args, &[FMT])?;
            no_extra(&p, 0)?;
            out(&p, Value::Bool(st.is_leader(&ctx.unit)))
        }
        "juju-log" => juju_log(ctx, args),
        "open-port" | "close-port" => port(ctx, args, tool == "open-port"),
        "opened-ports" => opened_ports(st, ctx, args),
        "network-get" => network_get(st, ctx, args),
        "unit-get" => {
            let p = parse_args(args, &[FMT])?;
            no_extra(&p, 1)?;
            match p.pos.first().map(|s| s.as_str()) {
                Some("private-address" | "public-address") => {
                    out(&p, Value::String(ctx.ip.clone()))
                }
                Some(k) => fail(format!("unknown setting {k:?}")),
                None => usage("no setting specified"),
            }
        }
        "action-get" => action_get(st, ctx, args),
        "action-set" => action_set(st, ctx, args),
        "action-log" => {
            let p = parse_args(args, &[])?;
            if p.pos.is_empty() {
                return usage("no message specified");
            }
            if let Some(run) = ctx.hook.action.and_then(|a| st.actions.get_mut(&a)) {
                run.log.push(p.pos.join(" "));
            }
            Ok(String::new())
        }
        "action-fail" => {
            let p = parse_args(args, &[])?;
            if let Some(run) = ctx.hook.action.and_then(|a| st.actions.get_mut(&a)) {
                run.status = "failed".into();
                run.message = if p.pos.is_empty() {
                    "action failed without reason given, check action for errors".into()
                } else {
                    p.pos.join(" ")
                };
            }
            Ok(String::new())
        }
        "secret-add" => secret_add(st, ctx, args, stdin),
        "secret-set" => secret_set(st, ctx, args, stdin),
        "secret-get" => secret_get(st, ctx, args),
        "secret-info-get" => secret_info_get(st, ctx, args),
        "secret-ids" => {
            let p = parse_args(args, &[FMT])?;
            no_extra(&p, 0)?;
            // jujuc/secret-ids.go prints the keys of HookContext.SecretMetadata, which are
            // the bare ids (URI.ID), pending creates included
            let mut ids: Vec<Value> = st
                .secrets
                .values()
                .filter(|s| owns(st, ctx, s))
                .map(|s| json!(s.xid))
                .collect();
            for op in &ctx.secret_ops {
                if let SecretOp::Add(s) = op {
                    ids.push(json!(s.xid));
                }
            }
            out(&p, Value::Array(ids))
        }
        "secret-grant" | "secret-revoke" => secret_grant(st, ctx, args, tool == "secret-grant"),
        "secret-remove" => {
            let p = parse_args(args, &[("revision", None, true)])?;
            no_extra(&p, 1)?;
            let xid = owned_secret(st, ctx, p.pos.first())?;
            let revision = match p.get("revision") {
                Some(r) => Some(
                    r.parse::<u64>()
                        .map_err(|_| ToolError::Usage(format!("invalid revision {r:?}")))?,
                ),
                None => None,
            };
            ctx.secret_ops.push(SecretOp::Remove { xid, revision });
            Ok(String::new())
        }
        "application-version-set" => {
            let p = parse_args(args, &[])?;
            no_extra(&p, 1)?;
            let v = p
                .pos
                .first()
                .ok_or_else(|| ToolError::Usage("no version specified".into()))?;
            if let Some(a) = st.applications.get_mut(app_of(&ctx.unit)) {
                a.workload_version = v.clone();
            }
            Ok(String::new())
        }
        "state-get" => {
            let p = parse_args(args, &[FMT, ("strict", None, false)])?;
            no_extra(&p, 1)?;
            let mut m = st
                .units
                .get(&ctx.unit)
                .map(|u| u.charm_state.clone())
                .unwrap_or_default();
            for (k, v) in &ctx.state_writes {
                match v {
                    Some(v) => m.insert(k.clone(), v.clone()),
                    None => m.remove(k),
                };
            }
            match p.pos.first() {
                Some(k) => match m.get(k) {
                    Some(v) => out(&p, json!(v)),
                    None if p.has("strict") => fail(format!("key {k:?} not found")),
                    None => out(&p, Value::Null),
                },
                None => out(&p, json!(m)),
            }
        }
        "state-set" => {
            let p = parse_args(args, &[("file", None, true)])?;
            let kv = key_values(&p, stdin)?;
            for (k, v) in kv {
                ctx.state_writes
                    .insert(k, if v.is_empty() { None } else { Some(v) });
            }
            Ok(String::new())
        }
        "state-delete" => {
            let p = parse_args(args, &[])?;
            no_extra(&p, 1)?;
            let k = p
                .pos
                .first()
                .ok_or_else(|| ToolError::Usage("no key specified".into()))?;
            ctx.state_writes.insert(k.clone(), None);
            Ok(String::new())
        }
        "leader-get" => {
            let p = parse_args(args, &[FMT])?;
            no_extra(&p, 1)?;
            let m = st
                .applications
                .get(app_of(&ctx.unit))
                .map(|a| a.leader_settings.clone())
                .unwrap_or_default();
            match p.pos.first() {
                Some(k) if k != "-" => out(&p, m.get(k).map_or(Value::Null, |v| json!(v))),
                _ => out(&p, json!(m)),
            }
        }
        "leader-set" => {
            let p = parse_args(args, &[("file", None, true)])?;
            let kv = key_values(&p, stdin)?;
            if !st.is_leader(&ctx.unit) {
                return fail(
                    "cannot write leadership settings: cannot write settings: not the leader",
                );
            }
            let unit = ctx.unit.clone();
            let a = st
                .applications
                .get_mut(app_of(&unit))
                .ok_or_else(|| ToolError::Fail("application not found".into()))?;
            let before = a.leader_settings.clone();
            for (k, v) in kv {
                if v.is_empty() {
                    a.leader_settings.remove(&k);
                } else {
                    a.leader_settings.insert(k, v);
                }
            }
            if a.leader_settings != before {
                a.leader_settings_version += 1;
                let v = a.leader_settings_version;
                if let Some(u) = st.units.get_mut(&unit) {
                    u.view.leader_settings_seen = v;
                }
            }
            Ok(String::new())
        }
        "goal-state" => goal_state(st, ctx, args),
        "resource-get" => {
            let p = parse_args(args, &[])?;
            no_extra(&p, 1)?;
            let name = p
                .pos
                .first()
                .ok_or_else(|| ToolError::Usage("missing required resource name".into()))?;
            let app = st
                .applications
                .get(app_of(&ctx.unit))
                .ok_or_else(|| ToolError::Fail("application not found".into()))?;
            match app.resources.get(name) {
                Some(path) => {
                    let file = path
                        .file_name()
                        .map(|f| f.to_string_lossy().to_string())
                        .unwrap_or_default();
                    let unit = st
                        .units
                        .get(&ctx.unit)
                        .ok_or_else(|| ToolError::Fail("unit not found".into()))?;
                    Ok(format!(
                        "{}{}/resources/{}/{}\n",
                        ctx.root,
                        unit.agent_dir(),
                        name,
                        file
                    ))
                }
                None if app.meta.resources.contains(name) => fail(format!(
                    "could not download resource: resource#{}/{} not found",
                    app.name, name
                )),
                None => fail(format!(
                    "could not download resource: resource {name:?} not found"
                )),
            }
        }
        other => fail(format!("bad request: unknown command: {other}")),
    }
}

// ---------- relations ----------

/// Parse `-r` (`<id>` or `<endpoint>:<id>`) against the relations the unit knows.
fn resolve_relation(st: &ModelState, ctx: &HookContext, r: Option<&str>) -> R<u32> {
    let Some(r) = r else {
        return ctx
            .hook
            .relation
            .ok_or_else(|| ToolError::Usage("no relation id specified".into()));
    };
    let not_found = || {
        ToolError::Usage(format!(
            "invalid value {r:?} for option -r: relation not found"
        ))
    };
    let (ep, id) = match r.rsplit_once(':') {
        Some((e, i)) => (Some(e), i),
        None => (None, r),
    };
    let id: u32 = id.parse().map_err(|_| not_found())?;
    let unit = st.units.get(&ctx.unit).ok_or_else(not_found)?;
    let known = unit.view.relations.contains_key(&id) || ctx.hook.relation == Some(id);
    let rel = st
        .relations
        .get(&id)
        .filter(|_| known)
        .ok_or_else(not_found)?;
    let local = rel.local(&unit.app).ok_or_else(not_found)?;
    if ep.is_some_and(|e| e != local.spec.name) {
        return Err(not_found());
    }
    Ok(id)
}

fn relation_ids(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 1)?;
    let ep = match p.pos.first() {
        Some(e) => e.clone(),
        None if !ctx.hook.endpoint.is_empty() => ctx.hook.endpoint.clone(),
        None => return usage("no endpoint name specified"),
    };
    let unit = st
        .units
        .get(&ctx.unit)
        .ok_or_else(|| ToolError::Fail("unit not found".into()))?;
    // Juju filters the unit's relations by endpoint name: an unknown name lists nothing
    let mut ids: Vec<u32> = unit.view.relations.keys().copied().collect();
    if let Some(r) = ctx.hook.relation {
        if !ids.contains(&r) && ctx.hook.kind == HookKind::RelationCreated {
            ids.push(r);
        }
    }
    ids.sort();
    let list: Vec<Value> = ids
        .into_iter()
        .filter_map(|id| st.relations.get(&id))
        .filter(|r| r.local(&unit.app).is_some_and(|e| e.spec.name == ep))
        .map(|r| json!(format!("{ep}:{}", r.id)))
        .collect();
    out(&p, Value::Array(list))
}

/// The remote units of a relation as this hook sees them.
fn hook_members(st: &ModelState, ctx: &HookContext, rel: u32) -> Vec<String> {
    let mut m: Vec<String> = st
        .units
        .get(&ctx.unit)
        .and_then(|u| u.view.relations.get(&rel))
        .map(|rv| rv.members.keys().cloned().collect())
        .unwrap_or_default();
    if ctx.hook.relation == Some(rel) {
        match ctx.hook.kind {
            HookKind::RelationJoined if !m.contains(&ctx.hook.remote_unit) => {
                m.push(ctx.hook.remote_unit.clone())
            }
            HookKind::RelationDeparted => m.retain(|u| u != &ctx.hook.remote_unit),
            _ => {}
        }
    }
    m.sort_by_key(|u| (app_of(u).to_string(), crate::state::unit_number(u)));
    m
}

fn relation_list(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[FMT, ("relation", Some('r'), true), ("app", None, false)],
    )?;
    no_extra(&p, 0)?;
    let id = resolve_relation(st, ctx, p.get("relation"))?;
    if p.has("app") {
        let rel = &st.relations[&id];
        return out(
            &p,
            json!(rel.remote_app(app_of(&ctx.unit)).unwrap_or_default()),
        );
    }
    out(&p, json!(hook_members(st, ctx, id)))
}

fn relation_get(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[FMT, ("relation", Some('r'), true), ("app", None, false)],
    )?;
    no_extra(&p, 2)?;
    let id = resolve_relation(st, ctx, p.get("relation"))?;
    let rel = &st.relations[&id];
    let my_app = app_of(&ctx.unit).to_string();
    let key = p.pos.first().filter(|k| k.as_str() != "-").cloned();
    let target = match p.pos.get(1) {
        Some(t) => t.clone(),
        None if p.has("app") => rel.remote_app(&my_app).unwrap_or_default().to_string(),
        None if !ctx.hook.remote_unit.is_empty() && ctx.hook.relation == Some(id) => {
            ctx.hook.remote_unit.clone()
        }
        None => return usage("no unit id specified"),
    };
    let is_app = p.has("app") || !target.contains('/');
    let owner = if is_app {
        app_of(&target).to_string()
    } else {
        target.clone()
    };
    if rel.local(app_of(&owner)).is_none() {
        return fail(format!(
            "permission denied: {owner:?} is not part of relation {}:{}",
            rel.local(&my_app)
                .map(|e| e.spec.name.as_str())
                .unwrap_or(""),
            id
        ));
    }
    if is_app && owner == my_app && !rel.is_peer() && !st.is_leader(&ctx.unit) {
        // Juju's controller refuses it (ops words it "is not leader and cannot read its own
        // application databag"); the tool reports the API error
        return fail("permission denied");
    }
    let cache_key = (id, owner.clone());
    let base = match ctx.reads.get(&cache_key) {
        Some(b) => b.clone(),
        None => {
            let b = if is_app {
                rel.app_bags.get(&owner)
            } else {
                rel.unit_bags.get(&owner)
            }
            .map(|b| b.data.clone())
            .unwrap_or_default();
            ctx.reads.insert(cache_key, b.clone());
            b
        }
    };
    let data = ctx.overlay(id, &owner, base);
    match key {
        Some(k) => out(&p, data.get(&k).map_or(Value::Null, |v| json!(v))),
        None => out(&p, json!(data)),
    }
}

/// `k=v` arguments plus an optional `--file` YAML map (`-` = stdin); CLI pairs win.
fn key_values(p: &Parsed, stdin: &[u8]) -> R<Vec<(String, String)>> {
    let mut kv = Vec::new();
    if let Some(f) = p.get("file") {
        if f != "-" {
            return fail(format!(
                "cannot read {f:?}: the hook tool client passes files as stdin"
            ));
        }
        let text = String::from_utf8_lossy(stdin);
        let v: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| ToolError::Fail(format!("cannot parse settings: {e}")))?;
        match v {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = scalar_string(&k)
                        .ok_or_else(|| ToolError::Fail("settings keys must be strings".into()))?;
                    let v = scalar_string(&v).ok_or_else(|| {
                        ToolError::Fail(format!("value of {k:?} is not a string"))
                    })?;
                    kv.push((k, v));
                }
            }
            _ => return fail("expected YAML map of settings"),
        }
    }
    for a in &p.pos {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("expected \"key=value\", got {a:?}"));
        };
        if k.is_empty() {
            return usage(format!("expected \"key=value\", got {a:?}"));
        }
        kv.push((k.to_string(), v.to_string()));
    }
    Ok(kv)
}

fn scalar_string(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

fn relation_set(
    st: &ModelState,
    ctx: &mut HookContext,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("relation", Some('r'), true),
            ("app", None, false),
            ("file", None, true),
        ],
    )?;
    let id = resolve_relation(st, ctx, p.get("relation"))?;
    let kv = key_values(&p, stdin)?;
    let owner = if p.has("app") {
        if !st.is_leader(&ctx.unit) {
            return fail("cannot write relation settings");
        }
        app_of(&ctx.unit).to_string()
    } else {
        ctx.unit.clone()
    };
    let w = ctx.rel_writes.entry((id, owner)).or_default();
    for (k, v) in kv {
        w.insert(k, v);
    }
    Ok(String::new())
}

// ---------- config, status, log ----------

fn config_get(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("all", Some('a'), false)])?;
    no_extra(&p, 1)?;
    let app = st
        .applications
        .get(app_of(&ctx.unit))
        .ok_or_else(|| ToolError::Fail("application not found".into()))?;
    let cfg = ctx
        .config
        .get_or_insert_with(|| app.effective_config())
        .clone();
    if p.has("all") && !p.pos.is_empty() {
        return usage("cannot use argument --all together with key");
    }
    match p.pos.first() {
        Some(k) => out(&p, cfg.get(k).cloned().unwrap_or(Value::Null)),
        None => {
            let mut m: Map<String, Value> = cfg.into_iter().collect();
            if p.has("all") {
                for k in app.meta.options.keys() {
                    m.entry(k.clone()).or_insert(Value::Null);
                }
            }
            out(&p, Value::Object(m))
        }
    }
}

fn status_set(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[("application", None, false)])?;
    no_extra(&p, 2)?;
    let Some(s) = p.pos.first() else {
        return usage("invalid args, require <status> [message] [data]");
    };
    let allowed = ["maintenance", "blocked", "waiting", "active"];
    if !allowed.contains(&s.as_str()) {
        return usage(format!(
            "invalid status {s:?}, expected one of [maintenance blocked waiting active]"
        ));
    }
    let msg = p.pos.get(1).cloned().unwrap_or_default();
    if p.has("application") {
        if !st.is_leader(&ctx.unit) {
            return fail("this unit is not the leader");
        }
        if let Some(a) = st.applications.get_mut(app_of(&ctx.unit)) {
            a.status = Some(Status::new(s, &msg));
        }
    } else if let Some(u) = st.units.get_mut(&ctx.unit) {
        u.workload = Status::new(s, &msg);
        u.status_ever_set = true;
    }
    Ok(String::new())
}

fn status_json(s: &Status, data: bool) -> Value {
    if data {
        json!({"status": s.status, "message": s.message, "status-data": {}})
    } else {
        json!({"status": s.status})
    }
}

fn status_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("include-data", None, false),
            ("application", None, false),
        ],
    )?;
    no_extra(&p, 0)?;
    let data = p.has("include-data");
    if p.has("application") {
        if !st.is_leader(&ctx.unit) {
            return fail("finding application status: this unit is not the leader");
        }
        let app = app_of(&ctx.unit);
        let s = app_status(st, app);
        let mut a = status_json(&s, data);
        let mut units = Map::new();
        for u in st.units.values().filter(|u| u.app == app) {
            units.insert(u.name.clone(), status_json(&u.workload, data));
        }
        a["units"] = Value::Object(units);
        return out(&p, json!({ "application-status": a }));
    }
    let u = st
        .units
        .get(&ctx.unit)
        .ok_or_else(|| ToolError::Fail("unit not found".into()))?;
    out(&p, status_json(&u.workload, data))
}

/// The application status: what the leader set, else the most severe unit status.
pub fn app_status(st: &ModelState, app: &str) -> Status {
    if let Some(s) = st.applications.get(app).and_then(|a| a.status.clone()) {
        return s;
    }
    let rank = |s: &str| match s {
        "error" => 0,
        "blocked" => 1,
        "maintenance" => 2,
        "waiting" => 3,
        "active" => 4,
        _ => 5,
    };
    st.units
        .values()
        .filter(|u| u.app == app)
        .map(|u| {
            if u.error.is_some() {
                Status::new("error", &u.agent_message)
            } else {
                u.workload.clone()
            }
        })
        .min_by_key(|s| rank(&s.status))
        .unwrap_or_else(|| Status::new("unknown", ""))
}

fn juju_log(ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[FMT, ("log-level", Some('l'), true), ("debug", None, false)],
    )?;
    if p.pos.is_empty() {
        return usage("no message specified");
    }
    let mut level = p.get("log-level").unwrap_or("INFO").to_uppercase();
    if p.has("debug") {
        level = "DEBUG".into();
    }
    if !["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&level.as_str()) {
        level = "INFO".into();
    }
    let prefix = match ctx.hook.relation {
        Some(r) if !ctx.hook.endpoint.is_empty() => format!("{}:{}: ", ctx.hook.endpoint, r),
        _ => String::new(),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ctx.log_path)
    {
        let _ = writeln!(
            f,
            "{} {} juju-log {}{}",
            level,
            ctx.unit,
            prefix,
            p.pos.join(" ")
        );
    }
    Ok(String::new())
}

// ---------- ports and network ----------

/// Normalise a port spec to Juju's form (`80/tcp`, `8000-8999/udp`, `icmp`).
pub fn normalize_port(spec: &str) -> Option<String> {
    if spec == "icmp" {
        return Some("icmp".into());
    }
    let (range, proto) = match spec.split_once('/') {
        Some((r, p)) => (r, p.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return None;
    }
    let ok = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (ok(a)?, ok(b)?);
            (a <= b).then(|| {
                if a == b {
                    format!("{a}/{proto}")
                } else {
                    format!("{a}-{b}/{proto}")
                }
            })
        }
        None => Some(format!("{}/{proto}", ok(range)?)),
    }
}

fn port(ctx: &mut HookContext, args: &[String], open: bool) -> R<String> {
    let p = parse_args(args, &[FMT, ("endpoints", None, true)])?;
    no_extra(&p, 1)?;
    let Some(spec) = p.pos.first() else {
        return usage("no port or range specified");
    };
    let Some(norm) = normalize_port(spec) else {
        return usage(format!(
            "expected <port>[/<protocol>] or <from>-<to>[/<protocol>] or icmp; got {spec:?}"
        ));
    };
    ctx.ports.push((open, norm));
    Ok(String::new())
}

fn opened_ports(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("endpoints", None, false)])?;
    no_extra(&p, 0)?;
    let mut ports = st
        .units
        .get(&ctx.unit)
        .map(|u| u.ports.clone())
        .unwrap_or_default();
    for (open, port) in &ctx.ports {
        if *open {
            ports.insert(port.clone());
        } else {
            ports.remove(port);
        }
    }
    let list: Vec<Value> = ports
        .into_iter()
        .map(|x| {
            if p.has("endpoints") {
                json!(format!("{x} (*)"))
            } else {
                json!(x)
            }
        })
        .collect();
    out(&p, Value::Array(list))
}

fn network_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("relation", Some('r'), true),
            ("bind-address", None, false),
            ("ingress-address", None, false),
            ("egress-subnets", None, false),
            ("primary-address", None, false),
        ],
    )?;
    no_extra(&p, 1)?;
    let app = st
        .applications
        .get(app_of(&ctx.unit))
        .ok_or_else(|| ToolError::Fail("application not found".into()))?;
    let binding = match p.pos.first() {
        Some(b) => b.clone(),
        None if p.has("relation") => {
            let id = resolve_relation(st, ctx, p.get("relation"))?;
            st.relations[&id]
                .local(&app.name)
                .map(|e| e.spec.name.clone())
                .unwrap_or_default()
        }
        None => return usage("no arguments specified"),
    };
    if p.has("relation") {
        resolve_relation(st, ctx, p.get("relation"))?;
    }
    if app.meta.endpoint(&binding).is_none() && !app.meta.extra_bindings.contains(&binding) {
        return fail(format!("no network config found for binding {binding:?}"));
    }
    let net = ctx.cidr.split('/').nth(1).unwrap_or("24");
    let subnet = subnet_of(&ctx.ip, net.parse().unwrap_or(24));
    let mut wanted = Map::new();
    if p.has("bind-address") || p.has("primary-address") {
        wanted.insert("bind-address".into(), json!(ctx.ip));
    }
    if p.has("ingress-address") {
        wanted.insert("ingress-address".into(), json!(ctx.ip));
    }
    if p.has("egress-subnets") {
        wanted.insert("egress-subnets".into(), json!([format!("{}/32", ctx.ip)]));
    }
    match wanted.len() {
        0 => out(
            &p,
            json!({
                "bind-addresses": [{"mac-address": "", "interface-name": "eth0",
                    "addresses": [{"hostname": "", "value": ctx.ip, "cidr": subnet}], "macaddress": "", "interfacename": "eth0"}],
                "egress-subnets": [format!("{}/32", ctx.ip)],
                "ingress-addresses": [ctx.ip],
            }),
        ),
        1 => out(&p, wanted.into_iter().next().unwrap().1),
        _ => out(&p, Value::Object(wanted)),
    }
}

fn subnet_of(ip: &str, bits: u32) -> String {
    let Ok(a) = ip.parse::<std::net::Ipv4Addr>() else {
        return String::new();
    };
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits.min(32))
    };
    format!("{}/{}", std::net::Ipv4Addr::from(u32::from(a) & mask), bits)
}

// ---------- actions ----------

fn action_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 1)?;
    let run = ctx
        .hook
        .action
        .and_then(|a| st.actions.get(&a))
        .ok_or_else(|| ToolError::Fail("not running an action".into()))?;
    let mut v = Value::Object(run.params.clone());
    if let Some(k) = p.pos.first() {
        for part in k.split('.') {
            v = v.get(part).cloned().unwrap_or(Value::Null);
        }
    }
    out(&p, v)
}

fn valid_action_key(k: &str) -> bool {
    let b = k.as_bytes();
    !k.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn action_set(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[])?;
    if p.pos.is_empty() {
        return usage("no key=value pairs specified");
    }
    let mut pairs = Vec::new();
    for a in &p.pos {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("argument {a:?} must be of the form key...=value"));
        };
        let parts: Vec<&str> = k.split('.').collect();
        if let Some(bad) = parts.iter().find(|x| !valid_action_key(x)) {
            return usage(format!("key {bad:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"));
        }
        if ["stdout", "stdout-encoding", "stderr", "stderr-encoding"].contains(&parts[0]) {
            return usage(format!("cannot set reserved action key {:?}", parts[0]));
        }
        pairs.push((
            parts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            v.to_string(),
        ));
    }
    let run = ctx
        .hook
        .action
        .and_then(|a| st.actions.get_mut(&a))
        .ok_or_else(|| ToolError::Fail("not running an action".into()))?;
    for (path, v) in pairs {
        let mut m = &mut run.results;
        for part in &path[..path.len() - 1] {
            let e = m.entry(part.clone()).or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            m = e.as_object_mut().unwrap();
        }
        m.insert(path[path.len() - 1].clone(), json!(v));
    }
    Ok(String::new())
}

// ---------- secrets ----------

/// The bare id of a secret as every tool takes it: `<id>`, `secret:<id>` or
/// `secret://<model-uuid>/<id>` (core/secrets/secret.go ParseURI: no scheme is the secret
/// scheme, the host is the source model's UUID, the path or opaque part is the id).
fn parse_secret_id(s: &str) -> String {
    let s = s.strip_prefix("secret:").unwrap_or(s);
    let s = s.strip_prefix("//").unwrap_or(s);
    s.rsplit('/').next().unwrap_or(s).to_string()
}

fn owns(st: &ModelState, ctx: &HookContext, s: &Secret) -> bool {
    s.owner == format!("unit:{}", ctx.unit)
        || (s.owner == format!("application:{}", app_of(&ctx.unit)) && st.is_leader(&ctx.unit))
}

/// A secret visible to this hook, including ones added earlier in the same hook.
fn find_secret(st: &ModelState, ctx: &HookContext, xid: &str) -> Option<Secret> {
    let mut s = st.secrets.get(xid).cloned();
    for op in &ctx.secret_ops {
        if let SecretOp::Add(a) = op {
            if a.xid == xid {
                s = Some(a.clone());
            }
        }
    }
    s
}

fn owned_secret(st: &ModelState, ctx: &HookContext, id: Option<&String>) -> R<String> {
    let id = id.ok_or_else(|| ToolError::Usage("missing secret ID".into()))?;
    let xid = parse_secret_id(id);
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    let app_owned_by_me = s.owner == format!("application:{}", app_of(&ctx.unit));
    if s.owner != format!("unit:{}", ctx.unit) && !(app_owned_by_me && st.is_leader(&ctx.unit)) {
        return fail(format!("secret {xid:?} not found"));
    }
    Ok(xid)
}

const SECRET_FLAGS: &[FlagSpec] = &[
    ("owner", None, true),
    ("label", None, true),
    ("description", None, true),
    ("expire", None, true),
    ("rotate", None, true),
    ("file", None, true),
];

fn secret_content(p: &Parsed, stdin: &[u8], skip: usize) -> R<BTreeMap<String, String>> {
    let mut pp = Parsed {
        flags: p.flags.clone(),
        pos: p.pos[skip.min(p.pos.len())..].to_vec(),
    };
    let mut out = BTreeMap::new();
    let mut plain = Vec::new();
    for a in std::mem::take(&mut pp.pos) {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("key value {a:?} not valid"));
        };
        if let Some(key) = k.strip_suffix("#base64") {
            out.insert(key.to_string(), v.to_string());
        } else if k.ends_with("#file") {
            // the hook tool client replaces these with the file's content
            return fail(format!("{k}: file not readable by the hook tool"));
        } else {
            plain.push(a.clone());
        }
    }
    pp.pos = plain;
    for (k, v) in key_values(&pp, stdin)? {
        out.insert(k, v);
    }
    for k in out.keys() {
        let ok = k.len() >= 3
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !k.ends_with('-')
            && !k.contains("--");
        if !ok {
            return usage(format!("key {k:?} not valid"));
        }
    }
    Ok(out)
}

fn check_rotate(p: &Parsed) -> R<()> {
    if let Some(r) = p.get("rotate") {
        if ![
            "never",
            "hourly",
            "daily",
            "weekly",
            "monthly",
            "quarterly",
            "yearly",
        ]
        .contains(&r)
        {
            return usage(format!("rotate policy {r:?} not valid"));
        }
    }
    Ok(())
}

fn secret_add(st: &ModelState, ctx: &mut HookContext, args: &[String], stdin: &[u8]) -> R<String> {
    let p = parse_args(args, SECRET_FLAGS)?;
    check_rotate(&p)?;
    let content = secret_content(&p, stdin, 0)?;
    if content.is_empty() {
        return usage("missing secret value or filename");
    }
    let owner = match p.get("owner").unwrap_or("application") {
        "application" => {
            if !st.is_leader(&ctx.unit) {
                return fail("this unit is not the leader");
            }
            format!("application:{}", app_of(&ctx.unit))
        }
        "unit" => format!("unit:{}", ctx.unit),
        o => return usage(format!("secret owner {o:?} not valid")),
    };
    let xid = crate::state::secret_xid();
    let mut revisions = BTreeMap::new();
    revisions.insert(1, content);
    ctx.secret_ops.push(SecretOp::Add(Secret {
        xid: xid.clone(),
        owner,
        label: p.get("label").map(String::from),
        description: p.get("description").map(String::from),
        expire: p.get("expire").map(String::from),
        rotate: p.get("rotate").map(String::from),
        revisions,
        grants: vec![],
        consumers: BTreeMap::new(),
        obsolete_notified: Default::default(),
    }));
    // jujuc/secret-add.go prints the URI HookContext.CreateSecret got from the controller's
    // CreateSecretURIs (apiserver secretsmanager: NewURI().WithSource(modelUUID)), whose
    // String() (core/secrets/secret.go) is secret://<model-uuid>/<id>
    Ok(format!("secret://{}/{xid}\n", st.uuid))
}

fn secret_set(st: &ModelState, ctx: &mut HookContext, args: &[String], stdin: &[u8]) -> R<String> {
    let p = parse_args(args, SECRET_FLAGS)?;
    check_rotate(&p)?;
    let xid = owned_secret(st, ctx, p.pos.first())?;
    let content = secret_content(&p, stdin, 1)?;
    ctx.secret_ops.push(SecretOp::Set {
        xid,
        label: p.get("label").map(String::from),
        description: p.get("description").map(String::from),
        expire: p.get("expire").map(String::from),
        rotate: p.get("rotate").map(String::from),
        content: (!content.is_empty()).then_some(content),
    });
    Ok(String::new())
}

/// Whether a consumer unit has been granted access to a secret.
fn granted(st: &ModelState, s: &Secret, unit: &str) -> bool {
    s.grants.iter().any(|(rel, who)| match who {
        Some(u) => u == unit,
        None => st.relations.get(rel).is_some_and(|r| {
            let owner_app = s
                .owner
                .split_once(':')
                .map(|(_, o)| app_of(o))
                .unwrap_or("");
            r.remote_app(owner_app) == Some(app_of(unit)) && r.local(app_of(unit)).is_some()
        }),
    })
}

fn secret_get(st: &mut ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(
        args,
        &[
            FMT,
            ("label", None, true),
            ("refresh", None, false),
            ("peek", None, false),
        ],
    )?;
    no_extra(&p, 1)?;
    if p.has("refresh") && p.has("peek") {
        return usage("specify one of --peek or --refresh but not both");
    }
    let label = p.get("label");
    let xid = match (p.pos.first(), label) {
        (Some(id), _) => parse_secret_id(id),
        (None, Some(l)) => {
            let by_owner = st
                .secrets
                .values()
                .find(|s| owns(st, ctx, s) && s.label.as_deref() == Some(l));
            let by_consumer = st
                .secrets
                .values()
                .find(|s| s.consumers.get(&ctx.unit).and_then(|c| c.label.as_deref()) == Some(l));
            let pending = ctx.secret_ops.iter().find_map(|o| match o {
                SecretOp::Add(s) if s.label.as_deref() == Some(l) => Some(s.xid.clone()),
                _ => None,
            });
            by_owner
                .or(by_consumer)
                .map(|s| s.xid.clone())
                .or(pending)
                .ok_or_else(|| ToolError::Fail(format!("secret with label {l:?} not found")))?
        }
        (None, None) => return usage("require either a secret URI or label"),
    };
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    let content = if owns(st, ctx, &s) || s.owner == format!("application:{}", app_of(&ctx.unit)) {
        // owners (and units of the owning app) read the latest revision
        s.revisions
            .values()
            .next_back()
            .cloned()
            .unwrap_or_default()
    } else {
        if !granted(st, &s, &ctx.unit) {
            return fail("permission denied");
        }
        let latest = s.latest();
        let real = st
            .secrets
            .get_mut(&xid)
            .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
        let c = real
            .consumers
            .entry(ctx.unit.clone())
            .or_insert_with(|| Consumer {
                tracked: latest,
                label: None,
            });
        if p.has("refresh") {
            c.tracked = latest;
        }
        if let Some(l) = label {
            if !p.pos.is_empty() {
                ctx.secret_ops.push(SecretOp::ConsumerLabel {
                    xid: xid.clone(),
                    label: l.to_string(),
                });
            }
        }
        let rev = if p.has("peek") || p.has("refresh") {
            latest
        } else {
            c.tracked
        };
        s.revisions.get(&rev).cloned().unwrap_or_default()
    };
    out(&p, json!(content))
}

fn secret_info_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("label", None, true)])?;
    no_extra(&p, 1)?;
    let xid = match (p.pos.first(), p.get("label")) {
        (Some(id), _) => parse_secret_id(id),
        (None, Some(l)) => st
            .secrets
            .values()
            .find(|s| owns(st, ctx, s) && s.label.as_deref() == Some(l))
            .map(|s| s.xid.clone())
            .ok_or_else(|| ToolError::Fail(format!("secret with label {l:?} not found")))?,
        (None, None) => return usage("require either a secret URI or label"),
    };
    let s = find_secret(st, ctx, &xid)
        .ok_or_else(|| ToolError::Fail(format!("secret {xid:?} not found")))?;
    if !owns(st, ctx, &s) {
        return fail(format!("secret {xid:?} not found"));
    }
    let mut info = json!({"revision": s.latest(), "owner": s.owner.split(':').next().unwrap_or("application"), "rotation": s.rotate.clone().unwrap_or_else(|| "never".into())});
    if let Some(l) = &s.label {
        info["label"] = json!(l);
    }
    if let Some(d) = &s.description {
        info["description"] = json!(d);
    }
    if let Some(e) = &s.expire {
        info["expiry"] = json!(e);
    }
    out(&p, json!({ xid: info }))
}

fn secret_grant(st: &ModelState, ctx: &mut HookContext, args: &[String], grant: bool) -> R<String> {
    let p = parse_args(
        args,
        &[
            ("relation", Some('r'), true),
            ("unit", None, true),
            ("app", None, true),
        ],
    )?;
    no_extra(&p, 1)?;
    let xid = owned_secret(st, ctx, p.pos.first())?;
    let rel = match p.get("relation") {
        Some(r) => Some(resolve_relation(st, ctx, Some(r))?),
        None if grant => return usage("missing relation"),
        None => None,
    };
    if grant {
        ctx.secret_ops.push(SecretOp::Grant {
            xid,
            relation: rel.unwrap(),
            unit: p.get("unit").map(String::from),
        });
    } else {
        let target = p.get("unit").or(p.get("app")).map(String::from);
        ctx.secret_ops.push(SecretOp::Revoke {
            xid,
            relation: rel,
            target,
        });
    }
    Ok(String::new())
}

// ---------- goal-state ----------

fn goal_state(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 0)?;
    let app = app_of(&ctx.unit);
    let entry = |u: &crate::state::Unit| json!({"status": if u.life == crate::state::Life::Alive { "active" } else { "dying" }, "since": u.workload.since.to_string()});
    let units: Map<String, Value> = st
        .units
        .values()
        .filter(|u| u.app == app)
        .map(|u| (u.name.clone(), entry(u)))
        .collect();
    let mut rels = Map::new();
    for r in st.relations.values().filter(|r| !r.dying) {
        let Some(local) = r.local(app) else { continue };
        let remote = r.remote_app(app).unwrap_or_default();
        let e = rels
            .entry(local.spec.name.clone())
            .or_insert_with(|| json!({}));
        e[remote] = json!({"status": "joined", "since": ""});
        for u in st
            .units
            .values()
            .filter(|u| u.app == remote && u.name != ctx.unit)
        {
            e[u.name.clone()] = entry(u);
        }
    }
    out(&p, json!({"units": units, "relations": rels}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_long_short_inline_and_interspersed_flags() {
        let spec = [FMT, ("relation", Some('r'), true), ("app", None, false)];
        let p = parse_args(
            &s(&["-r", "db:1", "key", "--format=json", "--app", "unit/0"]),
            &spec,
        )
        .unwrap();
        assert_eq!(p.get("relation"), Some("db:1"));
        assert_eq!(p.get("format"), Some("json"));
        assert!(p.has("app"));
        assert_eq!(p.pos, s(&["key", "unit/0"]));
        let p = parse_args(&s(&["--format", "json", "--", "-x"]), &spec).unwrap();
        assert_eq!(p.pos, s(&["-x"]));
        assert!(matches!(
            parse_args(&s(&["--nope"]), &spec),
            Err(ToolError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&s(&["-r"]), &spec),
            Err(ToolError::Usage(_))
        ));
    }

    #[test]
    fn formats_like_juju() {
        assert_eq!(format_value(&Value::Null, "json").unwrap(), "null\n");
        assert_eq!(format_value(&json!(true), "smart").unwrap(), "True\n");
        assert_eq!(format_value(&json!(["a", "b"]), "smart").unwrap(), "a\nb\n");
        assert_eq!(
            format_value(&json!({"k": "v"}), "json").unwrap(),
            "{\"k\":\"v\"}\n"
        );
        assert!(format_value(&json!(1), "xml").is_err());
    }

    #[test]
    fn normalises_ports() {
        assert_eq!(normalize_port("80").as_deref(), Some("80/tcp"));
        assert_eq!(normalize_port("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(
            normalize_port("8000-8999/udp").as_deref(),
            Some("8000-8999/udp")
        );
        assert_eq!(normalize_port("icmp").as_deref(), Some("icmp"));
        assert_eq!(normalize_port("0"), None);
        assert_eq!(normalize_port("90-80"), None);
        assert_eq!(normalize_port("80/sctp"), None);
    }

    #[test]
    fn key_values_merge_file_and_args() {
        let p = parse_args(&s(&["--file", "-", "b=2", "c="]), &[("file", None, true)]).unwrap();
        let kv = key_values(&p, b"{\"a\": \"1\", \"b\": 1}").unwrap();
        assert_eq!(
            kv,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "".into())
            ]
        );
        assert!(key_values(&parse_args(&s(&["novalue"]), &[]).unwrap(), b"").is_err());
    }

    #[test]
    fn secret_ids_parse_in_all_forms() {
        assert_eq!(parse_secret_id("secret:abc"), "abc");
        assert_eq!(parse_secret_id("secret://uuid/abc"), "abc");
        assert_eq!(parse_secret_id("abc"), "abc");
    }

    #[test]
    fn action_keys_are_checked() {
        assert!(valid_action_key("a-b1"));
        assert!(!valid_action_key("-a"));
        assert!(!valid_action_key("A"));
    }
}

#[cfg(test)]
#[path = "hooktools_tests.rs"]
mod model_tests;
