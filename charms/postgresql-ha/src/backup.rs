//! Backups with pgBackRest (Debian's package): the repository an `s3-parameters` relation names
//! (the `s3` interface s3-integrator provides), WAL archiving from the primary, the stanza, and
//! what the backup actions and the restore bootstrap run.
//!
//! The `s3` interface is read in contracts::s3 (shared with maas-region's backups).
//! pgBackRest gets the keys in a root:postgres 0640 file, never on its command line.

use crate::paths;
use crate::report::{Report, Reported};
use charm_lib::{Cmd, Context, Databag, FileOptions, Relation, Status};
use std::fmt::Write as _;
use std::path::Path;

/// The endpoint.
pub const ENDPOINT: &str = "s3-parameters";
/// pgBackRest's configuration (root:postgres 0640: it holds the S3 secret key).
pub const CONF: &str = "/etc/postgresql-ha/pgbackrest.conf";
/// The S3 endpoint's CA chain from the relation (public).
pub const S3_CA: &str = "/etc/postgresql-ha/tls/s3-ca.pem";
/// pgBackRest's lock and spool directory (postgres 0700).
pub const STATE_DIR: &str = "/var/lib/postgresql-ha/pgbackrest";
/// The stanza this unit created or checked, with the repository it is in (see
/// [`Repository::fingerprint`]): archiving to a repository starts only once its stanza is known
/// to match this cluster.
pub const STANZA_MARKER: &str = "/var/lib/postgresql-ha/pgbackrest/stanza-ok";
/// The peer unit databag key a unit sets to the fingerprint of the repository whose stanza it
/// checked against this cluster.
pub const STANZA_KEY: &str = "backup-stanza";
/// The peer application databag key the leader sets while a restore runs (JSON [`Restore`]).
pub const RESTORE_KEY: &str = "restoring";
/// The peer application databag key the leader sets when Patroni could not bootstrap from the
/// backup (pgBackRest's error): Patroni stays stopped on every unit until another restore,
/// since with an empty data directory and no restore it would initdb an empty cluster.
pub const RESTORE_FAILED_KEY: &str = "restore-failed";

/// The passphrase pgBackRest encrypts a repository with: an application secret the leader
/// generates once, shared by id in the peer application databag (never the value), and written
/// only into pgBackRest's root:postgres 0640 configuration. Read with `--refresh`: the
/// set-backup-passphrase action replaces it (a new deployment reading an older one's
/// repository).
pub const PASSPHRASE: charm_lib::SharedSecret = charm_lib::SharedSecret::new(
    "backup-passphrase",
    "backup-passphrase-secret",
    "postgresql-ha: the passphrase pgBackRest encrypts the backup repository with",
)
.refreshing();
/// The key of the passphrase in the secret.
pub const PASSPHRASE_KEY: &str = "passphrase";
/// The peer application databag key recording whether the current repository is encrypted:
/// `<fingerprint> aes-256-cbc` or `<fingerprint> none`, decided by the leader once per
/// repository. pgBackRest fixes a repository's cipher when its stanza is created: a repository
/// whose stanza an earlier revision of the charm created unencrypted stays unencrypted.
pub const ENCRYPTION_KEY: &str = "backup-encryption";
/// pgBackRest's cipher (`repo1-cipher-type`), the only one it has.
pub const CIPHER: &str = "aes-256-cbc";

/// The recorded encryption of the repository `fingerprint` in the peer application data.
pub fn encryption_of<'a>(app: &'a Databag, fingerprint: &str) -> Option<&'a str> {
    app.get(ENCRYPTION_KEY)?
        .split_once(' ')
        .filter(|(f, _)| *f == fingerprint)
        .map(|(_, c)| c)
}

/// A new passphrase: 64 characters of [A-Za-z0-9] from /dev/urandom (381 bits).
pub fn generate_passphrase() -> anyhow::Result<charm_lib::shared_secret::Content> {
    let p = charm_lib::random::alphanumeric(64)
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    Ok([(PASSPHRASE_KEY.to_string(), p)].into())
}

/// Patroni's log line before it runs a custom bootstrap (ha.py / bootstrap.py), and the lines
/// it logs when that failed.
const BOOTSTRAP_STARTED: &str = "Running custom bootstrap script";
const BOOTSTRAP_FAILED: [&str; 2] = [
    "Failed to bootstrap cluster",
    "removing initialize key after failed attempt to bootstrap",
];

/// The last "Running custom bootstrap script" line of Patroni's log, and, when the attempt it
/// starts failed, why (pgBackRest's ERROR line when there is one).
pub fn bootstrap_outcome(log: &str) -> (Option<String>, Option<String>) {
    let lines: Vec<&str> = log.lines().collect();
    let Some(start) = lines.iter().rposition(|l| l.contains(BOOTSTRAP_STARTED)) else {
        return (None, None);
    };
    let after = &lines[start + 1..];
    if !after
        .iter()
        .any(|l| BOOTSTRAP_FAILED.iter().any(|f| l.contains(f)))
    {
        return (Some(lines[start].to_string()), None);
    }
    let why = after
        .iter()
        .find_map(|l| l.find("ERROR: [").map(|i| l[i..].trim().to_string()))
        .unwrap_or_else(|| {
            "Patroni could not bootstrap from the backup (see journalctl -u postgresql-ha-patroni)"
                .into()
        });
    (Some(lines[start].to_string()), Some(why))
}

