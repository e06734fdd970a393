//! Channel `sendgrid`: email through a SendGrid-shaped mail API (`POST
//! /v3/mail/send`) and its event webhook.
//!
//! ```toml
//! # journeyd integration set email --plugin sendgrid --host api.sendgrid.com \
//! #     --secret api_key=env:SENDGRID_API_KEY --config '{"from": "journeys@example.com"}'
//! url = "https://api.sendgrid.com/v3/mail/send"   # optional (this default)
//! from = "journeys@example.com"
//! from_name = "Example Support"                   # optional
//! ```
//!
//! The API key goes in `Authorization: Bearer {{secret:api_key}}`; the
//! host fills it in. Our message id travels as the custom argument
//! `message_id`, and the provider's id comes back in `X-Message-Id`.
//! Event webhook entries `delivered`, `open`, `click`, `bounce` and
//! `dropped` become delivery statuses; the others are skipped.

use journey_sdk::channel::{
    Callback, Channel, DeliveryStatus, OutgoingMessage, RenderError, Request, Response, RetryLater,
    StatusUpdate, Verdict, export_channel,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_url")]
    url: String,
    from: String,
    #[serde(default)]
    from_name: Option<String>,
}

fn default_url() -> String {
    "https://api.sendgrid.com/v3/mail/send".into()
}

/// One entry of an event webhook post.
#[derive(Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    sg_message_id: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

struct SendGrid;

impl Channel for SendGrid {
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
        let config = Config::deserialize(config).map_err(|error| format!("config: {error}"))?;
        if message.to.is_empty() {
            return Err(RenderError::Rejected(format!(
                "customer {} has no {} on their profile",
                message.customer_id, "email address"
            )));
        }
        let mut from = json!({ "email": config.from });
        if let Some(name) = config.from_name {
            from["name"] = json!(name);
        }
        let subject = if message.subject.is_empty() {
            "(no subject)"
        } else {
            &message.subject
        };
        Ok(Request::post(config.url)
            .header("Authorization", "Bearer {{secret:api_key}}")
            .json(&json!({
                "personalizations": [{
                    "to": [{ "email": message.to }],
                    "custom_args": { "message_id": message.id },
                }],
                "from": from,
                "subject": subject,
                "content": [{ "type": "text/plain", "value": message.body }],
            })))
    }

    fn interpret(_message: &OutgoingMessage, response: &Response, _config: &Value) -> Verdict {
        let provider_id = response.header("X-Message-Id").map(str::to_owned);
        match Verdict::from_status(response.status, provider_id) {
            Verdict::Rejected(reason) => Verdict::Rejected(errors_of(response).unwrap_or(reason)),
            Verdict::Retry(retry) => Verdict::Retry(RetryLater {
                reason: errors_of(response).unwrap_or(retry.reason),
                ..retry
            }),
            accepted => accepted,
        }
    }

    fn parse_callback(callback: &Callback, _config: &Value) -> Result<Vec<StatusUpdate>, String> {
        let events: Vec<Event> = serde_json::from_str(&callback.body)
            .map_err(|error| format!("not an event webhook post: {error}"))?;
        Ok(events
            .into_iter()
            .filter_map(|event| {
                let status = match event.event.as_str() {
                    "delivered" => DeliveryStatus::Delivered,
                    "open" => DeliveryStatus::Opened,
                    "click" => DeliveryStatus::Clicked,
                    "bounce" => DeliveryStatus::Bounced,
                    "dropped" => DeliveryStatus::Failed,
                    _ => return None,
                };
                // `sg_message_id` is the `X-Message-Id` plus a suffix.
                let provider_id = event
                    .sg_message_id
                    .as_deref()
                    .map(|id| id.split('.').next().unwrap_or(id).to_owned())
                    .unwrap_or_default();
                let mut detail = json!({});
                if let Some(reason) = event.reason {
                    detail["reason"] = json!(reason);
                }
                if let Some(url) = event.url {
                    detail["url"] = json!(url);
                }
                Some(StatusUpdate {
                    message_id: event.message_id,
                    provider_id,
                    status,
                    at_ms: event.timestamp.map(|seconds| seconds * 1000),
                    detail: detail.to_string(),
                })
            })
            .collect())
    }
}

/// The provider's own words for a refusal: `{"errors": [{"message": …}]}`.
fn errors_of(response: &Response) -> Option<String> {
    let body = response.json()?;
    let messages: Vec<&str> = body["errors"]
        .as_array()?
        .iter()
        .filter_map(|error| error["message"].as_str())
        .collect();
    (!messages.is_empty()).then(|| format!("{} ({})", messages.join("; "), response.status))
}

export_channel!(SendGrid);

#[cfg(test)]
mod tests {
    use super::*;
    use journey_sdk::channel::Header;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            id: "i-1/0/m0".into(),
            channel: "email".into(),
            to: "ada@example.com".into(),
            subject: "We have your enquiry".into(),
            body: "Hi Ada".into(),
            metadata: "{}".into(),
            customer_id: "c-ada".into(),
            journey: "enquiry".into(),
            instance_id: "i-1".into(),
            step: "acknowledge".into(),
            attempt: 1,
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| Header {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn a_message_becomes_a_mail_send_request_with_a_named_key() {
        let request =
            SendGrid::render(&message(), &json!({"from": "help@example.com"})).expect("renders");
        assert_eq!(request.url, "https://api.sendgrid.com/v3/mail/send");
        assert!(
            request
                .headers
                .iter()
                .any(|h| h.value == "Bearer {{secret:api_key}}")
        );
        let body: Value = serde_json::from_str(&request.body).expect("json");
        assert_eq!(
            body["personalizations"][0]["to"][0]["email"],
            "ada@example.com"
        );
        assert_eq!(
            body["personalizations"][0]["custom_args"]["message_id"],
            "i-1/0/m0"
        );
        assert_eq!(body["content"][0]["value"], "Hi Ada");
    }

    #[test]
    fn answers_carry_the_provider_id_or_its_reasons() {
        let config = json!({"from": "help@example.com"});
        assert!(matches!(
            SendGrid::interpret(&message(), &response(202, &[("x-message-id", "sg-1")], ""), &config),
            Verdict::Accepted(Some(id)) if id == "sg-1"
        ));
        assert!(matches!(
            SendGrid::interpret(&message(), &response(400, &[], r#"{"errors":[{"message":"bad to"}]}"#), &config),
            Verdict::Rejected(reason) if reason == "bad to (400)"
        ));
        assert!(matches!(
            SendGrid::interpret(&message(), &response(503, &[], ""), &config),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn event_webhook_posts_become_statuses() {
        let callback = Callback {
            headers: vec![],
            body: r#"[{"event":"processed","sg_message_id":"sg-1.f"},
                      {"event":"delivered","sg_message_id":"sg-1.filter0001","message_id":"i-1/0/m0","timestamp":1796112000},
                      {"event":"open","sg_message_id":"sg-1.x"},
                      {"event":"bounce","sg_message_id":"sg-2.x","reason":"550 no such user"}]"#
                .into(),
        };
        let updates = SendGrid::parse_callback(&callback, &json!({})).expect("parses");
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].provider_id, "sg-1");
        assert_eq!(updates[0].message_id.as_deref(), Some("i-1/0/m0"));
        assert_eq!(updates[0].at_ms, Some(1_796_112_000_000));
        assert_eq!(updates[1].status, DeliveryStatus::Opened);
        assert_eq!(updates[2].status, DeliveryStatus::Bounced);
        assert!(updates[2].detail.contains("no such user"));
    }
}
