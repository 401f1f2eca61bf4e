//! All MAAS state lives in PostgreSQL, as in MAAS: users, API keys, controllers, VLANs, DHCP
//! settings, IP ranges, global config and the shared secret. Every region reading the same
//! database therefore sees the same MAAS.
//!
//! Tables (all prefixed `standin_` so nobody mistakes them for MAAS's schema):
//! `standin_schema`, `standin_config`, `standin_region`, `standin_heartbeat`, `standin_user`,
//! `standin_apikey`, `standin_rack`, `standin_rack_event`, `standin_vlan`, `standin_subnet`,
//! `standin_iprange`.

use crate::conf::DbSettings;
use crate::util;
use anyhow::{Context, Result};
use postgres::config::TargetSessionAttrs;
use postgres::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

/// A request MAAS would refuse (HTTP 400, CLI error); the text is MAAS's message.
#[derive(Debug)]
pub struct Invalid(pub String);
impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Invalid {}

/// Something asked for that does not exist (HTTP 404).
#[derive(Debug)]
pub struct NotFound(pub String);
impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for NotFound {}

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Invalid(msg.into()).into())
}

/// An exception a MAAS management command raises: its Python class (`CommandError` or a
/// subclass of it, which Django prints as `<Class>: <message>`; anything else, such as
/// `ValueError`, escapes the command) and its message. Through the API it is a 400.
#[derive(Debug)]
pub struct Raised {
    /// The class, as Python names it in a traceback (`ValueError`, `AlreadyExistingUser`).
    pub class: &'static str,
    /// `str(exception)`.
    pub message: String,
    /// Whether it is Django's `CommandError` or a subclass of it.
    pub command_error: bool,
}
impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Raised {}

fn command_error<T>(class: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Raised {
        class,
        message: msg.into(),
        command_error: true,
    }
    .into())
}

/// The `django.db.utils` exception (class and message) a failure of a statement on an open
/// connection raises: psycopg's class by SQLSTATE class (`25` invalid transaction state, such
/// as a read-only standby: `InternalError`; `42` `ProgrammingError`; `23` `IntegrityError`;
/// the rest `OperationalError`), the server's message.
pub fn django_exception(e: &anyhow::Error) -> (&'static str, String) {
    let Some(db) = e
        .chain()
        .find_map(|c| c.downcast_ref::<postgres::Error>())
        .and_then(|pe| pe.as_db_error())
    else {
        return ("django.db.utils.OperationalError", format!("{e:#}"));
    };
    let class = match &db.code().code()[..2] {
        "25" => "django.db.utils.InternalError",
        "42" => "django.db.utils.ProgrammingError",
        "23" => "django.db.utils.IntegrityError",
        _ => "django.db.utils.OperationalError",
    };
    (class, db.message().to_string())
}

/// What psycopg's `OperationalError` says (libpq's words) when `connect` to `s` failed with
/// `e`: `connection to server at "<host>", port <port> failed: <reason>`, the reason being
/// the server's `FATAL:  …` or the socket's (`Connection refused` with libpq's hint on the
/// next line, `timeout expired`), or `could not translate host name …` for a name that does
/// not resolve. Other errors are given as they are.
pub fn operational_error(s: &DbSettings, e: &anyhow::Error) -> String {
    let Some(pe) = e.chain().find_map(|c| c.downcast_ref::<postgres::Error>()) else {
        return format!("{e:#}");
    };
    let at = format!(
        "connection to server at \"{}\", port {} failed",
        s.host, s.port
    );
    if let Some(db) = pe.as_db_error() {
        return format!("{at}: {}:  {}", db.severity(), db.message());
    }
    let mut source = std::error::Error::source(pe);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            if let Some(why) = text.split("failed to lookup address information: ").nth(1) {
                return format!(
                    "could not translate host name \"{}\" to address: {why}",
                    s.host
                );
            }
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => format!(
                    "{at}: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
                ),
                std::io::ErrorKind::TimedOut => format!("{at}: timeout expired"),
                _ => {
                    let why = text.split(" (os error").next().unwrap_or(&text);
                    format!("{at}: {why}")
                }
            };
        }
        source = err.source();
    }
    format!("{at}: {pe}")
}

/// Opens a connection as regiond's psycopg does: libpq with the TCP keepalive of
/// regiond.conf ([`crate::conf::ConfFile::keepalive`]; `_get_default_db_config` in
/// src/maasserver/djangosettings/settings.py puts `keepalives`, `keepalives_idle`,
/// `keepalives_interval`, `keepalives_count` and `application_name` in OPTIONS) and nothing
/// else: MAAS sets no `connect_timeout`, no `tcp_user_timeout` and no `statement_timeout`, so
/// neither does this. A connect to an address nobody answers waits for the kernel's SYN
/// retries; a dead peer of an idle connection is noticed by the keepalive probes alone, and one
/// with a query in flight by TCP's retransmissions. Only a writable primary is accepted (the
/// stand-in's own choice; MAAS names one host and takes what answers there).
pub fn connect(s: &DbSettings, application: &str) -> Result<Client> {
    let ka = s
        .keepalive
        .clone()
        .map_err(|e| anyhow::anyhow!("regiond.conf: {e}"))?;
    let mut cfg = postgres::Config::new();
    for h in s.host.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        cfg.host(h);
    }
    cfg.port(s.port)
        .user(&s.user)
        .password(&s.pass)
        .dbname(&s.name)
        .application_name(application)
        .keepalives(ka.enabled)
        .target_session_attrs(TargetSessionAttrs::ReadWrite);
    // libpq: zero means the system's default, so such a setting is left to the kernel.
    if ka.idle_s > 0 {
        cfg.keepalives_idle(Duration::from_secs(ka.idle_s.into()));
    }
    if ka.interval_s > 0 {
        cfg.keepalives_interval(Duration::from_secs(ka.interval_s.into()));
    }
    if ka.count > 0 {
        cfg.keepalives_retries(ka.count);
    }
    // MAAS connects through psycopg (libpq) with no sslmode of its own: libpq's default,
    // `prefer`, takes TLS when the server offers it and does not verify the certificate
    // (libpq's DefaultSSLMode; `_get_default_db_config` sets no sslmode).
    cfg.ssl_mode(postgres::config::SslMode::Prefer);
    let client = cfg.connect(tls_without_verification()?).with_context(|| {
        format!(
            "connecting to PostgreSQL {}@{}:{}/{}",
            s.user, s.host, s.port, s.name
        )
    })?;
    Ok(client)
}

