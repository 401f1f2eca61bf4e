//! Certificates without operator work: an application's own certificate authority and the
//! unit certificates it issues.
//!
//! The leader creates the CA once and keeps it (key and certificate) in an application
//! secret ([`crate::shared_secret`]); every unit reads it and issues its own certificate for
//! the addresses it serves on, so no private key ever crosses a relation. Whether a unit's
//! certificate must be issued again is derived from the certificate on disk
//! ([`Inspected`]): another CA, a missing address, or close to its end.
//!
//! Keys are ECDSA P-256: what etcd, PostgreSQL (OpenSSL), Python's ssl and curl all take,
//! and small enough that issuing one costs nothing in a hook.

use anyhow::{anyhow, Context as _};
pub use rcgen::SanType;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use std::collections::BTreeSet;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// How long a CA is valid.
pub const CA_DAYS: i64 = 3650;
/// How long a unit certificate is valid.
pub const LEAF_DAYS: i64 = 365;
/// A unit certificate with less than this left is issued again.
pub const RENEW_DAYS: i64 = 30;
/// Clock skew between machines a fresh certificate tolerates.
const BACKDATE: Duration = Duration::hours(1);

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

// The key is what must never reach a log.
impl std::fmt::Debug for KeyedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = crate::random::bytes(16)?;
    // A positive INTEGER: the top bit clear.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A new CA named `name` (e.g. `postgresql-ha CA`), valid [`CA_DAYS`] from `now`.
pub fn new_ca(name: &str, now: OffsetDateTime) -> anyhow::Result<KeyedCert> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(CA_DAYS);
    p.serial_number = Some(random_serial()?);
    let cert = p.self_signed(&key).context("signing the CA certificate")?;
    Ok(KeyedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `common_name` and `sans` (addresses or DNS names) signed by `ca`,
/// for both server and client authentication (members are both to each other).
pub fn issue(
    ca: &KeyedCert,
    common_name: &str,
    sans: &BTreeSet<String>,
    now: OffsetDateTime,
) -> anyhow::Result<KeyedCert> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("the CA key is not a PEM private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| anyhow!("the CA certificate does not parse: {e}"))?;
    let key = KeyPair::generate().context("generating a key")?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.subject_alt_names = san_types(sans)?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(LEAF_DAYS);
    p.serial_number = Some(random_serial()?);
    let cert = p
        .signed_by(&key, &issuer)
        .context("signing a unit certificate")?;
    Ok(KeyedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn san_types(sans: &BTreeSet<String>) -> anyhow::Result<Vec<SanType>> {
    sans.iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| anyhow!("{s:?} is neither an address nor a DNS name: {e}")),
        })
        .collect()
}

/// A new private key (PEM), for a certificate someone else issues.
pub fn new_key() -> anyhow::Result<String> {
    Ok(KeyPair::generate()
        .context("generating a key")?
        .serialize_pem())
}

/// A certificate signing request (PEM) for `key_pem`, naming `common_name` and `sans`: what a
/// tls-certificates requirer sends its provider.
pub fn request(
    key_pem: &str,
    common_name: &str,
    sans: &BTreeSet<String>,
) -> anyhow::Result<String> {
    let key = KeyPair::from_pem(key_pem).context("the key is not a PEM private key")?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.subject_alt_names = san_types(sans)?;
    let csr = p
        .serialize_request(&key)
        .context("signing the certificate request")?;
    csr.pem()
        .map_err(|e| anyhow!("encoding the certificate request: {e}"))
}

/// Whether the request `csr_pem` was made with `key_pem` and names exactly `sans`: if not, a
/// new request is due.
pub fn request_serves(csr_pem: &str, key_pem: &str, sans: &BTreeSet<String>) -> bool {
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::FromDer;
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, csr)) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
    else {
        return false;
    };
    if csr
        .certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .as_ref()
        != key.public_key_raw()
    {
        return false;
    }
    let mut named = BTreeSet::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            named.extend(san.general_names.iter().filter_map(general_name_text));
        }
    }
    named == *sans
}

