//! The rolling upgrade: a new `patroni-version`, or a newer PostgreSQL minor release on the
//! host (an `apt` upgrade of the package: the running postmaster is still the old binary),
//! reaches the running services one unit at a time, replicas first, then the primary after a
//! switchover to an upgraded synchronous standby, so writes only pause for the switchover and
//! no acknowledged commit is lost.
//!
//! As Charmed PostgreSQL does it (`src/upgrade.py` `build_upgrade_stack`: replicas, then the
//! synchronous standbys, the primary last; data_platform_libs `upgrade.py`: the leader hands the
//! turn to one unit at a time and the next only once it reports itself done), with the turn
//! in the peer application databag ([`keys::TURN`]) and each unit's running versions in its
//! peer unit databag. Two differences: the primary is switched over before its restart (a
//! planned switchover instead of the failover a stopped primary would cause), and the roll
//! starts by itself when the config or the package changes (no `pre-upgrade-check` needed
//! first; the action answers whether a roll would lose nothing now).
//!
//! What runs is read from Patroni itself (`GET /patroni`: `patroni.version`, and
//! `server_version`, PostgreSQL's version as a number, `150014` for 15.14: patroni/api.py
//! `_write_status_response` and `get_postgresql_status`), never from what the charm
//! installed, so a hook that runs twice, or a unit already on the wanted versions, restarts
//! nothing.

use crate::config::Config;
use crate::patroni::{self, Cluster};
use crate::render::{Member, Passwords};
use crate::report::{Report, Reported};
use crate::{etcd, failover, install, paths};
use charm_lib::{Cmd, Context, Databag, Machine, MachineExt, ServiceOp, Status};
use serde::Deserialize;

/// Peer databag keys.
pub mod keys {
    /// Unit: the Patroni version this unit's Patroni runs (reported once Patroni answers).
    pub const PATRONI: &str = "patroni-version";
    /// Unit: the PostgreSQL version its postmaster runs (`15.14`).
    pub const POSTGRESQL: &str = "postgresql-version";
    /// Unit: what this unit's restart would change (`Patroni 4.1.4 -> 4.1.5`); empty when
    /// nothing.
    pub const PENDING: &str = "upgrade-pending";
    /// App (leader): the unit whose turn it is to restart on the new versions.
    pub const TURN: &str = "upgrade-turn";
}

/// How long the unit in its turn waits for Patroni to come back and the cluster to be whole
/// again before it reports itself done (a later hook reports it otherwise).
const REJOIN_SECONDS: u32 = 120;

/// What this unit's Patroni runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Patroni's version.
    pub patroni: String,
    /// PostgreSQL's `server_version` (`150014`), if its postmaster runs.
    pub server_version: Option<u64>,
}

#[derive(Deserialize)]
struct PatroniInfo {
    version: String,
}

#[derive(Deserialize)]
struct PatroniStatus {
    patroni: PatroniInfo,
    #[serde(default)]
    server_version: Option<u64>,
}

/// `GET /patroni` parsed; `None` when Patroni does not answer or answers something else.
pub fn parse_running(body: &str) -> Option<Running> {
    let s: PatroniStatus = serde_json::from_str(body).ok()?;
    Some(Running {
        patroni: s.patroni.version,
        server_version: s.server_version.filter(|v| *v > 0),
    })
}

/// What the local Patroni runs, `None` if it does not answer.
pub fn running(m: &dyn Machine) -> anyhow::Result<Option<Running>> {
    Ok(match patroni::request(m, "GET", "/patroni", None, None)? {
        Some(r) if r.status == 200 => parse_running(&r.body),
        _ => None,
    })
}

/// `15.14` → `150014`, as PostgreSQL 10 and later number themselves; `None` for a major alone.
pub fn version_number(full: &str) -> Option<u64> {
    let (major, minor) = full.split_once('.')?;
    let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
    (major >= 10).then_some(major * 10000 + minor)
}

/// `150014` → `15.14`.
pub fn version_text(n: u64) -> String {
    format!("{}.{}", n / 10000, n % 10000)
}

