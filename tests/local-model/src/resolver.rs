//! Juju's uniter resolver: from the model state and what a unit has already seen, decide
//! the next hook that unit must run (reference §3), and record what a successful hook saw.
//!
//! Computing the next hook from state (instead of pushing events into queues) is how Juju
//! does it too, and it makes the ordering rules hold whatever sequence of CLI calls happens.

use crate::charm::Role;
use crate::state::{Life, ModelState, RelView, Relation};
use serde::{Deserialize, Serialize};

/// The kinds of hook the runtime runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookKind {
    Install,
    LeaderElected,
    LeaderSettingsChanged,
    ConfigChanged,
    Start,
    UpgradeCharm,
    UpdateStatus,
    Stop,
    Remove,
    RelationCreated,
    RelationJoined,
    RelationChanged,
    RelationDeparted,
    RelationBroken,
    SecretChanged,
    SecretRemove,
    Action,
    /// A command run by `juju-exec` in the unit's hook context (not a hook: the resolver
    /// never decides one, and it records nothing in the unit's view).
    Exec,
    /// Run by the unit's meter status worker, not its uniter (meter_status_due).
    MeterStatusChanged,
}

/// One hook (or action) to run for a unit, with the state it was decided on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookSpec {
    pub kind: HookKind,
    /// Full hook name (`db-relation-changed`) or the action name.
    pub name: String,
    pub relation: Option<u32>,
    pub endpoint: String,
    pub remote_app: String,
    pub remote_unit: String,
    pub departing: String,
    pub secret: Option<String>,
    pub action: Option<u32>,
    /// Version of what the hook is about (databag, leader term, settings) when decided.
    pub snapshot: u64,
    /// Remote app databag version when decided (relation-changed).
    pub snapshot_app: u64,
    /// Config hash when decided (config-changed).
    pub config_hash: String,
}

impl HookSpec {
    pub(crate) fn simple(kind: HookKind, name: &str) -> HookSpec {
        HookSpec {
            kind,
            name: name.into(),
            relation: None,
            endpoint: String::new(),
            remote_app: String::new(),
            remote_unit: String::new(),
            departing: String::new(),
            secret: None,
            action: None,
            snapshot: 0,
            snapshot_app: 0,
            config_hash: String::new(),
        }
    }

    /// `hooks/<name>` or `actions/<name>` (JUJU_DISPATCH_PATH).
    pub fn dispatch_path(&self) -> String {
        if self.kind == HookKind::Action {
            format!("actions/{}", self.name)
        } else {
            format!("hooks/{}", self.name)
        }
    }
}

/// A stable hash of an application's effective config (Juju's ConfigHash).
pub fn config_hash(state: &ModelState, app: &str) -> String {
    state
        .applications
        .get(app)
        .map(|a| serde_json::to_string(&a.effective_config()).unwrap_or_default())
        .unwrap_or_default()
}

fn rel_hook(
    state: &ModelState,
    unit_app: &str,
    rel_id: u32,
    kind: HookKind,
    suffix: &str,
) -> HookSpec {
    let rel = &state.relations[&rel_id];
    let ep = rel
        .local(unit_app)
        .map(|e| e.spec.name.clone())
        .unwrap_or_default();
    let mut h = HookSpec::simple(kind, &format!("{ep}-relation-{suffix}"));
    h.relation = Some(rel_id);
    h.endpoint = ep;
    h.remote_app = rel.remote_app(unit_app).unwrap_or_default().to_string();
    h
}

/// Whether `app`'s own side of `rel` is implicit: the `juju-info` provider Juju gives every
/// charm (charm Relation.IsImplicit: name and interface `juju-info`, role provider).
/// Such a side runs no hook at all (worker/uniter/relation/resolver.go: relationsResolver
/// NextOp and createdRelationsResolver nextHookForRelation skip it when
/// stateTracker.IsImplicit), though its unit enters and leaves the relation's scope.
pub fn is_implicit(rel: &Relation, app: &str) -> bool {
    rel.local(app).is_some_and(|e| {
        e.spec.name == "juju-info"
            && e.spec.interface == "juju-info"
            && e.spec.role == Role::Provider
    })
}

