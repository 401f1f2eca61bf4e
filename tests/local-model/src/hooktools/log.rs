//! juju-log: lines into the unit's log.

use super::args::{parse_args, FMT};
use super::{usage, R};
use crate::hookctx::HookContext;
use std::io::Write;

pub(super) fn juju_log(ctx: &HookContext, args: &[String]) -> R<String> {
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
