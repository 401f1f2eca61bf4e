//! The relations: the principal's wishes over `vip`, the peers' addresses and the shared VRRP
//! password over `cluster`, and what the principal learns back over `vip`.

use crate::checks::{self, Check};
use charm_lib::databag::{from_databag, to_databag};
use charm_lib::{Context, Databag, RelationPhase, SharedSecret};
use contracts::vip::{keys, PrincipalData, SubordinateData, VipState};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The peer endpoint.
pub const PEERS: &str = "cluster";
/// The container-scoped endpoint principals that know their health check relate over.
pub const VIP: &str = "vip";
/// The container-scoped endpoint any principal can relate over.
pub const JUJU_INFO: &str = "juju-info";
/// Peer app databag key: the Juju secret id holding the VRRP password.
pub const AUTH_SECRET_ID: &str = "auth-secret-id";
/// Peer unit databag key: this unit's address for unicast adverts.
pub const ADDRESS: &str = "address";
/// Peer unit databag key: this unit's VRRP priority.
pub const PRIORITY: &str = "priority";
/// The VRRP password secret: its owner label and where its id is shared.
const VRRP_SECRET: SharedSecret = SharedSecret::new(
    "vrrp-auth",
    AUTH_SECRET_ID,
    "VRRP auth_pass of this application's keepalived",
);
/// The secret's content key.
const SECRET_KEY: &str = "password";
/// keepalived uses only the first 8 characters of a PASS password.
const PASSWORD_LEN: usize = 8;

/// What one principal unit asks for over `vip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalWish {
    /// The principal unit.
    pub unit: String,
    /// Its checks (all must pass).
    pub checks: Vec<Check>,
    /// Seconds between runs, if it said.
    pub interval: Option<u32>,
    /// The short service name it gave, for logs only: the vrrp_instance is named after this
    /// application, so that a principal naming (or renaming) its service reloads the same
    /// instance instead of replacing it (which would drop the VIP and elect a holder again).
    pub service: Option<String>,
}

/// What the principals related over `vip` ask for, as far as they have said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// Every principal related over `vip` sent its check (or none is related over `vip`).
    Ready(Vec<PrincipalWish>),
    /// A principal related over `vip` has not sent its check yet: the unit or, before it
    /// joined, the application. A principal that speaks `vip` always sends one, and a
    /// keepalived started without it would let an unhealthy host (a PostgreSQL replica) win
    /// the VIP.
    Waiting(String),
    /// A principal sent data that cannot be used; the message says what (the unit is
    /// Blocked with it).
    Invalid(String),
}

/// The relation a `-broken` hook is about: Juju still lists it, but it is gone.
fn broken_id(ctx: &Context) -> Option<u32> {
    ctx.event
        .relation()
        .filter(|r| r.phase == RelationPhase::Broken)
        .map(|r| r.relation.id)
}

/// How many principal relations (`juju-info` or `vip`) remain, not counting one being broken.
pub fn principal_relations(ctx: &Context) -> anyhow::Result<usize> {
    let broken = broken_id(ctx);
    let mut n = 0;
    for ep in [JUJU_INFO, VIP] {
        n += ctx
            .tools()
            .relation_ids(ep)?
            .iter()
            .filter(|id| Some(id.id) != broken)
            .count();
    }
    Ok(n)
}

/// The principals' wishes over `vip`. Unusable data from any principal wins over one still
/// to come, so that a fix is asked for at once.
pub fn principal_wishes(ctx: &Context) -> anyhow::Result<Principals> {
    let broken = broken_id(ctx);
    let mut out = Vec::new();
    let mut waiting = None;
    for rel in ctx.model.relations(VIP)? {
        if Some(rel.id().id) == broken {
            continue;
        }
        if rel.units().is_empty() {
            // Related, but the principal unit has not joined: its data cannot be read yet.
            let app = rel.remote_app().unwrap_or("the principal").to_string();
            waiting.get_or_insert(app);
            continue;
        }
        for unit in rel.units() {
            match wish_of(unit, &rel.unit_data(unit)?) {
                Ok(Some(w)) => out.push(w),
                Ok(None) => {
                    waiting.get_or_insert(unit.clone());
                }
                Err(why) => return Ok(Principals::Invalid(why)),
            }
        }
    }
    Ok(match waiting {
        Some(who) => Principals::Waiting(who),
        None => Principals::Ready(out),
    })
}

/// One principal unit's databag ([`PrincipalData`]) as a wish: `Ok(None)` while it has no
/// `check` yet. What it did send is validated first, so a bad value blocks at once rather than
/// after the check.
fn wish_of(unit: &str, bag: &Databag) -> Result<Option<PrincipalWish>, String> {
    let data: PrincipalData =
        from_databag(bag).map_err(|e| format!("principal {unit} sent invalid vip data: {e}"))?;
    let check_text = text(&data.check).unwrap_or("");
    let mut checks = checks::parse_checks(check_text)
        .map_err(|why| format!("principal {unit} sent an invalid check: {why}"))?;
    if let Some(tls) = client_tls(&data).map_err(|why| format!("principal {unit} sent {why}"))? {
        checks = checks
            .into_iter()
            .map(|c| match c {
                checks::Check::Http(u) if u.starts_with("https://") => {
                    checks::Check::HttpTls(u, tls.clone())
                }
                other => other,
            })
            .collect();
    }
    let interval = match text(&data.check_interval) {
        None => None,
        Some(s) => match s.parse::<f64>() {
            // keepalived runs scripts in whole seconds: round up, never below 1.
            Ok(x) if x.is_finite() && x > 0.0 && x <= 3600.0 => Some((x.ceil() as u32).max(1)),
            _ => return Err(format!("principal {unit} sent an invalid check-interval {s:?}: expected seconds, more than 0 and at most 3600")),
        },
    };
    if checks.is_empty() {
        return Ok(None);
    }
    let service = data
        .service
        .as_deref()
        .map(sanitize)
        .filter(|s| !s.is_empty());
    Ok(Some(PrincipalWish {
        unit: unit.to_string(),
        checks,
        interval,
        service,
    }))
}

