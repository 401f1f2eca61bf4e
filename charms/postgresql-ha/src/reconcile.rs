//! One reconcile for every hook: derive the wanted host state and relation data from the whole
//! model and apply the difference.

pub use crate::membership::{keys, leave, Shared, CLIENT_ENDPOINTS, PEER};
pub use crate::serve::{psql, psql_output};

use crate::clients::{self, Grant, Request};
use crate::config::Config;
use crate::failover::{self, Readiness};
use crate::membership::{departed, etcd_member, manage_members, EtcdState};
use crate::patroni::{self, Cluster};
use crate::render::{self, HbaClient, Member, Passwords};
use crate::serve::{
    live_client_relations, my_vip, provision, publish, request_of, revoke_stale, topology,
    vip_gate, Allowed, VipGate, VIP_STATE_KEY,
};
use crate::site_cert::{self, Site};
use crate::{certs, etcd, install, paths, secrets};
use charm_lib::{Context, Databag, FileOptions, MachineExt, Port, Relation, ServiceOp, Status};
use std::path::Path;

/// The system passwords: the leader creates the secret once; every unit reads it by the id the
/// peer app databag shares. `None` until it exists. The id joins `app_changes` (written with
/// the rest of the peer app data) rather than being written here.
pub fn passwords(
    ctx: &Context,
    app: &Databag,
    app_changes: &mut Databag,
) -> anyhow::Result<Option<Passwords>> {
    let generate = || Ok(secrets::to_content(&secrets::generate_all()?));
    let Some(s) = secrets::SHARED.resolve(&ctx.model, app, generate)? else {
        return Ok(None);
    };
    let passwords = secrets::from_content(&s.content);
    if s.unpublished {
        app_changes.insert(secrets::PEER_KEY.into(), s.id);
    }
    Ok(passwords)
}

/// Writes the host's directories, unit files and callback; reloads systemd when a unit changed.
fn host_layout(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.machine;
    m.make_dir(Path::new(paths::CONF_DIR), &FileOptions::root(0o755))?;
    m.make_dir(
        Path::new(paths::PG_HOME),
        &FileOptions::new("postgres", "postgres", 0o700),
    )?;
    m.make_dir(
        Path::new(paths::ETCD_DATA),
        &FileOptions::new("etcd", "etcd", 0o700),
    )?;
    m.write_file(
        Path::new(paths::ROLE_CHANGE_SCRIPT),
        render::role_change_script().as_bytes(),
        &FileOptions::root(0o755),
    )?;
    let a = m.write_file(
        Path::new(paths::ETCD_UNIT_FILE),
        render::etcd_unit().as_bytes(),
        &FileOptions::root(0o644),
    )?;
    let b = m.write_file(
        Path::new(paths::PATRONI_UNIT_FILE),
        render::patroni_unit().as_bytes(),
        &FileOptions::root(0o644),
    )?;
    let unit = ctx.model.unit_name();
    let c = m.write_file(
        Path::new(paths::OBSERVER_UNIT_FILE),
        render::observer_unit(unit, &ctx.event.charm_dir()).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if a || b || c {
        m.daemon_reload()?;
    }
    // The observer is the charm's binary: it restarts when a refresh brought a different one,
    // and only then (a refresh restarts no service whose files did not change).
    let binary_changed = observer_binary_changed(ctx)?;
    m.ensure_service(paths::OBSERVER_SERVICE, c || binary_changed)?;
    Ok(())
}

/// Whether the charm binary differs from the one the observer was started with, as its
/// SHA-256 recorded in [`paths::OBSERVER_BINARY_SUM`]; records the current one. Read only
/// after upgrade-charm (nothing else replaces the charm directory) or when nothing is recorded.
fn observer_binary_changed(ctx: &Context) -> anyhow::Result<bool> {
    let m = ctx.machine;
    let upgraded = matches!(ctx.event.kind, charm_lib::EventKind::UpgradeCharm);
    let recorded = m.read_to_string(Path::new(paths::OBSERVER_BINARY_SUM))?;
    if !upgraded && recorded.is_some() {
        return Ok(false);
    }
    let binary = std::path::PathBuf::from(ctx.event.charm_dir()).join("dispatch");
    let out = m.run(
        &charm_lib::Cmd::new("sha256sum", [binary.to_string_lossy().as_ref()]).allow_failure(),
    )?;
    let sum = out
        .stdout
        .split_whitespace()
        .next()
        .filter(|s| out.success() && s.len() == 64)
        .map(str::to_string);
    let Some(sum) = sum else {
        log::warn!(
            "could not hash {} ({}): the observer restarts after a refresh",
            binary.display(),
            out.stderr.trim()
        );
        return Ok(upgraded);
    };
    m.write_file(
        Path::new(paths::OBSERVER_BINARY_SUM),
        format!("{sum}\n").as_bytes(),
        &FileOptions::root(0o644),
    )?;
    // Nothing recorded before a refresh: a charm from before the record, so its binary is
    // another one.
    Ok(upgraded && recorded.as_deref().map(str::trim) != Some(sum.as_str()))
}

/// The reconcile.
pub fn reconcile(ctx: &mut Context) -> anyhow::Result<()> {
    reconcile_with(ctx, &Overrides::default())
}

/// What an action knows before the hook tools show it: Juju applies a `secret-set` and
/// `relation-set` only when the action that made them ends.
#[derive(Debug, Default)]
pub struct Overrides<'a> {
    /// New system passwords (set-password).
    pub passwords: Option<&'a Passwords>,
    /// A restore starting (`Some(Some(..))`) or finished (`Some(None)`) (the restore action).
    pub restore: Option<Option<crate::backup::Restore>>,
}

