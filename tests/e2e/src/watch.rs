//! Progress while a model settles: a line per unit status change (not a spinner), for the
//! demo and the bench, and the hook counts the local model keeps per unit.

use crate::{units_of, Deployment};
use anyhow::{bail, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Remembers each unit's last (workload status, message) and reports what changed.
#[derive(Debug, Default)]
pub struct Changes {
    last: BTreeMap<String, (String, String)>,
}

impl Changes {
    /// The lines for what changed since the previous call: `unit  status  message`, and
    /// `unit  removed` for units that are gone.
    pub fn lines(&mut self, st: &Value) -> Vec<String> {
        let now: BTreeMap<String, (String, String)> = units_of(st)
            .into_iter()
            .map(|(n, s, m)| (n, (s, m)))
            .collect();
        let width = now.keys().map(String::len).max().unwrap_or(0);
        let mut out = Vec::new();
        for (name, (s, m)) in &now {
            if self.last.get(name) != Some(&(s.clone(), m.clone())) {
                out.push(format!("{name:width$}  {s:11}  {m}"));
            }
        }
        for name in self.last.keys().filter(|n| !now.contains_key(*n)) {
            out.push(format!("{name:width$}  removed"));
        }
        self.last = now;
        out
    }
}

/// Waits until the model is settled with every unit Active, calling `print` with a line per
/// change (prefixed with the seconds since the call). Returns how long it took; the error
/// names the units that are not Active, or, as soon as a hook keeps failing the same way
/// (`LocalModel::stuck`), the unit, hook, error and the last lines of its output.
pub fn settle(d: &Deployment, timeout: Duration, mut print: impl FnMut(&str)) -> Result<Duration> {
    let start = Instant::now();
    let since = local_model::state::now_ms();
    let mut changes = Changes::default();
    loop {
        let st = d.status()?;
        for l in changes.lines(&st) {
            print(&format!("[{:>4}s] {l}", start.elapsed().as_secs()));
        }
        let units = units_of(&st);
        let all_active = !units.is_empty() && units.iter().all(|(_, s, _)| s == "active");
        if all_active && d.lm.unsettled()?.is_empty() {
            return Ok(start.elapsed());
        }
        if let Some(why) = d.lm.stuck(since)? {
            bail!("units in error, waiting cannot settle the model:\n{why}");
        }
        if start.elapsed() > timeout {
            let rest: Vec<String> = units
                .iter()
                .filter(|(_, s, _)| s != "active")
                .map(|(n, s, m)| format!("{n} {s}: {m}"))
                .collect();
            bail!(
                "not every unit active after {timeout:?}:\n  {}\nunsettled: {:?}",
                rest.join("\n  "),
                d.lm.unsettled()?
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The hook runs that exited non-zero after `after_ms` (ms since the epoch), oldest first.
pub fn failed_hooks(d: &Deployment, after_ms: u64) -> Result<Vec<local_model::state::HookFailure>> {
    Ok(d.lm
        .failures()?
        .failed
        .into_iter()
        .filter(|f| f.at_ms > after_ms)
        .collect())
}

/// Prints what [`failed_hooks`] found: a line saying none did, or one line per run.
pub fn report_failed_hooks(
    d: &Deployment,
    after_ms: u64,
    mut print: impl FnMut(&str),
) -> Result<()> {
    let failed = failed_hooks(d, after_ms)?;
    if failed.is_empty() {
        print("   no hook exited non-zero");
    } else {
        print(&format!(
            "   {} hook run(s) exited non-zero on the way (retries fixed them; `lm logs <unit>` shows why):\n{}",
            failed.len(),
            crate::failure_lines(&failed)
        ));
    }
    Ok(())
}

/// Hooks run so far per application (subordinates under their own application), from the
/// local model's status (`hooks-run` of each unit, failed runs included).
pub fn hooks_by_app(st: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for app in st["applications"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, a)| a)
    {
        for (name, u) in app["units"].as_object().into_iter().flatten() {
            *out.entry(app_of(name)).or_default() += u["hooks-run"].as_u64().unwrap_or(0);
            for (sub, s) in u["subordinates"].as_object().into_iter().flatten() {
                *out.entry(app_of(sub)).or_default() += s["hooks-run"].as_u64().unwrap_or(0);
            }
        }
    }
    out
}

/// Every hook run in the model so far.
pub fn hooks_total(st: &Value) -> u64 {
    hooks_by_app(st).values().sum()
}

fn app_of(unit: &str) -> String {
    unit.split('/').next().unwrap_or(unit).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(region0: &str, with_sub: bool) -> Value {
        let mut u =
            json!({"workload-status": {"current": region0, "message": "m"}, "hooks-run": 3});
        if with_sub {
            u["subordinates"] = json!({"region-vip/0": {"workload-status": {"current": "active", "message": "VIP"}, "hooks-run": 2}});
        }
        json!({"applications": {"maas-region": {"units": {"maas-region/0": u}}, "region-vip": {"subordinate-to": ["maas-region"]}}})
    }

    #[test]
    fn a_line_per_change_only() {
        let mut c = Changes::default();
        assert_eq!(c.lines(&st("waiting", true)).len(), 2);
        assert!(
            c.lines(&st("waiting", true)).is_empty(),
            "nothing changed, nothing printed"
        );
        let l = c.lines(&st("active", true));
        assert_eq!(l.len(), 1);
        assert!(
            l[0].starts_with("maas-region/0") && l[0].contains("active"),
            "{l:?}"
        );
        let l = c.lines(&st("active", false));
        assert_eq!(l.len(), 1);
        assert!(
            l[0].starts_with("region-vip/0 ") && l[0].ends_with("removed"),
            "{l:?}"
        );
    }

    #[test]
    fn hooks_are_counted_per_application_with_subordinates() {
        let h = hooks_by_app(&st("active", true));
        assert_eq!(h.get("maas-region"), Some(&3));
        assert_eq!(h.get("region-vip"), Some(&2));
        assert_eq!(hooks_total(&st("active", true)), 5);
    }
}
