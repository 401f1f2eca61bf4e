//! The actions. Each refuses clearly (action-fail with the reason) and never puts a password,
//! API key or the shared secret into logs.

use crate::config::{Config, InstallMethod};
use crate::maas;
use crate::peers::{self, AppBag, Resumed, UnitBag};
use crate::relations;
use charm_lib::snap_channel::SnapChannel;
use charm_lib::{Cmd, Context, MachineExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// The CLI profile configure-dhcp logs in with (and out of, when done).
pub const PROFILE: &str = "juju-maas-region";
/// API URL the actions use: this unit's own region, so the VIP's health does not matter.
pub const LOCAL_API: &str = "http://localhost:5240/MAAS/api/2.0/";
/// The same with TLS on, where MAAS's nginx answers the API on 5240 with a 301 to https
/// (`regiond.nginx.conf.template`): the certificate names `localhost`.
pub const LOCAL_API_TLS: &str = "https://localhost:5443/MAAS/api/2.0/";

/// Runs the action named in the event.
pub fn run(ctx: &mut Context, name: &str) -> anyhow::Result<()> {
    let cfg = Config::from_json(ctx.model.config_raw()?)
        .map_err(|e| anyhow::anyhow!("the charm's configuration is invalid: {e}"))?;
    match name {
        "create-admin" => create_admin(ctx, &cfg),
        "get-api-key" => get_api_key(ctx, &cfg),
        "get-api-endpoint" => get_api_endpoint(ctx, &cfg),
        "get-maas-secret" => get_maas_secret(ctx, &cfg),
        "get-maas-status" => get_maas_status(ctx, &cfg),
        "configure-dhcp" => configure_dhcp(ctx, &cfg),
        "pre-upgrade-check" => pre_upgrade_check(ctx, &cfg),
        "resume-refresh" => resume_refresh(ctx, &cfg),
        "create-backup" => crate::backup_actions::create_backup(ctx, &cfg),
        "list-backups" => crate::backup_actions::list_backups(ctx, &cfg),
        "restore" => crate::backup_actions::restore(ctx, &cfg),
        "set-backup-passphrase" => crate::backup_actions::set_backup_passphrase(ctx, &cfg),
        other => anyhow::bail!("unknown action {other:?}"),
    }
}

/// Refuses admin commands before MAAS is initialised on this unit.
fn require_initialised(ctx: &Context, m: InstallMethod) -> anyhow::Result<()> {
    let ready = ctx
        .machine
        .read_to_string(maas::regiond_conf(m))?
        .and_then(|t| maas::RegiondConf::parse(&t).ok())
        .is_some_and(|c| c.db.is_some());
    anyhow::ensure!(ready, "MAAS is not initialised on this unit yet (no database configured): relate a database and wait for the unit to be active");
    Ok(())
}

/// The first API key of `username`, `None` when MAAS says the user does not exist.
fn api_key(ctx: &Context, m: InstallMethod, username: &str) -> anyhow::Result<Option<String>> {
    let out = ctx
        .machine
        .run(&Cmd::new(maas::admin(m), ["apikey", "--username", username]).allow_failure())?;
    if !out.success() {
        return Ok(None);
    }
    let key = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string);
    Ok(key)
}

#[derive(Deserialize)]
struct CreateAdmin {
    username: String,
    password: String,
    email: String,
    #[serde(rename = "ssh-import")]
    ssh_import: Option<String>,
}

