//! The model's state: what Juju's controller knows (applications, units, machines,
//! relations and their databags, config, leadership, secrets, ports, statuses, actions) plus
//! each unit's uniter view (what its hooks have already seen), persisted as JSON.

use crate::charm::{CharmMeta, EndpointSpec, Role};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A workload or application status as set by `status-set` (or by the runtime).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
    pub message: String,
    /// Seconds since the epoch.
    pub since: u64,
}

impl Status {
    /// A status stamped now.
    pub fn new(status: &str, message: &str) -> Status {
        Status {
            status: status.into(),
            message: message.into(),
            since: now_secs(),
        }
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A Juju machine (a host of the lab, or a directory in bare mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub id: String,
    pub hostname: String,
    pub ip: String,
    pub cidr: String,
    /// "started", "stopped" (after `lm fault stop`) or "cut" (`lm fault cut`).
    pub state: String,
    /// Since when its unit agents cannot reach the controller (stopped or cut): their
    /// leadership leases are not renewed from then on.
    #[serde(default)]
    pub down_since_ms: Option<u64>,
    /// Its base (`ubuntu@22.04`): that of the first unit placed on it (Juju provisions a
    /// machine for a unit with the unit's application base); empty until then.
    #[serde(default)]
    pub base: String,
}

/// An application: a charm deployed under a name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    /// The model's own copy of the .charm.
    pub charm_path: PathBuf,
    pub meta: CharmMeta,
    /// Values set by the user (`--config`, bundle options, `lm config`).
    pub config: BTreeMap<String, Value>,
    pub leader: Option<String>,
    /// Bumped on each leader change; a leader whose view is older runs leader-elected.
    pub leader_term: u64,
    pub leader_settings: BTreeMap<String, String>,
    /// Bumped when leader-set changes the leader data; non-leaders run
    /// leader-settings-changed.
    pub leader_settings_version: u64,
    pub status: Option<Status>,
    pub workload_version: String,
    pub next_unit: u32,
    /// resource name -> machine-side path of the file attached at deploy.
    pub resources: BTreeMap<String, PathBuf>,
    /// Bumped by `lm refresh`; units run upgrade-charm when their view is older.
    #[serde(default)]
    pub charm_revision: u64,
    /// The base it is deployed on (`ubuntu@22.04`), chosen at deploy (charm.rs select_base).
    #[serde(default)]
    pub base: String,
    /// The last refresh was `--force-units`: a unit in hook error takes the new charm at
    /// once (remotestate/watcher.go applicationChanged: ForceCharmUpgrade, the application's
    /// CharmURL force flag; resolver.go nextOpHookError).
    #[serde(default)]
    pub force_units: bool,
}

impl Application {
    /// Config as hooks see it: defaults overlaid with user values (unset, null-default
    /// options are absent).
    pub fn effective_config(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for (k, o) in &self.meta.options {
            if let Some(d) = &o.default {
                m.insert(k.clone(), d.clone());
            }
        }
        for (k, v) in &self.config {
            m.insert(k.clone(), v.clone());
        }
        m
    }
}

/// A unit's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Life {
    Alive,
    Dying,
}

/// What one unit's hooks have seen of one relation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RelView {
    /// remote unit -> databag version seen by its last relation-changed (None: joined only).
    pub members: BTreeMap<String, Option<u64>>,
    /// version of the remote application databag last seen.
    pub app_seen: u64,
}

/// The uniter's local state for a unit (Juju keeps this on the machine).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UniterView {
    pub installed: bool,
    pub started: bool,
    pub leader_term_seen: u64,
    pub leader_settings_seen: u64,
    pub config_hash: Option<String>,
    pub charm_revision_seen: u64,
    /// Between upgrade-charm and the start that follows it.
    #[serde(default)]
    pub upgrading: bool,
    /// The application's charm revision unpacked in the unit's charm dir: what its hooks,
    /// retries and actions run (Juju's LocalState.CharmURL and CharmModifiedVersion, set
    /// when the upgrade operation deploys the charm: resolver/opfactory.go wrapUpgradeOp).
    #[serde(default)]
    pub charm_deployed: u64,
    pub relations: BTreeMap<u32, RelView>,
    pub last_update_status_ms: u64,
}

