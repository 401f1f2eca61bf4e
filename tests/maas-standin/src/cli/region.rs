//! The deb `maas-region` command (Django management commands): `local_config_set`,
//! `local_config_get`, `local_config_reset`, `dbupgrade`, `createadmin`, `apikey`,
//! `edit_named_options`.

use super::{fail, parse, report, require_root};
use crate::argparse::{Opt, Parser};
use crate::conf::{self, ConfFile, REGION_DEFAULTS};
use crate::db;
use crate::paths::{self, Flavor};
use crate::util;

const COMMANDS: &[&str] = &[
    "local_config_set",
    "local_config_get",
    "local_config_reset",
    "dbupgrade",
    "createadmin",
    "apikey",
    "edit_named_options",
];

/// Entry point for `maas-region ARGS...`.
pub fn main(args: &[String]) -> i32 {
    let top = Parser::new("maas-region");
    let Some(cmd) = args.first() else {
        return report(top.error("the following arguments are required: COMMAND"));
    };
    let rest = &args[1..];
    let conf_path = Flavor::Deb.regiond_conf();
    match cmd.as_str() {
        "local_config_set" => local_config_set(rest),
        "local_config_get" => local_config_get(rest),
        "local_config_reset" => local_config_reset(rest),
        "dbupgrade" => dbupgrade(rest),
        "createadmin" => super::admin::createadmin("maas-region createadmin", &conf_path, rest),
        "apikey" => super::admin::apikey("maas-region apikey", &conf_path, rest),
        "edit_named_options" => edit_named_options(rest),
        "-h" | "--help" => {
            println!("usage: maas-region <subcommand> [options]\n\nMAAS stand-in (test double, not MAAS). Subcommands: {}", COMMANDS.join(", "));
            0
        }
        other => fail(format!(
            "Unknown command: '{other}'\nType 'maas-region help' for usage."
        )),
    }
}

/// `--maas-url` for `maas_url`, and so on.
fn option_name(key: &str) -> &'static str {
    match key {
        "maas_url" => "--maas-url",
        "database_host" => "--database-host",
        "database_port" => "--database-port",
        "database_name" => "--database-name",
        "database_user" => "--database-user",
        "database_pass" => "--database-pass",
        "num_workers" => "--num-workers",
        "debug" => "--debug",
        "database_conn_max_age" => "--database-conn-max-age",
        "database_keepalive" => "--database-keepalive",
        "database_keepalive_idle" => "--database-keepalive-idle",
        "database_keepalive_interval" => "--database-keepalive-interval",
        "database_keepalive_count" => "--database-keepalive-count",
        _ => "--debug-queries",
    }
}

fn value_opts() -> Vec<Opt> {
    REGION_DEFAULTS
        .iter()
        .map(|(k, _)| Opt::value(option_name(k), "setting in regiond.conf"))
        .collect()
}

fn flag_opts() -> Vec<Opt> {
    REGION_DEFAULTS
        .iter()
        .map(|(k, _)| Opt::flag(option_name(k), "setting in regiond.conf"))
        .collect()
}

fn local_config_set(args: &[String]) -> i32 {
    let p = Parser::new("maas-region local_config_set").opts(&value_opts());
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("local_config_set") {
        return code;
    }
    let path = Flavor::Deb.regiond_conf();
    let mut c = match ConfFile::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    for (key, _) in REGION_DEFAULTS {
        let Some(v) = a.get(option_name(key)) else {
            continue;
        };
        let bad = match *key {
            // `RegionConfiguration.maas_url` is `ExtendedURL(require_tld=False)`; `SetCommand.handle`
            // (src/maasserver/management/commands/_config.py) turns its `Invalid` into
            // `CommandError("maas-url: That is not a valid URL.")`.
            "maas_url" => conf::extended_url(v).err().map(str::to_string),
            "database_port" => v
                .parse::<u16>()
                .err()
                .map(|_| format!("{v:?} is not a valid port")),
            "num_workers" => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .is_none()
                .then(|| format!("{v:?} is not a positive integer")),
            "debug" | "debug_queries" => {
                (!matches!(v.to_ascii_lowercase().as_str(), "true" | "false"))
                    .then(|| format!("{v:?} is not true or false"))
            }
            // formencode's Int and StringBool, as RegionConfiguration declares them
            // (src/maasserver/config.py); conn_max_age also has min=0.
            "database_conn_max_age"
            | "database_keepalive_idle"
            | "database_keepalive_interval"
            | "database_keepalive_count" => v
                .trim()
                .parse::<u32>()
                .is_err()
                .then(|| "Please enter an integer value".to_string()),
            "database_keepalive" => conf::string_bool(v)
                .is_none()
                .then(|| "Value should be 'true' or 'false'".to_string()),
            _ => None,
        };
        if let Some(msg) = bad {
            return fail(format!("CommandError: {}: {msg}.", key.replace('_', "-")));
        }
        let stored = if *key == "debug" || *key == "debug_queries" {
            v.to_ascii_lowercase()
        } else if *key == "database_keepalive" {
            conf::string_bool(v).unwrap_or(true).to_string()
        } else if *key == "maas_url" {
            // What `to_python` returned (`http://` added, the scheme lower-cased).
            conf::extended_url(v).ok().flatten().unwrap_or_default()
        } else {
            v.to_string()
        };
        c.set(key, &stored);
    }
    match c.save(&path) {
        Ok(()) => 0,
        Err(e) => fail(format!("Error: {e:#}")),
    }
}