fn create_admin(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let p: CreateAdmin = ctx.action_params()?;
    anyhow::ensure!(!p.username.trim().is_empty(), "username must not be empty");
    anyhow::ensure!(!p.password.is_empty(), "password must not be empty");
    anyhow::ensure!(
        p.email.contains('@') && !p.email.contains(char::is_whitespace),
        "email {:?} is not an e-mail address",
        p.email
    );
    if let Some(s) = p.ssh_import.as_deref().filter(|s| !s.is_empty()) {
        let ok = (s.starts_with("lp:") || s.starts_with("gh:")) && s.len() > 3;
        anyhow::ensure!(
            ok,
            "ssh-import {s:?} must be lp:<launchpad id> or gh:<github id>"
        );
    }
    let m = cfg.install_method;
    require_initialised(ctx, m)?;
    if api_key(ctx, m, &p.username)?.is_some() {
        return ctx.action_set(&json!({"username": p.username, "created": false, "message": format!("user {} already exists; nothing changed", p.username)}));
    }
    let mut args = vec![
        "createadmin".to_string(),
        "--username".into(),
        p.username.clone(),
        "--password".into(),
        p.password.clone(),
        "--email".into(),
        p.email.clone(),
    ];
    if let Some(s) = p.ssh_import.as_deref().filter(|s| !s.is_empty()) {
        args.extend(["--ssh-import".to_string(), s.to_string()]);
    }
    let cmd = Cmd::new(maas::admin(m), args)
        .sensitive(&p.password)
        .allow_failure();
    let out = ctx.machine.run(&cmd)?;
    if !out.success() {
        let msg = cmd.redact(&maas::reason(if out.stderr.trim().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        }));
        // Django's answers for a duplicate username; a duplicate e-mail is another user, an error.
        let lower = msg.to_ascii_lowercase();
        if lower.contains("username is already taken")
            || lower.contains("with this username already exists")
        {
            return ctx.action_set(&json!({"username": p.username, "created": false, "message": format!("user {} already exists; nothing changed", p.username)}));
        }
        anyhow::bail!("MAAS refused to create {}: {msg}", p.username);
    }
    ctx.action_set(&json!({"username": p.username, "created": true, "message": format!("administrator {} created", p.username)}))
}

#[derive(Deserialize)]
struct Username {
    username: String,
}

fn get_api_key(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let p: Username = ctx.action_params()?;
    require_initialised(ctx, cfg.install_method)?;
    match api_key(ctx, cfg.install_method, &p.username)? {
        Some(k) => ctx.action_set(&json!({"api-key": k})),
        None => anyhow::bail!("MAAS has no API key for {:?}: does the user exist? (create it with the create-admin action)", p.username),
    }
}

/// The URL the leader published (or the option), for every unit alike.
fn published_url(ctx: &Context, cfg: &Config) -> anyhow::Result<Option<String>> {
    if let Some(u) = &cfg.maas_url {
        return Ok(Some(u.clone()));
    }
    let Some(rel) = ctx.model.relation(relations::PEERS)? else {
        return Ok(None);
    };
    Ok(rel.read_my_app::<AppBag>()?.maas_url)
}

fn get_api_endpoint(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let url = published_url(ctx, cfg)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the MAAS URL is not decided yet: the leader publishes it once it has an address"
        )
    })?;
    let mut result = json!({"api-url": format!("{url}/api/2.0/"), "maas-url": url});
    if cfg.tls_enabled {
        // Users go to https; racks and the URL MAAS itself is configured with stay on http.
        let https = crate::render::https_url(&url, cfg.haproxy);
        result["https-api-url"] = json!(format!("{https}/api/2.0/"));
        result["https-url"] = json!(https);
        if let Some(ca) = ctx
            .machine
            .read_to_string(crate::certs::ca_file(cfg.install_method))?
        {
            result["ca-certificate"] = json!(ca);
        }
    }
    ctx.action_set(&result)
}

fn get_maas_secret(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let path = maas::secret_file(cfg.install_method);
    let secret = ctx
        .machine
        .read_to_string(path)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let secret = secret.ok_or_else(|| {
        anyhow::anyhow!(
            "MAAS has not written its shared secret ({}) yet: wait for the unit to be active",
            path.display()
        )
    })?;
    ctx.action_set(&json!({"maas-secret": secret}))
}

fn get_maas_status(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let mut services = serde_json::Map::new();
    let mut down: Vec<String> = Vec::new();
    match cfg.install_method {
        InstallMethod::Snap => {
            require_initialised(ctx, InstallMethod::Snap)?;
            // MAAS 3.4 passes on supervisorctl's exit status, 3 whenever a program is
            // stopped (dhcpd6 always is): the table decides, not the exit status.
            let cmd = Cmd::new(maas::SNAP_MAAS, ["status"]).allow_failure();
            let out = ctx.machine.run(&cmd)?;
            let table = maas::parse_status(&out.stdout);
            if table.is_empty() && !out.success() {
                anyhow::bail!(
                    "maas status failed (exit {}): {}",
                    out.code,
                    maas::reason(&format!("{}\n{}", out.stdout, out.stderr))
                );
            }
            for (name, s) in table {
                let name = name.to_ascii_lowercase();
                if s.is_down() {
                    down.push(name.clone());
                }
                let mut v = json!({"current": s.current, "since": s.since});
                if let Some(startup) = s.startup {
                    v["startup"] = json!(startup);
                }
                services.insert(name, v);
            }
        }
        InstallMethod::Deb => {
            let mut units = vec![maas::DEB_REGIOND, "bind9"];
            if cfg.haproxy {
                units.push("haproxy");
            }
            for u in units {
                let active = ctx.machine.service_is_active(u)?;
                if !active {
                    down.push(u.to_string());
                }
                services.insert(
                    u.to_string(),
                    json!({"current": if active { "active" } else { "inactive" }}),
                );
            }
        }
    }
    anyhow::ensure!(!services.is_empty(), "maas status listed no services");
    let summary = if down.is_empty() {
        "all enabled services are active".to_string()
    } else {
        format!("not active: {}", down.join(", "))
    };
    ctx.action_set(&json!({"services": services, "summary": summary}))
}

