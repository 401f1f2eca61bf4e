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

use crate::config::Pause;
use std::collections::{BTreeMap, BTreeSet};

/// Peer app databag key: `<unit>#<token>` of the request that may initialise now.
pub const LOCK_KEY: &str = "init-lock";
/// Peer unit databag key: the token of the unit's open request (absent: no request).
pub const REQUEST_KEY: &str = "init-request";

/// Peer unit databag key: the lock value (`<unit>#<token>`) of the refresh this unit is about
/// to run; absent when it is not draining for one.
pub const DRAIN_KEY: &str = "refresh-drain";
/// Peer unit databag key: the drain values (comma-separated, sorted) this unit's haproxy has
/// applied: the regions it no longer sends requests to.
pub const DRAINED_KEY: &str = "refresh-drained";
/// How long a holder waits for every region's acknowledgement before it refreshes all the
/// same: a region whose unit agent is down never answers, and the upgrade must not hang on it
/// (its haproxy then still balances over the holder and retries GETs on another region).
pub const DRAIN_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Peer unit databag key: the snap channel this region's MAAS runs (snap installs), how the
/// others count the regions already refreshed for `pause-after-unit-refresh`.
pub const CHANNEL_KEY: &str = "maas-channel";
/// Peer app databag key (the leader's `resume-refresh`): `<channel>#<n>`, the operator let the
/// refresh to `channel` go on after `n` regions had refreshed.
pub const RESUMED_KEY: &str = "refresh-resumed";

/// The `refresh-resumed` value for `channel` after `n` regions.
pub fn resumed_value(channel: &str, n: usize) -> String {
    format!("{channel}#{n}")
}

