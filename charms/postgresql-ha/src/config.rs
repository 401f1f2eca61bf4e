//! The charm's config, validated before anything is rendered: a bad value names its option.

use serde::Deserialize;
use std::fmt;

/// The validated config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Patroni leader lease (s).
    pub ttl: i64,
    /// Patroni HA loop interval (s).
    pub loop_wait: i64,
    /// Patroni retry timeout (s).
    pub retry_timeout: i64,
    /// Seconds to wait for a crashed primary to restart in place.
    pub primary_start_timeout: i64,
    /// Patroni synchronous_mode.
    #[serde(deserialize_with = "sync_mode")]
    pub synchronous_mode: SyncMode,
    /// Patroni synchronous_mode_strict.
    pub synchronous_mode_strict: bool,
    /// Patroni synchronous_node_count: standbys that confirm each commit (fewer while fewer run).
    pub synchronous_node_count: i64,
    /// Patroni maximum_lag_on_failover (bytes).
    pub maximum_lag_on_failover: i64,
    /// max_connections; 0 = sized from the clients.
    pub max_connections: i64,
    /// Patroni version installed from PyPI or the wheelhouse.
    pub patroni_version: String,
    /// Optional pip index mirror.
    #[serde(default)]
    pub pip_index_url: String,
    /// Extensions a client relation may have the superuser create: comma-separated names.
    pub allowed_extensions: String,
    /// What a `database` relation's `extra-user-roles` may be granted: comma-separated names.
    pub allowed_extra_user_roles: String,
    /// Full backups pgBackRest keeps (with the differential and incremental ones and the WAL
    /// they need); older ones expire after each backup.
    #[serde(default = "default_retention_full")]
    pub backup_retention_full: i64,
    /// When the timer takes a full backup: a cron schedule in UTC (see [`crate::backup_schedule`]),
    /// empty for none.
    #[serde(default)]
    pub backup_schedule: String,
}

fn default_retention_full() -> i64 {
    4
}

/// Patroni's `synchronous_mode`, as the `synchronous-mode` option spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Quorum commit (`ANY n (...)`): after a failover the standbys keep their votes, so the
    /// next fault fails over too. The default.
    Quorum,
    /// One (or `synchronous-node-count`) named synchronous standby, the only one promotable.
    On,
    /// Asynchronous replication: failover may lose acknowledged writes.
    Off,
}

impl SyncMode {
    /// Whether a commit waits for standbys (and failover is limited to ones that have it).
    pub fn is_synchronous(self) -> bool {
        self != SyncMode::Off
    }

    /// The value of Patroni's `synchronous_mode`.
    pub fn patroni_value(self) -> serde_json::Value {
        match self {
            SyncMode::Quorum => serde_json::json!("quorum"),
            SyncMode::On => serde_json::json!(true),
            SyncMode::Off => serde_json::json!(false),
        }
    }
}

/// serde's own message for an unknown variant names neither the option nor, for a boolean left
/// from an older config, the value; this one names both.
fn sync_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SyncMode, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    serde_json::from_value::<SyncMode>(v.clone()).map_err(|_| {
        serde::de::Error::custom(format!(
            "`synchronous-mode` {v} is not a mode: expected quorum (the default), on or off"
        ))
    })
}

/// An invalid option: its name and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option at fault.
    pub option: String,
    /// What is wrong and the expected form.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}: {}", self.option, self.message)
    }
}

fn bad(option: &str, message: String) -> ConfigError {
    ConfigError {
        option: option.to_string(),
        message,
    }
}

