//! The charm binary (Juju runs it as `dispatch`); `dispatch cert-metrics ...` is the
//! certificate exporter (charm-lib `cert_metrics`, see `certs::apply_exporter`); `dispatch
//! region-backup` the scheduled backup (see `backup_schedule`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(charm_lib::cert_metrics::SUBCOMMAND) {
        charm_lib::cert_metrics::run(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("region-backup") {
        maas_region::backup::run_scheduled();
    }
    charm_lib::main(maas_region::handle)
}
