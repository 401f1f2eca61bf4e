//! The PostgreSQL part of `make bench` (root): the drills of tests/pg_drills.rs on
//! 10.77.71.0/24, timed. For each drill, the time from the fault to the first write that
//! succeeded after a failed one (writes every 100 ms through the DB VIP) and the failed writes,
//! with issue 7's targets beside them; every drill also checks that no acknowledged write was
//! lost. Prints Markdown and appends it to the report (`--out`, default build/bench/report.md).

use anyhow::Result;
use e2e::pg_drills::{self as pg, Ledger, Report};
use e2e::Env;
use std::fmt::Write as _;
use std::time::Instant;

/// The bench's subnet (the test uses 70).
const NET: u8 = 71;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let env = Env::get().map_err(|e| anyhow::anyhow!(e))?;
    let out = out.unwrap_or_else(|| env.build.join("bench/report.md"));
    let vip = pg::bundle_db_vip_options(&env)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut md = format!("\n## postgresql-ha drills in the local model (db-vip as in bundles/maas-ha.yaml: {vip})\n\n");
    let result = run(&env, &mut md);
    if let Err(e) = &result {
        let _ = writeln!(md, "\n**The run stopped early**: {e:#}\n");
    }
    print!("{md}");
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p)?;
    }
    let mut report = std::fs::read_to_string(&out).unwrap_or_default();
    report.push_str(&md);
    std::fs::write(&out, report)?;
    println!("(appended to {})", out.display());
    result
}

fn run(env: &Env, md: &mut String) -> Result<()> {
    let t = Instant::now();
    let d = pg::deploy(env, "bench-pg", NET)?;
    pg::settled(&d)?;
    let _ = writeln!(md, "3 units (Patroni 4.1.5 + etcd, default config), DB VIP by keepalived-vip, deploy to settled with both clients writing: {:.0} s. Writes every 100 ms through the DB VIP from the clients' machine. Recovered: from the fault to the end of the first write that succeeded after a failed one (\"-\": no write failed). Zero acknowledged writes lost is checked on every member after every drill (the run stops otherwise).\n", t.elapsed().as_secs_f64());
    let mut ledger = Ledger::default();
    let mut rows = Vec::new();
    let mut stopped = None;
    for (name, step) in pg::steps() {
        eprintln!("== drill: {name}");
        match step(&d, &mut ledger) {
            Ok(r) => rows.push(r),
            Err(e) => {
                stopped = Some(format!("{name}: {e:#}"));
                break;
            }
        }
    }
    let _ = writeln!(md, "{}", table(&rows));
    if let Some(s) = &stopped {
        let _ = writeln!(md, "\nThe drills stopped at {s}\n");
    }
    match stopped {
        Some(s) => anyhow::bail!("{s}"),
        None => Ok(()),
    }
}

fn table(rows: &[Report]) -> String {
    let mut md = String::from("| drill | fault → first write (s) | target | writes failed | acknowledged | acknowledged lost (target 0) | no automatic failover possible, total / longest (s, target 0) | healthy after (s) |\n|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let rec = r
            .recovered
            .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
        let target = match r.target {
            Some(t) => {
                let ok = r.recovered.is_none_or(|d| d <= t);
                format!(
                    "≤ {} s: {}",
                    t.as_secs(),
                    if ok { "met" } else { "NOT met" }
                )
            }
            None => "-".into(),
        };
        let exposed = match (&r.exposed.why, r.exposed.total.is_zero()) {
            (_, true) => "0: met".to_string(),
            (why, false) => format!(
                "{:.1} / {:.1}: NOT met ({})",
                r.exposed.total.as_secs_f64(),
                r.exposed.longest.as_secs_f64(),
                why.as_deref().unwrap_or("")
            ),
        };
        let _ = writeln!(
            md,
            "| {} | {rec} | {target} | {}/{} | {} | 0: met | {exposed} | {:.1} |",
            r.name,
            r.failed,
            r.writes,
            r.acked,
            r.healed.as_secs_f64()
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_compares_with_the_target() {
        let r = |rec: Option<u64>| Report {
            name: "x".into(),
            target: Some(Duration::from_secs(10)),
            recovered: rec.map(Duration::from_millis),
            failed: 3,
            writes: 100,
            acked: 97,
            healed: Duration::from_secs(20),
            exposed: e2e::failover_watch::Windows::default(),
        };
        let t = table(&[r(Some(2500)), r(Some(12000)), r(None)]);
        let lines: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(
            lines[0],
            "| x | 2.5 | ≤ 10 s: met | 3/100 | 97 | 0: met | 0: met | 20.0 |"
        );
        assert!(lines[1].contains("12.0 | ≤ 10 s: NOT met"), "{}", lines[1]);
        assert!(lines[2].contains("| - | ≤ 10 s: met"), "{}", lines[2]);
    }
}
