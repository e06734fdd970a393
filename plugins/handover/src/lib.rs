//! Enquiry step `handover`: assign the enquiry to a team with the single
//! customer view attached, so nobody asks the customer again.
//!
//! The team comes from the category (`teams`, else `default_team`); a
//! priority listed in `escalate_priorities` goes to `escalation_team`
//! instead and takes the `escalated` transition (else `assigned`). The
//! suggested reply is the reply of the most similar previously resolved
//! enquiry (bag-of-words cosine): the customer's own resolved enquiries
//! from their history first, then the `playbook` in config. The hand-over
//! itself is a message on the `team` channel, addressed to the team, with
//! the customer view in its metadata.

use std::collections::HashMap;

use journey_sdk::{Context, Message, Outcome, Step, export_step, text};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Resolved {
    text: String,
    reply: String,
}

/// Resolved enquiries of the customer's own that are compared with a new one.
const RESOLVED_LOOKBACK: u32 = 20;
/// Interactions attached to the hand-over, most recent first.
const RECENT_INTERACTIONS: u32 = 10;

/// The details `resolve` notes with an `enquiry.resolved` interaction.
#[derive(Deserialize)]
struct ResolvedDetails {
    reply: String,
}

#[derive(Deserialize)]
struct Config {
    teams: HashMap<String, String>,
    default_team: String,
    escalation_team: String,
    escalate_priorities: Vec<String>,
    #[serde(default)]
    playbook: Vec<Resolved>,
    #[serde(default = "default_min_similarity")]
    min_similarity: f64,
}

fn default_min_similarity() -> f64 {
    0.1
}

#[derive(Deserialize)]
struct Classification {
    category: String,
    priority: String,
    sentiment: String,
}

#[derive(Deserialize)]
struct Enquiry {
    enquiry_id: String,
    text: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Handover {
    team: String,
    escalated: bool,
    suggested_reply: String,
    similarity: f64,
    similar_to: String,
}

/// The reply of the candidate most similar to `enquiry`, if any is similar enough.
fn suggest<'a>(
    enquiry: &str,
    candidates: impl Iterator<Item = (&'a str, &'a str)>,
    min_similarity: f64,
) -> Option<(&'a str, &'a str, f64)> {
    let query = text::bag_of_words(enquiry);
    candidates
        .map(|(text, reply)| (text, reply, text::cosine(&query, &text::bag_of_words(text))))
        .filter(|(_, _, similarity)| *similarity >= min_similarity)
        .max_by(|a, b| a.2.total_cmp(&b.2))
}

fn assign(config: &Config, classification: &Classification) -> (String, bool) {
    if config
        .escalate_priorities
        .contains(&classification.priority)
    {
        return (config.escalation_team.clone(), true);
    }
    let team = config
        .teams
        .get(&classification.category)
        .unwrap_or(&config.default_team);
    (team.clone(), false)
}

struct HandoverStep;

impl Step for HandoverStep {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let enquiry: Enquiry = ctx.event_data()?;
        let Some(classification) = ctx.get::<Classification>("classification")? else {
            return Err(journey_sdk::Error::Failed(
                "no classification in the instance state: the classify step must run first".into(),
            ));
        };
        // Its own resolved enquiries are the best source of suggested replies.
        let resolved = ctx.customer_with_history_of(RESOLVED_LOOKBACK, &["enquiry.resolved"]);
        let history: Vec<(&str, String)> = resolved
            .interactions
            .iter()
            .filter_map(|interaction| {
                let details: ResolvedDetails = serde_json::from_str(&interaction.details).ok()?;
                Some((interaction.text.as_str(), details.reply))
            })
            .collect();
        let candidates = history
            .iter()
            .map(|(text, reply)| (*text, reply.as_str()))
            .chain(
                config
                    .playbook
                    .iter()
                    .map(|resolved| (resolved.text.as_str(), resolved.reply.as_str())),
            );
        let (similar_to, suggested_reply, similarity) =
            suggest(&enquiry.text, candidates, config.min_similarity).unwrap_or(("", "", 0.0));
        let (team, escalated) = assign(&config, &classification);
        let handover = Handover {
            team: team.clone(),
            escalated,
            suggested_reply: suggested_reply.to_owned(),
            similarity: (similarity * 1000.0).round() / 1000.0,
            similar_to: similar_to.to_owned(),
        };
        let customer = ctx.customer_with_history(RECENT_INTERACTIONS);
        let recent: Vec<_> = customer
            .interactions
            .iter()
            .rev()
            .map(|interaction| json!({ "at_ms": interaction.at_ms, "channel": interaction.channel, "kind": interaction.kind, "text": interaction.text }))
            .collect();
        let mut message = Message::new(
            "team",
            format!(
                "{} enquiry {} ({}, {} priority, {}) from {}: {}",
                if escalated { "ESCALATED" } else { "New" },
                enquiry.enquiry_id,
                classification.category,
                classification.priority,
                classification.sentiment,
                customer.profile_str("name").unwrap_or(&customer.id),
                enquiry.text
            ),
        )
        .subject(format!("Enquiry {}", enquiry.enquiry_id))
        .metadata(json!({
            "customer": { "id": customer.id, "profile": customer.profile, "recent_interactions": recent },
            "suggested_reply": handover.suggested_reply,
        }));
        message.to = team;
        // The team's inbox is not a customer channel; a refusal here means
        // the step queued too much, which is a bug worth failing on.
        ctx.send(message).map_err(|refused| {
            journey_sdk::Error::Failed(format!("hand-over not queued: {}", refused.describe()))
        })?;
        if escalated {
            ctx.count("enquiries_escalated", 1);
        }
        ctx.set("handover", &handover)?;
        Ok(Outcome::goto(if escalated {
            "escalated"
        } else {
            "assigned"
        }))
    }
}

export_step!(HandoverStep);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_value(json!({
            "teams": { "billing": "billing-team" },
            "default_team": "support",
            "escalation_team": "escalations",
            "escalate_priorities": ["high"],
        }))
        .expect("test config parses")
    }

    fn classification(category: &str, priority: &str) -> Classification {
        Classification {
            category: category.into(),
            priority: priority.into(),
            sentiment: "neutral".into(),
        }
    }

    #[test]
    fn routes_by_category_and_escalates_high_priority() {
        assert_eq!(
            assign(&config(), &classification("billing", "normal")),
            ("billing-team".into(), false)
        );
        assert_eq!(
            assign(&config(), &classification("unknown", "low")),
            ("support".into(), false)
        );
        assert_eq!(
            assign(&config(), &classification("billing", "high")),
            ("escalations".into(), true)
        );
    }

    #[test]
    fn suggests_the_reply_of_the_most_similar_resolved_enquiry() {
        let candidates = [
            ("where is my parcel", "It is on its way."),
            (
                "refund the duplicate payment on my card",
                "We refunded the duplicate charge.",
            ),
        ];
        let best = suggest(
            "please refund my duplicate payment",
            candidates.into_iter(),
            0.1,
        );
        assert_eq!(
            best.map(|(_, reply, _)| reply),
            Some("We refunded the duplicate charge.")
        );
        assert!(suggest("completely unrelated words", candidates.into_iter(), 0.1).is_none());
    }
}
