//! MAAS's HTTPS certificate, with no operator work (`tls-enabled`).
//!
//! MAAS keeps one certificate for the whole region in its database: `maas config-tls enable`
//! stores the key, the certificate and the CA chain there and every regiond renders it into
//! its own nginx (canonical/maas `src/maasserver/management/commands/config_tls.py`
//! `_update_tls_config`, `src/maasserver/regiondservices/http.py` `_configure`). So one unit,
//! the leader, runs it, once per certificate: the leader keeps the application's CA and that
//! certificate in one application secret (keys never in a databag or a log), issues the
//! certificate for every name a user or a region may use (each region's address and host
//! name, the VIP, the `maas-url` host, the loopback), and issues it again when that set changes
//! or 30 days before it ends. The CA certificate (public) goes to the peer databag, where every
//! unit reads it to call its own region over HTTPS (the actions) and tells users to trust it.
//!
//! Racks stay on http: enrolment and the RPC discovery (`/MAAS/rpc/`) are among the paths
//! MAAS's nginx keeps on port 5240 with TLS on (`regiond.nginx.conf.template`).

use crate::config::InstallMethod;
use charm_lib::tls::{self, KeyedCert};
use charm_lib::{Cmd, Context, Databag, FileOptions, Machine, SharedSecret, Status};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The application secret: CA key and certificate, the region certificate and its key.
pub const TLS: SharedSecret = SharedSecret::new(
    "maas-tls",
    app_keys::SECRET_ID,
    "maas-region TLS: the application's CA and the certificate every region serves",
);

/// Peer application databag keys (the leader writes them).
pub mod app_keys {
    /// The id of [`super::TLS`].
    pub const SECRET_ID: &str = "tls-secret-id";
    /// The CA certificate (PEM), which every unit and every user trusts.
    pub const CA_CERT: &str = "tls-ca";
    /// The digest ([`super::digest`]) of the certificate `maas config-tls enable` last stored
    /// in MAAS's database; absent while MAAS serves no TLS.
    pub const APPLIED: &str = "tls-applied";
}

const CA_CERT: &str = "ca-cert";
const CA_KEY: &str = "ca-key";
const CERT: &str = "cert";
const KEY: &str = "key";

/// The port MAAS serves HTTPS on (`config-tls`'s default, kept explicit).
pub const TLS_PORT: u16 = 5443;

/// Where a unit keeps the CA certificate for its own MAAS CLI (`maas login --cacerts`): under
/// the snap's common directory, which the confined `maas` command can read.
pub fn ca_file(m: InstallMethod) -> &'static Path {
    match m {
        InstallMethod::Snap => Path::new("/var/snap/maas/common/juju-maas-region-ca.pem"),
        InstallMethod::Deb => Path::new("/etc/maas/juju-maas-region-ca.pem"),
    }
}

/// The directory (root only) the leader hands `maas config-tls` its files in; the key is
/// removed as soon as MAAS has stored it.
fn handover_dir(m: InstallMethod) -> PathBuf {
    match m {
        InstallMethod::Snap => PathBuf::from("/var/snap/maas/common/juju-tls"),
        InstallMethod::Deb => PathBuf::from("/etc/maas/juju-tls"),
    }
}

/// The certificate exporter (charm-lib `cert_metrics`): beside postgresql-ha's 9957 and past
/// keepalived-vip's exporters (9700 + router id, up to 9955), which share the machine,
/// as the bundle places regions with the database units; loopback only.
pub const CERT_METRICS: charm_lib::cert_metrics::Service = charm_lib::cert_metrics::Service {
    name: "maas-region-cert-metrics",
    port: 9958,
};

/// The certificate this region's nginx serves, as regiond writes it from MAAS's database: the
/// certificate and its CA chain in `certs/regiond-proxy.pem` under MAAS's HTTP configuration
/// directory (canonical/maas src/maasserver/regiondservices/http.py
/// `RegionHTTPService._create_cert_files`; the directory is `$SNAP_DATA/http` in the snap,
/// snap/local/tree/usr/bin/run-regiond, and /var/lib/maas/http for the debs,
/// src/provisioningserver/rackdservices/http.py `get_http_config_dir`). Read there rather
/// than from the secret: it is what clients get, on every region, leader or not.
pub fn served_cert(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Snap => "/var/snap/maas/current/http/certs/regiond-proxy.pem",
        InstallMethod::Deb => "/var/lib/maas/http/certs/regiond-proxy.pem",
    }
}

