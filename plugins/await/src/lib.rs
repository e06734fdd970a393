//! Journey step `await`: wait for an event about the instance, until a
//! deadline.
//!
//! ```toml
//! [steps.config]
//! event = "webinar.registered"
//! timeout = "3d"                  # a duration from now: 3d, 12h, 30m, 45s, 1d 12h
//! # or a time in the instance context, optionally moved:
//! # until = "ends_at_ms"
//! # offset = "1h"                 # may start with `-`
//! ```
//!
//! Transitions: `arrived` (the next step sees the event) and `timeout`. A
//! deadline already past takes `timeout` at once instead of waiting. On
//! its first run in an instance the step saves the current event's data as
//! the instance `context`, so `until` can name a field of the trigger's
//! data. Which events match (the customer's, or those correlated on a data
//! key) is the journey step's `correlate_on`.

use journey_plugin_common::context::ensure_context;
use journey_plugin_common::deadline::Deadline;
use journey_sdk::{Context, Outcome, Step, export_step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    event: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    offset: Option<String>,
}

/// Wait for `kind` until `deadline_ms`, or time out at once when it has
/// passed (the host refuses a wait of 0 ms).
fn wait(kind: &str, deadline_ms: u64, now_ms: u64) -> Outcome {
    match deadline_ms.saturating_sub(now_ms) {
        0 => Outcome::goto("timeout"),
        timeout_ms => Outcome::WaitForEvent {
            kind: kind.to_owned(),
            timeout_ms,
            on_event: "arrived".into(),
            on_timeout: "timeout".into(),
        },
    }
}

struct AwaitEvent;

impl Step for AwaitEvent {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let deadline = Deadline::from_config(
            "timeout",
            config.timeout.as_deref(),
            config.until.as_deref(),
            config.offset.as_deref(),
        )?;
        let context = ensure_context(ctx)?;
        let now = ctx.now_ms();
        let deadline_ms = deadline.at_ms(now, &context)?;
        let outcome = wait(&config.event, deadline_ms, now);
        if outcome == Outcome::goto("timeout") {
            ctx.info(&format!(
                "not waiting for {}: the deadline has passed",
                config.event
            ));
        }
        Ok(outcome)
    }
}

export_step!(AwaitEvent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_time_left() {
        assert_eq!(
            wait("webinar.registered", 5_000, 1_000),
            Outcome::WaitForEvent {
                kind: "webinar.registered".into(),
                timeout_ms: 4_000,
                on_event: "arrived".into(),
                on_timeout: "timeout".into(),
            }
        );
    }

    #[test]
    fn a_deadline_already_past_times_out_at_once() {
        assert_eq!(
            wait("webinar.attended", 1_000, 1_000),
            Outcome::goto("timeout")
        );
        assert_eq!(wait("webinar.attended", 0, 1_000), Outcome::goto("timeout"));
    }

    #[test]
    fn config_needs_the_event_and_refuses_unknown_fields() {
        let error = serde_json::from_str::<Config>(r#"{"timeout": "3d"}"#).expect_err("no event");
        assert!(error.to_string().contains("`event`"), "{error}");
        let error =
            serde_json::from_str::<Config>(r#"{"event": "x", "timout": "3d"}"#).expect_err("typo");
        assert!(error.to_string().contains("timout"), "{error}");
    }
}
