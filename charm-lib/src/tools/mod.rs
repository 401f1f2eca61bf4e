//! Layer 1: a typed function for each Juju hook tool.
//!
//! Each wrapper builds exactly the argv of `reference/juju-runtime.md` §2, asks for
//! `--format=json` where the tool supports it, and parses the documented JSON shape. Nothing
//! here knows about leadership rules or caching: that is the model's job (`crate::model`).

mod runner;
mod types;

pub use runner::{PathRunner, ToolError, ToolErrorKind, ToolRunner};
pub use types::{
    BindAddress, Databag, InterfaceAddress, NetworkInfo, Port, RelationId, SecretInfo,
    SecretOptions, SecretOwner, StatusInfo,
};

use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Juju log levels, as `juju-log --log-level` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// TRACE
    Trace,
    /// DEBUG
    Debug,
    /// INFO
    Info,
    /// WARNING
    Warning,
    /// ERROR
    Error,
}

impl LogLevel {
    /// The name juju-log expects.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

/// The bare id of a secret, whichever form Juju printed: `secret://<model-uuid>/<id>` (what
/// `secret-add` prints), `secret:<id>` (`JUJU_SECRET_ID`, and ids built from `secret-info-get`)
/// or `<id>` (`secret-ids`). Juju's core/secrets ParseURI reads all three as the same secret;
/// compare ids with [`same_secret`], never as strings.
pub fn secret_xid(id: &str) -> &str {
    let id = id.trim();
    let rest = id.strip_prefix("secret:").unwrap_or(id);
    rest.rsplit('/').next().unwrap_or(rest)
}

/// Whether two secret ids name the same secret (their bare ids are equal).
pub fn same_secret(a: &str, b: &str) -> bool {
    secret_xid(a) == secret_xid(b)
}

/// Typed hook-tool calls over a [`ToolRunner`].
#[derive(Clone, Copy)]
pub struct HookTools<'r> {
    runner: &'r dyn ToolRunner,
}

fn s(x: impl Into<String>) -> String {
    x.into()
}

