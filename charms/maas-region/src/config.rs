//! The charm's configuration, validated: every invalid value becomes one message that names the
//! option and the form it expects, so the unit can be Blocked without touching anything.

use serde::Deserialize;

/// How MAAS is installed on the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallMethod {
    /// The `maas` snap.
    Snap,
    /// The Debian packages `maas-region-api` and `maas-dns`.
    Deb,
}

impl InstallMethod {
    /// The config value naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallMethod::Snap => "snap",
            InstallMethod::Deb => "deb",
        }
    }

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<InstallMethod> {
        match s {
            "snap" => Some(InstallMethod::Snap),
            "deb" => Some(InstallMethod::Deb),
            _ => None,
        }
    }
}

/// Where a refresh of the regions to a new `channel` waits for the operator's `resume-refresh`
/// (Charmed PostgreSQL's `pause-after-unit-refresh`, with the same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Never: the regions refresh one after the other.
    None,
    /// Once, after the first region refreshed.
    First,
    /// After every region.
    All,
}

impl Pause {
    /// The config value naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pause::None => "none",
            Pause::First => "first",
            Pause::All => "all",
        }
    }

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Pause> {
        match s {
            "none" => Some(Pause::None),
            "first" => Some(Pause::First),
            "all" => Some(Pause::All),
            _ => None,
        }
    }
}

/// The options as Juju hands them over (defaults from config.yaml already applied).
#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(rename = "install-method", default)]
    install_method: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(rename = "deb-source", default)]
    deb_source: Option<String>,
    #[serde(rename = "maas-url", default)]
    maas_url: Option<String>,
    #[serde(rename = "database-name", default)]
    database_name: Option<String>,
    #[serde(default)]
    haproxy: Option<bool>,
    #[serde(rename = "tls-enabled", default)]
    tls_enabled: Option<bool>,
    #[serde(rename = "pause-after-unit-refresh", default)]
    pause_after_unit_refresh: Option<String>,
    #[serde(rename = "backup-schedule", default)]
    backup_schedule: Option<String>,
    #[serde(rename = "backup-retention", default)]
    backup_retention: Option<i64>,
}

/// A valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// snap or deb.
    pub install_method: InstallMethod,
    /// Snap channel (`track/risk[/branch]` or `risk`).
    pub channel: String,
    /// Extra APT source (a `ppa:` or a `deb ` line), if any.
    pub deb_source: Option<String>,
    /// The operator's MAAS URL, without a trailing slash, if set.
    pub maas_url: Option<String>,
    /// Database name asked for on the database relations.
    pub database_name: String,
    /// Whether haproxy runs on the unit.
    pub haproxy: bool,
    /// Whether MAAS serves HTTPS on 5443 (haproxy forwards 443).
    pub tls_enabled: bool,
    /// Where a refresh to a new channel waits for `resume-refresh`.
    pub pause_after_unit_refresh: Pause,
    /// When the leader backs up the region's files (`backup-schedule`), if ever.
    pub backup_schedule: Option<charm_lib::cron::Schedule>,
    /// How many of this application's region backups the leader keeps (`backup-retention`).
    pub backup_retention: u32,
}

/// `backup-retention`'s default (config.yaml's).
pub const DEFAULT_BACKUP_RETENTION: u32 = 7;

impl Config {
    /// Validates the raw options; `Err` is the Blocked message.
    pub fn from_json(raw: serde_json::Map<String, serde_json::Value>) -> Result<Config, String> {
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(raw))
            .map_err(|e| format!("invalid config: {e}"))?;
        let method = raw.install_method.unwrap_or_else(|| "snap".into());
        let install_method = InstallMethod::parse(method.trim()).ok_or_else(|| {
            format!("invalid install-method {method:?}: expected \"snap\" or \"deb\"")
        })?;
        let channel = raw.channel.unwrap_or_default().trim().to_string();
        if install_method == InstallMethod::Snap {
            validate_channel(&channel)?;
        }
        let deb_source = raw
            .deb_source
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(s) = &deb_source {
            validate_deb_source(s)?;
        }
        let maas_url = match raw
            .maas_url
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        {
            Some(u) => Some(validate_maas_url(&u).map_err(|why| {
                format!("invalid maas-url {u:?}: {why}; expected http(s)://host[:port]/MAAS")
            })?),
            None => None,
        };
        let database_name = raw.database_name.unwrap_or_default().trim().to_string();
        let name_ok = !database_name.is_empty()
            && database_name.len() <= 63
            && database_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !database_name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok {
            return Err(format!("invalid database-name {database_name:?}: expected lowercase letters, digits and _ (at most 63, not starting with a digit)"));
        }
        let pause = raw
            .pause_after_unit_refresh
            .unwrap_or_else(|| "none".into());
        let pause_after_unit_refresh = Pause::parse(pause.trim()).ok_or_else(|| {
            format!(
                "invalid pause-after-unit-refresh {pause:?}: expected \"none\", \"first\" or \"all\""
            )
        })?;
        let schedule = raw.backup_schedule.unwrap_or_default();
        let backup_schedule = charm_lib::cron::parse(&schedule).map_err(|why| {
            format!(
                "invalid backup-schedule: {why}; {}",
                charm_lib::cron::EXPECTED
            )
        })?;
        // The same bounds as postgresql-ha's backup-retention-full.
        let retention = raw
            .backup_retention
            .unwrap_or(i64::from(DEFAULT_BACKUP_RETENTION));
        let backup_retention = u32::try_from(retention)
            .ok()
            .filter(|n| (1..=9_999_999).contains(n))
            .ok_or_else(|| {
                format!("invalid backup-retention {retention}: expected 1..9999999 region backups")
            })?;
        Ok(Config {
            backup_schedule,
            backup_retention,
            pause_after_unit_refresh,
            install_method,
            channel,
            deb_source,
            maas_url,
            database_name,
            haproxy: raw.haproxy.unwrap_or(true),
            tls_enabled: raw.tls_enabled.unwrap_or(false),
        })
    }
}

