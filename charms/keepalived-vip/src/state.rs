//! What this unit keeps in charm state (`state-get`/`state-set`), typed.

use charm_lib::charm_state::Yes;
use serde::{Deserialize, Serialize};

/// What this unit keeps in charm state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// `leaving`: the unit is being removed and has stopped its keepalived.
    #[serde(default)]
    pub leaving: Yes,
    /// `unicast-peers`: the last non-empty list of peer addresses this unit advertised to
    /// (see `reconcile::unicast_peers`).
    #[serde(default, rename = "unicast-peers")]
    pub unicast_peers: Option<Vec<std::net::IpAddr>>,
}
