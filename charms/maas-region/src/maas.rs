//! MAAS on the host: where each flavour keeps its files, the commands the charm runs, and the
//! parsing of what MAAS writes or prints. Commands are built here (pure) and run elsewhere.

use crate::config::InstallMethod;
use charm_lib::Cmd;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The snap's CLI.
pub const SNAP_MAAS: &str = "/snap/bin/maas";
/// The deb's management command.
pub const DEB_MAAS_REGION: &str = "maas-region";
/// The deb's API client (from maas-cli, a dependency of maas-region-api).
pub const DEB_MAAS: &str = "maas";
/// The deb region service.
pub const DEB_REGIOND: &str = "maas-regiond";
/// Debian packages of a deb region (the seed's list).
pub const DEB_PACKAGES: [&str; 2] = ["maas-region-api", "maas-dns"];

/// regiond.conf: MAAS's own record of its URL and database, the charm's source of truth for
/// "is this unit initialised, and against what".
pub fn regiond_conf(m: InstallMethod) -> &'static Path {
    Path::new(match m {
        InstallMethod::Snap => "/var/snap/maas/current/regiond.conf",
        InstallMethod::Deb => "/etc/maas/regiond.conf",
    })
}

/// The MAAS shared secret file. regiond writes it at start-up (`inner_start_up` in MAAS's
/// src/maasserver/start_up.py), some time after `maas init` (which deletes it in region modes)
/// or `dbupgrade` (which does not write it).
pub fn secret_file(m: InstallMethod) -> &'static Path {
    Path::new(match m {
        InstallMethod::Snap => "/var/snap/maas/common/maas/secret",
        InstallMethod::Deb => "/var/lib/maas/secret",
    })
}

/// The snap's mode file (`region`, `rack`, `region+rack`). MAAS writes it only once `maas
/// init` has run its migrations (`_finalize_init` in src/maascli/snap.py); a missing file is
/// mode `none` (`get_current_mode`), in which no regiond runs.
pub const SNAP_MODE: &str = "/var/snap/maas/common/snap_mode";

/// The snap mode `snap_mode`'s content stands for: `none` when there is no file.
pub fn snap_mode(content: Option<&str>) -> &str {
    content
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("none")
}

/// What this charm records after a `maas init` that exited 0: the mode and the database it
/// initialised against, the credentials only as a digest. A failed re-init leaves MAAS's
/// files looking initialised (the new regiond.conf, the previous `snap_mode`), so only this
/// record tells an init that finished from one that did not.
pub fn init_record(mode: &str, db: &DbSettings) -> String {
    let d = Sha256::new()
        .chain_update(b"maas-region init\0")
        .chain_update(db.uri().as_bytes())
        .finalize();
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{mode} {} {hex}", db.location())
}

/// Seconds the leader waits for regiond to write the shared secret after it started.
pub const SECRET_WAIT_SECONDS: u32 = 30;

/// Waits (bounded) for the shared secret file to have content and prints it; exit 124 when
/// the time is up. The secret travels on stdout only, never on an argv.
pub fn wait_for_secret(m: InstallMethod, seconds: u32) -> Cmd {
    let f = secret_file(m).display().to_string();
    Cmd::new(
        "timeout",
        [
            seconds.to_string(),
            "sh".into(),
            "-c".into(),
            format!("until test -s {f}; do sleep 0.5; done; cat {f}"),
        ],
    )
    .allow_failure()
}

/// The API client program for each flavour.
pub fn cli(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Snap => SNAP_MAAS,
        InstallMethod::Deb => DEB_MAAS,
    }
}

/// The program that runs admin commands (`createadmin`, `apikey`).
pub fn admin(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Snap => SNAP_MAAS,
        InstallMethod::Deb => DEB_MAAS_REGION,
    }
}

/// How a region reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSettings {
    /// Host or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// Role.
    pub user: String,
    /// Password.
    pub password: String,
}

impl DbSettings {
    /// The URI for `maas init region --database-uri`.
    pub fn uri(&self) -> String {
        crate::render::database_uri(
            &self.user,
            &self.password,
            &self.host,
            self.port,
            &self.name,
        )
    }

    /// Where the database is, without credentials: safe for relation data and logs.
    pub fn location(&self) -> String {
        format!("{}@{}:{}", self.name, self.host, self.port)
    }

