//! maas-region and maas-rack in the local model: the "in the local model" acceptance of issues
//! 4 and 5 on one deployment of `bundles/maas-ha.yaml` (PostgreSQL ×3 with its VIP, regions ×2
//! with theirs, racks ×2), in steps that run in order because each leaves the model as the next
//! one needs it. Every request comes from inside a host (the test process has no route into the
//! lab). Bounds are generous; timings are printed for `make bench`, never asserted tightly.
//!
//! Needs root and `make charms catalog deps` (skipped otherwise). `E2E_KEEP=1` keeps the model;
//! `E2E_REGION_RACK_OVERLAY=<file>` adds an overlay (e.g. to try a charm built elsewhere).

use anyhow::{anyhow, bail, ensure, Context, Result};
use e2e::probe::{longest_outage, Probe};
use e2e::{read_in, until, Deployment, FaultOp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 10.77.22.0/24: this file's subnet (VIPs .200 regions, .201 database).
const NET: u8 = 22;
/// Where the snap keeps what the charms and the stand-in write.
const REGIOND_CONF: &str = "/var/snap/maas/current/regiond.conf";
const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";
const RACK_SECRET: &str = "/var/snap/maas/common/maas/secret";
const RACKD_LOG: &str = "/var/log/maas/rackd-standin.log";
const DHCPD_CONF: &str = "/var/snap/maas/common/maas/dhcpd.conf";

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn vip_url(d: &Deployment) -> String {
    format!("http://{}/MAAS", d.region_vip())
}

/// A GET from inside `machine` (curl of the machine, through the host's own network).
fn get_in(d: &Deployment, machine: &str, url: &str) -> Result<String> {
    d.exec(machine, &["curl", "-sS", "-f", "--max-time", "5", url])
}

fn hostname_of(d: &Deployment, machine: &str) -> Result<String> {
    Ok(d.exec(machine, &["hostname"])?.trim().to_string())
}

/// The regiond stand-ins' heartbeats as one region's database connection sees them (a
/// loopback-only test endpoint of the stand-in): (hostname, unix time) of the latest 50.
fn heartbeats(d: &Deployment, via: &str) -> Result<Vec<(String, f64)>> {
    let text = get_in(d, via, "http://127.0.0.1:5240/MAAS/standin/heartbeats")?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("heartbeats: {text}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h["hostname"].as_str()?.to_string(), h["ts"].as_f64()?)))
        .collect())
}

/// Waits until every host in `hostnames` wrote a heartbeat after `since` (seen through `via`);
/// returns how long after `since` the last of them first did (as far as the latest 50 show).
fn heartbeats_after(
    d: &Deployment,
    via: &str,
    hostnames: &[String],
    since: f64,
    timeout: Duration,
) -> Result<Duration> {
    let (gap, _) = until(timeout, "regiond heartbeats", || {
        let beats = heartbeats(d, via)?;
        let mut slowest = 0.0f64;
        for h in hostnames {
            let first = beats
                .iter()
                .filter(|(b, ts)| b == h && *ts > since)
                .map(|(_, ts)| *ts)
                .fold(f64::INFINITY, f64::min);
            ensure!(
                first.is_finite(),
                "no heartbeat since {since} from {h} (latest: {:?})",
                beats.first()
            );
            slowest = slowest.max(first - since);
        }
        Ok(slowest)
    })?;
    Ok(Duration::from_secs_f64(gap))
}

/// The rackd stand-in's JSON-lines log of `machine`.
fn rackd_log(d: &Deployment, machine: &str) -> Vec<Value> {
    read_in(d, machine, RACKD_LOG)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the rackd on `machine`, after `since`, learnt the regions' RPC endpoints through
/// the VIP URL (its `maas_url`) and holds at least one connection; returns how long after
/// `since` its first such update was.
fn rack_reached_region_after(
    d: &Deployment,
    machine: &str,
    since: f64,
    timeout: Duration,
) -> Result<Duration> {
    let url = vip_url(d);
    let (at, _) = until(timeout, &format!("rackd on {machine}"), || {
        let log = rackd_log(d, machine);
        let hit = log
            .iter()
            .filter(|r| {
                r["event"] == "connections"
                    && r["ok"] == true
                    && r["url"].as_str().is_some_and(|u| u.starts_with(&url))
            })
            .filter_map(|r| r["unix"].as_f64())
            .find(|t| *t > since);
        hit.ok_or_else(|| {
            anyhow!(
                "no update through {url} with a connection since {since}; last: {}",
                log.last().cloned().unwrap_or_default()
            )
        })
    })?;
    Ok(Duration::from_secs_f64(at - since))
}

fn region_units(d: &Deployment) -> Result<Vec<(String, String, String)>> {
    Ok(d.units()?
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("maas-region/"))
        .collect())
}

/// Runs one step, printing its name and time; the first failing step fails the test.
fn step(name: &str, f: impl FnOnce() -> Result<()>) {
    eprintln!("--- {name}");
    let t = Instant::now();
    if let Err(e) = f() {
        panic!("step {name} failed after {:?}: {e:#}", t.elapsed());
    }
    eprintln!("    ok in {:.1?}", t.elapsed());
}

#[test]
fn regions_and_racks_in_ha_on_one_deployment() {
    let env = e2e::env_or_skip!();
    let extra: Vec<PathBuf> = std::env::var_os("E2E_REGION_RACK_OVERLAY")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let started = Instant::now();
    // The database VIP is down for the regions' first init: db-vip's own check fails on every
    // unit (nothing listens on 127.0.0.1:9), so keepalived holds the VIP nowhere.
    let vip_down = env.build.join("e2e/region-rack-db-vip-down.yaml");
    std::fs::create_dir_all(env.build.join("e2e")).expect("build/e2e");
    std::fs::write(
        &vip_down,
        format!("applications:\n  db-vip:\n    options:\n      check: {DB_VIP_DOWN_CHECK}\n"),
    )
    .expect("write the db-vip overlay");
    let mut overlays = vec![vip_down];
    overlays.extend(extra);
    let d = Deployment::bundle(&env, "region-rack", NET, &overlays)
        .expect("deploy bundles/maas-ha.yaml");
    step(
        "the database VIP down at the first init: the regions wait, none Active, nothing initialised",
        || db_vip_down_at_first_init(&d),
    );
    step(
        "the database VIP back: the regions initialise; none Active before its MAAS serves",
        || db_vip_back(&d),
    );
    // The first settling of this deployment: any hook error since `lm deploy` fails it.
    step("the bundle settles with every unit active", || {
        d.wait_active(Duration::from_secs(900))
    });
    eprintln!("    deployed and settled in {:.0?}", started.elapsed());

    step(
        "both regions are active with the VIP URL, both racks registered with it",
        || regions_and_racks_use_the_vip(&d),
    );
    step(
        "the regionds reach the database through the database VIP",
        || regionds_use_the_db_vip(&d),
    );
    step(
        "from a rack host, every open port of the database and region hosts wants TLS and a credential or is a documented MAAS port",
        || network_is_closed(&d),
    );
    step(
        "the version API answers through the region VIP from inside a host",
        || version_through_the_vip(&d).map(drop),
    );
    step("each rackd reaches a region through the VIP", || {
        for m in d.machines_of("maas-rack")? {
            rack_reached_region_after(&d, &m, 0.0, Duration::from_secs(60))?;
        }
        Ok(())
    });
    step(
        "the rack's secret is only in the file MAAS reads (0640 or stricter)",
        || rack_secret_stays_put(&d),
    );
    step(
        "configure-dhcp makes the two racks primary and secondary",
        || configure_dhcp(&d),
    );
    step(
        "add-unit maas-region: the third region joins and every haproxy lists three",
        || third_region_joins(&d),
    );
    step(
        "killing one regiond: requests through the VIP keep succeeding",
        || kill_one_regiond(&d),
    );
    step(
        "the database fails over: the regionds' heartbeats resume with no manual step",
        || database_failover(&d),
    );
    step(
        "the region VIP holder's host goes down: requests and every rack resume",
        || region_vip_holder_down(&d),
    );
    step(
        "pre-upgrade-check passes on the settled deployment and names the versions and the target",
        || pre_upgrade_check_passes(&d),
    );
    step(
        "MAAS 3.6 → 3.7: racks first, then regions, one at a time, under requests through the VIP",
        || maas_upgrade(&d),
    );
    step(
        "juju refresh of maas-region, maas-rack and region-vip under requests: nothing restarts",
        || refresh_restarts_nothing(&d, &env),
    );
    step(
        "tls-enabled: one certificate on every region, users on 443, racks and machines on http",
        || tls_on(&d),
    );
    eprintln!("whole run: {:.0?}", started.elapsed());
}

/// db-vip's extra check while the drill keeps the database VIP down.
const DB_VIP_DOWN_CHECK: &str = "tcp:9";

/// The model settles with the database VIP held nowhere: postgresql-ha gives the regions no
/// endpoint (its units say why), so no region runs `maas init` (no snap_mode) and none is Active.
fn db_vip_down_at_first_init(d: &Deployment) -> Result<()> {
    let (_, took) = until(
        Duration::from_secs(900),
        "settled with the regions waiting for their database endpoint",
        || {
            let regions = region_units(d)?;
            if let Some((n, _, m)) = regions.iter().find(|(_, s, _)| s == "active") {
                // Not retried: a region Active without its database is the failure itself.
                panic!("{n} is active while the database VIP is down: {m}");
            }
            ensure!(regions.len() >= 2, "regions: {regions:?}");
            ensure!(d.lm.unsettled()?.is_empty(), "not settled");
            ensure!(
                regions
                    .iter()
                    .all(|(_, s, m)| s == "waiting" && m.contains("database")),
                "regions: {regions:?}"
            );
            Ok(())
        },
    )?;
    eprintln!("    settled with the DB VIP down in {took:.0?}");
    ensure!(
        d.vip_holders(&d.db_vip())?.is_empty(),
        "someone holds the DB VIP"
    );
    let pg: Vec<(String, String, String)> = d
        .units()?
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("postgresql-ha/"))
        .collect();
    ensure!(
        pg.iter()
            .any(|(_, s, m)| s == "waiting" && m.contains("to hold the database VIP")),
        "postgresql-ha says why it gives the regions nothing: {pg:?}"
    );
    // The snap's install writes "none"; init writes the mode only after its migrations.
    for m in d.machines_of("maas-region")? {
        let mode = read_in(d, &m, "/var/snap/maas/common/snap_mode").unwrap_or_default();
        ensure!(
            matches!(mode.trim(), "" | "none"),
            "machine {m}: MAAS initialised ({mode:?}) without a database"
        );
    }
    Ok(())
}