/// The reconcile, with what an action changed in this hook.
pub fn reconcile_with(ctx: &mut Context, overrides: &Overrides) -> anyhow::Result<()> {
    // One reconcile's statuses stand alone (an action may reconcile twice).
    ctx.clear_statuses();
    if departed(ctx)? {
        ctx.status(Status::maintenance(
            "this unit left the cluster and is being removed",
        ));
        return Ok(());
    }
    // A bad option blocks with nothing rendered and running services untouched.
    let Some(config) = ctx.load_config::<Config>()? else {
        return Ok(());
    };
    let pg_version = install::ensure(ctx, &config)?;
    host_layout(ctx)?;
    let Some(peers) = ctx.model.relation(PEER)? else {
        ctx.status(Status::waiting("waiting for the peer relation"));
        return Ok(());
    };
    let leader = ctx.model.is_leader()?;
    let address = ctx
        .model
        .ingress_address(PEER)?
        .ok_or_else(|| anyhow::anyhow!("Juju gave no ingress address for {PEER}"))?;
    let me = Member {
        name: paths::member_name(ctx.model.unit_name()),
        address,
    };
    let app = peers.my_app_data()?;
    let my_bag = peers.my_unit_data()?;
    let mut app_changes = Databag::new();
    let mut unit_changes = Databag::from([(keys::ADDRESS.to_string(), me.address.clone())]);
    let units = peers.units().len() + 1;

    let mut statuses = Vec::new();
    let mut roll = None;
    let result = converge(
        ctx,
        &mut statuses,
        &config,
        pg_version,
        &peers,
        &me,
        &app,
        &my_bag,
        &mut app_changes,
        &mut unit_changes,
        units,
        overrides,
        &mut roll,
    );
    if leader {
        let changes: Databag = app_changes
            .into_iter()
            .filter(|(k, v)| app.get(k).map(String::as_str).unwrap_or("") != v)
            .collect();
        peers.set_my_app_data(&changes)?;
    }
    let changes: Databag = unit_changes
        .into_iter()
        .filter(|(k, v)| my_bag.get(k).map(String::as_str).unwrap_or("") != v)
        .collect();
    peers.set_my_unit_data(&changes)?;
    drop(peers);
    for s in statuses {
        ctx.status(s);
    }
    if leader {
        ctx.app_status(app_status(
            units,
            result.as_ref().ok().and_then(Option::as_ref),
            roll.as_deref(),
        ));
    }
    result.map(drop)
}

