//! Starting services: conditions, ExecStartPre, the main process by Type (simple/exec,
//! notify with its sd_notify socket, forking with its PIDFile, oneshot), ExecStartPost.

use super::*;

impl Sup {
    /// Starts a unit; with `wait`, returns once it is active (or failed).
    pub fn start(self: &Arc<Self>, name: &str, wait: bool) -> Result<(), String> {
        self.start_with(name, wait, false)
    }

    /// [`Sup::start`]; `keep`: use the loaded definition even if the unit is inactive (the
    /// start half of a restart, during which systemd keeps the unit loaded).
    pub fn start_with(self: &Arc<Self>, name: &str, wait: bool, keep: bool) -> Result<(), String> {
        let name = unit::canonical(name);
        if name.ends_with(".timer") {
            return self.start_timer(&name);
        }
        if !name.ends_with(".service") {
            return Ok(());
        }
        let u = self.definition(&name, keep).map_err(|e| match e {
            LoadError::NotFound => format!("Failed to start {name}: Unit {name} not found."),
            LoadError::Masked(_) => format!("Failed to start {name}: Unit {name} is masked."),
            LoadError::Bad(b) => {
                format!("Failed to start {name}: Unit {name} has a bad unit file setting: {b}")
            }
        })?;
        self.pull_dependencies(&name, &u)?;
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
            if svc.start_limited(&u) {
                svc.set(State::Failed, "failed");
                svc.result = "start-limit-hit";
                return Err(format!(
                    "Job for {name} failed because start of the service was attempted too often.\nSee \"systemctl status {name}\" and \"journalctl -xeu {name}\" for details.\nTo force a start use \"systemctl reset-failed {name}\"\nfollowed by \"systemctl start {name}\" again."
                ));
            }
            svc.gen += 1;
            svc.forbid_restart = false;
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

    /// Starts what the unit Wants=/Requires= (services only; targets have nothing to run),
    /// waiting for those it is also ordered After=. A required one that fails fails this start.
    fn pull_dependencies(self: &Arc<Self>, name: &str, u: &Unit) -> Result<(), String> {
        // Dependency cycles: a unit already being pulled in this chain is not pulled again.
        thread_local! {
            static PULLING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        PULLING.with(|p| p.borrow_mut().push(name.to_string()));
        let r = self.pull_each(name, u, &|d| {
            PULLING.with(|p| p.borrow().iter().any(|x| x == d))
        });
        PULLING.with(|p| p.borrow_mut().pop());
        r
    }

    fn pull_each(
        self: &Arc<Self>,
        name: &str,
        u: &Unit,
        pulling: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        for (dep, required) in &u.pulls {
            let dep = unit::canonical(dep);
            if pulling(&dep) || !dep.ends_with(".service") {
                continue;
            }
            let ordered = u.after.iter().any(|a| unit::canonical(a) == dep);
            let r = self.start(&dep, ordered);
            if *required && (r.is_err() || (ordered && self.info(&dep).active == "failed")) {
                return Err(format!(
                    "A dependency job for {name} failed. See 'journalctl -xe' for details."
                ));
            }
        }
        Ok(())
    }

    pub(super) fn wait_job(&self, name: &str, gen: u64) -> Result<(), String> {
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

    pub(super) fn finish_job(&self, name: &str, gen: u64, st: State, sub: &'static str) {
        let mut inn = self.lock();
        if let Some(svc) = inn.svcs.get_mut(name) {
            if svc.gen == gen {
                svc.set(st, sub);
                svc.job = Some((gen, true));
            }
        }
        self.cond.notify_all();
    }

    pub(super) fn run_start(self: Arc<Self>, name: &str, gen: u64, u: Arc<Unit>) {
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
        let Some(line) = s.exec_start.first() else {
            return self.fail(name, gen, "resources");
        };
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
                let Some(rx) = rx else {
                    return self.fail(name, gen, "resources");
                };
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

    pub(super) fn post_start(
        &self,
        u: &Unit,
        name: &str,
        gen: u64,
        env: &[(String, String)],
    ) -> bool {
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
    pub(super) fn forked_main(&self, u: &Unit) -> Option<i32> {
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

    pub(super) fn notify_socket(
        &self,
        name: &str,
    ) -> Result<std::os::unix::net::UnixDatagram, String> {
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
    pub(super) fn notify_reader(
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
}
