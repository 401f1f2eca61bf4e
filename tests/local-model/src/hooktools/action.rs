//! action-get, action-set, action-log and action-fail.

use super::args::{no_extra, out, parse_args, FMT};
use super::{usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::ModelState;
use serde_json::{json, Value};

pub(super) fn action_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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

pub(super) fn valid_action_key(k: &str) -> bool {
    let b = k.as_bytes();
    !k.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(super) fn action_set(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[])?;
    let mut pairs = Vec::new();
    for a in &p.pos {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("argument {a:?} must be of the form key...=value"));
        };
        let parts: Vec<&str> = k.split('.').collect();
        if let Some(bad) = parts.iter().find(|x| !valid_action_key(x)) {
            return usage(format!("key {bad:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"));
        }
        let reserved = ["stdout", "stdout-encoding", "stderr", "stderr-encoding"];
        if let Some(r) = parts.iter().find(|x| reserved.contains(x)) {
            return usage(format!("cannot set reserved action key {r:?}"));
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

pub(super) fn action_log(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[])?;
    if p.pos.is_empty() {
        return usage("no message specified");
    }
    running(st, ctx)?.log.push(p.pos.join(" "));
    Ok(String::new())
}

pub(super) fn action_fail(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[])?;
    no_extra(&p, 1)?;
    let run = running(st, ctx)?;
    run.status = "failed".into();
    run.message = match p.pos.first() {
        None => "action failed without reason given, check action for errors".into(),
        Some(m) => m.clone(),
    };
    Ok(String::new())
}

/// The running action; outside one, the action tools' Run fails as Juju's does (every tool
/// is served in every hook, runner.go startJujucServer; runner/context ActionParams and
/// friends: "not running an action"), after their arguments passed Init.
fn running<'s>(st: &'s mut ModelState, ctx: &HookContext) -> R<&'s mut crate::state::ActionRun> {
    ctx.hook
        .action
        .and_then(|a| st.actions.get_mut(&a))
        .ok_or_else(|| ToolError::Fail("not running an action".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_keys_are_checked() {
        assert!(valid_action_key("a-b1"));
        assert!(!valid_action_key("-a"));
        assert!(!valid_action_key("A"));
    }
}
