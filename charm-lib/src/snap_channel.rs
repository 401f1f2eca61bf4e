//! Snap channels as snapd reads them (`<track>/<risk>[/<branch>]`, or a bare risk meaning the
//! `latest` track), and the one question an upgrade asks of two of them: is the new track
//! older? snapd itself lets any channel replace any other (`snap refresh --channel`); MAAS does
//! not go back (its database schema only migrates forward), so a charm must refuse.

use std::cmp::Ordering;

/// Risk levels: the only mandatory part of a channel.
pub const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// A parsed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapChannel {
    /// `3.6`, or `latest` when the channel names only a risk.
    pub track: String,
    /// `stable`, `candidate`, `beta` or `edge`.
    pub risk: String,
}

impl SnapChannel {
    /// `3.6/stable`, `latest/edge`, `stable` (track `latest`), `3.6/stable/hotfix`.
    pub fn parse(text: &str) -> Option<SnapChannel> {
        let parts: Vec<&str> = text.split('/').collect();
        let (track, risk) = match parts.as_slice() {
            [risk] => ("latest", *risk),
            [track, risk] | [track, risk, _] => (*track, *risk),
            _ => return None,
        };
        (!track.is_empty() && RISKS.contains(&risk)).then(|| SnapChannel {
            track: track.to_string(),
            risk: risk.to_string(),
        })
    }

    /// The track as numbers (`3.6` → `[3, 6]`); `None` for a named track such as `latest`.
    pub fn version(&self) -> Option<Vec<u64>> {
        self.track.split('.').map(|p| p.parse().ok()).collect()
    }

    /// How this channel's track compares with `other`'s: `None` when either track is not a
    /// version (`latest` follows whatever is newest, so no order can be told).
    pub fn track_cmp(&self, other: &SnapChannel) -> Option<Ordering> {
        Some(self.version()?.cmp(&other.version()?))
    }

    /// Whether moving from `installed` to `self` goes to an older track.
    pub fn is_downgrade_from(&self, installed: &SnapChannel) -> bool {
        self.track_cmp(installed) == Some(Ordering::Less)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> SnapChannel {
        SnapChannel::parse(s).unwrap()
    }

    #[test]
    fn channels_parse_as_snapd_writes_them() {
        assert_eq!(ch("3.6/stable").track, "3.6");
        assert_eq!(ch("edge").track, "latest");
        assert_eq!(ch("3.6/stable/hotfix-1").risk, "stable");
        assert!(SnapChannel::parse("3.6/stabel").is_none());
        assert!(SnapChannel::parse("").is_none());
        assert!(SnapChannel::parse("a/b/c/d").is_none());
    }

    #[test]
    fn only_an_older_numbered_track_is_a_downgrade() {
        assert!(ch("3.5/stable").is_downgrade_from(&ch("3.6/stable")));
        assert!(ch("3.9/stable").is_downgrade_from(&ch("3.10/stable")));
        assert!(!ch("3.6/stable").is_downgrade_from(&ch("3.5/stable")));
        assert!(!ch("3.6/edge").is_downgrade_from(&ch("3.6/stable")));
        assert!(!ch("latest/stable").is_downgrade_from(&ch("3.6/stable")));
        assert!(!ch("3.6/stable").is_downgrade_from(&ch("latest/edge")));
    }
}