/// The application's status (set by the leader): how many units, whether a lost primary
/// would be replaced automatically right now, and where a rolling upgrade stands.
fn app_status(units: usize, readiness: Option<&Readiness>, roll: Option<&str>) -> Status {
    if let Some(note) = roll {
        return Status::maintenance(format!("{units} units; {note}"));
    }
    match (units, readiness) {
        (1, _) => Status::active("1 unit: no standby; add 2 units for automatic failover"),
        (2, _) => Status::active("2 units: automatic failover needs 3 units (etcd quorum); if a unit is lost, writes stop until it returns or force-promote runs"),
        (n, Some(Readiness::Unavailable(why))) => {
            Status::waiting(format!("{n} units; no automatic failover: {why}"))
        }
        (n, Some(Readiness::NoPrimary)) => {
            Status::waiting(format!("{n} units; no primary: a failover is under way"))
        }
        (n, _) => Status::active(format!("{n} units")),
    }
}

#[allow(clippy::too_many_arguments)]
fn converge(
    ctx: &Context,
    st: &mut Vec<Status>,
    config: &Config,
    pg_version: u32,
    peers: &Relation,
    me: &Member,
    app: &Databag,
    my_bag: &Databag,
    app_changes: &mut Databag,
    unit_changes: &mut Databag,
    units: usize,
    overrides: &Overrides,
    roll: &mut Option<String>,
) -> anyhow::Result<Option<Readiness>> {
    let leader = ctx.model.is_leader()?;
    let current = match overrides.passwords {
        Some(p) => Some(p.clone()),
        None => passwords(ctx, app, app_changes)?,
    };
    let Some(passwords) = current else {
        st.push(Status::waiting(
            "waiting for the leader to generate the system passwords",
        ));
        return Ok(None);
    };
    let Some(ca) = certs::ca(ctx, app, app_changes)? else {
        st.push(Status::waiting(
            "waiting for the leader to create the certificate authority",
        ));
        return Ok(None);
    };
    let sans = certs::wanted_sans(me, &vips(ctx)?);
    let site = match site_cert::reconcile(ctx, me, &sans)? {
        Site::Ready(c) => Some(c),
        Site::Waiting(why) => {
            // PostgreSQL keeps serving the application CA's certificate meanwhile.
            st.push(Status::waiting(format!("{}: {why}", site_cert::ENDPOINT)));
            None
        }
        Site::NotRelated => None,
    };
    let (tls_changed, trusted) = certs::ensure(ctx.machine, &ca, me, &sans, site.as_ref())?;
    let mut shared = match Shared::read(app) {
        Ok(s) => s,
        Err(e) => {
            // Never an empty member list in its place: that would bootstrap a second etcd.
            st.push(Status::blocked(format!(
                "unusable peer app data ({PEER}), etcd membership left as it is: {e}"
            )));
            return Ok(None);
        }
    };
    if leader && shared.members.is_empty() {
        // First leader: bootstrap a one-member etcd; others join one at a time.
        shared.members.insert(me.name.clone(), me.address.clone());
        shared.bootstrap = me.name.clone();
        shared.token = format!("{}-{}", ctx.model.app_name(), &secrets::generate()?[..8]);
        shared.epoch = "1".into();
        shared.write(app_changes);
    }
    match etcd_member(ctx, me, &shared, unit_changes, my_bag)? {
        EtcdState::NotMember => {
            st.push(Status::waiting(
                "waiting for the leader to add this unit to etcd (one unit at a time)",
            ));
            return Ok(None);
        }
        EtcdState::Starting => {
            st.push(Status::waiting("waiting for etcd to start"));
            return Ok(None);
        }
        EtcdState::Running => {}
    }
    if leader && manage_members(ctx, peers, &mut shared)? {
        shared.write(app_changes);
    }

    let m = ctx.machine;
    // Without etcd quorum Patroni's /cluster answers from a stale cache (a dead primary still
    // listed as leader): nothing may be decided from it.
    let quorum = shared.members.len() < 2 || etcd::has_leader(m)?;
    let mut cluster = if quorum { patroni::cluster(m)? } else { None };
    let primary_host = cluster
        .as_ref()
        .and_then(|c| c.primary())
        .and_then(|p| p.host.clone());

    // Client relations: requests, grants (leader), pg_hba for every unit.
    let live = live_client_relations(ctx)?;
    let mut hba = Vec::new();
    let mut client_units = 0;
    let mut served: Vec<(usize, Request, Grant)> = Vec::new();
    for (i, rel) in live.iter().enumerate() {
        let req = match request_of(rel) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(problem) => {
                st.push(Status::blocked(format!(
                    "{} ({}): {problem}",
                    rel.id(),
                    rel.remote_app().unwrap_or("?")
                )));
                continue;
            }
        };
        if !req.ignored.is_empty() {
            log::warn!(
                "{}: no usable address for {}: they are not allowed in pg_hba",
                rel.id(),
                req.ignored.join(", ")
            );
        }
        client_units += req.units.len();
        let grant = if leader {
            provision(
                ctx,
                st,
                rel,
                &req,
                Allowed {
                    extensions: &config.allowed_extensions(),
                    roles: &config.allowed_extra_user_roles(),
                },
                app,
                app_changes,
                primary_host.as_deref(),
            )?
        } else {
            let key = clients::grant_key(rel.id().id);
            match app.get(&key).map(|v| serde_json::from_str::<Grant>(v)) {
                None => None,
                Some(Ok(g)) => Some(g).filter(|g| g.provisioned),
                Some(Err(e)) => {
                    // Not a silent default: this unit would leave the client out of pg_hba.
                    st.push(Status::waiting(format!(
                        "{} ({}): peer application data {key} is unreadable ({e}): waiting for the leader to write it again",
                        rel.id(),
                        rel.remote_app().unwrap_or("?")
                    )));
                    None
                }
            }
        };
        if let Some(g) = grant {
            hba.push(HbaClient {
                database: g.database.clone(),
                user: g.user.clone(),
                addresses: req
                    .units
                    .iter()
                    .flat_map(|u| u.subnets.iter().cloned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            });
            served.push((i, req, g));
        }
    }
    if leader {
        let ids: Vec<u32> = live.iter().map(|r| r.id().id).collect();
        revoke_stale(ctx, st, app, &ids, app_changes, primary_host.as_deref())?;
    }

    // Backups: pgBackRest's repository, and whether WAL is archived.
    let am_primary = cluster
        .as_ref()
        .and_then(|c| c.primary())
        .is_some_and(|p| p.name == me.name);
    let mut archiving = crate::backup::step(ctx, st, config, peers, app, my_bag, unit_changes)?;
    if let Some(r) = &overrides.restore {
        // The restore action renders with its restore, and records one in the peer data
        // only if it outlasts the action (see `backup_actions::restore`).
        archiving.restore = r.clone();
        if r.is_none() {
            app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
        }
        // A new restore replaces a failed one.
        app_changes.insert(crate::backup::RESTORE_FAILED_KEY.into(), String::new());
    } else if let Some(why) = app
        .get(crate::backup::RESTORE_FAILED_KEY)
        .filter(|v| !v.is_empty())
    {
        // Patroni would initdb an empty cluster in the emptied data directory: it stays
        // stopped until another restore.
        if m.service_is_active(paths::PATRONI_SERVICE)? {
            m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
        }
        st.push(Status::blocked(format!(
            "restore failed: {why}; PostgreSQL stays stopped (the previous data is in {}.before-restore-*): run the restore action again with another backup-id or restore-to-time",
            paths::PGDATA
        )));
        return Ok(None);
    } else if leader && archiving.restore.is_some() && !am_primary {
        if let (_, Some(why)) = crate::backup::bootstrap_outcome(&crate::backup::patroni_log(m)?) {
            log::error!("the restore failed: {why}");
            m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
            app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
            app_changes.insert(crate::backup::RESTORE_FAILED_KEY.into(), why.clone());
            st.push(Status::blocked(format!(
                "restore failed: {why}; PostgreSQL stays stopped (the previous data is in {}.before-restore-*): run the restore action again with another backup-id or restore-to-time",
                paths::PGDATA
            )));
            return Ok(None);
        }
    } else if leader && archiving.restore.is_some() && am_primary {
        // Patroni bootstrapped from the backup and PostgreSQL was promoted: done.
        log::info!("the restore is complete: PostgreSQL runs as the primary");
        app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
        archiving.restore = None;
    }
    if let Some(r) = &archiving.restore {
        st.push(Status::maintenance(match (&r.set, &r.time) {
            (_, Some(t)) => {
                format!("restoring the database to {t} from the s3-parameters repository")
            }
            (Some(id), None) => format!("restoring backup {id} from the s3-parameters repository"),
            (None, None) => "restoring from the s3-parameters repository".to_string(),
        }));
    }

    // Patroni.
    let max_connections = config.effective_max_connections(client_units);
    let mut peer_members = vec![me.clone()];
    for u in peers.units() {
        if let Some(a) = peers
            .unit_data(u)?
            .get(keys::ADDRESS)
            .filter(|a| !a.is_empty())
        {
            peer_members.push(Member {
                name: paths::member_name(u),
                address: a.clone(),
            });
        }
    }
    peer_members.sort();
    let etcd_members = shared.member_list();
    let render_yml = |archiving: &crate::backup::Archiving| {
        render::patroni_yaml(&render::PatroniInput {
            scope: ctx.model.app_name(),
            me,
            etcd_members: &etcd_members,
            peers: &peer_members,
            pg_version,
            passwords: &passwords,
            config,
            max_connections,
            clients: &hba,
            archiving,
        })
    };
    let yml = render_yml(&archiving);
    let pg_owner = FileOptions::new("postgres", "postgres", 0o600);
    let changed = m.write_file(Path::new(paths::PATRONI_YML), yml.as_bytes(), &pg_owner)?;
    m.write_file(
        Path::new(paths::CHARM_PGPASS),
        render::charm_pgpass(&passwords.superuser).as_bytes(),
        &pg_owner,
    )?;
    m.service(ServiceOp::Enable, paths::PATRONI_SERVICE)?;
    if !m.service_is_active(paths::PATRONI_SERVICE)? {
        m.service(ServiceOp::Start, paths::PATRONI_SERVICE)?;
        // A bounded wait lets this hook report the role and publish the address; a replica
        // still cloning a large database is picked up by a later hook.
        patroni::wait_running(m, 60)?;
    } else if changed || tls_changed {
        // Patroni re-reads its file on SIGHUP and applies pg_hba and parameters itself; it
        // also serves a renewed certificate then (api.py `reload_config`).
        m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
        if tls_changed {
            certs::reload_postgres(m)?;
        }
    }
    if quorum && cluster.as_ref().and_then(|c| c.member(&me.name)).is_none() {
        cluster = patroni::cluster(m)?;
    }
    // The stanza, by the primary, once Patroni runs (it may have just made this unit the
    // primary); archiving starts in this hook when it is there.
    let primary_now = cluster
        .as_ref()
        .and_then(|c| c.primary())
        .is_some_and(|p| p.name == me.name);
    if let (true, None, Some(fp)) = (primary_now, &archiving.restore, archiving.unchecked.clone()) {
        if crate::backup::create_stanza(ctx, st, &fp, unit_changes)? {
            if archiving.stanza.is_none() {
                archiving.stanza = Some(crate::backup::stanza(ctx.model.app_name()));
                if m.write_file(
                    Path::new(paths::PATRONI_YML),
                    render_yml(&archiving).as_bytes(),
                    &pg_owner,
                )? {
                    m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
                }
            }
        } else {
            archiving.stanza = None;
        }
    }
    ctx.model.set_ports(&[Port::Tcp(paths::PG_PORT)])?;
    ctx.model.set_workload_version(&pg_version.to_string())?;

    // The DCS-wide settings follow the config, with a running primary only: without one a
    // failover is under way, and force-promote turns synchronous mode off so that a survivor
    // which was not the synchronous standby may take the lock; turning it back on before then
    // would keep the cluster without a primary.
    if leader && cluster.as_ref().is_some_and(|c| c.primary().is_some()) {
        let wanted = render::dynamic_config(config, max_connections, units);
        if let Some(current) = patroni::dynamic_config(m)? {
            if !patroni::config_contains(&current, &wanted) {
                log::info!("updating Patroni's dynamic configuration");
                match patroni::request(
                    m,
                    "PATCH",
                    "/config",
                    Some(&wanted),
                    Some(&passwords.patroni),
                )? {
                    Some(r) if r.status == 200 => {}
                    other => log::warn!(
                        "Patroni refused the configuration update: {:?}",
                        other.map(|r| (r.status, r.body))
                    ),
                }
            }
        }
    }

    restart_if_pending(m, cluster.as_ref(), me, &passwords)?;
    if quorum {
        *roll = crate::upgrade::step(
            ctx,
            st,
            &crate::upgrade::Roll {
                config,
                pg_version,
                me,
                passwords: &passwords,
                peers,
                app,
                leader,
                units,
            },
            &mut cluster,
            app_changes,
            unit_changes,
        )?;
    }
    exporter(ctx, leader, app, app_changes, primary_host.as_deref())?;

    // Relation data.
    let my_vip = my_vip(ctx)?;
    share_vip_state(my_vip.as_ref(), unit_changes);
    let gate = vip_gate(my_vip.as_ref(), peers)?;
    let mut topo = topology(cluster.as_ref(), &gate, me, units, pg_version, &trusted)?;
    if leader && served.iter().any(|(_, _, g)| g.endpoint == "database") {
        topo.full_version = install::full_version(ctx, pg_version)?;
    }
    // Until the VIP is held nothing new goes out, credentials included: data_interfaces'
    // `database_created` comes once, on the credentials, and a client reads the endpoints
    // with them (Charmed PostgreSQL defers the whole request until its endpoint exists).
    // What is already published stays: a VIP between holders is not a reason to churn clients.
    let withheld = match &gate {
        VipGate::NotHeld(why) if !served.is_empty() => Some(why),
        _ => None,
    };
    if let Some(why) = withheld {
        log::info!("client relation data not published: {why}");
        st.push(Status::waiting(why.clone()));
    }
    for (i, req, g) in served.iter().filter(|_| withheld.is_none()) {
        publish(
            ctx,
            leader,
            &live[*i],
            req,
            g,
            &topo,
            primary_host.as_deref(),
        )?;
    }
    if let Some(vip) = ctx.model.relation("vip")? {
        // The REST API wants a client certificate: the check presents this unit's.
        let wanted = charm_lib::databag::to_databag(&contracts::vip::PrincipalData {
            check: Some(format!("https://127.0.0.1:{}/primary", paths::PATRONI_PORT)),
            check_tls_ca: Some(paths::CA_CERT.to_string()),
            check_tls_cert: Some(paths::UNIT_CERT.to_string()),
            check_tls_key: Some(paths::UNIT_KEY.to_string()),
            service: Some("postgresql".to_string()),
            ..Default::default()
        })?;
        let current = vip.my_unit_data()?;
        let changed: Databag = wanted
            .into_iter()
            .filter(|(k, v)| !v.is_empty() && current.get(k) != Some(v))
            .collect();
        vip.set_my_unit_data(&changed)?;
    }

    // Telling the peers about role changes gives the leader a hook to admit the next unit.
    let role = cluster
        .as_ref()
        .and_then(|c| c.member(&me.name))
        .map(|x| format!("{} {}", x.role, x.state))
        .unwrap_or_else(|| "unknown".into());
    unit_changes.insert(keys::ROLE.into(), role);
    // Whether losing the primary now would fail over by itself: the primary's status and the
    // application's say so while it would not.
    let readiness = match &cluster {
        Some(c) => Some(failover::readiness(
            c,
            etcd::sync_key(m, ctx.model.app_name())?.as_ref(),
            config.synchronous_mode,
        )),
        None => None,
    };
    st.push(unit_status(
        cluster.as_ref(),
        me,
        quorum,
        readiness.as_ref(),
    ));
    Ok(readiness)
}

