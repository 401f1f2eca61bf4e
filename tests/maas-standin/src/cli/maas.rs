//! The snap's `maas` command: `init`, `config`, `status`, `migrate`, `config-tls`,
//! `createadmin`, `apikey`, and the API client commands (`login`, `logout`, `list`,
//! `<profile> <resource> <op>`).

use super::{fail, parse, python, report, require_root};
use crate::argparse::{Exit, Opt, Parsed, Parser};
use crate::conf::{self, ConfFile, DbSettings};
use crate::db;
use crate::paths::{self, Flavor};
use crate::services;
use crate::snapinfo;
use crate::util;

const MODES: &[&str] = &["region+rack", "region", "rack"];
const COMMANDS: &[&str] = &[
    "login",
    "logout",
    "list",
    "init",
    "config",
    "status",
    "migrate",
    "apikey",
    "createadmin",
    "config-tls",
];

const URL: Opt = Opt::value("--maas-url", "URL that MAAS should use for communicate from the nodes to MAAS and other controllers of MAAS.");
const FORCE: Opt = Opt::flag(
    "--force",
    "Skip confirmation questions when initialization has already been performed.",
);
/// Region-mode options; `maas config` takes all but the first (no `--database-uri`).
const REGION: &[Opt] = &[
    Opt::value(
        "--database-uri",
        "URI for the MAAS Postgres database in the form of postgres://user:pass@host:port/dbname",
    ),
    Opt::value("--vault-uri", "Vault URI"),
    Opt::value("--vault-approle-id", "Vault AppRole Role ID"),
    Opt::value(
        "--vault-wrapped-token",
        "Vault Wrapped Token for AppRole ID",
    ),
    Opt::value(
        "--vault-secrets-path",
        "Path prefix for MAAS secrets in Vault KV storage",
    ),
    Opt::value("--vault-secrets-mount", "Vault KV mount path"),
    Opt::value(
        "--num-workers",
        "Number of regiond worker processes to run.",
    ),
    Opt::flag(
        "--enable-debug",
        "Enable debug mode for detailed error and log reporting.",
    ),
    Opt::flag("--disable-debug", "Disable debug mode."),
    Opt::flag("--enable-debug-queries", "Enable query debugging."),
    Opt::flag("--disable-debug-queries", "Disable query debugging."),
];
/// Options `maas init` accepts in region modes without showing them; the stand-in ignores them.
const REGION_HIDDEN: &[Opt] = &[
    Opt::flag("--skip-admin", "").hidden(),
    Opt::value("--admin-username", "").hidden(),
    Opt::value("--admin-password", "").hidden(),
    Opt::value("--admin-email", "").hidden(),
    Opt::value("--admin-ssh-import", "").hidden(),
    Opt::value("--candid-agent-file", "").hidden(),
    Opt::value("--candid-domain", "").hidden(),
    Opt::value("--candid-admin-group", "").hidden(),
    Opt::value("--rbac-url", "").hidden(),
    Opt::value("--rbac-service-name", "").hidden(),
];
const RACK: &[Opt] = &[Opt::value("--secret", "Secret token required for the rack controller to talk to the region controller(s). Only used when in 'rack' mode.")];

/// Entry point for `maas ARGS...`.
pub fn main(args: &[String]) -> i32 {
    let Some(cmd) = args.first() else {
        return report(Parser::new("maas").error("the following arguments are required: COMMAND"));
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "init" => init(rest),
        "config" => config(rest),
        "status" => status(rest),
        "migrate" => migrate(rest),
        "config-tls" => config_tls(rest),
        "createadmin" => {
            super::admin::createadmin("maas createadmin", &region_conf_for_cli(), rest)
        }
        "apikey" => super::admin::apikey("maas apikey", &region_conf_for_cli(), rest),
        "login" => super::client::login(rest),
        "logout" => super::client::logout(rest),
        "list" => super::client::list(rest),
        "-h" | "--help" => {
            println!("usage: maas [-h] COMMAND ...\n\nMAAS stand-in (test double, not MAAS). Commands: {}", COMMANDS.join(", "));
            0
        }
        profile => match super::client::load_profile(profile) {
            Some(p) => super::client::call(profile, &p, rest),
            None => report(Parser::new("maas").invalid_choice("COMMAND", profile, COMMANDS)),
        },
    }
}

/// The snap's regiond.conf when the snap is initialised as a region, else the deb's.
fn region_conf_for_cli() -> std::path::PathBuf {
    let snap = Flavor::Snap.regiond_conf();
    if snap.exists() {
        snap
    } else {
        Flavor::Deb.regiond_conf()
    }
}

fn is_region(mode: &str) -> bool {
    mode == "region" || mode == "region+rack"
}

fn init_parser(mode: &str) -> Parser {
    let p = Parser::new(format!("maas init {mode}")).opts(&[URL]);
    if is_region(mode) {
        p.opts(REGION)
            .opts(&[FORCE])
            .opts(REGION_HIDDEN)
            .exclusive("--enable-debug", "--disable-debug")
            .exclusive("--enable-debug-queries", "--disable-debug-queries")
    } else {
        p.opts(RACK).opts(&[FORCE])
    }
}

