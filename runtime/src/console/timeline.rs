//! An instance's timeline in words: each history entry as one moment
//! (when, what kind, a title and its details), and each message with its
//! delivery.

use std::collections::BTreeMap;

use super::timestamp;
use crate::store::{Delivery, EventRecord, HistoryEntry, OutboxMessage, StepOutcome, StepRecord};

/// The most of an event's data a timeline shows.
const EVENT_DATA_CHARS: usize = 600;

/// One moment of a timeline.
pub struct Moment {
    /// When, RFC 3339.
    pub at: String,
    /// What kind of moment, for its mark: `event`, `step`, `failed`,
    /// `wait`, `timer`, `operator`, `exit`, `split` or `migration`.
    pub kind: &'static str,
    /// One line saying what happened.
    pub title: String,
    /// The rest, one fact per line.
    pub details: Vec<String>,
}

/// The digest as people read it: `sha256:` and its first 12 hex digits.
fn short_digest(digest: &str) -> String {
    format!("sha256:{}", digest.get(..12).unwrap_or(digest))
}

/// Where a step's outcome led, and whether it failed the instance.
fn outcome(outcome: &StepOutcome) -> (String, bool) {
    match outcome {
        StepOutcome::Goto { transition, target } => (format!("{transition} → {target}"), false),
        StepOutcome::Sleep {
            until_ms,
            transition,
            target,
            requested_ms,
            window,
        } => {
            let mut text = format!(
                "sleeps until {}, then {transition} → {target}",
                timestamp(*until_ms)
            );
            if let (Some(requested), Some(window)) = (requested_ms, window) {
                text.push_str(&format!(
                    " (asked for {}, kept in the window {window})",
                    timestamp(*requested)
                ));
            }
            (text, false)
        }
        StepOutcome::WaitForEvent {
            event,
            correlation,
            until_ms,
            on_event,
            event_target,
            on_timeout,
            timeout_target,
        } => (
            format!(
                "waits for {event} ({correlation}) until {}: {on_event} → {event_target}, \
                 else {on_timeout} → {timeout_target}",
                timestamp(*until_ms)
            ),
            false,
        ),
        StepOutcome::Complete => ("completes the instance".into(), false),
        StepOutcome::Fail { reason } => (format!("failed: {}", headline(reason)), true),
    }
}

/// The most of a failure's reason a timeline's title shows; the whole
/// reason is in the moment's details.
const TITLE_CHARS: usize = 160;

/// `text`'s first line, cut to [`TITLE_CHARS`].
pub fn headline(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(TITLE_CHARS) {
        Some((cut, _)) => format!("{} …", &line[..cut]),
        None if line.len() < text.len() => format!("{line} …"),
        None => line.to_owned(),
    }
}

/// The facts of a step execution.
fn step_details(step: &StepRecord) -> Vec<String> {
    let mut details = Vec::new();
    if let StepOutcome::Fail { reason } = &step.outcome
        && headline(reason) != reason.as_str()
    {
        details.push(format!("why: {reason}"));
    }
    details.extend([
        format!(
            "plugin {} version {} ({})",
            step.plugin,
            step.plugin_version,
            short_digest(&step.digest)
        ),
        format!(
            "attempt {}, took {:.1} ms, idempotency key {}",
            step.attempt,
            step.duration_us as f64 / 1000.0,
            step.idempotency_key
        ),
    ]);
    if !step.messages.is_empty() {
        details.push(format!("queued {} message(s)", step.messages.len()));
    }
    for capped in &step.capped {
        details.push(format!(
            "a {} message was held back by a frequency cap ({} per {} s; next allowed {})",
            capped.channel,
            capped.limit,
            capped.period_ms / 1000,
            timestamp(capped.next_allowed_ms)
        ));
    }
    details.extend(
        step.logs
            .iter()
            .map(|line| format!("log {}: {}", line.level, line.message)),
    );
    details
}

/// The event ids a history names, for [`moments`] to show their data.
pub fn events_named(history: &[HistoryEntry]) -> Vec<String> {
    history
        .iter()
        .filter_map(|entry| match entry {
            HistoryEntry::EventReceived { event_id, .. }
            | HistoryEntry::EventArrived { event_id, .. }
            | HistoryEntry::Exited { event_id, .. } => Some(event_id.clone()),
            _ => None,
        })
        .collect()
}

/// The history of an instance as moments, in order; the events it names
/// show their customer and data where `events` has them.
pub fn moments(history: &[HistoryEntry], events: &BTreeMap<String, EventRecord>) -> Vec<Moment> {
    history
        .iter()
        .map(|entry| {
            let mut moment = moment(entry);
            let event = events_named(std::slice::from_ref(entry))
                .pop()
                .and_then(|id| events.get(&id));
            if let Some(event) = event {
                let data = event.data.get();
                let shown: String = data.chars().take(EVENT_DATA_CHARS).collect();
                let cut = if shown.len() < data.len() { " …" } else { "" };
                moment
                    .details
                    .push(format!("customer {}", event.customer_id));
                moment.details.push(format!("data {shown}{cut}"));
            }
            moment
        })
        .collect()
}

