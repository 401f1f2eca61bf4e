//! Layer 6: a charm's `main`. Read the event, run the charm's handler, settle the status,
//! exit non-zero only when Juju retrying the hook could help.
//!
//! The charm calls charm-lib, not the other way round: the handler is one function that
//! receives a [`Context`] and decides what to do for the event it finds there.

use crate::event::{Event, EventKind};
use crate::logger;
use crate::machine::{Machine, System};
use crate::model::Model;
use crate::status::{Status, StatusCollector, StatusKind};
use crate::tools::{HookTools, PathRunner, ToolRunner};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Everything a handler needs for one event.
pub struct Context<'a> {
    /// The event this process runs for.
    pub event: Event,
    /// The unit's model.
    pub model: Model<'a>,
    /// The unit's host.
    pub machine: &'a dyn Machine,
    statuses: StatusCollector,
}

impl<'a> Context<'a> {
    /// Reports a unit status; the highest-priority one is set when the handler returns.
    pub fn status(&mut self, status: Status) {
        self.statuses.unit(status);
    }

    /// Reports an application status (set only on the leader).
    pub fn app_status(&mut self, status: Status) {
        self.statuses.app(status);
    }

    /// Forgets the statuses reported so far: an action that changes the world and reconciles
    /// again reports what the second reconcile found, not the worse of the two.
    pub fn clear_statuses(&mut self) {
        self.statuses = StatusCollector::default();
    }

    /// The charm's config, validated; `None` after reporting Blocked with the message of the
    /// option that does not fit (nothing should be rendered or restarted from a bad config).
    pub fn load_config<C: crate::config::CharmConfig>(&mut self) -> crate::Result<Option<C>> {
        match C::from_options(&self.model.config_raw()?) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                self.status(Status::blocked(e.to_string()));
                Ok(None)
            }
        }
    }

    /// A line for the unit file of a service that runs the charm's own binary
    /// (`<charm dir>/dispatch`): `# charm binary <fingerprint>`. A refresh that brings another
    /// binary changes the unit file, so the caller's "unit file changed → restart" restarts the
    /// service onto the new code; a refresh with the same binary restarts nothing. Without it
    /// the service would run the old binary (its inode survives the charm directory's
    /// replacement) until the host reboots. Empty when the binary cannot be read.
    pub fn charm_binary_line(&self) -> Result<String, crate::MachineError> {
        use blake2::digest::{consts::U16, Digest};
        let path = std::path::Path::new(&self.event.charm_dir()).join("dispatch");
        Ok(match self.machine.read_file(&path)? {
            Some(bytes) => {
                let sum = blake2::Blake2b::<U16>::digest(&bytes);
                let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
                format!("# charm binary {hex}\n")
            }
            None => String::new(),
        })
    }

    /// The hook tools.
    pub fn tools(&self) -> HookTools<'a> {
        self.model.tools()
    }

    /// The action's parameters as `T` (an error outside an action).
    pub fn action_params<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        anyhow::ensure!(
            self.event.is_action(),
            "{} is not an action",
            self.event.name()
        );
        let v = self.tools().action_get()?;
        serde_json::from_value(v).map_err(|e| anyhow::anyhow!("action parameters: {e}"))
    }

    /// Sets action results from a JSON object; nested objects become dotted keys.
    pub fn action_set(&self, results: &serde_json::Value) -> anyhow::Result<()> {
        let mut flat = BTreeMap::new();
        flatten_results("", results, &mut flat)?;
        Ok(self.tools().action_set(&flat)?)
    }

    /// Logs a progress message for the action's caller.
    pub fn action_log(&self, message: &str) -> anyhow::Result<()> {
        Ok(self.tools().action_log(message)?)
    }

    /// Marks the action failed with a message (the process still exits 0).
    pub fn action_fail(&self, message: &str) -> anyhow::Result<()> {
        Ok(self.tools().action_fail(message)?)
    }
}

/// Juju's rule for action result keys: `[a-z0-9]` at both ends, `-` inside, and not one of the
/// keys Juju reserves for the process output.
pub fn valid_result_key(key: &str) -> bool {
    let b = key.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && edge(&b[0])
        && edge(&b[b.len() - 1])
        && b.iter().all(|c| edge(c) || *c == b'-')
        && !matches!(
            key,
            "stdout" | "stdout-encoding" | "stderr" | "stderr-encoding"
        )
}

fn flatten_results(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                anyhow::ensure!(valid_result_key(k), "action result key {k:?} is invalid: use lowercase letters, digits and inner dashes");
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_results(&key, v, out)?;
            }
            Ok(())
        }
        _ if prefix.is_empty() => anyhow::bail!("action results must be a JSON object"),
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
            Ok(())
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
            Ok(())
        }
    }
}

/// Runs `handler` for `event` over the given backends, then sets the collected statuses.
/// Used by [`main`] with the real backends and by `testing` with in-memory ones.
pub fn run<'a, F>(
    event: Event,
    runner: &'a dyn ToolRunner,
    machine: &'a dyn Machine,
    handler: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&mut Context<'a>) -> anyhow::Result<()>,
{
    let tools = HookTools::new(runner);
    let event = with_remote_app(event, &tools);
    let model = Model::new(tools, &event);
    let mut ctx = Context {
        event,
        model,
        machine,
        statuses: StatusCollector::default(),
    };
    let is_action = ctx.event.is_action();
    if let Err(e) = handler(&mut ctx) {
        if !is_action {
            return Err(e);
        }
        // An action's failure belongs to its caller, not to the unit's state.
        tools.action_fail(&format!("{e:#}"))?;
    }
    if let Some(s) = ctx.statuses.unit_winner().filter(|s| settable(s.kind)) {
        tools.status_set(s.kind.as_str(), &s.message, false)?;
    }
    if let Some(s) = ctx.statuses.app_winner().filter(|s| settable(s.kind)) {
        if ctx.model.is_leader()? {
            tools.status_set(s.kind.as_str(), &s.message, true)?;
        }
    }
    Ok(())
}

