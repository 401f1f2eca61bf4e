//! # postgresql-ha
//!
//! PostgreSQL under Patroni 4 with etcd on every unit: synchronous replication, automatic
//! failover, pg_rewind; clients over `db` (pgsql) and `database` (postgresql_client); one
//! writable address through the `vip` subordinate.
//!
//! Every hook ends in [`reconcile::reconcile`], then [`cos::publish`]; actions are in
//! [`actions`].

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
pub mod reconcile;
pub mod render;
pub mod report;
pub mod secrets;
pub mod serve;
pub mod site_cert;
pub mod sql;
pub mod upgrade;

use charm_lib::{Context, EventKind, RelationPhase};

/// The charm's handler.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    match &ctx.event.kind {
        EventKind::Action { name, .. } => {
            let name = name.clone();
            actions::run(ctx, &name)
        }
        EventKind::Relation(r)
            if r.phase == RelationPhase::Departed
                && r.relation.endpoint == reconcile::PEER
                && r.departing_unit.as_deref() == Some(ctx.model.unit_name()) =>
        {
            reconcile::leave(ctx)
        }
        EventKind::Stop => reconcile::leave(ctx),
        EventKind::Remove => Ok(()),
        _ => {
            reconcile::reconcile(ctx)?;
            cos::publish(ctx)
        }
    }
}
