//! The VIP part of `make bench`: keepalived-vip's failover times in the local model. Deploys
//! the drill model of `tests/vip_drills.rs` (3 lm-test units + keepalived-vip, on
//! 10.77.41.0/24), injects each fault into the VIP's holder `--runs` times (default 5) at
//! advert-int 1 (VRRP v2), 0.1 and 0.25 (VRRP v3), and prints a Markdown table of the times from the
//! fault to another host holding the VIP, which it also appends to the report (`--out`, default
//! `build/bench/report.md`). Per setting, the holder's keepalived is also frozen for 0.4 s
//! five times, counting takeovers; and the hosts are made busy (`--busy-runs`, default
//! 2): busy loops on every host, with one reload of every keepalived in the middle, counting
//! the VRRP takeovers no fault asked for, and the holder's host stopped while they run.
//!
//! Needs root, `target/debug/lm` and `host-runtime` beside this binary, and
//! `build/keepalived-vip.charm`.

#[path = "../../tests/vip/mod.rs"]
mod vip;

use anyhow::{bail, Context, Result};
use e2e::{Env, FaultOp};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vip::{Advert, Fault, Poller, VipDrill};

/// The bench's subnet (the drills test uses 40).
const NET: u8 = 41;

/// keepalived-vip's default (v2, 1 s), the bundle's db-vip (v3, 0.1 s) and region-vip (v3,
/// 0.25 s).
const SETTINGS: [Advert; 3] = [Advert::ONE, Advert::TENTH, Advert::QUARTER];

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

/// The busy hosts: this many busy loops on every drill host (the machine has 2 cores, so each
/// host alone could fill it), for this long, at each of these nice values: 0, the priority of a
/// host's ordinary work (MAAS, PostgreSQL), and -20, the most any work can have short of
/// realtime, as much as keepalived-vip gives keepalived's VRRP process (`vrrp_priority -20`).
const HOGS: usize = 6;
const HOG_NICE: [i32; 2] = [0, -20];
const BUSY: Duration = Duration::from_secs(20);

/// Starts the busy loops on every host of the drill; `timeout` inside the host ends each one
/// after `secs`, so none outlives the bench even when it stops early.
fn start_hogs(drill: &VipDrill, secs: u64, nice: i32) -> Result<()> {
    let script = format!(
        "for i in $(seq {HOGS}); do setsid timeout {secs} nice -n {nice} sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & done"
    );
    for m in &drill.machines {
        let (code, _, err) = drill.d.lm.exec(m, &["sh", "-c", &script])?;
        if code != 0 {
            bail!("starting busy loops on machine {m}: {err}");
        }
    }
    Ok(())
}

/// How many times keepalived entered MASTER on the drill hosts so far, from their logs.
fn masters(drill: &VipDrill) -> Result<usize> {
    let mut n = 0;
    for m in &drill.machines {
        let log = e2e::read_in(
            &drill.d,
            m,
            &format!("/var/log/local-model/keepalived-{}.service.log", vip::APP),
        )?;
        n += log.matches("Entering MASTER STATE").count();
    }
    Ok(n)
}

/// How often the set of holders changed over the poller's rounds since `mark`.
fn holder_changes(poller: &Poller, mark: usize) -> usize {
    poller
        .since(mark)
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .count()
}

/// What the busy hosts did at one setting.
struct Busy {
    /// VRRP takeovers (MASTER entered) while no fault was injected.
    takeovers: usize,
    /// Changes of the holders seen by the poller meanwhile.
    changes: usize,
}

/// [`BUSY`] of busy loops on every host with no fault; halfway, every keepalived is reloaded
/// (`systemctl reload`, as the charm does when a peer comes or goes).
fn busy_window(drill: &VipDrill, poller: &Poller, nice: i32) -> Result<Busy> {
    drill.wait_vrrp_settled(Duration::from_secs(60))?;
    let (before, mark) = (masters(drill)?, poller.mark());
    let t0 = Instant::now();
    start_hogs(drill, BUSY.as_secs(), nice)?;
    // The window is the load's length: nothing is waited for here.
    std::thread::sleep(BUSY / 2);
    for m in &drill.machines {
        drill.d.exec(
            m,
            &["systemctl", "reload", &format!("keepalived-{}", vip::APP)],
        )?;
    }
    if let Some(rest) = BUSY.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    let busy = Busy {
        takeovers: masters(drill)? - before,
        changes: holder_changes(poller, mark),
    };
    // Back to one master before the next measurement.
    drill.wait_vrrp_settled(Duration::from_secs(60))?;
    Ok(busy)
}

/// How long the holder's keepalived is frozen, and how many times, per setting: a host held up
/// for 0.4 s (a busy host, a VM paused) should not lose the VIP, since every region passes
/// region-vip's check and the holder would take it back at once (a flap).
const FREEZE: Duration = Duration::from_millis(400);
const FREEZES: usize = 5;

