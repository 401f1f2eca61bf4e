//! The daemon: owns the model, runs the scheduler, answers the CLI on `lm.sock` and the
//! hook tools on `agent.sock` (checking JUJU_CONTEXT_ID against the running hooks).

use crate::engine::{scheduler, Runtime, Shared};
use crate::layout::Layout;
use crate::machines::{Fault, KillTarget, Machines};
use crate::protocol::{recv, send, FaultOp, Request, Response, ToolRequest, ToolResponse};
use crate::state::{ModelState, Settings, Substrate};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::BufReader;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};

/// Settings from the environment (`LM_RETRY_BASE_MS`, `LM_RETRY_MAX_MS`,
/// `LM_UPDATE_STATUS_MS`, `LM_LEADER_LEASE_MS`, `LM_JUJU_VERSION`), Juju's defaults otherwise.
pub fn settings_from_env() -> Settings {
    let mut s = Settings::default();
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(v) = get("LM_RETRY_BASE_MS") {
        s.retry_base_ms = v;
    }
    if let Some(v) = get("LM_RETRY_MAX_MS") {
        s.retry_max_ms = v;
    }
    if let Some(v) = get("LM_UPDATE_STATUS_MS") {
        s.update_status_ms = v;
    }
    if let Some(v) = get("LM_LEADER_LEASE_MS") {
        s.leader_lease_ms = v;
    }
    if let Ok(v) = std::env::var("LM_JUJU_VERSION") {
        if !v.is_empty() {
            s.juju_version = v;
        }
    }
    s
}

fn make_machines(layout: &Layout, substrate: Substrate) -> Result<Box<dyn Machines>> {
    match substrate {
        Substrate::Bare => Ok(Box::new(crate::machines::Bare::new(&layout.bare_machines())?)),
        #[cfg(feature = "namespaced")]
        Substrate::Hosts => Ok(Box::new(crate::namespaced::Namespaced::create(&layout.lab())?)),
        #[cfg(not(feature = "namespaced"))]
        Substrate::Hosts => bail!("this lm was built without the `namespaced` feature: only --substrate bare is available"),
    }
}

/// Make `tools/<tool>` symlinks to this binary (the multi-call hook tool).
fn install_tools(layout: &Layout) -> Result<()> {
    let exe = std::env::current_exe().context("finding the lm binary")?;
    std::fs::create_dir_all(layout.tools())?;
    for t in crate::hooktools::TOOLS
        .iter()
        .chain(crate::juju_exec::NAMES)
    {
        let link = layout.tools().join(t);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// Run the daemon for `layout` until `destroy`. Starts with an empty model.
pub fn run(layout: Layout, substrate: Substrate) -> Result<()> {
    std::fs::create_dir_all(&layout.dir)?;
    std::fs::create_dir_all(layout.logs())?;
    install_tools(&layout)?;
    let machines = make_machines(&layout, substrate)?;
    let state = ModelState::new(substrate, settings_from_env());
    for s in [layout.lm_sock(), layout.agent_sock()] {
        let _ = std::fs::remove_file(s);
    }
    let agent = UnixListener::bind(layout.agent_sock()).context("binding agent.sock")?;
    let cli = UnixListener::bind(layout.lm_sock()).context("binding lm.sock")?;
    std::fs::write(layout.daemon_pid(), std::process::id().to_string())?;
    let rt = Runtime {
        state,
        layout: layout.clone(),
        machines,
        contexts: Default::default(),
        running: Default::default(),
        turn: Default::default(),
        execs: Default::default(),
        exec_runs: Default::default(),
        shutdown: false,
    };
    rt.save();
    let shared: Shared = Arc::new((Mutex::new(rt), Condvar::new()));
    {
        let s = shared.clone();
        std::thread::spawn(move || scheduler(s));
    }
    {
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in agent.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve_tool(s, conn));
            }
        });
    }
    for conn in cli.incoming() {
        let Ok(conn) = conn else { continue };
        let done = serve_cli(&shared, conn);
        if done {
            break;
        }
    }
    Ok(())
}