/// Patroni's recent log (`journalctl -u`), empty when it cannot be read.
pub fn patroni_log(m: &dyn charm_lib::Machine) -> anyhow::Result<String> {
    let out = m.run(
        &Cmd::new(
            "journalctl",
            ["-u", paths::PATRONI_SERVICE, "-n", "400", "--no-pager"],
        )
        .allow_failure(),
    )?;
    Ok(if out.success() {
        out.stdout
    } else {
        String::new()
    })
}

pub use contracts::s3::{parse, Repository, RepositoryState};

/// The stanza: one per application (Patroni's scope).
pub fn stanza(scope: &str) -> String {
    scope.to_string()
}

/// pgBackRest's configuration for this unit; `passphrase`: the repository is encrypted with it.
pub fn render_conf(
    repo: &Repository,
    stanza: &str,
    retention_full: u32,
    passphrase: Option<&str>,
) -> String {
    let mut s =
        String::from("# Rendered by the postgresql-ha charm; edits are overwritten.\n[global]\n");
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(s, "{k}={v}");
    };
    kv("repo1-type", "s3");
    kv(
        "repo1-path",
        if repo.path.is_empty() {
            "/"
        } else {
            &repo.path
        },
    );
    kv("repo1-s3-bucket", &repo.bucket);
    kv("repo1-s3-endpoint", &repo.host);
    kv("repo1-storage-port", &repo.port.to_string());
    kv("repo1-s3-region", &repo.region);
    kv("repo1-s3-uri-style", &repo.uri_style);
    kv("repo1-s3-key", &repo.access_key);
    kv("repo1-s3-key-secret", &repo.secret_key);
    if !repo.ca_chain.is_empty() {
        kv("repo1-storage-ca-file", S3_CA);
    }
    kv("repo1-retention-full", &retention_full.to_string());
    if let Some(p) = passphrase {
        kv("repo1-cipher-type", CIPHER);
        kv("repo1-cipher-pass", p);
    }
    // A backup starts at once rather than after a spread checkpoint.
    kv("start-fast", "y");
    kv("lock-path", STATE_DIR);
    kv("spool-path", STATE_DIR);
    // Output goes to the charm (actions) and PostgreSQL's log (archive-push); no log files
    // to rotate.
    kv("log-level-file", "off");
    kv("log-level-console", "warn");
    let _ = write!(
        s,
        "\n[{stanza}]\npg1-path={}\npg1-socket-path={}\npg1-port={}\n",
        paths::PGDATA,
        paths::SOCKET_DIR,
        paths::PG_PORT
    );
    s
}

/// The archive_command: pinned in the local patroni.yml (a DCS writer cannot change it).
/// Without a checked stanza WAL is not archived (`/bin/true`, as Charmed PostgreSQL does):
/// a failing command would keep every WAL segment until the disk is full.
pub fn archive_command(stanza: Option<&str>) -> String {
    match stanza {
        Some(s) => format!("pgbackrest --config={CONF} --stanza={s} archive-push %p"),
        None => "/bin/true".into(),
    }
}

/// The backup types `create-backup` takes, as pgBackRest names them.
pub fn backup_type(param: &str) -> Result<&'static str, String> {
    match param {
        "full" => Ok("full"),
        "differential" | "diff" => Ok("diff"),
        "incremental" | "incr" => Ok("incr"),
        other => Err(format!(
            "type {other:?}: expected full, differential or incremental"
        )),
    }
}

/// A restore under way: what the leader's Patroni bootstraps from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restore {
    /// pgBackRest's backup label (`--set`), when restoring a named backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// Recover to this time (`--type=time --target`), PostgreSQL timestamp syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The stanza restored from when it is not this application's own (another deployment's):
    /// only the bootstrap reads it; archiving goes on into this application's stanza.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stanza: Option<String>,
}

/// Whether `s` can name a stanza here: an application name's characters. It goes into
/// Patroni's bootstrap command line.
pub fn valid_stanza(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with(['-', '.'])
}

