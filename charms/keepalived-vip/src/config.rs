//! The charm's options, validated from the raw `config-get` map so that every refusal names
//! the option and the form it expects.

use crate::checks::{self, Check};
use crate::net::Cidr;
use serde_json::{Map, Value};
use std::fmt;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The VIPs, in the operator's order (the first decides the VRRP address family).
    pub vips: Vec<Cidr>,
    /// The interface asked for, if any.
    pub interface: Option<String>,
    /// The virtual router id.
    pub vrid: u8,
    /// The priority asked for; `None`: derived from the unit number.
    pub priority: Option<u8>,
    /// Advertisement interval in centiseconds (keepalived's resolution).
    pub advert_cs: u32,
    /// 2 or 3.
    pub version: u8,
    /// Whether a higher priority takes the VIP back.
    pub preempt: bool,
    /// Unicast adverts to the peers.
    pub unicast: bool,
    /// Checks from the `check` option.
    pub checks: Vec<Check>,
    /// Seconds between check runs.
    pub check_interval: u32,
    /// Failed runs of a check in a row before the unit gives up the VIP.
    pub check_fall: u32,
}

/// Why the configuration cannot be used; its text is the Blocked status message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `vip` is empty: nothing to do yet.
    NoVip,
    /// An option has a bad value.
    Invalid {
        /// The option.
        option: &'static str,
        /// The value as the operator wrote it.
        value: String,
        /// What was expected (and why the value is not it).
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoVip => f.write_str("set vip"),
            ConfigError::Invalid {
                option,
                value,
                expected,
            } => write!(f, "invalid {option} {value:?}: {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(option: &'static str, value: &Value, expected: impl Into<String>) -> ConfigError {
    let value = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    ConfigError::Invalid {
        option,
        value,
        expected: expected.into(),
    }
}

/// The default when an option is absent (Juju always sends declared defaults; this keeps a
/// hand-written map working too).
fn get<'a>(raw: &'a Map<String, Value>, key: &str, default: &'a Value) -> &'a Value {
    match raw.get(key) {
        Some(Value::Null) | None => default,
        Some(v) => v,
    }
}

fn int_in(
    raw: &Map<String, Value>,
    key: &'static str,
    default: i64,
    lo: i64,
    hi: i64,
    expected: &str,
) -> Result<i64, ConfigError> {
    let d = Value::from(default);
    let v = get(raw, key, &d);
    match v.as_i64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(invalid(key, v, expected)),
    }
}

fn boolean(
    raw: &Map<String, Value>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    let d = Value::from(default);
    let v = get(raw, key, &d);
    v.as_bool()
        .ok_or_else(|| invalid(key, v, "expected true or false"))
}

fn string<'a>(raw: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, ConfigError> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.trim()),
        Some(v) => Err(invalid(key, v, "expected a string")),
    }
}

/// The expected form of `vip`.
const VIP_FORM: &str = "expected one or more addresses with prefix, separated by commas, e.g. 10.0.0.100/24 or 2001:db8::100/64";

