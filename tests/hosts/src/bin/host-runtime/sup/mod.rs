//! The service supervisor inside a host's init: per-service state machines (start with
//! ExecStartPre/ExecStart/ExecStartPost by Type, stop with ExecStop/KillMode/timeouts,
//! reload, Restart= with RestartSec= and the start limit), sd_notify, and the reaper.
//!
//! Threads: one reaper (the only caller of waitpid), one thread per job (start, stop,
//! auto-restart, clean-up after a main process exits) and one notify reader per running
//! Type=notify service. Every state change happens under one mutex and is announced on
//! one condition variable.

use crate::launch;
use crate::members;
use crate::sys;
use crate::unit::{self, ExecLine, KillMode, Kind, LoadError, Restart, Unit};
use std::collections::{HashMap, VecDeque};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

mod start;
mod stop;
mod timer;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Inactive,
    Activating,
    Active,
    Reloading,
    Deactivating,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Activating => "activating",
            State::Active => "active",
            State::Reloading => "reloading",
            State::Deactivating => "deactivating",
            State::Failed => "failed",
        }
    }
}

pub struct Svc {
    pub unit: Option<Arc<Unit>>,
    pub state: State,
    pub sub: &'static str,
    pub result: &'static str,
    pub main_pid: Option<i32>,
    /// Bumped by every start and stop; a job or timer of an older generation gives up.
    pub gen: u64,
    /// The last finished start job: (generation, succeeded).
    pub job: Option<(u64, bool)>,
    pub since: SystemTime,
    pub main_status: Option<i32>,
    pub n_restarts: u32,
    /// Start times within StartLimitIntervalSec (every start counts, as in systemd).
    starts: VecDeque<Instant>,
    pub status_text: String,
    ready: bool,
    env: Vec<(String, String)>,
    /// A timer's next and last elapse (seconds since the epoch).
    pub next_elapse: Option<i64>,
    pub last_trigger: Option<i64>,
    /// A manual stop came while the service was already going down by itself: no automatic
    /// restart follows (systemd's `service_stop` sets `forbid_restart` in every state, so a
    /// stop never loses to Restart=).
    pub forbid_restart: bool,
}

impl Svc {
    fn new() -> Svc {
        Svc {
            unit: None,
            state: State::Inactive,
            sub: "dead",
            result: "success",
            main_pid: None,
            gen: 0,
            job: None,
            since: SystemTime::now(),
            main_status: None,
            n_restarts: 0,
            starts: VecDeque::new(),
            status_text: String::new(),
            ready: false,
            env: Vec::new(),
            next_elapse: None,
            last_trigger: None,
            forbid_restart: false,
        }
    }
    /// Records a start; true if it exceeds StartLimitBurst within StartLimitIntervalSec.
    fn start_limited(&mut self, u: &Unit) -> bool {
        let now = Instant::now();
        self.starts.push_back(now);
        while self
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) > u.start_limit_interval)
        {
            self.starts.pop_front();
        }
        u.start_limit_burst > 0
            && !u.start_limit_interval.is_zero()
            && self.starts.len() > u.start_limit_burst as usize
    }

    fn set(&mut self, st: State, sub: &'static str) {
        if self.state != st {
            self.since = SystemTime::now();
        }
        self.state = st;
        self.sub = sub;
    }
}

/// How long a booting unit waits for the units it is ordered After=.
const BOOT_ORDER_WAIT: Duration = Duration::from_secs(30);

type Snapshot = (Arc<Unit>, Option<i32>, Vec<(String, String)>);

struct Inner {
    svcs: HashMap<String, Svc>,
    /// Unit definitions as loaded since the last daemon-reload. Like systemd, a unit that is
    /// still referenced (not inactive, or enabled) keeps the definition it was loaded with
    /// until `daemon-reload`, even if its files change.
    loaded: HashMap<String, Arc<Unit>>,
    /// Units the boot started whose first job has not finished yet.
    booting: Vec<String>,
    waiters: HashMap<i32, mpsc::Sender<i32>>,
}

pub struct Sup {
    inner: Mutex<Inner>,
    cond: Condvar,
    /// Held around fork/exec and around waitpid, so the reaper never takes a child whose
    /// PID is not registered yet (std's spawn also waits for a child whose exec failed).
    spawn_lock: Mutex<()>,
    pub hostname: String,
}

/// A snapshot of one unit for status/show/is-active.
pub struct Info {
    pub name: String,
    pub load: &'static str,
    pub description: String,
    pub path: String,
    pub active: &'static str,
    pub sub: &'static str,
    pub result: &'static str,
    pub main_pid: i32,
    pub main_status: Option<i32>,
    pub n_restarts: u32,
    pub status_text: String,
    pub since: SystemTime,
    pub kind: String,
    pub restart: String,
    pub can_reload: bool,
    pub need_reload: bool,
    pub next_elapse: Option<i64>,
    pub last_trigger: Option<i64>,
}

