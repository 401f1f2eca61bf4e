//! argv and output as Juju's hook tools have them: gnuflag-style flags (juju/gnuflag),
//! juju/cmd's output formats (`--format`), the `unrecognized args` check, and the key=value
//! arguments (plus `--file`) of the *-set tools.

use super::{fail, gnuflag, usage, ToolError, R};
use serde_json::Value;
use std::collections::HashMap;

/// Parsed command line: flag values by long name, and positional arguments.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub flags: HashMap<String, Vec<String>>,
    pub pos: Vec<String>,
}

impl Parsed {
    /// Last value of a flag.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.flags
            .get(long)
            .and_then(|v| v.last())
            .map(|s| s.as_str())
    }
    /// Whether a flag was given.
    pub fn has(&self, long: &str) -> bool {
        self.flags.contains_key(long)
    }
}

/// A flag: long name, optional short name, and whether it takes a value.
pub type FlagSpec = (&'static str, Option<char>, bool);

/// gnuflag-style parsing: `--f v`, `--f=v`, `-f v`, `-f=v`, flags interspersed with
/// positionals, `--` ends flags.
pub fn parse_args(args: &[String], spec: &[FlagSpec]) -> R<Parsed> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.pos.extend(args[i..].iter().cloned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            p.pos.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let f = if let Some(long) = name.strip_prefix("--") {
            spec.iter().find(|s| s.0 == long)
        } else {
            let short = name[1..].to_string();
            spec.iter()
                .find(|s| short.chars().count() == 1 && s.1 == short.chars().next() || s.0 == short)
        };
        let Some(f) = f else {
            return usage(format!("flag provided but not defined: {name}"));
        };
        let value = if f.2 {
            match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => return usage(format!("flag needs an argument: {name}")),
            }
        } else {
            // juju/gnuflag parseGnuFlagArg: `--flag=<v>` sets a boolean to
            // strconv.ParseBool(v) (ops passes `status-set --application=False`); the last
            // occurrence wins
            match gnuflag::bool_flag(&name, inline.as_deref()) {
                Ok(true) => {}
                Ok(false) => {
                    p.flags.remove(f.0);
                    continue;
                }
                Err(e) => return usage(e),
            }
            String::new()
        };
        p.flags.entry(f.0.to_string()).or_default().push(value);
    }
    Ok(p)
}
/// Render a value in one of juju/cmd's output formats.
pub fn format_value(v: &Value, format: &str) -> R<String> {
    match format {
        "json" => Ok(format!(
            "{}\n",
            serde_json::to_string(v).unwrap_or_default()
        )),
        "yaml" => Ok(if v.is_null() {
            String::new()
        } else {
            serde_yaml::to_string(v).unwrap_or_default()
        }),
        "smart" | "" => Ok(match v {
            Value::Null => String::new(),
            Value::Bool(b) => format!("{}\n", if *b { "True" } else { "False" }),
            Value::String(s) => format!("{s}\n"),
            Value::Number(n) => format!("{n}\n"),
            Value::Array(a) if a.iter().all(|x| x.is_string()) => a
                .iter()
                .map(|x| format!("{}\n", x.as_str().unwrap()))
                .collect(),
            other => serde_yaml::to_string(other).unwrap_or_default(),
        }),
        other => usage(format!(
            "invalid value {other:?} for option --format: unknown format {other:?}"
        )),
    }
}

pub(super) const FMT: FlagSpec = ("format", None, true);

pub(super) fn out(p: &Parsed, v: Value) -> R<String> {
    format_value(&v, p.get("format").unwrap_or("smart"))
}

pub(super) fn no_extra(p: &Parsed, max: usize) -> R<()> {
    if p.pos.len() > max {
        return usage(format!(
            "unrecognized args: [\"{}\"]",
            p.pos[max..].join("\" \"")
        ));
    }
    Ok(())
}

/// `k=v` arguments plus an optional `--file` YAML map (`-` = stdin); CLI pairs win. A key
/// given twice as an argument is refused, as juju/utils keyvalues.Parse does for the *-set
/// tools.
pub(super) fn key_values(p: &Parsed, stdin: &[u8]) -> R<Vec<(String, String)>> {
    let kv = key_values_repeatable(p, stdin)?;
    let file = kv.len() - p.pos.len();
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in &kv[file..] {
        if !seen.insert(k.as_str()) {
            return usage(format!("key {k:?} specified more than once"));
        }
    }
    Ok(kv)
}

/// [`key_values`] where an argument may repeat a key and the last wins (secret content:
/// core/secrets CreateSecretData).
pub(super) fn key_values_repeatable(p: &Parsed, stdin: &[u8]) -> R<Vec<(String, String)>> {
    let mut kv = Vec::new();
    if let Some(f) = p.get("file") {
        if f != "-" {
            return fail(format!(
                "cannot read {f:?}: the hook tool client passes files as stdin"
            ));
        }
        let text = String::from_utf8_lossy(stdin);
        let v: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| ToolError::Fail(format!("cannot parse settings: {e}")))?;
        match v {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = scalar_string(&k)
                        .ok_or_else(|| ToolError::Fail("settings keys must be strings".into()))?;
                    let v = scalar_string(&v).ok_or_else(|| {
                        ToolError::Fail(format!("value of {k:?} is not a string"))
                    })?;
                    kv.push((k, v));
                }
            }
            _ => return fail("expected YAML map of settings"),
        }
    }
    for a in &p.pos {
        let Some((k, v)) = a.split_once('=') else {
            return usage(format!("expected \"key=value\", got {a:?}"));
        };
        if k.is_empty() {
            return usage(format!("expected \"key=value\", got {a:?}"));
        }
        kv.push((k.to_string(), v.to_string()));
    }
    Ok(kv)
}

pub(super) fn scalar_string(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_long_short_inline_and_interspersed_flags() {
        let spec = [FMT, ("relation", Some('r'), true), ("app", None, false)];
        let p = parse_args(
            &s(&["-r", "db:1", "key", "--format=json", "--app", "unit/0"]),
            &spec,
        )
        .unwrap();
        assert_eq!(p.get("relation"), Some("db:1"));
        assert_eq!(p.get("format"), Some("json"));
        assert!(p.has("app"));
        assert_eq!(p.pos, s(&["key", "unit/0"]));
        let p = parse_args(&s(&["--format", "json", "--", "-x"]), &spec).unwrap();
        assert_eq!(p.pos, s(&["-x"]));
        assert!(matches!(
            parse_args(&s(&["--nope"]), &spec),
            Err(ToolError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&s(&["-r"]), &spec),
            Err(ToolError::Usage(_))
        ));
    }

    #[test]
    fn formats_like_juju() {
        assert_eq!(format_value(&Value::Null, "json").unwrap(), "null\n");
        assert_eq!(format_value(&json!(true), "smart").unwrap(), "True\n");
        assert_eq!(format_value(&json!(["a", "b"]), "smart").unwrap(), "a\nb\n");
        assert_eq!(
            format_value(&json!({"k": "v"}), "json").unwrap(),
            "{\"k\":\"v\"}\n"
        );
        assert!(format_value(&json!(1), "xml").is_err());
    }

    #[test]
    fn key_values_merge_file_and_args() {
        let p = parse_args(&s(&["--file", "-", "b=2", "c="]), &[("file", None, true)]).unwrap();
        let kv = key_values(&p, b"{\"a\": \"1\", \"b\": 1}").unwrap();
        assert_eq!(
            kv,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "".into())
            ]
        );
        assert!(key_values(&parse_args(&s(&["novalue"]), &[]).unwrap(), b"").is_err());
    }
}