/// A hook that failed and is waiting for a retry or `resolve`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HookError {
    pub hook: crate::resolver::HookSpec,
    pub attempts: u32,
    pub retry_at_ms: Option<u64>,
    /// What the last run said last (see [`HookFailure::message`]).
    #[serde(default)]
    pub message: String,
    /// The last lines of the last run's output, hook-tool calls left out.
    #[serde(default)]
    pub tail: Vec<String>,
    /// Runs in a row of this hook that failed with this message (1 for the first).
    #[serde(default)]
    pub same: u32,
}

/// A hook run that exited non-zero (kept per unit, for `lm wait` and the tests' reports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookFailure {
    pub unit: String,
    pub hook: String,
    pub code: i32,
    pub at_ms: u64,
    /// The last line the run printed that is not a hook-tool call: a charm-lib charm's
    /// `hook <name> failed: <error>`, a script's last error.
    pub message: String,
}

impl HookFailure {
    /// `unit: hook "name" exited 1: message`
    pub fn line(&self) -> String {
        format!(
            "{}: hook {:?} exited {}: {}",
            self.unit, self.hook, self.code, self.message
        )
    }
}

/// Failed hook runs kept per unit (the oldest are dropped).
pub const KEPT_FAILURES: usize = 50;

/// A unit of an application.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unit {
    pub name: String,
    pub app: String,
    pub machine: String,
    pub principal: Option<String>,
    pub life: Life,
    pub workload: Status,
    /// idle | executing | error | allocating
    pub agent: String,
    pub agent_message: String,
    pub ports: BTreeSet<String>,
    pub charm_state: BTreeMap<String, String>,
    pub view: UniterView,
    pub error: Option<HookError>,
    /// action ids waiting to run, in order.
    pub pending_actions: Vec<u32>,
    /// secret xids whose consumers must get secret-changed.
    pub pending_secret_changed: BTreeSet<String>,
    /// (secret xid, revision) no consumer tracks any more: the owner gets secret-remove.
    #[serde(default)]
    pub pending_secret_remove: BTreeSet<(String, u64)>,
    /// Whether the charm called status-set since the last hook began (Juju's
    /// "unknown after start if never set" rule).
    pub status_ever_set: bool,
    pub hooks_run: u64,
    /// Every hook this unit ran, in order (for tests and `lm status --format=json`).
    pub hook_log: Vec<String>,
    /// The meter status its meter status worker last ran meter-status-changed for (Juju
    /// keeps it in the agent dir's meter-status.yaml); empty before the first run.
    #[serde(default)]
    pub meter_status_seen: String,
    /// Its last [`KEPT_FAILURES`] hook runs that exited non-zero, oldest first.
    #[serde(default)]
    pub failures: Vec<HookFailure>,
}

impl Unit {
    /// `unit-<app>-<n>`: Juju's tag for the unit, used in its agent directory.
    pub fn tag(&self) -> String {
        format!("unit-{}", self.name.replace('/', "-"))
    }
    /// The unit's agent directory inside its machine.
    pub fn agent_dir(&self) -> String {
        format!("/var/lib/juju/agents/{}", self.tag())
    }
    /// The unit's charm directory inside its machine.
    pub fn charm_dir(&self) -> String {
        format!("{}/charm", self.agent_dir())
    }
    /// The principal unit if subordinate, else the unit itself.
    pub fn container(&self) -> &str {
        self.principal.as_deref().unwrap_or(&self.name)
    }
}

/// One side of a relation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelEndpoint {
    pub app: String,
    pub spec: EndpointSpec,
}

/// A databag with a version bumped on each committed change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bag {
    pub data: BTreeMap<String, String>,
    pub version: u64,
}

/// A relation (global, container-scoped or peer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Relation {
    pub id: u32,
    /// One endpoint for a peer relation, two otherwise.
    pub endpoints: Vec<RelEndpoint>,
    pub container: bool,
    pub dying: bool,
    pub unit_bags: BTreeMap<String, Bag>,
    pub app_bags: BTreeMap<String, Bag>,
    /// Units that have run relation-created and not yet relation-broken.
    pub in_scope: BTreeSet<String>,
}

