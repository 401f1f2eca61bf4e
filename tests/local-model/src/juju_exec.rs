//! `juju-exec` (`juju-run` in Juju 2.9): run a command in a unit's hook context from
//! outside any hook, the way charms' background processes ask the unit agent for a hook on
//! demand. Client side (argv, the agent socket, the answer's output and exit code), the
//! `/usr/bin` wrappers installed in each machine, and the daemon's answer to the request.
//! The run itself is scheduled and started by the engine, like a hook.

use crate::engine::{Runtime, Shared};
use crate::protocol::{ToolRequest, ToolResponse};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::mpsc;

/// Names the multi-call binary answers to as juju-exec.
pub const NAMES: &[&str] = &["juju-exec", "juju-run"];

const USAGE: &str = "usage: juju-exec [options] [-u] <unit-name> <commands>";

/// A juju-exec request waiting for its unit's machine to be free.
pub struct ExecJob {
    pub unit: String,
    pub command: String,
    pub reply: mpsc::Sender<ToolResponse>,
}

/// What `juju-exec` was asked: the unit and the command line for bash.
#[derive(Debug, PartialEq)]
pub struct ExecArgs {
    pub unit: String,
    pub command: String,
}

/// Parse argv as Juju's juju-exec does for the options supported here; Err carries the
/// message and the exit code (0 for --help).
pub fn parse_args(args: &[String]) -> Result<ExecArgs, (String, i32)> {
    let mut unit: Option<String> = None;
    let mut i = 0;
    // options stop at the first positional argument: the command's own flags follow it
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        if a == "-u" || a == "--unit" {
            let v = args
                .get(i + 1)
                .ok_or_else(|| (format!("ERROR option needs an argument: {a}\n{USAGE}"), 2))?;
            unit = Some(v.clone());
            i += 2;
        } else if let Some(v) = a.strip_prefix("--unit=").or_else(|| a.strip_prefix("-u=")) {
            unit = Some(v.to_string());
            i += 1;
        } else if a == "-h" || a == "--help" {
            return Err((USAGE.to_string(), 0));
        } else if a == "--no-context" {
            return Err((
                format!("ERROR --no-context is not supported by the local model: commands run in a unit's hook context\n{USAGE}"),
                2,
            ));
        } else {
            return Err((
                format!("ERROR option provided but not defined: {a}\n{USAGE}"),
                2,
            ));
        }
    }
    let mut rest = args[i..].iter();
    let unit = match unit {
        Some(u) => u,
        None => rest
            .next()
            .cloned()
            .ok_or_else(|| (format!("ERROR missing unit-name\n{USAGE}"), 2))?,
    };
    if unit.is_empty() {
        return Err((format!("ERROR missing unit-name\n{USAGE}"), 2));
    }
    let command = rest.cloned().collect::<Vec<_>>().join(" ");
    if command.trim().is_empty() {
        return Err((format!("ERROR missing commands\n{USAGE}"), 2));
    }
    Ok(ExecArgs { unit, command })
}

