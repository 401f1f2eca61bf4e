//! The hook engine: one hook at a time per machine, the next hook of each unit decided by
//! the resolver, hook processes started with Juju's environment, buffered changes flushed
//! on exit 0, failures put the unit in error and are retried with backoff.

use crate::hookctx::HookContext;
use crate::layout::Layout;
use crate::machines::Machines;
use crate::resolver::{commit, next_op, HookKind, HookSpec};
use crate::state::{now_ms, unique_u64, ModelState, Status};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The Juju version hooks are told they run under unless `LM_JUJU_VERSION` says otherwise
/// (Settings::juju_version).
pub const JUJU_VERSION: &str = "3.6.14";

/// A hook process in flight on a machine.
#[derive(Clone, Debug)]
pub struct Running {
    pub unit: String,
    pub context_id: String,
    pub pid: u32,
    /// When the hook process started (its wall time goes to the unit's log).
    pub started: std::time::Instant,
    /// Where its output starts in the unit's log.
    pub log_from: u64,
}

/// Everything the daemon holds, behind one lock.
pub struct Runtime {
    pub state: ModelState,
    pub layout: Layout,
    pub machines: Box<dyn Machines>,
    pub contexts: HashMap<String, HookContext>,
    /// machine id -> its running hook
    pub running: BTreeMap<String, Running>,
    /// round-robin position per machine, so co-located units take turns
    pub turn: BTreeMap<String, usize>,
    /// juju-exec requests waiting for their unit's machine, oldest first
    pub execs: VecDeque<crate::juju_exec::ExecJob>,
    /// context id -> the running juju-exec's caller and where its output goes
    pub exec_runs: HashMap<String, ExecRun>,
    pub shutdown: bool,
}

/// A juju-exec command in flight.
pub struct ExecRun {
    pub reply: std::sync::mpsc::Sender<crate::protocol::ToolResponse>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// The runtime shared between the scheduler, hook waiters and socket handlers.
pub type Shared = Arc<(Mutex<Runtime>, Condvar)>;

impl Runtime {
    /// Persist the model state.
    pub fn save(&self) {
        if let Err(e) = self.state.save(&self.layout.state()) {
            eprintln!("lm: saving state: {e:#}");
        }
    }

    /// Hook runs that exited non-zero (oldest first) and the units in error now.
    pub fn failures(&self) -> crate::protocol::Failures {
        let mut failed: Vec<crate::state::HookFailure> = self
            .state
            .units
            .values()
            .flat_map(|u| u.failures.iter().cloned())
            .collect();
        failed.sort_by_key(|f| f.at_ms);
        let errors = self
            .state
            .units
            .values()
            .filter_map(|u| {
                let e = u.error.as_ref()?;
                Some(crate::protocol::UnitError {
                    unit: u.name.clone(),
                    hook: e.hook.name.clone(),
                    attempts: e.attempts,
                    same: e.same,
                    retry_scheduled: e.retry_at_ms.is_some(),
                    last_at_ms: u.failures.last().map_or(0, |f| f.at_ms),
                    message: e.message.clone(),
                    tail: e.tail.clone(),
                })
            })
            .collect();
        crate::protocol::Failures { failed, errors }
    }

