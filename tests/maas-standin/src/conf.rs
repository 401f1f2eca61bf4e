//! The configuration files MAAS keeps (`regiond.conf`, `rackd.conf` as YAML, the shared
//! secret, `snap_mode`), and the validation MAAS applies to what goes into them.

use crate::paths::{self, Flavor};
use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Default settings of a region, as MAAS's `RegionConfiguration` has them.
pub const REGION_DEFAULTS: &[(&str, &str)] = &[
    ("maas_url", "http://localhost:5240/MAAS"),
    ("database_host", "localhost"),
    ("database_port", "5432"),
    ("database_name", "maasdb"),
    ("database_user", "maas"),
    ("database_pass", ""),
    ("database_conn_max_age", "300"),
    ("database_keepalive", "true"),
    ("database_keepalive_idle", "15"),
    ("database_keepalive_interval", "15"),
    ("database_keepalive_count", "2"),
    ("num_workers", "4"),
    ("debug", "false"),
    ("debug_queries", "false"),
];

/// The settings MAAS stores as integers (`Int` validators in `RegionConfiguration`).
const INTEGER_KEYS: &[&str] = &[
    "database_port",
    "num_workers",
    "database_conn_max_age",
    "database_keepalive_idle",
    "database_keepalive_interval",
    "database_keepalive_count",
];

/// The settings MAAS stores as booleans (`StringBool`, `OneWayStringBool`).
const BOOLEAN_KEYS: &[&str] = &["debug", "debug_queries", "database_keepalive"];

/// formencode's `StringBool` (what MAAS's `OneWayStringBool` is): `true`, `t`, `yes`, `y`,
/// `on`, `1` and `false`, `f`, `no`, `n`, `off`, `0` in any case, empty is false; anything else
/// is refused.
pub fn string_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "" | "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A YAML configuration file as a key → value map that keeps keys it does not know.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfFile {
    /// The settings.
    pub map: Mapping,
}

impl ConfFile {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<ConfFile> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(ConfFile::default()),
            Ok(text) => {
                let v: Value = serde_yaml::from_str(&text)
                    .with_context(|| format!("{} is not valid YAML", path.display()))?;
                match v {
                    Value::Mapping(map) => Ok(ConfFile { map }),
                    Value::Null => Ok(ConfFile::default()),
                    _ => bail!("{} is not a YAML mapping", path.display()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file with MAAS's ownership: root:maas 0640 (the database password is in it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_yaml::to_string(&self.map)?;
        util::write_file(path, text.as_bytes(), 0o640, Some("maas"))
    }

    /// A setting as text (numbers and booleans rendered), if present.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Sequence(seq) => seq.first().and_then(|v| v.as_str().map(str::to_string)),
            _ => None,
        }
    }

    /// A setting or its region default.
    pub fn get_or_default(&self, key: &str) -> String {
        self.get(key).unwrap_or_else(|| {
            REGION_DEFAULTS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
    }

    /// Sets a setting; values that look like integers or booleans are stored as such, as MAAS does.
    pub fn set(&mut self, key: &str, value: &str) {
        let v = if INTEGER_KEYS.contains(&key) {
            value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(value))
        } else if BOOLEAN_KEYS.contains(&key) {
            Value::Bool(string_bool(value).unwrap_or(false))
        } else {
            Value::from(value)
        };
        self.map.insert(Value::from(key), v);
    }

    /// All `maas_url` entries (rackd.conf may hold a list).
    pub fn maas_urls(&self) -> Vec<String> {
        match self.map.get("maas_url") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Sequence(seq)) => seq
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    }

    /// The database settings of a region configuration.
    pub fn db(&self) -> DbSettings {
        DbSettings {
            host: self.get_or_default("database_host"),
            port: self.get_or_default("database_port").parse().unwrap_or(5432),
            name: self.get_or_default("database_name"),
            user: self.get_or_default("database_user"),
            pass: self.get_or_default("database_pass"),
            keepalive: self.keepalive(),
        }
    }