/// The client: `juju-exec` invoked through the machine's wrapper; returns the exit code.
pub fn client_main(name: &str, args: &[String]) -> i32 {
    let parsed = match parse_args(args) {
        Ok(p) => p,
        Err((msg, code)) => {
            if code == 0 {
                println!("{msg}");
            } else {
                eprintln!("{msg}");
            }
            return code;
        }
    };
    let Some(sock) = std::env::var_os("JUJU_AGENT_SOCKET_ADDRESS") else {
        eprintln!("ERROR {name}: JUJU_AGENT_SOCKET_ADDRESS not set (call /usr/bin/{name})");
        return 1;
    };
    // no context id: the caller is a background process, not a hook
    let req = ToolRequest {
        context_id: String::new(),
        tool: "juju-exec".into(),
        args: vec![parsed.unit, parsed.command],
        stdin: String::new(),
    };
    crate::toolclient::forward(Path::new(&sock), &req)
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write `/usr/bin/juju-exec` and `/usr/bin/juju-run` into machine `id`: they run the
/// model's multi-call binary with the agent socket baked in, since the processes that call
/// them (systemd services in a host) have no Juju environment at all.
pub fn install_wrappers(rt: &Runtime, id: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for name in NAMES {
        let path = rt.machines.host_path(id, &format!("/usr/bin/{name}"));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let script = format!(
            "#!/bin/sh\n# Juju's {name}, served by the local model's daemon\nJUJU_AGENT_SOCKET_ADDRESS={} JUJU_AGENT_SOCKET_NETWORK=unix exec {} \"$@\"\n",
            sh_quote(&rt.layout.agent_sock().display().to_string()),
            sh_quote(&rt.layout.tools().join(name).display().to_string()),
        );
        // a new file renamed over the old one: a caller never reads half a script
        let tmp = path.with_extension("lm-new");
        std::fs::write(&tmp, script).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Install the wrappers, logging (not failing) on error: only charms that use juju-exec
/// need them, and those say so when it is missing.
pub fn install_wrappers_logged(rt: &Runtime, id: &str) {
    if let Err(e) = install_wrappers(rt, id) {
        eprintln!("lm: installing juju-exec in machine {id}: {e:#}");
    }
}

fn refuse(msg: String) -> ToolResponse {
    ToolResponse {
        stdout: String::new(),
        stderr: format!("ERROR {msg}\n"),
        code: 1,
    }
}

/// The daemon's side of a juju-exec request: queue it for the unit's machine and wait
/// until the engine has run it.
pub fn serve(shared: &Shared, req: &ToolRequest) -> ToolResponse {
    let (Some(unit), Some(command)) = (req.args.first(), req.args.get(1)) else {
        return refuse("bad juju-exec request".into());
    };
    let (lock, cv) = &**shared;
    let rx = {
        let mut rt = lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(u) = rt.state.units.get(unit) else {
            return refuse(format!("unit {unit:?} not found"));
        };
        let state = rt
            .state
            .machines
            .get(&u.machine)
            .map(|m| m.state.clone())
            .unwrap_or_default();
        // Juju's unit agent only answers while it runs and reaches the controller
        if state != "started" {
            return refuse(format!(
                "the agent of unit {unit:?} is not running (machine {} is {state})",
                u.machine
            ));
        }
        let (tx, rx) = mpsc::channel();
        rt.execs.push_back(ExecJob {
            unit: unit.clone(),
            command: command.clone(),
            reply: tx,
        });
        cv.notify_all();
        rx
    };
    rx.recv().unwrap_or_else(|_| {
        refuse(format!(
            "the unit agent stopped before running the command for {unit:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ExecArgs, (String, i32)> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn argv_as_juju_exec() {
        let want = ExecArgs {
            unit: "postgresql-ha/1".into(),
            command: "JUJU_DISPATCH_PATH=hooks/update-status /x/charm/dispatch".into(),
        };
        let cmd = [
            "JUJU_DISPATCH_PATH=hooks/update-status",
            "/x/charm/dispatch",
        ];
        assert_eq!(
            p(&[&["-u", "postgresql-ha/1"][..], &cmd].concat()),
            Ok(want)
        );
        let ExecArgs { unit, command } = p(&[&["postgresql-ha/1"][..], &cmd].concat()).unwrap();
        assert_eq!(unit, "postgresql-ha/1");
        assert_eq!(command, cmd.join(" "));
        let a = p(&["--unit=a/0", "ls", "-l"]).unwrap();
        assert_eq!((a.unit.as_str(), a.command.as_str()), ("a/0", "ls -l"));
        let a = p(&["--unit", "a/0", "--", "-x"]).unwrap();
        assert_eq!(a.command, "-x");
        assert_eq!(p(&["--no-context", "a/0", "ls"]).unwrap_err().1, 2);
        let (msg, code) = p(&["--bogus", "a/0", "ls"]).unwrap_err();
        assert_eq!(code, 2);
        assert!(msg.contains("--bogus") && msg.contains("usage:"), "{msg}");
        assert_eq!(p(&["a/0"]).unwrap_err().1, 2);
        assert_eq!(p(&["-u"]).unwrap_err().1, 2);
        assert_eq!(p(&[]).unwrap_err().1, 2);
        assert_eq!(p(&["--help"]).unwrap_err().1, 0);
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
