//! Actions. A refusal is an error: charm-lib turns it into `action-fail` with the message.

use crate::patroni::{self, Cluster, ClusterMember};
use crate::reconcile::{self, keys, Shared, PEER};
use crate::render::{self, Member, Passwords};
use crate::{certs, etcd, paths, secrets, sql};
use charm_lib::{Cmd, Context, Databag, FileOptions, Machine, MachineExt, ServiceOp};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

/// Runs the action `name`.
pub fn run(ctx: &mut Context, name: &str) -> anyhow::Result<()> {
    match name {
        "get-primary" => get_primary(ctx),
        "list-members" => list_members(ctx),
        "switchover" => switchover(ctx),
        "force-promote" => force_promote(ctx),
        "get-password" => get_password(ctx),
        "set-password" => set_password(ctx),
        "rotate-certificates" => rotate_certificates(ctx),
        "create-backup" => crate::backup_actions::create_backup(ctx),
        "list-backups" => crate::backup_actions::list_backups(ctx),
        "restore" => crate::backup_actions::restore(ctx),
        "set-backup-passphrase" => crate::backup_actions::set_backup_passphrase(ctx),
        "pre-upgrade-check" => pre_upgrade_check(ctx),
        other => anyhow::bail!("unknown action {other:?}"),
    }
}

fn cluster(ctx: &Context) -> anyhow::Result<Cluster> {
    patroni::cluster(ctx.machine)?.ok_or_else(|| anyhow::anyhow!("Patroni on this unit does not answer on {}: check `juju status` and the postgresql-ha-patroni service", paths::PATRONI_API))
}

fn role_name(m: &ClusterMember) -> &str {
    match m.role.as_str() {
        "leader" => "primary",
        "sync_standby" => "sync-standby",
        "quorum_standby" => "quorum-standby",
        other => other,
    }
}

fn get_primary(ctx: &mut Context) -> anyhow::Result<()> {
    let c = cluster(ctx)?;
    let p = c.primary().ok_or_else(|| anyhow::anyhow!("there is no running primary right now (a failover is in progress, or etcd lost quorum: see the units' status)"))?;
    ctx.action_set(&json!({"primary": paths::unit_of_member(&p.name), "address": p.host.clone().unwrap_or_default(), "timeline": p.timeline.unwrap_or_default()}))
}

fn list_members(ctx: &mut Context) -> anyhow::Result<()> {
    let c = cluster(ctx)?;
    let mut members = serde_json::Map::new();
    for m in &c.members {
        let lag = match (&m.lag, m.role.as_str()) {
            (_, "leader") => "0".to_string(),
            (Some(serde_json::Value::Number(n)), _) => n.to_string(),
            (Some(serde_json::Value::String(s)), _) => s.clone(),
            _ => "unknown".to_string(),
        };
        members.insert(
            m.name.clone(),
            json!({"unit": paths::unit_of_member(&m.name), "role": role_name(m), "state": m.state, "lag-bytes": lag, "timeline": m.timeline.map(|t| t.to_string()).unwrap_or_default(), "address": m.host.clone().unwrap_or_default()}),
        );
    }
    ctx.action_set(&json!({"members": members, "count": c.members.len()}))
}

/// The system passwords, from the secret the peer app databag names.
fn system_passwords(ctx: &Context) -> anyhow::Result<(String, Passwords)> {
    let peers = ctx
        .model
        .relation(PEER)?
        .ok_or_else(|| anyhow::anyhow!("the peer relation does not exist yet"))?;
    let (id, content) = secrets::SHARED
        .published(&ctx.model, &peers.my_app_data()?)?
        .ok_or_else(|| anyhow::anyhow!("the leader has not generated the system passwords yet"))?;
    let p = secrets::from_content(&content)
        .ok_or_else(|| anyhow::anyhow!("the system passwords secret {id} is incomplete"))?;
    Ok((id, p))
}

#[derive(Deserialize)]
struct SwitchoverParams {
    candidate: Option<String>,
}