impl Relation {
    /// Whether this is a peer relation.
    pub fn is_peer(&self) -> bool {
        self.endpoints.len() == 1 && self.endpoints[0].spec.role == Role::Peer
    }
    /// The endpoint of `app` in this relation.
    pub fn local(&self, app: &str) -> Option<&RelEndpoint> {
        self.endpoints.iter().find(|e| e.app == app)
    }
    /// The application at the other end (the app itself for peers).
    pub fn remote_app(&self, app: &str) -> Option<&str> {
        if self.is_peer() {
            return Some(&self.endpoints[0].app);
        }
        self.endpoints
            .iter()
            .find(|e| e.app != app)
            .map(|e| e.app.as_str())
    }
    /// `app:endpoint app:endpoint` for display and lookups.
    pub fn key(&self) -> String {
        self.endpoints
            .iter()
            .map(|e| format!("{}:{}", e.app, e.spec.name))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A consumer's view of a secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Consumer {
    pub tracked: u64,
    pub label: Option<String>,
}

/// A Juju secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Secret {
    pub xid: String,
    /// `application:<app>` or `unit:<app/n>`.
    pub owner: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub expire: Option<String>,
    pub rotate: Option<String>,
    /// revision number -> content
    pub revisions: BTreeMap<u64, BTreeMap<String, String>>,
    /// relation id -> granted unit (None = the whole remote application)
    pub grants: Vec<(u32, Option<String>)>,
    /// consumer (unit name) -> tracking info
    pub consumers: BTreeMap<String, Consumer>,
    /// Obsolete revisions the owner was already told about (secret-remove).
    #[serde(default)]
    pub obsolete_notified: BTreeSet<u64>,
}

impl Secret {
    /// Revisions older than the latest that no consumer tracks: Juju tells the owner with
    /// secret-remove so it can delete them.
    pub fn obsolete(&self) -> Vec<u64> {
        let latest = self.latest();
        self.revisions
            .keys()
            .copied()
            .filter(|r| *r < latest && !self.consumers.values().any(|c| c.tracked == *r))
            .collect()
    }

    /// The latest revision number.
    pub fn latest(&self) -> u64 {
        self.revisions.keys().next_back().copied().unwrap_or(0)
    }
}

/// An action run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionRun {
    pub id: u32,
    pub unit: String,
    pub name: String,
    pub params: serde_json::Map<String, Value>,
    /// pending | running | completed | failed
    pub status: String,
    pub message: String,
    pub results: serde_json::Map<String, Value>,
    pub log: Vec<String>,
}

/// Runtime settings (short for tests, Juju's values are minutes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// First retry delay of a failed hook; doubles up to `retry_max_ms`. 0 = no automatic retry.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// update-status interval; 0 = never.
    pub update_status_ms: u64,
    /// How long after its machine went down (stopped or cut) a leader's lease runs out and
    /// another unit becomes leader; 0 = never. Juju renews a 60 s lease every 30 s (juju/juju
    /// internal/worker/leadership/tracker.go `Tracker.refresh`: lease 2 × the 30 s
    /// LeadershipGuarantee, renewed `duration` before it ends), so a lost leader's lease ends
    /// 30-60 s after the loss; the default takes the longest.
    #[serde(default = "default_leader_lease_ms")]
    pub leader_lease_ms: u64,
    /// The Juju agent version the units run (JUJU_VERSION in hooks, the model's version in
    /// status). Before 3.6.11 each unit's meter status worker also runs meter-status-changed
    /// (resolver.rs meter_status_due).
    #[serde(default = "default_juju_version")]
    pub juju_version: String,
}

fn default_leader_lease_ms() -> u64 {
    60_000
}

fn default_juju_version() -> String {
    crate::engine::JUJU_VERSION.into()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry_base_ms: 5_000,
            retry_max_ms: 300_000,
            update_status_ms: 300_000,
            leader_lease_ms: default_leader_lease_ms(),
            juju_version: default_juju_version(),
        }
    }
}

/// Which kind of machines the model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Substrate {
    /// Plain processes in per-machine directories (fast runtime tests only).
    Bare,
    /// Namespaced hosts from the `hosts` crate.
    Hosts,
}

/// The whole model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelState {
    pub name: String,
    pub uuid: String,
    pub substrate: Substrate,
    pub settings: Settings,
    pub next_machine: u32,
    pub next_relation: u32,
    pub next_action: u32,
    pub machines: BTreeMap<String, Machine>,
    pub applications: BTreeMap<String, Application>,
    pub units: BTreeMap<String, Unit>,
    pub relations: BTreeMap<u32, Relation>,
    pub secrets: BTreeMap<String, Secret>,
    pub actions: BTreeMap<u32, ActionRun>,
}

impl ModelState {
    /// An empty model.
    pub fn new(substrate: Substrate, settings: Settings) -> ModelState {
        ModelState {
            name: "lm".into(),
            uuid: pseudo_uuid(),
            substrate,
            settings,
            next_machine: 0,
            next_relation: 0,
            next_action: 1,
            machines: BTreeMap::new(),
            applications: BTreeMap::new(),
            units: BTreeMap::new(),
            relations: BTreeMap::new(),
            secrets: BTreeMap::new(),
            actions: BTreeMap::new(),
        }
    }

