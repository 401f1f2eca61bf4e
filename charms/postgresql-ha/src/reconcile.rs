//! One reconcile for every hook: derive the wanted host state and relation data from the whole
//! model and apply the difference.

pub use crate::membership::{keys, Shared, CLIENT_ENDPOINTS, PEER};
pub use crate::serve::{psql, psql_output};

use crate::clients::{self, Grant, Request};
use crate::config::Config;
use crate::failover::{self, Readiness};
use crate::membership::{departed, etcd_member, manage_members, EtcdState};
use crate::patroni::{self, Cluster};
use crate::render::{self, HbaClient, Member, Passwords};
use crate::report::{Report, Reported};
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
    // The observer is the charm's binary: its unit file carries the binary's fingerprint, so a
    // refresh that brings another binary restarts it, and only then.
    let c = m.write_file(
        Path::new(paths::OBSERVER_UNIT_FILE),
        render::observer_unit(unit, &ctx.event.charm_dir(), &ctx.charm_binary_line()?).as_bytes(),
        &FileOptions::root(0o644),
    )?;
    if a || b || c {
        m.daemon_reload()?;
    }
    m.ensure_service(paths::OBSERVER_SERVICE, c)?;
    // Where revisions before the fingerprint recorded the observer's binary.
    m.remove_file(Path::new(paths::OLD_OBSERVER_BINARY_SUM))?;
    Ok(())
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
    let units = peers.units().len() + 1;
    let inputs = Inputs {
        config,
        pg_version,
        peers,
        me,
        app,
        my_bag,
        units,
        leader,
        overrides,
    };

    let mut out = Out {
        unit: Databag::from([(keys::ADDRESS.to_string(), inputs.me.address.clone())]),
        ..Out::default()
    };
    let result = converge(ctx, &inputs, &mut out);
    if leader {
        let changes: Databag = out
            .app
            .into_iter()
            .filter(|(k, v)| inputs.app.get(k).map(String::as_str).unwrap_or("") != v)
            .collect();
        inputs.peers.set_my_app_data(&changes)?;
    }
    let changes: Databag = out
        .unit
        .into_iter()
        .filter(|(k, v)| inputs.my_bag.get(k).map(String::as_str).unwrap_or("") != v)
        .collect();
    inputs.peers.set_my_unit_data(&changes)?;
    // The peer relation borrows the Context, which takes the statuses.
    drop(inputs);
    for s in out.report.into_statuses() {
        ctx.status(s);
    }
    if leader {
        let readiness = result.as_ref().ok().and(out.readiness.as_ref());
        ctx.app_status(app_status(units, readiness, out.roll.as_deref()));
    }
    result
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

/// What Juju said as the hook began, read once; the steps read it from here.
struct Inputs<'a, 'm, 'r> {
    config: Config,
    /// The PostgreSQL major installed.
    pg_version: u32,
    peers: Relation<'m, 'r>,
    me: Member,
    /// The peer app databag as the hook began (the leader's changes go to [`Out::app`]).
    app: Databag,
    /// This unit's peer databag as the hook began.
    my_bag: Databag,
    /// Units in the application, this one included.
    units: usize,
    leader: bool,
    overrides: &'a Overrides<'a>,
}

/// What the reconcile hands back whatever its result: the peer data it changed (written as
/// differences), the statuses its steps found, and what the application status says.
#[derive(Default)]
struct Out {
    /// Changes to the peer app databag (written by the leader only).
    app: Databag,
    /// Changes to this unit's peer databag.
    unit: Databag,
    report: Report,
    /// Where a rolling upgrade stands (leader, while one is under way).
    roll: Option<String>,
    /// Whether a lost primary would be replaced now; set once the reconcile got that far.
    readiness: Option<Readiness>,
}

/// What the first steps secured and every later step reads.
struct Ready {
    passwords: Passwords,
    /// This unit's certificate changed: Patroni and PostgreSQL reload it.
    tls_changed: bool,
    /// The CA certificates a client is told to trust.
    trusted: String,
    shared: Shared,
    /// Without etcd quorum Patroni's /cluster answers from a stale cache (a dead primary still
    /// listed as leader): nothing may be decided from it.
    quorum: bool,
    /// The primary's address as the hook began: clients' SQL runs there.
    primary_host: Option<String>,
}

