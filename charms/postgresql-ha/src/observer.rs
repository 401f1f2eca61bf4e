//! The topology observer: a small root service (the charm's own binary, `dispatch observe`)
//! with two jobs, both about a change of the Patroni primary happening between hooks.
//!
//! - It asks Juju for an `update-status` hook as soon as the primary changes, so the client
//!   relation data follows a failover within seconds instead of at the next periodic
//!   update-status. Patroni's `on_role_change` callback runs as postgres and cannot reach the
//!   unit agent's root-only run socket, so it only drops a marker that this service picks up;
//!   the service also polls `GET /cluster`, because units whose own role did not change must
//!   republish the new primary's address too. This needs juju-exec.
//! - On the primary, it hands etcd's raft leadership to another member. Losing the primary's
//!   host would otherwise also lose etcd's leader, and a new etcd leader extends every lease by
//!   its TTL: Patroni's leader key would outlive the primary by the election plus a second
//!   lease, about 3 s more downtime measured in the network-cut drill.

use crate::patroni::Cluster;
use crate::{etcd, paths};
use charm_lib::{juju_exec, Machine};
use std::path::Path;
use std::time::Duration;

/// What a hook must follow: the primary, and which standbys could replace it (the statuses say
/// whether a failover is possible). `None` while there is no primary.
pub fn signature(cluster: &Cluster) -> Option<String> {
    let primary = cluster.primary()?;
    let mut syncs: Vec<&str> = cluster
        .members
        .iter()
        .filter(|m| m.is_sync() && matches!(m.state.as_str(), "streaming" | "running"))
        .map(|m| m.name.as_str())
        .collect();
    syncs.sort_unstable();
    Some(format!("{} {}", primary.name, syncs.join(",")))
}

/// Whether to ask for a hook: the callback said so, or the primary or its confirming standbys
/// changed since the last look (a missing primary during a failover is not a change yet). The
/// first primary seen counts too: the hook that started this service may have reported a state
/// that changed before the service looked (seen: the application left `waiting` for a
/// confirming standby that had been there for minutes).
pub fn should_dispatch(last: Option<&str>, now: Option<&str>, marked: bool) -> bool {
    marked || matches!((last, now), (a, Some(b)) if a != Some(b))
}

/// The cluster as the local Patroni sees it, if it answers (its REST API wants TLS and this
/// unit's client certificate, as every caller's).
fn current_cluster(m: &dyn Machine) -> Option<Cluster> {
    crate::patroni::cluster(m).ok().flatten()
}

/// On the primary `me`: if the local etcd member leads, hands leadership to the synchronous
/// standby's member (the next primary) or another voter. Returns the heir it moved it to.
pub fn keep_etcd_leadership_off(
    m: &dyn Machine,
    me: &str,
    cluster: &Cluster,
) -> anyhow::Result<Option<String>> {
    if cluster.primary().map(|p| p.name.as_str()) != Some(me) || !etcd::leads(m)? {
        return Ok(None);
    }
    let members = etcd::members(m)?;
    let sync = cluster
        .members
        .iter()
        .find(|x| x.is_sync())
        .map(|x| x.name.as_str());
    let Some(heir) = etcd::leadership_heir(&members, me, sync) else {
        return Ok(None);
    };
    etcd::move_leader(m, heir)?;
    Ok(Some(heir.name.clone()))
}

/// Whether Patroni's callback dropped the marker; it is consumed. Its directory belongs to
/// postgres (the Patroni service's runtime directory), so this root service accepts only what
/// the callback makes there: a regular file, seen with lstat (a link is never followed) and
/// never opened or read. Anything else at that name (a link, a fifo, a directory) is not a
/// marker: the answer is an error saying so, after removing it when it is not a directory
/// (unlink removes a link itself, never its target).
pub fn take_marker(path: &Path) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(format!(
                "{}: {e}; not taken as a role change",
                path.display()
            ))
        }
    };
    let t = meta.file_type();
    if t.is_file() {
        let _ = std::fs::remove_file(path);
        return Ok(true);
    }
    let what = if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    if !t.is_dir() {
        let _ = std::fs::remove_file(path);
    }
    Err(format!(
        "{} is {what}, not the marker Patroni's callback makes: ignored",
        path.display()
    ))
}