/// Scopes of the implicit sides, which no hook moves: an installed, alive unit enters the
/// scope of each alive implicit relation it takes part in (with its address keys in its
/// databag), and leaves it, with no hook, when the relation or the unit dies or it no longer
/// takes part (a dying relation is collected only once no unit has it in view, so an implicit
/// view never outlives its relation). Juju: worker/uniter/relation/statetracker.go SynchronizeScopes (called from
/// the created-relations resolver once installed) joins every relation, implicit ones too
/// (Relationer.Join enters scope); Relationer.SetDying on an implicit relationer leaves scope
/// at once (die), and relationStateTracker.setDying forgets it.
pub fn sync_implicit_scopes(state: &mut ModelState) {
    let mut enter = Vec::new();
    let mut leave = Vec::new();
    for u in state.units.values() {
        if !u.view.installed {
            continue;
        }
        for rel in state.relations.values() {
            if !is_implicit(rel, &u.app) {
                continue;
            }
            let want = !rel.dying && u.life == Life::Alive && state.participates(rel, u);
            let has = u.view.relations.contains_key(&rel.id);
            if want && !has {
                enter.push((u.name.clone(), rel.id));
            } else if !want && has {
                leave.push((u.name.clone(), rel.id));
            }
        }
    }
    for (unit, id) in enter {
        let app = crate::state::app_of(&unit).to_string();
        let h = rel_hook(state, &app, id, HookKind::RelationCreated, "created");
        commit(state, &unit, &h, 0);
    }
    for (unit, id) in leave {
        if let Some(u) = state.units.get_mut(&unit) {
            u.view.relations.remove(&id);
        }
        if let Some(r) = state.relations.get_mut(&id) {
            r.in_scope.remove(&unit);
        }
    }
}

/// Whether relation `id` is implicit on `app`'s side (a relation gone from the model is not).
fn implicit_id(state: &ModelState, id: u32, app: &str) -> bool {
    state
        .relations
        .get(&id)
        .is_some_and(|r| is_implicit(r, app))
}

/// The meter status every unit has: Juju's unit meter status is "NOT SET" unless metrics
/// set it, which the API gives agents as AMBER, "not set" (apiserver/common/meterstatus
/// MeterStatusWrapper).
pub const METER_STATUS: (&str, &str) = ("AMBER", "not set");

/// Whether Juju `version` (`3.6.10`, `3.6.11-beta1`...) still runs meter-status-changed: Juju
/// removed the metrics hooks in 3.6.11 (canonical/operator #2126: "removed in 3.6.11").
pub fn runs_meter_status_changed(version: &str) -> bool {
    let nums: Vec<u64> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let v = |i: usize| nums.get(i).copied().unwrap_or(0);
    (v(0), v(1), v(2)) < (3, 6, 11)
}

/// meter-status-changed, when `unit_name`'s meter status worker owes it: on Juju before
/// 3.6.11, once the unit's charm is there (the worker's manifold waits for the charm dir;
/// here: after install), when the meter status differs from the one the worker stored after
/// its last run (internal/worker/meterstatus/connected.go Handle: a blank state at first, so
/// once per unit; the state is stored whether the hook failed or not). It is not the uniter's
/// hook: it runs whatever the unit's error state, under the machine lock
/// (meterstatus/runner.go RunHook), with a restricted context (hooktools: every tool but
/// juju-log fails) and no JUJU_VERSION (engine.rs hook_env).
pub fn meter_status_due(state: &ModelState, unit_name: &str) -> Option<HookSpec> {
    let unit = state.units.get(unit_name)?;
    let (code, info) = METER_STATUS;
    let status = format!("{code} {info}");
    (runs_meter_status_changed(&state.settings.juju_version)
        && unit.view.installed
        && unit.life == Life::Alive
        && unit.meter_status_seen != status)
        .then(|| HookSpec::simple(HookKind::MeterStatusChanged, "meter-status-changed"))
}