    /// Load from a JSON file.
    pub fn load(path: &Path) -> Result<ModelState> {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", path.display()))
    }

    /// Write atomically (write + rename) so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Whether `unit` is the leader of its application.
    pub fn is_leader(&self, unit: &str) -> bool {
        let app = app_of(unit);
        self.applications.get(app).and_then(|a| a.leader.as_deref()) == Some(unit)
    }

    /// Whether `unit` takes part in relation `rel` (a container relation involves each
    /// principal unit and, of the subordinates, those of that principal's application, or
    /// every unit when the other side is a subordinate application too).
    pub fn participates(&self, rel: &Relation, unit: &Unit) -> bool {
        if rel.local(&unit.app).is_none() {
            return false;
        }
        if !rel.container || rel.is_peer() {
            return true;
        }
        let other = rel.remote_app(&unit.app).unwrap_or_default();
        match &unit.principal {
            // A subordinate's uniter hears of a container relation whose other end is its
            // principal's application or any subordinate application
            // (apiserver/facades/agent/uniter/subordinaterelationwatcher.go
            // subRelationsWatcher.shouldSendCheck), and such a relation unit is valid
            // (state/relationunit.go RelationUnit.Valid: "the other end of the relation is also
            // a subordinate charm or its principal unit is also a member of the relation").
            // Whom it then meets is `members`: the same principal's scope only.
            Some(p) => {
                app_of(p) == other
                    || self
                        .applications
                        .get(other)
                        .is_some_and(|a| a.meta.subordinate)
            }
            // every principal unit of the application takes part: entering the scope is what
            // creates its subordinate (state/relationunit.go RelationUnit.subordinateOps)
            None => true,
        }
    }

    /// The remote units `unit` should currently see in `rel` (Juju's relation membership).
    pub fn members(&self, rel: &Relation, unit: &Unit) -> Vec<String> {
        if rel.dying || unit.life != Life::Alive || !rel.in_scope.contains(&unit.name) {
            return vec![];
        }
        let Some(remote_app) = rel.remote_app(&unit.app) else {
            return vec![];
        };
        rel.in_scope
            .iter()
            .filter_map(|n| self.units.get(n))
            .filter(|u| u.name != unit.name && u.app == remote_app && u.life == Life::Alive)
            // A container relation's scope is per principal unit: the relation's key and the
            // unit's principal, or its own name for a principal (state/relation.go
            // Relation.unit), so two subordinates meet only on the same principal unit, never
            // on another principal sharing the machine.
            .filter(|u| !rel.container || u.container() == unit.container())
            .map(|u| u.name.clone())
            .collect()
    }

    /// Queue secret-remove for the owners of revisions that became obsolete.
    pub fn queue_secret_removals(&mut self) {
        let mut due = Vec::new();
        for s in self.secrets.values_mut() {
            for r in s.obsolete() {
                if s.obsolete_notified.insert(r) {
                    due.push((s.owner.clone(), s.xid.clone(), r));
                }
            }
        }
        for (owner, xid, r) in due {
            let unit = match owner.split_once(':') {
                Some(("unit", u)) => Some(u.to_string()),
                Some((_, app)) => self.applications.get(app).and_then(|a| a.leader.clone()),
                None => None,
            };
            if let Some(u) = unit.and_then(|u| self.units.get_mut(&u)) {
                u.pending_secret_remove.insert((xid, r));
            }
        }
    }

    /// Whether `unit`'s agent can reach the controller (its machine is started).
    fn agent_up(&self, unit: &Unit) -> bool {
        self.machines
            .get(&unit.machine)
            .is_none_or(|m| m.state == "started")
    }