fn switchover(ctx: &mut Context) -> anyhow::Result<()> {
    let p: SwitchoverParams = ctx.action_params()?;
    let c = cluster(ctx)?;
    let primary = c.primary().ok_or_else(|| anyhow::anyhow!("there is no running primary to switch over from: wait for Patroni's automatic failover, or use force-promote after etcd quorum loss"))?;
    // An unreadable config is treated as synchronous: the safer refusal.
    let sync_mode = crate::config::Config::from_raw(&ctx.model.config_raw()?)
        .map_or(true, |c| c.synchronous_mode.is_synchronous());
    let syncs: Vec<&ClusterMember> = c.members.iter().filter(|m| m.is_sync()).collect();
    let sync_names = || {
        if syncs.is_empty() {
            "none".to_string()
        } else {
            syncs
                .iter()
                .map(|m| paths::unit_of_member(&m.name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let target = match p
        .candidate
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(cand) => {
            let name = paths::member_name(cand);
            let m = c.member(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{cand} is not a member of the cluster; members: {}",
                    c.members
                        .iter()
                        .map(|m| paths::unit_of_member(&m.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if m.is_primary() {
                anyhow::bail!("{cand} is already the primary");
            }
            if sync_mode && !m.is_sync() {
                anyhow::bail!(
                    "{cand} is not a synchronous standby (role {}): switching over to it could lose acknowledged writes; synchronous standbys: {}",
                    role_name(m),
                    sync_names()
                );
            }
            m
        }
        None => {
            let pool: Vec<&ClusterMember> = if sync_mode {
                syncs.clone()
            } else {
                c.members
                    .iter()
                    .filter(|m| m.state == "streaming")
                    .collect()
            };
            *pool
                .iter()
                .min_by_key(|m| m.lag_bytes().unwrap_or(u64::MAX))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "there is no {}standby to switch over to",
                        if sync_mode {
                            "synchronous "
                        } else {
                            "streaming "
                        }
                    )
                })?
        }
    };
    let (_, pw) = system_passwords(ctx)?;
    ctx.action_log(&format!(
        "switching over from {} to {}",
        paths::unit_of_member(&primary.name),
        paths::unit_of_member(&target.name)
    ))?;
    let body = json!({"leader": primary.name, "candidate": target.name});
    match patroni::request(
        ctx.machine,
        "POST",
        "/switchover",
        Some(&body),
        Some(&pw.patroni),
    )? {
        Some(r) if r.status == 200 => ctx.action_set(&json!({
            "primary": paths::unit_of_member(&target.name),
            "previous-primary": paths::unit_of_member(&primary.name),
            "message": r.body.trim(),
        })),
        Some(r) => anyhow::bail!(
            "Patroni refused the switchover (HTTP {}): {}",
            r.status,
            r.body.trim()
        ),
        None => anyhow::bail!("Patroni on this unit did not answer the switchover request"),
    }
}

#[derive(Deserialize)]
struct ForceParams {
    #[serde(rename = "i-understand-data-loss")]
    confirmed: bool,
}

/// Stops Patroni when etcd has no quorum. Its graceful stop (SIGTERM) first finishes the HA
/// cycle under way and then updates its member key, each retrying etcd for `retry_timeout`
/// (`ha.py` `shutdown`, `touch_member`): 10 s measured, and up to the unit's TimeoutStopSec (60
/// s) before systemd kills it, all of it time with no primary. Nothing it would write can land
/// without a quorum, so the unit's processes are killed, PostgreSQL's with Patroni's: left
/// running, it would lose its socket directory (the unit's RuntimeDirectory, removed on a stop)
/// and the next Patroni could not reach it; killed, it recovers from its WAL when Patroni starts
/// it (a replica's crash recovery: its last restartpoint and the WAL after it). The stop right
/// after keeps Restart= from bringing Patroni back (systemd forbids the restart of a unit
/// stopped by hand in any state, `service_stop`).
fn stop_patroni_without_dcs(m: &dyn Machine) -> anyhow::Result<()> {
    m.run(
        &Cmd::new(
            "systemctl",
            ["kill", "--signal=SIGKILL", paths::PATRONI_SERVICE],
        )
        // Nothing to kill when Patroni is not running: the stop below is then all there is.
        .allow_failure(),
    )?;
    m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
    Ok(())
}

fn force_promote(ctx: &mut Context) -> anyhow::Result<()> {
    let p: ForceParams = ctx.action_params()?;
    if !p.confirmed {
        anyhow::bail!("refused: force-promote can lose writes the lost units acknowledged; run it with i-understand-data-loss=true only if they will not come back");
    }
    if !ctx.model.is_leader()? {
        anyhow::bail!("run force-promote on the leader unit (`juju run postgresql-ha/leader force-promote i-understand-data-loss=true`): it rewrites the application's etcd membership");
    }
    let m = ctx.machine;
    if etcd::has_leader(m)? {
        anyhow::bail!(
            "etcd has quorum: nothing to force. Use the switchover action to move the primary"
        );
    }
    let peers = ctx
        .model
        .relation(PEER)?
        .ok_or_else(|| anyhow::anyhow!("the peer relation does not exist yet"))?;
    let app = peers.my_app_data()?;
    let mut shared = Shared::read(&app)?;
    let address = ctx
        .model
        .ingress_address(PEER)?
        .ok_or_else(|| anyhow::anyhow!("Juju gave no ingress address for {PEER}"))?;
    let me = Member {
        name: paths::member_name(ctx.model.unit_name()),
        address,
    };
    let (_, pw) = system_passwords(ctx)?;

    ctx.action_log("stopping Patroni on this unit")?;
    stop_patroni_without_dcs(m)?;
    ctx.action_log("restarting etcd as a one-member cluster from this unit's data")?;
    let opts = FileOptions::new("root", "etcd", 0o640);
    let single = [me.clone()];
    for force in [true, false] {
        let text = render::etcd_yaml(&render::EtcdInput {
            me: &me,
            initial: &single,
            new_cluster: true,
            token: &shared.token,
            force_new_cluster: force,
        });
        m.write_file(Path::new(paths::ETCD_YML), text.as_bytes(), &opts)?;
        m.service(ServiceOp::Restart, paths::ETCD_SERVICE)?;
        if !etcd::wait_healthy(m, 60)? {
            anyhow::bail!("etcd did not come back as a one-member cluster: see `journalctl -u {}`; Patroni stays stopped", paths::ETCD_SERVICE);
        }
    }
    let epoch: u64 = shared.epoch.parse().unwrap_or(1);
    shared.epoch = (epoch + 1).to_string();
    shared.members = [(me.name.clone(), me.address.clone())]
        .into_iter()
        .collect();
    shared.bootstrap = me.name.clone();
    let mut changes = Databag::new();
    changes.insert(
        keys::ETCD_MEMBERS.into(),
        serde_json::to_string(&shared.members)?,
    );
    changes.insert(keys::ETCD_EPOCH.into(), shared.epoch.clone());
    changes.insert(keys::ETCD_BOOTSTRAP.into(), shared.bootstrap.clone());
    peers.set_my_app_data(&changes)?;
    peers.set_my_unit_data(
        &[(keys::ETCD_STARTED.to_string(), shared.epoch.clone())]
            .into_iter()
            .collect(),
    )?;

    etcd::delete_leader_key(m, ctx.model.app_name())?;
    ctx.action_log("starting Patroni")?;
    m.service(ServiceOp::Start, paths::PATRONI_SERVICE)?;
    let probe = format!(
        "until curl -s -o /dev/null {} {}/patroni; do sleep 0.5; done",
        paths::curl_tls_args().join(" "),
        paths::PATRONI_API
    );
    m.run(
        &Cmd::new(
            "timeout",
            ["60".to_string(), "sh".into(), "-c".into(), probe],
        )
        .allow_failure(),
    )?;
    // A survivor that was not the synchronous standby may only take the lock with synchronous
    // mode off; the next hook turns it back on from the config.
    let off = json!({"synchronous_mode": false});
    let patched = patroni::request(m, "PATCH", "/config", Some(&off), Some(&pw.patroni))?;
    let failover = patroni::request(
        m,
        "POST",
        "/failover",
        Some(&json!({"candidate": me.name})),
        Some(&pw.patroni),
    )?;
    log::info!(
        "force-promote: PATCH /config → {:?}; POST /failover → {:?}",
        patched.map(|r| r.status),
        failover.as_ref().map(|r| r.status)
    );
    ctx.action_set(&json!({
        "promoted": ctx.model.unit_name(),
        "etcd-epoch": shared.epoch,
        "message": format!(
            "etcd now runs as a one-member cluster on {}, without the lost primary's lock; Patroni promotes this unit's PostgreSQL at its next loop. Units that come back rejoin as replicas; add units to restore automatic failover",
            ctx.model.unit_name()
        ),
    }))
}

#[derive(Deserialize)]
struct GetPasswordParams {
    #[serde(default = "superuser")]
    username: String,
}

fn superuser() -> String {
    "superuser".into()
}

fn pick<'p>(p: &'p Passwords, user: &str) -> anyhow::Result<&'p String> {
    Ok(match user {
        "superuser" => &p.superuser,
        "replication" => &p.replication,
        "rewind" => &p.rewind,
        other => anyhow::bail!("unknown user {other:?}: expected superuser, replication or rewind"),
    })
}

fn get_password(ctx: &mut Context) -> anyhow::Result<()> {
    let p: GetPasswordParams = ctx.action_params()?;
    let (_, pw) = system_passwords(ctx)?;
    let value = pick(&pw, &p.username)?.clone();
    let role = secrets::role_of(&p.username).unwrap_or_default();
    ctx.action_set(&json!({"username": role, "password": value}))
}

#[derive(Deserialize)]
struct SetPasswordParams {
    username: String,
    password: Option<String>,
}

fn set_password(ctx: &mut Context) -> anyhow::Result<()> {
    let p: SetPasswordParams = ctx.action_params()?;
    if !ctx.model.is_leader()? {
        anyhow::bail!("run set-password on the leader unit: it owns the passwords secret");
    }
    let role = secrets::role_of(&p.username).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown user {:?}: expected superuser, replication or rewind",
            p.username
        )
    })?;
    let new = match p.password {
        Some(pw) if pw.len() < 12 || pw.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            anyhow::bail!("the new password must be at least 12 characters with no spaces or control characters")
        }
        Some(pw) => pw,
        None => secrets::generate()?,
    };
    let (id, mut pw) = system_passwords(ctx)?;
    let c = cluster(ctx)?;
    let primary = c.primary().and_then(|m| m.host.clone()).ok_or_else(|| anyhow::anyhow!("there is no running primary to change the password on: try again once `get-primary` answers"))?;
    reconcile::psql(ctx, &primary, &sql::set_password(role, &new), &[&new])?;
    *match p.username.as_str() {
        "superuser" => &mut pw.superuser,
        "replication" => &mut pw.replication,
        _ => &mut pw.rewind,
    } = new;
    ctx.model.set_secret(&id, &secrets::to_content(&pw))?;
    // Every unit re-renders Patroni's configuration when the peer app databag changes.
    let peers = ctx
        .model
        .relation(PEER)?
        .ok_or_else(|| anyhow::anyhow!("the peer relation does not exist"))?;
    let rev: u64 = peers
        .my_app_data()?
        .get("system-revision")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    peers.set_my_app_data(
        &[("system-revision".to_string(), (rev + 1).to_string())]
            .into_iter()
            .collect(),
    )?;
    // Re-render here with the new value: this action cannot read its own secret-set back.
    reconcile::reconcile_with(
        ctx,
        &reconcile::Overrides {
            passwords: Some(&pw),
            ..Default::default()
        },
    )?;
    ctx.action_set(&json!({"username": role, "message": "password changed; every unit's Patroni reloads with it"}))
}

