//! What this unit did to its host, kept in Juju's charm state (`state-get`/`state-set`): how
//! MAAS was installed and what the rack is registered with. The shared secret is remembered
//! only as a SHA-256 digest, enough to notice a rotation.

use anyhow::Result;
use charm_lib::tools::HookTools;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const INSTALLED: &str = "installed";
const CHANNEL: &str = "snap-channel";
const DEB_SOURCE: &str = "deb-source";
const URL: &str = "registered-url";
const SECRET: &str = "registered-secret-sha256";

/// The unit's memory of its own actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// `snap` or `deb`, once MAAS was installed by this charm.
    pub installed: Option<String>,
    /// The snap channel installed or last refreshed to.
    pub channel: Option<String>,
    /// The deb-source last applied.
    pub deb_source: Option<String>,
    /// The region URL the rack was registered with.
    pub url: Option<String>,
    /// The digest of the secret it was registered with.
    pub secret_digest: Option<String>,
}

impl Record {
    /// Reads the record from charm state.
    pub fn load(tools: &HookTools) -> Result<Record> {
        let mut m = tools.state_get()?;
        let mut take = |k: &str| m.remove(k).filter(|v| !v.is_empty());
        Ok(Record {
            installed: take(INSTALLED),
            channel: take(CHANNEL),
            deb_source: take(DEB_SOURCE),
            url: take(URL),
            secret_digest: take(SECRET),
        })
    }

    /// Writes the differences from `before` to charm state.
    pub fn save(&self, before: &Record, tools: &HookTools) -> Result<()> {
        let pairs = |r: &Record| -> BTreeMap<&'static str, Option<String>> {
            [
                (INSTALLED, r.installed.clone()),
                (CHANNEL, r.channel.clone()),
                (DEB_SOURCE, r.deb_source.clone()),
                (URL, r.url.clone()),
                (SECRET, r.secret_digest.clone()),
            ]
            .into_iter()
            .collect()
        };
        let (old, new) = (pairs(before), pairs(self));
        let mut set = BTreeMap::new();
        for (k, v) in &new {
            if old[k] != *v {
                match v {
                    Some(v) => {
                        set.insert(k.to_string(), v.clone());
                    }
                    None => tools.state_delete(k)?,
                }
            }
        }
        if !set.is_empty() {
            tools.state_set(&set)?;
        }
        Ok(())
    }

    /// Whether the rack is registered with exactly this URL and secret.
    pub fn registered_with(&self, url: &str, secret: &str) -> bool {
        self.url.as_deref() == Some(url)
            && self.secret_digest.as_deref() == Some(digest(secret).as_str())
    }

    /// Remembers a successful registration.
    pub fn set_registered(&mut self, url: &str, secret: &str) {
        self.url = Some(url.to_string());
        self.secret_digest = Some(digest(secret));
    }

    /// Forgets the registration (the rack was stopped and its secret removed).
    pub fn clear_registration(&mut self) {
        self.url = None;
        self.secret_digest = None;
    }

    /// Whether this charm registered a rack that still stands.
    pub fn is_registered(&self) -> bool {
        self.url.is_some()
    }
}

/// Hex SHA-256 of the secret, domain-separated so the digest is useless anywhere else.
pub fn digest(secret: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"maas-rack shared secret\0")
        .chain_update(secret.trim().as_bytes())
        .finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_hex_and_hides_the_secret() {
        let d = digest("deadbeef");
        assert_eq!(d.len(), 64);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!d.contains("deadbeef"));
        assert_eq!(
            d,
            digest("deadbeef\n"),
            "MAAS trims the secret; so does the digest"
        );
        assert_ne!(d, digest("deadbeee"));
    }

    #[test]
    fn registration_matches_url_and_secret() {
        let mut r = Record::default();
        assert!(!r.registered_with("http://a/MAAS", "aa"));
        r.set_registered("http://a/MAAS", "aa");
        assert!(r.registered_with("http://a/MAAS", "aa"));
        assert!(!r.registered_with("http://b/MAAS", "aa"));
        assert!(!r.registered_with("http://a/MAAS", "bb"));
        r.clear_registration();
        assert!(!r.is_registered());
    }
}
