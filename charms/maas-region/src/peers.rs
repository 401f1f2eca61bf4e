//! The peer relation's (`cluster`) two databags as types: [`AppBag`], which the leader alone
//! writes, and [`UnitBag`], which each region writes about itself. Read and written with
//! [`charm_lib::databag`]; the wire format (keys and value encodings) is the one earlier
//! revisions wrote, so a `juju refresh` of the charm reads its peers mid-upgrade, in both
//! directions. A value that does not parse is an error naming its key (never a default: a
//! garbled `init-lock` read as "nobody holds it" would let two regions run `maas init` at once);
//! [`unusable`] turns it into the status the unit reports.

use charm_lib::databag::to_databag;
use charm_lib::{Databag, Status};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// The keys, as they travel.
pub mod keys {
    /// App: the MAAS URL every region uses.
    pub const MAAS_URL: &str = "maas-url";
    /// App: the Juju secret id of the MAAS shared secret.
    pub const SECRET_ID: &str = "secret-id";
    /// App (deb): the database (`name@host:port`) the leader migrated.
    pub const MIGRATIONS_DONE: &str = "migrations-done";
    /// App: `<unit>#<token>` of the request that may initialise (or refresh) now.
    pub const LOCK: &str = "init-lock";
    /// App: `<channel>#<n>`, the operator let the refresh to `channel` go on after `n`
    /// regions had refreshed (`resume-refresh`).
    pub const RESUMED: &str = "refresh-resumed";
    /// App: `true` once the leader turned MAAS's `prometheus_enabled` on.
    pub const STATS_ENABLED: &str = "prometheus-enabled";
    /// Unit: the region's host name (the rpc `regions` list, the certificate's names).
    pub const HOSTNAME: &str = "hostname";
    /// Unit: the region's address (haproxy backend).
    pub const ADDRESS: &str = "address";
    /// Unit: the token (a whole number) of the unit's open init-lock request.
    pub const REQUEST: &str = "init-request";
    /// Unit: the lock value (`<unit>#<token>`) of the refresh this unit is draining for.
    pub const DRAIN: &str = "refresh-drain";
    /// Unit: the drain values (comma-separated, sorted) this unit's haproxy has applied.
    pub const DRAINED: &str = "refresh-drained";
    /// Unit: the snap channel this region's MAAS runs (snap installs).
    pub const CHANNEL: &str = "maas-channel";
    /// Unit: this region's `maas_id` (what a backup names it by).
    pub const MAAS_ID: &str = "maas-id";
}

/// The init lock's value: which unit's request (by its token) may initialise or refresh now.
/// Travels as `<unit>#<token>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockValue {
    /// The unit (`maas-region/N`).
    pub unit: String,
    /// The token of its request ([`UnitBag::request`]).
    pub token: u64,
}

impl LockValue {
    /// The grant of `unit`'s request `token`.
    pub fn new(unit: &str, token: u64) -> LockValue {
        LockValue {
            unit: unit.to_string(),
            token,
        }
    }
}

impl fmt::Display for LockValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.unit, self.token)
    }
}

impl std::str::FromStr for LockValue {
    type Err = String;
    fn from_str(s: &str) -> Result<LockValue, String> {
        let bad = || format!("{s:?} is not <unit>#<token> (e.g. maas-region/0#1)");
        let (unit, token) = s.trim().rsplit_once('#').ok_or_else(bad)?;
        let token = token.parse().map_err(|_| bad())?;
        if unit.is_empty() {
            return Err(bad());
        }
        Ok(LockValue::new(unit, token))
    }
}

/// `Display` out, `FromStr` in: one databag value as text.
macro_rules! text_value {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

text_value!(LockValue);
text_value!(Resumed);
text_value!(Drained);

/// The operator's `resume-refresh`: the refresh to `channel` goes on after `after` regions.
/// Travels as `<channel>#<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The channel refreshed to.
    pub channel: String,
    /// How many regions ran it when the operator resumed.
    pub after: usize,
}

impl fmt::Display for Resumed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.channel, self.after)
    }
}

impl std::str::FromStr for Resumed {
    type Err = String;
    fn from_str(s: &str) -> Result<Resumed, String> {
        let bad = || format!("{s:?} is not <channel>#<regions> (e.g. 3.6/stable#1)");
        let (channel, n) = s.trim().rsplit_once('#').ok_or_else(bad)?;
        Ok(Resumed {
            channel: channel.to_string(),
            after: n.parse().map_err(|_| bad())?,
        })
    }
}