    /// Masks the password (raw and URI-encoded) in `cmd`.
    fn mask(&self, cmd: Cmd) -> Cmd {
        cmd.sensitive(&self.password)
            .sensitive(&crate::render::percent_encode(&self.password))
            .sensitive(&self.uri())
    }
}

/// What regiond.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegiondConf {
    /// `maas_url`.
    pub maas_url: Option<String>,
    /// The database settings, when `database_host` is there.
    pub db: Option<DbSettings>,
}

impl RegiondConf {
    /// Parses MAAS's YAML; keys MAAS leaves at their default are filled as MAAS would.
    pub fn parse(text: &str) -> Result<RegiondConf, String> {
        let v: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("regiond.conf is not YAML: {e}"))?;
        let get = |k: &str| -> Option<String> {
            match v.get(k)? {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let db = get("database_host").map(|host| DbSettings {
            host,
            port: get("database_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432),
            name: get("database_name").unwrap_or_else(|| "maasdb".into()),
            user: get("database_user").unwrap_or_else(|| "maas".into()),
            password: get("database_pass").unwrap_or_default(),
        });
        Ok(RegiondConf {
            maas_url: get("maas_url").map(|u| u.trim_end_matches('/').to_string()),
            db,
        })
    }
}

/// `maas init <mode> --maas-url URL --database-uri URI --force` (the URI is masked); `mode` is
/// `region`, or `region+rack` when a rack unit shares this host.
pub fn snap_init(mode: &str, url: &str, db: &DbSettings) -> Cmd {
    db.mask(Cmd::new(
        SNAP_MAAS,
        [
            "init",
            mode,
            "--maas-url",
            url,
            "--database-uri",
            &db.uri(),
            "--force",
        ],
    ))
}

/// The snap mode this unit needs: `region+rack` when a rack on `rpc` runs on this very host
/// (the rack charm then does not register separately), else `region`.
pub fn wanted_mode(own_hostname: &str, rack_hostnames: &[String]) -> &'static str {
    if rack_hostnames
        .iter()
        .any(|h| h.eq_ignore_ascii_case(own_hostname))
    {
        "region+rack"
    } else {
        "region"
    }
}

/// The TCP ports a MAAS rack agent dials on the host of the rack's `maas_url` (here the region
/// VIP), by the snap track the regions run (racks run the same MAAS). The agent config's
/// `controllers` are the hostnames of rackd's `maas_url`s (`RackAgent._getConfiguration` in
/// src/provisioningserver/rackdservices/external.py), and the agent dials the first one:
/// 3.5 Temporal on 5271 (src/maasagent/cmd/maas-agent/main.go `TemporalPort`); 3.6 and 3.7
/// also the internal API, `https://<controller>:5242/MAAS/a/v3internal`
/// (`defaultTemporalPort`, `defaultMAASInternalAPIPort`); master 5271 again
/// (src/maasagent/internal/daemon/services.go). 3.4 and older have no Temporal: none. A track
/// that is not a version (`latest`) gets 5271, which every agent since 3.5 needs.
pub fn agent_ports(channel: &str) -> &'static [u16] {
    let track = channel.split('/').next().unwrap_or("");
    let mut v = track.split('.').map(|p| p.parse::<u32>());
    match (v.next(), v.next()) {
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) < (3, 5) => &[],
        (Some(Ok(major)), None) if major < 3 => &[],
        (Some(Ok(3)), Some(Ok(6 | 7))) => &[5271, 5242],
        _ => &[5271],
    }
}

/// `maas config --maas-url URL` (restarts the snap's services when the URL changes).
pub fn snap_config_url(url: &str) -> Cmd {
    Cmd::new(SNAP_MAAS, ["config", "--maas-url", url])
}

/// `maas-region local_config_set --database-host … --database-pass …` (password masked).
pub fn deb_set_database(db: &DbSettings) -> Cmd {
    let port = db.port.to_string();
    db.mask(Cmd::new(
        DEB_MAAS_REGION,
        [
            "local_config_set",
            "--database-host",
            &db.host,
            "--database-port",
            &port,
            "--database-name",
            &db.name,
            "--database-user",
            &db.user,
            "--database-pass",
            &db.password,
        ],
    ))
}

/// `maas-region local_config_set --maas-url URL`.
pub fn deb_set_url(url: &str) -> Cmd {
    Cmd::new(DEB_MAAS_REGION, ["local_config_set", "--maas-url", url])
}

