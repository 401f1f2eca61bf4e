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
    c.args.extend(paths::etcdctl_tls_args());
    c.args.extend(args.into_iter().map(Into::into));
    c.args.push("--command-timeout=5s".into());
    c.env("ETCDCTL_API", "3")
}

/// The peer URL of a unit's member.
pub fn peer_url(address: &str) -> String {
    format!("https://{address}:2380")
}

/// `member list`.
pub fn members(m: &dyn Machine) -> anyhow::Result<Vec<EtcdMember>> {
    let out = m.run(&etcdctl(["member", "list", "-w", "json"]))?;
    let list: MemberList = serde_json::from_str(&out.stdout)
        .map_err(|e| anyhow::anyhow!("etcdctl member list printed something unexpected: {e}"))?;
    Ok(list.members)
}

/// How often [`add_learner`] asks, one second apart, while etcd answers "unhealthy cluster".
pub const ADD_TRIES: u32 = 30;
/// What etcd answers a member change while the member serving it has not been connected to
/// every voting member for its health interval (5 s), e.g. right after a learner's promotion.
pub const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// `member add <name> --peer-urls=<url> --learner`: a learner does not count for quorum, so
/// the cluster stays healthy while the new member catches up. etcd refuses the change as
/// [`UNHEALTHY`] for a few seconds after a membership change (every member must have been
/// connected for 5 s), which a pause cures: the add is tried again a second later, up to
/// [`ADD_TRIES`] times, so the hook waits instead of failing. Any other refusal, or one that
/// lasts, is an error.
pub fn add_learner(m: &dyn Machine, name: &str, address: &str) -> anyhow::Result<()> {
    let add = etcdctl([
        "member".to_string(),
        "add".into(),
        name.into(),
        format!("--peer-urls={}", peer_url(address)),
        "--learner".into(),
    ])
    .allow_failure();
    let mut attempt = 1;
    loop {
        let out = m.run(&add)?;
        if out.success() {
            return Ok(());
        }
        let unhealthy = out.stderr.contains(UNHEALTHY) || out.stdout.contains(UNHEALTHY);
        if !unhealthy || attempt == ADD_TRIES {
            return Err(charm_lib::MachineError::from_output(&add, &out).into());
        }
        if attempt == 1 {
            log::info!("etcd refuses to add {name} until its members have been connected for 5 s (\"{UNHEALTHY}\"): trying again every second");
        }
        m.run(&Cmd::new("sleep", ["1"]))?;
        attempt += 1;
    }
}

/// `member promote <id>`: fails while the learner is still catching up (retried later).
pub fn promote(m: &dyn Machine, member: &EtcdMember) -> anyhow::Result<()> {
    m.run(&etcdctl([
        "member".to_string(),
        "promote".into(),
        member.hex_id(),
    ]))?;
    Ok(())
}

/// `member remove <id>`.
pub fn remove(m: &dyn Machine, member: &EtcdMember) -> anyhow::Result<()> {
    m.run(&etcdctl([
        "member".to_string(),
        "remove".into(),
        member.hex_id(),
    ]))?;
    Ok(())
}

#[derive(Deserialize)]
struct EndpointStatus {
    #[serde(rename = "Status")]
    status: StatusBody,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    header: StatusHeader,
    #[serde(default)]
    leader: u64,
}

#[derive(Deserialize, Default)]
struct StatusHeader {
    #[serde(default)]
    member_id: u64,
}

/// Whether the local member is the raft leader (`endpoint status`; false when it does not
/// answer).
pub fn leads(m: &dyn Machine) -> anyhow::Result<bool> {
    let out = m.run(&etcdctl(["endpoint", "status", "-w", "json"]).allow_failure())?;
    if !out.success() {
        return Ok(false);
    }
    let list: Vec<EndpointStatus> = serde_json::from_str(&out.stdout).map_err(|e| {
        anyhow::anyhow!("etcdctl endpoint status printed something unexpected: {e}")
    })?;
    Ok(list
        .first()
        .is_some_and(|s| s.status.leader != 0 && s.status.leader == s.status.header.member_id))
}

/// Where raft leadership should go from the local member `me`: to the member named `prefer`
/// (the synchronous standby, the next primary) if it votes, else to another voting member that
/// has started (an added member has no name until it starts).
pub fn leadership_heir<'a>(
    members: &'a [EtcdMember],
    me: &str,
    prefer: Option<&str>,
) -> Option<&'a EtcdMember> {
    let voters = || {
        members
            .iter()
            .filter(|x| !x.is_learner && !x.name.is_empty() && x.name != me)
    };
    voters()
        .find(|x| Some(x.name.as_str()) == prefer)
        .or_else(|| voters().next())
}

/// Deletes Patroni's leader key of `scope`, the lock a primary holds. For force-promote only:
/// the operator declared the primary lost, and its key would otherwise outlive it by a whole
/// TTL, the lease being extended when the forced one-member cluster elected itself.
pub fn delete_leader_key(m: &dyn Machine, scope: &str) -> anyhow::Result<()> {
    m.run(&etcdctl([
        "del".to_string(),
        format!("{}{scope}/leader", paths::PATRONI_NAMESPACE),
    ]))?;
    Ok(())
}

