//! Layer 5: the unit's host. Six primitives behind one trait ([`Machine`]); packages and
//! services are commands built on them ([`MachineExt`]), so a test backend that records
//! commands and holds files in memory sees everything a charm does to its host.

mod safe_fs;
mod system;

pub use system::System;

use std::fmt;
use std::path::{Path, PathBuf};

/// A command to run on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    /// The program (looked up on PATH unless absolute).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Bytes for its stdin, if any.
    pub stdin: Option<Vec<u8>>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Run as this user (through `runuser`), if not root.
    pub user: Option<String>,
    /// Whether a non-zero exit is an error (the default) or just an output to look at.
    pub allow_failure: bool,
    /// Values (passwords, secrets) to mask wherever the command is shown.
    pub sensitive: Vec<String>,
}

impl Cmd {
    /// `program args...`.
    pub fn new<I, S>(program: &str, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
            ..Cmd::default()
        }
    }

    /// Feeds `input` on stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs as `user`.
    pub fn user(mut self, user: &str) -> Cmd {
        self.user = Some(user.to_string());
        self
    }

    /// Returns the output even when the command fails.
    pub fn allow_failure(mut self) -> Cmd {
        self.allow_failure = true;
        self
    }

    /// Marks `value` as secret: it is masked in messages and logs.
    pub fn sensitive(mut self, value: &str) -> Cmd {
        if !value.is_empty() {
            self.sensitive.push(value.to_string());
        }
        self
    }

    /// The argv, with the program first.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// Masks the sensitive values in `text`.
    pub fn redact(&self, text: &str) -> String {
        self.sensitive
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }
}

impl fmt::Display for Cmd {
    /// The command line as a person would type it, secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self
            .argv()
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        f.write_str(&self.redact(&line))
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Stdout, lossily decoded.
    pub stdout: String,
    /// Stderr, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// Exit 0 with `stdout`.
    pub fn ok(stdout: impl Into<String>) -> CmdOutput {
        CmdOutput {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// Exit `code` with `stderr`.
    pub fn failed(code: i32, stderr: impl Into<String>) -> CmdOutput {
        CmdOutput {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Owner, group and mode of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// Owning user.
    pub owner: String,
    /// Owning group.
    pub group: String,
    /// Permission bits, e.g. 0o640.
    pub mode: u32,
}

impl FileOptions {
    /// `owner:group` with `mode`.
    pub fn new(owner: &str, group: &str, mode: u32) -> FileOptions {
        FileOptions {
            owner: owner.into(),
            group: group.into(),
            mode,
        }
    }

    /// root:root 0644, for ordinary configuration.
    pub fn root(mode: u32) -> FileOptions {
        FileOptions::new("root", "root", mode)
    }
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions::root(0o644)
    }
}

/// What [`Machine::file_info`] tells about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Owner, group and mode.
    pub options: FileOptions,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A host operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineError {
    /// A command exited non-zero (secrets masked).
    Command {
        /// The command line.
        command: String,
        /// Its exit code.
        code: i32,
        /// Its stderr (or stdout when stderr was empty), trimmed and masked.
        stderr: String,
    },
    /// A command could not be started.
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    File {
        /// The path.
        path: PathBuf,
        /// What was being done and why it failed.
        reason: String,
    },
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineError::Command {
                command,
                code,
                stderr,
            } => write!(f, "`{command}` failed (exit {code}): {stderr}"),
            MachineError::Spawn { command, reason } => {
                write!(f, "`{command}` could not be started: {reason}")
            }
            MachineError::File { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for MachineError {}

impl MachineError {
    /// The error for `cmd` having ended with `out`.
    pub fn from_output(cmd: &Cmd, out: &CmdOutput) -> MachineError {
        let text = if out.stderr.trim().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        MachineError::Command {
            command: cmd.to_string(),
            code: out.code,
            stderr: cmd.redact(text.trim()),
        }
    }
}

/// The host a unit runs on.
pub trait Machine {
    /// Runs a command. A non-zero exit is a [`MachineError::Command`] unless
    /// `cmd.allow_failure` is set.
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, MachineError>;
    /// The content of a file, `None` if it does not exist. Something other than a regular
    /// file (a fifo, a device) is an error.
    ///
    /// Every file primitive reaches its path safely for root (see `System`): a symbolic link is
    /// followed only if nobody but root could have made it, so a service account that owns a
    /// directory on the way (postgres, maas) cannot steer root elsewhere.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, MachineError>;
    /// Writes a file atomically (a reader sees the old or the new content, never half) with
    /// owner, group and mode; creates missing parent directories (root, 0755). Returns whether
    /// anything changed, so callers reload services only when needed. The file is always a new
    /// one renamed over the target; a target that is not a regular file (a symbolic link, a
    /// fifo) is refused.
    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        opts: &FileOptions,
    ) -> Result<bool, MachineError>;
    /// Removes a file; returns whether it existed.
    fn remove_file(&self, path: &Path) -> Result<bool, MachineError>;
    /// Creates a directory (and parents) and sets its owner and mode; returns whether anything
    /// changed. An existing symbolic link there is refused, not followed.
    fn make_dir(&self, path: &Path, opts: &FileOptions) -> Result<bool, MachineError>;
    /// Owner, group, mode and kind of a path, `None` if it does not exist.
    fn file_info(&self, path: &Path) -> Result<Option<FileInfo>, MachineError>;
}

/// What `systemctl` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceOp {
    /// `systemctl start`
    Start,
    /// `systemctl stop`
    Stop,
    /// `systemctl restart`
    Restart,
    /// `systemctl reload`
    Reload,
    /// `systemctl enable`
    Enable,
    /// `systemctl disable`
    Disable,
}

impl ServiceOp {
    /// The systemctl verb.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
            ServiceOp::Reload => "reload",
            ServiceOp::Enable => "enable",
            ServiceOp::Disable => "disable",
        }
    }
}

/// Packages, services and conveniences, all built on [`Machine`]'s primitives.
pub trait MachineExt: Machine {
    /// `apt-get install -y --no-install-recommends <packages>` (idempotent).
    fn apt_install(&self, packages: &[&str]) -> Result<(), MachineError> {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(packages);
        self.run(&Cmd::new("apt-get", args).env("DEBIAN_FRONTEND", "noninteractive"))
            .map(drop)
    }

