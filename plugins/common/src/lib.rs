//! Helpers the first-party step plugins share, so each plugin holds only
//! its own decision.
//!
//! - [`duration`]: the duration strings journey configs use (`3d`, `1d 12h`,
//!   `-1h`) and their display.
//! - [`template`]: `{placeholder}` rendering from layered JSON objects.
//! - [`context`]: the instance `context`, the trigger's data kept in state
//!   so that steps after a wait (which see the arriving event) still have it.
//! - [`deadline`]: a point in time given as a duration from now or as a
//!   context field plus an offset.
//! - [`outbox`]: queueing messages with frequency caps handled as an
//!   outcome, and the templated customer message of `send` and `fallback`.
//!
//! This crate is a plain library linked into each plugin component; it is
//! not a plugin itself and adds nothing to the WIT contract. Everything
//! except the few functions taking a [`journey_sdk::Context`] is pure and
//! tested on the host.

#![deny(missing_docs)]

pub mod context;
pub mod deadline;
pub mod duration;
pub mod outbox;
pub mod template;

/// Why a shared helper refused its input. Each variant names the config
/// field or state key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A config field holds a duration that does not parse.
    #[error(
        "config `{field}`: `{value}` is not a duration ({reason}); write e.g. `3d`, `12h`, `30m`, `45s` or `1d 12h`"
    )]
    Duration {
        /// The config field, e.g. `timeout` or `sla.high`.
        field: String,
        /// The text as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A config field is missing, or clashes with another.
    #[error("config `{field}`: {reason}")]
    Config {
        /// The config field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A deadline refers to a context field that does not hold a time.
    #[error(
        "config `{field}`: the instance context has no `{key}` holding a time in ms since the Unix epoch"
    )]
    MissingTime {
        /// The config field naming the context key (`until`).
        field: String,
        /// The context key.
        key: String,
    },
    /// A step needs state that an earlier step writes.
    #[error("no `{key}` in the instance state: the `{producer}` step must run first")]
    MissingState {
        /// The state key.
        key: String,
        /// The plugin that writes it.
        producer: String,
    },
    /// The step already queued the most messages one step may.
    #[error(
        "message on `{channel}` not queued: the step already queued the most messages one step may"
    )]
    TooManyMessages {
        /// The channel of the refused message.
        channel: String,
    },
}

/// Result of the shared helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for journey_sdk::Error {
    fn from(error: Error) -> Self {
        journey_sdk::Error::Failed(error.to_string())
    }
}
