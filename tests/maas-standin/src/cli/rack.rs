//! The deb `maas-rack` command: `register`, `config`, `install-shared-secret`,
//! `check-for-shared-secret`.

use super::python::{self, Frame};
use super::{fail, parse, report, require_root};
use crate::argparse::{Opt, Parser};
use crate::conf::{self, ConfFile};
use crate::paths::Flavor;
use serde_yaml::Value;
use std::io::{BufRead, IsTerminal};

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

fn set_urls(c: &mut ConfFile, urls: &[Option<String>]) {
    // Always a list, even of one: `--url`/`--region-url` are `action="append"`, and
    // `ClusterConfiguration.maas_url` is `ForEach(..., convert_to_list=True)`, whose list
    // `ConfigurationFile.save` dumps as YAML (src/provisioningserver/config.py).
    let v = Value::Sequence(
        urls.iter()
            .map(|u| u.as_deref().map_or(Value::Null, Value::from))
            .collect(),
    );
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
        // `run` in src/provisioningserver/register_command.py: printed (stdout), exit 1.
        println!("MAAS region controller URL must be given when supplying the shared secret via stdin with a non-interactive shell.");
        return 1;
    }
    if let Err(e) = call_and_check("stop") {
        eprintln!("Unable to stop maas-rackd service.\nFailed with error: {e}.");
        return 1;
    }
    let _ = std::fs::remove_file(Flavor::Deb.maas_id());
    let urls = match for_each_extended_url(&urls) {
        Ok(urls) => urls,
        Err(errors) => {
            eprint!(
                "{}",
                invalid_url_traceback(
                    "register_command.py",
                    "run",
                    "config.maas_url = args.url",
                    &errors
                )
            );
            return 1;
        }
    };
    if let Err(e) = (|| -> anyhow::Result<()> {
        let mut c = ConfFile::load(&Flavor::Deb.rackd_conf())?;
        set_urls(&mut c, &urls);
        c.save(&Flavor::Deb.rackd_conf())
    })() {
        return fail(format!("Error: {e:#}"));
    }
    match a.get("--secret") {
        Some(s) => {
            if let Err(e) = set_secret(s) {
                return fail(format!("Error: {e:#}"));
            }
        }
        // `InstallSharedSecretScript.run` ends in `SystemExit(0)` once the secret is written,
        // and that leaves `register` too: rackd stays stopped (whoever registers starts it).
        None => return install_secret_from_stdin(),
    }
    if let Err(e) = call_and_check("enable").and_then(|_| call_and_check("start")) {
        eprintln!("Unable to enable and start the maas-rackd service.\nFailed with error: {e}.");
        return 1;
    }
    0
}