#[derive(Deserialize)]
struct Dhcp {
    subnet: String,
    start: String,
    end: String,
    #[serde(rename = "primary-rack")]
    primary_rack: String,
    #[serde(rename = "secondary-rack")]
    secondary_rack: Option<String>,
    #[serde(rename = "admin-username")]
    admin_username: Option<String>,
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// A rack named as the racks publish themselves on rpc: a hostname becomes its system id when
/// the rack has published one; anything else goes to MAAS as given (MAAS checks it).
fn resolve_rack(racks: &[relations::Rack], who: &str) -> String {
    racks
        .iter()
        .find(|r| r.hostname == who)
        .and_then(|r| r.system_id.clone())
        .unwrap_or_else(|| who.to_string())
}

/// Finds the subnet by CIDR, name or id in `subnets read` output: (id, cidr, fabric id, vid).
pub fn find_subnet(subnets: &Value, wanted: &str) -> Option<(i64, String, i64, i64)> {
    subnets.as_array()?.iter().find_map(|s| {
        let id = s["id"].as_i64()?;
        let cidr = s["cidr"].as_str()?.to_string();
        let name = s["name"].as_str().unwrap_or_default();
        if cidr != wanted && name != wanted && id.to_string() != wanted {
            return None;
        }
        Some((
            id,
            cidr,
            s["vlan"]["fabric_id"].as_i64()?,
            s["vlan"]["vid"].as_i64()?,
        ))
    })
}

fn configure_dhcp(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let p: Dhcp = ctx.action_params()?;
    let start: Ipv4Addr = p
        .start
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("start {:?} is not an IPv4 address", p.start))?;
    let end: Ipv4Addr = p
        .end
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("end {:?} is not an IPv4 address", p.end))?;
    anyhow::ensure!(
        u32::from(start) <= u32::from(end),
        "the dynamic range is empty: start {start} comes after end {end}"
    );
    let secondary = p
        .secondary_rack
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    anyhow::ensure!(
        secondary != Some(p.primary_rack.trim()),
        "primary-rack and secondary-rack must be different rack controllers"
    );
    let m = cfg.install_method;
    require_initialised(ctx, m)?;
    let admin = p
        .admin_username
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| crate::internal_admin::USERNAME.into());
    let key = api_key(ctx, m, &admin)?.ok_or_else(|| anyhow::anyhow!("MAAS has no API key for {admin:?}: the leader creates {} once MAAS runs (wait for it), or pass admin-username of an administrator made with create-admin", crate::internal_admin::USERNAME))?;
    let cli = maas::cli(m);
    // The key goes on stdin (`-`), not on a command line other processes can read.
    let ca = crate::certs::ca_file(m).to_string_lossy().into_owned();
    let login: Vec<&str> = if cfg.tls_enabled {
        // `--cacerts` (canonical/maas src/maascli/cli.py `cmd_login`): the application's CA,
        // which the leader published and this unit wrote down.
        vec!["login", PROFILE, LOCAL_API_TLS, "-", "--cacerts", &ca]
    } else {
        vec!["login", PROFILE, LOCAL_API, "-"]
    };
    let login_cmd = Cmd::new(cli, login)
        .stdin(format!("{key}\n"))
        .sensitive(&key)
        .allow_failure();
    let out = ctx.machine.run(&login_cmd)?;
    if !out.success() {
        // MAAS's CLI ends a refusal with its reason: its own words, argparse's `maas: error:`
        // line for what escaped (an unreachable server), or a traceback's exception.
        anyhow::bail!(
            "maas login to the local region failed: {}",
            login_cmd.redact(&maas::reason(&format!("{}\n{}", out.stdout, out.stderr)))
        );
    }
    let result = dhcp_calls(ctx, cli, &p, start, end, secondary);
    // The profile holds the key: do not leave it behind, whatever happened.
    if let Err(e) = ctx
        .machine
        .run(&Cmd::new(cli, ["logout", PROFILE]).allow_failure())
    {
        log::warn!("maas logout {PROFILE}: {e}");
    }
    let results = result?;
    ctx.action_set(&results)
}