    /// `snap install <name> --channel=<channel>`.
    fn snap_install(&self, name: &str, channel: &str) -> Result<(), MachineError> {
        self.run(&Cmd::new(
            "snap",
            ["install", name, &format!("--channel={channel}")],
        ))
        .map(drop)
    }

    /// `snap refresh <name> --channel=<channel>`.
    fn snap_refresh(&self, name: &str, channel: &str) -> Result<(), MachineError> {
        self.run(&Cmd::new(
            "snap",
            ["refresh", name, &format!("--channel={channel}")],
        ))
        .map(drop)
    }

    /// `snap refresh --hold <name>`: snapd refreshes it only when asked by name from now on
    /// (a hold without a duration lasts until `--unhold`).
    fn snap_hold(&self, name: &str) -> Result<(), MachineError> {
        self.run(&Cmd::new("snap", ["refresh", "--hold", name]))
            .map(drop)
    }

    /// `systemctl <op> <unit>`.
    fn service(&self, op: ServiceOp, unit: &str) -> Result<(), MachineError> {
        self.run(&Cmd::new("systemctl", [op.as_str(), unit]))
            .map(drop)
    }

    /// `systemctl is-active --quiet <unit>`.
    fn service_is_active(&self, unit: &str) -> Result<bool, MachineError> {
        Ok(self
            .run(&Cmd::new("systemctl", ["is-active", "--quiet", unit]).allow_failure())?
            .success())
    }

    /// `systemctl daemon-reload`, after writing unit files.
    fn daemon_reload(&self) -> Result<(), MachineError> {
        self.run(&Cmd::new("systemctl", ["daemon-reload"]))
            .map(drop)
    }

    /// Enables a service and starts it if it is not running; restarts it if `changed` says its
    /// configuration changed.
    fn ensure_service(&self, unit: &str, changed: bool) -> Result<(), MachineError> {
        self.service(ServiceOp::Enable, unit)?;
        if !self.service_is_active(unit)? {
            self.service(ServiceOp::Start, unit)
        } else if changed {
            self.service(ServiceOp::Restart, unit)
        } else {
            Ok(())
        }
    }

    /// Stops and disables a service if it is running or enabled.
    fn retire_service(&self, unit: &str) -> Result<(), MachineError> {
        if self.service_is_active(unit)? {
            self.service(ServiceOp::Stop, unit)?;
        }
        self.run(&Cmd::new("systemctl", ["disable", unit]).allow_failure())
            .map(drop)
    }

    /// A file as UTF-8 text, `None` if missing.
    fn read_to_string(&self, path: &Path) -> Result<Option<String>, MachineError> {
        Ok(self
            .read_file(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

impl<M: Machine + ?Sized> MachineExt for M {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_masks_secrets_and_quotes_spaces() {
        let c = Cmd::new(
            "maas",
            [
                "init",
                "rack",
                "--secret",
                "s3cr3t",
                "--maas-url",
                "http://10.0.0.100/MAAS",
            ],
        )
        .sensitive("s3cr3t");
        assert_eq!(
            c.to_string(),
            "maas init rack --secret *** --maas-url http://10.0.0.100/MAAS"
        );
        assert_eq!(
            Cmd::new("echo", ["a b", ""]).to_string(),
            "echo \"a b\" \"\""
        );
    }

    #[test]
    fn command_error_prefers_stderr_and_masks() {
        let c = Cmd::new("maas", ["init", "--secret", "abc123"]).sensitive("abc123");
        let e = MachineError::from_output(&c, &CmdOutput::failed(2, "bad secret abc123\n"));
        assert_eq!(
            e.to_string(),
            "`maas init --secret ***` failed (exit 2): bad secret ***"
        );
        let e = MachineError::from_output(
            &c,
            &CmdOutput {
                code: 1,
                stdout: "only stdout".into(),
                stderr: " ".into(),
            },
        );
        assert!(e.to_string().ends_with("only stdout"));
    }
}
