//! The local model: a runtime that runs packed `.charm` files the way Juju's unit agent
//! does (hooks, hook tools, ordering, transactional flush, retries), on machines that are
//! namespaced hosts (`hosts` crate, feature `namespaced`) or bare directories (fast tests).
//!
//! Entry points: the `lm` binary (CLI, daemon and multi-call hook tool) and
//! [`client::LocalModel`] for tests.

pub mod bundle;
pub mod charm;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod hookctx;
pub mod hooktools;
pub mod juju_exec;
pub mod layout;
pub mod machines;
#[cfg(feature = "namespaced")]
pub mod namespaced;
pub mod ops;
pub mod protocol;
pub mod resolver;
pub mod state;
pub mod status;
pub mod toolclient;

pub use client::LocalModel;
pub use protocol::{AppPlan, DeployPlan, FaultOp, Request};
pub use state::Substrate;