fn call(ctx: &Context, cli: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut argv = vec![PROFILE];
    argv.extend_from_slice(args);
    let out = ctx.machine.run(&Cmd::new(cli, argv))?;
    Ok(serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null))
}

fn dhcp_calls(
    ctx: &Context,
    cli: &str,
    p: &Dhcp,
    start: Ipv4Addr,
    end: Ipv4Addr,
    secondary: Option<&str>,
) -> anyhow::Result<Value> {
    let subnets = call(ctx, cli, &["subnets", "read"])?;
    let (subnet_id, cidr, fabric, vid) =
        find_subnet(&subnets, p.subnet.trim()).ok_or_else(|| {
            anyhow::anyhow!("MAAS knows no subnet {:?} (by CIDR, name or id)", p.subnet)
        })?;
    anyhow::ensure!(
        in_cidr(start, &cidr) && in_cidr(end, &cidr),
        "the range {start}-{end} is not inside subnet {cidr}"
    );
    let ranges = call(ctx, cli, &["ipranges", "read"])?;
    let exists = ranges.as_array().is_some_and(|a| {
        a.iter().any(|r| {
            r["type"] == "dynamic"
                && r["start_ip"] == start.to_string()
                && r["end_ip"] == end.to_string()
        })
    });
    let (s, e, sid) = (
        format!("start_ip={start}"),
        format!("end_ip={end}"),
        format!("subnet={subnet_id}"),
    );
    if !exists {
        call(
            ctx,
            cli,
            &["ipranges", "create", "type=dynamic", &s, &e, &sid],
        )?;
    }
    let racks = relations::racks(&ctx.model)?;
    let primary = resolve_rack(&racks, p.primary_rack.trim());
    let secondary = secondary.map(|s| resolve_rack(&racks, s));
    let (f, v) = (fabric.to_string(), vid.to_string());
    let pr = format!("primary_rack={primary}");
    let mut args = vec![
        "vlan",
        "update",
        f.as_str(),
        v.as_str(),
        "dhcp_on=true",
        pr.as_str(),
    ];
    let sr = secondary.as_ref().map(|s| format!("secondary_rack={s}"));
    if let Some(sr) = &sr {
        args.push(sr.as_str());
    }
    let vlan = call(ctx, cli, &args)?;
    Ok(json!({
        "subnet": cidr,
        "fabric-id": fabric,
        "vid": vid,
        "dynamic-range": format!("{start}-{end}"),
        "range-created": !exists,
        "primary-rack": primary,
        "secondary-rack": secondary.unwrap_or_default(),
        "dhcp-on": vlan.get("dhcp_on").and_then(Value::as_bool).unwrap_or(true),
    }))
}

#[derive(Deserialize, Default)]
struct PreUpgrade {
    channel: Option<String>,
}

/// `host` as it goes into a URL (an IPv6 address in brackets).
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Whether `url` answers 2xx within a few seconds (once: the check reports the moment).
fn answers_now(ctx: &Context, url: &str) -> anyhow::Result<bool> {
    Ok(ctx
        .machine
        .run(
            &Cmd::new(
                "curl",
                [url, "-s", "-f", "-o", "/dev/null", "--max-time", "5"],
            )
            .allow_failure(),
        )?
        .success())
}

/// The MAAS version the API reports (`VersionHandler.read` in MAAS's
/// `src/maasserver/api/version.py`: anonymous, `version` from `get_maas_version()` in
/// `src/maasserver/models/controllerinfo.py`, the version most controllers of the deployment
/// run, from the database: not the answering region's own). With TLS on, the API is on 5443
/// under the application's CA (the certificate names every region's address).
fn region_version(ctx: &Context, cfg: &Config, host: &str) -> anyhow::Result<Option<String>> {
    let ca = crate::certs::ca_file(cfg.install_method)
        .to_string_lossy()
        .into_owned();
    let url = if cfg.tls_enabled {
        format!(
            "https://{}:{}/MAAS/api/2.0/version/",
            url_host(host),
            crate::certs::TLS_PORT
        )
    } else {
        format!("http://{}:5240/MAAS/api/2.0/version/", url_host(host))
    };
    let mut argv = vec![url.as_str(), "-s", "-f", "--max-time", "5"];
    if cfg.tls_enabled {
        argv.extend(["--cacert", ca.as_str()]);
    }
    let out = ctx.machine.run(&Cmd::new("curl", argv).allow_failure())?;
    if !out.success() {
        return Ok(None);
    }
    Ok(serde_json::from_str::<Value>(out.stdout.trim())
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .filter(|v| !v.is_empty()))
}

