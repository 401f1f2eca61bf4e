//! One holistic pass for every hook: derive the wanted host state and relation data from the
//! whole model, apply the difference, report one status.

use crate::certs;
use crate::config::{Config, InstallMethod};
use crate::haproxy;
use crate::lock;
use crate::maas::{self, DbSettings, RegiondConf};
use crate::relations::{self, Database, Peer};
use crate::render;
use crate::state::{self, Stored};
use crate::teardown;
use charm_lib::charm_state::Yes;
use charm_lib::snap_channel::SnapChannel;
use charm_lib::{
    Cmd, Context, EventKind, FileOptions, MachineExt, ServiceOp, SharedSecret, Status,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The APT source file for `deb-source` lines.
pub const APT_SOURCE: &str = "/etc/apt/sources.list.d/maas-region.list";
/// Label of the Juju secret holding the MAAS shared secret.
pub const SHARED_SECRET_LABEL: &str = "maas-shared-secret";
/// The MAAS shared secret: the leader keeps it, its id goes to the peer app databag.
const SHARED_SECRET: SharedSecret = SharedSecret::new(
    SHARED_SECRET_LABEL,
    app_keys::SECRET_ID,
    "MAAS shared secret (racks register with it)",
);

/// Peer app databag keys (written by the leader).
pub mod app_keys {
    /// The MAAS URL every region uses.
    pub const MAAS_URL: &str = "maas-url";
    /// The Juju secret id of the MAAS shared secret.
    pub const SECRET_ID: &str = "secret-id";
    /// Deb: the database (name@host:port) the leader migrated.
    pub const MIGRATIONS_DONE: &str = "migrations-done";
}

pub(crate) fn bag(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Shows progress right away: collect-status only speaks at the end of the hook, and an
/// operator watching a long install or init should see what is happening.
fn progress(ctx: &Context, message: &str) {
    if let Err(e) = ctx.tools().status_set("maintenance", message, false) {
        log::debug!("could not show progress {message:?}: {e}");
    }
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
}

/// What this hook has written since it read [`Inputs`], kept so later steps see it: the peer
/// app databag as the leader has left it, this unit's drain request as published, and the
/// charm state, saved once at the end of the hook.
pub(crate) struct Cache {
    pub peer_app: BTreeMap<String, String>,
    /// The drain this unit asked for before its refresh ([`lock::DRAIN_KEY`]).
    pub my_drain: Option<String>,
    pub stored: Stored,
}

/// The hook's entry point for every event but actions.
pub fn reconcile(ctx: &mut Context) -> anyhow::Result<()> {
    let Some(cfg) = ctx.load_config::<Config>()? else {
        return Ok(());
    };
    let stored_before = match state::load(ctx)? {
        Ok(s) => s,
        Err(status) => {
            ctx.status(status);
            return Ok(());
        }
    };
    let mut stored = stored_before.clone();
    if let Some(installed) = stored.method.filter(|m| *m != cfg.install_method) {
        ctx.status(Status::blocked(format!(
            "install-method cannot change from {} to {} on a deployed unit: set it back, or deploy a new application",
            installed.as_str(),
            cfg.install_method.as_str()
        )));
        return Ok(());
    }
    install(ctx, &cfg, &mut stored)?;

    let me = ctx.model.unit_name().to_string();
    let leader = ctx.model.is_leader()?;
    let address = ctx.model.ingress_address(relations::PEERS)?;
    let hostname = hostname(ctx, &me)?;
    let peer_rel = ctx.model.relation(relations::PEERS)?;
    let mut peer_app = BTreeMap::new();
    let mut my_drain = None;
    if let Some(rel) = &peer_rel {
        let mut mine = bag(&[("hostname", &hostname)]);
        if let Some(a) = &address {
            mine.insert("address".into(), a.clone());
        }
        if let (InstallMethod::Snap, Some(c)) = (cfg.install_method, &stored.channel) {
            mine.insert(lock::CHANNEL_KEY.into(), c.clone());
        }
        let own = rel.my_unit_data()?;
        my_drain = own.get(lock::DRAIN_KEY).filter(|v| !v.is_empty()).cloned();
        rel.set_my_unit_data(&relations::changed(&own, &mine))?;
        peer_app = rel.my_app_data()?;
    }
    let has_peers = peer_rel.is_some();
    drop(peer_rel);
    let peers = relations::peers(&ctx.model)?;
    let i = Inputs {
        cfg,
        leader,
        me,
        address,
        hostname,
        peers,
        has_peers,
    };
    let mut c = Cache {
        peer_app,
        my_drain,
        stored,
    };

    if let Some(s) = haproxy::apply(ctx, &i, &mut c)? {
        ctx.status(s);
    }
    let agent_ports = match i.cfg.install_method {
        InstallMethod::Snap => maas::agent_ports(&i.cfg.channel),
        // The version of a deb install is not in the config; its agent ports go unchecked.
        InstallMethod::Deb => &[],
    };
    relations::publish_vip_checks(&ctx.model, &render::vip_check(i.cfg.haproxy, agent_ports))?;
    if let Some(v) = relations::vip(&ctx.model)? {
        c.stored.vip = Some(v);
    }
    crate::cos::publish(ctx, &i.cfg)?;
    // A rack unit on this very host makes this unit's MAAS region+rack (snap): it then serves
    // what a rack serves, and opens those ports (the rack unit here opens none).
    let runs_rack = i.cfg.install_method == InstallMethod::Snap && {
        let racks: Vec<String> = relations::racks(&ctx.model)?
            .into_iter()
            .map(|r| r.hostname)
            .collect();
        maas::wanted_mode(&i.hostname, &racks) == "region+rack"
    };
    ctx.model
        .set_ports(&render::ports(i.cfg.haproxy, i.cfg.tls_enabled, runs_rack))?;

    let url = decide_url(ctx, &i, &mut c)?;
    let broken = relations::broken(&ctx.event);
    let db = relations::database(&ctx.model, &i.cfg.database_name, broken.as_ref())?;
    let ready = match (&db, &url) {
        (Database::Both, _) => {
            ctx.status(Status::blocked(
                "relate either db or database, not both: remove one of the two relations",
            ));
            false
        }
        (Database::Missing, _) => {
            stop_regiond(ctx, i.cfg.install_method)?;
            ctx.status(Status::waiting("waiting for database"));
            false
        }
        (Database::NotReady(why), _) => {
            ctx.status(Status::waiting(why.clone()));
            false
        }
        (Database::Ready(_), None) => {
            ctx.status(Status::waiting(
                "waiting for the leader to publish the MAAS URL",
            ));
            false
        }
        (Database::Ready(db), Some(url)) => match i.cfg.install_method {
            InstallMethod::Snap => snap_workload(ctx, &i, &mut c, db, url)?,
            InstallMethod::Deb => deb_workload(ctx, &i, &mut c, db, url)?,
        },
    };
    if i.leader {
        publish_leader_data(ctx, &i, &c, url.as_deref(), ready)?;
    }
    let tls_as_configured = apply_tls(ctx, &i, &mut c, url.as_deref(), ready)?;
    ctx.model.save_state(&stored_before, &c.stored)?;
    if ready {
        if let Some(u) = &url {
            ctx.status(if !answers(ctx, i.cfg.haproxy)? {
                Status::waiting(format!(
                    "MAAS does not answer {} yet (regiond starting)",
                    probed(i.cfg.haproxy)
                ))
            } else if !tls_as_configured {
                Status::waiting(if i.cfg.tls_enabled {
                    "waiting for the leader to enable MAAS TLS (maas config-tls enable)"
                } else {
                    "waiting for the leader to disable MAAS TLS (maas config-tls disable)"
                })
            } else if i.cfg.tls_enabled && !answers_tls(ctx, i.cfg.install_method)? {
                // MAAS has the certificate; this region's nginx takes it a moment later.
                Status::waiting(format!(
                    "MAAS does not answer {} yet (nginx taking the certificate)",
                    local_tls_api()
                ))
            } else if i.cfg.tls_enabled {
                Status::active(format!(
                    "serving {u}; users: {}",
                    render::https_url(u, i.cfg.haproxy)
                ))
            } else {
                Status::active(format!("serving {u}"))
            });
        }
    }
    Ok(())
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
        let vip = relations::vip(&ctx.model)?;
        let sans = certs::wanted_sans(&addresses, &hostnames, vip.as_deref(), url);
        let out = certs::leader_step(
            ctx,
            &c.peer_app,
            i.cfg.install_method,
            i.cfg.tls_enabled,
            running,
            &sans,
        )?;
        for (k, v) in &out.app_changes {
            set_peer_app(ctx, c, k, v)?;
        }
        if let Some(s) = out.status {
            ctx.status(s);
        }
    }
    let ca = i
        .cfg
        .tls_enabled
        .then(|| c.peer_app.get(certs::app_keys::CA_CERT))
        .flatten()
        .filter(|c| !c.is_empty());
    certs::ensure_ca_file(ctx.machine, i.cfg.install_method, ca.map(String::as_str))?;
    let applied = c
        .peer_app
        .get(certs::app_keys::APPLIED)
        .is_some_and(|v| !v.is_empty());
    Ok(applied == i.cfg.tls_enabled)
}

/// The API this unit serves: through its haproxy (which proves a region answers and this
/// haproxy's checks have let it in, as the VIP's holder does) or regiond itself.
/// The path ([`render::HEALTH_PATH`]) is the one haproxy checks: regiond answers it from its
/// database, and on http whether or not TLS is on.
fn local_api(haproxy: bool) -> &'static str {
    if haproxy {
        "http://127.0.0.1/MAAS/rpc/"
    } else {
        "http://127.0.0.1:5240/MAAS/rpc/"
    }
}

