//! Which MAAS release a version string names, for what both MAAS charms decide by release: a
//! snap channel (`3.6/stable`, as maas_rpc's `maas-channel` carries it and each charm keeps the
//! channel it installed) or a deb's version as dpkg reports it (`1:3.6.3-0ubuntu1`,
//! `1:3.5.2-16343-g…`: epoch and suffix ignored). A track that is not a version (`latest`, a
//! bare risk) is the newest MAAS.

/// The (major, minor) release `version` names; `None` when it names no release (the newest).
pub fn release(version: &str) -> Option<(u32, u32)> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    let track = v.split('/').next().unwrap_or("");
    let mut parts = track.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => Some((major, minor)),
        (Some(major), None) => Some((major, 0)),
        (None, _) => None,
    }
}

/// Whether `version` is `at_least` (major, minor) or newer (a version naming no release is).
pub fn at_least(version: &str, at_least: (u32, u32)) -> bool {
    release(version).is_none_or(|r| r >= at_least)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_deb_versions() {
        for (v, want) in [
            ("3.6/stable", Some((3, 6))),
            ("3.10/edge/fix", Some((3, 10))),
            ("1:3.5.2-16343-g1234abcd-0ubuntu1~22.04.1", Some((3, 5))),
            ("3.4.6", Some((3, 4))),
            ("3", Some((3, 0))),
            ("latest/edge", None),
            ("stable", None),
            ("", None),
        ] {
            assert_eq!(release(v), want, "{v}");
        }
        assert!(at_least("3.6/stable", (3, 6)));
        assert!(at_least("1:3.7.1-0ubuntu1", (3, 6)));
        assert!(!at_least("3.5/stable", (3, 6)));
        assert!(!at_least("1:3.4.6-0ubuntu1", (3, 5)));
        assert!(at_least("latest/edge", (3, 6)));
    }
}