fn job_failed(name: &str) -> String {
    format!(
        "Job for {name} failed because the control process exited with error code.\nSee \"systemctl status {name}\" and \"journalctl -xeu {name}\" for details."
    )
}

fn ok_status(u: &Unit, st: i32) -> bool {
    if libc::WIFEXITED(st) {
        let c = libc::WEXITSTATUS(st);
        c == 0 || u.svc.success_exit_status.contains(&c)
    } else if libc::WIFSIGNALED(st) {
        let s = libc::WTERMSIG(st);
        u.svc.success_signals.contains(&s)
    } else {
        false
    }
}

/// systemd's result for a main process exit.
fn classify(u: &Unit, st: i32) -> &'static str {
    if ok_status(u, st) {
        return "success";
    }
    if libc::WIFSIGNALED(st) {
        let s = libc::WTERMSIG(st);
        if [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&s) {
            return "success";
        }
        return if libc::WCOREDUMP(st) {
            "core-dump"
        } else {
            "signal"
        };
    }
    "exit-code"
}

fn wants_restart(r: Restart, result: &str) -> bool {
    match r {
        Restart::No => false,
        Restart::Always => true,
        Restart::OnSuccess => result == "success",
        Restart::OnFailure => result != "success",
        Restart::OnAbnormal => matches!(result, "signal" | "core-dump" | "timeout" | "watchdog"),
        Restart::OnAbort => matches!(result, "signal" | "core-dump"),
    }
}