/// What [`answers`] asks, for the Waiting message: this region's own MAAS, and its haproxy.
fn probed(haproxy: bool) -> String {
    if haproxy {
        format!("{} and {}", local_api(false), local_api(true))
    } else {
        local_api(false).to_string()
    }
}

/// Whether this region's MAAS answers [`local_api`] and, with haproxy, this unit's haproxy
/// does too, waiting for both half a minute at most: a unit says it serves the URL only when
/// its own MAAS would answer (regiond takes seconds to start, haproxy's checks two passes to
/// let it in; a unit Active a moment before answered 503). haproxy alone is not enough: it
/// balances over every region, and another region's answer made a region that had just
/// initialised, its nginx not listening yet, Active (the region/rack e2e drill saw it).
fn answers(ctx: &Context, haproxy: bool) -> anyhow::Result<bool> {
    let curl = |url: &str| format!("curl -s -o /dev/null -f --max-time 3 {url}");
    let check = if haproxy {
        format!("{} && {}", curl(local_api(false)), curl(local_api(true)))
    } else {
        curl(local_api(false))
    };
    let probe = format!("until {check}; do sleep 1; done");
    Ok(ctx
        .machine
        .run(&Cmd::new("timeout", ["30", "sh", "-c", probe.as_str()]).allow_failure())?
        .success())
}