/// What a restart of this unit's Patroni would change, or `None` when it runs what is wanted.
/// `binary` is the installed postgres' full version (`15.14`).
pub fn pending(running: &Running, wanted_patroni: &str, binary: &str) -> Option<String> {
    let mut what = Vec::new();
    if running.patroni != wanted_patroni {
        what.push(format!("Patroni {} -> {wanted_patroni}", running.patroni));
    }
    if let (Some(now), Some(installed)) = (running.server_version, version_number(binary)) {
        if now != installed {
            what.push(format!(
                "PostgreSQL {} -> {}",
                version_text(now),
                version_text(installed)
            ));
        }
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// One unit as the leader sees it in the peer data (its own from this hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `postgresql-ha/1`.
    pub unit: String,
    /// Whether it has reported what it runs.
    pub reported: bool,
    /// What its restart would change, if anything.
    pub pending: Option<String>,
}

/// The leader's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to roll: no turn.
    Done,
    /// This unit's turn (it may already have been).
    Turn(String),
    /// A unit waits but none may go now: why.
    Hold(String),
}

/// The turn, from the current one, every unit's state, the cluster and what keeps a member
/// from going down now (`problems`, empty when none: [`problems`]). The current turn stays
/// until its unit reports itself done; then the next goes only when the cluster is whole
/// again: replicas first (asynchronous ones before synchronous standbys, lower unit numbers
/// first), the primary last, and only once an upgraded synchronous standby can take over.
pub fn decide(
    current: Option<&str>,
    units: &[UnitState],
    cluster: &Cluster,
    problems: &[String],
) -> Decision {
    if let Some(cur) = current.filter(|c| !c.is_empty()) {
        if units.iter().any(|u| u.unit == cur && u.pending.is_some()) {
            return Decision::Turn(cur.to_string());
        }
    }
    let waiting: Vec<&UnitState> = units.iter().filter(|u| u.pending.is_some()).collect();
    if waiting.is_empty() {
        return Decision::Done;
    }
    if !problems.is_empty() {
        return Decision::Hold(problems.join("; "));
    }
    let member = |u: &UnitState| cluster.member(&paths::member_name(&u.unit));
    let number = |u: &UnitState| {
        u.unit
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    let is_primary = |u: &UnitState| member(u).is_some_and(|m| m.is_primary());
    if let Some(next) = waiting
        .iter()
        .filter(|u| !is_primary(u))
        .min_by_key(|u| (member(u).is_some_and(|m| m.is_sync()), number(u)))
    {
        return Decision::Turn(next.unit.clone());
    }
    // Only the primary is left; it goes once every other unit has said what it runs.
    let primary = waiting[0];
    if let Some(silent) = units.iter().find(|u| !u.reported) {
        return Decision::Hold(format!(
            "{} (the primary) goes last, and {} has not reported its versions yet",
            primary.unit, silent.unit
        ));
    }
    match switchover_target(cluster, units) {
        Some(_) => Decision::Turn(primary.unit.clone()),
        None => Decision::Hold(format!(
            "{} (the primary) goes last, after a switchover to an upgraded synchronous standby, and none streams yet",
            primary.unit
        )),
    }
}

/// The member the primary switches over to before its own restart: a streaming synchronous
/// standby that runs the new versions (least lag first).
pub fn switchover_target(cluster: &Cluster, units: &[UnitState]) -> Option<String> {
    cluster
        .members
        .iter()
        .filter(|m| m.is_sync() && m.state == "streaming")
        .filter(|m| {
            units
                .iter()
                .any(|u| paths::member_name(&u.unit) == m.name && u.reported && u.pending.is_none())
        })
        .min_by_key(|m| m.lag_bytes().unwrap_or(u64::MAX))
        .map(|m| m.name.clone())
}

/// What keeps one member from going down now without stopping writes or losing automatic
/// failover: the pre-upgrade-check action refuses with these, and the roll waits while there
/// are any. `expected` is the number of units.
pub fn problems(
    m: &dyn Machine,
    scope: &str,
    cluster: &Cluster,
    expected: usize,
    mode: crate::config::SyncMode,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    if !etcd::has_leader(m)? {
        problems.push("etcd has no leader (quorum lost)".to_string());
    }
    if cluster.members.len() < expected {
        problems.push(format!(
            "Patroni lists {} members for {expected} units",
            cluster.members.len()
        ));
    }
    for x in &cluster.members {
        let ok = x.is_primary() || x.state == "streaming";
        if !ok {
            problems.push(format!(
                "{} is {} ({})",
                paths::unit_of_member(&x.name),
                x.state,
                x.role.replace('_', " ")
            ));
        }
    }
    // One member alone has nobody to fail over to by design; the roll restarts it anyway.
    if expected > 1 {
        match failover::readiness(cluster, etcd::sync_key(m, scope)?.as_ref(), mode) {
            failover::Readiness::Ready => {}
            failover::Readiness::Unavailable(why) => {
                problems.push(format!("no automatic failover: {why}"))
            }
            failover::Readiness::NoPrimary => problems.push("there is no running primary".into()),
        }
    }
    Ok(problems)
}

/// Everything a hook needs for the roll.
pub struct Roll<'a, 'm, 'r> {
    /// The validated config.
    pub config: &'a Config,
    /// The PostgreSQL major.
    pub pg_version: u32,
    /// This unit.
    pub me: &'a Member,
    /// The system passwords (the REST API's for the switchover).
    pub passwords: &'a Passwords,
    /// The peer relation.
    pub peers: &'a charm_lib::Relation<'m, 'r>,
    /// The peer app databag as the hook began.
    pub app: &'a Databag,
    /// Whether this unit leads.
    pub leader: bool,
    /// Units in the application.
    pub units: usize,
}