/// db-vip's check back to passing: the VIP is held, postgresql-ha publishes it, each region
/// initialises. Until every region is Active, each one that says Active has its MAAS answer.
fn db_vip_back(d: &Deployment) -> Result<()> {
    d.lm.config("db-vip", &["check="])?;
    let holder = d.wait_vip_holder(&d.db_vip(), Duration::from_secs(120))?;
    eprintln!("    the DB VIP is on machine {holder}");
    let mut seen_serving = BTreeSet::new();
    let (_, took) = until(Duration::from_secs(900), "every region active", || {
        for (unit, status, _) in region_units(d)? {
            if status != "active" || seen_serving.contains(&unit) {
                continue;
            }
            let m = d.machine_of(&unit)?;
            if let Err(e) = get_in(d, &m, "http://127.0.0.1:5240/MAAS/rpc/") {
                let show = |argv: &[&str]| {
                    d.exec(&m, argv)
                        .unwrap_or_else(|e| format!("{}: {e:#}", argv.join(" ")))
                };
                panic!(
                    "{unit} is active but its MAAS does not answer: {e:#}\nsnap_mode: {}\n{}\nthrough its haproxy: {}\nstatus: {:?}",
                    show(&["cat", "/var/snap/maas/common/snap_mode"]),
                    show(&["sh", "-c", "snap services maas; pgrep -a nginx; pgrep -a regiond"]),
                    show(&["curl", "-sS", "-f", "--max-time", "5", "http://127.0.0.1/MAAS/rpc/"]),
                    region_units(d)
                );
            }
            seen_serving.insert(unit);
        }
        let regions = region_units(d)?;
        ensure!(
            regions.iter().all(|(_, s, _)| s == "active"),
            "regions: {regions:?}"
        );
        Ok(())
    })?;
    eprintln!("    every region initialised and serving {took:.0?} after the VIP came back");
    Ok(())
}