/// This region's own TLS port, verified against the application's CA (the certificate names
/// 127.0.0.1): what a user sent here over https reaches.
fn local_tls_api() -> String {
    format!(
        "https://127.0.0.1:{}{}",
        certs::TLS_PORT,
        render::HEALTH_PATH
    )
}

/// Whether [`local_tls_api`] answers, waiting half a minute at most (as [`answers`]).
fn answers_tls(ctx: &Context, m: InstallMethod) -> anyhow::Result<bool> {
    let probe = format!(
        "until curl -s -o /dev/null -f --max-time 3 --cacert {} {}; do sleep 1; done",
        certs::ca_file(m).display(),
        local_tls_api()
    );
    Ok(ctx
        .machine
        .run(&Cmd::new("timeout", ["30", "sh", "-c", probe.as_str()]).allow_failure())?
        .success())
}

fn hostname(ctx: &Context, me: &str) -> anyhow::Result<String> {
    let out = ctx
        .machine
        .run(&Cmd::new("hostname", Vec::<String>::new()).allow_failure())?;
    let h = out.stdout.trim();
    Ok(if out.success() && !h.is_empty() {
        h.to_string()
    } else {
        me.replace('/', "-")
    })
}

fn install(ctx: &Context, cfg: &Config, stored: &mut Stored) -> anyhow::Result<()> {
    match cfg.install_method {
        InstallMethod::Snap => match &stored.channel {
            None => {
                progress(ctx, &format!("installing the maas snap ({})", cfg.channel));
                ctx.machine.snap_install("maas", &cfg.channel)?;
                stored.channel = Some(cfg.channel.clone());
            }
            // A MAAS that ran is refreshed one region at a time under the init lock
            // (`refresh_under_lock`); one never initialised has nothing to keep serving.
            Some(c) if *c != cfg.channel && stored.init_done.is_none() => {
                progress(ctx, &format!("refreshing the maas snap to {}", cfg.channel));
                ctx.machine.snap_refresh("maas", &cfg.channel)?;
                stored.channel = Some(cfg.channel.clone());
            }
            Some(_) => {}
        },
        InstallMethod::Deb => {
            if !stored.deb.0 {
                progress(ctx, &format!("installing {}", maas::DEB_PACKAGES.join(" ")));
                if let Some(src) = &cfg.deb_source {
                    if src.starts_with("ppa:") {
                        ctx.machine
                            .run(&Cmd::new("add-apt-repository", ["-y", src.as_str()]))?;
                    } else {
                        ctx.machine.write_file(
                            Path::new(APT_SOURCE),
                            format!("{src}\n").as_bytes(),
                            &FileOptions::root(0o644),
                        )?;
                    }
                    ctx.machine.run(
                        &Cmd::new("apt-get", ["update"]).env("DEBIAN_FRONTEND", "noninteractive"),
                    )?;
                }
                ctx.machine.apt_install(&maas::DEB_PACKAGES)?;
                // The packages start an unconfigured regiond; it runs only once the database is known.
                ctx.machine.service(ServiceOp::Stop, maas::DEB_REGIOND)?;
                stored.deb = Yes(true);
            }
        }
    }
    if cfg.install_method == InstallMethod::Snap && !stored.held.0 {
        // snapd would otherwise refresh every region at once, on its own schedule, each
        // running the new MAAS's migrations as it comes up.
        ctx.machine.snap_hold("maas")?;
        stored.held = Yes(true);
    }
    if cfg.haproxy && !stored.haproxy.0 {
        progress(ctx, "installing haproxy");
        ctx.machine.apt_install(&["haproxy"])?;
        stored.haproxy = Yes(true);
    }
    stored.method = Some(cfg.install_method);
    Ok(())
}

/// The leader decides the URL and publishes it; everyone else uses what it published.
fn decide_url(ctx: &Context, i: &Inputs, c: &mut Cache) -> anyhow::Result<Option<String>> {
    if i.leader {
        let vip = relations::vip(&ctx.model)?;
        let mut url = render::maas_url(
            i.cfg.maas_url.as_deref(),
            vip.as_deref(),
            i.address.as_deref(),
        );
        if let (Some((_, render::UrlSource::Leader)), Some(published)) =
            (&url, c.peer_app.get(app_keys::MAAS_URL))
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
            set_peer_app(ctx, c, app_keys::MAAS_URL, u)?;
        }
        return Ok(url);
    }
    if let Some(u) = &i.cfg.maas_url {
        return Ok(Some(u.clone()));
    }
    match c.peer_app.get(app_keys::MAAS_URL).filter(|u| !u.is_empty()) {
        Some(u) if crate::config::validate_maas_url(u).is_ok() => Ok(Some(u.clone())),
        Some(u) => {
            log::warn!("the leader published an invalid MAAS URL {u:?}; waiting for a valid one");
            Ok(None)
        }
        None => Ok(None),
    }
}

