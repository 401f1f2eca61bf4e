//! config-get.

use super::args::{no_extra, out, parse_args, FMT};
use super::{usage, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState};
use serde_json::{Map, Value};

pub(super) fn config_get(st: &ModelState, ctx: &mut HookContext, args: &[String]) -> R<String> {
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
    if let Some(k) = p.pos.first().filter(|_| p.has("all")) {
        return usage(format!("cannot use argument --all together with key {k:?}"));
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
