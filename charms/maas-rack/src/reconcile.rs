//! One pass for every event: from the config, the rpc relation, the region's secret and what
//! this unit did before, bring the host and the unit databag to what they should be.

use crate::config::{self, InstallMethod};
use crate::maas::{Flavor, LocalMaas};
use crate::relations::{self, RackData, RegionOffer};
use crate::state::Record;
use crate::teardown::rpc_relation;
use crate::workload::{self, Observed};
use anyhow::Result;
use charm_lib::snap_channel::SnapChannel;
use charm_lib::tools::ToolErrorKind;
use charm_lib::MachineExt;
use charm_lib::{Context, Error, EventKind, Port, Status};

/// The unit's status without a region to register with.
pub const NEEDS_RELATION: &str = "needs an rpc relation to maas-region";
/// The unit's status while the region has not sent its URL and secret yet.
pub const WAITING_FOR_REGION: &str = "waiting for the region URL and secret";

/// The ports a rack controller serves. MAAS documents 5240, 5241-5247 (TCP and UDP) and 5248
/// (rack HTTP) for every controller (docs/reference/configuration-guides/
/// configuration-tables.md "Controller port settings", docs/how-to-guides/
/// enhance-maas-security.md "Manage network ports"); rackd's own HTTP service listens on 5249
/// (src/provisioningserver/plugin.py `_makeHTTPService`, behind rackd's nginx on 5248:
/// src/provisioningserver/templates/http/rackd.nginx.conf.template). The services a rack runs
/// for machines (src/provisioningserver/service_monitor.py): DHCP 67/udp (`DHCPv4Service`),
/// TFTP 69/udp (src/provisioningserver/rackdservices/tftp.py), DNS 53 (`DNSServiceOnRack`,
/// bind9), NTP 123/udp and chrony's command port 323/udp (`NTPServiceOnRack`), and the proxy
/// machines are sent to, 8000/tcp (`ProxyServiceOnRack`; `get_apt_proxy` in
/// src/maasserver/compose_preseed.py points machines at their rack's `maas_proxy_port`, 8000,
/// while `use_rack_proxy` is on, its default). Ranges never overlap: maas-region opens the same
/// ranges when it runs the rack itself (region+rack).
pub const RACK_PORTS: [Port; 12] = [
    Port::Tcp(53),
    Port::Udp(53),
    Port::Udp(67),
    Port::Udp(69),
    Port::Udp(123),
    Port::Udp(323),
    Port::Tcp(5240),
    Port::TcpRange(5241, 5247),
    Port::UdpRange(5241, 5247),
    Port::Tcp(5248),
    Port::Tcp(5249),
    Port::Tcp(8000),
];

/// Reconciles, keeping the charm-state record of what was done in step with the host.
pub fn reconcile(ctx: &mut Context) -> Result<()> {
    let tools = ctx.tools();
    let before = Record::load(&tools)?;
    let mut record = before.clone();
    let result = run(ctx, &mut record);
    // Saved even when a later step failed: the host changes already happened. (Juju discards
    // charm state of a failed hook; the retry then redoes idempotent steps.)
    record.save(&before, &tools)?;
    result?;
    let installed = record.installed.as_deref().and_then(Flavor::parse);
    crate::cos::publish(ctx, installed, record.channel.as_deref())
}

