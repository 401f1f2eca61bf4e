//! The context of one running hook: its id, what it is about, the snapshot of data it has
//! read, and the changes it buffered. `flush` applies those changes to the model when the
//! hook exits 0 (Juju's `HookContext.Flush`); on failure they are simply dropped.

use crate::resolver::HookSpec;
use crate::state::{Consumer, ModelState, Secret};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A buffered secret change.
#[derive(Clone, Debug)]
pub enum SecretOp {
    Add(Secret),
    Set {
        xid: String,
        label: Option<String>,
        description: Option<String>,
        expire: Option<String>,
        rotate: Option<String>,
        content: Option<BTreeMap<String, String>>,
    },
    Grant {
        xid: String,
        relation: u32,
        unit: Option<String>,
    },
    Revoke {
        xid: String,
        relation: Option<u32>,
        target: Option<String>,
    },
    Remove {
        xid: String,
        revision: Option<u64>,
    },
    /// A consumer's label for a secret (secret-get --label on a consumer).
    ConsumerLabel {
        xid: String,
        label: String,
    },
}

/// One hook or action execution.
#[derive(Clone, Debug)]
pub struct HookContext {
    pub id: String,
    pub unit: String,
    pub hook: HookSpec,
    /// Prefix of paths as the unit sees them ("" on namespaced hosts; the machine's
    /// directory in bare mode).
    pub root: String,
    pub ip: String,
    pub cidr: String,
    /// The unit's log file (juju-log, hook output).
    pub log_path: PathBuf,
    /// (relation id, unit or app name) -> data observed by this hook (snapshot reads).
    pub reads: BTreeMap<(u32, String), BTreeMap<String, String>>,
    /// (relation id, unit or app name) -> pending writes ("" deletes the key).
    pub rel_writes: BTreeMap<(u32, String), BTreeMap<String, String>>,
    /// (open?, port) in call order.
    pub ports: Vec<(bool, String)>,
    /// key -> Some(value) set / None deleted.
    pub state_writes: BTreeMap<String, Option<String>>,
    pub secret_ops: Vec<SecretOp>,
    /// The unit status as this hook's first status-get read it: Juju reads it from the
    /// controller once per hook and keeps it (context.go `(*HookContext).UnitStatus`,
    /// `ctx.status`); a status-set later in the hook does not change what status-get prints.
    pub status_read: Option<crate::state::Status>,
    /// Config as first read by this hook (reads are snapshot-consistent within a hook).
    pub config: Option<BTreeMap<String, serde_json::Value>>,
}