fn init(args: &[String]) -> i32 {
    let mode_parser = Parser::new("maas init").pos("run_mode", Some(MODES)).rest();
    let mode = match args.first() {
        Some(m) if MODES.contains(&m.as_str()) => m.clone(),
        _ => {
            // argparse reports the first problem it meets: help, a bad mode, or none at all.
            let leading: Vec<&String> = args.iter().take_while(|a| a.starts_with('-')).collect();
            if leading.iter().any(|a| *a == "-h" || *a == "--help") {
                return report(Exit {
                    code: 0,
                    text: format!(
                        "{}\n\nrun modes: {}\n",
                        mode_parser.usage(),
                        MODES.join(", ")
                    ),
                });
            }
            return report(match args.iter().find(|a| !a.starts_with('-')) {
                Some(m) => mode_parser.invalid_choice("run_mode", m, MODES),
                None => mode_parser.error("the following arguments are required: run_mode"),
            });
        }
    };
    let p = init_parser(&mode);
    let a = match parse(&p, &args[1..]) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // MAAS prompts for these; a charm runs without a terminal, so refuse clearly instead.
    let mut needed = vec!["--maas-url"];
    if is_region(&mode) {
        needed.push("--database-uri");
    } else {
        needed.push("--secret");
    }
    let missing: Vec<&str> = needed.into_iter().filter(|o| a.get(o).is_none()).collect();
    if !missing.is_empty() {
        return report(p.error(&format!(
            "the following arguments are required: {} (MAAS would prompt for them; the stand-in never prompts)",
            missing.join(", ")
        )));
    }
    if let Err(code) = require_root("init") {
        return code;
    }
    if a.get("--vault-uri").is_some() {
        let missing: Vec<&str> = [
            "vault-approle-id",
            "vault-wrapped-token",
            "vault-secrets-path",
        ]
        .into_iter()
        .filter(|k| a.get(&format!("--{k}")).is_none())
        .collect();
        if !missing.is_empty() {
            return fail(format!(
                "Missing required vault arguments: {}",
                missing.join(", ")
            ));
        }
    }
    match do_init(&mode, &a) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Reported>() {
            Some(Reported(code)) => *code,
            // `cmd_init.handle` refuses with `CommandError` (SystemExit): the bare message,
            // exit 1 (`Error parsing database URI: …` from `get_database_settings`).
            None => fail(format!("{e:#}")),
        },
    }
}

fn num_workers(a: &Parsed) -> anyhow::Result<Option<String>> {
    match a.get("--num-workers") {
        Some(n) => match n.parse::<u32>() {
            Ok(v) if v >= 1 => Ok(Some(v.to_string())),
            _ => anyhow::bail!("--num-workers must be a positive integer, not {n:?}"),
        },
        None => Ok(None),
    }
}

/// `maas init MODE`, in the order of MAAS's `cmd_init.handle` and `_finalize_init`
/// (src/maascli/snap.py, 3.4 to master): the settings are checked, the services stop when the
/// snap was initialised before (`stop_pebble`), regiond.conf is written
/// (`MAASConfiguration().update`) and the shared secret file is deleted in region modes or
/// written from `--secret` in rack mode (`set_rpc_secret`), all before the database is
/// touched; then a database without tables is migrated (`db_need_init`, `migrate_db`, which
/// runs `maas-region dbupgrade`: one connection attempt, no retry), and only when that
/// succeeds is `snap_mode` written and the services started (`start_services`,
/// `set_current_mode`). A failed init therefore leaves the new regiond.conf, no secret, and
/// the previous `snap_mode` (none on a first init: no regiond runs). The shared secret,
/// `maas_uuid` and `maas_id` of a region are written by regiond at start-up (see
/// `regiond::Region::start_up`), not here.
fn do_init(mode: &str, a: &Parsed) -> anyhow::Result<()> {
    // MAAS checks nothing of the URL here: `cmd_init.handle` (src/maascli/snap.py, 3.4 to
    // master) hands it to `MAASConfiguration().update` (src/maascli/configfile.py), which writes
    // it into regiond.conf and rackd.conf as given; `--maas-url` has no argparse `type`. Only an
    // empty one is special: `required_prompt` asks for it (off a terminal `read_input` loops on
    // EOF for ever), which the stand-in refuses instead, in its own words.
    let url = a.get("--maas-url").unwrap_or_default();
    if url.is_empty() {
        anyhow::bail!("--maas-url is empty: MAAS would prompt for the MAAS URL (off a terminal, for ever); the stand-in never prompts");
    }
    let current = conf::read_snap_mode();
    if current != "none" && !a.flag("--force") {
        anyhow::bail!(
            "Controller has already been initialized (as '{current}'). MAAS would ask whether to initialize again; \
             the stand-in never prompts: re-run with --force."
        );
    }
    let workers = num_workers(a)?;
    let db = if is_region(mode) {
        Some(conf::parse_database_uri(
            a.get("--database-uri").unwrap_or_default(),
        )?)
    } else {
        None
    };
    if current != "none" {
        println!("Stopping services");
        services::systemctl("stop", services::SNAP_SERVICE);
    }
    if let Some(db) = &db {
        let mut rc = ConfFile::load(&Flavor::Snap.regiond_conf())?;
        rc.set("maas_url", url);
        rc.set_db(db);
        if let Some(w) = &workers {
            rc.set("num_workers", w);
        }
        set_debug(&mut rc, a);
        set_vault(&mut rc, a);
        rc.save(&Flavor::Snap.regiond_conf())?;
        conf::remove_secret(Flavor::Snap)?;
    } else {
        conf::write_secret(Flavor::Snap, a.get("--secret").unwrap_or_default())?;
    }
    if mode.contains("rack") {
        let mut rk = ConfFile::load(&Flavor::Snap.rackd_conf())?;
        rk.set("maas_url", url);
        set_debug(&mut rk, a);
        rk.save(&Flavor::Snap.rackd_conf())?;
    }
    // dbupgrade is a process of its own that reads the regiond.conf just written
    // (`migrate_db` in src/maascli/snap.py), so keepalive keys already there apply to it too.
    let migrated = match &db {
        Some(_) => migrate_if_needed(&ConfFile::load(&Flavor::Snap.regiond_conf())?.db())?,
        None => false,
    };
    conf::write_snap_mode(mode)?;
    println!("Starting services");
    services::systemctl("restart", services::SNAP_SERVICE);
    if migrated {
        println!("MAAS has been set up.\n\nIf you want to configure external authentication or use\nMAAS with Canonical RBAC, please run\n\n  sudo maas configauth\n\nTo create admins when not using external authentication, run\n\n  sudo maas createadmin\n\nTo enable TLS for secured communication, please run\n\n  sudo maas config-tls enable");
    }
    Ok(())
}

