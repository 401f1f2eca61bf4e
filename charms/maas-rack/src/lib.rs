//! # maas-rack
//!
//! A Juju machine charm for a MAAS rack controller. It installs MAAS (snap or deb), registers
//! the rack with the region named by the `rpc` relation (interface `maas-rpc`, usually the
//! regions' VIP), follows URL changes and secret rotations, stops the rack when the relation
//! goes, and publishes its hostname and MAAS system id so the region can make it a DHCP
//! primary or secondary.
//!
//! Every hook runs the same [`reconcile::reconcile`]: no event needs handling of its own beyond
//! what reconcile derives from the model. The one action, `get-rack-info`, only reads.

pub mod actions;
pub mod config;
pub mod cos;
pub mod maas;
pub mod reconcile;
pub mod relations;
pub mod state;
pub mod teardown;
pub mod workload;

/// The charm's handler: one holistic pass for every hook; actions apart.
pub fn handle(ctx: &mut charm_lib::Context) -> anyhow::Result<()> {
    if let charm_lib::EventKind::Action { name, .. } = &ctx.event.kind {
        let name = name.clone();
        return actions::run(ctx, &name);
    }
    reconcile::reconcile(ctx)
}
