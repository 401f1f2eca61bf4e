//! The `s3` interface, requirer side (what postgresql-ha's and maas-region's `s3-parameters`
//! endpoints read). Not one of our own interfaces: the provider is s3-integrator (or anything
//! on canonical/data-platform-libs `lib/charms/data_platform_libs/v0/s3.py`,
//! `S3Provider.update_connection_info`; the keys are s3-integrator's `src/constants.py`
//! `S3_OPTIONS`). Its application databag holds `access-key`, `secret-key`, `bucket`,
//! `endpoint`, `region`, `path`, `s3-uri-style`, `storage-class`, `s3-api-version` as strings,
//! and `tls-ca-chain` and `attributes` as JSON lists. The interface has no secrets: the keys
//! travel in the databag as the provider writes them (its limitation, not ours to fix here).
//! Both charms read it here, so they agree on what a usable repository is.

use charm_lib::Databag;

/// The key the requirer names a bucket by: the s3 library's requirer writes one on joining
/// (`S3Requirer._on_relation_joined`, `relation-<id>` by default) and its provider answers only
/// once one is there (`S3Provider._on_relation_changed`: "bucket" in diff.added); s3-integrator
/// prefers its own configured bucket.
pub const BUCKET_KEY: &str = "bucket";

/// The bucket a requirer asks for on relation `id`, as the s3 library names it.
pub fn requested_bucket(relation_id: u32) -> String {
    format!("relation-{relation_id}")
}

/// Where backups go: an S3 bucket (and prefix) reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Host name of the endpoint (the client checks it against the certificate's names).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Bucket.
    pub bucket: String,
    /// Prefix in the bucket, `/`-rooted.
    pub path: String,
    /// Region (requests are signed for it).
    pub region: String,
    /// `path` or `host` style URIs.
    pub uri_style: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// The endpoint's CA chain (PEM), when the provider gave one.
    pub ca_chain: Vec<String>,
}

impl Repository {
    /// Names the repository without its credentials: a new key for the same bucket keeps the
    /// stanza; another endpoint, bucket or path does not.
    pub fn fingerprint(&self) -> String {
        format!(
            "s3://{}:{}/{}{}",
            self.host, self.port, self.bucket, self.path
        )
    }
}

/// What the relation gives, or why it is not usable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryState {
    /// No `s3-parameters` relation: no backups, WAL is not archived.
    NotRelated,
    /// Related, but the provider has not written (all of) its data yet.
    Waiting(String),
    /// The provider's data cannot be used (the key and the reason).
    Invalid(String),
    /// Ready.
    Ready(Repository),
}

/// Reads the provider's application databag.
pub fn parse(data: &Databag) -> RepositoryState {
    let get = |k: &str| data.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let missing: Vec<&str> = ["access-key", "secret-key", "bucket"]
        .into_iter()
        .filter(|k| get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return RepositoryState::Waiting(format!(
            "waiting for the S3 provider's {}",
            missing.join(", ")
        ));
    }
    // s3-integrator leaves the endpoint empty for AWS.
    let endpoint = get("endpoint").unwrap_or("https://s3.amazonaws.com");
    let (host, port) = match parse_endpoint(endpoint) {
        Ok(hp) => hp,
        Err(why) => return RepositoryState::Invalid(format!("endpoint {endpoint:?}: {why}")),
    };
    let uri_style = match get("s3-uri-style").unwrap_or("host") {
        s @ ("host" | "path") => s.to_string(),
        other => {
            return RepositoryState::Invalid(format!(
                "s3-uri-style {other:?}: expected host or path"
            ))
        }
    };
    let ca_chain = match get("tls-ca-chain") {
        None => Vec::new(),
        Some(raw) => match serde_json::from_str::<Vec<String>>(raw) {
            Ok(v) => v,
            Err(_) => {
                return RepositoryState::Invalid(
                    "tls-ca-chain: expected a JSON list of PEM certificates".into(),
                )
            }
        },
    };
    let path = match get("path").unwrap_or("") {
        "" | "/" => String::new(),
        p => format!("/{}", p.trim_matches('/')),
    };
    RepositoryState::Ready(Repository {
        host,
        port,
        bucket: get("bucket").unwrap_or_default().to_string(),
        path,
        region: get("region").unwrap_or("us-east-1").to_string(),
        uri_style,
        access_key: get("access-key").unwrap_or_default().to_string(),
        secret_key: get("secret-key").unwrap_or_default().to_string(),
        ca_chain,
    })
}

/// `https://host[:port][/]` → (host, port). Backups go to S3 over TLS only: the provider's
/// keys and the data would otherwise cross the network in clear.
fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let rest = endpoint
        .strip_prefix("https://")
        .ok_or("backups reach S3 over https only: expected https://HOST[:PORT]")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(
            "expected https://HOST[:PORT] without a path (the path option sets the prefix)".into(),
        );
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?;
            Ok((h.to_string(), port))
        }
        _ => Ok((authority.to_string(), 443)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag;

    fn full() -> Databag {
        bag(&[
            ("access-key", "AK"),
            ("secret-key", "SK"),
            ("bucket", "backups"),
            ("endpoint", "https://s3.example.com:9443/"),
            ("path", "maas/db/"),
            ("region", "eu-west-1"),
            ("s3-uri-style", "path"),
            (
                "tls-ca-chain",
                "[\"-----BEGIN CERTIFICATE-----\\nX\\n-----END CERTIFICATE-----\"]",
            ),
        ])
    }

    #[test]
    fn provider_data_as_s3_integrator_writes_it() {
        let RepositoryState::Ready(r) = parse(&full()) else {
            panic!("{:?}", parse(&full()))
        };
        assert_eq!(r.host, "s3.example.com");
        assert_eq!(r.port, 9443);
        assert_eq!(r.path, "/maas/db");
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.uri_style, "path");
        assert_eq!(r.ca_chain.len(), 1);
        assert_eq!(r.fingerprint(), "s3://s3.example.com:9443/backups/maas/db");
    }

    #[test]
    fn defaults_are_aws_and_host_style() {
        let RepositoryState::Ready(r) = parse(&bag(&[
            ("access-key", "a"),
            ("secret-key", "s"),
            ("bucket", "b"),
        ])) else {
            panic!()
        };
        assert_eq!((r.host.as_str(), r.port), ("s3.amazonaws.com", 443));
        assert_eq!(
            (r.region.as_str(), r.uri_style.as_str(), r.path.as_str()),
            ("us-east-1", "host", "")
        );
    }

    #[test]
    fn missing_and_garbled_data_is_named() {
        let mut b = full();
        b.remove("secret-key");
        b.remove("bucket");
        assert_eq!(
            parse(&b),
            RepositoryState::Waiting("waiting for the S3 provider's secret-key, bucket".into())
        );
        let mut b = full();
        b.insert("tls-ca-chain".into(), "not json".into());
        assert!(matches!(parse(&b), RepositoryState::Invalid(m) if m.starts_with("tls-ca-chain")));
        let mut b = full();
        b.insert("endpoint".into(), "http://s3.example.com".into());
        assert!(matches!(parse(&b), RepositoryState::Invalid(m) if m.contains("https only")));
        let mut b = full();
        b.insert("s3-uri-style".into(), "virtual".into());
        assert!(matches!(parse(&b), RepositoryState::Invalid(m) if m.starts_with("s3-uri-style")));
        let mut b = full();
        b.insert("endpoint".into(), "https://h:notaport".into());
        assert!(matches!(parse(&b), RepositoryState::Invalid(m) if m.contains("port")));
    }
}