/// The roll's part of a hook, once Patroni runs: reports what this unit runs, decides the
/// turn (leader), takes this unit's turn, and says where the roll stands. Returns the
/// application status' note (leader, while a roll is under way).
pub fn step(
    ctx: &Context,
    r: &Roll<'_, '_, '_>,
    cluster: &mut Option<Cluster>,
    app_changes: &mut Databag,
    unit_changes: &mut Databag,
) -> anyhow::Result<Reported<Option<String>>> {
    let m = ctx.machine;
    let mut found = Report::default();
    let binary = install::full_version(ctx, r.pg_version)?;
    let Some(now) = running(m)? else {
        // Patroni does not answer: nothing to compare, and nothing reported.
        return Ok(found.with(None));
    };
    let mut mine = pending(&now, &r.config.patroni_version, &binary);
    report(&now, mine.as_deref(), unit_changes);
    let current = r.app.get(keys::TURN).map(String::as_str).unwrap_or("");
    let me = ctx.model.unit_name().to_string();
    let mut decision = None;
    if r.leader {
        let d = lead(ctx, r, cluster.as_ref(), current, &mine)?;
        decision = Some(d);
    }
    let turn = match &decision {
        Some(Decision::Turn(u)) => u.as_str(),
        Some(_) => "",
        None => current,
    };
    if let (Some(what), true) = (&mine, turn == me) {
        if let Some(after) = found.take(take_turn(ctx, r, cluster, what)?) {
            mine = pending(&after, &r.config.patroni_version, &binary);
            report(&after, mine.as_deref(), unit_changes);
            *cluster = patroni::cluster(m)?;
            if r.leader {
                // The leader gets no relation-changed for its own databag: it hands on
                // the turn in this hook (as Charmed PostgreSQL's upgrade_granted calls
                // on_upgrade_changed on the leader).
                decision = Some(lead(ctx, r, cluster.as_ref(), &me, &mine)?);
            }
        }
    }
    if r.leader {
        let value = match &decision {
            Some(Decision::Turn(u)) => u.clone(),
            // A held roll keeps no turn: the next decision starts from the cluster.
            _ => String::new(),
        };
        app_changes.insert(keys::TURN.into(), value);
    }
    if let Some(what) = &mine {
        let turn_now = match &decision {
            Some(Decision::Turn(u)) => u.clone(),
            Some(_) => String::new(),
            None => current.to_string(),
        };
        found.add(Status::waiting(if turn_now == me {
            format!("upgrade ({what}): this unit's turn")
        } else if turn_now.is_empty() {
            match &decision {
                Some(Decision::Hold(why)) => format!("upgrade ({what}) on hold: {why}"),
                _ => format!("upgrade ({what}): waiting for the leader to give this unit its turn"),
            }
        } else {
            format!("upgrade ({what}): waiting for {turn_now} to finish (one unit at a time, the primary last)")
        }));
    }
    let note = match &decision {
        Some(Decision::Turn(u)) => Some(format!(
            "rolling upgrade: {} of {} units to go, {u} now",
            waiting_units(ctx, r, &mine)?,
            r.units
        )),
        Some(Decision::Hold(why)) => Some(format!(
            "rolling upgrade: {} of {} units to go, on hold: {why}",
            waiting_units(ctx, r, &mine)?,
            r.units
        )),
        _ => None,
    };
    Ok(found.with(note))
}

