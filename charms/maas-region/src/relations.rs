//! The relations as this charm reads and writes them (keys: charms/INTERFACES.md; those of
//! `vip` and `rpc` and their databags: the `contracts` crate; the peers' databags:
//! [`crate::peers`]): the two database protocols, the VIP subordinate, the peers, and the racks.

use crate::maas::DbSettings;
use crate::peers::{keys as peer_keys, Drained, LockValue, UnitBag};
use charm_lib::databag::{from_databag, to_databag};
use charm_lib::{Databag, Model, RelationId};
use contracts::maas_rpc::{keys as rpc_keys, RegionData};
use contracts::pgsql::{ClientRequest, ServerData};
use contracts::vip::{keys as vip_keys, PrincipalData};

/// Database endpoints.
pub const DB: &str = "db";
/// The postgresql_client endpoint.
pub const DATABASE: &str = "database";
/// The peer endpoint.
pub const PEERS: &str = "cluster";
/// The VIP subordinate's endpoint.
pub const VIP: &str = "vip";
/// The racks' endpoint.
pub const RPC: &str = "rpc";

/// What the database relations offer right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// Neither `db` nor `database` is related.
    Missing,
    /// Both are related: the operator must pick one.
    Both,
    /// Related, not usable yet; the reason is for the Waiting status.
    NotReady(String),
    /// Usable.
    Ready(DbSettings),
}

fn bag(pairs: &[(&str, &str)]) -> Databag {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every field data_interfaces (charms.data_platform_libs v0) can put in a secret: its
/// `SECRET_LABEL_MAP` groups `username`, `password`, `uris` and `read-only-uris` in `secret-user`,
/// `tls` and `tls-ca` in `secret-tls`. Asking for all of them keeps the password (and the URIs
/// that carry it) out of the databag. Only `secret-user` is read: MAAS connects with libpq's
/// default sslmode (TLS, the server's certificate not verified), so the CA is not used yet.
const REQUESTED_SECRETS: [&str; 6] = [
    "username",
    "password",
    "tls",
    "tls-ca",
    "uris",
    "read-only-uris",
];

/// [`REQUESTED_SECRETS`] as a databag value: a JSON list.
fn requested_secrets() -> String {
    serde_json::to_string(&REQUESTED_SECRETS).expect("a list of strings encodes")
}

/// Reads credentials from a `secret-user` secret (keys `username`, `password`).
fn secret_credentials(model: &Model, id: &str) -> Result<(String, String), String> {
    let c = model.get_secret(Some(id), None, true).map_err(|_| {
        format!("waiting for database credentials (secret {id} is not readable yet)")
    })?;
    match (c.get("username"), c.get("password")) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok((u.clone(), p.clone())),
        _ => Err(format!(
            "waiting for database credentials (secret {id} lacks username or password)"
        )),
    }
}

fn port(raw: Option<&String>, endpoint: &str) -> Result<u16, String> {
    match raw.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(5432),
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("waiting for valid {endpoint} relation data (port {p:?} is not a port)")
        }),
    }
}