fn general_name_text(name: &x509_parser::extensions::GeneralName) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(d) => Some(d.to_string()),
        GeneralName::IPAddress(b) => match b.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Signs `csr_pem` with `ca`, keeping the names it asks for (a tls-certificates provider's
/// job; `names` restricts them, e.g. a provider that refuses IP addresses).
pub fn sign_request(
    ca: &KeyedCert,
    csr_pem: &str,
    names: impl Fn(&SanType) -> bool,
    now: OffsetDateTime,
) -> anyhow::Result<String> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("the CA key is not a PEM private key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| anyhow!("the CA certificate does not parse: {e}"))?;
    let mut req = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow!("not a certificate signing request: {e}"))?;
    req.params.subject_alt_names.retain(|n| names(n));
    req.params.not_before = now - BACKDATE;
    req.params.not_after = now + Duration::days(LEAF_DAYS);
    req.params.serial_number = Some(random_serial()?);
    req.params.use_authority_key_identifier_extension = true;
    Ok(req.signed_by(&issuer).context("signing the request")?.pem())
}

/// What a certificate on disk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Its subject alternative names: IP addresses and DNS names, as text.
    pub sans: BTreeSet<String>,
    /// When it ends (Unix seconds).
    pub not_after: i64,
    /// Whether `ca` signed it.
    pub signed_by_ca: bool,
}

fn parse_pem(pem_text: &str) -> anyhow::Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    Ok(pem.contents)
}

/// Reads `cert_pem` and checks its signature against `ca_cert_pem`.
pub fn inspect(cert_pem: &str, ca_cert_pem: &str) -> anyhow::Result<Inspected> {
    let der = parse_pem(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let ca_der = parse_pem(ca_cert_pem)?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| anyhow!("the CA is not an X.509 certificate: {e}"))?;
    let mut sans = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        sans.extend(ext.value.general_names.iter().filter_map(general_name_text));
    }
    let signed_by_ca =
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    Ok(Inspected {
        sans,
        not_after: cert.validity().not_after.timestamp(),
        signed_by_ca,
    })
}

