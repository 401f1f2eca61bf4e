//! The whole-system part of `make bench`: deploys the bundle (with the drills' db-client) in the
//! local model on 10.77.31.0/24 and measures deploy-to-settled time and hooks run, each drill's
//! time to recovery and failed requests and writes, the wall time of maas-region's busiest
//! hooks, and add-unit of a region at 2 → 3 → 4 → 5 regions. Prints Markdown with the targets
//! beside the numbers and appends it to the report (`--out`, default build/bench/report.md).

use anyhow::{Context, Result};
use e2e::drills::{self, Ledger, Report};
use e2e::failover_watch::{self, Windows};
use e2e::{ha, watch, Deployment, Env};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The bench's subnet (the drills test uses 30).
const NET: u8 = 31;
const SETTLE: Duration = Duration::from_secs(900);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let env = Env::get().map_err(|e| anyhow::anyhow!(e))?;
    let out = out.unwrap_or_else(|| env.build.join("bench/report.md"));
    let mut md = String::from("\n## The bundle in the local model\n\n");
    let result = run(&env, &mut md);
    if let Err(e) = &result {
        let _ = writeln!(md, "\n**The run stopped early**: {e:#}\n");
    }
    print!("{md}");
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p)?;
    }
    let report = replace_section(&std::fs::read_to_string(&out).unwrap_or_default(), &md);
    std::fs::write(&out, report)?;
    println!("(appended to {})", out.display());
    result
}

