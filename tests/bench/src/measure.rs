//! Runs one hook as a child process and measures it.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One run, or a summary of runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Fastest (or this run's) wall time.
    pub min_ms: f64,
    /// Median wall time.
    pub median_ms: f64,
    /// Highest peak resident set size.
    pub peak_rss_kib: i64,
}

impl Sample {
    /// Min, median and worst peak RSS over `runs`.
    pub fn summarize(runs: &[Sample]) -> Sample {
        let mut t: Vec<f64> = runs.iter().map(|s| s.min_ms).collect();
        t.sort_by(|a, b| a.total_cmp(b));
        Sample {
            min_ms: t[0],
            median_ms: t[t.len() / 2],
            peak_rss_kib: runs.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0),
        }
    }
}

/// Runs `dispatch` in `charm_dir` with exactly `env` (plus PATH = fake tools first), as Juju's
/// agent would, and returns its wall time and peak RSS. A failing hook is an error.
pub fn run_hook(
    charm_dir: &Path,
    env: &BTreeMap<String, String>,
    tools: &Path,
    out: &Path,
) -> Result<Sample> {
    let start = Instant::now();
    let child = Command::new(charm_dir.join("dispatch"))
        .current_dir(charm_dir)
        .env_clear()
        .envs(env)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", tools.display()),
        )
        .env("BENCH_OUT", out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}/dispatch", charm_dir.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    anyhow::ensure!(
        rc == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let exit = std::process::ExitStatus::from_raw(status);
    if !exit.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        anyhow::bail!(
            "{} {} failed ({exit}): {err}",
            charm_dir.display(),
            env["JUJU_DISPATCH_PATH"]
        );
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    Ok(Sample {
        min_ms: ms,
        median_ms: ms,
        peak_rss_kib: usage.ru_maxrss,
    })
}