/// What this unit has installed: (channel snapd tracks, version), from `snap list maas`
/// (Name Version Rev Tracking ...) or, for debs, dpkg's version of maas-region-api.
fn installed(ctx: &Context, m: InstallMethod) -> anyhow::Result<(Option<String>, Option<String>)> {
    match m {
        InstallMethod::Snap => {
            let out = ctx
                .machine
                .run(&Cmd::new("snap", ["list", "maas"]).allow_failure())?;
            let row: Vec<String> = out
                .stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some("maas"))
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            Ok((row.get(3).cloned(), row.get(1).cloned()))
        }
        InstallMethod::Deb => {
            let out = ctx.machine.run(
                &Cmd::new("dpkg-query", ["-W", "-f=${Version}", maas::DEB_PACKAGES[0]])
                    .allow_failure(),
            )?;
            let v = out.stdout.trim();
            Ok((
                None,
                (out.success() && !v.is_empty()).then(|| v.to_string()),
            ))
        }
    }
}

/// A unit name as an action result key (`maas-region/1` → `maas-region-1`).
fn result_key(unit: &str) -> String {
    unit.replace('/', "-")
}

/// Whether a MAAS refresh (a new `channel`) may start now. Refuses, listing every reason, unless
/// every region answers and none is initialising or refreshing, every rack is registered and
/// none is refreshing, and the database has a standby; reports each region's version, the racks'
/// channels and the channel it would refresh to. Whether the standby is *synchronous* is not
/// something either database relation says: the result says so instead of guessing.
fn pre_upgrade_check(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    let p: PreUpgrade = ctx.action_params()?;
    let m = cfg.install_method;
    let me = ctx.model.unit_name().to_string();
    let mut reasons: Vec<String> = Vec::new();
    let mut out = json!({});

    // This unit: what it runs and what it would refresh to.
    let (installed_channel, installed_version) = installed(ctx, m)?;
    out["installed-version"] = json!(installed_version
        .clone()
        .unwrap_or_else(|| "unknown".into()));
    let target = match m {
        InstallMethod::Snap => {
            let known = installed_channel.is_some();
            if !known {
                reasons.push(format!("the maas snap is not installed on {me}"));
            }
            let installed = installed_channel
                .clone()
                .unwrap_or_else(|| "unknown".into());
            out["installed-channel"] = json!(installed);
            let wanted = p
                .channel
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .unwrap_or(&cfg.channel)
                .to_string();
            match (SnapChannel::parse(&installed), SnapChannel::parse(&wanted)) {
                (_, None) => reasons.push(format!(
                    "channel {wanted:?} is not a snap channel (<track>/<risk>, e.g. 3.7/stable)"
                )),
                (Some(from), Some(to)) if to.is_downgrade_from(&from) => reasons.push(format!(
                    "channel {wanted} is older than the {installed} MAAS runs here, and MAAS cannot go back (its database schema only migrates forward)"
                )),
                _ => {}
            }
            // A configured channel this unit does not run yet is a refresh already under way
            // (or waiting for the racks or the init lock).
            if known && SnapChannel::parse(&cfg.channel) != SnapChannel::parse(&installed) {
                reasons.push(format!(
                    "channel is set to {} but {me} runs {installed}: a refresh is under way or waiting (see juju status)",
                    cfg.channel
                ));
            }
            wanted
        }
        InstallMethod::Deb => {
            "none: install-method=deb is upgraded with apt by the operator (see README, Upgrade)"
                .to_string()
        }
    };
    out["refresh-to"] = json!(target);

    // Regions: this one, then every peer the relation knows.
    let status = ctx.tools().status_get()?;
    if status.status != "active" {
        reasons.push(format!("{me} is {}: {}", status.status, status.message));
    }
    let initialised = ctx
        .machine
        .read_to_string(maas::regiond_conf(m))?
        .and_then(|t| maas::RegiondConf::parse(&t).ok())
        .is_some_and(|c| c.db.is_some());
    if !initialised {
        reasons.push(format!(
            "MAAS is not initialised on {me} (no database configured)"
        ));
    }
    let peer_rel = ctx.model.relation(relations::PEERS)?;
    // A databag that does not parse fails the check, naming its key.
    let (peer_app, my_request) = match &peer_rel {
        Some(r) => (
            r.read_my_app::<AppBag>()?,
            r.read_unit::<UnitBag>(&me)?.request,
        ),
        None => (AppBag::default(), None),
    };
    drop(peer_rel);
    let peers = relations::peers(&ctx.model)?;
    let mut regions = serde_json::Map::new();
    let look = |ctx: &Context,
                unit: &str,
                host: Option<&str>,
                reasons: &mut Vec<String>|
     -> anyhow::Result<Value> {
        let Some(host) = host else {
            reasons.push(format!(
                "{unit} has not published its address on the peer relation"
            ));
            return Ok(json!({"answers": false}));
        };
        let health = format!(
            "http://{}:5240{}",
            url_host(host),
            crate::render::HEALTH_PATH
        );
        let ok = answers_now(ctx, &health)?;
        if !ok {
            reasons.push(format!("{unit}'s regiond does not answer {health}"));
        }
        Ok(json!({"address": host, "answers": ok}))
    };
    // This region is asked on loopback (its own haproxy and firewall are not in the way), and
    // reported with the address its peers and racks know it by.
    let mut mine = look(ctx, &me, Some("127.0.0.1"), &mut reasons)?;
    if let Some(a) = ctx.model.ingress_address(relations::PEERS)? {
        mine["address"] = json!(a);
    }
    regions.insert(result_key(&me), mine);
    for peer in &peers {
        regions.insert(
            result_key(&peer.unit),
            look(ctx, &peer.unit, peer.address.as_deref(), &mut reasons)?,
        );
    }
    if peers.is_empty() {
        reasons.push(format!("{me} is the only region: its refresh stops the MAAS API until it serves again (add a unit first: juju add-unit maas-region)"));
    }
    out["regions"] = Value::Object(regions);
    // Other regions' installed versions are not published anywhere this unit can read; MAAS's
    // own answer is the deployment's version.
    out["maas-version"] =
        json!(region_version(ctx, cfg, "127.0.0.1")?.unwrap_or_else(|| "unknown".into()));

    // Refreshes in progress: the init lock (also the one-region-at-a-time refresh) and every
    // open request for it.
    let holder = peer_app.lock.map(|l| l.unit);
    for p in peers.iter().filter(|p| p.garbled.is_some()) {
        reasons.push(format!(
            "{}'s peer data does not parse ({}): the init lock stays where it is until it is fixed",
            p.unit,
            p.garbled.as_deref().unwrap_or_default()
        ));
    }
    if let Some(h) = &holder {
        reasons.push(format!(
            "{h} holds the init lock: a region is initialising or refreshing MAAS"
        ));
    }
    let requests = my_request.map(|_| me.clone()).into_iter().chain(
        peers
            .iter()
            .filter(|p| p.request.is_some())
            .map(|p| p.unit.clone()),
    );
    for u in requests.filter(|u| Some(u) != holder.as_ref()) {
        reasons.push(format!(
            "{u} waits for the init lock to initialise or refresh MAAS"
        ));
    }

    // Racks: registered, and none refreshing. The rack lock only ever names an open request
    // (`lock::grant`), so the racks' own requests say it all, and every unit can read them
    // (a non-leader cannot read its own application databag on rpc: juju/juju's
    // UniterAPI.ReadLocalApplicationSettings answers the leader only, peer relations aside).
    let mut racks = serde_json::Map::new();
    let mut behind = Vec::new();
    let to = SnapChannel::parse(&target);
    for rel in ctx.model.relations(relations::RPC)? {
        for u in rel.units() {
            let d = rel.unit_data(u)?;
            let text = |k: &str| d.get(k).filter(|v| !v.is_empty()).cloned();
            let Some(hostname) = text(contracts::maas_rpc::keys::HOSTNAME) else {
                reasons.push(format!(
                    "{u} has not described itself on rpc yet (no hostname)"
                ));
                continue;
            };
            let system_id = text(contracts::maas_rpc::keys::SYSTEM_ID);
            let channel = text(contracts::maas_rpc::keys::MAAS_CHANNEL);
            let request = text(contracts::maas_rpc::keys::UPGRADE_REQUEST);
            if system_id.is_none() {
                reasons.push(format!(
                    "{u} ({hostname}) is not registered with MAAS yet (no system_id on rpc)"
                ));
            }
            if let Some(r) = &request {
                reasons.push(format!(
                    "{u} ({hostname}) is refreshing MAAS to {r} or waiting for its turn"
                ));
            }
            let rack = channel.as_deref().and_then(SnapChannel::parse);
            if let (Some(rack), Some(to)) = (&rack, &to) {
                if rack.track_cmp(to) == Some(std::cmp::Ordering::Less) {
                    behind.push(format!("{u} ({})", channel.clone().unwrap_or_default()));
                }
            }
            racks.insert(
                result_key(u),
                json!({"hostname": hostname, "registered": system_id.is_some(), "channel": channel.unwrap_or_else(|| "unknown".into()), "refreshing": request.is_some()}),
            );
        }
    }
    out["racks"] = Value::Object(racks);
    if !behind.is_empty() {
        // Not a refusal: the regions wait for these themselves (MAAS's upgrade guide,
        // docs/how-to-guides/upgrade-maas.md: racks first, then regions).
        out["racks-first"] = json!(format!(
            "set maas-rack's channel first: {}",
            behind.join(", ")
        ));
    }

    // The database: usable, with a standby the relation names.
    let (primary, standbys) = database_view(ctx, cfg, &mut reasons)?;
    out["database"] = json!({
        "primary": primary.unwrap_or_else(|| "unknown".into()),
        "standbys": standbys.join(", "),
        "synchronous-standby": "unknown: neither the database nor the db relation says which standby is synchronous; run postgresql-ha's pre-upgrade-check (it checks Patroni's synchronous standby)",
    });

    if reasons.is_empty() {
        out["result"] = json!("ok");
        out["message"] = json!(format!("every region answers and none is refreshing, every rack is registered: MAAS may refresh to {target} (racks first, then one region at a time)"));
        return ctx.action_set(&out);
    }
    out["result"] = json!("refused");
    let listed: serde_json::Map<String, Value> = reasons
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("{:02}", i + 1), json!(r)))
        .collect();
    out["reasons"] = Value::Object(listed);
    ctx.action_set(&out)?;
    ctx.action_fail(&format!(
        "not safe to upgrade MAAS now: {}",
        reasons.join("; ")
    ))
}

