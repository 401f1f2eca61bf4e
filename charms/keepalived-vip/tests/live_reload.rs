//! What a reload does to the VIP a real keepalived holds, for the configurations the charm
//! renders as peers come and go (issue 17). keepalived keeps an instance over a reload only if
//! it stays unicast from the same source (2.2.7, vrrp.c `vrrp_exist`): the unicast peers may
//! change, but a switch to multicast makes a new instance, which drops the VIP for a
//! master-down interval. That is why a unit whose last peer left keeps unicasting to it
//! (`reconcile::unicast_peers`). One holder in a network namespace of its own (a veth pair
//! inside it; the machine's interfaces are never touched); its peers' addresses exist nowhere.
//! Needs root and keepalived: skipped with the reason otherwise.

use keepalived_vip::net::Cidr;
use keepalived_vip::render::{keepalived_conf, Placement, Unicast, Vrrp};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "10.231.1.100";

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not root: a network namespace needs root".into());
    }
    let found = Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| "keepalived is not installed (apt-get install keepalived)".into())
}

/// The namespace, the keepalived in it and its files; all removed on drop.
struct Lab {
    ns: String,
    keepalived: Option<Child>,
    conf: PathBuf,
    pid: PathBuf,
    vrrp_pid: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = format!("{}{tag}", std::process::id());
        let lab = Lab {
            ns: format!("kvipr{id}"),
            keepalived: None,
            conf: std::env::temp_dir().join(format!("kvipr-{id}.conf")),
            pid: PathBuf::from(format!("/run/kvipr-{id}.pid")),
            vrrp_pid: PathBuf::from(format!("/run/kvipr-{id}-vrrp.pid")),
        };
        run("ip", &["netns", "add", &lab.ns]);
        for args in [
            vec!["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "v0", "up"],
            vec!["link", "set", "v1", "up"],
            vec!["addr", "add", "10.231.1.10/24", "dev", "v0"],
        ] {
            let mut argv = vec!["netns", "exec", &lab.ns, "ip"];
            argv.extend(args);
            run("ip", &argv);
        }
        lab
    }

    /// Writes `v`'s configuration, checked by `keepalived -t`.
    fn write(&self, v: &Vrrp) {
        std::fs::write(&self.conf, keepalived_conf(v)).unwrap();
        let conf = self.conf.to_str().unwrap();
        let t = Command::new("ip")
            .args(["netns", "exec", &self.ns, "keepalived", "-t", "-f", conf])
            .output()
            .unwrap();
        assert!(
            t.status.success(),
            "keepalived -t: {}",
            String::from_utf8_lossy(&t.stderr)
        );
    }

    fn start(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "keepalived"])
            .args(["--dont-fork", "--vrrp", "--log-console", "--no-syslog"])
            .arg("-f")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.pid)
            .arg("-r")
            .arg(&self.vrrp_pid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.keepalived = Some(child);
    }

    /// SIGHUP to keepalived's main process, as `systemctl reload` sends it.
    fn reload(&self) {
        let pid = std::fs::read_to_string(&self.pid).unwrap();
        run("kill", &["-HUP", pid.trim()]);
    }

    fn holds(&self) -> bool {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "ip", "-j", "addr", "show", "dev", "v0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("\"local\":\"{VIP}\""))
    }

    /// Waits (up to 10 s) until the VIP is held.
    fn wait_held(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.holds() {
            assert!(
                Instant::now() < deadline,
                "the VIP was not taken within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the VIP was missing at some poll over `span` (polls about every 20 ms).
    fn ever_missing(&self, span: Duration) -> bool {
        let end = Instant::now() + span;
        while Instant::now() < end {
            if !self.holds() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.keepalived {
            let _ = c.kill();
            let _ = c.wait();
        }
        for f in [&self.conf, &self.pid, &self.vrrp_pid] {
            let _ = std::fs::remove_file(f);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The holder's configuration: VRRP v3 at 0.5 s (a master-down interval of about 1.5 s),
/// unicast to `peers`, or multicast when `None`.
fn holder(peers: Option<&[&str]>) -> Vrrp {
    Vrrp {
        unit: "keepalived-vip/0".into(),
        instance: "live".into(),
        interface: "v0".into(),
        vrid: 78,
        priority: 250,
        advert_cs: 50,
        version: 3,
        preempt: false,
        unicast: peers.map(|p| Unicast {
            src: "10.231.1.10".parse().unwrap(),
            peers: p.iter().map(|a| a.parse().unwrap()).collect(),
        }),
        password: None,
        vips: vec![Placement {
            cidr: format!("{VIP}/24").parse::<Cidr>().unwrap(),
            dev: "v0".into(),
        }],
        checks: Vec::new(),
        // The charm's notify script asks a unit agent, which this machine has none of.
        notify: "/bin/true".into(),
    }
}

#[test]
fn a_reload_keeps_the_vip_while_unicast_and_drops_it_when_switching_to_multicast() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut lab = Lab::new("a");
    lab.write(&holder(Some(&["10.231.1.11"])));
    lab.start();
    lab.wait_held();
    // The departed peer replaced by one that joins: still unicast from the same source.
    lab.write(&holder(Some(&["10.231.1.12"])));
    lab.reload();
    assert!(
        !lab.ever_missing(Duration::from_secs(3)),
        "a reload with other unicast peers dropped the VIP"
    );
    // What the charm rendered before issue 17 when the last peer left: multicast.
    lab.write(&holder(None));
    lab.reload();
    assert!(
        lab.ever_missing(Duration::from_secs(3)),
        "the switch to multicast kept the VIP: keepalived no longer replaces the instance, and \
         reconcile::unicast_peers may be unneeded"
    );
    lab.wait_held();
}