/// Asks for the database on `db` (unit databag, [`ClientRequest`]) and reads the answer
/// ([`ServerData`]) of whichever server unit lists this unit in `allowed-units`.
fn read_pgsql(model: &Model, database: &str) -> anyhow::Result<Database> {
    let Some(rel) = model.relation(DB)? else {
        return Ok(Database::Missing);
    };
    let request = to_databag(&ClientRequest {
        database: Some(database.to_string()),
        requested_secrets: Some(REQUESTED_SECRETS.map(String::from).to_vec()),
        ..ClientRequest::default()
    })?;
    rel.set_my_unit_data(&changed(&rel.my_unit_data()?, &request))?;
    let me = model.unit_name().to_string();
    let mut reason = "waiting for database (the db relation has no data yet)".to_string();
    for unit in rel.units() {
        // Every value is text: this cannot fail; what does not fit is judged below.
        let d: ServerData = rel.read_unit(unit)?;
        let Some(host) = d.host.as_ref() else {
            continue;
        };
        if !d.allows(&me) {
            reason = format!("waiting for database access ({unit} does not allow {me} yet)");
            continue;
        }
        if let Some(offered) = d.database.as_ref().filter(|n| *n != database) {
            reason = format!("waiting for database {database:?} ({unit} offers {offered:?})");
            continue;
        }
        let port = match port(d.port.as_ref(), DB) {
            Ok(p) => p,
            Err(e) => return Ok(Database::NotReady(e)),
        };
        let (user, password) = match d.secret_user.as_ref() {
            Some(id) => match secret_credentials(model, id) {
                Ok(c) => c,
                Err(e) => return Ok(Database::NotReady(e)),
            },
            None => match (&d.user, &d.password) {
                (Some(u), Some(p)) => {
                    log::warn!("db relation: {unit} sent the password in clear (legacy pgsql); it will be used, but a server that supports requested-secrets is safer");
                    (u.clone(), p.clone())
                }
                _ => {
                    return Ok(Database::NotReady(
                        "waiting for database credentials on the db relation".into(),
                    ))
                }
            },
        };
        return Ok(Database::Ready(DbSettings {
            host: host.clone(),
            port,
            name: database.to_string(),
            user,
            password,
        }));
    }
    Ok(Database::NotReady(reason))
}

/// Asks on `database` (leader, app databag) and reads the provider's app databag.
fn read_postgresql_client(model: &Model, database: &str) -> anyhow::Result<Database> {
    let Some(rel) = model.relation(DATABASE)? else {
        return Ok(Database::Missing);
    };
    if model.is_leader()? {
        rel.set_my_app_data(&changed(
            &rel.my_app_data()?,
            &bag(&[
                ("database", database),
                ("requested-secrets", &requested_secrets()),
            ]),
        ))?;
    }
    let d = rel.remote_app_data()?;
    let Some(endpoints) = d.get("endpoints").filter(|e| !e.trim().is_empty()) else {
        return Ok(Database::NotReady(
            "waiting for database (the database relation has no endpoints yet)".into(),
        ));
    };
    if d.get("database").is_some_and(|n| n != database) {
        return Ok(Database::NotReady(format!(
            "waiting for database {database:?} (the provider offers {:?})",
            d["database"]
        )));
    }
    let first = endpoints.split(',').next().unwrap_or_default().trim();
    let (host, port_text) = match first.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            Some(p.to_string()),
        ),
        _ => (first.to_string(), None),
    };
    if host.is_empty() {
        return Ok(Database::NotReady(format!(
            "waiting for valid database relation data (endpoints {endpoints:?})"
        )));
    }
    let port = match port(port_text.as_ref(), DATABASE) {
        Ok(p) => p,
        Err(e) => return Ok(Database::NotReady(e)),
    };
    let (user, password) = match d.get("secret-user").filter(|s| !s.is_empty()) {
        Some(id) => match secret_credentials(model, id) {
            Ok(c) => c,
            Err(e) => return Ok(Database::NotReady(e)),
        },
        None => match (d.get("username"), d.get("password")) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                log::warn!("database relation: the provider sent the password in clear although it was asked for a secret; it will be used");
                (u.clone(), p.clone())
            }
            _ => {
                return Ok(Database::NotReady(
                    "waiting for database credentials on the database relation".into(),
                ))
            }
        },
    };
    Ok(Database::Ready(DbSettings {
        host,
        port,
        name: database.to_string(),
        user,
        password,
    }))
}

/// The database, from whichever of the two relations exists (Blocked-worthy when both do).
/// `broken` is the relation whose -broken hook runs: Juju still lists it, but it is gone.
pub fn database(
    model: &Model,
    database: &str,
    broken: Option<&RelationId>,
) -> anyhow::Result<Database> {
    let live = |ep: &str| -> anyhow::Result<bool> {
        Ok(model.relations(ep)?.iter().any(|r| Some(r.id()) != broken))
    };
    let has_db = live(DB)?;
    let has_database = live(DATABASE)?;
    match (has_db, has_database) {
        (true, true) => Ok(Database::Both),
        (false, false) => Ok(Database::Missing),
        (true, false) => read_pgsql(model, database),
        (false, true) => read_postgresql_client(model, database),
    }
}