/// Whether `unit_name`, in hook error, must take its application's new charm now: only
/// when the refresh was forced (worker/uniter/resolver.go nextOpHookError:
/// `ForceCharmUpgrade && charmModified` -> newUpgradeOperation; without force a unit in
/// error only retries or is resolved, with the charm it has). This upgrade runs no hook:
/// operation/deploy.go Commit keeps the interrupted hook pending (interruptedHook) instead of
/// queueing upgrade-charm, so the unit stays in error and its next retry runs the new code.
pub fn forced_upgrade(state: &ModelState, unit_name: &str) -> bool {
    let Some(unit) = state.units.get(unit_name) else {
        return false;
    };
    let Some(app) = state.applications.get(&unit.app) else {
        return false;
    };
    unit.error.is_some() && app.force_units && unit.view.charm_deployed < app.charm_revision
}

/// Record that `unit_name`'s charm dir now holds its application's current charm (the
/// upgrade operation's commit, resolver/opfactory.go wrapUpgradeOp: LocalState.CharmURL and
/// CharmModifiedVersion set, Restart). Before upgrade-charm, or instead of it when forced on
/// a unit in error: then the unit also counts as upgraded (charmModified is false from now
/// on, so no upgrade-charm follows its resolution) and the restarted resolver loop's new
/// LocalState has LeaderSettingsVersion 0 (a non-leader runs leader-settings-changed once
/// it is out of error, leadership/resolver.go).
pub fn commit_deploy(state: &mut ModelState, unit_name: &str, forced: bool) {
    let Some(rev) = state
        .units
        .get(unit_name)
        .and_then(|u| state.applications.get(&u.app))
        .map(|a| a.charm_revision)
    else {
        return;
    };
    let Some(unit) = state.units.get_mut(unit_name) else {
        return;
    };
    unit.view.charm_deployed = rev;
    if forced {
        unit.view.charm_revision_seen = rev;
        unit.view.leader_settings_seen = 0;
    }
}

