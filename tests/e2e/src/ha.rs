//! What the HA drills check after every fault: traffic through both VIPs kept being served,
//! nothing acknowledged was lost, one database primary, one holder per VIP, every unit Active.
//!
//! The traffic comes from the rack machines (3 and 4 in `bundles/maas-ha.yaml`), which no
//! drill takes down. Writes need credentials that pg_hba allows from there, so the drills add
//! `db-client` (tests/e2e/testcharms), a pgsql client deployed on the rack machines like any
//! other client, which keeps the libpq string postgresql-ha gives it.

use crate::probe::{acknowledged, longest_outage, Probe};
use crate::{until, Deployment, Env};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The machines of the bundle that run the racks (and the probes).
pub const RACK_MACHINES: [&str; 2] = ["3", "4"];

/// Where db-client keeps its libpq string.
/// Where the db-client test charm keeps the libpq string postgresql-ha gave it.
pub const DSN_FILE: &str = "/var/lib/db-client/dsn";

/// The database db-client asks for.
pub const CLIENT_DB: &str = "e2e";

/// Client-side timeouts added to the writer's connection string: a write to a host that went
/// down must fail within seconds (keepalives and TCP_USER_TIMEOUT), not hang on TCP.
pub const WRITER_TIMEOUTS: &str = "connect_timeout=3 keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_retries=2 tcp_user_timeout=3";

/// Packs `tests/e2e/testcharms/db-client` into the deployment's directory and writes an
/// overlay that deploys it on the rack machines, related to `postgresql-ha:db`.
pub fn client_overlay(env: &Env, dir: &std::path::Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let charm = dir.join("db-client.charm");
    local_model::charm::pack_dir(&env.repo.join("tests/e2e/testcharms/db-client"), &charm)?;
    let overlay = dir.join("db-client-overlay.yaml");
    let to: Vec<String> = RACK_MACHINES.iter().map(|m| format!("\"{m}\"")).collect();
    std::fs::write(
        &overlay,
        format!(
            "applications:\n  db-client:\n    charm: {}\n    num_units: {}\n    to: [{}]\nrelations:\n  - [\"db-client:db\", \"postgresql-ha:db\"]\n",
            charm.display(),
            RACK_MACHINES.len(),
            to.join(", ")
        ),
    )?;
    Ok(overlay)
}

/// The writer's connection string: db-client's, with the client-side timeouts.
pub fn writer_dsn(d: &Deployment, machine: &str) -> Result<String> {
    let dsn = crate::read_in(d, machine, DSN_FILE)?;
    let dsn = dsn.trim();
    if dsn.is_empty() {
        bail!("{machine}:{DSN_FILE} is empty");
    }
    Ok(format!("{dsn} {WRITER_TIMEOUTS}"))
}

/// The region URL clients use: the region VIP, through haproxy. MAAS's UI page, `/MAAS/r/`,
/// where MAAS's nginx sends `/MAAS/` (a 301 since MAAS 3.2, `regiond.nginx.conf.template`); the
/// stand-in's regiond serves it only with a working database, and names the region's host.
pub fn region_url(d: &Deployment) -> String {
    format!("http://{}/MAAS/r/", d.region_vip())
}

/// The host named by the stand-in's UI page ("... on <host></p>").
fn page_host(body: &str) -> Option<String> {
    let (_, rest) = body.rsplit_once(" on ")?;
    let host: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    (!host.is_empty()).then_some(host)
}

/// Continuous writes through the DB VIP and requests through the region VIP, from the racks'
/// machines, for one drill. Each drill gets its own table, so a lost write of one drill cannot
/// be hidden by a row of another.
pub struct Traffic<'d> {
    /// The writer (continuous INSERTs through the DB VIP).
    pub writer: Probe<'d>,
    /// The HTTP client (continuous GETs through the region VIP).
    pub http: Probe<'d>,
    /// The writer's table.
    pub table: String,
}

