//! Finding the `host-runtime` binary that becomes each host's init and tools.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// File name of the multi-call binary built by this crate.
pub const RUNTIME_BIN_NAME: &str = "host-runtime";
/// Environment variable that, when set, names the `host-runtime` binary to use.
pub const RUNTIME_BIN_ENV: &str = "HOSTS_RUNTIME_BIN";

/// The binary: `$HOSTS_RUNTIME_BIN`, else next to the current executable or one directory up
/// (cargo puts test executables in `target/<profile>/deps`, binaries in `target/<profile>`).
pub(crate) fn locate() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(RUNTIME_BIN_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{RUNTIME_BIN_ENV}={} is not a file", p.display());
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join(RUNTIME_BIN_NAME);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
    }
    bail!(
        "cannot find the {RUNTIME_BIN_NAME} binary (tried {tried:?}); run `cargo build -p hosts` or set {RUNTIME_BIN_ENV}"
    )
}
