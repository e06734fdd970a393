//! Channel `slack`: team hand-overs through a Slack-shaped incoming
//! webhook (a JSON `POST` of `{"text": …}`).
//!
//! ```toml
//! # journeyd integration set team --plugin slack --host hooks.slack.com \
//! #     --secret webhook_path=env:SLACK_WEBHOOK_PATH
//! url = "https://hooks.slack.com/services/{{secret:webhook_path}}"   # optional (this default)
//! ```
//!
//! An incoming webhook's URL is itself the secret, so the default names its
//! path as one. The subject goes first in bold, then the body, then the
//! message's metadata as fields (the hand-over's customer view). Slack
//! answers `ok`; 404 and 410 (`channel_not_found`, `channel_is_archived`)
//! refuse the message and 410 also disables the integration. There are no
//! status callbacks.

use journey_sdk::channel::{
    Channel, OutgoingMessage, RenderError, Request, Response, Verdict, export_channel,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_url")]
    url: String,
}

fn default_url() -> String {
    "https://hooks.slack.com/services/{{secret:webhook_path}}".into()
}

struct Slack;

impl Channel for Slack {
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
        let config = Config::deserialize(config).map_err(|error| format!("config: {error}"))?;
        let mut text = String::new();
        if !message.subject.is_empty() {
            text.push_str(&format!("*{}*\n", message.subject));
        }
        text.push_str(&message.body);
        let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
        if let Ok(Value::Object(metadata)) = serde_json::from_str::<Value>(&message.metadata) {
            let fields: Vec<Value> = metadata
                .iter()
                .filter_map(|(name, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(_) | Value::Bool(_) => value.to_string(),
                        _ => return None,
                    };
                    Some(json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")}))
                })
                .take(10)
                .collect();
            if !fields.is_empty() {
                blocks.push(json!({"type": "section", "fields": fields}));
            }
        }
        Ok(Request::post(config.url).json(&json!({ "text": text, "blocks": blocks })))
    }

    fn interpret(_message: &OutgoingMessage, response: &Response, _config: &Value) -> Verdict {
        match Verdict::from_status(response.status, None) {
            Verdict::Rejected(_) if !response.body.trim().is_empty() => {
                Verdict::Rejected(format!("{} ({})", response.body.trim(), response.status))
            }
            verdict => verdict,
        }
    }
}

export_channel!(Slack);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_over_becomes_text_and_fields() {
        let message = OutgoingMessage {
            id: "i-1/2/m0".into(),
            channel: "team".into(),
            to: "billing".into(),
            subject: "Enquiry q-1 (high)".into(),
            body: "I was charged twice".into(),
            metadata: r#"{"customer":"Ada","tier":"gold","history":[1,2]}"#.into(),
            customer_id: "c-ada".into(),
            journey: "enquiry".into(),
            instance_id: "i-1".into(),
            step: "handover".into(),
            attempt: 1,
        };
        let request = Slack::render(&message, &json!({})).expect("renders");
        assert_eq!(
            request.url,
            "https://hooks.slack.com/services/{{secret:webhook_path}}"
        );
        let body: Value = serde_json::from_str(&request.body).expect("json");
        assert_eq!(body["text"], "*Enquiry q-1 (high)*\nI was charged twice");
        assert_eq!(
            body["blocks"][1]["fields"].as_array().map(Vec::len),
            Some(2)
        );
        let archived = Response {
            status: 410,
            headers: vec![],
            body: "channel_is_archived".into(),
        };
        assert!(matches!(
            Slack::interpret(&message, &archived, &json!({})),
            Verdict::Rejected(reason) if reason == "channel_is_archived (410)"
        ));
    }
}
