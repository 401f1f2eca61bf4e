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
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hosts-labs").join(prefix);
        let lab = Lab::create(LabConfig {
            dir,
            prefix: prefix.to_string(),
            subnet: format!("10.77.{net}.0/24"),
            catalog,
        })
        .expect("create lab");
        TestLab { lab: Some(lab), prefix: prefix.to_string() }
    }

    pub fn lab(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("lab")
    }

    pub fn add(&mut self, name: &str) -> Host {
        self.lab().add_host(name).unwrap_or_else(|e| panic!("add_host {name}: {e:#}"))
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
    let out = h.exec(&["sh", "-c", script]).unwrap_or_else(|e| panic!("{}: {script}: {e:#}", h.name()));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Exit code of a command run in the host.
pub fn code(h: &Host, script: &str) -> i32 {
    h.command("sh").args(["-c", script]).output().expect("run").status.code().unwrap_or(-1)
}