/// The next hook `unit` must run, if any. `now_ms` decides retries and update-status.
pub fn next_op(state: &ModelState, unit_name: &str, now_ms: u64) -> Option<HookSpec> {
    let unit = state.units.get(unit_name)?;
    let app = state.applications.get(&unit.app)?;
    if let Some(err) = &unit.error {
        // Only the failed hook may run, when its retry is due (or after `resolve`); actions
        // still run (`juju run` is how operators look at a unit in error).
        return match err.retry_at_ms {
            Some(t) if t <= now_ms => Some(err.hook.clone()),
            _ => pending_action(state, unit),
        };
    }
    let view = &unit.view;
    if !view.installed {
        if unit.life == Life::Dying {
            return Some(HookSpec::simple(HookKind::Remove, "remove"));
        }
        return Some(HookSpec::simple(HookKind::Install, "install"));
    }
    if unit.life == Life::Dying {
        // "if we're dying we must ensure that all relations are broken first"
        for (id, rv) in &view.relations {
            if implicit_id(state, *id, &unit.app) {
                continue;
            }
            if let Some(m) = rv.members.keys().next() {
                let mut h = rel_hook(
                    state,
                    &unit.app,
                    *id,
                    HookKind::RelationDeparted,
                    "departed",
                );
                h.remote_unit = m.clone();
                h.departing = unit.name.clone();
                return Some(h);
            }
        }
        for id in view.relations.keys() {
            // A peer relation's broken hook never fires (docs/reference/hook.md).
            if !state.relations.get(id).is_some_and(|r| r.is_peer())
                && !implicit_id(state, *id, &unit.app)
            {
                return Some(rel_hook(
                    state,
                    &unit.app,
                    *id,
                    HookKind::RelationBroken,
                    "broken",
                ));
            }
        }
        if view.started {
            return Some(HookSpec::simple(HookKind::Stop, "stop"));
        }
        return Some(HookSpec::simple(HookKind::Remove, "remove"));
    }
    // relation-created for every relation the unit is part of, before start.
    for rel in state.relations.values() {
        if !rel.dying
            && !view.relations.contains_key(&rel.id)
            && state.participates(rel, unit)
            && !is_implicit(rel, &unit.app)
        {
            return Some(rel_hook(
                state,
                &unit.app,
                rel.id,
                HookKind::RelationCreated,
                "created",
            ));
        }
    }
    // upgrade-charm -> config-changed (operation/runhook.go Commit queues it), then
    // leader-settings-changed on non-leaders (the upgrade restarts the resolver loop with a
    // new LocalState and remote-state watcher: uniter.go loop on resolver.ErrRestart), and
    // start only on a unit that had not started (runhook.go Commit after config-changed)
    if view.upgrading && view.config_hash.is_none() {
        let mut h = HookSpec::simple(HookKind::ConfigChanged, "config-changed");
        h.config_hash = config_hash(state, &unit.app);
        return Some(h);
    }
    // After the first config-changed, start comes next (runHook.Commit), before anything else;
    // also after a reboot (the machine was stopped and started).
    if view.config_hash.is_some() && !view.started {
        return Some(HookSpec::simple(HookKind::Start, "start"));
    }
    let leader = app.leader.as_deref() == Some(unit_name);
    if leader && view.leader_term_seen < app.leader_term {
        let mut h = HookSpec::simple(HookKind::LeaderElected, "leader-elected");
        h.snapshot = app.leader_term;
        h.snapshot_app = app.leader_settings_version;
        return Some(h);
    }
    if !leader && view.leader_settings_seen < app.leader_settings_version {
        let mut h = HookSpec::simple(HookKind::LeaderSettingsChanged, "leader-settings-changed");
        h.snapshot = app.leader_settings_version;
        return Some(h);
    }
    // Then, as worker/uniter/resolver.go uniterResolver NextOp orders its resolvers once no
    // hook is queued (operation Kind Continue): created relations, leadership (above),
    // secrets, actions, and only then nextOp's upgrade-charm, config-changed, relations and
    // update-status. So secret hooks and queued actions come before config-changed and
    // relation hooks, and an action queued during install runs right after it (and the
    // relation-created and leader hooks), before config-changed and start.
    //
    // Secrets (worker/uniter/secrets/resolver.go secretsResolver NextOp): secret-changed for
    // a consumed secret whose revision moved, then secret-remove for obsolete revisions.
    if let Some(xid) = unit.pending_secret_changed.iter().next() {
        let mut h = HookSpec::simple(HookKind::SecretChanged, "secret-changed");
        h.secret = Some(xid.clone());
        return Some(h);
    }
    if let Some((xid, rev)) = unit.pending_secret_remove.iter().next() {
        let mut h = HookSpec::simple(HookKind::SecretRemove, "secret-remove");
        h.secret = Some(xid.clone());
        h.snapshot = *rev;
        return Some(h);
    }
    // Actions (worker/uniter/actions/resolver.go actionsResolver NextOp, operation Kind
    // Continue): before upgrade-charm too (its OutdatedRemoteCharm hold applies to CAAS
    // sidecar units only, not to machines).
    if let Some(h) = pending_action(state, unit) {
        return Some(h);
    }
    if view.charm_revision_seen < app.charm_revision {
        let mut h = HookSpec::simple(HookKind::UpgradeCharm, "upgrade-charm");
        h.snapshot = app.charm_revision;
        return Some(h);
    }
    let hash = config_hash(state, &unit.app);
    if view.config_hash.as_deref() != Some(hash.as_str()) {
        let mut h = HookSpec::simple(HookKind::ConfigChanged, "config-changed");
        h.config_hash = hash;
        return Some(h);
    }
    if !view.started {
        return Some(HookSpec::simple(HookKind::Start, "start"));
    }
    for (id, rv) in &view.relations {
        if implicit_id(state, *id, &unit.app) {
            continue;
        }
        if let Some(h) = next_relation_hook(state, unit_name, *id, rv) {
            return Some(h);
        }
    }
    let interval = state.settings.update_status_ms;
    if interval > 0 && now_ms >= view.last_update_status_ms + interval {
        return Some(HookSpec::simple(HookKind::UpdateStatus, "update-status"));
    }
    None
}

fn pending_action(state: &ModelState, unit: &crate::state::Unit) -> Option<HookSpec> {
    if !unit.view.installed {
        return None;
    }
    let id = unit.pending_actions.first()?;
    let run = state.actions.get(id)?;
    let mut h = HookSpec::simple(HookKind::Action, &run.name);
    h.action = Some(*id);
    Some(h)
}

