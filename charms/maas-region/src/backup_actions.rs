//! create-backup, list-backups, restore and set-backup-passphrase (see [`crate::backup`]). Each
//! refuses with what is missing: the relation, the provider's keys, MAAS's files, a database
//! already related, the passphrase of another deployment's backups.

use crate::backup::{self, Manifest};
use crate::config::{Config, InstallMethod};
use crate::maas;
use charm_lib::{Context, MachineExt};
use serde::Deserialize;
use serde_json::{json, Value};

/// The manifest as an action result (Juju's keys: lowercase letters, digits and `-`).
fn result(mf: &Manifest) -> Value {
    let regions: Value = mf
        .regions
        .iter()
        .map(|(u, id)| (u.replace('/', "-"), json!(id)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    json!({
        "backup-id": mf.id,
        "restore-to-time": mf.restore_to_time,
        "finished": mf.finished,
        "unit": mf.unit,
        "install-method": mf.install_method,
        "files": mf.files.join(","),
        "size": mf.size,
        "encrypted": if mf.encryption.is_some() { "yes" } else { "no" },
        "regions": regions,
    })
}

/// What to tell an operator whose unit cannot open a backup: postgresql-ha's way.
fn other_passphrase(id: &str, app: &str) -> String {
    format!(
        "backup {id} is encrypted with a passphrase {app} does not have (another deployment's): run set-backup-passphrase on {app}'s leader with that deployment's passphrase (the secret labelled {} there: its id in `juju secrets --format yaml`, its value in `juju show-secret <id> --reveal`), then restore",
        backup::PASSPHRASE.label
    )
}

/// create-backup.
pub fn create_backup(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let repo = backup::ready(ctx)?;
    let job = backup::job(ctx, cfg, &repo)?;
    ctx.action_log(&format!(
        "archiving this region's files into {}",
        job.target.folder()
    ))?;
    let mf = backup::create(ctx.machine, &job, backup::unix_now())?;
    let mut out = result(&mf);
    // Only the leader expires (the timer runs on it): one unit decides what is deleted.
    if ctx.model.is_leader()? {
        let gone = backup::expire(
            ctx.machine,
            &job.target,
            &job.application,
            &mf.id,
            job.retention,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "backup {} taken, but expiring older backups (backup-retention {}) failed: {e:#}",
                mf.id,
                job.retention
            )
        })?;
        out["expired"] = json!(gone.join(","));
    }
    ctx.action_set(&out)
}

/// list-backups.
pub fn list_backups(ctx: &mut Context, _cfg: &Config) -> anyhow::Result<()> {
    let repo = backup::ready(ctx)?;
    let target = backup::Target::of(&repo);
    let pass = backup::passphrase(ctx.machine)?;
    let all = backup::list(ctx.machine, &target, pass.as_deref())?;
    let mut out = serde_json::Map::new();
    for (i, mf) in all.backups.iter().enumerate() {
        out.insert(format!("{i:04}"), result(mf));
    }
    let mut res = json!({"folder": target.folder(), "count": all.backups.len(), "backups": out});
    if !all.sealed.is_empty() {
        // Listed by id: another deployment's, whose passphrase set-backup-passphrase gives.
        res["other-passphrase"] = json!(all.sealed.join(","));
    }
    ctx.action_set(&res)
}

#[derive(Deserialize)]
struct RestoreParams {
    #[serde(rename = "backup-id")]
    backup_id: String,
    #[serde(rename = "maas-id", default)]
    maas_id: Option<String>,
}

