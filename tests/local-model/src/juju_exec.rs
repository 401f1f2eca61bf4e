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

/// Flags real juju-exec has that the local model does not implement.
const UNSUPPORTED: &[&str] = &[
    "no-context",
    "r",
    "relation",
    "remote-unit",
    "remote-app",
    "operator",
    "force-remote-unit",
];

/// Parse argv as Juju's juju-exec does (cmd/jujud/run/run.go, RunCommand.SetFlags and Init,
/// through juju/cmd Main); Err carries what it prints and the exit code (0 for --help, 2 for
/// every flag or Init error, as juju/cmd handleCommandError). `name` is the name it was called
/// by, `context_id` the caller's `JUJU_CONTEXT_ID`.
pub fn parse_args(
    name: &str,
    args: &[String],
    context_id: Option<&str>,
) -> Result<ExecArgs, (String, i32)> {
    let err = |m: String| (format!("ERROR {m}"), 2);
    let mut unit: Option<String> = None;
    let mut pos: Vec<String> = Vec::new();
    // juju/cmd parses with AllowInterspersedFlags (CommandBase's default: true): a flag after
    // the unit or a command word is still juju-exec's flag; `--` ends them
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            pos.extend(args[i..].iter().cloned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            pos.push(a.to_string());
            continue;
        }
        // gnuflag parseOneGnu: `--name[=value]`, or single-letter flags, a value flag taking
        // the rest of the argument (`-ufoo/0`) or the next one
        let (flag, inline) = match a.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            },
            None => {
                let mut cs = a[1..].chars();
                let first = cs.next().unwrap_or_default().to_string();
                let rest: String = cs.collect();
                (first, (!rest.is_empty()).then_some(rest))
            }
        };
        let dashed = if flag.chars().count() > 1 {
            format!("--{flag}")
        } else {
            format!("-{flag}")
        };
        match flag.as_str() {
            "h" | "help" => return Err((USAGE.to_string(), 0)),
            "u" => {
                let v = match inline {
                    Some(v) => v,
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(err(format!("flag needs an argument: {dashed}"))),
                };
                unit = Some(v);
            }
            f if UNSUPPORTED.contains(&f) => {
                return Err((
                    format!("ERROR {dashed} is not supported by the local model: commands run in a unit's hook context\n{USAGE}"),
                    2,
                ))
            }
            _ => return Err(err(format!("flag provided but not defined: {dashed}"))),
        }
    }
    // RunCommand.Init: "make sure we aren't in an existing hook context"
    if let Some(id) = context_id.filter(|c| !c.is_empty()) {
        return Err(err(format!(
            "{name} cannot be called from within a hook, have context {id:?}"
        )));
    }
    let mut rest = pos.into_iter();
    let unit = match unit {
        Some(u) if u.is_empty() => {
            return Err(err(
                "-u \"\" (the only unit of this machine) is not supported by the local model: name the unit".into(),
            ))
        }
        Some(u) => unit_name(&u).ok_or_else(|| err(format!("{u:?} is not a valid unit tag")))?,
        None => {
            let u = rest.next().ok_or_else(|| err("missing unit-name".into()))?;
            unit_name(&u).ok_or_else(|| err(format!("{u:?} is not a valid unit tag")))?
        }
    };
    let words: Vec<String> = rest.collect();
    let command = match words.len() {
        0 => return Err(err("missing commands".into())),
        // Init: a single argument is passed as it is ("juju-exec -u app/0 'sudo whatever'")
        1 => words[0].clone(),
        _ => command_string(&words),
    };
    Ok(ExecArgs { unit, command })
}

/// A unit name (`app/0`) or unit tag (`unit-app-0`) as a unit name; `None` for anything else
/// (names.IsValidUnit, names.ParseUnitTag).
fn unit_name(s: &str) -> Option<String> {
    let valid_app = |a: &str| {
        a.starts_with(|c: char| c.is_ascii_lowercase())
            && !a.ends_with('-')
            && !a.contains("--")
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let valid_num = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit());
    if let Some((a, n)) = s.split_once('/') {
        return (valid_app(a) && valid_num(n)).then(|| s.to_string());
    }
    let (a, n) = s.strip_prefix("unit-")?.rsplit_once('-')?;
    (valid_app(a) && valid_num(n)).then(|| format!("{a}/{n}"))
}

