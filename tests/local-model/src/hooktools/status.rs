//! status-set, status-get, the application status Juju derives from its units, and
//! application-version-set (the workload version `juju status` shows).

use super::args::{no_extra, out, parse_args, FMT};
use super::{fail, usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState, Status};
use serde_json::{json, Map, Value};

pub(super) fn status_set(st: &mut ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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

pub(super) fn status_json(s: &Status, data: bool) -> Value {
    if data {
        json!({"status": s.status, "message": s.message, "status-data": {}})
    } else {
        json!({"status": s.status})
    }
}

pub(super) fn status_get(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
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
    if ctx.status_read.is_none() {
        let u = st
            .units
            .get(&ctx.unit)
            .ok_or_else(|| ToolError::Fail("unit not found".into()))?;
        ctx.status_read = Some(u.workload.clone());
    }
    let read = ctx.status_read.as_ref().expect("read above");
    out(&p, status_json(read, data))
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

pub(super) fn application_version_set(
    st: &mut ModelState,
    ctx: &HookContext,
    args: &[String],
) -> R<String> {
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
