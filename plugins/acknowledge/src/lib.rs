//! Enquiry step `acknowledge`: tell the customer at once, on the channel
//! they wrote on, that their enquiry arrived.
//!
//! Config: `template` (with `{name}` and `{enquiry_id}` placeholders),
//! `subject`, `default_channel`. Transition: `sent`.

use journey_sdk::{Context, Message, Outcome, Step, export_step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    template: String,
    #[serde(default)]
    subject: String,
    #[serde(default = "default_channel")]
    default_channel: String,
}

fn default_channel() -> String {
    "email".into()
}

#[derive(Deserialize)]
struct Enquiry {
    enquiry_id: String,
    #[serde(default)]
    channel: Option<String>,
}

/// The channel to answer on: where the customer wrote, else their
/// preference, else the journey's default.
fn reply_channel(enquiry: &Enquiry, preferred: Option<&str>, default: &str) -> String {
    enquiry
        .channel
        .as_deref()
        .or(preferred)
        .unwrap_or(default)
        .to_owned()
}

fn render(template: &str, name: &str, enquiry_id: &str) -> String {
    template
        .replace("{name}", name)
        .replace("{enquiry_id}", enquiry_id)
}

struct Acknowledge;

impl Step for Acknowledge {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let enquiry: Enquiry = ctx.event_data()?;
        let customer = ctx.customer_with_history(0);
        let name = customer.profile_str("name").unwrap_or("there");
        let channel = reply_channel(
            &enquiry,
            customer.profile_str("preferred_channel"),
            &config.default_channel,
        );
        let body = render(&config.template, name, &enquiry.enquiry_id);
        let sent = ctx.send(Message::new(channel.as_str(), body).subject(config.subject.clone()));
        ctx.set("channel", &channel)?;
        match sent {
            Ok(id) => ctx.set("acknowledgement", &id)?,
            // Capped: history records it; the enquiry goes on regardless.
            Err(refused) => ctx.warn(&format!("acknowledgement not sent: {}", refused.describe())),
        }
        let now = ctx.now_ms();
        ctx.set("acknowledged_at_ms", &now)?;
        Ok(Outcome::goto("sent"))
    }
}

export_step!(Acknowledge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_on_the_channel_the_customer_wrote_on() {
        let enquiry = Enquiry {
            enquiry_id: "q-1".into(),
            channel: Some("chat".into()),
        };
        assert_eq!(reply_channel(&enquiry, Some("sms"), "email"), "chat");
        let enquiry = Enquiry {
            enquiry_id: "q-1".into(),
            channel: None,
        };
        assert_eq!(reply_channel(&enquiry, Some("sms"), "email"), "sms");
        assert_eq!(reply_channel(&enquiry, None, "email"), "email");
    }

    #[test]
    fn the_whole_step_acknowledges_on_the_customer_s_channel_or_goes_on_when_capped() {
        use journey_sdk::testing::TestStep;
        use serde_json::json;

        let step = TestStep::new()
            .config(json!({ "template": "Hi {name}, we got {enquiry_id}.", "subject": "Got it" }))
            .event("enquiry.received", json!({ "enquiry_id": "q-7" }))
            .profile(json!({ "name": "Ada", "preferred_channel": "sms" }))
            .now_ms(1_000);
        let run = step.clone().run::<Acknowledge>();
        assert_eq!(run.outcome, Ok(Outcome::goto("sent")));
        assert_eq!(run.messages.len(), 1);
        assert_eq!(run.messages[0].channel, "sms");
        assert_eq!(run.messages[0].body, "Hi Ada, we got q-7.");
        let state = run.state.expect("state set");
        assert_eq!(state["acknowledgement"], json!(run.messages[0].id));
        assert_eq!(state["acknowledged_at_ms"], json!(1_000));

        let capped = step.cap("sms", 0).run::<Acknowledge>();
        assert_eq!(capped.outcome, Ok(Outcome::goto("sent")));
        assert!(capped.messages.is_empty());
        assert_eq!(capped.refused.len(), 1);
        assert!(
            capped.logs[0].1.contains("frequency cap"),
            "{:?}",
            capped.logs
        );

        let broken = TestStep::new().run::<Acknowledge>();
        assert!(
            broken
                .outcome
                .is_err_and(|error| error.contains("invalid step config")),
        );
    }

    #[test]
    fn fills_the_template() {
        assert_eq!(
            render("Hi {name}, got {enquiry_id}.", "Ada", "q-7"),
            "Hi Ada, got q-7."
        );
    }
}