fn report(now: &Running, pending: Option<&str>, unit_changes: &mut Databag) {
    unit_changes.insert(keys::PATRONI.into(), now.patroni.clone());
    if let Some(v) = now.server_version {
        unit_changes.insert(keys::POSTGRESQL.into(), version_text(v));
    }
    unit_changes.insert(keys::PENDING.into(), pending.unwrap_or("").to_string());
}

/// Every unit's state: the peers' from their databags, this unit's from this hook.
fn unit_states(
    ctx: &Context,
    r: &Roll<'_, '_, '_>,
    mine: &Option<String>,
) -> anyhow::Result<Vec<UnitState>> {
    let mut v = vec![UnitState {
        unit: ctx.model.unit_name().to_string(),
        reported: true,
        pending: mine.clone(),
    }];
    for u in r.peers.units() {
        v.push(peer_state(
            u,
            &r.peers.unit_data(u)?,
            &r.config.patroni_version,
        ));
    }
    Ok(v)
}

/// A peer's state from its databag. Its report may predate the config this hook sees (its
/// config-changed has not run yet), so the Patroni it runs is compared with the wanted one
/// here too: a stale "nothing pending" must not make the primary's turn come first.
pub fn peer_state(unit: &str, bag: &Databag, wanted_patroni: &str) -> UnitState {
    let runs = bag.get(keys::PATRONI).filter(|p| !p.is_empty());
    let reported_pending = bag.get(keys::PENDING).filter(|p| !p.is_empty()).cloned();
    let pending = match runs {
        Some(v) if v != wanted_patroni => {
            reported_pending.or_else(|| Some(format!("Patroni {v} -> {wanted_patroni}")))
        }
        _ => reported_pending,
    };
    UnitState {
        unit: unit.to_string(),
        reported: runs.is_some(),
        pending,
    }
}

fn waiting_units(
    ctx: &Context,
    r: &Roll<'_, '_, '_>,
    mine: &Option<String>,
) -> anyhow::Result<usize> {
    Ok(unit_states(ctx, r, mine)?
        .iter()
        .filter(|u| u.pending.is_some())
        .count())
}

fn lead(
    ctx: &Context,
    r: &Roll<'_, '_, '_>,
    cluster: Option<&Cluster>,
    current: &str,
    mine: &Option<String>,
) -> anyhow::Result<Decision> {
    let units = unit_states(ctx, r, mine)?;
    if units.iter().all(|u| u.pending.is_none()) {
        return Ok(Decision::Done);
    }
    let Some(c) = cluster else {
        return Ok(Decision::Hold("Patroni does not answer".into()));
    };
    let problems = problems(
        ctx.machine,
        ctx.model.app_name(),
        c,
        r.units,
        r.config.synchronous_mode,
    )?;
    let d = decide(Some(current), &units, c, &problems);
    if let Decision::Turn(u) = &d {
        if u != current {
            log::info!("rolling upgrade: {u}'s turn");
        }
    }
    Ok(d)
}