/// The TCP keepalive every regiond connection to PostgreSQL gets, in regiond.conf's keys
/// (MAAS's `RegionConfiguration`, src/maasserver/config.py; handed to libpq by
/// `_get_default_db_config`, src/maasserver/djangosettings/settings.py). MAAS's defaults (15 s
/// idle, 15 s between probes, 2 probes) leave a region's idle connections, its notification
/// listener among them, on a vanished database host for up to 45 s, and up to 15 s after the
/// database VIP moved: until then the region misses what other regions change, and every
/// pooled connection costs a failed request. 3 s idle, 1 s between probes and 3 probes notice
/// a silent peer within 6 s, and a moved VIP at the next probe (the new holder answers it with
/// a reset). A probe is answered by the database host's kernel, not by PostgreSQL, so a busy
/// database is never mistaken for a dead one, and three probes ride out two lost packets.
/// Connections with a query in flight are TCP retransmission's business, which MAAS has no
/// option for.
pub const DB_KEEPALIVE: [(&str, u32); 3] = [
    ("database_keepalive_idle", 3),
    ("database_keepalive_interval", 1),
    ("database_keepalive_count", 3),
];

/// `maas-region local_config_set --database-keepalive-idle … --database-keepalive-interval …
/// --database-keepalive-count …` ([`DB_KEEPALIVE`]): the deb's way to set them (the management
/// command offers every `RegionConfiguration` option, src/maasserver/management/commands/
/// _config.py). The snap's `maas config` has no such option (src/maascli/snap.py
/// `cmd_config`); there the charm writes regiond.conf itself
/// ([`crate::render::regiond_conf_with_keepalive`]), which `maas init` keeps
/// (`MAASConfiguration.update` merges into the file, src/maascli/configfile.py).
pub fn deb_set_keepalive() -> Cmd {
    let mut args = vec!["local_config_set".to_string()];
    for (key, value) in DB_KEEPALIVE {
        args.push(format!("--{}", key.replace('_', "-")));
        args.push(value.to_string());
    }
    Cmd::new(DEB_MAAS_REGION, args)
}

/// `maas-region dbupgrade`: the migrations, run by the leader only.
pub fn deb_dbupgrade() -> Cmd {
    Cmd::new(DEB_MAAS_REGION, ["dbupgrade"])
}

/// `maas-region edit_named_options --migrate-conflicting-options`: once per unit.
pub fn deb_edit_named_options() -> Cmd {
    Cmd::new(
        DEB_MAAS_REGION,
        ["edit_named_options", "--migrate-conflicting-options"],
    )
}

/// Whether a failed `maas init` or `maas-region dbupgrade` failed because the database could
/// not be reached *yet*: refused or timed-out connections, a server starting up or shutting
/// down or ending the session (Patroni restarting or demoting it), a replica answering
/// read-only while a failover settles. A retry fixes these (the
/// database VIP moves to the primary within seconds), so the unit waits and a later hook tries
/// again. Everything else (a URI MAAS refuses, credentials it rejects, a missing
/// database) needs someone to act and blocks the unit.
pub fn is_transient_db_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    const PERMANENT: [&str; 6] = [
        "password authentication failed",
        "error parsing database uri",
        "unsupported parameters",
        "does not exist",
        "permission denied",
        "authentication failed",
    ];
    const TRANSIENT: [&str; 19] = [
        // The server ended the session: a Patroni restart, demotion or switchover.
        "terminating connection due to administrator command",
        "terminating connection due to conflict with recovery",
        "the database system is not yet accepting connections",
        "the database system is not accepting connections",
        "connection to server was lost",
        "could not receive data from server",
        "connection closed",
        "connection refused",
        "timeout expired",
        "timed out",
        "no route to host",
        "network is unreachable",
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "read-only transaction",
        "server closed the connection unexpectedly",
        "connection reset",
        "too many clients already",
    ];
    !PERMANENT.iter().any(|p| m.contains(p)) && TRANSIENT.iter().any(|t| m.contains(t))
}

/// Whether a failed `maas init` may succeed if tried again within seconds: the database was not
/// reachable yet ([`is_transient_db_error`]), or PostgreSQL had no pg_hba line for this unit
/// yet: the database charm lists a unit in `allowed-units` when it has rendered the line, and
/// Patroni applies it in its next loop, so the first connection can come a second too early.
pub fn is_worth_retrying_now(message: &str) -> bool {
    is_transient_db_error(message) || message.contains("no pg_hba.conf entry")
}

