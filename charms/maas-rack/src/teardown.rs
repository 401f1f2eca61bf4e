//! A rack without a region: the one place that takes the rack controller down, when its rpc
//! relation is gone (`-broken`) or the unit is going away (`stop`/`remove`). Every hook still
//! ends in one reconcile; this is its branch for "no region to serve".

use crate::maas::Flavor;
use crate::reconcile::NEEDS_RELATION;
use crate::relations;
use crate::state::Record;
use crate::workload;
use anyhow::Result;
use charm_lib::{Context, EventKind, RelationPhase, Status};

/// The rpc relation this unit is in, unless it is going away: in its own `-broken` hook, and
/// in `stop`/`remove` (the unit is being removed, so the rack must stop).
pub fn rpc_relation<'m, 'r>(ctx: &'m Context<'r>) -> Result<Option<charm_lib::Relation<'m, 'r>>> {
    if matches!(ctx.event.kind, EventKind::Stop | EventKind::Remove) {
        return Ok(None);
    }
    let broken = match &ctx.event.kind {
        EventKind::Relation(r) if r.phase == RelationPhase::Broken => Some(r.relation.clone()),
        _ => None,
    };
    Ok(ctx
        .model
        .relations(relations::ENDPOINT)?
        .into_iter()
        .find(|r| Some(r.id()) != broken.as_ref()))
}

/// Stops and deregisters the rack this unit registered (unless a region on this host owns
/// MAAS), closes its ports, and asks for a relation.
pub fn without_region(ctx: &mut Context, record: &mut Record, flavor: Flavor) -> Result<()> {
    if record.is_registered() {
        // A region that took this host over owns the snap and its services: never stop them.
        if !workload::local_maas(ctx.machine)?.has_region() {
            let registered_as = record
                .installed
                .as_deref()
                .and_then(Flavor::parse)
                .unwrap_or(flavor);
            log::info!(
                "no rpc relation: stopping the rack controller and removing its shared secret"
            );
            workload::deregister(ctx.machine, registered_as)?;
        }
        record.clear_registration();
    }
    ctx.model.set_ports(&[])?;
    ctx.status(Status::blocked(NEEDS_RELATION));
    Ok(())
}
