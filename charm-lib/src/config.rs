//! A charm's options, loaded one way in every charm: Juju's config map becomes the charm's own
//! typed, validated config, and a value that does not fit blocks the unit with a message that
//! names the option and the form it expects (`Context::load_config`).

use serde_json::{Map, Value};

/// A charm's validated config.
pub trait CharmConfig: Sized {
    /// What a bad option is; its text is the Blocked message, so it names the option.
    type Error: std::fmt::Display;

    /// Validates every option of `options` (as `config-get --all` prints them).
    fn from_options(options: &Map<String, Value>) -> Result<Self, Self::Error>;
}
