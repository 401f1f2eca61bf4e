//! `createadmin` and `apikey`, shared by `maas` and `maas-region`: both talk to the database
//! directly, as MAAS's management commands do, so they work even while regiond is restarting.

use super::{fail, parse};
use crate::argparse::{Opt, Parser};
use crate::conf::ConfFile;
use crate::db;
use std::path::Path;

fn open(conf_path: &Path) -> Result<postgres::Client, i32> {
    if !conf_path.exists() {
        return Err(fail(format!(
            "MAAS is not initialised as a region: {} is missing.",
            conf_path.display()
        )));
    }
    let conf = ConfFile::load(conf_path).map_err(|e| fail(format!("{e:#}")))?;
    let mut c = db::connect(&conf.db(), "maas-standin-cli")
        .map_err(|e| fail(format!("Unable to connect to the database: {e:#}")))?;
    match db::needs_init(&mut c) {
        Ok(false) => Ok(c),
        Ok(true) => Err(fail(
            "The MAAS database has not been initialised (run the migrations first).",
        )),
        Err(e) => Err(fail(format!("Database error: {e:#}"))),
    }
}

/// Django prints a management command's refusal as `CommandError: <message>`.
fn report_db_error(e: anyhow::Error) -> i32 {
    match e.downcast_ref::<db::Invalid>() {
        Some(i) => fail(format!("CommandError: {}", i.0)),
        None => fail(format!("Database error: {e:#}")),
    }
}

/// `createadmin --username --password --email [--ssh-import]`.
pub fn createadmin(prog: &str, conf_path: &Path, args: &[String]) -> i32 {
    let p = Parser::new(prog).opts(&[
        Opt::value("--username", "Username for the new account."),
        Opt::value("--password", "Force a given password instead of prompting."),
        Opt::value("--email", "Specifies the email for the admin."),
        Opt::value(
            "--ssh-import",
            "Import SSH keys from Launchpad (lp:user-id) or Github (gh:user-id).",
        ),
        Opt::flag(
            "--prompt",
            "Prompt for any information not given on the command line.",
        ),
    ]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // MAAS prompts for what is missing; the stand-in never prompts.
    if a.get("--username").is_none() {
        return fail("CommandError: You must input a username or provide it with --username.");
    }
    if a.get("--password").is_none() {
        return fail("CommandError: --password is required: MAAS would prompt for it, and the stand-in never prompts.");
    }
    if a.get("--email").is_none() {
        return fail("CommandError: You must input an email or provide it with --email");
    }
    let mut c = match open(conf_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let r = db::create_admin(
        &mut c,
        a.get("--username").unwrap_or_default(),
        a.get("--password").unwrap_or_default(),
        a.get("--email").unwrap_or_default(),
        a.get("--ssh-import"),
    );
    match r {
        Ok(()) => 0,
        Err(e) => report_db_error(e),
    }
}

/// `apikey --username [--generate | --delete KEY] [--with-names]`.
pub fn apikey(prog: &str, conf_path: &Path, args: &[String]) -> i32 {
    let p = Parser::new(prog)
        .opts(&[
            Opt::value("--username", "Specifies the username."),
            Opt::flag("--generate", "Generate a new api key."),
            Opt::value("--delete", "Delete the supplied api key."),
            Opt::flag("--with-names", "Display tokens with their names."),
        ])
        .exclusive("--generate", "--delete");
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let Some(user) = a.get("--username") else {
        return fail("CommandError: You must provide a username with --username.");
    };
    let mut c = match open(conf_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let r = if a.flag("--generate") {
        db::generate_api_key(&mut c, user).map(|k| vec![k])
    } else if let Some(key) = a.get("--delete") {
        db::delete_api_key(&mut c, user, key).map(|_| vec![])
    } else {
        db::api_keys(&mut c, user)
    };
    match r {
        Ok(keys) => {
            for k in keys {
                if a.flag("--with-names") {
                    println!("MAAS consumer {k}");
                } else {
                    println!("{k}");
                }
            }
            0
        }
        Err(e) => report_db_error(e),
    }
}