fn set_peer_app(ctx: &Context, c: &mut Cache, key: &str, value: &str) -> anyhow::Result<()> {
    if c.peer_app.get(key).map(String::as_str).unwrap_or("") == value {
        return Ok(());
    }
    if let Some(rel) = ctx.model.relation(relations::PEERS)? {
        rel.set_my_app_data(&bag(&[(key, value)]))?;
        if value.is_empty() {
            c.peer_app.remove(key);
        } else {
            c.peer_app.insert(key.into(), value.into());
        }
    }
    Ok(())
}

/// Opens (with a fresh token, unless one is open) or closes this unit's lock request; returns
/// the open token.
fn set_my_request(ctx: &Context, c: &mut Cache, wanted: bool) -> anyhow::Result<Option<String>> {
    let Some(rel) = ctx.model.relation(relations::PEERS)? else {
        return Ok(None);
    };
    let mine = rel.my_unit_data()?;
    let open = mine
        .get(lock::REQUEST_KEY)
        .filter(|t| !t.is_empty())
        .cloned();
    let token = match (wanted, open) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => {
            let next = c.stored.request_seq.unwrap_or(0) + 1;
            c.stored.request_seq = Some(next);
            Some(next.to_string())
        }
    };
    let value = token.clone().unwrap_or_default();
    rel.set_my_unit_data(&relations::changed(
        &mine,
        &bag(&[(lock::REQUEST_KEY, &value)]),
    ))?;
    Ok(token)
}

/// The leader's grant, given its own open request.
fn regrant(ctx: &Context, i: &Inputs, c: &mut Cache, own: Option<&str>) -> anyhow::Result<()> {
    let mut requests: BTreeMap<String, String> = i
        .peers
        .iter()
        .filter_map(|p| p.request.clone().map(|t| (p.unit.clone(), t)))
        .collect();
    let mut members: BTreeSet<String> = i.peers.iter().map(|p| p.unit.clone()).collect();
    members.insert(i.me.clone());
    if let Some(t) = own {
        requests.insert(i.me.clone(), t.to_string());
    }
    let holder = lock::grant(
        c.peer_app.get(lock::LOCK_KEY).map(String::as_str),
        &requests,
        &members,
    )
    .unwrap_or_default();
    set_peer_app(ctx, c, lock::LOCK_KEY, &holder)
}

fn same_db(a: &DbSettings, b: &DbSettings) -> bool {
    a == b
}

fn read_conf(ctx: &Context, m: InstallMethod) -> anyhow::Result<Option<RegiondConf>> {
    match ctx.machine.read_to_string(maas::regiond_conf(m))? {
        None => Ok(None),
        Some(t) => Ok(RegiondConf::parse(&t).ok()),
    }
}

/// Events after which a failed init is tried again: time passed or the inputs changed. Not
/// peer events, so that a failing unit does not spin the lock around the cluster.
fn may_retry_init(ctx: &Context) -> bool {
    match &ctx.event.kind {
        EventKind::Relation(r) => r.relation.endpoint != relations::PEERS,
        EventKind::LeaderSettingsChanged => false,
        _ => true,
    }
}

