//! create-backup, list-backups and restore (see [`crate::backup`]). Each refuses with what is
//! missing: the relation, the provider's keys, MAAS's files, a database already related.

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
        "regions": regions,
    })
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
    ctx.action_set(&result(&mf))
}

/// list-backups.
pub fn list_backups(ctx: &mut Context, _cfg: &Config) -> anyhow::Result<()> {
    let repo = backup::ready(ctx)?;
    let target = backup::Target::of(&repo);
    let all = backup::list(ctx.machine, &target)?;
    let mut out = serde_json::Map::new();
    for (i, mf) in all.iter().enumerate() {
        out.insert(format!("{i:04}"), result(mf));
    }
    ctx.action_set(&json!({"folder": target.folder(), "count": all.len(), "backups": out}))
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
    let mf = backup::manifest(ctx.machine, &target, id)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no backup {id} in {} (list-backups shows the backups there)",
            target.folder()
        )
    })?;
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
    backup::restore(ctx.machine, &target, &mf, m, &maas_id)?;
    ctx.action_set(&json!({
        "backup-id": mf.id,
        "maas-id": maas_id,
        "restore-to-time": mf.restore_to_time,
        "files": mf.files.join(","),
        "next": format!("relate the database restored to {} (postgresql-ha: restore restore-to-time=\"{}\")", mf.restore_to_time, mf.restore_to_time),
    }))
}
