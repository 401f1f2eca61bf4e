//! `cargo run -p local-model --example bench [-- --substrate bare|hosts] [--out FILE]`:
//! deploys the test bundle (3 units + a subordinate + peers + a relation), and prints the
//! time from deploy to settled and the number of hooks run; the table also goes to
//! `build/bench/local-model.txt` (or `--out`).

use local_model::{LocalModel, Substrate};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let substrate = match get("--substrate").as_deref() {
        Some("bare") => Substrate::Bare,
        Some("hosts") => Substrate::Hosts,
        _ => local_model::cli::default_substrate(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = get("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../build/bench/local-model.txt"));
    let lm = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("lm"))
        .filter(|p| p.is_file());
    let lm =
        lm.ok_or_else(|| anyhow::anyhow!("build the lm binary first: cargo build -p local-model"))?;
    let dir = root.join("../../target/tmp/lm-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("charms"))?;
    std::fs::create_dir_all(dir.join("rec"))?;
    local_model::charm::pack_dir(
        &root.join("testcharms/lm-test"),
        &dir.join("charms/lm-test.charm"),
    )?;
    local_model::charm::pack_dir(
        &root.join("testcharms/lm-test-sub"),
        &dir.join("charms/lm-test-sub.charm"),
    )?;
    std::fs::write(dir.join("blob.txt"), "blob\n")?;
    let rec = dir.join("rec").canonicalize()?;
    std::fs::write(
        dir.join("bundle.yaml"),
        format!(
            "applications:\n  a:\n    charm: ./charms/lm-test.charm\n    num_units: 3\n    options: {{record-dir: {r}}}\n    resources: {{blob: ./blob.txt}}\n  b:\n    charm: ./charms/lm-test.charm\n    num_units: 1\n    options: {{record-dir: {r}}}\n  sub:\n    charm: ./charms/lm-test-sub.charm\n    options: {{record-dir: {r}}}\nrelations:\n- [a:web, b:client]\n- [a, sub]\n",
            r = rec.display()
        ),
    )?;
    let m = LocalModel::new(&dir.join("model"), &lm).with_env("LM_UPDATE_STATUS_MS", "0");
    let t0 = Instant::now();
    m.deploy_bundle(&dir.join("bundle.yaml"), &[], substrate)?;
    let deployed = t0.elapsed();
    m.wait(Duration::from_secs(600))?;
    let settled = t0.elapsed();
    let st = m.status()?;
    let mut hooks = 0u64;
    let mut units = 0;
    for app in st["applications"].as_object().unwrap().values() {
        for u in app["units"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .values()
        {
            units += 1;
            hooks += u["hooks-run"].as_u64().unwrap_or(0);
            for s in u["subordinates"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .values()
            {
                units += 1;
                hooks += s["hooks-run"].as_u64().unwrap_or(0);
            }
        }
    }
    m.destroy()?;
    let table = format!(
        "| substrate | units | hooks run | deploy call (s) | deploy to settled (s) | hooks/s |\n| --- | --- | --- | --- | --- | --- |\n| {:?} | {units} | {hooks} | {:.2} | {:.2} | {:.0} |\n",
        substrate,
        deployed.as_secs_f64(),
        settled.as_secs_f64(),
        hooks as f64 / settled.as_secs_f64()
    );
    print!("{table}");
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&out, &table)?;
    eprintln!("written to {}", out.display());
    Ok(())
}
