//! # charm-lib: Juju machine charms in Rust
//!
//! A library before a framework: a charm's `main` reads the event and calls its own handler;
//! charm-lib maps Juju to Rust and makes testing easy. Layers, bottom to top:
//!
//! 1. [`tools`]: a typed function per hook tool over one [`tools::ToolRunner`] trait (the
//!    real tools on PATH in production, an in-memory model in tests).
//! 2. [`event`]: the event, parsed once from the JUJU_* environment.
//! 3. [`model`]: identity, leadership, typed config, relations with typed databags
//!    ([`databag`]) and Juju's app-databag rules, typed charm state ([`charm_state`]),
//!    secrets, ports, addresses; on it,
//!    [`shared_secret`]: the application secret the leader creates and every unit reads.
//! 4. [`status`]: collect-status: handlers report, one place decides.
//! 5. [`machine`]: the host: commands, atomic files with owner and mode, packages, services.
//! 6. [`dispatch`]: `main` for a charm binary, and [`logger`] routing `log` to `juju-log`;
//!    [`juju_exec`]: asking the unit agent for a hook from a background process.
//! 7. `testing` (feature `testing`): State in, run(event), State out.
//!
//! ```no_run
//! fn handle(ctx: &mut charm_lib::Context) -> anyhow::Result<()> {
//!     let port: Option<u16> = ctx.model.config::<serde_json::Value>()?["port"].as_u64().map(|p| p as u16);
//!     ctx.status(match port {
//!         Some(p) => charm_lib::Status::active(format!("listening on {p}")),
//!         None => charm_lib::Status::blocked("set port"),
//!     });
//!     Ok(())
//! }
//! fn main() {
//!     charm_lib::main(handle)
//! }
//! ```
#![warn(missing_docs)]

pub mod cert_metrics;
pub mod charm_state;
pub mod config;
pub mod cos_agent;
pub mod cron;
pub mod databag;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod juju_exec;
pub mod logger;
pub mod machine;
pub mod model;
pub mod random;
pub mod shared_secret;
pub mod snap_channel;
pub mod spec;
pub mod status;
pub mod tls;
pub mod tools;

// Compiled for charm-lib's own unit tests too, so `cargo test -p charm-lib` runs FakeJuju's.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "pack")]
pub mod pack;

pub use config::CharmConfig;
pub use dispatch::{main, Context};
pub use error::{Error, Result};
pub use event::{Event, EventKind, RelationEvent, RelationPhase, SecretEvent, SecretPhase};
pub use machine::{Cmd, CmdOutput, FileOptions, Machine, MachineError, MachineExt, ServiceOp};
pub use model::{Model, Relation};
pub use shared_secret::SharedSecret;
pub use status::{Status, StatusKind};
pub use tools::{Databag, Port, RelationId};