/// A new key and certificate for this unit, from the application's CA, picked up without a
/// restart: etcd reads its files at each handshake, Patroni's REST API on SIGHUP, PostgreSQL
/// on reload. No failover, no dropped session.
fn rotate_certificates(ctx: &mut Context) -> anyhow::Result<()> {
    let peers = ctx.model.relation(PEER)?.ok_or_else(|| {
        anyhow::anyhow!("the peer relation is not there yet: wait for the unit to be active")
    })?;
    let Some(ca) = certs::published_ca(ctx, &peers.my_app_data()?)? else {
        anyhow::bail!("the leader has not created the certificate authority yet: wait for the units to be active");
    };
    drop(peers);
    let address = ctx
        .model
        .ingress_address(PEER)?
        .ok_or_else(|| anyhow::anyhow!("Juju gave no ingress address for {PEER}"))?;
    let me = Member {
        name: paths::member_name(ctx.model.unit_name()),
        address,
    };
    let sans = certs::wanted_sans(&me, &reconcile::vips(ctx)?);
    let pem = certs::issue(ctx.machine, &ca, &me, &sans)?;
    // PostgreSQL's own files follow (the unit's certificate unless the site's serves).
    let site = match crate::site_cert::reconcile(ctx, &me, &sans)? {
        crate::site_cert::Site::Ready(c) => Some(c),
        _ => None,
    };
    certs::ensure(ctx.machine, &ca, &me, &sans, site.as_ref())?;
    let m = ctx.machine;
    if m.service_is_active(paths::PATRONI_SERVICE)? {
        m.service(ServiceOp::Reload, paths::PATRONI_SERVICE)?;
        certs::reload_postgres(m)?;
    }
    let seen = charm_lib::tls::inspect(&pem, &ca.cert_pem)?;
    ctx.action_set(&json!({
        "names": seen.sans.iter().cloned().collect::<Vec<_>>().join(","),
        "not-after": seen.not_after.to_string(),
    }))
}

