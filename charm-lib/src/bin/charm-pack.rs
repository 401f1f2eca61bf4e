//! `charm-pack`: pack a charm crate into a `.charm`, or check `.charm` files and bundles.
//!
//! ```text
//! charm-pack pack --charm-dir charms/keepalived-vip --binary target/charm/keepalived-vip \
//!     --license LICENSE --version 0.1.0 --out build/keepalived-vip.charm
//! charm-pack check build/*.charm
//! charm-pack check-bundle bundles/maas-ha.yaml --overlay bundles/overlays/example-site.yaml
//! ```

use charm_lib::pack::{check_archive, check_bundle, pack, Finding, PackInput, Severity};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Pack and check Juju charms built with charm-lib")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a .charm from a charm directory and its compiled binary.
    Pack {
        /// The charm's directory (metadata.yaml, config.yaml, actions.yaml, README.md, icon.svg).
        #[arg(long)]
        charm_dir: PathBuf,
        /// The compiled charm binary; it becomes `dispatch`.
        #[arg(long)]
        binary: PathBuf,
        /// The LICENSE file to include.
        #[arg(long)]
        license: PathBuf,
        /// Version string for the `version` file.
        #[arg(long)]
        version: String,
        /// Where to write the .charm.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle and its overlays against the charms it deploys; exit 1 on any error.
    CheckBundle {
        /// The bundle file.
        bundle: PathBuf,
        /// Overlays, applied in order.
        #[arg(long = "overlay")]
        overlays: Vec<PathBuf>,
    },
    /// Check .charm files the way Juju would before deploying them; exit 1 on any error.
    Check {
        /// The .charm files.
        #[arg(required = true)]
        charms: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Pack {
            charm_dir,
            binary,
            license,
            version,
            out,
        } => {
            match pack(
                &PackInput {
                    charm_dir,
                    binary,
                    license,
                    version,
                },
                &out,
            ) {
                Ok(warnings) => {
                    for w in warnings {
                        eprintln!("{}: {w}", out.display());
                    }
                    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
                    println!("packed {} ({} KiB)", out.display(), size / 1024);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot pack {}:\n{e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckBundle { bundle, overlays } => {
            let what = std::iter::once(bundle.display().to_string())
                .chain(overlays.iter().map(|o| format!("+ {}", o.display())))
                .collect::<Vec<_>>()
                .join(" ");
            report(&what, &check_bundle(&bundle, &overlays))
        }
        Command::Check { charms } => {
            let mut errors = 0;
            for c in &charms {
                let findings = check_archive(c);
                for f in &findings {
                    println!("{}: {f}", c.display());
                }
                let n = findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .count();
                errors += n;
                if n == 0 {
                    println!("{}: ok", c.display());
                }
            }
            if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn report(what: &str, findings: &[Finding]) -> ExitCode {
    for f in findings {
        println!("{what}: {f}");
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        ExitCode::FAILURE
    } else {
        println!("{what}: ok");
        ExitCode::SUCCESS
    }
}
