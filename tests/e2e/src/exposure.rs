//! What an intruder on the lab's network finds (issue 19): from a host that is not a database
//! member, every TCP port the database and region hosts listen on beyond their loopback, and
//! for each, that it wants TLS and a credential or is a documented public MAAS port. Writing
//! etcd, calling Patroni's REST API and connecting to PostgreSQL without TLS fail; the same with
//! the right certificate (or, for PostgreSQL, a client's own credentials over TLS) succeed.

use crate::Deployment;
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeSet;

/// The ports a database member serves to other hosts, each closed to anyone without a
/// certificate from the application's CA (PostgreSQL: without TLS and a pg_hba entry).
pub const DB_PORTS: [u16; 4] = [2379, 2380, 5432, 8008];

/// The ports MAAS documents a region controller serving (MAAS "Network ports used by MAAS":
/// 5240 HTTP, 5241-5247 internal services, 5248 rack HTTP, 5250-5270 RPC, 5271-5274 and
/// 5280-5281 Temporal, 5443 HTTPS; 53 DNS; 8000 the HTTP proxy), and haproxy's 80 in front;
/// and the Prometheus exporters MAAS documents Prometheus scraping on every controller's
/// address: regiond 5239, rackd 5249 (docs/how-to-guides/monitor-maas.md "Configure
/// Prometheus"; src/maasserver/prometheus/service.py, read-only and without a credential in
/// MAAS itself).
pub fn documented_region_port(port: u16) -> bool {
    matches!(
        port,
        53 | 80 | 443 | 8000 | 5239 | 5240..=5249 | 5250..=5274 | 5280..=5281 | 5443
    )
}

/// TCP ports `machine` listens on for other hosts (not loopback-only).
pub fn open_ports(d: &Deployment, machine: &str) -> Result<BTreeSet<u16>> {
    let ss = d.exec(machine, &["ss", "-ltnH"])?;
    let mut out = BTreeSet::new();
    for line in ss.lines() {
        let Some(local) = line.split_whitespace().nth(3) else {
            continue;
        };
        let Some((addr, port)) = local.rsplit_once(':') else {
            continue;
        };
        if addr.starts_with("127.") || addr == "[::1]" {
            continue;
        }
        out.insert(
            port.parse()
                .with_context(|| format!("ss printed {line:?}"))?,
        );
    }
    Ok(out)
}

/// Runs `script` with sh in `machine`; (exit code, stdout + stderr).
fn sh(d: &Deployment, machine: &str, script: &str) -> Result<(i32, String)> {
    let (code, out, err) = d.lm.exec(machine, &["sh", "-c", script])?;
    Ok((code, format!("{out}{err}")))
}

/// Copies the files a member authenticates with (CA, its certificate and key) into `to`'s
/// /tmp/stolen: "the right certificate".
fn copy_member_credentials(d: &Deployment, member: &str, to: &str) -> Result<()> {
    sh(d, to, "rm -rf /tmp/stolen && mkdir -m 0700 /tmp/stolen")?;
    for f in ["ca.pem", "unit.pem", "unit.key"] {
        let text = d.exec(member, &["cat", &format!("/etc/postgresql-ha/tls/{f}")])?;
        let hex: String = text.bytes().map(|b| format!("\\{:03o}", b)).collect();
        let (code, out) = sh(d, to, &format!("printf '{hex}' > /tmp/stolen/{f}"))?;
        ensure!(code == 0, "copying {f} to {to}: {out}");
    }
    Ok(())
}

