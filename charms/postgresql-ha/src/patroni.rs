//! Patroni's REST API, through `curl` on the host (so tests script it like any command).
//! Unsafe methods authenticate with the `patroni` user; its password goes to curl on stdin,
//! never on the command line.

use crate::paths;
use charm_lib::{Cmd, Machine};
use serde::Deserialize;

/// One member as `GET /cluster` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClusterMember {
    /// Member name (`postgresql-ha-0`).
    pub name: String,
    /// `leader`, `sync_standby`, `quorum_standby` (quorum mode), `replica`, `standby_leader`.
    #[serde(default)]
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, ...
    #[serde(default)]
    pub state: String,
    /// PostgreSQL address.
    #[serde(default)]
    pub host: Option<String>,
    /// Timeline.
    #[serde(default)]
    pub timeline: Option<i64>,
    /// Replication lag in bytes (or `"unknown"`).
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    /// A parameter change waits for a PostgreSQL restart.
    #[serde(default)]
    pub pending_restart: bool,
}

impl ClusterMember {
    /// Whether it is the running primary.
    pub fn is_primary(&self) -> bool {
        self.role == "leader" && self.state == "running"
    }

    /// Whether it is a synchronous standby: named in Patroni's `/sync` key, so it holds every
    /// acknowledged commit (with its fellow voters, in quorum mode).
    pub fn is_sync(&self) -> bool {
        self.role == "sync_standby" || self.role == "quorum_standby"
    }

    /// Lag in bytes, if known.
    pub fn lag_bytes(&self) -> Option<u64> {
        match &self.lag {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            _ => None,
        }
    }
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct Cluster {
    /// The members.
    #[serde(default)]
    pub members: Vec<ClusterMember>,
}

impl Cluster {
    /// The running primary, if any.
    pub fn primary(&self) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.is_primary())
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

/// Splits curl's output: the body, then the status code on the last line (`-w '\n%{http_code}'`).
pub(crate) fn parse_curl(stdout: &str) -> Option<Response> {
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout));
    Some(Response {
        status: code.trim().parse().ok()?,
        body: body.to_string(),
    })
}

/// A request to the local Patroni; `None` when it does not answer (not running yet).
pub fn request(
    m: &dyn Machine,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    rest_password: Option<&str>,
) -> anyhow::Result<Option<Response>> {
    let url = format!("{}{path}", paths::PATRONI_API);
    let mut args = vec![
        url,
        "-sS".into(),
        "-m".into(),
        "10".into(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    args.extend(paths::curl_tls_args());
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            b.to_string(),
        ]);
    }
    let mut cmd = Cmd::new("curl", args).allow_failure();
    if let Some(pw) = rest_password {
        let esc = pw.replace('\\', "\\\\").replace('"', "\\\"");
        cmd.args.extend(["-K".into(), "-".into()]);
        cmd = cmd
            .stdin(format!("user = \"patroni:{esc}\"\n"))
            .sensitive(pw);
    }
    let out = m.run(&cmd)?;
    if !out.success() {
        return Ok(None);
    }
    Ok(parse_curl(&out.stdout))
}

/// Waits (bounded) until the local PostgreSQL runs under Patroni (`GET /health` is 200).
pub fn wait_running(m: &dyn Machine, seconds: u32) -> anyhow::Result<bool> {
    let probe = format!(
        "until curl -sf -o /dev/null {} {}/health; do sleep 1; done",
        paths::curl_tls_args().join(" "),
        paths::PATRONI_API
    );
    Ok(m.run(
        &Cmd::new(
            "timeout",
            [seconds.to_string(), "sh".into(), "-c".into(), probe],
        )
        .allow_failure(),
    )?
    .success())
}

/// `GET /cluster`, `None` when Patroni does not answer or answers garbage.
pub fn cluster(m: &dyn Machine) -> anyhow::Result<Option<Cluster>> {
    Ok(match request(m, "GET", "/cluster", None, None)? {
        Some(r) if r.status == 200 => serde_json::from_str(&r.body).ok(),
        _ => None,
    })
}

/// `GET /config`: the dynamic configuration in the DCS.
pub fn dynamic_config(m: &dyn Machine) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(match request(m, "GET", "/config", None, None)? {
        Some(r) if r.status == 200 => serde_json::from_str(&r.body).ok(),
        _ => None,
    })
}

/// Whether every key of `wanted` has the same value in `current` (nested objects compared
/// key by key, so Patroni's extra keys do not count as differences).
pub fn config_contains(current: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    match (current, wanted) {
        (serde_json::Value::Object(c), serde_json::Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| c.get(k).is_some_and(|cv| config_contains(cv, wv))),
        // Patroni keeps values as YAML 1.1 read them: `on` becomes true, "160" may be 160.
        (c, w) => c == w || text(c) == text(w),
    }
}

fn text(v: &serde_json::Value) -> String {
    let t = match v {
        serde_json::Value::String(s) => s.to_ascii_lowercase(),
        other => other.to_string(),
    };
    match t.as_str() {
        "true" | "on" | "yes" => "on".into(),
        "false" | "off" | "no" => "off".into(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_output_splits_body_and_status() {
        assert_eq!(
            parse_curl("{\"a\":1}\n200"),
            Some(Response {
                status: 200,
                body: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            parse_curl("503"),
            Some(Response {
                status: 503,
                body: String::new()
            })
        );
        assert_eq!(parse_curl("garbage"), None);
    }

    #[test]
    fn config_comparison_ignores_extra_keys() {
        let cur = serde_json::json!({"ttl": 20, "x": 1, "postgresql": {"parameters": {"max_connections": 100, "y": "z"}}});
        assert!(config_contains(
            &cur,
            &serde_json::json!({"ttl": 20, "postgresql": {"parameters": {"max_connections": "100"}}})
        ));
        assert!(!config_contains(&cur, &serde_json::json!({"ttl": 30})));
        assert!(!config_contains(&cur, &serde_json::json!({"loop_wait": 2})));
        // What Patroni 4.1.5 really answers after a bootstrap from our YAML.
        let real = serde_json::json!({"postgresql": {"parameters": {"hot_standby": true, "wal_log_hints": true}}});
        assert!(config_contains(
            &real,
            &serde_json::json!({"postgresql": {"parameters": {"hot_standby": "on", "wal_log_hints": "on"}}})
        ));
        assert!(!config_contains(
            &real,
            &serde_json::json!({"postgresql": {"parameters": {"hot_standby": "off"}}})
        ));
    }
}