/// Records the Vault settings it was given (the stand-in has no Vault; the wrapped token is
/// single-use and secret, so it is not kept).
fn set_vault(c: &mut ConfFile, a: &Parsed) {
    for (opt, key) in [
        ("--vault-uri", "vault_uri"),
        ("--vault-approle-id", "vault_approle_id"),
        ("--vault-secrets-path", "vault_secrets_path"),
        ("--vault-secrets-mount", "vault_secrets_mount"),
    ] {
        if let Some(v) = a.get(opt) {
            c.set(key, v);
        }
    }
}

fn set_debug(c: &mut ConfFile, a: &Parsed) {
    if a.flag("--enable-debug") {
        c.set("debug", "true");
    } else if a.flag("--disable-debug") {
        c.set("debug", "false");
    }
    if a.flag("--enable-debug-queries") {
        c.set("debug_queries", "true");
    } else if a.flag("--disable-debug-queries") {
        c.set("debug_queries", "false");
    }
}

/// A failure already printed the way MAAS prints it; the command exits with this code.
#[derive(Debug)]
struct Reported(i32);
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Reported {}

/// `maas-region dbupgrade`'s traceback when the migrations fail (`Command.handle` in
/// src/maasserver/management/commands/dbupgrade.py: `conn.ensure_connection()`, one attempt,
/// then Django's `migrate`), ending in the exception psycopg raised through Django.
pub fn dbupgrade_traceback(
    snap: bool,
    s: &DbSettings,
    e: &anyhow::Error,
    connecting: bool,
) -> String {
    let file = format!(
        "{}/maasserver/management/commands/dbupgrade.py",
        python::site_packages(snap)
    );
    let script = if snap {
        "/snap/maas/current/bin/maas-region"
    } else {
        "/usr/sbin/maas-region"
    };
    if connecting {
        // Django's `DatabaseErrorWrapper.__exit__` (django/db/utils.py) raises its own
        // `OperationalError` `from` psycopg2's: Python prints psycopg2's traceback, then the
        // chain's separator, then Django's. libpq's messages end in a newline, which Python
        // prints too (the blank line after each exception line).
        let message = format!("{}\n", db::operational_error(s, e));
        // The snap carries Django and psycopg2 under `$SNAP/usr` (its PYTHONPATH), the deb
        // takes Ubuntu's.
        let system = if snap {
            "/snap/maas/current/usr/lib/python3/dist-packages"
        } else {
            "/usr/lib/python3/dist-packages"
        };
        let django = format!("{system}/django/db/backends");
        let (utils, psycopg) = (
            format!("{system}/django/db/utils.py"),
            format!("{system}/psycopg2/__init__.py"),
        );
        let (base, pg) = (
            format!("{django}/base/base.py"),
            format!("{django}/postgresql/base.py"),
        );
        let connect = [
            python::Frame(&base, 289, "ensure_connection", "self.connect()"),
            python::Frame(
                &base,
                270,
                "connect",
                "self.connection = self.get_new_connection(conn_params)",
            ),
            python::Frame(
                &pg,
                275,
                "get_new_connection",
                "connection = self.Database.connect(**conn_params)",
            ),
            python::Frame(
                &psycopg,
                122,
                "connect",
                "conn = _connect(dsn, connection_factory=connection_factory, **kwasync)",
            ),
        ];
        let cause = python::traceback(&connect, "psycopg2.OperationalError", &message);
        let outer = python::traceback(
            &[
                python::Frame(script, 8, "<module>", "sys.exit(run())"),
                python::Frame(&file, 235, "handle", "conn.ensure_connection()"),
                python::Frame(
                    &base,
                    288,
                    "ensure_connection",
                    "with self.wrap_database_errors:",
                ),
                python::Frame(
                    &utils,
                    91,
                    "__exit__",
                    "raise dj_exc_value.with_traceback(traceback) from exc_value",
                ),
                connect[0],
                connect[1],
                connect[2],
                connect[3],
            ],
            "django.db.utils.OperationalError",
            &message,
        );
        return format!(
            "{cause}\nThe above exception was the direct cause of the following exception:\n\n{outer}"
        );
    }
    let (class, message, frame) = {
        let (class, message) = db::django_exception(e);
        (
            class,
            message,
            python::Frame(&file, 253, "handle", "call_command("),
        )
    };
    python::traceback(
        &[
            python::Frame(script, 8, "<module>", "sys.exit(run())"),
            frame,
        ],
        class,
        &message,
    )
}