/// Whether taking one member down now (a package upgrade, a Patroni restart, a refresh) keeps
/// the database writable: every member running, etcd with its leader, and automatic failover
/// available (the primary's loss would be replaced without losing a commit): what the rolling
/// upgrade waits for before each unit's turn ([`crate::upgrade::problems`]). Refuses with every
/// reason found; says where a roll stands.
fn pre_upgrade_check(ctx: &mut Context) -> anyhow::Result<()> {
    let c = cluster(ctx)?;
    let m = ctx.machine;
    let peers = ctx.model.relation(PEER)?;
    let expected = peers.as_ref().map_or(1, |r| r.units().len() + 1);
    let mode = crate::config::Config::from_raw(&ctx.model.config_raw()?)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .synchronous_mode;
    let mut problems = crate::upgrade::problems(m, ctx.model.app_name(), &c, expected, mode)?;
    if expected < 3 {
        problems.push(format!(
            "{expected} unit(s): taking one down stops writes (automatic failover needs 3 units)"
        ));
    }
    // Where a roll stands: each unit's own report in the peer data (this unit's too, from
    // its last hook).
    let mut waiting = Vec::new();
    let mut turn = String::new();
    if let Some(p) = &peers {
        let mut bags = vec![(ctx.model.unit_name().to_string(), p.my_unit_data()?)];
        for u in p.units() {
            bags.push((u.to_string(), p.unit_data(u)?));
        }
        let wanted = crate::config::Config::from_raw(&ctx.model.config_raw()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .patroni_version;
        for (u, bag) in bags {
            if let Some(what) = crate::upgrade::peer_state(&u, &bag, &wanted).pending {
                waiting.push(format!("{u} ({what})"));
            }
        }
        turn = p
            .my_app_data()?
            .get(crate::upgrade::keys::TURN)
            .cloned()
            .unwrap_or_default();
    }
    drop(peers);
    if !problems.is_empty() {
        anyhow::bail!("not safe to upgrade now: {}", problems.join("; "));
    }
    let primary = c
        .primary()
        .map(|p| paths::unit_of_member(&p.name))
        .unwrap_or_default();
    let mut out = json!({
        "result": "ok",
        "primary": primary,
        "message": format!("{} members running, automatic failover available: a new patroni-version or PostgreSQL package rolls one unit at a time, replicas first, then a switchover and {primary}", c.members.len()),
    });
    if !waiting.is_empty() {
        out["upgrading"] = json!(waiting.join(", "));
        out["turn"] = json!(turn);
    }
    ctx.action_set(&out)
}
