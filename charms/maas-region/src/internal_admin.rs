//! The charm's own MAAS administrator, as the official charm keeps one (canonical/maas-charms
//! `maas-region/src/charm.py` `_create_or_get_internal_admin`: user `maas-admin-internal`, no
//! e-mail, its password in an application secret labelled `maas-admin`): actions that call
//! MAAS's API (configure-dhcp) need no administrator made by the operator. The leader creates
//! it once MAAS runs; its API key is asked of MAAS on the unit when needed (`maas apikey`,
//! root only) and never stored.

use crate::config::InstallMethod;
use crate::maas;
use charm_lib::{Cmd, Context, Databag, SharedSecret};

/// The user's name in MAAS.
pub const USERNAME: &str = "maas-admin-internal";

/// Its credentials (`username`, `password`), id published in the peer application databag.
pub const ADMIN: SharedSecret = SharedSecret::new(
    "maas-admin",
    "admin-secret-id",
    "maas-region's internal MAAS administrator (username, password)",
);

/// Leader: makes sure the user exists in MAAS and its secret is published. Returns the peer
/// databag write (`admin-secret-id` = id) once both hold, `None` when nothing is left to do or
/// MAAS refused (logged; the next hook tries again).
pub fn ensure(
    ctx: &Context,
    app: &Databag,
    m: InstallMethod,
) -> anyhow::Result<Option<(String, String)>> {
    if ADMIN.id_in(app).is_some() {
        return Ok(None);
    }
    let generate = || {
        let password = charm_lib::random::alphanumeric(24)?;
        Ok([
            ("username".to_string(), USERNAME.to_string()),
            ("password".to_string(), password),
        ]
        .into_iter()
        .collect())
    };
    let Some(shared) = ADMIN.resolve(&ctx.model, app, generate)? else {
        return Ok(None);
    };
    let exists = ctx
        .machine
        .run(&Cmd::new(maas::admin(m), ["apikey", "--username", USERNAME]).allow_failure())?
        .success();
    if !exists {
        let password = shared.content.get("password").cloned().unwrap_or_default();
        // MAAS prompts for a password that is not on the command line, and only on a terminal.
        let cmd = Cmd::new(
            maas::admin(m),
            [
                "createadmin",
                "--username",
                USERNAME,
                "--password",
                password.as_str(),
                "--email",
                "",
            ],
        )
        .sensitive(&password)
        .allow_failure();
        let out = ctx.machine.run(&cmd)?;
        if !out.success() {
            log::warn!(
                "MAAS refused to create {USERNAME} (tried again at the next hook): {}",
                cmd.redact(&maas::reason(&format!("{}\n{}", out.stdout, out.stderr)))
            );
            return Ok(None);
        }
        log::info!("created the internal MAAS administrator {USERNAME}");
    }
    Ok(Some((ADMIN.key.to_string(), shared.id)))
}
