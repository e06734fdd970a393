//! What the WIT contract promises about a step's output, enforced where it
//! crosses into the host: sizes, names and JSON. A plugin that breaks it
//! fails its own step, with an error naming the call, the field and the
//! limit; nothing of the attempt is committed.
//!
//! Checked here: the arguments of `outbox.send`, `customer.note` and
//! `log.write`, and the step's returned state and outcome. Not here: what
//! a value means to a journey (a transition the step does not define, a
//! window's time zone); the executor decides that.

use super::bindings::journey::plugin::types::{Outcome, StepOutput};

/// How large what a step hands the host may be. The defaults fit every
/// first-party plugin with room to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits {
    /// The instance state a step returns (JSON), bytes.
    pub state_bytes: usize,
    /// A message body, bytes.
    pub message_bytes: usize,
    /// A `json` argument: a message's metadata, a note's details, bytes.
    pub json_bytes: usize,
    /// Free text: a note's text, a log line, a `fail` reason, bytes.
    pub text_bytes: usize,
    /// Names and short strings: channels, kinds, addresses, subjects,
    /// transitions, time zones, bytes.
    pub name_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            state_bytes: 256 * 1024,
            message_bytes: 64 * 1024,
            json_bytes: 16 * 1024,
            text_bytes: 16 * 1024,
            name_bytes: 1024,
        }
    }
}

/// How a step broke the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A value is larger than its limit.
    #[error("{place}: `{field}` is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The call or return value (`outbox.send`, `returned state` ...).
        place: &'static str,
        /// The field.
        field: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A `json` value does not parse, or is not the JSON object the
    /// contract asks for.
    #[error("{place}: `{field}` is not a JSON object: {reason}")]
    NotAnObject {
        /// The call.
        place: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A step made more calls of one kind than a step may.
    #[error("{place}: more than {limit} calls in one step")]
    TooMany {
        /// The call.
        place: &'static str,
        /// How many a step may make.
        limit: usize,
    },
    /// A channel name is malformed.
    #[error("{place}: channel `{channel}` is not a valid name (1-64 of A-Z a-z 0-9 . _ -)")]
    BadChannel {
        /// The call.
        place: &'static str,
        /// The name (truncated).
        channel: String,
    },
}

impl Violation {
    /// A trap carrying this violation out of a host call.
    pub fn trap(self) -> wasmtime::Error {
        wasmtime::Error::new(self)
    }
}

/// `value` must be at most `limit` bytes.
pub fn check_size(
    place: &'static str,
    field: &'static str,
    value: &str,
    limit: usize,
) -> Result<(), Violation> {
    if value.len() > limit {
        return Err(Violation::TooLarge {
            place,
            field,
            size: value.len(),
            limit,
        });
    }
    Ok(())
}

/// `value` must be a JSON object of at most `limit` bytes.
pub fn check_object(
    place: &'static str,
    field: &'static str,
    value: &str,
    limit: usize,
) -> Result<(), Violation> {
    check_size(place, field, value, limit)?;
    crate::json::check_object(value).map_err(|error| Violation::NotAnObject {
        place,
        field,
        reason: error.to_string(),
    })
}

/// `channel` must be a valid name.
pub fn check_channel(place: &'static str, channel: &str) -> Result<(), Violation> {
    if crate::journey::is_valid_name(channel) {
        Ok(())
    } else {
        Err(Violation::BadChannel {
            place,
            channel: channel.chars().take(64).collect(),
        })
    }
}

/// A step's returned state and outcome must fit the limits.
pub fn check_output(output: &StepOutput, limits: &OutputLimits) -> Result<(), Violation> {
    const PLACE: &str = "returned outcome";
    if let Some(state) = &output.state {
        check_size("returned state", "state", state, limits.state_bytes)?;
    }
    let name = |field, value: &str| check_size(PLACE, field, value, limits.name_bytes);
    match &output.outcome {
        Outcome::Goto(transition) => name("goto", transition),
        Outcome::Complete => Ok(()),
        Outcome::Fail(reason) => check_size(PLACE, "fail", reason, limits.text_bytes),
        Outcome::WaitForEvent(wait) => {
            name("wait-for-event.kind", &wait.kind)?;
            name("wait-for-event.on-event", &wait.on_event)?;
            name("wait-for-event.on-timeout", &wait.on_timeout)
        }
        Outcome::SleepUntil(sleep) => {
            name("sleep-until.then", &sleep.then)?;
            match &sleep.window {
                Some(window) => name("sleep-until.window.time-zone", &window.time_zone),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_argument_must_be_an_object_within_its_limit() {
        assert!(check_object("outbox.send", "metadata", r#"{"a": [1]}"#, 100).is_ok());
        let not_json = check_object("outbox.send", "metadata", "{nope", 100).expect_err("bad");
        assert!(
            not_json
                .to_string()
                .starts_with("outbox.send: `metadata` is not a JSON object"),
            "{not_json}"
        );
        let array = check_object("customer.note", "details", "[1]", 100).expect_err("bad");
        assert!(array.to_string().contains("found an array"), "{array}");
        let large = check_object(
            "outbox.send",
            "metadata",
            &format!(r#"{{"a":"{}"}}"#, "x".repeat(200)),
            100,
        )
        .expect_err("too large");
        assert_eq!(
            large.to_string(),
            "outbox.send: `metadata` is 208 bytes, over the limit of 100 bytes"
        );
    }

    #[test]
    fn returned_state_and_outcome_strings_are_bounded() {
        let limits = OutputLimits {
            state_bytes: 10,
            name_bytes: 5,
            ..OutputLimits::default()
        };
        let output = |outcome, state: Option<&str>| StepOutput {
            outcome,
            state: state.map(str::to_owned),
        };
        assert!(check_output(&output(Outcome::Goto("sent".into()), Some("{}")), &limits).is_ok());
        let state = check_output(&output(Outcome::Complete, Some(r#"{"k":"long"}"#)), &limits)
            .expect_err("too large");
        assert!(state.to_string().contains("`state` is 12 bytes"), "{state}");
        let goto = check_output(&output(Outcome::Goto("far-away".into()), None), &limits)
            .expect_err("too long");
        assert!(goto.to_string().contains("`goto`"), "{goto}");
    }

    #[test]
    fn channels_are_names() {
        assert!(check_channel("outbox.send", "email").is_ok());
        assert!(check_channel("outbox.send", "e mail").is_err());
        assert!(check_channel("outbox.send", "").is_err());
    }
}
