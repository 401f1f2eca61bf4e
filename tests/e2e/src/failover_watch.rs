//! How long, during a drill, a primary ran that nobody could have replaced automatically: the
//! window issue 16 wants at 0 s. Sampled from the test side, independently of the charm's
//! own status, with the rule Patroni 4 applies in a leader race (`patroni/ha.py`,
//! `Ha._is_healthiest_node`): in quorum mode a candidate needs `quorum` other members of the
//! `/sync` key's leader and voters besides itself (a non-voter `quorum + 1`), and only members
//! whose PostgreSQL runs can vote; in classic synchronous mode only a member of `/sync` may
//! take over.
//!
//! Only a window in which a majority of members would survive the primary's loss counts
//! (issue 16's promise): with a database host already down, losing the primary leaves too few
//! members to fail over by design, and the watch says [`Sample::Other`].

use crate::Deployment;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Patroni's `/sync` key for the scope `postgresql-ha` (the charm's namespace).
const SYNC_KEY: &str = "/postgresql-ha/postgresql-ha/sync";
use crate::ha::PATRONI_TLS;
/// How often to look.
const EVERY: Duration = Duration::from_millis(500);

/// One look at the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    /// A running primary, and a member that could replace it.
    Ready,
    /// A running primary nobody could replace; why.
    Exposed(String),
    /// No running primary (a failover under way), no member with etcd quorum answered, or
    /// too few hosts up for a majority to survive the primary's loss.
    Other,
}

/// What the watch saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    /// Total time in [`Sample::Exposed`].
    pub total: Duration,
    /// The longest single stretch of it.
    pub longest: Duration,
    /// The first reason seen, for the report.
    pub why: Option<String>,
}