/// What one drill's traffic saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Writes attempted, acknowledged, failed.
    pub writes: usize,
    /// The integers whose INSERT was acknowledged.
    pub acked: Vec<i64>,
    /// Failed writes.
    pub failed_writes: usize,
    /// Requests attempted and failed.
    pub requests: usize,
    /// Failed requests.
    pub failed_requests: usize,
    /// Longest write outage (first failure to the next success) and failed writes in it.
    pub write_outage: Option<(Duration, usize)>,
    /// Longest request outage and failed requests in it.
    pub http_outage: Option<(Duration, usize)>,
    /// Longest time nothing answered at the region VIP at all (no HTTP response: refused,
    /// timed out): the VIP's own failover, apart from regions answering 503 while their
    /// database fails over.
    pub vip_outage: Option<(Duration, usize)>,
    /// Every request record (the client's view: status, who answered).
    pub http_records: Vec<Value>,
    /// Why writes failed: (error, how many), most frequent first.
    pub write_errors: Vec<(String, usize)>,
    /// Why requests failed: (error or HTTP status, how many), most frequent first.
    pub http_errors: Vec<(String, usize)>,
}

/// The request records with `ok` meaning "an HTTP response came back", whatever its status.
pub fn answered(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["ok"] = Value::Bool(r["status"].is_u64());
            r
        })
        .collect()
}

/// Failed attempts grouped by their error (or HTTP status), most frequent first; errors are
/// cut at 80 characters so one reason reads as one reason.
pub fn failure_reasons(records: &[Value]) -> Vec<(String, usize)> {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for r in records.iter().filter(|r| r["ok"] != true) {
        let why = r["error"]
            .as_str()
            .map(|e| e.chars().take(80).collect())
            .or_else(|| r["status"].as_u64().map(|s| format!("HTTP {s}")))
            .unwrap_or_else(|| "unknown".into());
        *by.entry(why).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

impl<'d> Traffic<'d> {
    /// Starts both probes (`name` must be a SQL identifier: it names the table) and waits
    /// until both have succeeded a few times, so a drill starts from working traffic.
    pub fn start(d: &'d Deployment, name: &str) -> Result<Traffic<'d>> {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("traffic name {name:?}: lowercase letters, digits and _ only (it names a table)");
        }
        let table = format!("e2e_{name}");
        let dsn = writer_dsn(d, RACK_MACHINES[0])?;
        let writer =
            Probe::writer_table(d, RACK_MACHINES[0], &format!("w-{name}"), &dsn, &table, 100)?;
        let http = Probe::http(
            d,
            RACK_MACHINES[1],
            &format!("h-{name}"),
            &region_url(d),
            100,
        )?;
        writer
            .wait_successes(3, Duration::from_secs(60))
            .context("writes through the DB VIP before the drill")?;
        http.wait_successes(3, Duration::from_secs(60))
            .context("requests through the region VIP before the drill")?;
        Ok(Traffic {
            writer,
            http,
            table,
        })
    }

    /// Waits until both probes succeed again (`n` more each) within `timeout`.
    pub fn wait_recovered(&self, n: usize, timeout: Duration) -> Result<()> {
        self.writer
            .wait_successes(n, timeout)
            .context("writes through the DB VIP did not recover")?;
        self.http
            .wait_successes(n, timeout)
            .context("requests through the region VIP did not recover")
    }

    /// Stops both probes and sums up what they saw.
    pub fn stop(self) -> Result<Seen> {
        let w = self.writer.stop()?;
        let h = self.http.stop()?;
        Ok(Seen {
            writes: w.len(),
            acked: acknowledged(&w),
            failed_writes: w.iter().filter(|r| r["ok"] != true).count(),
            requests: h.len(),
            failed_requests: h.iter().filter(|r| r["ok"] != true).count(),
            write_outage: longest_outage(&w),
            http_outage: longest_outage(&h),
            vip_outage: longest_outage(&answered(&h)),
            write_errors: failure_reasons(&w),
            http_errors: failure_reasons(&h),
            http_records: h,
        })
    }
}

/// curl's flags for a member's Patroni REST API, from inside that member's host: verify it
/// against the application's CA and present the unit's certificate (it requires one).
pub const PATRONI_TLS: &[&str] = &[
    "--cacert",
    "/etc/postgresql-ha/tls/ca.pem",
    "--cert",
    "/etc/postgresql-ha/tls/unit.pem",
    "--key",
    "/etc/postgresql-ha/tls/unit.key",
];

/// Runs SQL as postgres on one PostgreSQL member, locally (peer authentication on its socket).
pub fn psql(d: &Deployment, unit: &str, db: &str, sql: &str) -> Result<String> {
    d.exec(
        unit,
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            "/run/postgresql-ha",
            "-d",
            db,
            "-c",
            sql,
        ],
    )
}

/// The postgresql-ha units, sorted.
pub fn pg_units(d: &Deployment) -> Result<Vec<String>> {
    let st = d.status()?;
    let mut units: Vec<String> = st["applications"]["postgresql-ha"]["units"]
        .as_object()
        .map(|u| u.keys().cloned().collect())
        .unwrap_or_default();
    units.sort();
    Ok(units)
}

/// The members that are writable (`pg_is_in_recovery()` false), asking each one locally.
/// A member that does not answer is not writable.
pub fn primaries(d: &Deployment) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for u in pg_units(d)? {
        if psql(d, &u, "postgres", "SELECT pg_is_in_recovery()")
            .map(|s| s.trim() == "f")
            .unwrap_or(false)
        {
            out.push(u);
        }
    }
    Ok(out)
}