    /// Units that are not settled, with the reason (executing, queued, error).
    pub fn unsettled(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (name, u) in &self.state.units {
            if let Some(r) = self.running.values().find(|r| &r.unit == name) {
                let hook = self
                    .contexts
                    .get(&r.context_id)
                    .map(|c| c.hook.name.clone())
                    .unwrap_or_default();
                v.push((name.clone(), format!("executing {hook}")));
            } else if let Some(e) = &u.error {
                let retry = if e.retry_at_ms.is_some() {
                    ", retry scheduled"
                } else {
                    ""
                };
                v.push((
                    name.clone(),
                    format!("error: hook failed: {:?}{retry}", e.hook.name),
                ));
            } else if let Some(h) = crate::resolver::meter_status_due(&self.state, name)
                .or_else(|| next_op(&self.state, name, 0))
            {
                v.push((name.clone(), format!("queued {}", h.name)));
            } else if self.execs.iter().any(|j| &j.unit == name) {
                v.push((name.clone(), "queued juju-exec".into()));
            }
        }
        v
    }
}

/// The scheduler loop: start whatever can run, then sleep until a hook ends, a request
/// changes the model, or a retry / update-status falls due.
pub fn scheduler(shared: Shared) {
    let (lock, cv) = &*shared;
    let mut rt = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if rt.shutdown {
            return;
        }
        let wake = schedule(&mut rt, &shared);
        let wait = wake
            .map(|t| t.saturating_sub(now_ms()).max(5))
            .unwrap_or(1000)
            .min(1000);
        // a panicked thread must not take the model down: keep going with the state as is
        rt = cv
            .wait_timeout(rt, Duration::from_millis(wait))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Start hooks on idle machines; returns when the next timed event is due (ms epoch).
fn schedule(rt: &mut Runtime, shared: &Shared) -> Option<u64> {
    let now = now_ms();
    let lease_ends = rt.state.move_lost_leadership(now);
    // implicit juju-info sides enter and leave scope with no hook (resolver.rs); a principal
    // that entered a container relation's scope gets its subordinate (ops.rs)
    crate::resolver::sync_implicit_scopes(&mut rt.state);
    if let Err(e) = crate::ops::ensure_subordinates(rt) {
        eprintln!("lm: adding subordinates: {e:#}");
    }
    let machines: Vec<String> = rt
        .state
        .machines
        .values()
        .filter(|m| m.state == "started")
        .map(|m| m.id.clone())
        .collect();
    // a unit removed while its juju-exec waited: the caller must not wait forever
    let (gone, keep): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut rt.execs)
        .into_iter()
        .partition(|j| !rt.state.units.contains_key(&j.unit));
    rt.execs = keep;
    for j in gone {
        let _ = j.reply.send(crate::protocol::ToolResponse {
            stdout: String::new(),
            stderr: format!("ERROR unit {:?} was removed\n", j.unit),
            code: 1,
        });
    }
    // a forced refresh reaches units in hook error between two runs of their failed hook
    // (resolver.rs forced_upgrade); it takes no machine lock (operation/deploy.go:
    // DoesNotRequireMachineLock), only the unit's own hook must not be running
    let forced: Vec<String> = rt
        .state
        .units
        .keys()
        .filter(|u| crate::resolver::forced_upgrade(&rt.state, u))
        .filter(|u| !rt.running.values().any(|r| &r.unit == *u))
        .cloned()
        .collect();
    for u in forced {
        if let Err(e) = deploy_charm(rt, &u, true) {
            append_unit_log(rt, &u, &format!("ERROR upgrading the charm: {e:#}"));
        }
    }
    for m in machines {
        if rt.running.contains_key(&m) {
            continue;
        }
        // a waiting juju-exec goes first: in Juju it takes the machine's hook lock as soon
        // as the running hook releases it
        if let Some(i) = rt
            .execs
            .iter()
            .position(|j| rt.state.units.get(&j.unit).is_some_and(|u| u.machine == m))
        {
            let job = rt.execs.remove(i).expect("position is in range");
            start_exec(rt, shared, job);
            continue;
        }
        let units: Vec<String> = rt
            .state
            .units
            .values()
            .filter(|u| u.machine == m)
            .map(|u| u.name.clone())
            .collect();
        if units.is_empty() {
            continue;
        }
        let start = *rt.turn.get(&m).unwrap_or(&0);
        for i in 0..units.len() {
            let unit = &units[(start + i) % units.len()];
            // the meter status worker takes the machine lock like the uniter does
            let due = crate::resolver::meter_status_due(&rt.state, unit)
                .or_else(|| next_op(&rt.state, unit, now));
            if let Some(h) = due {
                rt.turn.insert(m.clone(), (start + i + 1) % units.len());
                start_hook(rt, shared, unit.clone(), h);
                break;
            }
        }
    }
    let mut next: Option<u64> = None;
    let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
    if let Some(t) = lease_ends {
        consider(t);
    }
    for u in rt.state.units.values() {
        if let Some(t) = u.error.as_ref().and_then(|e| e.retry_at_ms) {
            consider(t);
        } else if u.view.started && rt.state.settings.update_status_ms > 0 {
            consider(u.view.last_update_status_ms + rt.state.settings.update_status_ms);
        }
    }
    next
}

fn hook_env(rt: &Runtime, ctx: &HookContext, unit: &crate::state::Unit) -> Vec<(String, String)> {
    let charm_dir = rt.machines.unit_path(&unit.machine, &unit.charm_dir());
    let h = &ctx.hook;
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    if h.kind == HookKind::MeterStatusChanged {
        // internal/worker/meterstatus/context.go limitedContext.HookVars: the charm dir, the
        // context id, the agent socket and the unit's name, which is its tag there
        // (runner.go RunHook: unitName: unitTag.String()); runner.go RunHook adds the meter
        // status; runner/runner.go the dispatch path; context.OSDependentEnvVars the rest.
        // No JUJU_VERSION, model, machine or hook name.
        let (code, info) = crate::resolver::METER_STATUS;
        let env: Vec<(&str, String)> = vec![
            ("CHARM_DIR", charm_dir.clone()),
            ("JUJU_CHARM_DIR", charm_dir),
            ("JUJU_CONTEXT_ID", ctx.id.clone()),
            (
                "JUJU_AGENT_SOCKET_ADDRESS",
                rt.layout.agent_sock().display().to_string(),
            ),
            ("JUJU_AGENT_SOCKET_NETWORK", "unix".into()),
            ("JUJU_UNIT_NAME", unit.tag()),
            ("JUJU_METER_STATUS", code.into()),
            ("JUJU_METER_INFO", info.into()),
            ("JUJU_DISPATCH_PATH", h.dispatch_path()),
            ("PATH", format!("{}:{}", rt.layout.tools().display(), path)),
            ("APT_LISTCHANGES_FRONTEND", "none".into()),
            ("DEBIAN_FRONTEND", "noninteractive".into()),
            ("LANG", "C.UTF-8".into()),
            ("TERM", "tmux-256color".into()),
        ];
        return env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    }
    let mut env: Vec<(&str, String)> = vec![
        ("CHARM_DIR", charm_dir.clone()),
        ("JUJU_CHARM_DIR", charm_dir),
        ("JUJU_CONTEXT_ID", ctx.id.clone()),
        (
            "JUJU_HOOK_NAME",
            if matches!(h.kind, HookKind::Action | HookKind::Exec) {
                String::new()
            } else {
                h.name.clone()
            },
        ),
        (
            "JUJU_AGENT_SOCKET_ADDRESS",
            rt.layout.agent_sock().display().to_string(),
        ),
        ("JUJU_AGENT_SOCKET_NETWORK", "unix".into()),
        ("JUJU_UNIT_NAME", unit.name.clone()),
        ("JUJU_MODEL_UUID", rt.state.uuid.clone()),
        ("JUJU_MODEL_NAME", rt.state.name.clone()),
        ("JUJU_API_ADDRESSES", "127.0.0.1:17070".into()),
        ("JUJU_MACHINE_ID", unit.machine.clone()),
        (
            "JUJU_PRINCIPAL_UNIT",
            unit.principal.clone().unwrap_or_default(),
        ),
        ("JUJU_AVAILABILITY_ZONE", String::new()),
        ("JUJU_VERSION", rt.state.settings.juju_version.clone()),
        ("CLOUD_API_VERSION", String::new()),
        ("JUJU_CHARM_HTTP_PROXY", String::new()),
        ("JUJU_CHARM_HTTPS_PROXY", String::new()),
        ("JUJU_CHARM_FTP_PROXY", String::new()),
        ("JUJU_CHARM_NO_PROXY", String::new()),
        ("JUJU_SLA", "unsupported".into()),
        ("PATH", format!("{}:{}", rt.layout.tools().display(), path)),
        ("APT_LISTCHANGES_FRONTEND", "none".into()),
        ("DEBIAN_FRONTEND", "noninteractive".into()),
        ("LANG", "C.UTF-8".into()),
        ("TERM", "tmux-256color".into()),
    ];
    // juju-exec: the command sets JUJU_DISPATCH_PATH itself when it runs a hook
    if h.kind != HookKind::Exec {
        env.push(("JUJU_DISPATCH_PATH", h.dispatch_path()));
    }
    if let Some(r) = h.relation {
        env.push(("JUJU_RELATION", h.endpoint.clone()));
        env.push(("JUJU_RELATION_ID", format!("{}:{}", h.endpoint, r)));
        env.push(("JUJU_REMOTE_APP", h.remote_app.clone()));
        env.push(("JUJU_REMOTE_UNIT", h.remote_unit.clone()));
        if h.kind == HookKind::RelationDeparted {
            env.push(("JUJU_DEPARTING_UNIT", h.departing.clone()));
        }
    }
    if let Some(a) = h.action {
        env.push(("JUJU_ACTION_NAME", h.name.clone()));
        env.push(("JUJU_ACTION_UUID", a.to_string()));
        env.push(("JUJU_ACTION_TAG", format!("action-{a}")));
    }
    if let Some(x) = &h.secret {
        let label = rt.state.secrets.get(x).and_then(|s| {
            s.consumers
                .get(&unit.name)
                .and_then(|c| c.label.clone())
                .or(s.label.clone())
        });
        // the uniter's secret watchers give URIs parsed from the bare id stored with the
        // consumer (state/secrets.go consumedSecretsWatcher: ParseURI(id).String()), so no
        // model UUID: secret:<id>, unlike what secret-add prints
        env.push(("JUJU_SECRET_ID", format!("secret:{x}")));
        env.push(("JUJU_SECRET_LABEL", label.unwrap_or_default()));
        if h.kind == HookKind::SecretRemove {
            env.push(("JUJU_SECRET_REVISION", h.snapshot.to_string()));
        }
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn action_out(rt: &Runtime, id: u32, stream: &str) -> PathBuf {
    rt.layout.logs().join(format!("action-{id}.{stream}"))
}

fn new_context(rt: &Runtime, u: &crate::state::Unit, h: &HookSpec, id_name: &str) -> HookContext {
    let m = rt.state.machines.get(&u.machine);
    HookContext {
        id: format!("{}-{}-{}", u.name, id_name, unique_u64()),
        unit: u.name.clone(),
        hook: h.clone(),
        root: if rt.state.substrate == crate::state::Substrate::Bare {
            rt.machines.unit_path(&u.machine, "")
        } else {
            String::new()
        },
        ip: m.map(|m| m.ip.clone()).unwrap_or_default(),
        cidr: m.map(|m| m.cidr.clone()).unwrap_or_default(),
        log_path: rt.layout.unit_log(&u.name),
        reads: Default::default(),
        rel_writes: Default::default(),
        ports: vec![],
        state_writes: Default::default(),
        secret_ops: vec![],
        status_read: None,
        config: None,
    }
}

fn append_unit_log(rt: &Runtime, unit: &str, line: &str) {
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(rt.layout.unit_log(unit))
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

/// How the unit log names a run: `<name> hook`, `<name> action`, or a juju-exec's name.
fn log_label(h: &HookSpec) -> String {
    match h.kind {
        HookKind::Action => format!("{} action", h.name),
        HookKind::Exec => h.name.clone(),
        _ => format!("{} hook", h.name),
    }
}

/// The name a juju-exec run has in logs and `lm status`.
fn exec_name(command: &str) -> String {
    let short: String = command.chars().take(60).collect();
    let more = if command.chars().count() > 60 {
        "..."
    } else {
        ""
    };
    format!("juju-exec: {short}{more}")
}

/// Start a juju-exec command: `bash -c <command>` in the charm dir with a hook context
/// and a hook's environment, holding the machine like a hook does. The agent status is
/// left alone (Juju does not report juju-exec runs there either).
fn start_exec(rt: &mut Runtime, shared: &Shared, job: crate::juju_exec::ExecJob) {
    let Some(u) = rt.state.units.get(&job.unit).cloned() else {
        return;
    };
    let h = HookSpec::simple(HookKind::Exec, &exec_name(&job.command));
    let ctx = new_context(rt, &u, &h, "juju-exec");
    let id = ctx.id.clone();
    let env = hook_env(rt, &ctx, &u);
    let charm_dir = rt.machines.unit_path(&u.machine, &u.charm_dir());
    let stdout = rt
        .layout
        .logs()
        .join(format!("{id}.stdout").replace('/', "-"));
    let stderr = rt
        .layout
        .logs()
        .join(format!("{id}.stderr").replace('/', "-"));
    append_unit_log(
        rt,
        &u.name,
        &format!("INFO {} running {}", u.name, log_label(&h)),
    );
    let spawned: Result<Child> = (|| {
        let mut cmd = rt.machines.command(&u.machine, "/bin/bash", &charm_dir)?;
        cmd.args(["-c", &job.command])
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        cmd.spawn().context("starting /bin/bash")
    })();
    rt.exec_runs.insert(
        id.clone(),
        ExecRun {
            reply: job.reply,
            stdout,
            stderr,
        },
    );
    rt.contexts.insert(id.clone(), ctx);
    match spawned {
        Ok(child) => {
            rt.running.insert(
                u.machine.clone(),
                Running {
                    unit: u.name.clone(),
                    context_id: id.clone(),
                    pid: child.id(),
                    started: std::time::Instant::now(),
                    log_from: 0,
                },
            );
            let shared2 = shared.clone();
            std::thread::spawn(move || wait_hook(shared2, child, id));
        }
        Err(e) => {
            append_unit_log(rt, &u.name, &format!("ERROR {}: {e:#}", h.name));
            if let Some(r) = rt.exec_runs.get(&id) {
                let _ = std::fs::write(&r.stderr, format!("ERROR {e:#}\n"));
            }
            finish_hook(rt, &id, 1);
        }
    }
}

/// A juju-exec command ended: keep its buffered changes only on exit 0 (status-set applied at
/// once and stays, as in Juju), and answer the caller.
/// The unit's error state, hook counters and uniter view are not touched: a command's
/// failure is its caller's business, and it is not a hook the resolver decided.
fn finish_exec(rt: &mut Runtime, ctx: HookContext, code: i32) {
    let Some(run) = rt.exec_runs.remove(&ctx.id) else {
        return;
    };
    if code == 0 {
        ctx.flush(&mut rt.state);
        rt.state.queue_secret_removals();
    }
    let read = |p: &PathBuf| {
        let s = std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    let _ = run.reply.send(crate::protocol::ToolResponse {
        stdout: read(&run.stdout),
        stderr: read(&run.stderr),
        // killed by a signal: the shell's convention, not a negative code
        code: if code < 0 { 1 } else { code },
    });
    rt.save();
}

/// The upgrade operation: unpack the application's current charm (and resources) into the
/// unit's charm dir and record it (operation/deploy.go Prepare/Execute: the deployer stages
/// and deploys the charm before upgrade-charm is queued; resolver.rs commit_deploy).
fn deploy_charm(rt: &mut Runtime, unit: &str, forced: bool) -> Result<()> {
    let Some(u) = rt.state.units.get(unit).cloned() else {
        return Ok(());
    };
    let rev = rt.state.applications[&u.app].charm_revision;
    crate::ops::install_unit_files(rt, &u)?;
    crate::resolver::commit_deploy(&mut rt.state, unit, forced);
    let how = match (&u.error, forced) {
        (Some(e), true) => format!(" (forced; {:?} stays in error)", e.hook.name),
        _ => String::new(),
    };
    append_unit_log(
        rt,
        unit,
        &format!("INFO {unit} upgraded its charm to revision {rev}{how}"),
    );
    rt.save();
    Ok(())
}

/// Start `h` for `unit`: mark it executing, build its context, spawn `dispatch` (or the
/// legacy `hooks/<name>`), and hand the child to a waiter thread.
fn start_hook(rt: &mut Runtime, shared: &Shared, unit: String, h: HookSpec) {
    // upgrade-charm runs the new charm: the upgrade operation deploys it first (once: a
    // retry of a failed upgrade-charm finds it deployed)
    if h.kind == HookKind::UpgradeCharm
        && rt
            .state
            .units
            .get(&unit)
            .is_some_and(|u| u.view.charm_deployed < h.snapshot)
    {
        if let Err(e) = deploy_charm(rt, &unit, false) {
            append_unit_log(rt, &unit, &format!("ERROR upgrading the charm: {e:#}"));
        }
    }
    let Some(u) = rt.state.units.get(&unit).cloned() else {
        return;
    };
    let ctx = new_context(rt, &u, &h, &h.name);
    // the meter status worker reports nothing in the unit's agent status
    if let Some(uu) = rt
        .state
        .units
        .get_mut(&unit)
        .filter(|_| h.kind != HookKind::MeterStatusChanged)
    {
        uu.agent = "executing".into();
        uu.agent_message = if h.kind == HookKind::Action {
            format!("running action {}", h.name)
        } else {
            format!("running {} hook", h.name)
        };
        if h.kind == HookKind::Install && !uu.status_ever_set {
            uu.workload = Status::new("maintenance", "installing charm");
        }
    }
    if let Some(a) = h.action.and_then(|a| rt.state.actions.get_mut(&a)) {
        a.status = "running".into();
    }
    let env = hook_env(rt, &ctx, &u);
    let charm_dir_host = rt.machines.host_path(&u.machine, &u.charm_dir());
    let charm_dir_unit = rt.machines.unit_path(&u.machine, &u.charm_dir());
    // Juju: dispatch if present (even if not executable: that fails), else hooks/<name>,
    // else the hook is skipped as if it succeeded (a missing action handler fails).
    let program = if charm_dir_host.join("dispatch").symlink_metadata().is_ok() {
        Some(format!("{charm_dir_unit}/dispatch"))
    } else if h.kind != HookKind::Action && charm_dir_host.join("hooks").join(&h.name).exists() {
        Some(format!("{charm_dir_unit}/hooks/{}", h.name))
    } else {
        None
    };
    let id = ctx.id.clone();
    rt.contexts.insert(id.clone(), ctx);
    let spawned: Result<(Child, u64)> = (|| {
        let program = program.ok_or_else(|| anyhow::anyhow!("missing"))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(rt.layout.unit_log(&unit))?;
        {
            use std::io::Write;
            let _ = writeln!(log, "INFO {unit} running {}", log_label(&h));
        }
        let log_from = log.metadata().map_or(0, |m| m.len());
        let (out, err) = match h.action {
            Some(a) => (
                std::fs::File::create(action_out(rt, a, "stdout"))?,
                std::fs::File::create(action_out(rt, a, "stderr"))?,
            ),
            None => (log.try_clone()?, log),
        };
        let mut cmd = rt.machines.command(&u.machine, &program, &charm_dir_unit)?;
        cmd.env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().with_context(|| format!("starting {program}"))?;
        Ok((child, log_from))
    })();
    match spawned {
        Ok((child, log_from)) => {
            rt.running.insert(
                u.machine.clone(),
                Running {
                    unit: unit.clone(),
                    context_id: id.clone(),
                    pid: child.id(),
                    started: std::time::Instant::now(),
                    log_from,
                },
            );
            let shared2 = shared.clone();
            std::thread::spawn(move || wait_hook(shared2, child, id));
        }
        Err(e) if e.to_string() == "missing" => {
            // nothing to run: success for hooks, failure for actions
            let code = if h.kind == HookKind::Action { -2 } else { 0 };
            finish_hook(rt, &id, code);
        }
        Err(e) => {
            append_unit_log(rt, &unit, &format!("ERROR {} hook: {e:#}", h.name));
            finish_hook(rt, &id, -1);
        }
    }
}

fn wait_hook(shared: Shared, mut child: Child, id: String) {
    let code = match child.wait() {
        Ok(s) => s.code().unwrap_or(-1),
        Err(_) => -1,
    };
    let (lock, cv) = &*shared;
    let mut rt = lock.lock().unwrap_or_else(|e| e.into_inner());
    finish_hook(&mut rt, &id, code);
    cv.notify_all();
}

/// Lines of a failed hook's output kept for reports.
pub const TAIL_LINES: usize = 10;

/// What a hook run wrote to its unit's log from `from` on, without the hook-tool call lines
/// (`DEBUG <hook> tool ...`): its own output and juju-log lines.
fn hook_output(rt: &Runtime, unit: &str, from: u64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(rt.layout.unit_log(unit)) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("DEBUG "))
        .map(String::from)
        .collect()
}

/// Backoff before retry number `attempts` (1-based): base * 2^(n-1), capped.
pub fn backoff_ms(base: u64, max: u64, attempts: u32) -> u64 {
    base.saturating_mul(1u64 << (attempts.saturating_sub(1)).min(20))
        .min(max.max(base))
}

/// A hook process ended with `code`: flush or fail, record what it saw, persist.
pub fn finish_hook(rt: &mut Runtime, context_id: &str, code: i32) {
    let Some(ctx) = rt.contexts.remove(context_id) else {
        return;
    };
    // runner.go RunHook: a hook that exited 0 fails all the same when its changes cannot be
    // committed (HookContext::commit_error).
    let code = match ctx.commit_error(&rt.state).filter(|_| code == 0) {
        Some(why) => {
            append_unit_log(rt, &ctx.unit, &format!("ERROR {why}"));
            1
        }
        None => code,
    };
    // What a failed hook printed, before the line below follows it.
    let output = match rt.running.values().find(|r| r.context_id == context_id) {
        Some(r) if code != 0 && !matches!(ctx.hook.kind, HookKind::Action | HookKind::Exec) => {
            hook_output(rt, &ctx.unit, r.log_from)
        }
        _ => Vec::new(),
    };
    // The hook's wall time, for `make bench` and for people reading the log.
    if let Some(r) = rt.running.values().find(|r| r.context_id == context_id) {
        append_unit_log(
            rt,
            &ctx.unit,
            &format!(
                "INFO {} ran {} in {} ms (exit {code})",
                ctx.unit,
                log_label(&ctx.hook),
                r.started.elapsed().as_millis()
            ),
        );
    }
    rt.running.retain(|_, r| r.context_id != context_id);
    if ctx.hook.kind == HookKind::Exec {
        finish_exec(rt, ctx, code);
        return;
    }
    let unit = ctx.unit.clone();
    let h = ctx.hook.clone();
    let now = now_ms();
    if h.kind == HookKind::MeterStatusChanged {
        // meterstatus/connected.go Handle stores the status it ran the hook for whatever the
        // hook did; a failure is only logged (runner.go RunHook): no error state, no retry,
        // nothing flushed (limitedContext.Flush). Kept in the failures for the tests' reports.
        let (code_s, info) = crate::resolver::METER_STATUS;
        if let Some(u) = rt.state.units.get_mut(&unit) {
            u.meter_status_seen = format!("{code_s} {info}");
            if code != 0 {
                u.failures.push(crate::state::HookFailure {
                    unit: unit.clone(),
                    hook: h.name.clone(),
                    code,
                    at_ms: now,
                    message: output
                        .last()
                        .cloned()
                        .unwrap_or_else(|| format!("exit {code}, nothing printed")),
                });
                let extra = u.failures.len().saturating_sub(crate::state::KEPT_FAILURES);
                u.failures.drain(..extra);
            }
        }
        rt.save();
        return;
    }
    if h.kind == HookKind::Action {
        let id = h.action.unwrap_or_default();
        let read = |s: &str| {
            std::fs::read(action_out(rt, id, s))
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (read("stdout"), read("stderr"));
        if code == 0 {
            ctx.flush(&mut rt.state);
            rt.state.queue_secret_removals();
        }
        if let Some(run) = rt.state.actions.get_mut(&id) {
            if code == -2 {
                run.status = "failed".into();
                run.message = "action not implemented on unit".into();
            } else {
                run.results.insert("return-code".into(), json!(code));
                if !stdout.is_empty() {
                    run.results.insert("stdout".into(), json!(stdout));
                }
                if !stderr.is_empty() {
                    run.results.insert("stderr".into(), json!(stderr));
                }
                if run.status != "failed" {
                    if code == 0 {
                        run.status = "completed".into();
                    } else {
                        run.status = "failed".into();
                        run.message = format!("exit status {code}");
                    }
                }
            }
        }
        commit(&mut rt.state, &unit, &h, now);
        if let Some(u) = rt.state.units.get_mut(&unit) {
            match &u.error {
                Some(e) => {
                    u.agent = "error".into();
                    u.agent_message = format!("hook failed: {:?}", e.hook.name);
                }
                None => {
                    u.agent = "idle".into();
                    u.agent_message.clear();
                }
            }
        }
        rt.save();
        return;
    }
    if code == 0 {
        ctx.flush(&mut rt.state);
        rt.state.queue_secret_removals();
        if let Some(u) = rt.state.units.get_mut(&unit) {
            u.error = None;
            u.agent = "idle".into();
            u.agent_message.clear();
            u.hooks_run += 1;
            u.hook_log.push(h.name.clone());
        }
        let gone = commit(&mut rt.state, &unit, &h, now);
        if gone {
            remove_empty_machines(rt);
        }
        crate::resolver::collect_relations(&mut rt.state);
        // a principal's relation-created put it in scope: its subordinate appears now
        crate::resolver::sync_implicit_scopes(&mut rt.state);
        if let Err(e) = crate::ops::ensure_subordinates(rt) {
            eprintln!("lm: adding subordinates: {e:#}");
        }
    } else {
        let (base, max) = (
            rt.state.settings.retry_base_ms,
            rt.state.settings.retry_max_ms,
        );
        if let Some(u) = rt.state.units.get_mut(&unit) {
            let attempts = u.error.as_ref().map_or(0, |e| e.attempts) + 1;
            let message = output
                .last()
                .cloned()
                .unwrap_or_else(|| format!("exit {code}, nothing printed"));
            let same = match &u.error {
                Some(e) if e.hook.name == h.name && e.message == message => e.same + 1,
                _ => 1,
            };
            u.hooks_run += 1;
            u.hook_log.push(format!("{} (failed)", h.name));
            u.agent = "error".into();
            u.agent_message = format!("hook failed: {:?}", h.name);
            u.failures.push(crate::state::HookFailure {
                unit: unit.clone(),
                hook: h.name.clone(),
                code,
                at_ms: now,
                message: message.clone(),
            });
            let extra = u.failures.len().saturating_sub(crate::state::KEPT_FAILURES);
            u.failures.drain(..extra);
            u.error = Some(crate::state::HookError {
                hook: h,
                attempts,
                retry_at_ms: (base > 0).then(|| now + backoff_ms(base, max, attempts)),
                message,
                tail: output[output.len().saturating_sub(TAIL_LINES)..].to_vec(),
                same,
            });
        }
    }
    rt.save();
}

/// Machines without units are removed (Juju removes a unit's machine with it).
pub fn remove_empty_machines(rt: &mut Runtime) {
    let empty: Vec<String> = rt
        .state
        .machines
        .keys()
        .filter(|m| !rt.state.units.values().any(|u| &u.machine == *m))
        .cloned()
        .collect();
    for m in empty {
        if let Err(e) = rt.machines.remove(&m) {
            eprintln!("lm: removing machine {m}: {e:#}");
        }
        rt.state.machines.remove(&m);
    }
}