fn regions_and_racks_use_the_vip(d: &Deployment) -> Result<()> {
    let url = vip_url(d);
    let units = d.units()?;
    let regions: Vec<_> = units
        .iter()
        .filter(|(n, _, _)| n.starts_with("maas-region/"))
        .collect();
    let racks: Vec<_> = units
        .iter()
        .filter(|(n, _, _)| n.starts_with("maas-rack/"))
        .collect();
    ensure!(
        regions.len() == 2 && racks.len() == 2,
        "expected 2 regions and 2 racks: {units:?}"
    );
    for (n, s, m) in regions {
        ensure!(
            s == "active" && *m == format!("serving {url}"),
            "{n}: {s} {m:?}"
        );
    }
    for (n, s, m) in racks {
        ensure!(
            s == "active" && m.starts_with(&format!("registered with {url}")),
            "{n}: {s} {m:?}"
        );
    }
    Ok(())
}

fn regionds_use_the_db_vip(d: &Deployment) -> Result<()> {
    let db_vip = d.db_vip();
    let machines = d.machines_of("maas-region")?;
    let mut hostnames = vec![];
    for m in &machines {
        let conf = read_in(d, m, REGIOND_CONF)?;
        ensure!(
            conf.lines()
                .any(|l| l.trim() == format!("database_host: {db_vip}")),
            "machine {m}: regiond.conf does not name the database VIP {db_vip}:\n{}",
            conf.lines()
                .filter(|l| !l.contains("pass"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The live connection: regiond holds an established TCP connection to the VIP.
        until(
            Duration::from_secs(60),
            &format!("regiond's connection on machine {m}"),
            || {
                let ss = d.exec(
                    m,
                    &[
                        "ss",
                        "-Htnp",
                        "state",
                        "established",
                        "dst",
                        &format!("{db_vip}:5432"),
                    ],
                )?;
                ensure!(
                    ss.contains("\"regiond\""),
                    "no regiond connection to {db_vip}:5432 on machine {m}: {ss:?}"
                );
                Ok(())
            },
        )?;
        hostnames.push(hostname_of(d, m)?);
    }
    // Each regiond writes heartbeats through that connection.
    heartbeats_after(
        d,
        &machines[0],
        &hostnames,
        now_unix() - 5.0,
        Duration::from_secs(60),
    )?;
    Ok(())
}

/// Issue 19's outsider: a rack host (no database member) looks at the database and region
/// hosts; the regions' own database credentials work only over TLS.
fn network_is_closed(d: &Deployment) -> Result<()> {
    let rack = d
        .machines_of("maas-rack")?
        .into_iter()
        .next()
        .context("no rack machine")?;
    let mut report = e2e::exposure::database_hosts_are_closed(d, &rack)?;
    let db = d.machines_of("postgresql-ha")?;
    for m in d.machines_of("maas-region")? {
        let open = e2e::exposure::open_ports(d, &m)?;
        // A database member's own ports were looked at above.
        let odd: Vec<&u16> = open
            .iter()
            .filter(|p| !e2e::exposure::documented_region_port(**p))
            .filter(|p| !(db.contains(&m) && e2e::exposure::DB_PORTS.contains(p)))
            .collect();
        ensure!(
            odd.is_empty(),
            "region machine {m} listens on undocumented ports {odd:?} (all: {open:?})"
        );
        report.push(format!(
            "region machine {m}: open {open:?}, each a documented MAAS or database port"
        ));
        let conf = read_in(d, &m, REGIOND_CONF)?;
        let get = |k: &str| {
            conf.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("{k}:"))
                        .map(|v| v.trim().trim_matches('\'').to_string())
                })
                .with_context(|| format!("regiond.conf on {m} has no {k}"))
        };
        report.extend(e2e::exposure::client_needs_tls(
            d,
            &m,
            &get("database_host")?,
            &get("database_user")?,
            &get("database_pass")?,
            &get("database_name")?,
        )?);
    }
    for line in report {
        eprintln!("    {line}");
    }
    Ok(())
}

/// The version document through the VIP, from a rack's host; returns the answering region.
fn version_through_the_vip(d: &Deployment) -> Result<String> {
    let rack = d
        .machines_of("maas-rack")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no rack machine"))?;
    let text = get_in(d, &rack, &format!("{}/api/2.0/version/", vip_url(d)))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("version: {text}"))?;
    let region = v["hostname"]
        .as_str()
        .ok_or_else(|| anyhow!("no hostname in {text}"))?
        .to_string();
    let regions: Vec<String> = d
        .machines_of("maas-region")?
        .iter()
        .map(|m| hostname_of(d, m))
        .collect::<Result<_>>()?;
    ensure!(
        regions.contains(&region),
        "answered by {region}, not one of the regions {regions:?}"
    );
    Ok(region)
}

/// Every regular file under `dir` (machine side) whose content contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_containing(&e.path(), needle, out);
        } else if ft.is_file() {
            if let Ok(data) = std::fs::read(e.path()) {
                if data.windows(needle.len()).any(|w| w == needle) {
                    out.push(e.path());
                }
            }
        }
    }
}

