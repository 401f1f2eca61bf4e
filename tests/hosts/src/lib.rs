//! Machines for the local model.
//!
//! A [`Lab`] is a private bridge (in a network namespace of its own) and a set of [`Host`]s.
//! Each host has its own network, mount, PID and UTS namespaces, its own IP on the bridge,
//! overlays of the machine's `/etc`, `/var`, `/usr`, `/opt`, `/srv`, `/snap`, `/root`, `/home`
//! and tmpfs `/run`, `/tmp`. Its PID 1 is the `host-runtime` binary of this crate, which
//! also provides `systemctl`, `apt-get`, `apt`, `snap`, `dpkg-query` and `journalctl` inside
//! the host.
//!
//! The machine's own interfaces, routes and firewall are never touched: every link lives in
//! a namespace the lab created. See `tests/CONTRACTS.md` sections 1 and 2.

#![warn(missing_docs)]

mod cleanup;
mod disk;
mod host;
mod lab;
mod layout;
mod net;
mod procs;
mod run;
mod runtime_bin;

pub use host::{Host, Target};
pub use lab::{Lab, LabConfig};
pub use runtime_bin::{RUNTIME_BIN_ENV, RUNTIME_BIN_NAME};
