//! Client relations (`db`, pgsql; `database`, postgresql_client): what a client asks for, what
//! it was granted, and the databag it gets. Pure functions over databags.

use crate::paths;
use charm_lib::Databag;
use contracts::pgsql::keys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One related client unit that may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUnit {
    /// Unit name.
    pub name: String,
    /// Its address (validated).
    pub address: String,
    /// Where its connections come from, as CIDRs: its `egress-subnets` (Juju's, normalised to
    /// their network address), else its address as a single host.
    pub subnets: Vec<String>,
}

/// What a client relation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Database wanted.
    pub database: String,
    /// Extensions asked for (btree_gin comes without asking while `allowed-extensions` has it).
    pub extensions: Vec<String>,
    /// Group roles wanted (`db`: `roles`, validated), or everything `extra-user-roles` names
    /// (`database`: attributes and roles, unvalidated: [`split_roles`] judges them).
    pub roles: Vec<String>,
    /// Whether the client reads credentials from a Juju secret (`requested-secrets`).
    pub wants_secret: bool,
    /// Whether the client asked for `tls` or `tls-ca` in a secret (`database` only;
    /// data_interfaces groups them in the `secret-tls` secret).
    pub wants_tls_secret: bool,
    /// `roles` and `extensions` exactly as a `db` client sent them, to echo back once granted:
    /// the pgsql interface's client waits until the server's values equal its own.
    pub asked: Databag,
    /// Units with a usable address.
    pub units: Vec<ClientUnit>,
    /// Units whose address was missing or not an IP (left out of pg_hba).
    pub ignored: Vec<String>,
}

/// What the leader granted a relation (peer app databag `client-<id>`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `db` or `database`.
    pub endpoint: String,
    /// Database.
    pub database: String,
    /// Role.
    pub user: String,
    /// Juju secret id with `username`, `password`, `uris`.
    pub secret: String,
    /// Extensions asked for and created (allowed by `allowed-extensions`).
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Roles granted (membership).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Role attributes granted (`superuser`, `createdb`, `createrole`; `database` only).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Whether the SQL ran on the primary.
    #[serde(default)]
    pub provisioned: bool,
}

/// Peer app databag key of relation `id`'s grant.
pub fn grant_key(id: u32) -> String {
    format!("client-{id}")
}

/// The role name of relation `id`.
pub fn user_for(id: u32) -> String {
    format!("relation_{id}")
}

const RESERVED_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];
const RESERVED_ROLES: [&str; 6] = [
    "postgres",
    "replication",
    "rewind",
    "patroni",
    "public",
    crate::paths::MONITORING_ROLE,
];

fn valid_database(name: &str) -> Result<(), String> {
    if name.ends_with('*') {
        return Err(format!(
            "database prefix requests ({name:?}) are not supported: ask for one database name"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("database {name:?} is not a valid name: expected up to 63 letters, digits, '_' or '-', starting with a letter"));
    }
    if RESERVED_DATABASES.contains(&name) {
        return Err(format!("database {name:?} is reserved"));
    }
    Ok(())
}

fn valid_word(kind: &str, w: &str) -> Result<(), String> {
    let first_ok = w
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || w.len() > 63
        || !w
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{kind} {w:?} is not a valid name: expected lowercase letters, digits and '_'"
        ));
    }
    Ok(())
}

/// An extension name as `CREATE EXTENSION` takes it quoted: lowercase letters, digits, `_`
/// and `-` (`uuid-ossp`), starting with a letter or `_`, at most 63 bytes.
pub fn valid_extension(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A request's extensions under the operator's `allowed-extensions`: those to create and those
/// refused, each sorted.
pub fn split_extensions(requested: &[String], allowed: &[String]) -> (Vec<String>, Vec<String>) {
    requested.iter().cloned().partition(|e| allowed.contains(e))
}

/// The role attributes `extra-user-roles` may name; any other name is a role to be a member of
/// (data_interfaces' DatabaseRequires documents `extra_user_roles` so, and Charmed PostgreSQL
/// grants them so: `list_valid_privileges_and_roles` in its postgresql charm library).
pub const ROLE_ATTRIBUTES: [&str; 3] = ["createdb", "createrole", "superuser"];

/// PostgreSQL's predefined roles that run programs or read and write files on the server as its
/// OS user: never granted to a client, whatever the config says.
pub const SERVER_ACCESS_ROLES: [&str; 3] = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
];