fn rack_secret_stays_put(d: &Deployment) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let racks = d.machines_of("maas-rack")?;
    let secret = read_in(d, &racks[0], RACK_SECRET)?.trim().to_string();
    ensure!(
        secret.len() >= 16,
        "the shared secret file is too short to be one: {} bytes",
        secret.len()
    );
    for m in &racks {
        let meta = std::fs::metadata(d.lm.host_path(m, RACK_SECRET)?)?;
        ensure!(
            meta.mode() & 0o137 == 0,
            "machine {m}: {RACK_SECRET} has mode {:o}, looser than 0640",
            meta.mode() & 0o777
        );
    }
    // Logs of every unit and of the model, status, relation data, charm state.
    let mut hits = vec![];
    files_containing(&d.dir.join("logs"), secret.as_bytes(), &mut hits);
    let daemon_log = d.dir.join("daemon.log");
    if std::fs::read(&daemon_log)
        .is_ok_and(|t| t.windows(secret.len()).any(|w| w == secret.as_bytes()))
    {
        hits.push(daemon_log);
    }
    ensure!(hits.is_empty(), "the rack's secret is in logs: {hits:?}");
    ensure!(
        !d.status()?.to_string().contains(&secret),
        "the rack's secret is in status"
    );
    let state: Value = serde_json::from_str(&std::fs::read_to_string(d.dir.join("state.json"))?)?;
    ensure!(
        !state["relations"].to_string().contains(&secret),
        "the rack's secret is in relation data"
    );
    ensure!(
        !state["units"].to_string().contains(&secret),
        "the rack's secret is in a unit's charm state or hook log"
    );
    // Files the rack hosts wrote (their overlay upper layers, plus /run and /tmp inside).
    for m in &racks {
        let mut found = vec![];
        let upper = d.dir.join("lab/hosts").join(format!("m{m}")).join("upper");
        ensure!(
            upper.is_dir(),
            "no overlay upper layer at {}",
            upper.display()
        );
        files_containing(&upper, secret.as_bytes(), &mut found);
        let inside: Vec<String> = found
            .iter()
            .filter_map(|p| {
                p.strip_prefix(&upper)
                    .ok()
                    .map(|r| format!("/{}", r.display()))
            })
            .filter(|p| p != RACK_SECRET)
            .collect();
        ensure!(
            inside.is_empty(),
            "machine {m}: the rack's secret is also in {inside:?}"
        );
        // /run/local-model holds the machine's own root (read-only): not the host's files.
        let (_, out, _) = d.lm.exec(
            m,
            &[
                "grep",
                "-rlsF",
                "--exclude-dir=local-model",
                "--",
                &secret,
                "/run",
                "/tmp",
            ],
        )?;
        // The directories the local model shares into every host (the model dir, `lm`'s) are
        // the machine's view of the test bed, not the machine's own files: a clone under /tmp
        // puts them under /tmp.
        let shared = [
            d.dir.clone(),
            d.env.lm.parent().map(Path::to_path_buf).unwrap_or_default(),
        ];
        let own: Vec<&str> = out
            .lines()
            .filter(|l| !shared.iter().any(|s| Path::new(l).starts_with(s)))
            .collect();
        ensure!(
            own.is_empty(),
            "machine {m}: the rack's secret is also in {own:?}"
        );
    }
    Ok(())
}

/// configure-dhcp's parameters: this lab's subnet, a range in it, rack 0 primary and rack 1
/// secondary.
fn dhcp_params(d: &Deployment) -> Result<Vec<String>> {
    let racks = d.machines_of("maas-rack")?;
    let net = format!("10.77.{}", d.net);
    Ok(vec![
        format!("subnet={net}.0/24"),
        format!("start={net}.100"),
        format!("end={net}.150"),
        format!("primary-rack={}", hostname_of(d, &racks[0])?),
        format!("secondary-rack={}", hostname_of(d, &racks[1])?),
    ])
}

fn configure_dhcp(d: &Deployment) -> Result<()> {
    let racks = d.machines_of("maas-rack")?;
    let (primary, secondary) = (hostname_of(d, &racks[0])?, hostname_of(d, &racks[1])?);
    let secondary_ip = d
        .exec(&racks[1], &["hostname", "-I"])?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    d.action(
        "maas-region/0",
        "create-admin",
        &[
            "username=admin",
            "password=e2e-admin-pw",
            "email=admin@example.com",
        ],
    )?;
    let net = format!("10.77.{}", d.net);
    let params = dhcp_params(d)?;
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let out = d.action("maas-region/0", "configure-dhcp", &params)?;
    eprintln!("    configure-dhcp: {out}");
    // The regions push each rack its role down its RPC connections; the rackd stand-in records
    // it and writes dhcpd.conf as MAAS's rackd would.
    for (m, role) in [(&racks[0], "primary"), (&racks[1], "secondary")] {
        until(
            Duration::from_secs(60),
            &format!("rack on machine {m} as DHCP {role}"),
            || {
                let log = rackd_log(d, m);
                let last = log
                    .iter()
                    .rev()
                    .find(|r| r["event"] == "dhcp")
                    .cloned()
                    .unwrap_or_default();
                let roles = last["dhcp"].as_array().cloned().unwrap_or_default();
                ensure!(
                    roles
                        .iter()
                        .any(|r| r["dhcp_on"] == true && r["role"] == role),
                    "the latest DHCP configuration pushed to machine {m} gives no DHCP {role} role: {last}"
                );
                Ok(())
            },
        )?;
    }
    // The failover pair as dhcpd.conf names it (the stand-in names the peer by host name, MAAS
    // by address: either is the other rack).
    let conf = read_in(d, &racks[0], DHCPD_CONF)?;
    let peer_is = |conf: &str, ip: &str, name: &str| {
        conf.contains(&format!("peer address {ip};"))
            || conf.contains(&format!("peer address {name};"))
    };
    ensure!(
        conf.contains("primary;") && peer_is(&conf, &secondary_ip, &secondary),
        "primary's dhcpd.conf has no failover peer {secondary}/{secondary_ip}:\n{conf}"
    );
    let primary_ip = d
        .exec(&racks[0], &["hostname", "-I"])?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let conf2 = read_in(d, &racks[1], DHCPD_CONF)?;
    ensure!(
        conf2.contains("secondary;") && peer_is(&conf2, &primary_ip, &primary),
        "secondary's dhcpd.conf has no failover peer {primary}/{primary_ip}:\n{conf2}"
    );
    ensure!(
        conf.contains(&format!("{net}.100")) && conf.contains(&format!("{net}.150")),
        "primary's dhcpd.conf lacks the dynamic range:\n{conf}"
    );
    Ok(())
}

fn haproxy_servers(d: &Deployment, machine: &str) -> Result<BTreeSet<String>> {
    let cfg = read_in(d, machine, HAPROXY_CFG)?;
    // Not `default_backend maas_http` in the frontend: the backend section itself.
    let backend = cfg
        .split("\nbackend maas_http\n")
        .nth(1)
        .ok_or_else(|| anyhow!("machine {machine}: no maas_http backend"))?;
    let backend = backend.split("\nbackend ").next().unwrap_or(backend);
    Ok(backend
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect())
}

