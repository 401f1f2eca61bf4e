//! A region leaving: the one place that decides when (its own departure from a relation,
//! `stop`, `remove`) and does it. It drains first (its haproxy leaves itself out and closes
//! the VIP's check listener, and the VIP moves), changes nothing else while the unit dies, and
//! stops MAAS and haproxy in `remove`.

use crate::config::InstallMethod;
use crate::haproxy;
use crate::maas;
use crate::relations;
use crate::state::{self, Stored};
use crate::workload;
use charm_lib::charm_state::Yes;
use charm_lib::{Cmd, Context, EventKind, MachineExt, Status};
use std::path::Path;

/// Why this hook takes the region away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The unit is being removed and this is not yet `remove`: drain, change nothing else.
    Leaving,
    /// `remove`: drained (if no earlier hook did), then MAAS and haproxy stop.
    Remove,
}

/// Why this hook takes the region away, if it does.
pub fn reason(ctx: &Context) -> anyhow::Result<Option<Why>> {
    if matches!(ctx.event.kind, EventKind::Remove) {
        return Ok(Some(Why::Remove));
    }
    Ok(is_leaving(ctx)?.then_some(Why::Leaving))
}

/// Does what [`reason`] decided.
pub fn run(ctx: &mut Context, why: Why) -> anyhow::Result<()> {
    match why {
        Why::Leaving => leave_hook(ctx),
        Why::Remove => remove(ctx),
    }
}

/// Whether this unit is being removed: Juju runs a dying unit's relation-departed hooks
/// with itself as JUJU_DEPARTING_UNIT (worker/uniter/relation/resolver.go: the departee is
/// the local unit once it or its application is not alive), then its -broken hooks, then stop
/// and remove (every relation broken before stop), and a leaving unit stays leaving (the
/// charm state says so in the -broken hooks after).
fn is_leaving(ctx: &Context) -> anyhow::Result<bool> {
    if matches!(ctx.event.kind, EventKind::Stop) {
        return Ok(true);
    }
    let me = ctx.model.unit_name();
    if ctx
        .event
        .relation()
        .and_then(|r| r.departing_unit.as_deref())
        .is_some_and(|d| d == me)
    {
        return Ok(true);
    }
    Ok(matches!(state::load(ctx)?, Ok(s) if s.leaving.0))
}

/// A hook of a unit being removed: drain ([`leave`]) and change nothing else, so MAAS goes on
/// answering the other regions' haproxy until the remove hook; those drop this region as
/// it departs from them.
fn leave_hook(ctx: &mut Context) -> anyhow::Result<()> {
    let before = match state::load(ctx)? {
        Ok(s) => s,
        Err(status) => {
            ctx.status(status);
            return Ok(());
        }
    };
    let mut stored = before.clone();
    if let Some(s) = leave(ctx, &mut stored)? {
        ctx.status(s);
    } else {
        ctx.status(Status::maintenance(
            "leaving: drained from haproxy, the VIP handed over",
        ));
    }
    ctx.model.save_state(&before, &stored)?;
    Ok(())
}

/// Drains this region once: its haproxy goes on serving port 80 over the other regions it
/// balanced (never itself), without the listener the VIP's check connects to; then waits
/// (bounded) until the VIP has left this host. From then on clients reach another region's
/// haproxy, and stopping MAAS and haproxy here drops no request. A second call changes
/// nothing.
fn leave(ctx: &Context, stored: &mut Stored) -> anyhow::Result<Option<Status>> {
    if stored.leaving.0 {
        return Ok(None);
    }
    if let Some(v) = relations::vip(&ctx.model)? {
        stored.vip = Some(v);
    }
    if stored.haproxy.0 {
        if let Some(live) = ctx.machine.read_to_string(Path::new(haproxy::CFG))? {
            let (text, others) = haproxy::leaving(&live, ctx.model.unit_name());
            if let Some(s) = haproxy::write_checked(ctx, &text)? {
                return Ok(Some(s));
            }
            log::info!(
                "leaving: haproxy drained to {} region(s), the VIP's check now fails here",
                others
            );
        }
    }
    if let Some(vip) = stored.vip.clone() {
        workload::wait_vip_gone(ctx, &vip, "leaving")?;
    }
    stored.leaving = Yes(true);
    Ok(None)
}

/// The unit is going away (the machine may stay, e.g. a manual machine): a region that left
/// must not keep serving or balancing. Drained first if no earlier hook did ([`leave`]).
fn remove(ctx: &mut Context) -> anyhow::Result<()> {
    let mut stored = match state::load(ctx)? {
        Ok(s) => s,
        Err(status) => {
            // What was installed is unknown: nothing is stopped blindly.
            log::error!("{}", status.message);
            ctx.status(status);
            return Ok(());
        }
    };
    if let Some(s) = leave(ctx, &mut stored)? {
        // A refused drain configuration: stopping anyway is still better than serving on.
        log::warn!("leaving: {}", s.message);
    }
    match stored.method {
        Some(InstallMethod::Snap) => {
            ctx.machine
                .run(&Cmd::new("snap", ["stop", "--disable", "maas"]))?;
        }
        Some(InstallMethod::Deb) => ctx.machine.retire_service(maas::DEB_REGIOND)?,
        None => {}
    }
    if stored.haproxy.0 {
        ctx.machine.retire_service("haproxy")?;
    }
    charm_lib::cert_metrics::retire(ctx.machine, &crate::certs::CERT_METRICS)?;
    crate::backup::retire(ctx)?;
    Ok(())
}