/// Why the certificate on disk (`None`: there is none) must be issued again, or `None` when it
/// serves: signed by `ca`, naming every one of `sans`, and more than [`RENEW_DAYS`] left.
pub fn reissue_reason(
    current: Option<&str>,
    ca_cert_pem: &str,
    sans: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Option<String> {
    let Some(pem) = current else {
        return Some("no certificate yet".into());
    };
    let seen = match inspect(pem, ca_cert_pem) {
        Ok(s) => s,
        Err(e) => return Some(format!("the certificate on disk is unreadable ({e})")),
    };
    if !seen.signed_by_ca {
        return Some("the certificate on disk is from another CA".into());
    }
    let missing: Vec<&String> = sans.difference(&seen.sans).collect();
    if !missing.is_empty() {
        return Some(format!(
            "the certificate does not name {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if seen.sans != *sans {
        return Some("the certificate names addresses this unit no longer has".into());
    }
    if seen.not_after - now.unix_timestamp() < RENEW_DAYS * 86_400 {
        return Some(format!("the certificate ends within {RENEW_DAYS} days"));
    }
    None
}

/// The current time, for the functions above.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (what actions report); empty when out of
/// range.
pub fn format_utc(epoch_seconds: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(epoch_seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_issued_certificate_names_its_addresses_and_its_ca() {
        let now = now();
        let ca = new_ca("test CA", now).unwrap();
        let want = sans(&["10.0.0.1", "127.0.0.1", "db-1", "::1"]);
        let leaf = issue(&ca, "db-1", &want, now).unwrap();
        let seen = inspect(&leaf.cert_pem, &ca.cert_pem).unwrap();
        assert_eq!(seen.sans, want);
        assert!(seen.signed_by_ca);
        assert!((seen.not_after - now.unix_timestamp() - LEAF_DAYS * 86_400).abs() < 5);
        assert_eq!(
            reissue_reason(Some(&leaf.cert_pem), &ca.cert_pem, &want, now),
            None
        );
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert!(
            !format!("{leaf:?}").contains("PRIVATE"),
            "Debug shows no key"
        );
    }

    #[test]
    fn reissue_when_the_ca_the_addresses_or_the_time_say_so() {
        let now = now();
        let ca = new_ca("test CA", now).unwrap();
        let other = new_ca("test CA", now).unwrap();
        let want = sans(&["10.0.0.1"]);
        let leaf = issue(&ca, "u", &want, now).unwrap();
        assert_eq!(
            reissue_reason(None, &ca.cert_pem, &want, now).as_deref(),
            Some("no certificate yet")
        );
        assert_eq!(
            reissue_reason(Some(&leaf.cert_pem), &other.cert_pem, &want, now).as_deref(),
            Some("the certificate on disk is from another CA"),
            "same name, other key: the signature decides"
        );
        assert_eq!(
            reissue_reason(
                Some(&leaf.cert_pem),
                &ca.cert_pem,
                &sans(&["10.0.0.1", "10.0.0.100"]),
                now
            )
            .as_deref(),
            Some("the certificate does not name 10.0.0.100")
        );
        assert!(reissue_reason(Some(&leaf.cert_pem), &ca.cert_pem, &sans(&[]), now).is_some());
        let later = now + Duration::days(LEAF_DAYS - RENEW_DAYS + 1);
        assert!(
            reissue_reason(Some(&leaf.cert_pem), &ca.cert_pem, &want, later)
                .unwrap()
                .contains("ends within")
        );
        assert!(reissue_reason(Some("garbage"), &ca.cert_pem, &want, now)
            .unwrap()
            .contains("unreadable"));
    }

    #[test]
    fn a_request_names_its_key_and_addresses() {
        let key = new_key().unwrap();
        let want = sans(&["10.0.0.1", "db-1"]);
        let csr = request(&key, "db-1", &want).unwrap();
        assert!(
            csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{csr}"
        );
        assert!(request_serves(&csr, &key, &want));
        assert!(
            !request_serves(&csr, &key, &sans(&["10.0.0.1"])),
            "another set of names"
        );
        assert!(
            !request_serves(&csr, &new_key().unwrap(), &want),
            "another key"
        );
        assert!(!request_serves("garbage", &key, &want));
        let ca = new_ca("site CA", now()).unwrap();
        let cert = sign_request(&ca, &csr, |_| true, now()).unwrap();
        let seen = inspect(&cert, &ca.cert_pem).unwrap();
        assert!(seen.signed_by_ca);
        assert_eq!(seen.sans, want);
        let no_ips =
            sign_request(&ca, &csr, |n| !matches!(n, SanType::IpAddress(_)), now()).unwrap();
        assert_eq!(
            inspect(&no_ips, &ca.cert_pem).unwrap().sans,
            sans(&["db-1"])
        );
    }

    /// OpenSSL, which PostgreSQL, etcd's peers' curl and Python use, accepts the chain.
    #[test]
    fn openssl_verifies_the_chain() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no openssl here");
            return;
        }
        let dir = std::env::temp_dir().join(format!("charm-lib-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = new_ca("test CA", now()).unwrap();
        let leaf = issue(&ca, "u", &sans(&["10.1.2.3", "host-a"]), now()).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("leaf.pem"), &leaf.cert_pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "verify",
                "-purpose",
                "sslserver",
                "-verify_ip",
                "10.1.2.3",
                "-CAfile",
            ])
            .arg(dir.join("ca.pem"))
            .arg(dir.join("leaf.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        let wrong_ip = std::process::Command::new("openssl")
            .args(["verify", "-verify_ip", "10.9.9.9", "-CAfile"])
            .arg(dir.join("ca.pem"))
            .arg(dir.join("leaf.pem"))
            .output()
            .unwrap();
        assert!(
            !wrong_ip.status.success(),
            "an address the certificate does not name fails"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
