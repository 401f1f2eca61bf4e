//! This unit's TLS material, with no operator work: the leader creates the application's CA
//! once (key and certificate in an application secret, never in a databag or a log); every
//! unit reads it and issues its own certificate for the addresses it serves on (its own, the
//! loopback, the database VIPs). etcd (peers and clients), Patroni's REST API and PostgreSQL
//! all use that one certificate, and all trust only that CA.
//!
//! Every unit can read the CA key, as it can read the superuser's password: a unit's host
//! holds the whole database either way. Keys never cross a relation.

use crate::paths;
use crate::render::Member;
use crate::site_cert::SiteCert;
use charm_lib::tls::{self, KeyedCert};
use charm_lib::{Cmd, Context, Databag, FileOptions, Machine, SharedSecret};
use std::collections::BTreeSet;
use std::path::Path;

/// The CA secret as every unit finds it (read with `--refresh`: a new CA reaches every unit).
pub const CA: SharedSecret = SharedSecret::new(
    "tls-ca",
    "tls-ca-secret",
    "postgresql-ha certificate authority (key and certificate)",
)
.refreshing();
const CA_CERT_FIELD: &str = "ca-cert";
const CA_KEY_FIELD: &str = "ca-key";

/// The addresses this unit's certificate must name: how members (by address), the charm's
/// own tools (loopback) and clients (a VIP) reach it.
pub fn wanted_sans(me: &Member, vips: &[String]) -> BTreeSet<String> {
    let mut sans: BTreeSet<String> = [me.address.clone(), "127.0.0.1".into(), "localhost".into()]
        .into_iter()
        .collect();
    sans.extend(vips.iter().filter(|v| !v.is_empty()).cloned());
    sans
}

/// The CA from the shared secret (the leader creates it); `None` while a non-leader waits for
/// the leader to publish it.
pub fn ca(
    ctx: &Context,
    app: &Databag,
    app_changes: &mut Databag,
) -> anyhow::Result<Option<KeyedCert>> {
    let name = format!("{} CA", ctx.model.app_name());
    let generate = || {
        let ca = tls::new_ca(&name, tls::now())?;
        Ok([
            (CA_CERT_FIELD.to_string(), ca.cert_pem),
            (CA_KEY_FIELD.to_string(), ca.key_pem),
        ]
        .into_iter()
        .collect())
    };
    let Some(s) = CA.resolve(&ctx.model, app, generate)? else {
        return Ok(None);
    };
    if s.unpublished {
        app_changes.insert(CA.key.into(), s.id.clone());
    }
    from_content(&s.id, &s.content).map(Some)
}

/// The CA a non-leader or an action reads: `None` until the leader published it.
pub fn published_ca(ctx: &Context, app: &Databag) -> anyhow::Result<Option<KeyedCert>> {
    match CA.published(&ctx.model, app)? {
        Some((id, content)) => from_content(&id, &content).map(Some),
        None => Ok(None),
    }
}

fn from_content(
    id: &str,
    content: &charm_lib::shared_secret::Content,
) -> anyhow::Result<KeyedCert> {
    match (content.get(CA_CERT_FIELD), content.get(CA_KEY_FIELD)) {
        (Some(c), Some(k)) => Ok(KeyedCert {
            cert_pem: c.clone(),
            key_pem: k.clone(),
        }),
        _ => anyhow::bail!(
            "the {:?} secret {id} lacks {CA_CERT_FIELD:?} or {CA_KEY_FIELD:?}",
            CA.label
        ),
    }
}