/// How often, and how far apart (seconds), a hook tries `maas init` before it gives up.
pub const INIT_TRIES: u32 = 10;
/// See [`INIT_TRIES`].
pub const INIT_PAUSE_S: u32 = 3;

/// One service line of `maas status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// `enabled` / `disabled` (pebble); `None` from supervisorctl, which has no such column.
    pub startup: Option<String>,
    /// `active` / `inactive` / `backoff` / `error` (pebble's words; supervisorctl's states are
    /// translated: RUNNING active, STOPPED and EXITED inactive, FATAL error, the others
    /// lowercased).
    pub current: String,
    /// Pebble: when it entered that state (`today at 10:00 UTC`, `-`). supervisorctl: its
    /// description (`pid 12, uptime 0:01:02`, `Not started`).
    pub since: String,
}

impl ServiceState {
    /// Whether the service should run but does not: enabled (pebble) or started once
    /// (supervisord, where `Not started` marks the programs that do not autostart), and not
    /// active.
    pub fn is_down(&self) -> bool {
        let wanted = match &self.startup {
            Some(s) => s == "enabled",
            None => self.since != "Not started",
        };
        wanted && self.current != "active"
    }
}

/// supervisord's process states (supervisor/states.py `ProcessStates`).
const SUPERVISOR_STATES: [&str; 8] = [
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN",
];

/// Parses `maas status` in either form MAAS prints it (`cmd_status.handle` in MAAS's
/// src/maascli/snap.py): from 3.5 pebble's table (`Service Startup Current Since`, one service
/// per line), up to 3.4 supervisorctl's lines (`name STATE description`). Anything else (MAAS
/// not configured, the supervisor down) is no service.
pub fn parse_status(text: &str) -> BTreeMap<String, ServiceState> {
    let pebble = text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.starts_with(&["Service", "Startup", "Current"])
    });
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, second, third) = (w.next()?, w.next()?, w.next());
            if pebble {
                if name == "Service" {
                    return None;
                }
                return Some((
                    name.to_string(),
                    ServiceState {
                        startup: Some(second.into()),
                        current: third?.into(),
                        since: w.collect::<Vec<_>>().join(" "),
                    },
                ));
            }
            if !SUPERVISOR_STATES.contains(&second) {
                return None;
            }
            let current = match second {
                "RUNNING" => "active".to_string(),
                "STOPPED" | "EXITED" => "inactive".into(),
                "FATAL" => "error".into(),
                other => other.to_ascii_lowercase(),
            };
            let since = third.into_iter().chain(w).collect::<Vec<_>>().join(" ");
            Some((
                name.to_string(),
                ServiceState {
                    startup: None,
                    current,
                    since,
                },
            ))
        })
        .collect()
}

/// MAAS's reason in what a failed MAAS command printed: MAAS's commands are Python, and what
/// ends a failure is the exception. With tracebacks (`Traceback (most recent call last):`),
/// the exception line of the last one that is not `subprocess.CalledProcessError`: the snap's
/// `maas init` and `maas migrate` run `maas-region dbupgrade` with `check_call`
/// (`migrate_db` in MAAS's src/maascli/snap.py), so dbupgrade's own traceback (psycopg2's
/// exception, then Django's raised from it) comes first on stderr, and maascli's traceback of
/// the `CalledProcessError` after it (they are `SnapCommand`s, whose exceptions `main` in
/// src/maascli/__init__.py re-raises), saying only that the subprocess failed. Other snap
/// commands end in argparse's `usage:` and `PROG: error: …`; without a traceback, the last
/// non-empty line. A leading exception class (`django.db.utils.OperationalError: `,
/// `CommandError: `, Django's `AlreadyExistingUser: `) and argparse's `PROG: error: ` are
/// left out: what remains is the message (libpq's words for a database that cannot be
/// reached, which hold no password). At most 300 characters.
pub fn reason(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    // The exception line of each traceback: the frames are indented, the exception line is
    // the first after them that is not.
    let exceptions: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end() == "Traceback (most recent call last):")
        .filter_map(|(i, _)| {
            lines[i + 1..]
                .iter()
                .position(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))
                .map(|p| i + 1 + p)
        })
        .collect();
    let chosen = exceptions
        .iter()
        .rev()
        .find(|&&e| !lines[e].starts_with("subprocess.CalledProcessError:"))
        .or(exceptions.last());
    let (line, more) = match chosen {
        Some(&e) => (lines[e], &lines[e + 1..]),
        None => (
            lines
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .copied()
                .unwrap_or(""),
            &[][..],
        ),
    };
    let line = line.trim();
    // An exception whose message goes on below its first line after a colon: formencode's
    // `ForEach` (`Errors:` then one line per refused item, src/provisioningserver/config.py's
    // `maas_url`) says nothing on the first line alone.
    let joined;
    let line = if line.ends_with(':') {
        let rest: Vec<&str> = more
            .iter()
            .map(|l| l.trim())
            .take_while(|l| !l.is_empty() && !l.starts_with("usage:"))
            .collect();
        joined = std::iter::once(line)
            .chain(rest)
            .collect::<Vec<_>>()
            .join(" ");
        joined.as_str()
    } else {
        line
    };
    let message = strip_exception_class(line);
    let message = match message.split_once(": error: ") {
        Some((prog, m)) if !prog.is_empty() && !prog.contains(':') => m,
        _ => message,
    };
    let message = if message.is_empty() { line } else { message };
    message.chars().take(300).collect()
}

