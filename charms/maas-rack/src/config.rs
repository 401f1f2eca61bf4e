//! The charm's config, validated: every problem is a message that names the option and the
//! form it expects, for a Blocked status.

use serde_json::{Map, Value};

/// How MAAS gets onto the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    /// The `maas` snap from `channel`, initialised with `maas init rack`.
    Snap {
        /// e.g. `3.6/stable`.
        channel: String,
    },
    /// The `maas-rack-controller` package, registered with `maas-rack register`.
    Deb {
        /// Where the package comes from, if not the machine's archives.
        source: Option<DebSource>,
    },
}

/// An APT source for the deb install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebSource {
    /// `ppa:<owner>/<archive>`, added with `add-apt-repository` (which also fetches its key).
    Ppa(String),
    /// A one-line `deb <url> <suite> [components...]` entry.
    Line(String),
}

impl DebSource {
    /// The option's text.
    pub fn as_str(&self) -> &str {
        match self {
            DebSource::Ppa(s) | DebSource::Line(s) => s,
        }
    }
}

/// The validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How to install MAAS.
    pub method: InstallMethod,
}

/// Snap risk levels, the only mandatory part of a channel.
const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

impl charm_lib::CharmConfig for Config {
    type Error = String;
    fn from_options(options: &Map<String, Value>) -> Result<Self, String> {
        parse(options)
    }
}

/// Validates the raw config map (defaults already applied by Juju).
pub fn parse(raw: &Map<String, Value>) -> Result<Config, String> {
    let text = |key: &str| -> Result<String, String> {
        match raw.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(format!("config {key}: expected a string, got {other}")),
        }
    };
    let method = text("install-method")?;
    let method = match method.as_str() {
        "snap" | "" => {
            let channel = text("channel")?;
            validate_channel(&channel)?;
            InstallMethod::Snap { channel }
        }
        "deb" => InstallMethod::Deb {
            source: parse_deb_source(&text("deb-source")?)?,
        },
        other => {
            return Err(format!(
                "config install-method: {other:?} is not supported; expected snap or deb"
            ))
        }
    };
    Ok(Config { method })
}

/// `<track>` or `<risk>` alone, `<track>/<risk>` or `<track>/<risk>/<branch>`, as snapd accepts
/// them (a track alone means its stable risk).
pub fn validate_channel(channel: &str) -> Result<(), String> {
    let bad = || {
        Err(format!("config channel: {channel:?} is not a snap channel; expected <track>/<risk>, e.g. 3.6/stable"))
    };
    let parts: Vec<&str> = channel.split('/').collect();
    let word_ok = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !parts.iter().all(|p| word_ok(p)) {
        return bad();
    }
    let risk_ok = match parts.as_slice() {
        [_track_or_risk] => true,
        [_track, risk] => RISKS.contains(risk),
        [_track, risk, _branch] => RISKS.contains(risk),
        _ => false,
    };
    if risk_ok {
        Ok(())
    } else {
        bad()
    }
}

/// Empty (the machine's archives), `ppa:owner/archive`, or `deb <url> <suite> [components]`.
pub fn parse_deb_source(s: &str) -> Result<Option<DebSource>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Err(format!("config deb-source: {s:?} is not an APT source; expected ppa:<owner>/<archive> or \"deb <url> <suite> [components]\""))
    };
    if let Some(ppa) = s.strip_prefix("ppa:") {
        let ok = ppa.split('/').count() == 2
            && ppa.split('/').all(|w| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
            });
        return if ok {
            Ok(Some(DebSource::Ppa(s.to_string())))
        } else {
            bad()
        };
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    // A newline would smuggle a second entry into the sources file.
    if s.contains('\n') || words.len() < 3 || words[0] != "deb" {
        return bad();
    }
    // `deb [signed-by=...] url suite ...`: options come in brackets before the URL.
    let url = words
        .iter()
        .skip(1)
        .find(|w| !w.starts_with('[') && !w.ends_with(']'))
        .copied()
        .unwrap_or("");
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:/")) {
        return bad();
    }
    Ok(Some(DebSource::Line(words.join(" "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_mean_snap_on_the_given_channel() {
        let c = parse(&raw(
            json!({"install-method": "snap", "channel": "3.6/stable", "deb-source": ""}),
        ))
        .unwrap();
        assert_eq!(
            c.method,
            InstallMethod::Snap {
                channel: "3.6/stable".into()
            }
        );
    }

    #[test]
    fn deb_with_and_without_source() {
        let c = parse(&raw(
            json!({"install-method": "deb", "channel": "nonsense here", "deb-source": ""}),
        ))
        .unwrap();
        assert_eq!(
            c.method,
            InstallMethod::Deb { source: None },
            "channel is ignored for deb"
        );
        let c = parse(&raw(
            json!({"install-method": "deb", "deb-source": "ppa:maas/3.6"}),
        ))
        .unwrap();
        assert_eq!(
            c.method,
            InstallMethod::Deb {
                source: Some(DebSource::Ppa("ppa:maas/3.6".into()))
            }
        );
        let c = parse(&raw(json!({"install-method": "deb", "deb-source": " deb  http://archive.example/maas noble main "}))).unwrap();
        assert_eq!(
            c.method,
            InstallMethod::Deb {
                source: Some(DebSource::Line(
                    "deb http://archive.example/maas noble main".into()
                ))
            }
        );
    }

    #[test]
    fn bad_values_name_the_option_and_the_expected_form() {
        let e = parse(&raw(json!({"install-method": "charm"}))).unwrap_err();
        assert_eq!(
            e,
            "config install-method: \"charm\" is not supported; expected snap or deb"
        );
        let e = parse(&raw(
            json!({"install-method": "snap", "channel": "3.6/stabel"}),
        ))
        .unwrap_err();
        assert!(
            e.starts_with(
                "config channel: \"3.6/stabel\" is not a snap channel; expected <track>/<risk>"
            ),
            "{e}"
        );
        let e = parse(&raw(
            json!({"install-method": "deb", "deb-source": "ppa:maas"}),
        ))
        .unwrap_err();
        assert!(e.starts_with("config deb-source: \"ppa:maas\""), "{e}");
        let e = parse(&raw(
            json!({"install-method": "deb", "deb-source": "deb ftp://x noble main"}),
        ))
        .unwrap_err();
        assert!(e.starts_with("config deb-source:"), "{e}");
        let e = parse(&raw(json!({"install-method": "deb", "deb-source": "deb http://x noble\ndeb http://evil y z"}))).unwrap_err();
        assert!(e.starts_with("config deb-source:"), "{e}");
    }

    #[test]
    fn channels_as_snapd_takes_them() {
        for ok in [
            "stable",
            "3.6",
            "3.6/stable",
            "latest/edge",
            "3.7/candidate/fix-123",
        ] {
            assert!(validate_channel(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "3.6/",
            "/stable",
            "3.6/stable/x/y",
            "3.6 /stable",
            "3.6/stabel",
        ] {
            assert!(validate_channel(bad).is_err(), "{bad}");
        }
    }
}
