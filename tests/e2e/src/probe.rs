//! Probes: `e2e-probe` started in the background inside a host, recording every attempt.

use crate::{read_in, Deployment};
use anyhow::{bail, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A running probe.
pub struct Probe<'d> {
    d: &'d Deployment,
    machine: String,
    log: String,
    stop: String,
}

impl<'d> Probe<'d> {
    fn start(
        d: &'d Deployment,
        machine: &str,
        name: &str,
        interval_ms: u64,
        args: &[&str],
    ) -> Result<Probe<'d>> {
        let log = format!("/var/log/e2e-{name}.jsonl");
        let stop = format!("/var/log/e2e-{name}.stop");
        let probe = d.env.probe.to_string_lossy().into_owned();
        let interval = interval_ms.to_string();
        // "$@" after the shifts: the probe's own arguments, however many.
        let mut argv = vec!["sh", "-c", "p=$0 out=$1 stop=$2 iv=$3; shift 3; rm -f \"$stop\"; \"$p\" --out \"$out\" --stop \"$stop\" --interval-ms \"$iv\" \"$@\" </dev/null >/dev/null 2>&1 &"];
        argv.extend([
            probe.as_str(),
            log.as_str(),
            stop.as_str(),
            interval.as_str(),
        ]);
        argv.extend_from_slice(args);
        d.exec(machine, &argv)?;
        Ok(Probe {
            d,
            machine: machine.to_string(),
            log,
            stop,
        })
    }

    /// Continuous writes of increasing integers through `dsn`, every `interval_ms`.
    pub fn writer(
        d: &'d Deployment,
        machine: &str,
        name: &str,
        dsn: &str,
        interval_ms: u64,
    ) -> Result<Probe<'d>> {
        Probe::start(d, machine, name, interval_ms, &["writer", "--dsn", dsn])
    }

    /// Continuous writes like [`Probe::writer`], into `table` (created if missing), so each
    /// drill checks its own rows. Runs up to `seconds` (the probe's own hard limit).
    pub fn writer_table(
        d: &'d Deployment,
        machine: &str,
        name: &str,
        dsn: &str,
        table: &str,
        interval_ms: u64,
    ) -> Result<Probe<'d>> {
        Probe::start(
            d,
            machine,
            name,
            interval_ms,
            &[
                "writer",
                "--dsn",
                dsn,
                "--table",
                table,
                "--seconds",
                "1800",
            ],
        )
    }

    /// Continuous GETs of `url`, every `interval_ms`.
    pub fn http(
        d: &'d Deployment,
        machine: &str,
        name: &str,
        url: &str,
        interval_ms: u64,
    ) -> Result<Probe<'d>> {
        Probe::start(
            d,
            machine,
            name,
            interval_ms,
            &["http", "--url", url, "--seconds", "1800"],
        )
    }

    /// Every attempt so far.
    pub fn records(&self) -> Result<Vec<Value>> {
        let text = read_in(self.d, &self.machine, &self.log).unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Waits until at least `n` more attempts succeeded after now.
    pub fn wait_successes(&self, n: usize, timeout: Duration) -> Result<()> {
        let base = self.records()?.iter().filter(|r| r["ok"] == true).count();
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.records()?.iter().filter(|r| r["ok"] == true).count();
            if ok >= base + n {
                return Ok(());
            }
            if Instant::now() > deadline {
                let last = self.records()?.last().cloned().unwrap_or_default();
                bail!("probe {}: {} new successes after {timeout:?} (wanted {n}); last attempt: {last}", self.log, ok - base);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the probe and returns every attempt it made.
    pub fn stop(self) -> Result<Vec<Value>> {
        self.d.exec(&self.machine, &["touch", &self.stop])?;
        // The probe checks the stop file before each attempt; one attempt may be in flight.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = self.records()?.len();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.records()?.len();
            if now == last || Instant::now() > deadline {
                return self.records();
            }
            last = now;
        }
    }
}

/// The integers whose INSERT was acknowledged.
pub fn acknowledged(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .filter(|r| r["ok"] == true)
        .filter_map(|r| r["n"].as_i64())
        .collect()
}

/// The longest run of failed attempts: (time from the first failure to the next success, how
/// many failed). `None` when nothing failed.
pub fn longest_outage(records: &[Value]) -> Option<(Duration, usize)> {
    let mut best: Option<(Duration, usize)> = None;
    let mut start: Option<(u64, usize)> = None;
    for r in records {
        let t = r["t_ms"].as_u64().unwrap_or(0);
        if r["ok"] == true {
            if let Some((s, n)) = start.take() {
                let d = Duration::from_millis(t.saturating_sub(s));
                if best.is_none_or(|(bd, _)| d > bd) {
                    best = Some((d, n));
                }
            }
        } else {
            start = Some(start.map_or((t, 1), |(s, n)| (s, n + 1)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_acks() {
        let r: Vec<Value> = [
            (1, true, 0),
            (2, false, 100),
            (3, false, 200),
            (4, true, 900),
            (5, false, 1000),
            (6, true, 1100),
        ]
        .iter()
        .map(|(n, ok, t)| serde_json::json!({"n": n, "ok": ok, "t_ms": t}))
        .collect();
        assert_eq!(acknowledged(&r), vec![1, 4, 6]);
        assert_eq!(longest_outage(&r), Some((Duration::from_millis(800), 2)));
        assert_eq!(longest_outage(&r[..1]), None);
    }
}
