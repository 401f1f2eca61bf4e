//! Which MAAS the `maas` snap is. A real snap knows it from its own files; the stand-in is one
//! binary for every channel, so it asks the host's snapd which channel it was installed or
//! refreshed from (`snap list maas`, the Tracking column: tests/CONTRACTS.md §2).

use std::process::{Command, Stdio};

/// How the snap supervises its services, which decides what `maas status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// MAAS 3.4 and older: supervisord, `maas status` runs `run-supervisorctl status`
    /// (canonical/maas 3.4 `src/maascli/snap.py` `cmd_status.handle`,
    /// `snap/local/tree/bin/run-supervisorctl`).
    Supervisord,
    /// MAAS 3.5 and newer: pebble, `maas status` runs `run-pebble services`
    /// (canonical/maas 3.5 and 3.6 `src/maascli/snap.py` `cmd_status.handle`).
    Pebble,
}

/// The Tracking column of `snap list maas`, if snapd can be asked.
pub fn tracking() -> Option<String> {
    tracking_of(&snap_list()?)
}

/// The `maas` row's Tracking value in `snap list` output.
pub fn tracking_of(snap_list: &str) -> Option<String> {
    column_of(snap_list, "Tracking")
}

/// The `maas` row's value in column `name` of `snap list` output.
fn column_of(snap_list: &str, name: &str) -> Option<String> {
    let mut lines = snap_list.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = header.iter().position(|h| *h == name)?;
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"maas"))
        .and_then(|w| w.get(col).map(|s| s.to_string()))
}

fn snap_list() -> Option<String> {
    let out = Command::new("snap")
        .args(["list", "maas"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The MAAS version running here: the snap's Version column of `snap list` (the revision
/// snapd has linked, which a real snap knows from its own files), else the debs' (the
/// stand-in's newest, [`crate::api::VERSION`]).
pub fn version(flavor: crate::paths::Flavor) -> String {
    match flavor {
        crate::paths::Flavor::Snap => snap_list()
            .and_then(|l| column_of(&l, "Version"))
            .unwrap_or_else(|| crate::api::VERSION.to_string()),
        crate::paths::Flavor::Deb => crate::api::VERSION.to_string(),
    }
}

/// The supervisor of a snap tracking `channel`: supervisord up to track 3.4 (2.x included),
/// pebble from 3.5 on. A track that is not a version (`latest`) or cannot be told is the
/// newest MAAS, so pebble.
pub fn supervisor_of(channel: Option<&str>) -> Supervisor {
    let track = channel.and_then(|c| c.split('/').next()).unwrap_or("");
    let mut parts = track.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) <= (3, 4) => Supervisor::Supervisord,
        (Some(Ok(major)), None) if major < 3 => Supervisor::Supervisord,
        _ => Supervisor::Pebble,
    }
}

/// What a MAAS release runs besides regiond, by the track of its channel (`None`: not known,
/// the newest MAAS, as the deb stand-in is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// 3.5 and newer: the apiserver (v3 API behind nginx's `/MAAS/a/`) and Temporal on 5271
    /// (3.5's snap/local/tree/bin/run-apiserver, run-temporal, pebble region layer; 3.4 has
    /// neither).
    pub apiserver_and_temporal: bool,
    /// 3.6 and newer: nginx's stream server on 5242 in front of the internal API
    /// (src/maasserver/templates/http/regiond.nginx.stream.conf.template first appears in 3.6).
    pub internal_api: bool,
    /// Up to 3.5: every Prometheus endpoint also reports the host's memory and CPU time
    /// (src/provisioningserver/prometheus/collectors.py `node_metrics_definitions`, run as
    /// `update_handlers` of `PROMETHEUS_METRICS`; gone in 3.6, canonical/maas a97ac0f2a
    /// "refactor: remove prometheus node metrics").
    pub node_metrics: Option<NodeMetrics>,
}

/// Which release's list of memory fields the node metrics carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeMetrics {
    /// 3.4's (and every earlier release's) `MEMINFO_FIELDS` lacks a comma: `"VmallocChunk" "VmallocTotal"` is one field that
    /// /proc/meminfo never has (fixed in 3.5 by 9f5d94477).
    V3_4,
    /// 3.5's list, every field separate.
    V3_5,
}

/// The features of a snap tracking `channel`.
pub fn features_of(channel: Option<&str>) -> Features {
    let track = channel.and_then(|c| c.split('/').next()).unwrap_or("");
    let mut parts = track.split('.').map(|p| p.parse::<u32>());
    let v = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        (Some(Ok(major)), None) => (major, 0),
        _ => (u32::MAX, 0),
    };
    Features {
        apiserver_and_temporal: v >= (3, 5),
        internal_api: v >= (3, 6),
        node_metrics: match v {
            (3, 5) => Some(NodeMetrics::V3_5),
            v if v < (3, 5) => Some(NodeMetrics::V3_4),
            _ => None,
        },
    }
}

/// The features of the installed MAAS: the snap's channel, the newest for the debs.
pub fn features(flavor: crate::paths::Flavor) -> Features {
    match flavor {
        crate::paths::Flavor::Snap => features_of(tracking().as_deref()),
        crate::paths::Flavor::Deb => features_of(None),
    }
}

/// The supervisor of the installed snap.
pub fn supervisor() -> Supervisor {
    supervisor_of(tracking().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_up_to_3_4_are_supervisord_the_rest_pebble() {
        for (ch, want) in [
            (Some("3.4/stable"), Supervisor::Supervisord),
            (Some("3.3/edge"), Supervisor::Supervisord),
            (Some("2.9/stable"), Supervisor::Supervisord),
            (Some("3.5/stable"), Supervisor::Pebble),
            (Some("3.6/candidate/fix"), Supervisor::Pebble),
            (Some("3.10/stable"), Supervisor::Pebble),
            (Some("latest/edge"), Supervisor::Pebble),
            (None, Supervisor::Pebble),
        ] {
            assert_eq!(supervisor_of(ch), want, "{ch:?}");
        }
    }

    #[test]
    fn apiserver_and_temporal_from_3_5_internal_api_from_3_6() {
        for (ch, at, ia) in [
            (Some("3.4/stable"), false, false),
            (Some("3.5/stable"), true, false),
            (Some("3.6/stable"), true, true),
            (Some("latest/edge"), true, true),
            (None, true, true),
        ] {
            let f = features_of(ch);
            assert_eq!(
                (f.apiserver_and_temporal, f.internal_api),
                (at, ia),
                "{ch:?}"
            );
        }
    }

    #[test]
    fn node_metrics_up_to_3_5() {
        for (ch, want) in [
            (Some("3.3/stable"), Some(NodeMetrics::V3_4)),
            (Some("3.4/stable"), Some(NodeMetrics::V3_4)),
            (Some("3.5/stable"), Some(NodeMetrics::V3_5)),
            (Some("3.6/stable"), None),
            (None, None),
        ] {
            assert_eq!(features_of(ch).node_metrics, want, "{ch:?}");
        }
    }

    #[test]
    fn tracking_column_of_snap_list() {
        let out = "Name  Version  Rev  Tracking    Publisher    Notes\nmaas  3.4.6    1    3.4/stable  local-model  -\n";
        assert_eq!(tracking_of(out).as_deref(), Some("3.4/stable"));
        assert_eq!(tracking_of("Name Version\n"), None);
        assert_eq!(tracking_of(""), None);
        assert_eq!(column_of(out, "Version").as_deref(), Some("3.4.6"));
    }
}