/// Snap: `maas init` under the leader's lock when the unit is not initialised against this
/// database in the mode it needs (a moved database or new credentials re-run init: `maas
/// config` cannot change the database or the mode); `maas config --maas-url` when only the URL
/// changed.
fn snap_workload(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    db: &DbSettings,
    url: &str,
) -> anyhow::Result<bool> {
    let conf = read_conf(ctx, InstallMethod::Snap)?;
    let racks: Vec<String> = relations::racks(&ctx.model)?
        .into_iter()
        .map(|r| r.hostname)
        .collect();
    let wanted_mode = maas::wanted_mode(&i.hostname, &racks);
    // MAAS writes regiond.conf before it touches the database and snap_mode only after the
    // migrations: a first init that failed leaves no snap_mode ("none": no regiond runs), a
    // failed re-init leaves the previous mode next to the new settings. So initialised means
    // MAAS's files say so and the init that wrote them exited 0.
    let mode_file = ctx.machine.read_to_string(Path::new(maas::SNAP_MODE))?;
    let record = maas::init_record(wanted_mode, db);
    let initialised = maas::snap_mode(mode_file.as_deref()) == wanted_mode
        && conf
            .as_ref()
            .and_then(|c| c.db.as_ref())
            .is_some_and(|d| same_db(d, db))
        && c.stored.init_done.as_ref() == Some(&record);
    if initialised {
        let refresh = refresh_under_lock(ctx, i, c)?;
        if let Some(s) = refresh {
            ctx.status(s);
        }
        c.stored.init_error = None;
        c.stored.init_unreachable = None;
        if conf.as_ref().and_then(|c| c.maas_url.as_deref()) != Some(url) {
            progress(ctx, &format!("setting the MAAS URL to {url}"));
            ctx.machine.run(&maas::snap_config_url(url))?;
        }
        // The snap's services read regiond.conf when they start.
        if apply_keepalive(ctx, InstallMethod::Snap)? {
            ctx.machine.run(&Cmd::new("snap", ["restart", "maas"]))?;
        }
        let services = ctx
            .machine
            .run(&Cmd::new("snap", ["services", "maas"]).allow_failure())?;
        if !maas::snap_services_active(&services.stdout) {
            ctx.machine.run(&Cmd::new("snap", ["start", "maas"]))?;
        }
        return Ok(true);
    }
    if !i.has_peers {
        ctx.status(Status::waiting("waiting for the peer relation (init lock)"));
        return Ok(false);
    }
    let failed = c.stored.init_error.clone();
    let unreachable = c.stored.init_unreachable.clone();
    let asks = (failed.is_none() && unreachable.is_none()) || may_retry_init(ctx);
    let token = set_my_request(ctx, c, asks)?;
    if i.leader {
        regrant(ctx, i, c, token.as_deref())?;
    }
    let granted = token
        .as_deref()
        .is_some_and(|t| lock::holds(c.peer_app.get(lock::LOCK_KEY).map(String::as_str), &i.me, t));
    if !granted {
        ctx.status(match (failed, unreachable) {
            (Some(e), _) => Status::blocked(format!("maas init failed: {e}")),
            (None, Some(e)) => unreachable_status(&e),
            (None, None) => Status::waiting("waiting for init lock"),
        });
        return Ok(false);
    }
    // Init keeps the keys already in regiond.conf and starts the services after it.
    apply_keepalive(ctx, InstallMethod::Snap)?;
    progress(ctx, &format!("initialising MAAS (maas init {wanted_mode})"));
    let result = init_with_retries(ctx, &maas::snap_init(wanted_mode, url, db));
    set_my_request(ctx, c, false)?;
    if i.leader {
        regrant(ctx, i, c, None)?;
    }
    match result {
        Ok(_) => {
            c.stored.init_error = None;
            c.stored.init_unreachable = None;
            c.stored.init_done = Some(record);
            log::info!(
                "MAAS initialised ({wanted_mode}) on {} with URL {url}",
                db.location()
            );
            Ok(true)
        }
        Err(e) if maas::is_transient_db_error(&format!("{e:#}")) => {
            // Not a hook error (a normal deployment shows none): postgresql-ha gives out the
            // VIP only once it is held, so this is the database tier failing for longer than
            // the half minute of retries. A failover ending it changes the relation's data
            // (`standbys`, `state`, `read-only-endpoints`), a hook here; anything else waits for
            // update-status, as a hook error's backoff reaches 5 min too. Init left no snap_mode
            // behind: no regiond runs, and `initialised` stays false until an init exits 0.
            let msg = short_error(&format!("{e:#}"));
            log::warn!("maas init could not reach the database: {msg}");
            c.stored.init_done = None;
            c.stored.init_error = None;
            c.stored.init_unreachable = Some(msg.clone());
            ctx.status(unreachable_status(&msg));
            Ok(false)
        }
        Err(e) => {
            let msg = short_error(&e.to_string());
            log::error!("maas init failed: {e}");
            c.stored.init_done = None;
            c.stored.init_unreachable = None;
            c.stored.init_error = Some(msg.clone());
            ctx.status(Status::blocked(format!("maas init failed: {msg}")));
            Ok(false)
        }
    }
}

/// The status of a region whose `maas init` could not reach the database: Waiting, with
/// MAAS's reason and what retries it.
fn unreachable_status(reason: &str) -> Status {
    Status::waiting(format!(
        "maas init could not reach the database ({reason}); retried at the next database change or update-status"
    ))
}

/// What a channel change asks of this initialised region: nothing, a refusal or a wait
/// (a status), or a refresh to the channel.
fn refresh_plan(
    ctx: &Context,
    i: &Inputs,
    c: &Cache,
) -> anyhow::Result<Result<Option<String>, Status>> {
    let wanted = i.cfg.channel.clone();
    let Some(installed) = c.stored.channel.clone().filter(|c| *c != wanted) else {
        return Ok(Ok(None));
    };
    let (from, to) = (SnapChannel::parse(&installed), SnapChannel::parse(&wanted));
    if let (Some(from), Some(to)) = (&from, &to) {
        if to.is_downgrade_from(from) {
            return Ok(Err(Status::blocked(format!(
                "config channel: {wanted} is older than the {installed} MAAS runs here, and MAAS cannot go back (its database schema only migrates forward): set channel to {installed} or newer"
            ))));
        }
    }
    // MAAS's upgrade guide (docs/how-to-guides/upgrade-maas.md): "Upgrade rack nodes first,
    // then region nodes". A rack whose MAAS runs an older track than the wanted one goes first.
    let behind: Vec<String> = relations::racks(&ctx.model)?
        .into_iter()
        .filter(|r| {
            let rack = r.maas_channel.as_deref().and_then(SnapChannel::parse);
            matches!((rack, &to), (Some(rack), Some(to)) if rack.track_cmp(to) == Some(std::cmp::Ordering::Less))
        })
        .map(|r| format!("{} ({})", r.unit, r.maas_channel.unwrap_or_default()))
        .collect();
    if !behind.is_empty() {
        return Ok(Err(Status::waiting(format!(
            "serving MAAS {installed}; {wanted} waits for the racks to refresh first (MAAS upgrades racks, then regions): {}",
            behind.join(", ")
        ))));
    }
    Ok(Ok(Some(wanted)))
}

