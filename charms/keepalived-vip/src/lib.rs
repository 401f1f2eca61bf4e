//! # keepalived-vip
//!
//! A subordinate charm that keeps one or more virtual IPs on exactly one healthy unit with
//! keepalived (VRRP). Each application runs its own `keepalived-<app>` service with its own
//! `/etc/keepalived/keepalived-<app>.conf`, so two applications (a region VIP and a database
//! VIP) can share a host; see the README for the layout and why.
//!
//! Every event ends in one [`reconcile::reconcile`], which derives everything from the whole
//! model, unless [`teardown::reason`] says this hook takes keepalived away (stop, remove, the
//! unit's own departure, the last principal relation gone).
#![warn(missing_docs)]

pub mod checks;
pub mod claims;
pub mod config;
pub mod cos;
pub mod metrics;
pub mod net;
pub mod paths;
pub mod reconcile;
pub mod relations;
pub mod render;
pub mod state;
pub mod teardown;
pub mod workload;

use charm_lib::{Context, EventKind};

/// The charm's entry point for every hook.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    if let Some(why) = teardown::reason(ctx)? {
        return teardown::run(ctx, why);
    }
    if matches!(ctx.event.kind, EventKind::Install | EventKind::UpgradeCharm) {
        // No Maintenance status here: collect-status would let it outrank the Active status
        // the reconcile below reports.
        workload::install(ctx.machine)?;
    }
    reconcile::reconcile(ctx)
}
