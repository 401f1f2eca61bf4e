//! Where things live in the model directory (tests/CONTRACTS.md §3).

use std::path::{Path, PathBuf};

/// Paths inside one model directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// The layout of `dir` (made absolute so hooks in any cwd can use it).
    pub fn new(dir: &Path) -> Layout {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(dir)
        };
        Layout { dir }
    }
    /// The default model dir: `$LM_MODEL_DIR`, else `build/local-model`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("LM_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("build/local-model"))
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// CLI <-> daemon socket.
    pub fn lm_sock(&self) -> PathBuf {
        self.dir.join("lm.sock")
    }
    /// Hook tools <-> daemon socket (JUJU_AGENT_SOCKET_ADDRESS).
    pub fn agent_sock(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// Hook-tool symlinks to the multi-call binary.
    pub fn tools(&self) -> PathBuf {
        self.dir.join("tools")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// The model's copies of deployed charms.
    pub fn charms(&self) -> PathBuf {
        self.dir.join("charms")
    }
    pub fn resources(&self) -> PathBuf {
        self.dir.join("resources")
    }
    /// Bare machines' directories.
    pub fn bare_machines(&self) -> PathBuf {
        self.dir.join("machines")
    }
    /// The hosts lab's state dir.
    pub fn lab(&self) -> PathBuf {
        self.dir.join("lab")
    }
    pub fn daemon_pid(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// A unit's log file (hook output, juju-log).
    pub fn unit_log(&self, unit: &str) -> PathBuf {
        self.logs()
            .join(format!("unit-{}.log", unit.replace('/', "-")))
    }
}