    /// Moves leadership away from leaders whose machine has been down for the lease
    /// ([`Settings::leader_lease_ms`]), and elects one where an application has none. Returns
    /// when a lease still running out will end (ms epoch), for the scheduler to wake then.
    /// In Juju the old leader's tracker stops renewing when its agent cannot reach the
    /// controller; a minion's tracker, blocked in BlockUntilLeadershipReleased, claims the
    /// lease once it expires and its unit runs leader-elected.
    pub fn move_lost_leadership(&mut self, now: u64) -> Option<u64> {
        let lease = self.settings.leader_lease_ms;
        let mut next: Option<u64> = None;
        let apps: Vec<String> = self.applications.keys().cloned().collect();
        for app in apps {
            let leader = self.applications.get(&app).and_then(|a| a.leader.clone());
            let down_since = leader
                .as_ref()
                .and_then(|l| self.units.get(l))
                .and_then(|u| self.machines.get(&u.machine))
                .and_then(|m| m.down_since_ms);
            if leader.is_none() {
                self.ensure_leader(&app);
                continue;
            }
            match lease_outcome(down_since, lease, now) {
                Lease::Held => {}
                Lease::EndsAt(t) => next = Some(next.map_or(t, |n| n.min(t))),
                Lease::Ended => {
                    if let Some(a) = self.applications.get_mut(&app) {
                        a.leader = None;
                    }
                    self.ensure_leader(&app);
                }
            }
        }
        next
    }

    /// Elect a new leader for `app` if its leader is gone (lowest-numbered alive unit whose
    /// agent is up: only a running agent can claim the lease). A dying leader keeps
    /// leadership until it is removed, as its lease outlives it in Juju.
    pub fn ensure_leader(&mut self, app: &str) {
        let current = self.applications.get(app).and_then(|a| a.leader.clone());
        if let Some(l) = &current {
            if self.units.contains_key(l) {
                return;
            }
        }
        let mut alive: Vec<&Unit> = self
            .units
            .values()
            .filter(|u| u.app == app && u.life == Life::Alive && self.agent_up(u))
            .collect();
        alive.sort_by_key(|u| unit_number(&u.name));
        let new = alive.first().map(|u| u.name.clone());
        if let Some(a) = self.applications.get_mut(app) {
            if new.is_some() && new != current {
                // a new leader runs leader-elected; the others run leader-settings-changed
                // only when the leader data changes, not because leadership moved (Juju 3:
                // remotestate's leadershipChanged leaves LeaderSettingsVersion alone, only
                // the leader-settings watcher bumps it; leadership/resolver.go compares it)
                a.leader = new;
                a.leader_term += 1;
            } else if new.is_none() {
                a.leader = None;
            }
        }
    }
}

/// A leader's lease, seen from the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Renewed: its agent is up (or leases never end in this model).
    Held,
    /// Not renewed since its machine went down; it ends then (ms epoch).
    EndsAt(u64),
    /// Ended: another unit may claim it.
    Ended,
}

/// The lease of a leader whose machine went down at `down_since` (None: it is up), with a
/// lease of `lease_ms` (0: leases never end).
pub fn lease_outcome(down_since: Option<u64>, lease_ms: u64, now: u64) -> Lease {
    match down_since {
        Some(t) if lease_ms > 0 && now >= t + lease_ms => Lease::Ended,
        Some(t) if lease_ms > 0 => Lease::EndsAt(t + lease_ms),
        _ => Lease::Held,
    }
}

/// The application part of a unit name.
pub fn app_of(unit: &str) -> &str {
    unit.split('/').next().unwrap_or(unit)
}

/// The number part of a unit name.
pub fn unit_number(unit: &str) -> u32 {
    unit.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A random-looking id from the clock, the pid and a counter (no RNG dependency needed:
/// ids only have to be unique within one model).
pub fn unique_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t
        ^ ((std::process::id() as u64) << 32)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser so consecutive ids look unrelated
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pseudo_uuid() -> String {
    let a = unique_u64();
    let b = unique_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// A Juju-style secret xid: 20 characters of base32hex (0-9a-v).
pub fn secret_xid() -> String {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let (a, b) = (unique_u64(), unique_u64());
    (0..20)
        .map(|i| {
            let v = if i < 12 {
                a >> (i * 5)
            } else {
                b >> ((i - 12) * 5)
            };
            A[(v & 31) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[test]
    fn a_down_leaders_lease_ends_after_the_lease_time_and_only_then() {
        assert_eq!(
            lease_outcome(None, 60_000, 1_000_000),
            Lease::Held,
            "an agent that is up renews"
        );
        assert_eq!(
            lease_outcome(Some(1_000), 60_000, 30_000),
            Lease::EndsAt(61_000)
        );
        assert_eq!(lease_outcome(Some(1_000), 60_000, 61_000), Lease::Ended);
        assert_eq!(
            lease_outcome(Some(1_000), 0, 10_000_000),
            Lease::Held,
            "0: never moves"
        );
        assert_eq!(
            Settings::default().leader_lease_ms,
            60_000,
            "Juju's longest: a 60 s lease"
        );
    }
}
