//! Whether Patroni could fail over automatically if the primary were lost right now, and if not,
//! why: derived from `GET /cluster` and Patroni's `/sync` key the way Patroni 4 decides a
//! leader race (`patroni/ha.py`, `Ha._is_healthiest_node` and `Ha.is_failover_possible`).
//!
//! In quorum mode a member may take the leader key once it sees `quorum` other members of
//! the `/sync` key's leader and voters whose WAL is not ahead of its own; in classic
//! synchronous mode only a member listed in `/sync` may; asynchronously any running replica.

use crate::config::SyncMode;
use crate::patroni::{Cluster, ClusterMember};
use serde::Deserialize;

/// Patroni's `/sync` key (`AbstractDCS.sync_state`): the primary that wrote it, the members
/// that hold every acknowledged commit between them (`sync_standby`, comma-separated), and how
/// many of them a candidate must hear from (`quorum`, quorum mode only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SyncKey {
    /// The primary the key belongs to (may still name the old one right after a failover).
    #[serde(default)]
    pub leader: Option<String>,
    /// The voters, comma-separated.
    #[serde(default)]
    pub sync_standby: Option<String>,
    /// Votes a candidate needs besides its own.
    #[serde(default)]
    pub quorum: Option<u32>,
}

impl SyncKey {
    /// The `/sync` leader and its voters (`SyncState.members`): empty when the key has no leader.
    pub fn members(&self) -> Vec<String> {
        let Some(leader) = self.leader.as_deref().filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        let mut v = vec![leader.to_string()];
        v.extend(
            self.sync_standby
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        v
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A running primary, and a member that could take over without losing a commit.
    Ready,
    /// A running primary that nobody could replace automatically; the reason, for the status.
    Unavailable(String),
    /// No running primary: a failover (or bootstrap) is under way.
    NoPrimary,
}

/// A member whose PostgreSQL runs as a standby: it can vote, or be promoted.
fn standby_up(m: &ClusterMember) -> bool {
    m.role != "leader"
        && m.role != "standby_leader"
        && matches!(m.state.as_str(), "streaming" | "running")
}

/// Whether losing the primary now would fail over automatically.
pub fn readiness(cluster: &Cluster, sync: Option<&SyncKey>, mode: SyncMode) -> Readiness {
    let Some(primary) = cluster.primary() else {
        return Readiness::NoPrimary;
    };
    let up: Vec<&ClusterMember> = cluster
        .members
        .iter()
        .filter(|m| m.name != primary.name && standby_up(m))
        .collect();
    if cluster.members.len() < 2 {
        return Readiness::Unavailable("no standby (a single member)".into());
    }
    if up.is_empty() {
        return Readiness::Unavailable("no standby is running".into());
    }
    let sync_members = sync.map(SyncKey::members).unwrap_or_default();
    match mode {
        SyncMode::Off => Readiness::Ready,
        // Before the first primary writes /sync, Patroni races every member (no sync mode yet).
        _ if sync_members.is_empty() => Readiness::Ready,
        SyncMode::On => {
            if up.iter().any(|m| sync_members.contains(&m.name)) {
                Readiness::Ready
            } else {
                Readiness::Unavailable(
                    "no synchronous standby yet (a standby is catching up with the primary)".into(),
                )
            }
        }
        SyncMode::Quorum => {
            let quorum = sync.and_then(|s| s.quorum).unwrap_or(0) as usize;
            let voters = up.iter().filter(|m| sync_members.contains(&m.name)).count();
            // A voter needs `quorum` other voters; a non-voter needs `quorum + 1` voters.
            if voters > quorum {
                Readiness::Ready
            } else if voters == 0 {
                Readiness::Unavailable(
                    "no standby has confirmed the primary's commits yet (a standby is catching up)"
                        .into(),
                )
            } else {
                Readiness::Unavailable(format!(
                    "{voters} confirming standby(s) running, a failover needs {}",
                    quorum + 1
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str) -> ClusterMember {
        serde_json::from_value(serde_json::json!({"name": name, "role": role, "state": state}))
            .unwrap()
    }

    fn cluster(ms: &[(&str, &str, &str)]) -> Cluster {
        Cluster {
            members: ms.iter().map(|(n, r, s)| member(n, r, s)).collect(),
        }
    }

    fn key(leader: &str, voters: &str, quorum: u32) -> SyncKey {
        SyncKey {
            leader: Some(leader.into()),
            sync_standby: (!voters.is_empty()).then(|| voters.into()),
            quorum: Some(quorum),
        }
    }

    #[test]
    fn the_sync_key_parses_as_patroni_writes_it() {
        let k: SyncKey =
            serde_json::from_str(r#"{"leader":"pg-0","quorum":0,"sync_standby":"pg-1,pg-2"}"#)
                .unwrap();
        assert_eq!(k.members(), ["pg-0", "pg-1", "pg-2"]);
        let k: SyncKey =
            serde_json::from_str(r#"{"leader":"pg-0","quorum":0,"sync_standby":null}"#).unwrap();
        assert_eq!(k.members(), ["pg-0"]);
        assert!(SyncKey::default().members().is_empty());
    }

    #[test]
    fn quorum_steady_state_with_two_voters_is_ready() {
        // Arrange: ANY 2 (pg-1, pg-2), quorum 0 (3 units, synchronous-node-count 2).
        let c = cluster(&[
            ("pg-0", "leader", "running"),
            ("pg-1", "quorum_standby", "streaming"),
            ("pg-2", "quorum_standby", "streaming"),
        ]);
        // Act + Assert
        assert_eq!(
            readiness(&c, Some(&key("pg-0", "pg-1,pg-2", 0)), SyncMode::Quorum),
            Readiness::Ready
        );
    }

    #[test]
    fn quorum_right_after_a_failover_keeps_the_old_voters() {
        // Arrange: pg-1 was promoted; /sync still names pg-0 (rejoining, down) with voters
        // pg-1 and pg-2 and quorum 0 until the new primary's resolver runs.
        let c = cluster(&[
            ("pg-0", "replica", "stopped"),
            ("pg-1", "leader", "running"),
            ("pg-2", "quorum_standby", "running"),
        ]);
        assert_eq!(
            readiness(&c, Some(&key("pg-0", "pg-1,pg-2", 0)), SyncMode::Quorum),
            Readiness::Ready
        );
    }

    #[test]
    fn quorum_with_too_few_voters_up_says_how_many_it_needs() {
        // Arrange: ANY 1 of 2 (quorum 1): a candidate needs both voters.
        let c = cluster(&[
            ("pg-0", "leader", "running"),
            ("pg-1", "quorum_standby", "streaming"),
            ("pg-2", "quorum_standby", "stopped"),
        ]);
        let r = readiness(&c, Some(&key("pg-0", "pg-1,pg-2", 1)), SyncMode::Quorum);
        assert_eq!(
            r,
            Readiness::Unavailable("1 confirming standby(s) running, a failover needs 2".into())
        );
    }

    #[test]
    fn quorum_with_no_voter_yet_is_unavailable() {
        // Arrange: the resolver reset /sync to the new primary alone; pg-2 streams but has not
        // confirmed the primary's position yet.
        let c = cluster(&[
            ("pg-0", "replica", "starting"),
            ("pg-1", "leader", "running"),
            ("pg-2", "replica", "streaming"),
        ]);
        let r = readiness(&c, Some(&key("pg-1", "", 0)), SyncMode::Quorum);
        assert!(
            matches!(&r, Readiness::Unavailable(m) if m.contains("no standby has confirmed")),
            "{r:?}"
        );
    }

    #[test]
    fn classic_sync_mode_needs_a_listed_running_standby() {
        let c = cluster(&[
            ("pg-0", "leader", "running"),
            ("pg-1", "replica", "streaming"),
            ("pg-2", "sync_standby", "streaming"),
        ]);
        assert_eq!(
            readiness(&c, Some(&key("pg-0", "pg-2", 0)), SyncMode::On),
            Readiness::Ready
        );
        let r = readiness(&c, Some(&key("pg-0", "", 0)), SyncMode::On);
        assert!(
            matches!(&r, Readiness::Unavailable(m) if m.contains("no synchronous standby")),
            "{r:?}"
        );
    }

    #[test]
    fn no_primary_no_standby_and_async() {
        let c = cluster(&[
            ("pg-0", "replica", "running"),
            ("pg-1", "replica", "streaming"),
        ]);
        assert_eq!(readiness(&c, None, SyncMode::Quorum), Readiness::NoPrimary);
        let c = cluster(&[("pg-0", "leader", "running")]);
        assert!(matches!(
            readiness(&c, None, SyncMode::Quorum),
            Readiness::Unavailable(_)
        ));
        let c = cluster(&[
            ("pg-0", "leader", "running"),
            ("pg-1", "replica", "stopped"),
        ]);
        assert_eq!(
            readiness(&c, None, SyncMode::Off),
            Readiness::Unavailable("no standby is running".into())
        );
        let c = cluster(&[
            ("pg-0", "leader", "running"),
            ("pg-1", "replica", "streaming"),
        ]);
        assert_eq!(readiness(&c, None, SyncMode::Off), Readiness::Ready);
    }
}