/// The report with this bench's section (`md`, which starts with its `## ` title) in place of
/// an earlier run's, or appended: running the bench twice leaves one section.
fn replace_section(report: &str, md: &str) -> String {
    let title = md.trim_start().lines().next().unwrap_or_default();
    match report.find(title) {
        Some(start) => {
            let after = start + title.len();
            let end = report[after..]
                .find("\n## ")
                .map_or(report.len(), |i| after + i);
            format!("{}{}{}", &report[..start], md.trim_start(), &report[end..])
        }
        None => format!("{report}{md}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn run(env: &Env, md: &mut String) -> Result<()> {
    let client = ha::client_overlay(env, &env.build.join("e2e/bench-bundle-charms"))?;
    let mut overlays = vec![client];
    overlays.extend(e2e::extra_overlays());
    // update-status every minute, as `juju model-config update-status-hook-interval=1m`: the
    // drills' healing times would otherwise be Juju's default 5 min wherever a status is only
    // refreshed by update-status.
    let d = Deployment::bundle_with(
        env,
        "bench-bundle",
        NET,
        &overlays,
        &[("LM_UPDATE_STATUS_MS", "60000")],
    )?;
    let settled =
        watch::settle(&d, SETTLE, |l| eprintln!("{l}")).context("deploying the bundle")?;
    let st = d.status()?;
    let hooks = watch::hooks_by_app(&st);
    let units = e2e::units_of(&st).len();
    let _ = writeln!(
        md,
        "update-status every 60 s (`update-status-hook-interval=1m`).\n"
    );
    let _ = writeln!(md, "Deploy (bundles/maas-ha.yaml + the drills' db-client on the rack machines, {units} units with subordinates) to every unit Active and nothing queued, from the packed charms:\n");
    let _ = writeln!(md, "| deploy to settled (s) | hooks run | target (< 180 s) |\n|---|---|---|\n| {} | {} | {} |\n", secs(settled), hooks.values().sum::<u64>(), met(settled < Duration::from_secs(180)));
    let _ = writeln!(md, "| application | hooks run |\n|---|---|");
    for (app, n) in &hooks {
        let _ = writeln!(md, "| {app} | {n} |");
    }
    md.push('\n');

    drill_table(&d, md);
    busiest_hooks(&d, md)?;
    scale_table(&d, md)?;
    Ok(())
}

/// One drill, as the table runs it.
type Drill = dyn Fn(&Deployment, &mut Ledger) -> Result<Report>;

/// Each drill in sequence; the table says what it measured, or where it stopped.
fn drill_table(d: &Deployment, md: &mut String) {
    let mut ledger = Ledger::default();
    let mut rows: Vec<Report> = Vec::new();
    let mut exposed: Vec<Windows> = Vec::new();
    let mut stopped = None;
    let db_machines = d.machines_of("postgresql-ha").unwrap_or_default();
    let steps: [(&str, &Drill); 6] = [
        ("database primary killed", &drills::primary_killed),
        ("database primary's host down", &drills::primary_host_down),
        ("region VIP holder's host down", &drills::region_holder_down),
        ("region removed", &|d, l| {
            drills::region_removed(d, l).map(|(r, _)| r)
        }),
        ("region added", &|d, l| drills::region_added(d, l, "2")),
        (
            "whole deployment stopped and started",
            &drills::whole_deployment_restarted,
        ),
    ];
    for (name, step) in steps {
        eprintln!("== drill: {name}");
        // Beside each drill, how long a primary ran that nobody could have replaced.
        let stop = AtomicBool::new(false);
        let (result, windows) = std::thread::scope(|s| {
            let w = s.spawn(|| failover_watch::watch(d, &db_machines, &stop));
            let result = step(d, &mut ledger);
            stop.store(true, Ordering::Relaxed);
            (result, w.join().unwrap_or_default())
        });
        match result {
            Ok(r) => {
                rows.push(r);
                exposed.push(windows);
            }
            Err(e) => {
                stopped = Some(format!("{name}: {e:#}"));
                break;
            }
        }
    }
    let _ = writeln!(md, "Drills, in sequence on that deployment, under writes through the DB VIP and requests through the region VIP every 100 ms from the rack machines. Outage: from the first failed attempt to the next success (a request succeeds on HTTP 2xx; regions answer 503 while their database fails over). Healthy: from the fault to every unit Active, one primary with every other member streaming from it (one synchronously), one holder per VIP and every acknowledged write on every member.\n");
    let _ = writeln!(md, "| drill | healthy after (s) | requests failed | longest request outage (s) | longest time nothing answered (s) | writes failed | longest write outage (s) | acknowledged writes lost | no automatic failover possible, total / longest (s) | target |\n|---|---|---|---|---|---|---|---|---|---|");
    for (r, w) in rows.iter().zip(&exposed) {
        let window = if w.total.is_zero() {
            "0 (target 0: met)".to_string()
        } else {
            format!(
                "{} / {} (target 0: NOT met; {})",
                secs(w.total),
                secs(w.longest),
                w.why.as_deref().unwrap_or("")
            )
        };
        let (rf, ro, va, wf, wo) = match &r.seen {
            Some(s) => (
                format!("{}/{}", s.failed_requests, s.requests),
                s.http_outage.map_or("0".into(), |(d, _)| secs(d)),
                s.vip_outage.map_or("0".into(), |(d, _)| secs(d)),
                format!("{}/{}", s.failed_writes, s.writes),
                s.write_outage.map_or("0".into(), |(d, _)| secs(d)),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let outage = |f: fn(&ha::Seen) -> Option<(Duration, usize)>| {
            r.seen
                .as_ref()
                .and_then(f)
                .map_or(Duration::ZERO, |(d, _)| d)
        };
        let target = match r.name {
            "database primary killed" => format!(
                "DB failover < 10 s: {}",
                met(outage(|s| s.write_outage) < Duration::from_secs(10))
            ),
            "database primary's host down" => format!(
                "DB failover < 25 s: {}",
                met(outage(|s| s.write_outage) < Duration::from_secs(25))
            ),
            "region VIP holder's host down" => format!(
                "region VIP failover seen by clients < 2 s: nothing answered for {} s: {}",
                secs(outage(|s| s.vip_outage)),
                met(outage(|s| s.vip_outage) < Duration::from_secs(2))
            ),
            _ => "-".into(),
        };
        // assert_healthy checked every acknowledged write on every member, or the drill failed.
        let _ = writeln!(
            md,
            "| {} | {} | {rf} | {ro} | {va} | {wf} | {wo} | 0 (target 0: met) | {window} | {target} |",
            r.name,
            secs(r.healed)
        );
    }
    let _ = writeln!(md, "\nWhat failed attempts saw, per drill:\n");
    for r in &rows {
        if let Some(s) = &r.seen {
            let list = |v: &[(String, usize)]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter()
                        .map(|(w, n)| format!("{n}× {w}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            };
            let _ = writeln!(
                md,
                "- {}: requests: {}; writes: {}",
                r.name,
                list(&s.http_errors),
                list(&s.write_errors)
            );
        }
    }
    if let Some(s) = stopped {
        let _ = writeln!(md, "\nThe drills stopped at {s}");
    }
    md.push('\n');
}

/// maas-region's hooks by total wall time, from the local model's unit logs.
fn busiest_hooks(d: &Deployment, md: &mut String) -> Result<()> {
    let mut by_hook: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in std::fs::read_dir(d.dir.join("logs"))? {
        let p = e?.path();
        if !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("unit-maas-region-"))
        {
            continue;
        }
        for (hook, ms) in hook_times(&std::fs::read_to_string(&p)?) {
            by_hook.entry(hook).or_default().push(ms);
        }
    }
    let mut rows: Vec<(String, Vec<u64>)> = by_hook.into_iter().collect();
    rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.iter().sum::<u64>()));
    let _ = writeln!(md, "maas-region's busiest hooks over the whole run (every unit; wall time in the local model, which includes `maas init`, snap and haproxy work):\n");
    let _ = writeln!(
        md,
        "| hook | runs | total s | median ms | max ms |\n|---|---|---|---|---|"
    );
    for (hook, mut v) in rows.into_iter().take(8) {
        v.sort_unstable();
        let _ = writeln!(
            md,
            "| {hook} | {} | {:.1} | {} | {} |",
            v.len(),
            v.iter().sum::<u64>() as f64 / 1000.0,
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    md.push('\n');
    Ok(())
}

/// (hook, ms) from the local model's "INFO <unit> ran <hook> hook in <ms> ms" lines.
fn hook_times(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("INFO ")?.split_once(" ran ")?.1;
            let (hook, rest) = rest.split_once(" hook in ")?;
            Some((hook.to_string(), rest.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// add-unit maas-region (on a new machine) from 2 to 5 regions: time to settled and hooks run.
fn scale_table(d: &Deployment, md: &mut String) -> Result<()> {
    let _ = writeln!(md, "Scale: `add-unit maas-region` (a new machine each time) until every unit is Active again; target < 60 s, not growing with the number of regions (here: within 1.25× the first add-unit + 1 s). Each new region runs relation hooks on every existing region and its subordinates, so the hooks grow with the regions; in this local model they all share one 2-core machine, where Juju would run them on separate machines in parallel.\n");
    let _ = writeln!(
        md,
        "| regions | add-unit settled (s) | hooks run | target |\n|---|---|---|---|"
    );
    let regions = || -> Result<usize> {
        Ok(d.status()?["applications"]["maas-region"]["units"]
            .as_object()
            .map_or(0, |u| u.len()))
    };
    let mut first = None;
    while regions()? < 5 {
        let before = watch::hooks_total(&d.status()?);
        let n = regions()?;
        eprintln!("== add-unit maas-region ({n} → {})", n + 1);
        d.lm.add_unit("maas-region", 1, None)?;
        let took = watch::settle(d, SETTLE, |l| eprintln!("{l}"))
            .with_context(|| format!("add-unit at {n} regions"))?;
        let hooks = watch::hooks_total(&d.status()?) - before;
        let base = *first.get_or_insert(took);
        // "Not growing": within 1.25 times the first add-unit, plus 1 s for noise.
        let ok =
            took < Duration::from_secs(60) && took.as_secs_f64() <= base.as_secs_f64() * 1.25 + 1.0;
        let _ = writeln!(
            md,
            "| {n} → {} | {} | {hooks} | {} |",
            n + 1,
            secs(took),
            met(ok)
        );
    }
    md.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_run_replaces_its_section_and_keeps_the_others() {
        let md = "\n## The bundle in the local model\n\nnew\n";
        let first = super::replace_section("# Benchmarks\n\nhooks\n", md);
        assert_eq!(
            first,
            "# Benchmarks\n\nhooks\n\n## The bundle in the local model\n\nnew\n"
        );
        let with_other = first.replace("new", "old") + "\n## VIP failover\n\nvip\n";
        let second = super::replace_section(&with_other, md);
        assert_eq!(second, "# Benchmarks\n\nhooks\n\n## The bundle in the local model\n\nnew\n\n## VIP failover\n\nvip\n");
    }

    #[test]
    fn hook_times_reads_the_local_models_lines() {
        let log = "INFO maas-region/0 running install hook\nINFO maas-region/0 ran install hook in 1234 ms (exit 0)\nINFO maas-region/0 ran db-relation-changed hook in 56 ms (exit 1)\nINFO maas-region/0 ran create-admin action in 9 ms (exit 0)\n";
        assert_eq!(
            super::hook_times(log),
            vec![
                ("install".to_string(), 1234),
                ("db-relation-changed".to_string(), 56)
            ]
        );
    }
}