/// Patroni's custom bootstrap for a restore (Patroni docs "Custom bootstrap"; the shape
/// Charmed PostgreSQL's `templates/patroni.yml.j2` uses): Patroni runs pgBackRest into the empty
/// data directory, keeps the recovery settings pgBackRest wrote, starts PostgreSQL, and takes
/// the cluster once recovery ends and PostgreSQL is promoted.
pub fn restore_bootstrap(stanza: &str, r: &Restore) -> serde_json::Value {
    // pgBackRest writes this stanza into restore_command, so recovery reads the WAL of the
    // cluster the backup came from.
    let from = r.stanza.as_deref().unwrap_or(stanza);
    let mut cmd = format!(
        "pgbackrest --config={CONF} --stanza={from} --pg1-path={} --delta",
        paths::PGDATA
    );
    if let Some(set) = &r.set {
        let _ = write!(cmd, " --set={set}");
    }
    match &r.time {
        Some(t) => {
            let _ = write!(cmd, " --type=time --target=\"{t}\" --target-action=promote");
        }
        None => cmd.push_str(" --type=immediate --target-action=promote"),
    }
    cmd.push_str(" restore");
    serde_json::json!({
        "method": "pgbackrest",
        "pgbackrest": {"command": cmd, "no_params": true, "keep_existing_recovery_conf": true},
    })
}

/// Accepts `YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]` (or `T` between date and time), the form
/// pgBackRest's `--target` passes to `recovery_target_time`. Refuses anything with a quote.
pub fn valid_time(t: &str) -> bool {
    let t = t.trim();
    let b = t.as_bytes();
    b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':'
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || " -:.+T".contains(c))
}

/// Seconds since the epoch of a time [`valid_time`] accepts (a zone as `Z`, `+HH`, `+HHMM` or
/// `+HH:MM`; none is UTC), the fraction dropped; `None` when it does not parse.
pub fn epoch_of(t: &str) -> Option<i64> {
    let t = t.trim();
    if !valid_time(t) {
        return None;
    }
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let rest = rest.trim();
    let offset = match rest {
        "" | "Z" | "UTC" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            let (oh, om) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (
                    digits[..2].parse::<i64>().ok()?,
                    digits[2..].parse::<i64>().ok()?,
                ),
                _ => return None,
            };
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// The backup a restore to `target` (epoch seconds) starts from, as pgBackRest chooses it:
/// the newest that stopped before the target's second.
pub fn backup_before(list: &[BackupInfo], target: i64) -> Option<&BackupInfo> {
    list.iter().rfind(|b| {
        !b.error && epoch_of(&b.stopped.replace('T', " ")).is_some_and(|stop| stop < target)
    })
}

/// One backup as `list-backups` shows it (from `pgbackrest info --output=json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupInfo {
    /// pgBackRest's label (what `restore backup-id=` takes).
    pub id: String,
    /// full, diff or incr.
    #[serde(rename = "type")]
    pub kind: String,
    /// Start and stop, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    /// Stop time.
    pub stopped: String,
    /// Database size, bytes.
    pub size: u64,
    /// Size in the repository, bytes.
    #[serde(rename = "repository-size")]
    pub repo_size: u64,
    /// PostgreSQL's timeline and WAL the backup needs.
    #[serde(rename = "wal-start")]
    pub wal_start: String,
    /// Last WAL.
    #[serde(rename = "wal-stop")]
    pub wal_stop: String,
    /// Whether pgBackRest found an error (a page checksum) in it.
    pub error: bool,
}

/// `pgbackrest info --output=json`, parsed. pgBackRest 2.45 puts the bytes of an info file it
/// could not decrypt into the error message as they are: control characters JSON does not
/// allow in a string (and bytes that are not UTF-8, which reading the output already
/// replaced). Its JSON is one line, so every control character stands for one of those bytes.
fn info_json(out: &str) -> Result<serde_json::Value, String> {
    let clean: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    serde_json::from_str(&clean).map_err(|e| format!("pgbackrest info printed no JSON: {e}"))
}

