//! etcd membership that follows the units: the leader bootstraps, admits one unit at a time
//! as a learner and promotes it once it runs, removes members whose unit left; a leaving unit
//! removes itself while the cluster still has quorum (`teardown.rs`).

use crate::render::{self, Member};
use crate::{etcd, paths};
use charm_lib::databag::{from_databag, to_databag, DatabagError};
use charm_lib::{Cmd, Context, Databag, FileOptions, MachineExt, Relation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The peer endpoint.
pub const PEER: &str = "database-peers";
/// Client endpoints.
pub const CLIENT_ENDPOINTS: [&str; 2] = ["db", "database"];

/// Peer app databag keys (leader-written).
pub mod keys {
    /// JSON map member name → address of the admitted etcd members.
    pub const ETCD_MEMBERS: &str = "etcd-members";
    /// The member that bootstrapped the current etcd cluster.
    pub const ETCD_BOOTSTRAP: &str = "etcd-bootstrap";
    /// The etcd cluster token.
    pub const ETCD_TOKEN: &str = "etcd-token";
    /// Bumped by force-promote: members of an older epoch wipe their etcd data and rejoin.
    pub const ETCD_EPOCH: &str = "etcd-epoch";
    /// Peer unit databag: the unit's address.
    pub const ADDRESS: &str = "address";
    /// Peer unit databag: the epoch in which this unit's etcd member runs.
    pub const ETCD_STARTED: &str = "etcd-started";
    /// Peer unit databag: this unit's Patroni role and state, e.g. `replica streaming`.
    pub const ROLE: &str = "role";
}

/// The application's shared state, from the peer app databag.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Admitted etcd members: name → address.
    pub members: BTreeMap<String, String>,
    /// Current etcd epoch.
    pub epoch: String,
    /// The bootstrapping member.
    pub bootstrap: String,
    /// Cluster token.
    pub token: String,
}

/// The peer app databag's etcd keys as they travel (see [`keys`]); `etcd-members` is JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SharedBag {
    #[serde(rename = "etcd-members", default)]
    members: BTreeMap<String, String>,
    #[serde(rename = "etcd-epoch", default)]
    epoch: Option<String>,
    #[serde(rename = "etcd-bootstrap", default)]
    bootstrap: String,
    #[serde(rename = "etcd-token", default)]
    token: String,
}

impl Shared {
    /// Reads the shared state from the peer app databag. A value that does not parse is an
    /// error naming its key, never an empty member list: that would bootstrap a new etcd
    /// cluster beside the running one.
    pub fn read(app: &Databag) -> Result<Shared, DatabagError> {
        let bag: SharedBag = from_databag(app)?;
        if let Some(e) = bag.epoch.as_ref().filter(|e| e.parse::<u64>().is_err()) {
            return Err(DatabagError(format!(
                "key {:?}: {e:?} is not a whole number",
                keys::ETCD_EPOCH
            )));
        }
        Ok(Shared {
            members: bag.members,
            epoch: bag.epoch.unwrap_or_else(|| "1".into()),
            bootstrap: bag.bootstrap,
            token: bag.token,
        })
    }

    /// The members as a sorted list.
    pub fn member_list(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|(n, a)| Member {
                name: n.clone(),
                address: a.clone(),
            })
            .collect()
    }

    /// Writes the shared state into peer app databag changes.
    pub fn write(&self, changes: &mut Databag) {
        let bag = SharedBag {
            members: self.members.clone(),
            epoch: Some(self.epoch.clone()),
            bootstrap: self.bootstrap.clone(),
            token: self.token.clone(),
        };
        changes.extend(to_databag(&bag).expect("string fields and a string map encode"));
    }
}

/// What the etcd step found.
pub(crate) enum EtcdState {
    /// Not admitted yet; wait.
    NotMember,
    /// Admitted but the local member does not answer yet.
    Starting,
    /// The local member runs.
    Running,
}

/// Stops this unit's PostgreSQL and etcd and forgets its etcd data: it must join afresh.
pub(crate) fn forget_etcd(ctx: &Context) -> anyhow::Result<()> {
    log::warn!("this unit is not a member of the application's etcd cluster but has etcd data from an earlier one: stopping Patroni and etcd and wiping that data to rejoin");
    ctx.machine.retire_service(paths::PATRONI_SERVICE)?;
    ctx.machine.retire_service(paths::ETCD_SERVICE)?;
    ctx.machine.run(&Cmd::new(
        "rm",
        ["-rf", &format!("{}/member", paths::ETCD_DATA)],
    ))?;
    Ok(())
}

