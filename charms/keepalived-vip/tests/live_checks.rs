//! The rendered health checks, run by a real keepalived: a file `keepalived -t` accepts could
//! still hold a check that never passes (quoting, script security, pgrep's regex). One unit in
//! a network namespace of its own (a veth pair inside it; the machine's interfaces are never
//! touched) must take the VIP while every check passes and drop it when any one fails.

use keepalived_vip::checks::Check;
use keepalived_vip::net::Cidr;
use keepalived_vip::render::{keepalived_conf, Placement, ScriptCheck, Vrrp};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace, its processes and files; all removed on drop, even after a failed assertion.
struct Lab {
    ns: String,
    children: Vec<Child>,
    files: Vec<std::path::PathBuf>,
}

impl Lab {
    fn new() -> Lab {
        let ns = format!("kvipt{}", std::process::id());
        let lab = Lab {
            ns,
            children: Vec::new(),
            files: Vec::new(),
        };
        lab.ip(&["netns", "add", &lab.ns]);
        for args in [
            vec!["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "v0", "up"],
            vec!["link", "set", "v1", "up"],
            vec!["addr", "add", "10.231.0.10/24", "dev", "v0"],
        ] {
            lab.in_ns("ip", &args);
        }
        lab
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn in_ns(&self, program: &str, args: &[&str]) -> std::process::Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn(&mut self, program: &str, args: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// An HTTP server on 127.0.0.1:`port` inside the namespace (what the http check asks).
    fn serve_http(&mut self, port: u16) -> usize {
        let port = port.to_string();
        self.spawn(
            "python3",
            &["-m", "http.server", &port, "--bind", "127.0.0.1", "-d", "/"],
        )
    }

    fn stop(&mut self, i: usize) {
        let c = &mut self.children[i];
        let _ = c.kill();
        let _ = c.wait();
    }

    fn has(&self, addr: &str) -> bool {
        let out = self.in_ns("ip", &["-j", "addr", "show", "dev", "v0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!("\"local\":\"{addr}\""))
    }

    /// Whether the VIP comes up within 10 s.
    fn takes_vip(&self) -> bool {
        self.wait_for("10.231.0.100", true, Duration::from_secs(10))
    }

    /// Whether the VIP goes within 5 s.
    fn releases_vip(&self) -> bool {
        self.wait_for("10.231.0.100", false, Duration::from_secs(5))
    }

    /// Polls (every 50 ms, up to `limit`) until the VIP is there or gone as wanted.
    fn wait_for(&self, addr: &str, present: bool, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.has(addr) == present {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.has(addr) == present
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[test]
fn process_tcp_and_http_checks_hold_and_release_the_vip() {
    let mut lab = Lab::new();
    let port = 18000 + (std::process::id() % 1000) as u16;
    // A process whose name exists nowhere else on this machine, with a regex metacharacter.
    let name = format!("kv.{}", std::process::id() % 100000);
    let sleeper = std::env::temp_dir().join(&name);
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    lab.files.push(sleeper.clone());

    let vrrp = Vrrp {
        unit: "keepalived-vip/0".into(),
        instance: "live".into(),
        interface: "v0".into(),
        vrid: 77,
        priority: 250,
        advert_cs: 10,
        version: 3,
        preempt: false,
        unicast: None,
        password: None,
        vips: vec![Placement {
            cidr: "10.231.0.100/24".parse::<Cidr>().unwrap(),
            dev: "v0".into(),
        }],
        checks: [
            Check::Process(name.clone()),
            Check::Tcp(port),
            Check::Http(format!("http://127.0.0.1:{port}/")),
        ]
        .into_iter()
        .map(|check| ScriptCheck {
            check,
            interval: 1,
            fall: 1,
        })
        .collect(),
        // The charm's notify script asks a unit agent, which this machine has none of.
        notify: "/bin/true".into(),
    };
    let conf = std::env::temp_dir().join(format!("kvipt-{}.conf", std::process::id()));
    std::fs::write(&conf, keepalived_conf(&vrrp)).unwrap();
    lab.files.push(conf.clone());
    let conf = conf.to_str().unwrap().to_string();
    let t = lab.in_ns("keepalived", &["-t", "-f", &conf]);
    assert!(
        String::from_utf8_lossy(&t.stderr).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&t.stderr)
    );

    let proc_i = lab.spawn(sleeper.to_str().unwrap(), &["300"]);
    let web = lab.serve_http(port);
    let pid = format!("/run/kvipt-{}.pid", std::process::id());
    let vpid = format!("/run/kvipt-{}-vrrp.pid", std::process::id());
    lab.spawn(
        "keepalived",
        &[
            "--dont-fork",
            "--vrrp",
            "--log-console",
            "--no-syslog",
            "-f",
            &conf,
            "-p",
            &pid,
            "-r",
            &vpid,
        ],
    );

    assert!(lab.takes_vip(), "every check passes: the VIP is taken");
    lab.stop(web);
    assert!(
        lab.releases_vip(),
        "tcp and http checks fail: the VIP is released"
    );
    let web = lab.serve_http(port);
    assert!(lab.takes_vip(), "checks pass again: the VIP comes back");
    lab.stop(proc_i);
    assert!(
        lab.releases_vip(),
        "the process check fails: the VIP is released"
    );
    lab.stop(web);
}
