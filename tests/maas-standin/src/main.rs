//! `maas-standin`: one binary, many names (MAAS stand-in for tests; not MAAS).
//! Dispatches on `argv[0]` (`maas`, `maas-region`, `maas-rack`, `regiond`, `rackd`, `named`,
//! `apache2`, `pebble`) or, when called as `maas-standin`, on its first argument, which may
//! also be `catalog` or `postinst`.

use maas_standin::paths::Flavor;
use maas_standin::{apache2, catalog, cli, named, pebble, rackd, regiond};

fn flavor(args: &[String], default: Flavor) -> Result<Flavor, i32> {
    let p = maas_standin::argparse::Parser::new("maas-standin daemon").opts(&[
        maas_standin::argparse::Opt::value("--flavor", "snap or deb"),
    ]);
    let a = cli::parse(&p, args)?;
    match a.get("--flavor") {
        None => Ok(default),
        Some(f) => Flavor::parse(f)
            .ok_or_else(|| cli::report(p.invalid_choice("--flavor", f, &["snap", "deb"]))),
    }
}

fn daemon(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => cli::fail(format!("{e:#}")),
    }
}

fn dispatch(name: &str, args: &[String]) -> i32 {
    match name {
        "maas" => cli::maas::main(args),
        "maas-region" => cli::region::main(args),
        "maas-rack" => cli::rack::main(args),
        "regiond" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(regiond::run(f)),
            Err(code) => code,
        },
        "rackd" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(rackd::run(f)),
            Err(code) => code,
        },
        "dhcpd" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(maas_standin::dhcpd::run(f)),
            Err(code) => code,
        },
        "maas-agent" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(maas_standin::agent::run(f)),
            Err(code) => code,
        },
        "maas-http" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(maas_standin::nginx::run(f)),
            Err(code) => code,
        },
        "temporal" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(maas_standin::temporal::run(f)),
            Err(code) => code,
        },
        "apiserver" => match flavor(args, Flavor::Deb) {
            Ok(f) => daemon(maas_standin::apiserver::run(f)),
            Err(code) => code,
        },
        // bind9.service passes named's own options; they mean nothing here.
        "named" => daemon(named::run()),
        "apache2" => daemon(apache2::run()),
        "pebble" => daemon(pebble::run()),
        "catalog" => catalog::main(args),
        "postinst" => catalog::postinst(args),
        other => {
            eprintln!(
                "maas-standin (a test stand-in for MAAS): unknown command {other:?}\n\
                 usage: maas-standin {{maas|maas-region|maas-rack|regiond|rackd|maas-agent|dhcpd|maas-http|temporal|apiserver|named|apache2|pebble|catalog|postinst}} ARGS..."
            );
            2
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let code = if name == "maas-standin" || name.starts_with("maas-standin") {
        match argv.get(1) {
            Some(sub) => dispatch(sub, &argv[2..]),
            None => dispatch("", &[]),
        }
    } else {
        dispatch(&name, &argv[1..])
    };
    std::process::exit(code);
}
