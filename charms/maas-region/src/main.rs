//! The charm binary (Juju runs it as `dispatch`).
fn main() {
    charm_lib::main(maas_region::handle)
}
