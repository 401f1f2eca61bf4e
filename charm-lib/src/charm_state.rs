//! Typed charm state: Juju's per-unit store that outlives a hook (`state-get`, `state-set`,
//! `state-delete`), read into a struct and written back as its differences.
//!
//! The encoding is [`crate::databag`]'s: text as it is, anything else as JSON text, `None` (or
//! an empty value) deletes the key; [`Yes`] is a flag stored as `yes`. A stored value that does
//! not fit its field is an error naming the key ([`Error::State`]), never a silent default: a
//! charm shows it in a Blocked status. Keys the struct does not name are left alone.

use crate::databag::{from_databag, to_databag};
use crate::error::{Error, Result};
use crate::tools::{Databag, HookTools};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reads the charm state as `T`.
pub fn load<T: DeserializeOwned>(tools: &HookTools) -> Result<T> {
    from_databag(&tools.state_get()?).map_err(Error::State)
}

/// Writes what changed from `before` to `after`: changed values in one `state-set`, keys whose
/// value went away with `state-delete`. Nothing changed: no tool is called.
pub fn save<T: Serialize>(tools: &HookTools, before: &T, after: &T) -> Result<()> {
    let (set, delete) = changes(
        &to_databag(before).map_err(Error::State)?,
        &to_databag(after).map_err(Error::State)?,
    );
    for k in &delete {
        tools.state_delete(k)?;
    }
    if !set.is_empty() {
        tools.state_set(&set)?;
    }
    Ok(())
}

/// The values to set and the keys to delete to go from `before` to `after` (absent and empty
/// are the same: no value).
pub fn changes(before: &Databag, after: &Databag) -> (Databag, Vec<String>) {
    let value = |b: &Databag, k: &str| b.get(k).map(String::as_str).unwrap_or("").to_string();
    let mut set = Databag::new();
    let mut delete = Vec::new();
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        let (old, new) = (value(before, k), value(after, k));
        if old == new {
            continue;
        }
        if new.is_empty() {
            delete.push(k.clone());
        } else {
            set.insert(k.clone(), new);
        }
    }
    (set, delete)
}

/// A flag kept as the text `yes`; `false` deletes the key. Anything but `yes` is an error
/// naming the key when read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Yes(pub bool);

impl Serialize for Yes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0 {
            s.serialize_str("yes")
        } else {
            s.serialize_none()
        }
    }
}

impl<'de> Deserialize<'de> for Yes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "yes" => Ok(Yes(true)),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not \"yes\" (or absent)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Stored {
        #[serde(default)]
        installed: Yes,
        channel: Option<String>,
        seq: Option<u64>,
    }

    fn bag(pairs: &[(&str, &str)]) -> Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip() {
        let s = Stored {
            installed: Yes(true),
            channel: Some("3.5/stable".into()),
            seq: Some(3),
        };
        let b = to_databag(&s).unwrap();
        assert_eq!(
            b,
            bag(&[
                ("installed", "yes"),
                ("channel", "3.5/stable"),
                ("seq", "3")
            ])
        );
        assert_eq!(from_databag::<Stored>(&b).unwrap(), s);
        assert_eq!(
            from_databag::<Stored>(&bag(&[])).unwrap(),
            Stored::default()
        );
        assert_eq!(to_databag(&Stored::default()).unwrap()["installed"], "");
    }

    #[test]
    fn garbled_values_name_the_key() {
        let e = from_databag::<Stored>(&bag(&[("installed", "no")])).unwrap_err();
        assert!(
            e.0.contains("key \"installed\"") && e.0.contains("\"no\""),
            "{e}"
        );
        let e = from_databag::<Stored>(&bag(&[("seq", "x")])).unwrap_err();
        assert!(e.0.contains("key \"seq\""), "{e}");
    }

    #[test]
    fn only_differences_are_written() {
        let before = bag(&[("a", "1"), ("b", "2"), ("c", "")]);
        let after = bag(&[("a", "1"), ("b", ""), ("c", "3"), ("d", "")]);
        let (set, delete) = changes(&before, &after);
        assert_eq!(set, bag(&[("c", "3")]));
        assert_eq!(delete, ["b"]);
        assert_eq!(changes(&before, &before), (Databag::new(), vec![]));
    }
}