    /// The TCP keepalive of every database connection, as MAAS reads it: `database_keepalive`
    /// (`OneWayStringBool(if_missing=True)`), `database_keepalive_idle` and
    /// `database_keepalive_interval` (`Int(if_missing=15)`), `database_keepalive_count`
    /// (`Int(if_missing=2)`) of `RegionConfiguration` (src/maasserver/config.py, 3.4 to master),
    /// which `_get_default_db_config` (src/maasserver/djangosettings/settings.py) hands to
    /// psycopg as libpq's `keepalives`, `keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`. A value MAAS's validator would refuse is refused here too (regiond
    /// then does not start), rather than silently replaced by a default.
    pub fn keepalive(&self) -> std::result::Result<Keepalive, String> {
        let int = |key: &str| -> std::result::Result<u32, String> {
            let v = self.get_or_default(key);
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{key}: Please enter an integer value (got {v:?})"))
        };
        let on = self.get_or_default("database_keepalive");
        Ok(Keepalive {
            enabled: string_bool(&on).ok_or_else(|| {
                format!("database_keepalive: Value should be 'true' or 'false' (got {on:?})")
            })?,
            idle_s: int("database_keepalive_idle")?,
            interval_s: int("database_keepalive_interval")?,
            count: int("database_keepalive_count")?,
        })
    }

    /// Stores database settings.
    pub fn set_db(&mut self, db: &DbSettings) {
        self.set("database_host", &db.host);
        self.set("database_port", &db.port.to_string());
        self.set("database_name", &db.name);
        self.set("database_user", &db.user);
        self.set("database_pass", &db.pass);
    }
}

/// How to reach the MAAS database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbSettings {
    /// Host name, address, comma-separated list of them, or a socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// Role.
    pub user: String,
    /// Password.
    pub pass: String,
    /// TCP keepalive, or why regiond.conf's keepalive settings are refused.
    pub keepalive: std::result::Result<Keepalive, String>,
}

/// libpq's TCP keepalive settings, as MAAS passes them (see [`ConfFile::keepalive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// `keepalives`.
    pub enabled: bool,
    /// `keepalives_idle`: seconds of silence before the first probe (0: the system's).
    pub idle_s: u32,
    /// `keepalives_interval`: seconds between unanswered probes (0: the system's).
    pub interval_s: u32,
    /// `keepalives_count`: unanswered probes before the connection is dropped (0: the system's).
    pub count: u32,
}

impl Default for Keepalive {
    /// MAAS's defaults (`RegionConfiguration`'s `if_missing`).
    fn default() -> Keepalive {
        Keepalive {
            enabled: true,
            idle_s: 15,
            interval_s: 15,
            count: 2,
        }
    }
}

impl Default for DbSettings {
    fn default() -> DbSettings {
        DbSettings {
            host: String::new(),
            port: 0,
            name: String::new(),
            user: String::new(),
            pass: String::new(),
            keepalive: Ok(Keepalive::default()),
        }
    }
}