/// Whether an `extra-user-roles` name may ever be granted; if not, why (after the name: `"x"
/// is never granted (...)`).
pub fn grantable_role(name: &str) -> Result<(), String> {
    if ROLE_ATTRIBUTES.contains(&name) {
        return Ok(());
    }
    if valid_word("role", name).is_err() {
        return Err("is not a valid role name".into());
    }
    if SERVER_ACCESS_ROLES.contains(&name) {
        return Err("is never granted (it runs programs or reads and writes files on the server as its OS user)".into());
    }
    if RESERVED_ROLES.contains(&name) {
        return Err("is never granted (the charm's own)".into());
    }
    if name.starts_with("relation_") {
        return Err("is never granted (another relation's role)".into());
    }
    Ok(())
}

/// A comma-separated list of role names as data_interfaces sends `extra-user-roles` (any case:
/// Charmed PostgreSQL lowercases them, as PostgreSQL folds unquoted names): trimmed, lowercased,
/// without empty items, sorted, each once.
pub fn role_list(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Why an extra user role is not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRefusal {
    /// Not in the `allowed-extra-user-roles` option.
    NotAllowed,
    /// Never granted, whatever the config says: why, as [`grantable_role`] says it.
    Never(String),
}

/// A `database` request's `extra-user-roles` under the operator's allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleSplit {
    /// Role attributes to set, sorted.
    pub attributes: Vec<String>,
    /// Roles to grant membership of, sorted.
    pub roles: Vec<String>,
    /// What is not granted, and why, in the request's order (sorted).
    pub refused: Vec<(String, RoleRefusal)>,
}

/// Splits `requested` (from [`role_list`]) into what `allowed` lets the charm grant and the rest.
pub fn split_roles(requested: &[String], allowed: &[String]) -> RoleSplit {
    let mut s = RoleSplit::default();
    for r in requested {
        if let Err(why) = grantable_role(r) {
            s.refused.push((r.clone(), RoleRefusal::Never(why)));
        } else if !allowed.contains(r) {
            s.refused.push((r.clone(), RoleRefusal::NotAllowed));
        } else if ROLE_ATTRIBUTES.contains(&r.as_str()) {
            s.attributes.push(r.clone());
        } else {
            s.roles.push(r.clone());
        }
    }
    s
}

/// The Blocked message for a relation's refused extra user roles (`None` if none was refused):
/// every name, and the option that would allow those it can.
pub fn refused_roles_message(relation: &str, refused: &[(String, RoleRefusal)]) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let not_allowed: Vec<&str> = refused
        .iter()
        .filter(|(_, why)| *why == RoleRefusal::NotAllowed)
        .map(|(r, _)| r.as_str())
        .collect();
    let mut parts = Vec::new();
    if !not_allowed.is_empty() {
        let them = if not_allowed.len() == 1 { "it" } else { "them" };
        parts.push(format!(
            "{} not in the allowed-extra-user-roles config option (add {them} there to have {them} granted)",
            not_allowed.join(", ")
        ));
    }
    for (r, why) in refused {
        if let RoleRefusal::Never(why) = why {
            parts.push(format!("{r} {why}"));
        }
    }
    Some(format!(
        "{relation}: extra-user-roles refused: {}",
        parts.join("; ")
    ))
}