/// Parses `pgbackrest info --output=json` for one stanza: its backups, oldest first, and the
/// repository's status message when it is not ok.
pub fn parse_info(json: &str, stanza: &str) -> Result<(Vec<BackupInfo>, Option<String>), String> {
    let v = info_json(json)?;
    let Some(st) = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == stanza))
    else {
        return Ok((
            Vec::new(),
            Some(format!("no stanza {stanza} in the repository")),
        ));
    };
    let status = match st["status"]["code"].as_i64() {
        Some(0) => None,
        // The stanza's status says only "other" when the repository's says why (its first
        // line: the rest can be the undecryptable bytes).
        _ => Some(
            st["repo"][0]["status"]["message"]
                .as_str()
                .or(st["status"]["message"].as_str())
                .unwrap_or("unknown")
                .lines()
                .next()
                .unwrap_or("unknown")
                .to_string(),
        ),
    };
    let mut out = Vec::new();
    for b in st["backup"].as_array().into_iter().flatten() {
        let ts = |k: &str| {
            b["timestamp"][k]
                .as_i64()
                .map(charm_lib::tls::format_utc)
                .unwrap_or_default()
        };
        out.push(BackupInfo {
            id: b["label"].as_str().unwrap_or_default().to_string(),
            kind: b["type"].as_str().unwrap_or_default().to_string(),
            started: ts("start"),
            stopped: ts("stop"),
            size: b["info"]["size"].as_u64().unwrap_or(0),
            repo_size: b["info"]["repository"]["size"].as_u64().unwrap_or(0),
            wal_start: b["archive"]["start"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            wal_stop: b["archive"]["stop"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            error: b["error"].as_bool().unwrap_or(false),
        });
    }
    Ok((out, status))
}

/// Whether a stanza's status (from [`parse_info`]) says its info files could not be read with
/// this deployment's passphrase: pgBackRest 2.45 reads a file encrypted with another passphrase,
/// or an encrypted one as clear text, as garbage (`[FormatError] unable to load info file`), or
/// fails to decrypt it (`[CryptoError]`).
pub fn undecryptable(status: &str) -> bool {
    status.contains("[FormatError]") || status.contains("[CryptoError]")
}

/// Why a stanza's backups cannot be read, for an action's message.
pub fn unreadable_message(stanza: &str, fingerprint: &str, status: &str) -> String {
    if undecryptable(status) {
        format!(
            "cannot read the backups of stanza {stanza} in {fingerprint}: they are encrypted with another passphrase than this deployment's (pgBackRest: {status}): run set-backup-passphrase on the leader with the passphrase of the deployment that took them (`juju show-secret backup-passphrase --reveal` there)"
        )
    } else {
        format!("cannot read the backups of stanza {stanza} in {fingerprint}: {status}")
    }
}

/// The stanzas `pgbackrest info --output=json` lists (without `--stanza`: every stanza in the
/// repository), each with the PostgreSQL system identifiers its history holds (none when
/// this deployment cannot read it).
pub fn stanzas(json: &str) -> Result<Vec<(String, Vec<u64>)>, String> {
    let v = info_json(json)?;
    let list = v
        .as_array()
        .ok_or("pgbackrest info printed no list of stanzas")?;
    Ok(list
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?.to_string();
            let ids = s["db"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["system-id"].as_u64())
                .collect();
            Some((name, ids))
        })
        .collect())
}

/// A stanza, other than `own`, that is not this cluster's (another system identifier, or one
/// this deployment cannot read), when `own` is not in the repository yet: a fresh deployment
/// related to another deployment's repository. It must not start its own stanza beside
/// theirs before restoring from it (Charmed PostgreSQL's `can_use_s3_repository` refuses a
/// repository with another stanza or system identifier the same way). `None` once `own` is
/// there, or when every other stanza is this cluster's: it was restored from one.
pub fn foreign_stanza(
    list: &[(String, Vec<u64>)],
    own: &str,
    system_id: Option<u64>,
) -> Option<String> {
    if list.iter().any(|(n, _)| n == own) {
        return None;
    }
    list.iter()
        .find(|(_, ids)| !system_id.is_some_and(|me| ids.contains(&me)))
        .map(|(n, _)| n.clone())
}

/// This cluster's system identifier: the first field of PostgreSQL's `ControlFileData`
/// (src/include/catalog/pg_control.h, `uint64 system_identifier`), in `global/pg_control`,
/// written in the machine's byte order. `None` without a data directory.
pub fn system_id(m: &dyn charm_lib::Machine) -> anyhow::Result<Option<u64>> {
    let path = Path::new(paths::PGDATA).join("global/pg_control");
    Ok(m.read_file(&path)?.and_then(|b| {
        b.get(..8)
            .map(|h| u64::from_ne_bytes(h.try_into().unwrap_or([0; 8])))
    }))
}

/// `pgbackrest info` of every stanza in the repository, as JSON.
pub fn info_all() -> Cmd {
    Cmd::new(
        "pgbackrest",
        [
            format!("--config={CONF}"),
            "--output=json".into(),
            "info".into(),
        ],
    )
    .user("postgres")
    .allow_failure()
}

/// What the backup step decided for this unit's Patroni configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archiving {
    /// Archive WAL into this stanza; `None`: WAL is not archived.
    pub stanza: Option<String>,
    /// The restore the leader's Patroni bootstraps from, while one runs.
    pub restore: Option<Restore>,
    /// A ready repository (its fingerprint) whose stanza this unit has not checked: the
    /// primary does so once Patroni runs.
    pub unchecked: Option<String>,
}

/// The repository, as the `s3-parameters` relation gives it now.
pub fn repository(ctx: &Context) -> anyhow::Result<RepositoryState> {
    Ok(match ctx.model.relation(ENDPOINT)? {
        None => RepositoryState::NotRelated,
        Some(r) => parse(&r.remote_app_data()?),
    })
}

/// pgBackRest run as postgres with the charm's configuration.
pub fn pgbackrest<I, S>(stanza: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cmd = Cmd::new(
        "pgbackrest",
        [format!("--config={CONF}"), format!("--stanza={stanza}")],
    )
    .user("postgres");
    cmd.args.extend(args.into_iter().map(Into::into));
    cmd
}

/// The last lines pgBackRest printed on failure (its ERROR and HINT lines), for a status or
/// an action's message.
pub fn failure(out: &charm_lib::CmdOutput) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let from = lines
        .iter()
        .position(|l| l.starts_with("ERROR"))
        .unwrap_or(lines.len().saturating_sub(3));
    lines[from..].join(" ")
}

