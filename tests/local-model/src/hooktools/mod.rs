//! The hook tools, server side: argument parsing, checks and output of every tool of
//! reference §2, run against the model state and the calling hook's context.
//!
//! The multi-call binary only forwards argv, stdin and the context id here; all of Juju's
//! behaviour (syntax, `--format`, error messages, exit codes) lives in this module and its
//! submodules, one per family of tools.

mod action;
mod args;
mod charm_state;
mod config;
mod goal_state;
mod leader;
mod log;
mod network;
mod ports;
mod relation;
mod resource;
mod secret;
mod status;

use crate::hookctx::HookContext;
use crate::state::ModelState;

pub use args::{format_value, parse_args, FlagSpec, Parsed};
pub use ports::normalize_port;
pub use status::app_status;

// Boolean flags as Juju's gnuflag reads them (Go's strconv.ParseBool): the same source file
// charm-lib's FakeJuju uses, so the two Juju stand-ins agree on it.
#[path = "../../../../charm-lib/src/testing/gnuflag.rs"]
mod gnuflag;

/// Every tool name the multi-call binary answers to.
pub const TOOLS: &[&str] = &[
    "relation-get",
    "relation-set",
    "relation-ids",
    "relation-list",
    "relation-model-get",
    "config-get",
    "status-set",
    "status-get",
    "is-leader",
    "juju-log",
    "open-port",
    "close-port",
    "opened-ports",
    "network-get",
    "unit-get",
    "action-get",
    "action-set",
    "action-log",
    "action-fail",
    "secret-add",
    "secret-get",
    "secret-set",
    "secret-grant",
    "secret-revoke",
    "secret-ids",
    "secret-info-get",
    "secret-remove",
    "application-version-set",
    "state-get",
    "state-set",
    "state-delete",
    "leader-get",
    "leader-set",
    "goal-state",
    "resource-get",
];

/// What a tool invocation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A tool failure: exit 2 for bad usage (like juju/cmd), 1 otherwise.
#[derive(Debug)]
pub enum ToolError {
    Usage(String),
    Fail(String),
}

type R<T> = Result<T, ToolError>;

fn fail<T>(m: impl Into<String>) -> R<T> {
    Err(ToolError::Fail(m.into()))
}
fn usage<T>(m: impl Into<String>) -> R<T> {
    Err(ToolError::Usage(m.into()))
}

/// Run one tool for a hook. Never panics on bad input: every problem becomes a
/// `ToolOutput` with `ERROR ...` on stderr and a non-zero code.
pub fn run_tool(
    state: &mut ModelState,
    ctx: &mut HookContext,
    tool: &str,
    args: &[String],
    stdin: &[u8],
) -> ToolOutput {
    match dispatch(state, ctx, tool, args, stdin) {
        Ok(stdout) => ToolOutput {
            stdout,
            stderr: String::new(),
            code: 0,
        },
        Err(ToolError::Usage(m)) => ToolOutput {
            stdout: String::new(),
            stderr: format!("ERROR {m}\n"),
            code: 2,
        },
        Err(ToolError::Fail(m)) => ToolOutput {
            stdout: String::new(),
            stderr: format!("ERROR {m}\n"),
            code: 1,
        },
    }
}

fn dispatch(
    st: &mut ModelState,
    ctx: &mut HookContext,
    tool: &str,
    args: &[String],
    stdin: &[u8],
) -> R<String> {
    // meter-status-changed runs in the meter status worker's limitedContext, which embeds
    // jujuc.RestrictedContext (internal/worker/meterstatus/context.go): every tool fails with
    // ErrRestrictedContext, errors.NotImplementedf("not implemented for restricted context"),
    // but juju-log (its logger is the context's own)
    if ctx.hook.kind == crate::resolver::HookKind::MeterStatusChanged && tool != "juju-log" {
        return fail("not implemented for restricted context not implemented".to_string());
    }
    match tool {
        "relation-ids" => relation::relation_ids(st, ctx, args),
        "relation-list" => relation::relation_list(st, ctx, args),
        "relation-get" => relation::relation_get(st, ctx, args),
        "relation-set" => relation::relation_set(st, ctx, args, stdin),
        "relation-model-get" => relation::relation_model_get(st, ctx, args),
        "config-get" => config::config_get(st, ctx, args),
        "status-set" => status::status_set(st, ctx, args),
        "status-get" => status::status_get(st, ctx, args),
        "application-version-set" => status::application_version_set(st, ctx, args),
        "is-leader" => leader::is_leader(st, ctx, args),
        "leader-get" => leader::leader_get(st, ctx, args),
        "leader-set" => leader::leader_set(st, ctx, args, stdin),
        "juju-log" => log::juju_log(ctx, args),
        "open-port" | "close-port" => ports::port(ctx, args, tool == "open-port"),
        "opened-ports" => ports::opened_ports(st, ctx, args),
        "network-get" => network::network_get(st, ctx, args),
        "unit-get" => network::unit_get(ctx, args),
        "action-get" => action::action_get(st, ctx, args),
        "action-set" => action::action_set(st, ctx, args),
        "action-log" => action::action_log(st, ctx, args),
        "action-fail" => action::action_fail(st, ctx, args),
        "secret-add" => secret::secret_add(st, ctx, args, stdin),
        "secret-set" => secret::secret_set(st, ctx, args, stdin),
        "secret-get" => secret::secret_get(st, ctx, args),
        "secret-info-get" => secret::secret_info_get(st, ctx, args),
        "secret-ids" => secret::secret_ids(st, ctx, args),
        "secret-grant" | "secret-revoke" => {
            secret::secret_grant(st, ctx, args, tool == "secret-grant")
        }
        "secret-remove" => secret::secret_remove(st, ctx, args),
        "state-get" => charm_state::state_get(st, ctx, args),
        "state-set" => charm_state::state_set(ctx, args, stdin),
        "state-delete" => charm_state::state_delete(ctx, args),
        "goal-state" => goal_state::goal_state(st, ctx, args),
        "resource-get" => resource::resource_get(st, ctx, args),
        other => fail(format!("bad request: unknown command: {other}")),
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod rules_tests;