/// This unit's etcd member: rendered once before its first start (later membership changes
/// reach etcd through the cluster itself, so the file stays and etcd is not restarted).
pub(crate) fn etcd_member(
    ctx: &Context,
    me: &Member,
    shared: &Shared,
    unit_changes: &mut Databag,
    my_bag: &Databag,
) -> anyhow::Result<EtcdState> {
    let m = ctx.machine;
    let initialised = m
        .file_info(Path::new(&format!("{}/member", paths::ETCD_DATA)))?
        .is_some();
    if !shared.members.contains_key(&me.name) {
        if initialised {
            forget_etcd(ctx)?;
        }
        unit_changes.insert(keys::ETCD_STARTED.into(), String::new());
        return Ok(EtcdState::NotMember);
    }
    let stale_epoch = my_bag
        .get(keys::ETCD_STARTED)
        .is_some_and(|e| !e.is_empty() && *e != shared.epoch);
    if stale_epoch && initialised && shared.bootstrap != me.name {
        forget_etcd(ctx)?;
    }
    let exists = m.file_info(Path::new(paths::ETCD_YML))?.is_some();
    let initialised = m
        .file_info(Path::new(&format!("{}/member", paths::ETCD_DATA)))?
        .is_some();
    let mut changed = false;
    if !exists || !initialised {
        let text = render::etcd_yaml(&render::EtcdInput {
            me,
            initial: &shared.member_list(),
            new_cluster: shared.bootstrap == me.name,
            token: &shared.token,
            force_new_cluster: false,
        });
        changed = m.write_file(
            Path::new(paths::ETCD_YML),
            text.as_bytes(),
            &FileOptions::new("root", "etcd", 0o640),
        )?;
    } else {
        add_metrics_listener(m)?;
    }
    let was_active = m.service_is_active(paths::ETCD_SERVICE)?;
    m.ensure_service(paths::ETCD_SERVICE, changed)?;
    if !was_active || changed {
        etcd::wait_started(m, 30)?;
    }
    if etcd::started(m)? {
        unit_changes.insert(keys::ETCD_STARTED.into(), shared.epoch.clone());
        if m.file_info(Path::new(paths::ETCD_METRICS_PENDING))?
            .is_some()
            && etcd::metrics_listening(m)?
        {
            log::info!(
                "etcd serves its metrics on {} now: the etcd scrape job moves there",
                paths::ETCD_METRICS
            );
            m.remove_file(Path::new(paths::ETCD_METRICS_PENDING))?;
        }
        Ok(EtcdState::Running)
    } else {
        Ok(EtcdState::Starting)
    }
}

/// A member rendered by an earlier revision has no metrics listener: the key joins its file
/// (nothing else in it changes) for etcd's next start. etcd is not restarted for it: a
/// refresh runs this on every unit at once, and members restarting together can lose
/// quorum. Until the listener answers, [`paths::ETCD_METRICS_PENDING`] keeps the etcd scrape
/// job on the client port.
fn add_metrics_listener(m: &dyn charm_lib::Machine) -> anyhow::Result<()> {
    let Some(text) = m.read_to_string(Path::new(paths::ETCD_YML))? else {
        return Ok(());
    };
    if text.lines().any(|l| l.starts_with("listen-metrics-urls:")) {
        return Ok(());
    }
    log::info!(
        "adding etcd's metrics listener ({}) to its configuration: served from etcd's next start",
        paths::ETCD_METRICS
    );
    m.write_file(
        Path::new(paths::ETCD_METRICS_PENDING),
        b"etcd started without its metrics listener\n",
        &FileOptions::root(0o644),
    )?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("listen-metrics-urls: {}\n", paths::ETCD_METRICS));
    m.write_file(
        Path::new(paths::ETCD_YML),
        text.as_bytes(),
        &FileOptions::new("root", "etcd", 0o640),
    )?;
    Ok(())
}

