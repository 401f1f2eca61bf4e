//! A new `channel` on initialised regions: one region at a time under the init lock, after
//! the racks, the VIP's holder last; with haproxy, each region drained from every haproxy (and
//! the VIP handed over) before its MAAS stops, and back once it answers again.

use crate::haproxy;
use crate::lock;
use crate::peers::{Drained, LockValue};
use crate::reconcile::{request_lock, update_mine, Cache, Inputs};
use crate::workload;
use charm_lib::snap_channel::SnapChannel;
use charm_lib::{Context, MachineExt, Status};
use std::collections::BTreeMap;

/// What a channel change asks of this initialised region: nothing, a refusal or a wait
/// (a status), or a refresh to the channel.
fn refresh_plan(i: &Inputs, c: &Cache) -> anyhow::Result<Result<Option<String>, Status>> {
    let wanted = i.cfg.channel.clone();
    let Some(installed) = c.stored.channel.clone().filter(|c| *c != wanted) else {
        return Ok(Ok(None));
    };
    let (from, to) = (SnapChannel::parse(&installed), SnapChannel::parse(&wanted));
    if let (Some(from), Some(to)) = (&from, &to) {
        if to.is_downgrade_from(from) {
            return Ok(Err(Status::blocked(format!(
                "config channel: {wanted} is older than the {installed} MAAS runs here, and MAAS cannot go back (its database schema only migrates forward): set channel to {installed} or newer"
            ))));
        }
    }
    // MAAS's upgrade guide (docs/how-to-guides/upgrade-maas.md): "Upgrade rack nodes first,
    // then region nodes". A rack whose MAAS runs an older track than the wanted one goes first.
    let behind: Vec<String> = i
        .racks
        .iter()
        .filter(|r| {
            let rack = r.maas_channel.as_deref().and_then(SnapChannel::parse);
            matches!((rack, &to), (Some(rack), Some(to)) if rack.track_cmp(to) == Some(std::cmp::Ordering::Less))
        })
        .map(|r| format!("{} ({})", r.unit, r.maas_channel.as_deref().unwrap_or_default()))
        .collect();
    if !behind.is_empty() {
        return Ok(Err(Status::waiting(format!(
            "serving MAAS {installed}; {wanted} waits for the racks to refresh first (MAAS upgrades racks, then regions): {}",
            behind.join(", ")
        ))));
    }
    Ok(Ok(Some(wanted)))
}