/// `call_and_check(["systemctl", verb, "maas-rackd"])` (src/provisioningserver/utils/shell.py):
/// on failure, the command's stderr, stripped (`ExternalProcessError.output_as_unicode`).
fn call_and_check(verb: &str) -> Result<(), String> {
    if std::env::var("MAAS_STANDIN_NO_SERVICES").as_deref() == Ok("1") {
        return Ok(());
    }
    match std::process::Command::new("systemctl")
        .args([verb, "maas-rackd"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        // Python's Popen raises FileNotFoundError, which nothing in `run` catches; the stand-in
        // folds it into the same report.
        Err(e) => Err(e.to_string()),
    }
}

/// A URL `ExtendedURL` refuses (src/provisioningserver/utils/config.py, through
/// `ClusterConfiguration.maas_url`'s `ForEach`): `ConfigurationOption.__set__` lets formencode's
/// `Invalid` escape, and neither `ActionScript.__call__` (src/provisioningserver/utils/
/// script.py) nor anything above catches it: Python's traceback, exit 1. `ForEach` joins its
/// items' messages under `Errors:`; with `add_http` every refused URL is `badURL`.
fn invalid_url_traceback(file: &str, func: &str, line: &str, errors: &str) -> String {
    let pkg = python::site_packages(false);
    let f = |p: &str| format!("{pkg}/{p}");
    let (main, script, cmd, config) = (
        f("provisioningserver/__main__.py"),
        f("provisioningserver/utils/script.py"),
        f(&format!("provisioningserver/{file}")),
        f("provisioningserver/config.py"),
    );
    let (api, foreach) = (f("formencode/api.py"), f("formencode/foreach.py"));
    python::traceback(
        &[
            Frame("/usr/sbin/maas-rack", 8, "<module>", "sys.exit(main())"),
            Frame(&main, 47, "<module>", "main()"),
            Frame(&script, 118, "__call__", "self.execute(argv)"),
            Frame(&script, 111, "execute", "args.handler.run(args)"),
            Frame(&cmd, 95, func, line),
            Frame(
                &config,
                739,
                "__set__",
                "obj.store[self.name] = self.validator.to_python(value)",
            ),
            Frame(&api, 492, "to_python", "value = tp(value, state)"),
            Frame(
                &foreach,
                110,
                "_convert_to_python",
                "return self._attempt_convert(value, state, validate_python)",
            ),
            Frame(
                &foreach,
                104,
                "_attempt_convert",
                "raise Invalid('Errors:\\n%s' % '\\n'.join(",
            ),
        ],
        "formencode.api.Invalid",
        &format!("Errors:\n{errors}"),
    )
}

/// `ClusterConfiguration.maas_url`'s validator, `ForEach(ExtendedURL(require_tld=False),
/// convert_to_list=True)` (src/provisioningserver/config.py), as `to_python` runs it: every
/// URL through [`conf::extended_url`] (what is stored is what it returns: `http://` added, the
/// scheme lower-cased; an empty item passes as YAML null, as formencode's `None`), or the
/// messages of the refused ones, one a line (formencode's `ForEach._attempt_convert`).
fn for_each_extended_url(urls: &[String]) -> Result<Vec<Option<String>>, String> {
    let checked: Vec<_> = urls.iter().map(|u| conf::extended_url(u)).collect();
    let errors: Vec<&str> = checked
        .iter()
        .filter_map(|r| r.as_ref().err().copied())
        .collect();
    if errors.is_empty() {
        Ok(checked.into_iter().map(|r| r.ok().flatten()).collect())
    } else {
        Err(errors.join("\n"))
    }
}

/// `MAAS_SHARED_SECRET.set` (src/provisioningserver/utils/env.py `FileBackedValue.set`): the
/// value stripped; an empty one removes the file.
fn set_secret(secret: &str) -> anyhow::Result<()> {
    let s = secret.trim();
    if s.is_empty() {
        match std::fs::remove_file(Flavor::Deb.secret()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    } else {
        // Written as given: only `install-shared-secret`'s path checks that it is hex.
        crate::util::write_file(&Flavor::Deb.secret(), s.as_bytes(), 0o640, Some("maas"))
    }
}

/// `InstallSharedSecretScript.run` (src/provisioningserver/security.py): off a terminal the
/// first line of stdin; not hex is `binascii.Error`'s message (stderr, exit 1); otherwise
/// written (even empty, which removes the file), `Secret installed to …` on stdout, exit 0.
/// On a terminal MAAS prompts; the stand-in never does, which is MAAS's answer to EOF: an
/// empty line, exit 1.
fn install_secret_from_stdin() -> i32 {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        println!();
        return 1;
    }
    let mut line = String::new();
    let _ = stdin.lock().read_line(&mut line);
    let hex = line.trim();
    let bad = if hex.chars().any(|c| !c.is_ascii_hexdigit()) {
        Some("Non-hexadecimal digit found")
    } else if !hex.len().is_multiple_of(2) {
        Some("Odd-length string")
    } else {
        None
    };
    if let Some(why) = bad {
        eprintln!("Secret could not be decoded: {why}");
        return 1;
    }
    match set_secret(hex) {
        Ok(()) => {
            println!("Secret installed to {}.", Flavor::Deb.secret().display());
            0
        }
        Err(e) => fail(format!("Error: {e:#}")),
    }
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
        match for_each_extended_url(&[u.to_string()]) {
            Ok(urls) => set_urls(&mut c, &urls),
            Err(errors) => {
                eprint!(
                    "{}",
                    invalid_url_traceback(
                        "cluster_config_command.py",
                        "update_maas_cluster_conf",
                        "config.maas_url = urls",
                        &errors
                    )
                );
                return 1;
            }
        }
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
    install_secret_from_stdin()
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