/// Writes the CA certificate and (when the one on disk does not serve) a new certificate and
/// key for this unit; then what PostgreSQL presents (the site's certificate when there is one)
/// and what connections to it trust. Returns whether a file changed (the services then pick it
/// up) and the trusted CAs (PEM), which clients receive.
pub fn ensure(
    m: &dyn Machine,
    ca: &KeyedCert,
    me: &Member,
    sans: &BTreeSet<String>,
    site: Option<&SiteCert>,
) -> anyhow::Result<(bool, String)> {
    m.make_dir(Path::new(paths::TLS_DIR), &FileOptions::root(0o755))?;
    let mut changed = m.write_file(
        Path::new(paths::CA_CERT),
        ca.cert_pem.as_bytes(),
        &FileOptions::root(0o644),
    )?;
    let current = read(m, paths::UNIT_CERT)?;
    let unit_cert = match tls::reissue_reason(current.as_deref(), &ca.cert_pem, sans, tls::now()) {
        Some(why) => {
            log::info!("issuing this unit's certificate: {why}");
            changed = true;
            issue(m, ca, me, sans)?
        }
        None => current.unwrap_or_default(),
    };
    let (pg_cert, pg_key) = match site {
        Some(s) => (s.cert_pem.clone(), s.key_pem.clone()),
        None => (unit_cert, read(m, paths::UNIT_KEY)?.unwrap_or_default()),
    };
    let pg_key_opts = FileOptions::new("root", "postgres", 0o640);
    changed |= m.write_file(Path::new(paths::PG_KEY), pg_key.as_bytes(), &pg_key_opts)?;
    changed |= m.write_file(
        Path::new(paths::PG_CERT),
        pg_cert.as_bytes(),
        &FileOptions::root(0o644),
    )?;
    let mut trusted = ca.cert_pem.trim().to_string() + "\n";
    if let Some(s) = site {
        trusted += &s.ca_pem;
    }
    changed |= m.write_file(
        Path::new(paths::TRUSTED),
        trusted.as_bytes(),
        &FileOptions::root(0o644),
    )?;
    Ok((changed, trusted))
}

fn read(m: &dyn Machine, path: &str) -> anyhow::Result<Option<String>> {
    Ok(m.read_file(Path::new(path))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Issues this unit a new key and certificate and writes them; returns the certificate.
pub fn issue(
    m: &dyn Machine,
    ca: &KeyedCert,
    me: &Member,
    sans: &BTreeSet<String>,
) -> anyhow::Result<String> {
    let leaf = tls::issue(ca, &me.name, sans, tls::now())?;
    // Keys first: a reader between the writes sees a key without its certificate for a
    // moment rather than a certificate whose key it cannot find.
    m.write_file(
        Path::new(paths::UNIT_KEY),
        leaf.key_pem.as_bytes(),
        &FileOptions::new("root", "postgres", 0o640),
    )?;
    m.write_file(
        Path::new(paths::ETCD_KEY),
        leaf.key_pem.as_bytes(),
        &FileOptions::new("root", "etcd", 0o640),
    )?;
    m.write_file(
        Path::new(paths::UNIT_CERT),
        leaf.cert_pem.as_bytes(),
        &FileOptions::root(0o644),
    )?;
    Ok(leaf.cert_pem)
}

/// PostgreSQL reads its certificate at start and at reload; Patroni reloads it only when a
/// parameter changes, so a renewed certificate needs this.
pub fn reload_postgres(m: &dyn Machine) -> anyhow::Result<()> {
    let out = m.run(
        &Cmd::new(
            "psql",
            [
                "-h",
                paths::SOCKET_DIR,
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-At",
                "-c",
                "SELECT pg_reload_conf()",
            ],
        )
        .user("postgres")
        .cwd("/")
        .allow_failure(),
    )?;
    if !out.success() {
        log::warn!(
            "PostgreSQL did not reload its certificate yet: {}",
            out.stderr.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_unit_the_loopback_and_the_vips() {
        let me = Member {
            name: "postgresql-ha-0".into(),
            address: "10.0.0.10".into(),
        };
        let sans = wanted_sans(&me, &["10.0.0.200".into(), String::new()]);
        assert_eq!(
            sans.into_iter().collect::<Vec<_>>(),
            ["10.0.0.10", "10.0.0.200", "127.0.0.1", "localhost"]
        );
    }
}
