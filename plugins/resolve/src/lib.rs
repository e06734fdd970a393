//! Enquiry step `resolve`: confirm the resolution to the customer and
//! record the resolved enquiry in their history, so later enquiries can be
//! answered from it.
//!
//! ```toml
//! [steps.config]
//! subject = "Your enquiry is resolved"
//! template = "Hi {name}, your enquiry {enquiry_id} has been resolved by {agent}: {resolution}"
//! ```
//!
//! Placeholders: `{name}`, `{enquiry_id}`, `{team}`, `{resolution}` and
//! `{agent}`. When the current event is the team's resolution
//! (`enquiry.resolved`, data `enquiry_id`, `resolution`, `agent`), the last
//! two are the team's answer and the agent's name; otherwise (a journey
//! that resolves straight after the hand-over), and for a resolution that
//! leaves either blank, they are the hand-over's suggested reply and "our
//! `<team>` team". The `enquiry.resolved` note
//! keeps the enquiry text with the reply given, and the agent and
//! resolution when there was one. Transition: `done`.

use journey_plugin_common::context::saved_context;
use journey_plugin_common::template::Placeholders;
use journey_sdk::{Context, Message, Outcome, Step, export_step};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The event kind of the team's resolution.
const RESOLUTION_EVENT: &str = "enquiry.resolved";

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

/// The data of an `enquiry.resolved` event (its `enquiry_id` is the
/// instance's: the wait is correlated on it).
#[derive(Debug, Deserialize)]
struct Resolution {
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    agent: String,
}

#[derive(Deserialize)]
struct Handover {
    team: String,
    suggested_reply: String,
}

/// What the customer is told: the reply and who gave it.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    reply: String,
    agent: String,
}

fn answer(resolution: Option<&Resolution>, handover: &Handover) -> Answer {
    let given = |text: &str| Some(text.to_owned()).filter(|text| !text.trim().is_empty());
    Answer {
        reply: resolution
            .and_then(|resolution| given(&resolution.resolution))
            .unwrap_or_else(|| handover.suggested_reply.clone()),
        agent: resolution
            .and_then(|resolution| given(&resolution.agent))
            .unwrap_or_else(|| format!("our {} team", handover.team)),
    }
}

fn render(template: &str, name: &str, enquiry_id: &str, team: &str, answer: &Answer) -> String {
    let values: Map<String, Value> = [
        ("name", name),
        ("enquiry_id", enquiry_id),
        ("team", team),
        ("resolution", &answer.reply),
        ("agent", &answer.agent),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), json!(value)))
    .collect();
    Placeholders::new().then(&values).render(template)
}

struct Resolve;

impl Step for Resolve {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let resolution: Option<Resolution> = if ctx.event().kind == RESOLUTION_EVENT {
            Some(ctx.event_data()?)
        } else {
            None
        };
        // After a wait the current event is the resolution; the enquiry
        // itself is in the context the wait saved.
        let enquiry: Enquiry = match saved_context(ctx)? {
            Some(context) => serde_json::from_value(Value::Object(context)).map_err(|source| {
                journey_sdk::Error::State {
                    key: "context".into(),
                    source,
                }
            })?,
            None => ctx.event_data()?,
        };
        let Some(handover) = ctx.get::<Handover>("handover")? else {
            return Err(journey_sdk::Error::Failed(
                "no handover in the instance state: the handover step must run first".into(),
            ));
        };
        let channel: String = ctx.get("channel")?.unwrap_or_else(|| "email".into());
        let category: String = ctx
            .get::<Value>("classification")?
            .and_then(|c| c["category"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = ctx
            .customer_with_history(0)
            .profile_str("name")
            .unwrap_or("there")
            .to_owned();
        let answer = answer(resolution.as_ref(), &handover);
        let body = render(
            &config.template,
            &name,
            &enquiry.enquiry_id,
            &handover.team,
            &answer,
        );
        if let Err(refused) = ctx.send(Message::new(channel.as_str(), body).subject(config.subject))
        {
            // A capped confirmation is recorded in history; the enquiry is
            // resolved all the same.
            ctx.warn(&format!("confirmation not sent: {}", refused.describe()));
        }
        ctx.note(
            &channel,
            "enquiry.resolved",
            &enquiry.text,
            &json!({
                "enquiry_id": enquiry.enquiry_id,
                "category": category,
                "team": handover.team,
                "reply": answer.reply,
                "agent": resolution.as_ref().map(|r| &r.agent),
                "resolution": resolution.as_ref().map(|r| &r.resolution),
            }),
        );
        let now = ctx.now_ms();
        ctx.set("resolved_at_ms", &now)?;
        ctx.count("enquiries_resolved", 1);
        Ok(Outcome::goto("done"))
    }
}

export_step!(Resolve);

#[cfg(test)]
mod tests {
    use super::*;

    fn handover() -> Handover {
        Handover {
            team: "billing".into(),
            suggested_reply: "We refunded the duplicate charge.".into(),
        }
    }

    const TEMPLATE: &str = "Hi {name}, {agent} resolved {enquiry_id} ({team}): {resolution}";

    #[test]
    fn without_a_resolution_the_suggested_reply_is_confirmed() {
        let answer = answer(None, &handover());
        assert_eq!(
            render(TEMPLATE, "Ada", "q-1", "billing", &answer),
            "Hi Ada, our billing team resolved q-1 (billing): We refunded the duplicate charge."
        );
    }

    #[test]
    fn the_teams_resolution_and_agent_are_confirmed() {
        let resolution: Resolution = serde_json::from_value(json!({
            "enquiry_id": "q-1",
            "resolution": "Refunded 42 EUR to your card.",
            "agent": "Sam",
        }))
        .expect("resolution data parses");
        let answer = answer(Some(&resolution), &handover());
        assert_eq!(
            render(TEMPLATE, "Ada", "q-1", "billing", &answer),
            "Hi Ada, Sam resolved q-1 (billing): Refunded 42 EUR to your card."
        );
        let blank = Resolution {
            resolution: String::new(),
            agent: " ".into(),
        };
        assert_eq!(
            super::answer(Some(&blank), &handover()),
            Answer {
                reply: "We refunded the duplicate charge.".into(),
                agent: "our billing team".into(),
            }
        );
    }
}
