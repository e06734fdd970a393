//! Enquiry step `sla`: wait for the team's resolution, at most the
//! response time the enquiry's priority allows.
//!
//! ```toml
//! [steps.config]
//! event = "enquiry.resolved"
//! sla = { high = "1h", normal = "4h", low = "1d" }   # priority → duration
//! escalated_sla = "2h"            # each further wait after an escalation
//! ```
//!
//! The priority is state `classification.priority` (written by
//! `classify`); the escalation level is state `escalation.level` (written
//! by `escalate`, 0 before any). Level 0 waits the priority's SLA, every
//! later level `escalated_sla`. The wait is kept in state `sla` =
//! `{"priority", "due_at_ms", "level"}`. Transitions: `resolved` (the
//! resolution arrived; the next step sees it) and `breached`.
//!
//! On its first run the step saves the enquiry's data as the instance
//! `context`, so the steps after the wait (which see the resolution event)
//! still have the enquiry's id, text and channel. All durations are
//! checked on every run, so a bad one fails the first enquiry, not only the
//! first one of its priority.

use std::collections::BTreeMap;

use journey_plugin_common::context::ensure_context;
use journey_plugin_common::duration::{display, duration_ms};
use journey_plugin_common::{Error, Result};
use journey_sdk::{Context, Outcome, Step, export_step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    event: String,
    sla: BTreeMap<String, String>,
    escalated_sla: String,
}

/// Response times, parsed from the config.
#[derive(Debug, PartialEq, Eq)]
struct Policy {
    by_priority: BTreeMap<String, u64>,
    escalated_ms: u64,
}

fn positive_duration(field: &str, text: &str) -> Result<u64> {
    match duration_ms(field, text)? {
        0 => Err(Error::Config {
            field: field.to_owned(),
            reason: "must be longer than 0s (every wait has a timeout)".into(),
        }),
        ms => Ok(ms),
    }
}

impl Policy {
    fn from_config(config: &Config) -> Result<Self> {
        let by_priority = config
            .sla
            .iter()
            .map(|(priority, text)| {
                positive_duration(&format!("sla.{priority}"), text).map(|ms| (priority.clone(), ms))
            })
            .collect::<Result<_>>()?;
        Ok(Policy {
            by_priority,
            escalated_ms: positive_duration("escalated_sla", &config.escalated_sla)?,
        })
    }

    /// How long to wait at escalation `level` for an enquiry of `priority`.
    fn timeout_ms(&self, priority: &str, level: u32) -> Result<u64> {
        if level > 0 {
            return Ok(self.escalated_ms);
        }
        self.by_priority
            .get(priority)
            .copied()
            .ok_or_else(|| Error::Config {
                field: "sla".into(),
                reason: format!("no response time for priority `{priority}`"),
            })
    }
}

/// The part of `classify`'s state this step reads.
#[derive(Deserialize)]
struct Classification {
    priority: String,
}

/// The part of `escalate`'s state this step reads.
#[derive(Deserialize)]
struct Escalation {
    level: u32,
}

/// The wait as kept in state.
#[derive(Debug, Serialize)]
struct Sla {
    priority: String,
    due_at_ms: u64,
    level: u32,
}

struct AwaitResolution;

impl Step for AwaitResolution {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let policy = Policy::from_config(&config)?;
        let Some(Classification { priority }) = ctx.get("classification")? else {
            return Err(Error::MissingState {
                key: "classification".into(),
                producer: "classify".into(),
            }
            .into());
        };
        let level = ctx
            .get::<Escalation>("escalation")?
            .map_or(0, |escalation| escalation.level);
        let timeout_ms = policy.timeout_ms(&priority, level)?;
        ensure_context(ctx)?;
        let due_at_ms = ctx.now_ms().saturating_add(timeout_ms);
        ctx.info(&format!(
            "waiting up to {} for {} ({priority} priority, escalation level {level})",
            display(timeout_ms),
            config.event
        ));
        ctx.set(
            "sla",
            &Sla {
                priority,
                due_at_ms,
                level,
            },
        )?;
        Ok(Outcome::WaitForEvent {
            kind: config.event,
            timeout_ms,
            on_event: "resolved".into(),
            on_timeout: "breached".into(),
        })
    }
}

export_step!(AwaitResolution);

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    fn config(sla: &[(&str, &str)], escalated_sla: &str) -> Config {
        Config {
            event: "enquiry.resolved".into(),
            sla: sla
                .iter()
                .map(|(priority, text)| ((*priority).to_owned(), (*text).to_owned()))
                .collect(),
            escalated_sla: escalated_sla.into(),
        }
    }

    #[test]
    fn the_first_wait_follows_the_priority_later_ones_the_escalated_sla() {
        let policy = Policy::from_config(&config(
            &[("high", "1h"), ("normal", "4h"), ("low", "1d")],
            "2h",
        ))
        .expect("valid config");
        assert_eq!(policy.timeout_ms("high", 0), Ok(HOUR_MS));
        assert_eq!(policy.timeout_ms("low", 0), Ok(24 * HOUR_MS));
        assert_eq!(policy.timeout_ms("low", 1), Ok(2 * HOUR_MS));
        assert_eq!(policy.timeout_ms("high", 3), Ok(2 * HOUR_MS));
    }

    #[test]
    fn a_priority_without_a_response_time_is_named() {
        let policy = Policy::from_config(&config(&[("high", "1h")], "2h")).expect("valid config");
        let error = policy.timeout_ms("urgent", 0).expect_err("no sla");
        assert_eq!(
            error.to_string(),
            "config `sla`: no response time for priority `urgent`"
        );
        assert_eq!(policy.timeout_ms("urgent", 1), Ok(2 * HOUR_MS));
    }

    #[test]
    fn bad_durations_name_their_field() {
        let error = Policy::from_config(&config(&[("high", "1 hour")], "2h")).expect_err("bad");
        assert!(
            error.to_string().starts_with("config `sla.high`: "),
            "{error}"
        );
        let error = Policy::from_config(&config(&[("high", "1h")], "0s")).expect_err("zero");
        assert!(
            error.to_string().starts_with("config `escalated_sla`: "),
            "{error}"
        );
    }
}
