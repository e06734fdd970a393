//! Write delivery channels: how a queued message becomes a provider's HTTP
//! request, what the provider's answer means, and what its status
//! callbacks say.
//!
//! A channel plugin implements [`Channel`] and registers it with
//! [`export_channel!`](crate::export_channel). It is pure: it never sends
//! anything and never sees a secret. It names secrets as `{{secret:NAME}}`
//! and the host fills them in; the host sends, signs, retries and records.
//! Every function may be called again with the same input (retries,
//! crashes), so each must return the same result for the same input.
//!
//! ```no_run
//! use journey_sdk::channel::{Channel, OutgoingMessage, RenderError, Request, export_channel};
//! use serde_json::{Value, json};
//!
//! struct Echo;
//!
//! impl Channel for Echo {
//!     fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError> {
//!         let url = config["url"].as_str().ok_or("config needs `url`".to_owned())?;
//!         Ok(Request::post(url)
//!             .header("Authorization", "Bearer {{secret:token}}")
//!             .json(&json!({ "to": message.to, "text": message.body })))
//!     }
//! }
//!
//! export_channel!(Echo);
//! ```
//!
//! Because a channel plugin calls nothing but `log`, its functions run
//! natively too: test them with `cargo test` like any Rust code.

use serde::Serialize;
use serde_json::Value;

#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "channel-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_channel_plugin",
        default_bindings_module: "::journey_sdk::channel::bindings",
        runtime_path: "::journey_sdk::__private::wit_bindgen::rt",
        with: {
            "journey:plugin/types@0.2.0": crate::bindings::journey::plugin::types,
            "journey:plugin/log@0.2.0": crate::bindings::journey::plugin::log,
        },
    });
}

pub use crate::export_channel;
pub use bindings::exports::journey::plugin::channel::{
    Callback, DeliveryStatus, Header, OutgoingMessage, ProviderRequest as Request,
    ProviderResponse as Response, RenderError, RetryLater, Signature, StatusUpdate, Verdict,
};

/// A `String` error is a misconfiguration (retried), so `?` on a config
/// error does the right thing; say [`RenderError::Rejected`] for a message
/// that can never be sent.
impl From<String> for RenderError {
    fn from(reason: String) -> Self {
        RenderError::Misconfigured(reason)
    }
}

/// A delivery channel. Implement it on a unit struct and pass that to
/// [`export_channel!`](crate::export_channel).
pub trait Channel {
    /// The provider request for one attempt to deliver `message`. `config`
    /// is the integration's config (a JSON object).
    /// [`RenderError::Misconfigured`] fails the attempt (it is retried like
    /// a failed send); [`RenderError::Rejected`] makes the message dead.
    fn render(message: &OutgoingMessage, config: &Value) -> Result<Request, RenderError>;

    /// What the provider's answer means. The default reads the status
    /// alone ([`Verdict::from_status`]).
    fn interpret(_message: &OutgoingMessage, response: &Response, _config: &Value) -> Verdict {
        Verdict::from_status(response.status, None)
    }

    /// The statuses in a callback whose signature the host verified. The
    /// default reports none.
    fn parse_callback(_callback: &Callback, _config: &Value) -> Result<Vec<StatusUpdate>, String> {
        Ok(Vec::new())
    }
}

impl Request {
    /// A request with `method` to `url`, no headers, no body, unsigned.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: String::new(),
            signature: None,
        }
    }

    /// A `POST` to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Add a header (values may name secrets as `{{secret:NAME}}`).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.into(),
        });
        self
    }

    /// A JSON body, with its content type.
    pub fn json(self, body: &impl Serialize) -> Self {
        let body = serde_json::to_string(body).expect("a JSON value serializes");
        Request { body, ..self }.header("Content-Type", "application/json")
    }

    /// A form-encoded body (`application/x-www-form-urlencoded`).
    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        Request { body, ..self }.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Have the host sign the request (Standard Webhooks v1) with the
    /// integration's secret `secret`.
    pub fn signed_with(mut self, secret: &str) -> Self {
        self.signature = Some(Signature::StandardWebhooks(secret.to_owned()));
        self
    }
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

