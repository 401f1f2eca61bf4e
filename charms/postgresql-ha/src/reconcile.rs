//! One reconcile for every hook: derive the wanted host state and relation data from the whole
//! model and apply the difference.

use crate::clients::{self, Credentials, Grant, Request, Topology};
use crate::config::Config;
use crate::patroni::{self, Cluster};
use crate::render::{self, HbaClient, Member, Passwords};
use crate::{etcd, install, paths, secrets, sql};
use charm_lib::tools::SecretOptions;
use charm_lib::{Cmd, Context, Databag, FileOptions, MachineExt, Port, Relation, ServiceOp, Status};
use std::collections::BTreeMap;
use std::path::Path;

/// The peer endpoint.
pub const PEER: &str = "database-peers";
/// Client endpoints.
pub const CLIENT_ENDPOINTS: [&str; 2] = ["db", "database"];

/// Peer app databag keys (leader-written).
pub mod keys {
    /// JSON map member name → address of the admitted etcd members.
    pub const ETCD_MEMBERS: &str = "etcd-members";
    /// The member that bootstrapped the current etcd cluster.
    pub const ETCD_BOOTSTRAP: &str = "etcd-bootstrap";
    /// The etcd cluster token.
    pub const ETCD_TOKEN: &str = "etcd-token";
    /// Bumped by force-promote: members of an older epoch wipe their etcd data and rejoin.
    pub const ETCD_EPOCH: &str = "etcd-epoch";
    /// Peer unit databag: the unit's address.
    pub const ADDRESS: &str = "address";
    /// Peer unit databag: the epoch in which this unit's etcd member runs.
    pub const ETCD_STARTED: &str = "etcd-started";
    /// Peer unit databag: this unit's Patroni role and state, e.g. `replica streaming`.
    pub const ROLE: &str = "role";
}

/// The application's shared state, from the peer app databag.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Admitted etcd members: name → address.
    pub members: BTreeMap<String, String>,
    /// Current etcd epoch.
    pub epoch: String,
    /// The bootstrapping member.
    pub bootstrap: String,
    /// Cluster token.
    pub token: String,
}

impl Shared {
    /// Reads the shared state from the peer app databag.
    pub fn read(app: &Databag) -> Shared {
        Shared {
            members: app.get(keys::ETCD_MEMBERS).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default(),
            epoch: app.get(keys::ETCD_EPOCH).cloned().filter(|e| !e.is_empty()).unwrap_or_else(|| "1".into()),
            bootstrap: app.get(keys::ETCD_BOOTSTRAP).cloned().unwrap_or_default(),
            token: app.get(keys::ETCD_TOKEN).cloned().unwrap_or_default(),
        }
    }

    /// The members as a sorted list.
    pub fn member_list(&self) -> Vec<Member> {
        self.members.iter().map(|(n, a)| Member { name: n.clone(), address: a.clone() }).collect()
    }

    fn write(&self, changes: &mut Databag) {
        changes.insert(keys::ETCD_MEMBERS.into(), serde_json::to_string(&self.members).expect("a string map serializes"));
        changes.insert(keys::ETCD_EPOCH.into(), self.epoch.clone());
        changes.insert(keys::ETCD_BOOTSTRAP.into(), self.bootstrap.clone());
        changes.insert(keys::ETCD_TOKEN.into(), self.token.clone());
    }
}

/// The system passwords: the leader creates the secret once; every unit reads it by the id the
/// peer app databag shares. `None` until it exists.
pub fn passwords(ctx: &Context, app: &Databag, app_changes: &mut Databag) -> anyhow::Result<Option<Passwords>> {
    if let Some(id) = app.get(secrets::PEER_KEY).filter(|v| !v.is_empty()) {
        let content = ctx.model.get_secret(Some(id), None, true)?;
        return Ok(secrets::from_content(&content));
    }
    if !ctx.model.is_leader()? {
        return Ok(None);
    }
    // A previous hook may have created it and then failed before sharing its id.
    let (id, content) = match ctx.model.secret_by_label(secrets::LABEL)? {
        Some((id, _)) => {
            let c = ctx.model.peek_secret(Some(&id), None)?;
            (id, c)
        }
        None => {
            let content = secrets::to_content(&secrets::generate_all()?);
            let opts = SecretOptions { label: Some(secrets::LABEL.into()), description: Some("postgresql-ha system users' passwords".into()), ..Default::default() };
            (ctx.model.add_secret(&content, &opts)?, content)
        }
    };
    app_changes.insert(secrets::PEER_KEY.into(), id);
    Ok(secrets::from_content(&content))
}