fn run(ctx: &mut Context, record: &mut Record) -> Result<()> {
    let Some(cfg) = ctx.load_config::<config::Config>()? else {
        return Ok(());
    };
    let flavor = Flavor::of(&cfg.method);
    if let Some(installed) = record.installed.as_deref().filter(|i| *i != flavor.name()) {
        ctx.status(Status::blocked(format!(
            "config install-method: MAAS is installed here as a {installed}; it cannot change to {} on a deployed unit: set it back to {installed} or deploy a new unit",
            flavor.name()
        )));
        return Ok(());
    }

    let Some(rel) = rpc_relation(ctx)? else {
        crate::teardown::without_region(ctx, record, flavor)?;
        return Ok(());
    };

    let hostname = workload::hostname(ctx.machine)?;
    let mut publish = RackData {
        hostname: hostname.clone(),
        maas_channel: record.channel.clone(),
        ..RackData::default()
    };
    let offer = match RegionOffer::from_databag(&rel.remote_app_data()?) {
        Ok(o) => o,
        Err(message) => {
            let status = hold(ctx, &rel, record, flavor, publish, Status::blocked(message))?;
            ctx.status(status);
            return Ok(());
        }
    };

    let local = workload::local_maas(ctx.machine)?;
    if offer.region_named(&hostname).is_some() || local.has_region() {
        // Registering here would re-initialise the region's own MAAS (one snap per host) or
        // run a second rack beside the region's; the region's MAAS serves as this rack.
        if record.is_registered() {
            log::warn!(
                "a region now runs on this host: its MAAS replaces the rack this unit registered"
            );
            record.clear_registration();
        }
        rel.write_my_unit(&publish)?;
        // The region unit on this host opens the rack's ports when its MAAS runs the rack
        // (region+rack); two units of one machine must not open the same ports.
        ctx.model.set_ports(&[])?;
        ctx.status(co_located_status(&hostname, local));
        return Ok(());
    }

    let (Some(url), Some(secret_id)) = (offer.maas_url.clone(), offer.secret_id.clone()) else {
        let status = hold(
            ctx,
            &rel,
            record,
            flavor,
            publish,
            Status::waiting(WAITING_FOR_REGION),
        )?;
        ctx.status(status);
        return Ok(());
    };
    if let Err(message) = relations::validate_maas_url(&url) {
        let status = hold(ctx, &rel, record, flavor, publish, Status::blocked(message))?;
        ctx.status(status);
        return Ok(());
    }
    let secret = match read_shared_secret(ctx, &secret_id)? {
        Ok(s) => s,
        Err(message) => {
            let status = hold(ctx, &rel, record, flavor, publish, Status::blocked(message))?;
            ctx.status(status);
            return Ok(());
        }
    };

    let upgrade = ensure_installed(ctx, &cfg.method, record, &offer, &mut publish)?;
    publish.maas_channel = record.channel.clone();
    let fresh = !record.registered_with(&url, &secret);
    if fresh {
        maintenance(ctx, &format!("registering with {url}"))?;
        log::info!(
            "registering the rack controller with {url} ({} install)",
            flavor.name()
        );
        workload::register(ctx.machine, flavor, &url, &secret)?;
        record.set_registered(&url, &secret);
    }
    if workload::keep_secret_private(ctx.machine, flavor)? {
        log::warn!(
            "{} was readable beyond root and its group; set it to 0640",
            flavor.secret_file()
        );
    }
    let seen = observe_into(ctx, flavor, &mut publish)?;
    if seen.rackd == Some(false) && !fresh {
        log::warn!("rackd is not running; starting it");
        workload::start_rackd(ctx.machine, flavor)?;
    }
    rel.write_my_unit(&publish)?;
    ctx.model.set_ports(&RACK_PORTS)?;
    ctx.status(Status::active(active_message(&url, &seen)));
    // A refresh that waits (or is refused) does not stop the rack serving what it runs.
    if let Some(s) = upgrade {
        ctx.status(s);
    }
    Ok(())
}

