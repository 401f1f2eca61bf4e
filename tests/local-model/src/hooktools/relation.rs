//! relation-ids, relation-list, relation-get, relation-set and relation-model-get, and how
//! `-r` names a relation.

use super::args::{key_values, no_extra, out, parse_args, FMT};
use super::{fail, usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::resolver::HookKind;
use crate::state::{app_of, ModelState};
use serde_json::{json, Value};

/// Parse `-r` (`<id>` or `<endpoint>:<id>`) against the relations the unit knows.
pub(super) fn resolve_relation(st: &ModelState, ctx: &HookContext, r: Option<&str>) -> R<u32> {
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
    let id: u32 = id.parse().map_err(|_| {
        ToolError::Usage(format!(
            "invalid value {r:?} for option -r: invalid relation id"
        ))
    })?;
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

pub(super) fn relation_ids(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT])?;
    no_extra(&p, 1)?;
    let ep = match p.pos.first() {
        Some(e) => e.clone(),
        None if !ctx.hook.endpoint.is_empty() => ctx.hook.endpoint.clone(),
        None => return usage("no relation name specified"),
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
pub(super) fn hook_members(st: &ModelState, ctx: &HookContext, rel: u32) -> Vec<String> {
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

pub(super) fn relation_list(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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

pub(super) fn relation_get(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
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
        None if !ctx.hook.remote_app.is_empty() && ctx.hook.relation == Some(id) => {
            ctx.hook.remote_app.clone()
        }
        None => return usage("no unit or application specified"),
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

pub(super) fn relation_set(
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

pub(super) fn relation_model_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
    let p = parse_args(args, &[FMT, ("relation", Some('r'), true)])?;
    resolve_relation(st, ctx, p.get("relation"))?;
    out(&p, json!({"uuid": st.uuid}))
}
