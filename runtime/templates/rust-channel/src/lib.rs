//! Channel `{{name}}`: deliver each message as a signed JSON `POST` to the
//! provider's URL and read its status callbacks.
//!
//! Config: `url` (where to POST), `secret` (the name of the secret that
//! signs, default `signing_key`). Set it up with
//! `journeyd integration set CHANNEL --plugin {{name}} --host HOST
//! --secret signing_key=env:VAR --config '{"url": "https://HOST/path"}'`.

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

/// A status callback: `{"message_id": "…", "status": "delivered"}`.
#[derive(Deserialize)]
struct Report {
    message_id: String,
    status: String,
}

struct Provider;

impl Channel for Provider {
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
        let config = Config::deserialize(config).map_err(|error| format!("config: {error}"))?;
        if message.to.is_empty() {
            return Err(RenderError::Rejected("the customer has no address".into()));
        }
        Ok(Request::post(config.url)
            .json(&json!({ "id": message.id, "to": message.to, "text": message.body }))
            .signed_with(&config.secret))
    }

    fn parse_callback(callback: &Callback, _config: &Value) -> Result<Vec<StatusUpdate>, String> {
        let report: Report = serde_json::from_str(&callback.body)
            .map_err(|error| format!("not a status report: {error}"))?;
        let status = match report.status.as_str() {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            other => return Err(format!("unknown status `{other}`")),
        };
        Ok(vec![StatusUpdate {
            message_id: Some(report.message_id.clone()),
            provider_id: report.message_id,
            status,
            at_ms: None,
            detail: "{}".into(),
        }])
    }
}

export_channel!(Provider);

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: "i-1/s/1/m0".into(),
            channel: "chat".into(),
            to: to.into(),
            subject: String::new(),
            body: "Hello".into(),
            metadata: "{}".into(),
            customer_id: "c-1".into(),
            journey: "j".into(),
            instance_id: "i-1".into(),
            step: "s".into(),
            attempt: 1,
        }
    }

    #[test]
    fn renders_a_signed_post_and_refuses_a_message_without_an_address() {
        let config = json!({ "url": "https://provider.example/messages" });
        let request = Provider::render(&message("+15550100"), &config).expect("a request");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://provider.example/messages");
        assert!(request.body.contains("+15550100"));
        assert!(matches!(
            Provider::render(&message(""), &config),
            Err(RenderError::Rejected(_))
        ));
    }

    #[test]
    fn reads_status_callbacks() {
        let callback = Callback {
            headers: Vec::new(),
            body: r#"{"message_id": "i-1/s/1/m0", "status": "delivered"}"#.into(),
        };
        let updates = Provider::parse_callback(&callback, &json!({})).expect("updates");
        assert_eq!(updates.len(), 1);
        assert!(matches!(updates[0].status, DeliveryStatus::Delivered));
    }
}