/// Parses and checks `vip`.
pub fn parse_vips(text: &str) -> Result<Vec<Cidr>, ConfigError> {
    let bad = |why: String| ConfigError::Invalid {
        option: "vip",
        value: text.to_string(),
        expected: format!("{why}; {VIP_FORM}"),
    };
    let mut out: Vec<Cidr> = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let c: Cidr = item.parse().map_err(|why| bad(format!("{item}: {why}")))?;
        let unusable = match c.addr {
            std::net::IpAddr::V4(a) => {
                a.is_loopback()
                    || a.is_multicast()
                    || a.is_unspecified()
                    || a.is_link_local()
                    || a.is_broadcast()
            }
            std::net::IpAddr::V6(a) => {
                a.is_loopback()
                    || a.is_multicast()
                    || a.is_unspecified()
                    || (a.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if unusable {
            return Err(bad(format!(
                "{item} is a loopback, link-local, multicast or unspecified address"
            )));
        }
        let host_bits = Cidr::max_prefix(c.addr) - c.prefix;
        if c.addr.is_ipv4() && host_bits >= 2 {
            let n = u32::from(match c.addr {
                std::net::IpAddr::V4(a) => a,
                _ => unreachable!(),
            });
            let host = n & ((1u32 << host_bits) - 1);
            if host == 0 || host == (1u32 << host_bits) - 1 {
                return Err(bad(format!(
                    "{item} is the network or broadcast address of its subnet"
                )));
            }
        }
        if out.iter().any(|o| o.addr == c.addr) {
            return Err(bad(format!("{} is listed twice", c.addr)));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(ConfigError::NoVip);
    }
    Ok(out)
}

impl charm_lib::CharmConfig for Config {
    type Error = ConfigError;
    fn from_options(options: &Map<String, Value>) -> Result<Self, ConfigError> {
        validate(options)
    }
}

/// Validates the whole configuration; the first problem found is returned.
pub fn validate(raw: &Map<String, Value>) -> Result<Config, ConfigError> {
    let vips = parse_vips(string(raw, "vip")?)?;

    let iface = string(raw, "interface")?;
    let interface = if iface.is_empty() {
        None
    } else {
        let ok = iface.len() <= 15
            && iface
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'));
        if !ok {
            return Err(invalid(
                "interface",
                &Value::from(iface),
                "expected a network interface name: up to 15 letters, digits, . _ - @ :",
            ));
        }
        if iface == "lo" {
            return Err(invalid("interface", &Value::from(iface), "VRRP cannot run on the loopback interface; name the interface that carries the VIP's subnet"));
        }
        Some(iface.to_string())
    };

    let vrid = int_in(
        raw,
        "virtual-router-id",
        51,
        1,
        255,
        "expected an integer 1-255",
    )? as u8;
    let priority = match raw.get("priority") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=254).contains(&n) => Some(n as u8),
            _ => return Err(invalid("priority", v, "expected an integer 1-254 (255 is reserved for the address owner), or unset for a distinct priority per unit")),
        },
    };
    let version = int_in(raw, "vrrp-version", 2, 2, 3, "expected 2 or 3")? as u8;

    let d = Value::from(1.0);
    let adv = get(raw, "advert-int", &d);
    let advert_cs = match adv.as_f64() {
        Some(x) if x.is_finite() && x > 0.0 => {
            let cs = (x * 100.0).round();
            if (cs - x * 100.0).abs() > 1e-6 {
                return Err(invalid(
                    "advert-int",
                    adv,
                    "expected seconds in steps of 0.01",
                ));
            }
            cs as u32
        }
        _ => {
            return Err(invalid(
                "advert-int",
                adv,
                "expected a number of seconds greater than 0",
            ))
        }
    };
    if version == 2 && (advert_cs % 100 != 0 || !(100..=25500).contains(&advert_cs)) {
        return Err(invalid("advert-int", adv, "expected whole seconds 1-255 with vrrp-version 2 (set vrrp-version=3 for sub-second adverts)"));
    }
    if version == 3 && !(1..=4095).contains(&advert_cs) {
        return Err(invalid(
            "advert-int",
            adv,
            "expected 0.01-40.95 seconds with vrrp-version 3",
        ));
    }
    if version == 2 && vips[0].is_v6() {
        return Err(invalid(
            "vrrp-version",
            &Value::from(2),
            "VRRP version 2 carries only IPv4 and the first vip is IPv6; set vrrp-version=3",
        ));
    }

    let preempt = boolean(raw, "preempt", false)?;
    let unicast = boolean(raw, "unicast", true)?;
    let check_text = string(raw, "check")?;
    let checks = checks::parse_checks(check_text).map_err(|why| {
        invalid(
            "check",
            &Value::from(check_text),
            format!("{why}; {}", checks::EXPECTED),
        )
    })?;
    let check_interval = int_in(
        raw,
        "check-interval",
        1,
        1,
        3600,
        "expected whole seconds 1-3600",
    )? as u32;
    let check_fall = int_in(
        raw,
        "check-fall",
        1,
        1,
        10,
        "expected a whole number of failed runs 1-10",
    )? as u32;

    Ok(Config {
        vips,
        interface,
        vrid,
        priority,
        advert_cs,
        version,
        preempt,
        unicast,
        checks,
        check_interval,
        check_fall,
    })
}

