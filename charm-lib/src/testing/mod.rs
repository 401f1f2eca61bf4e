//! Layer 7: state-transition tests, in the style of ops' Scenario and goops' goopstest.
//!
//! Arrange a [`State`], act with one [`Trigger`], assert on the [`Output`]:
//!
//! ```
//! use charm_lib::testing::{Harness, State, Trigger};
//! use charm_lib::{spec::CharmSpec, Context, Status};
//!
//! fn handle(ctx: &mut Context) -> anyhow::Result<()> {
//!     let cfg: serde_json::Value = ctx.model.config()?;
//!     ctx.status(match cfg["vip"].as_str() {
//!         Some(v) if !v.is_empty() => Status::active(format!("VIP {v}")),
//!         _ => Status::blocked("set vip"),
//!     });
//!     Ok(())
//! }
//!
//! let spec = CharmSpec::parse(
//!     "name: demo\nsummary: s\ndescription: d\n",
//!     Some("options:\n  vip:\n    type: string\n    default: ''\n    description: v\n"),
//!     None,
//! ).unwrap();
//! let h = Harness::from_spec(spec, handle);
//! let out = h.run(Trigger::ConfigChanged, &State::default()).unwrap();
//! assert_eq!(out.state.unit_status, Status::blocked("set vip"));
//! let out = h.run(Trigger::ConfigChanged, &State::default().with_config("vip", "10.0.0.100/24")).unwrap();
//! assert_eq!(out.state.unit_status, Status::active("VIP 10.0.0.100/24"));
//! // A hook that must succeed: a failure fails the test with the hook's error and its log.
//! let out = h.run_ok(Trigger::ConfigChanged, &State::default());
//! assert!(out.logs.is_empty());
//! // Juju could never send a config option the charm does not declare:
//! assert!(h.run(Trigger::ConfigChanged, &State::default().with_config("nope", 1)).is_err());
//! ```

mod fake_juju;
mod fake_machine;
mod gnuflag;
mod harness;
mod state;

pub use fake_juju::{ActionOutput, FakeJuju, MODEL_UUID};
pub use fake_machine::FakeMachine;
pub use harness::{Handler, Harness, Inconsistent, Output, Trigger};
pub use state::{
    bag, MachineState, Network, Relation, RelationKind, Responder, Secret, SecretHolder, Service,
    State, VFile,
};

#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
