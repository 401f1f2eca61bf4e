//! Client relations on the host side: what each relation asks for, the leader's SQL on the
//! primary (grant, revoke), and the addresses clients are given.

use crate::clients::{self, Credentials, Grant, Request, Topology};
use crate::data_interfaces_v1 as v1;
use crate::membership::CLIENT_ENDPOINTS;
use crate::patroni::Cluster;
use crate::render::Member;
use crate::report::{Report, Reported};
use crate::{paths, secrets, sql};
use charm_lib::tools::SecretOptions;
use charm_lib::{Cmd, Context, Databag, Relation, Status};
use contracts::vip::{SubordinateData, VipState};
use std::collections::BTreeMap;

/// Reads the request of a client relation.
pub(crate) fn request_of(rel: &Relation) -> Result<Option<Request>, String> {
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
        _ if v1::speaks_v1(&app)? => Ok(v1::database_request(&app, &units)?.map(|(req, _)| req)),
        _ => clients::database_request(&app, &units),
    }
}

/// The client relations that are alive (a relation in its -broken hook is not).
pub(crate) fn live_client_relations<'m, 'r>(
    ctx: &'m Context<'r>,
) -> anyhow::Result<Vec<Relation<'m, 'r>>> {
    let broken = ctx
        .event
        .relation()
        .filter(|r| r.phase == charm_lib::RelationPhase::Broken)
        .map(|r| r.relation.clone());
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
pub fn psql_output(
    ctx: &Context,
    primary: &str,
    sql_text: &str,
    sensitive: &[&str],
) -> anyhow::Result<(Cmd, charm_lib::CmdOutput)> {
    let mut cmd = Cmd::new(
        "psql",
        [
            "-h",
            primary,
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ],
    )
    .user("postgres")
    // The hook's directory (the charm's) is not readable by postgres.
    .cwd("/")
    .env("PGPASSFILE", paths::CHARM_PGPASS)
    .env("PGCONNECT_TIMEOUT", "5")
    // The primary is reached by its address, which its certificate names.
    .env("PGSSLMODE", "verify-full")
    .env("PGSSLROOTCERT", paths::TRUSTED)
    .stdin(sql_text.as_bytes().to_vec())
    .allow_failure();
    for s in sensitive {
        cmd = cmd.sensitive(s);
    }
    let out = ctx.machine.run(&cmd)?;
    Ok((cmd, out))
}

/// Runs SQL on the primary; any failure is an error carrying psql's errors (not its notices;
/// secrets masked).
pub fn psql(
    ctx: &Context,
    primary: &str,
    sql_text: &str,
    sensitive: &[&str],
) -> anyhow::Result<String> {
    let (cmd, out) = psql_output(ctx, primary, sql_text, sensitive)?;
    if !out.success() {
        return Err(psql_failure(&cmd, &out).into());
    }
    Ok(out.stdout)
}

/// The error of a failed psql: its ERROR lines rather than the NOTICE lines before them.
fn psql_failure(cmd: &Cmd, out: &charm_lib::CmdOutput) -> charm_lib::MachineError {
    let errors = sql::psql_errors(&out.stderr);
    charm_lib::MachineError::from_output(
        cmd,
        &charm_lib::CmdOutput {
            stderr: errors,
            ..out.clone()
        },
    )
}

/// Peer unit databag: this unit's db-vip subordinate's `state` (`held`, `standby`, `blocked`).
/// The vip relation is container-scoped, so each unit sees only its own host's subordinate,
/// and the VIP follows the primary, which need not be the leader that publishes `database`.
pub(crate) const VIP_STATE_KEY: &str = "vip-state";

/// Whether clients may be given the database VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VipGate {
    /// No vip relation: clients get the primary's address, as Charmed PostgreSQL gives them.
    NoVip,
    /// A unit's subordinate reports the VIP held: clients get it.
    Held(String),
    /// Related over vip, and no unit reports the VIP held: nothing is published yet (the
    /// Waiting message). A client given the VIP now would fail its first connection (MAAS's
    /// init), and one given the primary's address would keep it after a failover.
    NotHeld(String),
}

