//! The values hook tools take and print, with the JSON shapes of Juju 3.x.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A relation databag: every value is a string (Juju's rule).
pub type Databag = BTreeMap<String, String>;

/// A relation id as Juju prints it: `<endpoint>:<n>`, e.g. `db:7`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelationId {
    /// The local endpoint name.
    pub endpoint: String,
    /// The model-wide relation number.
    pub id: u32,
}

impl RelationId {
    /// A relation id for `endpoint` and number `id`.
    pub fn new(endpoint: &str, id: u32) -> RelationId {
        RelationId {
            endpoint: endpoint.to_string(),
            id,
        }
    }
}

impl fmt::Display for RelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.endpoint, self.id)
    }
}

impl FromStr for RelationId {
    type Err = String;
    /// Parses `db:7`. Endpoint names may contain `-` and `:` never, so the last `:` splits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (endpoint, n) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("relation id {s:?} is not <endpoint>:<number>"))?;
        if endpoint.is_empty() {
            return Err(format!("relation id {s:?} has no endpoint"));
        }
        let id = n
            .parse()
            .map_err(|_| format!("relation id {s:?} does not end in a number"))?;
        Ok(RelationId::new(endpoint, id))
    }
}

impl TryFrom<String> for RelationId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RelationId> for String {
    fn from(r: RelationId) -> String {
        r.to_string()
    }
}

/// A port (or range) and protocol, as `open-port` takes and `opened-ports` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// One TCP port.
    Tcp(u16),
    /// One UDP port.
    Udp(u16),
    /// A TCP range, inclusive.
    TcpRange(u16, u16),
    /// A UDP range, inclusive.
    UdpRange(u16, u16),
    /// ICMP.
    Icmp,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Tcp(p) => write!(f, "{p}/tcp"),
            Port::Udp(p) => write!(f, "{p}/udp"),
            Port::TcpRange(a, b) => write!(f, "{a}-{b}/tcp"),
            Port::UdpRange(a, b) => write!(f, "{a}-{b}/udp"),
            Port::Icmp => write!(f, "icmp"),
        }
    }
}

impl FromStr for Port {
    type Err = String;
    /// Parses `80`, `80/tcp`, `53/udp`, `8000-8999/udp`, `icmp` (`opened-ports` may append
    /// ` (endpoints)`, which is ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.split_whitespace().next().unwrap_or("");
        if s == "icmp" {
            return Ok(Port::Icmp);
        }
        let (range, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let num = |x: &str| {
            x.parse::<u16>()
                .map_err(|_| format!("port {s:?}: {x:?} is not a port number"))
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, Some(num(b)?)),
            None => (num(range)?, None),
        };
        match (proto, hi) {
            ("tcp", None) => Ok(Port::Tcp(lo)),
            ("udp", None) => Ok(Port::Udp(lo)),
            ("tcp", Some(hi)) => Ok(Port::TcpRange(lo, hi)),
            ("udp", Some(hi)) => Ok(Port::UdpRange(lo, hi)),
            _ => Err(format!("port {s:?}: protocol must be tcp or udp")),
        }
    }
}

/// `network-get --format=json <binding>` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Addresses the unit can bind to, per interface.
    #[serde(rename = "bind-addresses", default)]
    pub bind_addresses: Vec<BindAddress>,
    /// Subnets the unit's traffic comes from.
    #[serde(rename = "egress-subnets", default)]
    pub egress_subnets: Vec<String>,
    /// Addresses others should use to reach the unit.
    #[serde(rename = "ingress-addresses", default)]
    pub ingress_addresses: Vec<String>,
}

/// One interface in [`NetworkInfo::bind_addresses`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindAddress {
    /// MAC address (may be empty).
    #[serde(rename = "mac-address", default)]
    pub mac_address: String,
    /// Interface name, e.g. `eth0`.
    #[serde(rename = "interface-name", default)]
    pub interface_name: String,
    /// Addresses on it.
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
}

/// One address in [`BindAddress::addresses`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// Hostname, if the address came from one.
    #[serde(default)]
    pub hostname: String,
    /// The address.
    pub value: String,
    /// Its subnet, e.g. `10.0.0.0/24`.
    #[serde(default)]
    pub cidr: String,
}

/// A status as `status-get --include-data --format=json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// `active`, `blocked`, ...
    pub status: String,
    /// The message (may be empty).
    #[serde(default)]
    pub message: String,
    /// Extra data.
    #[serde(rename = "status-data", default)]
    pub status_data: BTreeMap<String, serde_json::Value>,
}

/// Metadata of a secret, from `secret-info-get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Current revision.
    #[serde(default)]
    pub revision: u32,
    /// Owner's label, if any.
    #[serde(default)]
    pub label: Option<String>,
    /// Description, if any.
    #[serde(default)]
    pub description: Option<String>,
    /// Expiry time (RFC 3339), if any.
    #[serde(default)]
    pub expiry: Option<String>,
    /// Rotation policy, if any.
    #[serde(default)]
    pub rotation: Option<String>,
    /// Next rotation time, if any.
    #[serde(default)]
    pub rotates: Option<String>,
}

/// Who owns a new secret: the application (managed by its leader) or this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretOwner {
    /// The application: only the leader may manage it (Juju's default).
    #[default]
    Application,
    /// This unit.
    Unit,
}

/// Options for `secret-add` and `secret-set`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretOptions {
    /// Owner of a new secret (ignored by `secret-set`).
    pub owner: SecretOwner,
    /// Owner-side label.
    pub label: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Expiry: a duration like `24h` or an RFC 3339 time.
    pub expire: Option<String>,
    /// Rotation policy: `never`, `hourly`, `daily`, ...
    pub rotate: Option<String>,
}
