//! Finding and removing what a lab (crashed or not) left: its processes (by their
//! environment marker or network namespace) and its namespaces, by prefix alone.

use crate::layout::{self, LAB_MARKER};
use crate::net;
use crate::procs;
use anyhow::{bail, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// What of a lab with that prefix still exists (see `Lab::leftovers`).
pub(crate) fn leftovers(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let nss = lab_netns(prefix);
    for ns in &nss {
        out.push(format!("netns {ns}"));
    }
    for l in net::bridge_links(prefix) {
        out.push(format!("link {l} (in netns {})", layout::bridge_ns(prefix)));
    }
    for pid in lab_processes(prefix, &nss) {
        let comm = procs::stat(pid).map(|s| s.comm).unwrap_or_default();
        out.push(format!("process {pid} ({comm})"));
    }
    let netns_dir = format!("/run/netns/{prefix}-");
    if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mi.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&netns_dir) {
                    out.push(format!("mount {mp}"));
                }
            }
        }
    }
    out
}

fn lab_netns(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = net::netns_list()
        .into_iter()
        .filter(|n| layout::is_lab_ns(prefix, n))
        .collect();
    v.sort();
    v
}

/// Live processes of the lab: carrying its marker, or inside one of its network namespaces.
fn lab_processes(prefix: &str, nss: &[String]) -> Vec<u32> {
    let ids: HashSet<String> = nss
        .iter()
        .filter_map(|n| procs::ns_file_id(&Path::new("/run/netns").join(n), "net"))
        .collect();
    let me = std::process::id();
    procs::all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| {
            procs::has_env(*p, LAB_MARKER, prefix)
                || procs::ns_id(*p, "net").is_some_and(|id| ids.contains(&id))
        })
        .filter(|p| procs::alive(*p))
        .collect()
}

/// Kills every process of the lab and deletes its namespaces (hosts first, bridge last).
pub(crate) fn clean_prefix(prefix: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // A dying process loses its environment and namespaces before it becomes a zombie (a
    // PID 1 waits that way for its namespace to empty): remember what was seen and wait
    // for those to be really gone too.
    let mut seen: HashMap<u32, u64> = HashMap::new();
    loop {
        let pids = lab_processes(prefix, &lab_netns(prefix));
        for p in &pids {
            if let Some(st) = procs::stat(*p) {
                seen.insert(*p, st.starttime);
            }
        }
        seen.retain(|p, start| {
            procs::stat(*p).is_some_and(|s| s.starttime == *start && procs::alive(*p))
        });
        if pids.is_empty() && seen.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("processes of lab {prefix} survive SIGKILL: {pids:?} {seen:?}");
        }
        for p in pids {
            let _ = procs::signal(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let bridge = layout::bridge_ns(prefix);
    for ns in lab_netns(prefix).iter().filter(|n| **n != bridge) {
        net::netns_delete(ns)?;
    }
    net::netns_delete(&bridge)?;
    Ok(())
}
