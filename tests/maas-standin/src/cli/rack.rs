//! The deb `maas-rack` command: `register`, `config`, `install-shared-secret`,
//! `check-for-shared-secret`.

use super::{fail, parse, report, require_root};
use crate::argparse::{Opt, Parser};
use crate::conf::{self, ConfFile};
use crate::paths::Flavor;
use crate::services;
use serde_yaml::Value;
use std::io::{IsTerminal, Read};

const COMMANDS: &[&str] = &[
    "register",
    "config",
    "install-shared-secret",
    "check-for-shared-secret",
];

/// Entry point for `maas-rack ARGS...`.
pub fn main(args: &[String]) -> i32 {
    let top = Parser::new("maas-rack");
    let Some(cmd) = args.first() else {
        return report(top.error("the following arguments are required: COMMAND"));
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "register" => register(rest),
        "config" => config(rest),
        "install-shared-secret" => install_shared_secret(rest),
        "check-for-shared-secret" => check_for_shared_secret(rest),
        "-h" | "--help" => {
            println!("usage: maas-rack [-h] COMMAND ...\n\nMAAS stand-in (test double, not MAAS). Commands: {}", COMMANDS.join(", "));
            0
        }
        other => report(top.invalid_choice("COMMAND", other, COMMANDS)),
    }
}

fn read_stdin_secret() -> Option<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut s = String::new();
    stdin.lock().read_to_string(&mut s).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

fn set_urls(c: &mut ConfFile, urls: &[String]) {
    // One URL is written as a string, several as a list, as MAAS does.
    let v = if urls.len() == 1 {
        Value::from(urls[0].as_str())
    } else {
        Value::Sequence(urls.iter().map(|u| Value::from(u.as_str())).collect())
    };
    c.map.insert(Value::from("maas_url"), v);
}

/// `register --url URL [--url URL...] [--secret SECRET]` (secret from stdin when not given).
fn register(args: &[String]) -> i32 {
    let p = Parser::new("maas-rack register").opts(&[
        Opt::value("--url", "URL of the region controller to connect to (may be repeated)."),
        Opt::value("--secret", "The shared secret required to connect to the region controller (read from stdin if not given)."),
    ]);
    // argparse's action="append": collect every --url before the ordinary parse.
    let mut urls = vec![];
    let mut others = vec![];
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--url" {
            match args.get(i + 1) {
                Some(v) if !v.starts_with('-') => {
                    urls.push(v.clone());
                    i += 2;
                    continue;
                }
                _ => return report(p.error("argument --url: expected one argument")),
            }
        } else if let Some(v) = a.strip_prefix("--url=") {
            urls.push(v.to_string());
        } else {
            others.push(a.clone());
        }
        i += 1;
    }
    let a = match parse(&p, &others) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("register") {
        return code;
    }
    if urls.is_empty() {
        return fail("MAAS region controller URL must be given when supplying the shared secret via stdin with a non-interactive shell.");
    }
    for u in &urls {
        if let Err(e) = conf::validate_maas_url(u) {
            return fail(format!("Error: {e}"));
        }
    }
    let from_stdin = a.get("--secret").is_none();
    let secret =
        match a
            .get("--secret")
            .map(str::to_string)
            .or_else(read_stdin_secret)
        {
            Some(s) => s,
            None => return fail(
                "Secret not given: pass --secret or pipe it on stdin (the stand-in never prompts).",
            ),
        };
    if !services::systemctl("stop", "maas-rackd.service") {
        return fail("Unable to stop maas-rackd service.");
    }
    let _ = std::fs::remove_file(Flavor::Deb.maas_id());
    let r = (|| -> anyhow::Result<()> {
        conf::write_secret(Flavor::Deb, &secret)?;
        let mut c = ConfFile::load(&Flavor::Deb.rackd_conf())?;
        set_urls(&mut c, &urls);
        c.save(&Flavor::Deb.rackd_conf())?;
        Ok(())
    })();
    if let Err(e) = r {
        return fail(format!("Error: {e:#}"));
    }
    if from_stdin {
        println!("Secret installed to {}.", Flavor::Deb.secret().display());
    }
    if !(services::systemctl("enable", "maas-rackd.service")
        && services::systemctl("start", "maas-rackd.service"))
    {
        return fail("Unable to enable and start the maas-rackd service.");
    }
    0
}

/// `config [--region-url URL] [--debug true|false] [--show]`: edits rackd.conf only; the
/// seed restarts maas-rackd itself afterwards.
fn config(args: &[String]) -> i32 {
    let p = Parser::new("maas-rack config").opts(&[
        Opt::value("--region-url", "The URL of the region controller."),
        Opt::value("--debug", "Enable or disable debug logging (true/false)."),
        Opt::flag("--show", "Show the current configuration."),
        Opt::flag(
            "--init",
            "Initialise a rack controller (accepted; nothing to do).",
        ),
    ]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("config") {
        return code;
    }
    let path = Flavor::Deb.rackd_conf();
    let mut c = match ConfFile::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    let before = c.clone();
    if let Some(u) = a.get("--region-url") {
        if let Err(e) = conf::validate_maas_url(u) {
            return fail(format!("Error: {e}"));
        }
        set_urls(&mut c, &[u.to_string()]);
    }
    if let Some(d) = a.get("--debug") {
        match d.to_ascii_lowercase().as_str() {
            "true" | "false" => c.set("debug", &d.to_ascii_lowercase()),
            _ => return report(p.invalid_choice("--debug", d, &["true", "false"])),
        }
    }
    if c != before {
        if let Err(e) = c.save(&path) {
            return fail(format!("Error: {e:#}"));
        }
    }
    if a.flag("--show") || (a.get("--region-url").is_none() && a.get("--debug").is_none()) {
        print!("{}", serde_yaml::to_string(&c.map).unwrap_or_default());
    }
    0
}

/// `install-shared-secret`: the secret comes on stdin.
fn install_shared_secret(args: &[String]) -> i32 {
    if let Err(code) = parse(&Parser::new("maas-rack install-shared-secret"), args) {
        return code;
    }
    if let Err(code) = require_root("install-shared-secret") {
        return code;
    }
    let Some(secret) = read_stdin_secret() else {
        return fail("Secret not installed: no secret was given on stdin.");
    };
    match conf::write_secret(Flavor::Deb, &secret) {
        Ok(()) => {
            println!("Secret installed to {}.", Flavor::Deb.secret().display());
            0
        }
        Err(e) => fail(format!("Secret could not be installed: {e:#}")),
    }
}

fn check_for_shared_secret(args: &[String]) -> i32 {
    if let Err(code) = parse(&Parser::new("maas-rack check-for-shared-secret"), args) {
        return code;
    }
    if conf::read_secret(Flavor::Deb).is_some() {
        println!("Shared secret is installed.");
        0
    } else {
        fail("Shared secret not installed.")
    }
}
