//! `make bench`: measures and prints tables; asserts nothing (timing goals live here, not in
//! tests). Sections:
//! - hooks: the charm-lib bench charm vs a minimal Python ops charm doing the same work
//!   (config-changed, relation-changed), with fake hook tools on PATH: wall time, peak RSS.
//! - sizes: the packed `.charm` files.
//!
//! The report is printed and written to `build/bench/report.md`.

mod measure;
mod report;

use anyhow::{Context as _, Result};
use clap::Parser;
use measure::{run_hook, Sample};
use report::Table;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Args {
    /// Runs per charm and hook (at least 30 for the bar).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// The compiled bench charm (charm profile).
    #[arg(long, default_value = "target/charm/bench-charm")]
    rust_charm: PathBuf,
    /// The prepared ops charm directory (dispatch, src/, venv/ with ops).
    #[arg(long, default_value = "build/bench/ops-charm")]
    ops_charm: PathBuf,
    /// Directory with the fake hook tools.
    #[arg(long, default_value = "tests/bench/fake-tools")]
    tools: PathBuf,
    /// Packed charms to report sizes of (build/*.charm and the bench ones).
    #[arg(long, default_value = "build")]
    build: PathBuf,
}

fn hook_env(hook: &str, unit: &str, charm_dir: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("JUJU_UNIT_NAME", unit),
        ("JUJU_MODEL_NAME", "bench"),
        ("JUJU_MODEL_UUID", "00000000-0000-4000-8000-000000000000"),
        ("JUJU_VERSION", "3.6.14"),
        ("JUJU_CONTEXT_ID", "bench-1"),
        ("JUJU_DISPATCH_PATH", &format!("hooks/{hook}")),
        ("JUJU_HOOK_NAME", hook),
        ("JUJU_CHARM_DIR", &charm_dir.to_string_lossy()),
        ("CHARM_DIR", &charm_dir.to_string_lossy()),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if hook.starts_with("db-relation-") {
        for (k, v) in [
            ("JUJU_RELATION", "db"),
            ("JUJU_RELATION_ID", "db:1"),
            ("JUJU_REMOTE_APP", "pg"),
            ("JUJU_REMOTE_UNIT", "pg/0"),
        ] {
            env.insert(k.into(), v.into());
        }
    }
    env
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let tools = std::fs::canonicalize(&args.tools).context("fake tools")?;
    let out_dir = std::fs::canonicalize(&args.build)?.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let rust_dir = out_dir.join("rust-charm");
    std::fs::create_dir_all(&rust_dir)?;
    std::fs::copy(&args.rust_charm, rust_dir.join("dispatch"))
        .context("the bench charm binary: run `make bench`, which builds it")?;
    for f in ["metadata.yaml", "config.yaml"] {
        std::fs::copy(
            Path::new("tests/bench/rust-charm").join(f),
            rust_dir.join(f),
        )?;
    }
    let ops_dir = std::fs::canonicalize(&args.ops_charm)
        .context("the ops charm: run `make bench`, which prepares it")?;

    let mut hooks = Table::new(&[
        "hook",
        "charm",
        "runs",
        "min ms",
        "median ms",
        "peak RSS MiB",
    ]);
    let mut summary = Table::new(&[
        "hook",
        "min speed-up",
        "median speed-up",
        "RSS ratio",
        "targets (≥30× faster, ≤1/10 memory)",
    ]);
    for hook in ["config-changed", "db-relation-changed"] {
        let mut results: Vec<(String, Sample)> = Vec::new();
        for (name, dir) in [("charm-lib (Rust)", &rust_dir), ("ops (Python)", &ops_dir)] {
            let env = hook_env(hook, "bench/0", dir);
            let mut samples = Vec::new();
            for i in 0..args.runs {
                let out = out_dir.join(format!("out-{i}.conf"));
                samples.push(run_hook(dir, &env, &tools, &out)?);
            }
            let s = Sample::summarize(&samples);
            hooks.row(vec![
                hook.into(),
                name.into(),
                args.runs.to_string(),
                format!("{:.2}", s.min_ms),
                format!("{:.2}", s.median_ms),
                format!("{:.1}", s.peak_rss_kib as f64 / 1024.0),
            ]);
            results.push((name.to_string(), s));
        }
        let (rust, ops) = (&results[0].1, &results[1].1);
        let speedup = ops.median_ms / rust.median_ms.max(1e-9);
        let min_speedup = ops.min_ms / rust.min_ms.max(1e-9);
        let rss = rust.peak_rss_kib as f64 / ops.peak_rss_kib.max(1) as f64;
        let met = if speedup >= 30.0 && rss <= 0.1 {
            "met"
        } else {
            "NOT met"
        };
        summary.row(vec![
            hook.into(),
            format!("{min_speedup:.0}×"),
            format!("{speedup:.0}×"),
            format!("1/{:.0}", 1.0 / rss.max(1e-9)),
            met.into(),
        ]);
    }

    let mut sizes = Table::new(&["file", "KiB", "target (≤ 2048 KiB)"]);
    let mut charm_files: Vec<PathBuf> = std::fs::read_dir(&args.build)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "charm"))
        .collect();
    charm_files.extend(
        ["bench-charm.charm", "bench-ops-charm.charm"]
            .iter()
            .map(|n| out_dir.join(n))
            .filter(|p| p.exists()),
    );
    charm_files.sort();
    for f in charm_files {
        let kib = std::fs::metadata(&f)?.len() / 1024;
        let is_ops = f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("ops"));
        sizes.row(vec![
            f.file_name().unwrap().to_string_lossy().into(),
            kib.to_string(),
            if is_ops {
                "baseline".into()
            } else if kib <= 2048 {
                "met".into()
            } else {
                "NOT met".into()
            },
        ]);
    }

    let report = format!(
        "# Benchmarks\n\nHook runs with fake hook tools on PATH (shell scripts, the same for both charms). Wall times depend on machine load: the minimum is the least noisy figure.\n\n{}\n{}\n## Packed charms\n\n{}",
        hooks.markdown(),
        summary.markdown(),
        sizes.markdown()
    );
    println!("{report}");
    std::fs::write(out_dir.join("report.md"), &report)?;
    println!("(written to {})", out_dir.join("report.md").display());
    Ok(())
}
