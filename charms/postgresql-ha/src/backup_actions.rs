//! The backup actions: create-backup, list-backups, restore (pgBackRest; see [`crate::backup`]).

use crate::backup::{self, Repository, RepositoryState, Restore};
use crate::reconcile::{self, Overrides, PEER};
use crate::{etcd, paths, patroni};
use charm_lib::{Cmd, Context, MachineExt, ServiceOp};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the restore action waits for PostgreSQL to come back as the primary; a longer
/// recovery goes on after the action returns, and the unit's status tells when it is done.
const RESTORE_WAIT: Duration = Duration::from_secs(600);

fn ready_repository(ctx: &Context) -> anyhow::Result<Repository> {
    match backup::repository(ctx)? {
        RepositoryState::Ready(r) => {
            if ctx.machine.file_info(Path::new(backup::CONF))?.is_none() {
                anyhow::bail!("pgBackRest is not configured on this unit yet: wait for the unit to settle after relating {}", backup::ENDPOINT);
            }
            Ok(r)
        }
        RepositoryState::NotRelated => anyhow::bail!(
            "no backup repository: relate {} to an S3 provider (e.g. `juju integrate postgresql-ha:{} s3-integrator`)",
            backup::ENDPOINT,
            backup::ENDPOINT
        ),
        RepositoryState::Waiting(why) | RepositoryState::Invalid(why) => {
            anyhow::bail!("the backup repository is not usable: {}: {why}", backup::ENDPOINT)
        }
    }
}

#[derive(Deserialize)]
struct CreateParams {
    #[serde(rename = "type", default = "full")]
    kind: String,
}

fn full() -> String {
    "full".into()
}

/// A backup taken here, on the primary (pgBackRest reads the data directory locally).
pub fn create_backup(ctx: &mut Context) -> anyhow::Result<()> {
    let p: CreateParams = ctx.action_params()?;
    let kind = backup::backup_type(&p.kind).map_err(anyhow::Error::msg)?;
    let repo = ready_repository(ctx)?;
    let c = patroni::cluster(ctx.machine)?.ok_or_else(|| {
        anyhow::anyhow!("Patroni on this unit does not answer: check `juju status`")
    })?;
    let me = paths::member_name(ctx.model.unit_name());
    let primary = c.primary().ok_or_else(|| {
        anyhow::anyhow!("there is no running primary: wait for the failover to finish")
    })?;
    if primary.name != me {
        anyhow::bail!(
            "run create-backup on the primary, {} (this unit is a {}): pgBackRest backs up the primary's data directory",
            paths::unit_of_member(&primary.name),
            c.member(&me).map_or("member", |m| m.role.as_str())
        );
    }
    let stanza = backup::stanza(ctx.model.app_name());
    ctx.action_log(&format!(
        "{kind} backup of stanza {stanza} into {}",
        repo.fingerprint()
    ))?;
    let started = Instant::now();
    let out = ctx.machine.run(
        &backup::pgbackrest(&stanza, [format!("--type={kind}"), "backup".into()]).allow_failure(),
    )?;
    if !out.success() {
        anyhow::bail!("pgBackRest backup failed: {}", backup::failure(&out));
    }
    let (list, _) = info(ctx, &stanza)?;
    let newest = list
        .last()
        .ok_or_else(|| anyhow::anyhow!("pgBackRest reported success but lists no backup"))?;
    ctx.action_set(&json!({
        "backup-id": newest.id,
        "type": newest.kind,
        "size": newest.size.to_string(),
        "repository-size": newest.repo_size.to_string(),
        "seconds": format!("{:.1}", started.elapsed().as_secs_f64()),
        "repository": repo.fingerprint(),
    }))
}