fn third_region_joins(d: &Deployment) -> Result<()> {
    let racks = d.machines_of("maas-rack")?;
    let probe = Probe::http(
        d,
        &racks[0],
        "add-unit",
        &format!("{}/api/2.0/version/", vip_url(d)),
        200,
    )?;
    probe.wait_successes(5, Duration::from_secs(30))?;
    let t = Instant::now();
    // On the third database host, as the bundle co-locates the first two.
    d.lm.add_unit("maas-region", 1, Some("2"))?;
    d.wait_active(Duration::from_secs(600))?;
    eprintln!("    add-unit settled in {:.0?}", t.elapsed());
    // Requests through the VIP work once the model settled (within a generous bound: a
    // joining keepalived-vip unit has been seen to take the VIP for a second, which leaves the
    // clients' ARP entries on the wrong host until they expire; see the report of this test).
    let waited = Instant::now();
    let resumed = probe.wait_successes(5, Duration::from_secs(90));
    let records = probe.stop()?;
    let failed = records.iter().filter(|r| r["ok"] != true).count();
    eprintln!("    requests through the VIP during add-unit: {} made, {failed} failed, longest outage {:?}, {:.0?} to 5 successes after settling", records.len(), longest_outage(&records), waited.elapsed());
    resumed.context("requests through the VIP did not work after add-unit")?;
    let url = vip_url(d);
    let regions = region_units(d)?;
    ensure!(
        regions.len() == 3
            && regions
                .iter()
                .all(|(_, s, m)| s == "active" && *m == format!("serving {url}")),
        "{regions:?}"
    );
    let machines = d.machines_of("maas-region")?;
    let want: BTreeSet<String> = machines
        .iter()
        .map(|m| {
            d.lm.exec(m, &["hostname", "-I"]).map(|(_, o, _)| {
                format!("{}:5240", o.split_whitespace().next().unwrap_or_default())
            })
        })
        .collect::<Result<_>>()?;
    for m in &machines {
        let servers = haproxy_servers(d, m)?;
        ensure!(
            servers == want,
            "machine {m}: haproxy lists {servers:?}, want {want:?}"
        );
        // The running haproxy took it: its master process is there and the file is valid.
        d.exec(m, &["haproxy", "-c", "-q", "-f", HAPROXY_CFG])?;
    }
    Ok(())
}

fn kill_one_regiond(d: &Deployment) -> Result<()> {
    let racks = d.machines_of("maas-rack")?;
    let serving = version_through_the_vip(d)?;
    let mut victim = None;
    for m in d.machines_of("maas-region")? {
        if hostname_of(d, &m)? == serving {
            victim = Some(m);
        }
    }
    let victim = victim.ok_or_else(|| anyhow!("no machine named {serving}"))?;
    let probe = Probe::http(
        d,
        &racks[0],
        "kill-regiond",
        &format!("{}/api/2.0/version/", vip_url(d)),
        200,
    )?;
    probe.wait_successes(5, Duration::from_secs(30))?;
    let killed_at = now_unix();
    d.fault(
        &victim,
        FaultOp::Kill {
            target: "regiond".into(),
            signal: 9,
        },
    )?;
    probe.wait_successes(50, Duration::from_secs(60))?;
    let records = probe.stop()?;
    let after: Vec<Value> = records
        .into_iter()
        .filter(|r| r["t_ms"].as_f64().unwrap_or(0.0) / 1000.0 >= killed_at)
        .collect();
    let failed = after.iter().filter(|r| r["ok"] != true).count();
    let outage = longest_outage(&after);
    eprintln!("    regiond killed on machine {victim} ({serving}): {} requests after, {failed} failed, longest outage {outage:?}", after.len());
    if let Some((gap, _)) = outage {
        ensure!(
            gap < Duration::from_secs(10),
            "requests through the VIP failed for {gap:?} after regiond died on {serving}"
        );
    }
    ensure!(
        after.len() >= 50,
        "too few requests after the kill: {}",
        after.len()
    );
    Ok(())
}

/// Moves the database primary off `host` with a planned switchover (no write is lost), and
/// waits for the database VIP to follow and every regiond to write again.
fn primary_off(d: &Deployment, host: &str) -> Result<()> {
    // Patroni names a synchronous standby again a little after a member rejoined.
    let (out, _) = until(Duration::from_secs(120), "a switchover", || {
        d.action("postgresql-ha/0", "switchover", &[])
    })?;
    eprintln!("    switchover: {out}");
    until(
        Duration::from_secs(60),
        "the database VIP leaves the old primary's host",
        || {
            let h = d.wait_vip_holder(&d.db_vip(), Duration::from_secs(5))?;
            ensure!(h != host, "the database VIP is still on machine {host}");
            Ok(())
        },
    )?;
    let regions = d.machines_of("maas-region")?;
    let names: Vec<String> = regions
        .iter()
        .map(|m| hostname_of(d, m))
        .collect::<Result<_>>()?;
    heartbeats_after(d, &regions[0], &names, now_unix(), Duration::from_secs(60))?;
    Ok(())
}

/// Hooks run so far by each rack unit: (count, names of the latest), from the model's state.
fn rack_hooks(d: &Deployment) -> Result<Vec<(String, u64, Vec<String>)>> {
    let (state, _) = until(Duration::from_secs(10), "the model's state", || {
        Ok(serde_json::from_str::<Value>(&std::fs::read_to_string(
            d.dir.join("state.json"),
        )?)?)
    })?;
    Ok(state["units"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| n.starts_with("maas-rack/"))
        .map(|(n, u)| {
            (
                n.clone(),
                u["hooks_run"].as_u64().unwrap_or(0),
                u["hook_log"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.as_str().map(String::from))
                    .collect(),
            )
        })
        .collect())
}

/// The hooks each rack ran since `before` (names; `update-status` comes by itself).
fn rack_hooks_since(d: &Deployment, before: &[(String, u64, Vec<String>)]) -> Result<Vec<String>> {
    let mut ran = vec![];
    for (n, count, log) in rack_hooks(d)? {
        let was = before
            .iter()
            .find(|(b, _, _)| *b == n)
            .map(|(_, c, _)| *c)
            .unwrap_or(0);
        let new = (count - was.min(count)) as usize;
        ran.extend(log.iter().rev().take(new).map(|h| format!("{n}: {h}")));
    }
    Ok(ran)
}

/// The time of the first successful request after `since` (seconds after it).
fn first_success_after(records: &[Value], since: f64) -> Option<f64> {
    records
        .iter()
        .filter(|r| r["ok"] == true)
        .filter_map(|r| r["t_ms"].as_f64())
        .map(|t| t / 1000.0)
        .find(|t| *t > since)
        .map(|t| t - since)
}