/// This unit's db-vip subordinate as it reports itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MyVip {
    /// The subordinate application, for messages.
    pub app: String,
    /// Its first VIP (`None` until it reports one).
    pub vip: Option<String>,
    /// Its `state` (`None` until it reports one).
    pub state: Option<VipState>,
}

/// This unit's db-vip subordinate (`None` without a vip relation).
pub(crate) fn my_vip(ctx: &Context) -> anyhow::Result<Option<MyVip>> {
    let Some(rel) = ctx.model.relation("vip")? else {
        return Ok(None);
    };
    let mut mine = MyVip {
        app: rel.remote_app().unwrap_or("vip").to_string(),
        vip: None,
        state: None,
    };
    for u in rel.units() {
        let d: SubordinateData = charm_lib::databag::from_databag(&rel.unit_data(u)?)
            .map_err(|e| anyhow::anyhow!("{} ({u}): {e}", rel.id()))?;
        mine.vip = mine.vip.or_else(|| {
            d.vips
                .items()
                .iter()
                .find(|s| s.parse::<std::net::IpAddr>().is_ok())
                .cloned()
        });
        mine.state = mine.state.or(d.state);
    }
    Ok(Some(mine))
}

/// Whether the VIP may go to clients: held by this unit's host (`mine`) or by a peer's, as
/// each unit shares it in the peer relation ([`VIP_STATE_KEY`]).
pub(crate) fn vip_gate(mine: Option<&MyVip>, peers: &Relation) -> anyhow::Result<VipGate> {
    let Some(mine) = mine else {
        return Ok(VipGate::NoVip);
    };
    let Some(vip) = &mine.vip else {
        return Ok(VipGate::NotHeld(format!(
            "waiting for {} (vip relation) to report the database VIP (its `vip` option) before giving clients their endpoint",
            mine.app
        )));
    };
    let mut held = mine.state == Some(VipState::Held);
    for u in peers.units() {
        held = held
            || peers.unit_data(u)?.get(VIP_STATE_KEY).map(String::as_str)
                == Some(VipState::Held.as_str());
    }
    Ok(if held {
        VipGate::Held(vip.clone())
    } else {
        VipGate::NotHeld(format!(
            "waiting for {} to hold the database VIP {vip} on a unit before giving it to clients",
            mine.app
        ))
    })
}

/// The writable address and replicas, as clients should see them.
pub(crate) fn topology(
    cluster: Option<&Cluster>,
    gate: &VipGate,
    me: &Member,
    units: usize,
    version: u32,
    ca: &str,
) -> anyhow::Result<Topology> {
    let vip = match gate {
        VipGate::Held(v) => Some(v.clone()),
        VipGate::NoVip | VipGate::NotHeld(_) => None,
    };
    let primary = cluster
        .and_then(|c| c.primary())
        .and_then(|p| p.host.clone());
    let standbys: Vec<String> = cluster
        .map(|c| {
            c.members
                .iter()
                .filter(|m| !m.is_primary() && matches!(m.state.as_str(), "running" | "streaming"))
                .filter_map(|m| m.host.clone())
                .collect()
        })
        .unwrap_or_default();
    let mine = cluster.and_then(|c| c.member(&me.name));
    let state = match mine {
        _ if units == 1 => "standalone",
        Some(m) if m.is_primary() => "master",
        _ => "hot standby",
    };
    Ok(Topology {
        host: match gate {
            VipGate::NotHeld(_) => None,
            _ => vip.or(primary),
        },
        standbys,
        state: state.into(),
        version,
        full_version: String::new(),
        ca: ca.to_string(),
    })
}

/// What the operator lets client relations have: the `allowed-extensions` and
/// `allowed-extra-user-roles` options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowed<'a> {
    /// Extensions the superuser may create for a client.
    pub extensions: &'a [String],
    /// What a `database` relation's `extra-user-roles` may be granted.
    pub roles: &'a [String],
}

