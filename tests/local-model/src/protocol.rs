//! Messages between the CLI (or the Rust API) and the daemon, and between the hook tools
//! and the daemon: one JSON document per line over a unix socket.

use anyhow::{anyhow, Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// One application of a deployment (a charm, or an entry of a bundle).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppPlan {
    pub name: String,
    /// Absolute path of the .charm.
    pub charm: PathBuf,
    pub num_units: u32,
    /// Placements: a machine id (of the bundle's `machines` for bundles, of the model
    /// otherwise), `new`, `<app>/<n>`, `lxd:<m>` (treated as a new machine).
    pub to: Vec<String>,
    /// Option values (JSON, or strings to convert per config.yaml).
    pub options: BTreeMap<String, serde_json::Value>,
    /// resource name -> absolute file path
    pub resources: BTreeMap<String, PathBuf>,
    /// The base asked for (`ubuntu@22.04`, or a series): `--base`, or a bundle's application
    /// `base`/`series`, else its `default-base`/`series`. None: the charm's preferred base.
    #[serde(default)]
    pub base: Option<String>,
}

/// A deployment: a charm or a bundle with its overlays applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployPlan {
    /// Bundle machine ids (placements refer to these); empty for a single charm.
    pub machines: Vec<String>,
    pub bundle: bool,
    pub apps: Vec<AppPlan>,
    /// Pairs of `app[:endpoint]`.
    pub relations: Vec<(String, String)>,
}

/// A fault request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultOp {
    Kill { target: String, signal: i32 },
    Freeze { pid: u32 },
    Thaw { pid: u32 },
    Cut,
    Restore,
    Stop,
    Start,
    Pids { comm: String },
}

/// CLI -> daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Deploy {
        plan: DeployPlan,
    },
    AddUnit {
        app: String,
        n: u32,
        to: Option<String>,
    },
    RemoveUnit {
        units: Vec<String>,
    },
    Integrate {
        a: String,
        b: String,
    },
    RemoveRelation {
        a: String,
        b: String,
    },
    Config {
        app: String,
        set: Vec<String>,
        reset: Vec<String>,
    },
    Refresh {
        app: String,
        path: Option<PathBuf>,
        /// `juju refresh --force-units`: units in hook error take the new charm at once.
        #[serde(default)]
        force_units: bool,
    },
    Run {
        unit: String,
        action: String,
        params: Vec<String>,
    },
    Action {
        id: u32,
    },
    Resolve {
        unit: String,
        no_retry: bool,
    },
    Status,
    /// Units that are not settled (running or queued hooks, errors).
    Unsettled,
    /// Hook runs that exited non-zero, and the units in error now: a [`Failures`].
    Failures,
    /// `machine` is a machine id or a unit name (its machine).
    Fault {
        machine: String,
        fault: FaultOp,
    },
    Destroy,
    Ping,
    /// Run a command in a machine (like `juju ssh <target> <cmd>`); the answer carries
    /// `code`, `stdout`, `stderr`.
    Exec {
        machine: String,
        argv: Vec<String>,
    },
    /// Where `inside` (a path in the machine of `unit`, or a machine id) is, seen from here.
    HostPath {
        machine: String,
        inside: String,
    },
}

/// A unit in error now: the hook, how often it failed, what it said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitError {
    pub unit: String,
    pub hook: String,
    pub attempts: u32,
    /// Runs in a row that failed with the same message.
    pub same: u32,
    pub retry_scheduled: bool,
    /// When its last run ended (ms since the epoch).
    pub last_at_ms: u64,
    pub message: String,
    /// The last lines of its last run's output.
    pub tail: Vec<String>,
}

/// The answer to [`Request::Failures`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Every kept hook run that exited non-zero, oldest first.
    pub failed: Vec<crate::state::HookFailure>,
    /// Units in error now.
    pub errors: Vec<UnitError>,
}

/// daemon -> CLI.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// hook tool -> daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolRequest {
    /// Empty for juju-exec, which runs outside any hook.
    #[serde(default)]
    pub context_id: String,
    pub tool: String,
    pub args: Vec<String>,
    pub stdin: String,
}

/// daemon -> hook tool.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ToolResponse {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Write one JSON line.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<()> {
    let mut s = serde_json::to_string(msg)?;
    s.push('\n');
    w.write_all(s.as_bytes())?;
    w.flush()?;
    Ok(())
}

/// Read one JSON line.
pub fn recv<T: DeserializeOwned>(r: &mut impl BufRead) -> Result<T> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(anyhow!("connection closed"));
    }
    serde_json::from_str(&line).context("bad message")
}

/// One request/response round trip on a socket.
pub fn call<Q: Serialize, A: DeserializeOwned>(sock: &Path, req: &Q) -> Result<A> {
    let mut s =
        UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    send(&mut s, req)?;
    let mut r = BufReader::new(s);
    recv(&mut r)
}