/// Pulls the plug on the host holding the region VIP: requests from a rack's host and every
/// rackd reach a region again by themselves. The database primary is moved off that host
/// first, so that this step measures the region VIP's failover, not the database's.
fn region_vip_holder_down(d: &Deployment) -> Result<()> {
    let holder = d.wait_vip_holder(&d.region_vip(), Duration::from_secs(30))?;
    if d.wait_vip_holder(&d.db_vip(), Duration::from_secs(30))? == holder {
        primary_off(d, &holder)?;
    }
    let racks = d.machines_of("maas-rack")?;
    let probe = Probe::http(
        d,
        &racks[0],
        "vip-down",
        &format!("{}/api/2.0/version/", vip_url(d)),
        200,
    )?;
    probe.wait_successes(5, Duration::from_secs(30))?;
    let hooks_before = rack_hooks(d)?;
    let down_at = now_unix();
    d.fault(&holder, FaultOp::Stop)?;
    let result = (|| -> Result<()> {
        probe
            .wait_successes(10, Duration::from_secs(60))
            .context("requests through the VIP did not resume")?;
        for m in &racks {
            // MAAS's rackd asks again only on its timer (30 s once fully connected) and waits
            // for its connects to the lost host's event-loops (30 s TCP timeout) before the
            // next update: up to about 70 s, so a generous bound.
            let after = rack_reached_region_after(d, m, down_at, Duration::from_secs(120))?;
            eprintln!("    rackd on machine {m} learnt the endpoints through the VIP again {after:.1?} after the host went down");
            // Meanwhile it kept its RPC connections to the surviving regions (MAAS's rackd
            // holds one to every region's workers and drops only the lost ones).
            let log = rackd_log(d, m);
            let since: Vec<&Value> = log
                .iter()
                .filter(|r| {
                    r["event"] == "connections" && r["unix"].as_f64().unwrap_or(0.0) > down_at
                })
                .collect();
            ensure!(
                !since.is_empty(),
                "rackd on machine {m} logged no update since the host went down"
            );
            if let Some(bare) = since.iter().find(|r| r["ok"] != true) {
                anyhow::bail!(
                    "rackd on machine {m} held no region connection at one point: {bare}"
                );
            }
        }
        // By itself: no rack hook (other than a periodic update-status) ran meanwhile.
        let hooks = rack_hooks_since(d, &hooks_before)?;
        ensure!(
            hooks.iter().all(|h| h.ends_with(": update-status")),
            "rack hooks ran during the failover: {hooks:?}"
        );
        let new_holder = d.wait_vip_holder(&d.region_vip(), Duration::from_secs(30))?;
        ensure!(new_holder != holder, "the VIP is still on the stopped host");
        Ok(())
    })();
    let records = probe.stop().unwrap_or_default();
    let after: Vec<Value> = records
        .iter()
        .filter(|r| r["t_ms"].as_f64().unwrap_or(0.0) / 1000.0 >= down_at)
        .cloned()
        .collect();
    eprintln!("    region VIP holder machine {holder} down: requests succeeded again {:?} s after, longest outage {:?}", first_success_after(&records, down_at), longest_outage(&after));
    d.fault(&holder, FaultOp::Start)?;
    result
}

fn database_failover(d: &Deployment) -> Result<()> {
    let primary = d.wait_vip_holder(&d.db_vip(), Duration::from_secs(30))?;
    let survivors: Vec<String> = d
        .machines_of("maas-region")?
        .into_iter()
        .filter(|m| *m != primary)
        .collect();
    let names: Vec<String> = survivors
        .iter()
        .map(|m| hostname_of(d, m))
        .collect::<Result<_>>()?;
    heartbeats_after(
        d,
        &survivors[0],
        &names,
        now_unix() - 5.0,
        Duration::from_secs(30),
    )?;
    let down_at = now_unix();
    d.fault(&primary, FaultOp::Stop)?;
    let result = (|| -> Result<()> {
        let took = heartbeats_after(d, &survivors[0], &names, down_at, Duration::from_secs(120))
            .context("the regionds' heartbeats did not resume after the database failover")?;
        let new_primary = d.wait_vip_holder(&d.db_vip(), Duration::from_secs(30))?;
        ensure!(
            new_primary != primary,
            "the database VIP is still on the stopped host"
        );
        eprintln!("    database primary on machine {primary} down: heartbeats of {names:?} resumed {took:.1?} after, the VIP moved to machine {new_primary}");
        Ok(())
    })();
    d.fault(&primary, FaultOp::Start)?;
    result?;
    // The host comes back; PostgreSQL rejoins before the next step takes another host down.
    // Patroni is asked directly: postgresql-ha's status is only refreshed by its next hook.
    until(
        Duration::from_secs(300),
        "every PostgreSQL member running again",
        || {
            for m in d.machines_of("postgresql-ha")? {
                let v: Value = serde_json::from_str(
                    &d.exec(
                        &m,
                        &[
                            &["curl", "-sS", "-f", "--max-time", "5"],
                            e2e::ha::PATRONI_TLS,
                            &["https://127.0.0.1:8008/patroni"],
                        ]
                        .concat(),
                    )?,
                )?;
                ensure!(
                    v["state"] == "running",
                    "machine {m}: Patroni says {}",
                    v["state"]
                );
            }
            Ok(())
        },
    )?;
    until(
        Duration::from_secs(300),
        "every region and rack active",
        || {
            let units = d.units()?;
            let not: Vec<_> = units
                .iter()
                .filter(|(n, s, _)| {
                    (n.starts_with("maas-region/") || n.starts_with("maas-rack/")) && s != "active"
                })
                .collect();
            ensure!(not.is_empty(), "{not:?}");
            Ok(())
        },
    )?;
    Ok(())
}

/// The version of the `maas` snap on `machine` (`snap list`'s Version column).
fn maas_version_on(d: &Deployment, machine: &str) -> Result<String> {
    let out = d.exec(machine, &["snap", "list", "maas"])?;
    out.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("snap list maas on machine {machine}: {out}"))
}

/// Once the model has settled: the rack machines, and requests through the VIP from the first
/// of them, already answered.
fn settled_with_requests<'d>(d: &'d Deployment, name: &str) -> Result<(Vec<String>, Probe<'d>)> {
    d.wait_active(Duration::from_secs(300))?;
    let racks = d.machines_of("maas-rack")?;
    let probe = Probe::http(
        d,
        &racks[0],
        name,
        &format!("{}/api/2.0/version/", vip_url(d)),
        200,
    )?;
    probe.wait_successes(5, Duration::from_secs(30))?;
    Ok((racks, probe))
}