/// This unit's db-vip state into its peer unit databag, for the unit that publishes to
/// clients (the key is removed without a vip relation or before the subordinate reports).
fn share_vip_state(mine: Option<&crate::serve::MyVip>, unit_changes: &mut Databag) {
    let state = mine
        .and_then(|m| m.state)
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    unit_changes.insert(VIP_STATE_KEY.into(), state);
}

/// The peer app databag key the leader sets once the monitoring role exists.
const MONITORING_KEY: &str = "monitoring-role";

/// prometheus-postgres-exporter (Debian's) on loopback, reading PostgreSQL as the
/// least-privilege monitoring role, which the leader creates once on the primary.
fn exporter(
    ctx: &Context,
    leader: bool,
    app: &Databag,
    app_changes: &mut Databag,
    primary_host: Option<&str>,
) -> anyhow::Result<()> {
    let m = ctx.machine;
    let changed = m.write_file(
        Path::new(paths::EXPORTER_DEFAULTS),
        render::exporter_defaults().as_bytes(),
        &FileOptions::root(0o644),
    )?;
    m.service(ServiceOp::Enable, paths::EXPORTER_SERVICE)?;
    if changed || !m.service_is_active(paths::EXPORTER_SERVICE)? {
        m.service(ServiceOp::Restart, paths::EXPORTER_SERVICE)?;
    }
    if leader && app.get(MONITORING_KEY).map(String::as_str) != Some("1") {
        if let Some(host) = primary_host {
            match psql(
                ctx,
                host,
                &crate::sql::monitoring_role(paths::MONITORING_ROLE),
                &[],
            ) {
                Ok(_) => {
                    app_changes.insert(MONITORING_KEY.into(), "1".into());
                }
                // The next hook tries again; metrics are not worth a failed hook.
                Err(e) => log::warn!("the monitoring role could not be created yet: {e}"),
            }
        }
    }
    Ok(())
}