/// `a, b:schema` → [a, b]; names validated.
fn list(kind: &str, raw: Option<&String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in raw
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let name = item.split(':').next().unwrap_or(item).trim().to_string();
        if kind == "extension" {
            if !valid_extension(&name) {
                return Err(format!("extension {name:?} is not a valid name: expected lowercase letters, digits, '_' and '-'"));
            }
        } else {
            valid_word(kind, &name)?;
        }
        if kind == "role"
            && (RESERVED_ROLES.contains(&name.as_str())
                || name.starts_with("pg_")
                || name.starts_with("relation_"))
        {
            return Err(format!("role {name:?} is reserved"));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The units' usable addresses: `ingress-address`, else `private-address`, which Juju sets.
/// A CIDR (`10.0.0.0/24`, `fd00::/64`, or a bare address as a single host) with its host bits
/// cleared, as pg_hba.conf and `pg_hba_file_rules` show it; `None` if it is not one.
pub fn normalise_cidr(s: &str) -> Option<String> {
    let s = s.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let p: u32 = prefix.map_or(Some(32), |p| p.parse().ok())?;
            if p > 32 {
                return None;
            }
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            let net = std::net::Ipv4Addr::from(u32::from(a) & mask);
            Some(format!("{net}/{p}"))
        }
        IpAddr::V6(a) => {
            let p: u32 = prefix.map_or(Some(128), |p| p.parse().ok())?;
            if p > 128 {
                return None;
            }
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            let net = std::net::Ipv6Addr::from(u128::from(a) & mask);
            Some(format!("{net}/{p}"))
        }
    }
}

/// A unit's `egress-subnets` (comma-separated CIDRs, as Juju sets them), normalised; `None`
/// when absent, empty, or any entry is not a CIDR (then its address is used).
fn egress_subnets(bag: &Databag) -> Option<Vec<String>> {
    let raw = bag.get("egress-subnets")?;
    let mut out: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let c = normalise_cidr(item)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn units(remote_units: &BTreeMap<String, Databag>) -> (Vec<ClientUnit>, Vec<String>) {
    let mut ok = Vec::new();
    let mut ignored = Vec::new();
    for (name, bag) in remote_units {
        let addr = bag
            .get("ingress-address")
            .filter(|a| !a.is_empty())
            .or(bag.get("private-address"))
            .map(|a| a.trim().to_string());
        match addr.filter(|a| a.parse::<IpAddr>().is_ok()) {
            Some(address) => ok.push(ClientUnit {
                name: name.clone(),
                subnets: egress_subnets(bag)
                    .unwrap_or_else(|| vec![crate::render::host_cidr(&address)]),
                address,
            }),
            None => ignored.push(name.clone()),
        }
    }
    (ok, ignored)
}

/// A `db` (pgsql) request: `database` from the app databag, else any unit's, else the remote
/// application's name; `roles`, `extensions`; `requested-secrets` anywhere means "secrets,
/// please" (even unparsable, so that a password never goes out in clear by mistake).
pub fn db_request(
    remote_app: &str,
    app: &Databag,
    remote_units: &BTreeMap<String, Databag>,
) -> Result<Request, String> {
    let pick = |k: &str| -> Option<String> {
        app.get(k)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .or_else(|| {
                remote_units
                    .values()
                    .find_map(|b| b.get(k).filter(|v| !v.trim().is_empty()).cloned())
            })
    };
    let database = pick(keys::DATABASE)
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| remote_app.to_string());
    valid_database(&database)?;
    let extensions = list("extension", pick(keys::EXTENSIONS).as_ref())?;
    let roles = list("role", pick(keys::ROLES).as_ref())?;
    let wants_secret = pick(keys::REQUESTED_SECRETS).is_some();
    let (units, ignored) = units(remote_units);
    let asked = [keys::ROLES, keys::EXTENSIONS]
        .iter()
        .filter_map(|k| pick(k).map(|v| (k.to_string(), v)))
        .collect();
    Ok(Request {
        database,
        extensions,
        roles,
        wants_secret,
        wants_tls_secret: false,
        asked,
        units,
        ignored,
    })
}

/// A `database` (postgresql_client) request; `Ok(None)` until the client names its database.
pub fn database_request(
    app: &Databag,
    remote_units: &BTreeMap<String, Databag>,
) -> Result<Option<Request>, String> {
    let Some(database) = app
        .get("database")
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
    else {
        return Ok(None);
    };
    valid_database(&database)?;
    let roles = role_list(
        app.get("extra-user-roles")
            .map(String::as_str)
            .unwrap_or(""),
    );
    let wants_secret = app
        .get("requested-secrets")
        .is_some_and(|v| !v.trim().is_empty());
    // data_interfaces' SECRET_LABEL_MAP puts `tls` and `tls-ca` in the `tls` group
    // (`secret-tls`). A list that is not JSON asks for nothing in particular.
    let wants_tls_secret = app
        .get("requested-secrets")
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .is_some_and(|fields| fields.iter().any(|f| f == "tls" || f == "tls-ca"));
    let (units, ignored) = units(remote_units);
    Ok(Some(Request {
        database,
        extensions: Vec::new(),
        roles,
        wants_secret,
        wants_tls_secret,
        asked: Databag::new(),
        units,
        ignored,
    }))
}

