//! The init lock: `maas init` against one database must not run on two units at once (MAAS
//! bug #315 in the modern charm). The leader alone writes the holder into the peer application
//! databag (`init-lock`), so there is exactly one holder or none. A unit asks by setting
//! `init-request` in its own peer databag and releases by clearing it when done (or failed).

use std::collections::BTreeSet;

/// Peer app databag key naming the unit that may initialise now.
pub const LOCK_KEY: &str = "init-lock";
/// Peer unit databag key: set while the unit needs the lock.
pub const REQUEST_KEY: &str = "init-request";

/// The unit number of `app/N`, for a fair first-come order that does not depend on names.
fn number(unit: &str) -> u64 {
    unit.rsplit_once('/').and_then(|(_, n)| n.parse().ok()).unwrap_or(u64::MAX)
}

/// The leader's decision. The current holder keeps the lock while it is still a member and
/// still asks for it; otherwise the lowest-numbered requester gets it; nobody if none asks.
pub fn grant(current: Option<&str>, requesters: &BTreeSet<String>, members: &BTreeSet<String>) -> Option<String> {
    if let Some(h) = current.filter(|h| !h.is_empty()) {
        if requesters.contains(h) && members.contains(h) {
            return Some(h.to_string());
        }
    }
    requesters.iter().filter(|u| members.contains(*u)).min_by_key(|u| (number(u), (*u).clone())).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(units: &[&str]) -> BTreeSet<String> {
        units.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn holder_keeps_the_lock_until_it_stops_asking() {
        let members = set(&["r/0", "r/1", "r/2"]);
        assert_eq!(grant(Some("r/2"), &set(&["r/0", "r/2"]), &members).as_deref(), Some("r/2"));
        assert_eq!(grant(Some("r/2"), &set(&["r/0", "r/1"]), &members).as_deref(), Some("r/0"));
        assert_eq!(grant(Some("r/2"), &set(&[]), &members), None);
    }

    #[test]
    fn a_departed_holder_loses_the_lock() {
        assert_eq!(grant(Some("r/1"), &set(&["r/1", "r/3"]), &set(&["r/0", "r/3"])).as_deref(), Some("r/3"));
    }

    #[test]
    fn order_is_by_unit_number() {
        assert_eq!(grant(None, &set(&["r/10", "r/9"]), &set(&["r/9", "r/10"])).as_deref(), Some("r/9"));
    }

    /// Every interleaving of requests and completions of three units: the lock is one value,
    /// so "two holders" would show as a holder changing while the previous one still asks.
    #[test]
    fn the_lock_never_moves_while_its_holder_still_needs_it() {
        let members = set(&["r/0", "r/1", "r/2"]);
        let all = ["r/0", "r/1", "r/2"];
        for mask in 0u8..8 {
            let requesters: BTreeSet<String> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, u)| u.to_string()).collect();
            for current in [None, Some("r/0"), Some("r/1"), Some("r/2")] {
                let next = grant(current, &requesters, &members);
                if let Some(c) = current {
                    if requesters.contains(c) {
                        assert_eq!(next.as_deref(), Some(c), "the lock moved away from {c} while it still asked");
                    }
                }
                if let Some(n) = &next {
                    assert!(requesters.contains(n), "granted to {n}, who did not ask");
                }
                assert_eq!(next.is_none(), requesters.is_empty());
            }
        }
    }
}