fn info(ctx: &Context, stanza: &str) -> anyhow::Result<(Vec<backup::BackupInfo>, Option<String>)> {
    let out = ctx.machine.run(
        &Cmd::new(
            "pgbackrest",
            [
                format!("--config={}", backup::CONF),
                format!("--stanza={stanza}"),
                "--output=json".into(),
                "info".into(),
            ],
        )
        .user("postgres")
        .allow_failure(),
    )?;
    if !out.success() {
        anyhow::bail!("pgBackRest info failed: {}", backup::failure(&out));
    }
    backup::parse_info(&out.stdout, stanza).map_err(anyhow::Error::msg)
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    stanza: Option<String>,
}

/// The `stanza` parameter, checked; `None` when not given.
fn stanza_param(p: Option<String>) -> anyhow::Result<Option<String>> {
    match p.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if backup::valid_stanza(&s) => Ok(Some(s)),
        Some(s) => anyhow::bail!(
            "stanza {s:?}: expected a stanza name (another deployment's application name: letters, digits, '-', '_', '.')"
        ),
    }
}

/// The backups in the repository, oldest first.
pub fn list_backups(ctx: &mut Context) -> anyhow::Result<()> {
    let p: ListParams = ctx.action_params()?;
    let asked = stanza_param(p.stanza)?;
    let repo = ready_repository(ctx)?;
    let stanza = asked.unwrap_or_else(|| backup::stanza(ctx.model.app_name()));
    let (list, status) = info(ctx, &stanza)?;
    let mut backups = serde_json::Map::new();
    for (i, b) in list.iter().enumerate() {
        backups.insert(format!("{i:04}"), serde_json::to_value(b)?);
    }
    ctx.action_set(&json!({
        "repository": repo.fingerprint(),
        "stanza": stanza,
        "count": list.len().to_string(),
        "status": status.unwrap_or_else(|| "ok".into()),
        "backups": backups,
    }))
}

#[derive(Deserialize)]
struct RestoreParams {
    #[serde(rename = "backup-id", default)]
    backup_id: Option<String>,
    #[serde(rename = "restore-to-time", default)]
    time: Option<String>,
    #[serde(default)]
    stanza: Option<String>,
}

/// The stanza a restore reads when none is named: this application's own when the repository
/// has it; in a fresh deployment (its own not there yet) the only other one.
fn default_source(ctx: &Context, own: &str, fingerprint: &str) -> anyhow::Result<String> {
    let out = ctx.machine.run(&backup::info_all())?;
    if !out.success() {
        anyhow::bail!("pgBackRest info failed: {}", backup::failure(&out));
    }
    let names: Vec<String> = backup::stanzas(&out.stdout)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if names.iter().any(|n| n == own) {
        return Ok(own.to_string());
    }
    match names.as_slice() {
        [] => anyhow::bail!("the repository {fingerprint} holds no stanza: no backup to restore from"),
        [only] => Ok(only.clone()),
        several => anyhow::bail!(
            "the repository {fingerprint} holds the stanzas {} and not this application's ({own}): name the one to restore from with stanza=",
            several.join(", ")
        ),
    }
}

