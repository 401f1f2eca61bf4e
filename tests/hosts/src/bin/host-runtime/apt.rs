//! `apt-get` / `apt` inside a host: install from the catalog or accept a Debian package the
//! machine has; fail like apt (exit 100) for anything else.

use crate::catalog;

pub fn main(argv: &[String], is_apt: bool) -> i32 {
    if is_apt {
        eprintln!(
            "\nWARNING: apt does not have a stable CLI interface. Use with caution in scripts.\n"
        );
    }
    let mut pos = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "-t" | "-c" | "--option" | "--target-release" | "--config-file" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            _ => pos.push(a.clone()),
        }
    }
    let Some((cmd, pkgs)) = pos.split_first() else {
        eprintln!(
            "E: No operation given (the local model supports update, install, remove, purge)"
        );
        return 100;
    };
    match cmd.as_str() {
        "update" => {
            println!("Reading package lists... Done");
            0
        }
        "install" | "reinstall" => install(pkgs),
        "remove" | "purge" => remove(pkgs),
        "upgrade" | "dist-upgrade" | "full-upgrade" | "autoremove" | "clean" | "autoclean"
        | "check" => {
            println!("Reading package lists... Done\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.");
            0
        }
        other => {
            eprintln!("E: Invalid operation {other}");
            100
        }
    }
}

/// `pkg=1.2`, `pkg:amd64`, `pkg/jammy` → `pkg`.
fn bare(p: &str) -> String {
    p.split(['=', ':', '/']).next().unwrap_or(p).to_string()
}

enum Source {
    Catalog(Box<catalog::Entry>),
    Debian,
}

fn install(pkgs: &[String]) -> i32 {
    println!("Reading package lists...\nBuilding dependency tree...\nReading state information...");
    let mut plan = Vec::new();
    for p in pkgs {
        let name = bare(p);
        let src = match catalog::lookup_kind(&name, "deb") {
            Some(Ok(e)) => Source::Catalog(Box::new(e)),
            Some(Err(e)) => {
                eprintln!("E: {e}");
                return 100;
            }
            None if catalog::debian_installed(&name) => Source::Debian,
            None => {
                eprintln!("E: Unable to locate package {name}");
                return 100;
            }
        };
        plan.push((name, src));
    }
    let mut newly = 0;
    for (name, src) in plan {
        if let Some(r) = catalog::record(&name) {
            println!("{name} is already the newest version ({}).", r.version);
            continue;
        }
        println!("Setting up {name} ...");
        let res = match &src {
            Source::Catalog(e) => catalog::install_entry(e, "deb", None),
            Source::Debian => catalog::install_debian(&name),
        };
        match res.and_then(|r| catalog::save(&r)) {
            Ok(()) => newly += 1,
            Err(e) => {
                eprintln!("{e}\ndpkg: error processing package {name} (--configure):\n installed {name} package post-installation script subprocess returned error exit status 1\nE: Sub-process /usr/bin/dpkg returned an error code (1)");
                return 100;
            }
        }
    }
    println!("0 upgraded, {newly} newly installed, 0 to remove and 0 not upgraded.");
    0
}

fn remove(pkgs: &[String]) -> i32 {
    println!("Reading package lists...\nBuilding dependency tree...\nReading state information...");
    let mut n = 0;
    for p in pkgs {
        let name = bare(p);
        match catalog::record(&name) {
            Some(r) => {
                println!("Removing {name} ...");
                if let Err(e) = catalog::uninstall(&r) {
                    eprintln!("E: {e}");
                    return 100;
                }
                n += 1;
            }
            None if catalog::lookup_kind(&name, "deb").is_some()
                || catalog::debian_installed(&name) =>
            {
                println!("Package '{name}' is not installed, so not removed");
            }
            None => {
                eprintln!("E: Unable to locate package {name}");
                return 100;
            }
        }
    }
    println!("0 upgraded, 0 newly installed, {n} to remove and 0 not upgraded.");
    0
}
