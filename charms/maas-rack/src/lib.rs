//! # maas-rack
//!
//! A Juju machine charm for a MAAS rack controller. It installs MAAS (snap or deb), registers
//! the rack with the region named by the `rpc` relation (interface `maas-rpc`, usually the
//! regions' VIP), follows URL changes and secret rotations, stops the rack when the relation
//! goes, and publishes its hostname and MAAS system id so the region can make it a DHCP
//! primary or secondary.
//!
//! Every event runs the same [`reconcile::reconcile`]: the charm has no actions, and no event
//! needs handling of its own beyond what reconcile derives from the model.

pub mod config;
pub mod maas;
pub mod reconcile;
pub mod registration;
pub mod relations;
pub mod workload;

/// The charm's handler: one holistic pass for every hook.
pub fn handle(ctx: &mut charm_lib::Context) -> anyhow::Result<()> {
    reconcile::reconcile(ctx)
}