const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// `risk`, `track/risk` or `track/risk/branch`, as snapd accepts them.
fn validate_channel(channel: &str) -> Result<(), String> {
    let bad = || {
        format!("invalid channel {channel:?}: expected <track>/<risk> such as \"3.6/stable\" (risk: stable, candidate, beta or edge)")
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let parts: Vec<&str> = channel.split('/').collect();
    let ok = match parts.as_slice() {
        [risk] => RISKS.contains(risk),
        [track, risk] => word(track) && RISKS.contains(risk),
        [track, risk, branch] => word(track) && RISKS.contains(risk) && word(branch),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `ppa:owner/name` or a one-line `deb [options] URI suite [components]`.
fn validate_deb_source(s: &str) -> Result<(), String> {
    let bad = || {
        format!("invalid deb-source {s:?}: expected \"ppa:<owner>/<name>\" or a sources.list line \"deb http://... <suite> <components>\"")
    };
    if s.contains('\n') {
        return Err(bad());
    }
    if let Some(ppa) = s.strip_prefix("ppa:") {
        let ok = ppa.split('/').count() == 2
            && ppa.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
            });
        return if ok { Ok(()) } else { Err(bad()) };
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    let uri_at = if words.get(1).is_some_and(|w| w.starts_with('[')) {
        words.iter().position(|w| w.ends_with(']')).map(|i| i + 1)
    } else {
        Some(1)
    };
    match (
        words.first(),
        uri_at.and_then(|i| words.get(i).map(|u| (i, u))),
    ) {
        (Some(&"deb"), Some((i, uri)))
            if (uri.starts_with("http://")
                || uri.starts_with("https://")
                || uri.starts_with("file:/"))
                && words.len() > i + 1 =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// Checks `http(s)://host[:port]/MAAS[/]` and returns it without the trailing slash.
pub fn validate_maas_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("the scheme must be http or https")?;
    let (authority, path) = rest.split_once('/').ok_or("the path must be /MAAS")?;
    if path != "MAAS" && path != "MAAS/" {
        return Err("the path must be /MAAS".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host must be in brackets")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !host_ok {
        return Err("the host is missing or has characters a host name cannot have".into());
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(format!("port {p:?} is not a port number"));
        }
    }
    // What MAAS's own validator refuses (`ExtendedURL`: a label starting or ending with '-', an
    // empty label, an IPv6 address outside its forms...): the snap's `maas init` would write
    // it unchecked, a deb's `local_config_set` refuses it, and racks refuse it when they
    // register; so it is refused here, before MAAS is run with it.
    contracts::maas_rpc::maas_accepts_url(url)
        .map_err(|why| format!("MAAS does not accept it: {why}"))?;
    Ok(url.trim_end_matches('/').to_string())
}

impl charm_lib::CharmConfig for Config {
    type Error = String;
    fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        Config::from_json(options.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(pairs: &[(&str, serde_json::Value)]) -> Result<Config, String> {
        let mut m = serde_json::Map::new();
        m.insert("install-method".into(), json!("snap"));
        m.insert("channel".into(), json!("3.6/stable"));
        m.insert("database-name".into(), json!("maas"));
        for (k, v) in pairs {
            m.insert(k.to_string(), v.clone());
        }
        Config::from_json(m)
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.install_method, InstallMethod::Snap);
        assert!(c.haproxy && !c.tls_enabled);
        assert_eq!(c.maas_url, None);
        assert_eq!(c.pause_after_unit_refresh, Pause::None);
    }

    #[test]
    fn validation_matrix() {
        let cases: Vec<(&str, serde_json::Value, Option<&str>)> = vec![
            ("install-method", json!("deb"), None),
            (
                "install-method",
                json!("apt"),
                Some("invalid install-method \"apt\""),
            ),
            ("install-method", json!(""), Some("invalid install-method")),
            ("pause-after-unit-refresh", json!("first"), None),
            ("backup-retention", json!(1), None),
            ("backup-retention", json!(9_999_999), None),
            (
                "backup-retention",
                json!(0),
                Some("invalid backup-retention 0: expected 1..9999999 region backups"),
            ),
            (
                "backup-retention",
                json!(-3),
                Some("invalid backup-retention -3: expected 1..9999999"),
            ),
            (
                "backup-retention",
                json!(10_000_000),
                Some("invalid backup-retention 10000000"),
            ),
            ("pause-after-unit-refresh", json!("all"), None),
            (
                "pause-after-unit-refresh",
                json!("yes"),
                Some("invalid pause-after-unit-refresh \"yes\": expected \"none\", \"first\" or \"all\""),
            ),
            ("channel", json!("3.5/edge"), None),
            ("channel", json!("stable"), None),
            ("channel", json!("latest/beta/fix-1"), None),
            ("channel", json!("3.6"), Some("invalid channel \"3.6\"")),
            ("channel", json!("3.6/nightly"), Some("invalid channel")),
            ("channel", json!(""), Some("invalid channel")),
            ("deb-source", json!("ppa:maas/3.5"), None),
            (
                "deb-source",
                json!("deb http://ppa.launchpad.net/maas/3.5/ubuntu jammy main"),
                None,
            ),
            (
                "deb-source",
                json!("deb [arch=amd64] https://example.com/maas jammy main"),
                None,
            ),
            ("deb-source", json!("ppa:maas"), Some("invalid deb-source")),
            (
                "deb-source",
                json!("http://example.com"),
                Some("invalid deb-source"),
            ),
            (
                "deb-source",
                json!("deb http://x jammy main\ndeb http://y jammy main"),
                Some("invalid deb-source"),
            ),
            ("maas-url", json!("http://10.0.0.100/MAAS"), None),
            (
                "maas-url",
                json!("https://maas.example.com:8443/MAAS/"),
                None,
            ),
            ("maas-url", json!("http://[fd00::1]:5240/MAAS"), None),
            (
                "maas-url",
                json!("ftp://10.0.0.1/MAAS"),
                Some("invalid maas-url \"ftp://10.0.0.1/MAAS\": the scheme must be http or https"),
            ),
            (
                "maas-url",
                json!("http://10.0.0.1/"),
                Some("the path must be /MAAS"),
            ),
            (
                "maas-url",
                json!("http://10.0.0.1"),
                Some("the path must be /MAAS"),
            ),
            (
                "maas-url",
                json!("http://10.0.0.1:99999/MAAS"),
                Some("is not a port number"),
            ),
            (
                "maas-url",
                json!("http:///MAAS"),
                Some("the host is missing"),
            ),
            (
                "maas-url",
                json!("http://a b/MAAS"),
                Some("the host is missing"),
            ),
            // Passed the charm's own host check but not MAAS's `ExtendedURL`.
            (
                "maas-url",
                json!("http://-maas.example/MAAS"),
                Some("MAAS does not accept it: \"-maas.example\" is not a host name MAAS accepts"),
            ),
            (
                "maas-url",
                json!("http://maas..example/MAAS"),
                Some("MAAS does not accept it"),
            ),
            (
                "maas-url",
                json!("http://[fd00:1::]:5240/MAAS"),
                Some("MAAS does not accept it: [fd00:1::] is not an IPv6 address"),
            ),
            ("maas-url", json!("http://[fd00:1::5]:5240/MAAS"), None),
            ("database-name", json!("maas_db"), None),
            (
                "database-name",
                json!("Maas"),
                Some("invalid database-name"),
            ),
            ("database-name", json!(""), Some("invalid database-name")),
            (
                "database-name",
                json!("1maas"),
                Some("invalid database-name"),
            ),
        ];
        for (k, v, want) in cases {
            let got = cfg(&[(k, v.clone())]);
            match want {
                None => assert!(got.is_ok(), "{k}={v}: {got:?}"),
                Some(w) => {
                    let e = got.expect_err(&format!("{k}={v} should be refused"));
                    assert!(e.contains(w), "{k}={v}: {e:?} lacks {w:?}");
                    assert!(
                        e.contains(k),
                        "{k}={v}: the message must name the option: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn channel_is_not_checked_for_deb() {
        assert!(cfg(&[
            ("install-method", json!("deb")),
            ("channel", json!("whatever"))
        ])
        .is_ok());
    }

    #[test]
    fn maas_url_loses_its_trailing_slash() {
        assert_eq!(
            cfg(&[("maas-url", json!("http://10.0.0.1/MAAS/"))])
                .unwrap()
                .maas_url
                .as_deref(),
            Some("http://10.0.0.1/MAAS")
        );
    }
}
