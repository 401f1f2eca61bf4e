//! The one seam between charm-lib and Juju: run a hook tool, get its stdout.
//!
//! Everything above this layer builds argv and parses JSON; everything below it is either
//! the real tools on PATH ([`PathRunner`]) or an in-memory model (`testing`).

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs Juju hook tools. Implementations: [`PathRunner`] (production) and the testing model.
pub trait ToolRunner {
    /// Runs `tool` with `args`, feeding `stdin` when given, and returns what it printed on stdout.
    /// A non-zero exit is an error that carries the tool's stderr.
    fn run(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, ToolError>;
}

/// A hook tool that could not be run, failed, or printed something unparseable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// The tool's name, e.g. `relation-get`.
    pub tool: String,
    /// The arguments it was given.
    pub args: Vec<String>,
    /// What went wrong.
    pub kind: ToolErrorKind,
}

/// The ways a hook tool call goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolErrorKind {
    /// The tool is not on PATH (not in a hook context, or the tool does not exist in this one,
    /// as `action-get` outside an action).
    NotFound,
    /// The tool could not be started for another reason.
    Spawn(String),
    /// The tool ran and exited non-zero (or was killed: `code` is `None`).
    Failed {
        /// Exit code, when it exited.
        code: Option<i32>,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// The tool succeeded but its output is not what its documented format promises.
    BadOutput {
        /// The output, truncated for the message.
        output: String,
        /// Why it did not parse.
        reason: String,
    },
}

impl ToolError {
    /// Builds an error for `tool args`.
    pub fn new(tool: &str, args: &[String], kind: ToolErrorKind) -> ToolError {
        ToolError {
            tool: tool.to_string(),
            args: args.to_vec(),
            kind,
        }
    }

    /// The stderr of a failed tool, if it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match &self.kind {
            ToolErrorKind::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ToolErrorKind::NotFound => write!(
                f,
                "hook tool {} not found on PATH (not in a hook context?)",
                self.tool
            ),
            ToolErrorKind::Spawn(e) => {
                write!(f, "hook tool {} could not be started: {e}", self.tool)
            }
            ToolErrorKind::Failed {
                code: Some(c),
                stderr,
            } => {
                write!(f, "hook tool {} failed (exit {c}): {stderr}", self.tool)
            }
            ToolErrorKind::Failed { code: None, stderr } => {
                write!(f, "hook tool {} was killed: {stderr}", self.tool)
            }
            ToolErrorKind::BadOutput { output, reason } => {
                write!(
                    f,
                    "hook tool {} printed unexpected output ({reason}): {output:?}",
                    self.tool
                )
            }
        }
    }
}

impl std::error::Error for ToolError {}

/// Runs the real hook tools found on PATH, as Juju provides them to a hook process.
#[derive(Debug, Default, Clone, Copy)]
pub struct PathRunner;

impl ToolRunner for PathRunner {
    fn run(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
        let err = |kind| ToolError::new(tool, args, kind);
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(ToolErrorKind::NotFound),
            _ => err(ToolErrorKind::Spawn(e.to_string())),
        })?;
        if let Some(input) = stdin {
            // Taking stdin out of the child closes it after the write, so the tool sees EOF.
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(input)
                .map_err(|e| err(ToolErrorKind::Spawn(e.to_string())))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(ToolErrorKind::Spawn(e.to_string())))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(err(ToolErrorKind::Failed {
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }))
        }
    }
}