/// Writes the host's directories, unit files and callback; reloads systemd when a unit changed.
fn host_layout(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.machine;
    m.make_dir(Path::new(paths::CONF_DIR), &FileOptions::root(0o755))?;
    m.make_dir(Path::new(paths::PG_HOME), &FileOptions::new("postgres", "postgres", 0o700))?;
    m.make_dir(Path::new(paths::ETCD_DATA), &FileOptions::new("etcd", "etcd", 0o700))?;
    m.write_file(Path::new(paths::ROLE_CHANGE_SCRIPT), render::role_change_script().as_bytes(), &FileOptions::root(0o755))?;
    let a = m.write_file(Path::new(paths::ETCD_UNIT_FILE), render::etcd_unit().as_bytes(), &FileOptions::root(0o644))?;
    let b = m.write_file(Path::new(paths::PATRONI_UNIT_FILE), render::patroni_unit().as_bytes(), &FileOptions::root(0o644))?;
    // The observer needs Juju's juju-exec (or 2.9's juju-run); without it update-status is the
    // only refresh of the client relations after a failover.
    let mut juju_exec = false;
    for p in crate::observer::JUJU_EXEC {
        juju_exec |= m.file_info(Path::new(p))?.is_some();
    }
    let mut c = false;
    if juju_exec {
        let unit = ctx.model.unit_name();
        let charm_dir = charm_dir(unit);
        c = m.write_file(Path::new(paths::OBSERVER_UNIT_FILE), render::observer_unit(unit, &charm_dir).as_bytes(), &FileOptions::root(0o644))?;
    }
    if a || b || c {
        m.daemon_reload()?;
    }
    if juju_exec {
        // After upgrade-charm the running observer is the old binary.
        let upgraded = matches!(ctx.event.kind, charm_lib::EventKind::UpgradeCharm);
        m.ensure_service(paths::OBSERVER_SERVICE, c || upgraded)?;
    }
    Ok(())
}

/// The charm's directory: Juju says where in JUJU_CHARM_DIR; machines use this layout.
fn charm_dir(unit: &str) -> String {
    std::env::var("JUJU_CHARM_DIR").ok().filter(|d| d.starts_with('/')).unwrap_or_else(|| format!("/var/lib/juju/agents/unit-{}/charm", unit.replace('/', "-")))
}

/// What the etcd step found.
enum EtcdState {
    /// Not admitted yet; wait.
    NotMember,
    /// Admitted but the local member does not answer yet.
    Starting,
    /// The local member runs.
    Running,
}

/// Stops this unit's PostgreSQL and etcd and forgets its etcd data: it must join afresh.
fn forget_etcd(ctx: &Context) -> anyhow::Result<()> {
    log::warn!("this unit is not a member of the application's etcd cluster but has etcd data from an earlier one: stopping Patroni and etcd and wiping that data to rejoin");
    ctx.machine.retire_service(paths::PATRONI_SERVICE)?;
    ctx.machine.retire_service(paths::ETCD_SERVICE)?;
    ctx.machine.run(&Cmd::new("rm", ["-rf", &format!("{}/member", paths::ETCD_DATA)]))?;
    Ok(())
}

