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
    restarts: VecDeque<Instant>,
    pub status_text: String,
    ready: bool,
    env: Vec<(String, String)>,
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
            restarts: VecDeque::new(),
            status_text: String::new(),
            ready: false,
            env: Vec::new(),
        }
    }
    fn set(&mut self, st: State, sub: &'static str) {
        if self.state != st {
            self.since = SystemTime::now();
        }
        self.state = st;
        self.sub = sub;
    }
}

type Snapshot = (Arc<Unit>, Option<i32>, Vec<(String, String)>);

struct Inner {
    svcs: HashMap<String, Svc>,
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

    /// Starts a unit; with `wait`, returns once it is active (or failed).
    pub fn start(self: &Arc<Self>, name: &str, wait: bool) -> Result<(), String> {
        let name = unit::normalize(name);
        if !name.ends_with(".service") {
            return Ok(());
        }
        let u = Arc::new(unit::load(&name, &self.hostname).map_err(|e| match e {
            LoadError::NotFound => format!("Failed to start {name}: Unit {name} not found."),
            LoadError::Masked(_) => format!("Failed to start {name}: Unit {name} is masked."),
            LoadError::Bad(b) => {
                format!("Failed to start {name}: Unit {name} has a bad unit file setting: {b}")
            }
        })?);
        let skip = match crate::conditions::check(&u) {
            Ok(go) => !go,
            Err(e) => {
                self.log(&name, &format!("Assertion failed: {e}"));
                return Err(format!("Assertion failed on job for {name}."));
            }
        };
        let gen = {
            let mut inn = self.lock();
            while inn
                .svcs
                .get(&name)
                .is_some_and(|s| s.state == State::Deactivating)
            {
                inn = self.cond.wait(inn).unwrap_or_else(|p| p.into_inner());
            }
            let svc = inn.svcs.entry(name.clone()).or_insert_with(Svc::new);
            match svc.state {
                State::Active | State::Reloading => return Ok(()),
                State::Activating if svc.sub != "auto-restart" => {
                    let g = svc.gen;
                    drop(inn);
                    return if wait {
                        self.wait_job(&name, g)
                    } else {
                        Ok(())
                    };
                }
                _ => {}
            }
            if skip {
                self.log(&name, "start condition failed; not starting");
                svc.set(State::Inactive, "dead");
                return Ok(());
            }
            svc.gen += 1;
            svc.unit = Some(u.clone());
            svc.set(State::Activating, "start");
            svc.result = "success";
            svc.ready = false;
            svc.status_text.clear();
            svc.gen
        };
        let (me, n) = (self.clone(), name.clone());
        thread::spawn(move || me.run_start(&n, gen, u));
        if wait {
            self.wait_job(&name, gen)
        } else {
            Ok(())
        }
    }

