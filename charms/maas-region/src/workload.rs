//! What the charm does to its host: MAAS installed (snap or deb) and haproxy, `maas init`
//! under the leader's lock (snap) or the leader's migrations (deb), regiond's configuration,
//! its services, and the probes that say whether this region serves.

use crate::certs;
use crate::config::{Config, InstallMethod};
use crate::lock;
use crate::maas::{self, DbSettings, RegiondConf};
use crate::reconcile::{rack_hostnames, request_lock, update_app, Cache, Inputs};
use crate::refresh;
use crate::relations;
use crate::render;
use crate::state::Stored;
use charm_lib::charm_state::Yes;
use charm_lib::{Cmd, Context, EventKind, FileOptions, MachineExt, ServiceOp, Status};
use std::path::Path;

/// The APT source file for `deb-source` lines.
pub const APT_SOURCE: &str = "/etc/apt/sources.list.d/maas-region.list";
/// Shows progress right away: collect-status only speaks at the end of the hook, and an
/// operator watching a long install or init should see what is happening.
pub(crate) fn progress(ctx: &Context, message: &str) {
    if let Err(e) = ctx.tools().status_set("maintenance", message, false) {
        log::debug!("could not show progress {message:?}: {e}");
    }
}

/// The API this unit serves: through its haproxy (which proves a region answers and this
/// haproxy's checks have let it in, as the VIP's holder does) or regiond itself.
/// The path ([`render::HEALTH_PATH`]) is the one haproxy checks: regiond answers it from its
/// database, and on http whether or not TLS is on.
pub(crate) fn local_api(haproxy: bool) -> &'static str {
    if haproxy {
        "http://127.0.0.1/MAAS/rpc/"
    } else {
        "http://127.0.0.1:5240/MAAS/rpc/"
    }
}

/// What [`answers`] asks, for the Waiting message: this region's own MAAS, and its haproxy.
pub(crate) fn probed(haproxy: bool) -> String {
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
pub(crate) fn answers(ctx: &Context, haproxy: bool) -> anyhow::Result<bool> {
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
pub(crate) fn local_tls_api() -> String {
    format!(
        "https://127.0.0.1:{}{}",
        certs::TLS_PORT,
        render::HEALTH_PATH
    )
}

/// Whether [`local_tls_api`] answers, waiting half a minute at most (as [`answers`]).
pub(crate) fn answers_tls(ctx: &Context, m: InstallMethod) -> anyhow::Result<bool> {
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

pub(crate) fn hostname(ctx: &Context, me: &str) -> anyhow::Result<String> {
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

pub(crate) fn install(ctx: &Context, cfg: &Config, stored: &mut Stored) -> anyhow::Result<()> {
    match cfg.install_method {
        InstallMethod::Snap => match &stored.channel {
            None => {
                progress(ctx, &format!("installing the maas snap ({})", cfg.channel));
                ctx.machine.snap_install("maas", &cfg.channel)?;
                stored.channel = Some(cfg.channel.clone());
            }
            // A MAAS that ran is refreshed one region at a time under the init lock
            // (`refresh::under_lock`); one never initialised has nothing to keep serving.
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
pub(crate) fn snap(
    ctx: &mut Context,
    i: &Inputs,
    c: &mut Cache,
    db: &DbSettings,
    url: &str,
) -> anyhow::Result<bool> {
    let conf = read_conf(ctx, InstallMethod::Snap)?;
    let wanted_mode = maas::wanted_mode(&i.hostname, &rack_hostnames(i));
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
        let refresh = refresh::under_lock(ctx, i, c)?;
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
    let token = request_lock(ctx, i, c, asks)?;
    let granted = token.is_some_and(|t| lock::holds(c.app.lock.as_ref(), &i.me, t));
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
    request_lock(ctx, i, c, false)?;
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

/// Runs `init` (maas init, or dbupgrade) and tries again, a few seconds apart and for half a
/// minute at most, while it fails in a way seconds cure (the database VIP moving, a pg_hba line
/// not applied yet): a first deployment then settles in one hook instead of a hook error and
/// Juju's backoff, or a Blocked status waiting for an event that may not come.
pub(crate) fn init_with_retries(
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
pub(crate) fn short_error(e: &str) -> String {
    let msg = e.split_once("): ").map(|(_, m)| m).unwrap_or(e);
    maas::reason(msg)
}

/// Deb, the seed's way: regiond.conf through `local_config_set`, migrations by the leader
/// before any other unit starts regiond, bind's options migrated once per unit.
pub(crate) fn deb(
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
    if c.app.migrations_done.as_ref() != Some(&location) {
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
        update_app(ctx, c, |a| a.migrations_done = Some(location))?;
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
pub(crate) fn stop_regiond(ctx: &Context, m: InstallMethod) -> anyhow::Result<()> {
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
pub(crate) fn read_shared_secret(
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

/// Waits ([`VIP_HANDOVER`] at most) until `vip` has left this host, once its check listener
/// is closed; `why` heads the warning when it has not.
pub(crate) fn wait_vip_gone(ctx: &Context, vip: &str, why: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while holds(ctx, vip)? {
        if started.elapsed() > VIP_HANDOVER {
            log::warn!(
                "{why}: the VIP {vip} is still on this host after {VIP_HANDOVER:?}; going on"
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// Whether `ip` is one of this host's addresses (`ip -o addr show`).
pub(crate) fn holds(ctx: &Context, ip: &str) -> anyhow::Result<bool> {
    let out = ctx.machine.run(&Cmd::new("ip", ["-o", "addr", "show"]))?;
    let family = if ip.contains(':') { "inet6" } else { "inet" };
    let needle = format!(" {family} {ip}/");
    Ok(out.stdout.lines().any(|l| l.contains(&needle)))
}

/// How long a leaving region waits for its VIP to move: keepalived runs the failing check
/// within its interval (1 s unless the principal says otherwise) and a backup takes over on
/// the priority-0 advert at once.
pub(crate) const VIP_HANDOVER: std::time::Duration = std::time::Duration::from_secs(10);
