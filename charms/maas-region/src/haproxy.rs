//! haproxy in front of every region: which regions this unit's haproxy balances over (all of
//! them but those draining before a refresh), its configuration checked by haproxy before it
//! replaces the live one, and the drain requests it has applied, published for the region
//! that waits on them.

use crate::config::InstallMethod;
use crate::peers::{Drained, LockValue};
use crate::reconcile::{update_mine, Cache, Inputs};
use crate::render::{self, Backend, HaproxyOptions};
use charm_lib::{Cmd, Context, FileOptions, MachineExt, ServiceOp, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Live haproxy configuration.
pub const CFG: &str = "/etc/haproxy/haproxy.cfg";
/// Where a new haproxy configuration is checked before it replaces the live one.
pub const CANDIDATE: &str = "/etc/haproxy/haproxy.cfg.candidate";
/// What this unit's haproxy should be, from the inputs alone.
pub(crate) enum Wanted {
    /// haproxy is off: the one this charm installed goes.
    Off,
    /// No region has an address to balance over yet.
    NoAddress,
    /// This configuration; `gone` are the regions it leaves out (draining before their
    /// refresh), `drained` the drain requests it applies, acknowledged once it serves.
    Serve {
        text: String,
        gone: Vec<String>,
        drained: BTreeSet<LockValue>,
    },
}

/// Derives [`Wanted`]: every region with an address, less those draining (`my_drain` is this
/// unit's own request as this hook has left it).
pub(crate) fn wanted(i: &Inputs, my_drain: Option<&LockValue>) -> Wanted {
    if !i.cfg.haproxy {
        return Wanted::Off;
    }
    let mut backends: Vec<Backend> = i
        .peers
        .iter()
        .filter_map(|p| p.address.as_deref().map(|a| Backend::for_unit(&p.unit, a)))
        .collect();
    if let Some(a) = &i.address {
        backends.push(Backend::for_unit(&i.me, a));
    }
    if backends.is_empty() {
        return Wanted::NoAddress;
    }
    let (serving, drained) = drain_view(i, my_drain, &backends);
    // A region about to refresh hands the VIP over as a leaving one does: its check listener
    // closes, so keepalived moves the VIP before MAAS stops here rather than after a failed
    // agent-port check, and this haproxy meanwhile answers over the others.
    let me = Backend::for_unit(&i.me, "").name;
    let handing_over = my_drain.is_some() && !serving.iter().any(|b| b.name == me);
    let text = render::haproxy_cfg(
        &serving,
        HaproxyOptions {
            tls: i.cfg.tls_enabled,
            draining: handing_over,
        },
    );
    let gone = backends
        .iter()
        .filter(|b| !serving.contains(b))
        .map(|b| b.name.clone())
        .collect();
    Wanted::Serve {
        text,
        gone,
        drained,
    }
}

/// Brings haproxy to [`wanted`]: the file checked by haproxy before it replaces the live one
/// and haproxy reloads, then the drains it applied acknowledged. A refused file leaves the
/// running haproxy untouched and blocks the unit.
pub(crate) fn apply(ctx: &Context, i: &Inputs, c: &mut Cache) -> anyhow::Result<Option<Status>> {
    let deb = i.cfg.install_method == InstallMethod::Deb;
    let wanted = wanted(i, c.mine.drain.as_ref());
    if matches!(wanted, Wanted::Off) {
        if std::mem::take(&mut c.stored.haproxy).0 {
            ctx.machine.retire_service("haproxy")?;
            if deb {
                // Port 80 goes back to the package's own redirect.
                ctx.machine.ensure_service("apache2", false)?;
            }
        }
        return Ok(None);
    }
    if deb && ctx.machine.service_is_active("apache2")? {
        // The seed's step: apache2 (the package's port 80 redirect) must leave port 80 to haproxy.
        ctx.machine.service(ServiceOp::Stop, "apache2")?;
        ctx.machine.service(ServiceOp::Disable, "apache2")?;
    }
    let Wanted::Serve {
        text,
        gone,
        drained,
    } = wanted
    else {
        return Ok(Some(Status::waiting(
            "waiting for a network address for haproxy",
        )));
    };
    if let Some(s) = write_checked(ctx, &text)? {
        return Ok(Some(s));
    }
    if !gone.is_empty() && !dropped(ctx, &gone)? {
        log::warn!(
            "haproxy still lists {} {}s after its reload; acknowledging the drain all the same",
            gone.join(", "),
            RELOAD_WAIT_S
        );
    }
    // What a refreshing region waits for before it stops MAAS.
    update_mine(ctx, c, |m| m.drained = Drained(drained))?;
    Ok(None)
}

/// The configuration of a leaving region's haproxy, from the live one: every region it
/// balanced but itself (`unit`), and no listener for the VIP's check; with how many regions
/// it goes on serving over.
pub(crate) fn leaving(live: &str, unit: &str) -> (String, usize) {
    let me = Backend::for_unit(unit, "").name;
    let all = render::haproxy_backends(live);
    let others: Vec<Backend> = all.iter().filter(|b| b.name != me).cloned().collect();
    let text = render::haproxy_cfg(
        // The last region has nowhere else to send anyone.
        if others.is_empty() { &all } else { &others },
        HaproxyOptions {
            tls: live.contains("\nfrontend maas_https\n"),
            draining: true,
        },
    );
    (text, others.len())
}

/// The regions this haproxy balances over, and the drain requests that leaves out: every
/// region that holds the lock to refresh (`refresh-drain`), this one included, unless
/// nobody would be left to serve.
fn drain_view(
    i: &Inputs,
    my_drain: Option<&LockValue>,
    backends: &[Backend],
) -> (Vec<Backend>, BTreeSet<LockValue>) {
    let mut out = BTreeMap::new();
    for p in &i.peers {
        if let Some(d) = &p.drain {
            out.insert(Backend::for_unit(&p.unit, "").name, d.clone());
        }
    }
    if let Some(d) = my_drain {
        out.insert(Backend::for_unit(&i.me, "").name, d.clone());
    }
    let serving: Vec<Backend> = backends
        .iter()
        .filter(|b| !out.contains_key(&b.name))
        .cloned()
        .collect();
    if serving.is_empty() {
        return (backends.to_vec(), BTreeSet::new());
    }
    let drained = out
        .into_iter()
        .filter(|(name, _)| backends.iter().any(|b| &b.name == name))
        .map(|(_, d)| d)
        .collect();
    (serving, drained)
}

/// How long a region waits for its reloaded haproxy to stop listing drained servers.
const RELOAD_WAIT_S: u32 = 10;

/// Whether the running haproxy no longer has any of `servers` (waiting
/// [`RELOAD_WAIT_S`] at most): `systemctl reload` returns once the reload is asked for,
/// and the previous process goes on taking new connections until the new one is ready. The
/// new process's exporter ([`render::HAPROXY_METRICS_PORT`], one series per server, labelled
/// `server`) answering without them is the new configuration serving.
fn dropped(ctx: &Context, servers: &[String]) -> anyhow::Result<bool> {
    let mut absent = String::new();
    for s in servers {
        absent.push_str(&format!(
            " && ! printf '%s' \"$m\" | grep -qF 'server=\"{s}\"'"
        ));
    }
    let probe = format!(
        "until m=$(curl -sf --max-time 2 http://127.0.0.1:{}/metrics){absent}; do sleep 0.2; done",
        render::HAPROXY_METRICS_PORT
    );
    Ok(ctx
        .machine
        .run(
            &Cmd::new(
                "timeout",
                [RELOAD_WAIT_S.to_string(), "sh".into(), "-c".into(), probe],
            )
            .allow_failure(),
        )?
        .success())
}

/// Has haproxy check `text`, and only then replaces the live file and reloads (starts a
/// haproxy that is not running). A refused file leaves the running haproxy untouched: the
/// Blocked status says why.
pub(crate) fn write_checked(ctx: &Context, text: &str) -> anyhow::Result<Option<Status>> {
    let live = ctx.machine.read_to_string(Path::new(CFG))?;
    let mut changed = false;
    if live.as_deref() != Some(text) {
        let candidate = Path::new(CANDIDATE);
        ctx.machine
            .write_file(candidate, text.as_bytes(), &FileOptions::root(0o644))?;
        let check = ctx
            .machine
            .run(&Cmd::new("haproxy", ["-c", "-f", CANDIDATE]).allow_failure())?;
        ctx.machine.remove_file(candidate)?;
        if !check.success() {
            let why = if check.stderr.trim().is_empty() {
                check.stdout.trim()
            } else {
                check.stderr.trim()
            };
            let last = why
                .lines()
                .rev()
                .find(|l| l.contains("ALERT"))
                .or(why.lines().last())
                .unwrap_or("no output");
            log::error!(
                "haproxy refused the rendered configuration, the running one is kept: {why}"
            );
            return Ok(Some(Status::blocked(format!(
                "haproxy refused the generated configuration (kept the running one): {last}"
            ))));
        }
        changed =
            ctx.machine
                .write_file(Path::new(CFG), text.as_bytes(), &FileOptions::root(0o644))?;
    }
    ctx.machine.service(ServiceOp::Enable, "haproxy")?;
    if !ctx.machine.service_is_active("haproxy")? {
        ctx.machine.service(ServiceOp::Start, "haproxy")?;
    } else if changed {
        ctx.machine.service(ServiceOp::Reload, "haproxy")?;
    }
    Ok(None)
}
