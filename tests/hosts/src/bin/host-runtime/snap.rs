//! `snap` inside a host: install/refresh/remove/list from the catalog, services and their
//! start/stop/restart, and get/set of recorded configuration.

use crate::catalog::{self, Record};
use crate::unit::DIRS;

const DEFAULT_CHANNEL: &str = "latest/stable";

struct Cli {
    names: Vec<String>,
    channel: Option<String>,
    enable: bool,
    disable: bool,
}

fn parse(argv: &[String]) -> Cli {
    let mut c = Cli {
        names: vec![],
        channel: None,
        enable: false,
        disable: false,
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--channel" => c.channel = it.next().cloned(),
            s if s.starts_with("--channel=") => {
                c.channel = Some(s["--channel=".len()..].to_string())
            }
            "--stable" | "--candidate" | "--beta" | "--edge" => {
                c.channel = Some(format!("latest/{}", &a[2..]))
            }
            "--enable" => c.enable = true,
            "--disable" => c.disable = true,
            s if s.starts_with('-') => {}
            _ => c.names.push(a.clone()),
        }
    }
    c
}

/// "3.5" → "3.5/stable"; "latest/edge" stays.
fn full_channel(c: &str) -> String {
    if c.contains('/') || matches!(c, "stable" | "candidate" | "beta" | "edge") {
        if c.contains('/') {
            c.to_string()
        } else {
            format!("latest/{c}")
        }
    } else {
        format!("{c}/stable")
    }
}

