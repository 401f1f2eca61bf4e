//! The benchmark's charm: the same work as `ops-charm/src/charm.py`, on charm-lib.
//! config-changed and relation-changed read config and relation data, write a file, set status.

use charm_lib::{Context, EventKind, Status};
use std::path::Path;

#[derive(serde::Deserialize)]
struct Config {
    port: u16,
    name: String,
}

fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    let cfg: Config = ctx.model.config()?;
    let mut text = format!("name={}\nport={}\n", cfg.name, cfg.port);
    if let (Some(rel), EventKind::Relation(r)) =
        (ctx.model.event_relation(&ctx.event)?, &ctx.event.kind)
    {
        if let Some(unit) = &r.remote_unit {
            for (k, v) in rel.unit_data(unit)? {
                text.push_str(&format!("{k}={v}\n"));
            }
        }
    }
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "/tmp/bench-charm.conf".into());
    ctx.machine.write_file(
        Path::new(&out),
        text.as_bytes(),
        &charm_lib::FileOptions::new(&whoami(), &whoami(), 0o644),
    )?;
    ctx.status(Status::active(format!("{} on {}", cfg.name, cfg.port)));
    Ok(())
}

/// The benchmark runs as whoever runs it; the file is owned by that user.
fn whoami() -> String {
    std::env::var("BENCH_USER").unwrap_or_else(|_| "root".into())
}

fn main() {
    charm_lib::main(handle)
}