/// restore: before MAAS is initialised here (no database relation, no database in
/// regiond.conf), so that regiond's first start finds its controller by the restored maas_id
/// (src/maasserver/models/node.py `get_or_create_running_controller`) instead of registering
/// a new one. canonical/maas-charms' region charm refuses a restore while its database
/// relation exists the same way (`backups.py`, `_pre_restore_checks`).
pub fn restore(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let p: RestoreParams = ctx.action_params()?;
    let id = p.backup_id.trim();
    anyhow::ensure!(
        backup::valid_id(id),
        "backup-id {id:?} is not a backup id (YYYY-MM-DDTHH:MM:SSZ, as list-backups shows them)"
    );
    let repo = backup::ready(ctx)?;
    for rel in [crate::relations::DB, crate::relations::DATABASE] {
        if ctx.model.relation(rel)?.is_some() {
            anyhow::bail!(
                "the {rel} relation exists: restore runs before the region meets its database (the region would register anew at its first start); remove it (juju remove-relation {}:{rel} ...), restore, then relate the restored database again",
                ctx.model.app_name()
            );
        }
    }
    let m = cfg.install_method;
    let initialised = ctx
        .machine
        .read_to_string(maas::regiond_conf(m))?
        .and_then(|t| maas::RegiondConf::parse(&t).ok())
        .is_some_and(|c| c.db.is_some());
    anyhow::ensure!(
        !initialised,
        "MAAS on this unit was initialised against a database already ({} names one): restore onto a fresh unit",
        maas::regiond_conf(m).display()
    );
    anyhow::ensure!(
        ctx.machine
            .file_info(std::path::Path::new(backup::maas_data(m)))?
            .is_some(),
        "MAAS is not installed on this unit yet ({} is missing): wait for the install to finish",
        backup::maas_data(m)
    );
    let target = backup::Target::of(&repo);
    let pass = backup::passphrase(ctx.machine)?;
    let mf = match backup::manifest(ctx.machine, &target, id, pass.as_deref())? {
        backup::Read::Found(mf) => *mf,
        backup::Read::Missing => anyhow::bail!(
            "no backup {id} in {} (list-backups shows the backups there)",
            target.folder()
        ),
        backup::Read::Sealed(why) => {
            anyhow::bail!("{} ({why})", other_passphrase(id, ctx.model.app_name()))
        }
    };
    anyhow::ensure!(
        InstallMethod::parse(&mf.install_method) == Some(m),
        "backup {id} is of a {} region, this unit installs MAAS as {}: set install-method to {} on a fresh application",
        mf.install_method,
        m.as_str(),
        mf.install_method
    );
    let maas_id = backup::pick_region(&mf, p.maas_id.as_deref()).map_err(anyhow::Error::msg)?;
    ctx.action_log(&format!(
        "restoring {} as region {maas_id}",
        mf.files.join(", ")
    ))?;
    backup::restore(ctx.machine, &target, &mf, m, &maas_id, pass.as_deref())?;
    ctx.action_set(&json!({
        "backup-id": mf.id,
        "maas-id": maas_id,
        "restore-to-time": mf.restore_to_time,
        "files": mf.files.join(","),
        "next": format!("relate the database restored to {} (postgresql-ha: restore restore-to-time=\"{}\")", mf.restore_to_time, mf.restore_to_time),
    }))
}

#[derive(Deserialize)]
struct PassphraseParams {
    passphrase: String,
}

/// set-backup-passphrase: gives this application the passphrase of the deployment whose
/// backups it restores (postgresql-ha's action of the same name, so both halves of a backup
/// are handed over alike). Its own next backups are encrypted with it too. Refused while this
/// application's own encrypted backups are in the folder: they would become unreadable. The
/// passphrase goes into the application secret and the root-only file only; it is never logged
/// or echoed.
pub fn set_backup_passphrase(ctx: &mut Context, _cfg: &Config) -> anyhow::Result<()> {
    let p: PassphraseParams = ctx.action_params()?;
    let pass = p.passphrase.trim().to_string();
    anyhow::ensure!(
        backup::valid_passphrase(&pass),
        "passphrase: expected at least 16 characters without spaces (the other deployment's: the secret labelled {} there, `juju show-secret <id> --reveal`)",
        backup::PASSPHRASE.label
    );
    anyhow::ensure!(
        ctx.model.is_leader()?,
        "run set-backup-passphrase on the leader unit: it owns the passphrase secret"
    );
    let repo = backup::ready(ctx)?;
    let target = backup::Target::of(&repo);
    let app = ctx.model.app_name().to_string();
    let current = backup::passphrase(ctx.machine)?;
    let own: Vec<String> = backup::list(ctx.machine, &target, current.as_deref())?
        .backups
        .into_iter()
        .filter(|mf| mf.application == app && mf.encryption.is_some())
        .map(|mf| mf.id)
        .collect();
    anyhow::ensure!(
        own.is_empty() || current.as_deref() == Some(pass.as_str()),
        "{app}'s own backups {} are encrypted with its passphrase: a new one would make them unreadable. Use set-backup-passphrase on a fresh application before its first backup",
        own.join(", ")
    );
    let peers = ctx
        .model
        .relation(crate::relations::PEERS)?
        .ok_or_else(|| anyhow::anyhow!("the peer relation is not there yet"))?;
    let content = [(backup::PASSPHRASE_KEY.to_string(), pass.clone())].into();
    let shared = backup::PASSPHRASE.put_published(&ctx.model, &peers.my_app_data()?, &content)?;
    if shared.unpublished {
        peers.set_my_app_data(&charm_lib::Databag::from([(
            backup::PASSPHRASE.key.to_string(),
            shared.id,
        )]))?;
    }
    // This unit's copy follows at once (restore comes next); the others' at their
    // secret-changed hook.
    ctx.machine.write_file(
        std::path::Path::new(backup::PASSPHRASE_FILE),
        pass.as_bytes(),
        &charm_lib::FileOptions::root(0o600),
    )?;
    let now = backup::list(ctx.machine, &target, Some(&pass))?;
    ctx.action_set(&json!({
        "readable": now.backups.len(),
        "other-passphrase": now.sealed.join(","),
    }))
}