/// `str()` of the `CalledProcessError` `migrate_db`'s `check_call` raises when dbupgrade
/// fails (the stand-in's `$SNAP` is `/snap/maas/current`; MAAS's is the revision's directory).
const DBUPGRADE_FAILED: &str = "Command '['/snap/maas/current/bin/maas-region', 'dbupgrade']' returned non-zero exit status 1.";

/// Where Python's `subprocess.check_call` raises (the core24 snap's Python 3.12).
const CHECK_CALL_FRAME: python::Frame<'static> = python::Frame(
    "/snap/maas/current/usr/lib/python3.12/subprocess.py",
    413,
    "check_call",
    "raise CalledProcessError(retcode, cmd)",
);

/// `db_need_init` then `migrate_db` (src/maascli/snap.py): a database that cannot be asked
/// counts as needing init, so the migrations run and fail on it, as `dbupgrade`'s
/// `ensure_connection` does (src/maasserver/management/commands/dbupgrade.py). Whether it
/// migrated. A failure is printed as MAAS prints it: `migrate_db` runs `maas-region
/// dbupgrade`; off a terminal (a charm's hook) with `subprocess.check_call`, so dbupgrade's
/// traceback reaches stderr and the `CalledProcessError` escapes `cmd_init`, a `SnapCommand`,
/// whose `always_show` makes maascli's `main` re-raise it: Python's traceback of it, exit 1
/// ([`python::snap_command_traceback`]); on a terminal it captures the output and prints
/// `Failed to perfom migrations:` and it on stdout (exit 1).
fn migrate_if_needed(db_settings: &DbSettings) -> anyhow::Result<bool> {
    let fresh = db::connect(db_settings, "maas-standin-init")
        .and_then(|mut c| db::needs_init(&mut c))
        .unwrap_or(true);
    if !fresh {
        return Ok(false);
    }
    println!("Performing database migrations");
    let r = match db::connect(db_settings, "maas-standin-dbupgrade") {
        Err(e) => Err((e, true)),
        Ok(mut c) => db::migrate_version(&mut c, &crate::snapinfo::version(Flavor::Snap))
            .map(drop)
            .map_err(|e| (e, false)),
    };
    let Err((e, connecting)) = r else {
        return Ok(true);
    };
    let tb = dbupgrade_traceback(true, db_settings, &e, connecting);
    // SAFETY: isatty has no preconditions.
    let code = if unsafe { libc::isatty(1) } == 1 {
        println!("Failed to perfom migrations:\n{tb}\n");
        1
    } else {
        // dbupgrade's traceback is the child's stderr; then `check_call`'s
        // `CalledProcessError` leaves `cmd_init`, a `SnapCommand`: Python's traceback, exit 1.
        let snap = format!("{}/maascli/snap.py", python::site_packages(true));
        eprint!(
            "{tb}{}",
            python::snap_command_traceback(
                &[
                    python::Frame(&snap, 698, "handle", "self._finalize_init(mode)"),
                    python::Frame(&snap, 712, "_finalize_init", "perform_work("),
                    python::Frame(&snap, 363, "perform_work", "return cmd(*args, **kwargs)"),
                    python::Frame(&snap, 338, "migrate_db", "subprocess.check_call("),
                    CHECK_CALL_FRAME,
                ],
                "subprocess.CalledProcessError",
                DBUPGRADE_FAILED,
            )
        );
        1
    };
    Err(Reported(code).into())
}

fn config(args: &[String]) -> i32 {
    let p = Parser::new("maas config")
        .opts(&[
            Opt::flag(
                "--show",
                "Show the current configuration. Default when no parameters are provided.",
            ),
            Opt::flag(
                "--show-database-password",
                "Show the hidden database password.",
            ),
            Opt::flag("--show-secret", "Show the secret."),
            Opt::flag(
                "--parsable",
                "Output the current configuration in a parsable format.",
            ),
            URL,
        ])
        .opts(&REGION[1..])
        .opts(RACK)
        .exclusive("--enable-debug", "--disable-debug")
        .exclusive("--enable-debug-queries", "--disable-debug-queries");
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("config") {
        return code;
    }
    // `type=int` (ARGUMENTS in src/maascli/snap.py): argparse's refusal, exit 2.
    if let Some(n) = a
        .get("--num-workers")
        .filter(|n| n.trim().parse::<i64>().is_err())
    {
        return report(p.error(&format!(
            "argument --num-workers: invalid int value: {}",
            python::repr(n)
        )));
    }
    match do_config(&a) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Reported>() {
            Some(Reported(code)) => *code,
            // The stand-in's own failures (a file it cannot read or write), in its own
            // words: MAAS would print a traceback (`cmd_config` is a `SnapCommand`, see
            // `python::snap_command_traceback`).
            None => fail(format!("Error: {e:#}")),
        },
    }
}

