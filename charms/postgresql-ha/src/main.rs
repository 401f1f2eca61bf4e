//! The charm's `dispatch` binary; `dispatch observe <unit> <charm-dir>` is the topology
//! observer service the charm installs (see `observer`); `dispatch backup-metrics ...` the
//! backup-age exporter (see `backup_metrics`); `dispatch cert-metrics ...` the certificate
//! exporter (charm-lib `cert_metrics`); `dispatch patroni-metrics <port>` Patroni's /metrics
//! relayed to loopback http (see `patroni_metrics`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("observe") {
        postgresql_ha::observer::run(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("backup-metrics") {
        postgresql_ha::backup_metrics::run(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(postgresql_ha::patroni_metrics::SUBCOMMAND) {
        postgresql_ha::patroni_metrics::run(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(charm_lib::cert_metrics::SUBCOMMAND) {
        charm_lib::cert_metrics::run(&args[2..]);
    }
    charm_lib::main(postgresql_ha::handle)
}