/// Replaces this one-unit cluster's database with a backup, or with its state at a time:
/// Patroni bootstraps a new cluster from pgBackRest (see [`backup::restore_bootstrap`]).
/// The data directory it replaces is kept beside it.
pub fn restore(ctx: &mut Context) -> anyhow::Result<()> {
    let p: RestoreParams = ctx.action_params()?;
    let set = p
        .backup_id
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let time = p
        .time
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if set.is_none() && time.is_none() {
        anyhow::bail!("give backup-id (from list-backups) or restore-to-time (e.g. \"2026-12-07 07:30:00+00\"), or both");
    }
    let asked = stanza_param(p.stanza)?;
    if let Some(t) = &time {
        if !backup::valid_time(t) {
            anyhow::bail!("restore-to-time {t:?}: expected YYYY-MM-DD HH:MM:SS[.ffffff][+TZ], e.g. \"2026-12-07 07:30:00+00\"");
        }
    }
    if !ctx.model.is_leader()? {
        anyhow::bail!(
            "run restore on the leader unit (`juju run postgresql-ha/leader restore ...`)"
        );
    }
    let others = ctx.model.relation(PEER)?.map_or(0, |r| r.units().len());
    if others > 0 {
        anyhow::bail!(
            "restore replaces the whole cluster: scale postgresql-ha to one unit first ({others} other unit(s) now), restore, then add units (they copy the restored database)"
        );
    }
    let fp = ready_repository(ctx)?.fingerprint();
    let own = backup::stanza(ctx.model.app_name());
    let from = match asked {
        Some(s) => s,
        None => default_source(ctx, &own, &fp)?,
    };
    let (list, status) = info(ctx, &from)?;
    // Another deployment's passphrase missing (or wrong) shows here, before anything stops.
    if let (true, Some(status)) = (list.is_empty(), &status) {
        anyhow::bail!("{}", backup::unreadable_message(&from, &fp, status));
    }
    if let Some(id) = &set {
        if !list.iter().any(|b| &b.id == id) {
            anyhow::bail!(
                "no backup {id} in the repository; backups: {}",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.iter()
                        .map(|b| b.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
    } else if list.is_empty() {
        anyhow::bail!("the repository has no backup to restore from");
    }
    // Refused here rather than by pgBackRest inside Patroni's bootstrap, after the data
    // directory was moved aside and the cluster stopped.
    if let (None, Some(t)) = (&set, &time) {
        let target = backup::epoch_of(t)
            .ok_or_else(|| anyhow::anyhow!("restore-to-time {t:?} is not a date and time"))?;
        if backup::backup_before(&list, target).is_none() {
            anyhow::bail!(
                "no backup ended before {t}: the oldest ended at {}; a restore to a time starts from a backup that ended before it",
                list.first().map_or("?", |b| b.stopped.as_str())
            );
        }
    }
    let m = ctx.machine;
    let r = Restore {
        set,
        time,
        stanza: (from != own).then(|| from.clone()),
    };
    ctx.action_log(&format!("restoring from stanza {from} in {fp}"))?;
    ctx.action_log("stopping Patroni and PostgreSQL")?;
    m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
    let kept = if m.file_info(Path::new(paths::PGDATA))?.is_some() {
        let aside = format!(
            "{}.before-restore-{}",
            paths::PGDATA,
            charm_lib::tls::format_utc(charm_lib::tls::now().unix_timestamp()).replace(':', "")
        );
        m.run(&Cmd::new("mv", ["-T", paths::PGDATA, aside.as_str()]))?;
        aside
    } else {
        String::new()
    };
    // Patroni bootstraps only a cluster that is not initialised in the DCS.
    etcd::remove_cluster(m, ctx.model.app_name())?;
    // An attempt of this restore is told from an earlier one by its log line.
    let before = backup::bootstrap_outcome(&backup::patroni_log(m)?).0;
    ctx.action_log("starting Patroni with pgBackRest as its bootstrap")?;
    reconcile::reconcile_with(
        ctx,
        &Overrides {
            restore: Some(Some(r.clone())),
            ..Default::default()
        },
    )?;
    let me = paths::member_name(ctx.model.unit_name());
    let deadline = Instant::now() + RESTORE_WAIT;
    let restored = loop {
        let primary = patroni::cluster(ctx.machine)?.and_then(|c| {
            c.primary()
                .filter(|p| p.name == me && p.state == "running")
                .map(|p| p.timeline)
        });
        if let Some(tl) = primary {
            break Some(tl);
        }
        if let (line, Some(why)) = backup::bootstrap_outcome(&backup::patroni_log(ctx.machine)?) {
            if line != before {
                // Patroni would try again and again; in an emptied data directory without the
                // restore it would initdb an empty cluster. Stopped, and recorded for every hook.
                ctx.machine
                    .service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
                if let Some(peers) = ctx.model.relation(PEER)? {
                    peers.set_my_app_data(&charm_lib::Databag::from([(
                        backup::RESTORE_FAILED_KEY.to_string(),
                        why.clone(),
                    )]))?;
                }
                anyhow::bail!(
                    "restore failed: {why}; PostgreSQL stays stopped, the previous data is in {kept}: run restore again with another backup-id or restore-to-time"
                );
            }
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let Some(timeline) = restored else {
        // Later hooks keep Patroni's bootstrap from pgBackRest until PostgreSQL is promoted.
        if let Some(peers) = ctx.model.relation(PEER)? {
            peers.set_my_app_data(&charm_lib::Databag::from([(
                backup::RESTORE_KEY.to_string(),
                serde_json::to_string(&r)?,
            )]))?;
        }
        return ctx.action_set(&json!({
            "status": "restore still running: the unit's status says when PostgreSQL serves again",
            "previous-data": kept,
        }));
    };
    reconcile::reconcile_with(
        ctx,
        &Overrides {
            restore: Some(None),
            ..Default::default()
        },
    )?;
    ctx.action_set(&json!({
        "status": "restored",
        "backup-id": r.set.unwrap_or_default(),
        "restore-to-time": r.time.unwrap_or_default(),
        "timeline": timeline.unwrap_or_default().to_string(),
        "stanza": from,
        "previous-data": kept,
    }))
}

#[derive(Deserialize)]
struct PassphraseParams {
    passphrase: String,
}

/// Gives this deployment the passphrase of a repository another deployment encrypted (empty:
/// the repository is not encrypted), so that it can restore from it. Refused once this
/// cluster's stanza is in the repository: its own backups would become unreadable. The
/// passphrase goes into the application secret and pgBackRest's configuration only; it is
/// never logged or echoed.
pub fn set_backup_passphrase(ctx: &mut Context) -> anyhow::Result<()> {
    let p: PassphraseParams = ctx.action_params()?;
    let pass = p.passphrase;
    if !pass.is_empty()
        && (pass.len() < 16 || pass.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        anyhow::bail!("passphrase: expected at least 16 characters without spaces (the other deployment's, from `juju show-secret backup-passphrase --reveal` there), or empty for an unencrypted repository");
    }
    if !ctx.model.is_leader()? {
        anyhow::bail!(
            "run set-backup-passphrase on the leader unit: it owns the passphrase secret"
        );
    }
    let repo = ready_repository(ctx)?;
    let fp = repo.fingerprint();
    let peers = ctx
        .model
        .relation(PEER)?
        .ok_or_else(|| anyhow::anyhow!("the peer relation is not there yet"))?;
    let ours = std::iter::once(peers.my_unit_data()?)
        .chain(peers.units().iter().filter_map(|u| peers.unit_data(u).ok()))
        .any(|b| b.get(backup::STANZA_KEY).map(String::as_str) == Some(fp.as_str()));
    if ours {
        anyhow::bail!(
            "this cluster's stanza is in {fp} and archives into it: a new passphrase would make its backups unreadable. Use set-backup-passphrase before relating a new deployment's {} to another deployment's repository",
            backup::ENDPOINT
        );
    }
    let mut changes = charm_lib::Databag::new();
    let encryption = if pass.is_empty() {
        "none"
    } else {
        let content = [(backup::PASSPHRASE_KEY.to_string(), pass)].into();
        let shared =
            backup::PASSPHRASE.put_published(&ctx.model, &peers.my_app_data()?, &content)?;
        if shared.unpublished {
            changes.insert(backup::PASSPHRASE.key.to_string(), shared.id);
        }
        backup::CIPHER
    };
    changes.insert(
        backup::ENCRYPTION_KEY.to_string(),
        format!("{fp} {encryption}"),
    );
    peers.set_my_app_data(&changes)?;
    // This unit's pgBackRest configuration follows at once (the restore action comes next).
    reconcile::reconcile_with(ctx, &Overrides::default())?;
    ctx.action_set(&json!({
        "repository": fp,
        "encrypted": if encryption == "none" { "no" } else { "yes" },
    }))
}
