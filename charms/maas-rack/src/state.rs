//! What this unit did to its host, kept in Juju's charm state (`state-get`/`state-set`): how
//! MAAS was installed and what the rack is registered with. The shared secret is remembered
//! only as a SHA-256 digest, enough to notice a rotation.

use anyhow::Result;
use charm_lib::charm_state;
use charm_lib::tools::HookTools;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The unit's memory of its own actions; each field is one charm-state key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `installed`: `snap` or `deb`, once MAAS was installed by this charm.
    #[serde(default)]
    pub installed: Option<String>,
    /// `snap-channel`: the snap channel installed or last refreshed to.
    #[serde(rename = "snap-channel", default)]
    pub channel: Option<String>,
    /// `snap-held`: snapd's own refreshes of the snap are held (`snap refresh --hold`).
    #[serde(rename = "snap-held", default)]
    pub held: charm_lib::charm_state::Yes,
    /// `deb-source`: the deb-source last applied.
    #[serde(rename = "deb-source", default)]
    pub deb_source: Option<String>,
    /// `registered-url`: the region URL the rack was registered with.
    #[serde(rename = "registered-url", default)]
    pub url: Option<String>,
    /// `registered-secret-sha256`: the digest of the secret it was registered with.
    #[serde(rename = "registered-secret-sha256", default)]
    pub secret_digest: Option<String>,
}

impl Record {
    /// Reads the record from charm state.
    pub fn load(tools: &HookTools) -> Result<Record> {
        Ok(charm_state::load(tools)?)
    }

    /// Writes the differences from `before` to charm state.
    pub fn save(&self, before: &Record, tools: &HookTools) -> Result<()> {
        Ok(charm_state::save(tools, before, self)?)
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
    fn the_record_keeps_its_charm_state_keys() {
        let r = Record {
            installed: Some("snap".into()),
            channel: Some("3.5/stable".into()),
            deb_source: Some("ppa:maas/3.5".into()),
            url: Some("http://a/MAAS".into()),
            secret_digest: Some("ab".into()),
            held: charm_lib::charm_state::Yes(true),
        };
        let b = charm_lib::databag::to_databag(&r).unwrap();
        let keys: Vec<&str> = b.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "deb-source",
                "installed",
                "registered-secret-sha256",
                "registered-url",
                "snap-channel",
                "snap-held"
            ]
        );
        assert_eq!(charm_lib::databag::from_databag::<Record>(&b).unwrap(), r);
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
