//! The charm binary (Juju's `dispatch`); `dispatch metrics <app> <port> <vip>...` is the
//! VIP-state exporter service the charm installs (see `metrics`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("metrics") {
        keepalived_vip::metrics::run(&args[2..]);
    }
    charm_lib::main(keepalived_vip::handle)
}