/// Issue 22: on the settled deployment (three regions, two racks, the database with its
/// standbys), pre-upgrade-check passes, finds every region answering, reports MAAS 3.6 (this
/// unit's snap and MAAS's API), and names 3.7/stable as the target with the racks to refresh
/// first.
fn pre_upgrade_check_passes(d: &Deployment) -> Result<()> {
    d.wait_active(Duration::from_secs(300))?;
    let r = d.action(
        "maas-region/0",
        "pre-upgrade-check",
        &["channel=3.7/stable"],
    )?;
    eprintln!("    pre-upgrade-check: {r}");
    ensure!(r["result"] == "ok", "{r}");
    ensure!(r["refresh-to"] == "3.7/stable", "{r}");
    let regions = r["regions"]
        .as_object()
        .context("no regions in the results")?;
    ensure!(regions.len() == region_units(d)?.len(), "{r}");
    for (u, v) in regions {
        ensure!(v["answers"] == "true", "{u}: {v}");
    }
    for k in ["installed-version", "maas-version"] {
        ensure!(
            r[k].as_str().is_some_and(|v| v.starts_with("3.6.")),
            "{k}: {r}"
        );
    }
    let racks = r["racks"].as_object().context("no racks in the results")?;
    ensure!(
        racks.len() == 2 && racks.values().all(|v| v["registered"] == "true"),
        "{r}"
    );
    ensure!(
        r["racks-first"]
            .as_str()
            .is_some_and(|s| s.contains("maas-rack/0")),
        "{r}"
    );
    Ok(())
}

/// MAAS's upgrade order (docs/how-to-guides/upgrade-maas.md: racks first, then regions): the
/// regions wait while a rack runs the older track; the racks refresh one at a time when the
/// region leader lets them; then the regions, one at a time under the init lock; requests
/// through the VIP go on; going back a track is refused.
fn maas_upgrade(d: &Deployment) -> Result<()> {
    let (racks, probe) = settled_with_requests(d, "maas-upgrade")?;
    let t = Instant::now();
    // Regions first on purpose: they must wait for the racks.
    d.lm.config("maas-region", &["channel=3.7/stable"])?;
    until(
        Duration::from_secs(120),
        "regions waiting for the racks",
        || {
            let regions = region_units(d)?;
            ensure!(
                regions.iter().all(|(_, s, m)| s == "waiting"
                    && m.contains("waits for the racks to refresh first")),
                "{regions:?}"
            );
            Ok(())
        },
    )?;
    for m in d.machines_of("maas-region")? {
        let v = maas_version_on(d, &m)?;
        ensure!(
            v.starts_with("3.6."),
            "region machine {m} refreshed before the racks: {v}"
        );
    }
    // A refresh configured and not done: pre-upgrade-check refuses and says why.
    match d.action("maas-region/0", "pre-upgrade-check", &["channel=3.7/stable"]) {
        Ok(r) => bail!("pre-upgrade-check passed while the regions wait to refresh: {r}"),
        Err(e) => ensure!(
            format!("{e:#}").contains(
                "channel is set to 3.7/stable but maas-region/0 runs 3.6/stable: a refresh is under way or waiting"
            ),
            "pre-upgrade-check refused for another reason: {e:#}"
        ),
    }
    d.lm.config("maas-rack", &["channel=3.7/stable"])?;
    until(Duration::from_secs(600), "every unit on MAAS 3.7", || {
        for m in d
            .machines_of("maas-rack")?
            .iter()
            .chain(d.machines_of("maas-region")?.iter())
        {
            let v = maas_version_on(d, m)?;
            ensure!(v.starts_with("3.7."), "machine {m} runs {v}");
        }
        Ok(())
    })?;
    d.wait_active(Duration::from_secs(300))?;
    eprintln!("    MAAS upgraded on every unit in {:.0?}", t.elapsed());
    let resumed = probe.wait_successes(5, Duration::from_secs(60));
    let records = probe.stop()?;
    let failed = records.iter().filter(|r| r["ok"] != true).count();
    eprintln!(
        "    requests through the VIP during the upgrade: {} made, {failed} failed, longest outage {:?}",
        records.len(),
        longest_outage(&records)
    );
    resumed.context("requests through the VIP did not work after the upgrade")?;
    let v = get_in(d, &racks[0], &format!("{}/api/2.0/version/", vip_url(d)))?;
    ensure!(v.contains("\"3.7."), "the VIP answers {v}");
    // Back a track: refused, and MAAS keeps running 3.7.
    d.lm.config("maas-region", &["channel=3.6/stable"])?;
    until(Duration::from_secs(120), "the downgrade refused", || {
        let regions = region_units(d)?;
        ensure!(
            regions
                .iter()
                .all(|(_, s, m)| s == "blocked" && m.contains("MAAS cannot go back")),
            "{regions:?}"
        );
        Ok(())
    })?;
    d.lm.config("maas-region", &["channel=3.7/stable"])?;
    d.wait_active(Duration::from_secs(300))
}

/// The services our charms run on the region and rack machines, by machine: systemd's MainPID
/// of each (a restart changes it).
fn service_pids(d: &Deployment) -> Result<BTreeSet<(String, String, String)>> {
    let mut out = BTreeSet::new();
    let regions = d.machines_of("maas-region")?;
    for m in regions.iter().chain(d.machines_of("maas-rack")?.iter()) {
        let mut services = vec!["snap.maas.pebble"];
        if regions.contains(m) {
            services.extend(["haproxy", "keepalived-region-vip"]);
        }
        for s in services {
            let pid = d.exec(m, &["systemctl", "show", "-p", "MainPID", "--value", s])?;
            let pid = pid.trim().to_string();
            ensure!(
                pid != "0" && !pid.is_empty(),
                "machine {m}: {s} does not run"
            );
            out.insert((m.clone(), s.to_string(), pid));
        }
    }
    Ok(out)
}

/// Every unit's status entry by name, subordinates (nested under their principal) included.
fn unit_entries(st: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for app in st["applications"]
        .as_object()
        .into_iter()
        .flat_map(|a| a.values())
    {
        for (name, u) in app["units"].as_object().into_iter().flatten() {
            out.insert(name.clone(), u.clone());
            for (sub, su) in u["subordinates"].as_object().into_iter().flatten() {
                out.insert(sub.clone(), su.clone());
            }
        }
    }
    out
}