fn do_config(a: &Parsed) -> anyhow::Result<()> {
    let mode = conf::read_snap_mode();
    let setting = [
        "--maas-url",
        "--secret",
        "--num-workers",
        "--enable-debug",
        "--disable-debug",
        "--enable-debug-queries",
        "--disable-debug-queries",
    ]
    .iter()
    .any(|o| a.has(o));
    if !setting || a.flag("--show") {
        let rc = ConfFile::load(&Flavor::Snap.regiond_conf())?;
        let rk = ConfFile::load(&Flavor::Snap.rackd_conf())?;
        show(&mode, &rc, &rk, a);
        return Ok(());
    }
    // Only the flags that apply to the running mode are accepted, as in MAAS.
    let mut unsupported = vec![];
    if a.has("--maas-url") && mode == "none" {
        unsupported.push("--maas-url");
    }
    if a.has("--secret") && mode != "rack" {
        unsupported.push("--secret");
    }
    if !unsupported.is_empty() {
        // `cmd_config._validate_flags` (src/maascli/snap.py): `print_msg` (stdout), exit 1.
        println!(
            "Following flags are not supported in '{mode}' mode: {}",
            unsupported.join(", ")
        );
        return Err(Reported(1).into());
    }
    let rc_path = Flavor::Snap.regiond_conf();
    let rk_path = Flavor::Snap.rackd_conf();
    let mut rc = ConfFile::load(&rc_path)?;
    let mut rk = ConfFile::load(&rk_path)?;
    let (rc0, rk0) = (rc.clone(), rk.clone());
    let mut secret_changed = false;
    if let Some(s) = a.get("--secret") {
        // `set_rpc_secret` (src/maascli/snap.py) writes it as given, an empty one deletes
        // the file; nothing checks that it is hex (rackd fails on it later).
        if conf::read_secret(Flavor::Snap).as_deref() != Some(s.trim()) {
            if s.is_empty() {
                conf::remove_secret(Flavor::Snap)?;
            } else {
                crate::util::write_file(&Flavor::Snap.secret(), s.as_bytes(), 0o640, Some("maas"))?;
            }
            secret_changed = true;
        }
    }
    // `maas config` writes the URL as given (no `type` in ARGUMENTS, no check in
    // `cmd_config.handle`); it is regiond's and rackd's configuration that refuses a bad one.
    if let Some(url) = a.get("--maas-url") {
        if is_region(&mode) {
            rc.set("maas_url", url);
        }
        if mode.contains("rack") {
            rk.set("maas_url", url);
        }
    }
    // An optional flag, checked against no mode: `MAASConfiguration.update` writes it to
    // regiond.conf whatever the snap runs (src/maascli/configfile.py).
    if let Some(w) = a.get("--num-workers") {
        rc.set("num_workers", w.trim());
    }
    if is_region(&mode) {
        set_debug(&mut rc, a);
        set_vault(&mut rc, a);
    } else {
        set_debug(&mut rk, a);
    }
    let changed = rc != rc0 || rk != rk0 || secret_changed;
    if rc != rc0 {
        rc.save(&rc_path)?;
    }
    if rk != rk0 {
        rk.save(&rk_path)?;
    }
    if changed {
        println!("Restarting services");
        services::systemctl("restart", services::SNAP_SERVICE);
    }
    Ok(())
}

/// Prints the configuration as MAAS does: `Mode: X` / `Settings:` then `key=value` lines, or
/// `mode=X` then the same lines with `--parsable`; passwords and secrets hidden unless asked.
fn show(mode: &str, rc: &ConfFile, rk: &ConfFile, a: &Parsed) {
    if a.flag("--parsable") {
        println!("mode={mode}");
    } else {
        println!("Mode: {mode}");
    }
    if mode == "none" {
        return;
    }
    if !a.flag("--parsable") {
        println!("Settings:");
    }
    let src = if is_region(mode) { rc } else { rk };
    println!("maas_url={}", src.get("maas_url").unwrap_or_default());
    if let Some(d) = src.get("debug") {
        println!("debug={d}");
    }
    if is_region(mode) {
        for k in [
            "database_host",
            "database_port",
            "database_name",
            "database_user",
        ] {
            println!("{k}={}", rc.get_or_default(k));
        }
        let pass = if a.flag("--show-database-password") {
            rc.get_or_default("database_pass")
        } else {
            "(hidden)".into()
        };
        println!("database_pass={pass}");
    }
    if mode == "rack" {
        let secret = if a.flag("--show-secret") {
            conf::read_secret(Flavor::Snap).unwrap_or_default()
        } else {
            "(hidden)".into()
        };
        println!("secret={secret}");
    } else {
        for k in ["num_workers", "debug_queries"] {
            if let Some(v) = rc.get(k) {
                println!("{k}={v}");
            }
        }
    }
}

