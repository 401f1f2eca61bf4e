//! etcd membership through `etcdctl` against the local member.

use crate::paths;
use charm_lib::{Cmd, Machine};
use serde::Deserialize;

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EtcdMember {
    /// Member id.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Name (empty until an added member starts).
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Whether it is a learner (non-voting).
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl EtcdMember {
    /// The member id as etcdctl takes it.
    pub fn hex_id(&self) -> String {
        format!("{:x}", self.id)
    }
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<EtcdMember>,
}

fn etcdctl<I: IntoIterator<Item = S>, S: Into<String>>(args: I) -> Cmd {
    let mut c = Cmd::new("etcdctl", [format!("--endpoints={}", paths::ETCD_LOCAL)]);
    c.args.extend(args.into_iter().map(Into::into));
    c.args.push("--command-timeout=5s".into());
    c.env("ETCDCTL_API", "3")
}

/// The peer URL of a unit's member.
pub fn peer_url(address: &str) -> String {
    format!("http://{address}:2380")
}

/// `member list`.
pub fn members(m: &dyn Machine) -> anyhow::Result<Vec<EtcdMember>> {
    let out = m.run(&etcdctl(["member", "list", "-w", "json"]))?;
    let list: MemberList = serde_json::from_str(&out.stdout).map_err(|e| anyhow::anyhow!("etcdctl member list printed something unexpected: {e}"))?;
    Ok(list.members)
}

/// `member add <name> --peer-urls=<url> --learner`: a learner does not count for quorum, so
/// the cluster stays healthy while the new member catches up.
pub fn add_learner(m: &dyn Machine, name: &str, address: &str) -> anyhow::Result<()> {
    m.run(&etcdctl(["member".to_string(), "add".into(), name.into(), format!("--peer-urls={}", peer_url(address)), "--learner".into()]))?;
    Ok(())
}

/// `member promote <id>`: fails while the learner is still catching up (retried later).
pub fn promote(m: &dyn Machine, member: &EtcdMember) -> anyhow::Result<()> {
    m.run(&etcdctl(["member".to_string(), "promote".into(), member.hex_id()]))?;
    Ok(())
}

/// `member remove <id>`.
pub fn remove(m: &dyn Machine, member: &EtcdMember) -> anyhow::Result<()> {
    m.run(&etcdctl(["member".to_string(), "remove".into(), member.hex_id()]))?;
    Ok(())
}

/// Whether the local member answers with a quorum behind it.
pub fn healthy(m: &dyn Machine) -> anyhow::Result<bool> {
    Ok(m.run(&etcdctl(["endpoint", "health"]).allow_failure())?.success())
}

/// Whether the local member runs (a learner too, which `endpoint health` would refuse).
pub fn started(m: &dyn Machine) -> anyhow::Result<bool> {
    Ok(m.run(&etcdctl(["endpoint", "status"]).allow_failure())?.success())
}

/// Waits (bounded) for the local member to answer after a (re)start.
pub fn wait_started(m: &dyn Machine, seconds: u32) -> anyhow::Result<bool> {
    wait(m, "status", seconds)
}

/// Waits (bounded) for the local member to answer with a quorum behind it.
pub fn wait_healthy(m: &dyn Machine, seconds: u32) -> anyhow::Result<bool> {
    wait(m, "health", seconds)
}

fn wait(m: &dyn Machine, what: &str, seconds: u32) -> anyhow::Result<bool> {
    let probe = format!("until ETCDCTL_API=3 etcdctl --endpoints={} endpoint {what} >/dev/null 2>&1; do sleep 0.5; done", paths::ETCD_LOCAL);
    Ok(m.run(&Cmd::new("timeout", [seconds.to_string(), "sh".into(), "-c".into(), probe]).allow_failure())?.success())
}