/// Runs forever: `args` are the unit name and the charm directory.
pub fn run(args: &[String]) -> ! {
    let (Some(unit), Some(charm_dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: dispatch observe <unit> <charm-dir>");
        std::process::exit(2);
    };
    let exec = juju_exec::installed();
    if exec.is_none() {
        eprintln!("neither juju-exec nor juju-run is installed: the charm's update-status hook refreshes relation data after a failover");
    }
    let me = paths::member_name(unit);
    let machine = charm_lib::machine::System;
    let marker = Path::new(paths::ROLE_MARKER);
    let mut last: Option<String> = None;
    let mut last_odd: Option<String> = None;
    let mut hook = BackgroundHook::default();
    let mut pace = Pace::default();
    loop {
        std::thread::sleep(TICK);
        let marked = match take_marker(marker) {
            Ok(m) => m,
            Err(odd) => {
                if last_odd.as_ref() != Some(&odd) {
                    eprintln!("{odd}");
                }
                last_odd = Some(odd);
                false
            }
        };
        if !pace.look_now(marked) {
            if let Some(exec) = exec {
                hook.poll(|| juju_exec::update_status_argv(exec, unit, charm_dir));
            }
            continue;
        }
        let cluster = current_cluster(&machine);
        let now = cluster.as_ref().and_then(signature);
        if let Some(c) = &cluster {
            match keep_etcd_leadership_off(&machine, &me, c) {
                Ok(Some(heir)) => eprintln!("moved etcd leadership to {heir}, off the primary"),
                Ok(None) => {}
                Err(e) => eprintln!("could not move etcd leadership off the primary: {e:#}"),
            }
        }
        if exec.is_some() && should_dispatch(last.as_deref(), now.as_deref(), marked) {
            hook.want();
        }
        if let Some(exec) = exec {
            hook.poll(|| juju_exec::update_status_argv(exec, unit, charm_dir));
        }
        if now.is_some() {
            last = now;
        }
    }
}

/// The loop's tick: Patroni's callback marker is looked for this often.
const TICK: Duration = Duration::from_millis(250);
/// Patroni's view is asked every this many ticks (once a second) ...
const LOOK_EVERY: u32 = 4;
/// ... and at every tick for this many ticks after a role change (5 s): Patroni calls back as
/// it promotes, and the new primary must hand etcd leadership on before anything else can
/// happen to its host (see [`BackgroundHook`]).
const FAST_TICKS: u32 = 20;

/// When the loop asks Patroni: every [`LOOK_EVERY`] ticks, and every tick for a while after a
/// role change.
#[derive(Default)]
struct Pace {
    tick: u32,
    fast_left: u32,
}

impl Pace {
    fn look_now(&mut self, marked: bool) -> bool {
        self.tick = self.tick.wrapping_add(1);
        if marked {
            self.fast_left = FAST_TICKS;
        }
        let fast = self.fast_left > 0;
        self.fast_left = self.fast_left.saturating_sub(1);
        fast || self.tick.is_multiple_of(LOOK_EVERY)
    }
}

/// The update-status hook the observer asks for, run in the background: `juju-exec` returns
/// only when the hook has run, which takes seconds (the machine's hook lock, the hook itself)
/// right when a failover happened, and the loop must go on meanwhile, above all to move etcd
/// leadership off a new primary at once (a new etcd leader extends every lease by a whole TTL,
/// so an etcd leader lost with the primary delays the next failover by that much). One run at
/// a time; a change seen while one runs asks for one more after it.
#[derive(Default)]
struct BackgroundHook {
    running: Option<(Vec<String>, std::process::Child)>,
    wanted: bool,
}

impl BackgroundHook {
    fn want(&mut self) {
        self.wanted = true;
    }

    /// Reaps a finished run (reporting a failure) and starts the next one if wanted.
    fn poll(&mut self, argv: impl FnOnce() -> Vec<String>) {
        if let Some((argv, child)) = &mut self.running {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(st)) if st.success() => {}
                Ok(Some(st)) => {
                    let mut err = String::new();
                    if let Some(e) = child.stderr.as_mut() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    eprintln!("{} failed ({st}): {}", argv.join(" "), err.trim());
                }
                Err(e) => eprintln!("{}: {e}", argv.join(" ")),
            }
            self.running = None;
        }
        if !std::mem::take(&mut self.wanted) {
            return;
        }
        let argv = argv();
        match std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => self.running = Some((argv, child)),
            Err(e) => eprintln!("{} could not start: {e}", argv[0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_is_asked_every_second_and_every_tick_after_a_role_change() {
        let mut pace = Pace::default();
        let looks: Vec<bool> = (0..8).map(|_| pace.look_now(false)).collect();
        assert_eq!(
            looks,
            [false, false, false, true, false, false, false, true]
        );
        assert!(pace.look_now(true), "at once on the callback's marker");
        let fast = (0..FAST_TICKS - 1).filter(|_| pace.look_now(false)).count();
        assert_eq!(fast as u32, FAST_TICKS - 1, "then every tick for a while");
        let slow = (0..2 * LOOK_EVERY).filter(|_| pace.look_now(false)).count();
        assert_eq!(slow as u32, 2, "then once a second again");
    }

    /// The loop never waits for the hook: a run in progress is left alone, a change seen
    /// meanwhile gets exactly one more run after it, and nothing runs unasked.
    #[test]
    fn the_hook_runs_in_the_background_once_per_wish() {
        let dir = std::env::temp_dir().join(format!("observer-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("runs");
        let _ = std::fs::remove_file(&count);
        let argv = || {
            vec![
                "sh".to_string(),
                "-c".into(),
                format!("echo run >> {}; sleep 0.3", count.display()),
            ]
        };
        let runs = || {
            std::fs::read_to_string(&count)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let mut hook = BackgroundHook::default();
        hook.poll(argv);
        assert!(hook.running.is_none(), "nothing unasked");
        hook.want();
        let t = std::time::Instant::now();
        hook.poll(argv);
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "poll does not wait for the hook"
        );
        hook.want();
        hook.want();
        hook.poll(argv);
        while hook.running.is_some() || hook.wanted {
            std::thread::sleep(Duration::from_millis(20));
            hook.poll(argv);
        }
        assert_eq!(
            runs(),
            2,
            "one run, and one more for the wishes made while it ran"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A scratch directory standing for /run/postgresql-ha, and a file outside it.
    fn marker_dir(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!("pgha-marker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("run")).unwrap();
        let outside = d.join("precious");
        std::fs::write(&outside, "keep me").unwrap();
        (d.join("run/role-changed"), outside)
    }

    #[test]
    fn the_marker_is_a_regular_file_taken_once() {
        let (marker, outside) = marker_dir("file");
        assert_eq!(take_marker(&marker), Ok(false), "no marker yet");
        // What the callback does: `touch`.
        std::fs::write(&marker, "").unwrap();
        assert_eq!(take_marker(&marker), Ok(true));
        assert!(!marker.exists(), "consumed");
        assert_eq!(take_marker(&marker), Ok(false), "one callback, one hook");
        let _ = std::fs::remove_dir_all(outside.parent().unwrap());
    }

    #[test]
    fn a_link_fifo_or_directory_at_the_marker_is_no_marker_and_nothing_is_followed() {
        // Arrange: postgres planted a link to a file it must not touch.
        let (marker, outside) = marker_dir("odd");
        std::os::unix::fs::symlink(&outside, &marker).unwrap();
        // Act + Assert: no role change; the link is gone, what it pointed at is intact.
        let e = take_marker(&marker).unwrap_err();
        assert!(e.contains("a symbolic link"), "{e}");
        assert!(std::fs::symlink_metadata(&marker).is_err(), "link removed");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
        // A fifo: never opened, so this cannot wait for a writer.
        let status = std::process::Command::new("mkfifo")
            .arg(&marker)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(take_marker(&marker)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(std::fs::symlink_metadata(&marker).is_err(), "fifo removed");
        // A directory: left alone, still no marker.
        std::fs::create_dir(&marker).unwrap();
        assert!(take_marker(&marker).unwrap_err().contains("a directory"));
        assert!(marker.is_dir());
        let _ = std::fs::remove_dir_all(outside.parent().unwrap());
    }

    #[test]
    fn dispatches_on_a_new_primary_or_a_callback_only() {
        assert!(
            should_dispatch(None, Some("pg-0"), false),
            "first sight may differ from what the last hook saw"
        );
        assert!(!should_dispatch(None, None, false));
        assert!(!should_dispatch(Some("pg-0"), Some("pg-0"), false));
        assert!(
            !should_dispatch(Some("pg-0"), None, false),
            "no primary during a failover: wait for the new one"
        );
        assert!(should_dispatch(Some("pg-0"), Some("pg-1"), false));
        assert!(should_dispatch(Some("pg-0"), Some("pg-0"), true));
    }

    #[test]
    fn the_signature_follows_the_primary_and_its_running_sync_standbys() {
        let c = |roles: [(&str, &str); 3]| {
            Cluster {
            members: roles
                .iter()
                .enumerate()
                .map(|(i, (role, state))| {
                    serde_json::from_value(serde_json::json!({"name": format!("pg-{i}"), "role": role, "state": state}))
                        .unwrap()
                })
                .collect(),
        }
        };
        let before = c([
            ("leader", "running"),
            ("replica", "streaming"),
            ("replica", "stopped"),
        ]);
        let after = c([
            ("leader", "running"),
            ("quorum_standby", "streaming"),
            ("replica", "stopped"),
        ]);
        assert_eq!(signature(&before).as_deref(), Some("pg-0 "));
        assert_eq!(signature(&after).as_deref(), Some("pg-0 pg-1"));
        assert_eq!(
            signature(&c([
                ("replica", "running"),
                ("replica", "streaming"),
                ("replica", "stopped")
            ])),
            None
        );
    }

    /// etcd as the primary's host sees it: `leader` is the raft leader's member id; members
    /// 1, 2, 3 are postgresql-ha-0, -1, -2.
    fn host(leader: u64) -> charm_lib::testing::FakeMachine {
        use charm_lib::testing::MachineState;
        use charm_lib::CmdOutput;
        let status = format!(
            r#"[{{"Endpoint":"http://127.0.0.1:2379","Status":{{"header":{{"cluster_id":9,"member_id":1}},"leader":{leader},"raftTerm":2}}}}]"#
        );
        let members = r#"{"members":[{"ID":1,"name":"postgresql-ha-0","peerURLs":["http://10.0.0.10:2380"]},{"ID":2,"name":"postgresql-ha-1","peerURLs":["http://10.0.0.11:2380"]},{"ID":18446744073709551615,"name":"postgresql-ha-2","peerURLs":["http://10.0.0.12:2380"]}]}"#;
        charm_lib::testing::FakeMachine::new(
            MachineState::default()
                .respond(
                    &[
                        "etcdctl",
                        "--endpoints=https://127.0.0.1:2379",
                        "--cacert=/etc/postgresql-ha/tls/ca.pem",
                        "--cert=/etc/postgresql-ha/tls/unit.pem",
                        "--key=/etc/postgresql-ha/tls/unit.key",
                        "endpoint",
                        "status",
                    ],
                    CmdOutput::ok(status),
                )
                .respond(
                    &[
                        "etcdctl",
                        "--endpoints=https://127.0.0.1:2379",
                        "--cacert=/etc/postgresql-ha/tls/ca.pem",
                        "--cert=/etc/postgresql-ha/tls/unit.pem",
                        "--key=/etc/postgresql-ha/tls/unit.key",
                        "member",
                        "list",
                    ],
                    CmdOutput::ok(members),
                ),
        )
    }

    fn cluster(primary: &str, sync: &str) -> Cluster {
        serde_json::from_value(serde_json::json!({"members": [
            {"name": primary, "role": "leader", "state": "running"},
            {"name": sync, "role": "sync_standby", "state": "streaming"},
        ]}))
        .unwrap()
    }

    fn moves(m: &charm_lib::testing::FakeMachine) -> Vec<String> {
        m.ran
            .borrow()
            .iter()
            .filter(|c| c.args.iter().any(|a| a == "move-leader"))
            .map(|c| c.args.join(" "))
            .collect()
    }

    #[test]
    fn the_primary_hands_etcd_leadership_to_the_sync_standby() {
        // Arrange: this host (member 1) is the Patroni primary and leads etcd.
        let m = host(1);
        // Act.
        let heir = keep_etcd_leadership_off(
            &m,
            "postgresql-ha-0",
            &cluster("postgresql-ha-0", "postgresql-ha-2"),
        )
        .unwrap();
        // Assert: to the synchronous standby, by hex id as etcdctl takes it.
        assert_eq!(heir.as_deref(), Some("postgresql-ha-2"));
        let moved = moves(&m);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(
            moved[0].contains("move-leader ffffffffffffffff"),
            "{moved:?}"
        );
    }

    #[test]
    fn nothing_moves_unless_the_primary_leads_etcd() {
        // Another member leads etcd: nothing to do (and nothing asked of etcd but its status).
        let m = host(2);
        assert_eq!(
            keep_etcd_leadership_off(
                &m,
                "postgresql-ha-0",
                &cluster("postgresql-ha-0", "postgresql-ha-1")
            )
            .unwrap(),
            None
        );
        assert!(moves(&m).is_empty());
        // A standby never moves leadership, even while it leads etcd.
        let m = host(1);
        assert_eq!(
            keep_etcd_leadership_off(
                &m,
                "postgresql-ha-0",
                &cluster("postgresql-ha-1", "postgresql-ha-0")
            )
            .unwrap(),
            None
        );
        assert!(m.ran.borrow().is_empty(), "a standby asks etcd nothing");
    }

    #[test]
    fn the_heir_is_a_started_voter_other_than_me() {
        let member = |id, name: &str, learner| etcd::EtcdMember {
            id,
            name: name.into(),
            peer_urls: vec![],
            is_learner: learner,
        };
        let ms = [
            member(1, "pg-0", false),
            member(2, "pg-1", true),
            member(3, "", false),
            member(4, "pg-3", false),
        ];
        let name = |h: Option<&etcd::EtcdMember>| h.map(|x| x.name.clone());
        assert_eq!(
            name(etcd::leadership_heir(&ms, "pg-0", Some("pg-3"))),
            Some("pg-3".into())
        );
        assert_eq!(
            name(etcd::leadership_heir(&ms, "pg-0", Some("pg-1"))),
            Some("pg-3".into()),
            "a learner cannot lead: another voter instead"
        );
        assert_eq!(
            name(etcd::leadership_heir(&ms[..3], "pg-0", None)),
            None,
            "no started voter but me"
        );
    }
}