/// A relation event whose remote application Juju did not name (Juju 3.4 can leave
/// `JUJU_REMOTE_APP` empty in relation-changed and -broken, and no remote unit named it either):
/// asks `relation-list --app`, as ops does (`_ModelBackend.relation_remote_app_name` when
/// `model.Relation` has no app from the environment or its units). If even that cannot tell,
/// the name stays empty and a warning says so: a retry would not make Juju know it.
fn with_remote_app(mut event: Event, tools: &HookTools<'_>) -> Event {
    if let EventKind::Relation(r) = &mut event.kind {
        if r.remote_app.is_empty() {
            match tools.relation_list_app(&r.relation) {
                Ok(Some(app)) if !app.is_empty() => r.remote_app = app,
                Ok(_) => log::warn!(
                    "{}: Juju names no remote application (JUJU_REMOTE_APP and relation-list --app are empty)",
                    r.relation
                ),
                Err(e) => log::warn!(
                    "{}: JUJU_REMOTE_APP is empty and relation-list --app failed: {e}",
                    r.relation
                ),
            }
        }
    }
    event
}

/// Hooks Juju may still dispatch that no charm-lib charm handles, answered with exit 0 before
/// anything else, no hook tool called: `meter-status-changed` (Juju before 3.6.11 runs it from
/// its meter-status worker in a restricted context where every tool fails, without
/// JUJU_VERSION: worker/meterstatus context.go limitedContext.HookVars) and `collect-metrics`
/// (metrics, which no charm here declares).
pub fn ignored_hook(env: &BTreeMap<String, String>) -> Option<&'static str> {
    match env.get("JUJU_DISPATCH_PATH").map(|p| p.as_str()) {
        Some("hooks/meter-status-changed") => Some("meter-status-changed"),
        Some("hooks/collect-metrics") => Some("collect-metrics"),
        _ => None,
    }
}

fn settable(kind: StatusKind) -> bool {
    !matches!(kind, StatusKind::Error | StatusKind::Unknown)
}

/// The charm binary's `main`: parses the event from the environment, runs `handler` with the
/// real hook tools and host, routes `log` records to `juju-log`, and exits 0 on success or 1
/// when the hook failed (so Juju retries it). An environment that does not describe a hook is
/// reported on stderr (Juju logs it) with the variable at fault, and exits 1.
pub fn main<F>(handler: F) -> !
where
    F: FnOnce(&mut Context<'_>) -> anyhow::Result<()>,
{
    let env: BTreeMap<String, String> = std::env::vars().collect();
    std::process::exit(exit_code(&env, &PathRunner, &System, handler))
}

/// [`main`]'s work over the given environment and backends: the process's exit code.
pub fn exit_code<F>(
    env: &BTreeMap<String, String>,
    runner: &'static dyn ToolRunner,
    machine: &dyn Machine,
    handler: F,
) -> i32
where
    F: FnOnce(&mut Context<'_>) -> anyhow::Result<()>,
{
    if ignored_hook(env).is_some() {
        return 0;
    }
    match Event::from_env(env) {
        Err(e) => {
            eprintln!("charm: this process was not started as a Juju hook or action: {e}");
            1
        }
        Ok(event) => {
            let name = event.name();
            let kind_is_action = matches!(event.kind, EventKind::Action { .. });
            let sink = Box::new(move |level, message: &str| {
                // Logging must never fail a hook; stderr still reaches Juju's unit log.
                if HookTools::new(runner).juju_log(level, message).is_err() {
                    eprintln!("{}: {message}", level.as_str());
                }
            });
            logger::with_sink(sink, || match run(event, runner, machine, handler) {
                Ok(()) => 0,
                Err(e) => {
                    let what = if kind_is_action { "action" } else { "hook" };
                    log::error!("{what} {name} failed: {e:#}");
                    eprintln!("{what} {name} failed: {e:#}");
                    1
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys() {
        assert!(valid_result_key("api-url"));
        assert!(valid_result_key("a1"));
        assert!(!valid_result_key("-a"));
        assert!(!valid_result_key("a-"));
        assert!(!valid_result_key("Api"));
        assert!(!valid_result_key("a_b"));
        assert!(!valid_result_key("stdout"));
    }

    #[test]
    fn nested_results_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        let v = serde_json::json!({"primary": "pg/0", "members": {"pg-0": {"lag": 0, "role": "leader"}}, "ok": true});
        flatten_results("", &v, &mut out).unwrap();
        assert_eq!(out["primary"], "pg/0");
        assert_eq!(out["members.pg-0.lag"], "0");
        assert_eq!(out["members.pg-0.role"], "leader");
        assert_eq!(out["ok"], "true");
        assert!(flatten_results("", &serde_json::json!({"Bad": 1}), &mut out).is_err());
        assert!(flatten_results("", &serde_json::json!(3), &mut out).is_err());
    }
}
