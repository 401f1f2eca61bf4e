//! goal-state: the units and relations the unit's application is heading for.

use super::args::{no_extra, out, parse_args, FMT};
use super::R;
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState};
use serde_json::{json, Map, Value};

pub(super) fn goal_state(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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
