//! Taking this application's keepalived off the unit: the one place that decides when (the
//! unit stops or is removed, leaves the peer relation, or loses its last principal) and does it.

use crate::claims;
use crate::paths::{Paths, CLAIMS};
use crate::relations;
use crate::state::Stored;
use crate::workload;
use charm_lib::charm_state::Yes;
use charm_lib::{Context, EventKind, Machine, MachineExt, RelationPhase, Status};
use std::path::Path;

/// Why this hook takes keepalived away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `stop` or `remove`: the unit is going away.
    Stop,
    /// The unit departs its own relations (see [`leaving`]).
    Leaving,
    /// The last principal relation (`juju-info` or `vip`) is broken.
    NoPrincipal,
}

/// Why this hook takes keepalived away, if it does. Records the departure in charm state, so
/// every later hook of the dying unit keeps keepalived stopped.
pub fn reason(ctx: &Context) -> anyhow::Result<Option<Why>> {
    if matches!(ctx.event.kind, EventKind::Stop | EventKind::Remove) {
        return Ok(Some(Why::Stop));
    }
    if leaving(ctx)? {
        return Ok(Some(Why::Leaving));
    }
    if let EventKind::Relation(r) = &ctx.event.kind {
        if r.phase == RelationPhase::Broken
            && matches!(
                r.relation.endpoint.as_str(),
                relations::JUJU_INFO | relations::VIP
            )
            && relations::principal_relations(ctx)? == 0
        {
            return Ok(Some(Why::NoPrincipal));
        }
    }
    Ok(None)
}

/// Takes keepalived away and says why in the status (a stopping unit reports nothing).
pub fn run(ctx: &mut Context, why: Why) -> anyhow::Result<()> {
    let paths = Paths::new(ctx.model.app_name());
    teardown(ctx.machine, &paths, ctx.model.unit_name())?;
    let because = match why {
        Why::Stop => return Ok(()),
        Why::Leaving => "this unit is leaving",
        Why::NoPrincipal => "no principal relation left",
    };
    ctx.status(Status::maintenance(format!(
        "{} stopped: {because}",
        paths.service()
    )));
    Ok(())
}

/// Whether this unit is being removed: Juju runs a dying unit's relation-departed hooks with
/// itself as JUJU_DEPARTING_UNIT (worker/uniter/relation/resolver.go: the departee is the local
/// unit once it or its application is not alive), and only after them does the unit leave the
/// relation's scope, which is when its peers run their own -departed hooks and drop it from
/// their unicast peers. Its VIP must move before that: a holder its peers no longer list is not
/// heard, and a peer takes over only after 3 advert intervals of silence. Stopping keepalived
/// here sends the priority-0 advert while the peers still listen to it, so a backup takes
/// the VIP at once; reconciling instead would drop the departing peers from this unit's own
/// list, and the advert would reach nobody.
fn leaving(ctx: &Context) -> anyhow::Result<bool> {
    let me = ctx.model.unit_name();
    let departing_me = ctx.event.relation().is_some_and(|r| {
        r.phase == RelationPhase::Departed && r.departing_unit.as_deref() == Some(me)
    });
    if departing_me {
        let before: Stored = ctx.model.state()?;
        let after = Stored {
            leaving: Yes(true),
            ..before.clone()
        };
        ctx.model.save_state(&before, &after)?;
        return Ok(true);
    }
    Ok(ctx.model.state::<Stored>()?.leaving.0)
}

/// Stops and removes this application's keepalived, its files and its claim. Another
/// application's keepalived on this host is not touched.
pub fn teardown(m: &dyn Machine, l: &Paths, unit: &str) -> anyhow::Result<()> {
    let svc = l.service();
    let unit_file = l.unit_file();
    if m.file_info(Path::new(&unit_file))?.is_some() || m.service_is_active(&svc)? {
        m.retire_service(&svc)?;
        log::info!("stopped {svc}");
    }
    let metrics = l.metrics_service();
    if m.file_info(Path::new(&l.metrics_unit_file()))?.is_some() || m.service_is_active(&metrics)? {
        m.retire_service(&metrics)?;
    }
    let removed_metrics = m.remove_file(Path::new(&l.metrics_unit_file()))?;
    if m.remove_file(Path::new(&unit_file))? || removed_metrics {
        m.daemon_reload()?;
    }
    for p in [l.conf(), l.conf_candidate(), l.sysctl(), l.notify_script()] {
        m.remove_file(Path::new(&p))?;
    }
    let mut all = claims::parse(m.read_to_string(Path::new(CLAIMS))?.as_deref());
    if all.remove(unit).is_some() {
        workload::write_claims(m, &all)?;
    }
    Ok(())
}