/// Deletes every key Patroni keeps for `scope` (what `patronictl remove` does): a restore
/// bootstraps a new cluster from a backup, which Patroni does only where no cluster is
/// initialised.
pub fn remove_cluster(m: &dyn Machine, scope: &str) -> anyhow::Result<()> {
    m.run(&etcdctl([
        "del".to_string(),
        "--prefix".to_string(),
        format!("{}{scope}/", paths::PATRONI_NAMESPACE),
    ]))?;
    Ok(())
}

/// Patroni's `/sync` key of `scope` (see [`crate::failover`]); `None` when it is absent or
/// unreadable (no quorum, or no primary has written it yet).
pub fn sync_key(m: &dyn Machine, scope: &str) -> anyhow::Result<Option<crate::failover::SyncKey>> {
    let out = m.run(
        &etcdctl([
            "get".to_string(),
            "--print-value-only".to_string(),
            format!("{}{scope}/sync", paths::PATRONI_NAMESPACE),
        ])
        .allow_failure(),
    )?;
    if !out.success() || out.stdout.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str(out.stdout.trim()) {
        Ok(k) => Ok(Some(k)),
        Err(e) => {
            log::warn!("Patroni's /sync key is not what Patroni writes ({e}); ignoring it");
            Ok(None)
        }
    }
}

/// `move-leader <id>`: hands raft leadership over (only the leader can; others get an error).
pub fn move_leader(m: &dyn Machine, to: &EtcdMember) -> anyhow::Result<()> {
    m.run(&etcdctl(["move-leader".to_string(), to.hex_id()]))?;
    Ok(())
}

/// Whether the local member (a learner too) sees a raft leader, i.e. the cluster has quorum.
/// `endpoint health` cannot tell: a learner refuses it even in a healthy cluster.
pub fn has_leader(m: &dyn Machine) -> anyhow::Result<bool> {
    let out = m.run(&etcdctl(["endpoint", "status", "-w", "json"]).allow_failure())?;
    if !out.success() {
        return Ok(false);
    }
    match serde_json::from_str::<Vec<EndpointStatus>>(&out.stdout) {
        Ok(list) => Ok(list.first().is_some_and(|s| s.status.leader != 0)),
        Err(e) => {
            log::warn!(
                "etcdctl endpoint status printed something unexpected ({e}); assuming no quorum"
            );
            Ok(false)
        }
    }
}

/// Whether the local voting member answers with a quorum behind it.
pub fn healthy(m: &dyn Machine) -> anyhow::Result<bool> {
    Ok(m.run(&etcdctl(["endpoint", "health"]).allow_failure())?
        .success())
}

/// Whether the local member runs (a learner too, which `endpoint health` would refuse).
pub fn started(m: &dyn Machine) -> anyhow::Result<bool> {
    Ok(
        m.run(&etcdctl(["endpoint", "status", "-w", "json"]).allow_failure())?
            .success(),
    )
}

/// Whether etcd's metrics listener answers (any HTTP status: `/health` is 503 without a
/// leader, and that still is the listener).
pub fn metrics_listening(m: &dyn Machine) -> anyhow::Result<bool> {
    let out = m.run(
        &Cmd::new(
            "curl",
            [
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "2",
                "-w",
                "%{http_code}",
                &format!("{}/health", paths::ETCD_METRICS),
            ],
        )
        .allow_failure(),
    )?;
    Ok(out
        .stdout
        .trim()
        .parse::<u16>()
        .is_ok_and(|code| (100..600).contains(&code)))
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
    let probe = format!(
        "until ETCDCTL_API=3 etcdctl --endpoints={} {} endpoint {what} >/dev/null 2>&1; do sleep 0.5; done",
        paths::ETCD_LOCAL,
        paths::etcdctl_tls_args().join(" ")
    );
    Ok(m.run(
        &Cmd::new(
            "timeout",
            [seconds.to_string(), "sh".into(), "-c".into(), probe],
        )
        .allow_failure(),
    )?
    .success())
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_without_a_leader_means_no_quorum() {
        // What etcd 3.4.23 printed on the survivor of a two-member cluster, and on a healthy one.
        let lost = r#"[{"Endpoint":"http://127.0.0.1:2379","Status":{"header":{"cluster_id":1,"member_id":2,"revision":133,"raft_term":3},"version":"3.4.23","raftTerm":3,"errors":["etcdserver: no leader"]}}]"#;
        let ok = r#"[{"Endpoint":"http://127.0.0.1:2379","Status":{"header":{"cluster_id":1},"version":"3.4.23","leader":1579027039111818155,"raftTerm":3}}]"#;
        let parse = |s: &str| {
            serde_json::from_str::<Vec<super::EndpointStatus>>(s).unwrap()[0]
                .status
                .leader
        };
        assert_eq!(parse(lost), 0);
        assert_ne!(parse(ok), 0);
    }
}
