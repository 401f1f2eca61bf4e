//! Running machine-side helper commands with errors that carry their stderr.

use anyhow::{bail, Context, Result};
use std::process::{Command, Output};

/// Runs `cmd` to completion; a non-zero exit is an error naming the command and its stderr.
pub(crate) fn checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip ARGS...`, checked.
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    checked(Command::new("ip").args(args))
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