/// The system passwords and this unit's certificates.
struct Credentials {
    passwords: Passwords,
    tls_changed: bool,
    trusted: String,
}

/// What the client relations ask of this unit.
struct Clients<'m, 'r> {
    /// The client relations not being broken.
    live: Vec<Relation<'m, 'r>>,
    /// Those served: index into `live`, the request, its grant.
    served: Vec<(usize, Request, Grant)>,
    /// pg_hba entries of the served ones.
    hba: Vec<HbaClient>,
    /// PostgreSQL's max_connections for as many client units.
    max_connections: i64,
}

/// The steps in order; one that cannot go on yet (waiting or blocked) ends the reconcile.
fn converge(ctx: &Context, i: &Inputs, out: &mut Out) -> anyhow::Result<()> {
    let Some(creds) = out.report.take(credentials(ctx, i, &mut out.app)?) else {
        return Ok(());
    };
    let Some(shared) = out
        .report
        .take(etcd_membership(ctx, i, &mut out.app, &mut out.unit)?)
    else {
        return Ok(());
    };
    let quorum = shared.members.len() < 2 || etcd::has_leader(ctx.machine)?;
    let mut cluster = if quorum {
        patroni::cluster(ctx.machine)?
    } else {
        None
    };
    let r = Ready {
        passwords: creds.passwords,
        tls_changed: creds.tls_changed,
        trusted: creds.trusted,
        shared,
        quorum,
        primary_host: cluster
            .as_ref()
            .and_then(|c| c.primary())
            .and_then(|p| p.host.clone()),
    };
    let clients = out.report.take(client_requests(ctx, i, &r, &mut out.app)?);
    let Some(mut archiving) = out.report.take(backups(
        ctx,
        i,
        cluster.as_ref(),
        &mut out.app,
        &mut out.unit,
    )?) else {
        return Ok(());
    };
    out.report.merge(patroni_service(
        ctx,
        i,
        &r,
        &clients,
        &mut archiving,
        &mut cluster,
        &mut out.unit,
    )?);
    ctx.model.set_ports(&[Port::Tcp(paths::PG_PORT)])?;
    ctx.model.set_workload_version(&i.pg_version.to_string())?;
    dynamic_config(ctx, i, &r, cluster.as_ref(), clients.max_connections)?;
    restart_if_pending(ctx.machine, cluster.as_ref(), &i.me, &r.passwords)?;
    if r.quorum {
        out.roll = out.report.take(upgrade_turn(
            ctx,
            i,
            &r,
            &mut cluster,
            &mut out.app,
            &mut out.unit,
        )?);
    }
    exporter(ctx, i, &r, &mut out.app)?;
    out.report.merge(relation_data(
        ctx,
        i,
        &r,
        &clients,
        cluster.as_ref(),
        &mut out.unit,
    )?);
    out.readiness = out
        .report
        .take(unit_role(ctx, i, &r, cluster.as_ref(), &mut out.unit)?);
    Ok(())
}