fn next_relation_hook(
    state: &ModelState,
    unit_name: &str,
    id: u32,
    rv: &RelView,
) -> Option<HookSpec> {
    let unit = &state.units[unit_name];
    let Some(rel) = state.relations.get(&id) else {
        return Some(rel_hook_gone(unit_name, id));
    };
    let current = if state.participates(rel, unit) {
        state.members(rel, unit)
    } else {
        vec![]
    };
    // The order of worker/uniter/relation/resolver.go relationsResolver nextHookForRelation:
    // the relation-changed owed right after a relation-joined (State.ChangedPending), departed
    // for members that left, broken, the remote application's databag, joined, then the
    // remote units' databags.
    let changed = |m: &String, h: &mut HookSpec| {
        h.remote_unit = m.clone();
        h.snapshot = rel.unit_bags.get(m).map_or(0, |b| b.version);
        h.snapshot_app = rel.app_bags.get(&h.remote_app).map_or(0, |b| b.version);
    };
    if let Some((m, _)) = rv.members.iter().find(|(_, seen)| seen.is_none()) {
        let mut h = rel_hook(state, &unit.app, id, HookKind::RelationChanged, "changed");
        changed(m, &mut h);
        return Some(h);
    }
    if let Some(m) = rv.members.keys().find(|m| !current.contains(m)) {
        let mut h = rel_hook(state, &unit.app, id, HookKind::RelationDeparted, "departed");
        h.remote_unit = m.clone();
        h.departing = m.clone();
        return Some(h);
    }
    // broken once the relation is going away and nobody is left
    if (rel.dying || !state.participates(rel, unit)) && rv.members.is_empty() {
        return Some(rel_hook(
            state,
            &unit.app,
            id,
            HookKind::RelationBroken,
            "broken",
        ));
    }
    // The remote application's databag: relation-changed with JUJU_REMOTE_UNIT empty and
    // JUJU_REMOTE_APP set, whether or not any of its units has joined yet ("trigger all app
    // hooks first"); on a peer relation, never on the leader (`if !isPeer || !leader`).
    let remote_app = rel.remote_app(&unit.app).unwrap_or_default();
    let app_v = rel.app_bags.get(remote_app).map_or(0, |b| b.version);
    let peer_leader = rel.is_peer() && state.is_leader(unit_name);
    if !peer_leader && rv.app_seen != app_v {
        let mut h = rel_hook(state, &unit.app, id, HookKind::RelationChanged, "changed");
        h.snapshot_app = app_v;
        return Some(h);
    }
    if let Some(m) = current.iter().find(|m| !rv.members.contains_key(*m)) {
        let mut h = rel_hook(state, &unit.app, id, HookKind::RelationJoined, "joined");
        h.remote_unit = m.clone();
        return Some(h);
    }
    for (m, seen) in &rv.members {
        let v = rel.unit_bags.get(m).map_or(0, |b| b.version);
        if seen.is_none_or(|s| s != v) {
            let mut h = rel_hook(state, &unit.app, id, HookKind::RelationChanged, "changed");
            changed(m, &mut h);
            return Some(h);
        }
    }
    None
}

/// A relation removed from the model under a unit's feet: drop it with a broken hook.
fn rel_hook_gone(_unit: &str, id: u32) -> HookSpec {
    let mut h = HookSpec::simple(HookKind::RelationBroken, "relation-broken");
    h.relation = Some(id);
    h
}

