//! The dispatcher: delivers queued messages through their channel's
//! integration, with exactly-once effect at providers that honour
//! idempotency keys.
//!
//! Each round claims the due messages (the claim records the attempt
//! before anything is sent, so a crash mid-send leaves "outcome unknown"
//! on record and the message is claimed again after its lease, with the
//! same id). For each message the channel plugin renders the provider
//! request; the host fills in the secrets, checks the host against the
//! integration's grants, signs it when asked, adds the message id as
//! `Idempotency-Key`, sends it within the integration's rate limit and
//! concurrency cap, asks the plugin what the answer means, and marks the
//! message: accepted, retrying (exponential backoff with full jitter,
//! `Retry-After` honoured) or dead (refused, too many attempts, too old).
//! A 410 also disables the integration. Only messages in the outbox are
//! ever sent: one a frequency cap or quiet hours held back never got there.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::delivery::{
    self, ActiveIntegration, OutboundError, OutboundRequest, SecretValues, retry_after,
    retry_delay, sign_webhook,
};
use crate::host::channel::{
    ChannelCall, Header, OutgoingMessage, ProviderResponse, RenderFailure, Signature, Verdict,
};
use crate::store::{AttemptOutcome, ClaimedMessage, DeliveryAttempt, Mark, Marked};
use crate::telemetry::Attribute;

/// Messages claimed per round at most.
const DISPATCH_BATCH: usize = 64;
/// Deliveries in flight at most, across integrations.
const MAX_IN_FLIGHT: usize = 256;
/// How long an attempt is ours before another claimant may take its
/// message over: longer than the longest request timeout.
pub const DELIVERY_LEASE: Duration = Duration::from_secs(180);
/// Longest the dispatcher sleeps without looking for due messages.
const MAX_DISPATCH_SLEEP: Duration = Duration::from_millis(500);
/// Attempts recorded in one store write at most.
const MARK_BATCH: usize = 512;

/// An attempt waiting to be recorded, and who waits for the answer.
type PendingMark = (Mark, tokio::sync::oneshot::Sender<Result<Marked, String>>);

/// What this process is claiming or sending now (a simulated clock waits
/// for it to settle).
#[derive(Default)]
pub(super) struct InFlight {
    /// Attempts started and not yet marked.
    sending: AtomicUsize,
    /// Claim rounds between the store's claim and the attempts' start.
    claiming: AtomicUsize,
}

impl InFlight {
    /// Whether nothing is being claimed or sent.
    pub(super) fn is_empty(&self) -> bool {
        self.claiming.load(Ordering::Acquire) == 0 && self.sending.load(Ordering::Acquire) == 0
    }
}