/// The leader's client work for one relation: credentials, SQL on the primary, the grant.
/// Extensions and extra user roles outside what `allowed` lists are not created nor granted:
/// the unit is blocked naming them, and the rest of the relation is served.
pub(crate) fn provision(
    ctx: &Context,
    rel: &Relation,
    req: &Request,
    allowed: Allowed,
    app: &Databag,
    app_changes: &mut Databag,
    primary: Option<&str>,
) -> anyhow::Result<Reported<Option<Grant>>> {
    let id = rel.id().id;
    let mut report = Report::default();
    let (extensions, refused) = clients::split_extensions(&req.extensions, allowed.extensions);
    if !refused.is_empty() {
        let (s, them) = if refused.len() == 1 {
            ("", "it")
        } else {
            ("s", "them")
        };
        let msg = format!(
            "{} ({}): extension{s} {} refused: not in the allowed-extensions config option (add {them} there to have {them} created)",
            rel.id(),
            rel.remote_app().unwrap_or("?"),
            refused.join(", ")
        );
        log::warn!("{msg}");
        report.add(Status::blocked(msg));
    }
    // `database`: extra-user-roles as data_interfaces means them, within the allowlist;
    // `db`: the pgsql interface's `roles`, group roles (validated when read).
    let (attributes, roles) = if rel.id().endpoint == "database" {
        let split = clients::split_roles(&req.roles, allowed.roles);
        let who = format!("{} ({})", rel.id(), rel.remote_app().unwrap_or("?"));
        if let Some(msg) = clients::refused_roles_message(&who, &split.refused) {
            log::warn!("{msg}");
            report.add(Status::blocked(msg));
        }
        (split.attributes, split.roles)
    } else {
        (Vec::new(), req.roles.clone())
    };
    let key = clients::grant_key(id);
    let mut grant: Option<Grant> = app.get(&key).and_then(|v| serde_json::from_str(v).ok());
    if grant.is_none() {
        let user = clients::user_for(id);
        let label = format!("client-{id}");
        let sid = match ctx.model.secret_by_label(&label)? {
            Some((sid, _)) => sid,
            None => {
                let content = BTreeMap::from([
                    ("username".to_string(), user.clone()),
                    ("password".to_string(), secrets::generate()?),
                ]);
                let opts = SecretOptions {
                    label: Some(label),
                    description: Some(format!("credentials of {}", rel.id())),
                    ..Default::default()
                };
                ctx.model.add_secret(&content, &opts)?
            }
        };
        grant = Some(Grant {
            endpoint: rel.id().endpoint.clone(),
            database: req.database.clone(),
            user,
            secret: sid,
            extensions: vec![],
            roles: vec![],
            attributes: vec![],
            provisioned: false,
        });
    }
    let mut g = grant.expect("set above");
    let wanted_changed = g.database != req.database
        || g.extensions != extensions
        || g.roles != roles
        || g.attributes != attributes;
    if !g.provisioned || wanted_changed {
        let Some(primary) = primary else {
            report.add(Status::waiting(format!(
                "waiting for a primary to create the database of {}",
                rel.id()
            )));
            app_changes.insert(key, serde_json::to_string(&g)?);
            return Ok(report.with(None));
        };
        let pw = ctx
            .model
            .peek_secret(Some(&g.secret), None)?
            .get("password")
            .cloned()
            .unwrap_or_default();
        // btree_gin in every client database (MAAS needs it) while the operator allows it.
        let mut create = extensions.clone();
        if allowed.extensions.iter().any(|e| e == "btree_gin")
            && !create.iter().any(|e| e == "btree_gin")
        {
            create.insert(0, "btree_gin".to_string());
        }
        let revoke: Vec<String> = g
            .roles
            .iter()
            .filter(|r| !roles.contains(r))
            .cloned()
            .collect();
        let access = sql::Access {
            extensions: &create,
            attributes: &attributes,
            roles: &roles,
            revoke: &revoke,
        };
        let (cmd, out) = psql_output(
            ctx,
            primary,
            &sql::provision(&g.user, &pw, &req.database, &access),
            &[&pw],
        )?;
        // Exit 3: PostgreSQL refused the request itself (e.g. an extension it does not have);
        // retrying the hook cannot help, the client or the operator must change something.
        if out.code == 3 {
            let why = cmd.redact(&sql::psql_errors(&out.stderr));
            report.add(Status::blocked(format!(
                "{} ({}): PostgreSQL refused the request: {why}",
                rel.id(),
                rel.remote_app().unwrap_or("?")
            )));
            app_changes.insert(key, serde_json::to_string(&g)?);
            return Ok(report.with(None));
        }
        if !out.success() {
            return Err(psql_failure(&cmd, &out).into());
        }
        log::info!(
            "granted {} database {:?} as role {}",
            rel.id(),
            req.database,
            g.user
        );
        g.database = req.database.clone();
        g.extensions = extensions;
        g.roles = roles;
        g.attributes = attributes;
        g.provisioned = true;
    }
    if req.wants_secret {
        ctx.model.grant_secret(&g.secret, rel.id(), None)?;
    }
    app_changes.insert(key, serde_json::to_string(&g)?);
    Ok(report.with(Some(g)))
}