/// The database's primary and the standbys the relation names, with a reason when it is not
/// usable or names no standby (then a refresh's migrations run on the only copy).
fn database_view(
    ctx: &Context,
    cfg: &Config,
    reasons: &mut Vec<String>,
) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let db = match relations::database(&ctx.model, &cfg.database_name, None)? {
        relations::Database::Ready(db) => db,
        relations::Database::Missing => {
            reasons.push("no database relation (db or database)".into());
            return Ok((None, vec![]));
        }
        relations::Database::Both => {
            reasons.push("both db and database are related: remove one".into());
            return Ok((None, vec![]));
        }
        relations::Database::NotReady(why) => {
            reasons.push(format!("the database is not ready: {why}"));
            return Ok((None, vec![]));
        }
    };
    let mut standbys = Vec::new();
    // database (data_interfaces): `read-only-endpoints`, host:port; a provider with no replica
    // may name its primary there.
    if let Some(rel) = ctx.model.relation(relations::DATABASE)? {
        let d = rel.remote_app_data()?;
        for e in d
            .get("read-only-endpoints")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            let e = e.trim();
            let host = e
                .rsplit_once(':')
                .map_or(e, |(h, _)| h)
                .trim_matches(['[', ']']);
            if !e.is_empty() && host != db.host {
                standbys.push(e.to_string());
            }
        }
    }
    // db (legacy pgsql): `standbys`, one libpq string a line.
    if let Some(rel) = ctx.model.relation(relations::DB)? {
        for u in rel.units() {
            let d = rel.unit_data(u)?;
            for l in d
                .get(contracts::pgsql::keys::STANDBYS)
                .map(String::as_str)
                .unwrap_or("")
                .lines()
            {
                if !l.trim().is_empty() && !standbys.contains(&l.trim().to_string()) {
                    standbys.push(l.trim().to_string());
                }
            }
        }
    }
    if standbys.is_empty() {
        reasons.push(format!(
            "the database relation names no standby of the primary {}: a refresh's schema migrations would run on the only copy",
            db.host
        ));
    }
    Ok((Some(format!("{}:{}", db.host, db.port)), standbys))
}

