//! # postgresql-ha
//!
//! PostgreSQL under Patroni 4 with etcd on every unit: synchronous replication, automatic
//! failover, pg_rewind; clients over `db` (pgsql) and `database` (postgresql_client); one
//! writable address through the `vip` subordinate.
//!
//! Every hook ends in [`reconcile::reconcile`], then [`cos::publish`]; actions are in
//! [`actions`]; a unit's leaving is [`teardown`].

#![warn(missing_docs)]

pub mod actions;
pub mod backup;
pub mod backup_actions;
pub mod backup_metrics;
pub mod backup_schedule;
pub mod certs;
pub mod clients;
pub mod config;
pub mod cos;
pub mod data_interfaces_v1;
pub mod etcd;
pub mod failover;
pub mod install;
pub mod membership;
pub mod observer;
pub mod paths;
pub mod patroni;
pub mod patroni_metrics;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod secrets;
pub mod serve;
pub mod site_cert;
pub mod sql;
pub mod teardown;
pub mod upgrade;

use charm_lib::{Context, EventKind};

/// The charm's handler: actions by name; a unit's leaving through [`teardown`]; every other
/// hook one reconcile, then the cos-agent data.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    if let EventKind::Action { name, .. } = &ctx.event.kind {
        let name = name.clone();
        return actions::run(ctx, &name);
    }
    if teardown::is_leaving(ctx) {
        return teardown::leave(ctx);
    }
    if ctx.event.kind == EventKind::Remove {
        // `stop` already took everything away.
        return Ok(());
    }
    reconcile::reconcile(ctx)?;
    cos::publish(ctx)
}