/// The leader's part of etcd membership: promote learners that started, admit one new unit
/// as a learner, remove members whose unit is gone. One change per hook keeps quorum safe.
pub(crate) fn manage_members(
    ctx: &Context,
    peers: &Relation,
    shared: &mut Shared,
) -> anyhow::Result<bool> {
    let m = ctx.machine;
    let mut list = match etcd::members(m) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("cannot list etcd members yet: {e:#}");
            return Ok(false);
        }
    };
    let mut changed = false;
    let mut units: BTreeMap<String, Databag> = BTreeMap::new();
    for u in peers.units() {
        units.insert(paths::member_name(u), peers.unit_data(u)?);
    }
    let me = paths::member_name(ctx.model.unit_name());
    // Members whose unit left the application. The leaving unit usually removed itself
    // already; a failure here is looked at again in the next hook.
    for mem in &list {
        let name = if mem.name.is_empty() {
            shared
                .members
                .iter()
                .find(|(_, a)| mem.peer_urls.contains(&etcd::peer_url(a)))
                .map(|(n, _)| n.clone())
                .unwrap_or_default()
        } else {
            mem.name.clone()
        };
        if name != me && !units.contains_key(&name) {
            log::info!(
                "removing etcd member {name} ({}): its unit left",
                mem.hex_id()
            );
            if let Err(e) = etcd::remove(m, mem) {
                log::warn!("could not remove etcd member {name} yet: {e:#}");
                continue;
            }
            shared.members.remove(&name);
            changed = true;
        }
    }
    let mut promoted = false;
    for mem in list.iter().filter(|x| x.is_learner && !x.name.is_empty()) {
        let started = units
            .get(&mem.name)
            .and_then(|b| b.get(keys::ETCD_STARTED))
            .is_some_and(|e| *e == shared.epoch);
        if started {
            match etcd::promote(m, mem) {
                Ok(()) => promoted = true,
                Err(e) => log::info!(
                    "etcd learner {} is not ready to be promoted yet: {e:#}",
                    mem.name
                ),
            }
        }
    }
    if promoted {
        // The next unit may be admitted in the same hook: no other event may come soon.
        list = etcd::members(m)?;
    }
    let settling = list.iter().any(|x| x.is_learner || x.name.is_empty());
    if !settling {
        for (name, bag) in &units {
            let Some(addr) = bag.get(keys::ADDRESS).filter(|a| !a.is_empty()) else {
                continue;
            };
            if shared.members.contains_key(name) {
                continue;
            }
            // The add may have happened in a hook that then failed: the member list is the truth.
            if !list
                .iter()
                .any(|x| x.peer_urls.contains(&etcd::peer_url(addr)))
            {
                log::info!("adding {name} ({addr}) to etcd as a learner");
                etcd::add_learner(m, name, addr)?;
            }
            shared.members.insert(name.clone(), addr.clone());
            changed = true;
            break;
        }
    }
    Ok(changed)
}

/// Whether this unit already left the application.
pub(crate) fn departed(ctx: &Context) -> anyhow::Result<bool> {
    Ok(ctx
        .machine
        .read_to_string(Path::new(paths::DEPARTED))?
        .is_some_and(|u| u.trim() == ctx.model.unit_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shared_state_round_trips_in_todays_wire_format() {
        let b = bag(&[
            (
                keys::ETCD_MEMBERS,
                r#"{"pg-0":"10.0.0.10","pg-1":"10.0.0.11"}"#,
            ),
            (keys::ETCD_EPOCH, "2"),
            (keys::ETCD_BOOTSTRAP, "pg-0"),
            (keys::ETCD_TOKEN, "pg-abcdefgh"),
        ]);
        let s = Shared::read(&b).unwrap();
        assert_eq!(s.members.len(), 2);
        assert_eq!(s.epoch, "2");
        let mut out = Databag::new();
        s.write(&mut out);
        assert_eq!(out, b);
    }

    #[test]
    fn nothing_yet_is_an_empty_cluster_of_epoch_1() {
        let s = Shared::read(&Databag::new()).unwrap();
        assert!(s.members.is_empty());
        assert_eq!(s.epoch, "1");
    }

    #[test]
    fn garbled_values_name_their_key() {
        for (k, v) in [
            (keys::ETCD_MEMBERS, "{\"pg-0\":"),
            (keys::ETCD_MEMBERS, "[\"pg-0\"]"),
            (keys::ETCD_EPOCH, "two"),
        ] {
            let e = Shared::read(&bag(&[(k, v)])).unwrap_err();
            assert!(e.0.contains(&format!("key {k:?}")), "{k}={v}: {e}");
        }
    }
}