/// The restore the peer app data says is under way; a value that is not one blocks the unit
/// naming the key (and is no restore).
pub fn requested_restore(app: &Databag) -> Reported<Option<Restore>> {
    match app.get(RESTORE_KEY).filter(|v| !v.is_empty()) {
        None => Report::default().with(None),
        Some(raw) => match serde_json::from_str::<Restore>(raw) {
            Ok(r) => Report::default().with(Some(r)),
            Err(e) => Report::of(Status::blocked(format!(
                "the peer application data {RESTORE_KEY} is not a restore ({e}): run the restore action again"
            )))
            .with(None),
        },
    }
}

/// The backup step of the reconcile, before Patroni's configuration is rendered: asks the
/// provider for a bucket (leader), writes pgBackRest's configuration from the relation, and
/// decides whether WAL is archived (a unit has checked the stanza of this repository). The
/// primary creates or checks the stanza afterwards, once Patroni runs ([`create_stanza`]).
/// `restore` is the one under way ([`requested_restore`]).
pub fn step(
    ctx: &Context,
    config: &crate::config::Config,
    peers: &Relation,
    app: &Databag,
    my_bag: &Databag,
    unit_changes: &mut Databag,
    restore: Option<Restore>,
) -> anyhow::Result<Reported<Archiving>> {
    let m = ctx.machine;
    let stanza = stanza(ctx.model.app_name());
    let mut report = Report::default();
    if let Some(rel) = ctx.model.relation(ENDPOINT)? {
        // The s3 library's requirer names a bucket on joining (`S3Requirer._on_relation_joined`,
        // `relation-<id>` by default); its provider answers only once one is there
        // (`S3Provider._on_relation_changed`: "bucket" in diff.added). s3-integrator prefers
        // its own configured bucket.
        if ctx.model.is_leader()?
            && rel
                .my_app_data()?
                .get("bucket")
                .is_none_or(|b| b.is_empty())
        {
            rel.set_my_app_data(&Databag::from([(
                contracts::s3::BUCKET_KEY.to_string(),
                contracts::s3::requested_bucket(rel.id().id),
            )]))?;
        }
    }
    // No stale credentials left on disk once the relation is gone or changing.
    let unconfigure = |unit_changes: &mut Databag| -> anyhow::Result<()> {
        m.remove_file(Path::new(CONF))?;
        m.remove_file(Path::new(S3_CA))?;
        unit_changes.insert(STANZA_KEY.into(), String::new());
        crate::backup_schedule::apply(ctx, None)?;
        crate::backup_metrics::apply(ctx, None)?;
        Ok(())
    };
    let repo = match repository(ctx)? {
        RepositoryState::Ready(r) => r,
        other => {
            unconfigure(unit_changes)?;
            if matches!(other, RepositoryState::NotRelated) && config.backup_schedule().is_some() {
                report.add(Status::blocked(format!(
                    "{} is set but there is no backup repository: relate {ENDPOINT} to an S3 provider, or empty {}",
                    crate::backup_schedule::OPTION,
                    crate::backup_schedule::OPTION
                )));
            }
            match other {
                RepositoryState::Waiting(why) => {
                    report.add(Status::waiting(format!("{ENDPOINT}: {why}")))
                }
                RepositoryState::Invalid(why) => {
                    report.add(Status::blocked(format!("{ENDPOINT}: {why}")))
                }
                _ => {}
            }
            return Ok(report.with(Archiving {
                stanza: None,
                restore,
                unchecked: None,
            }));
        }
    };
    let fp = repo.fingerprint();
    let mine = my_bag.get(STANZA_KEY).map(String::as_str) == Some(fp.as_str());
    let checked = mine
        || peers
            .units()
            .iter()
            .filter_map(|u| peers.unit_data(u).ok())
            .any(|b| b.get(STANZA_KEY).map(String::as_str) == Some(fp.as_str()));
    let Some(passphrase) = report.take(passphrase(ctx, peers, app, &fp, checked)?) else {
        unconfigure(unit_changes)?;
        return Ok(report.with(Archiving {
            stanza: None,
            restore,
            unchecked: None,
        }));
    };
    if repo.ca_chain.is_empty() {
        m.remove_file(Path::new(S3_CA))?;
    } else {
        m.write_file(
            Path::new(S3_CA),
            repo.ca_chain.join("\n").as_bytes(),
            &FileOptions::root(0o644),
        )?;
    }
    m.make_dir(
        Path::new(STATE_DIR),
        &FileOptions::new("postgres", "postgres", 0o700),
    )?;
    let retention = u32::try_from(config.backup_retention_full).unwrap_or(u32::MAX);
    m.write_file(
        Path::new(CONF),
        render_conf(&repo, &stanza, retention, passphrase.as_deref()).as_bytes(),
        &FileOptions::new("root", "postgres", 0o640),
    )?;
    let schedule = config.backup_schedule();
    crate::backup_schedule::apply(ctx, schedule.as_ref())?;
    crate::backup_metrics::apply(ctx, Some(schedule.and_then(|s| s.max_interval())))?;
    let unchecked = if mine {
        unit_changes.insert(STANZA_KEY.into(), fp);
        None
    } else {
        Some(fp)
    };
    Ok(report.with(Archiving {
        stanza: checked.then_some(stanza),
        restore,
        unchecked,
    }))
}

