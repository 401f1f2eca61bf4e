//! is-leader, leader-get and leader-set.

use super::args::{key_values, no_extra, out, parse_args, FMT};
use super::{fail, usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState};
use serde_json::{json, Value};

pub(super) fn is_leader(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 0)?;
    out(&p, Value::Bool(st.is_leader(&ctx.unit)))
}

pub(super) fn leader_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 1)?;
    let m = st
        .applications
        .get(app_of(&ctx.unit))
        .map(|a| a.leader_settings.clone())
        .unwrap_or_default();
    if let Some(k) = p.pos.first().filter(|k| k.contains('=')) {
        return usage(format!("invalid key {k:?}"));
    }
    match p.pos.first() {
        Some(k) if k != "-" => out(&p, m.get(k).map_or(Value::Null, |v| json!(v))),
        _ => out(&p, json!(m)),
    }
}

pub(super) fn leader_set(
    st: &mut ModelState,
    ctx: &HookContext,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    let p = parse_args(args, &[("file", None, true)])?;
    let kv = key_values(&p, stdin)?;
    if !st.is_leader(&ctx.unit) {
        return fail("cannot write leadership settings: cannot write settings: not the leader");
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