/// A new `channel` on an initialised region: refreshed one region at a time under the init
/// lock (two regions never restart at once, and each new MAAS runs its migrations alone), after
/// the racks. With haproxy, the holder first has every region's haproxy leave it out and hands
/// the VIP over ([`lock::DRAIN_KEY`]), and refreshes once every region has acknowledged; once
/// its new MAAS answers it returns to every haproxy and releases the lock. Returns the status of
/// a refresh that waits or is refused; with nothing to refresh, this unit's lock request is
/// closed and any drain it asked for ended.
fn refresh_under_lock(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
) -> anyhow::Result<Option<Status>> {
    let wanted = match refresh_plan(ctx, i, c)? {
        Ok(Some(wanted)) if i.has_peers => wanted,
        other => {
            // A channel set back mid-drain returns this region to every haproxy.
            let ended = end_drain(ctx, i, c)?;
            set_my_request(ctx, c, false)?;
            if i.leader {
                regrant(ctx, i, c, None)?;
            }
            return Ok(other.err().or(ended));
        }
    };
    let installed = c.stored.channel.clone().unwrap_or_default();
    // A region that has started (its drain published) finishes: `all` set mid-refresh halts
    // the refresh after it.
    if c.my_drain.is_none() {
        let refreshed = i
            .peers
            .iter()
            .filter(|p| p.channel.as_deref() == Some(wanted.as_str()))
            .count();
        let resumed = lock::resumed_after(
            c.peer_app.get(lock::RESUMED_KEY).map(String::as_str),
            &wanted,
        );
        let pause = i.cfg.pause_after_unit_refresh;
        if lock::paused(pause, refreshed, resumed) {
            set_my_request(ctx, c, false)?;
            if i.leader {
                regrant(ctx, i, c, None)?;
            }
            return Ok(Some(Status::blocked(format!(
                "serving MAAS {installed}; the refresh to {wanted} is paused after {refreshed} region(s) (pause-after-unit-refresh={}): check them, then run the resume-refresh action on the leader",
                pause.as_str()
            ))));
        }
        if let Some(s) = vip_holder_last(ctx, i, c, &installed, &wanted)? {
            return Ok(Some(s));
        }
    }
    let token = set_my_request(ctx, c, true)?;
    if i.leader {
        regrant(ctx, i, c, token.as_deref())?;
    }
    let granted = token
        .as_deref()
        .filter(|t| lock::holds(c.peer_app.get(lock::LOCK_KEY).map(String::as_str), &i.me, t));
    let Some(token) = granted.map(str::to_string) else {
        if let Some(s) = end_drain(ctx, i, c)? {
            return Ok(Some(s));
        }
        return Ok(Some(Status::waiting(format!(
            "serving MAAS {installed}; waiting for the init lock to refresh to {wanted} (one region at a time)"
        ))));
    };
    if i.cfg.haproxy {
        let value = lock::lock_value(&i.me, &token);
        if c.my_drain.as_deref() != Some(value.as_str()) {
            let Some(rel) = ctx.model.relation(relations::PEERS)? else {
                return Ok(None);
            };
            rel.set_my_unit_data(&bag(&[(lock::DRAIN_KEY, &value)]))?;
            drop(rel);
            c.my_drain = Some(value.clone());
            c.stored.drain_since = Some(unix_now());
            progress(
                ctx,
                &format!("draining this region from every haproxy before refreshing to {wanted}"),
            );
            if let Some(s) = haproxy::apply(ctx, i, c)? {
                return Ok(Some(s));
            }
            // The last region keeps itself, and the VIP with it (`drain_view`).
            let others = i.peers.iter().any(|p| p.address.is_some());
            if let Some(vip) = c.stored.vip.clone().filter(|_| others) {
                teardown::wait_vip_gone(ctx, &vip, "refreshing")?;
            }
        }
        let acks: BTreeMap<String, Vec<String>> = i
            .peers
            .iter()
            .map(|p| (p.unit.clone(), p.drained.clone()))
            .collect();
        let missing = lock::unacknowledged(&value, &acks);
        if !missing.is_empty() {
            let now = unix_now();
            let since = *c.stored.drain_since.get_or_insert(now);
            let waited = now.saturating_sub(since);
            if waited < lock::DRAIN_ACK_WAIT.as_secs() {
                return Ok(Some(Status::waiting(format!(
                    "serving MAAS {installed} through the other regions; the refresh to {wanted} waits for {} to leave this region out of their haproxy (or {} s after the drain began)",
                    missing.join(", "),
                    lock::DRAIN_ACK_WAIT.as_secs()
                ))));
            }
            log::warn!(
                "{} did not acknowledge the drain in {waited} s; refreshing all the same (their haproxy retries GETs on another region)",
                missing.join(", ")
            );
        }
    }
    progress(
        ctx,
        &format!("refreshing the maas snap from {installed} to {wanted}"),
    );
    ctx.machine.snap_refresh("maas", &wanted)?;
    c.stored.channel = Some(wanted.clone());
    if let Some(rel) = ctx.model.relation(relations::PEERS)? {
        // In the same write as the lock's release: the next region sees both at once.
        rel.set_my_unit_data(&bag(&[(lock::CHANNEL_KEY, &wanted)]))?;
    }
    log::info!("MAAS refreshed from {installed} to {wanted}");
    // The next region may go, and this one return to every haproxy, once it serves again
    // (regiond answers from its database; the others' health checks still let it in only
    // after two passes).
    if !answers(ctx, false)? {
        log::warn!("MAAS {wanted} does not answer {} 30 s after the refresh; releasing the lock all the same", local_api(false));
    }
    let ended = end_drain(ctx, i, c)?;
    set_my_request(ctx, c, false)?;
    if i.leader {
        regrant(ctx, i, c, None)?;
    }
    Ok(ended)
}

