//! The outbox: messages steps queued, committed with their steps, waiting
//! for delivery; what became of each delivery attempt.
//!
//! A dispatcher claims the messages that are due with a lease, sends
//! them, and marks each one: delivered, failed for now (due again later)
//! or dead. A claimed message is not handed to anyone else until its
//! lease ends or it is marked, so a dispatcher that dies mid-send leaves
//! its messages to be claimed again after the lease (the provider sees the
//! same message id again and drops the duplicate).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InstanceId, OutboxMessage, Result};

/// Where a message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting to be sent (first time or again).
    Queued,
    /// Handed to the provider.
    Delivered,
    /// The last attempt failed; it is due again later.
    Failed,
    /// It will not be sent: it failed for good, or too often.
    Dead,
}

/// What is known of a message's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts marked so far.
    pub attempts: u32,
    /// When it may be sent next, ms since the Unix epoch (while queued or
    /// failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's id for it, once delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// When this was last marked (its queue time before the first mark).
    pub updated_at_ms: u64,
}

impl Delivery {
    /// A message just queued at `at_ms`, due at once.
    pub fn queued(at_ms: u64) -> Self {
        Delivery {
            status: DeliveryStatus::Queued,
            attempts: 0,
            due_ms: Some(at_ms),
            error: None,
            provider_id: None,
            updated_at_ms: at_ms,
        }
    }

    /// The delivery after `attempt`'s outcome.
    pub fn after(&self, attempt: &DeliveryAttempt) -> Delivery {
        let mut next = Delivery {
            attempts: self.attempts + 1,
            updated_at_ms: attempt.at_ms,
            due_ms: None,
            error: None,
            ..self.clone()
        };
        match &attempt.outcome {
            AttemptOutcome::Delivered { provider_id } => {
                next.status = DeliveryStatus::Delivered;
                next.provider_id = provider_id.clone();
            }
            AttemptOutcome::Failed { error, retry_at_ms } => {
                next.status = DeliveryStatus::Failed;
                next.error = Some(error.clone());
                next.due_ms = Some(*retry_at_ms);
            }
            AttemptOutcome::Dead { error } => {
                next.status = DeliveryStatus::Dead;
                next.error = Some(error.clone());
            }
        }
        next
    }
}

/// One delivery attempt's result, as the dispatcher marks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When it ended, ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub outcome: AttemptOutcome,
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The provider took the message.
    Delivered {
        /// The provider's id for it, if it gave one.
        provider_id: Option<String>,
    },
    /// It failed for now; it is due again at `retry_at_ms`.
    Failed {
        /// Why.
        error: String,
        /// When to try again.
        retry_at_ms: u64,
    },
    /// It failed for good.
    Dead {
        /// Why.
        error: String,
    },
}

/// A message handed to one dispatcher until its lease ends.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// The message.
    pub message: OutboxMessage,
    /// Its delivery so far.
    pub delivery: Delivery,
    /// The claim, to be shown when marking the message.
    pub claim: u64,
}

/// What became of a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// Recorded (or, for a message already delivered or dead, nothing
    /// changed): its delivery now.
    Recorded(Delivery),
    /// The claim was lost (its lease ended and another claimant took the
    /// message): nothing changed. A delivery is recorded whatever the
    /// claim, since the provider took the message.
    ClaimLost,
    /// No such message.
    Unknown,
}

/// Queued messages and their deliveries.
pub trait Outbox: Send + Sync {
    /// Outbox messages in queue order, optionally only one instance's.
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// Claim up to `limit` messages due at or before `now_ms` (queued, or
    /// failed and due again), earliest due first, for `lease`: until the
    /// lease ends or the message is marked, nobody else claims it.
    fn claim_outbox(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>>;

    /// Record an attempt to deliver message `id` under `claim` and end the
    /// claim. A message that is delivered or dead is never claimed again.
    /// Durable on return.
    fn mark_outbox(&self, id: &str, claim: u64, attempt: &DeliveryAttempt) -> Result<Marked>;

    /// A message's delivery so far (`None`: no such message).
    fn delivery(&self, id: &str) -> Result<Option<Delivery>>;
}