/// The priority of unit number `n` when `priority` is unset: distinct for up to 250 units,
/// highest for unit 0, always within 1-250.
pub fn default_priority(unit_number: u32) -> u8 {
    (250 - (unit_number % 250)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(pairs: &[(&str, Value)]) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("vip".into(), json!("10.0.0.100/24"));
        for (k, v) in pairs {
            m.insert(k.to_string(), v.clone());
        }
        m
    }

    fn err(pairs: &[(&str, Value)]) -> String {
        validate(&raw(pairs))
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = validate(&raw(&[])).unwrap();
        assert_eq!(
            (
                c.vrid,
                c.priority,
                c.advert_cs,
                c.version,
                c.preempt,
                c.unicast,
                c.check_interval,
                c.check_fall
            ),
            (51, None, 100, 2, false, true, 1, 1)
        );
        assert_eq!(
            validate(&raw(&[("check-fall", json!(2))]))
                .unwrap()
                .check_fall,
            2
        );
        assert_eq!(c.vips[0].to_string(), "10.0.0.100/24");
        assert!(c.interface.is_none() && c.checks.is_empty());
    }

    #[test]
    fn vip_forms() {
        let c = validate(&raw(&[
            ("vip", json!("10.0.0.100/24, fd00::100/64 10.0.0.101/24")),
            ("vrrp-version", json!(3)),
        ]))
        .unwrap();
        assert_eq!(c.vips.len(), 3);
        assert_eq!(err(&[("vip", json!(""))]), "set vip");
        assert_eq!(err(&[("vip", json!(" , "))]), "set vip");
        for (v, why) in [
            ("10.0.0.100", "missing prefix length"),
            ("10.0.0.300/24", "not an IPv4 or IPv6 address"),
            ("10.0.0.100/33", "out of range 1-32"),
            ("fd00::1/200", "out of range 1-128"),
            ("10.0.0.0/24", "network or broadcast"),
            ("10.0.0.255/24", "network or broadcast"),
            ("127.0.0.5/8", "loopback"),
            ("224.0.0.18/24", "multicast"),
            ("fe80::5/64", "link-local"),
            ("10.0.0.100/24,10.0.0.100/25", "listed twice"),
            ("vip", "missing prefix"),
        ] {
            let e = err(&[("vip", json!(v))]);
            assert!(
                e.starts_with(&format!("invalid vip {v:?}: "))
                    && e.contains(why)
                    && e.contains("e.g. 10.0.0.100/24"),
                "{v}: {e}"
            );
        }
        assert!(
            validate(&raw(&[("vip", json!("10.0.0.100/32"))])).is_ok(),
            "a /32 VIP is allowed"
        );
    }

    /// Each option with a wrong type, out of range, empty and malformed values.
    #[test]
    fn validation_matrix() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("vip", json!(5), "invalid vip \"5\": expected a string"),
            ("interface", json!(3), "invalid interface \"3\": expected a string"),
            ("interface", json!("eth 0"), "invalid interface \"eth 0\": expected a network interface name"),
            ("interface", json!("averyveryverylongname0"), "expected a network interface name"),
            ("interface", json!("lo"), "invalid interface \"lo\": VRRP cannot run on the loopback interface"),
            ("virtual-router-id", json!("51"), "invalid virtual-router-id \"51\": expected an integer 1-255"),
            ("virtual-router-id", json!(0), "invalid virtual-router-id \"0\": expected an integer 1-255"),
            ("virtual-router-id", json!(300), "invalid virtual-router-id \"300\": expected an integer 1-255"),
            ("virtual-router-id", json!(-1), "expected an integer 1-255"),
            ("virtual-router-id", json!(5.5), "expected an integer 1-255"),
            ("priority", json!(0), "invalid priority \"0\": expected an integer 1-254"),
            ("priority", json!(255), "invalid priority \"255\": expected an integer 1-254 (255 is reserved"),
            ("priority", json!("high"), "invalid priority \"high\": expected an integer 1-254"),
            ("advert-int", json!(0), "invalid advert-int \"0\": expected a number of seconds greater than 0"),
            ("advert-int", json!(-1), "greater than 0"),
            ("advert-int", json!("1"), "invalid advert-int \"1\": expected a number"),
            ("advert-int", json!(0.5), "invalid advert-int \"0.5\": expected whole seconds 1-255 with vrrp-version 2 (set vrrp-version=3"),
            ("advert-int", json!(256), "expected whole seconds 1-255"),
            ("advert-int", json!(0.123), "expected seconds in steps of 0.01"),
            ("vrrp-version", json!(1), "invalid vrrp-version \"1\": expected 2 or 3"),
            ("vrrp-version", json!(4), "expected 2 or 3"),
            ("vrrp-version", json!("3"), "expected 2 or 3"),
            ("preempt", json!("yes"), "invalid preempt \"yes\": expected true or false"),
            ("unicast", json!(1), "invalid unicast \"1\": expected true or false"),
            ("check", json!("haproxy"), "invalid check \"haproxy\": \"haproxy\" is not a check; expected comma-separated checks"),
            ("check", json!("tcp:99999"), "port must be a number 1-65535"),
            ("check", json!("process:"), "a process name is"),
            ("check", json!(7), "invalid check \"7\": expected a string"),
            ("check-interval", json!(0), "invalid check-interval \"0\": expected whole seconds 1-3600"),
            ("check-interval", json!(3601), "expected whole seconds 1-3600"),
            ("check-interval", json!("2"), "expected whole seconds 1-3600"),
            ("check-fall", json!(0), "invalid check-fall \"0\": expected a whole number of failed runs 1-10"),
            ("check-fall", json!(11), "expected a whole number of failed runs 1-10"),
        ];
        for (opt, v, want) in cases {
            let e = err(&[(opt, v.clone())]);
            assert!(e.contains(want), "{opt}={v}: got {e:?}, wanted {want:?}");
        }
    }

    #[test]
    fn version_dependent_rules() {
        let c = validate(&raw(&[
            ("vrrp-version", json!(3)),
            ("advert-int", json!(0.1)),
        ]))
        .unwrap();
        assert_eq!(c.advert_cs, 10);
        assert!(
            err(&[("vrrp-version", json!(3)), ("advert-int", json!(41))])
                .contains("0.01-40.95 seconds with vrrp-version 3")
        );
        assert!(err(&[("vip", json!("fd00::100/64"))])
            .starts_with("invalid vrrp-version \"2\": VRRP version 2 carries only IPv4"));
        assert!(validate(&raw(&[
            ("vip", json!("fd00::100/64")),
            ("vrrp-version", json!(3))
        ]))
        .is_ok());
        assert_eq!(
            validate(&raw(&[("priority", json!(100))]))
                .unwrap()
                .priority,
            Some(100)
        );
        assert_eq!(
            validate(&raw(&[("interface", json!("eth1"))]))
                .unwrap()
                .interface
                .as_deref(),
            Some("eth1")
        );
        assert_eq!(
            validate(&raw(&[("check", json!("process:haproxy,tcp:80"))]))
                .unwrap()
                .checks
                .len(),
            2
        );
    }

    #[test]
    fn default_priorities_are_distinct_and_in_range() {
        let ps: Vec<u8> = (0..250).map(default_priority).collect();
        assert_eq!(ps[0], 250);
        assert_eq!(ps[1], 249);
        let set: std::collections::BTreeSet<_> = ps.iter().collect();
        assert_eq!(set.len(), 250);
        assert!((0..2000)
            .map(default_priority)
            .all(|p| (1..=254).contains(&p)));
    }
}