/// Parses `--database-uri` the way `maas init` does: `postgres://user:pass@host:port/dbname`,
/// only the parameters user, password, host, port and dbname; host defaults to localhost and
/// dbname to the user.
pub fn parse_database_uri(uri: &str) -> Result<DbSettings> {
    if uri == "maas-test-db:///" {
        bail!("maas-test-db:/// is not available: the MAAS stand-in needs a postgres:// URI");
    }
    let rest = uri.strip_prefix("postgres://").ok_or_else(|| {
        anyhow!("Database URI needs to be either 'maas-test-db:///' or start with 'postgres://'")
    })?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, p),
        None => (main, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut s = DbSettings {
        port: 5432,
        ..Default::default()
    };
    if let Some(ui) = userinfo {
        let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
        s.user = util::percent_decode(u, false);
        s.pass = util::percent_decode(p, false);
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| anyhow!("Error parsing database URI: bad IPv6 host"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    s.host = util::percent_decode(&host, false);
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        s.port = p
            .parse()
            .map_err(|_| anyhow!("Error parsing database URI: invalid port {p:?}"))?;
    }
    s.name = util::percent_decode(path, false);
    let mut bad = vec![];
    for (k, v) in util::form_decode(query.unwrap_or("")) {
        match k.as_str() {
            "user" => s.user = v,
            "password" => s.pass = v,
            "host" => s.host = v,
            "dbname" => s.name = v,
            "port" => {
                s.port = v
                    .parse()
                    .map_err(|_| anyhow!("Error parsing database URI: invalid port {v:?}"))?
            }
            _ => bad.push(k),
        }
    }
    if !bad.is_empty() {
        bad.sort();
        bail!(
            "Error parsing database URI: Unsupported parameters: {}",
            bad.join(", ")
        );
    }
    if s.host.is_empty() {
        s.host = "localhost".into();
    }
    if s.user.is_empty() {
        bail!("No user found in URI: {uri}");
    }
    if s.name.is_empty() {
        s.name = s.user.clone();
    }
    Ok(s)
}

/// What `ExtendedURL(require_tld=False).to_python(value)` returns: the URL MAAS stores, `None`
/// for an empty value (formencode's `FancyValidator.to_python`: an empty value is not
/// validated), or formencode's message. MAAS validates a URL only where it *sets* one through
/// `ConfigurationOption.__set__` (src/provisioningserver/config.py): `maas-region
/// local_config_set --maas-url` (`RegionConfiguration.maas_url`, src/maasserver/config.py) and
/// the deb `maas-rack register --url` / `config --region-url` (`ClusterConfiguration.maas_url`,
/// `ForEach` of it). Snap `maas init` and `maas config` write `--maas-url` with
/// `MAASConfiguration.update` (src/maascli/configfile.py), which checks nothing, and reading
/// (`__get__`, `from_python` with formencode's `accept_python`) checks nothing either.
///
/// The rules, from `ExtendedURL.url_re` (src/provisioningserver/utils/config.py, the same on
/// 3.4, 3.6 and master) and formencode's `URL._convert_to_python` (validators.py): the value
/// stripped; `http://` put in front when it does not start with `letters:` (`add_http`, so
/// `10.0.0.1` becomes `http://10.0.0.1`, but `localhost:5240/MAAS` has a "scheme" and is
/// refused); the scheme lower-cased; then, case-insensitively, `http` or `https`, `://`, an
/// optional `[%:\w]*@`, a host (dotted labels of `[a-z0-9][a-z0-9-]{0,62}`, the last 1-63
/// characters starting and ending alphanumeric, which takes IPv4 addresses too; or one of the
/// bracketed IPv6 forms), an optional `:` and 1-5 digits (no range check: `:0` and `:99999`
/// pass), an optional path of `/` and URL characters, and nothing else. Every refusal is
/// `badURL` (with `add_http`, `noScheme` cannot happen; `require_tld=False` drops `noTLD`).
/// Not imitated: formencode's IDNA step (`allow_idna`) turns a non-ASCII host into punycode
/// and accepts it; here it is refused (no charm sends one).
pub fn extended_url(value: &str) -> std::result::Result<Option<String>, &'static str> {
    const BAD_URL: &str = "That is not a valid URL";
    if value.is_empty() {
        return Ok(None);
    }
    let mut v = value.trim().to_string();
    let scheme_len = |v: &str| {
        let letters = v.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        (letters > 0 && v[letters..].starts_with(':')).then_some(letters + 1)
    };
    let n = match scheme_len(&v) {
        Some(n) => n,
        None => {
            v = format!("http://{v}");
            5
        }
    };
    let v = format!("{}{}", v[..n].to_ascii_lowercase(), &v[n..]);
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .ok_or(BAD_URL)?;
    // The regex backtracks over the optional authenticator: with it or without it.
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let with_auth = rest
        .split_once('@')
        .filter(|(auth, _)| auth.chars().all(|c| c == '%' || c == ':' || word(c)))
        .map(|(_, after)| after);
    if host_port_path(rest) || with_auth.is_some_and(host_port_path) {
        Ok(Some(v))
    } else {
        Err(BAD_URL)
    }
}