/// Whether the repository `fingerprint` is encrypted, and with what: `Some(Some(passphrase))`,
/// `Some(None)` for an unencrypted one, `None` (with a waiting status) while this unit cannot
/// know yet. A repository the charm has not recorded is encrypted, unless a unit already
/// checked its stanza: an earlier revision created that stanza unencrypted, and pgBackRest keeps
/// a stanza's cipher for good. Only the leader records the decision and creates the passphrase.
fn passphrase(
    ctx: &Context,
    peers: &Relation,
    app: &Databag,
    fingerprint: &str,
    checked: bool,
) -> anyhow::Result<Reported<Option<Option<String>>>> {
    let leader = ctx.model.is_leader()?;
    let encryption = match encryption_of(app, fingerprint) {
        Some(c) => c.to_string(),
        None => {
            let c = if checked { "none" } else { CIPHER };
            if leader {
                peers.set_my_app_data(&Databag::from([(
                    ENCRYPTION_KEY.to_string(),
                    format!("{fingerprint} {c}"),
                )]))?;
            } else if !checked {
                return Ok(Report::of(Status::waiting(format!(
                    "{ENDPOINT}: waiting for the leader to set up the repository's encryption"
                )))
                .with(None));
            }
            c.to_string()
        }
    };
    match encryption.as_str() {
        "none" => Ok(Report::default().with(Some(None))),
        CIPHER => {
            let shared = PASSPHRASE.ensure(&ctx.model, peers, generate_passphrase)?;
            match shared.and_then(|s| s.content.get(PASSPHRASE_KEY).cloned()) {
                Some(p) if !p.is_empty() => Ok(Report::default().with(Some(Some(p)))),
                _ => Ok(Report::of(Status::waiting(format!(
                    "{ENDPOINT}: waiting for the leader's backup passphrase"
                )))
                .with(None)),
            }
        }
        other => Ok(Report::of(Status::blocked(format!(
            "the peer application data {ENCRYPTION_KEY} names the cipher {other:?}: expected {CIPHER} or none (run set-backup-passphrase on the leader)"
        )))
        .with(None)),
    }
}

