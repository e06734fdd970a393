//! Journey step `send`: send the customer one templated message.
//!
//! ```toml
//! [steps.config]
//! channel = "email"                       # the customer's own address on it
//! subject = "You're invited: {title}"     # optional
//! template = "Hi {name}, join us for {title}: {join_url}"
//! about = "webinar_id"                    # optional (this default): context key put in the metadata
//! before = "starts_at_ms"                 # optional: context time after which the message is pointless
//! ```
//!
//! Placeholders come from the current event's data, then the instance
//! `context` (the trigger's data, saved on the step's first run in an
//! instance so that steps after a wait still have it), then the customer
//! profile; `{name}` is "there" for a customer without one, and unknown
//! placeholders stay as written. The metadata carries the journey
//! and the `about` value, so engagement events can refer back.
//!
//! Transitions: `sent` (the message id is kept in state `last_message` and
//! a `message.sent` interaction is noted), `capped` (the customer's
//! frequency cap on the channel refused it; logged as a warning) and, only
//! with `before`, `expired` (that time has passed; nothing is sent). One
//! message more than a step may queue fails the step.

use journey_plugin_common::context::ensure_context;
use journey_plugin_common::deadline::context_time;
use journey_plugin_common::outbox::{CustomerMessage, Delivery};
use journey_sdk::{Context, Outcome, Step, export_step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    channel: String,
    #[serde(default)]
    subject: String,
    template: String,
    #[serde(default = "default_about")]
    about: String,
    #[serde(default)]
    before: Option<String>,
}

fn default_about() -> String {
    "webinar_id".into()
}

/// The transition after the outbox's answer.
fn transition(delivery: &Delivery) -> &'static str {
    match delivery {
        Delivery::Queued(_) => "sent",
        Delivery::Capped(_) => "capped",
    }
}

struct Send;

impl Step for Send {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let context = ensure_context(ctx)?;
        if let Some(key) = config.before.as_deref() {
            let before_ms = context_time("before", key, &context)?;
            if ctx.now_ms() >= before_ms {
                ctx.info(&format!("not sent: the context's `{key}` has passed"));
                return Ok(Outcome::goto("expired"));
            }
        }
        let message = CustomerMessage {
            channel: &config.channel,
            subject: &config.subject,
            template: &config.template,
            about: &config.about,
        };
        let profile = ctx.customer_with_history(0).profile;
        let delivery = message.send(ctx, &context, &profile)?;
        Ok(Outcome::goto(transition(&delivery)))
    }
}

export_step!(Send);

#[cfg(test)]
mod tests {
    use journey_sdk::FrequencyCap;
    use serde_json::json;

    use super::*;

    #[test]
    fn config_defaults_and_refuses_unknown_fields() {
        let config: Config = serde_json::from_value(json!({
            "channel": "email",
            "template": "Hi {name}",
        }))
        .expect("minimal config parses");
        assert_eq!(
            (
                config.subject.as_str(),
                config.about.as_str(),
                config.before
            ),
            ("", "webinar_id", None)
        );
        let error = serde_json::from_value::<Config>(json!({
            "channel": "email",
            "template": "Hi",
            "templte": "typo",
        }))
        .expect_err("unknown field");
        assert!(error.to_string().contains("templte"), "{error}");
    }

    #[test]
    fn a_capped_message_takes_the_capped_transition() {
        assert_eq!(transition(&Delivery::Queued("m-1".into())), "sent");
        let cap = FrequencyCap {
            channel: "email".into(),
            limit: 2,
            period_ms: 86_400_000,
            next_allowed_ms: 0,
        };
        assert_eq!(transition(&Delivery::Capped(cap)), "capped");
    }
}
