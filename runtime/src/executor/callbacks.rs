//! Provider callbacks: a provider reports what became of messages
//! (delivered, opened, clicked, bounced, failed). The signature is
//! verified on the raw body before anything else (Standard Webhooks, with
//! the integration's callback secret); the channel plugin reads the
//! statuses; each moves its message's delivery forward (never back) and
//! becomes an event through the normal ingest path, so engagement, waits
//! and the funnel see it. A repeated callback changes nothing: statuses
//! only move forward and each event's id is derived from the message and
//! the status. A status about a message the store does not know is
//! accepted and ignored (and logged).

use serde_json::{Map, Value, json};

use super::*;
use crate::delivery::{SecretValues, verify_webhook};
use crate::host::channel::{Callback, ChannelCall, DeliveryStatus as ReportedStatus, Header};
use crate::store::{MessageRef, StatusReport};

/// Why a callback was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// No integration for the channel.
    #[error("no integration for channel `{0}`")]
    UnknownIntegration(String),
    /// The integration takes no callbacks.
    #[error(
        "integration `{0}` has no callback secret, so it takes no callbacks (set one with --callback-secret)"
    )]
    NoCallbackSecret(String),
    /// The signature is missing or wrong.
    #[error("integration `{channel}`: the callback's signature does not verify: {reason}")]
    BadSignature {
        /// The integration.
        channel: String,
        /// Why.
        reason: String,
    },
    /// The plugin could not read it.
    #[error("integration `{channel}`: the callback could not be read: {reason}")]
    Unreadable {
        /// The integration.
        channel: String,
        /// Why.
        reason: String,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] Error),
}

/// What a callback did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallbackReceipt {
    /// Statuses about known messages.
    pub accepted: usize,
    /// Statuses about messages the store does not know.
    pub ignored: usize,
    /// The events they became and journeys took (a repeated status
    /// repeats its event id; a status no journey declares makes none).
    pub events: Vec<String>,
}

