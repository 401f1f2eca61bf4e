//! The upgrade part of `make bench` (root, issue 22): the bundle (with the drills' db-client) in
//! the local model on 10.77.32.0/24, postgresql-ha deployed on Patroni 4.1.4 (the Makefile's
//! PATRONI_PREVIOUS). Under requests through the region VIP and writes through the DB VIP
//! every 100 ms from the rack machines, two upgrades an operator runs: MAAS 3.6 → 3.7 (`channel`
//! of maas-rack, then of maas-region: racks first, then one region at a time), and Patroni
//! 4.1.4 → 4.1.5 (`patroni-version`: replicas, a switchover, the old primary). For each: the
//! total time, failed requests and writes, the longest outage of each, and (checked, the run
//! stops otherwise) that every acknowledged write is on every member afterwards. Prints
//! Markdown and replaces its section of the report (`--out`, default build/bench/report.md).
//! `--only maas` or `--only patroni` runs one of the two upgrades (the other's row is left out).

use anyhow::{ensure, Context, Result};
use e2e::drills::HEAL;
use e2e::{ha, until, watch, Deployment, Env};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The bench's subnet (whole-bundle drills and bench own 10.77.30–39).
const NET: u8 = 32;
const SETTLE: Duration = Duration::from_secs(900);
/// MAAS's channels: what the bundle installs and the one it goes to (both in build/catalog).
const MAAS_FROM: &str = "3.6";
const MAAS_TO: &str = "3.7/stable";
/// Patroni: the Makefile's PATRONI_PREVIOUS and PATRONI_VERSION (postgresql-ha's default).
const PATRONI_FROM: &str = "4.1.4";
const PATRONI_TO: &str = "4.1.5";
const TITLE: &str = "## Upgrades under traffic in the local model";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    if let Some(o) = &only {
        anyhow::ensure!(
            o == "maas" || o == "patroni",
            "--only {o:?}: expected maas or patroni"
        );
    }
    let env = Env::get().map_err(|e| anyhow::anyhow!(e))?;
    let out = out.unwrap_or_else(|| env.build.join("bench/report.md"));
    let mut md = format!("\n{TITLE}\n\n");
    let result = run(&env, &mut md, only.as_deref());
    if let Err(e) = &result {
        let _ = writeln!(md, "\n**The run stopped early**: {e:#}\n");
    }
    print!("{md}");
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p)?;
    }
    let report = replace_section(&std::fs::read_to_string(&out).unwrap_or_default(), &md);
    std::fs::write(&out, report)?;
    println!("(written to {})", out.display());
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

/// One upgrade's row.
struct Row {
    name: String,
    took: Duration,
    seen: ha::Seen,
}

fn run(env: &Env, md: &mut String, only: Option<&str>) -> Result<()> {
    let dir = env.build.join("e2e/bench-upgrade-charms");
    let client = ha::client_overlay(env, &dir)?;
    let older = dir.join("patroni-previous-overlay.yaml");
    std::fs::write(
        &older,
        format!("applications:\n  postgresql-ha:\n    options:\n      patroni-version: \"{PATRONI_FROM}\"\n"),
    )?;
    let mut overlays = vec![client, older];
    overlays.extend(e2e::extra_overlays());
    let t = Instant::now();
    let d = Deployment::bundle_with(
        env,
        "bench-upgrade",
        NET,
        &overlays,
        &[("LM_UPDATE_STATUS_MS", "60000")],
    )?;
    watch::settle(&d, SETTLE, |l| eprintln!("{l}")).context("deploying the bundle")?;
    let _ = writeln!(md, "bundles/maas-ha.yaml + the drills' db-client, postgresql-ha on Patroni {PATRONI_FROM}: deployed and settled in {} s. Requests (`GET /MAAS/r/`) through the region VIP and writes (INSERT) through the DB VIP every 100 ms from the rack machines during each upgrade. Outage: from the first failed attempt to the next success. Total: from the config change to every unit Active on the new version. After each, every acknowledged write is checked on every PostgreSQL member (the run stops otherwise).\n", secs(t.elapsed()));

    let mut rows = Vec::new();
    let mut stopped = None;
    for (key, name, step) in [
        (
            "maas",
            format!("MAAS {MAAS_FROM}/stable → {MAAS_TO} (racks, then regions)"),
            maas_upgrade as fn(&Deployment) -> Result<()>,
        ),
        (
            "patroni",
            format!("Patroni {PATRONI_FROM} → {PATRONI_TO} (rolling, primary last)"),
            patroni_roll,
        ),
    ] {
        if only.is_some_and(|o| o != key) {
            continue;
        }
        eprintln!("== upgrade: {name}");
        match measure(&d, &name, step) {
            Ok(r) => rows.push(r),
            Err(e) => {
                stopped = Some(format!("{name}: {e:#}"));
                break;
            }
        }
    }
    let _ = writeln!(md, "| upgrade | total (s) | requests failed | longest request outage (s) | writes failed | longest write outage (s) | acknowledged writes lost |\n|---|---|---|---|---|---|---|");
    for r in &rows {
        let s = &r.seen;
        let _ = writeln!(
            md,
            "| {} | {} | {}/{} | {} | {}/{} | {} | 0 |",
            r.name,
            secs(r.took),
            s.failed_requests,
            s.requests,
            s.http_outage.map_or("0".into(), |(d, _)| secs(d)),
            s.failed_writes,
            s.writes,
            s.write_outage.map_or("0".into(), |(d, _)| secs(d)),
        );
    }
    let _ = writeln!(md, "\nWhat failed attempts saw:\n");
    for r in &rows {
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
            list(&r.seen.http_errors),
            list(&r.seen.write_errors)
        );
    }
    md.push('\n');
    match stopped {
        Some(s) => anyhow::bail!("stopped at {s}"),
        None => Ok(()),
    }
}