/// The shared secret's value, or the reason it cannot be used (for a Blocked status). A new
/// revision is taken in `secret-changed`, the event Juju sends when the region rotates it.
fn read_shared_secret(ctx: &Context, secret_id: &str) -> Result<Result<String, String>> {
    let refresh = matches!(ctx.event.kind, EventKind::Secret(_));
    let content = match ctx.model.get_secret(Some(secret_id), None, refresh) {
        Ok(c) => c,
        Err(Error::Tool(e)) if matches!(e.kind, ToolErrorKind::Failed { .. }) => {
            let why = e
                .stderr()
                .unwrap_or("")
                .trim()
                .trim_start_matches("ERROR ")
                .to_string();
            return Ok(Err(format!("cannot read the MAAS shared secret {secret_id} from maas-region ({why}): is it granted to this relation?")));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(secret) = content
        .get(contracts::maas_rpc::SECRET_KEY)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return Ok(Err(format!(
            "the MAAS shared secret {secret_id} from maas-region has no 'secret' key"
        )));
    };
    if !secret.chars().all(|c| c.is_ascii_hexdigit()) || secret.len() % 2 != 0 {
        return Ok(Err(format!("the MAAS shared secret {secret_id} from maas-region is not a hex string, as MAAS requires")));
    }
    Ok(Ok(secret))
}

/// Installs MAAS the first time a region is there to register with, and follows later
/// `channel`/`deb-source` changes. Installing waits for the region because only then can the
/// unit know it does not share its host with a region, whose snap it must not touch. The snap
/// is held (snapd would otherwise refresh every rack at once, on its own schedule); a new
/// `channel` is refreshed to when the region leader lets this rack (one at a time), never to an
/// older track. The status of a refresh that waits or is refused, if any.
fn ensure_installed(
    ctx: &Context,
    method: &InstallMethod,
    record: &mut Record,
    offer: &RegionOffer,
    publish: &mut RackData,
) -> Result<Option<Status>> {
    let mut upgrade = None;
    match (method, record.installed.is_some()) {
        (InstallMethod::Snap { channel }, false) => {
            maintenance(ctx, &format!("installing the maas snap ({channel})"))?;
            workload::install(ctx.machine, method)?;
            record.channel = Some(channel.clone());
        }
        (InstallMethod::Snap { channel }, true)
            if record.channel.as_deref() != Some(channel.as_str()) =>
        {
            let installed = record.channel.clone().unwrap_or_default();
            upgrade = refresh_when_let(ctx, &installed, channel, record, offer, publish)?;
        }
        (InstallMethod::Deb { source }, false) => {
            maintenance(ctx, &format!("installing {}", crate::maas::DEB_PACKAGE))?;
            workload::install(ctx.machine, method)?;
            record.deb_source = source.as_ref().map(|s| s.as_str().to_string());
        }
        (InstallMethod::Deb { source }, true)
            if record.deb_source.as_deref() != source.as_ref().map(|s| s.as_str()) =>
        {
            // The new source serves the next upgrade; upgrading MAAS stays the operator's call.
            if !matches!(source, Some(crate::config::DebSource::Line(_))) {
                ctx.machine
                    .remove_file(std::path::Path::new(crate::maas::APT_SOURCE_FILE))?;
            }
            if let Some(src) = source {
                workload::add_deb_source(ctx.machine, src)?;
            }
            ctx.machine.run(&crate::maas::apt(["update"]))?;
            record.deb_source = source.as_ref().map(|s| s.as_str().to_string());
        }
        _ => {}
    }
    record.installed = Some(Flavor::of(method).name().to_string());
    if matches!(method, InstallMethod::Snap { .. }) && !record.held.0 {
        ctx.machine.snap_hold(crate::maas::SNAP)?;
        record.held = charm_lib::charm_state::Yes(true);
    }
    Ok(upgrade)
}

/// A new channel: refused when its track is older (MAAS's schema only migrates forward);
/// otherwise asked for in the unit databag and refreshed once the region leader's
/// `rack_upgrade_lock` names this unit and channel.
fn refresh_when_let(
    ctx: &Context,
    installed: &str,
    wanted: &str,
    record: &mut Record,
    offer: &RegionOffer,
    publish: &mut RackData,
) -> Result<Option<Status>> {
    if let (Some(from), Some(to)) = (SnapChannel::parse(installed), SnapChannel::parse(wanted)) {
        if to.is_downgrade_from(&from) {
            return Ok(Some(Status::blocked(format!(
                "config channel: {wanted} is older than the {installed} MAAS runs here, and MAAS cannot go back (its database schema only migrates forward): set channel to {installed} or newer"
            ))));
        }
    }
    let me = ctx.model.unit_name();
    if offer.rack_upgrade_lock.as_deref() != Some(format!("{me}#{wanted}").as_str()) {
        publish.upgrade_request = Some(wanted.to_string());
        return Ok(Some(Status::waiting(format!(
            "serving MAAS {installed}; waiting for maas-region to let this rack refresh to {wanted} (racks refresh one at a time, before the regions)"
        ))));
    }
    maintenance(ctx, &format!("refreshing the maas snap to {wanted}"))?;
    ctx.machine.run(&crate::maas::refresh_cmd(wanted))?;
    log::info!("MAAS refreshed from {installed} to {wanted}");
    record.channel = Some(wanted.to_string());
    publish.upgrade_request = None;
    Ok(None)
}

/// Ends a pass that cannot (re)register: a rack registered before keeps running on what it
/// has and keeps publishing its system id and DHCP state; the returned status is the reason.
fn hold(
    ctx: &Context,
    rel: &charm_lib::Relation,
    record: &Record,
    flavor: Flavor,
    mut publish: RackData,
    status: Status,
) -> Result<Status> {
    if record.is_registered() {
        observe_into(ctx, flavor, &mut publish)?;
    }
    rel.write_my_unit(&publish)?;
    Ok(status)
}

fn observe_into(ctx: &Context, flavor: Flavor, publish: &mut RackData) -> Result<Observed> {
    let seen = workload::observe(ctx.machine, flavor)?;
    publish.system_id = seen.system_id.clone();
    publish.dhcp = seen.dhcp_vlans();
    Ok(seen)
}

/// Shown while a step runs; the hook's final status replaces it.
fn maintenance(ctx: &Context, message: &str) -> Result<()> {
    Ok(ctx.tools().status_set("maintenance", message, false)?)
}

/// The status of a rack on a region's host.
pub fn co_located_status(hostname: &str, local: LocalMaas) -> Status {
    match local {
        LocalMaas::RegionRack => Status::active(format!("co-located with region {hostname}: rack runs in the region's MAAS (region+rack); not registering separately")),
        LocalMaas::Region => Status::blocked(format!(
            "co-located with region {hostname}, whose MAAS runs in region mode only: place this unit on a machine without a region"
        )),
        LocalMaas::None | LocalMaas::Rack => Status::waiting(format!("co-located with region {hostname}: waiting for the region's MAAS; not registering separately")),
    }
}

/// `registered with <url>`, plus what the rack does for DHCP when that is known.
pub fn active_message(url: &str, seen: &Observed) -> String {
    match (seen.dhcpd, seen.vlans.as_slice()) {
        (Some(true), []) => format!("registered with {url}; serving DHCP"),
        (Some(true), vlans) => format!(
            "registered with {url}; serving DHCP on {}",
            vlans.join(", ")
        ),
        _ => format!("registered with {url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_message_says_what_is_known_about_dhcp() {
        let url = "http://10.77.0.200/MAAS";
        assert_eq!(
            active_message(url, &Observed::default()),
            "registered with http://10.77.0.200/MAAS"
        );
        let off = Observed {
            dhcpd: Some(false),
            ..Default::default()
        };
        assert_eq!(
            active_message(url, &off),
            "registered with http://10.77.0.200/MAAS"
        );
        let on = Observed {
            dhcpd: Some(true),
            ..Default::default()
        };
        assert_eq!(
            active_message(url, &on),
            "registered with http://10.77.0.200/MAAS; serving DHCP"
        );
        let vlans = Observed {
            dhcpd: Some(true),
            vlans: vec!["vlan-5001".into(), "vlan-5002".into()],
            ..Default::default()
        };
        assert_eq!(
            active_message(url, &vlans),
            "registered with http://10.77.0.200/MAAS; serving DHCP on vlan-5001, vlan-5002"
        );
    }

    #[test]
    fn rack_ports_are_what_a_rack_controller_serves_without_overlaps() {
        let covers = |port: u16, tcp: bool| {
            RACK_PORTS.iter().any(|p| match *p {
                Port::Tcp(x) => tcp && x == port,
                Port::Udp(x) => !tcp && x == port,
                Port::TcpRange(a, b) => tcp && (a..=b).contains(&port),
                Port::UdpRange(a, b) => !tcp && (a..=b).contains(&port),
                Port::Icmp => false,
            })
        };
        for udp in [53, 67, 69, 123, 323, 5241, 5247] {
            assert!(covers(udp, false), "{udp}/udp");
        }
        for tcp in [53, 8000].into_iter().chain(5240..=5249) {
            assert!(covers(tcp, true), "{tcp}/tcp");
        }
        for (i, a) in RACK_PORTS.iter().enumerate() {
            for b in &RACK_PORTS[i + 1..] {
                let span = |p: &Port| match *p {
                    Port::Tcp(x) => (true, x, x),
                    Port::Udp(x) => (false, x, x),
                    Port::TcpRange(x, y) => (true, x, y),
                    Port::UdpRange(x, y) => (false, x, y),
                    Port::Icmp => (false, 0, 0),
                };
                let ((ta, a0, a1), (tb, b0, b1)) = (span(a), span(b));
                assert!(ta != tb || a1 < b0 || b1 < a0, "{a} overlaps {b}");
            }
        }
    }

    #[test]
    fn co_location_statuses() {
        assert_eq!(
            co_located_status("r1", LocalMaas::RegionRack).kind,
            charm_lib::StatusKind::Active
        );
        assert_eq!(
            co_located_status("r1", LocalMaas::Region).kind,
            charm_lib::StatusKind::Blocked
        );
        assert_eq!(
            co_located_status("r1", LocalMaas::None).kind,
            charm_lib::StatusKind::Waiting
        );
        assert!(co_located_status("r1", LocalMaas::RegionRack)
            .message
            .starts_with("co-located with region r1: "));
    }
}