impl Callback {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

impl Verdict {
    /// The usual reading of an HTTP status: 2xx accepted (with
    /// `provider_id`); 408, 425, 429 and 5xx retried (the host honours
    /// `Retry-After`); any other status refused for good.
    pub fn from_status(status: u16, provider_id: Option<String>) -> Self {
        match status {
            200..=299 => Verdict::Accepted(provider_id),
            408 | 425 | 429 | 500..=599 => Verdict::Retry(RetryLater {
                reason: format!("the provider answered {status}"),
                after_ms: None,
            }),
            _ => Verdict::Rejected(format!("the provider refused the message ({status})")),
        }
    }
}

impl StatusUpdate {
    /// A status for the message the provider calls `provider_id`.
    pub fn new(provider_id: impl Into<String>, status: DeliveryStatus) -> Self {
        StatusUpdate {
            message_id: None,
            provider_id: provider_id.into(),
            status,
            at_ms: None,
            detail: "{}".into(),
        }
    }
}

fn header_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .map(|header| header.value.as_str())
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
/// Secret placeholders are kept as they are, for the host to fill in.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(end) = rest
            .starts_with("{{secret:")
            .then(|| rest.find("}}"))
            .flatten()
        {
            out.push_str(&rest[..end + 2]);
            rest = &rest[end + 2..];
            continue;
        }
        let c = rest.chars().next().expect("rest is not empty");
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '*' => out.push(c),
            ' ' => out.push('+'),
            _ => {
                let mut buffer = [0; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    fn config(config: &str) -> Result<Value, String> {
        serde_json::from_str(config).map_err(|error| format!("invalid integration config: {error}"))
    }

    pub fn render<C: Channel>(
        message: OutgoingMessage,
        config_json: String,
    ) -> Result<Request, RenderError> {
        C::render(&message, &config(&config_json)?)
    }

    pub fn interpret<C: Channel>(
        message: OutgoingMessage,
        response: Response,
        config_json: String,
    ) -> Verdict {
        match config(&config_json) {
            Ok(config) => C::interpret(&message, &response, &config),
            Err(error) => Verdict::Retry(RetryLater {
                reason: error,
                after_ms: None,
            }),
        }
    }

    pub fn parse_callback<C: Channel>(
        callback: Callback,
        config_json: String,
    ) -> Result<Vec<StatusUpdate>, String> {
        C::parse_callback(&callback, &config(&config_json)?)
    }
}

/// Registers a [`Channel`] implementation as the component's `channel` export.
#[macro_export]
macro_rules! export_channel {
    ($channel:ty) => {
        #[allow(dead_code)]
        struct __JourneyChannelExport;

        impl $crate::channel::bindings::exports::journey::plugin::channel::Guest
            for __JourneyChannelExport
        {
            fn render(
                message: $crate::channel::OutgoingMessage,
                config: ::std::string::String,
            ) -> ::core::result::Result<$crate::channel::Request, $crate::channel::RenderError>
            {
                $crate::channel::__private::render::<$channel>(message, config)
            }

            fn interpret(
                message: $crate::channel::OutgoingMessage,
                response: $crate::channel::Response,
                config: ::std::string::String,
            ) -> $crate::channel::Verdict {
                $crate::channel::__private::interpret::<$channel>(message, response, config)
            }

            fn parse_callback(
                callback: $crate::channel::Callback,
                config: ::std::string::String,
            ) -> ::core::result::Result<
                ::std::vec::Vec<$crate::channel::StatusUpdate>,
                ::std::string::String,
            > {
                $crate::channel::__private::parse_callback::<$channel>(callback, config)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::channel::bindings::__export_channel_plugin!(__JourneyChannelExport);

        // On the host the export does not exist; the plugin still
        // compiles (so its unit tests run) without dead-code noise.
        #[cfg(not(target_arch = "wasm32"))]
        const _: (
            fn(
                $crate::channel::OutgoingMessage,
                ::std::string::String,
            )
                -> ::core::result::Result<$crate::channel::Request, $crate::channel::RenderError>,
            fn(
                $crate::channel::OutgoingMessage,
                $crate::channel::Response,
                ::std::string::String,
            ) -> $crate::channel::Verdict,
            fn(
                $crate::channel::Callback,
                ::std::string::String,
            ) -> ::core::result::Result<
                ::std::vec::Vec<$crate::channel::StatusUpdate>,
                ::std::string::String,
            >,
        ) = (
            $crate::channel::__private::render::<$channel>,
            $crate::channel::__private::interpret::<$channel>,
            $crate::channel::__private::parse_callback::<$channel>,
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_the_dispatcher_expects() {
        assert!(matches!(
            Verdict::from_status(202, Some("p-1".into())),
            Verdict::Accepted(Some(id)) if id == "p-1"
        ));
        for status in [408, 425, 429, 500, 503] {
            assert!(
                matches!(Verdict::from_status(status, None), Verdict::Retry(_)),
                "{status}"
            );
        }
        for status in [400, 401, 404, 410, 422] {
            assert!(
                matches!(Verdict::from_status(status, None), Verdict::Rejected(_)),
                "{status}"
            );
        }
    }

    #[test]
    fn form_encoding_keeps_secret_placeholders_for_the_host() {
        assert_eq!(form_encode("Hi Ada & co: 100%"), "Hi+Ada+%26+co%3A+100%25");
        assert_eq!(form_encode("{{secret:sid}}/x"), "{{secret:sid}}%2Fx");
        assert_eq!(form_encode("é"), "%C3%A9");
    }
}
