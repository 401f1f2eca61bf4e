//! `createadmin` and `apikey`, shared by `maas` and `maas-region`: both talk to the database
//! directly, as MAAS's management commands do, so they work even while regiond is restarting.
//! Their failures look as MAAS's do (see [`python`]).

use super::{fail, parse, python};
use crate::argparse::{Opt, Parser};
use crate::conf::ConfFile;
use crate::db;
use std::path::Path;

/// The command line a failure is reported for: the snap's `maas` (maascli) or the deb's
/// `maas-region` (Django's own command line).
#[derive(Clone, Copy)]
struct Cmd<'a> {
    prog: &'a str,
    maascli: bool,
    frame: python::Frame<'a>,
}

impl<'a> Cmd<'a> {
    fn new(prog: &'a str, frame: python::Frame<'a>) -> Cmd<'a> {
        Cmd {
            prog,
            maascli: prog.starts_with("maas "),
            frame,
        }
    }

    /// An exception escaping the command, as MAAS shows it ([`python::uncaught`]).
    fn uncaught(&self, exception: &str, message: &str) -> i32 {
        let script = if self.maascli {
            "/snap/maas/current/bin/maas"
        } else {
            "/usr/sbin/maas-region"
        };
        let frames = [
            python::Frame(script, 8, "<module>", "sys.exit(run())"),
            python::Frame(self.frame.0, self.frame.1, self.frame.2, self.frame.3),
        ];
        python::uncaught(self.maascli, &frames, exception, message)
    }

    /// A refusal from the database layer: Django's `<Class>: <message>` for a `CommandError`,
    /// an escaping exception otherwise.
    fn report(&self, e: anyhow::Error) -> i32 {
        if let Some(r) = e.downcast_ref::<db::Raised>() {
            return if r.command_error {
                python::command_error(r.class, &r.message)
            } else {
                self.uncaught(r.class, &r.message)
            };
        }
        fail(format!("{}: database error: {e:#}", self.prog))
    }
}

fn open(cmd: Cmd, conf_path: &Path) -> Result<postgres::Client, i32> {
    if !conf_path.exists() {
        return Err(fail(format!(
            "MAAS is not initialised as a region: {} is missing.",
            conf_path.display()
        )));
    }
    let conf = ConfFile::load(conf_path).map_err(|e| fail(format!("{e:#}")))?;
    let settings = conf.db();
    // Django connects on the command's first query; a database it cannot reach raises
    // OperationalError out of the command (psycopg's message, libpq's words).
    let mut c = db::connect(&settings, "maas-standin-cli").map_err(|e| {
        cmd.uncaught(
            "django.db.utils.OperationalError",
            &db::operational_error(&settings, &e),
        )
    })?;
    match db::needs_init(&mut c) {
        Ok(false) => Ok(c),
        // No migrations yet: there is no auth_user table to ask.
        Ok(true) => Err(cmd.uncaught(
            "django.db.utils.ProgrammingError",
            "relation \"auth_user\" does not exist",
        )),
        Err(e) => Err(cmd.report(e)),
    }
}

/// `createadmin --username --password --email [--ssh-import]` (createadmin.py
/// `Command.handle`). MAAS prompts for an option that is absent (`None`), and its prompt reads
/// stdin until it gets a line, so off a terminal it never returns; the stand-in refuses
/// instead, with the message MAAS gives for an empty answer. An option given empty is taken as
/// it is: `--email ""` creates a user without an address, `--username ""` fails in Django
/// (`ValueError: The given username must be set`).
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
    let cmd = Cmd::new(
        prog,
        python::Frame(
            "/usr/lib/python3/dist-packages/maasserver/management/commands/createadmin.py",
            164,
            "handle",
            "User.objects.db_manager(DEFAULT_DB_ALIAS).create_superuser(",
        ),
    );
    if a.get("--username").is_none() {
        return python::command_error(
            "EmptyUsername",
            "You must input a username or provide it with --username.",
        );
    }
    if a.get("--password").is_none() {
        return python::command_error(
            "CommandError",
            "--password is required: MAAS would prompt for it, and the stand-in never prompts.",
        );
    }
    if a.get("--email").is_none() {
        return python::command_error(
            "EmptyEmail",
            "You must input an email or provide it with --email",
        );
    }
    let mut c = match open(cmd, conf_path) {
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
        Err(e) => cmd.report(e),
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
        return python::command_error(
            "CommandError",
            "You must provide a username with --username.",
        );
    };
    let cmd = Cmd::new(
        prog,
        python::Frame(
            "/usr/lib/python3/dist-packages/maasserver/management/commands/apikey.py",
            115,
            "handle",
            "user = get_one(User.objects.filter(username=username))",
        ),
    );
    let mut c = match open(cmd, conf_path) {
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
        Err(e) => cmd.report(e),
    }
}
