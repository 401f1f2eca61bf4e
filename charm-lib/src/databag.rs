//! Typed relation databags.
//!
//! Juju databags map strings to strings. A typed struct is written field by field: strings as
//! they are, anything else as JSON text (the convention of Canonical's data-platform
//! interfaces), `None` as an empty value, which deletes the key. Reading parses each value
//! into the type its field asks for, so `port: u16` reads `"5432"` and `name: String` reads
//! `"5432"` as text.

use crate::tools::Databag;
use serde::de::{self, DeserializeOwned, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserializer, Serialize};
use std::fmt;

/// A databag that does not fit the type asked for, or a type that cannot be a databag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabagError(pub String);

impl fmt::Display for DatabagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatabagError {}

impl de::Error for DatabagError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DatabagError(msg.to_string())
    }
}

/// Encodes `value` (a struct or map) as databag changes: `None` fields become `""` (delete).
pub fn to_databag<T: Serialize>(value: &T) -> Result<Databag, DatabagError> {
    let v = serde_json::to_value(value).map_err(|e| DatabagError(e.to_string()))?;
    let serde_json::Value::Object(map) = v else {
        return Err(DatabagError(
            "a databag must be written from a struct or map".into(),
        ));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Decodes a databag into `T`. Missing keys are fine for `Option` and `#[serde(default)]`
/// fields; an empty value counts as missing, because Juju uses it to delete a key.
pub fn from_databag<T: DeserializeOwned>(bag: &Databag) -> Result<T, DatabagError> {
    T::deserialize(BagDeserializer { bag })
}

struct BagDeserializer<'a> {
    bag: &'a Databag,
}

impl<'de, 'a> Deserializer<'de> for BagDeserializer<'a> {
    type Error = DatabagError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(BagMap {
            iter: self.bag.iter().filter(|(_, v)| !v.is_empty()),
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct BagMap<'a, I: Iterator<Item = (&'a String, &'a String)>> {
    iter: I,
    value: Option<(&'a str, &'a str)>,
}

impl<'de, 'a, I: Iterator<Item = (&'a String, &'a String)>> MapAccess<'de> for BagMap<'a, I> {
    type Error = DatabagError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                seed.deserialize(k.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self
            .value
            .take()
            .expect("serde asks for a value after its key");
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| DatabagError(format!("key {key:?}: {e}")))
    }
}

/// One databag value, parsed as the type that asks for it.
struct ValueDeserializer<'a>(&'a str);

impl<'a> ValueDeserializer<'a> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DatabagError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| DatabagError(format!("{:?} is not {what}", self.0)))
    }

    fn json(&self) -> Result<serde_json::Value, DatabagError> {
        serde_json::from_str(self.0)
            .map_err(|e| DatabagError(format!("{:?} is not JSON: {e}", self.0)))
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident : $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            visitor.$visit(self.parse::<$t>(concat!("a valid ", stringify!($t)))?)
        }
    )*};
}

impl<'de, 'a> Deserializer<'de> for ValueDeserializer<'a> {
    type Error = DatabagError;

    /// Untyped targets (`serde_json::Value`, untagged enums) get JSON when the text is JSON,
    /// and the text itself otherwise.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match serde_json::from_str::<serde_json::Value>(self.0) {
            Ok(v) => v
                .deserialize_any(visitor)
                .map_err(|e| DatabagError(e.to_string())),
            Err(_) => visitor.visit_str(self.0),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_bool(self.parse("true or false")?)
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16, deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64, deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64, deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_string(self.0.to_string())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Unit variants are written as their bare name; others as JSON.
        match self.json() {
            Ok(v @ serde_json::Value::Object(_)) => v
                .deserialize_any(visitor)
                .map_err(|e| DatabagError(e.to_string())),
            _ => visitor.visit_enum(self.0.into_deserializer()),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.json()?
            .deserialize_seq(visitor)
            .map_err(|e| DatabagError(e.to_string()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.json()?
            .deserialize_map(visitor)
            .map_err(|e| DatabagError(e.to_string()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json()?
            .deserialize_struct(name, fields, visitor)
            .map_err(|e| DatabagError(e.to_string()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.json()?
            .deserialize_tuple(len, visitor)
            .map_err(|e| DatabagError(e.to_string()))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct tuple_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Role {
        Primary,
        SyncStandby,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Endpoint {
        host: String,
        port: u16,
        #[serde(default)]
        tls: bool,
        standbys: Vec<String>,
        role: Role,
        note: Option<String>,
        #[serde(rename = "secret-user")]
        secret_user: Option<String>,
    }

    fn bag(pairs: &[(&str, &str)]) -> Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip() {
        let e = Endpoint {
            host: "5432".into(),
            port: 5432,
            tls: true,
            standbys: vec!["a".into(), "b".into()],
            role: Role::SyncStandby,
            note: None,
            secret_user: Some("secret:x".into()),
        };
        let b = to_databag(&e).unwrap();
        assert_eq!(b["host"], "5432");
        assert_eq!(b["port"], "5432");
        assert_eq!(b["standbys"], r#"["a","b"]"#);
        assert_eq!(b["role"], "sync-standby");
        assert_eq!(b["note"], "", "None deletes the key");
        assert_eq!(from_databag::<Endpoint>(&b).unwrap(), e);
    }

    #[test]
    fn missing_and_empty_values_are_absent() {
        let b = bag(&[
            ("host", "h"),
            ("port", "1"),
            ("standbys", "[]"),
            ("role", "primary"),
            ("note", ""),
        ]);
        let e: Endpoint = from_databag(&b).unwrap();
        assert_eq!(e.note, None);
        assert!(!e.tls);
    }

    #[test]
    fn garbage_names_the_key() {
        let b = bag(&[
            ("host", "h"),
            ("port", "54x"),
            ("standbys", "[]"),
            ("role", "primary"),
        ]);
        let err = from_databag::<Endpoint>(&b).unwrap_err();
        assert!(err.0.contains("key \"port\""), "{err}");
        let b = bag(&[
            ("host", "h"),
            ("port", "1"),
            ("standbys", "nope"),
            ("role", "primary"),
        ]);
        assert!(from_databag::<Endpoint>(&b)
            .unwrap_err()
            .0
            .contains("key \"standbys\""));
        let b = bag(&[("port", "1"), ("standbys", "[]"), ("role", "primary")]);
        assert!(from_databag::<Endpoint>(&b).unwrap_err().0.contains("host"));
    }

    #[test]
    fn untyped_values() {
        let b = bag(&[("n", "3"), ("s", "hello")]);
        let v: std::collections::BTreeMap<String, serde_json::Value> = from_databag(&b).unwrap();
        assert_eq!(v["n"], 3);
        assert_eq!(v["s"], "hello");
    }

    #[test]
    fn only_maps_can_be_written() {
        assert!(to_databag(&3).is_err());
    }
}