fn serve_tool(shared: Shared, conn: UnixStream) {
    let Ok(read) = conn.try_clone() else { return };
    let mut r = BufReader::new(read);
    let mut w = conn;
    let resp = match recv::<ToolRequest>(&mut r) {
        Err(e) => ToolResponse {
            stdout: String::new(),
            stderr: format!("ERROR bad request: {e}\n"),
            code: 1,
        },
        // no context: it waits for the machine, so it must not hold the lock
        Ok(req) if req.tool == "juju-exec" => crate::juju_exec::serve(&shared, &req),
        Ok(req) => {
            let (lock, cv) = &*shared;
            let mut rt = lock.lock().unwrap_or_else(|e| e.into_inner());
            let rt = &mut *rt;
            match rt.contexts.get_mut(&req.context_id) {
                None => ToolResponse {
                    stdout: String::new(),
                    stderr: format!(
                        "ERROR bad request: wrong context ID; got {:?}\n",
                        req.context_id
                    ),
                    code: 1,
                },
                Some(ctx) => {
                    let out = crate::hooktools::run_tool(
                        &mut rt.state,
                        ctx,
                        &req.tool,
                        &req.args,
                        req.stdin.as_bytes(),
                    );
                    // every tool call goes to the unit log: what a charm asked and got is
                    // the first thing to look at when it misbehaves here
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&ctx.log_path)
                    {
                        use std::io::Write;
                        let _ = writeln!(
                            f,
                            "DEBUG {} tool {} {:?} -> {} {}",
                            ctx.hook.name,
                            req.tool,
                            req.args,
                            out.code,
                            out.stderr.trim()
                        );
                    }
                    cv.notify_all();
                    ToolResponse {
                        stdout: out.stdout,
                        stderr: out.stderr,
                        code: out.code,
                    }
                }
            }
        }
    };
    let _ = send(&mut w, &resp);
}

/// Handle one CLI connection; returns true when the daemon must exit.
fn serve_cli(shared: &Shared, conn: UnixStream) -> bool {
    let Ok(read) = conn.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(read);
    let mut w = conn;
    let req = match recv::<Request>(&mut r) {
        Ok(q) => q,
        Err(e) => {
            let _ = send(
                &mut w,
                &Response {
                    ok: false,
                    error: format!("bad request: {e:#}"),
                    data: Value::Null,
                },
            );
            return false;
        }
    };
    let (lock, cv) = &**shared;
    if let Request::Exec { machine, argv } = &req {
        // build the command under the lock, run it without: it may take long, and must
        // not stop hooks or hook tools meanwhile
        let cmd = {
            let rt = lock.lock().unwrap_or_else(|e| e.into_inner());
            machine_of(&rt, machine).and_then(|m| {
                let prog = argv.first().ok_or_else(|| anyhow!("no command given"))?;
                let mut c = rt.machines.command(&m, prog, "/")?;
                c.args(&argv[1..]).stdin(std::process::Stdio::null());
                Ok(c)
            })
        };
        let resp = match cmd.and_then(|mut c| c.output().context("running the command")) {
            Ok(o) => Response {
                ok: true,
                error: String::new(),
                data: json!({"code": o.status.code().unwrap_or(-1), "stdout": String::from_utf8_lossy(&o.stdout), "stderr": String::from_utf8_lossy(&o.stderr)}),
            },
            Err(e) => Response {
                ok: false,
                error: format!("{e:#}"),
                data: Value::Null,
            },
        };
        let _ = send(&mut w, &resp);
        return false;
    }
    let mut rt = lock.lock().unwrap_or_else(|e| e.into_inner());
    let destroy = matches!(req, Request::Destroy);
    let result = handle(&mut rt, req);
    if !destroy {
        rt.save();
    }
    cv.notify_all();
    let resp = match result {
        Ok(data) => Response {
            ok: true,
            error: String::new(),
            data,
        },
        Err(e) => Response {
            ok: false,
            error: format!("{e:#}"),
            data: Value::Null,
        },
    };
    let _ = send(&mut w, &resp);
    destroy
}

fn machine_of(rt: &Runtime, m: &str) -> Result<String> {
    if rt.state.machines.contains_key(m) {
        return Ok(m.to_string());
    }
    if m.contains('/') {
        let u = crate::ops::resolve_unit(rt, m)?;
        return Ok(rt.state.units[&u].machine.clone());
    }
    bail!("machine {m:?} not found")
}