fn local_config_get(args: &[String]) -> i32 {
    let p = Parser::new("maas-region local_config_get")
        .opts(&flag_opts())
        .opts(&[
            Opt::flag("--json", "Output as JSON."),
            Opt::flag("--yaml", "Output as YAML (default)."),
            Opt::flag("--plain", "Output as plain strings."),
        ]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let c = match ConfFile::load(&Flavor::Deb.regiond_conf()) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    // Like MAAS: only the settings asked for, each with its stored or default value.
    let keys: Vec<&str> = REGION_DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| a.flag(option_name(k)))
        .collect();
    let value = |k: &str| -> serde_json::Value {
        match c.map.get(k) {
            Some(v) => serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            None => {
                let d = c.get_or_default(k);
                match k {
                    "database_port"
                    | "num_workers"
                    | "database_conn_max_age"
                    | "database_keepalive_idle"
                    | "database_keepalive_interval"
                    | "database_keepalive_count" => d
                        .parse::<i64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(d.into()),
                    "debug" | "debug_queries" | "database_keepalive" => {
                        serde_json::Value::Bool(d == "true")
                    }
                    _ => d.into(),
                }
            }
        }
    };
    // The last output flag given wins, as with argparse's store_const.
    let last = args
        .iter()
        .rev()
        .find(|x| ["--json", "--yaml", "--plain"].contains(&x.as_str()))
        .map(String::as_str);
    match last {
        Some("--plain") => {
            for k in keys {
                match value(k) {
                    serde_json::Value::String(s) => println!("{s}"),
                    v => println!("{v}"),
                }
            }
        }
        Some("--json") => {
            // Python's json.dump spacing, which scripts may have been written against.
            let body: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", serde_json::Value::from(*k), value(k)))
                .collect();
            println!("{{{}}}", body.join(", "));
        }
        _ => {
            let m: serde_yaml::Mapping = keys
                .iter()
                .map(|k| {
                    (
                        serde_yaml::Value::from(*k),
                        serde_yaml::to_value(value(k)).unwrap_or(serde_yaml::Value::Null),
                    )
                })
                .collect();
            if m.is_empty() {
                println!("{{}}");
            } else {
                print!("{}", serde_yaml::to_string(&m).unwrap_or_default());
            }
        }
    }
    0
}

fn local_config_reset(args: &[String]) -> i32 {
    let p = Parser::new("maas-region local_config_reset").opts(&flag_opts());
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("local_config_reset") {
        return code;
    }
    let path = Flavor::Deb.regiond_conf();
    let mut c = ConfFile::load(&path).unwrap_or_default();
    for (k, _) in REGION_DEFAULTS {
        if a.flag(option_name(k)) {
            c.map.remove(*k);
        }
    }
    match c.save(&path) {
        Ok(()) => 0,
        Err(e) => fail(format!("Error: {e:#}")),
    }
}

/// What Django's `migrate` prints: the migrations it applied, or that there were none.
pub fn migrate_output(applied: &[String]) -> String {
    let mut s = String::from(
        "Operations to perform:\n  Apply all migrations: maasserver\nRunning migrations:\n",
    );
    if applied.is_empty() {
        s.push_str("  No migrations to apply.\n");
    }
    for m in applied {
        s.push_str(&format!("  Applying {m}... OK\n"));
    }
    s
}

fn dbupgrade(args: &[String]) -> i32 {
    let p = Parser::new("maas-region dbupgrade").opts(&[
        Opt::flag("--always-south", "(ignored)"),
        Opt::flag("--internal-no-triggers", "(ignored)"),
    ]);
    if let Err(code) = parse(&p, args) {
        return code;
    }
    if let Err(code) = require_root("dbupgrade") {
        return code;
    }
    let c = match ConfFile::load(&Flavor::Deb.regiond_conf()) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    let settings = c.db();
    let r = match db::connect(&settings, "maas-standin-dbupgrade") {
        Err(e) => Err((e, true)),
        // Migrations only: `dbupgrade` writes no file (Command.handle in
        // src/maasserver/management/commands/dbupgrade.py); the shared secret file is
        // regiond's, at start-up (`regiond::Region::start_up`).
        Ok(mut cl) => db::migrate_version(&mut cl, crate::api::VERSION).map_err(|e| (e, false)),
    };
    match r {
        Ok(applied) => {
            print!("{}", migrate_output(&applied));
            0
        }
        // An exception escapes the management command: Python's traceback, exit 1.
        Err((e, connecting)) => {
            eprint!(
                "{}",
                super::maas::dbupgrade_traceback(false, &settings, &e, connecting)
            );
            1
        }
    }
}