/// Issue 22: `juju refresh` of our charms (upgrade-charm with a new .charm, here the same one)
/// changes nothing that does not need to change: no service restarts, no request fails.
fn refresh_restarts_nothing(d: &Deployment, env: &e2e::Env) -> Result<()> {
    let (_, probe) = settled_with_requests(d, "refresh")?;
    let before = service_pids(d)?;
    let hooks_before = d.status()?;
    let copies = env.build.join("e2e").join("region-rack-charms");
    std::fs::create_dir_all(&copies)?;
    for (app, charm) in [
        ("maas-region", "maas-region.charm"),
        ("maas-rack", "maas-rack.charm"),
        ("region-vip", "keepalived-vip.charm"),
    ] {
        let copy = copies.join(charm);
        std::fs::copy(env.build.join(charm), &copy)?;
        d.lm.request(&local_model::protocol::Request::Refresh {
            app: app.into(),
            path: Some(copy),
            force_units: false,
        })?;
    }
    until(
        Duration::from_secs(300),
        "every unit ran upgrade-charm",
        || {
            let now = unit_entries(&d.status()?);
            let was = unit_entries(&hooks_before);
            let mut seen = 0;
            for (u, e) in &now {
                if !["maas-region/", "maas-rack/", "region-vip/"]
                    .iter()
                    .any(|p| u.starts_with(p))
                {
                    continue;
                }
                seen += 1;
                let before = was
                    .get(u)
                    .and_then(|b| b["hooks-run"].as_u64())
                    .unwrap_or(0);
                ensure!(
                    e.get("upgrading-from").is_none()
                        && e["hooks-run"].as_u64().unwrap_or(0) > before,
                    "{u}: {e}"
                );
            }
            ensure!(
                seen >= 7,
                "only {seen} units of the three applications in status"
            );
            Ok(())
        },
    )?;
    d.wait_active(Duration::from_secs(300))?;
    let after = service_pids(d)?;
    let restarted: Vec<_> = before.difference(&after).collect();
    ensure!(restarted.is_empty(), "the refresh restarted {restarted:?}");
    probe.wait_successes(5, Duration::from_secs(30))?;
    let records = probe.stop()?;
    let failed = records.iter().filter(|r| r["ok"] != true).count();
    eprintln!(
        "    refresh of three charms: {} services kept their PIDs; {} requests, {failed} failed",
        before.len(),
        records.len()
    );
    ensure!(
        failed == 0,
        "{failed} requests through the VIP failed during the refresh"
    );
    Ok(())
}

/// `tls-enabled`: the leader hands MAAS one certificate from the application's CA; users reach
/// MAAS over https through the VIP's 443 (and http's 301 sends them there, not past haproxy to
/// a region's 5443); what racks and deploying machines use stays on http through the VIP
/// (`regiond.nginx.conf.template`); configure-dhcp logs in over https with the CA.
fn tls_on(d: &Deployment) -> Result<()> {
    let vip = d.region_vip();
    let url = vip_url(d);
    let https = format!("https://{vip}/MAAS");
    // The previous step's host is back: its units settle first.
    d.wait_active(Duration::from_secs(300))?;
    let t = Instant::now();
    d.lm.config("maas-region", &["tls-enabled=true"])?;
    until(Duration::from_secs(300), "every region serving TLS", || {
        let regions = region_units(d)?;
        ensure!(
            regions
                .iter()
                .all(|(_, s, m)| s == "active" && *m == format!("serving {url}; users: {https}")),
            "{regions:?}"
        );
        Ok(())
    })?;
    eprintln!("    TLS on in {:.0?}", t.elapsed());
    let ep = d.action("maas-region/0", "get-api-endpoint", &[])?;
    ensure!(ep["https-url"] == https.as_str(), "get-api-endpoint: {ep}");
    let ca = ep["ca-certificate"]
        .as_str()
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .ok_or_else(|| anyhow!("get-api-endpoint gives no CA: {ep}"))?;
    let racks = d.machines_of("maas-rack")?;
    let rack = &racks[0];
    d.exec(
        rack,
        &[
            "sh",
            "-c",
            &format!("cat > /tmp/maas-ca.pem <<'EOF'\n{ca}EOF\n"),
        ],
    )?;
    let curl_tls = |target: &str| -> Result<String> {
        d.exec(
            rack,
            &[
                "curl",
                "-sS",
                "-f",
                "--max-time",
                "5",
                "--cacert",
                "/tmp/maas-ca.pem",
                target,
            ],
        )
    };
    // Through the VIP's 443, verified against the application's CA (the certificate names the
    // VIP); and each region's own 5443 serves a certificate that names it, the same one.
    let v = curl_tls(&format!("{https}/api/2.0/version/"))?;
    ensure!(v.contains("version"), "{v}");
    let mut fingerprints = BTreeSet::new();
    for m in d.machines_of("maas-region")? {
        let addr = d.exec(&m, &["hostname", "-I"])?;
        let addr = addr
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        curl_tls(&format!("https://{addr}:5443/MAAS/api/2.0/version/"))
            .with_context(|| format!("region on machine {m} ({addr}) over TLS"))?;
        let fp = d.exec(
            rack,
            &[
                "sh",
                "-c",
                &format!("openssl s_client -connect {addr}:5443 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"),
            ],
        )?;
        fingerprints.insert(fp.trim().to_string());
    }
    ensure!(
        fingerprints.len() == 1,
        "regions serve different certificates: {fingerprints:?}"
    );
    // http through the VIP: the API is a 301 to https on the VIP's 443 (haproxy rewrote
    // nginx's :5443).
    let answer = |path: &str| -> Result<String> {
        d.exec(
            rack,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "-w",
                "%{http_code} %{redirect_url}",
                &format!("http://{vip}{path}"),
            ],
        )
    };
    let r = answer("/MAAS/api/2.0/version/")?;
    ensure!(
        r == format!("301 {https}/api/2.0/version/"),
        "http API through the VIP: {r}"
    );
    // What racks and deploying machines use stays on http.
    let r = answer("/MAAS/rpc/")?;
    ensure!(r.starts_with("200 "), "/MAAS/rpc/ through the VIP: {r}");
    let r = answer("/MAAS/metadata/")?;
    ensure!(
        !r.starts_with("301 "),
        "/MAAS/metadata/ through the VIP: {r}"
    );
    let since = now_unix();
    for m in &racks {
        rack_reached_region_after(d, m, since, Duration::from_secs(60))?;
    }
    // configure-dhcp again, now logging in over https with the CA: nothing left to create.
    let params = dhcp_params(d)?;
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let out = d.action("maas-region/0", "configure-dhcp", &params)?;
    ensure!(
        out["range-created"] == false || out["range-created"] == "false",
        "configure-dhcp over https: {out}"
    );
    Ok(())
}
