//! One holistic pass for every hook: derive the wanted host state and relation data from the
//! whole model, apply the difference, report one status.

use crate::certs;
use crate::config::{Config, InstallMethod};
use crate::haproxy;
use crate::lock;
use crate::maas;
use crate::peers::{self, AppBag, UnitBag};
use crate::relations::{self, Database, Peer, Rack};
use crate::render;
use crate::state::{self, Stored};
use crate::workload;
use charm_lib::databag::from_databag;
use charm_lib::{Context, Databag, SharedSecret, Status};
use std::collections::{BTreeMap, BTreeSet};

/// Label of the Juju secret holding the MAAS shared secret.
pub const SHARED_SECRET_LABEL: &str = "maas-shared-secret";
/// The MAAS shared secret: the leader keeps it, its id goes to the peer app databag.
const SHARED_SECRET: SharedSecret = SharedSecret::new(
    SHARED_SECRET_LABEL,
    peers::keys::SECRET_ID,
    "MAAS shared secret (racks register with it)",
);

pub(crate) fn bag(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What Juju and the machine say at the top of the hook, read once; the steps only read it.
pub(crate) struct Inputs {
    pub cfg: Config,
    pub leader: bool,
    /// This unit's name.
    pub me: String,
    /// This unit's ingress address on the peer relation.
    pub address: Option<String>,
    pub hostname: String,
    /// The other regions, from the peer relation.
    pub peers: Vec<Peer>,
    /// Whether the peer relation exists yet.
    pub has_peers: bool,
    /// The VIP the subordinate offers, if any.
    pub vip: Option<String>,
    /// The racks on `rpc`: a snap region's mode and refresh follow them (none read for deb,
    /// which uses neither).
    pub racks: Vec<Rack>,
    /// The database, from whichever of `db` and `database` is related.
    pub db: Database,
}

/// What this hook has written since it read [`Inputs`], kept so later steps see it: the peer
/// app databag as the leader has left it, this unit's own peer databag as published, and the
/// charm state, saved once at the end of the hook. Peer data is written through
/// [`update_app`] and [`update_mine`] only, which keep these views true.
pub(crate) struct Cache {
    /// The peer app databag as text, for the modules that keep their keys in a `SharedSecret`
    /// or read it as a map (certs, cos, internal_admin); [`Cache::app`] is the same, typed.
    pub peer_app: Databag,
    /// The peer app databag.
    pub app: AppBag,
    /// This unit's peer databag; `mine.drain` is the drain it asked for before its refresh.
    pub mine: UnitBag,
    pub stored: Stored,
}

/// The hook's entry point for every event but actions and leaving: install, read the inputs,
/// then one step per concern, each deriving what it wants from them and applying it.
pub fn reconcile(ctx: &mut Context) -> anyhow::Result<()> {
    let Some(cfg) = ctx.load_config::<Config>()? else {
        return Ok(());
    };
    let Some(before) = usable_state(ctx, &cfg)? else {
        return Ok(());
    };
    let mut stored = before.clone();
    workload::install(ctx, &cfg, &mut stored)?;
    let (i, mut c) = match read_inputs(ctx, cfg, stored.clone())? {
        Ok(read) => read,
        Err(status) => {
            // Nothing is decided from peer data that does not parse: MAAS and haproxy go on
            // as they are until the operator fixes the key the status names (what the install
            // did is kept).
            ctx.status(status);
            ctx.model.save_state(&before, &stored)?;
            return Ok(());
        }
    };
    if let (true, Some(p)) = (i.leader, i.peers.iter().find(|p| p.garbled.is_some())) {
        ctx.status(Status::waiting(format!(
            "the init lock stays as it is while {}'s peer data does not parse ({}): that unit is Blocked until it is fixed",
            p.unit,
            p.garbled.as_deref().unwrap_or_default()
        )));
    }

    if let Some(s) = haproxy::apply(ctx, &i, &mut c)? {
        ctx.status(s);
    }
    publish_vip_checks(ctx, &i)?;
    crate::cos::publish(ctx, &i.cfg, &c.stored)?;
    open_ports(ctx, &i)?;
    let url = decide_url(ctx, &i, &mut c)?;
    let ready = run_maas(ctx, &i, &mut c, url.as_deref())?;
    if i.leader {
        publish_leader_data(ctx, &i, &mut c, url.as_deref(), ready)?;
    }
    let tls_as_configured = apply_tls(ctx, &i, &mut c, url.as_deref(), ready)?;
    if let Some(s) = crate::backup::reconcile(ctx, &i.cfg)? {
        ctx.status(s);
    }
    ctx.model.save_state(&before, &c.stored)?;
    if let (true, Some(url)) = (ready, &url) {
        let status = serving(ctx, &i, url, tls_as_configured)?;
        ctx.status(status);
    }
    Ok(())
}

/// The charm state, unless it blocks the unit: a key that does not fit, or an install method
/// other than the one installed.
fn usable_state(ctx: &mut Context, cfg: &Config) -> anyhow::Result<Option<Stored>> {
    let stored = match state::load(ctx)? {
        Ok(s) => s,
        Err(status) => {
            ctx.status(status);
            return Ok(None);
        }
    };
    if let Some(installed) = stored.method.filter(|m| *m != cfg.install_method) {
        ctx.status(Status::blocked(format!(
            "install-method cannot change from {} to {} on a deployed unit: set it back, or deploy a new application",
            installed.as_str(),
            cfg.install_method.as_str()
        )));
        return Ok(None);
    }
    Ok(Some(stored))
}

/// Reads the hook's [`Inputs`], and first tells the other regions this unit's hostname,
/// address and channel (so they hear of it in this hook, whatever comes after). `Err`: the
/// peer app databag or this unit's own does not parse (Blocked, naming the key).
fn read_inputs(
    ctx: &Context,
    cfg: Config,
    mut stored: Stored,
) -> anyhow::Result<Result<(Inputs, Cache), Status>> {
    let me = ctx.model.unit_name().to_string();
    let leader = ctx.model.is_leader()?;
    let address = ctx.model.ingress_address(relations::PEERS)?;
    let hostname = workload::hostname(ctx, &me)?;
    let peer_rel = ctx.model.relation(relations::PEERS)?;
    let mut peer_app = Databag::new();
    let mut app = AppBag::default();
    let mut mine = UnitBag::default();
    if let Some(rel) = &peer_rel {
        let own: UnitBag = match peers::surfaced(rel.read_unit(&me), false)? {
            Ok(b) => b,
            Err(s) => return Ok(Err(s)),
        };
        mine = own.clone();
        mine.hostname = Some(hostname.clone());
        if let Some(a) = &address {
            mine.address = Some(a.clone());
        }
        if let (InstallMethod::Snap, Some(c)) = (cfg.install_method, &stored.channel) {
            mine.channel = Some(c.clone());
        }
        rel.set_my_unit_data(&peers::changes(&own, &mine)?)?;
        peer_app = rel.my_app_data()?;
        let typed = from_databag(&peer_app).map_err(|problem| charm_lib::Error::Databag {
            relation: rel.id().clone(),
            owner: ctx.model.app_name().to_string(),
            problem,
        });
        app = match peers::surfaced(typed, true)? {
            Ok(a) => a,
            Err(s) => return Ok(Err(s)),
        };
    }
    let has_peers = peer_rel.is_some();
    drop(peer_rel);
    let peers = relations::peers(&ctx.model)?;
    let vip = relations::vip(&ctx.model)?;
    if vip.is_some() {
        // Kept for the teardown, which runs after the vip relation has gone.
        stored.vip.clone_from(&vip);
    }
    let racks = match cfg.install_method {
        InstallMethod::Snap => relations::racks(&ctx.model)?,
        InstallMethod::Deb => Vec::new(),
    };
    let broken = relations::broken(&ctx.event);
    let db = relations::database(&ctx.model, &cfg.database_name, broken.as_ref())?;
    let i = Inputs {
        cfg,
        leader,
        me,
        address,
        hostname,
        peers,
        has_peers,
        vip,
        racks,
        db,
    };
    let c = Cache {
        peer_app,
        app,
        mine,
        stored,
    };
    Ok(Ok((i, c)))
}

/// What the VIP's subordinate checks on this unit: haproxy's check listener, and the agent
/// ports of the MAAS it runs.
fn publish_vip_checks(ctx: &Context, i: &Inputs) -> anyhow::Result<()> {
    let agent_ports = match i.cfg.install_method {
        InstallMethod::Snap => maas::agent_ports(&i.cfg.channel),
        // The version of a deb install is not in the config; its agent ports go unchecked.
        InstallMethod::Deb => &[],
    };
    relations::publish_vip_checks(&ctx.model, &render::vip_check(i.cfg.haproxy, agent_ports))
}

/// Opens what this unit serves. A rack unit on this very host makes this unit's MAAS
/// region+rack (snap): it then serves what a rack serves, and opens those ports (the rack unit
/// here opens none).
fn open_ports(ctx: &Context, i: &Inputs) -> anyhow::Result<()> {
    let runs_rack = i.cfg.install_method == InstallMethod::Snap
        && maas::wanted_mode(&i.hostname, &rack_hostnames(i)) == "region+rack";
    ctx.model
        .set_ports(&render::ports(i.cfg.haproxy, i.cfg.tls_enabled, runs_rack))?;
    Ok(())
}

/// The hostnames of the racks on `rpc`.
pub(crate) fn rack_hostnames(i: &Inputs) -> Vec<String> {
    i.racks.iter().map(|r| r.hostname.clone()).collect()
}

/// MAAS itself, once the database and the URL are known; whether it runs.
fn run_maas(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    url: Option<&str>,
) -> anyhow::Result<bool> {
    match (&i.db, url) {
        (Database::Both, _) => {
            ctx.status(Status::blocked(
                "relate either db or database, not both: remove one of the two relations",
            ));
            Ok(false)
        }
        (Database::Missing, _) => {
            workload::stop_regiond(ctx, i.cfg.install_method)?;
            ctx.status(Status::waiting("waiting for database"));
            Ok(false)
        }
        (Database::NotReady(why), _) => {
            ctx.status(Status::waiting(why.clone()));
            Ok(false)
        }
        (Database::Ready(_), None) => {
            ctx.status(Status::waiting(
                "waiting for the leader to publish the MAAS URL",
            ));
            Ok(false)
        }
        (Database::Ready(db), Some(url)) => match i.cfg.install_method {
            InstallMethod::Snap => workload::snap(ctx, i, c, db, url),
            InstallMethod::Deb => workload::deb(ctx, i, c, db, url),
        },
    }
}

/// The status of a region whose MAAS runs: Active once it answers as configured (its own
/// regiond and haproxy, then TLS as the leader applied it, then its nginx on the certificate).
fn serving(
    ctx: &Context,
    i: &Inputs,
    url: &str,
    tls_as_configured: bool,
) -> anyhow::Result<Status> {
    Ok(if !workload::answers(ctx, i.cfg.haproxy)? {
        Status::waiting(format!(
            "MAAS does not answer {} yet (regiond starting)",
            workload::probed(i.cfg.haproxy)
        ))
    } else if !tls_as_configured {
        Status::waiting(if i.cfg.tls_enabled {
            "waiting for the leader to enable MAAS TLS (maas config-tls enable)"
        } else {
            "waiting for the leader to disable MAAS TLS (maas config-tls disable)"
        })
    } else if i.cfg.tls_enabled && !workload::answers_tls(ctx, i.cfg.install_method)? {
        // MAAS has the certificate; this region's nginx takes it a moment later.
        Status::waiting(format!(
            "MAAS does not answer {} yet (nginx taking the certificate)",
            workload::local_tls_api()
        ))
    } else if i.cfg.tls_enabled {
        Status::active(format!(
            "serving {url}; users: {}",
            render::https_url(url, i.cfg.haproxy)
        ))
    } else {
        Status::active(format!("serving {url}"))
    })
}

/// TLS: the leader keeps MAAS's certificate and has MAAS serve it ([`certs::leader_step`]);
/// every unit keeps the CA file its own CLI trusts. Whether MAAS's TLS is as configured.
fn apply_tls(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    url: Option<&str>,
    running: bool,
) -> anyhow::Result<bool> {
    if i.leader && i.has_peers {
        let mut addresses: Vec<String> = i.peers.iter().filter_map(|p| p.address.clone()).collect();
        addresses.extend(i.address.clone());
        let mut hostnames: Vec<String> =
            i.peers.iter().filter_map(|p| p.hostname.clone()).collect();
        hostnames.push(i.hostname.clone());
        let sans = certs::wanted_sans(&addresses, &hostnames, i.vip.as_deref(), url);
        let out = certs::leader_step(
            ctx,
            &c.peer_app,
            i.cfg.install_method,
            i.cfg.tls_enabled,
            running,
            &sans,
        )?;
        write_app(ctx, c, &out.app_changes)?;
        if let Some(s) = out.status {
            ctx.status(s);
        }
        // The other units hear of it in peer relation-changed; the leader does not, so it
        // runs the certificate exporter and sends the jobs for MAAS's TLS now.
        if out.app_changes.contains_key(certs::app_keys::APPLIED) {
            crate::cos::publish(ctx, &i.cfg, &c.stored)?;
        }
    }
    let ca = i
        .cfg
        .tls_enabled
        .then_some(c.app.tls_ca.as_deref())
        .flatten();
    certs::ensure_ca_file(ctx.machine, i.cfg.install_method, ca)?;
    let applied = c.app.tls_applied.is_some();
    Ok(applied == i.cfg.tls_enabled)
}

/// The leader decides the URL and publishes it; everyone else uses what it published.
fn decide_url(ctx: &Context, i: &Inputs, c: &mut Cache) -> anyhow::Result<Option<String>> {
    if i.leader {
        let mut url = render::maas_url(
            i.cfg.maas_url.as_deref(),
            i.vip.as_deref(),
            i.address.as_deref(),
        );
        if let (Some((_, render::UrlSource::Leader)), Some(published)) =
            (&url, c.app.maas_url.as_ref())
        {
            // Without a VIP, a new leader keeps the URL of a region that is still here: moving
            // it would reconfigure every region and rack for nothing.
            let still_here = i
                .address
                .iter()
                .chain(i.peers.iter().filter_map(|p| p.address.as_ref()))
                .any(|a| {
                    render::maas_url(None, None, Some(a)).is_some_and(|(u, _)| &u == published)
                });
            if still_here {
                url = Some((published.clone(), render::UrlSource::Leader));
            }
        }
        let url = url.map(|(u, _)| u);
        if let (Some(u), true) = (&url, i.has_peers) {
            update_app(ctx, c, |a| a.maas_url = Some(u.clone()))?;
        }
        return Ok(url);
    }
    if let Some(u) = &i.cfg.maas_url {
        return Ok(Some(u.clone()));
    }
    match &c.app.maas_url {
        Some(u) if crate::config::validate_maas_url(u).is_ok() => Ok(Some(u.clone())),
        Some(u) => {
            log::warn!("the leader published an invalid MAAS URL {u:?}; waiting for a valid one");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Leader: changes the peer app databag as `f` does to [`Cache::app`] (only the keys that
/// changed are written).
pub(crate) fn update_app(
    ctx: &Context,
    c: &mut Cache,
    f: impl FnOnce(&mut AppBag),
) -> anyhow::Result<()> {
    let mut new = c.app.clone();
    f(&mut new);
    let changes = peers::changes(&c.app, &new)?;
    write_app(ctx, c, &changes)
}

/// Leader: writes `changes` (key → value, empty deletes) into the peer app databag, for the
/// modules that name their keys as text ([`certs::Outcome`], a `SharedSecret`'s key), and
/// keeps both views of [`Cache`] true.
pub(crate) fn write_app(ctx: &Context, c: &mut Cache, changes: &Databag) -> anyhow::Result<()> {
    let changes = relations::changed(&c.peer_app, changes);
    if changes.is_empty() {
        return Ok(());
    }
    let Some(rel) = ctx.model.relation(relations::PEERS)? else {
        return Ok(());
    };
    rel.set_my_app_data(&changes)?;
    for (k, v) in changes {
        if v.is_empty() {
            c.peer_app.remove(&k);
        } else {
            c.peer_app.insert(k, v);
        }
    }
    // What this charm writes parses: a value that does not is a bug, and fails the hook.
    c.app = from_databag(&c.peer_app)?;
    Ok(())
}

/// Changes this unit's peer databag as `f` does to [`Cache::mine`] (only the keys that
/// changed are written).
pub(crate) fn update_mine(
    ctx: &Context,
    c: &mut Cache,
    f: impl FnOnce(&mut UnitBag),
) -> anyhow::Result<()> {
    let mut new = c.mine.clone();
    f(&mut new);
    let changes = peers::changes(&c.mine, &new)?;
    if changes.is_empty() {
        return Ok(());
    }
    if let Some(rel) = ctx.model.relation(relations::PEERS)? {
        rel.set_my_unit_data(&changes)?;
        c.mine = new;
    }
    Ok(())
}

/// Opens (with a fresh token, unless one is open) or closes this unit's lock request; returns
/// the open token.
fn set_my_request(ctx: &Context, c: &mut Cache, wanted: bool) -> anyhow::Result<Option<u64>> {
    if ctx.model.relation(relations::PEERS)?.is_none() {
        return Ok(None);
    }
    let token = match (wanted, c.mine.request) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => {
            let next = c.stored.request_seq.unwrap_or(0) + 1;
            c.stored.request_seq = Some(next);
            Some(next)
        }
    };
    update_mine(ctx, c, |m| m.request = token)?;
    Ok(token)
}

/// Opens (`wanted`) or closes this unit's lock request and, on the leader, grants the lock
/// again with it; returns the open token.
pub(crate) fn request_lock(
    ctx: &Context,
    i: &Inputs,
    c: &mut Cache,
    wanted: bool,
) -> anyhow::Result<Option<u64>> {
    let token = set_my_request(ctx, c, wanted)?;
    if i.leader {
        regrant(ctx, i, c, token)?;
    }
    Ok(token)
}

/// The leader's grant, given its own open request. While a peer's databag does not parse, its
/// request is unknown: the lock stays where it is (moving it away from a holder whose request
/// only looks closed would let two regions initialise at once).
fn regrant(ctx: &Context, i: &Inputs, c: &mut Cache, own: Option<u64>) -> anyhow::Result<()> {
    if i.peers.iter().any(|p| p.garbled.is_some()) {
        return Ok(());
    }
    let mut requests: BTreeMap<String, u64> = i
        .peers
        .iter()
        .filter_map(|p| p.request.map(|t| (p.unit.clone(), t)))
        .collect();
    let mut members: BTreeSet<String> = i.peers.iter().map(|p| p.unit.clone()).collect();
    members.insert(i.me.clone());
    if let Some(t) = own {
        requests.insert(i.me.clone(), t);
    }
    let holder = lock::grant(c.app.lock.as_ref(), &requests, &members);
    update_app(ctx, c, |a| a.lock = holder)
}

/// The MAAS shared secret in a Juju secret (created or updated when MAAS's file differs): MAAS
/// generates it, so the leader mirrors the file rather than generating content. Its id is in
/// the form the peer databag already has when that names the same secret.
fn shared_secret(
    ctx: &Context,
    i: &Inputs,
    c: &Cache,
    running: bool,
) -> anyhow::Result<Option<charm_lib::shared_secret::Shared>> {
    let Some(secret) = workload::read_shared_secret(ctx, i.cfg.install_method, running)? else {
        return Ok(None);
    };
    let content = bag(&[(contracts::maas_rpc::SECRET_KEY, &secret)]);
    Ok(Some(SHARED_SECRET.put_published(
        &ctx.model,
        &c.peer_app,
        &content,
    )?))
}

fn publish_leader_data(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    url: Option<&str>,
    running: bool,
) -> anyhow::Result<()> {
    let shared = shared_secret(ctx, i, c, running)?;
    let secret_id = shared.as_ref().map(|s| s.id.clone());
    if running && secret_id.is_none() {
        ctx.status(Status::waiting(format!(
            "waiting for regiond to write the MAAS shared secret (not there {}s after start): racks cannot register yet",
            maas::SECRET_WAIT_SECONDS
        )));
    }
    if let Some(s) = shared.filter(|s| s.unpublished) {
        update_app(ctx, c, |a| a.secret_id = Some(s.id))?;
    }
    if running && i.has_peers {
        if let Some((key, id)) =
            crate::internal_admin::ensure(ctx, &c.peer_app, i.cfg.install_method)?
        {
            // The administrator made in this hook turns the statistics on in this hook too.
            write_app(ctx, c, &bag(&[(&key, &id)]))?;
        }
        if crate::cos::enable_cluster_stats(ctx, &c.app, &i.cfg)? {
            update_app(ctx, c, |a| a.stats_enabled = Some(true))?;
            // The other units hear of it in peer relation-changed; the leader does not, so it
            // sends its own cluster job now.
            crate::cos::publish(ctx, &i.cfg, &c.stored)?;
        }
    }
    let Some(url) = url else { return Ok(()) };
    let mut regions: Vec<String> = i.peers.iter().filter_map(|p| p.hostname.clone()).collect();
    regions.push(i.hostname.clone());
    regions.sort();
    regions.dedup();
    relations::publish_rpc(
        &ctx.model,
        url,
        secret_id.as_deref(),
        &regions,
        relations::broken(&ctx.event).as_ref(),
    )
}