/// This unit's etcd member: rendered once before its first start (later membership changes
/// reach etcd through the cluster itself, so the file stays and etcd is not restarted).
fn etcd_member(ctx: &Context, me: &Member, shared: &Shared, unit_changes: &mut Databag, my_bag: &Databag) -> anyhow::Result<EtcdState> {
    let m = ctx.machine;
    let initialised = m.file_info(Path::new(&format!("{}/member", paths::ETCD_DATA)))?.is_some();
    if !shared.members.contains_key(&me.name) {
        if initialised {
            forget_etcd(ctx)?;
        }
        unit_changes.insert(keys::ETCD_STARTED.into(), String::new());
        return Ok(EtcdState::NotMember);
    }
    let stale_epoch = my_bag.get(keys::ETCD_STARTED).is_some_and(|e| !e.is_empty() && *e != shared.epoch);
    if stale_epoch && initialised && shared.bootstrap != me.name {
        forget_etcd(ctx)?;
    }
    let exists = m.file_info(Path::new(paths::ETCD_YML))?.is_some();
    let initialised = m.file_info(Path::new(&format!("{}/member", paths::ETCD_DATA)))?.is_some();
    let mut changed = false;
    if !exists || !initialised {
        let text = render::etcd_yaml(&render::EtcdInput {
            me,
            initial: &shared.member_list(),
            new_cluster: shared.bootstrap == me.name,
            token: &shared.token,
            force_new_cluster: false,
        });
        changed = m.write_file(Path::new(paths::ETCD_YML), text.as_bytes(), &FileOptions::new("root", "etcd", 0o640))?;
    }
    let was_active = m.service_is_active(paths::ETCD_SERVICE)?;
    m.ensure_service(paths::ETCD_SERVICE, changed)?;
    if !was_active || changed {
        etcd::wait_started(m, 30)?;
    }
    if etcd::started(m)? {
        unit_changes.insert(keys::ETCD_STARTED.into(), shared.epoch.clone());
        Ok(EtcdState::Running)
    } else {
        Ok(EtcdState::Starting)
    }
}

/// The leader's part of etcd membership: promote learners that started, admit one new unit
/// as a learner, remove members whose unit is gone. One change per hook keeps quorum safe.
fn manage_members(ctx: &Context, peers: &Relation, shared: &mut Shared) -> anyhow::Result<bool> {
    let m = ctx.machine;
    let mut list = match etcd::members(m) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("cannot list etcd members yet: {e:#}");
            return Ok(false);
        }
    };
    let mut changed = false;
    let mut units: BTreeMap<String, Databag> = BTreeMap::new();
    for u in peers.units() {
        units.insert(paths::member_name(u), peers.unit_data(u)?);
    }
    let me = paths::member_name(ctx.model.unit_name());
    // Members whose unit left the application. The leaving unit usually removed itself
    // already; a failure here is looked at again in the next hook.
    for mem in &list {
        let name = if mem.name.is_empty() { shared.members.iter().find(|(_, a)| mem.peer_urls.contains(&etcd::peer_url(a))).map(|(n, _)| n.clone()).unwrap_or_default() } else { mem.name.clone() };
        if name != me && !units.contains_key(&name) {
            log::info!("removing etcd member {name} ({}): its unit left", mem.hex_id());
            if let Err(e) = etcd::remove(m, mem) {
                log::warn!("could not remove etcd member {name} yet: {e:#}");
                continue;
            }
            shared.members.remove(&name);
            changed = true;
        }
    }
    let mut promoted = false;
    for mem in list.iter().filter(|x| x.is_learner && !x.name.is_empty()) {
        let started = units.get(&mem.name).and_then(|b| b.get(keys::ETCD_STARTED)).is_some_and(|e| *e == shared.epoch);
        if started {
            match etcd::promote(m, mem) {
                Ok(()) => promoted = true,
                Err(e) => log::info!("etcd learner {} is not ready to be promoted yet: {e:#}", mem.name),
            }
        }
    }
    if promoted {
        // The next unit may be admitted in the same hook: no other event may come soon.
        list = etcd::members(m)?;
    }
    let settling = list.iter().any(|x| x.is_learner || x.name.is_empty());
    if !settling {
        for (name, bag) in &units {
            let Some(addr) = bag.get(keys::ADDRESS).filter(|a| !a.is_empty()) else { continue };
            if shared.members.contains_key(name) {
                continue;
            }
            // The add may have happened in a hook that then failed: the member list is the truth.
            if !list.iter().any(|x| x.peer_urls.contains(&etcd::peer_url(addr))) {
                log::info!("adding {name} ({addr}) to etcd as a learner");
                etcd::add_learner(m, name, addr)?;
            }
            shared.members.insert(name.clone(), addr.clone());
            changed = true;
            break;
        }
    }
    Ok(changed)
}