/// The leader revokes the grants whose relation is gone (kept for a later hook without a primary).
pub(crate) fn revoke_stale(
    ctx: &Context,
    app: &Databag,
    live: &[u32],
    app_changes: &mut Databag,
    primary: Option<&str>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (k, v) in app {
        let Some(id) = k
            .strip_prefix("client-")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if live.contains(&id) || v.is_empty() {
            continue;
        }
        let Ok(g) = serde_json::from_str::<Grant>(v) else {
            app_changes.insert(k.clone(), String::new());
            continue;
        };
        if g.provisioned {
            let Some(primary) = primary else {
                report.add(Status::waiting(format!(
                    "waiting for a primary to revoke the access of the removed relation {}:{id}",
                    g.endpoint
                )));
                continue;
            };
            psql(ctx, primary, &sql::revoke(&g.user), &[])?;
        }
        if let Err(e) = ctx.tools().secret_remove(&g.secret, None) {
            log::warn!("could not remove the secret of {}:{id}: {e}", g.endpoint);
        }
        for label in [clients::tls_secret_label(id), v1::tls_secret_label(id)] {
            if let Some((tls, _)) = ctx.model.secret_by_label(&label)? {
                if let Err(e) = ctx.tools().secret_remove(&tls, None) {
                    log::warn!(
                        "could not remove the TLS secret of {}:{id}: {e}",
                        g.endpoint
                    );
                }
            }
        }
        log::info!(
            "revoked the access of {}:{id} (role {}; database {:?} kept)",
            g.endpoint,
            g.user,
            g.database
        );
        app_changes.insert(k.clone(), String::new());
    }
    Ok(report)
}

/// How long the leader waits for the primary's pg_hba.conf before a relation's first data.
const HBA_WAIT_SECONDS: u32 = 30;