/// The system passwords (the leader creates them), the application CA, and this unit's
/// certificates (from the site's CA when tls-certificates is related and ready).
fn credentials(
    ctx: &Context,
    i: &Inputs,
    app_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<Credentials>>> {
    let current = match i.overrides.passwords {
        Some(p) => Some(p.clone()),
        None => passwords(ctx, &i.app, app_changes)?,
    };
    let Some(passwords) = current else {
        return Ok(Report::of(Status::waiting(
            "waiting for the leader to generate the system passwords",
        ))
        .with(None));
    };
    let Some(ca) = certs::ca(ctx, &i.app, app_changes)? else {
        return Ok(Report::of(Status::waiting(
            "waiting for the leader to create the certificate authority",
        ))
        .with(None));
    };
    let mut report = Report::default();
    let sans = certs::wanted_sans(&i.me, &vips(ctx)?);
    let site = match site_cert::reconcile(ctx, &i.me, &sans)? {
        Site::Ready(c) => Some(c),
        Site::Waiting(why) => {
            // PostgreSQL keeps serving the application CA's certificate meanwhile.
            report.add(Status::waiting(format!("{}: {why}", site_cert::ENDPOINT)));
            None
        }
        Site::NotRelated => None,
    };
    let (tls_changed, trusted) = certs::ensure(ctx.machine, &ca, &i.me, &sans, site.as_ref())?;
    // What each file holds: postgresql.pem and trusted.pem are copies of the unit certificate
    // and the CA until the site's CA signs one, so only then are they named (no alert twice).
    let mut cert_files = vec![paths::CA_CERT, paths::UNIT_CERT];
    if site.is_some() {
        cert_files.extend([paths::PG_CERT, paths::TRUSTED]);
    }
    charm_lib::cert_metrics::apply(ctx, &paths::CERT_METRICS, &cert_files)?;
    // Patroni's metrics relay presents the certificate just made; it runs from here on, as
    // the cos-agent jobs for Patroni and etcd are sent once the CA is on the unit.
    crate::patroni_metrics::apply(ctx)?;
    Ok(report.with(Some(Credentials {
        passwords,
        tls_changed,
        trusted,
    })))
}

/// This unit's etcd member: the first leader bootstraps a one-member etcd, the others join
/// one at a time, and the leader keeps the members in step with the units. `None` until
/// this unit's member runs.
fn etcd_membership(
    ctx: &Context,
    i: &Inputs,
    app_changes: &mut Databag,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<Shared>>> {
    let mut shared = match Shared::read(&i.app) {
        Ok(s) => s,
        Err(e) => {
            // Never an empty member list in its place: that would bootstrap a second etcd.
            return Ok(Report::of(Status::blocked(format!(
                "unusable peer app data ({PEER}), etcd membership left as it is: {e}"
            )))
            .with(None));
        }
    };
    if i.leader && shared.members.is_empty() {
        shared
            .members
            .insert(i.me.name.clone(), i.me.address.clone());
        shared.bootstrap = i.me.name.clone();
        shared.token = format!("{}-{}", ctx.model.app_name(), &secrets::generate()?[..8]);
        shared.epoch = "1".into();
        shared.write(app_changes);
    }
    match etcd_member(ctx, &i.me, &shared, unit_changes, &i.my_bag)? {
        EtcdState::NotMember => {
            return Ok(Report::of(Status::waiting(
                "waiting for the leader to add this unit to etcd (one unit at a time)",
            ))
            .with(None));
        }
        EtcdState::Starting => {
            return Ok(Report::of(Status::waiting("waiting for etcd to start")).with(None));
        }
        EtcdState::Running => {}
    }
    if i.leader && manage_members(ctx, &i.peers, &mut shared)? {
        shared.write(app_changes);
    }
    Ok(Report::default().with(Some(shared)))
}

/// The client relations' requests; the leader provisions them on the primary and revokes
/// the grants of relations that are gone; every unit admits the granted ones in pg_hba.
fn client_requests<'m, 'r>(
    ctx: &'m Context<'r>,
    i: &Inputs,
    r: &Ready,
    app_changes: &mut Databag,
) -> anyhow::Result<Reported<Clients<'m, 'r>>> {
    let mut report = Report::default();
    let live = live_client_relations(ctx)?;
    let mut hba = Vec::new();
    let mut client_units = 0;
    let mut served: Vec<(usize, Request, Grant)> = Vec::new();
    for (n, rel) in live.iter().enumerate() {
        let req = match request_of(rel) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(problem) => {
                report.add(Status::blocked(format!(
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
        let grant = if i.leader {
            report.take(provision(
                ctx,
                rel,
                &req,
                Allowed {
                    extensions: &i.config.allowed_extensions(),
                    roles: &i.config.allowed_extra_user_roles(),
                },
                &i.app,
                app_changes,
                r.primary_host.as_deref(),
            )?)
        } else {
            let key = clients::grant_key(rel.id().id);
            match i.app.get(&key).map(|v| serde_json::from_str::<Grant>(v)) {
                None => None,
                Some(Ok(g)) => Some(g).filter(|g| g.provisioned),
                Some(Err(e)) => {
                    // Not a silent default: this unit would leave the client out of pg_hba.
                    report.add(Status::waiting(format!(
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
            served.push((n, req, g));
        }
    }
    if i.leader {
        let ids: Vec<u32> = live.iter().map(|r| r.id().id).collect();
        report.merge(revoke_stale(
            ctx,
            &i.app,
            &ids,
            app_changes,
            r.primary_host.as_deref(),
        )?);
    }
    Ok(report.with(Clients {
        live,
        served,
        hba,
        max_connections: i.config.effective_max_connections(client_units),
    }))
}

/// pgBackRest's repository, whether WAL is archived, and a restore under way: it starts
/// (action), completes (the leader sees this unit promoted), or fails, which stops Patroni
/// until another restore and ends the reconcile (`None`).
fn backups(
    ctx: &Context,
    i: &Inputs,
    cluster: Option<&Cluster>,
    app_changes: &mut Databag,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<crate::backup::Archiving>>> {
    let m = ctx.machine;
    let am_primary = cluster
        .and_then(|c| c.primary())
        .is_some_and(|p| p.name == i.me.name);
    let (restore, mut report) = crate::backup::requested_restore(&i.app);
    let mut archiving = report.take(crate::backup::step(
        ctx,
        &i.config,
        &i.peers,
        &i.app,
        &i.my_bag,
        unit_changes,
        restore,
    )?);
    let failed = |why: &str| {
        Status::blocked(format!(
            "restore failed: {why}; PostgreSQL stays stopped (the previous data is in {}.before-restore-*): run the restore action again with another backup-id or restore-to-time",
            paths::PGDATA
        ))
    };
    if let Some(r) = &i.overrides.restore {
        // The restore action renders with its restore, and records one in the peer data
        // only if it outlasts the action (see `backup_actions::restore`).
        archiving.restore = r.clone();
        if r.is_none() {
            app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
        }
        // A new restore replaces a failed one.
        app_changes.insert(crate::backup::RESTORE_FAILED_KEY.into(), String::new());
    } else if let Some(why) = i
        .app
        .get(crate::backup::RESTORE_FAILED_KEY)
        .filter(|v| !v.is_empty())
    {
        // Patroni would initdb an empty cluster in the emptied data directory: it stays
        // stopped until another restore.
        if m.service_is_active(paths::PATRONI_SERVICE)? {
            m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
        }
        report.add(failed(why));
        return Ok(report.with(None));
    } else if i.leader && archiving.restore.is_some() && !am_primary {
        if let (_, Some(why)) = crate::backup::bootstrap_outcome(&crate::backup::patroni_log(m)?) {
            log::error!("the restore failed: {why}");
            m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
            app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
            app_changes.insert(crate::backup::RESTORE_FAILED_KEY.into(), why.clone());
            report.add(failed(&why));
            return Ok(report.with(None));
        }
    } else if i.leader && archiving.restore.is_some() && am_primary {
        // Patroni bootstrapped from the backup and PostgreSQL was promoted: done.
        log::info!("the restore is complete: PostgreSQL runs as the primary");
        app_changes.insert(crate::backup::RESTORE_KEY.into(), String::new());
        archiving.restore = None;
    }
    if let Some(r) = &archiving.restore {
        report.add(Status::maintenance(match (&r.set, &r.time) {
            (_, Some(t)) => {
                format!("restoring the database to {t} from the s3-parameters repository")
            }
            (Some(id), None) => format!("restoring backup {id} from the s3-parameters repository"),
            (None, None) => "restoring from the s3-parameters repository".to_string(),
        }));
    }
    Ok(report.with(Some(archiving)))
}

/// Patroni's configuration and service: started, or reloaded when its file or this unit's
/// certificate changed; then, on the primary, the backup stanza, and archiving from this hook
/// on when the stanza is there. `cluster` is read again once this member is in it.
fn patroni_service(
    ctx: &Context,
    i: &Inputs,
    r: &Ready,
    clients: &Clients,
    archiving: &mut crate::backup::Archiving,
    cluster: &mut Option<Cluster>,
    unit_changes: &mut Databag,
) -> anyhow::Result<Report> {
    let m = ctx.machine;
    let mut peer_members = vec![i.me.clone()];
    for u in i.peers.units() {
        if let Some(a) = i
            .peers
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
    let etcd_members = r.shared.member_list();
    let render_yml = |archiving: &crate::backup::Archiving| {
        render::patroni_yaml(&render::PatroniInput {
            scope: ctx.model.app_name(),
            me: &i.me,
            etcd_members: &etcd_members,
            peers: &peer_members,
            pg_version: i.pg_version,
            passwords: &r.passwords,
            config: &i.config,
            max_connections: clients.max_connections,
            clients: &clients.hba,
            archiving,
        })
    };
    let yml = render_yml(archiving);
    let pg_owner = FileOptions::new("postgres", "postgres", 0o600);
    let changed = m.write_file(Path::new(paths::PATRONI_YML), yml.as_bytes(), &pg_owner)?;
    m.write_file(
        Path::new(paths::CHARM_PGPASS),
        render::charm_pgpass(&r.passwords.superuser).as_bytes(),
        &pg_owner,
    )?;
    m.service(ServiceOp::Enable, paths::PATRONI_SERVICE)?;
    if !m.service_is_active(paths::PATRONI_SERVICE)? {
        m.service(ServiceOp::Start, paths::PATRONI_SERVICE)?;
        // A bounded wait lets this hook report the role and publish the address; a replica
        // still cloning a large database is picked up by a later hook.
        patroni::wait_running(m, 60)?;
    } else if changed || r.tls_changed {
        // Patroni re-reads its file on SIGHUP and applies pg_hba and parameters itself; it
        // also serves a renewed certificate then (api.py `reload_config`).
        m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
        if r.tls_changed {
            certs::reload_postgres(m)?;
        }
    }
    if r.quorum
        && cluster
            .as_ref()
            .and_then(|c| c.member(&i.me.name))
            .is_none()
    {
        *cluster = patroni::cluster(m)?;
    }
    // The stanza, by the primary, once Patroni runs (it may have just made this unit the
    // primary); archiving starts in this hook when it is there.
    let primary_now = cluster
        .as_ref()
        .and_then(|c| c.primary())
        .is_some_and(|p| p.name == i.me.name);
    let mut report = Report::default();
    if let (true, None, Some(fp)) = (primary_now, &archiving.restore, archiving.unchecked.clone()) {
        if report.take(crate::backup::create_stanza(ctx, &fp, unit_changes)?) {
            if archiving.stanza.is_none() {
                archiving.stanza = Some(crate::backup::stanza(ctx.model.app_name()));
                if m.write_file(
                    Path::new(paths::PATRONI_YML),
                    render_yml(archiving).as_bytes(),
                    &pg_owner,
                )? {
                    m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
                }
            }
        } else {
            archiving.stanza = None;
        }
    }
    Ok(report)
}

/// The DCS-wide settings follow the config (leader), with a running primary only: without
/// one a failover is under way, and force-promote turns synchronous mode off so that a
/// survivor which was not the synchronous standby may take the lock; turning it back on
/// before then would keep the cluster without a primary.
fn dynamic_config(
    ctx: &Context,
    i: &Inputs,
    r: &Ready,
    cluster: Option<&Cluster>,
    max_connections: i64,
) -> anyhow::Result<()> {
    let primary_runs = cluster.is_some_and(|c| c.primary().is_some());
    if !(i.leader && primary_runs) {
        return Ok(());
    }
    let m = ctx.machine;
    let wanted = render::dynamic_config(&i.config, max_connections, i.units);
    if let Some(current) = patroni::dynamic_config(m)? {
        if !patroni::config_contains(&current, &wanted) {
            log::info!("updating Patroni's dynamic configuration");
            match patroni::request(
                m,
                "PATCH",
                "/config",
                Some(&wanted),
                Some(&r.passwords.patroni),
            )? {
                Some(resp) if resp.status == 200 => {}
                other => log::warn!(
                    "Patroni refused the configuration update: {:?}",
                    other.map(|resp| (resp.status, resp.body))
                ),
            }
        }
    }
    Ok(())
}

/// The rolling upgrade's part of this hook ([`crate::upgrade::step`]); the application
/// status' note while a roll is under way.
fn upgrade_turn(
    ctx: &Context,
    i: &Inputs,
    r: &Ready,
    cluster: &mut Option<Cluster>,
    app_changes: &mut Databag,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<String>>> {
    crate::upgrade::step(
        ctx,
        &crate::upgrade::Roll {
            config: &i.config,
            pg_version: i.pg_version,
            me: &i.me,
            passwords: &r.passwords,
            peers: &i.peers,
            app: &i.app,
            leader: i.leader,
            units: i.units,
        },
        cluster,
        app_changes,
        unit_changes,
    )
}

/// What the relations are told: this unit's VIP state to its peers; the clients' data (once
/// the VIP is held); the vip subordinate's health check.
fn relation_data(
    ctx: &Context,
    i: &Inputs,
    r: &Ready,
    clients: &Clients,
    cluster: Option<&Cluster>,
    unit_changes: &mut Databag,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let my_vip = my_vip(ctx)?;
    share_vip_state(my_vip.as_ref(), unit_changes);
    let gate = vip_gate(my_vip.as_ref(), &i.peers)?;
    let mut topo = topology(cluster, &gate, &i.me, i.units, i.pg_version, &r.trusted)?;
    if i.leader
        && clients
            .served
            .iter()
            .any(|(_, _, g)| g.endpoint == "database")
    {
        topo.full_version = install::full_version(ctx, i.pg_version)?;
    }
    // Until the VIP is held nothing new goes out, credentials included: data_interfaces'
    // `database_created` comes once, on the credentials, and a client reads the endpoints
    // with them (Charmed PostgreSQL defers the whole request until its endpoint exists).
    // What is already published stays: a VIP between holders is not a reason to churn clients.
    let withheld = match &gate {
        VipGate::NotHeld(why) if !clients.served.is_empty() => Some(why),
        _ => None,
    };
    if let Some(why) = withheld {
        log::info!("client relation data not published: {why}");
        report.add(Status::waiting(why.clone()));
    }
    // Without Patroni's view (etcd quorum lost, Patroni down) the replicas are unknown, not
    // gone: publishing then would rewrite every client's read-only endpoints (and its secret,
    // a new revision each way) for the length of the outage.
    let unknown = cluster.is_none() && !clients.served.is_empty();
    if unknown {
        log::info!(
            "client relation data left as published: Patroni's view of the cluster is unavailable"
        );
    }
    for (n, req, g) in clients
        .served
        .iter()
        .filter(|_| withheld.is_none() && !unknown)
    {
        publish(
            ctx,
            i.leader,
            &clients.live[*n],
            req,
            g,
            &topo,
            r.primary_host.as_deref(),
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
    Ok(report)
}

/// This unit's role, told to its peers (a role change gives the leader a hook to admit the
/// next unit), and its status; whether losing the primary now would fail over by itself,
/// which the primary's status and the application's say while it would not.
fn unit_role(
    ctx: &Context,
    i: &Inputs,
    r: &Ready,
    cluster: Option<&Cluster>,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<Readiness>>> {
    let role = cluster
        .and_then(|c| c.member(&i.me.name))
        .map(|x| format!("{} {}", x.role, x.state))
        .unwrap_or_else(|| "unknown".into());
    unit_changes.insert(keys::ROLE.into(), role);
    let readiness = match cluster {
        Some(c) => Some(failover::readiness(
            c,
            etcd::sync_key(ctx.machine, ctx.model.app_name())?.as_ref(),
            i.config.synchronous_mode,
        )),
        None => None,
    };
    let status = unit_status(cluster, &i.me, r.quorum, readiness.as_ref());
    Ok(Report::of(status).with(readiness))
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
fn exporter(ctx: &Context, i: &Inputs, r: &Ready, app_changes: &mut Databag) -> anyhow::Result<()> {
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
    if i.leader && i.app.get(MONITORING_KEY).map(String::as_str) != Some("1") {
        if let Some(host) = r.primary_host.as_deref() {
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
            let d: contracts::vip::SubordinateData =
                charm_lib::databag::from_databag(&r.unit_data(u)?)
                    .map_err(|e| anyhow::anyhow!("{} ({u}): {e}", r.id()))?;
            out.extend(d.vips.items().iter().cloned());
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