/// Runs `step` under traffic through both VIPs, then waits for traffic to work again and the
/// deployment to be healthy with every acknowledged write on every member.
fn measure(d: &Deployment, name: &str, step: fn(&Deployment) -> Result<()>) -> Result<Row> {
    let table: String = name
        .chars()
        .take(5)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let traffic = ha::Traffic::start(d, &format!("upgrade_{table}"))?;
    let t = Instant::now();
    let done = step(d);
    let took = t.elapsed();
    let recovered = done
        .as_ref()
        .ok()
        .map(|_| traffic.wait_recovered(5, e2e::drills::RECOVER));
    let table = traffic.table.clone();
    let seen = traffic.stop()?;
    done.with_context(|| ha::diagnose(d))?;
    if let Some(r) = recovered {
        r?;
    }
    ha::assert_healthy(d, Some(&table), &seen.acked, HEAL)?;
    Ok(Row {
        name: name.to_string(),
        took,
        seen,
    })
}

/// The version of the `maas` snap on `machine` (`snap list`'s Version column).
fn maas_version_on(d: &Deployment, machine: &str) -> Result<String> {
    let out = d.exec(machine, &["snap", "list", "maas"])?;
    out.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .with_context(|| format!("snap list maas on machine {machine}: {out}"))
}

/// The operator's order (MAAS's docs/how-to-guides/upgrade-maas.md: racks first): the racks'
/// channel, then the regions'; done when every rack and region machine runs the new version
/// and every unit is Active.
fn maas_upgrade(d: &Deployment) -> Result<()> {
    let want = format!("{}.", MAAS_TO.split('/').next().unwrap_or_default());
    d.lm.config("maas-rack", &[&format!("channel={MAAS_TO}")])?;
    d.lm.config("maas-region", &[&format!("channel={MAAS_TO}")])?;
    until(
        Duration::from_secs(900),
        "every MAAS machine on the new version",
        || {
            for m in d
                .machines_of("maas-rack")?
                .iter()
                .chain(d.machines_of("maas-region")?.iter())
            {
                let v = maas_version_on(d, m)?;
                ensure!(v.starts_with(&want), "machine {m} runs {v}");
            }
            Ok(())
        },
    )?;
    d.wait_active(HEAL)
}

/// What each postgresql-ha unit's Patroni runs (`GET /patroni`'s `patroni.version`), asked
/// on its own host.
fn patroni_versions(d: &Deployment) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for u in ha::pg_units(d)? {
        let mut argv = vec!["curl", "-sf", "-m", "5"];
        argv.extend_from_slice(ha::PATRONI_TLS);
        argv.push("https://127.0.0.1:8008/patroni");
        let body = d.exec(&d.machine_of(&u)?, &argv)?;
        let v: serde_json::Value = serde_json::from_str(&body).context("GET /patroni")?;
        out.push((
            u,
            v["patroni"]["version"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

/// `patroni-version` to the new release; done when every member runs it and every unit is
/// Active.
fn patroni_roll(d: &Deployment) -> Result<()> {
    let before = patroni_versions(d)?;
    ensure!(
        before.iter().all(|(_, v)| v == PATRONI_FROM),
        "the deployment does not run Patroni {PATRONI_FROM}: {before:?}"
    );
    d.lm.config("postgresql-ha", &[&format!("patroni-version={PATRONI_TO}")])?;
    until(
        Duration::from_secs(900),
        "every member on the new Patroni",
        || {
            let now = patroni_versions(d)?;
            ensure!(now.iter().all(|(_, v)| v == PATRONI_TO), "{now:?}");
            Ok(())
        },
    )?;
    d.wait_active(HEAL)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_run_replaces_its_section_and_keeps_the_others() {
        let md = format!("\n{}\n\nnew\n", super::TITLE);
        let first = super::replace_section("# Benchmarks\n\nhooks\n", &md);
        assert_eq!(first, format!("# Benchmarks\n\nhooks\n{md}"));
        let with_other = first.replace("new", "old") + "\n## VIP failover\n\nvip\n";
        let second = super::replace_section(&with_other, &md);
        assert_eq!(
            second,
            format!("# Benchmarks\n\nhooks\n{md}\n## VIP failover\n\nvip\n")
        );
    }
}