impl HookContext {
    /// The effective (buffered) content of a databag after this hook's own writes.
    pub fn overlay(
        &self,
        rel: u32,
        owner: &str,
        mut base: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        if let Some(w) = self.rel_writes.get(&(rel, owner.to_string())) {
            for (k, v) in w {
                if v.is_empty() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        base
    }

    /// Why the controller refuses this hook's changes, if it does: a secret created with a
    /// label another secret of the same owner already has. context.go (*HookContext).Flush
    /// sends the changes in one CommitHookChanges; state's secrets (LabelExists, reported by
    /// the secretsmanager facade as AlreadyExistsf "secret with label %q") refuse the lot and
    /// the hook fails with nothing applied. The tool call itself succeeded.
    pub fn commit_error(&self, state: &ModelState) -> Option<String> {
        self.secret_ops.iter().find_map(|op| match op {
            SecretOp::Add(new) => {
                let label = new.label.as_deref()?;
                state
                    .secrets
                    .values()
                    .any(|s| s.owner == new.owner && s.label.as_deref() == Some(label))
                    .then(|| {
                        format!(
                            "cannot apply changes: creating secrets: secret with label {label:?} already exists"
                        )
                    })
            }
            _ => None,
        })
    }

    /// Apply the buffered changes to the model (the hook exited 0).
    pub fn flush(&self, state: &mut ModelState) {
        let app = crate::state::app_of(&self.unit).to_string();
        for ((rel_id, owner), writes) in &self.rel_writes {
            let Some(rel) = state.relations.get_mut(rel_id) else {
                continue;
            };
            let is_app = !owner.contains('/');
            let bag = if is_app {
                rel.app_bags.entry(owner.clone()).or_default()
            } else {
                rel.unit_bags.entry(owner.clone()).or_default()
            };
            let before = bag.data.clone();
            for (k, v) in writes {
                if v.is_empty() {
                    bag.data.remove(k);
                } else {
                    bag.data.insert(k.clone(), v.clone());
                }
            }
            if bag.data != before {
                bag.version += 1;
                let v = bag.version;
                // a unit never gets relation-changed for its own writes (peer app data)
                if is_app && rel.is_peer() {
                    if let Some(rv) = state
                        .units
                        .get_mut(&self.unit)
                        .and_then(|u| u.view.relations.get_mut(rel_id))
                    {
                        rv.app_seen = v;
                    }
                }
            }
        }
        if let Some(u) = state.units.get_mut(&self.unit) {
            for (open, p) in &self.ports {
                if *open {
                    u.ports.insert(p.clone());
                } else {
                    u.ports.remove(p);
                }
            }
            for (k, v) in &self.state_writes {
                match v {
                    Some(v) => u.charm_state.insert(k.clone(), v.clone()),
                    None => u.charm_state.remove(k),
                };
            }
        }
        for op in &self.secret_ops {
            apply_secret_op(state, op, &self.unit, &app);
        }
    }
}

fn notify_consumers(state: &mut ModelState, xid: &str) {
    let Some(s) = state.secrets.get(xid) else {
        return;
    };
    let latest = s.latest();
    let due: Vec<String> = s
        .consumers
        .iter()
        .filter(|(_, c)| c.tracked < latest)
        .map(|(u, _)| u.clone())
        .collect();
    for u in due {
        if let Some(unit) = state.units.get_mut(&u) {
            unit.pending_secret_changed.insert(xid.to_string());
        }
    }
}

fn apply_secret_op(state: &mut ModelState, op: &SecretOp, unit: &str, _app: &str) {
    match op {
        SecretOp::Add(s) => {
            state.secrets.insert(s.xid.clone(), s.clone());
        }
        SecretOp::Set {
            xid,
            label,
            description,
            expire,
            rotate,
            content,
        } => {
            let Some(s) = state.secrets.get_mut(xid) else {
                return;
            };
            if label.is_some() {
                s.label = label.clone();
            }
            if description.is_some() {
                s.description = description.clone();
            }
            if expire.is_some() {
                s.expire = expire.clone();
            }
            if rotate.is_some() {
                s.rotate = rotate.clone();
            }
            if let Some(c) = content {
                if s.revisions.values().next_back() != Some(c) {
                    let n = s.latest() + 1;
                    s.revisions.insert(n, c.clone());
                    notify_consumers(state, xid);
                }
            }
        }
        SecretOp::Grant {
            xid,
            relation,
            unit: target,
        } => {
            if let Some(s) = state.secrets.get_mut(xid) {
                if !s.grants.contains(&(*relation, target.clone())) {
                    s.grants.push((*relation, target.clone()));
                }
            }
        }
        SecretOp::Revoke {
            xid,
            relation,
            target,
        } => {
            if let Some(s) = state.secrets.get_mut(xid) {
                s.grants.retain(|(r, u)| {
                    let rel_match = relation.is_none_or(|x| x == *r);
                    let target_match = match target {
                        None => true,
                        Some(t) => {
                            u.as_deref() == Some(t.as_str()) || (u.is_none() && !t.contains('/'))
                        }
                    };
                    !(rel_match && target_match)
                });
            }
        }
        SecretOp::Remove { xid, revision } => match revision {
            Some(r) => {
                if let Some(s) = state.secrets.get_mut(xid) {
                    s.revisions.remove(r);
                }
            }
            None => {
                state.secrets.remove(xid);
            }
        },
        SecretOp::ConsumerLabel { xid, label } => {
            if let Some(s) = state.secrets.get_mut(xid) {
                s.consumers
                    .entry(unit.to_string())
                    .or_insert_with(Consumer::default)
                    .label = Some(label.clone());
            }
        }
    }
}
