//! The actions. Each refuses clearly (action-fail with the reason) and never puts a password,
//! API key or the shared secret into logs.

use crate::config::{Config, InstallMethod};
use crate::maas;
use crate::reconcile::app_keys;
use crate::relations;
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
    Ok(rel
        .my_app_data()?
        .get(app_keys::MAAS_URL)
        .filter(|u| !u.is_empty())
        .cloned())
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
    ctx.machine.run(
        &Cmd::new(cli, login)
            .stdin(format!("{key}\n"))
            .sensitive(&key),
    )?;
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
