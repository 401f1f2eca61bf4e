//! Package catalog entries (tests/CONTRACTS.md §2) that make `snap install maas` and
//! `apt-get install maas-region-api maas-dns maas-rack-controller maas-cli` install this
//! stand-in inside the local model's hosts, plus the packages' install steps (`postinst`).
//!
//! `maas-standin catalog --out DIR --binary PATH` writes `DIR/<package>.json` and the systemd
//! units they install (`DIR/units/*.service`), with absolute machine paths.

use crate::argparse::{Opt, Parser};
use crate::cli::{fail, parse};
use crate::conf::ConfFile;
use crate::paths::{self, Flavor};
use crate::util;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the binary lives inside a host.
pub const INSTALLED_BINARY: &str = "/usr/lib/maas-standin/maas-standin";

/// The packages this catalog provides.
pub const PACKAGES: &[&str] = &[
    "maas",
    "maas-region-api",
    "maas-dns",
    "maas-rack-controller",
    "maas-cli",
    "maas-region-controller",
];

/// The version dpkg reports for the MAAS debs: MAAS's epoch and upstream version, as its
/// debian/changelog has them (canonical/maas 3.6 `maas (1:3.6.5-0ubuntu1) noble`), of the
/// MAAS the deb stand-in behaves as ([`crate::api::VERSION`]). maas-region tells a deb
/// install's release by it (Temporal's metrics from 3.5).
pub fn deb_version() -> String {
    format!("1:{}-0ubuntu1", crate::api::VERSION)
}