pub fn main(argv: &[String]) -> i32 {
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("error: the local model's snap needs a command");
        return 1;
    };
    let cli = parse(rest);
    let r = match cmd.as_str() {
        "install" => install(&cli),
        "refresh" => refresh(&cli),
        "remove" => remove(&cli),
        "list" => list(&cli),
        "services" => services(&cli),
        "start" | "stop" | "restart" => control(cmd, &cli),
        "set" => set(rest),
        "get" => get(rest),
        "version" => {
            println!("snap    2.63+local-model\nsnapd   2.63+local-model");
            Ok(())
        }
        other => Err(format!(
            "error: unknown command \"{other}\" (not supported by the local model)"
        )),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn installed(name: &str) -> Option<Record> {
    catalog::record(name).filter(|r| r.kind == "snap")
}

fn install(c: &Cli) -> Result<(), String> {
    if c.names.is_empty() {
        return Err("error: the required argument `<snap>` was not provided".into());
    }
    for n in &c.names {
        if catalog::record(n).is_some() {
            println!("snap \"{n}\" is already installed, see 'snap help refresh'");
            continue;
        }
        let e = match catalog::lookup_kind(n, "snap") {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(format!("error: {e}")),
            None => return Err(format!("error: snap \"{n}\" not found")),
        };
        let ch = full_channel(c.channel.as_deref().unwrap_or(DEFAULT_CHANNEL));
        let rec = catalog::install_entry(&e, "snap", Some(ch.clone())).map_err(|e| format!("error: cannot perform the following tasks:\n- Run install hook of \"{n}\" snap ({e})"))?;
        catalog::save(&rec)?;
        let tag = if ch == DEFAULT_CHANNEL {
            String::new()
        } else {
            format!(" ({ch})")
        };
        println!("{n}{tag} {} from Local Model installed", rec.version);
    }
    Ok(())
}

fn refresh(c: &Cli) -> Result<(), String> {
    if c.names.is_empty() {
        println!("All snaps up to date.");
        return Ok(());
    }
    for n in &c.names {
        let Some(mut r) = installed(n) else {
            return Err(format!("error: snap \"{n}\" is not installed"));
        };
        match &c.channel {
            Some(ch) if r.channel.as_deref() != Some(full_channel(ch).as_str()) => {
                let ch = full_channel(ch);
                r.channel = Some(ch.clone());
                catalog::save(&r)?;
                // snapd stops a snap's running services to switch revisions, then starts
                // them again.
                for u in snap_units(n) {
                    if crate::systemctl::call(&["is-active".into(), u.clone()]).code == 0 {
                        catalog::systemctl(&["restart", &u]).map_err(|e| format!("error: {e}"))?;
                    }
                }
                println!("{n} ({ch}) {} from Local Model refreshed", r.version);
            }
            Some(ch) => println!(
                "snap \"{n}\" has no updates available ({})",
                full_channel(ch)
            ),
            None => println!("snap \"{n}\" has no updates available"),
        }
    }
    Ok(())
}

fn remove(c: &Cli) -> Result<(), String> {
    for n in &c.names {
        match installed(n) {
            Some(r) => {
                catalog::uninstall(&r)?;
                println!("{n} removed");
            }
            None => println!("snap \"{n}\" is not installed"),
        }
    }
    Ok(())
}

fn list(c: &Cli) -> Result<(), String> {
    let recs: Vec<Record> = catalog::records()
        .into_iter()
        .filter(|r| r.kind == "snap" && (c.names.is_empty() || c.names.contains(&r.name)))
        .collect();
    if recs.is_empty() && c.names.is_empty() {
        eprintln!("No snaps are installed yet. Try 'snap install hello-world'.");
        return Ok(());
    }
    if recs.is_empty() {
        return Err("error: no matching snaps installed".into());
    }
    println!(
        "{:<20} {:<12} {:<5} {:<16} {:<12} Notes",
        "Name", "Version", "Rev", "Tracking", "Publisher"
    );
    for r in recs {
        let ch = r.channel.clone().unwrap_or_else(|| DEFAULT_CHANNEL.into());
        println!(
            "{:<20} {:<12} {:<5} {:<16} {:<12} -",
            r.name, r.version, "1", ch, "local-model"
        );
    }
    Ok(())
}

/// Units of a snap: `snap.NAME.APP.service` files in the unit directories.
fn snap_units(name: &str) -> Vec<String> {
    let pre = format!("snap.{name}.");
    let mut v = Vec::new();
    for d in DIRS {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if f.starts_with(&pre) && f.ends_with(".service") && !v.contains(&f) {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    v
}

/// "maas" → all its services; "maas.pebble" → that one.
fn targets(names: &[String]) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for n in names {
        let (snap, app) = n
            .split_once('.')
            .map_or((n.as_str(), None), |(s, a)| (s, Some(a)));
        if installed(snap).is_none() {
            return Err(format!("error: snap \"{snap}\" not found"));
        }
        match app {
            Some(a) => v.push(format!("snap.{snap}.{a}.service")),
            None => v.extend(snap_units(snap)),
        }
    }
    Ok(v)
}

fn services(c: &Cli) -> Result<(), String> {
    let names: Vec<String> = if c.names.is_empty() {
        catalog::records()
            .into_iter()
            .filter(|r| r.kind == "snap")
            .map(|r| r.name)
            .collect()
    } else {
        c.names.clone()
    };
    let units = targets(&names)?;
    println!("{:<30} {:<9} {:<9} Notes", "Service", "Startup", "Current");
    for u in units {
        let svc = u.trim_start_matches("snap.").trim_end_matches(".service");
        let en = catalog::systemctl(&["is-enabled", &u]).is_ok();
        let act = crate::systemctl::call(&["is-active".into(), u.clone()]).code == 0;
        println!(
            "{:<30} {:<9} {:<9} -",
            svc,
            if en { "enabled" } else { "disabled" },
            if act { "active" } else { "inactive" }
        );
    }
    Ok(())
}

fn control(cmd: &str, c: &Cli) -> Result<(), String> {
    let units = targets(&c.names)?;
    for u in &units {
        if cmd == "start" && c.enable {
            catalog::systemctl(&["enable", u])?;
        }
        if cmd == "stop" && c.disable {
            catalog::systemctl(&["disable", u])?;
        }
        catalog::systemctl(&[cmd, u]).map_err(|e| format!("error: {e}"))?;
    }
    let verb = match cmd {
        "start" => "Started",
        "stop" => "Stopped",
        _ => "Restarted",
    };
    println!("{verb}.");
    Ok(())
}

fn set(argv: &[String]) -> Result<(), String> {
    let (name, kvs) = argv
        .split_first()
        .ok_or("error: the required argument `<snap>` was not provided")?;
    let mut r = installed(name).ok_or(format!("error: snap \"{name}\" is not installed"))?;
    for kv in kvs.iter().filter(|a| !a.starts_with('-')) {
        match kv.split_once('=') {
            Some((k, v)) => {
                r.config.insert(k.to_string(), v.to_string());
            }
            None => {
                r.config.remove(kv.trim_end_matches('!'));
            }
        }
    }
    catalog::save(&r)
}

fn get(argv: &[String]) -> Result<(), String> {
    let args: Vec<&String> = argv.iter().filter(|a| !a.starts_with('-')).collect();
    let (name, keys) = args
        .split_first()
        .ok_or("error: the required argument `<snap>` was not provided")?;
    let r = installed(name).ok_or(format!("error: snap \"{name}\" is not installed"))?;
    if keys.is_empty() {
        println!("Key  Value");
        for (k, v) in &r.config {
            println!("{k}  {v}");
        }
        return Ok(());
    }
    for k in keys {
        match r.config.get(k.as_str()) {
            Some(v) => println!("{v}"),
            None => {
                return Err(format!(
                    "error: snap \"{name}\" has no \"{k}\" configuration option"
                ))
            }
        }
    }
    Ok(())
}