/// The part of `ExtendedURL.url_re` after the authenticator: host, optional port, optional path.
fn host_port_path(s: &str) -> bool {
    let (host_ok, after) = if let Some(inner) = s.strip_prefix('[') {
        match inner.split_once(']') {
            Some((addr, after)) => (url_re_ipv6(addr), after),
            None => (false, ""),
        }
    } else {
        let end = s.find([':', '/']).unwrap_or(s.len());
        (url_re_domain(&s[..end]), &s[end..])
    };
    if !host_ok {
        return false;
    }
    let after = match after.strip_prefix(':') {
        Some(p) => {
            let digits = p.chars().take_while(char::is_ascii_digit).count();
            if !(1..=5).contains(&digits) {
                return false;
            }
            &p[digits..]
        }
        None => after,
    };
    match after.strip_prefix('/') {
        None => after.is_empty(),
        Some(path) => path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@!%$&'()*+,;=".contains(c)),
    }
}

/// `(?P<domain>[a-z0-9][a-z0-9\-]{,62}\.)*(?P<tld>[a-zA-Z0-9]{1,63}|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])`,
/// case-insensitive (an IPv4 address is one of these too).
fn url_re_domain(host: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let labels: Vec<&str> = host.split('.').collect();
    let (tld, subdomains) = labels.split_last().expect("split yields one item at least");
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.starts_with(alnum)
            && l.chars().all(|c| alnum(c) || c == '-')
    };
    subdomains.iter().all(|l| label_ok(l)) && label_ok(tld) && tld.ends_with(alnum)
}

/// The bracketed forms of `ExtendedURL.url_re`: `::ffff:` and a dotted quad of digits, eight
/// groups, groups `::` groups (1-6 on each side), `::` and one group, one group and `::`.
fn url_re_ipv6(addr: &str) -> bool {
    let group = |g: &str| (1..=4).contains(&g.len()) && g.chars().all(|c| c.is_ascii_hexdigit());
    let groups = |s: &str, range: std::ops::RangeInclusive<usize>| {
        let parts: Vec<&str> = s.split(':').collect();
        range.contains(&parts.len()) && parts.iter().all(|g| group(g))
    };
    if let Some(quad) = addr
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("::ffff:"))
        .map(|_| &addr[7..])
    {
        let parts: Vec<&str> = quad.split('.').collect();
        if parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        {
            return true;
        }
    }
    if groups(addr, 8..=8) {
        return true;
    }
    if let Some(g) = addr.strip_prefix("::") {
        if group(g) {
            return true;
        }
    }
    if let Some(g) = addr.strip_suffix("::") {
        if group(g) {
            return true;
        }
    }
    match addr.split_once("::") {
        Some((a, b)) => groups(a, 1..=6) && groups(b, 1..=6),
        None => false,
    }
}

/// The snap's mode, `none` when not initialised.
pub fn read_snap_mode() -> String {
    util::read_trimmed(&paths::snap_mode()).unwrap_or_else(|| "none".into())
}

/// Writes the snap's mode.
pub fn write_snap_mode(mode: &str) -> Result<()> {
    util::write_file(
        &paths::snap_mode(),
        format!("{mode}\n").as_bytes(),
        0o644,
        None,
    )
}

/// The shared secret of `flavor`, if any.
pub fn read_secret(flavor: Flavor) -> Option<String> {
    util::read_trimmed(&flavor.secret())
}