/// What one attempt came to, before it is marked.
struct AttemptResult {
    outcome: AttemptOutcome,
    /// The provider said the integration is gone (410).
    gone: bool,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Runtime {
    /// Start the dispatcher; it runs, restarted after a panic, for as long
    /// as the process.
    pub fn start_dispatcher(self: &Arc<Self>) {
        self.supervise("the dispatcher", |runtime| runtime.run_dispatcher());
    }

    async fn run_dispatcher(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let (marks, pending) = tokio::sync::mpsc::unbounded_channel();
        let marker = tokio::spawn(self.clone().record_attempts(pending));
        let _stop_marker = AbortOnDrop(marker);
        loop {
            let busy = if self.integrations.is_empty() {
                false
            } else {
                match self.dispatch_due(&slots, &marks).await {
                    Ok(claimed) => claimed == DISPATCH_BATCH,
                    Err(error) => {
                        tracing::error!(error = %error, "claiming messages to deliver failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        false
                    }
                }
            };
            if !busy {
                let _ =
                    tokio::time::timeout(MAX_DISPATCH_SLEEP, self.outbox_changed.notified()).await;
            }
        }
    }

    /// Record attempts as they end, many in one store write: while one
    /// group is written the next gathers (group commit for deliveries).
    async fn record_attempts(
        self: Arc<Self>,
        mut pending: tokio::sync::mpsc::UnboundedReceiver<PendingMark>,
    ) {
        while let Some(first) = pending.recv().await {
            let mut group = vec![first];
            while group.len() < MARK_BATCH {
                match pending.try_recv() {
                    Ok(mark) => group.push(mark),
                    Err(_) => break,
                }
            }
            let (marks, replies): (Vec<Mark>, Vec<_>) = group.into_iter().unzip();
            match self
                .with_store(move |store| store.mark_outbox_many(&marks))
                .await
            {
                Ok(marked) => {
                    for (reply, marked) in replies.into_iter().zip(marked) {
                        let _ = reply.send(Ok(marked));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
            }
        }
    }

    /// Claim the due messages (as many as there are free slots) and start
    /// delivering each. Returns how many were claimed.
    async fn dispatch_due(
        self: &Arc<Self>,
        slots: &Arc<tokio::sync::Semaphore>,
        marks: &tokio::sync::mpsc::UnboundedSender<PendingMark>,
    ) -> Result<usize> {
        if self.is_draining() {
            // Due messages go out after the next start.
            return Ok(0);
        }
        let first = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the dispatch slots are never closed");
        let free = (slots.available_permits() + 1).min(DISPATCH_BATCH);
        let now = self.clock.now_ms();
        self.in_flight.claiming.fetch_add(1, Ordering::AcqRel);
        let claimed = self
            .with_store(move |store| store.claim_outbox(now, free, DELIVERY_LEASE))
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                self.in_flight.claiming.fetch_sub(1, Ordering::AcqRel);
                return Err(error);
            }
        };
        let count = claimed.len();
        let mut permit = Some(first);
        for claimed in claimed {
            let slot = match permit.take() {
                Some(slot) => slot,
                None => slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the dispatch slots are never closed"),
            };
            // Every claim is an attempt of its own: a message is claimed
            // again only once its last attempt was marked or its lease
            // ended, and either way the provider sees the same id.
            self.in_flight.sending.fetch_add(1, Ordering::AcqRel);
            let runtime = self.clone();
            let marks = marks.clone();
            tokio::spawn(async move {
                runtime.deliver(claimed, &marks).await;
                runtime.in_flight.sending.fetch_sub(1, Ordering::AcqRel);
                drop(slot);
            });
        }
        self.in_flight.claiming.fetch_sub(1, Ordering::AcqRel);
        Ok(count)
    }

    /// One attempt at one claimed message, marked in the store.
    async fn deliver(
        self: &Arc<Self>,
        claimed: ClaimedMessage,
        marks: &tokio::sync::mpsc::UnboundedSender<PendingMark>,
    ) {
        let ClaimedMessage {
            message,
            delivery,
            claim,
        } = claimed;
        let channel = message.channel.clone();
        let mut span = telemetry::Span::start(
            "deliver",
            telemetry::Kind::Client,
            telemetry::parent_of(message.trace.as_deref()).as_ref(),
            || {
                vec![
                    Attribute::new("journeyd.message", message.id.clone()),
                    Attribute::new("journeyd.integration", channel.clone()),
                    Attribute::new("journeyd.journey", message.journey.clone()),
                    Attribute::new("journeyd.step", message.step.clone()),
                    Attribute::new("journeyd.instance", message.instance_id.0 as i64),
                    Attribute::new("journeyd.delivery.attempt", i64::from(delivery.attempts)),
                ]
            },
        );
        let traceparent = span.traceparent();
        let integration = self.integrations.get(&channel);
        let result = match &integration {
            None => self.retry_later(
                &delivery,
                &message,
                None,
                format!("no integration for channel `{channel}`"),
                None,
            ),
            Some(active) => match &active.record.disabled {
                Some(reason) => self.retry_later(
                    &delivery,
                    &message,
                    Some(active),
                    format!("integration `{channel}` is disabled ({reason})"),
                    Some(delivery::MAX_RETRY),
                ),
                None => {
                    self.attempt(active, &message, &delivery, traceparent.as_deref())
                        .await
                }
            },
        };
        let outcome_name = match &result.outcome {
            AttemptOutcome::Accepted { .. } => "accepted",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Dead { .. } => "dead",
        };
        metrics::counter!("journeyd_deliveries_total", "integration" => channel.clone(), "outcome" => outcome_name)
            .increment(1);
        span.set(|| vec![Attribute::new("journeyd.delivery.outcome", outcome_name)]);
        if let AttemptOutcome::Retry { error, .. } | AttemptOutcome::Dead { error } =
            &result.outcome
        {
            span.fail(|| error.clone());
        }
        span.end();
        if result.gone {
            let runtime = self.clone();
            let gone_channel = channel.clone();
            let reason = "the provider answered 410 Gone".to_owned();
            let disabled = tokio::task::spawn_blocking(move || {
                runtime.disable_integration(&gone_channel, reason)
            })
            .await;
            if !matches!(disabled, Ok(Ok(()))) {
                tracing::error!(channel, "the integration could not be disabled after a 410");
            }
        }
        let attempt = DeliveryAttempt {
            at_ms: self.clock.now_ms(),
            integration: channel.clone(),
            outcome: result.outcome,
        };
        let (reply, marked) = tokio::sync::oneshot::channel();
        let mark = Mark {
            id: message.id.clone(),
            claim,
            attempt,
        };
        let marked = match marks.send((mark, reply)) {
            Ok(()) => marked
                .await
                .unwrap_or_else(|_| Err("the dispatcher is stopping".into())),
            Err(_) => Err("the dispatcher is stopping".into()),
        };
        match marked {
            Ok(Marked::Recorded(delivery)) => {
                tracing::debug!(message = %message.id, status = delivery.status.as_str(), "delivery marked")
            }
            Ok(Marked::ClaimLost) => {
                tracing::info!(message = %message.id, "the delivery's claim was taken over; its outcome is left to the new claimant")
            }
            Ok(Marked::Unknown) => {
                tracing::warn!(message = %message.id, "a delivered message is gone from the store")
            }
            Err(error) => {
                // The claim's lease ends and the message is claimed again:
                // sent once more with the same idempotency key.
                tracing::error!(message = %message.id, error = %error, "recording a delivery attempt failed")
            }
        }
    }

    /// A retry after `wait` (or the backoff for the attempts so far), or
    /// dead when the attempts or the age are used up.
    fn retry_later(
        &self,
        delivery: &Delivery,
        message: &OutboxMessage,
        integration: Option<&ActiveIntegration>,
        error: String,
        wait: Option<Duration>,
    ) -> AttemptResult {
        let now = self.clock.now_ms();
        let (max_attempts, max_age_ms) = integration.map_or(
            (
                delivery::integration::DEFAULT_MAX_ATTEMPTS,
                delivery::integration::DEFAULT_MAX_AGE.as_millis() as u64,
            ),
            |active| (active.record.max_attempts, active.record.max_age_ms),
        );
        let wait = wait.unwrap_or_else(|| retry_delay(delivery.attempts));
        let retry_at_ms = now.saturating_add(wait.as_millis() as u64);
        let outcome = if delivery.attempts >= max_attempts {
            AttemptOutcome::Dead {
                error: format!("{error}; gave up after {} attempts", delivery.attempts),
            }
        } else if retry_at_ms.saturating_sub(message.queued_at_ms) > max_age_ms {
            AttemptOutcome::Dead {
                error: format!(
                    "{error}; gave up: a retry would be older than {} (the provider may have forgotten its idempotency key)",
                    humantime::format_duration(Duration::from_millis(max_age_ms))
                ),
            }
        } else {
            AttemptOutcome::Retry { error, retry_at_ms }
        };
        AttemptResult {
            outcome,
            gone: false,
        }
    }

    /// Render, send and interpret one attempt.
    async fn attempt(
        self: &Arc<Self>,
        integration: &Arc<ActiveIntegration>,
        message: &OutboxMessage,
        delivery: &Delivery,
        traceparent: Option<&str>,
    ) -> AttemptResult {
        let record = &integration.record;
        let now = self.clock.now_ms();
        if now.saturating_sub(message.queued_at_ms) > record.max_age_ms {
            return AttemptResult {
                outcome: AttemptOutcome::Dead {
                    error: format!(
                        "not sent: queued {} ago, longer than the integration's maximum age",
                        humantime::format_duration(Duration::from_millis(
                            now.saturating_sub(message.queued_at_ms)
                        ))
                    ),
                },
                gone: false,
            };
        }
        match self
            .send_once(integration, message, delivery, traceparent)
            .await
        {
            Ok(result) => result,
            Err(reason) => self.retry_later(delivery, message, Some(integration), reason, None),
        }
    }

    /// One attempt; `Err` is a failure worth retrying, in words (secrets
    /// redacted).
    async fn send_once(
        self: &Arc<Self>,
        integration: &Arc<ActiveIntegration>,
        message: &OutboxMessage,
        delivery: &Delivery,
        traceparent: Option<&str>,
    ) -> std::result::Result<AttemptResult, String> {
        let record = &integration.record;
        let secrets = SecretValues::read(&record.secrets).map_err(|error| error.to_string())?;
        let mut outgoing = OutgoingMessage {
            id: message.id.clone(),
            channel: message.channel.clone(),
            to: message.to.clone(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            metadata: message.metadata.get().to_owned(),
            customer_id: message.customer_id.clone(),
            journey: message.journey.clone(),
            instance_id: message.instance_id.to_string(),
            step: message.step.clone(),
            attempt: delivery.attempts,
        };
        let config = record.config.to_string();
        // Resolving may compile the plugin; the address is a store read;
        // rendering runs the sandbox.
        let runtime = self.clone();
        let plugin_ref = integration.plugin.clone();
        let (instance, channel) = (message.instance_id, record.channel.clone());
        let rendered = tokio::task::spawn_blocking(move || {
            let (_, plugin) = runtime
                .resolve_plugin(&plugin_ref, instance)
                .map_err(RenderFailure::Failed)?;
            if outgoing.to.is_empty() {
                outgoing.to = runtime
                    .profile_address(&outgoing.customer_id, &outgoing.channel)
                    .map_err(RenderFailure::Failed)?;
            }
            let call = ChannelCall {
                subject: &outgoing.instance_id,
                integration: &channel,
                key: &outgoing.id,
            };
            let request = runtime
                .host
                .render_message(&plugin, &call, &outgoing, &config)?;
            Ok::<_, RenderFailure>((plugin, outgoing, request))
        })
        .await
        .map_err(|error| format!("host fault: {error}"))?;
        let (plugin, outgoing, request) = match rendered {
            Ok(rendered) => rendered,
            Err(RenderFailure::Rejected(reason)) => {
                return Ok(AttemptResult {
                    outcome: AttemptOutcome::Dead {
                        error: format!("the channel plugin refused the message: {reason}"),
                    },
                    gone: false,
                });
            }
            Err(RenderFailure::Failed(failure)) => {
                return Err(format!(
                    "the channel plugin could not render the message: {failure}"
                ));
            }
        };
        let outbound = prepare(&request, &outgoing, integration, &secrets, traceparent)
            .map_err(|error| secrets.redact(&error))?;
        let slot = integration.slot().await;
        let sent = self
            .outbound
            .send(
                outbound,
                integration.timeout(),
                delivery::outbound::MAX_RESPONSE_BYTES,
            )
            .await;
        drop(slot);
        let response = sent.map_err(|error| secrets.redact(&error.to_string()))?;
        let status = response.status;
        let wait_asked = response
            .header("retry-after")
            .and_then(|value| retry_after(value, std::time::SystemTime::now()));
        let provider_response = ProviderResponse {
            status,
            headers: response
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            body: String::from_utf8_lossy(&response.body).into_owned(),
        };
        let runtime = self.clone();
        let channel = record.channel.clone();
        let config = record.config.to_string();
        let verdict = tokio::task::spawn_blocking(move || {
            let call = ChannelCall {
                subject: &outgoing.instance_id,
                integration: &channel,
                key: &outgoing.id,
            };
            runtime
                .host
                .interpret_response(&plugin, &call, &outgoing, &provider_response, &config)
        })
        .await
        .map_err(|error| format!("host fault: {error}"))?
        .map_err(|failure| {
            format!(
                "the provider answered {status}, and the channel plugin failed reading it: {failure}"
            )
        })?;
        Ok(match verdict {
            Verdict::Accepted(provider_id) => AttemptResult {
                outcome: AttemptOutcome::Accepted { provider_id },
                gone: false,
            },
            // The provider's wait, when it names one, replaces the backoff.
            Verdict::Retry(retry) => self.retry_later(
                delivery,
                message,
                Some(integration),
                secrets.redact(&retry.reason),
                retry.after_ms.map(Duration::from_millis).or(wait_asked),
            ),
            Verdict::Rejected(reason) => AttemptResult {
                outcome: AttemptOutcome::Dead {
                    error: secrets.redact(&reason),
                },
                gone: status == 410,
            },
        })
    }
}

impl Runtime {
    /// The customer's address on `channel`: their profile's field of that
    /// name (`email`, `sms`, ...), empty when they have none.
    fn profile_address(&self, customer: &str, channel: &str) -> Result<String, StepFailure> {
        let view = self
            .store
            .customer_view(customer, 0, &[])
            .map_err(|error| {
                StepFailure::Host(format!(
                    "the profile of customer {customer} could not be read: {}",
                    crate::error_chain(&error)
                ))
            })?;
        let profile: serde_json::Value =
            serde_json::from_str(view.profile.get()).unwrap_or_default();
        Ok(profile[channel].as_str().unwrap_or_default().to_owned())
    }
}

/// The request to send: secrets filled in, the host checked against the
/// grants, signed when asked, with the idempotency key and the delivery
/// span's `traceparent` (when tracing). Errors may quote secret values;
/// the caller redacts them.
fn prepare(
    request: &crate::host::channel::ProviderRequest,
    message: &OutgoingMessage,
    integration: &ActiveIntegration,
    secrets: &SecretValues,
    traceparent: Option<&str>,
) -> std::result::Result<OutboundRequest, String> {
    let url = secrets
        .fill(&request.url)
        .map_err(|error| error.to_string())?;
    let url = integration
        .grants
        .check(&url)
        .map_err(|error: OutboundError| format!("not sent: {error}"))?;
    let body = secrets
        .fill(&request.body)
        .map_err(|error| error.to_string())?;
    const OURS: [&str; 4] = [
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    let mut headers = Vec::with_capacity(request.headers.len() + 5);
    for header in &request.headers {
        let ours = OURS
            .iter()
            .any(|ours| header.name.eq_ignore_ascii_case(ours))
            || (traceparent.is_some() && header.name.eq_ignore_ascii_case(telemetry::TRACEPARENT));
        if ours {
            continue;
        }
        let value = secrets
            .fill(&header.value)
            .map_err(|error| error.to_string())?;
        headers.push((header.name.clone(), value));
    }
    headers.push(("Idempotency-Key".into(), message.id.clone()));
    if let Some(traceparent) = traceparent {
        headers.push((telemetry::TRACEPARENT.into(), traceparent.to_owned()));
    }
    if let Some(Signature::StandardWebhooks(secret)) = &request.signature {
        let value = secrets.get(secret).map_err(|error| error.to_string())?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        let signature = sign_webhook(secret, value, &message.id, timestamp, body.as_bytes())
            .map_err(|error| error.to_string())?;
        headers.push(("webhook-id".into(), message.id.clone()));
        headers.push(("webhook-timestamp".into(), timestamp.to_string()));
        headers.push(("webhook-signature".into(), signature));
    }
    Ok(OutboundRequest {
        method: request.method.clone(),
        url,
        headers,
        body: body.into_bytes(),
    })
}
