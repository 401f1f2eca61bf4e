//! The charm binary (Juju's `dispatch`).
fn main() {
    charm_lib::main(keepalived_vip::handle)
}