impl Sup {
    pub fn new(hostname: String) -> Arc<Sup> {
        Arc::new(Sup {
            inner: Mutex::new(Inner {
                svcs: HashMap::new(),
                loaded: HashMap::new(),
                booting: Vec::new(),
                waiters: HashMap::new(),
            }),
            cond: Condvar::new(),
            spawn_lock: Mutex::new(()),
            hostname,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, name: &str, msg: &str) {
        use std::io::Write;
        let _ = std::fs::create_dir_all(launch::LOG_DIR);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch::log_path(name))
        {
            let _ = writeln!(f, "local-model[1]: {msg}");
        }
    }

    fn current(&self, name: &str, gen: u64) -> bool {
        self.lock().svcs.get(name).is_some_and(|s| s.gen == gen)
    }

    /// Reaps every child; routes exits to waiters and to services whose main process died.
    pub fn reaper(self: Arc<Self>) {
        loop {
            let mut reaped = Vec::new();
            {
                let _g = self.spawn_lock.lock().unwrap_or_else(|p| p.into_inner());
                while let Some(x) = sys::reap_any() {
                    reaped.push(x);
                }
            }
            if !reaped.is_empty() {
                let mut inn = self.lock();
                for (pid, st) in reaped {
                    if let Some(tx) = inn.waiters.remove(&pid) {
                        let _ = tx.send(st);
                        continue;
                    }
                    let hit = inn.svcs.iter_mut().find(|(_, s)| s.main_pid == Some(pid));
                    if let Some((name, svc)) = hit {
                        svc.main_pid = None;
                        svc.main_status = Some(st);
                        if matches!(svc.state, State::Active | State::Reloading) {
                            let (me, name, gen) = (self.clone(), name.clone(), svc.gen);
                            thread::spawn(move || me.after_main_exit(&name, gen, st));
                        }
                    }
                }
                self.cond.notify_all();
            }
            thread::sleep(Duration::from_millis(15));
        }
    }

    /// Spawns `cmd`. `register` runs under the state lock with the new PID before the
    /// reaper can see it exit; it returns false to have the process killed at once.
    fn spawn(
        &self,
        mut cmd: Command,
        wait: bool,
        register: impl FnOnce(&mut Inner, i32) -> bool,
    ) -> Result<(i32, Option<mpsc::Receiver<i32>>), String> {
        let _g = self.spawn_lock.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn().map_err(|e| {
            format!(
                "Failed to execute {}: {e}",
                cmd.get_program().to_string_lossy()
            )
        })?;
        let pid = child.id() as i32;
        drop(child);
        let mut inn = self.lock();
        let rx = wait.then(|| {
            let (tx, rx) = mpsc::channel();
            inn.waiters.insert(pid, tx);
            rx
        });
        let keep = register(&mut inn, pid);
        drop(inn);
        drop(_g);
        if !keep {
            sys::kill(pid, libc::SIGKILL);
        }
        Ok((pid, rx))
    }

    /// Runs a control command (ExecStartPre, ExecStop, ...) to completion; true if it
    /// succeeded or its failure is ignored (`-`).
    fn control(
        &self,
        u: &Unit,
        line: &ExecLine,
        env: &[(String, String)],
        privileged: bool,
        timeout: Option<Duration>,
    ) -> bool {
        let cmd = match launch::command(u, line, env, privileged) {
            Ok(c) => c,
            Err(e) => {
                self.log(&u.name, &e);
                return line.ignore_failure;
            }
        };
        let (pid, rx) = match self.spawn(cmd, true, |_, _| true) {
            Ok((p, Some(rx))) => (p, rx),
            Ok(_) => return false,
            Err(e) => {
                self.log(&u.name, &e);
                return line.ignore_failure;
            }
        };
        let st = match timeout {
            Some(t) => match rx.recv_timeout(t) {
                Ok(st) => st,
                Err(_) => {
                    self.log(&u.name, "control process timed out, killing it");
                    sys::kill(pid, libc::SIGKILL);
                    rx.recv().unwrap_or(libc::SIGKILL)
                }
            },
            None => rx.recv().unwrap_or(libc::SIGKILL),
        };
        let ok = libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 || ok_status(u, st);
        if !ok {
            self.log(
                &u.name,
                &format!(
                    "control process {:?} exited with status {}",
                    line.words.first(),
                    sys::shell_code(st)
                ),
            );
        }
        ok || line.ignore_failure
    }

    /// The definition a start uses: the loaded one while the unit is referenced (or
    /// `keep`, for the start half of a restart), else read afresh from disk.
    pub(super) fn definition(&self, name: &str, keep: bool) -> Result<Arc<Unit>, LoadError> {
        let cached = {
            let inn = self.lock();
            let busy = inn
                .svcs
                .get(name)
                .is_some_and(|s| s.state != State::Inactive);
            inn.loaded.get(name).map(|u| (u.clone(), busy))
        };
        if let Some((u, busy)) = cached {
            if keep || busy || crate::enable::state(name, &self.hostname) == "enabled" {
                return Ok(u);
            }
        }
        let u = Arc::new(unit::load(name, &self.hostname)?);
        self.lock().loaded.insert(name.to_string(), u.clone());
        Ok(u)
    }

    /// `systemctl daemon-reload`: forget loaded definitions.
    pub fn daemon_reload(&self) {
        self.lock().loaded.clear();
    }

    /// Have the unit's files changed since its loaded definition was read?
    pub fn needs_reload(&self, name: &str) -> bool {
        let name = unit::canonical(name);
        let old = self.lock().loaded.get(&name).map(|u| u.fingerprint.clone());
        old.is_some_and(|f| f != unit::fingerprint(&name))
    }

    /// `systemctl kill`: signal the main process or every process of the unit.
    pub fn kill(&self, name: &str, sig: i32, all: bool) -> Result<(), String> {
        let name = unit::canonical(name);
        let main = self.lock().svcs.get(&name).and_then(|s| s.main_pid);
        let pids = if all {
            members::of(&name, main)
        } else {
            main.into_iter().collect()
        };
        for p in pids {
            sys::kill(p, sig);
        }
        Ok(())
    }

    pub fn reset_failed(&self, name: Option<&str>) {
        let mut inn = self.lock();
        for (n, s) in inn.svcs.iter_mut() {
            if name.is_none_or(|x| unit::canonical(x) == *n) {
                if s.state == State::Failed {
                    s.set(State::Inactive, "dead");
                    s.result = "success";
                }
                s.starts.clear();
            }
        }
    }

    pub fn info(&self, name: &str) -> Info {
        let name = unit::canonical(name);
        let need_reload = self.needs_reload(&name);
        // The definition in use if the unit ran, else what is on disk.
        let in_use = self.lock().svcs.get(&name).and_then(|s| s.unit.clone());
        let loaded = match in_use {
            Some(u) => Ok(u),
            None => unit::load(&name, &self.hostname).map(Arc::new),
        };
        let load = match &loaded {
            Ok(_) => "loaded",
            Err(LoadError::NotFound) => "not-found",
            Err(LoadError::Masked(_)) => "masked",
            Err(LoadError::Bad(_)) => "bad-setting",
        };
        let path = match &loaded {
            Ok(u) => u.path.display().to_string(),
            Err(LoadError::Masked(p)) => p.display().to_string(),
            Err(_) => String::new(),
        };
        let u = loaded.as_ref().ok();
        let inn = self.lock();
        let s = inn.svcs.get(&name);
        Info {
            name: name.clone(),
            load,
            description: u.map_or(name.clone(), |u| u.description.clone()),
            path,
            active: s.map_or("inactive", |s| s.state.as_str()),
            sub: s.map_or("dead", |s| s.sub),
            result: s.map_or("success", |s| s.result),
            main_pid: s.and_then(|s| s.main_pid).unwrap_or(0),
            main_status: s.and_then(|s| s.main_status),
            n_restarts: s.map_or(0, |s| s.n_restarts),
            status_text: s.map(|s| s.status_text.clone()).unwrap_or_default(),
            since: s.map_or(SystemTime::now(), |s| s.since),
            kind: u
                .map(|u| format!("{:?}", u.svc.kind).to_lowercase())
                .unwrap_or_default(),
            restart: u
                .map(|u| u.svc.restart.as_str().to_string())
                .unwrap_or_default(),
            can_reload: u.is_some_and(|u| !u.svc.exec_reload.is_empty()),
            need_reload,
            next_elapse: s.and_then(|s| s.next_elapse),
            last_trigger: s.and_then(|s| s.last_trigger),
        }
    }

    /// Names of every unit the supervisor has touched.
    pub fn known(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().svcs.keys().cloned().collect();
        v.sort();
        v
    }

    /// Starts what is enabled, all at once (a service may wait for another's peers).
    pub fn boot(self: &Arc<Self>) {
        let units = crate::enable::boot_units();
        self.lock().booting = units.clone();
        for n in &units {
            // After= among the units booting: wait for those jobs to finish first.
            let after: Vec<String> = unit::load(n, &self.hostname)
                .map(|u| {
                    u.after
                        .iter()
                        .map(|a| unit::canonical(a))
                        .filter(|a| units.contains(a) && a != n)
                        .collect()
                })
                .unwrap_or_default();
            let (me, n) = (self.clone(), n.clone());
            thread::spawn(move || {
                for a in &after {
                    me.wait_settled(a, BOOT_ORDER_WAIT);
                }
                match me.start(&n, false) {
                    Ok(()) => me.wait_settled(&n, BOOT_ORDER_WAIT),
                    Err(e) => eprintln!("boot: {e}"),
                }
                me.lock().booting.retain(|b| *b != n);
                me.cond.notify_all();
            });
        }
    }

    /// `systemctl is-system-running`: starting while boot jobs run, degraded if a unit
    /// failed, else running.
    pub fn system_state(&self, wait: bool) -> &'static str {
        let mut inn = self.lock();
        while wait && !inn.booting.is_empty() {
            inn = self.cond.wait(inn).unwrap_or_else(|p| p.into_inner());
        }
        if !inn.booting.is_empty() {
            "starting"
        } else if inn.svcs.values().any(|s| s.state == State::Failed) {
            "degraded"
        } else {
            "running"
        }
    }

