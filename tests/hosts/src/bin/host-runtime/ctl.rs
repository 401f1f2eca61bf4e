//! `systemctl` semantics, run inside the init on behalf of the `systemctl` client:
//! argument parsing, the verbs, their output and their exit codes.

use crate::enable;
use crate::launch;
use crate::sup::{Info, Sup};
use crate::sys;
use crate::unit;
use std::sync::Arc;

/// What a systemctl invocation prints and returns.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Reply {
    fn out(&mut self, s: &str) {
        self.out.push_str(s);
        if !s.ends_with('\n') {
            self.out.push('\n');
        }
    }
    fn err(&mut self, s: &str) {
        self.err.push_str(s);
        if !s.ends_with('\n') {
            self.err.push('\n');
        }
    }
}

#[derive(Default)]
struct Opts {
    quiet: bool,
    no_block: bool,
    now: bool,
    wait: bool,
    value: bool,
    props: Vec<String>,
    signal: Option<i32>,
    kill_main_only: bool,
    lines: usize,
}

/// Every verb this systemctl knows.
const VERBS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "force-reload",
    "try-restart",
    "condrestart",
    "reload",
    "reload-or-restart",
    "try-reload-or-restart",
    "enable",
    "reenable",
    "disable",
    "mask",
    "unmask",
    "is-enabled",
    "is-active",
    "is-failed",
    "status",
    "show",
    "kill",
    "reset-failed",
    "daemon-reload",
    "daemon-reexec",
    "is-system-running",
    "list-units",
    "list-unit-files",
    "cat",
];

/// Verbs an unprivileged caller may use (systemd asks polkit for the others).
const READ_ONLY: &[&str] = &[
    "is-active",
    "is-enabled",
    "is-failed",
    "status",
    "show",
    "cat",
    "list-units",
    "list-unit-files",
    "is-system-running",
];

/// Verbs after which systemctl warns that unit files changed without a daemon-reload.
const WARNS_STALE: &[&str] = &[
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "status",
];