fn moment(entry: &HistoryEntry) -> Moment {
    let at = |ms: &u64| timestamp(*ms);
    match entry {
        HistoryEntry::EventReceived {
            at_ms,
            event_id,
            kind,
        } => Moment {
            at: at(at_ms),
            kind: "event",
            title: format!("Event {kind} started the instance"),
            details: vec![format!("event {event_id}")],
        },
        HistoryEntry::StepRan(step) => {
            let (led, failed) = outcome(&step.outcome);
            Moment {
                at: at(&step.at_ms),
                kind: if failed { "failed" } else { "step" },
                title: format!("Step {}: {led}", step.step),
                details: step_details(step),
            }
        }
        HistoryEntry::StepFailed(step) => {
            let (led, _) = outcome(&step.outcome);
            let mut details = step_details(step);
            if let Some(retry_at) = step.retry_at_ms {
                details.push(format!("next attempt due {}", timestamp(retry_at)));
            }
            Moment {
                at: at(&step.at_ms),
                kind: "failed",
                title: format!("Step {} attempt {} {led}", step.step, step.attempt),
                details,
            }
        }
        HistoryEntry::Restarted {
            at_ms,
            step,
            attempt,
        } => Moment {
            at: at(at_ms),
            kind: "operator",
            title: format!("The runtime restarted during attempt {attempt} of step {step}"),
            details: vec!["the step runs again".into()],
        },
        HistoryEntry::Retried {
            at_ms,
            step,
            plugin,
            reason,
        } => Moment {
            at: at(at_ms),
            kind: "operator",
            title: format!("Retried at step {step}"),
            details: plugin
                .iter()
                .map(|plugin| format!("on plugin {plugin}"))
                .chain([format!("reason: {reason}")])
                .collect(),
        },
        HistoryEntry::Skipped {
            at_ms,
            from_step,
            to_step,
            reason,
        } => Moment {
            at: at(at_ms),
            kind: "operator",
            title: match from_step {
                Some(from) => format!("Skipped from step {from} to {to_step}"),
                None => format!("Skipped to {to_step}"),
            },
            details: vec![format!("reason: {reason}")],
        },
        HistoryEntry::Cancelled {
            at_ms,
            step,
            reason,
        } => Moment {
            at: at(at_ms),
            kind: "operator",
            title: match step {
                Some(step) => format!("Cancelled at step {step}"),
                None => "Cancelled".into(),
            },
            details: vec![format!("reason: {reason}")],
        },
        HistoryEntry::Anonymised { at_ms, reason } => Moment {
            at: at(at_ms),
            kind: "operator",
            title: "Anonymised: its customer was forgotten".into(),
            details: vec![format!("reason: {reason}")],
        },
        HistoryEntry::Split {
            at_ms,
            step,
            variant,
            target,
        } => Moment {
            at: at(at_ms),
            kind: "split",
            title: format!("Split {step} chose variant {variant} → {target}"),
            details: Vec::new(),
        },
        HistoryEntry::EventArrived {
            at_ms,
            event_id,
            kind,
        } => Moment {
            at: at(at_ms),
            kind: "event",
            title: format!("Event {kind} arrived and ended the wait"),
            details: vec![format!("event {event_id}")],
        },
        HistoryEntry::Woke { at_ms, due_ms } => Moment {
            at: at(at_ms),
            kind: "timer",
            title: "Its timer fired".into(),
            details: vec![format!("due {}", timestamp(*due_ms))],
        },
        HistoryEntry::Exited {
            at_ms,
            event_id,
            kind,
            step,
        } => Moment {
            at: at(at_ms),
            kind: "exit",
            title: match step {
                Some(step) => format!("Exit event {kind} ended it at step {step}"),
                None => format!("Exit event {kind} ended it"),
            },
            details: vec![format!("event {event_id}")],
        },
        HistoryEntry::Migrated {
            at_ms,
            from_version,
            to_version,
            from_step,
            to_step,
        } => Moment {
            at: at(at_ms),
            kind: "migration",
            title: format!("Migrated from version {from_version} to {to_version}"),
            details: vec![format!("from step {from_step} to step {to_step}")],
        },
    }
}

/// A message a step queued, with its delivery.
pub struct MessageRow {
    pub id: String,
    pub step: String,
    pub channel: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub queued: String,
    /// `queued` when no dispatcher has picked it up yet.
    pub status: String,
    pub attempts: u32,
    pub integration: String,
    /// The last error, or the provider's id once accepted.
    pub note: String,
    /// When it is due again, while it waits.
    pub due: Option<String>,
}

/// The messages of an instance with their deliveries.
pub fn message_rows(
    messages: &[OutboxMessage],
    deliveries: &BTreeMap<String, Delivery>,
) -> Vec<MessageRow> {
    messages
        .iter()
        .map(|message| {
            let delivery = deliveries.get(&message.id);
            MessageRow {
                id: message.id.clone(),
                step: message.step.clone(),
                channel: message.channel.clone(),
                to: message.to.clone(),
                subject: message.subject.clone(),
                body: message.body.clone(),
                queued: timestamp(message.queued_at_ms),
                status: delivery.map_or_else(
                    || "queued".to_owned(),
                    |delivery| delivery.status.as_str().to_owned(),
                ),
                attempts: delivery.map_or(0, |delivery| delivery.attempts),
                integration: delivery
                    .and_then(|delivery| delivery.integration.clone())
                    .unwrap_or_default(),
                note: delivery
                    .and_then(|delivery| {
                        delivery
                            .error
                            .clone()
                            .or_else(|| delivery.provider_id.clone())
                    })
                    .unwrap_or_default(),
                due: delivery.and_then(|delivery| delivery.due_ms).map(timestamp),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::headline;

    #[test]
    fn a_long_or_many_lined_reason_is_cut_for_the_title() {
        assert_eq!(headline("plugin trapped"), "plugin trapped");
        assert_eq!(headline("trapped\nbacktrace: 0x1"), "trapped …");
        let long = "x".repeat(500);
        let cut = headline(&long);
        assert_eq!(cut.chars().count(), 162, "{cut}");
        assert!(cut.ends_with(" …"));
        assert_eq!(headline("é".repeat(200).as_str()).chars().count(), 162);
    }
}