/// Every unit: the certificate exporter over [`served_cert`] while MAAS serves TLS as wanted
/// (`tls-applied`), retired otherwise.
pub fn apply_exporter(
    ctx: &Context,
    m: InstallMethod,
    enabled: bool,
    app: &crate::peers::AppBag,
) -> anyhow::Result<()> {
    let files: &[&str] = if enabled && app.tls_applied.is_some() {
        &[served_cert(m)]
    } else {
        &[]
    };
    charm_lib::cert_metrics::apply(ctx, &CERT_METRICS, files)
}

/// Short, stable name of a certificate: what the peer databag records as applied.
pub fn digest(cert_pem: &str) -> String {
    let d = Sha256::digest(cert_pem.trim().as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Every name the region certificate must carry.
pub fn wanted_sans(
    region_addresses: &[String],
    region_hostnames: &[String],
    vip: Option<&str>,
    maas_url: Option<&str>,
) -> BTreeSet<String> {
    let mut sans: BTreeSet<String> = ["127.0.0.1".to_string(), "localhost".to_string()]
        .into_iter()
        .collect();
    sans.extend(region_addresses.iter().filter(|a| !a.is_empty()).cloned());
    sans.extend(region_hostnames.iter().filter(|h| !h.is_empty()).cloned());
    sans.extend(vip.map(str::to_string));
    sans.extend(maas_url.and_then(url_host));
    sans
}

/// The host of `http(s)://host[:port]/...` (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// What the leader's step decided, for the caller's status and databag.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Peer application databag writes (key → value; empty value deletes).
    pub app_changes: Databag,
    /// A status to report (the TLS half failed or waits).
    pub status: Option<Status>,
}

/// The leader's step: keeps the CA and the region certificate, and makes MAAS serve it
/// (`maas config-tls enable`) or stop serving TLS (`disable`) when `enabled` says so. Runs
/// MAAS commands only when `running` (this region is initialised and serves).
pub fn leader_step(
    ctx: &Context,
    app: &Databag,
    m: InstallMethod,
    enabled: bool,
    running: bool,
    sans: &BTreeSet<String>,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let applied = app.get(app_keys::APPLIED).filter(|v| !v.is_empty());
    if !enabled {
        if applied.is_some() && running {
            ctx.machine
                .run(&Cmd::new(crate::maas::cli(m), ["config-tls", "disable"]))?;
            log::info!("MAAS TLS disabled (maas config-tls disable)");
            out.app_changes
                .insert(app_keys::APPLIED.into(), String::new());
        }
        return Ok(out);
    }
    let name = format!("{} CA", ctx.model.app_name());
    let generate = || {
        let ca = tls::new_ca(&name, tls::now())?;
        Ok([
            (CA_CERT.to_string(), ca.cert_pem),
            (CA_KEY.to_string(), ca.key_pem),
        ]
        .into_iter()
        .collect())
    };
    let Some(shared) = TLS.resolve(&ctx.model, app, generate)? else {
        return Ok(out);
    };
    let mut content = shared.content.clone();
    let (Some(ca_cert), Some(ca_key)) = (content.get(CA_CERT), content.get(CA_KEY)) else {
        out.status = Some(Status::blocked(format!(
            "the {:?} secret has no CA ({CA_CERT}, {CA_KEY}): remove it (juju remove-secret) and the leader creates a new one",
            TLS.label
        )));
        return Ok(out);
    };
    let ca = KeyedCert {
        cert_pem: ca_cert.clone(),
        key_pem: ca_key.clone(),
    };
    let reason = tls::reissue_reason(
        content.get(CERT).map(String::as_str),
        &ca.cert_pem,
        sans,
        tls::now(),
    );
    if let Some(why) = reason {
        let leaf = tls::issue(
            &ca,
            &format!("{} MAAS", ctx.model.app_name()),
            sans,
            tls::now(),
        )?;
        log::info!("issuing the MAAS region certificate: {why}");
        content.insert(CERT.into(), leaf.cert_pem);
        content.insert(KEY.into(), leaf.key_pem);
        TLS.put(&ctx.model, &content)?;
    }
    if shared.unpublished {
        out.app_changes.insert(TLS.key.into(), shared.id.clone());
    }
    if app.get(app_keys::CA_CERT) != Some(&ca.cert_pem) {
        out.app_changes
            .insert(app_keys::CA_CERT.into(), ca.cert_pem.clone());
    }
    let cert = &content[CERT];
    let wanted = digest(cert);
    if applied == Some(&wanted) || !running {
        return Ok(out);
    }
    config_tls_enable(ctx, m, &ca.cert_pem, cert, &content[KEY])?;
    log::info!("MAAS serves TLS on {TLS_PORT} with certificate {wanted}");
    out.app_changes.insert(app_keys::APPLIED.into(), wanted);
    Ok(out)
}

/// `maas config-tls enable KEY CERT --cacert CA -p 5443 --yes`, the files in a root-only
/// directory, the key removed again whatever MAAS answered.
fn config_tls_enable(
    ctx: &Context,
    m: InstallMethod,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<()> {
    let dir = handover_dir(m);
    ctx.machine.make_dir(&dir, &FileOptions::root(0o700))?;
    let (key, cert, ca) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("ca.pem"),
    );
    ctx.machine
        .write_file(&key, key_pem.as_bytes(), &FileOptions::root(0o600))?;
    ctx.machine
        .write_file(&cert, cert_pem.as_bytes(), &FileOptions::root(0o600))?;
    ctx.machine
        .write_file(&ca, ca_pem.as_bytes(), &FileOptions::root(0o600))?;
    let port = TLS_PORT.to_string();
    let argv: Vec<String> = [
        "config-tls",
        "enable",
        &key.to_string_lossy(),
        &cert.to_string_lossy(),
        "--cacert",
        &ca.to_string_lossy(),
        "-p",
        &port,
        "--yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = ctx.machine.run(&Cmd::new(crate::maas::cli(m), argv));
    ctx.machine.remove_file(&key)?;
    result?;
    Ok(())
}

/// Every unit: the CA file its own CLI trusts, while TLS is on (removed when off).
pub fn ensure_ca_file(
    machine: &dyn Machine,
    m: InstallMethod,
    ca_pem: Option<&str>,
) -> anyhow::Result<()> {
    match ca_pem {
        Some(pem) => {
            machine.write_file(ca_file(m), pem.as_bytes(), &FileOptions::root(0o644))?;
        }
        None => {
            if machine.read_file(ca_file(m))?.is_some() {
                machine.remove_file(ca_file(m))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_name_every_region_the_vip_the_url_host_and_the_loopback() {
        let sans = wanted_sans(
            &["10.0.0.2".into(), "10.0.0.3".into()],
            &["region-a".into()],
            Some("10.0.0.100"),
            Some("https://maas.example.com:8443/MAAS"),
        );
        for s in [
            "10.0.0.2",
            "10.0.0.3",
            "region-a",
            "10.0.0.100",
            "maas.example.com",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(sans.contains(s), "{s} missing from {sans:?}");
        }
        assert_eq!(sans.len(), 7);
    }

    #[test]
    fn url_hosts_are_read_as_urls_are_written() {
        assert_eq!(
            url_host("http://10.0.0.1/MAAS").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("http://10.0.0.1:5240/MAAS").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("http://[fd00::1]:5240/MAAS").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(url_host("nonsense"), None);
    }

    #[test]
    fn the_digest_ignores_surrounding_whitespace_and_tells_certificates_apart() {
        assert_eq!(digest("A\n"), digest("A"));
        assert_ne!(digest("A"), digest("B"));
        assert_eq!(digest("A").len(), 32);
    }
}
