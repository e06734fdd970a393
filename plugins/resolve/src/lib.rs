//! Enquiry step `resolve`: confirm the resolution to the customer and
//! record the resolved enquiry in their history, so later enquiries can be
//! answered from it.
//!
//! Config: `template` (placeholders `{name}`, `{enquiry_id}`, `{team}`),
//! `subject`. Transition: `done`.

use journey_sdk::{Context, Message, Outcome, Step, export_step};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Config {
    template: String,
    #[serde(default)]
    subject: String,
}

#[derive(Deserialize)]
struct Enquiry {
    enquiry_id: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct Handover {
    team: String,
    suggested_reply: String,
}

struct Resolve;

impl Step for Resolve {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let enquiry: Enquiry = ctx.event_data()?;
        let Some(handover) = ctx.get::<Handover>("handover")? else {
            return Err(journey_sdk::Error::Failed(
                "no handover in the instance state: the handover step must run first".into(),
            ));
        };
        let channel: String = ctx.get("channel")?.unwrap_or_else(|| "email".into());
        let category: String = ctx
            .get::<serde_json::Value>("classification")?
            .and_then(|c| c["category"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = ctx
            .customer_with_history(0)
            .profile_str("name")
            .unwrap_or("there")
            .to_owned();
        let body = config
            .template
            .replace("{name}", &name)
            .replace("{enquiry_id}", &enquiry.enquiry_id)
            .replace("{team}", &handover.team);
        ctx.send(Message::new(channel.as_str(), body).subject(config.subject));
        ctx.note(
            &channel,
            "enquiry.resolved",
            &enquiry.text,
            &json!({
                "enquiry_id": enquiry.enquiry_id,
                "category": category,
                "team": handover.team,
                "reply": handover.suggested_reply,
            }),
        );
        let now = ctx.now_ms();
        ctx.set("resolved_at_ms", &now)?;
        ctx.count("enquiries_resolved", 1);
        Ok(Outcome::goto("done"))
    }
}

export_step!(Resolve);