impl Runtime {
    /// Verify, read and apply a provider's callback to integration
    /// `channel`.
    pub async fn receive_callback(
        self: &Arc<Self>,
        channel: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> std::result::Result<CallbackReceipt, CallbackError> {
        let integration = self
            .integrations
            .get(channel)
            .ok_or_else(|| CallbackError::UnknownIntegration(channel.to_owned()))?;
        let record = &integration.record;
        let secret = record
            .callback_secret
            .as_ref()
            .ok_or_else(|| CallbackError::NoCallbackSecret(channel.to_owned()))?;
        let bad_signature = |reason: String| CallbackError::BadSignature {
            channel: channel.to_owned(),
            reason,
        };
        let secrets = SecretValues::read(&record.secrets).map_err(|error| {
            tracing::error!(channel, %error, "the callback secret cannot be read");
            bad_signature("the integration's callback secret cannot be read".into())
        })?;
        let value = secrets
            .get(secret)
            .map_err(|error| bad_signature(error.to_string()))?;
        verify_webhook(secret, value, headers, body)
            .map_err(|error| bad_signature(error.to_string()))?;

        let callback = Callback {
            headers: headers
                .iter()
                .filter_map(|(name, value)| {
                    Some(Header {
                        name: name.to_string(),
                        value: value.to_str().ok()?.to_owned(),
                    })
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let runtime = self.clone();
        let (plugin_ref, config, channel_owned) = (
            integration.plugin.clone(),
            record.config.to_string(),
            channel.to_owned(),
        );
        let updates = tokio::task::spawn_blocking(move || {
            let (_, plugin) = runtime.resolve_plugin(&plugin_ref, InstanceId(0))?;
            let call = ChannelCall {
                subject: "callback",
                integration: &channel_owned,
                key: "callback",
            };
            runtime
                .host
                .parse_callback(&plugin, &call, &callback, &config)
        })
        .await
        .map_err(Error::from)?
        .map_err(|failure| CallbackError::Unreadable {
            channel: channel.to_owned(),
            reason: failure.to_string(),
        })?;

        let mut receipt = CallbackReceipt::default();
        for update in updates {
            let status = match update.status {
                ReportedStatus::Delivered => DeliveryStatus::Delivered,
                ReportedStatus::Opened => DeliveryStatus::Opened,
                ReportedStatus::Clicked => DeliveryStatus::Clicked,
                ReportedStatus::Bounced => DeliveryStatus::Bounced,
                ReportedStatus::Failed => DeliveryStatus::Failed,
            };
            let at_ms = update.at_ms.unwrap_or_else(|| self.clock.now_ms());
            let detail: Value = serde_json::from_str(&update.detail).unwrap_or_else(|_| json!({}));
            let report = StatusReport {
                at_ms,
                status,
                note: match detail.as_object().filter(|detail| !detail.is_empty()) {
                    Some(detail) => format!(
                        "{} reported {} ({})",
                        channel,
                        status.as_str(),
                        Value::Object(detail.clone())
                    ),
                    None => format!("{} reported {}", channel, status.as_str()),
                },
            };
            let (by_id, provider_id) = (update.message_id.clone(), update.provider_id.clone());
            let channel_owned = channel.to_owned();
            let found = self
                .with_store(move |store| {
                    let found = by_id
                        .as_deref()
                        .map(|id| store.report_delivery(MessageRef::Id(id), &report))
                        .transpose()?
                        .flatten();
                    if found.is_some() {
                        return Ok(found);
                    }
                    store.report_delivery(
                        MessageRef::Provider {
                            integration: &channel_owned,
                            provider_id: &provider_id,
                        },
                        &report,
                    )
                })
                .await?;
            let Some((message, _, changed)) = found else {
                receipt.ignored += 1;
                tracing::info!(channel, message = ?update.message_id, provider_id = %update.provider_id, status = status.as_str(), "a callback about an unknown message was ignored");
                continue;
            };
            receipt.accepted += 1;
            let event = status_event(&message, status, &update.provider_id, detail);
            tracing::debug!(message = %message.id, status = status.as_str(), changed, event = %event.id, "delivery status reported");
            let event_id = event.id.clone();
            match self.ingest(event).await {
                Ok(_) => receipt.events.push(event_id),
                // The status is recorded; the event is one no journey
                // takes (or takes as it is): nothing to retry.
                Err(error @ (Error::Store(_) | Error::Commit(_) | Error::Task(_))) => {
                    return Err(error.into());
                }
                Err(error) => {
                    tracing::debug!(event = %event_id, %error, "a delivery status event was not taken");
                }
            }
        }
        Ok(receipt)
    }
}

/// The event a status report becomes: `message.delivered`,
/// `message.bounced` and `message.failed`, or `<channel>.opened` and
/// `<channel>.clicked` (so `email.opened` is what engagement rules name).
/// Its id is derived from the message and the status, so a repeated
/// report is a duplicate event. Its data is the message's metadata plus
/// what identifies the message.
fn status_event(
    message: &OutboxMessage,
    status: DeliveryStatus,
    provider_id: &str,
    detail: Value,
) -> IncomingEvent {
    let kind = match status {
        DeliveryStatus::Opened | DeliveryStatus::Clicked => {
            format!("{}.{}", message.channel, status.as_str())
        }
        _ => format!("message.{}", status.as_str()),
    };
    let mut data: Map<String, Value> =
        serde_json::from_str(message.metadata.get()).unwrap_or_default();
    data.insert("message_id".into(), json!(message.id));
    data.insert("channel".into(), json!(message.channel));
    data.insert("status".into(), json!(status.as_str()));
    data.insert("provider_id".into(), json!(provider_id));
    data.insert("instance_id".into(), json!(message.instance_id.to_string()));
    data.insert("step".into(), json!(message.step));
    data.insert("detail".into(), detail);
    IncomingEvent {
        id: format!("{}:{}", message.id, status.as_str()),
        kind,
        customer: message.customer_id.clone(),
        data: RawValue::from_string(Value::Object(data).to_string())
            .expect("a JSON object serializes to valid JSON"),
    }
}
