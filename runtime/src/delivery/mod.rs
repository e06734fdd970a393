//! Delivery: the parts messages need to leave the runtime, without the
//! runtime itself.
//!
//! - [`integration`]: what operators configure per channel (plugin,
//!   config, hosts, secrets, limits) and the integrations in force;
//! - [`outbound`]: the HTTP client that reaches only granted hosts, on
//!   public addresses unless granted by address, with timeouts and a
//!   response size limit;
//! - [`secrets`]: secret references, filled into a request just before it
//!   is sent and redacted from anything that might quote it;
//! - here: the retry schedule (exponential backoff with full jitter,
//!   `Retry-After`) and Standard Webhooks signatures.
//!
//! The dispatcher that claims, sends and marks messages, and the callback
//! path, are the executor's (`executor/dispatch.rs`, `executor/callbacks.rs`).

pub mod integration;
pub mod outbound;
pub mod secrets;

use std::time::{Duration, SystemTime};

pub use self::integration::{ActiveIntegration, IntegrationError, IntegrationSet, IntegrationSpec};
pub use self::outbound::{Grants, Outbound, OutboundError, OutboundRequest, OutboundResponse};
pub use self::secrets::{SecretError, SecretRef, SecretValues};

/// The first retry waits up to this long.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// No retry waits longer than this (unless the provider asks).
pub const MAX_RETRY: Duration = Duration::from_secs(600);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long to wait before attempt `attempts + 1`: a random time up to
/// `FIRST_RETRY × 2^(attempts-1)`, capped at [`MAX_RETRY`] ("full
/// jitter"), so retries of many messages spread out instead of arriving
/// together.
pub fn retry_delay(attempts: u32) -> Duration {
    let ceiling = FIRST_RETRY
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_RETRY);
    let millis = rand::random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(millis)
}

/// A `Retry-After` header's wait: seconds, or an HTTP date compared with
/// `now`; at most [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Why a Standard Webhooks signature could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The secret is not `whsec_<base64>` (or plain base64).
    #[error("the signing secret `{0}` is not base64 (whsec_…)")]
    BadSecret(String),
    /// The body is not UTF-8 (Standard Webhooks signs text).
    #[error("the body is not UTF-8 text")]
    NotText,
    /// The signature headers are missing, stale or wrong.
    #[error("the signature does not verify: {0}")]
    Invalid(String),
}

/// The `webhook-signature` of `body` sent as message `id` at `timestamp`
/// (seconds), signed with secret `name`'s `value`.
pub fn sign_webhook(
    name: &str,
    value: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let webhook = standardwebhooks::Webhook::new(value)
        .map_err(|_| SignatureError::BadSecret(name.to_owned()))?;
    webhook
        .sign(id, timestamp, body)
        .map_err(|_| SignatureError::NotText)
}

/// Verify a Standard Webhooks signature on a raw `body` with secret
/// `name`'s `value` (the timestamp must be within five minutes).
pub fn verify_webhook(
    name: &str,
    value: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let webhook = standardwebhooks::Webhook::new(value)
        .map_err(|_| SignatureError::BadSecret(name.to_owned()))?;
    webhook
        .verify(body, headers)
        .map_err(|error| SignatureError::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_full_jitter_up_to_a_ceiling() {
        for attempts in 1..40 {
            let ceiling = FIRST_RETRY
                .saturating_mul(1 << (attempts - 1).min(20))
                .min(MAX_RETRY);
            let delay = retry_delay(attempts);
            assert!(delay <= ceiling, "{attempts}: {delay:?} > {ceiling:?}");
        }
        let spread: std::collections::HashSet<Duration> =
            (0..50).map(|_| retry_delay(10)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
    }

    #[test]
    fn retry_after_reads_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_112_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(90)));
        assert_eq!(retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"type":"message.created"}"#;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let signature = sign_webhook("hook", secret, "msg_1", now, body).expect("signs");
        assert!(signature.starts_with("v1,"));
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().expect("a header"));
        headers.insert(
            "webhook-timestamp",
            now.to_string().parse().expect("a header"),
        );
        headers.insert("webhook-signature", signature.parse().expect("a header"));
        assert!(verify_webhook("hook", secret, &headers, body).is_ok());
        assert!(verify_webhook("hook", secret, &headers, b"{}").is_err());
        assert!(matches!(
            sign_webhook("hook", "not base64!", "msg_1", now, body),
            Err(SignatureError::BadSecret(_))
        ));
    }
}
