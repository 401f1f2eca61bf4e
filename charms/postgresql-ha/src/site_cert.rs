//! PostgreSQL's server certificate from the site's CA, through the optional `certificates`
//! relation (tls-certificates v4, as `charmlibs.interfaces.tls_certificates` speaks it: the
//! requirer's unit databag `certificate_signing_requests` = JSON list of
//! `{certificate_signing_request, ca}`; the provider's application databag `certificates` = JSON
//! list of `{certificate_signing_request, certificate, ca, chain, revoked}`).
//!
//! Only what clients see changes: the certificate PostgreSQL presents on 5432. etcd and
//! Patroni's REST API keep the application's own CA, because they authenticate members by
//! client certificate and a site CA signs certificates for other applications too. The key is
//! made on this unit and never leaves it; a certificate that does not name every address of
//! the unit (the provider may refuse IP addresses) is not used, so members keep verifying each
//! other with `verify-full`.

use crate::paths;
use crate::render::Member;
use charm_lib::tls;
use charm_lib::{Context, FileOptions, Machine};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The endpoint.
pub const ENDPOINT: &str = "certificates";
/// The requirer's unit databag key.
const REQUESTS: &str = "certificate_signing_requests";

/// What the site's CA gave this unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCert {
    /// The certificate, then its chain (PEM).
    pub cert_pem: String,
    /// The CA that signed it (PEM).
    pub ca_pem: String,
    /// The key made here (PEM).
    pub key_pem: String,
}

/// Where the relation stands for this unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// No `certificates` relation: the application's own certificate serves PostgreSQL.
    NotRelated,
    /// Asked; the provider has not answered this request yet, or answered with a certificate
    /// that cannot serve (the reason).
    Waiting(String),
    /// The certificate to serve.
    Ready(SiteCert),
}

#[derive(Deserialize)]
struct Issued {
    certificate_signing_request: String,
    certificate: String,
    ca: String,
    #[serde(default)]
    chain: Option<Vec<String>>,
    #[serde(default)]
    revoked: Option<bool>,
}

/// Keeps this unit's request in the relation (a key made once, a new request when the
/// addresses change) and returns the provider's answer to exactly that request.
pub fn reconcile(ctx: &Context, me: &Member, sans: &BTreeSet<String>) -> anyhow::Result<Site> {
    let Some(rel) = ctx.model.relation(ENDPOINT)? else {
        return Ok(Site::NotRelated);
    };
    let m = ctx.machine;
    let key = match read(m, paths::SITE_KEY)? {
        Some(k) => k,
        None => {
            let k = tls::new_key()?;
            m.write_file(
                Path::new(paths::SITE_KEY),
                k.as_bytes(),
                &FileOptions::new("root", "postgres", 0o640),
            )?;
            k
        }
    };
    let csr = match read(m, paths::SITE_CSR)? {
        Some(c) if tls::request_serves(&c, &key, sans) => c,
        _ => {
            let c = tls::request(&key, &me.name, sans)?;
            m.write_file(
                Path::new(paths::SITE_CSR),
                c.as_bytes(),
                &FileOptions::root(0o644),
            )?;
            c
        }
    };
    let wanted = serde_json::json!([{"certificate_signing_request": csr, "ca": false}]).to_string();
    let mine = rel.my_unit_data()?;
    if mine.get(REQUESTS) != Some(&wanted) {
        rel.set_my_unit_data(&[(REQUESTS.to_string(), wanted)].into_iter().collect())?;
    }
    let provider = rel.remote_app().unwrap_or("the provider").to_string();
    let issued: Vec<Issued> = match rel.remote_app_data()?.get("certificates") {
        None => Vec::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Site::Waiting(format!(
                    "{provider} sent certificates this charm cannot read ({e})"
                )))
            }
        },
    };
    let Some(answer) = issued
        .into_iter()
        .find(|i| i.certificate_signing_request.trim() == csr.trim() && i.revoked != Some(true))
    else {
        return Ok(Site::Waiting(format!(
            "waiting for {provider} to sign this unit's certificate request"
        )));
    };
    match tls::inspect(&answer.certificate, &answer.ca) {
        Ok(seen) if !seen.signed_by_ca => Ok(Site::Waiting(format!(
            "the certificate from {provider} is not signed by the CA it sent"
        ))),
        Ok(seen) if !sans.is_subset(&seen.sans) => Ok(Site::Waiting(format!(
            "the certificate from {provider} does not name {}: PostgreSQL keeps the application's own",
            sans.difference(&seen.sans).cloned().collect::<Vec<_>>().join(", ")
        ))),
        Ok(_) => {
            let mut cert_pem = answer.certificate.trim().to_string() + "\n";
            for c in answer.chain.unwrap_or_default() {
                if c.trim() != answer.certificate.trim() {
                    cert_pem += &(c.trim().to_string() + "\n");
                }
            }
            Ok(Site::Ready(SiteCert { cert_pem, ca_pem: answer.ca.trim().to_string() + "\n", key_pem: key }))
        }
        Err(e) => Ok(Site::Waiting(format!("the certificate from {provider} does not parse: {e}"))),
    }
}

fn read(m: &dyn Machine, path: &str) -> anyhow::Result<Option<String>> {
    Ok(m.read_file(Path::new(path))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}