/// Acknowledged integers missing from `table` on each member (members that miss none are left
/// out). A member that cannot be queried is an error.
pub fn missing_on_members(
    d: &Deployment,
    table: &str,
    acked: &[i64],
) -> Result<Vec<(String, Vec<i64>)>> {
    let mut out = Vec::new();
    for u in pg_units(d)? {
        let rows = psql(d, &u, CLIENT_DB, &format!("SELECT n FROM {table}"))?;
        let have: std::collections::HashSet<i64> =
            rows.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let missing: Vec<i64> = acked
            .iter()
            .copied()
            .filter(|n| !have.contains(n))
            .collect();
        if !missing.is_empty() {
            out.push((u, missing));
        }
    }
    Ok(out)
}

/// The end state every drill must reach within `timeout`: the model settled with every unit
/// Active, exactly one writable PostgreSQL member that every other member streams from (one
/// synchronously), exactly one holder of each VIP, and every acknowledged write of `table` on
/// every member (replicas may need a moment to replay).
pub fn assert_healthy(
    d: &Deployment,
    table: Option<&str>,
    acked: &[i64],
    timeout: Duration,
) -> Result<()> {
    d.wait_active(timeout)?;
    until(timeout, "exactly one PostgreSQL primary", || {
        let p = primaries(d)?;
        if p.len() != 1 {
            bail!("writable members: {p:?}");
        }
        Ok(())
    })?;
    // Ready for the next fault: with synchronous mode (the charm's default) Patroni promotes
    // only the synchronous standby, so a primary lost before one is chosen is not failed over.
    until(
        timeout,
        "every other member streaming from the primary, one synchronously",
        || {
            let (primary, _) = primary_machine(d)?;
            let rows = psql(
                d,
                &primary,
                "postgres",
                "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'",
            )?;
            let states: Vec<&str> = rows
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let others = pg_units(d)?.len().saturating_sub(1);
            if states.len() < others || !states.iter().any(|s| *s == "sync" || *s == "quorum") {
                bail!("{primary} streams to {others} members? its standbys: {states:?}");
            }
            Ok(())
        },
    )?;
    d.wait_vip_holder(&d.region_vip(), timeout)?;
    d.wait_vip_holder(&d.db_vip(), timeout)?;
    if let Some(table) = table {
        if acked.is_empty() {
            bail!("no write was acknowledged through the DB VIP");
        }
        until(timeout, "every acknowledged write on every member", || {
            let m = missing_on_members(d, table, acked)?;
            if !m.is_empty() {
                let summary: Vec<String> = m
                    .iter()
                    .map(|(u, ns)| {
                        format!(
                            "{u} misses {} (first {:?})",
                            ns.len(),
                            &ns[..ns.len().min(5)]
                        )
                    })
                    .collect();
                bail!("{}", summary.join("; "));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// What to look at when a drill fails: every unit's status, who holds each VIP, and each
/// PostgreSQL member's view (Patroni's REST on the member, asked from inside its machine).
pub fn diagnose(d: &Deployment) -> String {
    let mut out = String::new();
    match d.units() {
        Ok(units) => {
            for (n, s, m) in units {
                out.push_str(&format!("  {n}: {s}: {m}\n"));
            }
        }
        Err(e) => out.push_str(&format!("  status: {e:#}\n")),
    }
    for vip in [d.region_vip(), d.db_vip()] {
        out.push_str(&format!(
            "  {vip} held by {:?}\n",
            d.vip_holders(&vip).unwrap_or_default()
        ));
    }
    for u in pg_units(d).unwrap_or_default() {
        let patroni = d
            .exec(
                &u,
                &[
                    &["curl", "-s", "--max-time", "2"],
                    PATRONI_TLS,
                    &["https://127.0.0.1:8008/patroni"],
                ]
                .concat(),
            )
            .unwrap_or_else(|e| format!("{e:#}"));
        out.push_str(&format!("  {u} patroni: {}\n", patroni.trim()));
    }
    out
}

/// The machine of the current PostgreSQL primary (exactly one, else an error).
pub fn primary_machine(d: &Deployment) -> Result<(String, String)> {
    let p = primaries(d)?;
    match p.as_slice() {
        [u] => Ok((u.clone(), d.machine_of(u)?)),
        _ => bail!("writable members: {p:?}"),
    }
}

/// A run of consecutive requests with the same outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The region host that answered, or `failed (<why>)`.
    pub who: String,
    /// How many requests.
    pub count: usize,
    /// When the first and the last of them started (ms since the epoch).
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
}

/// Which region answered each request (the stand-in's UI page names its host), in order,
/// with runs collapsed: the client's view of a failover.
pub fn answered_by(records: &[Value]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in records {
        let who = if r["ok"] == true {
            page_host(r["body"].as_str().unwrap_or("")).unwrap_or_else(|| "answered".into())
        } else {
            format!(
                "failed ({})",
                r["error"]
                    .as_str()
                    .map(String::from)
                    .or_else(|| r["status"].as_u64().map(|s| format!("HTTP {s}")))
                    .unwrap_or_default()
            )
        };
        let t = r["t_ms"].as_u64().unwrap_or(0);
        match out.last_mut() {
            Some(run) if run.who == who => {
                run.count += 1;
                run.last_ms = t;
            }
            _ => out.push(Run {
                who,
                count: 1,
                first_ms: t,
                last_ms: t,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answered_counts_any_http_status_as_an_answer() {
        let r = vec![
            json!({"ok": false, "status": 503, "t_ms": 0}),
            json!({"ok": false, "error": "timed out", "t_ms": 100}),
            json!({"ok": true, "status": 200, "t_ms": 900}),
        ];
        let a = answered(&r);
        assert_eq!(
            a.iter().map(|r| r["ok"] == true).collect::<Vec<_>>(),
            vec![true, false, true]
        );
        assert_eq!(longest_outage(&a), Some((Duration::from_millis(800), 1)));
        assert_eq!(longest_outage(&r), Some((Duration::from_millis(900), 2)));
    }

    #[test]
    fn failure_reasons_are_counted_most_frequent_first() {
        let r = vec![
            json!({"ok": false, "error": "connection refused"}),
            json!({"ok": true}),
            json!({"ok": false, "status": 503}),
            json!({"ok": false, "status": 503}),
        ];
        assert_eq!(
            failure_reasons(&r),
            vec![
                ("HTTP 503".to_string(), 2),
                ("connection refused".to_string(), 1)
            ]
        );
    }

    #[test]
    fn answered_by_collapses_runs_and_names_failures() {
        let r = vec![
            json!({"ok": true, "t_ms": 10, "body": "<!doctype html><title>MAAS stand-in</title><p>MAAS stand-in (not MAAS) on m0</p>\n"}),
            json!({"ok": true, "t_ms": 20, "body": "<p>MAAS stand-in (not MAAS) on m0</p>"}),
            json!({"ok": false, "t_ms": 30, "error": "connection refused"}),
            json!({"ok": false, "t_ms": 40, "status": 503, "body": "x"}),
            json!({"ok": true, "t_ms": 50, "body": "<p>MAAS stand-in (not MAAS) on m1</p>"}),
        ];
        let runs: Vec<(String, usize, u64, u64)> = answered_by(&r)
            .into_iter()
            .map(|r| (r.who, r.count, r.first_ms, r.last_ms))
            .collect();
        assert_eq!(
            runs,
            vec![
                ("m0".into(), 2, 10, 20),
                ("failed (connection refused)".into(), 1, 30, 30),
                ("failed (HTTP 503)".into(), 1, 40, 40),
                ("m1".into(), 1, 50, 50)
            ]
        );
    }
}
