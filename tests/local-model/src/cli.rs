//! The `lm` command line (clap): the Juju-like verbs, fault injection and the daemon.

use crate::client::LocalModel;
use crate::layout::Layout;
use crate::protocol::{FaultOp, Request};
use crate::state::{ActionRun, Substrate};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "lm",
    about = "Run packed charms the way Juju does, on this machine"
)]
struct Cli {
    /// Model directory (default: $LM_MODEL_DIR or build/local-model).
    #[arg(long, global = true)]
    model_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Deploy a .charm or a bundle (.yaml); starts the model if needed.
    Deploy {
        path: PathBuf,
        /// Application name (single charm only; default: the charm's name).
        name: Option<String>,
        #[arg(long)]
        overlay: Vec<PathBuf>,
        #[arg(short = 'n', long = "num-units", default_value_t = 1)]
        n: u32,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        config: Vec<String>,
        #[arg(long)]
        resource: Vec<String>,
        /// The base to deploy on (`ubuntu@22.04`; single charm only): the charm's manifest
        /// must declare it. Default: ubuntu@24.04 if declared, else the manifest's first.
        #[arg(long)]
        base: Option<String>,
        /// bare | hosts (default: hosts when built with it and root, else bare; or $LM_SUBSTRATE)
        #[arg(long)]
        substrate: Option<String>,
        /// Print the deployment plan (bundle and overlays resolved) and deploy nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the model.
    Status {
        #[arg(long, default_value = "tabular")]
        format: String,
    },
    /// Show or change an application's config.
    Config {
        app: String,
        settings: Vec<String>,
        #[arg(long)]
        reset: Vec<String>,
    },
    AddUnit {
        app: String,
        #[arg(short = 'n', long = "num-units", default_value_t = 1)]
        n: u32,
        #[arg(long)]
        to: Option<String>,
    },
    RemoveUnit {
        units: Vec<String>,
    },
    Integrate {
        a: String,
        b: String,
    },
    RemoveRelation {
        a: String,
        b: String,
    },
    /// Upgrade an application's charm (upgrade-charm on every unit not in error).
    Refresh {
        app: String,
        #[arg(long)]
        path: Option<PathBuf>,
        /// Units in hook error take the new charm at once and stay in error.
        #[arg(long)]
        force_units: bool,
    },
    /// Run an action and print its results.
    Run {
        unit: String,
        action: String,
        params: Vec<String>,
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
    /// Re-run the failed hook of a unit (or skip it with --no-retry).
    Resolve {
        unit: String,
        #[arg(long)]
        no_retry: bool,
    },
    /// Wait until every unit is idle with no hook queued.
    Wait {
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Stop the model and remove everything it created.
    Destroy,
    /// Print a unit's log (hook output, juju-log, hook-tool calls).
    Logs {
        unit: String,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
    },
    /// Run a command in a unit's machine (or a machine id), like `juju ssh`.
    Ssh {
        target: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Inject faults into machines (a machine id or a unit name).
    Fault {
        #[command(subcommand)]
        fault: FaultCmd,
    },
    /// Run the model daemon (started by deploy).
    #[command(hide = true)]
    Daemon {
        #[arg(long, default_value = "bare")]
        substrate: String,
    },
}

#[derive(Subcommand, Debug)]
enum FaultCmd {
    /// Kill a process by name or PID.
    Kill {
        machine: String,
        target: String,
        #[arg(short, long, default_value_t = 9)]
        signal: i32,
    },
    Freeze {
        machine: String,
        pid: u32,
    },
    Thaw {
        machine: String,
        pid: u32,
    },
    /// Cut a machine's network.
    Cut {
        machine: String,
    },
    Restore {
        machine: String,
    },
    /// Pull the plug of a machine.
    Stop {
        machine: String,
    },
    Start {
        machine: String,
    },
    /// Machine-side PIDs of processes named COMM.
    Pids {
        machine: String,
        comm: String,
    },
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The substrate to use when none is given.
pub fn default_substrate() -> Substrate {
    match std::env::var("LM_SUBSTRATE").ok().as_deref() {
        Some("bare") => return Substrate::Bare,
        Some("hosts") => return Substrate::Hosts,
        _ => {}
    }
    if cfg!(feature = "namespaced") && is_root() {
        Substrate::Hosts
    } else {
        Substrate::Bare
    }
}

fn parse_substrate(s: &str) -> Result<Substrate> {
    match s {
        "bare" => Ok(Substrate::Bare),
        "hosts" => Ok(Substrate::Hosts),
        o => bail!("unknown substrate {o:?} (bare | hosts)"),
    }
}

fn print_action(run: &ActionRun) {
    let mut v = serde_json::json!({ "status": run.status });
    if !run.message.is_empty() {
        v["message"] = serde_json::json!(run.message);
    }
    if !run.results.is_empty() {
        v["results"] = serde_json::Value::Object(run.results.clone());
    }
    if !run.log.is_empty() {
        v["log"] = serde_json::json!(run.log);
    }
    print!("{}", serde_yaml::to_string(&v).unwrap_or_default());
}

fn run(cli: Cli) -> Result<()> {
    let dir = cli.model_dir.unwrap_or_else(Layout::default_dir);
    let exe = std::env::current_exe().context("finding the lm binary")?;
    let model = LocalModel::new(&dir, &exe);
    match cli.cmd {
        Cmd::Daemon { substrate } => {
            crate::daemon::run(Layout::new(&dir), parse_substrate(&substrate)?)
        }
        Cmd::Deploy {
            path,
            name,
            overlay,
            n,
            to,
            config,
            resource,
            base,
            substrate,
            dry_run,
        } => {
            let substrate = match substrate {
                Some(s) => parse_substrate(&s)?,
                None => default_substrate(),
            };
            let plan = if crate::bundle::is_bundle(&path) {
                if name.is_some()
                    || !config.is_empty()
                    || !resource.is_empty()
                    || to.is_some()
                    || base.is_some()
                {
                    bail!("a bundle takes its names, options, resources, placements and bases from the bundle file");
                }
                crate::bundle::load_bundle(&path, &overlay)?
            } else {
                let mut plan = crate::bundle::charm_plan(&path, name, n, to, &config, &resource)?;
                plan.apps[0].base = base;
                plan
            };
            if dry_run {
                println!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(());
            }
            let units = model.deploy_plan(plan, substrate)?;
            for u in units {
                println!("Added unit {u}");
            }
            Ok(())
        }
        Cmd::Status { format } => {
            let s = model.status()?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&s)?),
                "yaml" => print!("{}", serde_yaml::to_string(&s)?),
                _ => {
                    let st = crate::state::ModelState::load(&model.layout.state())?;
                    print!("{}", crate::status::status_table(&st));
                }
            }
            Ok(())
        }
        Cmd::Config {
            app,
            settings,
            reset,
        } => {
            let v = model.request(&Request::Config {
                app,
                set: settings.clone(),
                reset: reset.clone(),
            })?;
            if settings.is_empty() && reset.is_empty() {
                print!("{}", serde_yaml::to_string(&v)?);
            }
            Ok(())
        }
        Cmd::AddUnit { app, n, to } => {
            let v = model.request(&Request::AddUnit { app, n, to })?;
            for u in v.as_array().cloned().unwrap_or_default() {
                println!("Added unit {}", u.as_str().unwrap_or_default());
            }
            Ok(())
        }
        Cmd::RemoveUnit { units } => model.request(&Request::RemoveUnit { units }).map(|_| ()),
        Cmd::Integrate { a, b } => model.request(&Request::Integrate { a, b }).map(|_| ()),
        Cmd::RemoveRelation { a, b } => {
            model.request(&Request::RemoveRelation { a, b }).map(|_| ())
        }
        Cmd::Refresh {
            app,
            path,
            force_units,
        } => {
            let path = path.map(|p| p.canonicalize()).transpose()?;
            model
                .request(&Request::Refresh {
                    app,
                    path,
                    force_units,
                })
                .map(|_| ())
        }
        Cmd::Run {
            unit,
            action,
            params,
            wait,
        } => {
            let p: Vec<&str> = params.iter().map(|s| s.as_str()).collect();
            let run = model.run_action(&unit, &action, &p, Duration::from_secs(wait))?;
            print_action(&run);
            if run.status != "completed" {
                bail!(
                    "action {} on {} {}: {}",
                    run.name,
                    run.unit,
                    run.status,
                    run.message
                );
            }
            Ok(())
        }
        Cmd::Resolve { unit, no_retry } => model
            .request(&Request::Resolve { unit, no_retry })
            .map(|_| ()),
        Cmd::Wait { timeout } => {
            model.wait(Duration::from_secs(timeout))?;
            // Settled; what failed on the way and was fixed by a retry is still worth a look.
            let failed = model.failures()?.failed;
            if !failed.is_empty() {
                eprintln!(
                    "settled, but {} hook run(s) in this model exited non-zero (lm logs <unit>):",
                    failed.len()
                );
                for f in &failed {
                    eprintln!("  {}", f.line());
                }
            }
            Ok(())
        }
        Cmd::Destroy => model.destroy(),
        Cmd::Logs { unit, lines } => {
            let p = model.layout.unit_log(&unit);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("no log for {unit} ({})", p.display()))?;
            let all: Vec<&str> = text.lines().collect();
            let from = lines.map_or(0, |n| all.len().saturating_sub(n));
            // `lm logs app/0 | head`: a reader that has gone is the end, not an error
            // (println! would panic on the broken pipe)
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for l in &all[from..] {
                match writeln!(out, "{l}") {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r?,
                }
            }
            match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => Ok(r?),
            }
        }
        Cmd::Ssh { target, command } => {
            let argv: Vec<&str> = command.iter().map(|s| s.as_str()).collect();
            let (code, out, err) = model.exec(&target, &argv)?;
            print!("{out}");
            eprint!("{err}");
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Cmd::Fault { fault } => {
            let (m, f) = match fault {
                FaultCmd::Kill {
                    machine,
                    target,
                    signal,
                } => (machine, FaultOp::Kill { target, signal }),
                FaultCmd::Freeze { machine, pid } => (machine, FaultOp::Freeze { pid }),
                FaultCmd::Thaw { machine, pid } => (machine, FaultOp::Thaw { pid }),
                FaultCmd::Cut { machine } => (machine, FaultOp::Cut),
                FaultCmd::Restore { machine } => (machine, FaultOp::Restore),
                FaultCmd::Stop { machine } => (machine, FaultOp::Stop),
                FaultCmd::Start { machine } => (machine, FaultOp::Start),
                FaultCmd::Pids { machine, comm } => (machine, FaultOp::Pids { comm }),
            };
            let v = model.fault(&m, f)?;
            if let Some(a) = v.as_array() {
                for p in a {
                    println!("{p}");
                }
            }
            Ok(())
        }
    }
}

/// Parse argv and run; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ERROR {e:#}");
            1
        }
    }
}
