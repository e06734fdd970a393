//! Channel `twilio`: SMS through a Twilio-shaped messages API (a form
//! `POST` to `/2010-04-01/Accounts/{sid}/Messages.json`) and its status
//! callbacks.
//!
//! ```toml
//! # journeyd integration set sms --plugin twilio --host api.twilio.com \
//! #     --secret account_sid=env:TWILIO_SID --secret auth_token=env:TWILIO_TOKEN \
//! #     --config '{"from": "+15005550006"}'
//! base_url = "https://api.twilio.com"   # optional (this default)
//! from = "+15005550006"
//! status_callback = "https://journeyd.example.com/v1/callbacks/sms"   # optional
//! ```
//!
//! Both the account sid and the token are secrets the host fills in
//! (`Authorization: Basic {{basic-auth:account_sid:auth_token}}`). The
//! provider's `sid` comes back as its id. Callbacks are form posts with
//! `MessageSid` and `MessageStatus`: `delivered`, `undelivered` (bounced)
//! and `failed` become delivery statuses; `queued`, `sent` and the like
//! are skipped.

use journey_sdk::channel::{
    Callback, Channel, DeliveryStatus, OutgoingMessage, RenderError, Request, Response,
    StatusUpdate, Verdict, export_channel,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_base_url")]
    base_url: String,
    from: String,
    #[serde(default)]
    status_callback: Option<String>,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

struct Twilio;

impl Channel for Twilio {
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
        let config = Config::deserialize(config).map_err(|error| format!("config: {error}"))?;
        if message.to.is_empty() {
            return Err(RenderError::Rejected(format!(
                "customer {} has no {} on their profile",
                message.customer_id, "phone number"
            )));
        }
        let mut fields = vec![
            ("To", message.to.as_str()),
            ("From", config.from.as_str()),
            ("Body", message.body.as_str()),
        ];
        if let Some(callback) = &config.status_callback {
            fields.push(("StatusCallback", callback));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{{{{secret:account_sid}}}}/Messages.json",
            config.base_url.trim_end_matches('/')
        );
        Ok(Request::post(url)
            .header(
                "Authorization",
                "Basic {{basic-auth:account_sid:auth_token}}",
            )
            .form(&fields))
    }

    fn interpret(_message: &OutgoingMessage, response: &Response, _config: &Value) -> Verdict {
        let body = response.json().unwrap_or(Value::Null);
        let sid = body["sid"].as_str().map(str::to_owned);
        match Verdict::from_status(response.status, sid) {
            Verdict::Rejected(reason) => Verdict::Rejected(
                body["message"]
                    .as_str()
                    .map_or(reason, |message| format!("{message} ({})", response.status)),
            ),
            verdict => verdict,
        }
    }

    fn parse_callback(callback: &Callback, _config: &Value) -> Result<Vec<StatusUpdate>, String> {
        let mut sid = None;
        let mut status = None;
        let mut error_code = None;
        for (name, value) in form_urlencoded::parse(callback.body.as_bytes()) {
            match name.as_ref() {
                "MessageSid" => sid = Some(value.into_owned()),
                "MessageStatus" => status = Some(value.into_owned()),
                "ErrorCode" => error_code = Some(value.into_owned()),
                _ => {}
            }
        }
        let sid = sid.ok_or("a status callback without `MessageSid`")?;
        let status = match status
            .ok_or("a status callback without `MessageStatus`")?
            .as_str()
        {
            "delivered" => DeliveryStatus::Delivered,
            "undelivered" => DeliveryStatus::Bounced,
            "failed" => DeliveryStatus::Failed,
            "read" => DeliveryStatus::Opened,
            _ => return Ok(Vec::new()),
        };
        let detail = match error_code {
            Some(code) => json!({ "error_code": code }),
            None => json!({}),
        };
        Ok(vec![StatusUpdate {
            detail: detail.to_string(),
            ..StatusUpdate::new(sid, status)
        }])
    }
}

export_channel!(Twilio);

#[cfg(test)]
mod tests {
    use super::*;
    use journey_sdk::channel::Header;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            id: "i-1/0/m0".into(),
            channel: "sms".into(),
            to: "+447700900002".into(),
            subject: String::new(),
            body: "Hi Grace & co".into(),
            metadata: "{}".into(),
            customer_id: "c-grace".into(),
            journey: "enquiry".into(),
            instance_id: "i-1".into(),
            step: "acknowledge".into(),
            attempt: 1,
        }
    }

    #[test]
    fn a_message_becomes_a_form_post_with_named_credentials() {
        let request = Twilio::render(
            &message(),
            &json!({"from": "+15005550006", "base_url": "http://127.0.0.1:9/"}),
        )
        .expect("renders");
        assert_eq!(
            request.url,
            "http://127.0.0.1:9/2010-04-01/Accounts/{{secret:account_sid}}/Messages.json"
        );
        assert_eq!(
            request.body,
            "To=%2B447700900002&From=%2B15005550006&Body=Hi+Grace+%26+co"
        );
        assert!(
            request
                .headers
                .iter()
                .any(|h| h.value == "Basic {{basic-auth:account_sid:auth_token}}")
        );
    }

    #[test]
    fn answers_and_callbacks_are_read() {
        let response = |status, body: &str| Response {
            status,
            headers: vec![],
            body: body.into(),
        };
        assert!(matches!(
            Twilio::interpret(&message(), &response(201, r#"{"sid":"SM1","status":"queued"}"#), &json!({})),
            Verdict::Accepted(Some(sid)) if sid == "SM1"
        ));
        assert!(matches!(
            Twilio::interpret(&message(), &response(400, r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#), &json!({})),
            Verdict::Rejected(reason) if reason.starts_with("Invalid 'To'")
        ));
        let callback = |body: &str| Callback {
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/x-www-form-urlencoded".into(),
            }],
            body: body.into(),
        };
        let updates = Twilio::parse_callback(
            &callback("MessageSid=SM1&MessageStatus=delivered"),
            &json!({}),
        )
        .expect("parses");
        assert_eq!(updates[0].provider_id, "SM1");
        assert_eq!(updates[0].status, DeliveryStatus::Delivered);
        assert!(
            Twilio::parse_callback(&callback("MessageSid=SM1&MessageStatus=sent"), &json!({}))
                .expect("parses")
                .is_empty()
        );
        assert!(Twilio::parse_callback(&callback("MessageStatus=sent"), &json!({})).is_err());
        let updates = Twilio::parse_callback(
            &callback("MessageSid=SM%2B2&MessageStatus=undelivered&ErrorCode=30003"),
            &json!({}),
        )
        .expect("parses");
        assert_eq!(
            (updates[0].provider_id.as_str(), updates[0].status),
            ("SM+2", DeliveryStatus::Bounced)
        );
    }
}
