//! # maas-region: MAAS region controllers that scale out behind haproxy and a VIP
//!
//! [`handle`] reads as the other charms do: actions ([`actions`]), then the leaving
//! ([`teardown`]: drained, then stopped in `remove`), then one [`reconcile::reconcile`] pass.
//! Modules: [`config`] (validation), [`state`] (charm state), [`relations`] (relation data),
//! [`render`] (pure rendering), [`maas`] (MAAS's files and commands), [`workload`] (host work:
//! install, init, regiond, probes), [`haproxy`] (derived, checked, applied), [`refresh`] (a new
//! channel, one region at a time), [`lock`] (the init lock), [`peers`] (the peer databags, typed), [`certs`] (MAAS's HTTPS
//! certificate), [`internal_admin`] (the charm's own MAAS admin), [`cos`] (cos-agent),
//! [`backup`], [`backup_actions`], [`backup_schedule`] (backups).
#![warn(missing_docs)]

pub mod actions;
pub mod backup;
pub mod backup_actions;
pub mod backup_schedule;
pub mod certs;
pub mod config;
pub mod cos;
pub mod haproxy;
pub mod internal_admin;
pub mod lock;
pub mod maas;
pub mod peers;
pub mod reconcile;
pub mod refresh;
pub mod relations;
pub mod render;
pub mod state;
pub mod teardown;
pub mod workload;

use charm_lib::{Context, EventKind};

/// The charm's handler: actions by name, everything else through one reconcile pass.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    if let EventKind::Action { name, .. } = &ctx.event.kind {
        let name = name.clone();
        return actions::run(ctx, &name);
    }
    if let Some(why) = teardown::reason(ctx)? {
        return teardown::run(ctx, why);
    }
    reconcile::reconcile(ctx)
}
