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

use charm_lib::charm_state::Yes;
use charm_lib::{Context, EventKind, RelationPhase, Status};
use serde::{Deserialize, Serialize};

/// What this unit keeps in charm state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// `leaving`: the unit is being removed and has stopped its keepalived.
    #[serde(default)]
    pub(crate) leaving: Yes,
    /// `unicast-peers`: the last non-empty list of peer addresses this unit advertised to
    /// (see `reconcile::unicast_peers`).
    #[serde(default, rename = "unicast-peers")]
    pub(crate) unicast_peers: Option<Vec<std::net::IpAddr>>,
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

/// The charm's entry point for every hook.
pub fn handle(ctx: &mut Context) -> anyhow::Result<()> {
    let layout = layout::Layout::new(ctx.model.app_name());
    if !matches!(ctx.event.kind, EventKind::Stop | EventKind::Remove) && leaving(ctx)? {
        host::teardown(ctx.machine, &layout, ctx.model.unit_name())?;
        ctx.status(Status::maintenance(format!(
            "{} stopped: this unit is leaving",
            layout.service()
        )));
        return Ok(());
    }
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