/// The database hosts, from `outsider`: returns one report line per port and check.
pub fn database_hosts_are_closed(d: &Deployment, outsider: &str) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let members = d.machines_of("postgresql-ha")?;
    ensure!(
        !members.contains(&outsider.to_string()),
        "{outsider} is a database member"
    );
    // The bundle puts a region on each database machine: its ports are MAAS's.
    let regions = d.machines_of("maas-region")?;
    for m in &members {
        let open = open_ports(d, m)?;
        let unexpected: Vec<&u16> = open
            .iter()
            .filter(|p| !DB_PORTS.contains(p))
            .filter(|p| !(regions.contains(m) && documented_region_port(**p)))
            .collect();
        ensure!(
            unexpected.is_empty(),
            "machine {m} listens on undocumented ports {unexpected:?} (all: {open:?})"
        );
        report.push(format!("db machine {m}: open {open:?}"));
    }
    let unit = crate::ha::pg_units(d)?
        .into_iter()
        .next()
        .context("no postgresql-ha unit")?;
    let m = &d.machine_of(&unit)?;
    let a = d.address_of(&unit)?;
    let etcd = |tls: &str, url: &str, op: &str| {
        format!("ETCDCTL_API=3 etcdctl --endpoints={url} {tls} --command-timeout=3s --dial-timeout=2s {op}")
    };
    let stolen =
        "--cacert=/tmp/stolen/ca.pem --cert=/tmp/stolen/unit.pem --key=/tmp/stolen/unit.key";
    let curl_stolen =
        "--cacert /tmp/stolen/ca.pem --cert /tmp/stolen/unit.pem --key /tmp/stolen/unit.key";
    let must_fail: Vec<(String, String)> = vec![
        ("etcd write over http".into(), etcd("", &format!("http://{a}:2379"), "put /intruder x")),
        ("etcd write over TLS without a certificate".into(), etcd("--insecure-skip-tls-verify", &format!("https://{a}:2379"), "put /intruder x")),
        ("etcd read over TLS without a certificate".into(), etcd("--insecure-skip-tls-verify", &format!("https://{a}:2379"), "get --prefix --keys-only /")),
        ("etcd peer API without a certificate".into(), format!("curl -sSf -k -m 3 https://{a}:2380/members")),
        ("Patroni API over http".into(), format!("curl -sSf -m 3 http://{a}:8008/cluster")),
        ("Patroni API over TLS without a certificate".into(), format!("curl -sSf -k -m 3 https://{a}:8008/cluster")),
        ("Patroni unsafe endpoint without a certificate".into(), format!("curl -sSf -k -m 3 -X POST https://{a}:8008/restart")),
        ("PostgreSQL without TLS".into(), format!("psql 'host={a} sslmode=disable user=postgres dbname=postgres connect_timeout=3' -c 'select 1'")),
        ("PostgreSQL over TLS from a host pg_hba does not know".into(), format!("PGPASSWORD=guess psql 'host={a} sslmode=require user=postgres dbname=postgres connect_timeout=3' -c 'select 1'")),
    ];
    for (what, script) in &must_fail {
        let (code, out) = sh(d, outsider, script)?;
        if code == 0 {
            bail!("from {outsider}: {what} succeeded: {script}\n{out}");
        }
        report.push(format!(
            "refused: {what} (exit {code}: {})",
            out.lines().last().unwrap_or("").trim()
        ));
    }
    copy_member_credentials(d, m, outsider)?;
    let must_work = [
        (
            "etcd write with the certificate",
            etcd(
                stolen,
                &format!("https://{a}:2379"),
                "put /probe-with-cert x",
            ),
        ),
        (
            "etcd delete with the certificate",
            etcd(stolen, &format!("https://{a}:2379"), "del /probe-with-cert"),
        ),
        (
            "Patroni API with the certificate",
            format!("curl -sSf -m 3 {curl_stolen} https://{a}:8008/cluster"),
        ),
    ];
    for (what, script) in &must_work {
        let (code, out) = sh(d, outsider, script)?;
        ensure!(
            code == 0,
            "from {outsider}: {what} failed (exit {code}): {out}"
        );
        report.push(format!("works: {what}"));
    }
    sh(d, outsider, "rm -rf /tmp/stolen")?;
    Ok(report)
}

/// A database client's own credentials (`user`, `password`, `database` on `client`'s host):
/// refused without TLS, served with it.
pub fn client_needs_tls(
    d: &Deployment,
    client: &str,
    host: &str,
    user: &str,
    password: &str,
    database: &str,
) -> Result<Vec<String>> {
    let dsn = |mode: &str| {
        format!("PGPASSWORD='{password}' psql 'host={host} sslmode={mode} user={user} dbname={database} connect_timeout=3' -Atc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'")
    };
    let (code, out) = sh(d, client, &dsn("disable"))?;
    ensure!(code != 0, "{user} connected to {host} without TLS: {out}");
    ensure!(
        out.contains("no encryption"),
        "refused, but not for the missing TLS: {out}"
    );
    let (code, out) = sh(d, client, &dsn("require"))?;
    ensure!(
        code == 0 && out.trim() == "t",
        "{user} over TLS to {host}: exit {code}: {out}"
    );
    Ok(vec![format!(
        "client {user} on {client}: refused without TLS, served with it"
    )])
}
