//! Timers (systemd.timer(5), realtime `OnCalendar=` only): a started timer is active
//! (`waiting`) and starts its unit at each elapse, the earliest of its calendar events after
//! now (timer.c timer_enter_waiting / timer_enter_running). Starting an already active unit
//! is a no-op, so a run still going when the next elapse comes is not started twice (systemd
//! queues a start job for it, which finds it active). Stopping the timer stops nothing it
//! started.

use super::*;

fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Sup {
    pub(super) fn start_timer(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let u = self.definition(name, false).map_err(|e| match e {
            LoadError::NotFound => format!("Failed to start {name}: Unit {name} not found."),
            LoadError::Masked(_) => format!("Failed to start {name}: Unit {name} is masked."),
            LoadError::Bad(b) => {
                format!("Failed to start {name}: Unit {name} has a bad unit file setting: {b}")
            }
        })?;
        let Some(t) = u.timer.clone() else {
            return Err(format!("Failed to start {name}: not a timer"));
        };
        // timer.c timer_start: "Refusing to start, unit %s to trigger not loaded."
        if let Err(e) = unit::load(&t.unit, &self.hostname) {
            self.log(
                name,
                &format!("Refusing to start, unit {} to trigger not loaded.", t.unit),
            );
            return Err(format!(
                "Failed to start {name}: unit {} to trigger cannot be loaded: {e}",
                t.unit
            ));
        }
        let gen = {
            let mut inn = self.lock();
            let svc = inn.svcs.entry(name.to_string()).or_insert_with(Svc::new);
            if svc.state == State::Active {
                return Ok(());
            }
            svc.gen += 1;
            svc.unit = Some(u.clone());
            svc.set(State::Active, "waiting");
            svc.result = "success";
            svc.gen
        };
        self.cond.notify_all();
        let (me, n) = (self.clone(), name.to_string());
        thread::spawn(move || me.run_timer(&n, gen, &t));
        Ok(())
    }

    fn run_timer(self: Arc<Self>, name: &str, gen: u64, t: &unit::Timer) {
        let mut after = epoch_now();
        loop {
            let Some(next) = t
                .on_calendar
                .iter()
                .filter_map(|c| c.next_after(after))
                .min()
            else {
                // No elapse left: the timer stays active as `elapsed` (RemainAfterElapse=yes).
                if let Some(s) = self.lock().svcs.get_mut(name).filter(|s| s.gen == gen) {
                    s.set(State::Active, "elapsed");
                    s.next_elapse = None;
                }
                return;
            };
            if let Some(s) = self.lock().svcs.get_mut(name).filter(|s| s.gen == gen) {
                s.next_elapse = Some(next);
            }
            loop {
                if !self.current(name, gen) {
                    return;
                }
                let left = SystemTime::UNIX_EPOCH + Duration::from_secs(next.max(0) as u64);
                match left.duration_since(SystemTime::now()) {
                    Ok(d) if !d.is_zero() => thread::sleep(d.min(Duration::from_millis(200))),
                    _ => break,
                }
            }
            {
                let mut inn = self.lock();
                match inn.svcs.get_mut(name) {
                    Some(s) if s.gen == gen => s.last_trigger = Some(next),
                    _ => return,
                }
            }
            self.log(name, &format!("Triggering {}.", t.unit));
            if let Err(e) = self.start(&t.unit, false) {
                self.log(name, &format!("Failed to queue unit startup job: {e}"));
            }
            after = next.max(epoch_now());
        }
    }

    pub(super) fn stop_timer(&self, name: &str) -> Result<(), String> {
        let mut inn = self.lock();
        let Some(svc) = inn.svcs.get_mut(name) else {
            return match unit::find(name) {
                Ok(_) | Err(LoadError::Masked(_)) => Ok(()),
                Err(_) => Err(format!("Failed to stop {name}: Unit {name} not loaded.")),
            };
        };
        if svc.state != State::Inactive {
            svc.gen += 1;
            svc.set(State::Inactive, "dead");
            svc.next_elapse = None;
        }
        drop(inn);
        self.cond.notify_all();
        Ok(())
    }
}
