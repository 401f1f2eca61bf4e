//! What this unit did to its host, in charm state (`state-get`/`state-set`): one field per
//! key, read and written by [`charm_lib::charm_state`]; a value that does not fit blocks the
//! unit naming its key.

use crate::config::InstallMethod;
use charm_lib::charm_state::Yes;
use charm_lib::{Context, Status};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit's memory of its own actions; each field is one charm-state key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// `installed-method`: `snap` or `deb`, once installed.
    #[serde(rename = "installed-method", default)]
    pub method: Option<InstallMethod>,
    /// `snap-channel`: the channel installed or last refreshed to.
    #[serde(rename = "snap-channel", default)]
    pub channel: Option<String>,
    /// `snap-held`: snapd's own refreshes of the snap are held (`snap refresh --hold`).
    #[serde(rename = "snap-held", default)]
    pub held: Yes,
    /// `deb-installed`: the MAAS packages are installed.
    #[serde(rename = "deb-installed", default)]
    pub deb: Yes,
    /// `haproxy-installed`: this charm installed haproxy.
    #[serde(rename = "haproxy-installed", default)]
    pub haproxy: Yes,
    /// `named-options-migrated`: bind's conflicting options were migrated (deb).
    #[serde(rename = "named-options-migrated", default)]
    pub named: Yes,
    /// `init-error`: why the last `maas init` failed.
    #[serde(rename = "init-error", default)]
    pub init_error: Option<String>,
    /// `init-unreachable`: the last `maas init` could not reach the database (MAAS's reason);
    /// retried as a failed init is, and reported Waiting rather than Blocked.
    #[serde(rename = "init-unreachable", default)]
    pub init_unreachable: Option<String>,
    /// `init-done`: `maas::init_record` of the last `maas init` that exited 0.
    #[serde(rename = "init-done", default)]
    pub init_done: Option<String>,
    /// `init-request-seq`: the last init-lock request token this unit opened.
    #[serde(rename = "init-request-seq", default)]
    pub request_seq: Option<u64>,
    /// `vip-address`: the VIP the subordinate last offered, for the teardown to see it gone
    /// after the `vip` relation has departed.
    #[serde(rename = "vip-address", default)]
    pub vip: Option<String>,
    /// `leaving`: this unit is being removed and has drained its haproxy (the teardown).
    #[serde(rename = "leaving", default)]
    pub leaving: Yes,
    /// `refresh-drain-since`: when (Unix seconds) this unit asked every haproxy to leave it
    /// out before a refresh ([`crate::peers::keys::DRAIN`]), for [`crate::lock::DRAIN_ACK_WAIT`].
    #[serde(rename = "refresh-drain-since", default)]
    pub drain_since: Option<u64>,
    /// `vip-last-since`: when (Unix seconds) this region, holding the VIP, first let the other
    /// regions refresh before it (300 s at most: the refresh's `VIP_LAST_WAIT`).
    #[serde(rename = "vip-last-since", default)]
    pub vip_last_since: Option<u64>,
}

/// The charm state, or the Blocked status that names the key that does not fit.
pub fn load(ctx: &Context) -> anyhow::Result<Result<Stored, Status>> {
    match ctx.model.state::<Stored>() {
        Ok(s) => Ok(Ok(s)),
        Err(e @ charm_lib::Error::State(_)) => Ok(Err(Status::blocked(format!(
            "unusable {e}: fix or delete that key (juju exec --unit {} -- state-delete <key>)",
            ctx.model.unit_name()
        )))),
        Err(e) => Err(e.into()),
    }
}

// The key keeps the config option's spelling, so an operator reading `state-get` sees the
// value they set; anything else is refused when read rather than taken for "not installed".
impl Serialize for InstallMethod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstallMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        InstallMethod::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not \"snap\" or \"deb\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use charm_lib::databag::{from_databag, to_databag};

    fn bag(pairs: &[(&str, &str)]) -> charm_lib::tools::Databag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_install_method_keeps_the_option_spelling() {
        let s = Stored {
            method: Some(InstallMethod::Deb),
            deb: Yes(true),
            ..Stored::default()
        };
        let b = to_databag(&s).unwrap();
        assert_eq!(b.get("installed-method").map(String::as_str), Some("deb"));
        assert_eq!(b.get("deb-installed").map(String::as_str), Some("yes"));
        assert_eq!(from_databag::<Stored>(&b).unwrap(), s);
    }

    #[test]
    fn a_value_that_does_not_fit_names_its_key() {
        let e = from_databag::<Stored>(&bag(&[("installed-method", "apt")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("installed-method") && e.contains("apt"), "{e}");
        let e = from_databag::<Stored>(&bag(&[("haproxy-installed", "true")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("haproxy-installed"), "{e}");
    }
}