fn handle(rt: &mut Runtime, req: Request) -> Result<Value> {
    use crate::ops;
    match req {
        Request::Ping => Ok(json!({"pid": std::process::id(), "substrate": rt.state.substrate})),
        Request::Deploy { plan } => Ok(json!(ops::deploy(rt, &plan)?)),
        Request::AddUnit { app, n, to } => {
            let mut added = vec![];
            for _ in 0..n.max(1) {
                let p = match &to {
                    None => ops::Placement::NewMachine,
                    Some(t) if t.contains('/') => ops::Placement::WithUnit(t.clone()),
                    Some(t) if t.contains(':') || t == "new" => ops::Placement::NewMachine,
                    Some(t) => ops::Placement::Machine(t.clone()),
                };
                added.push(ops::add_unit(rt, &app, p)?);
            }
            Ok(json!(added))
        }
        Request::RemoveUnit { units } => {
            ops::remove_units(rt, &units)?;
            Ok(Value::Null)
        }
        Request::Integrate { a, b } => Ok(json!(ops::integrate(rt, &a, &b)?)),
        Request::RemoveRelation { a, b } => {
            ops::remove_relation(rt, &a, &b)?;
            Ok(Value::Null)
        }
        Request::Config { app, set, reset } => Ok(json!(ops::config(rt, &app, &set, &reset)?)),
        Request::Refresh {
            app,
            path,
            force_units,
        } => {
            ops::refresh(rt, &app, path.as_deref(), force_units)?;
            Ok(Value::Null)
        }
        Request::Run {
            unit,
            action,
            params,
        } => Ok(json!(ops::run_action(rt, &unit, &action, &params)?)),
        Request::Action { id } => Ok(json!(rt
            .state
            .actions
            .get(&id)
            .ok_or_else(|| anyhow!("action {id} not found"))?)),
        Request::Resolve { unit, no_retry } => {
            ops::resolve(rt, &unit, no_retry)?;
            Ok(Value::Null)
        }
        Request::HostPath { machine, inside } => {
            let m = machine_of(rt, &machine)?;
            Ok(json!(rt.machines.host_path(&m, &inside)))
        }
        Request::Exec { .. } => bail!("exec is handled outside the lock"),
        Request::Status => Ok(crate::status::status_json(&rt.state)),
        Request::Unsettled => Ok(json!(rt.unsettled())),
        Request::Failures => Ok(json!(rt.failures())),
        Request::Fault { machine, fault } => {
            let m = machine_of(rt, &machine)?;
            let f = match fault {
                FaultOp::Pids { comm } => return Ok(json!(rt.machines.pids(&m, &comm)?)),
                FaultOp::Kill { target, signal } => Fault::Kill {
                    target: match target.parse::<u32>() {
                        Ok(p) => KillTarget::Pid(p),
                        Err(_) => KillTarget::Name(target),
                    },
                    signal,
                },
                FaultOp::Freeze { pid } => Fault::Freeze(pid),
                FaultOp::Thaw { pid } => Fault::Thaw(pid),
                FaultOp::Cut => Fault::Cut,
                FaultOp::Restore => Fault::Restore,
                FaultOp::Stop => Fault::Stop,
                FaultOp::Start => Fault::Start,
            };
            rt.machines.fault(&m, &f)?;
            if let Some(mm) = rt.state.machines.get_mut(&m) {
                match f {
                    Fault::Stop => mm.state = "stopped".into(),
                    Fault::Start => mm.state = "started".into(),
                    // a unit agent that cannot reach the controller starts no hooks
                    Fault::Cut if mm.state == "started" => mm.state = "cut".into(),
                    Fault::Restore if mm.state == "cut" => mm.state = "started".into(),
                    _ => {}
                }
                // its agents stop renewing leadership leases from now on
                if mm.state == "started" {
                    mm.down_since_ms = None;
                } else if mm.down_since_ms.is_none() {
                    mm.down_since_ms = Some(crate::state::now_ms());
                }
            }
            if f == Fault::Start {
                crate::juju_exec::install_wrappers_logged(rt, &m);
                // the unit agents come back after a reboot and run start again
                for u in rt
                    .state
                    .units
                    .values_mut()
                    .filter(|u| u.machine == m && u.view.started)
                {
                    u.view.started = false;
                }
            }
            Ok(Value::Null)
        }
        Request::Destroy => {
            rt.shutdown = true;
            for r in rt.running.values() {
                let _ = crate::machines::send_signal(r.pid, 9);
            }
            rt.contexts.clear();
            // dropping the callers' senders answers them with an error
            rt.execs.clear();
            rt.exec_runs.clear();
            let res = rt.machines.destroy();
            let _ = std::fs::remove_dir_all(&rt.layout.dir);
            res.map(|_| Value::Null)
        }
    }
}