/// TLS as libpq's `prefer` does it: encrypted, the server's certificate not checked.
fn tls_without_verification() -> Result<postgres_openssl::MakeTlsConnector> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())?;
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    Ok(postgres_openssl::MakeTlsConnector::new(b.build()))
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS standin_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS standin_config (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS standin_region (
    hostname text PRIMARY KEY, system_id text NOT NULL, maas_url text NOT NULL DEFAULT '',
    pid integer NOT NULL DEFAULT 0, first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS standin_heartbeat (
    id bigserial PRIMARY KEY, hostname text NOT NULL, system_id text NOT NULL DEFAULT '',
    ts timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS standin_heartbeat_ts ON standin_heartbeat (ts);
CREATE TABLE IF NOT EXISTS standin_user (
    username text PRIMARY KEY, email text UNIQUE, password_hash text NOT NULL,
    is_superuser boolean NOT NULL DEFAULT false, ssh_import text,
    created timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS standin_apikey (
    key text PRIMARY KEY, username text NOT NULL REFERENCES standin_user ON DELETE CASCADE,
    name text NOT NULL DEFAULT '', created timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS standin_rack (
    hostname text PRIMARY KEY, system_id text NOT NULL UNIQUE, region text NOT NULL DEFAULT '',
    interfaces text NOT NULL DEFAULT '', first_registered timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now());
-- Each controller's MAAS version, as MAAS's ControllerInfo.version
-- (src/maasserver/models/controllerinfo.py): what /api/2.0/version/ counts.
ALTER TABLE standin_region ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
ALTER TABLE standin_rack ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS standin_rack_event (
    id bigserial PRIMARY KEY, hostname text NOT NULL, accepted boolean NOT NULL,
    reason text NOT NULL DEFAULT '', region text NOT NULL DEFAULT '',
    ts timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS standin_vlan (
    fabric_id integer NOT NULL, vid integer NOT NULL, name text NOT NULL DEFAULT 'untagged',
    mtu integer NOT NULL DEFAULT 1500, dhcp_on boolean NOT NULL DEFAULT false,
    primary_rack text, secondary_rack text, PRIMARY KEY (fabric_id, vid));
CREATE TABLE IF NOT EXISTS standin_subnet (
    id serial PRIMARY KEY, cidr text NOT NULL UNIQUE, fabric_id integer NOT NULL DEFAULT 0,
    vid integer NOT NULL DEFAULT 0, gateway_ip text);
CREATE TABLE IF NOT EXISTS standin_iprange (
    id serial PRIMARY KEY, type text NOT NULL, start_ip text NOT NULL, end_ip text NOT NULL,
    subnet_id integer NOT NULL REFERENCES standin_subnet ON DELETE CASCADE,
    comment text NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS standin_migration (
    name text PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS standin_rpc_endpoint (
    region_system_id text NOT NULL, hostname text NOT NULL, pid integer NOT NULL,
    address text NOT NULL, port integer NOT NULL, updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region_system_id, pid, address, port));
INSERT INTO standin_vlan (fabric_id, vid) VALUES (0, 0) ON CONFLICT DO NOTHING;
"#;

/// Whether the database still lacks the stand-in's tables (MAAS's `db_need_init`).
pub fn needs_init(c: &mut Client) -> Result<bool> {
    let row = c.query_one("SELECT to_regclass('public.standin_schema') IS NULL", &[])?;
    Ok(row.get(0))
}

/// The MAAS releases whose schema changes the stand-in records, oldest first: a MAAS of
/// version X.Y has the migrations of every release up to X.Y (Django's `maasserver`
/// migrations ship with the code that needs them).
pub const RELEASES: &[(u32, u32)] = &[(3, 4), (3, 5), (3, 6), (3, 7)];

/// The migrations MAAS `version` ships (`maasserver.3_6`, ...).
pub fn migrations_of(version: &str) -> Vec<String> {
    let mut parts = version
        .split(['.', '-', '+', '~'])
        .map(|p| p.parse::<u32>());
    let v = match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b),
        _ => (u32::MAX, 0),
    };
    RELEASES
        .iter()
        .filter(|r| **r <= v)
        .map(|(a, b)| format!("maasserver.{a}_{b}"))
        .collect()
}

/// Django's `migrate` as MAAS's dbupgrade runs it for MAAS `version`: the tables, then every
/// migration of that version not applied yet; the migrations it applied. One already applied
/// by a newer MAAS is left alone and is no error: Django only applies what it has on disk and
/// does not undo what it does not know (a refresh to an older MAAS keeps the newer schema).
pub fn migrate_version(c: &mut Client, version: &str) -> Result<Vec<String>> {
    migrate(c)?;
    let mut applied = vec![];
    for m in migrations_of(version) {
        if c.execute(
            "INSERT INTO standin_migration (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&m],
        )? == 1
        {
            applied.push(m);
        }
    }
    Ok(applied)
}

/// The migrations applied to the database, oldest first.
pub fn applied_migrations(c: &mut Client) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT name FROM standin_migration ORDER BY applied, name",
        &[],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Creates the tables. Safe to run from several regions at once: one waits for the other.
pub fn migrate(c: &mut Client) -> Result<()> {
    let mut tx = c.transaction()?;
    tx.batch_execute("SELECT pg_advisory_xact_lock(5240)")?;
    tx.batch_execute(SCHEMA)?;
    let n: i64 = tx
        .query_one("SELECT count(*) FROM standin_schema", &[])?
        .get(0);
    if n == 0 {
        tx.execute("INSERT INTO standin_schema (version) VALUES (1)", &[])?;
    }
    tx.commit()?;
    Ok(())
}

/// The shared secret kept in the database; stores `candidate` if there is none yet, so the
/// first region's secret becomes everyone's.
pub fn shared_secret(c: &mut Client, candidate: &str) -> Result<String> {
    first_value(c, "rpc_shared_secret", candidate)
}

/// The installation's uuid (`maas_uuid`), chosen by the first region.
pub fn maas_uuid(c: &mut Client) -> Result<String> {
    let b = util::random_bytes(16);
    let h = util::hex(&b);
    // A version-4-looking uuid: MAAS only ever displays it.
    let candidate = format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    );
    first_value(c, "uuid", &candidate)
}

fn first_value(c: &mut Client, name: &str, candidate: &str) -> Result<String> {
    c.execute(
        "INSERT INTO standin_config (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&name, &candidate],
    )?;
    Ok(
        c.query_one("SELECT value FROM standin_config WHERE name = $1", &[&name])?
            .get(0),
    )
}

/// Records that this region is alive: one heartbeat row, and its controller row with the
/// version it runs (MAAS: `start_up.py` `set_versions_info` at start-up, kept current by
/// `regiondservices/version_update_check.py`). The controller is the one its `maas_id` names
/// when the database has it, whatever host it now runs on (src/maasserver/models/node.py
/// `RegionControllerManager.get_or_create_running_controller`: `Node.objects.get(system_id=
/// maas_id)` before any look-up by host name): a region restored onto a new host with its
/// `maas_id` is the same controller, not a second one. The stand-in keys its rows by host
/// name, so that row moves to this host.
pub fn heartbeat(
    c: &mut Client,
    hostname: &str,
    system_id: &str,
    maas_url: &str,
    version: &str,
) -> Result<()> {
    let pid = std::process::id() as i32;
    c.execute(
        "UPDATE standin_region SET hostname = $1 WHERE system_id = $2 AND hostname <> $1
           AND NOT EXISTS (SELECT 1 FROM standin_region WHERE hostname = $1)",
        &[&hostname, &system_id],
    )?;
    c.execute(
        "INSERT INTO standin_heartbeat (hostname, system_id) VALUES ($1, $2)",
        &[&hostname, &system_id],
    )?;
    c.execute(
        "INSERT INTO standin_region (hostname, system_id, maas_url, pid, version) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (hostname) DO UPDATE SET system_id = $2, maas_url = $3, pid = $4, version = $5, last_seen = now()",
        &[&hostname, &system_id, &maas_url, &pid, &version],
    )?;
    Ok(())
}

/// The deployment's MAAS version, as `GET /api/2.0/version/` gives it (`api/version.py` →
/// `controllerinfo.py` `get_maas_version`): the short version (up to the qualifier) that the
/// most controllers run, the highest on a tie; a node counts once. `None` before any
/// controller reported one.
pub fn deployment_version(c: &mut Client) -> Result<Option<String>> {
    let rows = c.query(
        "SELECT hostname, version FROM standin_region WHERE version <> ''
         UNION SELECT hostname, version FROM standin_rack WHERE version <> ''
           AND hostname NOT IN (SELECT hostname FROM standin_region WHERE version <> '')",
        &[],
    )?;
    Ok(most_common_version(
        rows.iter().map(|r| r.get::<_, String>(1)),
    ))
}

/// MAAS's `MAASVersion.main_version` of each, counted; the most common, the highest on a tie
/// (`provisioningserver/utils/version.py`: numbers, then qualifier rc > beta > alpha, a
/// release above all three).
pub fn most_common_version(versions: impl Iterator<Item = String>) -> Option<String> {
    let mut counts: std::collections::BTreeMap<VersionOrder, (usize, String)> = Default::default();
    for v in versions {
        let Some((key, short)) = main_version(&v) else {
            continue;
        };
        counts.entry(key).or_insert((0, short)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|(ka, (na, _)), (kb, (nb, _))| na.cmp(nb).then(ka.cmp(kb)))
        .map(|(_, (_, short))| short)
}

/// How `main_version`s compare: major, minor, point, qualifier rank, qualifier number.
type VersionOrder = (u32, u32, u32, i32, u32);

/// `major.minor.point[~qualifierN]` and its order, from a MAAS version string such as
/// `3.6.0-16321-g.9f0d1a2` or `3.7.0~beta2-...`.
fn main_version(v: &str) -> Option<(VersionOrder, String)> {
    let mut parts = v.splitn(3, '.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let point: u32 = digits.parse().ok()?;
    let after = rest[digits.len()..].trim_start_matches('~');
    let qtype: String = after
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    let qnum: String = after[qtype.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let (order, short_q) = match (qtype.as_str(), qnum.parse::<u32>()) {
        ("rc" | "beta" | "alpha", Ok(n)) => (
            match qtype.as_str() {
                "rc" => -1,
                "beta" => -2,
                _ => -3,
            },
            Some((qtype.clone(), n)),
        ),
        _ => (0, None),
    };
    let mut short = format!("{major}.{minor}.{point}");
    let qn = short_q.as_ref().map_or(0, |(_, n)| *n);
    if let Some((t, n)) = &short_q {
        short.push_str(&format!(
            "~{t}{}",
            if *n == 0 {
                String::new()
            } else {
                n.to_string()
            }
        ));
    }
    Some(((major, minor, point, order, qn), short))
}

/// Drops heartbeats older than an hour so a long run does not grow the table without bound.
pub fn prune_heartbeats(c: &mut Client) -> Result<()> {
    c.execute(
        "DELETE FROM standin_heartbeat WHERE ts < now() - interval '1 hour'",
        &[],
    )?;
    Ok(())
}

fn hash_password(username: &str, password: &str) -> String {
    let salt = util::random_hex(16);
    format!(
        "sha256${salt}${}",
        util::sha256_hex(format!("{salt}{username}{password}").as_bytes())
    )
}

/// `createadmin`: a superuser with one API key, as `Command.handle` in MAAS's
/// src/maasserver/management/commands/createadmin.py creates it: an empty `--email` is taken
/// (no address); a taken username or email is `AlreadyExistingUser`; a bad `--ssh-import` is
/// `SSHKeysError` (and nothing is created: MAAS checks it inside the same transaction).
pub fn create_admin(
    c: &mut Client,
    username: &str,
    password: &str,
    email: &str,
    ssh_import: Option<&str>,
) -> Result<()> {
    // Django's UserManager._create_user refuses an empty username with a ValueError.
    if username.is_empty() {
        return Err(Raised {
            class: "ValueError",
            message: "The given username must be set".into(),
            command_error: false,
        }
        .into());
    }
    let given = email;
    let email = normalize_email(email);
    if let Some(id) = ssh_import.filter(|s| !s.is_empty()) {
        validate_ssh_import(id)?;
    }
    let mut tx = c.transaction()?;
    tx.batch_execute("LOCK TABLE standin_user IN SHARE ROW EXCLUSIVE MODE")?;
    // MAAS makes auth_user's email unique (and nullable); createadmin reports any
    // IntegrityError, username or email, with this one message, naming the email as given.
    let clash = tx.query_opt(
        "SELECT 1 FROM standin_user WHERE username = $1 OR email = $2",
        &[&username, &email],
    )?;
    if clash.is_some() {
        return command_error(
            "AlreadyExistingUser",
            format!("A user with the email {given} already exists."),
        );
    }
    tx.execute(
        "INSERT INTO standin_user (username, email, password_hash, is_superuser, ssh_import) VALUES ($1, $2, $3, true, $4)",
        &[&username, &email, &hash_password(username, password), &ssh_import],
    )?;
    tx.execute(
        "INSERT INTO standin_apikey (key, username, name) VALUES ($1, $2, 'MAAS consumer')",
        &[&util::api_key(), &username],
    )?;
    tx.commit()?;
    Ok(())
}

/// MAAS's `normalize_email` (src/maasserver/models/__init__.py): an empty address is no
/// address (NULL, so any number of users may have none); otherwise Django's
/// `UserManager.normalize_email`, which lowercases the domain part only.
pub fn normalize_email(email: &str) -> Option<String> {
    if email.is_empty() {
        return None;
    }
    Some(match email.trim().rsplit_once('@') {
        Some((name, domain)) => format!("{name}@{}", domain.to_lowercase()),
        None => email.to_string(),
    })
}

/// `validate_ssh_import` in MAAS's createadmin.py: `lp:<id>`/`gh:<id>`, or a bare id
/// (Launchpad then), ids of word characters and `-`.
fn validate_ssh_import(id: &str) -> Result<()> {
    let word = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    if id.starts_with("lp") || id.starts_with("gh") {
        let ok =
            matches!(id.split_once(':'), Some((p, user)) if (p == "lp" || p == "gh") && word(user));
        if !ok {
            return command_error(
                "SSHKeysError",
                "The protocol or user-id entered is not in a correct format. Your SSH keys will not be imported.",
            );
        }
    } else if !word(id) {
        return command_error(
            "SSHKeysError",
            "The input entered is not in a correct format. Your SSH keys will not be imported.",
        );
    }
    Ok(())
}

fn require_user(c: &mut Client, username: &str) -> Result<()> {
    if c.query_opt(
        "SELECT 1 FROM standin_user WHERE username = $1",
        &[&username],
    )?
    .is_none()
    {
        // apikey.py `Command.handle`: `raise CommandError("User does not exist.")`.
        return command_error("CommandError", "User does not exist.");
    }
    Ok(())
}

/// The API keys of `username`, oldest first.
pub fn api_keys(c: &mut Client, username: &str) -> Result<Vec<String>> {
    require_user(c, username)?;
    let rows = c.query(
        "SELECT key FROM standin_apikey WHERE username = $1 ORDER BY created, key",
        &[&username],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A new API key for `username`.
pub fn generate_api_key(c: &mut Client, username: &str) -> Result<String> {
    require_user(c, username)?;
    let key = util::api_key();
    c.execute(
        "INSERT INTO standin_apikey (key, username) VALUES ($1, $2)",
        &[&key, &username],
    )?;
    Ok(key)
}

/// Deletes one API key of `username`.
pub fn delete_api_key(c: &mut Client, username: &str, key: &str) -> Result<()> {
    require_user(c, username)?;
    if c.execute(
        "DELETE FROM standin_apikey WHERE username = $1 AND key = $2",
        &[&username, &key],
    )? == 0
    {
        return invalid("No matching api key found.");
    }
    Ok(())
}

/// The user an OAuth token key and secret belong to: (username, is_superuser).
pub fn authenticate(
    c: &mut Client,
    token_key: &str,
    token_secret: &str,
) -> Result<Option<(String, bool)>> {
    let rows = c.query(
        "SELECT u.username, u.is_superuser, k.key FROM standin_apikey k JOIN standin_user u USING (username)
         WHERE split_part(k.key, ':', 2) = $1",
        &[&token_key],
    )?;
    Ok(rows.iter().find_map(|r| {
        let key: String = r.get(2);
        (key.split(':').nth(2) == Some(token_secret)).then(|| (r.get(0), r.get(1)))
    }))
}

/// Users, for `users read`.
pub fn users(c: &mut Client) -> Result<Value> {
    let rows = c.query(
        "SELECT username, email, is_superuser FROM standin_user ORDER BY username",
        &[],
    )?;
    Ok(Value::Array(rows.iter().map(|r| {
        let u: String = r.get(0);
        json!({"username": u, "email": r.get::<_, Option<String>>(1), "is_superuser": r.get::<_, bool>(2),
               "is_local": true, "resource_uri": format!("/MAAS/api/2.0/users/{u}/")})
    }).collect()))
}

/// Region controllers, as `region-controllers read` shows them. A host that also runs a rack
/// is a "region and rack controller", as in MAAS.
pub fn regions(c: &mut Client) -> Result<Value> {
    let q = String::from(
        "SELECT r.hostname, r.system_id, r.maas_url, extract(epoch from now() - r.last_seen)::float8, k.system_id IS NOT NULL
         FROM standin_region r LEFT JOIN standin_rack k USING (hostname) ORDER BY r.hostname"
    );
    let rows = c.query(q.as_str(), &[])?;
    Ok(Value::Array(
        rows.iter()
            .map(|r| {
                let both: bool = r.get(4);
                let age: f64 = r.get(3);
                controller_json(
                    r.get(0),
                    r.get(1),
                    both,
                    true,
                    age,
                    json!({"maas_url": r.get::<_, String>(2)}),
                )
            })
            .collect(),
    ))
}

/// Rack controllers, as `rack-controllers read` shows them, with their DHCP roles.
pub fn racks(c: &mut Client) -> Result<Value> {
    let q = String::from(
        "SELECT k.hostname, k.system_id, k.region, extract(epoch from now() - k.last_seen)::float8, r.hostname IS NOT NULL, k.interfaces
         FROM standin_rack k LEFT JOIN standin_region r USING (hostname) ORDER BY k.hostname"
    );
    let rows = c.query(q.as_str(), &[])?;
    let mut out = vec![];
    for r in &rows {
        let sid: String = r.get(1);
        let both: bool = r.get(4);
        let age: f64 = r.get(3);
        let ifaces: String = r.get(5);
        let extra = json!({
            "connected_region": r.get::<_, String>(2),
            "interfaces": ifaces.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            "dhcp": dhcp_roles(c, &sid)?,
        });
        out.push(controller_json(r.get(0), sid, both, false, age, extra));
    }
    Ok(Value::Array(out))
}

fn controller_json(
    hostname: String,
    system_id: String,
    both: bool,
    region: bool,
    age: f64,
    extra: Value,
) -> Value {
    let (node_type, name) = match (both, region) {
        (true, _) => (4, "Region and rack controller"),
        (false, true) => (3, "Region controller"),
        (false, false) => (2, "Rack controller"),
    };
    let resource = if region {
        "regioncontrollers"
    } else {
        "rackcontrollers"
    };
    let mut v = json!({
        "hostname": hostname, "fqdn": hostname, "system_id": system_id,
        "node_type": node_type, "node_type_name": name,
        "last_seen_seconds_ago": age, "connected": age < 5.0,
        "resource_uri": format!("/MAAS/api/2.0/{resource}/{system_id}/"),
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// VLANs for which rack `system_id` is primary or secondary DHCP server.
/// A VLAN's id as MAAS numbers them (the default fabric's untagged VLAN is 5001); dhcpd.conf
/// names its shared network `vlan-<id>`.
pub fn vlan_id(fabric: i32, vid: i32) -> i32 {
    5001 + fabric * 4096 + vid
}

/// VLANs for which rack `system_id` is primary or secondary DHCP server, with what its
/// dhcpd needs: subnets, dynamic ranges, and the failover peer.
pub fn dhcp_roles(c: &mut Client, system_id: &str) -> Result<Value> {
    let rows = c.query(
        "SELECT v.fabric_id, v.vid, v.dhcp_on, v.primary_rack = $1,
                (SELECT hostname FROM standin_rack WHERE system_id =
                    CASE WHEN v.primary_rack = $1 THEN v.secondary_rack ELSE v.primary_rack END)
         FROM standin_vlan v WHERE v.primary_rack = $1 OR v.secondary_rack = $1 ORDER BY 1, 2",
        &[&system_id],
    )?;
    let mut out = vec![];
    for r in &rows {
        let (fabric, vid): (i32, i32) = (r.get(0), r.get(1));
        let subnets = c.query(
            "SELECT s.id, s.cidr FROM standin_subnet s WHERE s.fabric_id = $1 AND s.vid = $2 ORDER BY s.id",
            &[&fabric, &vid],
        )?;
        let mut subnet_json = vec![];
        for s in &subnets {
            let sid: i32 = s.get(0);
            let ranges = c.query(
                "SELECT start_ip, end_ip FROM standin_iprange WHERE subnet_id = $1 AND type = 'dynamic' ORDER BY id",
                &[&sid],
            )?;
            let ranges: Vec<Value> = ranges
                .iter()
                .map(|x| json!([x.get::<_, String>(0), x.get::<_, String>(1)]))
                .collect();
            subnet_json.push(json!({"cidr": s.get::<_, String>(1), "dynamic_ranges": ranges}));
        }
        out.push(json!({
            "fabric_id": fabric, "vid": vid, "vlan_id": vlan_id(fabric, vid),
            "dhcp_on": r.get::<_, bool>(2),
            "role": if r.get::<_, bool>(3) { "primary" } else { "secondary" },
            "peer": r.get::<_, Option<String>>(4),
            "subnets": subnet_json,
        }));
    }
    Ok(Value::Array(out))
}

/// What a region answers a rack that proved it has the secret.
pub struct RackRegistration {
    /// The rack's system id (kept across registrations).
    pub system_id: String,
    /// Its DHCP roles.
    pub dhcp: Value,
}

/// Registers or refreshes a rack, and learns the subnets of its interfaces (MAAS discovers
/// them the same way), all on fabric 0 / untagged VLAN.
pub fn rack_seen(
    c: &mut Client,
    hostname: &str,
    region: &str,
    interfaces: &[String],
    version: Option<&str>,
) -> Result<RackRegistration> {
    let ifaces = interfaces.join(",");
    let existing = c.query_opt(
        "SELECT system_id FROM standin_rack WHERE hostname = $1",
        &[&hostname],
    )?;
    let system_id: String = match existing {
        Some(r) => {
            c.execute(
                "UPDATE standin_rack SET region = $2, interfaces = $3, last_seen = now() WHERE hostname = $1",
                &[&hostname, &region, &ifaces],
            )?;
            r.get(0)
        }
        None => {
            let sid = util::system_id();
            c.execute(
                "INSERT INTO standin_rack (hostname, system_id, region, interfaces) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (hostname) DO UPDATE SET region = $3, last_seen = now()",
                &[&hostname, &sid, &region, &ifaces],
            )?;
            c.query_one(
                "SELECT system_id FROM standin_rack WHERE hostname = $1",
                &[&hostname],
            )?
            .get(0)
        }
    };
    // rackcontrollers.py register: "Update the version" when the rack sent one
    if let Some(v) = version {
        c.execute(
            "UPDATE standin_rack SET version = $2 WHERE hostname = $1",
            &[&hostname, &v],
        )?;
    }
    for cidr in interfaces.iter().filter_map(|i| network_of(i)) {
        c.execute(
            "INSERT INTO standin_subnet (cidr) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&cidr],
        )?;
    }
    let dhcp = dhcp_roles(c, &system_id)?;
    Ok(RackRegistration { system_id, dhcp })
}

/// How long another region's RPC endpoints stay listed without being refreshed
/// (`IPCMasterService.REMOVE_INTERVAL`, src/maasserver/ipc.py).
pub const RPC_ENDPOINT_REMOVE_SECS: i64 = 90;

/// Replaces this region's RPC endpoints with `processes` (worker pid, RPC port) on each of
/// `addresses`, and drops other regions' endpoints not refreshed for
/// [`RPC_ENDPOINT_REMOVE_SECS`], as `IPCMasterService._update` does (src/maasserver/ipc.py:
/// `_updateEndpoints` per worker, `previous_process_ids` deleted, other controllers' processes
/// older than `REMOVE_INTERVAL` deleted).
pub fn set_rpc_endpoints(
    c: &mut Client,
    region_system_id: &str,
    hostname: &str,
    processes: &[(i32, u16)],
    addresses: &[String],
) -> Result<()> {
    let mut tx = c.transaction()?;
    tx.execute(
        "DELETE FROM standin_rpc_endpoint WHERE region_system_id = $1",
        &[&region_system_id],
    )?;
    for (pid, port) in processes {
        let port = i32::from(*port);
        for a in addresses {
            tx.execute(
                "INSERT INTO standin_rpc_endpoint (region_system_id, hostname, pid, address, port)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&region_system_id, &hostname, pid, a, &port],
            )?;
        }
    }
    tx.execute(
        &format!(
            "DELETE FROM standin_rpc_endpoint WHERE region_system_id <> $1
             AND updated < now() - interval '{RPC_ENDPOINT_REMOVE_SECS} seconds'"
        ),
        &[&region_system_id],
    )?;
    tx.commit()?;
    Ok(())
}

/// regiond's `/metrics_endpoints` on 5239 (src/maasserver/prometheus/service.py
/// `PrometheusDiscoveryResource`): every controller's addresses with 5239 if it is a region
/// (region and rack included) or 5249, grouped by (zone, is region, is rack), labelled
/// `__meta_prometheus_job: maas`, `maas_az`, `maas_region`, `maas_rack` (Python's
/// `str(bool)`). The stand-in has one zone, `default` (MAAS's default zone), and knows a
/// region's addresses from its RPC endpoints and a rack's from its registration.
pub fn metrics_endpoints(c: &mut Client) -> Result<Value> {
    let mut groups: BTreeMap<(bool, bool), BTreeSet<String>> = BTreeMap::new();
    let rows = c.query(
        "SELECT r.hostname, k.interfaces, (SELECT string_agg(DISTINCT e.address, ',')
                 FROM standin_rpc_endpoint e WHERE e.region_system_id = r.system_id)
         FROM standin_region r LEFT JOIN standin_rack k USING (hostname)
         UNION ALL
         SELECT k.hostname, k.interfaces, NULL FROM standin_rack k
         WHERE NOT EXISTS (SELECT 1 FROM standin_region r WHERE r.hostname = k.hostname)",
        &[],
    )?;
    let regions: BTreeSet<String> = c
        .query("SELECT hostname FROM standin_region", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in &rows {
        let host: String = r.get(0);
        let rack_ifaces: Option<String> = r.get(1);
        let rpc: Option<String> = r.get(2);
        let is_region = regions.contains(&host);
        let is_rack = rack_ifaces.is_some();
        let port = if is_region { 5239 } else { 5249 };
        let mut ips: BTreeSet<String> = BTreeSet::new();
        for a in rpc.iter().flat_map(|s| s.split(',')) {
            ips.insert(a.to_string());
        }
        for i in rack_ifaces.iter().flat_map(|s| s.split(',')) {
            if let Some(ip) = i.split('/').next().filter(|s| !s.is_empty()) {
                ips.insert(ip.to_string());
            }
        }
        let targets = groups.entry((is_region, is_rack)).or_default();
        for ip in ips {
            targets.insert(format!("{ip}:{port}"));
        }
    }
    let py = |b: bool| if b { "True" } else { "False" };
    Ok(Value::Array(
        groups
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|((region, rack), targets)| {
                json!({"targets": targets, "labels": {"__meta_prometheus_job": "maas",
                    "maas_az": "default", "maas_region": py(region), "maas_rack": py(rack)}})
            })
            .collect(),
    ))
}

/// Withdraws this region's RPC endpoints, as a region that stops deletes its processes
/// (`IPCMasterService.stopService`, src/maasserver/ipc.py: `delete_all_processes`).
pub fn delete_rpc_endpoints(c: &mut Client, region_system_id: &str) -> Result<()> {
    c.execute(
        "DELETE FROM standin_rpc_endpoint WHERE region_system_id = $1",
        &[&region_system_id],
    )?;
    Ok(())
}

/// The `/MAAS/rpc/` document (src/maasserver/views/rpc.py `info`, `get_endpoints`): every
/// region process's endpoints as `{"eventloops": {"<hostname>:pid=<pid>": [[address, port],
/// ...]}}`, leaving out an address another region also lists (`_unique_to_region`).
pub fn rpc_eventloops(c: &mut Client) -> Result<Value> {
    let rows = c.query(
        "SELECT e.hostname, e.pid, e.address, e.port FROM standin_rpc_endpoint e
         WHERE NOT EXISTS (SELECT 1 FROM standin_rpc_endpoint o
                           WHERE o.address = e.address AND o.region_system_id <> e.region_system_id)
         ORDER BY e.hostname, e.pid, e.address, e.port",
        &[],
    )?;
    let mut loops = serde_json::Map::new();
    for r in &rows {
        let name = format!("{}:pid={}", r.get::<_, String>(0), r.get::<_, i32>(1));
        let entry = loops.entry(name).or_insert_with(|| json!([]));
        if let Value::Array(a) = entry {
            a.push(json!([r.get::<_, String>(2), r.get::<_, i32>(3)]));
        }
    }
    Ok(json!({ "eventloops": loops }))
}

/// Records a rack's registration attempt, but only when its outcome changes, so a rack
/// reconnecting every second leaves a readable history rather than a flood.
pub fn rack_event(
    c: &mut Client,
    hostname: &str,
    accepted: bool,
    reason: &str,
    region: &str,
) -> Result<()> {
    let last = c.query_opt(
        "SELECT accepted, reason FROM standin_rack_event WHERE hostname = $1 ORDER BY id DESC LIMIT 1",
        &[&hostname],
    )?;
    let changed = match last {
        Some(r) => r.get::<_, bool>(0) != accepted || r.get::<_, String>(1) != reason,
        None => true,
    };
    if changed {
        c.execute(
            "INSERT INTO standin_rack_event (hostname, accepted, reason, region) VALUES ($1, $2, $3, $4)",
            &[&hostname, &accepted, &reason, &region],
        )?;
    }
    Ok(())
}

/// Registration history, for tests.
pub fn rack_events(c: &mut Client) -> Result<Value> {
    let rows = c.query(
        "SELECT hostname, accepted, reason, region, extract(epoch from ts)::float8 FROM standin_rack_event ORDER BY id",
        &[],
    )?;
    Ok(Value::Array(rows.iter().map(|r| json!({
        "hostname": r.get::<_, String>(0), "accepted": r.get::<_, bool>(1),
        "reason": r.get::<_, String>(2), "region": r.get::<_, String>(3), "ts": r.get::<_, f64>(4),
    })).collect()))
}

/// `10.77.0.5/24` → `10.77.0.0/24` (IPv4 only; MAAS would also learn IPv6).
pub fn network_of(iface: &str) -> Option<String> {
    let (ip, len) = iface.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(format!("{}/{len}", Ipv4Addr::from(u32::from(ip) & mask)))
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Subnets, for `subnets read`.
pub fn subnets(c: &mut Client) -> Result<Value> {
    let rows = c.query(
        "SELECT s.id, s.cidr, s.fabric_id, s.vid, s.gateway_ip, v.name, v.dhcp_on
         FROM standin_subnet s JOIN standin_vlan v USING (fabric_id, vid) ORDER BY s.id",
        &[],
    )?;
    Ok(Value::Array(rows.iter().map(|r| {
        let id: i32 = r.get(0);
        json!({
            "id": id, "name": r.get::<_, String>(1), "cidr": r.get::<_, String>(1),
            "gateway_ip": r.get::<_, Option<String>>(4),
            "vlan": {"fabric_id": r.get::<_, i32>(2), "vid": r.get::<_, i32>(3), "fabric": format!("fabric-{}", r.get::<_, i32>(2)),
                     "name": r.get::<_, String>(5), "dhcp_on": r.get::<_, bool>(6)},
            "resource_uri": format!("/MAAS/api/2.0/subnets/{id}/"),
        })
    }).collect()))
}

/// One VLAN, for `vlan read`.
pub fn vlan(c: &mut Client, fabric: i32, vid: i32) -> Result<Value> {
    let r = c
        .query_opt(
            "SELECT name, mtu, dhcp_on, primary_rack, secondary_rack FROM standin_vlan WHERE fabric_id = $1 AND vid = $2",
            &[&fabric, &vid],
        )?
        .ok_or_else(|| NotFound(format!("No VLAN matches the given query (fabric {fabric}, vid {vid}).")))?;
    Ok(json!({
        "fabric_id": fabric, "fabric": format!("fabric-{fabric}"), "vid": vid, "id": vlan_id(fabric, vid),
        "name": r.get::<_, String>(0), "mtu": r.get::<_, i32>(1), "dhcp_on": r.get::<_, bool>(2),
        "primary_rack": r.get::<_, Option<String>>(3), "secondary_rack": r.get::<_, Option<String>>(4),
        "relay_vlan": null, "external_dhcp": null,
        "resource_uri": format!("/MAAS/api/2.0/vlans/{}/", vlan_id(fabric, vid)),
    }))
}

fn rack_system_id(c: &mut Client, who: &str) -> Result<Option<String>> {
    let r = c.query_opt(
        "SELECT system_id FROM standin_rack WHERE system_id = $1 OR hostname = $1",
        &[&who],
    )?;
    Ok(r.map(|r| r.get(0)))
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

/// `vlan update <fabric> <vid> primary_rack= secondary_rack= dhcp_on=`, validated as MAAS's
/// VLAN form does (racks must exist, differ, DHCP needs a primary rack and a dynamic range).
pub fn vlan_update(
    c: &mut Client,
    fabric: i32,
    vid: i32,
    params: &[(String, String)],
) -> Result<Value> {
    let cur = vlan(c, fabric, vid)?;
    let mut primary = cur["primary_rack"].as_str().map(str::to_string);
    let mut secondary = cur["secondary_rack"].as_str().map(str::to_string);
    let mut dhcp_on = cur["dhcp_on"].as_bool().unwrap_or(false);
    let mut name = cur["name"].as_str().unwrap_or("untagged").to_string();
    let mut mtu = cur["mtu"].as_i64().unwrap_or(1500) as i32;
    for (k, v) in params {
        match k.as_str() {
            "primary_rack" | "secondary_rack" => {
                let sid = if v.is_empty() {
                    None
                } else {
                    match rack_system_id(c, v)? {
                        Some(s) => Some(s),
                        None => return invalid(format!(
                            "{{\"{k}\": [\"Select a valid choice. {v} is not one of the available choices.\"]}}"
                        )),
                    }
                };
                if k == "primary_rack" {
                    primary = sid
                } else {
                    secondary = sid
                }
            }
            "dhcp_on" => dhcp_on = truthy(v),
            "name" => name = v.clone(),
            "mtu" => {
                mtu = v
                    .parse()
                    .map_err(|_| Invalid("{\"mtu\": [\"Enter a whole number.\"]}".to_string()))?
            }
            "relay_vlan" | "space" | "description" | "fabric" | "vid" => {}
            other => return invalid(format!("{{\"{other}\": [\"Unknown field.\"]}}")),
        }
    }
    if secondary.is_some() && primary.is_none() {
        return invalid("{\"secondary_rack\": [\"Primary rack must be set before setting the secondary rack.\"]}");
    }
    if secondary.is_some() && secondary == primary {
        return invalid("{\"secondary_rack\": [\"Primary rack controller and secondary rack controller cannot be the same.\"]}");
    }
    if dhcp_on {
        if primary.is_none() {
            return invalid("{\"dhcp_on\": [\"dhcp can only be turned on when a primary rack controller is set.\"]}");
        }
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM standin_iprange r JOIN standin_subnet s ON s.id = r.subnet_id
                 WHERE s.fabric_id = $1 AND s.vid = $2 AND r.type = 'dynamic'",
                &[&fabric, &vid],
            )?
            .get(0);
        if n == 0 {
            return invalid("{\"dhcp_on\": [\"dhcp can only be turned on when a dynamic IP range is defined.\"]}");
        }
    }
    c.execute(
        "UPDATE standin_vlan SET primary_rack = $3, secondary_rack = $4, dhcp_on = $5, name = $6, mtu = $7
         WHERE fabric_id = $1 AND vid = $2",
        &[&fabric, &vid, &primary, &secondary, &dhcp_on, &name, &mtu],
    )?;
    vlan(c, fabric, vid)
}

fn iprange_json(r: &postgres::Row) -> Value {
    let id: i32 = r.get(0);
    json!({"id": id, "type": r.get::<_, String>(1), "start_ip": r.get::<_, String>(2),
           "end_ip": r.get::<_, String>(3), "subnet": {"id": r.get::<_, i32>(4), "cidr": r.get::<_, String>(5)},
           "comment": r.get::<_, String>(6), "resource_uri": format!("/MAAS/api/2.0/ipranges/{id}/")})
}

const IPRANGE_SELECT: &str = "SELECT r.id, r.type, r.start_ip, r.end_ip, s.id, s.cidr, r.comment
    FROM standin_iprange r JOIN standin_subnet s ON s.id = r.subnet_id";

/// IP ranges, for `ipranges read`.
pub fn ipranges(c: &mut Client) -> Result<Value> {
    let rows = c.query(format!("{IPRANGE_SELECT} ORDER BY r.id").as_str(), &[])?;
    Ok(Value::Array(rows.iter().map(iprange_json).collect()))
}

/// `ipranges create type=dynamic start_ip= end_ip= [subnet=] [comment=]`.
pub fn iprange_create(c: &mut Client, params: &[(String, String)]) -> Result<Value> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    let kind = get("type").unwrap_or_default();
    if kind != "dynamic" && kind != "reserved" {
        return invalid(format!("{{\"type\": [\"Select a valid choice. {kind} is not one of the available choices.\"]}}"));
    }
    let parse = |k: &str| -> Result<Ipv4Addr> {
        get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
            Invalid(format!(
                "{{\"{k}\": [\"Enter a valid IPv4 or IPv6 address.\"]}}"
            ))
            .into()
        })
    };
    let (start, end) = (parse("start_ip")?, parse("end_ip")?);
    if u32::from(start) > u32::from(end) {
        return invalid(
            "{\"end_ip\": [\"End IP address must not be less than Start IP address.\"]}",
        );
    }
    let subnets = c.query("SELECT id, cidr FROM standin_subnet ORDER BY id", &[])?;
    let wanted = get("subnet");
    let subnet = subnets.iter().find(|r| {
        let cidr: String = r.get(1);
        let id: i32 = r.get(0);
        let named = match wanted.as_deref() {
            Some(w) => w == cidr || w == id.to_string(),
            None => true,
        };
        named && in_cidr(start, &cidr) && in_cidr(end, &cidr)
    });
    let Some(subnet) = subnet else {
        return invalid(format!(
            "{{\"__all__\": [\"Could not find a subnet for IP range {start} - {end}.\"]}}"
        ));
    };
    let subnet_id: i32 = subnet.get(0);
    for r in c.query(
        "SELECT start_ip, end_ip FROM standin_iprange WHERE subnet_id = $1",
        &[&subnet_id],
    )? {
        let (s, e): (String, String) = (r.get(0), r.get(1));
        let (Ok(s), Ok(e)) = (s.parse::<Ipv4Addr>(), e.parse::<Ipv4Addr>()) else {
            continue;
        };
        if u32::from(start) <= u32::from(e) && u32::from(s) <= u32::from(end) {
            return invalid(format!(
                "{{\"__all__\": [\"Requested {kind} range conflicts with an existing range.\"]}}"
            ));
        }
    }
    let comment = get("comment").unwrap_or_default();
    let row = c.query_one(
        "INSERT INTO standin_iprange (type, start_ip, end_ip, subnet_id, comment) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[&kind, &start.to_string(), &end.to_string(), &subnet_id, &comment],
    )?;
    let id: i32 = row.get(0);
    let r = c.query_one(format!("{IPRANGE_SELECT} WHERE r.id = $1").as_str(), &[&id])?;
    Ok(iprange_json(&r))
}

/// How MAAS's settings form cleans a value (`CONFIG_ITEMS` in src/maasserver/forms/settings.py:
/// the Django form field of each setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `forms.BooleanField` (required=False): `false` and `0`, in any case, and the empty
    /// string are false, anything else true.
    Bool,
    /// `forms.IntegerField` (required=False): a whole number, empty is null, else `Enter a
    /// whole number.`
    Int,
    /// Any other field (CharField, ChoiceField, URL, host and address lists): the string, its
    /// surrounding white space stripped. The stand-in does not check choices or formats.
    Text,
}

/// The global settings `set-config`/`get-config` know (a subset of MAAS's; others are refused
/// as MAAS refuses them): name, kind, and the value an unset setting reads as, as JSON
/// (`get_default_config` in src/maasserver/models/config.py, 3.6; `main_archive` and
/// `ports_archive` come from the package repositories, `migrated_config_values` in
/// src/maasserver/api/maas.py; `maas_name` defaults to the host name).
pub const CONFIG_ITEMS: &[(&str, Kind, &str)] = &[
    ("active_discovery_interval", Kind::Text, "10800"),
    ("boot_images_auto_import", Kind::Bool, "true"),
    ("commissioning_distro_series", Kind::Text, "\"noble\""),
    ("completed_intro", Kind::Bool, "false"),
    ("curtin_verbose", Kind::Bool, "true"),
    ("default_distro_series", Kind::Text, "\"noble\""),
    ("default_dns_ttl", Kind::Int, "30"),
    ("default_min_hwe_kernel", Kind::Text, "\"\""),
    ("default_osystem", Kind::Text, "\"ubuntu\""),
    ("default_storage_layout", Kind::Text, "\"flat\""),
    ("disk_erase_with_quick_erase", Kind::Bool, "false"),
    ("disk_erase_with_secure_erase", Kind::Bool, "true"),
    ("dns_trusted_acl", Kind::Text, "null"),
    ("dnssec_validation", Kind::Text, "\"auto\""),
    ("enable_analytics", Kind::Bool, "true"),
    ("enable_disk_erasing_on_release", Kind::Bool, "false"),
    ("enable_http_proxy", Kind::Bool, "true"),
    ("enable_third_party_drivers", Kind::Bool, "true"),
    ("http_proxy", Kind::Text, "null"),
    ("kernel_opts", Kind::Text, "null"),
    ("maas_auto_ipmi_user", Kind::Text, "\"maas\""),
    ("maas_name", Kind::Text, ""),
    ("maas_proxy_port", Kind::Int, "8000"),
    (
        "main_archive",
        Kind::Text,
        "\"http://archive.ubuntu.com/ubuntu\"",
    ),
    ("network_discovery", Kind::Text, "\"enabled\""),
    ("ntp_external_only", Kind::Bool, "false"),
    ("ntp_servers", Kind::Text, "\"ntp.ubuntu.com\""),
    (
        "ports_archive",
        Kind::Text,
        "\"http://ports.ubuntu.com/ubuntu-ports\"",
    ),
    ("prefer_v4_proxy", Kind::Bool, "false"),
    ("prometheus_enabled", Kind::Bool, "false"),
    ("prometheus_push_gateway", Kind::Text, "null"),
    ("prometheus_push_interval", Kind::Int, "60"),
    ("promtail_enabled", Kind::Bool, "false"),
    ("promtail_port", Kind::Int, "5238"),
    ("theme", Kind::Text, "\"\""),
    ("upstream_dns", Kind::Text, "null"),
    ("use_peer_proxy", Kind::Bool, "false"),
    ("windows_kms_host", Kind::Text, "null"),
];

fn config_item(name: &str) -> Result<(Kind, Value)> {
    let Some((_, kind, default)) = CONFIG_ITEMS.iter().find(|(n, _, _)| *n == name) else {
        return invalid(format!("{{\"name\": [\"\\\"{name}\\\" is not a valid config setting (see help for details).\"]}}"));
    };
    let default = if default.is_empty() {
        Value::String(util::hostname())
    } else {
        serde_json::from_str(default).unwrap_or(Value::Null)
    };
    Ok((*kind, default))
}

/// The value MAAS's form cleans `value` to for a setting of `kind` (Django's
/// `BooleanField.to_python`, `IntegerField.to_python`, `CharField` stripping), or the form's
/// error for `name`, as the API answers it (400, `{"<name>": ["…"]}`).
pub fn clean_config_value(name: &str, kind: Kind, value: &str) -> Result<Value> {
    Ok(match kind {
        Kind::Bool => Value::Bool(!matches!(value.to_lowercase().as_str(), "false" | "0" | "")),
        Kind::Int => match value.trim() {
            "" => Value::Null,
            v => match v.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => return invalid(format!("{{\"{name}\": [\"Enter a whole number.\"]}}")),
            },
        },
        Kind::Text => Value::String(value.trim().to_string()),
    })
}

/// `maas set-config name= value=`: the cleaned, typed value is stored (MAAS's Config rows hold
/// JSON), as `MaasHandler.set_config` saves it through the setting's form.
pub fn set_config(c: &mut Client, name: &str, value: &str) -> Result<()> {
    let (kind, _) = config_item(name)?;
    let typed = clean_config_value(name, kind, value)?;
    c.execute(
        "INSERT INTO standin_config (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2",
        &[&name, &typed.to_string()],
    )?;
    Ok(())
}

/// `maas get-config name=`: the stored value with its type (`MaasHandler.get_config` answers
/// `json.dumps(value)`), or the default of a setting never set (`Config.objects.get_config`).
pub fn get_config(c: &mut Client, name: &str) -> Result<Value> {
    let (_, default) = config_item(name)?;
    let r = c.query_opt("SELECT value FROM standin_config WHERE name = $1", &[&name])?;
    Ok(match r {
        Some(row) => {
            let text: String = row.get(0);
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        None => default,
    })
}

/// The shared secret in the database, if a region has stored one.
pub fn read_shared_secret(c: &mut Client) -> Result<Option<String>> {
    let r = c.query_opt(
        "SELECT value FROM standin_config WHERE name = 'rpc_shared_secret'",
        &[],
    )?;
    Ok(r.map(|r| r.get(0)))
}

/// The most recent heartbeats (newest first), for tests: (hostname, epoch seconds).
pub fn recent_heartbeats(c: &mut Client, limit: i64) -> Result<Value> {
    let rows = c.query(
        "SELECT hostname, extract(epoch from ts)::float8 FROM standin_heartbeat ORDER BY id DESC LIMIT $1",
        &[&limit],
    )?;
    Ok(Value::Array(
        rows.iter()
            .map(|r| json!({"hostname": r.get::<_, String>(0), "ts": r.get::<_, f64>(1)}))
            .collect(),
    ))
}

/// The TLS settings every region renders into nginx: the `tls` secret and the `tls_port`
/// config, both set by `maas config-tls` (`_update_tls_config` in
/// src/maasserver/management/commands/config_tls.py) and read back by
/// `RegionHTTPService._getConfiguration` (src/maasserver/regiondservices/http.py: TLS is on when
/// there is a certificate and a port).
pub fn tls_config(c: &mut Client) -> Result<Option<crate::nginx::Tls>> {
    let r = c.query_opt(
        "SELECT value FROM standin_config WHERE name = 'standin_tls'",
        &[],
    )?;
    Ok(r.and_then(|r| serde_json::from_str(&r.get::<_, String>(0)).ok()))
}

/// Stores (or, with `None`, deletes) the TLS settings.
pub fn set_tls_config(c: &mut Client, tls: Option<&crate::nginx::Tls>) -> Result<()> {
    match tls {
        Some(t) => c.execute(
            "INSERT INTO standin_config (name, value) VALUES ('standin_tls', $1) ON CONFLICT (name) DO UPDATE SET value = $1",
            &[&serde_json::to_string(t)?],
        )?,
        None => c.execute("DELETE FROM standin_config WHERE name = 'standin_tls'", &[])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_cleaned_as_maas_forms_clean_them() {
        let clean = |k, v| clean_config_value("x", k, v).unwrap();
        for (v, want) in [
            ("True", true),
            ("true", true),
            ("1", true),
            ("yes", true),
            ("False", false),
            ("FALSE", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(clean(Kind::Bool, v), json!(want), "{v:?}");
        }
        assert_eq!(clean(Kind::Int, " 42 "), json!(42));
        assert_eq!(clean(Kind::Int, ""), Value::Null);
        let e = clean_config_value("promtail_port", Kind::Int, "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "{\"promtail_port\": [\"Enter a whole number.\"]}"
        );
        assert_eq!(clean(Kind::Text, " maas-1 "), json!("maas-1"));
        assert_eq!(
            config_item("prometheus_enabled").unwrap(),
            (Kind::Bool, json!(false))
        );
        assert!(config_item("no_such_setting").is_err());
    }

    #[test]
    fn emails_are_normalised_as_maas_does() {
        assert_eq!(normalize_email(""), None);
        assert_eq!(
            normalize_email("Ops@EXAMPLE.com").as_deref(),
            Some("Ops@example.com")
        );
        assert_eq!(normalize_email("local").as_deref(), Some("local"));
    }

    #[test]
    fn networks() {
        assert_eq!(network_of("10.77.0.5/24").as_deref(), Some("10.77.0.0/24"));
        assert_eq!(
            network_of("192.168.7.9/16").as_deref(),
            Some("192.168.0.0/16")
        );
        assert_eq!(network_of("bogus"), None);
        assert!(in_cidr("10.77.0.250".parse().unwrap(), "10.77.0.0/24"));
        assert!(!in_cidr("10.77.1.1".parse().unwrap(), "10.77.0.0/24"));
    }
}

#[cfg(test)]
mod version_tests {
    use super::most_common_version;

    fn of(vs: &[&str]) -> Option<String> {
        most_common_version(vs.iter().map(|v| v.to_string()))
    }

    #[test]
    fn the_version_most_controllers_run_up_to_the_qualifier() {
        // get_maas_version: counted by main_version, so builds of one release count together
        assert_eq!(
            of(&["3.6.0-16321-g.abc", "3.6.0-16400-g.def", "3.7.0-100-g.0a1"]).as_deref(),
            Some("3.6.0")
        );
        assert_eq!(of(&["3.6.3", "3.7.1", "3.7.1"]).as_deref(), Some("3.7.1"));
    }

    #[test]
    fn a_tie_goes_to_the_highest_and_a_release_is_above_its_candidates() {
        assert_eq!(of(&["3.6.0", "3.7.0"]).as_deref(), Some("3.7.0"));
        assert_eq!(
            of(&["3.7.0~beta2-1-g.a", "3.7.0~rc1-2-g.b"]).as_deref(),
            Some("3.7.0~rc1")
        );
        assert_eq!(of(&["3.7.0~rc1", "3.7.0"]).as_deref(), Some("3.7.0"));
    }

    #[test]
    fn no_version_reported_is_none() {
        assert_eq!(of(&[]), None);
        assert_eq!(of(&["not-a-version"]), None);
    }
}