/// Process ids whose `comm` is `name`, among the stand-in's processes of this file tree: those
/// with the same `MAAS_STANDIN_ROOT` as this process (none in a host), so a sandboxed test does
/// not see the daemons of hosts that run at the same time.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let root_of = |environ: &[u8]| {
        environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(format!("{}=", paths::ROOT_ENV).as_bytes()))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
    };
    let mine = std::env::var(paths::ROOT_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let mut pids: Vec<u32> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            (root_of(&environ) == mine).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The services pebble's plan has (MAAS 3.5+: `snap/local/tree/usr/share/maas/pebble/layers/`),
/// the stand-in process that stands for each, if any, and when the plan enables it.
const PEBBLE_SERVICES: &[(&str, Option<&str>, &str)] = &[
    ("agent", Some("maas-agent"), "rack"),
    ("apiserver", Some("maas-apiserver"), "region"),
    ("bind9", Some("named"), "region"),
    ("dhcpd", Some("rackd"), "dhcp"),
    ("dhcpd6", None, "never"),
    ("http", None, "any"),
    ("ntp", None, "any"),
    ("proxy", None, "region"),
    ("rackd", Some("rackd"), "rack"),
    ("regiond", Some("regiond"), "region"),
    ("syslog", None, "any"),
    ("temporal", Some("temporal-server"), "region"),
    ("temporal-worker", Some("regiond"), "region"),
];

/// The programs of MAAS 3.4's supervisord.conf (`snap/local/tree/usr/share/maas/
/// supervisord.conf.template`, rendered by `render_supervisord` in `src/maascli/snap.py`):
/// name, the stand-in process, the modes that have it (`region`: regiond; `rack`: rackd and
/// the dhcpd programs; `any`: every mode), and when it runs (`auto`: autostart; `dhcp`: rackd
/// starts it while it serves DHCP; `regiond`: regiond's service monitor starts it; `never`).
const SUPERVISOR_PROGRAMS: &[(&str, Option<&str>, &str, &str)] = &[
    ("bind9", Some("named"), "any", "auto"),
    ("dhcpd", Some("rackd"), "rack", "dhcp"),
    ("dhcpd6", None, "rack", "never"),
    ("http", None, "any", "auto"),
    ("ntp", None, "any", "auto"),
    ("proxy", None, "any", "regiond"),
    ("rackd", Some("rackd"), "rack", "auto"),
    ("regiond", Some("regiond"), "region", "auto"),
    ("syslog", None, "any", "regiond"),
];

fn status(args: &[String]) -> i32 {
    let p = Parser::new("maas status");
    if let Err(code) = parse(&p, args) {
        return code;
    }
    if let Err(code) = require_root("status") {
        return code;
    }
    let mode = conf::read_snap_mode();
    if mode == "none" {
        // On stdout, exit 1: `cmd_status.handle` in src/maascli/snap.py (`print_msg`).
        println!("MAAS is not configured");
        return 1;
    }
    let (text, code) = match snapinfo::supervisor() {
        snapinfo::Supervisor::Pebble => pebble_services(&mode),
        snapinfo::Supervisor::Supervisord => supervisorctl_status(&mode),
    };
    print!("{text}");
    code
}

/// The stand-in process standing for the snap's supervisor (pebble or supervisord) runs.
fn supervisor_up() -> bool {
    !pids_named("pebble").is_empty()
}

/// What MAAS 3.5+ prints for `maas status`: `run-pebble services`, a table pebble's CLI writes
/// (`internals/cli/cmd_services.go`: `Service Startup Current Since`, Go's tabwriter with
/// minimum width 5 and padding 2, `-` for a service that never started). When pebble's
/// daemon is down the CLI fails (`error: cannot communicate with server: …` on its stderr,
/// exit 1) and MAAS prints `Pebble exited with error code 1 and the following output:` and
/// exits with that code (`cmd_status.handle`).
fn pebble_services(mode: &str) -> (String, i32) {
    if !supervisor_up() {
        eprintln!("error: cannot communicate with server: Get \"http://localhost/v1/services?names=\": dial unix /var/snap/maas/common/pebble/.pebble.socket: connect: no such file or directory");
        return (
            "Pebble exited with error code 1 and the following output:\n".into(),
            1,
        );
    }
    // rackd writes dhcpd.conf exactly while the region has it serve DHCP.
    let dhcp_serving = Flavor::Snap.dhcpd_conf().exists();
    let since = format!("today at {} UTC", &util::now_rfc3339()[11..16]);
    let mut rows = vec![[
        "Service".to_string(),
        "Startup".into(),
        "Current".into(),
        "Since".into(),
    ]];
    for (svc, proc_name, needs) in PEBBLE_SERVICES {
        let enabled = match *needs {
            "rack" => mode.contains("rack"),
            "region" => is_region(mode),
            "dhcp" => mode.contains("rack") && dhcp_serving,
            "any" => true,
            _ => false,
        };
        let running = match proc_name {
            Some(n) => !pids_named(n).is_empty(),
            None => true,
        };
        let (startup, current) = match (enabled, running) {
            (true, true) => ("enabled", "active"),
            (true, false) => ("enabled", "inactive"),
            (false, _) => ("disabled", "inactive"),
        };
        let when = if current == "active" {
            since.as_str()
        } else {
            "-"
        };
        rows.push([svc.to_string(), startup.into(), current.into(), when.into()]);
    }
    (tabwriter(&rows, 5, 2), 0)
}

/// Go's text/tabwriter with `' '` padding, as pebble uses it: each column as wide as its
/// widest cell plus `padding`, at least `min_width`; the last column is not padded.
fn tabwriter<const N: usize>(rows: &[[String; N]], min_width: usize, padding: usize) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max((c.chars().count() + padding).max(min_width));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < N {
                out.push_str(&format!("{c:<w$}", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Seconds since process `pid` started (from /proc), if it can be told.
fn uptime_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime, clock ticks after boot), counted after the `(comm)` field.
    let after = stat.rsplit_once(')')?.1;
    let start: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((up as u64).saturating_sub(start / hz))
}

/// Python's `str(timedelta)` for whole seconds, as supervisor shows an uptime
/// (`_interpretProcessInfo` in supervisor/rpcinterface.py): `0:01:02`, `1 day, 2:03:04`.
fn timedelta(secs: u64) -> String {
    let (days, rest) = (secs / 86400, secs % 86400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// What MAAS 3.4 and older print for `maas status`: `run-supervisorctl status`, printed as it
/// is (`cmd_status.handle` in 3.4's src/maascli/snap.py). supervisorctl (`do_status`,
/// `_show_statuses` in supervisor/supervisorctl.py) writes one line per program in lexical
/// order, the name padded to the longest name plus 3 (at least 33), the state padded to 10,
/// then `pid N, uptime H:MM:SS` or `Not started`; it exits 3 when a listed program is stopped
/// (3.4's dhcpd6 always is, so `maas status` exits 3 on a healthy rack too, and MAAS passes that
/// on). With supervisord down it prints `unix://…/sock no such file` and exits 4.
fn supervisorctl_status(mode: &str) -> (String, i32) {
    if !supervisor_up() {
        return (
            "unix:///var/snap/maas/current/supervisord/sock no such file\n".into(),
            4,
        );
    }
    let dhcp_serving = Flavor::Snap.dhcpd_conf().exists();
    let regiond_runs = !pids_named("regiond").is_empty();
    let programs: Vec<_> = SUPERVISOR_PROGRAMS
        .iter()
        .filter(|(_, _, modes, _)| match *modes {
            "region" => is_region(mode),
            "rack" => mode.contains("rack"),
            _ => true,
        })
        .collect();
    let width = programs
        .iter()
        .map(|p| p.0.len())
        .max()
        .unwrap_or(0)
        .max(30)
        + 3;
    let mut out = String::new();
    let mut code = 0;
    for (name, proc_name, _, start) in programs {
        // The stand-in runs `named` for regions only; a 3.4 rack's bind9 runs under
        // supervisord all the same, so it is shown with the supervisor's pid.
        let proc_name = match *name {
            "bind9" if !is_region(mode) => &None,
            _ => proc_name,
        };
        let pid = match (*start, proc_name) {
            ("never", _) => None,
            ("dhcp", Some(n)) if dhcp_serving => pids_named(n).first().copied(),
            ("dhcp", _) => None,
            ("regiond", _) if !regiond_runs => None,
            (_, Some(n)) => pids_named(n).first().copied(),
            (_, None) => pids_named("pebble").first().copied(),
        };
        let (state, desc) = match pid {
            Some(pid) => (
                "RUNNING",
                format!(
                    "pid {pid}, uptime {}",
                    timedelta(uptime_of(pid).unwrap_or(0))
                ),
            ),
            None => {
                code = 3;
                ("STOPPED", "Not started".to_string())
            }
        };
        out.push_str(&format!("{name:<width$}{state:<10}{desc}\n"));
    }
    (out, code)
}

/// `maas migrate [--configure]` (src/maascli/snap.py `cmd_migrate.handle`): root only; with
/// the hidden `--configure` (the snap's install and post-refresh hook: snap/hooks/install, to
/// which post-refresh is a link, runs `maas migrate --configure`) it migrates in `region` and
/// `region+rack` modes and does nothing, exit 0, in `rack` and `none`; without it, `none` is
/// `MAAS is not configured` and `rack` `Mode 'rack' is not connected to a database. No
/// migrations to perform.` (exit 1). Migrating is `migrate_db()`: `maas-region dbupgrade` under
/// `check_call`, so a failure is dbupgrade's traceback on stderr, then argparse's error for
/// the `CalledProcessError` (exit 2).
fn migrate(args: &[String]) -> i32 {
    let p = Parser::new("maas migrate").opts(&[Opt::flag("--configure", "").hidden()]);
    let a = match parse(&p, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(code) = require_root("migrate") {
        return code;
    }
    let mode = conf::read_snap_mode();
    let region = mode == "region" || mode == "region+rack";
    if a.flag("--configure") && !region {
        return 0;
    }
    if mode == "none" {
        println!("MAAS is not configured");
        return 1;
    }
    if mode == "rack" {
        println!("Mode 'rack' is not connected to a database. No migrations to perform.");
        return 1;
    }
    let settings = match ConfFile::load(&Flavor::Snap.regiond_conf()) {
        Ok(c) => c.db(),
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    let version = crate::snapinfo::version(Flavor::Snap);
    let r = match db::connect(&settings, "maas-standin-dbupgrade") {
        Err(e) => Err((e, true)),
        Ok(mut c) => db::migrate_version(&mut c, &version).map_err(|e| (e, false)),
    };
    match r {
        Ok(applied) => {
            print!("{}", super::region::migrate_output(&applied));
            0
        }
        Err((e, connecting)) => {
            // As `maas init`'s: the child's traceback, then `cmd_migrate`'s (a `SnapCommand`).
            let snap = format!("{}/maascli/snap.py", python::site_packages(true));
            let line = if a.flag("--configure") { 983 } else { 998 };
            eprint!(
                "{}{}",
                dbupgrade_traceback(true, &settings, &e, connecting),
                python::snap_command_traceback(
                    &[
                        python::Frame(&snap, line, "handle", "sys.exit(migrate_db())"),
                        python::Frame(&snap, 338, "migrate_db", "subprocess.check_call("),
                        CHECK_CALL_FRAME,
                    ],
                    "subprocess.CalledProcessError",
                    DBUPGRADE_FAILED,
                )
            );
            1
        }
    }
}

/// `Certificate.from_pem` (src/provisioningserver/certificates.py): the key must be
/// unencrypted, the PEM readable, and the key the certificate's; its `CertificateError`
/// messages. The certificate and CA chain are stored as given (PEM).
fn check_certificate(key: &str, cert: &str) -> Result<(), String> {
    if key.contains("ENCRYPTED") {
        return Err("Private key can't have a passphrase".into());
    }
    let pkey = openssl::pkey::PKey::private_key_from_pem(key.as_bytes())
        .map_err(|_| "Invalid PEM material".to_string())?;
    let x509 = openssl::x509::X509::from_pem(cert.as_bytes())
        .map_err(|_| "Invalid PEM material".to_string())?;
    let public = x509
        .public_key()
        .map_err(|_| "Invalid PEM material".to_string())?;
    if !public.public_eq(&pkey) {
        return Err("Private and public keys don't match".into());
    }
    Ok(())
}

/// The region this host runs, for the region commands of `maas`: the snap in a region mode,
/// else the debs' region when /etc/maas/regiond.conf names a database.
fn region_flavor() -> Option<Flavor> {
    if is_region(&conf::read_snap_mode()) {
        return Some(Flavor::Snap);
    }
    ConfFile::load(&Flavor::Deb.regiond_conf())
        .ok()
        .filter(|c| c.get("database_host").is_some() || c.get("database_name").is_some())
        .map(|_| Flavor::Deb)
}

/// `maas config-tls enable KEY CERT [--cacert F] [-p PORT] [--yes]` / `maas config-tls disable`,
/// as src/maasserver/management/commands/config_tls.py `Command.handle`: the files are
/// argparse `FileType`s (an unreadable one is argparse's error, exit 2); without `--yes` it
/// asks `prompt_yes_no` (src/maascli/init.py), and only `y` proceeds (off a terminal MAAS's
/// `read_input` loops on EOF; the stand-in takes the empty answer: nothing changes, exit 0);
/// the key and certificate go through `Certificate.from_pem`, and its `CertificateError` (not
/// a `CommandError`) is reported by maascli's `main` (`maas: error: …`, exit 2). Then
/// `_update_tls_config` stores the `tls` secret and `tls_port` in the database and notifies
/// `sys_reverse_proxy`: every region re-renders nginx with the same certificate and reloads it
/// (the stand-in's regiond reads the settings every second). `disable` deletes both. Nothing
/// is restarted by the command itself.
fn config_tls(args: &[String]) -> i32 {
    let Some(action) = args.first() else {
        return report(
            Parser::new("maas config-tls").error("the following arguments are required: command"),
        );
    };
    let p = match action.as_str() {
        "enable" => Parser::new("maas config-tls enable")
            .opts(&[
                Opt::value("--cacert", "path to CA certificates chain in PEM format"),
                Opt::value("--port", "HTTPS port (default: 5443)"),
                Opt::flag("--yes", "Skip interactive confirmation (default: False)"),
            ])
            .pos("key", None)
            .pos("cert", None),
        "disable" => Parser::new("maas config-tls disable"),
        other => {
            return report(Parser::new("maas config-tls").invalid_choice(
                "command",
                other,
                &["enable", "disable"],
            ))
        }
    };
    // argparse's `-p` is `--port`.
    let rest: Vec<String> = args[1..]
        .iter()
        .map(|a| {
            if a == "-p" {
                "--port".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let parsed = match parse(&p, &rest) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = require_root("config-tls") {
        return code;
    }
    let Some(flavor) = region_flavor() else {
        return fail("MAAS is not initialised as a region.");
    };
    let tls = if action == "enable" {
        let port: u16 = match parsed.get("--port").map(|v| v.parse::<u16>()) {
            None => 5443,
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                return report(p.error(&format!(
                    "argument -p/--port: invalid int value: '{}'",
                    parsed.get("--port").unwrap_or_default()
                )))
            }
        };
        let mut files = vec![];
        let mut names: Vec<(&str, String)> = vec![
            ("key", parsed.positionals[0].clone()),
            ("cert", parsed.positionals[1].clone()),
        ];
        if let Some(ca) = parsed.get("--cacert") {
            names.push(("--cacert", ca.to_string()));
        }
        for (arg, f) in &names {
            match std::fs::read_to_string(f) {
                Ok(t) => files.push(t),
                Err(e) => return report(p.error(&crate::argparse::cannot_open(arg, f, &e))),
            }
        }
        if !parsed.flag("--yes") {
            println!("Once TLS is enabled, the MAAS UI and API won't be accessible over HTTP anymore, proceed? (y/n): ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if answer.trim().to_lowercase() != "y" {
                return 0;
            }
        }
        if let Err(msg) = check_certificate(&files[0], &files[1]) {
            return python::uncaught(
                flavor == Flavor::Snap,
                &[python::Frame(
                    &format!(
                        "{}/provisioningserver/certificates.py",
                        python::site_packages(flavor == Flavor::Snap)
                    ),
                    302,
                    "from_pem",
                    "raise CertificateError(\"Private and public keys don't match\")",
                )],
                "provisioningserver.certificates.CertificateError",
                &msg,
            );
        }
        Some(crate::nginx::Tls {
            key: files[0].clone(),
            cert: files[1].clone(),
            cacert: files.get(2).cloned().unwrap_or_default(),
            port,
        })
    } else {
        None
    };
    let conf = match ConfFile::load(&flavor.regiond_conf()) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e:#}")),
    };
    let r = db::connect(&conf.db(), "maas-standin-config-tls")
        .and_then(|mut c| db::set_tls_config(&mut c, tls.as_ref()));
    match r {
        Ok(()) => 0,
        Err(e) => python::uncaught(
            flavor == Flavor::Snap,
            &[],
            "django.db.utils.OperationalError",
            &db::operational_error(&conf.db(), &e),
        ),
    }
}
