//! resource-get: the path of an application resource's file.

use super::args::{no_extra, parse_args};
use super::{fail, ToolError, R};
use crate::hookctx::HookContext;
use crate::state::{app_of, ModelState};

pub(super) fn resource_get(st: &ModelState, ctx: &HookContext, args: &[String]) -> R<String> {
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
