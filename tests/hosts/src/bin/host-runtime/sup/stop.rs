//! Stopping services and what follows a main process's exit: ExecStop, KillMode and
//! TimeoutStopSec, ExecStopPost, Restart= with the start limit, and reload.

use super::*;

impl Sup {
    /// Sends the stop signal per KillMode, waits TimeoutStopSec, then SIGKILLs.
    pub(super) fn kill_members(&self, u: &Unit, main: Option<i32>) {
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
    pub(super) fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let inn = self.lock();
        let s = inn.svcs.get(name)?;
        Some((s.unit.clone()?, s.main_pid, s.env.clone()))
    }

    /// A start failed: clean up the service's processes, mark it failed, maybe restart.
    pub(super) fn fail(self: &Arc<Self>, name: &str, gen: u64, result: &'static str) {
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
        self.stop_post(&u, &env, wants_restart(u.svc.restart, result));
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

    /// ExecStopPost=, then the runtime directories go unless preserved (`will_restart`: an
    /// automatic restart follows).
    pub(super) fn stop_post(&self, u: &Unit, env: &[(String, String)], will_restart: bool) {
        for line in &u.svc.exec_stop_post {
            self.control(
                u,
                line,
                env,
                u.svc.permissions_start_only,
                u.svc.timeout_stop,
            );
        }
        launch::remove_runtime_dirs(u, will_restart);
    }

    /// The main process of an active service exited by itself.
    pub(super) fn after_main_exit(self: Arc<Self>, name: &str, gen: u64, st: i32) {
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

    pub(super) fn after_main_exit_result(
        self: &Arc<Self>,
        name: &str,
        gen: u64,
        result: &'static str,
    ) {
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
        self.stop_post(&u, &env, wants_restart(u.svc.restart, result));
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

    pub(super) fn maybe_restart(self: &Arc<Self>, name: &str, gen: u64, result: &'static str) {
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
            if svc.gen != gen || std::mem::take(&mut svc.forbid_restart) {
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
            if svc.start_limited(&u) {
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
        let name = unit::canonical(name);
        if name.ends_with(".timer") {
            return self.stop_timer(&name);
        }
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
                    svc.forbid_restart = true;
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

    pub(super) fn do_stop(
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
        self.stop_post(u, &env, false);
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
        let name = unit::canonical(name);
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
}
