//! # contracts: the relations between our own charms, written once
//!
//! Each module is one interface of `charms/INTERFACES.md`: its key names and the typed
//! databags each side writes, read and written with [`charm_lib::databag`] (strings as they
//! are, anything else as JSON text, `None` deletes the key). Both charms of an interface use
//! the same module, so a key cannot drift on one side only; the round-trip tests below each
//! module pin the wire format (what a charm of an older revision on the other side reads).
//!
//! A side that reads only some keys of the other side's databag reads them by their
//! constant in `keys`, so that a value it never looks at cannot fail its read.
//!
//! This crate knows charm-lib's databag encoding and nothing of any charm: charms depend on
//! it, it depends on no charm.
#![warn(missing_docs)]

pub mod maas_rpc;
pub mod maas_version;
pub mod pgsql;
pub mod s3;
pub mod vip;

pub use charm_lib::databag::{from_databag, to_databag, DatabagError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A comma-separated list as one databag value (`10.0.0.100,fd00::100`): written joined by
/// `,`, read split at `,` with blanks trimmed and empty items dropped. Empty writes `""`,
/// which deletes the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommaList(pub Vec<String>);

impl CommaList {
    /// The items.
    pub fn items(&self) -> &[String] {
        &self.0
    }
}

impl<S: Into<String>> FromIterator<S> for CommaList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        CommaList(iter.into_iter().map(Into::into).collect())
    }
}

impl Serialize for CommaList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.join(","))
    }
}

impl<'de> Deserialize<'de> for CommaList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect())
    }
}

#[cfg(test)]
pub(crate) fn bag(pairs: &[(&str, &str)]) -> charm_lib::Databag {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct L {
        #[serde(default)]
        l: CommaList,
    }

    #[test]
    fn comma_lists() {
        let v = L {
            l: ["10.0.0.1", "fd00::1"].into_iter().collect(),
        };
        let b = to_databag(&v).unwrap();
        assert_eq!(b["l"], "10.0.0.1,fd00::1");
        assert_eq!(from_databag::<L>(&b).unwrap(), v);
        assert_eq!(
            from_databag::<L>(&bag(&[("l", " a , ,b")])).unwrap().l.0,
            ["a", "b"]
        );
        assert_eq!(
            to_databag(&L {
                l: CommaList::default()
            })
            .unwrap()["l"],
            ""
        );
        assert_eq!(
            from_databag::<L>(&bag(&[])).unwrap().l,
            CommaList::default()
        );
    }
}
