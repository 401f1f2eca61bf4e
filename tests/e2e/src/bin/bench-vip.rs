//! The VIP part of `make bench`: keepalived-vip's failover times in the local model. Deploys
//! the drill model of `tests/vip_drills.rs` (3 lm-test units + keepalived-vip, on
//! 10.77.41.0/24), injects each fault into the VIP's holder `--runs` times (default 5) at
//! advert-int 1 (VRRP v2) and 0.1 (VRRP v3), and prints a Markdown table of the times from the
//! fault to another host holding the VIP, which it also appends to the report (`--out`, default
//! `build/bench/report.md`).
//!
//! Needs root, `target/debug/lm` and `host-runtime` beside this binary, and
//! `build/keepalived-vip.charm`.

#[path = "../../tests/vip/mod.rs"]
mod vip;

use anyhow::{bail, Context, Result};
use e2e::Env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vip::{Advert, Fault, Poller, VipDrill};

/// The bench's subnet (the drills test uses 40).
const NET: u8 = 41;

/// What the bench needs, without the inputs of the other end-to-end tests it does not use.
fn env() -> Result<Env> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        bail!("not root: the local model's namespaced hosts need root");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("no directory for this binary")?;
    let env = Env {
        lm: bin_dir.join("lm"),
        probe: bin_dir.join("e2e-probe"),
        build: repo.join("build"),
        repo,
    };
    for (p, how) in [
        (env.lm.clone(), "cargo build -p local-model"),
        (bin_dir.join("host-runtime"), "cargo build -p hosts"),
        (env.build.join("keepalived-vip.charm"), "make charms"),
    ] {
        if !p.is_file() {
            bail!("{} is missing: run `{how}`", p.display());
        }
    }
    Ok(env)
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The median of sorted durations.
fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// An aligned Markdown table.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut s = line(header.iter().map(|h| h.to_string()).collect());
    s.push_str(&format!(
        "|{}|\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    ));
    for r in rows {
        s.push_str(&line(r.clone()));
    }
    s
}

/// The limit each fault is held to (the for a vanished holder; a failed check first
/// waits for the next check run, once a second).
fn limit(fault: Fault, a: Advert) -> Duration {
    match fault {
        Fault::CheckFailed => a.host_down_limit() + Duration::from_secs(1),
        Fault::HostDown | Fault::CleanStop => a.host_down_limit(),
    }
}

fn run(env: &Env, runs: usize, md: &mut String) -> Result<()> {
    let started = Instant::now();
    let drill = VipDrill::deploy(env, "bench-vip", NET).context("deploying the drill model")?;
    let poller = Poller::start(&drill);
    let mut rows = Vec::new();
    for a in [Advert::ONE, Advert::TENTH] {
        drill.set_advert(a)?;
        let mut times: Vec<(Fault, Duration)> = Vec::new();
        for i in 0..runs {
            for fault in Fault::ALL {
                let f =
                    drill.failover(fault, &poller, limit(fault, a) + Duration::from_secs(10))?;
                eprintln!(
                    "run {}/{runs}: {} at advert-int {} s: {} ms (machine {} -> {}; the fault's request returned after {} ms)",
                    i + 1,
                    fault.label(),
                    a.secs,
                    ms(f.took),
                    f.from,
                    f.to,
                    ms(f.request)
                );
                times.push((fault, f.took));
            }
        }
        for fault in Fault::ALL {
            let mut t: Vec<Duration> = times
                .iter()
                .filter(|(f, _)| *f == fault)
                .map(|(_, d)| *d)
                .collect();
            t.sort();
            let max = *t.last().expect("runs >= 1");
            rows.push(vec![
                fault.label().to_string(),
                format!("{} (v{})", a.secs, a.version),
                ms(t[0]),
                ms(median(&t)),
                ms(max),
                t.len().to_string(),
                format!(
                    "{} ({})",
                    ms(limit(fault, a)),
                    if max <= limit(fault, a) {
                        "met"
                    } else {
                        "NOT met"
                    }
                ),
            ]);
        }
    }
    let (samples, worst) = poller.finish();
    md.push_str(&table(
        &[
            "fault",
            "advert-int s",
            "min ms",
            "median ms",
            "max ms",
            "runs",
            "limit ms",
        ],
        &rows,
    ));
    let _ = writeln!(
        md,
        "\nFrom the fault's request to another host's kernel having the VIP as a local address \
         (read from /proc every 2 ms). Longest time two hosts held the VIP at once, polling every \
         host all along ({} rounds): {} ms (limit 1000). {:.0} s in all.",
        samples.len(),
        ms(worst),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = match value("--runs") {
        Some(r) => r
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .context("--runs takes a positive integer")?,
        None => 5,
    };
    let env = env()?;
    let out = value("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.build.join("bench/report.md"));
    let mut md = String::from(
        "\n## VIP failover (keepalived-vip in the local model)\n\n\
         3 principal units with keepalived-vip (unicast, `nopreempt`, check `process:python3` every 1 s). \
         Faults on the VIP's holder: its host stopped (every process killed, link down), its \
         principal's service stopped (the check fails), its keepalived sent SIGTERM (as \
         `systemctl stop`: a priority-0 advert).\n\n",
    );
    let result = run(&env, runs, &mut md);
    if let Err(e) = &result {
        let _ = writeln!(md, "\n**The run stopped early**: {e:#}");
    }
    print!("{md}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut report = std::fs::read_to_string(&out).unwrap_or_default();
    report.push_str(&md);
    std::fs::write(&out, report)?;
    println!("(appended to {})", out.display());
    result
}
