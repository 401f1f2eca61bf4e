//! Actions: read-only views of the rack for the operator.

use crate::maas::Flavor;
use crate::state::Record;
use crate::workload;
use anyhow::Result;
use charm_lib::Context;
use serde_json::json;

/// Runs the action `name` (one of actions.yaml).
pub fn run(ctx: &mut Context, name: &str) -> Result<()> {
    match name {
        "get-rack-info" => rack_info(ctx),
        other => anyhow::bail!("unknown action {other:?}: this charm has get-rack-info"),
    }
}

fn rack_info(ctx: &mut Context) -> Result<()> {
    let record = Record::load(&ctx.tools())?;
    let (Some(url), Some(flavor)) = (
        record.url.clone(),
        record.installed.as_deref().and_then(Flavor::parse),
    ) else {
        return ctx.action_fail(
            "this unit has not registered a rack controller: see `juju status` for why",
        );
    };
    let hostname = workload::hostname(ctx.machine)?;
    let seen = workload::observe(ctx.machine, flavor)?;
    let state = |s: Option<bool>| match s {
        Some(true) => "running",
        Some(false) => "stopped",
        None => "unknown",
    };
    ctx.action_set(&json!({
        "hostname": hostname,
        "system-id": seen.system_id.clone().unwrap_or_else(|| "not assigned yet".into()),
        "registered-url": url,
        "install-method": flavor.name(),
        "rackd": state(seen.rackd),
        "dhcpd": state(seen.dhcpd),
        "dhcp-vlans": if seen.vlans.is_empty() { "none known".to_string() } else { seen.vlans.join(",") },
    }))
}