/// A value as the principal meant it: trimmed, blank counts as missing.
fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `check-tls-ca`, `check-tls-cert`, `check-tls-key`: all three or none.
fn client_tls(data: &PrincipalData) -> Result<Option<checks::ClientTls>, String> {
    match (
        text(&data.check_tls_ca),
        text(&data.check_tls_cert),
        text(&data.check_tls_key),
    ) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(checks::ClientTls {
            ca: checks::parse_path(keys::CHECK_TLS_CA, ca)?,
            cert: checks::parse_path(keys::CHECK_TLS_CERT, cert)?,
            key: checks::parse_path(keys::CHECK_TLS_KEY, key)?,
        })),
        _ => Err(
            "only some of check-tls-ca, check-tls-cert, check-tls-key: expected all three or none"
                .into(),
        ),
    }
}

/// A name keepalived accepts for a block: letters, digits and `_`, not starting with a digit.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The peers' unicast addresses by unit; a unit that has not published one yet (or published
/// something that is not an address) is left out until it does.
pub fn peer_addresses(ctx: &Context) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    let mut out = BTreeMap::new();
    let Some(rel) = ctx.model.relation(PEERS)? else {
        return Ok(out);
    };
    for unit in rel.units() {
        let bag = rel.unit_data(unit)?;
        match bag.get(ADDRESS).map(|a| a.parse::<IpAddr>()) {
            Some(Ok(a)) => {
                out.insert(unit.clone(), a);
            }
            Some(Err(_)) => log::warn!("peer {unit} published an address that is not an IP address; leaving it out of unicast_peer"),
            None => {}
        }
    }
    Ok(out)
}

/// Writes this unit's address and priority to the peer relation (only what changed).
pub fn publish_peer(ctx: &Context, address: Option<IpAddr>, priority: u8) -> anyhow::Result<()> {
    let Some(rel) = ctx.model.relation(PEERS)? else {
        return Ok(());
    };
    let mut want = Databag::new();
    want.insert(
        ADDRESS.into(),
        address.map(|a| a.to_string()).unwrap_or_default(),
    );
    want.insert(PRIORITY.into(), priority.to_string());
    set_changed(&rel.my_unit_data()?, &want, |c| rel.set_my_unit_data(c))
}

/// Writes to the principals what they should know ([`SubordinateData`], only what changed).
pub fn publish_principal(
    ctx: &Context,
    vips: &[crate::net::Cidr],
    state: VipState,
) -> anyhow::Result<()> {
    let broken = broken_id(ctx);
    let want = to_databag(&SubordinateData {
        vips: vips.iter().map(|c| c.addr.to_string()).collect(),
        vip_cidrs: vips.iter().map(|c| c.to_string()).collect(),
        state: Some(state),
    })?;
    for rel in ctx.model.relations(VIP)? {
        if Some(rel.id().id) == broken {
            continue;
        }
        set_changed(&rel.my_unit_data()?, &want, |c| rel.set_my_unit_data(c))?;
    }
    Ok(())
}

fn set_changed(
    current: &Databag,
    want: &Databag,
    set: impl FnOnce(&Databag) -> charm_lib::Result<()>,
) -> anyhow::Result<()> {
    let changes: Databag = want
        .iter()
        .filter(|(k, v)| current.get(*k).map(String::as_str).unwrap_or("") != v.as_str())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !changes.is_empty() {
        set(&changes)?;
    }
    Ok(())
}

/// The VRRP password: every unit must send the same one, so the leader creates it once and
/// the peers read it by the id it shares. `None` until the leader has shared it.
pub fn vrrp_password(ctx: &Context) -> anyhow::Result<Option<String>> {
    let Some(rel) = ctx.model.relation(PEERS)? else {
        return Ok(None);
    };
    let generate = || {
        let password = charm_lib::random::alphanumeric(PASSWORD_LEN)?;
        Ok([(SECRET_KEY.to_string(), password)].into())
    };
    let Some(s) = VRRP_SECRET.ensure(&ctx.model, &rel, generate)? else {
        return Ok(None);
    };
    if s.created {
        log::info!("created the VRRP password secret {}", s.id);
    }
    match s
        .content
        .get(SECRET_KEY)
        .filter(|p| p.len() >= PASSWORD_LEN)
    {
        Some(p) => Ok(Some(p[..PASSWORD_LEN].to_string())),
        None => anyhow::bail!(
            "secret {} (the VRRP password) has no usable {SECRET_KEY:?} key",
            s.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_names() {
        assert_eq!(sanitize("maas_region"), "maas_region");
        assert_eq!(sanitize("region-vip"), "region_vip");
        assert_eq!(sanitize("9x y"), "_9x_y");
    }
}
