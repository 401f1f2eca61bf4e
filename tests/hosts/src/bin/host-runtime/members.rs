//! Which processes belong to a service: the supervisor's stand-in for systemd's cgroup.
//! A process belongs if it carries the service's marker variable in its initial
//! environment, or descends from the main process or from a marked process. (Processes
//! that rewrite their environment block, like PostgreSQL's backends, are still found as
//! descendants of their postmaster.)

use std::collections::{HashMap, HashSet};

fn ppid_and_state(pid: i32) -> Option<(i32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    Some((it.next()?.parse().ok()?, state))
}

fn marked(pid: i32, want: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|e| e.split(|b| *b == 0).any(|kv| kv == want))
}

/// Live processes of `unit` (never PID 1), given its main PID if any.
pub fn of(unit: &str, main: Option<i32>) -> Vec<i32> {
    let want = format!("{}={unit}", crate::launch::UNIT_MARKER).into_bytes();
    let mut parent: HashMap<i32, i32> = HashMap::new();
    let mut set: HashSet<i32> = HashSet::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let Some((pp, st)) = ppid_and_state(pid) else {
            continue;
        };
        if st == 'Z' || st == 'X' {
            continue;
        }
        parent.insert(pid, pp);
        if marked(pid, &want) {
            set.insert(pid);
        }
    }
    if let Some(m) = main {
        if parent.contains_key(&m) {
            set.insert(m);
        }
    }
    // Close over descendants.
    loop {
        let before = set.len();
        for (p, pp) in &parent {
            if set.contains(pp) {
                set.insert(*p);
            }
        }
        if set.len() == before {
            break;
        }
    }
    let mut v: Vec<i32> = set.into_iter().collect();
    v.sort();
    v
}

/// Is `pid` alive (present and not a zombie)?
pub fn alive(pid: i32) -> bool {
    ppid_and_state(pid).is_some_and(|(_, s)| s != 'Z' && s != 'X')
}
