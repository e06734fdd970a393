//! Queueing messages: a frequency cap is an outcome the step decides on,
//! not a failure; queueing more than a step may is a failure.
//!
//! [`CustomerMessage`] is the templated message to the customer that the
//! `send` and `fallback` steps configure: rendered from the current event's
//! data, the instance context and the profile (in that order of
//! precedence, with `{name}` "there" when none has it), tagged with the journey and what it is about so engagement
//! events can refer back, and noted in the customer's history as
//! `message.sent`.

use journey_sdk::{Context, FrequencyCap, Message, SendError};
use serde_json::{Map, Value, json};

use crate::template::{self, Placeholders};
use crate::{Error, context, duration};

/// The state key holding the id of the last message a step queued.
pub const LAST_MESSAGE: &str = "last_message";

/// What became of a message handed to the outbox.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Queued with this id; delivered after the step commits.
    Queued(String),
    /// Refused by the customer's frequency cap on the channel; nothing is
    /// queued and the step's history records it.
    Capped(FrequencyCap),
}

/// Queue `message`. A frequency cap is logged as a warning and returned as
/// [`Delivery::Capped`]; one message more than a step may queue fails the
/// step.
pub fn queue(ctx: &mut Context, message: Message) -> journey_sdk::Result<Delivery> {
    let channel = message.channel.clone();
    match ctx.send(message) {
        Ok(id) => Ok(Delivery::Queued(id)),
        Err(SendError::FrequencyCapped(cap)) => {
            ctx.warn(&format!(
                "message not sent: {}",
                describe_cap(&cap, ctx.now_ms())
            ));
            Ok(Delivery::Capped(cap))
        }
        Err(SendError::TooManyMessages) => Err(Error::TooManyMessages { channel }.into()),
    }
}

/// A frequency cap for people, relative to `now_ms`.
pub fn describe_cap(cap: &FrequencyCap, now_ms: u64) -> String {
    format!(
        "{} frequency cap reached ({} per {}); next allowed in {}",
        cap.channel,
        cap.limit,
        duration::display(cap.period_ms),
        duration::display(cap.next_allowed_ms.saturating_sub(now_ms)),
    )
}

/// A templated message to the customer, as a step's config describes it.
#[derive(Debug, Clone, Copy)]
pub struct CustomerMessage<'a> {
    /// The channel; the address is the customer's own (`profile.<channel>`).
    pub channel: &'a str,
    /// The subject line template; may be empty.
    pub subject: &'a str,
    /// The body template.
    pub template: &'a str,
    /// The context key naming what the message is about (e.g.
    /// `webinar_id`), copied into the metadata and the note when present.
    pub about: &'a str,
}

impl CustomerMessage<'_> {
    /// Render, queue and note the message. Placeholders come from the
    /// current event's data, then `context`, then `profile` (the
    /// customer's, passed in so a step reads the view once). When it is
    /// queued, its id is kept in state as `last_message` and a
    /// `message.sent` interaction is noted with the channel and subject.
    pub fn send(
        &self,
        ctx: &mut Context,
        context: &Map<String, Value>,
        profile: &Map<String, Value>,
    ) -> journey_sdk::Result<Delivery> {
        let event: Map<String, Value> = ctx.event_data()?;
        let defaults = template::defaults();
        let values = Placeholders::new()
            .then(&event)
            .then(context)
            .then(profile)
            .then(&defaults);
        let subject = values.render(self.subject);
        let body = values.render(self.template);
        let metadata = metadata(ctx.journey(), ctx.step(), self.about, context);
        let message = Message::new(self.channel, body.as_str())
            .subject(subject.as_str())
            .metadata(metadata.clone());
        let delivery = queue(ctx, message)?;
        if let Delivery::Queued(id) = &delivery {
            ctx.set(LAST_MESSAGE, id)?;
            let mut details = metadata;
            details["message_id"] = json!(id);
            details["channel"] = json!(self.channel);
            details["subject"] = json!(subject);
            ctx.note(self.channel, "message.sent", &body, &details);
        }
        Ok(delivery)
    }
}

/// The metadata of a customer message: the journey and step that sent it
/// and, when the context has it, what it is about (`{"webinar_id": ...}`).
pub fn metadata(journey: &str, step: &str, about: &str, context: &Map<String, Value>) -> Value {
    let mut metadata = json!({ "journey": journey, "step": step });
    if let Some(value) = context::text_field(context, about) {
        metadata[about] = json!(value);
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_reads_as_its_limit_and_the_wait() {
        let cap = FrequencyCap {
            channel: "sms".into(),
            limit: 3,
            period_ms: 86_400_000,
            next_allowed_ms: 10_000 + 5_400_000,
        };
        assert_eq!(
            describe_cap(&cap, 10_000),
            "sms frequency cap reached (3 per 1d); next allowed in 1h 30m"
        );
        assert!(describe_cap(&cap, u64::MAX).ends_with("next allowed in 0s"));
    }

    #[test]
    fn metadata_names_the_journey_and_what_it_is_about() {
        let Value::Object(context) = json!({ "webinar_id": "w-42", "title": "Journeys 101" })
        else {
            unreachable!("a literal object");
        };
        assert_eq!(
            metadata("webinar", "remind", "webinar_id", &context),
            json!({ "journey": "webinar", "step": "remind", "webinar_id": "w-42" })
        );
        assert_eq!(
            metadata("webinar", "remind", "enquiry_id", &context),
            json!({ "journey": "webinar", "step": "remind" })
        );
    }
}