/// `pkg.module.SomeError: message` → `message`; a line that does not start with a Python class
/// name (dotted identifiers, the last one capitalised and not all capitals, so PostgreSQL's
/// `FATAL:` stays) is left as it is.
fn strip_exception_class(line: &str) -> &str {
    let Some((head, msg)) = line.split_once(": ") else {
        return line;
    };
    let ident = |w: &str| {
        w.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let last = head.rsplit('.').next().unwrap_or("");
    let class_like = head.split('.').all(ident)
        && last.starts_with(|c: char| c.is_ascii_uppercase())
        && last.chars().any(|c| c.is_ascii_lowercase());
    if class_like {
        msg.trim()
    } else {
        line
    }
}

/// Whether `snap services maas` lists an active service.
pub fn snap_services_active(text: &str) -> bool {
    text.lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(2) == Some("active"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> DbSettings {
        DbSettings {
            host: "10.0.0.5".into(),
            port: 5432,
            name: "maas".into(),
            user: "maas".into(),
            password: "s3cr3t/pw".into(),
        }
    }

    #[test]
    fn init_masks_the_password_everywhere() {
        let c = snap_init("region", "http://10.0.0.100/MAAS", &db());
        assert_eq!(
            c.argv()[..4],
            ["/snap/bin/maas", "init", "region", "--maas-url"]
        );
        assert!(c
            .argv()
            .contains(&"postgres://maas:s3cr3t%2Fpw@10.0.0.5:5432/maas".to_string()));
        let shown = c.to_string();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(shown, "/snap/bin/maas init region --maas-url http://10.0.0.100/MAAS --database-uri postgres://maas:***@10.0.0.5:5432/maas --force");
        assert!(!deb_set_database(&db()).to_string().contains("s3cr3t"));
    }

    #[test]
    fn a_missing_or_empty_snap_mode_is_none() {
        assert_eq!(snap_mode(None), "none");
        assert_eq!(snap_mode(Some("\n")), "none");
        assert_eq!(snap_mode(Some("region+rack\n")), "region+rack");
    }

    #[test]
    fn the_init_record_names_mode_and_database_and_hides_the_credentials() {
        let r = init_record("region", &db());
        assert!(r.starts_with("region maas@10.0.0.5:5432 "), "{r}");
        assert!(!r.contains("s3cr3t"), "{r}");
        let rotated = DbSettings {
            password: "other".into(),
            ..db()
        };
        assert_ne!(init_record("region", &rotated), r);
        assert_ne!(init_record("region+rack", &db()), r);
        assert_eq!(init_record("region", &db()), r);
    }

    #[test]
    fn regiond_conf_parses_what_maas_writes() {
        let c = RegiondConf::parse("database_host: 10.0.0.5\ndatabase_name: maas\ndatabase_pass: 'a: b'\ndatabase_port: 5433\ndatabase_user: maas\nmaas_url: http://10.0.0.100/MAAS\n").unwrap();
        assert_eq!(c.maas_url.as_deref(), Some("http://10.0.0.100/MAAS"));
        let d = c.db.unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.password.as_str()),
            ("10.0.0.5", 5433, "a: b")
        );
        assert_eq!(
            RegiondConf::parse("maas_url: http://x/MAAS\n").unwrap().db,
            None
        );
        assert!(RegiondConf::parse("a: [").is_err());
    }

    #[test]
    fn database_errors_a_retry_fixes_are_told_from_those_it_cannot() {
        // The first ones are what MAAS prints, captured from the stand-in
        // (tests/fixtures/README.md); the rest are libpq's and PostgreSQL's messages.
        for transient in [
            include_str!("../tests/fixtures/snap-init-db-refused.stderr"),
            include_str!("../tests/fixtures/deb-dbupgrade-db-refused.stderr"),
            "django.db.utils.OperationalError: could not connect to server: Connection refused\n\tIs the server running on host \"10.0.0.201\"",
            "connection to server at \"10.0.0.201\", port 5432 failed: timeout expired",
            "FATAL:  the database system is starting up",
            "ERROR: cannot execute CREATE TABLE in a read-only transaction",
            "server closed the connection unexpectedly",
            "could not connect to server: No route to host",
            "Error: db error: FATAL: terminating connection due to administrator command",
            "FATAL:  the database system is not yet accepting connections",
            "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
            "error: connection closed",
        ] {
            assert!(is_transient_db_error(transient), "{transient}");
        }
        // A pg_hba line not applied yet: tried again within the hook, not waited for.
        let hba = include_str!("../tests/fixtures/snap-init-no-pg-hba-entry.stderr");
        assert!(is_worth_retrying_now(hba) && !is_transient_db_error(hba));
        for permanent in [
            include_str!("../tests/fixtures/snap-init-db-password.stderr"),
            "Error parsing database URI: Unsupported parameters: sslmode",
            "FATAL:  database \"maas\" does not exist",
            "error: unrecognized arguments: --bogus",
            "",
        ] {
            assert!(!is_transient_db_error(permanent), "{permanent}");
        }
    }

    #[test]
    fn status_table() {
        let s = parse_status("Service          Startup  Current  Since\nbind9            enabled  active   today at 10:00 UTC\ndhcpd            disabled inactive -\n");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s["bind9"],
            ServiceState {
                startup: Some("enabled".into()),
                current: "active".into(),
                since: "today at 10:00 UTC".into()
            }
        );
        assert_eq!(s["dhcpd"].current, "inactive");
        assert!(!s["dhcpd"].is_down(), "disabled is not down");
        assert!(parse_status("MAAS is not configured\n").is_empty());
        assert!(
            parse_status("Pebble exited with error code 1 and the following output:\n").is_empty()
        );
    }

    #[test]
    fn supervisorctl_status_of_maas_3_4() {
        // As supervisorctl prints it (name padded to 33, state to 10), MAAS 3.4 region+rack.
        let text = "bind9                            RUNNING   pid 2101, uptime 0:12:03\n\
dhcpd                            STOPPED   Not started\n\
dhcpd6                           STOPPED   Not started\n\
http                             RUNNING   pid 2102, uptime 0:12:03\n\
ntp                              RUNNING   pid 2103, uptime 0:12:03\n\
proxy                            STOPPED   Not started\n\
rackd                            RUNNING   pid 2104, uptime 1 day, 0:12:03\n\
regiond                          FATAL     Exited too quickly (process log may have details)\n\
syslog                           STOPPED   Jan 05 10:02 AM\n";
        let s = parse_status(text);
        assert_eq!(s.len(), 9);
        assert_eq!(
            s["rackd"],
            ServiceState {
                startup: None,
                current: "active".into(),
                since: "pid 2104, uptime 1 day, 0:12:03".into()
            }
        );
        assert_eq!(s["regiond"].current, "error");
        assert!(s["regiond"].is_down());
        assert!(!s["dhcpd6"].is_down(), "never started: not meant to run");
        assert!(s["syslog"].is_down(), "stopped after it ran");
        assert!(!s["rackd"].is_down());
        assert!(
            parse_status("unix:///var/snap/maas/x1/supervisord/sock no such file\n").is_empty()
        );
    }

    #[test]
    fn reason_is_the_exception_of_the_last_traceback_but_a_subprocess_failure() {
        // `maas init region` off a terminal whose migrations cannot reach the database:
        // dbupgrade's chained traceback, then maascli's traceback of the CalledProcessError
        // (captured from the stand-in: tests/fixtures/README.md).
        let out = include_str!("../tests/fixtures/snap-init-db-refused.stderr");
        assert!(out.ends_with("subprocess.CalledProcessError: Command '['/snap/maas/current/bin/maas-region', 'dbupgrade']' returned non-zero exit status 1.\n"));
        assert_eq!(
            reason(out),
            "connection to server at \"10.0.0.5\", port 5432 failed: Connection refused"
        );
        assert_eq!(
            reason(include_str!("../tests/fixtures/snap-init-db-password.stderr")),
            "connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  password authentication failed for user \"maas\""
        );
        assert_eq!(
            reason(include_str!("../tests/fixtures/snap-init-no-pg-hba-entry.stderr")),
            "connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  no pg_hba.conf entry for host \"10.0.0.10\", user \"maas\", database \"maas\", no encryption"
        );
        assert_eq!(
            reason(include_str!(
                "../tests/fixtures/deb-dbupgrade-db-refused.stderr"
            )),
            "connection to server at \"10.0.0.5\", port 5432 failed: Connection refused"
        );
        // A CalledProcessError alone is still the reason.
        assert_eq!(
            reason("Traceback (most recent call last):\n  File \"x\", line 1, in f\n    g()\nsubprocess.CalledProcessError: Command 'x' returned non-zero exit status 3.\n"),
            "Command 'x' returned non-zero exit status 3."
        );
        assert_eq!(
            reason("CommandError: A user with the email a@b.c already exists.\n"),
            "A user with the email a@b.c already exists."
        );
        assert_eq!(
            reason("AlreadyExistingUser: A user with the email a@b.c already exists."),
            "A user with the email a@b.c already exists."
        );
        assert_eq!(
            reason(
                "usage: maas init [-h] ...\nmaas init: error: unrecognized arguments: --bogus\n"
            ),
            "unrecognized arguments: --bogus"
        );
        assert_eq!(
            reason("usage: maas [-h] COMMAND ...\nmaas: error: The given username must be set\n"),
            "The given username must be set"
        );
        assert_eq!(
            reason("FATAL:  password authentication failed for user \"maas\""),
            "FATAL:  password authentication failed for user \"maas\""
        );
        assert_eq!(reason("  plain words \n\n"), "plain words");
        assert_eq!(reason(""), "");
        let r =
            reason("Traceback (most recent call last):\n  File \"x\", line 1\nKeyboardInterrupt\n");
        assert_eq!(r, "KeyboardInterrupt");
        assert!(!reason(out).contains("Traceback"));
    }

    #[test]
    fn reason_of_a_multi_line_exception_is_all_of_it() {
        // `maas-rack register --url` with a URL ExtendedURL refuses (formencode's ForEach).
        let out = "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/provisioningserver/config.py\", line 739, in __set__\n    obj.store[self.name] = self.validator.to_python(value)\nformencode.api.Invalid: Errors:\nThat is not a valid URL\n";
        assert_eq!(reason(out), "Errors: That is not a valid URL");
        assert_eq!(
            reason(&format!(
                "{out}usage: maas [-h] COMMAND ...\nmaas: error: x\n"
            )),
            "Errors: That is not a valid URL"
        );
    }

    #[test]
    fn agent_ports_follow_the_maas_version() {
        assert_eq!(agent_ports("3.4/stable"), &[] as &[u16]);
        assert_eq!(agent_ports("2.9/stable"), &[] as &[u16]);
        assert_eq!(agent_ports("3.5/stable"), &[5271]);
        assert_eq!(agent_ports("3.6/stable"), &[5271, 5242]);
        assert_eq!(agent_ports("3.7/edge/fix"), &[5271, 5242]);
        assert_eq!(agent_ports("latest/edge"), &[5271]);
        assert_eq!(agent_ports("stable"), &[5271]);
    }

    #[test]
    fn snap_services() {
        assert!(snap_services_active(
            "Service      Startup  Current  Notes\nmaas.pebble  enabled  active   -\n"
        ));
        assert!(!snap_services_active(
            "Service      Startup  Current  Notes\nmaas.pebble  enabled  inactive -\n"
        ));
        assert!(!snap_services_active(""));
    }
}