/// Before a relation's first data goes out, the leader waits (bounded) until the primary's
/// pg_hba.conf lets the relation's role in from each of its units: each unit's Patroni writes
/// it when that unit's hook has written patroni.yml, and a client told of its database before
/// then has its first connection refused (`no pg_hba.conf entry`), which data_interfaces'
/// `database_created` comes only once for. If it is still not there, the data goes out anyway.
fn wait_for_hba(ctx: &Context, primary: &str, rel: &Relation, req: &Request, g: &Grant) {
    // Units sharing a machine share an address (and a pg_hba line); `pg_hba_file_rules` shows
    // a CIDR's network address alone.
    let addresses: Vec<String> = req
        .units
        .iter()
        .flat_map(|u| &u.subnets)
        .map(|c| c.split('/').next().unwrap_or(c).to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if addresses.is_empty() {
        return;
    }
    let sql_text = sql::wait_for_hba(&g.user, &addresses, HBA_WAIT_SECONDS);
    match psql(ctx, primary, &sql_text, &[]) {
        Ok(_) => log::info!("the primary's pg_hba.conf lets {} in", rel.id()),
        Err(e) => log::warn!(
            "publishing {} before the primary's pg_hba.conf lets it in: {e}",
            rel.id()
        ),
    }
}

/// The leader's `secret-tls` secret of a `database` relation (data_interfaces' `tls` group:
/// `tls`, `tls-ca`), created or brought up to date, and granted to the relation; `published`:
/// the id the relation already carries.
fn tls_secret(
    ctx: &Context,
    rel: &Relation,
    label: String,
    wanted: BTreeMap<String, String>,
    published: Option<String>,
) -> anyhow::Result<String> {
    let id = match ctx.model.secret_by_label(&label)? {
        Some((id, _)) => {
            if ctx.model.peek_secret(Some(&id), None)? != wanted {
                ctx.model.set_secret(&id, &wanted)?;
            }
            id
        }
        None => {
            let opts = SecretOptions {
                label: Some(label),
                description: Some(format!("TLS settings of {}", rel.id())),
                ..Default::default()
            };
            ctx.model.add_secret(&wanted, &opts)?
        }
    };
    ctx.model.grant_secret(&id, rel.id(), None)?;
    // The same secret in whichever form it was first published: no needless databag change.
    match published {
        Some(published) if charm_lib::tools::same_secret(&published, &id) => Ok(published),
        _ => Ok(id),
    }
}

/// Publishes a served relation's data: every unit its `db` unit databag, the leader the
/// `database` app databag and the credentials secret's `uris`. `primary`: the primary's
/// address, for the leader's wait before a relation's first data.
pub(crate) fn publish(
    ctx: &Context,
    leader: bool,
    rel: &Relation,
    req: &Request,
    g: &Grant,
    topo: &Topology,
    primary: Option<&str>,
) -> anyhow::Result<()> {
    let content = ctx.model.get_secret(Some(&g.secret), None, false)?;
    let creds = Credentials {
        username: content
            .get("username")
            .cloned()
            .unwrap_or_else(|| g.user.clone()),
        password: content.get("password").cloned().unwrap_or_default(),
    };
    if leader {
        let wanted = clients::secret_content(g, &creds, topo);
        if topo.host.is_some() && wanted != content {
            ctx.model.set_secret(&g.secret, &wanted)?;
        }
    }
    let changes = if g.endpoint == "db" {
        clients::changes(
            &rel.my_unit_data()?,
            &clients::db_data(g, req, &creds, topo),
        )
    } else if leader && v1::speaks_v1(&rel.remote_app_data()?).map_err(anyhow::Error::msg)? {
        let Some(request) = v1::requests(&rel.remote_app_data()?).map_err(anyhow::Error::msg)?
        else {
            return Ok(());
        };
        let mine = rel.my_app_data()?;
        let tls = tls_secret(
            ctx,
            rel,
            v1::tls_secret_label(rel.id().id),
            v1::tls_secret_content(topo),
            v1::published_secret(&mine, "secret-tls"),
        )?;
        let user = v1::published_secret(&mine, "secret-user")
            .filter(|p| charm_lib::tools::same_secret(p, &g.secret))
            .unwrap_or_else(|| g.secret.clone());
        let changes = clients::changes(&mine, &v1::database_data(&request, &user, &tls, topo));
        // The answer's first appearance is what the requirer's `resource_created` waits for.
        if changes.contains_key("requests") && !mine.contains_key("requests") {
            if let Some(primary) = primary {
                wait_for_hba(ctx, primary, rel, req, g);
            }
        }
        rel.set_my_app_data(&changes)?;
        return Ok(());
    } else if leader {
        let tls_secret = if req.wants_tls_secret {
            Some(tls_secret(
                ctx,
                rel,
                clients::tls_secret_label(rel.id().id),
                clients::tls_secret_content(topo),
                rel.my_app_data()?.get("secret-tls").cloned(),
            )?)
        } else {
            None
        };
        clients::changes(
            &rel.my_app_data()?,
            &clients::database_data(g, req, &creds, topo, tls_secret.as_deref()),
        )
    } else {
        return Ok(());
    };
    let first = |k: &str| changes.get(k).is_some_and(|v| !v.is_empty());
    if let (true, Some(primary)) = (leader, primary) {
        if first("user") || first("secret-user") || first("username") {
            wait_for_hba(ctx, primary, rel, req, g);
        }
    }
    if changes.get("password").is_some_and(|p| !p.is_empty()) {
        log::warn!("{} ({}) did not ask for its credentials as a Juju secret: sending its password in the relation data", rel.id(), rel.remote_app().unwrap_or("?"));
    }
    if g.endpoint == "db" {
        rel.set_my_unit_data(&changes)?;
    } else {
        rel.set_my_app_data(&changes)?;
    }
    Ok(())
}