/// A new `channel` on an initialised region: refreshed one region at a time under the init
/// lock (two regions never restart at once, and each new MAAS runs its migrations alone), after
/// the racks. With haproxy, the holder first has every region's haproxy leave it out and hands
/// the VIP over (`refresh-drain`), and refreshes once every region has acknowledged; once
/// its new MAAS answers it returns to every haproxy and releases the lock. Returns the status of
/// a refresh that waits or is refused; with nothing to refresh, this unit's lock request is
/// closed and any drain it asked for ended.
pub(crate) fn under_lock(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
) -> anyhow::Result<Option<Status>> {
    let wanted = match refresh_plan(i, c)? {
        Ok(Some(wanted)) if i.has_peers => wanted,
        other => {
            // A channel set back mid-drain returns this region to every haproxy.
            let ended = end_drain(ctx, i, c)?;
            request_lock(ctx, i, c, false)?;
            return Ok(other.err().or(ended));
        }
    };
    let installed = c.stored.channel.clone().unwrap_or_default();
    // A region that has started (its drain published) finishes: `all` set mid-refresh halts
    // the refresh after it.
    if c.mine.drain.is_none() {
        let refreshed = i
            .peers
            .iter()
            .filter(|p| p.channel.as_deref() == Some(wanted.as_str()))
            .count();
        let resumed = lock::resumed_after(c.app.resumed.as_ref(), &wanted);
        let pause = i.cfg.pause_after_unit_refresh;
        if lock::paused(pause, refreshed, resumed) {
            request_lock(ctx, i, c, false)?;
            return Ok(Some(Status::blocked(format!(
                "serving MAAS {installed}; the refresh to {wanted} is paused after {refreshed} region(s) (pause-after-unit-refresh={}): check them, then run the resume-refresh action on the leader",
                pause.as_str()
            ))));
        }
        if let Some(s) = vip_holder_last(ctx, i, c, &installed, &wanted)? {
            return Ok(Some(s));
        }
    }
    let token = request_lock(ctx, i, c, true)?;
    let granted = token.filter(|t| lock::holds(c.app.lock.as_ref(), &i.me, *t));
    let Some(token) = granted else {
        if let Some(s) = end_drain(ctx, i, c)? {
            return Ok(Some(s));
        }
        return Ok(Some(Status::waiting(format!(
            "serving MAAS {installed}; waiting for the init lock to refresh to {wanted} (one region at a time)"
        ))));
    };
    if i.cfg.haproxy {
        let value = LockValue::new(&i.me, token);
        if c.mine.drain.as_ref() != Some(&value) {
            update_mine(ctx, c, |m| m.drain = Some(value.clone()))?;
            c.stored.drain_since = Some(unix_now());
            workload::progress(
                ctx,
                &format!("draining this region from every haproxy before refreshing to {wanted}"),
            );
            if let Some(s) = haproxy::apply(ctx, i, c)? {
                return Ok(Some(s));
            }
            // The last region keeps itself, and the VIP with it (`drain_view`).
            let others = i.peers.iter().any(|p| p.address.is_some());
            if let Some(vip) = c.stored.vip.clone().filter(|_| others) {
                workload::wait_vip_gone(ctx, &vip, "refreshing")?;
            }
        }
        let acks: BTreeMap<String, Drained> = i
            .peers
            .iter()
            .map(|p| (p.unit.clone(), p.drained.clone()))
            .collect();
        let missing = lock::unacknowledged(&value, &acks);
        if !missing.is_empty() {
            let now = unix_now();
            let since = *c.stored.drain_since.get_or_insert(now);
            let waited = now.saturating_sub(since);
            if waited < lock::DRAIN_ACK_WAIT.as_secs() {
                return Ok(Some(Status::waiting(format!(
                    "serving MAAS {installed} through the other regions; the refresh to {wanted} waits for {} to leave this region out of their haproxy (or {} s after the drain began)",
                    missing.join(", "),
                    lock::DRAIN_ACK_WAIT.as_secs()
                ))));
            }
            log::warn!(
                "{} did not acknowledge the drain in {waited} s; refreshing all the same (their haproxy retries GETs on another region)",
                missing.join(", ")
            );
        }
    }
    workload::progress(
        ctx,
        &format!("refreshing the maas snap from {installed} to {wanted}"),
    );
    ctx.machine.snap_refresh("maas", &wanted)?;
    c.stored.channel = Some(wanted.clone());
    // In the same hook as the lock's release (Juju commits a hook's relation writes at once):
    // the next region sees both together.
    update_mine(ctx, c, |m| m.channel = Some(wanted.clone()))?;
    log::info!("MAAS refreshed from {installed} to {wanted}");
    // What the new MAAS serves (Temporal's metrics from 3.5) is scraped from now, not from
    // whichever hook comes next.
    crate::cos::publish(ctx, &i.cfg, &c.stored)?;
    // The next region may go, and this one return to every haproxy, once it serves again
    // (regiond answers from its database; the others' health checks still let it in only
    // after two passes).
    if !workload::answers(ctx, false)? {
        log::warn!("MAAS {wanted} does not answer {} 30 s after the refresh; releasing the lock all the same", workload::local_api(false));
    }
    let ended = end_drain(ctx, i, c)?;
    request_lock(ctx, i, c, false)?;
    Ok(ended)
}

/// How long the VIP's holder lets the other regions refresh first: one that never does (its
/// agent gone) must not hold the upgrade back.
pub const VIP_LAST_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The region holding the VIP refreshes after the others: its refresh moves the VIP (its
/// agent ports close, and the drain hands it over first), and a move resets the connections
/// in flight through it. Going last, it moves once per upgrade; in unit order it moved once
/// per region that happened to hold it (keepalived does not take it back: nopreempt). A
/// Waiting status while other regions have yet to refresh, [`VIP_LAST_WAIT`] at most.
fn vip_holder_last(
    ctx: &Context,
    i: &Inputs,
    c: &mut Cache,
    installed: &str,
    wanted: &str,
) -> anyhow::Result<Option<Status>> {
    let Some(vip) = c.stored.vip.clone().filter(|_| i.cfg.haproxy) else {
        return Ok(None);
    };
    let first: Vec<String> = i
        .peers
        .iter()
        .filter(|p| p.address.is_some() && p.channel.as_deref() != Some(wanted))
        .map(|p| p.unit.clone())
        .collect();
    if first.is_empty() || !workload::holds(ctx, &vip)? {
        return Ok(None);
    }
    let now = unix_now();
    let since = *c.stored.vip_last_since.get_or_insert(now);
    if now.saturating_sub(since) >= VIP_LAST_WAIT.as_secs() {
        log::warn!(
            "{} did not refresh within {VIP_LAST_WAIT:?}; refreshing this region, which holds the VIP, all the same",
            first.join(", ")
        );
        return Ok(None);
    }
    request_lock(ctx, i, c, false)?;
    Ok(Some(Status::waiting(format!(
        "serving MAAS {installed} and holding the VIP {vip}: refreshes to {wanted} after {} (the VIP then moves once; or {} s after this wait began)",
        first.join(", "),
        VIP_LAST_WAIT.as_secs()
    ))))
}

/// Ends this unit's drain request, if it made one: back into its own haproxy (with the VIP's
/// check listener) and, through the peer data, every other region's.
pub(crate) fn end_drain(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
) -> anyhow::Result<Option<Status>> {
    c.stored.drain_since = None;
    c.stored.vip_last_since = None;
    if c.mine.drain.is_none() {
        return Ok(None);
    }
    update_mine(ctx, c, |m| m.drain = None)?;
    haproxy::apply(ctx, i, c)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