/// The database VIPs the keepalived-vip subordinate manages here (its unit databag `vips`):
/// clients reach the primary by them, so the certificate names them.
pub(crate) fn vips(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(r) = ctx.model.relation("vip")? {
        for u in r.units() {
            if let Some(v) = r.unit_data(u)?.get(contracts::vip::keys::VIPS) {
                out.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    Ok(out)
}

/// Restarts this member's PostgreSQL through Patroni when a parameter (max_connections) waits
/// for it: replicas first, the primary once no replica is pending, because a standby needs
/// values at least as high as its primary's.
fn restart_if_pending(
    m: &dyn charm_lib::Machine,
    cluster: Option<&Cluster>,
    me: &Member,
    passwords: &Passwords,
) -> anyhow::Result<()> {
    let Some(c) = cluster else { return Ok(()) };
    let Some(mine) = c.member(&me.name).filter(|x| x.pending_restart) else {
        return Ok(());
    };
    if mine.is_primary()
        && c.members
            .iter()
            .any(|x| x.name != me.name && x.pending_restart)
    {
        log::info!("PostgreSQL needs a restart for a parameter change; waiting for the replicas to restart first");
        return Ok(());
    }
    log::info!("restarting PostgreSQL through Patroni to apply a parameter change");
    match patroni::request(
        m,
        "POST",
        "/restart",
        Some(&serde_json::json!({"restart_pending": true})),
        Some(&passwords.patroni),
    )? {
        Some(r) if r.status == 200 => Ok(()),
        other => {
            log::warn!(
                "Patroni did not restart PostgreSQL: {:?}",
                other.map(|r| (r.status, r.body))
            );
            Ok(())
        }
    }
}

/// This unit's status from Patroni's view, unless etcd lost its quorum.
fn unit_status(
    cluster: Option<&Cluster>,
    me: &Member,
    quorum: bool,
    readiness: Option<&Readiness>,
) -> Status {
    if !quorum {
        return Status::blocked(
            "etcd quorum lost: if the lost units will not come back, run the force-promote action with i-understand-data-loss=true on the leader",
        );
    }
    let mine = cluster.and_then(|c| c.member(&me.name));
    if let Some(mm) = mine {
        if mm.is_primary() {
            // Losing this unit while nobody could take over means no automatic failover, which
            // the operator must see (a single unit has nobody by design: its app status says so).
            let others = cluster.map_or(0, |c| c.members.len().saturating_sub(1));
            if let (true, Some(Readiness::Unavailable(why))) = (others > 0, readiness) {
                return Status::active(format!("primary; no automatic failover: {why}"));
            }
            return Status::active("primary");
        }
        if mm.is_sync() && mm.state == "streaming" {
            return Status::active(if mm.role == "quorum_standby" {
                "quorum standby"
            } else {
                "sync standby"
            });
        }
        if mm.state == "streaming" || (mm.role == "replica" && mm.state == "running") {
            return Status::active(match mm.lag_bytes() {
                Some(l) => format!("replica, lag {l} bytes"),
                None => "replica, lag unknown".to_string(),
            });
        }
    }
    match mine {
        Some(mm) => Status::waiting(format!(
            "PostgreSQL is {} ({})",
            mm.state,
            mm.role.replace('_', " ")
        )),
        None => Status::waiting("waiting for Patroni to start PostgreSQL"),
    }
}
