//! Enquiry step `escalate`: the team's response-time SLA passed, so the
//! enquiry moves up the escalation chain.
//!
//! ```toml
//! [steps.config]
//! chain = ["escalations", "head-of-care"]
//! lead = { escalations = "lead-escalations@example.com", "head-of-care" = "head-of-care@example.com" }
//! customer_subject = "An update on your enquiry {enquiry_id}"
//! customer_template = "Hi {name}, your enquiry {enquiry_id} is taking longer than it should, so our {team} team has taken it over."
//! ```
//!
//! Each run raises state `escalation.level` by one and re-assigns the
//! enquiry (state `handover.team`) to the chain's team for that level, or
//! to the team after the current one when the enquiry already is with a
//! team of the chain (the hand-over gives high-priority enquiries to the
//! chain's first team); once the chain is exhausted its last team keeps
//! it, so an enquiry is never dropped however often the SLA passes. The new team's lead (`lead`, by
//! team) gets an email with the priority, how long the customer has waited
//! and the previous and new team; the customer gets `customer_template`
//! (placeholders `{name}`, `{enquiry_id}`, `{team}`, and any field of the
//! enquiry or profile) on their channel (state `channel`, from
//! `acknowledge`). A capped message, or a team without a lead, is logged as
//! a warning and does not stop the escalation. Notes `enquiry.escalated`,
//! counts `enquiries_sla_breached`. Transition: `escalated`.
//!
//! The enquiry's id and text come from the instance `context`, saved by
//! `sla` before its first wait; the step does not rely on the current
//! event, which after a wait may be another one.

use std::collections::BTreeMap;

use journey_plugin_common::context::{STARTED_AT, ensure_context, text_field};
use journey_plugin_common::duration::display;
use journey_plugin_common::outbox::queue;
use journey_plugin_common::template::{self, Placeholders};
use journey_plugin_common::{Error, Result};
use journey_sdk::{Context, Message, Outcome, Step, export_step};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    chain: Vec<String>,
    #[serde(default)]
    lead: BTreeMap<String, String>,
    #[serde(default)]
    customer_subject: String,
    customer_template: String,
}

/// The team that takes the enquiry from `current` at escalation `level`
/// (1 for the first escalation): the chain's team for that level, but
/// always one after `current` when `current` is in the chain (the
/// hand-over may already have given it to the chain's first team); the
/// chain's last team once it is exhausted.
fn team_for<'a>(chain: &'a [String], level: u32, current: &str) -> Result<&'a str> {
    let by_level = usize::try_from(level.saturating_sub(1)).unwrap_or(usize::MAX);
    let past_current = chain
        .iter()
        .position(|team| team == current)
        .map_or(0, |position| position + 1);
    chain
        .get(by_level.max(past_current))
        .or(chain.last())
        .map(String::as_str)
        .ok_or_else(|| Error::Config {
            field: "chain".into(),
            reason: "names no team to escalate to".into(),
        })
}

/// The escalation as kept in state; `sla` reads its `level`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Escalation {
    level: u32,
    #[serde(default)]
    team: String,
    #[serde(default)]
    at_ms: u64,
}

/// The part of `classify`'s state this step reads.
#[derive(Deserialize)]
struct Classification {
    priority: String,
}

/// What the lead is told.
struct Breach<'a> {
    enquiry_id: &'a str,
    enquiry_text: &'a str,
    priority: &'a str,
    waited_ms: u64,
    previous_team: &'a str,
    team: &'a str,
    level: u32,
}

impl Breach<'_> {
    fn lead_subject(&self) -> String {
        format!("SLA breached: enquiry {}", self.enquiry_id)
    }

    fn lead_body(&self) -> String {
        let Breach {
            enquiry_id,
            enquiry_text,
            priority,
            waited_ms,
            previous_team,
            team,
            level,
        } = self;
        let assignment = if previous_team == team {
            format!("It stays with {team}, the end of the escalation chain")
        } else {
            format!("It moves from {previous_team} to {team}")
        };
        format!(
            "Enquiry {enquiry_id} ({priority} priority) has waited {} without a resolution, \
             past its response-time SLA. {assignment} (escalation level {level}).\n\n\
             The enquiry: {enquiry_text}",
            display(*waited_ms)
        )
    }
}

struct Escalate;

