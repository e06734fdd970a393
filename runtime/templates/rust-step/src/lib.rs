//! Step `{{name}}`: greet the customer on their preferred channel, or go on
//! when a frequency cap says no.
//!
//! Config: `greeting` (default "Hello"). Transitions: `sent`, `capped`.

use journey_sdk::{Context, Message, Outcome, Step, export_step};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "Hello".into()
}

struct Greet;

impl Step for Greet {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let customer = ctx.customer_with_history(0);
        let name = customer.profile_str("name").unwrap_or("there").to_owned();
        let channel = if customer.opted_in("sms") == Some(true) {
            "sms"
        } else {
            "email"
        };
        let greetings = ctx.get::<u32>("greetings")?.unwrap_or(0) + 1;
        ctx.set("greetings", &greetings)?;
        match ctx.send(Message::new(channel, format!("{}, {name}!", config.greeting))) {
            Ok(id) => {
                ctx.set("greeting_message", &id)?;
                Ok(Outcome::goto("sent"))
            }
            Err(refused) => {
                ctx.warn(&refused.describe());
                Ok(Outcome::goto("capped"))
            }
        }
    }
}

export_step!(Greet);

#[cfg(test)]
mod tests {
    use super::*;
    use journey_sdk::testing::TestStep;
    use serde_json::json;

    #[test]
    fn greets_by_name_on_the_preferred_channel() {
        let run = TestStep::new()
            .config(json!({ "greeting": "Hi" }))
            .profile(json!({ "name": "Ada" }))
            .opted_in("sms", true)
            .run::<Greet>();
        assert_eq!(run.outcome, Ok(Outcome::goto("sent")));
        assert_eq!(run.messages.len(), 1);
        assert_eq!(run.messages[0].channel, "sms");
        assert_eq!(run.messages[0].body, "Hi, Ada!");
        assert_eq!(run.state.expect("state")["greetings"], json!(1));
    }

    #[test]
    fn goes_on_when_a_frequency_cap_says_no() {
        let run = TestStep::new().cap("email", 0).run::<Greet>();
        assert_eq!(run.outcome, Ok(Outcome::goto("capped")));
        assert!(run.messages.is_empty());
        assert_eq!(run.refused.len(), 1);
    }
}
