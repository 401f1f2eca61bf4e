//! The charm's `dispatch` binary.
fn main() {
    charm_lib::main(maas_rack::handle)
}