    fn wait_job(&self, name: &str, gen: u64) -> Result<(), String> {
        let mut inn = self.lock();
        loop {
            let Some(svc) = inn.svcs.get(name) else {
                return Ok(());
            };
            if let Some((g, ok)) = svc.job {
                if g == gen {
                    return if ok { Ok(()) } else { Err(job_failed(name)) };
                }
            }
            if svc.gen != gen {
                return Ok(());
            }
            inn = self.cond.wait(inn).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish_job(&self, name: &str, gen: u64, st: State, sub: &'static str) {
        let mut inn = self.lock();
        if let Some(svc) = inn.svcs.get_mut(name) {
            if svc.gen == gen {
                svc.set(st, sub);
                svc.job = Some((gen, true));
            }
        }
        self.cond.notify_all();
    }

    fn run_start(self: Arc<Self>, name: &str, gen: u64, u: Arc<Unit>) {
        let env = match launch::environment(&u).and_then(|e| launch::runtime_dirs(&u).map(|_| e)) {
            Ok(e) => e,
            Err(e) => {
                self.log(name, &e);
                return self.fail(name, gen, "resources");
            }
        };
        if let Some(svc) = self.lock().svcs.get_mut(name) {
            svc.env = env.clone();
        }
        let s = &u.svc;
        let tout = s.timeout_start;
        for line in &s.exec_start_pre {
            if !self.current(name, gen) {
                return;
            }
            if !self.control(&u, line, &env, s.permissions_start_only, tout) {
                return self.fail(name, gen, "exit-code");
            }
        }
        if !self.current(name, gen) {
            return;
        }
        if s.kind == Kind::Oneshot {
            for line in &s.exec_start {
                if !self.current(name, gen) {
                    return;
                }
                if !self.control(&u, line, &env, false, tout) {
                    return self.fail(name, gen, "exit-code");
                }
            }
            if !self.post_start(&u, name, gen, &env) {
                return self.fail(name, gen, "exit-code");
            }
            let (st, sub) = if s.remain_after_exit {
                (State::Active, "exited")
            } else {
                (State::Inactive, "dead")
            };
            return self.finish_job(name, gen, st, sub);
        }
        if s.kind == Kind::Notify {
            match self.notify_socket(name) {
                Ok(sock) => {
                    let (me, n) = (self.clone(), name.to_string());
                    thread::spawn(move || me.notify_reader(&n, gen, sock));
                }
                Err(e) => {
                    self.log(name, &e);
                    return self.fail(name, gen, "resources");
                }
            }
        }
        let forking = s.kind == Kind::Forking;
        let line = &s.exec_start[0];
        let spawned = launch::command(&u, line, &env, false).and_then(|cmd| {
            self.spawn(cmd, forking, |inn, pid| {
                let Some(svc) = inn.svcs.get_mut(name) else {
                    return false;
                };
                if svc.gen != gen {
                    return false;
                }
                if !forking {
                    svc.main_pid = Some(pid);
                    svc.main_status = None;
                }
                true
            })
        });
        let (_pid, rx) = match spawned {
            Ok(x) => x,
            Err(e) => {
                self.log(name, &e);
                return self.fail(name, gen, "exit-code");
            }
        };
        match s.kind {
            Kind::Notify => {
                let deadline = tout.map(|t| Instant::now() + t);
                let mut inn = self.lock();
                loop {
                    let Some(svc) = inn.svcs.get_mut(name) else {
                        return;
                    };
                    if svc.gen != gen {
                        return;
                    }
                    if svc.ready {
                        break;
                    }
                    if svc.main_pid.is_none() {
                        let r = svc.main_status.map_or("exit-code", |st| {
                            let r = classify(&u, st);
                            if r == "success" {
                                "protocol"
                            } else {
                                r
                            }
                        });
                        drop(inn);
                        return self.fail(name, gen, r);
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        drop(inn);
                        self.log(name, "start operation timed out");
                        return self.fail(name, gen, "timeout");
                    }
                    inn = self
                        .cond
                        .wait_timeout(inn, Duration::from_millis(100))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            Kind::Forking => {
                let rx = rx.expect("forking start waits");
                let st = match tout {
                    Some(t) => rx.recv_timeout(t).ok(),
                    None => rx.recv().ok(),
                };
                let Some(st) = st else {
                    return self.fail(name, gen, "timeout");
                };
                if !(ok_status(&u, st) || line.ignore_failure) {
                    return self.fail(name, gen, "exit-code");
                }
                let Some(main) = self.forked_main(&u) else {
                    self.log(
                        name,
                        "no process left after the start command; treating as failed",
                    );
                    return self.fail(name, gen, "protocol");
                };
                {
                    let mut inn = self.lock();
                    if let Some(svc) = inn.svcs.get_mut(name) {
                        if svc.gen != gen {
                            return;
                        }
                        svc.main_pid = Some(main);
                    }
                }
                if !members::alive(main) {
                    return self.fail(name, gen, "exit-code");
                }
            }
            _ => {}
        }
        {
            let mut inn = self.lock();
            if let Some(svc) = inn.svcs.get_mut(name) {
                if svc.gen == gen && svc.state == State::Activating {
                    svc.set(State::Activating, "start-post");
                }
            }
        }
        if !self.post_start(&u, name, gen, &env) {
            return self.fail(name, gen, "exit-code");
        }
        let mut inn = self.lock();
        if let Some(svc) = inn.svcs.get_mut(name) {
            // The main process may have exited meanwhile: its handler needs Active to run.
            if svc.gen == gen && svc.state == State::Activating {
                if svc.main_pid.is_none() {
                    drop(inn);
                    let st = self
                        .lock()
                        .svcs
                        .get(name)
                        .and_then(|s| s.main_status)
                        .unwrap_or(0);
                    let r = classify(&u, st);
                    self.finish_job(name, gen, State::Active, "running");
                    return self.after_main_exit_result(name, gen, r);
                }
                svc.set(State::Active, "running");
                svc.job = Some((gen, true));
            }
        }
        self.cond.notify_all();
    }

    fn post_start(&self, u: &Unit, name: &str, gen: u64, env: &[(String, String)]) -> bool {
        for line in &u.svc.exec_start_post {
            if !self.current(name, gen) {
                return true;
            }
            if !self.control(
                u,
                line,
                env,
                u.svc.permissions_start_only,
                u.svc.timeout_start,
            ) {
                return false;
            }
        }
        true
    }

    /// The main process of a forking service: its PIDFile, else its oldest process.
    fn forked_main(&self, u: &Unit) -> Option<i32> {
        if let Some(pf) = &u.svc.pid_file {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(p) = std::fs::read_to_string(pf)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    return Some(p);
                }
                if Instant::now() > deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        members::of(&u.name, None).into_iter().next()
    }

    fn notify_socket(&self, name: &str) -> Result<std::os::unix::net::UnixDatagram, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = launch::notify_path(name);
        std::fs::create_dir_all(launch::NOTIFY_DIR).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&p);
        let s = std::os::unix::net::UnixDatagram::bind(&p)
            .map_err(|e| format!("notify socket {}: {e}", p.display()))?;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666));
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// Reads sd_notify messages (READY=1, RELOADING=1, STATUS=, MAINPID=) for one run.
    fn notify_reader(
        self: Arc<Self>,
        name: &str,
        gen: u64,
        sock: std::os::unix::net::UnixDatagram,
    ) {
        let mut buf = vec![0u8; 8192];
        loop {
            {
                let inn = self.lock();
                match inn.svcs.get(name) {
                    Some(s)
                        if s.gen == gen && !matches!(s.state, State::Inactive | State::Failed) => {}
                    _ => return,
                }
            }
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(name) else {
                return;
            };
            if svc.gen != gen {
                return;
            }
            for l in msg.lines() {
                match l.split_once('=') {
                    Some(("READY", "1")) => {
                        svc.ready = true;
                        if svc.state == State::Reloading {
                            svc.set(State::Active, "running");
                        }
                    }
                    Some(("RELOADING", "1")) if svc.state == State::Active => {
                        svc.set(State::Reloading, "reload")
                    }
                    Some(("STATUS", t)) => svc.status_text = t.to_string(),
                    Some(("MAINPID", p)) => {
                        if let Ok(p) = p.parse() {
                            svc.main_pid = Some(p)
                        }
                    }
                    _ => {}
                }
            }
            self.cond.notify_all();
        }
    }

    /// Sends the stop signal per KillMode, waits TimeoutStopSec, then SIGKILLs.
    fn kill_members(&self, u: &Unit, main: Option<i32>) {
        let name = &u.name;
        let mode = u.svc.kill_mode;
        let targets = |all: bool| -> Vec<i32> {
            match mode {
                KillMode::None => vec![],
                KillMode::Process => main.filter(|m| members::alive(*m)).into_iter().collect(),
                KillMode::Mixed if !all => {
                    main.filter(|m| members::alive(*m)).into_iter().collect()
                }
                _ => members::of(name, main),
            }
        };
        for p in targets(false) {
            sys::kill(p, u.svc.kill_signal);
            sys::kill(p, libc::SIGCONT);
        }
        let limit = u.svc.timeout_stop.unwrap_or(Duration::from_secs(3600));
        let deadline = Instant::now() + limit;
        let remaining = || {
            if mode == KillMode::Mixed {
                members::of(name, main)
            } else {
                targets(true)
            }
        };
        while !remaining().is_empty() {
            if Instant::now() > deadline {
                self.log(name, "stop timed out; sending SIGKILL");
                for p in remaining() {
                    sys::kill(p, libc::SIGKILL);
                }
                let d2 = Instant::now() + Duration::from_secs(5);
                while !remaining().is_empty() && Instant::now() < d2 {
                    thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running unit, its main PID and its environment.
    fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let inn = self.lock();
        let s = inn.svcs.get(name)?;
        Some((s.unit.clone()?, s.main_pid, s.env.clone()))
    }

    /// A start failed: clean up the service's processes, mark it failed, maybe restart.
    fn fail(self: &Arc<Self>, name: &str, gen: u64, result: &'static str) {
        let Some((u, main, env)) = self.snapshot(name) else {
            return;
        };
        {
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(name) else {
                return;
            };
            if svc.gen != gen {
                return;
            }
            svc.set(State::Deactivating, "final-sigterm");
            svc.result = result;
        }
        self.kill_members(&u, main);
        self.stop_post(&u, &env);
        {
            let mut inn = self.lock();
            if let Some(svc) = inn.svcs.get_mut(name) {
                if svc.gen == gen {
                    svc.main_pid = None;
                    svc.set(State::Failed, "failed");
                    svc.job = Some((gen, false));
                }
            }
            self.cond.notify_all();
        }
        self.maybe_restart(name, gen, result);
    }

    fn stop_post(&self, u: &Unit, env: &[(String, String)]) {
        for line in &u.svc.exec_stop_post {
            self.control(
                u,
                line,
                env,
                u.svc.permissions_start_only,
                u.svc.timeout_stop,
            );
        }
        launch::remove_runtime_dirs(u);
    }

    /// The main process of an active service exited by itself.
    fn after_main_exit(self: Arc<Self>, name: &str, gen: u64, st: i32) {
        let Some((u, _, _)) = self.snapshot(name) else {
            return;
        };
        let r = classify(&u, st);
        self.log(
            name,
            &format!("main process exited, status {} ({r})", sys::shell_code(st)),
        );
        self.after_main_exit_result(name, gen, r)
    }

    fn after_main_exit_result(self: &Arc<Self>, name: &str, gen: u64, result: &'static str) {
        let Some((u, _, env)) = self.snapshot(name) else {
            return;
        };
        {
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(name) else {
                return;
            };
            if svc.gen != gen {
                return;
            }
            svc.set(State::Deactivating, "stop");
            svc.result = result;
        }
        let mut env = env;
        env.push(("MAINPID".into(), String::new()));
        for line in &u.svc.exec_stop {
            self.control(
                &u,
                line,
                &env,
                u.svc.permissions_start_only,
                u.svc.timeout_stop,
            );
        }
        self.kill_members(&u, None);
        self.stop_post(&u, &env);
        {
            let mut inn = self.lock();
            if let Some(svc) = inn.svcs.get_mut(name) {
                if svc.gen == gen {
                    if result == "success" {
                        svc.set(State::Inactive, "dead");
                    } else {
                        svc.set(State::Failed, "failed");
                    }
                }
            }
            self.cond.notify_all();
        }
        self.maybe_restart(name, gen, result);
    }

    fn maybe_restart(self: &Arc<Self>, name: &str, gen: u64, result: &'static str) {
        let Some((u, _, _)) = self.snapshot(name) else {
            return;
        };
        if !wants_restart(u.svc.restart, result) {
            return;
        }
        {
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(name) else {
                return;
            };
            if svc.gen != gen {
                return;
            }
            let now = Instant::now();
            svc.restarts.push_back(now);
            while svc
                .restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > u.start_limit_interval)
            {
                svc.restarts.pop_front();
            }
            if u.start_limit_burst > 0
                && !u.start_limit_interval.is_zero()
                && svc.restarts.len() > u.start_limit_burst as usize
            {
                svc.set(State::Failed, "failed");
                svc.result = "start-limit-hit";
                drop(inn);
                self.log(
                    name,
                    "start request repeated too quickly; giving up (start-limit-hit)",
                );
                self.cond.notify_all();
                return;
            }
            svc.set(State::Activating, "auto-restart");
        }
        self.cond.notify_all();
        thread::sleep(u.svc.restart_sec);
        let newgen = {
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(name) else {
                return;
            };
            if svc.gen != gen || svc.sub != "auto-restart" {
                return;
            }
            svc.gen += 1;
            svc.n_restarts += 1;
            svc.set(State::Activating, "start");
            svc.result = "success";
            svc.ready = false;
            svc.gen
        };
        self.log(name, "scheduled restart");
        let me = self.clone();
        let n = name.to_string();
        thread::spawn(move || me.run_start(&n, newgen, u));
    }

    /// Stops a unit; with `wait`, returns once its processes are gone.
    pub fn stop(self: &Arc<Self>, name: &str, wait: bool) -> Result<(), String> {
        let name = unit::normalize(name);
        let (gen, u, main, env, was_active) = {
            let mut inn = self.lock();
            let Some(svc) = inn.svcs.get_mut(&name) else {
                return match unit::find(&name) {
                    Ok(_) | Err(LoadError::Masked(_)) => Ok(()),
                    Err(_) => Err(format!("Failed to stop {name}: Unit {name} not loaded.")),
                };
            };
            match svc.state {
                State::Inactive | State::Failed => return Ok(()),
                State::Deactivating => {
                    let g = svc.gen;
                    drop(inn);
                    if wait {
                        let mut inn = self.lock();
                        while inn
                            .svcs
                            .get(&name)
                            .is_some_and(|s| s.gen == g && s.state == State::Deactivating)
                        {
                            inn = self.cond.wait(inn).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    return Ok(());
                }
                _ => {}
            }
            let was_active = matches!(svc.state, State::Active | State::Reloading);
            svc.gen += 1;
            svc.set(State::Deactivating, "stop");
            let Some(u) = svc.unit.clone() else {
                return Ok(());
            };
            (svc.gen, u, svc.main_pid, svc.env.clone(), was_active)
        };
        self.cond.notify_all();
        let me = self.clone();
        let job = move || me.do_stop(&name, gen, &u, main, env, was_active);
        if wait {
            job();
        } else {
            thread::spawn(job);
        }
        Ok(())
    }

    fn do_stop(
        &self,
        name: &str,
        gen: u64,
        u: &Unit,
        main: Option<i32>,
        mut env: Vec<(String, String)>,
        was_active: bool,
    ) {
        env.push((
            "MAINPID".into(),
            main.map(|m| m.to_string()).unwrap_or_default(),
        ));
        if was_active {
            for line in &u.svc.exec_stop {
                self.control(
                    u,
                    line,
                    &env,
                    u.svc.permissions_start_only,
                    u.svc.timeout_stop,
                );
            }
        }
        self.kill_members(u, main);
        self.stop_post(u, &env);
        let mut inn = self.lock();
        if let Some(svc) = inn.svcs.get_mut(name) {
            if svc.gen == gen {
                svc.main_pid = None;
                svc.set(State::Inactive, "dead");
                svc.result = "success";
            }
        }
        self.cond.notify_all();
    }

    pub fn reload(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let name = unit::normalize(name);
        let (u, mut env, main) = {
            let mut inn = self.lock();
            let svc = inn
                .svcs
                .get_mut(&name)
                .filter(|s| matches!(s.state, State::Active | State::Reloading));
            let Some(svc) = svc else {
                return Err(format!(
                    "Failed to reload {name}: Unit {name} is not active."
                ));
            };
            let Some(u) = svc.unit.clone() else {
                return Err(format!("Failed to reload {name}: not loaded"));
            };
            if u.svc.exec_reload.is_empty() {
                return Err(format!(
                    "Failed to reload {name}: Job type reload is not applicable for unit {name}."
                ));
            }
            svc.set(State::Reloading, "reload");
            (u, svc.env.clone(), svc.main_pid)
        };
        env.push((
            "MAINPID".into(),
            main.map(|m| m.to_string()).unwrap_or_default(),
        ));
        let mut ok = true;
        for line in &u.svc.exec_reload {
            if !self.control(
                &u,
                line,
                &env,
                u.svc.permissions_start_only,
                u.svc.timeout_start,
            ) {
                ok = false;
                break;
            }
        }
        let mut inn = self.lock();
        if let Some(svc) = inn.svcs.get_mut(&name) {
            if svc.state == State::Reloading {
                svc.set(State::Active, "running");
            }
        }
        self.cond.notify_all();
        if ok {
            Ok(())
        } else {
            Err(format!("Job for {name} failed.\nSee \"systemctl status {name}\" and \"journalctl -xeu {name}\" for details."))
        }
    }

    /// `systemctl kill`: signal the main process or every process of the unit.
    pub fn kill(&self, name: &str, sig: i32, all: bool) -> Result<(), String> {
        let name = unit::normalize(name);
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
            if name.is_none_or(|x| unit::normalize(x) == *n) {
                if s.state == State::Failed {
                    s.set(State::Inactive, "dead");
                    s.result = "success";
                }
                s.restarts.clear();
            }
        }
    }

    pub fn info(&self, name: &str) -> Info {
        let name = unit::normalize(name);
        let loaded = unit::load(&name, &self.hostname);
        let (load, desc, path, kind, restart) = match &loaded {
            Ok(u) => (
                "loaded",
                u.description.clone(),
                u.path.display().to_string(),
                format!("{:?}", u.svc.kind).to_lowercase(),
                u.svc.restart.as_str().to_string(),
            ),
            Err(LoadError::NotFound) => (
                "not-found",
                name.clone(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Err(LoadError::Masked(p)) => (
                "masked",
                name.clone(),
                p.display().to_string(),
                String::new(),
                String::new(),
            ),
            Err(LoadError::Bad(_)) => (
                "bad-setting",
                name.clone(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let inn = self.lock();
        let s = inn.svcs.get(&name);
        Info {
            name: name.clone(),
            load,
            description: desc,
            path,
            active: s.map_or("inactive", |s| s.state.as_str()),
            sub: s.map_or("dead", |s| s.sub),
            result: s.map_or("success", |s| s.result),
            main_pid: s.and_then(|s| s.main_pid).unwrap_or(0),
            main_status: s.and_then(|s| s.main_status),
            n_restarts: s.map_or(0, |s| s.n_restarts),
            status_text: s.map(|s| s.status_text.clone()).unwrap_or_default(),
            since: s.map_or(SystemTime::now(), |s| s.since),
            kind,
            restart,
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
        for n in crate::enable::boot_units() {
            if let Err(e) = self.start(&n, false) {
                eprintln!("boot: {e}");
            }
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
