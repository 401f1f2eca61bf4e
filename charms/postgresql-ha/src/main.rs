//! The charm's `dispatch` binary.
fn main() {
    charm_lib::main(postgresql_ha::handle)
}