/// The relation whose -broken hook is running, if any.
pub fn broken(event: &charm_lib::Event) -> Option<RelationId> {
    match &event.kind {
        charm_lib::EventKind::Relation(r) if r.phase == charm_lib::RelationPhase::Broken => {
            Some(r.relation.clone())
        }
        _ => None,
    }
}

/// Only the keys whose value differs from `current`: writes nothing when nothing changed.
pub fn changed(current: &Databag, wanted: &Databag) -> Databag {
    wanted
        .iter()
        .filter(|(k, v)| current.get(*k).map(String::as_str).unwrap_or("") != v.as_str())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The VIP the subordinate offers (the first of `vips`), if any. A value that is not an IP
/// address is ignored with a warning rather than written into MAAS's URL.
pub fn vip(model: &Model) -> anyhow::Result<Option<String>> {
    let Some(rel) = model.relation(VIP)? else {
        return Ok(None);
    };
    for u in rel.units() {
        let d = rel.unit_data(u)?;
        // Only `vips` is read: a `state` the region never looks at cannot fail this.
        if let Some(v) = d
            .get(vip_keys::VIPS)
            .and_then(|v| v.split(',').map(str::trim).find(|v| !v.is_empty()))
        {
            if v.parse::<std::net::IpAddr>().is_ok() {
                return Ok(Some(v.to_string()));
            }
            log::warn!("vip relation: {u} offers {v:?}, which is not an IP address; ignored");
        }
    }
    Ok(None)
}

/// Whether `a` can be a backend address: an IP address or a host name.
pub fn usable_address(a: &str) -> bool {
    a.parse::<std::net::IpAddr>().is_ok()
        || (!a.is_empty()
            && a.len() <= 253
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !a.starts_with('-'))
}

/// Tells the subordinate what to check ([`PrincipalData`]; the keys this region never sets
/// go out empty, which writes nothing).
pub fn publish_vip_checks(model: &Model, check: &str) -> anyhow::Result<()> {
    if let Some(rel) = model.relation(VIP)? {
        let wanted = to_databag(&PrincipalData {
            check: Some(check.to_string()),
            service: Some("maas_region".into()),
            ..PrincipalData::default()
        })?;
        rel.set_my_unit_data(&changed(&rel.my_unit_data()?, &wanted))?;
    }
    Ok(())
}

/// A peer as it describes itself ([`crate::peers::UnitBag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Unit name.
    pub unit: String,
    /// Address (haproxy backend).
    pub address: Option<String>,
    /// Hostname (the rpc `regions` list).
    pub hostname: Option<String>,
    /// The token of its open init-lock request, if any.
    pub request: Option<u64>,
    /// It holds the lock to refresh and asks every haproxy to leave it out
    /// (`refresh-drain`, the lock value it holds).
    pub drain: Option<LockValue>,
    /// The drain requests its own haproxy has applied (`refresh-drained`).
    pub drained: Drained,
    /// The snap channel its MAAS runs (`maas-channel`).
    pub channel: Option<String>,
    /// Its `maas_id` (`maas-id`).
    pub maas_id: Option<String>,
    /// Why its databag does not parse (names the key), if it does not: then its lock fields
    /// are unknown (`None`, nothing drained) and the leader moves the lock no more
    /// ([`crate::reconcile`]); the plain-text fields above are still read.
    pub garbled: Option<String>,
}

