//! One pass from the whole model to the wanted host state: validate, plan, render, check,
//! apply the difference, report.

use crate::claims::{self, Claim};
use crate::config::{self, Config};
use crate::net::{self, Cidr, Interface};
use crate::paths::Paths;
use crate::relations::{self, PrincipalWish, Principals};
use crate::render::{self, Placement, ScriptCheck, Unicast, Vrrp};
use crate::workload;
use charm_lib::{Cmd, Context, MachineExt, Status};
// What the principal is told about this unit.
use contracts::vip::VipState;
use std::net::IpAddr;

/// Blocked: nothing is rendered and the running keepalived keeps what it has.
fn block(ctx: &mut Context, vips: &[Cidr], why: impl Into<String>) -> anyhow::Result<()> {
    ctx.status(Status::blocked(why));
    relations::publish_principal(ctx, vips, VipState::Blocked)
}

/// "VIP 10.0.0.100/24" or "VIPs 10.0.0.100/24, fd00::100/64".
fn vip_label(vips: &[Cidr]) -> String {
    let list = vips
        .iter()
        .map(Cidr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if vips.len() == 1 {
        format!("VIP {list}")
    } else {
        format!("VIPs {list}")
    }
}

/// The host's interfaces, from `ip -j addr show`.
pub fn interfaces(ctx: &Context) -> anyhow::Result<Vec<Interface>> {
    let out = ctx.machine.run(&Cmd::new("ip", ["-j", "addr", "show"]))?;
    net::parse_ip_addr(&out.stdout)
}

/// Where the VIPs go: the VRRP interface and each VIP's device. `Err(reason)` to block.
fn place(
    cfg: &Config,
    ifaces: &[Interface],
    exclude: &[IpAddr],
) -> Result<(String, Vec<Placement>), String> {
    let names = || {
        ifaces
            .iter()
            .filter(|i| !i.loopback)
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let vrrp_iface = match &cfg.interface {
        Some(n) => match ifaces.iter().find(|i| &i.name == n) {
            Some(i) if i.loopback => return Err(format!("interface {n} is a loopback interface; VRRP cannot run on it")),
            Some(_) => n.clone(),
            None => return Err(format!("interface {n} not found on this host (found: {})", names())),
        },
        None => match net::home_interface(ifaces, cfg.vips[0].addr, exclude) {
            Some(i) => i.name.clone(),
            None => {
                return Err(format!(
                    "vip {} is not in the subnet of any interface of this host ({}); use a VIP in a local subnet or set interface",
                    cfg.vips[0],
                    names()
                ))
            }
        },
    };
    let mut placements = Vec::new();
    for v in &cfg.vips {
        let dev = match net::home_interface(ifaces, v.addr, exclude) {
            Some(i) => i.name.clone(),
            None if cfg.interface.is_some() => vrrp_iface.clone(),
            None => return Err(format!("vip {v} is not in the subnet of any interface of this host ({}); use a VIP in a local subnet or set interface", names())),
        };
        placements.push(Placement { cidr: *v, dev });
    }
    Ok((vrrp_iface, placements))
}

/// Health checks from the principals (at their interval, else the option's) and from the
/// `check` option, without duplicates.
fn script_checks(cfg: &Config, wishes: &[PrincipalWish]) -> Vec<ScriptCheck> {
    let mut out: Vec<ScriptCheck> = Vec::new();
    let from_principals = wishes.iter().flat_map(|w| {
        w.checks
            .iter()
            .map(move |c| (c, w.interval.unwrap_or(cfg.check_interval)))
    });
    let from_config = cfg.checks.iter().map(|c| (c, cfg.check_interval));
    for (c, interval) in from_principals.chain(from_config) {
        if !out.iter().any(|s| &s.check == c) {
            out.push(ScriptCheck {
                check: c.clone(),
                interval,
                fall: cfg.check_fall,
            });
        }
    }
    out
}

/// The addresses to send unicast adverts to: the live peers, or, when the last one has left,
/// the last peers this unit had.
///
/// keepalived keeps an instance's state over a reload only if it is the same instance: same
/// virtual router id, family, interface and, for unicast, the same source address; switching
/// between unicast and multicast makes it another instance (keepalived 2.2.7, vrrp.c
/// `vrrp_exist`, used by `clear_diff_vrrp`). The old one is deleted (the holder sends a
/// priority-0 advert and removes the VIP) and the new one starts in BACKUP and takes the VIP
/// only after a master-down interval. keepalived has no unicast without peers (vrrp.c
/// `vrrp_complete_instance`: multicast, or FAULT with `unicast_fault_no_peer`), so a unit whose
/// last peer left would reload into multicast and drop the VIP it holds for 3 advert
/// intervals: bundle_drills saw that when one of two regions was removed, and again when the
/// region was added back (the lone unit's multicast instance replaced by a unicast one),
/// 3.3 s of failed requests each (issue 17). Keeping the departed peer's address keeps the
/// instance; the adverts sent to it go nowhere, and a peer that joins later replaces it.
fn unicast_peers(
    ctx: &Context,
    live: Vec<IpAddr>,
    v6: bool,
    src: Option<IpAddr>,
) -> anyhow::Result<Vec<IpAddr>> {
    let before: crate::state::Stored = ctx.model.state()?;
    if live.is_empty() {
        return Ok(before
            .unicast_peers
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.is_ipv6() == v6 && Some(*a) != src)
            .collect());
    }
    if before.unicast_peers.as_ref() != Some(&live) {
        let after = crate::state::Stored {
            unicast_peers: Some(live.clone()),
            ..before.clone()
        };
        ctx.model.save_state(&before, &after)?;
    }
    Ok(live)
}

/// Brings the host and the relations to what the model asks for.
pub fn reconcile(ctx: &mut Context) -> anyhow::Result<()> {
    let app = ctx.model.app_name().to_string();
    let unit = ctx.model.unit_name().to_string();
    let paths = Paths::new(&app);

    let Some(cfg) = ctx.load_config::<Config>()? else {
        return relations::publish_principal(ctx, &[], VipState::Blocked);
    };
    // What is still to come from the principal is waited for further down: the peer address
    // is published meanwhile, but nothing is rendered or started.
    let (wishes, awaited) = match relations::principal_wishes(ctx)? {
        Principals::Ready(w) => (w, None),
        Principals::Waiting(who) => (
            Vec::new(),
            Some(format!("waiting for {who}'s health check")),
        ),
        Principals::Invalid(why) => return block(ctx, &cfg.vips, why),
    };
    // Juju runs a subordinate's install (and may run more) before the relation-created of
    // the principal relation that placed it: until then, whether the principal speaks `vip`
    // (and will send a check) is unknown.
    let awaited = match awaited {
        None if relations::principal_relations(ctx)? == 0 => {
            Some("waiting for the principal relation".to_string())
        }
        other => other,
    };

    let ifaces = interfaces(ctx)?;
    let mut claims = workload::read_claims(ctx.machine)?;
    // Any application's VIP held here is not an address of this host to place or send from.
    let mut vip_addrs: Vec<IpAddr> = cfg.vips.iter().map(|c| c.addr).collect();
    for c in claims.values() {
        vip_addrs.extend(
            c.vips
                .iter()
                .filter_map(|v| v.parse::<Cidr>().ok())
                .map(|c| c.addr),
        );
    }
    let (iface_name, placements) = match place(&cfg, &ifaces, &vip_addrs) {
        Ok(p) => p,
        Err(why) => return block(ctx, &cfg.vips, why),
    };
    let iface = ifaces
        .iter()
        .find(|i| i.name == iface_name)
        .expect("place() returns an existing interface");
    let v6 = cfg.vips[0].is_v6();
    let ingress = ctx
        .model
        .ingress_address(relations::PEERS)?
        .and_then(|a| a.parse::<IpAddr>().ok());
    let src = net::source_address(iface, v6, ingress, &vip_addrs);
    let priority = cfg
        .priority
        .unwrap_or_else(|| config::default_priority(ctx.model.unit_number()));
    relations::publish_peer(ctx, src, priority)?;
    let family = if v6 { "IPv6" } else { "IPv4" };
    if cfg.unicast && src.is_none() {
        return block(ctx, &cfg.vips, format!("no {family} address on {iface_name} to send unicast VRRP adverts from; add one or set unicast=false"));
    }
    let held = net::is_local(&ifaces, cfg.vips[0].addr);
    let served = if held {
        VipState::Held
    } else {
        VipState::Standby
    };

    if ctx.model.relation(relations::PEERS)?.is_none() {
        ctx.status(Status::waiting("waiting for the peer relation"));
        return relations::publish_principal(ctx, &cfg.vips, served);
    }
    // The leader creates the password even when v3 does not use it, so that switching to v2
    // later needs no extra round.
    let password = relations::vrrp_password(ctx)?;
    if let Some(why) = awaited {
        // Started without the principal's check, keepalived would let any host win the VIP
        // (a PostgreSQL replica), and clients would reach the wrong one until the check came.
        // A keepalived already running keeps what it has, as for a block.
        ctx.status(Status::waiting(why));
        return relations::publish_principal(ctx, &cfg.vips, served);
    }
    if cfg.version == 2 && password.is_none() {
        ctx.status(Status::waiting(
            "waiting for the leader to share the VRRP password",
        ));
        return relations::publish_principal(ctx, &cfg.vips, served);
    }

    let mine = Claim {
        app: app.clone(),
        interface: iface_name.clone(),
        vrid: cfg.vrid,
        vips: cfg.vips.iter().map(Cidr::to_string).collect(),
    };
    if let Some(why) = claims::clash(&claims, &unit, &mine) {
        return block(ctx, &cfg.vips, why);
    }

    let live: Vec<IpAddr> = relations::peer_addresses(ctx)?
        .into_values()
        .filter(|a| a.is_ipv6() == v6 && Some(*a) != src)
        .collect();
    let peers = unicast_peers(ctx, live, v6, src)?;
    let vrrp = Vrrp {
        unit: unit.clone(),
        // Named after the application only: a name taken from relation data would change
        // when a principal (re)names its service, and keepalived would replace the instance
        // (dropping the VIP and electing again) instead of reloading it.
        instance: relations::sanitize(&app),
        interface: iface_name.clone(),
        vrid: cfg.vrid,
        priority,
        advert_cs: cfg.advert_cs,
        version: cfg.version,
        preempt: cfg.preempt,
        unicast: if cfg.unicast {
            src.map(|src| Unicast { src, peers })
        } else {
            None
        },
        password: if cfg.version == 2 {
            password.clone()
        } else {
            None
        },
        vips: placements,
        checks: script_checks(&cfg, &wishes),
        notify: paths.notify_script(),
    };
    // Before the configuration that names it, so keepalived never runs a missing script.
    workload::ensure_notify_script(ctx.machine, &paths, &unit, &ctx.event.charm_dir())?;
    let text = render::keepalived_conf(&vrrp);
    let conf_changed = match workload::apply_conf(ctx.machine, &paths, &text, password.as_deref())?
    {
        Ok(changed) => changed,
        Err(why) => return block(ctx, &cfg.vips, why),
    };
    if conf_changed {
        for w in &wishes {
            let checks: Vec<String> = w.checks.iter().map(ToString::to_string).collect();
            log::info!(
                "checking {} for {} ({})",
                checks.join(", "),
                w.unit,
                w.service.as_deref().unwrap_or("no service name")
            );
        }
    }
    let unit_changed = workload::ensure_unit(ctx.machine, &paths)?;
    workload::ensure_sysctl(ctx.machine, &paths, cfg.vips.iter().any(Cidr::is_v6))?;
    let running = ctx.machine.service_is_active(&paths.service())?;
    workload::ensure_running(ctx.machine, &paths, running, conf_changed, unit_changed)?;
    let vips: Vec<IpAddr> = cfg.vips.iter().map(|c| c.addr).collect();
    let metrics_port = crate::metrics::port(cfg.vrid);
    workload::ensure_metrics(
        ctx.machine,
        &paths,
        &crate::metrics::unit(
            &paths,
            &ctx.event.charm_dir(),
            &ctx.charm_binary_line()?,
            metrics_port,
            &vips,
        ),
    )?;
    crate::cos::publish(ctx, metrics_port)?;
    claims.insert(unit, mine);
    workload::write_claims(ctx.machine, &claims)?;

    ctx.status(Status::active(format!(
        "{} {}",
        vip_label(&cfg.vips),
        served
    )));
    relations::publish_principal(ctx, &cfg.vips, served)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let a: Cidr = "10.0.0.100/24".parse().unwrap();
        let b: Cidr = "fd00::100/64".parse().unwrap();
        assert_eq!(vip_label(&[a]), "VIP 10.0.0.100/24");
        assert_eq!(vip_label(&[a, b]), "VIPs 10.0.0.100/24, fd00::100/64");
    }
}