impl<'r> HookTools<'r> {
    /// Wraps a runner.
    pub fn new(runner: &'r dyn ToolRunner) -> HookTools<'r> {
        HookTools { runner }
    }

    fn call(
        &self,
        tool: &str,
        args: Vec<String>,
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, ToolError> {
        self.runner.run(tool, &args, stdin)
    }

    fn call_json<T: DeserializeOwned>(
        &self,
        tool: &str,
        args: Vec<String>,
    ) -> Result<T, ToolError> {
        let out = self.call(tool, args.clone(), None)?;
        parse_json(tool, &args, &out)
    }

    // ---- relations -------------------------------------------------------------------

    /// `relation-ids --format=json <endpoint>`: the ids of the relations on `endpoint`.
    pub fn relation_ids(&self, endpoint: &str) -> Result<Vec<RelationId>, ToolError> {
        let args = vec![s("--format=json"), s(endpoint)];
        let raw: Option<Vec<String>> = self.call_json("relation-ids", args.clone())?;
        raw.unwrap_or_default()
            .into_iter()
            .map(|r| {
                r.parse()
                    .map_err(|e| bad_output("relation-ids", &args, &r, e))
            })
            .collect()
    }

    /// `relation-list --format=json -r <id>`: the remote units of a relation (peers for a peer
    /// relation), without the departing one in `-departed`.
    pub fn relation_list(&self, rel: &RelationId) -> Result<Vec<String>, ToolError> {
        let raw: Option<Vec<String>> = self.call_json(
            "relation-list",
            vec![s("--format=json"), s("-r"), rel.to_string()],
        )?;
        Ok(raw.unwrap_or_default())
    }

    /// `relation-list --format=json -r <id> --app`: the remote application's name.
    pub fn relation_list_app(&self, rel: &RelationId) -> Result<Option<String>, ToolError> {
        self.call_json(
            "relation-list",
            vec![s("--format=json"), s("-r"), rel.to_string(), s("--app")],
        )
    }

    /// `relation-get --format=json -r <id> [--app] - <unit-or-app>`: a whole databag.
    pub fn relation_get(
        &self,
        rel: &RelationId,
        owner: &str,
        app: bool,
    ) -> Result<Databag, ToolError> {
        let mut args = vec![s("--format=json"), s("-r"), rel.to_string()];
        if app {
            args.push(s("--app"));
        }
        args.extend([s("-"), s(owner)]);
        let bag: Option<Databag> = self.call_json("relation-get", args)?;
        Ok(bag.unwrap_or_default())
    }

    /// `relation-get --format=json -r <id> [--app] <key> <unit-or-app>`: one value, `None` if unset.
    pub fn relation_get_key(
        &self,
        rel: &RelationId,
        key: &str,
        owner: &str,
        app: bool,
    ) -> Result<Option<String>, ToolError> {
        let mut args = vec![s("--format=json"), s("-r"), rel.to_string()];
        if app {
            args.push(s("--app"));
        }
        args.extend([s(key), s(owner)]);
        self.call_json("relation-get", args)
    }

    /// `relation-set -r <id> [--app] --file -` with the changes as a JSON map on stdin. An
    /// empty value deletes the key.
    pub fn relation_set(
        &self,
        rel: &RelationId,
        changes: &Databag,
        app: bool,
    ) -> Result<(), ToolError> {
        let mut args = vec![s("-r"), rel.to_string()];
        if app {
            args.push(s("--app"));
        }
        args.extend([s("--file"), s("-")]);
        let body = serde_json::to_vec(changes).expect("a string map always serializes");
        self.call("relation-set", args, Some(&body)).map(drop)
    }

    // ---- config, leadership, status, logs ---------------------------------------------

    /// `config-get --format=json`: every option that is set or has a default.
    pub fn config_get(&self) -> Result<serde_json::Map<String, serde_json::Value>, ToolError> {
        let raw: Option<serde_json::Map<String, serde_json::Value>> =
            self.call_json("config-get", vec![s("--format=json")])?;
        Ok(raw.unwrap_or_default())
    }

    /// `is-leader --format=json`.
    pub fn is_leader(&self) -> Result<bool, ToolError> {
        self.call_json("is-leader", vec![s("--format=json")])
    }

    /// `status-set [--application] <status> <message>`.
    pub fn status_set(
        &self,
        status: &str,
        message: &str,
        application: bool,
    ) -> Result<(), ToolError> {
        let mut args = Vec::new();
        if application {
            args.push(s("--application"));
        }
        // After `--` nothing is a flag, so a message starting with `-` stays a message.
        args.extend([s("--"), s(status), s(message)]);
        self.call("status-set", args, None).map(drop)
    }

    /// `status-get --include-data --format=json`: this unit's status.
    pub fn status_get(&self) -> Result<StatusInfo, ToolError> {
        self.call_json("status-get", vec![s("--include-data"), s("--format=json")])
    }

    /// `status-get --application --include-data --format=json`: the application's status
    /// (leader only). Juju nests `units` inside `application-status`; both shapes are accepted.
    pub fn status_get_application(&self) -> Result<StatusInfo, ToolError> {
        let args = vec![s("--application"), s("--include-data"), s("--format=json")];
        let v: serde_json::Value = self.call_json("status-get", args.clone())?;
        let inner = v.get("application-status").cloned().unwrap_or(v);
        serde_json::from_value(inner.clone())
            .map_err(|e| bad_output("status-get", &args, &inner.to_string(), e.to_string()))
    }

    /// `juju-log --log-level <LEVEL> -- <message>`.
    pub fn juju_log(&self, level: LogLevel, message: &str) -> Result<(), ToolError> {
        self.call(
            "juju-log",
            vec![s("--log-level"), s(level.as_str()), s("--"), s(message)],
            None,
        )
        .map(drop)
    }

    /// `application-version-set <version>`.
    pub fn application_version_set(&self, version: &str) -> Result<(), ToolError> {
        self.call("application-version-set", vec![s("--"), s(version)], None)
            .map(drop)
    }

    // ---- network and ports --------------------------------------------------------------

    /// `open-port <port>`.
    pub fn open_port(&self, port: Port) -> Result<(), ToolError> {
        self.call("open-port", vec![port.to_string()], None)
            .map(drop)
    }

    /// `close-port <port>`.
    pub fn close_port(&self, port: Port) -> Result<(), ToolError> {
        self.call("close-port", vec![port.to_string()], None)
            .map(drop)
    }

    /// `opened-ports --format=json`.
    pub fn opened_ports(&self) -> Result<Vec<Port>, ToolError> {
        let args = vec![s("--format=json")];
        let raw: Option<Vec<String>> = self.call_json("opened-ports", args.clone())?;
        raw.unwrap_or_default()
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|e| bad_output("opened-ports", &args, p, e))
            })
            .collect()
    }

    /// `network-get --format=json <binding> [-r <id>]`.
    pub fn network_get(
        &self,
        binding: &str,
        rel: Option<&RelationId>,
    ) -> Result<NetworkInfo, ToolError> {
        let mut args = vec![s("--format=json")];
        if let Some(r) = rel {
            args.extend([s("-r"), r.to_string()]);
        }
        args.push(s(binding));
        self.call_json("network-get", args)
    }

    /// `unit-get --format=json <private-address|public-address>`.
    pub fn unit_get(&self, key: &str) -> Result<Option<String>, ToolError> {
        self.call_json("unit-get", vec![s("--format=json"), s(key)])
    }

    // ---- actions ----------------------------------------------------------------------------

    /// `action-get --format=json`: the action's parameters.
    pub fn action_get(&self) -> Result<serde_json::Value, ToolError> {
        let v: Option<serde_json::Value> =
            self.call_json("action-get", vec![s("--format=json")])?;
        Ok(v.unwrap_or(serde_json::Value::Object(Default::default())))
    }

    /// `action-set k=v ...` with dotted keys for nesting.
    pub fn action_set(&self, results: &BTreeMap<String, String>) -> Result<(), ToolError> {
        if results.is_empty() {
            return Ok(());
        }
        let args = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.call("action-set", args, None).map(drop)
    }

    /// `action-log -- <message>`.
    pub fn action_log(&self, message: &str) -> Result<(), ToolError> {
        self.call("action-log", vec![s("--"), s(message)], None)
            .map(drop)
    }

    /// `action-fail -- <message>`.
    pub fn action_fail(&self, message: &str) -> Result<(), ToolError> {
        self.call("action-fail", vec![s("--"), s(message)], None)
            .map(drop)
    }

    // ---- secrets ----------------------------------------------------------------------------

    /// `secret-add [options] --file <yaml>`: returns the new secret's URI as Juju printed it
    /// (`secret://<model-uuid>/<id>` from Juju 3; see [`secret_xid`]). The content goes
    /// through a private file, never argv, so it cannot be read from the process list.
    pub fn secret_add(
        &self,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> Result<String, ToolError> {
        let mut args = Vec::new();
        if opts.owner == SecretOwner::Unit {
            args.extend([s("--owner"), s("unit")]);
        }
        push_secret_opts(&mut args, opts);
        let file = ContentFile::write("secret-add", &args, content)?;
        args.extend([s("--file"), file.path_string()]);
        let out = self.call("secret-add", args.clone(), None)?;
        let uri = String::from_utf8_lossy(&out).trim().to_string();
        if !uri.starts_with("secret:") {
            return Err(bad_output(
                "secret-add",
                &args,
                &uri,
                "expected a secret: URI".into(),
            ));
        }
        Ok(uri)
    }

    /// `secret-set <id> [options] --file <yaml>`: a new revision with `content`.
    pub fn secret_set(
        &self,
        id: &str,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> Result<(), ToolError> {
        let mut args = vec![s(id)];
        push_secret_opts(&mut args, opts);
        let file = ContentFile::write("secret-set", &args, content)?;
        args.extend([s("--file"), file.path_string()]);
        self.call("secret-set", args, None).map(drop)
    }

    /// `secret-get --format=json <id> [--refresh|--peek]` or `secret-get --label <L>`.
    pub fn secret_get(
        &self,
        id: Option<&str>,
        label: Option<&str>,
        refresh: bool,
        peek: bool,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        let mut args = vec![s("--format=json")];
        if let Some(id) = id {
            args.push(s(id));
        }
        if let Some(l) = label {
            args.extend([s("--label"), s(l)]);
        }
        if refresh {
            args.push(s("--refresh"));
        } else if peek {
            args.push(s("--peek"));
        }
        let v: Option<BTreeMap<String, String>> = self.call_json("secret-get", args)?;
        Ok(v.unwrap_or_default())
    }

    /// `secret-info-get --format=json <id>` or `--label <L>`: keyed by the secret's xid.
    pub fn secret_info_get(
        &self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<BTreeMap<String, SecretInfo>, ToolError> {
        let mut args = vec![s("--format=json")];
        if let Some(id) = id {
            args.push(s(id));
        }
        if let Some(l) = label {
            args.extend([s("--label"), s(l)]);
        }
        let v: Option<BTreeMap<String, SecretInfo>> = self.call_json("secret-info-get", args)?;
        Ok(v.unwrap_or_default())
    }

    /// `secret-ids --format=json`: secrets this unit/app owns.
    pub fn secret_ids(&self) -> Result<Vec<String>, ToolError> {
        let v: Option<Vec<String>> = self.call_json("secret-ids", vec![s("--format=json")])?;
        Ok(v.unwrap_or_default())
    }

    /// `secret-grant --relation <id> [--unit <u>] <secret>`.
    pub fn secret_grant(
        &self,
        id: &str,
        rel: &RelationId,
        unit: Option<&str>,
    ) -> Result<(), ToolError> {
        let mut args = vec![s("--relation"), rel.id.to_string()];
        if let Some(u) = unit {
            args.extend([s("--unit"), s(u)]);
        }
        args.push(s(id));
        self.call("secret-grant", args, None).map(drop)
    }

    /// `secret-revoke --relation <id> [--unit <u>] <secret>`.
    pub fn secret_revoke(
        &self,
        id: &str,
        rel: &RelationId,
        unit: Option<&str>,
    ) -> Result<(), ToolError> {
        let mut args = vec![s("--relation"), rel.id.to_string()];
        if let Some(u) = unit {
            args.extend([s("--unit"), s(u)]);
        }
        args.push(s(id));
        self.call("secret-revoke", args, None).map(drop)
    }

    /// `secret-remove <secret> [--revision N]`.
    pub fn secret_remove(&self, id: &str, revision: Option<u32>) -> Result<(), ToolError> {
        let mut args = vec![s(id)];
        if let Some(r) = revision {
            args.extend([s("--revision"), r.to_string()]);
        }
        self.call("secret-remove", args, None).map(drop)
    }

    // ---- charm state, resources ------------------------------------------------------------

    /// `state-get --format=json`: the whole charm state (Juju 4 may print `null` when empty).
    pub fn state_get(&self) -> Result<BTreeMap<String, String>, ToolError> {
        let v: Option<BTreeMap<String, String>> =
            self.call_json("state-get", vec![s("--format=json")])?;
        Ok(v.unwrap_or_default())
    }

    /// `state-set --file -` with a JSON map on stdin.
    pub fn state_set(&self, values: &BTreeMap<String, String>) -> Result<(), ToolError> {
        let body = serde_json::to_vec(values).expect("a string map always serializes");
        self.call("state-set", vec![s("--file"), s("-")], Some(&body))
            .map(drop)
    }

    /// `state-delete <key>`.
    pub fn state_delete(&self, key: &str) -> Result<(), ToolError> {
        self.call("state-delete", vec![s(key)], None).map(drop)
    }

    /// `resource-get <name>`: the path of the resource's file.
    pub fn resource_get(&self, name: &str) -> Result<PathBuf, ToolError> {
        let args = vec![s(name)];
        let out = self.call("resource-get", args.clone(), None)?;
        let path = String::from_utf8_lossy(&out).trim().to_string();
        if path.is_empty() {
            return Err(bad_output(
                "resource-get",
                &args,
                &path,
                "empty path".into(),
            ));
        }
        Ok(PathBuf::from(path))
    }
}

fn push_secret_opts(args: &mut Vec<String>, opts: &SecretOptions) {
    for (flag, v) in [
        ("--label", &opts.label),
        ("--description", &opts.description),
        ("--expire", &opts.expire),
        ("--rotate", &opts.rotate),
    ] {
        if let Some(v) = v {
            args.extend([s(flag), v.clone()]);
        }
    }
}

fn parse_json<T: DeserializeOwned>(
    tool: &str,
    args: &[String],
    out: &[u8],
) -> Result<T, ToolError> {
    serde_json::from_slice(out)
        .map_err(|e| bad_output(tool, args, &String::from_utf8_lossy(out), e.to_string()))
}

fn bad_output(tool: &str, args: &[String], output: &str, reason: String) -> ToolError {
    let mut shown: String = output.chars().take(200).collect();
    if shown.len() < output.len() {
        shown.push('…');
    }
    ToolError::new(
        tool,
        args,
        ToolErrorKind::BadOutput {
            output: shown,
            reason,
        },
    )
}

/// Juju's rule for secret content keys: lowercase, starts with a letter, at least 3 characters.
pub fn valid_secret_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !key.ends_with('-')
        && !key.contains("--")
}

/// A mode-0600 YAML file holding secret content for the duration of one tool call.
struct ContentFile(PathBuf);

impl ContentFile {
    fn write(
        tool: &str,
        args: &[String],
        content: &BTreeMap<String, String>,
    ) -> Result<ContentFile, ToolError> {
        if let Some(bad) = content.keys().find(|k| !valid_secret_key(k)) {
            return Err(ToolError::new(tool, args, ToolErrorKind::Spawn(format!(
                "secret key {bad:?} is invalid: use at least 3 lowercase letters, digits or single dashes, starting with a letter"
            ))));
        }
        let spawn_err = |e: std::io::Error| {
            ToolError::new(
                tool,
                args,
                ToolErrorKind::Spawn(format!("cannot write secret content file: {e}")),
            )
        };
        // A name nobody can guess, created exclusively (O_EXCL never follows a link someone
        // planted in the shared temporary directory, and nobody can make the name first to
        // make the call fail).
        let path = std::env::temp_dir().join(format!(
            ".charm-secret-{}-{}.json",
            std::process::id(),
            crate::random::alphanumeric(20).map_err(spawn_err)?
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(spawn_err)?;
        // JSON is valid YAML, and escapes every value unambiguously.
        let body = serde_json::to_vec(content).expect("a string map always serializes");
        f.write_all(&body).map_err(spawn_err)?;
        Ok(ContentFile(path))
    }

    fn path_string(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for ContentFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests;
