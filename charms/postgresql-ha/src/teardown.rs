//! A unit leaving the application: the one place that decides when (it departs the peer
//! relation, or stops) and takes its services away in an order that keeps the cluster whole.

use crate::{etcd, paths};
use charm_lib::{Context, EventKind, FileOptions, MachineExt, RelationPhase};
use std::path::Path;

/// Whether this hook is this unit's leaving: Juju runs a dying unit's `-departed` hooks with
/// itself as JUJU_DEPARTING_UNIT (worker/uniter/relation/resolver.go), before `stop`.
pub fn is_leaving(ctx: &Context) -> bool {
    match &ctx.event.kind {
        EventKind::Relation(r) => {
            r.phase == RelationPhase::Departed
                && r.relation.endpoint == crate::membership::PEER
                && r.departing_unit.as_deref() == Some(ctx.model.unit_name())
        }
        EventKind::Stop => true,
        _ => false,
    }
}

/// This unit leaves the application: hand over the primary role, leave etcd cleanly while the
/// cluster still has quorum, stop both services.
pub fn leave(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.machine;
    m.write_file(
        Path::new(paths::DEPARTED),
        format!("{}\n", ctx.model.unit_name()).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    m.retire_service(paths::OBSERVER_SERVICE)?;
    // A departed unit takes no more scheduled backups and reports none.
    m.retire_service(crate::backup_schedule::TIMER)?;
    m.retire_service(crate::backup_metrics::SERVICE)?;
    charm_lib::cert_metrics::retire(m, &paths::CERT_METRICS)?;
    crate::patroni_metrics::retire(m)?;
    // Patroni hands the leader key over on a clean stop; a synchronous standby takes it.
    m.retire_service(paths::PATRONI_SERVICE)?;
    if m.service_is_active(paths::ETCD_SERVICE)? {
        let me = paths::member_name(ctx.model.unit_name());
        match etcd::members(m) {
            Ok(list) => {
                if let Some(mem) = list.iter().find(|x| x.name == me) {
                    if list.len() > 1 {
                        if let Err(e) = etcd::remove(m, mem) {
                            log::warn!(
                                "could not remove this unit from etcd (the leader will): {e:#}"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                log::warn!("could not list etcd members (the leader will remove this unit): {e:#}")
            }
        }
    }
    m.retire_service(paths::ETCD_SERVICE)?;
    Ok(())
}