/// The drain requests a region's haproxy has applied. Travels comma-separated, sorted as text
/// (so the value changes only when the set does); empty deletes the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained(pub BTreeSet<LockValue>);

impl Drained {
    /// Whether it acknowledges `value`.
    pub fn contains(&self, value: &LockValue) -> bool {
        self.0.contains(value)
    }
}

impl fmt::Display for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text: Vec<String> = self.0.iter().map(LockValue::to_string).collect();
        text.sort();
        f.write_str(&text.join(","))
    }
}

impl std::str::FromStr for Drained {
    type Err = String;
    fn from_str(s: &str) -> Result<Drained, String> {
        s.split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Drained)
    }
}

/// The peer application databag (the leader writes it; every region reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBag {
    /// [`keys::MAAS_URL`].
    #[serde(rename = "maas-url", default)]
    pub maas_url: Option<String>,
    /// [`keys::SECRET_ID`] (written by [`crate::reconcile`]'s `SharedSecret`).
    #[serde(rename = "secret-id", default)]
    pub secret_id: Option<String>,
    /// [`keys::MIGRATIONS_DONE`].
    #[serde(rename = "migrations-done", default)]
    pub migrations_done: Option<String>,
    /// [`keys::LOCK`]: `None` while nobody may initialise.
    #[serde(rename = "init-lock", default)]
    pub lock: Option<LockValue>,
    /// [`keys::RESUMED`].
    #[serde(rename = "refresh-resumed", default)]
    pub resumed: Option<Resumed>,
    /// `tls-secret-id` ([`crate::certs::app_keys::SECRET_ID`]).
    #[serde(rename = "tls-secret-id", default)]
    pub tls_secret_id: Option<String>,
    /// `tls-ca` ([`crate::certs::app_keys::CA_CERT`]): PEM.
    #[serde(rename = "tls-ca", default)]
    pub tls_ca: Option<String>,
    /// `tls-applied` ([`crate::certs::app_keys::APPLIED`]).
    #[serde(rename = "tls-applied", default)]
    pub tls_applied: Option<String>,
    /// `admin-secret-id` ([`crate::internal_admin::ADMIN`]).
    #[serde(rename = "admin-secret-id", default)]
    pub admin_secret_id: Option<String>,
    /// [`keys::STATS_ENABLED`]: written `true` only.
    #[serde(rename = "prometheus-enabled", default)]
    pub stats_enabled: Option<bool>,
    /// `backup-passphrase-secret` ([`crate::backup::PASSPHRASE`]).
    #[serde(rename = "backup-passphrase-secret", default)]
    pub backup_passphrase_secret: Option<String>,
}

/// One region's peer unit databag, as it describes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitBag {
    /// [`keys::HOSTNAME`].
    #[serde(default)]
    pub hostname: Option<String>,
    /// [`keys::ADDRESS`].
    #[serde(default)]
    pub address: Option<String>,
    /// [`keys::REQUEST`]: `None` while the unit does not ask for the lock.
    #[serde(rename = "init-request", default)]
    pub request: Option<u64>,
    /// [`keys::DRAIN`].
    #[serde(rename = "refresh-drain", default)]
    pub drain: Option<LockValue>,
    /// [`keys::DRAINED`].
    #[serde(rename = "refresh-drained", default)]
    pub drained: Drained,
    /// [`keys::CHANNEL`].
    #[serde(rename = "maas-channel", default)]
    pub channel: Option<String>,
    /// [`keys::MAAS_ID`].
    #[serde(rename = "maas-id", default)]
    pub maas_id: Option<String>,
}

/// The databag changes that take `old` to `new`: only the keys whose value differs (a field
/// that became `None` goes out empty, which deletes it); keys neither type knows stay as they
/// are.
pub fn changes<T: Serialize>(old: &T, new: &T) -> anyhow::Result<Databag> {
    Ok(crate::relations::changed(
        &to_databag(old)?,
        &to_databag(new)?,
    ))
}