/// Record in the unit's view what a successful hook has seen (Juju's operation Commit).
/// Returns `true` when the unit is gone (after `remove`).
pub fn commit(state: &mut ModelState, unit_name: &str, h: &HookSpec, now_ms: u64) -> bool {
    let Some(unit) = state.units.get_mut(unit_name) else {
        return true;
    };
    let v = &mut unit.view;
    match h.kind {
        HookKind::Install => v.installed = true,
        HookKind::LeaderElected => {
            v.leader_term_seen = h.snapshot;
            v.leader_settings_seen = h.snapshot_app;
        }
        HookKind::LeaderSettingsChanged => v.leader_settings_seen = h.snapshot,
        HookKind::UpgradeCharm => {
            v.charm_revision_seen = h.snapshot;
            // operation/runhook.go Commit: upgrade-charm queues config-changed; a started
            // unit stays started (no start hook). The upgrade restarted the uniter's resolver
            // loop (uniter.go, resolver.ErrRestart): its new LocalState has
            // LeaderSettingsVersion 0, so a non-leader runs leader-settings-changed
            // (leadership/resolver.go)
            v.config_hash = None;
            v.upgrading = true;
            v.leader_settings_seen = 0;
        }
        HookKind::ConfigChanged => {
            v.config_hash = Some(h.config_hash.clone());
            v.upgrading = false;
        }
        HookKind::Start => {
            v.started = true;
            v.last_update_status_ms = now_ms;
            if !unit.status_ever_set && unit.workload.status == "maintenance" {
                unit.workload = crate::state::Status::new("unknown", "");
            }
        }
        HookKind::UpdateStatus => v.last_update_status_ms = now_ms,
        HookKind::Stop => {
            v.started = false;
            // peer relations end with the unit, without a broken hook
            let ids: Vec<u32> = v.relations.keys().copied().collect();
            v.relations.clear();
            for id in ids {
                if let Some(r) = state.relations.get_mut(&id) {
                    r.in_scope.remove(unit_name);
                }
            }
        }
        HookKind::Remove => {
            state.units.remove(unit_name);
            state.ensure_leader(crate::state::app_of(unit_name));
            for r in state.relations.values_mut() {
                r.in_scope.remove(unit_name);
            }
            return true;
        }
        HookKind::RelationCreated => {
            let id = h.relation.unwrap_or_default();
            v.relations.insert(id, RelView::default());
            let ip = state
                .machines
                .get(&unit.machine)
                .map(|m| m.ip.clone())
                .unwrap_or_default();
            if let Some(r) = state.relations.get_mut(&id) {
                r.in_scope.insert(unit_name.to_string());
                // Juju fills these into every unit's databag when it enters scope.
                let bag = r.unit_bags.entry(unit_name.to_string()).or_default();
                for (k, val) in [
                    ("egress-subnets", format!("{ip}/32")),
                    ("ingress-address", ip.clone()),
                    ("private-address", ip),
                ] {
                    bag.data.entry(k.to_string()).or_insert(val);
                }
            }
        }
        HookKind::RelationJoined => {
            if let Some(rv) = v.relations.get_mut(&h.relation.unwrap_or_default()) {
                rv.members.insert(h.remote_unit.clone(), None);
            }
        }
        HookKind::RelationChanged => {
            if let Some(rv) = v.relations.get_mut(&h.relation.unwrap_or_default()) {
                if !h.remote_unit.is_empty() {
                    if let Some(seen) = rv.members.get_mut(&h.remote_unit) {
                        *seen = Some(h.snapshot);
                    }
                }
                // only an app hook (no remote unit) records the app databag as seen
                // (relation/state.go State.UpdateStateForHook: ApplicationMembers for a hook
                // with no RemoteUnit, Members otherwise)
                if h.remote_unit.is_empty() {
                    rv.app_seen = h.snapshot_app;
                }
            }
        }
        HookKind::RelationDeparted => {
            if let Some(rv) = v.relations.get_mut(&h.relation.unwrap_or_default()) {
                rv.members.remove(&h.remote_unit);
            }
        }
        HookKind::RelationBroken => {
            let id = h.relation.unwrap_or_default();
            v.relations.remove(&id);
            if let Some(r) = state.relations.get_mut(&id) {
                r.in_scope.remove(unit_name);
            }
        }
        HookKind::SecretRemove => {
            if let Some(x) = &h.secret {
                unit.pending_secret_remove.remove(&(x.clone(), h.snapshot));
            }
        }
        HookKind::SecretChanged => {
            if let Some(x) = &h.secret {
                unit.pending_secret_changed.remove(x);
            }
        }
        HookKind::Action => {
            unit.pending_actions.retain(|a| Some(*a) != h.action);
        }
        // not the uniter's: the engine records it (finish_hook)
        HookKind::Exec | HookKind::MeterStatusChanged => {}
    }
    false
}

/// Drop relations that are dying and that no unit still has in view.
pub fn collect_relations(state: &mut ModelState) {
    let gone: Vec<u32> = state
        .relations
        .values()
        .filter(|r| {
            r.dying
                && !state
                    .units
                    .values()
                    .any(|u| u.view.relations.contains_key(&r.id))
        })
        .map(|r| r.id)
        .collect();
    for id in gone {
        state.relations.remove(&id);
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