impl Step for Escalate {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let enquiry = ensure_context(ctx)?;
        let Some(mut handover) = ctx.get::<Map<String, Value>>("handover")? else {
            return Err(Error::MissingState {
                key: "handover".into(),
                producer: "handover".into(),
            }
            .into());
        };
        let previous = ctx.get::<Escalation>("escalation")?.unwrap_or_default();
        let level = previous.level.saturating_add(1);
        let previous_team = text_field(&handover, "team").unwrap_or_default();
        let team = team_for(&config.chain, level, &previous_team)?.to_owned();
        let enquiry_id = text_field(&enquiry, "enquiry_id").unwrap_or_default();
        let enquiry_text = text_field(&enquiry, "text").unwrap_or_default();
        let priority = ctx
            .get::<Classification>("classification")?
            .map_or_else(|| "unknown".to_owned(), |c| c.priority);
        let channel: String = ctx.get("channel")?.unwrap_or_else(|| "email".into());
        let now = ctx.now_ms();
        let started_at = ctx.get::<u64>(STARTED_AT)?.unwrap_or(now);
        let breach = Breach {
            enquiry_id: &enquiry_id,
            enquiry_text: &enquiry_text,
            priority: &priority,
            waited_ms: now.saturating_sub(started_at),
            previous_team: &previous_team,
            team: &team,
            level,
        };
        let metadata = json!({
            "journey": ctx.journey(),
            "enquiry_id": enquiry_id,
            "escalation_level": level,
        });

        match config.lead.get(&team) {
            Some(address) => {
                let mut message = Message::new("email", breach.lead_body())
                    .subject(breach.lead_subject())
                    .metadata(metadata.clone());
                message.to = address.clone();
                queue(ctx, message)?;
            }
            None => ctx.warn(&format!(
                "config `lead` has no address for team `{team}`: its lead is not told"
            )),
        }

        let extra: Map<String, Value> = [
            ("enquiry_id", &enquiry_id),
            ("team", &team),
            ("priority", &priority),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), json!(value)))
        .collect();
        let profile = ctx.customer_with_history(0).profile;
        let defaults = template::defaults();
        let values = Placeholders::new()
            .then(&extra)
            .then(&enquiry)
            .then(&profile)
            .then(&defaults);
        let update = Message::new(channel.as_str(), values.render(&config.customer_template))
            .subject(values.render(&config.customer_subject))
            .metadata(metadata);
        queue(ctx, update)?;

        ctx.note(
            &channel,
            "enquiry.escalated",
            &enquiry_text,
            &json!({
                "enquiry_id": enquiry_id,
                "level": level,
                "priority": priority,
                "from_team": previous_team,
                "to_team": team,
                "waited_ms": breach.waited_ms,
            }),
        );
        ctx.info(&format!(
            "enquiry {enquiry_id}: SLA breached after {}, escalation level {level}, {previous_team} → {team}",
            display(breach.waited_ms)
        ));
        ctx.count("enquiries_sla_breached", 1);
        handover.insert("team".into(), json!(team));
        handover.insert("escalated".into(), json!(true));
        ctx.set("handover", &handover)?;
        ctx.set(
            "escalation",
            &Escalation {
                level,
                team,
                at_ms: now,
            },
        )?;
        Ok(Outcome::goto("escalated"))
    }
}

export_step!(Escalate);

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Vec<String> {
        vec!["escalations".into(), "head-of-care".into()]
    }

    #[test]
    fn escalation_walks_the_chain_and_stays_at_its_end() {
        let chain = chain();
        assert_eq!(team_for(&chain, 1, "billing"), Ok("escalations"));
        assert_eq!(team_for(&chain, 2, "escalations"), Ok("head-of-care"));
        assert_eq!(team_for(&chain, 3, "head-of-care"), Ok("head-of-care"));
        assert_eq!(
            team_for(&chain, u32::MAX, "head-of-care"),
            Ok("head-of-care")
        );
    }

    #[test]
    fn an_enquiry_already_with_a_chain_team_moves_past_it() {
        let chain = chain();
        assert_eq!(team_for(&chain, 1, "escalations"), Ok("head-of-care"));
        let longer = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(team_for(&longer, 1, "b"), Ok("c"));
        assert_eq!(team_for(&longer, 3, "a"), Ok("c"));
    }

    #[test]
    fn an_empty_chain_is_a_config_error() {
        let error = team_for(&[], 1, "billing").expect_err("no team");
        assert_eq!(
            error.to_string(),
            "config `chain`: names no team to escalate to"
        );
    }

    fn breach<'a>(previous_team: &'a str, team: &'a str) -> Breach<'a> {
        Breach {
            enquiry_id: "q-7",
            enquiry_text: "Where is my refund?",
            priority: "high",
            waited_ms: 90 * 60_000,
            previous_team,
            team,
            level: 2,
        }
    }

    #[test]
    fn the_lead_learns_priority_wait_and_teams() {
        let moved = breach("escalations", "head-of-care");
        assert_eq!(moved.lead_subject(), "SLA breached: enquiry q-7");
        let body = moved.lead_body();
        for expected in [
            "high priority",
            "waited 1h 30m",
            "from escalations to head-of-care",
            "level 2",
            "Where is my refund?",
        ] {
            assert!(body.contains(expected), "{expected:?} not in {body:?}");
        }
        let body = breach("head-of-care", "head-of-care").lead_body();
        assert!(body.contains("stays with head-of-care"), "{body}");
    }

    #[test]
    fn escalation_state_reads_without_optional_fields() {
        let escalation: Escalation =
            serde_json::from_value(json!({ "level": 2 })).expect("level only");
        assert_eq!((escalation.level, escalation.team.as_str()), (2, ""));
    }
}
