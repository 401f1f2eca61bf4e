//! state-get, state-set and state-delete: the unit's charm state on the controller, written
//! when the hook succeeds.

use super::args::{key_values, no_extra, out, parse_args, FMT};
use super::{fail, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::ModelState;
use serde_json::{json, Value};

pub(super) fn state_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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
    // state-get.go Init: no key, or "-", is every key
    match p.pos.first().filter(|k| k.as_str() != "-") {
        Some(k) => match m.get(k) {
            Some(v) => out(&p, json!(v)),
            // context.go GetCharmStateValue: errors.NotFoundf("%q", key)
            None if p.has("strict") => fail(format!("{k:?} not found")),
            None => out(&p, Value::Null),
        },
        None => out(&p, json!(m)),
    }
}

pub(super) fn state_set(ctx: &mut HookContext, args: &[String], stdin: &[u8]) -> R<String> {
    let p = parse_args(args, &[("file", None, true)])?;
    let kv = key_values(&p, stdin)?;
    for (k, v) in kv {
        ctx.state_writes
            .insert(k, if v.is_empty() { None } else { Some(v) });
    }
    Ok(String::new())
}

pub(super) fn state_delete(ctx: &mut HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[])?;
    no_extra(&p, 1)?;
    let k = p
        .pos
        .first()
        .ok_or_else(|| ToolError::Usage("no key specified".into()))?;
    ctx.state_writes.insert(k.clone(), None);
    Ok(String::new())
}