/// Judges one look: `cluster` is Patroni's `GET /cluster`, `sync` the `/sync` key (`Null`
/// when absent).
pub fn judge(cluster: &Value, sync: &Value) -> Sample {
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let name = |m: &Value| m["name"].as_str().unwrap_or("").to_string();
    let Some(primary) = members
        .iter()
        .find(|m| m["role"] == "leader" && m["state"] == "running")
        .map(name)
    else {
        return Sample::Other;
    };
    let up: Vec<String> = members
        .iter()
        .filter(|m| {
            name(m) != primary && matches!(m["state"].as_str(), Some("streaming" | "running"))
        })
        .map(name)
        .collect();
    if up.is_empty() {
        return Sample::Exposed("no standby running".into());
    }
    let Some(leader) = sync["leader"].as_str().filter(|l| !l.is_empty()) else {
        // No /sync leader: Patroni races every member.
        return Sample::Ready;
    };
    let mut voters: Vec<String> = vec![leader.to_string()];
    voters.extend(
        sync["sync_standby"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let quorum = sync["quorum"].as_u64().unwrap_or(0) as usize;
    let voting = up.iter().filter(|u| voters.contains(u)).count();
    if voting > quorum {
        Sample::Ready
    } else {
        Sample::Exposed(format!(
            "{voting} voting standby(s) of /sync {} up, {} needed",
            voters.join(","),
            quorum + 1
        ))
    }
}

/// Adds up the exposed stretches of timed samples (each lasts until the next).
pub fn windows(samples: &[(Instant, Sample)]) -> Windows {
    let mut w = Windows::default();
    let mut run = Duration::ZERO;
    for pair in samples.windows(2) {
        let ((t0, s), (t1, _)) = (&pair[0], &pair[1]);
        if let Sample::Exposed(why) = s {
            let d = t1.duration_since(*t0);
            w.total += d;
            run += d;
            w.longest = w.longest.max(run);
            w.why.get_or_insert_with(|| why.clone());
        } else {
            run = Duration::ZERO;
        }
    }
    w
}

/// Whether a majority of the `n` members would be left if the primary were lost, with `up`
/// hosts up (the primary's among them).
pub fn majority_would_survive(up: usize, n: usize) -> bool {
    up.saturating_sub(1) > n / 2
}

/// One look from the first of `machines` whose etcd answers with a quorum (a linearizable read
/// fails on a member cut off, whose Patroni would still report itself leader).
fn look(d: &Deployment, machines: &[String]) -> Sample {
    // A stopped host cannot run a command; a cut one still can (and counts as up).
    let up = machines
        .iter()
        .filter(|m| d.lm.exec(m, &["true"]).is_ok_and(|(code, _, _)| code == 0))
        .count();
    if !majority_would_survive(up, machines.len()) {
        return Sample::Other;
    }
    for m in machines {
        let sync = d.exec(
            m,
            &[
                "env",
                "ETCDCTL_API=3",
                "etcdctl",
                "--endpoints=https://127.0.0.1:2379",
                "--cacert=/etc/postgresql-ha/tls/ca.pem",
                "--cert=/etc/postgresql-ha/tls/unit.pem",
                "--key=/etc/postgresql-ha/tls/unit.key",
                "--command-timeout=1s",
                "get",
                "--print-value-only",
                SYNC_KEY,
            ],
        );
        let Ok(sync) = sync else { continue };
        let Ok(cluster) = d.exec(
            m,
            &[
                &["curl", "-sf", "-m", "1"],
                PATRONI_TLS,
                &["https://127.0.0.1:8008/cluster"],
            ]
            .concat(),
        ) else {
            continue;
        };
        let sync: Value = serde_json::from_str(sync.trim()).unwrap_or(Value::Null);
        let Ok(cluster) = serde_json::from_str::<Value>(&cluster) else {
            continue;
        };
        return judge(&cluster, &sync);
    }
    Sample::Other
}

/// Samples until `stop` is set; returns the windows seen.
pub fn watch(d: &Deployment, machines: &[String], stop: &AtomicBool) -> Windows {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let s = look(d, machines);
        samples.push((Instant::now(), s));
        std::thread::sleep(EVERY);
    }
    samples.push((Instant::now(), Sample::Other));
    windows(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(ms: &[(&str, &str, &str)]) -> Value {
        json!({"members": ms.iter().map(|(n, r, s)| json!({"name": n, "role": r, "state": s})).collect::<Vec<_>>()})
    }

    #[test]
    fn a_voter_up_beyond_the_quorum_is_ready() {
        let c = cluster(&[
            ("a", "leader", "running"),
            ("b", "quorum_standby", "streaming"),
            ("c", "replica", "stopped"),
        ]);
        assert_eq!(
            judge(
                &c,
                &json!({"leader": "a", "sync_standby": "b,c", "quorum": 0})
            ),
            Sample::Ready
        );
        assert!(matches!(
            judge(
                &c,
                &json!({"leader": "a", "sync_standby": "b,c", "quorum": 1})
            ),
            Sample::Exposed(_)
        ));
        // The /sync leader is the old primary, which votes once its PostgreSQL runs again.
        let c = cluster(&[
            ("a", "replica", "running"),
            ("b", "leader", "running"),
            ("c", "replica", "stopped"),
        ]);
        assert_eq!(
            judge(
                &c,
                &json!({"leader": "a", "sync_standby": "b,c", "quorum": 0})
            ),
            Sample::Ready
        );
    }

    #[test]
    fn a_primary_alone_in_sync_is_exposed_and_no_primary_is_other() {
        let c = cluster(&[("a", "leader", "running"), ("b", "replica", "streaming")]);
        assert!(matches!(
            judge(
                &c,
                &json!({"leader": "a", "sync_standby": null, "quorum": 0})
            ),
            Sample::Exposed(_)
        ));
        assert_eq!(judge(&c, &Value::Null), Sample::Ready);
        let c = cluster(&[("a", "replica", "stopped"), ("b", "replica", "streaming")]);
        assert_eq!(judge(&c, &Value::Null), Sample::Other);
    }

    #[test]
    fn only_a_loss_a_majority_survives_counts() {
        assert!(majority_would_survive(3, 3));
        assert!(!majority_would_survive(2, 3), "one host already down");
        assert!(!majority_would_survive(2, 2));
        assert!(majority_would_survive(4, 5));
        assert!(!majority_would_survive(3, 5));
    }

    #[test]
    fn windows_add_up_exposed_stretches() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let e = || Sample::Exposed("x".into());
        let s = [
            (at(0), Sample::Ready),
            (at(500), e()),
            (at(1000), e()),
            (at(1500), Sample::Other),
            (at(2000), e()),
            (at(2500), Sample::Ready),
        ];
        let w = windows(&s);
        assert_eq!(w.total, Duration::from_millis(1500));
        assert_eq!(w.longest, Duration::from_millis(1000));
        assert_eq!(w.why.as_deref(), Some("x"));
        assert_eq!(windows(&s[..1]), Windows::default());
    }
}