/// This unit's turn: a primary first hands its role to an upgraded synchronous standby; then
/// the new Patroni goes into the virtualenv if it is not there, Patroni restarts (and with it
/// PostgreSQL, on the installed binary), and the hook waits for the member to stream again.
/// Returns what runs afterwards, `None` when the turn could not be taken now (the status
/// says why; a later hook tries again).
fn take_turn(
    ctx: &Context,
    r: &Roll<'_, '_, '_>,
    cluster: &Option<Cluster>,
    what: &str,
) -> anyhow::Result<Reported<Option<Running>>> {
    let m = ctx.machine;
    let me = &r.me.name;
    if cluster
        .as_ref()
        .and_then(|c| c.member(me))
        .is_some_and(|x| x.is_primary())
    {
        let c = cluster.as_ref().expect("checked above");
        let units = unit_states(ctx, r, &Some(what.to_string()))?;
        let Some(target) = switchover_target(c, &units) else {
            return Ok(Report::of(Status::waiting(format!(
                "upgrade ({what}): no upgraded synchronous standby to switch over to yet"
            )))
            .with(None));
        };
        log::info!("rolling upgrade: switching over from {me} to {target} before restarting");
        let body = serde_json::json!({"leader": me, "candidate": target});
        match patroni::request(
            m,
            "POST",
            "/switchover",
            Some(&body),
            Some(&r.passwords.patroni),
        )? {
            Some(resp) if resp.status == 200 => {}
            other => {
                let why = other.map_or("no answer".to_string(), |resp| {
                    format!("HTTP {}: {}", resp.status, resp.body.trim())
                });
                log::warn!("rolling upgrade: Patroni refused the switchover to {target} ({why})");
                return Ok(Report::of(Status::waiting(format!(
                    "upgrade ({what}): Patroni refused the switchover to {} ({why}); retrying in a later hook",
                    paths::unit_of_member(&target)
                )))
                .with(None));
            }
        }
        // Patroni demotes this member and starts it as a replica of the new primary; the
        // restart below waits for that to end rather than cut it short.
        for _ in 0..REJOIN_SECONDS {
            let replica = patroni::cluster(m)?
                .and_then(|c| c.member(me).cloned())
                .is_some_and(|x| x.role != "leader" && x.state == "streaming");
            if replica {
                break;
            }
            m.run(&Cmd::new("sleep", ["1"]))?;
        }
    }
    let new_venv =
        install::stamp(ctx)?.patroni.as_deref() != Some(r.config.patroni_version.as_str());
    if new_venv {
        // pip replaces Patroni's modules: never under a running Patroni.
        log::info!("rolling upgrade: stopping Patroni to install ({what})");
        m.service(ServiceOp::Stop, paths::PATRONI_SERVICE)?;
        let installed = install::install_patroni(ctx, r.config);
        // Whatever pip did, this member comes back (on the old Patroni if pip failed, and
        // the hook fails with pip's error so Juju retries).
        m.service(ServiceOp::Start, paths::PATRONI_SERVICE)?;
        installed?;
    } else {
        log::info!("rolling upgrade: restarting Patroni ({what})");
        m.service(ServiceOp::Restart, paths::PATRONI_SERVICE)?;
    }
    patroni::wait_running(m, REJOIN_SECONDS)?;
    // Done once this member streams again and the cluster could lose its primary without
    // losing writes: the leader's check before the next turn, so the turn moves on at once.
    for _ in 0..REJOIN_SECONDS {
        if let Some(c) = patroni::cluster(m)? {
            let streams = c
                .member(me)
                .is_some_and(|x| x.state == "streaming" || x.is_primary());
            if streams
                && problems(
                    m,
                    ctx.model.app_name(),
                    &c,
                    r.units,
                    r.config.synchronous_mode,
                )?
                .is_empty()
            {
                break;
            }
        }
        m.run(&Cmd::new("sleep", ["1"]))?;
    }
    Ok(Report::default().with(running(m)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patroni::ClusterMember;

    fn member(n: u32, role: &str, state: &str) -> ClusterMember {
        ClusterMember {
            name: format!("postgresql-ha-{n}"),
            role: role.into(),
            state: state.into(),
            host: None,
            timeline: Some(1),
            lag: Some(serde_json::json!(0)),
            pending_restart: false,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            members: vec![
                member(0, "leader", "running"),
                member(1, "quorum_standby", "streaming"),
                member(2, "replica", "streaming"),
                member(3, "replica", "streaming"),
            ],
        }
    }

    fn unit(n: u32, pending: bool) -> UnitState {
        UnitState {
            unit: format!("postgresql-ha/{n}"),
            reported: true,
            pending: pending.then(|| "Patroni 4.1.4 -> 4.1.5".to_string()),
        }
    }

    #[test]
    fn asynchronous_replicas_go_first_then_sync_standbys_then_the_primary() {
        let c = cluster();
        let mut units: Vec<UnitState> = (0..4).map(|n| unit(n, true)).collect();
        let mut order = Vec::new();
        let mut current: Option<String> = None;
        loop {
            match decide(current.as_deref(), &units, &c, &[]) {
                Decision::Turn(u) => {
                    // The turn stays while its unit has not reported itself done.
                    assert_eq!(
                        decide(Some(&u), &units, &c, &["x is starting".into()]),
                        Decision::Turn(u.clone())
                    );
                    order.push(u.clone());
                    units.iter_mut().find(|x| x.unit == u).unwrap().pending = None;
                    current = Some(u);
                }
                Decision::Done => break,
                Decision::Hold(why) => panic!("held: {why}"),
            }
        }
        assert_eq!(
            order,
            [
                "postgresql-ha/2",
                "postgresql-ha/3",
                "postgresql-ha/1",
                "postgresql-ha/0"
            ]
        );
    }

    #[test]
    fn no_new_turn_while_a_member_is_down_or_without_an_upgraded_sync_standby() {
        let c = cluster();
        let units = vec![unit(0, true), unit(1, true), unit(2, false), unit(3, false)];
        assert_eq!(
            decide(
                None,
                &units,
                &c,
                &["postgresql-ha/3 is starting (replica)".into()]
            ),
            Decision::Hold("postgresql-ha/3 is starting (replica)".into())
        );
        // Only the primary left, but the sync standby has not reported: it must not go.
        let units = vec![
            unit(0, true),
            UnitState {
                unit: "postgresql-ha/1".into(),
                reported: false,
                pending: None,
            },
            unit(2, false),
        ];
        assert!(
            matches!(decide(None, &units, &c, &[]), Decision::Hold(w) if w.contains("goes last"))
        );
        assert_eq!(switchover_target(&c, &units), None);
        let units = vec![unit(0, true), unit(1, false), unit(2, false)];
        assert_eq!(
            switchover_target(&c, &units).as_deref(),
            Some("postgresql-ha-1")
        );
        assert_eq!(
            decide(None, &units, &c, &[]),
            Decision::Turn("postgresql-ha/0".into())
        );
        let done = vec![unit(0, false), unit(1, false)];
        assert_eq!(
            decide(Some("postgresql-ha/0"), &done, &c, &[]),
            Decision::Done
        );
    }

    #[test]
    fn pending_compares_what_runs_with_what_is_wanted_and_installed() {
        let r = |p: &str, v: Option<u64>| Running {
            patroni: p.into(),
            server_version: v,
        };
        assert_eq!(pending(&r("4.1.5", Some(150014)), "4.1.5", "15.14"), None);
        assert_eq!(
            pending(&r("4.1.4", Some(150014)), "4.1.5", "15.14").as_deref(),
            Some("Patroni 4.1.4 -> 4.1.5")
        );
        assert_eq!(
            pending(&r("4.1.5", Some(150013)), "4.1.5", "15.14").as_deref(),
            Some("PostgreSQL 15.13 -> 15.14")
        );
        // An unknown installed minor (postgres -V said nothing usable) or server version:
        // nothing to compare, nothing pending.
        assert_eq!(pending(&r("4.1.5", Some(150013)), "4.1.5", "15"), None);
        assert_eq!(pending(&r("4.1.5", None), "4.1.5", "15.14"), None);
        assert_eq!(version_number("15.14"), Some(150014));
        assert_eq!(version_number("9.6"), None);
        assert_eq!(version_text(160002), "16.2");
    }

    #[test]
    fn get_patroni_is_read_as_patroni_writes_it() {
        let body = r#"{"state": "running", "postmaster_start_time": "2026-12-07 09:00:00+00:00", "role": "replica", "server_version": 150014, "xlog": {}, "timeline": 3, "dcs_last_seen": 1, "database_system_identifier": "1", "patroni": {"version": "4.1.5", "scope": "postgresql-ha", "name": "postgresql-ha-1"}}"#;
        assert_eq!(
            parse_running(body),
            Some(Running {
                patroni: "4.1.5".into(),
                server_version: Some(150014)
            })
        );
        assert_eq!(parse_running("not json"), None);
        assert_eq!(
            parse_running(r#"{"state": "stopped", "patroni": {"version": "4.1.5"}}"#),
            Some(Running {
                patroni: "4.1.5".into(),
                server_version: None
            })
        );
    }
}
