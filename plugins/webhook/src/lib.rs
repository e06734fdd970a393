//! Channel `webhook`: deliver each message as a signed JSON `POST`
//! ([Standard Webhooks](https://www.standardwebhooks.com/)) to one URL.
//!
//! ```toml
//! # journeyd integration set chat --plugin webhook --host hooks.example.com \
//! #     --secret signing_key=env:CHAT_WEBHOOK_SECRET --config '{"url": "https://hooks.example.com/journeys"}'
//! url = "https://hooks.example.com/journeys"   # where to POST
//! secret = "signing_key"                        # optional (this default): the secret that signs
//! ```
//!
//! The body is `{"type": "message.created", "data": {…the message…}}`.
//! The host signs it: `webhook-id` is the message id on every attempt, so
//! the receiver drops repeats. Any 2xx accepts the message.
//!
//! Callbacks (signed the same way) report statuses as
//! `{"message_id": "…", "status": "delivered", "at_ms": 1796112000000,
//! "detail": {…}}`, or a list of those; `status` is one of `delivered`,
//! `opened`, `clicked`, `bounced`, `failed`.

use journey_sdk::channel::{
    Callback, Channel, DeliveryStatus, OutgoingMessage, RenderError, Request, StatusUpdate,
    export_channel,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Config {
    url: String,
    #[serde(default = "default_secret")]
    secret: String,
}

fn default_secret() -> String {
    "signing_key".into()
}

/// One status a receiver reports.
#[derive(Deserialize)]
struct Report {
    message_id: String,
    status: String,
    #[serde(default)]
    at_ms: Option<u64>,
    #[serde(default)]
    detail: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Reports {
    One(Report),
    Many(Vec<Report>),
}

/// A status name as callbacks spell it.
fn status_named(name: &str) -> Option<DeliveryStatus> {
    Some(match name {
        "delivered" => DeliveryStatus::Delivered,
        "opened" => DeliveryStatus::Opened,
        "clicked" => DeliveryStatus::Clicked,
        "bounced" => DeliveryStatus::Bounced,
        "failed" => DeliveryStatus::Failed,
        _ => return None,
    })
}

struct Webhook;

impl Channel for Webhook {
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
        let config = Config::deserialize(config).map_err(|error| format!("config: {error}"))?;
        let metadata: Value = serde_json::from_str(&message.metadata).unwrap_or(Value::Null);
        let payload = json!({
            "type": "message.created",
            "data": {
                "id": message.id,
                "channel": message.channel,
                "to": message.to,
                "subject": message.subject,
                "body": message.body,
                "metadata": metadata,
                "customer_id": message.customer_id,
                "journey": message.journey,
                "instance_id": message.instance_id,
                "step": message.step,
            },
        });
        Ok(Request::post(config.url)
            .json(&payload)
            .signed_with(&config.secret))
    }

    fn parse_callback(callback: &Callback, _config: &Value) -> Result<Vec<StatusUpdate>, String> {
        let reports = match serde_json::from_str(&callback.body)
            .map_err(|error| format!("not a status report: {error}"))?
        {
            Reports::One(report) => vec![report],
            Reports::Many(reports) => reports,
        };
        reports
            .into_iter()
            .map(|report| {
                let status = status_named(&report.status)
                    .ok_or_else(|| format!("unknown status `{}`", report.status))?;
                Ok(StatusUpdate {
                    message_id: Some(report.message_id.clone()),
                    provider_id: report.message_id,
                    status,
                    at_ms: report.at_ms,
                    detail: report.detail.unwrap_or_else(|| json!({})).to_string(),
                })
            })
            .collect()
    }
}

export_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use journey_sdk::channel::{Header, Signature};

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            id: "i-1/0/m0".into(),
            channel: "chat".into(),
            to: "ada".into(),
            subject: String::new(),
            body: "Hello".into(),
            metadata: r#"{"about":"q-1"}"#.into(),
            customer_id: "c-ada".into(),
            journey: "enquiry".into(),
            instance_id: "i-1".into(),
            step: "acknowledge".into(),
            attempt: 1,
        }
    }

    #[test]
    fn a_message_becomes_a_signed_json_post() {
        let request = Webhook::render(&message(), &json!({"url": "https://hooks.example.com/j"}))
            .expect("renders");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://hooks.example.com/j");
        assert!(
            matches!(request.signature, Some(Signature::StandardWebhooks(ref s)) if s == "signing_key")
        );
        let body: Value = serde_json::from_str(&request.body).expect("json");
        assert_eq!(body["data"]["id"], "i-1/0/m0");
        assert_eq!(body["data"]["metadata"]["about"], "q-1");
        assert!(Webhook::render(&message(), &json!({})).is_err(), "no url");
    }

    #[test]
    fn callbacks_report_one_status_or_many() {
        let callback = |body: &str| Callback {
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: body.into(),
        };
        let one = Webhook::parse_callback(
            &callback(r#"{"message_id":"i-1/0/m0","status":"opened"}"#),
            &json!({}),
        )
        .expect("parses");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].message_id.as_deref(), Some("i-1/0/m0"));
        assert_eq!(one[0].status, DeliveryStatus::Opened);
        let many = Webhook::parse_callback(
            &callback(r#"[{"message_id":"a","status":"delivered"},{"message_id":"b","status":"bounced","detail":{"reason":"no such user"}}]"#),
            &json!({}),
        )
        .expect("parses");
        assert_eq!(many.len(), 2);
        assert!(
            Webhook::parse_callback(
                &callback(r#"{"message_id":"a","status":"lost"}"#),
                &json!({})
            )
            .is_err()
        );
        assert!(Webhook::parse_callback(&callback("nope"), &json!({})).is_err());
    }
}