/// Runs one systemctl invocation. `root`: the caller is uid 0.
pub fn run(sup: &Arc<Sup>, argv: &[String], root: bool) -> Reply {
    let mut o = Opts {
        lines: 10,
        ..Default::default()
    };
    let mut pos: Vec<String> = Vec::new();
    let mut r = Reply::default();
    let mut it = argv.iter().peekable();
    while let Some(a) = it.next() {
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) if a.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let val = |it: &mut std::iter::Peekable<std::slice::Iter<String>>| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_default()
        };
        match k {
            "-q" | "--quiet" => o.quiet = true,
            "--no-block" => o.no_block = true,
            "--now" => o.now = true,
            "--wait" => o.wait = true,
            "--value" => o.value = true,
            "-p" | "--property" => o.props.extend(val(&mut it).split(',').map(String::from)),
            "-s" | "--signal" => o.signal = sys::signal_name_to_num(&val(&mut it)),
            "--kill-who" | "--kill-whom" => o.kill_main_only = val(&mut it) == "main",
            "-n" | "--lines" => o.lines = val(&mut it).parse().unwrap_or(10),
            "--type" | "-t" | "--state" | "-o" | "--output" => {
                val(&mut it);
            }
            k if k.starts_with('-') => {} // --no-pager, --system, --full, --no-legend, --plain, --all, ...
            _ => pos.push(a.clone()),
        }
    }
    if pos.is_empty() {
        pos.push("list-units".into());
    }
    let Some((verb, units)) = pos.split_first() else {
        return r;
    };
    if !VERBS.contains(&verb.as_str()) {
        r.err(&format!(
            "Unknown command verb '{verb}' (not supported by the local model)."
        ));
        r.code = 1;
        return r;
    }
    let host = sup.hostname.clone();
    let needs_units = !matches!(
        verb.as_str(),
        "daemon-reload"
            | "daemon-reexec"
            | "reset-failed"
            | "list-units"
            | "is-system-running"
            | "show"
            | "status"
            | "list-unit-files"
    );
    if needs_units && units.is_empty() {
        r.err("Too few arguments.");
        r.code = 1;
        return r;
    }
    let wait = !o.no_block;
    if !root && !READ_ONLY.contains(&verb.as_str()) {
        r.err(&format!(
            "Failed to {verb} {}: Interactive authentication required.\nSee system logs and 'systemctl status {}' for details.",
            units.join(" "),
            units.join(" ")
        ));
        r.code = 1;
        return r;
    }
    if WARNS_STALE.contains(&verb.as_str()) {
        for u in units.iter().filter(|u| sup.needs_reload(u)) {
            r.err(&format!(
                "Warning: The unit file, source configuration file or drop-ins of {} changed on disk. Run 'systemctl daemon-reload' to reload units.",
                unit::canonical(u)
            ));
        }
    }
    match verb.as_str() {
        "start" => each(&mut r, units, |u| sup.start(u, wait)),
        "stop" => each(&mut r, units, |u| sup.stop(u, wait)),
        "restart" | "force-reload" => each(&mut r, units, |u| {
            sup.stop(u, true)
                .and_then(|_| sup.start_with(u, wait, true))
        }),
        "try-restart" | "condrestart" => each(&mut r, units, |u| {
            if sup.info(u).active == "active" {
                sup.stop(u, true)
                    .and_then(|_| sup.start_with(u, wait, true))
            } else {
                Ok(())
            }
        }),
        "reload" => each(&mut r, units, |u| sup.reload(u)),
        "reload-or-restart" | "try-reload-or-restart" => each(&mut r, units, |u| {
            let i = sup.info(u);
            let active = i.active == "active";
            if verb == "try-reload-or-restart" && !active {
                return Ok(());
            }
            let reloadable = unit::load(u, &host).is_ok_and(|x| !x.svc.exec_reload.is_empty());
            if active && reloadable {
                sup.reload(u)
            } else {
                sup.stop(u, true)
                    .and_then(|_| sup.start_with(u, wait, true))
            }
        }),
        "enable" | "reenable" => {
            for u in units {
                if verb == "reenable" {
                    let _ = enable::disable(u, &host);
                }
                match enable::enable(u, &host) {
                    Ok(m) => m.iter().for_each(|m| r.err(m)),
                    Err(e) => {
                        r.err(&e);
                        r.code = 1;
                    }
                }
                if o.now && r.code == 0 {
                    if let Err(e) = sup.start(u, wait) {
                        r.err(&e);
                        r.code = 1;
                    }
                }
            }
        }
        "disable" => {
            for u in units {
                match enable::disable(u, &host) {
                    Ok(m) => m.iter().for_each(|m| r.err(m)),
                    Err(e) => {
                        r.err(&e);
                        r.code = 1;
                    }
                }
                if o.now {
                    if let Err(e) = sup.stop(u, wait) {
                        r.err(&e);
                        r.code = 1;
                    }
                }
            }
        }
        "mask" | "unmask" => {
            for u in units {
                let res = if verb == "mask" {
                    enable::mask(u)
                } else {
                    enable::unmask(u)
                };
                match res {
                    Ok(m) => m.iter().for_each(|m| r.err(m)),
                    Err(e) => {
                        r.err(&e);
                        r.code = 1;
                    }
                }
            }
        }
        "is-enabled" => {
            let mut any = false;
            for u in units {
                let st = enable::state(u, &host);
                if st == "not-found" {
                    r.err(&format!(
                        "Failed to get unit file state for {}: No such file or directory",
                        unit::normalize(u)
                    ));
                    r.code = 1;
                    continue;
                }
                any |= matches!(st.as_str(), "enabled" | "static" | "alias" | "indirect");
                if !o.quiet {
                    r.out(&st);
                }
            }
            if r.code == 0 && !any {
                r.code = 1;
            }
        }
        "is-active" | "is-failed" => {
            let want = if verb == "is-active" {
                "active"
            } else {
                "failed"
            };
            let mut any = false;
            for u in units {
                let st = sup.info(u).active;
                any |= st == want || (want == "active" && st == "reloading");
                if !o.quiet {
                    r.out(st);
                }
            }
            r.code = if any {
                0
            } else if want == "active" {
                3
            } else {
                1
            };
        }
        "status" => {
            let names = if units.is_empty() {
                sup.known()
            } else {
                units.to_vec()
            };
            let mut all_active = true;
            for u in &names {
                let i = sup.info(u);
                if i.load == "not-found" && i.active == "inactive" {
                    r.err(&format!("Unit {} could not be found.", i.name));
                    r.code = 4;
                    continue;
                }
                all_active &= i.active == "active" || i.active == "reloading";
                r.out(&status_text(&i, &host, o.lines));
            }
            if r.code == 0 && !all_active {
                r.code = 3;
            }
        }
        "show" => {
            for (n, u) in units.iter().enumerate() {
                if n > 0 && !o.value {
                    r.out("");
                }
                let i = sup.info(u);
                for (k, v) in properties(&i, &host) {
                    if !o.props.is_empty() && !o.props.contains(&k) {
                        continue;
                    }
                    if o.value {
                        r.out(&v);
                    } else {
                        r.out(&format!("{k}={v}"));
                    }
                }
            }
        }
        "kill" => each(&mut r, units, |u| {
            sup.kill(u, o.signal.unwrap_or(libc::SIGTERM), !o.kill_main_only)
        }),
        "reset-failed" => {
            if units.is_empty() {
                sup.reset_failed(None)
            } else {
                units.iter().for_each(|u| sup.reset_failed(Some(u)))
            }
        }
        "daemon-reload" | "daemon-reexec" => sup.daemon_reload(),
        "is-system-running" => {
            let st = sup.system_state(o.wait);
            if !o.quiet {
                r.out(st);
            }
            r.code = if st == "running" { 0 } else { 1 };
        }
        "list-units" => {
            for n in sup.known() {
                let i = sup.info(&n);
                r.out(&format!(
                    "{}  {}  {}  {}  {}",
                    i.name, i.load, i.active, i.sub, i.description
                ));
            }
        }
        "list-unit-files" => {
            r.out("UNIT FILE  STATE");
            for n in enable::unit_files() {
                if units.is_empty() || units.iter().any(|u| unit::normalize(u) == n) {
                    let st = enable::state(&n, &host);
                    r.out(&format!("{n}  {st}"));
                }
            }
        }
        "cat" => {
            for u in units {
                match unit::find(&unit::normalize(u)) {
                    Ok(p) => {
                        r.out(&format!("# {}", p.display()));
                        r.out(&std::fs::read_to_string(&p).unwrap_or_default());
                    }
                    Err(_) => {
                        r.err(&format!("No files found for {}.", unit::normalize(u)));
                        r.code = 1;
                    }
                }
            }
        }
        other => {
            r.err(&format!(
                "Unknown command verb '{other}' (not supported by the local model)."
            ));
            r.code = 1;
        }
    }
    r
}