/// Freezes every keepalived process of the holder (SIGSTOP) for [`FREEZE`], [`FREEZES`] times;
/// returns how many times another unit took over meanwhile.
fn freezes(drill: &VipDrill) -> Result<usize> {
    drill.wait_vrrp_settled(Duration::from_secs(60))?;
    let before = masters(drill)?;
    for _ in 0..FREEZES {
        let holder = drill.one_holder(Duration::from_secs(30))?;
        let pids: Vec<u32> = serde_json::from_value(drill.d.fault(
            &holder,
            FaultOp::Pids {
                comm: "keepalived".into(),
            },
        )?)?;
        let mut frozen = Vec::new();
        let mut res = Ok(());
        for p in &pids {
            match drill.d.fault(&holder, FaultOp::Freeze { pid: *p }) {
                Ok(_) => frozen.push(*p),
                Err(e) => res = Err(e),
            }
        }
        // The length of the fault, not a wait for a result.
        if res.is_ok() {
            std::thread::sleep(FREEZE);
        }
        for p in &frozen {
            let _ = drill.d.fault(&holder, FaultOp::Thaw { pid: *p });
        }
        res?;
        // A takeover shows within a master-down interval of the thaw; settle before the next.
        std::thread::sleep(Duration::from_secs(1));
        drill.wait_vrrp_settled(Duration::from_secs(60))?;
    }
    Ok(masters(drill)? - before)
}

fn run(env: &Env, runs: usize, busy_runs: usize, md: &mut String) -> Result<()> {
    let started = Instant::now();
    let drill = VipDrill::deploy(env, "bench-vip", NET).context("deploying the drill model")?;
    let poller = Poller::start(&drill);
    let mut rows = Vec::new();
    let mut busy_rows = Vec::new();
    let mut freeze_rows = Vec::new();
    for a in SETTINGS {
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
        let frozen = freezes(&drill)?;
        eprintln!(
            "advert-int {} s: holder frozen {} ms {FREEZES} times: {frozen} takeovers",
            a.secs,
            FREEZE.as_millis()
        );
        freeze_rows.push(vec![
            format!("{} (v{})", a.secs, a.version),
            format!("{frozen} of {FREEZES}"),
        ]);
        let (mut takeovers, mut down) = (vec![Vec::new(); HOG_NICE.len()], Vec::new());
        for i in 0..busy_runs {
            for (k, nice) in HOG_NICE.into_iter().enumerate() {
                let b = busy_window(&drill, &poller, nice)?;
                eprintln!(
                    "busy run {}/{busy_runs} at advert-int {} s, busy loops at nice {nice}: {} takeovers and {} holder changes with no fault",
                    i + 1,
                    a.secs,
                    b.takeovers,
                    b.changes,
                );
                takeovers[k].push(format!("{} ({})", b.takeovers, b.changes));
            }
            // The holder's host stopped while every host is busy at the highest nice.
            start_hogs(&drill, BUSY.as_secs(), HOG_NICE[HOG_NICE.len() - 1])?;
            let f = drill.failover(
                Fault::HostDown,
                &poller,
                limit(Fault::HostDown, a) + Duration::from_secs(10),
            )?;
            eprintln!(
                "busy run {}/{busy_runs} at advert-int {} s: host down under load: {} ms",
                i + 1,
                a.secs,
                ms(f.took)
            );
            down.push(f.took);
        }
        if busy_runs > 0 {
            down.sort();
            let max = *down.last().expect("busy_runs >= 1");
            let mut row = vec![format!("{} (v{})", a.secs, a.version)];
            row.extend(takeovers.iter().map(|t| t.join(", ")));
            row.extend([
                format!("{} / {} / {}", ms(down[0]), ms(median(&down)), ms(max)),
                format!(
                    "{} ({})",
                    ms(Duration::from_secs(1)),
                    if max <= Duration::from_secs(1) {
                        "met"
                    } else {
                        "NOT met"
                    }
                ),
            ]);
            busy_rows.push(row);
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
    let _ = writeln!(
        md,
        "\nThe holder's keepalived frozen (SIGSTOP, then SIGCONT) for {} ms, {FREEZES} times: \
         takeovers by another unit (each one a flap where every unit passes the check, as for \
         region-vip).\n",
        FREEZE.as_millis()
    );
    md.push_str(&table(&["advert-int s", "takeovers"], &freeze_rows));
    if !busy_rows.is_empty() {
        let _ = writeln!(
            md,
            "\nBusy hosts: {HOGS} busy loops on every host for {} s, every keepalived reloaded \
             halfway (as the charm does when a peer comes or goes). A takeover with no fault is \
             a VRRP transition to MASTER nothing asked for, per run, with the changes of holders \
             the poller saw in brackets (a VIP lost and taken back is two). Then the holder's \
             host stopped with the busy loops at nice {} (target: 1 s).\n",
            BUSY.as_secs(),
            HOG_NICE[HOG_NICE.len() - 1]
        );
        md.push_str(&table(
            &[
                "advert-int s",
                "takeovers, loops at nice 0",
                "takeovers, loops at nice -20",
                "host down under load min / median / max ms",
                "limit ms",
            ],
            &busy_rows,
        ));
    }
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
    let busy_runs: usize = match value("--busy-runs") {
        Some(r) => r
            .parse()
            .ok()
            .context("--busy-runs takes an integer (0: none)")?,
        None => 2,
    };
    let env = env()?;
    let out = value("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.build.join("bench/report.md"));
    let mut md = String::from(
        "\n## VIP failover (keepalived-vip in the local model)\n\n\
         3 principal units with keepalived-vip (unicast, `nopreempt`, check `process:python3` every 1 s, keepalived's VRRP process at nice -20). \
         Faults on the VIP's holder: its host stopped (every process killed, link down), its \
         principal's service stopped (the check fails), its keepalived sent SIGTERM (as \
         `systemctl stop`: a priority-0 advert).\n\n",
    );
    let result = run(&env, runs, busy_runs, &mut md);
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