/// After how many refreshed regions the operator resumed the refresh to `wanted`, if they did.
pub fn resumed_after(value: Option<&str>, wanted: &str) -> Option<usize> {
    let (channel, n) = value?.rsplit_once('#')?;
    (channel == wanted).then(|| n.parse().ok()).flatten()
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

/// The drain values of a `refresh-drained` value.
pub fn parse_drained(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `refresh-drained` value for these drain values (sorted, so the databag changes only
/// when the set does).
pub fn format_drained(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

/// The regions that have not acknowledged the drain `value` yet: each peer's
/// `refresh-drained` (unit → values). Only regions still in the relation count: one that
/// departed balances nothing any more.
pub fn unacknowledged(value: &str, acks: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = acks
        .iter()
        .filter(|(_, v)| !v.iter().any(|x| x == value))
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

/// The lock value granting `unit`'s request `token`.
pub fn lock_value(unit: &str, token: &str) -> String {
    format!("{unit}#{token}")
}

/// Whether `lock` grants `unit`'s request `token`.
pub fn holds(lock: Option<&str>, unit: &str, token: &str) -> bool {
    lock == Some(lock_value(unit, token).as_str())
}

/// The leader's decision, from the open requests (unit → token). The current grant stands
/// while its request is still open and its unit still a member; otherwise the lowest-numbered
/// requester gets it; nobody if none asks.
pub fn grant(
    current: Option<&str>,
    requests: &BTreeMap<String, String>,
    members: &BTreeSet<String>,
) -> Option<String> {
    if let Some((unit, token)) = current.and_then(|c| c.rsplit_once('#')) {
        if members.contains(unit) && requests.get(unit).map(String::as_str) == Some(token) {
            return current.map(str::to_string);
        }
    }
    requests
        .iter()
        .filter(|(u, t)| members.contains(*u) && !t.is_empty())
        .min_by_key(|(u, _)| (number(u), (*u).clone()))
        .map(|(u, t)| lock_value(u, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(u, t)| (u.to_string(), t.to_string()))
            .collect()
    }

    fn set(units: &[&str]) -> BTreeSet<String> {
        units.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pause_after_unit_refresh_waits_where_asked() {
        let r = |v: &str| resumed_after(Some(v), "3.7/stable");
        assert_eq!(r(&resumed_value("3.7/stable", 2)), Some(2));
        assert_eq!(
            r(&resumed_value("3.6/stable", 2)),
            None,
            "another refresh's resume"
        );
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
        let acks: BTreeMap<String, Vec<String>> = [
            ("r/10", vec!["r/0#2".to_string()]),
            ("r/2", parse_drained(Some("r/0#1, r/3#1"))),
            ("r/1", parse_drained(None)),
        ]
        .into_iter()
        .map(|(u, v)| (u.to_string(), v))
        .collect();
        // An acknowledgement of r/0's earlier request (#1) does not count for #2.
        assert_eq!(unacknowledged("r/0#2", &acks), ["r/1", "r/2"]);
        assert_eq!(unacknowledged("r/0#1", &acks), ["r/1", "r/10"]);
        assert!(unacknowledged("r/0#1", &BTreeMap::new()).is_empty());
        let set: BTreeSet<String> = ["r/3#1", "r/0#1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(format_drained(&set), "r/0#1,r/3#1");
        assert_eq!(parse_drained(Some(&format_drained(&set))).len(), 2);
        assert_eq!(format_drained(&BTreeSet::new()), "");
    }

    #[test]
    fn holder_keeps_the_lock_until_it_stops_asking() {
        let members = set(&["r/0", "r/1", "r/2"]);
        assert_eq!(
            grant(Some("r/2#1"), &req(&[("r/0", "1"), ("r/2", "1")]), &members).as_deref(),
            Some("r/2#1")
        );
        assert_eq!(
            grant(Some("r/2#1"), &req(&[("r/0", "4"), ("r/1", "1")]), &members).as_deref(),
            Some("r/0#4")
        );
        assert_eq!(grant(Some("r/2#1"), &req(&[]), &members), None);
    }

    #[test]
    fn a_new_request_of_the_old_holder_is_not_covered_by_its_old_grant() {
        let members = set(&["r/0", "r/1"]);
        assert!(!holds(Some("r/1#1"), "r/1", "2"));
        assert_eq!(
            grant(Some("r/1#1"), &req(&[("r/0", "1"), ("r/1", "2")]), &members).as_deref(),
            Some("r/0#1")
        );
        assert!(holds(Some("r/0#1"), "r/0", "1"));
    }

    #[test]
    fn a_departed_holder_loses_the_lock() {
        assert_eq!(
            grant(
                Some("r/1#1"),
                &req(&[("r/1", "1"), ("r/3", "1")]),
                &set(&["r/0", "r/3"])
            )
            .as_deref(),
            Some("r/3#1")
        );
    }

    #[test]
    fn order_is_by_unit_number() {
        assert_eq!(
            grant(
                None,
                &req(&[("r/10", "1"), ("r/9", "1")]),
                &set(&["r/9", "r/10"])
            )
            .as_deref(),
            Some("r/9#1")
        );
    }

    /// Every combination of open requests and current grants of three units: the lock never
    /// moves away from a request that is still open, and only ever names an open request.
    #[test]
    fn the_lock_never_moves_while_its_holder_still_needs_it() {
        let members = set(&["r/0", "r/1", "r/2"]);
        let all = ["r/0", "r/1", "r/2"];
        for mask in 0u8..8 {
            let requests: BTreeMap<String, String> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, u)| (u.to_string(), "1".to_string()))
                .collect();
            for current in [
                None,
                Some("r/0#1"),
                Some("r/1#1"),
                Some("r/2#1"),
                Some("r/2#0"),
            ] {
                let next = grant(current, &requests, &members);
                if let Some((u, t)) = current.and_then(|c| c.rsplit_once('#')) {
                    if requests.get(u).map(String::as_str) == Some(t) {
                        assert_eq!(
                            next.as_deref(),
                            current,
                            "the lock moved away from an open request"
                        );
                    }
                }
                if let Some((u, t)) = next.as_deref().and_then(|n| n.rsplit_once('#')) {
                    assert_eq!(
                        requests.get(u).map(String::as_str),
                        Some(t),
                        "granted to {u}, who did not ask"
                    );
                }
                assert_eq!(next.is_none(), requests.is_empty());
            }
        }
    }
}
