//! Shared helpers of the integration tests: root check, a lab per test, polling.

#![allow(dead_code)]

use hosts::{Host, Lab, LabConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// True (after printing why) when the tests cannot run: they need root for namespaces.
pub fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the hosts tests need root (network/mount/PID namespaces); run `cargo test -p hosts` as root");
        return true;
    }
    false
}

/// A lab that is destroyed when dropped, even if the test panics.
pub struct TestLab {
    pub lab: Option<Lab>,
    pub prefix: String,
}

impl TestLab {
    /// `prefix` must be unique per test; `net` picks the subnet 10.77.<net>.0/24.
    pub fn new(prefix: &str, net: u8, catalog: Option<PathBuf>) -> TestLab {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("hosts-labs")
            .join(prefix);
        let lab = Lab::create(LabConfig {
            dir,
            prefix: prefix.to_string(),
            subnet: format!("10.77.{net}.0/24"),
            catalog,
            shared: vec![],
        })
        .expect("create lab");
        TestLab {
            lab: Some(lab),
            prefix: prefix.to_string(),
        }
    }

    pub fn lab(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("lab")
    }

    pub fn add(&mut self, name: &str) -> Host {
        self.lab()
            .add_host(name)
            .unwrap_or_else(|e| panic!("add_host {name}: {e:#}"))
    }

    /// Destroys the lab and checks that nothing of it is left.
    pub fn destroy(mut self) {
        if let Some(l) = self.lab.take() {
            l.destroy().expect("destroy");
        }
        let left = Lab::leftovers(&self.prefix);
        assert!(left.is_empty(), "leftovers: {left:?}");
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(l) = self.lab.take() {
            let _ = l.destroy();
        }
    }
}

/// Polls `f` until it returns Some, or panics after `secs` with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// stdout of a command run in the host, trimmed; panics with stderr on failure.
pub fn sh(h: &Host, script: &str) -> String {
    let out = h
        .exec(&["sh", "-c", script])
        .unwrap_or_else(|e| panic!("{}: {script}: {e:#}", h.name()));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Exit code of a command run in the host.
pub fn code(h: &Host, script: &str) -> i32 {
    h.command("sh")
        .args(["-c", script])
        .output()
        .expect("run")
        .status
        .code()
        .unwrap_or(-1)
}

/// Writes a file inside a running host (through its root).
pub fn write(h: &Host, inside: &str, text: &str) {
    let p = h.path(inside);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// HTTP GET of http://ip:port/ from inside `from`; true on a 200.
pub fn http_ok(from: &Host, ip: std::net::Ipv4Addr, port: u16) -> bool {
    let script = format!(
        "import urllib.request,sys\ntry:\n    sys.exit(0 if urllib.request.urlopen('http://{ip}:{port}/', timeout=1).status == 200 else 1)\nexcept Exception:\n    sys.exit(1)\n"
    );
    from.command("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One ICMP echo from `from` to `to` (raw socket, via python: no ping binary here).
pub fn ping(from: &Host, to: std::net::Ipv4Addr) -> bool {
    let script = format!(
        r#"
import socket, struct, sys, os
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
ident = os.getpid() & 0xffff
hdr = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'hosts-test'
pkt = struct.pack('!BBHHH', 8, 0, csum(hdr), ident, 1) + b'hosts-test'
try:
    s.sendto(pkt, ('{to}', 0))
    while True:
        data, addr = s.recvfrom(1500)
        icmp = data[(data[0] & 0xf) * 4:]
        if addr[0] == '{to}' and icmp[0] == 0 and struct.unpack('!H', icmp[4:6])[0] == ident:
            sys.exit(0)
except Exception:
    sys.exit(1)
"#
    );
    from.command("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .is_ok_and(|o| o.status.success())
}