/// How long the VIP's holder lets the other regions refresh first: one that never does (its
/// agent gone) must not hold the upgrade back.
const VIP_LAST_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The region holding the VIP refreshes after the others: its refresh moves the VIP (its
/// agent ports close, and the drain hands it over first), and a move resets the connections
/// in flight through it. Going last, it moves once per upgrade; in unit order it moved once
/// per region that happened to hold it (keepalived does not take it back: nopreempt). A
/// Waiting status while other regions have yet to refresh, [`VIP_LAST_WAIT`] at most.
fn vip_holder_last(
    ctx: &Context,
    i: &Inputs,
    c: &mut Cache,
    installed: &str,
    wanted: &str,
) -> anyhow::Result<Option<Status>> {
    let Some(vip) = c.stored.vip.clone().filter(|_| i.cfg.haproxy) else {
        return Ok(None);
    };
    let first: Vec<String> = i
        .peers
        .iter()
        .filter(|p| p.address.is_some() && p.channel.as_deref() != Some(wanted))
        .map(|p| p.unit.clone())
        .collect();
    if first.is_empty() || !teardown::holds(ctx, &vip)? {
        return Ok(None);
    }
    let now = unix_now();
    let since = *c.stored.vip_last_since.get_or_insert(now);
    if now.saturating_sub(since) >= VIP_LAST_WAIT.as_secs() {
        log::warn!(
            "{} did not refresh within {VIP_LAST_WAIT:?}; refreshing this region, which holds the VIP, all the same",
            first.join(", ")
        );
        return Ok(None);
    }
    set_my_request(ctx, c, false)?;
    if i.leader {
        regrant(ctx, i, c, None)?;
    }
    Ok(Some(Status::waiting(format!(
        "serving MAAS {installed} and holding the VIP {vip}: refreshes to {wanted} after {} (the VIP then moves once; or {} s after this wait began)",
        first.join(", "),
        VIP_LAST_WAIT.as_secs()
    ))))
}

/// Ends this unit's drain request, if it made one: back into its own haproxy (with the VIP's
/// check listener) and, through the peer data, every other region's.
fn end_drain(ctx: &mut Context, i: &Inputs, c: &mut Cache) -> anyhow::Result<Option<Status>> {
    c.stored.drain_since = None;
    c.stored.vip_last_since = None;
    if c.my_drain.take().is_none() {
        return Ok(None);
    }
    if let Some(rel) = ctx.model.relation(relations::PEERS)? {
        rel.set_my_unit_data(&bag(&[(lock::DRAIN_KEY, "")]))?;
    }
    haproxy::apply(ctx, i, c)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs `init` (maas init, or dbupgrade) and tries again, a few seconds apart and for half a
/// minute at most, while it fails in a way seconds cure (the database VIP moving, a pg_hba line
/// not applied yet): a first deployment then settles in one hook instead of a hook error and
/// Juju's backoff, or a Blocked status waiting for an event that may not come.
fn init_with_retries(
    ctx: &Context,
    init: &Cmd,
) -> Result<charm_lib::CmdOutput, charm_lib::MachineError> {
    let mut attempt = 1;
    loop {
        match ctx.machine.run(init) {
            Err(e)
                if attempt < maas::INIT_TRIES && maas::is_worth_retrying_now(&format!("{e:#}")) =>
            {
                log::info!(
                    "{} failed ({}); trying again in {} s ({attempt}/{})",
                    init.program,
                    short_error(&format!("{e:#}")),
                    maas::INIT_PAUSE_S,
                    maas::INIT_TRIES
                );
                ctx.machine
                    .run(&Cmd::new("sleep", [maas::INIT_PAUSE_S.to_string()]))?;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// MAAS's own reason ([`maas::reason`]), without the (masked) command line in front of it.
fn short_error(e: &str) -> String {
    let msg = e.split_once("): ").map(|(_, m)| m).unwrap_or(e);
    maas::reason(msg)
}

/// Deb, the seed's way: regiond.conf through `local_config_set`, migrations by the leader
/// before any other unit starts regiond, bind's options migrated once per unit.
fn deb_workload(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    db: &DbSettings,
    url: &str,
) -> anyhow::Result<bool> {
    let conf = read_conf(ctx, InstallMethod::Deb)?.unwrap_or_default();
    let mut changed = false;
    if !conf.db.as_ref().is_some_and(|d| same_db(d, db)) {
        progress(ctx, "writing the database settings into regiond.conf");
        ctx.machine.run(&maas::deb_set_database(db))?;
        changed = true;
    }
    if conf.maas_url.as_deref() != Some(url) {
        progress(ctx, &format!("setting the MAAS URL to {url}"));
        ctx.machine.run(&maas::deb_set_url(url))?;
        changed = true;
    }
    changed |= apply_keepalive(ctx, InstallMethod::Deb)?;
    let location = db.location();
    if c.peer_app.get(app_keys::MIGRATIONS_DONE) != Some(&location) {
        if !i.leader {
            ctx.status(Status::waiting(
                "waiting for the leader to run the database migrations",
            ));
            return Ok(false);
        }
        if !i.has_peers {
            ctx.status(Status::waiting("waiting for the peer relation"));
            return Ok(false);
        }
        progress(
            ctx,
            "running the database migrations (maas-region dbupgrade)",
        );
        if let Err(e) = init_with_retries(ctx, &maas::deb_dbupgrade()) {
            if maas::is_transient_db_error(&format!("{e:#}")) {
                // As for a snap's init: Waiting, and the leader's next hook runs it again.
                let msg = short_error(&format!("{e:#}"));
                log::warn!("maas-region dbupgrade could not reach the database: {msg}");
                ctx.status(Status::waiting(format!(
                    "maas-region dbupgrade could not reach the database ({msg}); retried at the next hook"
                )));
                return Ok(false);
            }
            log::error!("maas-region dbupgrade failed: {e}");
            ctx.status(Status::blocked(format!(
                "maas-region dbupgrade failed: {}",
                short_error(&e.to_string())
            )));
            return Ok(false);
        }
        set_peer_app(ctx, c, app_keys::MIGRATIONS_DONE, &location)?;
    }
    if !c.stored.named.0 {
        progress(ctx, "migrating bind's conflicting options");
        ctx.machine.run(&maas::deb_edit_named_options())?;
        ctx.machine.service(ServiceOp::Restart, "bind9")?;
        c.stored.named = Yes(true);
    }
    ctx.machine.ensure_service(maas::DEB_REGIOND, changed)?;
    Ok(true)
}

/// Gives regiond.conf the database keepalive of [`maas::DB_KEEPALIVE`] the way each flavour
/// supports (snap: the file, keeping its owner and mode; deb: `local_config_set`). Whether it
/// changed anything: regiond reads it only when it starts.
fn apply_keepalive(ctx: &Context, m: InstallMethod) -> anyhow::Result<bool> {
    let path = maas::regiond_conf(m);
    let Some(text) =
        render::regiond_conf_with_keepalive(ctx.machine.read_to_string(path)?.as_deref())
            .map_err(anyhow::Error::msg)?
    else {
        return Ok(false);
    };
    progress(ctx, "setting the database keepalive in regiond.conf");
    match m {
        InstallMethod::Snap => {
            let opts = ctx
                .machine
                .file_info(path)?
                .map(|i| i.options)
                .unwrap_or_else(|| FileOptions::root(0o600));
            ctx.machine.write_file(path, text.as_bytes(), &opts)?;
        }
        InstallMethod::Deb => {
            ctx.machine.run(&maas::deb_set_keepalive())?;
        }
    }
    Ok(true)
}

/// The database went away: regiond cannot work, stop it (only if it runs).
fn stop_regiond(ctx: &Context, m: InstallMethod) -> anyhow::Result<()> {
    match m {
        InstallMethod::Snap => {
            if ctx.machine.read_file(maas::regiond_conf(m))?.is_none() {
                return Ok(());
            }
            let services = ctx
                .machine
                .run(&Cmd::new("snap", ["services", "maas"]).allow_failure())?;
            if maas::snap_services_active(&services.stdout) {
                ctx.machine.run(&Cmd::new("snap", ["stop", "maas"]))?;
            }
        }
        InstallMethod::Deb => {
            if ctx.machine.service_is_active(maas::DEB_REGIOND)? {
                ctx.machine.service(ServiceOp::Stop, maas::DEB_REGIOND)?;
            }
        }
    }
    Ok(())
}

/// MAAS's shared secret from its file. regiond writes the file at start-up, a little after
/// init (or dbupgrade) and the start of the service; when this region's MAAS should be
/// running (`running`) and the file is not there yet, waits for it (bounded), so racks get it
/// in this hook rather than at the next update-status.
fn read_shared_secret(
    ctx: &Context,
    m: InstallMethod,
    running: bool,
) -> anyhow::Result<Option<String>> {
    let file = ctx
        .machine
        .read_to_string(maas::secret_file(m))?
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if file.is_some() || !running {
        return Ok(file);
    }
    progress(ctx, "waiting for regiond to write the MAAS shared secret");
    let out = ctx
        .machine
        .run(&maas::wait_for_secret(m, maas::SECRET_WAIT_SECONDS))?;
    let secret = out.stdout.trim().to_string();
    Ok((out.success() && !secret.is_empty()).then_some(secret))
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
    let Some(secret) = read_shared_secret(ctx, i.cfg.install_method, running)? else {
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
    c: &Cache,
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
        if let Some(rel) = ctx.model.relation(relations::PEERS)? {
            rel.set_my_app_data(&bag(&[(app_keys::SECRET_ID, &s.id)]))?;
        }
    }
    if running && i.has_peers {
        let mut peer_app = c.peer_app.clone();
        if let Some((key, id)) =
            crate::internal_admin::ensure(ctx, &c.peer_app, i.cfg.install_method)?
        {
            if let Some(rel) = ctx.model.relation(relations::PEERS)? {
                rel.set_my_app_data(&bag(&[(&key, &id)]))?;
            }
            // The administrator made in this hook turns the statistics on in this hook too.
            peer_app.insert(key, id);
        }
        if let Some((key, value)) = crate::cos::enable_cluster_stats(ctx, &peer_app, &i.cfg)? {
            if let Some(rel) = ctx.model.relation(relations::PEERS)? {
                rel.set_my_app_data(&bag(&[(&key, &value)]))?;
            }
            // The other units hear of it in peer relation-changed; the leader does not, so it
            // sends its own cluster job now.
            crate::cos::publish(ctx, &i.cfg)?;
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