/// juju/utils CommandString: the arguments joined with spaces for a shell, each
/// double-quoted only when it holds whitespace, `"`, `$` or `\` (those three escaped with a
/// backslash). So `$HOME` given as its own argument is not expanded, as in Juju.
pub fn command_string(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let mut quote = false;
            let mut out = String::new();
            for c in a.chars() {
                if c.is_whitespace() {
                    quote = true;
                } else if matches!(c, '"' | '$' | '\\') {
                    quote = true;
                    out.push('\\');
                }
                out.push(c);
            }
            if quote {
                format!("\"{out}\"")
            } else {
                out
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The client: `juju-exec` invoked through the machine's wrapper; returns the exit code.
pub fn client_main(name: &str, args: &[String]) -> i32 {
    let context = std::env::var("JUJU_CONTEXT_ID").ok();
    let parsed = match parse_args(name, args, context.as_deref()) {
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
        parse_args(
            "juju-exec",
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            None,
        )
    }

    // cmd/jujud/run/run.go RunCommand.SetFlags/Init, through juju/cmd Main (interspersed
    // flags, exit 2 on a flag or Init error) and juju/gnuflag
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
        // a unit tag names the unit too; -u takes its value attached or after it
        assert_eq!(
            p(&["unit-postgresql-ha-1", "ls"]).unwrap().unit,
            "postgresql-ha/1"
        );
        assert_eq!(p(&["-ua/0", "ls"]).unwrap().unit, "a/0");
        assert_eq!(p(&["--u=a/0", "ls"]).unwrap().unit, "a/0");
        // flags are read wherever they are, up to `--`
        assert_eq!(p(&["a/0", "ls", "-u", "b/1"]).unwrap().unit, "b/1");
        let (msg, code) = p(&["-u", "a/0", "ls", "-l"]).unwrap_err();
        assert_eq!(
            (msg.as_str(), code),
            ("ERROR flag provided but not defined: -l", 2)
        );
        let a = p(&["-u", "a/0", "--", "ls", "-l"]).unwrap();
        assert_eq!(a.command, "ls -l");
        let (msg, code) = p(&["--unit=a/0", "ls"]).unwrap_err();
        assert_eq!(
            (msg.as_str(), code),
            ("ERROR flag provided but not defined: --unit", 2)
        );
        let (msg, code) = p(&["--bogus", "a/0", "ls"]).unwrap_err();
        assert_eq!(
            (msg.as_str(), code),
            ("ERROR flag provided but not defined: --bogus", 2)
        );
        assert_eq!(p(&["--no-context", "a/0", "ls"]).unwrap_err().1, 2);
        assert_eq!(
            p(&["a/0"]).unwrap_err(),
            ("ERROR missing commands".into(), 2)
        );
        assert_eq!(p(&[]).unwrap_err(), ("ERROR missing unit-name".into(), 2));
        assert_eq!(
            p(&["-u"]).unwrap_err(),
            ("ERROR flag needs an argument: -u".into(), 2)
        );
        assert_eq!(
            p(&["hostname", "-f"]).unwrap_err().0,
            "ERROR flag provided but not defined: -f"
        );
        // not a unit: Juju would look for the machine's only unit; the local model does not
        assert_eq!(
            p(&["hostname"]).unwrap_err().0,
            "ERROR \"hostname\" is not a valid unit tag"
        );
        assert_eq!(
            p(&["not a unit", "ls"]).unwrap_err().0,
            "ERROR \"not a unit\" is not a valid unit tag"
        );
        assert_eq!(p(&["--help"]).unwrap_err().1, 0);
    }

    // RunCommand.Init: "juju-exec cannot be called from within a hook, have context %q"
    #[test]
    fn refuses_inside_a_hook_context() {
        let args: Vec<String> = ["-u", "a/0", "true"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_args("juju-exec", &args, Some("a/0-update-status-123")),
            Err((
                "ERROR juju-exec cannot be called from within a hook, have context \"a/0-update-status-123\"".into(),
                2
            ))
        );
        assert_eq!(
            parse_args("juju-run", &args, Some("x")).unwrap_err().0,
            "ERROR juju-run cannot be called from within a hook, have context \"x\""
        );
        // an empty JUJU_CONTEXT_ID is no context
        assert!(parse_args("juju-exec", &args, Some("")).is_ok());
        // flag errors come first, as juju/cmd parses flags before Init
        assert_eq!(
            parse_args("juju-exec", &["--bogus".to_string()], Some("x"))
                .unwrap_err()
                .0,
            "ERROR flag provided but not defined: --bogus"
        );
    }

    // juju/utils CommandString, used by RunCommand.Init for more than one argument
    #[test]
    fn several_arguments_are_quoted_as_juju_quotes_them() {
        let c = |a: &[&str]| p(&[&["a/0"][..], a].concat()).unwrap().command;
        assert_eq!(
            c(&["echo", "a b", "$HOME", "say \"hi\"", "back\\slash", "x;y"]),
            r#"echo "a b" "\$HOME" "say \"hi\"" "back\\slash" x;y"#
        );
        assert_eq!(c(&["tab\there"]), "tab\there", "one argument goes as it is");
        assert_eq!(c(&["echo", "tab\there"]), "echo \"tab\there\"");
        assert_eq!(c(&["echo $HOME; ls"]), "echo $HOME; ls");
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