/// `resume-refresh` (on the leader, which alone writes the application's data): lets a refresh
/// paused by `pause-after-unit-refresh` go on, after as many regions as run the new channel now
/// ([`peers::keys::RESUMED`]). The other regions see it in their next peer hook; the leader
/// itself at its next hook (update-status at the latest).
fn resume_refresh(ctx: &mut Context, cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.install_method == InstallMethod::Snap,
        "install-method=deb is upgraded with apt by the operator: there is no refresh to resume"
    );
    anyhow::ensure!(
        ctx.model.is_leader()?,
        "run resume-refresh on the leader (juju run maas-region/leader resume-refresh): only it writes the application's data"
    );
    let Some(rel) = ctx.model.relation(relations::PEERS)? else {
        anyhow::bail!("no peer relation yet: there is no refresh to resume");
    };
    let wanted = cfg.channel.clone();
    let mine: UnitBag = rel.read_unit(ctx.model.unit_name())?;
    let mut channels: Vec<(String, Option<String>)> =
        vec![(ctx.model.unit_name().to_string(), mine.channel)];
    drop(rel);
    channels.extend(
        relations::peers(&ctx.model)?
            .into_iter()
            .map(|p| (p.unit, p.channel)),
    );
    let refreshed = channels
        .iter()
        .filter(|(_, c)| c.as_deref() == Some(wanted.as_str()))
        .count();
    anyhow::ensure!(
        refreshed > 0,
        "no region runs {wanted} yet: nothing to resume (the first region refreshes without waiting)"
    );
    let behind: Vec<String> = channels
        .iter()
        .filter(|(_, c)| c.as_deref() != Some(wanted.as_str()))
        .map(|(u, c)| format!("{u} ({})", c.as_deref().unwrap_or("unknown")))
        .collect();
    anyhow::ensure!(
        !behind.is_empty(),
        "every region already runs {wanted}: there is no refresh to resume"
    );
    let Some(rel) = ctx.model.relation(relations::PEERS)? else {
        anyhow::bail!("no peer relation yet: there is no refresh to resume");
    };
    let app: AppBag = rel.read_my_app()?;
    let resumed = AppBag {
        resumed: Some(Resumed {
            channel: wanted.clone(),
            after: refreshed,
        }),
        ..app.clone()
    };
    rel.set_my_app_data(&peers::changes(&app, &resumed)?)?;
    ctx.action_set(&json!({
        "channel": wanted,
        "refreshed": refreshed.to_string(),
        "to-refresh": behind.join(", "),
        "pause-after-unit-refresh": cfg.pause_after_unit_refresh.as_str(),
        "message": match cfg.pause_after_unit_refresh {
            crate::config::Pause::All => format!("the next region refreshes to {wanted}; the refresh pauses again after it"),
            _ => format!("every remaining region refreshes to {wanted}, one at a time"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_lookup_by_cidr_name_or_id() {
        let v = json!([{"id": 3, "name": "pxe", "cidr": "10.20.0.0/24", "vlan": {"fabric_id": 1, "vid": 0}}]);
        assert_eq!(
            find_subnet(&v, "10.20.0.0/24"),
            Some((3, "10.20.0.0/24".into(), 1, 0))
        );
        assert_eq!(find_subnet(&v, "pxe").unwrap().0, 3);
        assert_eq!(find_subnet(&v, "3").unwrap().2, 1);
        assert_eq!(find_subnet(&v, "10.30.0.0/24"), None);
        assert_eq!(find_subnet(&json!({}), "x"), None);
    }

    #[test]
    fn cidr_membership() {
        assert!(in_cidr("10.20.0.100".parse().unwrap(), "10.20.0.0/24"));
        assert!(!in_cidr("10.20.1.1".parse().unwrap(), "10.20.0.0/24"));
        assert!(!in_cidr("10.20.1.1".parse().unwrap(), "garbage"));
    }

    #[test]
    fn racks_by_hostname_become_system_ids() {
        let racks = vec![
            relations::Rack {
                unit: "maas-rack/0".into(),
                hostname: "rack-a".into(),
                system_id: Some("abc123".into()),
                maas_channel: None,
                upgrade_request: None,
            },
            relations::Rack {
                unit: "maas-rack/1".into(),
                hostname: "rack-b".into(),
                system_id: None,
                maas_channel: None,
                upgrade_request: None,
            },
        ];
        assert_eq!(resolve_rack(&racks, "rack-a"), "abc123");
        assert_eq!(resolve_rack(&racks, "rack-b"), "rack-b");
        assert_eq!(resolve_rack(&racks, "xyz789"), "xyz789");
    }
}