fn each(r: &mut Reply, units: &[String], mut f: impl FnMut(&str) -> Result<(), String>) {
    for u in units {
        if let Err(e) = f(u) {
            r.err(&e);
            r.code = if e.contains("not found") || e.contains("not loaded") {
                5
            } else {
                1
            };
        }
    }
}

fn since(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ago = std::time::SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("@{secs}; {ago}s ago")
}

fn status_text(i: &Info, host: &str, lines: usize) -> String {
    let dot = match i.active {
        "active" | "reloading" => "●",
        "failed" => "×",
        _ => "○",
    };
    let mut s = format!("{dot} {} - {}\n", i.name, i.description);
    let ufs = enable::state(&i.name, host);
    s.push_str(&format!("     Loaded: {} ({}; {ufs})\n", i.load, i.path));
    let detail = if i.active == "failed" {
        format!("(Result: {})", i.result)
    } else {
        format!("({})", i.sub)
    };
    s.push_str(&format!(
        "     Active: {} {detail} since {}\n",
        i.active,
        since(i.since)
    ));
    if i.main_pid > 0 {
        let comm =
            std::fs::read_to_string(format!("/proc/{}/comm", i.main_pid)).unwrap_or_default();
        s.push_str(&format!("   Main PID: {} ({})\n", i.main_pid, comm.trim()));
    }
    if !i.status_text.is_empty() {
        s.push_str(&format!("     Status: \"{}\"\n", i.status_text));
    }
    if lines > 0 {
        let log = std::fs::read_to_string(launch::log_path(&i.name)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        if !tail.is_empty() {
            s.push('\n');
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

fn epoch_or_na(t: Option<i64>) -> String {
    t.map_or("n/a".into(), |t| format!("@{t}"))
}

fn properties(i: &Info, host: &str) -> Vec<(String, String)> {
    let (code, status) = match i.main_status {
        Some(st) if libc::WIFEXITED(st) => ("exited", libc::WEXITSTATUS(st)),
        Some(st) if libc::WIFSIGNALED(st) => ("killed", libc::WTERMSIG(st)),
        _ => ("", 0),
    };
    vec![
        ("Id", i.name.clone()),
        ("Names", i.name.clone()),
        ("Description", i.description.clone()),
        ("LoadState", i.load.to_string()),
        ("ActiveState", i.active.to_string()),
        ("SubState", i.sub.to_string()),
        ("Result", i.result.to_string()),
        ("MainPID", i.main_pid.to_string()),
        ("ExecMainPID", i.main_pid.to_string()),
        ("ExecMainCode", code.to_string()),
        ("ExecMainStatus", status.to_string()),
        ("NRestarts", i.n_restarts.to_string()),
        (
            "NeedDaemonReload",
            if i.need_reload { "yes" } else { "no" }.to_string(),
        ),
        ("StatusText", i.status_text.clone()),
        ("FragmentPath", i.path.clone()),
        ("UnitFileState", enable::state(&i.name, host)),
        ("Type", i.kind.clone()),
        ("Restart", i.restart.clone()),
        (
            "CanReload",
            if i.can_reload { "yes" } else { "no" }.to_string(),
        ),
        // Timers (systemd prints dates; seconds since the epoch here, `n/a` when unset).
        ("NextElapseUSecRealtime", epoch_or_na(i.next_elapse)),
        ("LastTriggerUSec", epoch_or_na(i.last_trigger)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