/// The other regions' self-descriptions.
pub fn peers(model: &Model) -> anyhow::Result<Vec<Peer>> {
    let Some(rel) = model.relation(PEERS)? else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for u in rel.units() {
        let d = rel.unit_data(u)?;
        let (bag, garbled) = match from_databag::<UnitBag>(&d) {
            Ok(b) => (b, None),
            Err(e) => {
                log::warn!("peer {u}'s databag does not parse: {e}");
                // Text fields cannot fail to parse: only those are kept.
                let text = |k: &str| d.get(k).filter(|v| !v.is_empty()).cloned();
                let bag = UnitBag {
                    hostname: text(peer_keys::HOSTNAME),
                    address: text(peer_keys::ADDRESS),
                    channel: text(peer_keys::CHANNEL),
                    maas_id: text(peer_keys::MAAS_ID),
                    ..UnitBag::default()
                };
                (bag, Some(e.to_string()))
            }
        };
        let address = bag.address.filter(|a| {
            let ok = usable_address(a);
            if !ok {
                log::warn!("peer {u} published address {a:?}, which is neither an IP address nor a host name; left out of haproxy");
            }
            ok
        });
        out.push(Peer {
            unit: u.clone(),
            address,
            hostname: bag.hostname,
            request: bag.request,
            drain: bag.drain,
            drained: bag.drained,
            channel: bag.channel,
            maas_id: bag.maas_id,
            garbled,
        });
    }
    Ok(out)
}

/// A rack as it describes itself on `rpc` (`contracts::maas_rpc::RackData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rack {
    /// The unit (`maas-rack/N`).
    pub unit: String,
    /// Hostname.
    pub hostname: String,
    /// MAAS system id, once known.
    pub system_id: Option<String>,
    /// The snap channel its MAAS runs (absent: a deb install, or not installed yet).
    pub maas_channel: Option<String>,
    /// The channel it waits to refresh to.
    pub upgrade_request: Option<String>,
}

/// Every rack on every rpc relation.
pub fn racks(model: &Model) -> anyhow::Result<Vec<Rack>> {
    let mut out = vec![];
    for rel in model.relations(RPC)? {
        for u in rel.units() {
            // Only the keys the region reads, as text: a `dhcp` it never looks at cannot fail
            // this.
            let d = rel.unit_data(u)?;
            let text = |k: &str| d.get(k).filter(|v| !v.is_empty()).cloned();
            if let Some(h) = text(rpc_keys::HOSTNAME) {
                out.push(Rack {
                    unit: u.to_string(),
                    hostname: h,
                    system_id: text(rpc_keys::SYSTEM_ID),
                    maas_channel: text(rpc_keys::MAAS_CHANNEL),
                    upgrade_request: text(rpc_keys::UPGRADE_REQUEST),
                });
            }
        }
    }
    Ok(out)
}

/// The leader's rpc publication ([`RegionData`]): URL, secret id (granted to each relation),
/// region hostnames, and which rack may refresh MAAS now (one at a time: the open requests
/// are granted as the init lock grants regions, [`crate::lock::grant`]).
pub fn publish_rpc(
    model: &Model,
    maas_url: &str,
    secret_id: Option<&str>,
    regions: &[String],
    broken: Option<&RelationId>,
) -> anyhow::Result<()> {
    let racks = racks(model)?;
    let requests: std::collections::BTreeMap<String, String> = racks
        .iter()
        .filter_map(|r| r.upgrade_request.clone().map(|c| (r.unit.clone(), c)))
        .collect();
    let members = racks.iter().map(|r| r.unit.clone()).collect();
    for rel in model
        .relations(RPC)?
        .into_iter()
        .filter(|r| Some(r.id()) != broken)
    {
        if let Some(id) = secret_id {
            model.grant_secret(id, rel.id(), None)?;
        }
        let current = rel.my_app_data()?;
        let lock = crate::lock::grant_racks(
            current.get(rpc_keys::RACK_UPGRADE_LOCK).map(String::as_str),
            &requests,
            &members,
        );
        let wanted = to_databag(&RegionData {
            maas_url: Some(maas_url.to_string()),
            secret_id: secret_id.map(str::to_string),
            regions: Some(regions.to_vec()),
            rack_upgrade_lock: lock,
        })?;
        rel.set_my_app_data(&changed(&current, &wanted))?;
    }
    Ok(())
}