/// The Blocked status of a peer databag that does not parse (`e`, from the typed read), naming
/// the relation, the databag's owner and the key, and how to clear it. Only an operator can: a
/// region never overwrites a value it cannot read, and no other unit may write it. `None`:
/// `e` is not about a databag's shape.
pub fn unusable(e: &charm_lib::Error, leader_writes: bool) -> Option<Status> {
    let charm_lib::Error::Databag {
        relation,
        owner,
        problem,
    } = e
    else {
        return None;
    };
    // charm-lib's databag reader words every value error `key "<key>": ...`.
    let key = problem
        .0
        .strip_prefix("key \"")
        .and_then(|k| k.split_once('"'))
        .map_or("<key>", |(k, _)| k);
    let fix = if leader_writes {
        format!(
            "juju exec --unit {}/leader -- relation-set -r {relation} --app {key}=",
            relation_app(owner)
        )
    } else {
        format!("juju exec --unit {owner} -- relation-set -r {relation} {key}=")
    };
    Some(Status::blocked(format!(
        "unusable peer data of {owner} ({relation}): {problem}: fix or delete that key ({fix})"
    )))
}

/// The application of a unit or application name.
fn relation_app(owner: &str) -> &str {
    owner.split('/').next().unwrap_or(owner)
}

/// A typed read, or the status [`unusable`] gives when its databag does not parse.
pub fn surfaced<T>(
    read: charm_lib::Result<T>,
    leader_writes: bool,
) -> anyhow::Result<Result<T, Status>> {
    match read {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match unusable(&e, leader_writes) {
            Some(s) => Ok(Err(s)),
            None => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use charm_lib::databag::from_databag;

    fn bag(pairs: &[(&str, &str)]) -> Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Databags as the previous revision wrote them (its `lock.rs`, `reconcile.rs`,
    /// `haproxy.rs`, `backup.rs`, `certs.rs`, `cos.rs`, `internal_admin.rs`), value for value.
    #[test]
    fn reads_what_the_previous_revision_wrote() {
        let app: AppBag = from_databag(&bag(&[
            ("maas-url", "http://10.0.0.100:5240/MAAS"),
            ("secret-id", "secret:cvq1s1k7ns6s7bm3b8m0"),
            ("migrations-done", "maas@10.0.0.5:5432"),
            ("init-lock", "maas-region/2#7"),
            ("refresh-resumed", "3.7/stable#1"),
            ("tls-secret-id", "secret:cvq1s1k7ns6s7bm3b8mg"),
            (
                "tls-ca",
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
            ("tls-applied", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            ("admin-secret-id", "secret:cvq1s1k7ns6s7bm3b8n0"),
            ("prometheus-enabled", "true"),
        ]))
        .unwrap();
        assert_eq!(app.lock, Some(LockValue::new("maas-region/2", 7)));
        assert_eq!(
            app.resumed,
            Some(Resumed {
                channel: "3.7/stable".into(),
                after: 1
            })
        );
        assert_eq!(app.stats_enabled, Some(true));
        assert_eq!(app.migrations_done.as_deref(), Some("maas@10.0.0.5:5432"));
        let unit: UnitBag = from_databag(&bag(&[
            ("hostname", "region-1"),
            ("address", "10.0.0.11"),
            ("init-request", "3"),
            ("refresh-drain", "maas-region/1#3"),
            ("refresh-drained", "maas-region/0#2,maas-region/10#1"),
            ("maas-channel", "3.6/stable"),
            ("maas-id", "abc123"),
        ]))
        .unwrap();
        assert_eq!(unit.request, Some(3));
        assert_eq!(unit.drain, Some(LockValue::new("maas-region/1", 3)));
        assert!(unit.drained.contains(&LockValue::new("maas-region/10", 1)));
        assert!(unit.drained.contains(&LockValue::new("maas-region/0", 2)));
        assert_eq!(unit.channel.as_deref(), Some("3.6/stable"));
        // Empty values are deleted keys, and an empty `refresh-drained` acknowledges nothing.
        let unit: UnitBag = from_databag(&bag(&[
            ("init-request", ""),
            ("refresh-drained", ""),
            ("refresh-drain", ""),
        ]))
        .unwrap();
        assert_eq!(unit, UnitBag::default());
    }

    #[test]
    fn writes_what_the_previous_revision_reads() {
        let app = AppBag {
            lock: Some(LockValue::new("maas-region/0", 12)),
            resumed: Some(Resumed {
                channel: "3.7/stable".into(),
                after: 2,
            }),
            stats_enabled: Some(true),
            maas_url: Some("http://10.0.0.100:5240/MAAS".into()),
            ..AppBag::default()
        };
        let b = to_databag(&app).unwrap();
        assert_eq!(b["init-lock"], "maas-region/0#12");
        assert_eq!(b["refresh-resumed"], "3.7/stable#2");
        assert_eq!(b["prometheus-enabled"], "true");
        assert_eq!(b["maas-url"], "http://10.0.0.100:5240/MAAS");
        assert_eq!(b["migrations-done"], "", "None deletes the key");
        assert_eq!(from_databag::<AppBag>(&b).unwrap(), app);
        let unit = UnitBag {
            hostname: Some("region-0".into()),
            address: Some("10.0.0.10".into()),
            request: Some(12),
            drain: Some(LockValue::new("maas-region/0", 12)),
            // Sorted as text, as the previous revision's `format_drained` did: #10 before #9.
            drained: Drained(
                [
                    LockValue::new("maas-region/1", 9),
                    LockValue::new("maas-region/1", 10),
                ]
                .into_iter()
                .collect(),
            ),
            channel: Some("3.6/stable".into()),
            maas_id: Some("abc123".into()),
        };
        let b = to_databag(&unit).unwrap();
        assert_eq!(b["init-request"], "12");
        assert_eq!(b["refresh-drain"], "maas-region/0#12");
        assert_eq!(b["refresh-drained"], "maas-region/1#10,maas-region/1#9");
        assert_eq!(b["maas-channel"], "3.6/stable");
        assert_eq!(b["maas-id"], "abc123");
        assert_eq!(from_databag::<UnitBag>(&b).unwrap(), unit);
        assert_eq!(
            to_databag(&UnitBag::default()).unwrap()["refresh-drained"],
            "",
            "nothing drained deletes the key"
        );
    }

    #[test]
    fn a_garbled_value_names_its_key() {
        for (k, v) in [
            ("init-lock", "maas-region/0"),
            ("init-lock", "maas-region/0#x"),
            ("init-lock", "#3"),
            ("refresh-resumed", "3.7/stable"),
            ("prometheus-enabled", "yes"),
        ] {
            let e = from_databag::<AppBag>(&bag(&[(k, v)])).unwrap_err().0;
            assert!(e.contains(&format!("key {k:?}")), "{e}");
        }
        for (k, v) in [
            ("init-request", "abc"),
            ("refresh-drain", "maas-region/1"),
            ("refresh-drained", "maas-region/0#1,garbage"),
        ] {
            let e = from_databag::<UnitBag>(&bag(&[(k, v)])).unwrap_err().0;
            assert!(e.contains(&format!("key {k:?}")), "{e}");
        }
    }

    #[test]
    fn only_changed_keys_are_written() {
        let old = UnitBag {
            request: Some(1),
            hostname: Some("h".into()),
            ..UnitBag::default()
        };
        let new = UnitBag {
            request: None,
            channel: Some("3.6/stable".into()),
            ..old.clone()
        };
        assert_eq!(
            changes(&old, &new).unwrap(),
            bag(&[("init-request", ""), ("maas-channel", "3.6/stable")])
        );
        assert!(changes(&new, &new).unwrap().is_empty());
    }

    #[test]
    fn the_keys_are_the_fields() {
        let b = to_databag(&AppBag::default()).unwrap();
        for k in [
            keys::MAAS_URL,
            keys::SECRET_ID,
            keys::MIGRATIONS_DONE,
            keys::LOCK,
            keys::RESUMED,
            keys::STATS_ENABLED,
            crate::certs::app_keys::SECRET_ID,
            crate::certs::app_keys::CA_CERT,
            crate::certs::app_keys::APPLIED,
            crate::internal_admin::ADMIN.key,
            crate::backup::PASSPHRASE.key,
        ] {
            assert!(b.contains_key(k), "{k}");
        }
        let b = to_databag(&UnitBag::default()).unwrap();
        for k in [
            keys::HOSTNAME,
            keys::ADDRESS,
            keys::REQUEST,
            keys::DRAIN,
            keys::DRAINED,
            keys::CHANNEL,
            keys::MAAS_ID,
        ] {
            assert!(b.contains_key(k), "{k}");
        }
    }
}