const DEFAULT_NAMED_OPTIONS: &str = "options {\n\tdirectory \"/var/cache/bind\";\n\tdnssec-validation auto;\n\tlisten-on-v6 { any; };\n};\n";

/// Moves `forwarders` and `dnssec-validation` out of bind's options into MAAS's included file,
/// and includes that file, as MAAS's `edit_named_options --migrate-conflicting-options` does.
pub fn migrate_named_options(options_text: &str, migrate: bool) -> (String, Vec<String>) {
    let include = format!(
        "include \"{}\";",
        "/etc/bind/maas/named.conf.options.inside.maas"
    );
    let mut moved = vec![];
    let mut out = vec![];
    let mut skipping_block = false;
    for line in options_text.lines() {
        let t = line.trim();
        if skipping_block {
            moved.push(t.to_string());
            if t.starts_with('}') {
                skipping_block = false;
            }
            continue;
        }
        if migrate && t.starts_with("forwarders") {
            moved.push(t.to_string());
            skipping_block = !t.contains('}');
            continue;
        }
        if migrate && t.starts_with("dnssec-validation") {
            moved.push(t.to_string());
            continue;
        }
        if t == include {
            continue;
        }
        out.push(line.to_string());
    }
    // The include goes last inside the options block.
    if let Some(pos) = out.iter().rposition(|l| l.trim() == "};") {
        out.insert(pos, format!("\t{include}"));
    } else {
        out.push(format!("options {{\n\t{include}\n}};"));
    }
    (out.join("\n") + "\n", moved)
}

fn edit_named_options(args: &[String]) -> i32 {
    let p = Parser::new("maas-region edit_named_options").opts(&[
        Opt::value("--config-path", "Specify a configuration file name to use (default /etc/bind/named.conf.options)."),
        Opt::flag("--dry-run", "Do not edit any configuration; instead, print to stdout the actions that would be performed."),
        Opt::flag("--force", "Force the BIND configuration to be written, even if it appears as though nothing has changed."),
        Opt::flag("--migrate-conflicting-options", "Causes any options that conflict with MAAS-managed options to be deleted from the BIND configuration and moved to the MAAS-managed configuration."),
    ]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("edit_named_options") {
        return code;
    }
    let path = a
        .get("--config-path")
        .map(paths::p)
        .unwrap_or_else(paths::named_conf_options);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "CommandError: Failed to read {}: {e}",
                path.display()
            ))
        }
    };
    let (new_text, moved) = migrate_named_options(&text, a.flag("--migrate-conflicting-options"));
    if a.flag("--dry-run") {
        print!("{new_text}");
        return 0;
    }
    let inside = paths::named_conf_options_inside_maas();
    let mut inside_text = std::fs::read_to_string(&inside).unwrap_or_default();
    for m in &moved {
        if !inside_text.lines().any(|l| l.trim() == m) {
            inside_text.push_str(m);
            inside_text.push('\n');
        }
    }
    let r = util::write_file(&inside, inside_text.as_bytes(), 0o644, Some("bind")).and_then(|_| {
        if new_text != text {
            util::write_file(&path, new_text.as_bytes(), 0o644, Some("bind"))
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => 0,
        Err(e) => fail(format!("CommandError: {e:#}")),
    }
}

/// The options file a fresh bind9 package ships, for the package's install step.
pub fn default_named_options() -> &'static str {
    DEFAULT_NAMED_OPTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_options_migration_is_idempotent() {
        let src = "options {\n\tdirectory \"/var/cache/bind\";\n\tforwarders {\n\t\t8.8.8.8;\n\t};\n\tdnssec-validation auto;\n};\n";
        let (once, moved) = migrate_named_options(src, true);
        assert!(
            !once.contains("forwarders") && !once.contains("dnssec-validation"),
            "{once}"
        );
        assert!(once.contains("include \"/etc/bind/maas/named.conf.options.inside.maas\";"));
        assert_eq!(moved.len(), 4);
        let (twice, moved2) = migrate_named_options(&once, true);
        assert_eq!(once, twice);
        assert!(moved2.is_empty());
    }
}