    /// Waits until `name` has been started and is no longer activating (or `limit` passes:
    /// an ordering cycle must not stall a boot).
    fn wait_settled(&self, name: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut inn = self.lock();
        while Instant::now() < deadline {
            let settled = inn
                .svcs
                .get(name)
                .is_some_and(|s| s.state != State::Activating || s.sub == "auto-restart");
            if settled {
                return;
            }
            inn = self
                .cond
                .wait_timeout(inn, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(extra: &str) -> Unit {
        crate::unit::load_text(
            "t.service",
            &format!("[Service]\nExecStart=/bin/true\n{extra}"),
            "h",
        )
        .unwrap()
    }

    const EXIT1: i32 = 1 << 8;
    const KILL9: i32 = libc::SIGKILL;
    const TERM: i32 = libc::SIGTERM;

    #[test]
    fn exits_are_classified_like_systemd() {
        let u = unit("SuccessExitStatus=143 SIGUSR1\n");
        assert_eq!(classify(&u, 0), "success");
        assert_eq!(classify(&u, EXIT1), "exit-code");
        assert_eq!(classify(&u, 143 << 8), "success");
        assert_eq!(classify(&u, KILL9), "signal");
        assert_eq!(classify(&u, TERM), "success");
        assert_eq!(classify(&u, libc::SIGUSR1), "success");
    }

    #[test]
    fn restart_policies() {
        assert!(wants_restart(Restart::Always, "success"));
        assert!(!wants_restart(Restart::No, "signal"));
        assert!(wants_restart(Restart::OnFailure, "exit-code"));
        assert!(!wants_restart(Restart::OnFailure, "success"));
        assert!(wants_restart(Restart::OnAbnormal, "signal"));
        assert!(!wants_restart(Restart::OnAbnormal, "exit-code"));
        assert!(wants_restart(Restart::OnAbort, "core-dump"));
        assert!(!wants_restart(Restart::OnAbort, "timeout"));
    }
}
