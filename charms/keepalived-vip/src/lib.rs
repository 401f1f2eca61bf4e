//! # keepalived-vip
//!
//! A subordinate charm that keeps one or more virtual IPs on exactly one healthy unit with
//! keepalived (VRRP). Each application runs its own `keepalived-<app>` service with its own
//! `/etc/keepalived/keepalived-<app>.conf`, so two applications (a region VIP and a database
//! VIP) can share a host; see the README for the layout and why.
//!
//! Every event but `stop`/`remove` (and the loss of the last principal relation) ends in one
//! [`reconcile::reconcile`], which derives everything from the whole model.
#![warn(missing_docs)]

pub mod checks;
pub mod claims;
pub mod config;
pub mod cos;
pub mod host;
pub mod layout;
pub mod metrics;
pub mod net;
pub mod reconcile;
pub mod relations;
pub mod render;

use charm_lib::{Context, EventKind, RelationPhase, Status};

/// The charm's entry point for every hook.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    let layout = layout::Layout::new(ctx.model.app_name());
    match &ctx.event.kind {
        EventKind::Stop | EventKind::Remove => {
            return host::teardown(ctx.machine, &layout, ctx.model.unit_name());
        }
        EventKind::Install | EventKind::UpgradeCharm => {
            // No Maintenance status here: collect-status would let it outrank the Active status
            // the reconcile below reports.
            host::install(ctx.machine)?;
        }
        EventKind::Relation(r)
            if r.phase == RelationPhase::Broken
                && matches!(
                    r.relation.endpoint.as_str(),
                    relations::JUJU_INFO | relations::VIP
                )
                && relations::principal_relations(ctx)? == 0 =>
        {
            host::teardown(ctx.machine, &layout, ctx.model.unit_name())?;
            ctx.status(Status::maintenance(format!(
                "{} stopped: no principal relation left",
                layout.service()
            )));
            return Ok(());
        }
        _ => {}
    }
    reconcile::reconcile(ctx)
}
