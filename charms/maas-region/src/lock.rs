//! The init lock: `maas init` against one database must not run on two units at once (MAAS
//! bug #315 in the modern charm). The leader alone writes the holder into the peer application
//! databag (`init-lock`), so there is exactly one holder or none. A unit asks by setting
//! `init-request` to a fresh token in its own peer databag and releases by clearing it when done
//! (or failed). The lock names the unit *and* the token it granted, so a grant left over from an
//! earlier request is never mistaken for a grant of a new one.
//!
//! A refresh under the lock drains first: the holder publishes the lock value it holds in its
//! own peer databag (`refresh-drain`); every other region leaves it out of its haproxy and
//! lists that value in its own `refresh-drained`; the holder stops MAAS only once every region
//! still in the relation lists it (or [`DRAIN_ACK_WAIT`] has passed: a region whose agent is
//! gone serves no one through its haproxy), and clears its flag once its new MAAS answers.
//! The value names the request, so an acknowledgement of an earlier refresh never counts for
//! a later one.
//!
//! The values travel as [`crate::peers`] types. One that does not parse is never read as
//! "free" or "not asking": a unit whose own databag or the application's does not parse stops
//! and is Blocked naming the key, and while a peer's does not parse the leader leaves the lock
//! where it is (`reconcile::regrant`).

use crate::config::Pause;
use crate::peers::{Drained, LockValue, Resumed};
use std::collections::{BTreeMap, BTreeSet};

/// How long a holder waits for every region's acknowledgement before it refreshes all the
/// same: a region whose unit agent is down never answers, and the upgrade must not hang on it
/// (its haproxy then still balances over the holder and retries GETs on another region).
pub const DRAIN_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// After how many refreshed regions the operator resumed the refresh to `wanted`, if they did
/// (`refresh-resumed`, [`crate::peers::keys::RESUMED`]).
pub fn resumed_after(value: Option<&Resumed>, wanted: &str) -> Option<usize> {
    value.filter(|r| r.channel == wanted).map(|r| r.after)
}

/// Whether a region must wait for `resume-refresh` before it asks for its turn, with
/// `refreshed` regions already on the new channel: never before the first; with `first`, until
/// any resume of this channel; with `all`, until a resume given after as many regions.
pub fn paused(pause: Pause, refreshed: usize, resumed: Option<usize>) -> bool {
    if refreshed == 0 {
        return false;
    }
    match pause {
        Pause::None => false,
        Pause::First => resumed.is_none(),
        Pause::All => resumed.is_none_or(|n| n < refreshed),
    }
}

/// The regions that have not acknowledged the drain `value` yet: each peer's
/// `refresh-drained` (unit → values). Only regions still in the relation count: one that
/// departed balances nothing any more.
pub fn unacknowledged(value: &LockValue, acks: &BTreeMap<String, Drained>) -> Vec<String> {
    let mut out: Vec<String> = acks
        .iter()
        .filter(|(_, v)| !v.contains(value))
        .map(|(u, _)| u.clone())
        .collect();
    out.sort_by_key(|u| (number(u), u.clone()));
    out
}

/// The unit number of `app/N`, for a fair order that does not depend on names.
fn number(unit: &str) -> u64 {
    unit.rsplit_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Whether `lock` grants `unit`'s request `token`.
pub fn holds(lock: Option<&LockValue>, unit: &str, token: u64) -> bool {
    lock == Some(&LockValue::new(unit, token))
}

/// The leader's decision, from the open requests (unit → token). The current grant stands
/// while its request is still open and its unit still a member; otherwise the lowest-numbered
/// requester gets it; nobody if none asks.
pub fn grant(
    current: Option<&LockValue>,
    requests: &BTreeMap<String, u64>,
    members: &BTreeSet<String>,
) -> Option<LockValue> {
    grant_any(
        current.map(|c| (c.unit.as_str(), c.token)),
        requests,
        members,
    )
    .map(|(unit, token)| LockValue { unit, token })
}

/// [`grant`] for the racks' refresh lock on `rpc` (`<unit>#<channel>`,
/// `contracts::maas_rpc::keys::RACK_UPGRADE_LOCK`): the requests are the channels the racks
/// wait to refresh to.
pub fn grant_racks(
    current: Option<&str>,
    requests: &BTreeMap<String, String>,
    members: &BTreeSet<String>,
) -> Option<String> {
    let requests: BTreeMap<String, String> = requests
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(u, t)| (u.clone(), t.clone()))
        .collect();
    grant_any(
        current
            .and_then(|c| c.rsplit_once('#'))
            .map(|(u, t)| (u, t.to_string())),
        &requests,
        members,
    )
    .map(|(u, t)| format!("{u}#{t}"))
}