fn unit(description: &str, exec: &str) -> String {
    format!(
        "# MAAS stand-in (test double, not MAAS)\n[Unit]\nDescription={description}\nAfter=network.target\n\n[Service]\nType=simple\nExecStart={exec}\nRestart=always\nUser=root\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// A unit that stays down when its program fails (dhcpd without a configuration).
fn unit_no_restart(description: &str, exec: &str) -> String {
    unit(description, exec).replace("Restart=always\n", "")
}

/// The systemd units, by file name.
pub fn units() -> Vec<(&'static str, String)> {
    vec![
        (
            "snap.maas.pebble.service",
            // snapd's unit starts the app through `snap run` (snap/info.go
            // `launcherCommand`), which gives it the snap's private /tmp.
            unit(
                "Service for snap application maas.pebble (stand-in)",
                "/usr/bin/snap run maas.pebble",
            ),
        ),
        (
            "maas-regiond.service",
            unit(
                "MAAS Region Controller (stand-in)",
                &format!("{INSTALLED_BINARY} regiond --flavor deb"),
            ),
        ),
        (
            "maas-rackd.service",
            unit(
                "MAAS Rack Controller (stand-in)",
                &format!("{INSTALLED_BINARY} rackd --flavor deb"),
            ),
        ),
        (
            "bind9.service",
            unit(
                "BIND Domain Name Server (MAAS stand-in named)",
                "/usr/sbin/named -f -u bind",
            ),
        ),
        (
            "maas-dhcpd.service",
            unit_no_restart(
                "MAAS instance of ISC DHCP server for IPv4 (stand-in)",
                &format!("{INSTALLED_BINARY} dhcpd --flavor deb"),
            ),
        ),
        // MAAS's own nginx, Temporal and apiserver (debian/maas-common.maas-http.service,
        // debian/maas-region-api.maas-temporal.service and .maas-apiserver.service): nginx and
        // Temporal have no `Restart=` (regiond's service monitor starts them again), the
        // apiserver restarts by itself.
        (
            "maas-http.service",
            unit_no_restart(
                "MAAS HTTP server and reverse proxy server (stand-in: Debian's nginx)",
                &format!("{INSTALLED_BINARY} maas-http --flavor deb"),
            ),
        ),
        // maas-agent (debian/maas-agent.maas-agent.service, package maas-agent, which
        // maas-rack-controller depends on): no `Restart=`, rackd's service monitor starts it.
        (
            "maas-agent.service",
            unit_no_restart(
                "MAAS Agent daemon (stand-in)",
                &format!("{INSTALLED_BINARY} maas-agent --flavor deb"),
            ),
        ),
        (
            "maas-temporal.service",
            unit_no_restart(
                "MAAS Temporal (stand-in)",
                &format!("{INSTALLED_BINARY} temporal --flavor deb"),
            ),
        ),
        (
            "maas-apiserver.service",
            unit(
                "MAAS Region API (stand-in)",
                &format!("{INSTALLED_BINARY} apiserver --flavor deb"),
            ),
        ),
        (
            "apache2.service",
            unit(
                "The Apache HTTP Server (MAAS stand-in: forwards 80 to 5240)",
                &format!("{INSTALLED_BINARY} apache2"),
            ),
        ),
    ]
}

fn file(src: &Path, dst: &str, mode: &str) -> Value {
    json!({"src": src.display().to_string(), "dst": dst, "mode": mode})
}

fn link(dst: &str) -> Value {
    json!({"dst": dst, "target": INSTALLED_BINARY})
}

/// The channels the catalog's `maas` snap is offered on, with a version each (the MAAS it
/// behaves as) and a revision (the stand-in's own numbers, increasing with the version).
pub const SNAP_CHANNELS: &[(&str, &str, &str)] = &[
    ("3.4/stable", "3.4.6", "34600"),
    ("3.5/stable", "3.5.8", "35800"),
    ("3.6/stable", "3.6.3", "36300"),
    ("3.7/stable", "3.7.1", "37100"),
];

fn snap_channels() -> Value {
    let mut m = serde_json::Map::new();
    for (ch, version, revision) in SNAP_CHANNELS {
        m.insert(
            ch.to_string(),
            json!({"version": version, "revision": revision}),
        );
    }
    Value::Object(m)
}

fn dir(path: &str, mode: &str, owner: &str, group: &str) -> Value {
    json!({"path": path, "mode": mode, "owner": owner, "group": group})
}

fn unit_file(units_dir: &Path, name: &str) -> Value {
    file(
        &units_dir.join(name),
        &format!("/lib/systemd/system/{name}"),
        "0644",
    )
}

/// The catalog entry of `package`, for a binary at `binary` and units under `units_dir`.
pub fn entry(package: &str, binary: &Path, units_dir: &Path) -> Option<Value> {
    let bin = file(binary, INSTALLED_BINARY, "0755");
    let postinst = json!([[INSTALLED_BINARY, "postinst", package]]);
    let deb_dirs = vec![
        dir("/etc/maas", "0755", "root", "root"),
        dir("/var/lib/maas", "0755", "maas", "maas"),
        dir("/var/log/maas", "0755", "maas", "maas"),
    ];
    // What a region keeps on disk beside its database (maas-region's backups read them): the
    // operator's preseeds (debian/maas-region-api.install: package-files/etc/maas/preseeds)
    // and the boot resources' image storage since 3.5 (debian/maas-region-api.dirs, chowned
    // to maas by its postinst; `get_bootresource_store_path` in
    // src/maasserver/utils/bootresource.py).
    let deb_region_dirs = [
        dir("/etc/maas/preseeds", "0755", "root", "root"),
        dir("/var/lib/maas/image-storage", "0755", "maas", "maas"),
    ];
    let v = match package {
        "maas" => json!({
            "name": "maas", "kind": "snap",
            "files": [bin, unit_file(units_dir, "snap.maas.pebble.service")],
            // snapd links a snap's commands to /usr/bin/snap, which runs the app by the
            // name it was called by (canonical/snapd cmd/snapd/cli/main.go `main`).
            "symlinks": [{"dst": "/snap/bin/maas", "target": "/usr/bin/snap"}],
            // snap.yaml's apps (snap/snapcraft.yaml: `maas` the CLI, `pebble` the
            // supervisor of every daemon): what `snap run maas[.app]` starts.
            "apps": {"maas": [INSTALLED_BINARY, "maas"], "pebble": [INSTALLED_BINARY, "pebble"]},
            "dirs": [dir("/var/snap/maas/common", "0755", "root", "root"), dir("/var/snap/maas/common/maas", "0755", "root", "root"),
                     dir("/var/snap/maas/current", "0755", "root", "root"), dir("/var/snap/maas/current/http", "0755", "root", "root"),
                     dir("/var/log/maas", "0755", "root", "root"),
                     // snap/hooks/install: `$SNAP_DATA/preseeds` (PRESEED_TEMPLATE_LOCATIONS of
                     // src/maasserver/djangosettings/snap.py) and `$SNAP_COMMON/maas/image-storage`
                     // (MAAS_DATA is $SNAP_COMMON/maas: snap/local/tree/bin/run-regiond).
                     dir("/var/snap/maas/current/preseeds", "0755", "root", "root"),
                     dir("/var/snap/maas/common/maas/image-storage", "0755", "root", "root")],
            "users": ["maas"],
            "enable": ["snap.maas.pebble.service"],
            "postinst": postinst,
            // What the store offers: one stand-in binary for every channel, which tells the
            // MAAS it is by the version snapd reports (`snapinfo::version`, `tracking`).
            "channels": snap_channels(),
            // snap/hooks/post-refresh is a link to snap/hooks/install, whose last line is
            // `"$SNAP/usr/bin/maas" migrate --configure` (migrations in region modes only).
            "hooks": {"post-refresh": [[INSTALLED_BINARY, "maas", "migrate", "--configure"]]},
        }),
        "maas-cli" => json!({
            "name": "maas-cli", "kind": "deb", "version": deb_version(), "files": [bin],
            "symlinks": [link("/usr/bin/maas")], "dirs": [], "users": [], "enable": [], "postinst": [],
        }),
        "maas-region-api" => json!({
            "name": "maas-region-api", "kind": "deb", "version": deb_version(),
            "files": [bin, unit_file(units_dir, "maas-regiond.service"), unit_file(units_dir, "apache2.service"),
                      unit_file(units_dir, "maas-http.service"), unit_file(units_dir, "maas-temporal.service"), unit_file(units_dir, "maas-apiserver.service")],
            "symlinks": [link("/usr/sbin/maas-region"), link("/usr/bin/maas")],
            "dirs": deb_dirs.iter().chain(&deb_region_dirs).collect::<Vec<_>>(), "users": ["maas"],
            "enable": ["maas-apiserver.service", "maas-regiond.service", "apache2.service"],
            "postinst": postinst,
        }),
        "maas-dns" => json!({
            "name": "maas-dns", "kind": "deb", "version": deb_version(),
            "files": [bin, unit_file(units_dir, "bind9.service")],
            "symlinks": [json!({"dst": "/usr/sbin/named", "target": INSTALLED_BINARY}), link("/usr/sbin/maas-region")],
            "dirs": [dir("/etc/bind", "0755", "root", "bind"), dir("/etc/bind/maas", "0755", "root", "bind")],
            "users": ["maas", "bind"],
            "enable": ["bind9.service"],
            "postinst": postinst,
        }),
        "maas-rack-controller" => json!({
            "name": "maas-rack-controller", "kind": "deb", "version": deb_version(),
            // maas-http.service is maas-common's and maas-agent.service maas-agent's in MAAS,
            // packages maas-rack-controller depends on; rackd's service monitor starts both.
            "files": [bin, unit_file(units_dir, "maas-rackd.service"), unit_file(units_dir, "maas-dhcpd.service"),
                      unit_file(units_dir, "maas-http.service"), unit_file(units_dir, "maas-agent.service")],
            "symlinks": [link("/usr/sbin/maas-rack"), link("/usr/bin/maas")],
            "dirs": deb_dirs, "users": ["maas"],
            "enable": ["maas-rackd.service"],
            "postinst": postinst,
        }),
        // The metapackage: region API and DNS together. Unlike MAAS's, it does not install
        // a local PostgreSQL: the tests always bring their own database.
        "maas-region-controller" => json!({
            "name": "maas-region-controller", "kind": "deb", "version": deb_version(),
            "files": [bin, unit_file(units_dir, "maas-regiond.service"), unit_file(units_dir, "apache2.service"), unit_file(units_dir, "bind9.service"),
                      unit_file(units_dir, "maas-http.service"), unit_file(units_dir, "maas-temporal.service"), unit_file(units_dir, "maas-apiserver.service")],
            "symlinks": [link("/usr/sbin/maas-region"), link("/usr/bin/maas"), json!({"dst": "/usr/sbin/named", "target": INSTALLED_BINARY})],
            "dirs": [deb_dirs[0].clone(), deb_dirs[1].clone(), deb_dirs[2].clone(),
                     deb_region_dirs[0].clone(), deb_region_dirs[1].clone(),
                     dir("/etc/bind", "0755", "root", "bind"), dir("/etc/bind/maas", "0755", "root", "bind")],
            "users": ["maas", "bind"],
            "enable": ["maas-apiserver.service", "maas-regiond.service", "apache2.service", "bind9.service"],
            "postinst": postinst,
        }),
        _ => return None,
    };
    Some(v)
}

/// Writes every entry and unit file into `out`.
pub fn generate(out: &Path, binary: &Path) -> Result<Vec<PathBuf>> {
    let binary = binary
        .canonicalize()
        .with_context(|| format!("binary {}", binary.display()))?;
    std::fs::create_dir_all(out.join("units"))?;
    let out = out.canonicalize()?;
    let units_dir = out.join("units");
    for (name, text) in units() {
        util::write_file(&units_dir.join(name), text.as_bytes(), 0o644, None)?;
    }
    let mut written = vec![];
    for pkg in PACKAGES {
        let Some(e) = entry(pkg, &binary, &units_dir) else {
            continue;
        };
        let path = out.join(format!("{pkg}.json"));
        util::write_file(
            &path,
            serde_json::to_string_pretty(&e)?.as_bytes(),
            0o644,
            None,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// `maas-standin catalog --out DIR [--binary PATH]` (default binary: this executable).
pub fn main(args: &[String]) -> i32 {
    let p = Parser::new("maas-standin catalog").opts(&[
        Opt::value(
            "--out",
            "Directory to write the catalog into (e.g. build/catalog).",
        )
        .required(),
        Opt::value(
            "--binary",
            "The maas-standin binary the entries install (default: this one).",
        ),
    ]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let binary = match a.get("--binary") {
        Some(b) => PathBuf::from(b),
        None => match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return fail(format!("cannot find this executable: {e}")),
        },
    };
    match generate(Path::new(a.get("--out").unwrap_or_default()), &binary) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            0
        }
        Err(e) => fail(format!("error: {e:#}")),
    }
}

/// `maas-standin postinst <package>`: what the package's maintainer script does.
pub fn postinst(args: &[String]) -> i32 {
    let p = Parser::new("maas-standin postinst").pos("package", Some(PACKAGES));
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let r = (|| -> Result<()> {
        let pkg = a.positionals[0].as_str();
        // The snap's install hook (snap/hooks/install, 3.4 to master) makes directories and
        // runs `maas migrate --configure`, a no-op without a mode: it writes no `snap_mode`.
        // Only `maas init` does, and a missing one is mode none (`get_current_mode`).
        if pkg == "maas-region-api" || pkg == "maas-region-controller" {
            let path = Flavor::Deb.regiond_conf();
            if !path.exists() {
                let mut c = ConfFile::default();
                c.set("maas_url", "http://localhost:5240/MAAS");
                c.save(&path)?;
            }
        }
        if pkg == "maas-rack-controller" {
            let path = Flavor::Deb.rackd_conf();
            if !path.exists() {
                let mut c = ConfFile::default();
                c.set("maas_url", "http://localhost:5240/MAAS");
                c.save(&path)?;
            }
        }
        if pkg == "maas-dns" || pkg == "maas-region-controller" {
            let options = paths::named_conf_options();
            if !options.exists() {
                util::write_file(
                    &options,
                    crate::cli::region::default_named_options().as_bytes(),
                    0o644,
                    Some("bind"),
                )?;
            }
            let text = std::fs::read_to_string(&options)?;
            let (new_text, moved) = crate::cli::region::migrate_named_options(&text, true);
            let inside = paths::named_conf_options_inside_maas();
            if !inside.exists() || !moved.is_empty() {
                let mut t = std::fs::read_to_string(&inside).unwrap_or_default();
                for m in moved {
                    t.push_str(&m);
                    t.push('\n');
                }
                util::write_file(&inside, t.as_bytes(), 0o644, Some("bind"))?;
            }
            if new_text != text {
                util::write_file(&options, new_text.as_bytes(), 0o644, Some("bind"))?;
            }
        }
        Ok(())
    })();
    match r {
        Ok(()) => 0,
        Err(e) => fail(format!("postinst: {e:#}")),
    }
}