/// Validates a shared secret (hex, as MAAS stores it) and writes it 0640 root:maas.
pub fn write_secret(flavor: Flavor, secret: &str) -> Result<()> {
    let s = secret.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_hexdigit()) || s.len() & 1 == 1 {
        bail!("Secret must be a hexadecimal string");
    }
    util::write_file(
        &flavor.secret(),
        format!("{s}\n").as_bytes(),
        0o640,
        Some("maas"),
    )
}

/// Deletes the shared secret file of `flavor` (`set_rpc_secret(None)` in src/maascli/snap.py);
/// a missing file is fine.
pub fn remove_secret(flavor: Flavor) -> Result<()> {
    match std::fs::remove_file(flavor.secret()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", flavor.secret().display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_uri_like_maas() {
        let s = parse_database_uri("postgres://maas:p%40ss@10.0.0.5:6432/maas_region_db").unwrap();
        assert_eq!(
            s,
            DbSettings {
                host: "10.0.0.5".into(),
                port: 6432,
                name: "maas_region_db".into(),
                user: "maas".into(),
                pass: "p@ss".into(),
                keepalive: Ok(Keepalive::default()),
            }
        );
        let s = parse_database_uri("postgres://maas@/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.name.as_str()),
            ("localhost", 5432, "maas")
        );
        let s = parse_database_uri("postgres://u:p@h/d?port=7000&host=other").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("other", 7000));
        assert_eq!(
            parse_database_uri("postgres://u:p@h/d?sslmode=require&application_name=x")
                .unwrap_err()
                .to_string(),
            "Error parsing database URI: Unsupported parameters: application_name, sslmode"
        );
        assert!(parse_database_uri("postgresql://u@h/d").is_err());
        assert_eq!(
            parse_database_uri("postgres://h/d")
                .unwrap_err()
                .to_string(),
            "No user found in URI: postgres://h/d"
        );
        assert!(parse_database_uri("mysql://u@h/d").is_err());
        assert!(parse_database_uri("postgres://u@h:xx/d").is_err());
        assert!(parse_database_uri("maas-test-db:///").is_err());
    }

    /// ExtendedURL's cases: formencode's doctests (validators.py `URL`), ExtendedURL's own
    /// (src/provisioningserver/utils/tests/test_config.py `TestExtendedURL`, 3.6), and what
    /// follows from `url_re` for the URLs charms build.
    #[test]
    fn extended_url_is_maas_validator() {
        for (given, stored) in [
            ("http://10.0.0.200/MAAS", "http://10.0.0.200/MAAS"),
            (
                "https://maas.example:5443/MAAS/",
                "https://maas.example:5443/MAAS/",
            ),
            ("http://localhost:5240/MAAS", "http://localhost:5240/MAAS"),
            ("http://a/", "http://a/"),
            (
                "http://region-a:5240/MAAS/api/2.0/",
                "http://region-a:5240/MAAS/api/2.0/",
            ),
            ("http://[fd00::1]:5240/MAAS", "http://[fd00::1]:5240/MAAS"),
            ("http://[::1]/MAAS", "http://[::1]/MAAS"),
            ("http://[fe80::]/MAAS", "http://[fe80::]/MAAS"),
            (
                "http://[1:2:3:4:5:6:7:8]/MAAS",
                "http://[1:2:3:4:5:6:7:8]/MAAS",
            ),
            (
                "http://[::ffff:10.0.0.1]/MAAS",
                "http://[::ffff:10.0.0.1]/MAAS",
            ),
            ("http://u:p@10.0.0.1/MAAS", "http://u:p@10.0.0.1/MAAS"),
            ("http://10.0.0.1/MAAS?x=1#y", "http://10.0.0.1/MAAS?x=1#y"),
            // No range check on the port, any path.
            ("http://10.0.0.1:99999/", "http://10.0.0.1:99999/"),
            ("http://10.0.0.1:0", "http://10.0.0.1:0"),
            // add_http, strip, the scheme lower-cased.
            ("10.0.0.1", "http://10.0.0.1"),
            ("maas.example/MAAS", "http://maas.example/MAAS"),
            ("  HTTP://Maas.Example/MAAS\n", "http://Maas.Example/MAAS"),
            // A label of digits is a host name to the regex.
            ("http://999.1.1.1/MAAS", "http://999.1.1.1/MAAS"),
        ] {
            assert_eq!(
                extended_url(given),
                Ok(Some(stored.to_string())),
                "{given:?}"
            );
        }
        assert_eq!(extended_url(""), Ok(None));
        for bad in [
            "ftp://x/MAAS",
            "http:///MAAS",
            "localhost:5240/MAAS",
            "http://test..com",
            "http://foo.com/something\nelse",
            "http://-bad/MAAS",
            "http://host-/MAAS",
            "http://maas.example./MAAS",
            "http://bad host/MAAS",
            "http://under_score/MAAS",
            "http://fd00::1/MAAS",
            "http://[fd00:1::]/MAAS",
            "http://[::]/MAAS",
            "http://[fd00::1/MAAS",
            "http://10.0.0.1:/MAAS",
            "http://10.0.0.1:123456/MAAS",
            "http://10.0.0.1/MA AS",
            "http://10.0.0.1/\"q\"",
            "http://u@p@10.0.0.1/MAAS",
            " ",
        ] {
            assert_eq!(extended_url(bad), Err("That is not a valid URL"), "{bad:?}");
        }
    }

    #[test]
    fn conf_round_trip_keeps_types_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("standin-conf-{}", std::process::id()));
        let path = dir.join("regiond.conf");
        let mut c = ConfFile::default();
        c.set("maas_url", "http://v/MAAS");
        c.set("database_port", "5433");
        c.set("debug", "true");
        c.map.insert("other".into(), "kept".into());
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("database_port: 5433") && text.contains("debug: true"),
            "{text}"
        );
        let back = ConfFile::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.db().port, 5433);
        assert_eq!(back.db().name, "maasdb");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn conf(yaml: &str) -> ConfFile {
        ConfFile {
            map: serde_yaml::from_str(yaml).unwrap(),
        }
    }

    #[test]
    fn keepalive_is_maas_default_without_keys_and_the_keys_when_set() {
        let none = conf("maas_url: http://v/MAAS\ndatabase_host: 10.0.0.5\n");
        assert_eq!(
            none.keepalive(),
            Ok(Keepalive {
                enabled: true,
                idle_s: 15,
                interval_s: 15,
                count: 2
            })
        );
        assert_eq!(none.db().keepalive, none.keepalive());
        let set = conf("database_keepalive_idle: 3\ndatabase_keepalive_interval: 1\ndatabase_keepalive_count: 4\ndatabase_keepalive: 'off'\n");
        assert_eq!(
            set.keepalive(),
            Ok(Keepalive {
                enabled: false,
                idle_s: 3,
                interval_s: 1,
                count: 4
            })
        );
        // As the CLI stores them: integers and a boolean, read back the same.
        let mut c = ConfFile::default();
        c.set("database_keepalive_idle", "5");
        c.set("database_keepalive", "yes");
        assert_eq!(c.map.get("database_keepalive_idle"), Some(&Value::from(5)));
        assert_eq!(c.map.get("database_keepalive"), Some(&Value::Bool(true)));
        assert_eq!(c.keepalive().map(|k| (k.enabled, k.idle_s)), Ok((true, 5)));
    }

    #[test]
    fn a_keepalive_maas_would_refuse_is_refused_naming_the_key() {
        let e = conf("database_keepalive_count: many\n")
            .keepalive()
            .unwrap_err();
        assert!(
            e.starts_with("database_keepalive_count: Please enter an integer value"),
            "{e}"
        );
        let e = conf("database_keepalive: perhaps\n")
            .keepalive()
            .unwrap_err();
        assert!(e.starts_with("database_keepalive: "), "{e}");
    }
}