/// On the primary: creates the stanza in the repository `fingerprint` names, or checks that the
/// one there is this cluster's (pgBackRest's stanza-create is idempotent), and records it in this
/// unit's peer data. `false`, with the unit blocked on pgBackRest's message, when it refuses.
pub fn create_stanza(
    ctx: &Context,
    fingerprint: &str,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<bool>> {
    let stanza = stanza(ctx.model.app_name());
    // Unreadable output leaves the decision to stanza-create, which refuses a stanza of
    // another cluster under this name by itself.
    let listed = ctx.machine.run(&info_all())?;
    let list = if listed.success() {
        stanzas(&listed.stdout).unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Some(other) = foreign_stanza(&list, &stanza, system_id(ctx.machine)?) {
        return Ok(Report::of(Status::blocked(format!(
            "{ENDPOINT}: WAL is not archived: {fingerprint} holds another deployment's backups (stanza {other}), not this one's: restore from them (set-backup-passphrase with that deployment's passphrase, then restore), or relate this application to a repository path of its own"
        )))
        .with(false));
    }
    let out = ctx
        .machine
        .run(&pgbackrest(&stanza, ["stanza-create"]).allow_failure())?;
    if out.success() {
        log::info!("pgBackRest stanza {stanza} is ready in {fingerprint}");
        unit_changes.insert(STANZA_KEY.into(), fingerprint.to_string());
        return Ok(Report::default().with(true));
    }
    Ok(Report::of(Status::blocked(format!(
        "{ENDPOINT}: WAL is not archived: pgBackRest stanza-create failed: {}",
        failure(&out)
    )))
    .with(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn full() -> Databag {
        bag(&[
            ("access-key", "AK"),
            ("secret-key", "SK"),
            ("bucket", "backups"),
            ("endpoint", "https://s3.example.com:9443/"),
            ("path", "maas/db/"),
            ("region", "eu-west-1"),
            ("s3-uri-style", "path"),
            (
                "tls-ca-chain",
                "[\"-----BEGIN CERTIFICATE-----\\nX\\n-----END CERTIFICATE-----\"]",
            ),
        ])
    }

    #[test]
    fn conf_keeps_the_secret_in_the_file_and_names_this_cluster() {
        let RepositoryState::Ready(r) = parse(&full()) else {
            panic!()
        };
        let c = render_conf(&r, "postgresql-ha", 4, Some("P4ssphrase"));
        for line in [
            "repo1-s3-key-secret=SK",
            "repo1-s3-endpoint=s3.example.com",
            "repo1-storage-port=9443",
            "repo1-path=/maas/db",
            "repo1-storage-ca-file=/etc/postgresql-ha/tls/s3-ca.pem",
            "repo1-retention-full=4",
            "repo1-cipher-type=aes-256-cbc",
            "repo1-cipher-pass=P4ssphrase",
            "[postgresql-ha]",
            "pg1-path=/var/lib/postgresql-ha/data",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} missing in\n{c}");
        }
        assert!(!archive_command(Some("postgresql-ha")).contains("SK"));
        let plain = render_conf(&r, "postgresql-ha", 4, None);
        assert!(!plain.contains("cipher"), "{plain}");
        assert_eq!(archive_command(None), "/bin/true");
    }

    #[test]
    fn restore_bootstrap_targets_a_set_or_a_time() {
        let b = restore_bootstrap(
            "pg",
            &Restore {
                set: Some("20261207-070755F".into()),
                time: None,
                stanza: None,
            },
        );
        let cmd = b["pgbackrest"]["command"].as_str().unwrap();
        assert!(
            cmd.contains("--set=20261207-070755F --type=immediate --target-action=promote restore"),
            "{cmd}"
        );
        assert_eq!(b["method"], "pgbackrest");
        assert_eq!(b["pgbackrest"]["keep_existing_recovery_conf"], true);
        let b = restore_bootstrap(
            "pg",
            &Restore {
                set: None,
                time: Some("2026-12-07 07:30:00+00".into()),
                stanza: Some("other-pg".into()),
            },
        );
        let cmd = b["pgbackrest"]["command"].as_str().unwrap();
        assert!(
            cmd.contains("--type=time --target=\"2026-12-07 07:30:00+00\" --target-action=promote"),
            "{cmd}"
        );
        // Another deployment's stanza is read in the bootstrap only.
        assert!(cmd.contains(" --stanza=other-pg "), "{cmd}");
        assert!(!cmd.contains("--stanza=pg "), "{cmd}");
    }

    /// `pgbackrest info --output=json` of a repository holding stanza `x` (system id 77),
    /// readable, and `y`, encrypted with another passphrase (pgBackRest 2.45's output).
    const TWO_STANZAS: &str = r#"[{"archive":[],"backup":[{"label":"20261207-164545F","type":"full","error":false,"timestamp":{"start":1796661945,"stop":1796661947},"info":{"size":1,"repository":{"size":1}},"archive":{"start":"a","stop":"b"}}],"db":[{"id":1,"repo-key":1,"system-id":7716604284283152322,"version":"15"}],"name":"x","repo":[{"key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"message":"ok"}},
    {"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"y","repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":99,"message":"[FormatError] unable to load info file '/r/backup/y/backup.info' or '/r/backup/y/backup.info.copy':\nFormatError: key/value found outside of section at line 1: QU_GARBAGE\nHINT: has a stanza-create been performed?"}}],"status":{"code":99,"message":"other"}}]"#;

    /// [`TWO_STANZAS`] as pgBackRest prints it: the undecryptable bytes raw in the message.
    fn two_stanzas() -> String {
        TWO_STANZAS.replace("QU_GARBAGE", "qU\u{1}\u{fffd}\u{c}")
    }

    #[test]
    fn a_stanza_encrypted_with_another_passphrase_says_so_without_its_bytes() {
        let (list, status) = parse_info(&two_stanzas(), "y").unwrap();
        assert!(list.is_empty());
        let status = status.unwrap();
        assert_eq!(
            status,
            "[FormatError] unable to load info file '/r/backup/y/backup.info' or '/r/backup/y/backup.info.copy':"
        );
        let why = unreadable_message("y", "s3://h:443/b/p", &status);
        assert!(why.contains("run set-backup-passphrase"), "{why}");
        assert!(!why.contains("qU"), "{why}");
        let missing = unreadable_message("z", "s3://h:443/b/p", "missing stanza path");
        assert!(!missing.contains("set-backup-passphrase"), "{missing}");
        assert_eq!(parse_info(&two_stanzas(), "x").unwrap().1, None);
    }

    #[test]
    fn only_a_cluster_restored_from_the_other_stanzas_starts_its_own_beside_them() {
        let list = stanzas(&two_stanzas()).unwrap();
        assert_eq!(
            list,
            vec![
                ("x".to_string(), vec![7716604284283152322]),
                ("y".to_string(), vec![])
            ]
        );
        // Its own stanza there: nothing foreign stops it.
        assert_eq!(foreign_stanza(&list, "x", Some(1)), None);
        // A fresh cluster: another system id, or a stanza it cannot read.
        assert_eq!(
            foreign_stanza(&list, "fresh", Some(1)).as_deref(),
            Some("x")
        );
        assert_eq!(
            foreign_stanza(&list[..1], "fresh", None).as_deref(),
            Some("x")
        );
        assert_eq!(
            foreign_stanza(&list, "fresh", Some(7716604284283152322)).as_deref(),
            Some("y")
        );
        // Restored from x: x is this cluster's.
        assert_eq!(
            foreign_stanza(&list[..1], "fresh", Some(7716604284283152322)),
            None
        );
        assert_eq!(foreign_stanza(&[], "fresh", None), None);
        assert!(stanzas("not json").is_err());
        // The raw bytes are why the output is not JSON as it stands.
        assert!(serde_json::from_str::<serde_json::Value>(&two_stanzas()).is_err());
    }

    #[test]
    fn stanza_names_are_an_applications_characters() {
        assert!(valid_stanza("postgresql-ha"));
        assert!(valid_stanza("model.pg_2"));
        assert!(!valid_stanza(""));
        assert!(!valid_stanza("-x"));
        assert!(!valid_stanza("x y"));
        assert!(!valid_stanza("x;rm"));
    }

    #[test]
    fn a_failed_bootstrap_is_read_off_patronis_log() {
        let ok = "x INFO: Running custom bootstrap script: pgbackrest restore\nx INFO: bootstrap in progress\n";
        assert_eq!(bootstrap_outcome(ok).1, None);
        let failed = "x INFO: Running custom bootstrap script: pgbackrest a\nERROR: [075]: old\nx INFO: removing initialize key after failed attempt to bootstrap the cluster\nx INFO: Running custom bootstrap script: pgbackrest b\nERROR: [073]: unable to find archive\nx INFO: removing initialize key after failed attempt to bootstrap the cluster\n";
        let (line, why) = bootstrap_outcome(failed);
        assert!(line.unwrap().ends_with("pgbackrest b"));
        assert_eq!(why.as_deref(), Some("ERROR: [073]: unable to find archive"));
        assert_eq!(bootstrap_outcome("nothing here"), (None, None));
    }

    #[test]
    fn times_parse_to_epoch_seconds() {
        assert_eq!(epoch_of("1970-01-01 00:00:00"), Some(0));
        assert_eq!(epoch_of("2026-12-07 07:07:55+00"), Some(1796627275));
        assert_eq!(epoch_of("2026-12-07T07:07:55.879702Z"), Some(1796627275));
        assert_eq!(epoch_of("2026-12-07 08:07:55+01:00"), Some(1796627275));
        assert_eq!(epoch_of("2026-12-07 02:07:55-0500"), Some(1796627275));
        assert_eq!(epoch_of("2026-13-07 07:07:55"), None);
        assert_eq!(epoch_of("2026-12-07 07:07:55+7"), None);
        let b = |id: &str, stop: &str| BackupInfo {
            id: id.into(),
            kind: "full".into(),
            started: String::new(),
            stopped: stop.into(),
            size: 0,
            repo_size: 0,
            wal_start: String::new(),
            wal_stop: String::new(),
            error: false,
        };
        let list = [
            b("A", "2026-12-07T07:00:00Z"),
            b("B", "2026-12-07T07:07:55Z"),
        ];
        // The target inside B's last second is not after B: pgBackRest would not take B.
        assert_eq!(
            backup_before(&list, epoch_of("2026-12-07 07:07:55.9+00").unwrap())
                .map(|b| b.id.as_str()),
            Some("A")
        );
        assert_eq!(
            backup_before(&list, epoch_of("2026-12-07 07:07:56+00").unwrap())
                .map(|b| b.id.as_str()),
            Some("B")
        );
        assert!(backup_before(&list, epoch_of("2026-12-07 06:00:00+00").unwrap()).is_none());
    }

    #[test]
    fn times_and_types() {
        assert!(valid_time("2026-12-07 07:30:00"));
        assert!(valid_time("2026-12-07T07:30:00.123+00"));
        assert!(!valid_time("2026-12-07 07:30:00'; rm -rf /"));
        assert!(!valid_time("yesterday"));
        assert_eq!(backup_type("differential"), Ok("diff"));
        assert!(backup_type("snapshot")
            .unwrap_err()
            .contains("expected full"));
    }

    #[test]
    fn info_lists_backups_oldest_first() {
        let json = r#"[{"archive":[],"backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000003"},"error":false,"info":{"repository":{"size":3043456},"size":22992527},"label":"20261207-070755F","timestamp":{"start":1796627275,"stop":1796627281},"type":"full"}],"name":"postgresql-ha","status":{"code":0,"message":"ok"}}]"#;
        let (b, status) = parse_info(json, "postgresql-ha").unwrap();
        assert_eq!(status, None);
        assert_eq!(b[0].id, "20261207-070755F");
        assert_eq!(b[0].started, "2026-12-07T07:07:55Z");
        assert_eq!(b[0].size, 22992527);
        let (b, status) =
            parse_info(r#"[{"name":"other","status":{"code":0}}]"#, "postgresql-ha").unwrap();
        assert!(b.is_empty() && status.unwrap().contains("no stanza"));
        assert!(parse_info("garbage", "x").is_err());
    }
}