impl Config {
    /// Parses and validates the raw config map (as config-get prints it).
    pub fn from_raw(
        raw: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Config, ConfigError> {
        let c: Config =
            serde_json::from_value(serde_json::Value::Object(raw.clone())).map_err(|e| {
                bad(
                    option_in(&e.to_string()).as_deref().unwrap_or("config"),
                    e.to_string(),
                )
            })?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the values against Patroni 4's rules and sane bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Patroni 4 refuses a shorter lease and silently clamps; we say so instead.
        if !(20..=3600).contains(&self.ttl) {
            return Err(bad("ttl", format!("{} is out of range: expected 20..3600 seconds (Patroni 4 refuses a ttl below 20)", self.ttl)));
        }
        if !(1..=600).contains(&self.loop_wait) {
            return Err(bad(
                "loop-wait",
                format!(
                    "{} is out of range: expected 1..600 seconds",
                    self.loop_wait
                ),
            ));
        }
        if !(3..=600).contains(&self.retry_timeout) {
            return Err(bad(
                "retry-timeout",
                format!(
                    "{} is out of range: expected 3..600 seconds",
                    self.retry_timeout
                ),
            ));
        }
        if self.loop_wait + 2 * self.retry_timeout > self.ttl {
            return Err(bad(
                "loop-wait",
                format!(
                    "loop-wait + 2 * retry-timeout must be <= ttl, got {} + 2 * {} > {}: lower loop-wait/retry-timeout or raise ttl",
                    self.loop_wait, self.retry_timeout, self.ttl
                ),
            ));
        }
        if !(0..=3600).contains(&self.primary_start_timeout) {
            return Err(bad(
                "primary-start-timeout",
                format!(
                    "{} is out of range: expected 0..3600 seconds",
                    self.primary_start_timeout
                ),
            ));
        }
        if self.maximum_lag_on_failover < 0 {
            return Err(bad(
                "maximum-lag-on-failover",
                format!(
                    "{} is negative: expected a number of bytes >= 0",
                    self.maximum_lag_on_failover
                ),
            ));
        }
        if !(1..=10).contains(&self.synchronous_node_count) {
            return Err(bad(
                "synchronous-node-count",
                format!(
                    "{} is out of range: expected 1..10 standbys",
                    self.synchronous_node_count
                ),
            ));
        }
        if self.max_connections != 0 && !(20..=10000).contains(&self.max_connections) {
            return Err(bad(
                "max-connections",
                format!(
                    "{} is out of range: expected 0 (automatic) or 20..10000",
                    self.max_connections
                ),
            ));
        }
        if !valid_patroni_version(&self.patroni_version) {
            return Err(bad(
                "patroni-version",
                format!(
                    "{:?} is not a Patroni 4.x version: expected e.g. 4.1.5",
                    self.patroni_version
                ),
            ));
        }
        let idx = self.pip_index_url.trim();
        let is_url =
            idx.starts_with("http://") || idx.starts_with("https://") || idx.starts_with("file://");
        if !(idx.is_empty() || is_url) || idx.contains(char::is_whitespace) {
            return Err(bad(
                "pip-index-url",
                format!("{idx:?} is not a URL: expected https://host/simple or empty"),
            ));
        }
        if !(1..=9_999_999).contains(&self.backup_retention_full) {
            return Err(bad(
                "backup-retention-full",
                format!(
                    "{} is out of range: expected 1..9999999 full backups",
                    self.backup_retention_full
                ),
            ));
        }
        if let Err(why) = crate::backup_schedule::parse(&self.backup_schedule) {
            return Err(bad(
                crate::backup_schedule::OPTION,
                format!("{why}: {}", crate::backup_schedule::EXPECTED),
            ));
        }
        for name in self.allowed_extensions() {
            if !crate::clients::valid_extension(&name) {
                return Err(bad(
                    "allowed-extensions",
                    format!("{name:?} is not an extension name: expected a comma-separated list of extension names (lowercase letters, digits, '_' and '-'), e.g. btree_gin,pg_trgm, or empty for none"),
                ));
            }
        }
        for name in self.allowed_extra_user_roles() {
            if let Err(why) = crate::clients::grantable_role(&name) {
                return Err(bad(
                    "allowed-extra-user-roles",
                    format!("{name:?} {why}: expected a comma-separated list of role attributes (superuser, createdb, createrole) and role names, e.g. createdb,pg_read_all_data, or empty for none"),
                ));
            }
        }
        Ok(())
    }

    /// What `database` relations' `extra-user-roles` may be granted, as the operator listed it.
    pub fn allowed_extra_user_roles(&self) -> Vec<String> {
        crate::clients::role_list(&self.allowed_extra_user_roles)
    }

    /// The parsed `backup-schedule` (validated already: `None` when empty).
    pub fn backup_schedule(&self) -> Option<crate::backup_schedule::Schedule> {
        crate::backup_schedule::parse(&self.backup_schedule)
            .ok()
            .flatten()
    }

    /// The extensions client relations may have created, as the operator listed them.
    pub fn allowed_extensions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .allowed_extensions
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// max_connections for `client_units` related client units.
    pub fn effective_max_connections(&self, client_units: usize) -> i64 {
        if self.max_connections > 0 {
            self.max_connections
        } else {
            // MAAS regions hold about 40 connections each; 50 leaves room for admin sessions.
            // A change restarts PostgreSQL on every member, the primary too (a blip of the
            // database and 503s from every region), so the size grows in steps of 100 from 500:
            // the bundle's deployment and the next few add-units change nothing.
            let need = 10 + 50 * client_units as i64;
            (((need + 99) / 100) * 100).max(500)
        }
    }
}

/// `4`, `4.1`, `4.1.5`: Patroni 3.x split-brained here on partition heal, so only 4.x is allowed.
fn valid_patroni_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.first() == Some(&"4")
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// serde names the field in its message (`invalid type ... for key `x``) only sometimes; find
/// an option name quoted in it.
fn option_in(msg: &str) -> Option<String> {
    let known = [
        "ttl",
        "loop-wait",
        "retry-timeout",
        "primary-start-timeout",
        "synchronous-mode-strict",
        "synchronous-node-count",
        "synchronous-mode",
        "maximum-lag-on-failover",
        "max-connections",
        "patroni-version",
        "pip-index-url",
        "allowed-extensions",
        "allowed-extra-user-roles",
        "backup-retention-full",
        "backup-schedule",
    ];
    known
        .iter()
        .find(|k| msg.contains(&format!("`{k}`")))
        .map(|k| k.to_string())
}

impl charm_lib::CharmConfig for Config {
    type Error = ConfigError;
    fn from_options(
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ConfigError> {
        Config::from_raw(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(over: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
        let mut m: serde_json::Map<String, serde_json::Value> = serde_json::json!({
            "ttl": 20, "loop-wait": 2, "retry-timeout": 3, "primary-start-timeout": 0,
            "synchronous-mode": "quorum", "synchronous-mode-strict": true, "synchronous-node-count": 2, "maximum-lag-on-failover": 1048576,
            "max-connections": 0, "patroni-version": "4.1.5", "pip-index-url": "",
            "allowed-extensions": "btree_gin,pg_trgm", "allowed-extra-user-roles": "createdb"
        })
        .as_object()
        .unwrap()
        .clone();
        for (k, v) in over {
            m.insert(k.to_string(), v.clone());
        }
        m
    }

    #[test]
    fn defaults_are_valid_and_meet_patroni_rules() {
        let c = Config::from_raw(&raw(&[])).unwrap();
        assert!(c.loop_wait + 2 * c.retry_timeout <= c.ttl);
        assert_eq!(c.ttl, 20);
        assert_eq!(c.synchronous_mode, SyncMode::Quorum);
        assert!(c.synchronous_mode_strict);
        assert_eq!(c.synchronous_node_count, 2);
    }

    #[test]
    fn each_mode_maps_to_patroni_s_value() {
        use serde_json::json;
        for (opt, patroni) in [
            ("quorum", json!("quorum")),
            ("on", json!(true)),
            ("off", json!(false)),
        ] {
            let c = Config::from_raw(&raw(&[("synchronous-mode", json!(opt))])).unwrap();
            assert_eq!(c.synchronous_mode.patroni_value(), patroni, "{opt}");
            assert_eq!(c.synchronous_mode.is_synchronous(), opt != "off", "{opt}");
        }
    }

    #[test]
    fn validation_matrix_names_the_option() {
        use serde_json::json;
        let cases: Vec<(Vec<(&str, serde_json::Value)>, &str)> = vec![
            (vec![("ttl", json!(19))], "ttl"),
            (vec![("ttl", json!(5000))], "ttl"),
            (vec![("loop-wait", json!(0))], "loop-wait"),
            (vec![("retry-timeout", json!(2))], "retry-timeout"),
            (
                vec![("loop-wait", json!(10)), ("retry-timeout", json!(6))],
                "loop-wait",
            ),
            (
                vec![("primary-start-timeout", json!(-1))],
                "primary-start-timeout",
            ),
            (
                vec![("maximum-lag-on-failover", json!(-5))],
                "maximum-lag-on-failover",
            ),
            (vec![("max-connections", json!(5))], "max-connections"),
            (vec![("synchronous-mode", json!("yes"))], "synchronous-mode"),
            (vec![("synchronous-mode", json!(true))], "synchronous-mode"),
            (
                vec![("synchronous-node-count", json!(0))],
                "synchronous-node-count",
            ),
            (vec![("patroni-version", json!("3.0.2"))], "patroni-version"),
            (vec![("patroni-version", json!("4.x"))], "patroni-version"),
            (vec![("pip-index-url", json!("not a url"))], "pip-index-url"),
            (
                vec![("allowed-extensions", json!("pg_trgm;plpython3u"))],
                "allowed-extensions",
            ),
            (
                vec![("allowed-extensions", json!("btree_gin, Pg Trgm"))],
                "allowed-extensions",
            ),
            (
                vec![(
                    "allowed-extra-user-roles",
                    json!("createdb,pg_execute_server_program"),
                )],
                "allowed-extra-user-roles",
            ),
            (
                vec![("allowed-extra-user-roles", json!("replication"))],
                "allowed-extra-user-roles",
            ),
            (
                vec![("allowed-extra-user-roles", json!("relation_3"))],
                "allowed-extra-user-roles",
            ),
            (
                vec![("allowed-extra-user-roles", json!("my-role"))],
                "allowed-extra-user-roles",
            ),
            (vec![("backup-schedule", json!("daily"))], "backup-schedule"),
            (
                vec![("backup-schedule", json!("0 2 1 * mon"))],
                "backup-schedule",
            ),
        ];
        for (over, option) in cases {
            let e = Config::from_raw(&raw(&over)).unwrap_err();
            assert_eq!(e.option, option, "{over:?}: {e}");
            assert!(
                e.message.contains("expected") || e.message.contains("must"),
                "{e}"
            );
        }
        let ok = Config::from_raw(&raw(&[
            ("ttl", json!(30)),
            ("loop-wait", json!(10)),
            ("retry-timeout", json!(10)),
        ]))
        .unwrap();
        assert_eq!(
            ok.ttl, 30,
            "ttl 30 / loop 10 / retry 10 is exactly at the limit and valid"
        );
    }

    #[test]
    fn allowed_extensions_are_a_trimmed_list_and_may_be_empty() {
        use serde_json::json;
        let c = Config::from_raw(&raw(&[(
            "allowed-extensions",
            json!(" pg_trgm, uuid-ossp,,btree_gin ,pg_trgm"),
        )]))
        .unwrap();
        assert_eq!(
            c.allowed_extensions(),
            vec!["btree_gin", "pg_trgm", "uuid-ossp"]
        );
        let c = Config::from_raw(&raw(&[("allowed-extensions", json!(""))])).unwrap();
        assert!(c.allowed_extensions().is_empty(), "empty: none at all");
    }

    #[test]
    fn the_default_allowlist_is_trusted_contrib_only() {
        // config.yaml's default, as Juju gives it.
        let spec: serde_yaml::Value = serde_yaml::from_str(include_str!("../config.yaml")).unwrap();
        let default = spec["options"]["allowed-extensions"]["default"]
            .as_str()
            .unwrap();
        let c =
            Config::from_raw(&raw(&[("allowed-extensions", serde_json::json!(default))])).unwrap();
        let allowed = c.allowed_extensions();
        for needed in ["btree_gin", "pg_trgm"] {
            assert!(allowed.iter().any(|e| e == needed), "{needed}: {allowed:?}");
        }
        // Untrusted languages and extensions that reach files, the network or the server's
        // internals stay out unless the operator adds them.
        for risky in [
            "plpython3u",
            "plperlu",
            "adminpack",
            "file_fdw",
            "dblink",
            "postgres_fdw",
            "pageinspect",
        ] {
            assert!(!allowed.iter().any(|e| e == risky), "{risky}: {allowed:?}");
        }
    }

    #[test]
    fn the_default_extra_user_roles_are_createdb_only() {
        // config.yaml's default, as Juju gives it.
        let spec: serde_yaml::Value = serde_yaml::from_str(include_str!("../config.yaml")).unwrap();
        let default = spec["options"]["allowed-extra-user-roles"]["default"]
            .as_str()
            .unwrap();
        let c = Config::from_raw(&raw(&[(
            "allowed-extra-user-roles",
            serde_json::json!(default),
        )]))
        .unwrap();
        assert_eq!(c.allowed_extra_user_roles(), vec!["createdb"]);
        let c = Config::from_raw(&raw(&[(
            "allowed-extra-user-roles",
            serde_json::json!(" CreateDB, pg_read_all_data,,createdb"),
        )]))
        .unwrap();
        assert_eq!(
            c.allowed_extra_user_roles(),
            vec!["createdb", "pg_read_all_data"],
            "trimmed and lowercased as the client's list is"
        );
    }

    #[test]
    fn max_connections_follow_clients_unless_set() {
        let c = Config::from_raw(&raw(&[])).unwrap();
        assert_eq!(c.effective_max_connections(0), 500);
        assert_eq!(c.effective_max_connections(3), 500);
        assert_eq!(c.effective_max_connections(9), 500);
        assert_eq!(c.effective_max_connections(10), 600);
        assert_eq!(c.effective_max_connections(12), 700);
        let c = Config::from_raw(&raw(&[("max-connections", serde_json::json!(500))])).unwrap();
        assert_eq!(c.effective_max_connections(3), 500);
    }
}