/// Where clients find the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// The writable address: the DB VIP when there is one, else the primary's address.
    pub host: Option<String>,
    /// Replicas' addresses.
    pub standbys: Vec<String>,
    /// This unit's role for the `state` key: `master`, `hot standby` or `standalone`.
    pub state: String,
    /// PostgreSQL major.
    pub version: u32,
    /// The server's full version (`15.14`) for `database` clients, empty when not asked.
    pub full_version: String,
    /// The CA that signs every member's certificate (PEM): clients verify the server with it.
    pub ca: String,
}

/// Credentials of a relation, from its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Role.
    pub username: String,
    /// Password.
    pub password: String,
}

fn libpq(host: &str, g: &Grant, creds: &Credentials, legacy: bool) -> String {
    let mut s = format!(
        "host={host} port={} dbname={} user={}",
        paths::PG_PORT,
        g.database,
        creds.username
    );
    if legacy {
        s += &format!(" password={}", creds.password);
    }
    // Every remote pg_hba line is hostssl: a client that tries without TLS is refused.
    s + " sslmode=require"
}

/// The unit databag for a `db` relation. Without a known writable address, the address keys
/// are left as they are (`None` values mean "do not touch").
pub fn db_data(
    g: &Grant,
    req: &Request,
    creds: &Credentials,
    topo: &Topology,
) -> BTreeMap<String, Option<String>> {
    let legacy = !req.wants_secret;
    // Every key a pgsql server writes; keys it no longer wants are deleted.
    let mut d: BTreeMap<String, Option<String>> = keys::SERVER
        .iter()
        .map(|k| (k.to_string(), Some(String::new())))
        .collect();
    let mut set = |k: &str, v: String| {
        d.insert(k.to_string(), Some(v));
    };
    set(keys::PORT, paths::PG_PORT.to_string());
    set(keys::DATABASE, g.database.clone());
    set(keys::USER, creds.username.clone());
    if legacy {
        set(keys::PASSWORD, creds.password.clone());
    } else {
        set(keys::SECRET_USER, g.secret.clone());
    }
    set(
        keys::ALLOWED_UNITS,
        req.units
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mut subnets: Vec<&str> = Vec::new();
    for s in req.units.iter().flat_map(|u| &u.subnets) {
        if !subnets.contains(&s.as_str()) {
            subnets.push(s);
        }
    }
    set(keys::ALLOWED_SUBNETS, subnets.join(","));
    // Echoed exactly as asked once granted (the pgsql client compares the strings).
    if let Some(r) = req.asked.get(keys::ROLES) {
        if req.roles.iter().all(|x| g.roles.contains(x)) {
            set(keys::ROLES, r.clone());
        }
    }
    if let Some(e) = req.asked.get(keys::EXTENSIONS) {
        if req.extensions.iter().all(|x| g.extensions.contains(x)) {
            set(keys::EXTENSIONS, e.clone());
        }
    }
    set(keys::STATE, topo.state.clone());
    set(keys::VERSION, topo.version.to_string());
    set(keys::TLS_CA, topo.ca.clone());
    match &topo.host {
        Some(h) => {
            set(keys::HOST, h.clone());
            set(keys::MASTER, libpq(h, g, creds, legacy));
            set(
                keys::STANDBYS,
                topo.standbys
                    .iter()
                    .map(|s| libpq(s, g, creds, legacy))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        None => {
            for k in [keys::HOST, keys::MASTER, keys::STANDBYS] {
                d.insert(k.to_string(), None);
            }
        }
    }
    d
}

/// Every key this charm writes on `database` in protocol v0.
pub(crate) const DATABASE_KEYS: [&str; 10] = [
    "tls",
    "tls-ca",
    "secret-tls",
    "database",
    "endpoints",
    "read-only-endpoints",
    "version",
    "secret-user",
    "username",
    "password",
];

/// The app databag for a `database` relation (`None` values: leave as is). `tls_secret`: the
/// relation's `secret-tls` secret, for a client that asked for `tls`/`tls-ca` in one.
pub fn database_data(
    g: &Grant,
    req: &Request,
    creds: &Credentials,
    topo: &Topology,
    tls_secret: Option<&str>,
) -> BTreeMap<String, Option<String>> {
    let mut d: BTreeMap<String, Option<String>> = DATABASE_KEYS
        .iter()
        .map(|k| (k.to_string(), Some(String::new())))
        .collect();
    d.insert("database".into(), Some(g.database.clone()));
    // data_interfaces' `version` is the server's full version, as Charmed PostgreSQL sends it.
    let version = if topo.full_version.is_empty() {
        topo.version.to_string()
    } else {
        topo.full_version.clone()
    };
    d.insert("version".into(), Some(version));
    // data_interfaces' names: TLS is on (every remote connection needs it), and the CA.
    match tls_secret.filter(|_| req.wants_tls_secret) {
        Some(id) => {
            d.insert("secret-tls".into(), Some(id.to_string()));
        }
        None => {
            d.insert("tls".into(), Some("True".into()));
            d.insert("tls-ca".into(), Some(topo.ca.clone()));
        }
    }
    if req.wants_secret {
        d.insert("secret-user".into(), Some(g.secret.clone()));
    } else {
        d.insert("username".into(), Some(creds.username.clone()));
        d.insert("password".into(), Some(creds.password.clone()));
    }
    match &topo.host {
        Some(h) => {
            d.insert("endpoints".into(), Some(format!("{h}:{}", paths::PG_PORT)));
            let ro: Vec<String> = if topo.standbys.is_empty() {
                vec![h.clone()]
            } else {
                topo.standbys.clone()
            };
            d.insert(
                "read-only-endpoints".into(),
                Some(
                    ro.iter()
                        .map(|s| format!("{s}:{}", paths::PG_PORT))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
        None => {
            d.insert("endpoints".into(), None);
            d.insert("read-only-endpoints".into(), None);
        }
    }
    d
}

/// The changes that turn `current` into `wanted` (empty value = delete; `None` = leave).
pub fn changes(current: &Databag, wanted: &BTreeMap<String, Option<String>>) -> Databag {
    wanted
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .filter(|(k, v)| current.get(*k).map(String::as_str).unwrap_or("") != v.as_str())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The secret content of a relation's credentials (data_interfaces' `user` group): `uris` and
/// `read-only-uris` (the replicas, else the primary) only once the host is known.
pub fn secret_content(g: &Grant, creds: &Credentials, topo: &Topology) -> BTreeMap<String, String> {
    let mut c = BTreeMap::from([
        ("username".to_string(), creds.username.clone()),
        ("password".to_string(), creds.password.clone()),
    ]);
    if let Some(h) = &topo.host {
        let uri = |hosts: &[String]| {
            format!(
                "postgresql://{}:{}@{}/{}",
                creds.username,
                creds.password,
                hosts
                    .iter()
                    .map(|h| format!("{h}:{}", paths::PG_PORT))
                    .collect::<Vec<_>>()
                    .join(","),
                g.database
            )
        };
        c.insert("uris".into(), uri(std::slice::from_ref(h)));
        let ro = if topo.standbys.is_empty() {
            std::slice::from_ref(h)
        } else {
            &topo.standbys[..]
        };
        c.insert("read-only-uris".into(), uri(ro));
    }
    c
}

/// The content of a relation's `secret-tls` secret (data_interfaces' `tls` group): TLS is on,
/// and the CA that signs the members' certificates when there is one.
pub fn tls_secret_content(topo: &Topology) -> BTreeMap<String, String> {
    let mut c = BTreeMap::from([("tls".to_string(), "True".to_string())]);
    if !topo.ca.is_empty() {
        c.insert("tls-ca".into(), topo.ca.clone());
    }
    c
}

/// The label of relation `id`'s `secret-tls` secret.
pub fn tls_secret_label(id: u32) -> String {
    format!("client-{id}-tls")
}

#[cfg(test)]
mod tests {
    use super::*;
    use charm_lib::testing::bag;

    fn units(pairs: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Databag> {
        pairs.iter().map(|(n, b)| (n.to_string(), bag(b))).collect()
    }

    #[test]
    fn db_request_defaults_and_garbage() {
        let us = units(&[
            ("maas-region/0", &[("ingress-address", "10.0.0.50")]),
            ("maas-region/1", &[("private-address", "not-an-ip")]),
        ]);
        let r = db_request("maas-region", &Databag::new(), &us).unwrap();
        assert_eq!(r.database, "maas-region");
        assert!(!r.wants_secret);
        assert_eq!(
            r.units,
            vec![ClientUnit {
                name: "maas-region/0".into(),
                address: "10.0.0.50".into(),
                subnets: vec!["10.0.0.50/32".into()],
            }]
        );
        assert_eq!(r.ignored, vec!["maas-region/1".to_string()]);
        let us = units(&[(
            "c/0",
            &[
                ("database", "maasdb"),
                ("extensions", "pg_trgm:public, btree_gin"),
                ("requested-secrets", "not json"),
            ],
        )]);
        let r = db_request("c", &Databag::new(), &us).unwrap();
        assert_eq!(
            (r.database.as_str(), r.extensions.clone(), r.wants_secret),
            (
                "maasdb",
                vec!["btree_gin".to_string(), "pg_trgm".into()],
                true
            )
        );
        for (k, v, needle) in [
            ("database", "x; DROP TABLE y", "not a valid name"),
            ("database", "postgres", "reserved"),
            ("database", "app*", "prefix"),
            ("extensions", "evil\"ext", "not a valid name"),
            ("roles", "postgres", "reserved"),
            ("roles", "pg_read_server_files", "reserved"),
        ] {
            let us = units(&[("c/0", &[(k, v)])]);
            let e = db_request("c", &Databag::new(), &us).unwrap_err();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
    }

    #[test]
    fn extensions_outside_the_allowlist_are_refused_the_rest_created() {
        let us = units(&[("c/0", &[("extensions", "uuid-ossp, plpython3u,pg_trgm")])]);
        let r = db_request("c", &Databag::new(), &us).unwrap();
        assert_eq!(r.extensions, vec!["pg_trgm", "plpython3u", "uuid-ossp"]);
        let allowed = vec![
            "btree_gin".to_string(),
            "pg_trgm".into(),
            "uuid-ossp".into(),
        ];
        assert_eq!(
            split_extensions(&r.extensions, &allowed),
            (
                vec!["pg_trgm".to_string(), "uuid-ossp".into()],
                vec!["plpython3u".to_string()]
            )
        );
        assert_eq!(
            split_extensions(&r.extensions, &[]),
            (vec![], r.extensions.clone()),
            "an empty allowlist refuses everything"
        );
    }

    #[test]
    fn db_data_legacy_and_secret_clients() {
        let g = Grant {
            endpoint: "db".into(),
            database: "maas".into(),
            user: "relation_5".into(),
            secret: "secret:abc".into(),
            extensions: vec![],
            roles: vec![],
            attributes: vec![],
            provisioned: true,
        };
        let creds = Credentials {
            username: "relation_5".into(),
            password: "PW123".into(),
        };
        let topo = Topology {
            ca: "CA PEM".into(),
            host: Some("10.0.0.100".into()),
            standbys: vec!["10.0.0.11".into(), "10.0.0.12".into()],
            state: "master".into(),
            version: 15,
            full_version: String::new(),
        };
        let mut req = Request {
            database: "maas".into(),
            extensions: vec![],
            roles: vec![],
            wants_secret: true,
            wants_tls_secret: false,
            asked: Databag::new(),
            units: vec![ClientUnit {
                name: "m/0".into(),
                address: "10.0.0.50".into(),
                subnets: vec!["10.0.0.50/32".into()],
            }],
            ignored: vec![],
        };
        let d = db_data(&g, &req, &creds, &topo);
        let get = |d: &BTreeMap<String, Option<String>>, k: &str| d[k].clone().unwrap();
        assert_eq!(get(&d, "secret-user"), "secret:abc");
        assert_eq!(
            get(&d, "password"),
            "",
            "no password in clear for a secrets-capable client"
        );
        assert!(!d.values().flatten().any(|v| v.contains("PW123")));
        assert_eq!(
            get(&d, "master"),
            "host=10.0.0.100 port=5432 dbname=maas user=relation_5 sslmode=require"
        );
        assert_eq!(get(&d, "standbys"), "host=10.0.0.11 port=5432 dbname=maas user=relation_5 sslmode=require\nhost=10.0.0.12 port=5432 dbname=maas user=relation_5 sslmode=require");
        assert_eq!(get(&d, "tls-ca"), "CA PEM", "legacy clients get the CA too");
        assert_eq!(get(&d, "allowed-units"), "m/0");
        assert_eq!(get(&d, "allowed-subnets"), "10.0.0.50/32");
        req.wants_secret = false;
        let d = db_data(&g, &req, &creds, &topo);
        assert_eq!(get(&d, "password"), "PW123");
        assert!(get(&d, "master").ends_with("password=PW123 sslmode=require"));
        assert_eq!(get(&d, "secret-user"), "");
        let d = db_data(
            &g,
            &req,
            &creds,
            &Topology {
                host: None,
                ..topo.clone()
            },
        );
        assert_eq!(
            d["host"], None,
            "unknown primary: leave the last published address"
        );
    }

    fn grant(endpoint: &str) -> Grant {
        Grant {
            endpoint: endpoint.into(),
            database: "maas".into(),
            user: "relation_5".into(),
            secret: "secret:abc".into(),
            extensions: vec![],
            roles: vec![],
            attributes: vec![],
            provisioned: true,
        }
    }

    fn creds() -> Credentials {
        Credentials {
            username: "relation_5".into(),
            password: "PW123".into(),
        }
    }

    fn topo() -> Topology {
        Topology {
            ca: "CA PEM".into(),
            host: Some("10.0.0.100".into()),
            standbys: vec!["10.0.0.11".into(), "10.0.0.12".into()],
            state: "master".into(),
            version: 16,
            full_version: "16.4".into(),
        }
    }

    #[test]
    fn cidrs_are_normalised_and_garbage_refused() {
        for (raw, want) in [
            ("10.0.0.50/32", Some("10.0.0.50/32")),
            ("10.0.0.50", Some("10.0.0.50/32")),
            (" 10.1.2.3/24 ", Some("10.1.2.0/24")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("fd00::1/64", Some("fd00::/64")),
            ("fd00::1", Some("fd00::1/128")),
            ("10.0.0.1/33", None),
            ("10.0.0.1/x", None),
            ("example.com/24", None),
            ("", None),
        ] {
            assert_eq!(normalise_cidr(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn db_echoes_what_was_asked_and_allows_the_egress_subnets() {
        // A pgsql client (interface-pgsql's requires side) is ready when the server's
        // `database`, `roles` and `extensions` equal what it asked for and `allowed-subnets`
        // holds every one of its `egress-subnets`.
        let us = units(&[
            (
                "legacy/0",
                &[
                    ("ingress-address", "10.0.0.50"),
                    ("egress-subnets", "192.168.9.7/32,10.20.0.0/16"),
                    ("database", "legacydb"),
                    ("roles", "reader, writer"),
                    ("extensions", "pg_trgm,btree_gin"),
                ],
            ),
            (
                "legacy/1",
                &[
                    ("ingress-address", "10.0.0.51"),
                    ("egress-subnets", "not a subnet"),
                ],
            ),
            ("legacy/2", &[("ingress-address", "10.0.0.52")]),
        ]);
        let req = db_request("legacy", &Databag::new(), &us).unwrap();
        assert_eq!(
            req.units
                .iter()
                .map(|u| u.subnets.clone())
                .collect::<Vec<_>>(),
            vec![
                vec!["192.168.9.7/32".to_string(), "10.20.0.0/16".into()],
                vec!["10.0.0.51/32".into()],
                vec!["10.0.0.52/32".into()],
            ],
            "egress-subnets, else the ingress address"
        );
        let mut g = grant("db");
        g.database = "legacydb".into();
        g.roles = vec!["reader".into(), "writer".into()];
        g.extensions = vec!["btree_gin".into(), "pg_trgm".into()];
        let d = db_data(&g, &req, &creds(), &topo());
        let get = |k: &str| d[k].clone().unwrap();
        assert_eq!(get("database"), "legacydb");
        assert_eq!(get("roles"), "reader, writer", "echoed exactly as sent");
        assert_eq!(get("extensions"), "pg_trgm,btree_gin");
        assert_eq!(
            get("allowed-subnets"),
            "192.168.9.7/32,10.20.0.0/16,10.0.0.51/32,10.0.0.52/32"
        );
        // An extension not created (outside the allowlist) is not echoed: the client keeps
        // waiting while the server is Blocked naming it.
        g.extensions = vec!["btree_gin".into()];
        let d = db_data(&g, &req, &creds(), &topo());
        assert_eq!(d["extensions"].clone().unwrap(), "");
        // Nothing asked, nothing echoed (and stale echoes are deleted).
        let us = units(&[("c/0", &[("ingress-address", "10.0.0.50")])]);
        let req = db_request("c", &Databag::new(), &us).unwrap();
        let d = db_data(&grant("db"), &req, &creds(), &topo());
        assert_eq!(d["roles"].clone().unwrap(), "");
        assert_eq!(d["extensions"].clone().unwrap(), "");
    }

    #[test]
    fn database_clients_asking_for_tls_in_a_secret_get_secret_tls_and_no_ca_in_clear() {
        let all = r#"["username","password","tls","tls-ca","uris","read-only-uris"]"#;
        let us = units(&[("app/0", &[("ingress-address", "10.0.0.60")])]);
        let req = database_request(
            &bag(&[("database", "maas"), ("requested-secrets", all)]),
            &us,
        )
        .unwrap()
        .unwrap();
        assert!(req.wants_secret && req.wants_tls_secret);
        let d = database_data(
            &grant("database"),
            &req,
            &creds(),
            &topo(),
            Some("secret:tls1"),
        );
        let get = |k: &str| d[k].clone().unwrap();
        assert_eq!(get("secret-tls"), "secret:tls1");
        assert_eq!(get("secret-user"), "secret:abc");
        for k in ["tls", "tls-ca", "username", "password"] {
            assert_eq!(get(k), "", "{k} is in a secret, not in clear");
        }
        assert!(!d
            .values()
            .flatten()
            .any(|v| v.contains("PW123") || v.contains("CA PEM")));
        assert_eq!(
            tls_secret_content(&topo()),
            BTreeMap::from([
                ("tls".to_string(), "True".to_string()),
                ("tls-ca".into(), "CA PEM".into())
            ])
        );
        // Only username/password in a secret: TLS settings stay in the databag.
        let req = database_request(
            &bag(&[
                ("database", "maas"),
                ("requested-secrets", r#"["username","password"]"#),
            ]),
            &us,
        )
        .unwrap()
        .unwrap();
        assert!(!req.wants_tls_secret);
        let d = database_data(
            &grant("database"),
            &req,
            &creds(),
            &topo(),
            Some("secret:tls1"),
        );
        assert_eq!(d["secret-tls"].clone().unwrap(), "");
        assert_eq!(d["tls-ca"].clone().unwrap(), "CA PEM");
        assert_eq!(d["tls"].clone().unwrap(), "True");
    }

    #[test]
    fn the_user_secret_has_uris_and_read_only_uris() {
        let c = secret_content(&grant("database"), &creds(), &topo());
        assert_eq!(
            c["uris"],
            "postgresql://relation_5:PW123@10.0.0.100:5432/maas"
        );
        assert_eq!(
            c["read-only-uris"],
            "postgresql://relation_5:PW123@10.0.0.11:5432,10.0.0.12:5432/maas"
        );
        let c = secret_content(
            &grant("database"),
            &creds(),
            &Topology {
                host: None,
                ..topo()
            },
        );
        assert!(!c.contains_key("uris") && !c.contains_key("read-only-uris"));
    }

    #[test]
    fn changes_only_what_differs() {
        let cur = bag(&[("a", "1"), ("b", "2")]);
        let wanted = BTreeMap::from([
            ("a".to_string(), Some("1".to_string())),
            ("b".into(), Some(String::new())),
            ("c".into(), None),
            ("d".into(), Some("4".into())),
        ]);
        assert_eq!(changes(&cur, &wanted), bag(&[("b", ""), ("d", "4")]));
    }
}
