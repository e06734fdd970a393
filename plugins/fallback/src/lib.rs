//! Journey step `fallback`: when the customer did nothing with what a
//! journey sent on one channel, try another channel they opted into.
//!
//! ```toml
//! [steps.config]
//! from = "email"                  # the channel being given up on (default)
//! to = "sms"                      # the channel to switch to (default)
//! about = "webinar_id"            # context key identifying what the engagement is about (default)
//! engaged = ["opened", "clicked", "registered"]   # actions that count (default)
//! subject = ""                    # optional
//! template = "{name}, {title} starts soon. Register: {join_url}"
//! ```
//!
//! The customer engaged when their engagement since the instance started
//! (`started_at_ms`, kept with the instance context) has an action in
//! `engaged` about this instance's `about` value. Transitions:
//! - `engaged`: they did; nothing is sent;
//! - `switched`: they did not and opted into `to`; the message went out
//!   there (placeholders as in `send`: event data, context, profile);
//! - `capped`: as `switched`, but the frequency cap on `to` refused it;
//! - `unreachable`: they did not, and never opted into `to` or opted out.
//!
//! The decision and why are kept in state `fallback` =
//! `{"decision", "reason"}` and logged.

use journey_plugin_common::context::{STARTED_AT, ensure_context, text_field};
use journey_plugin_common::outbox::{CustomerMessage, Delivery};
use journey_sdk::{Context, Engagement, Outcome, Step, export_step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_from")]
    from: String,
    #[serde(default = "default_to")]
    to: String,
    #[serde(default = "default_about")]
    about: String,
    #[serde(default = "default_engaged")]
    engaged: Vec<String>,
    #[serde(default)]
    subject: String,
    template: String,
}

fn default_from() -> String {
    "email".into()
}

fn default_to() -> String {
    "sms".into()
}

fn default_about() -> String {
    "webinar_id".into()
}

fn default_engaged() -> Vec<String> {
    ["opened", "clicked", "registered"]
        .map(String::from)
        .to_vec()
}

/// What to do, from the customer's engagement and opt-in.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// They engaged: the latest counting engagement.
    Engaged { action: String, event_kind: String },
    /// They did not, and opted into the fallback channel.
    Switch,
    /// They did not, and the fallback channel is closed: `Some(false)`
    /// opted out, `None` never chose.
    Unreachable { opted_in: Option<bool> },
}

fn decide<'a>(
    engagement: impl Iterator<Item = &'a Engagement>,
    engaged: &[String],
    opted_in: Option<bool>,
) -> Decision {
    let latest = engagement
        .filter(|engagement| engaged.contains(&engagement.action))
        .last();
    match (latest, opted_in) {
        (Some(engagement), _) => Decision::Engaged {
            action: engagement.action.clone(),
            event_kind: engagement.event_kind.clone(),
        },
        (None, Some(true)) => Decision::Switch,
        (None, opted_in) => Decision::Unreachable { opted_in },
    }
}

/// The decision as kept in state.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Record {
    decision: &'static str,
    reason: String,
}

/// The record of `decision` for `about` (e.g. `webinar_id w-42`); `capped`
/// when a switch was refused by the frequency cap.
fn record(decision: &Decision, config: &Config, about: &str, capped: bool) -> Record {
    let Config { from, to, .. } = config;
    let silent = format!("no engagement with the {from} about {about}");
    match decision {
        Decision::Engaged { action, event_kind } => Record {
            decision: "engaged",
            reason: format!("engaged with {about}: {action} ({event_kind}); staying on {from}"),
        },
        Decision::Switch if capped => Record {
            decision: "capped",
            reason: format!(
                "{silent}; opted into {to}, but the {to} frequency cap refused the message"
            ),
        },
        Decision::Switch => Record {
            decision: "switched",
            reason: format!("{silent}; opted into {to}, so switched to {to}"),
        },
        Decision::Unreachable { opted_in } => Record {
            decision: "unreachable",
            reason: format!(
                "{silent}; {} {to}, so nothing more to send",
                if *opted_in == Some(false) {
                    "opted out of"
                } else {
                    "never opted into"
                }
            ),
        },
    }
}