/// Reads the request of a client relation.
fn request_of(rel: &Relation) -> Result<Option<Request>, String> {
    // With no unit left (the last one departing) a `db` request would fall back to defaults:
    // nothing to serve, and nothing to change, until the relation is broken or a unit joins.
    if rel.units().is_empty() {
        return Ok(None);
    }
    let app = rel.remote_app_data().map_err(|e| e.to_string())?;
    let mut units = BTreeMap::new();
    for u in rel.units() {
        units.insert(u.clone(), rel.unit_data(u).map_err(|e| e.to_string())?);
    }
    match rel.id().endpoint.as_str() {
        "db" => clients::db_request(rel.remote_app().unwrap_or_default(), &app, &units).map(Some),
        _ => clients::database_request(&app, &units),
    }
}

/// The client relations that are alive (a relation in its -broken hook is not).
fn live_client_relations<'m, 'r>(ctx: &'m Context<'r>) -> anyhow::Result<Vec<Relation<'m, 'r>>> {
    let broken = ctx.event.relation().filter(|r| r.phase == charm_lib::RelationPhase::Broken).map(|r| r.relation.clone());
    let mut out = Vec::new();
    for ep in CLIENT_ENDPOINTS {
        for r in ctx.model.relations(ep)? {
            if Some(r.id()) != broken.as_ref() {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// psql against the primary as the superuser (password from the charm's 0600 pgpass);
/// returns the output whatever the exit code (3: the SQL failed; 2: the connection did).
pub fn psql_output(ctx: &Context, primary: &str, sql_text: &str, sensitive: &[&str]) -> anyhow::Result<(Cmd, charm_lib::CmdOutput)> {
    let mut cmd = Cmd::new("psql", ["-h", primary, "-p", "5432", "-U", "postgres", "-d", "postgres", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .user("postgres")
        // The hook's directory (the charm's) is not readable by postgres.
        .cwd("/")
        .env("PGPASSFILE", paths::CHARM_PGPASS)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(sql_text.as_bytes().to_vec())
        .allow_failure();
    for s in sensitive {
        cmd = cmd.sensitive(s);
    }
    let out = ctx.machine.run(&cmd)?;
    Ok((cmd, out))
}

/// Runs SQL on the primary; any failure is an error carrying psql's stderr (secrets masked).
pub fn psql(ctx: &Context, primary: &str, sql_text: &str, sensitive: &[&str]) -> anyhow::Result<String> {
    let (cmd, out) = psql_output(ctx, primary, sql_text, sensitive)?;
    if !out.success() {
        return Err(charm_lib::MachineError::from_output(&cmd, &out).into());
    }
    Ok(out.stdout)
}

/// The writable address and replicas, as clients should see them.
fn topology(ctx: &Context, cluster: Option<&Cluster>, me: &Member, units: usize, version: u32) -> anyhow::Result<Topology> {
    let mut vip = None;
    if let Some(rel) = ctx.model.relation("vip")? {
        for u in rel.units() {
            let v = rel.unit_data(u)?.get("vips").and_then(|v| v.split(',').map(str::trim).find(|s| s.parse::<std::net::IpAddr>().is_ok()).map(str::to_string));
            vip = vip.or(v);
        }
    }
    let primary = cluster.and_then(|c| c.primary()).and_then(|p| p.host.clone());
    let standbys: Vec<String> = cluster
        .map(|c| c.members.iter().filter(|m| !m.is_primary() && matches!(m.state.as_str(), "running" | "streaming")).filter_map(|m| m.host.clone()).collect())
        .unwrap_or_default();
    let mine = cluster.and_then(|c| c.member(&me.name));
    let state = match mine {
        _ if units == 1 => "standalone",
        Some(m) if m.is_primary() => "master",
        _ => "hot standby",
    };
    Ok(Topology { host: vip.or(primary), standbys, state: state.into(), version })
}

/// The leader's client work for one relation: credentials, SQL on the primary, the grant.
fn provision(ctx: &Context, st: &mut Vec<Status>, rel: &Relation, req: &Request, app: &Databag, app_changes: &mut Databag, primary: Option<&str>) -> anyhow::Result<Option<Grant>> {
    let id = rel.id().id;
    let key = clients::grant_key(id);
    let mut grant: Option<Grant> = app.get(&key).and_then(|v| serde_json::from_str(v).ok());
    if grant.is_none() {
        let user = clients::user_for(id);
        let label = format!("client-{id}");
        let sid = match ctx.model.secret_by_label(&label)? {
            Some((sid, _)) => sid,
            None => {
                let content = BTreeMap::from([("username".to_string(), user.clone()), ("password".to_string(), secrets::generate()?)]);
                let opts = SecretOptions { label: Some(label), description: Some(format!("credentials of {}", rel.id())), ..Default::default() };
                ctx.model.add_secret(&content, &opts)?
            }
        };
        grant = Some(Grant { endpoint: rel.id().endpoint.clone(), database: req.database.clone(), user, secret: sid, extensions: vec![], roles: vec![], provisioned: false });
    }
    let mut g = grant.expect("set above");
    let wanted_changed = g.database != req.database || g.extensions != req.extensions || g.roles != req.roles;
    if !g.provisioned || wanted_changed {
        let Some(primary) = primary else {
            st.push(Status::waiting(format!("waiting for a primary to create the database of {}", rel.id())));
            app_changes.insert(key, serde_json::to_string(&g)?);
            return Ok(None);
        };
        let pw = ctx.model.peek_secret(Some(&g.secret), None)?.get("password").cloned().unwrap_or_default();
        let (cmd, out) = psql_output(ctx, primary, &sql::provision(&g.user, &pw, &req.database, &req.extensions, &req.roles), &[&pw])?;
        // Exit 3: PostgreSQL refused the request itself (e.g. an extension it does not have);
        // retrying the hook cannot help, the client or the operator must change something.
        if out.code == 3 {
            let why = cmd.redact(out.stderr.trim());
            st.push(Status::blocked(format!("{} ({}): PostgreSQL refused the request: {why}", rel.id(), rel.remote_app().unwrap_or("?"))));
            app_changes.insert(key, serde_json::to_string(&g)?);
            return Ok(None);
        }
        if !out.success() {
            return Err(charm_lib::MachineError::from_output(&cmd, &out).into());
        }
        log::info!("granted {} database {:?} as role {}", rel.id(), req.database, g.user);
        g.database = req.database.clone();
        g.extensions = req.extensions.clone();
        g.roles = req.roles.clone();
        g.provisioned = true;
    }
    if req.wants_secret {
        ctx.model.grant_secret(&g.secret, rel.id(), None)?;
    }
    app_changes.insert(key, serde_json::to_string(&g)?);
    Ok(Some(g))
}

/// The leader revokes the grants whose relation is gone (kept for a later hook without a primary).
fn revoke_stale(ctx: &Context, st: &mut Vec<Status>, app: &Databag, live: &[u32], app_changes: &mut Databag, primary: Option<&str>) -> anyhow::Result<()> {
    for (k, v) in app {
        let Some(id) = k.strip_prefix("client-").and_then(|n| n.parse::<u32>().ok()) else { continue };
        if live.contains(&id) || v.is_empty() {
            continue;
        }
        let Ok(g) = serde_json::from_str::<Grant>(v) else {
            app_changes.insert(k.clone(), String::new());
            continue;
        };
        if g.provisioned {
            let Some(primary) = primary else {
                st.push(Status::waiting(format!("waiting for a primary to revoke the access of the removed relation {}:{id}", g.endpoint)));
                continue;
            };
            psql(ctx, primary, &sql::revoke(&g.user), &[])?;
        }
        if let Err(e) = ctx.tools().secret_remove(&g.secret, None) {
            log::warn!("could not remove the secret of {}:{id}: {e}", g.endpoint);
        }
        log::info!("revoked the access of {}:{id} (role {}; database {:?} kept)", g.endpoint, g.user, g.database);
        app_changes.insert(k.clone(), String::new());
    }
    Ok(())
}

/// The reconcile.
pub fn reconcile(ctx: &mut Context) -> anyhow::Result<()> {
    if departed(ctx)? {
        ctx.status(Status::maintenance("this unit left the cluster and is being removed"));
        return Ok(());
    }
    let config = match Config::from_raw(&ctx.model.config_raw()?) {
        Ok(c) => c,
        Err(e) => {
            // Nothing rendered, running services untouched.
            ctx.status(Status::blocked(e.to_string()));
            return Ok(());
        }
    };
    let pg_version = install::ensure(ctx, &config)?;
    host_layout(ctx)?;
    let Some(peers) = ctx.model.relation(PEER)? else {
        ctx.status(Status::waiting("waiting for the peer relation"));
        return Ok(());
    };
    let leader = ctx.model.is_leader()?;
    let address = ctx.model.ingress_address(PEER)?.ok_or_else(|| anyhow::anyhow!("Juju gave no ingress address for {PEER}"))?;
    let me = Member { name: paths::member_name(ctx.model.unit_name()), address };
    let app = peers.my_app_data()?;
    let my_bag = peers.my_unit_data()?;
    let mut app_changes = Databag::new();
    let mut unit_changes = Databag::from([(keys::ADDRESS.to_string(), me.address.clone())]);
    let units = peers.units().len() + 1;

    let mut statuses = Vec::new();
    let result = converge(ctx, &mut statuses, &config, pg_version, &peers, &me, &app, &my_bag, &mut app_changes, &mut unit_changes, units);
    if leader {
        let changes: Databag = app_changes.into_iter().filter(|(k, v)| app.get(k).map(String::as_str).unwrap_or("") != v).collect();
        peers.set_my_app_data(&changes)?;
    }
    let changes: Databag = unit_changes.into_iter().filter(|(k, v)| my_bag.get(k).map(String::as_str).unwrap_or("") != v).collect();
    peers.set_my_unit_data(&changes)?;
    drop(peers);
    for s in statuses {
        ctx.status(s);
    }
    if leader {
        ctx.app_status(match units {
            1 => Status::active("1 unit: no standby; add 2 units for automatic failover"),
            2 => Status::active("2 units: automatic failover needs 3 units (etcd quorum); if a unit is lost, writes stop until it returns or force-promote runs"),
            n => Status::active(format!("{n} units")),
        });
    }
    result
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
) -> anyhow::Result<()> {
    let leader = ctx.model.is_leader()?;
    let Some(passwords) = passwords(ctx, app, app_changes)? else {
        st.push(Status::waiting("waiting for the leader to generate the system passwords"));
        return Ok(());
    };
    let mut shared = Shared::read(app);
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
            st.push(Status::waiting("waiting for the leader to add this unit to etcd (one unit at a time)"));
            return Ok(());
        }
        EtcdState::Starting => {
            st.push(Status::waiting("waiting for etcd to start"));
            return Ok(());
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
    let primary_host = cluster.as_ref().and_then(|c| c.primary()).and_then(|p| p.host.clone());

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
                st.push(Status::blocked(format!("{} ({}): {problem}", rel.id(), rel.remote_app().unwrap_or("?"))));
                continue;
            }
        };
        if !req.ignored.is_empty() {
            log::warn!("{}: no usable address for {}: they are not allowed in pg_hba", rel.id(), req.ignored.join(", "));
        }
        client_units += req.units.len();
        let grant = if leader {
            provision(ctx, st, rel, &req, app, app_changes, primary_host.as_deref())?
        } else {
            app.get(&clients::grant_key(rel.id().id)).and_then(|v| serde_json::from_str::<Grant>(v).ok()).filter(|g| g.provisioned)
        };
        if let Some(g) = grant {
            hba.push(HbaClient { database: g.database.clone(), user: g.user.clone(), addresses: req.units.iter().map(|u| u.address.clone()).collect() });
            served.push((i, req, g));
        }
    }
    if leader {
        let ids: Vec<u32> = live.iter().map(|r| r.id().id).collect();
        revoke_stale(ctx, st, app, &ids, app_changes, primary_host.as_deref())?;
    }

    // Patroni.
    let max_connections = config.effective_max_connections(client_units);
    let mut peer_members = vec![me.clone()];
    for u in peers.units() {
        if let Some(a) = peers.unit_data(u)?.get(keys::ADDRESS).filter(|a| !a.is_empty()) {
            peer_members.push(Member { name: paths::member_name(u), address: a.clone() });
        }
    }
    peer_members.sort();
    let etcd_members = shared.member_list();
    let yml = render::patroni_yaml(&render::PatroniInput {
        scope: ctx.model.app_name(),
        me,
        etcd_members: &etcd_members,
        peers: &peer_members,
        pg_version,
        passwords: &passwords,
        config,
        max_connections,
        clients: &hba,
    });
    let pg_owner = FileOptions::new("postgres", "postgres", 0o600);
    let changed = m.write_file(Path::new(paths::PATRONI_YML), yml.as_bytes(), &pg_owner)?;
    m.write_file(Path::new(paths::CHARM_PGPASS), render::charm_pgpass(&passwords.superuser).as_bytes(), &pg_owner)?;
    m.service(ServiceOp::Enable, paths::PATRONI_SERVICE)?;
    if !m.service_is_active(paths::PATRONI_SERVICE)? {
        m.service(ServiceOp::Start, paths::PATRONI_SERVICE)?;
        // A bounded wait lets this hook report the role and publish the address; a replica
        // still cloning a large database is picked up by a later hook.
        patroni::wait_running(m, 60)?;
    } else if changed {
        // Patroni re-reads its file on SIGHUP and applies pg_hba and parameters itself.
        m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
    }
    if quorum && cluster.as_ref().and_then(|c| c.member(&me.name)).is_none() {
        cluster = patroni::cluster(m)?;
    }
    ctx.model.set_ports(&[Port::Tcp(paths::PG_PORT)])?;
    ctx.model.set_workload_version(&pg_version.to_string())?;

    // The DCS-wide settings follow the config.
    if leader && cluster.is_some() {
        let wanted = render::dynamic_config(config, max_connections);
        if let Some(current) = patroni::dynamic_config(m)? {
            if !patroni::config_contains(&current, &wanted) {
                log::info!("updating Patroni's dynamic configuration");
                match patroni::request(m, "PATCH", "/config", Some(&wanted), Some(&passwords.patroni))? {
                    Some(r) if r.status == 200 => {}
                    other => log::warn!("Patroni refused the configuration update: {:?}", other.map(|r| (r.status, r.body))),
                }
            }
        }
    }

    restart_if_pending(m, cluster.as_ref(), me, &passwords)?;

    // Relation data.
    let topo = topology(ctx, cluster.as_ref(), me, units, pg_version)?;
    for (i, req, g) in &served {
        let rel = &live[*i];
        let content = ctx.model.get_secret(Some(&g.secret), None, false)?;
        let creds = Credentials { username: content.get("username").cloned().unwrap_or_else(|| g.user.clone()), password: content.get("password").cloned().unwrap_or_default() };
        if !req.wants_secret {
            log::warn!("{} ({}) did not ask for its credentials as a Juju secret: sending its password in the relation data", rel.id(), rel.remote_app().unwrap_or("?"));
        }
        if leader {
            let wanted = clients::secret_content(g, &creds, topo.host.as_deref());
            if topo.host.is_some() && wanted != content {
                ctx.model.set_secret(&g.secret, &wanted)?;
            }
        }
        if g.endpoint == "db" {
            let changes = clients::changes(&rel.my_unit_data()?, &clients::db_data(g, req, &creds, &topo));
            rel.set_my_unit_data(&changes)?;
        } else if leader {
            let changes = clients::changes(&rel.my_app_data()?, &clients::database_data(g, req, &creds, &topo));
            rel.set_my_app_data(&changes)?;
        }
    }
    if let Some(vip) = ctx.model.relation("vip")? {
        let wanted = BTreeMap::from([
            ("check".to_string(), Some(format!("http://127.0.0.1:{}/primary", paths::PATRONI_PORT))),
            ("service".to_string(), Some("postgresql".to_string())),
        ]);
        vip.set_my_unit_data(&clients::changes(&vip.my_unit_data()?, &wanted))?;
    }

    // Telling the peers about role changes gives the leader a hook to admit the next unit.
    let role = cluster.as_ref().and_then(|c| c.member(&me.name)).map(|x| format!("{} {}", x.role, x.state)).unwrap_or_else(|| "unknown".into());
    unit_changes.insert(keys::ROLE.into(), role);
    st.push(unit_status(cluster.as_ref(), me, quorum));
    Ok(())
}

/// Restarts this member's PostgreSQL through Patroni when a parameter (max_connections) waits
/// for it: replicas first, the primary once no replica is pending, because a standby needs
/// values at least as high as its primary's.
fn restart_if_pending(m: &dyn charm_lib::Machine, cluster: Option<&Cluster>, me: &Member, passwords: &Passwords) -> anyhow::Result<()> {
    let Some(c) = cluster else { return Ok(()) };
    let Some(mine) = c.member(&me.name).filter(|x| x.pending_restart) else { return Ok(()) };
    if mine.is_primary() && c.members.iter().any(|x| x.name != me.name && x.pending_restart) {
        log::info!("PostgreSQL needs a restart for a parameter change; waiting for the replicas to restart first");
        return Ok(());
    }
    log::info!("restarting PostgreSQL through Patroni to apply a parameter change");
    match patroni::request(m, "POST", "/restart", Some(&serde_json::json!({"restart_pending": true})), Some(&passwords.patroni))? {
        Some(r) if r.status == 200 => Ok(()),
        other => {
            log::warn!("Patroni did not restart PostgreSQL: {:?}", other.map(|r| (r.status, r.body)));
            Ok(())
        }
    }
}

/// This unit's status from Patroni's view, unless etcd lost its quorum.
fn unit_status(cluster: Option<&Cluster>, me: &Member, quorum: bool) -> Status {
    if !quorum {
        return Status::blocked(
            "etcd quorum lost: if the lost units will not come back, run the force-promote action with i-understand-data-loss=true on the leader",
        );
    }
    let mine = cluster.and_then(|c| c.member(&me.name));
    if let Some(mm) = mine {
        if mm.is_primary() {
            return Status::active("primary");
        }
        if mm.is_sync() && mm.state == "streaming" {
            return Status::active("sync standby");
        }
        if mm.state == "streaming" || (mm.role == "replica" && mm.state == "running") {
            return Status::active(match mm.lag_bytes() {
                Some(l) => format!("replica, lag {l} bytes"),
                None => "replica, lag unknown".to_string(),
            });
        }
    }
    match mine {
        Some(mm) => Status::waiting(format!("PostgreSQL is {} ({})", mm.state, mm.role.replace('_', " "))),
        None => Status::waiting("waiting for Patroni to start PostgreSQL"),
    }
}

/// Whether this unit already left the application.
fn departed(ctx: &Context) -> anyhow::Result<bool> {
    Ok(ctx.machine.read_to_string(Path::new(paths::DEPARTED))?.is_some_and(|u| u.trim() == ctx.model.unit_name()))
}

/// This unit leaves the application: hand over the primary role, leave etcd cleanly while the
/// cluster still has quorum, stop both services.
pub fn leave(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.machine;
    m.write_file(Path::new(paths::DEPARTED), format!("{}\n", ctx.model.unit_name()).as_bytes(), &FileOptions::root(0o644))?;
    m.retire_service(paths::OBSERVER_SERVICE)?;
    // Patroni hands the leader key over on a clean stop; a synchronous standby takes it.
    m.retire_service(paths::PATRONI_SERVICE)?;
    if m.service_is_active(paths::ETCD_SERVICE)? {
        let me = paths::member_name(ctx.model.unit_name());
        match etcd::members(m) {
            Ok(list) => {
                if let Some(mem) = list.iter().find(|x| x.name == me) {
                    if list.len() > 1 {
                        if let Err(e) = etcd::remove(m, mem) {
                            log::warn!("could not remove this unit from etcd (the leader will): {e:#}");
                        }
                    }
                }
            }
            Err(e) => log::warn!("could not list etcd members (the leader will remove this unit): {e:#}"),
        }
    }
    m.retire_service(paths::ETCD_SERVICE)?;
    Ok(())
}