/// The one rule of both locks.
fn grant_any<T: PartialEq + Clone>(
    current: Option<(&str, T)>,
    requests: &BTreeMap<String, T>,
    members: &BTreeSet<String>,
) -> Option<(String, T)> {
    if let Some((unit, token)) = current {
        if members.contains(unit) && requests.get(unit) == Some(&token) {
            return Some((unit.to_string(), token));
        }
    }
    requests
        .iter()
        .filter(|(u, _)| members.contains(*u))
        .min_by_key(|(u, _)| (number(u), (*u).clone()))
        .map(|(u, t)| (u.clone(), t.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(u, t)| (u.to_string(), *t)).collect()
    }

    fn set(units: &[&str]) -> BTreeSet<String> {
        units.iter().map(|s| s.to_string()).collect()
    }

    fn lv(v: &str) -> LockValue {
        v.parse().unwrap()
    }

    fn grant_of(
        current: Option<&str>,
        requests: &[(&str, u64)],
        members: &[&str],
    ) -> Option<String> {
        grant(current.map(lv).as_ref(), &req(requests), &set(members)).map(|l| l.to_string())
    }

    #[test]
    fn pause_after_unit_refresh_waits_where_asked() {
        let resumed = |v: &str| v.parse::<Resumed>().unwrap();
        let r = |v: &str| resumed_after(Some(&resumed(v)), "3.7/stable");
        assert_eq!(r("3.7/stable#2"), Some(2));
        assert_eq!(r("3.6/stable#2"), None, "another refresh's resume");
        assert_eq!(resumed_after(None, "3.7/stable"), None);
        for pause in [Pause::None, Pause::First, Pause::All] {
            assert!(!paused(pause, 0, None), "the first region never waits");
        }
        assert!(!paused(Pause::None, 2, None));
        assert!(paused(Pause::First, 1, None));
        assert!(!paused(Pause::First, 1, Some(1)));
        assert!(
            !paused(Pause::First, 2, Some(1)),
            "one resume lets every other go"
        );
        assert!(paused(Pause::All, 1, None));
        assert!(!paused(Pause::All, 1, Some(1)));
        assert!(
            paused(Pause::All, 2, Some(1)),
            "each region needs its own resume"
        );
    }

    #[test]
    fn drain_acknowledgements_name_the_request() {
        let drained = |v: &str| v.parse::<Drained>().unwrap();
        let acks: BTreeMap<String, Drained> = [
            ("r/10", drained("r/0#2")),
            ("r/2", drained("r/0#1, r/3#1")),
            ("r/1", Drained::default()),
        ]
        .into_iter()
        .map(|(u, v)| (u.to_string(), v))
        .collect();
        // An acknowledgement of r/0's earlier request (#1) does not count for #2.
        assert_eq!(unacknowledged(&lv("r/0#2"), &acks), ["r/1", "r/2"]);
        assert_eq!(unacknowledged(&lv("r/0#1"), &acks), ["r/1", "r/10"]);
        assert!(unacknowledged(&lv("r/0#1"), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn holder_keeps_the_lock_until_it_stops_asking() {
        let members = ["r/0", "r/1", "r/2"];
        assert_eq!(
            grant_of(Some("r/2#1"), &[("r/0", 1), ("r/2", 1)], &members).as_deref(),
            Some("r/2#1")
        );
        assert_eq!(
            grant_of(Some("r/2#1"), &[("r/0", 4), ("r/1", 1)], &members).as_deref(),
            Some("r/0#4")
        );
        assert_eq!(grant_of(Some("r/2#1"), &[], &members), None);
    }

    #[test]
    fn a_new_request_of_the_old_holder_is_not_covered_by_its_old_grant() {
        assert!(!holds(Some(&lv("r/1#1")), "r/1", 2));
        assert_eq!(
            grant_of(Some("r/1#1"), &[("r/0", 1), ("r/1", 2)], &["r/0", "r/1"]).as_deref(),
            Some("r/0#1")
        );
        assert!(holds(Some(&lv("r/0#1")), "r/0", 1));
    }

    #[test]
    fn a_departed_holder_loses_the_lock() {
        assert_eq!(
            grant_of(Some("r/1#1"), &[("r/1", 1), ("r/3", 1)], &["r/0", "r/3"]).as_deref(),
            Some("r/3#1")
        );
    }

    #[test]
    fn order_is_by_unit_number() {
        assert_eq!(
            grant_of(None, &[("r/10", 1), ("r/9", 1)], &["r/9", "r/10"]).as_deref(),
            Some("r/9#1")
        );
    }

    #[test]
    fn the_racks_lock_follows_the_same_rule() {
        let req = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(u, t)| (u.to_string(), t.to_string()))
                .collect()
        };
        let members = set(&["rack/0", "rack/1"]);
        let both = req(&[("rack/0", "3.7/stable"), ("rack/1", "3.7/stable")]);
        assert_eq!(
            grant_racks(Some("rack/1#3.7/stable"), &both, &members).as_deref(),
            Some("rack/1#3.7/stable")
        );
        assert_eq!(
            grant_racks(None, &both, &members).as_deref(),
            Some("rack/0#3.7/stable")
        );
        assert_eq!(
            grant_racks(
                None,
                &req(&[("rack/0", ""), ("rack/1", "3.7/stable")]),
                &members
            )
            .as_deref(),
            Some("rack/1#3.7/stable"),
            "an empty request is none"
        );
        assert_eq!(grant_racks(Some("garbage"), &req(&[]), &members), None);
    }

    /// Every combination of open requests and current grants of three units: the lock never
    /// moves away from a request that is still open, and only ever names an open request.
    #[test]
    fn the_lock_never_moves_while_its_holder_still_needs_it() {
        let members = set(&["r/0", "r/1", "r/2"]);
        let all = ["r/0", "r/1", "r/2"];
        for mask in 0u8..8 {
            let requests: BTreeMap<String, u64> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, u)| (u.to_string(), 1))
                .collect();
            for current in [
                None,
                Some("r/0#1"),
                Some("r/1#1"),
                Some("r/2#1"),
                Some("r/2#0"),
            ] {
                let current = current.map(lv);
                let next = grant(current.as_ref(), &requests, &members);
                if let Some(c) = &current {
                    if requests.get(&c.unit) == Some(&c.token) {
                        assert_eq!(
                            next.as_ref(),
                            Some(c),
                            "the lock moved away from an open request"
                        );
                    }
                }
                if let Some(n) = &next {
                    assert_eq!(
                        requests.get(&n.unit),
                        Some(&n.token),
                        "granted to {}, who did not ask",
                        n.unit
                    );
                }
                assert_eq!(next.is_none(), requests.is_empty());
            }
        }
    }
}