struct Fallback;

impl Step for Fallback {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let context = ensure_context(ctx)?;
        let about_value = text_field(&context, &config.about).ok_or_else(|| {
            journey_sdk::Error::Failed(format!(
                "config `about`: the instance context has no `{}`",
                config.about
            ))
        })?;
        let since = ctx.get::<u64>(STARTED_AT)?.unwrap_or(0);
        let customer = ctx.customer_with_history(0);
        let decision = decide(
            customer.engagement_about(&config.about, &about_value, since),
            &config.engaged,
            customer.opted_in(&config.to),
        );
        let capped = if decision == Decision::Switch {
            let message = CustomerMessage {
                channel: &config.to,
                subject: &config.subject,
                template: &config.template,
                about: &config.about,
            };
            matches!(
                message.send(ctx, &context, &customer.profile)?,
                Delivery::Capped(_)
            )
        } else {
            false
        };
        let record = record(
            &decision,
            &config,
            &format!("{} {about_value}", config.about),
            capped,
        );
        ctx.info(&record.reason);
        ctx.set("fallback", &record)?;
        Ok(Outcome::goto(record.decision))
    }
}

export_step!(Fallback);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_str(r#"{"template": "{name}, register: {join_url}"}"#)
            .expect("minimal config parses")
    }

    fn engagement(action: &str, event_kind: &str) -> Engagement {
        Engagement {
            at_ms: 1_000,
            action: action.into(),
            channel: "email".into(),
            event_kind: event_kind.into(),
            details: r#"{"webinar_id": "w-42"}"#.into(),
        }
    }

    #[test]
    fn defaults_fall_back_from_email_to_sms() {
        let config = config();
        assert_eq!(
            (
                config.from.as_str(),
                config.to.as_str(),
                config.about.as_str()
            ),
            ("email", "sms", "webinar_id")
        );
        assert_eq!(config.engaged, ["opened", "clicked", "registered"]);
    }

    #[test]
    fn counting_engagement_wins_over_the_opt_in() {
        let seen = [
            engagement("opened", "email.opened"),
            engagement("clicked", "email.clicked"),
            engagement("unsubscribed", "email.unsubscribed"),
        ];
        assert_eq!(
            decide(seen.iter(), &config().engaged, Some(true)),
            Decision::Engaged {
                action: "clicked".into(),
                event_kind: "email.clicked".into(),
            }
        );
    }

    #[test]
    fn without_engagement_the_opt_in_decides() {
        let ignored = [engagement("delivered", "email.delivered")];
        let engaged = config().engaged;
        assert_eq!(
            decide(ignored.iter(), &engaged, Some(true)),
            Decision::Switch
        );
        assert_eq!(
            decide(ignored.iter(), &engaged, Some(false)),
            Decision::Unreachable {
                opted_in: Some(false)
            }
        );
        assert_eq!(
            decide([].iter(), &engaged, None),
            Decision::Unreachable { opted_in: None }
        );
    }

    #[test]
    fn the_record_explains_the_decision() {
        let config = config();
        let about = "webinar_id w-42";
        let switched = record(&Decision::Switch, &config, about, false);
        assert_eq!(switched.decision, "switched");
        assert_eq!(
            switched.reason,
            "no engagement with the email about webinar_id w-42; opted into sms, so switched to sms"
        );
        assert_eq!(
            record(&Decision::Switch, &config, about, true).decision,
            "capped"
        );
        let out = record(
            &Decision::Unreachable {
                opted_in: Some(false),
            },
            &config,
            about,
            false,
        );
        assert_eq!(out.decision, "unreachable");
        assert!(out.reason.contains("opted out of sms"), "{}", out.reason);
        let engaged = record(
            &Decision::Engaged {
                action: "opened".into(),
                event_kind: "email.opened".into(),
            },
            &config,
            about,
            false,
        );
        assert_eq!(engaged.decision, "engaged");
        assert!(
            engaged.reason.contains("opened (email.opened)"),
            "{}",
            engaged.reason
        );
    }
}
