//! The outbox: messages steps queued, committed with their steps, waiting
//! for delivery; what became of each delivery attempt.
//!
//! A dispatcher claims the messages that are due with a lease (which
//! records the attempt), sends them, and marks each one: accepted, failed
//! for now (due again later) or dead. A claimed message is not handed to
//! anyone else until its lease ends or it is marked, so a dispatcher that
//! dies mid-send leaves its messages to be claimed again after the lease
//! (the provider sees the same message id again and drops the duplicate).
//! Providers' status reports then move an accepted message forward.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InstanceId, OutboxMessage, Result};

/// Where a message is in its delivery. Status only moves forward:
/// queued → sending → accepted → delivered → opened → clicked, or to
/// bounced, failed or dead; `retrying` goes back to sending; an operator's
/// replay takes a message that failed for good back to queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt (or replayed).
    Queued,
    /// An attempt is under way (recorded before the request is sent; a
    /// crash leaves it here, outcome unknown, until its lease ends).
    Sending,
    /// The last attempt failed for now; it is due again later.
    Retrying,
    /// The provider took it.
    Accepted,
    /// The provider reported it reached the recipient.
    Delivered,
    /// The recipient opened it.
    Opened,
    /// The recipient clicked in it.
    Clicked,
    /// The provider could not deliver it to that address.
    Bounced,
    /// The provider gave up on it after accepting it.
    Failed,
    /// It will not be sent: refused for good, or it failed too often or
    /// for too long.
    Dead,
}

impl DeliveryStatus {
    /// Every status, in the order a delivery moves through them.
    pub const ALL: [DeliveryStatus; 10] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Retrying,
        DeliveryStatus::Accepted,
        DeliveryStatus::Delivered,
        DeliveryStatus::Opened,
        DeliveryStatus::Clicked,
        DeliveryStatus::Bounced,
        DeliveryStatus::Failed,
        DeliveryStatus::Dead,
    ];

    /// The statuses of messages that did not reach their recipient.
    pub const UNDELIVERED: [DeliveryStatus; 3] = [
        DeliveryStatus::Bounced,
        DeliveryStatus::Failed,
        DeliveryStatus::Dead,
    ];

    /// How far along a delivery is; a status report never moves it back.
    fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Queued | DeliveryStatus::Retrying | DeliveryStatus::Sending => 0,
            DeliveryStatus::Accepted => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Bounced | DeliveryStatus::Failed => 3,
            DeliveryStatus::Opened => 4,
            DeliveryStatus::Clicked => 5,
            DeliveryStatus::Dead => 6,
        }
    }

    /// Whether a dispatcher may still claim it (when due).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Queued | DeliveryStatus::Sending | DeliveryStatus::Retrying
        )
    }

    /// Whether it ended without reaching the recipient (an operator may
    /// replay it).
    pub fn is_undelivered(self) -> bool {
        Self::UNDELIVERED.contains(&self)
    }

    /// The status as the API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Opened => "opened",
            DeliveryStatus::Clicked => "clicked",
            DeliveryStatus::Bounced => "bounced",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// Lines of a delivery's log kept (the most recent).
pub const DELIVERY_LOG_LINES: usize = 32;

/// What is known of a message's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts started so far (an attempt is counted before it is sent).
    pub attempts: u32,
    /// When a dispatcher may claim it next, ms since the Unix epoch: when
    /// it is queued or retrying, when its attempt's lease ends while
    /// sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's id for it, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The integration that last handled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// The claim of the attempt under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<u64>,
    /// When this last changed (its queue time before that).
    pub updated_at_ms: u64,
    /// What happened, oldest first (the last [`DELIVERY_LOG_LINES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<DeliveryNote>,
}

/// One line of a delivery's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryNote {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The status it moved to.
    pub status: DeliveryStatus,
    /// What happened, in words.
    pub note: String,
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
            integration: None,
            claim: None,
            updated_at_ms: at_ms,
            log: Vec::new(),
        }
    }

    fn note(&mut self, at_ms: u64, note: String) {
        self.updated_at_ms = at_ms;
        if self.log.len() >= DELIVERY_LOG_LINES {
            self.log.remove(0);
        }
        self.log.push(DeliveryNote {
            at_ms,
            status: self.status,
            note,
        });
    }

    /// The delivery once `claim` starts the next attempt at `now_ms`,
    /// leased until `lease_until_ms`. An attempt whose lease ended
    /// without a mark is noted as of unknown outcome.
    pub fn claimed(&self, claim: u64, now_ms: u64, lease_until_ms: u64) -> Delivery {
        let mut next = self.clone();
        if self.status == DeliveryStatus::Sending {
            next.note(
                now_ms,
                format!(
                    "attempt {}: outcome unknown (its lease ended without an answer)",
                    self.attempts
                ),
            );
        }
        next.status = DeliveryStatus::Sending;
        next.attempts += 1;
        next.claim = Some(claim);
        next.due_ms = Some(lease_until_ms);
        next.note(now_ms, format!("attempt {} started", next.attempts));
        next
    }

    /// The delivery after `attempt`'s outcome.
    pub fn after(&self, attempt: &DeliveryAttempt) -> Delivery {
        let mut next = Delivery {
            due_ms: None,
            error: None,
            claim: None,
            integration: Some(attempt.integration.clone()),
            ..self.clone()
        };
        let n = self.attempts;
        let note = match &attempt.outcome {
            AttemptOutcome::Accepted { provider_id } => {
                next.status = DeliveryStatus::Accepted;
                next.provider_id = provider_id.clone();
                match provider_id {
                    Some(id) => format!("attempt {n}: accepted by {} as {id}", attempt.integration),
                    None => format!("attempt {n}: accepted by {}", attempt.integration),
                }
            }
            AttemptOutcome::Retry { error, retry_at_ms } => {
                next.status = DeliveryStatus::Retrying;
                next.error = Some(error.clone());
                next.due_ms = Some(*retry_at_ms);
                format!("attempt {n}: {error}; retrying")
            }
            AttemptOutcome::Dead { error } => {
                next.status = DeliveryStatus::Dead;
                next.error = Some(error.clone());
                format!("attempt {n}: {error}; dead")
            }
        };
        next.note(attempt.at_ms, note);
        next
    }

    /// The delivery after a provider's status report, if it moves it
    /// forward (a repeated or late report changes nothing).
    pub fn reported(&self, report: &StatusReport) -> Option<Delivery> {
        if self.status == DeliveryStatus::Dead || report.status.rank() <= self.status.rank() {
            return None;
        }
        if !matches!(
            report.status,
            DeliveryStatus::Delivered
                | DeliveryStatus::Opened
                | DeliveryStatus::Clicked
                | DeliveryStatus::Bounced
                | DeliveryStatus::Failed
        ) {
            return None;
        }
        let mut next = self.clone();
        next.status = report.status;
        if self.status.is_pending() {
            // Reported before the attempt was marked: the provider took it.
            next.due_ms = None;
            next.claim = None;
        }
        next.note(report.at_ms, report.note.clone());
        Some(next)
    }

    /// The delivery after an operator's replay at `now_ms`: queued again
    /// under the same id, due at once.
    pub fn replayed(&self, now_ms: u64) -> Delivery {
        let mut next = Delivery {
            status: DeliveryStatus::Queued,
            due_ms: Some(now_ms),
            error: None,
            claim: None,
            ..self.clone()
        };
        next.note(now_ms, "replayed by an operator".into());
        next
    }
}

/// One delivery attempt's result, as the dispatcher marks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When it ended, ms since the Unix epoch.
    pub at_ms: u64,
    /// The integration that made it.
    pub integration: String,
    /// What happened.
    pub outcome: AttemptOutcome,
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The provider took the message.
    Accepted {
        /// The provider's id for it, if it gave one.
        provider_id: Option<String>,
    },
    /// It failed for now; it is due again at `retry_at_ms`.
    Retry {
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

/// A provider's report about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The status reported.
    pub status: DeliveryStatus,
    /// What happened, in words.
    pub note: String,
}

/// How a report names its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// By our id.
    Id(&'a str),
    /// By the id integration `integration`'s provider gave it.
    Provider {
        /// The integration.
        integration: &'a str,
        /// The provider's id.
        provider_id: &'a str,
    },
}

/// A message handed to one dispatcher until its lease ends.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// The message.
    pub message: OutboxMessage,
    /// Its delivery, with this attempt started.
    pub delivery: Delivery,
    /// The claim, to be shown when marking the message.
    pub claim: u64,
}

/// One attempt to record with [`Outbox::mark_outbox_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The message.
    pub id: String,
    /// The claim the attempt was made under.
    pub claim: u64,
    /// How it ended.
    pub attempt: DeliveryAttempt,
}

/// What became of a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// Recorded (or, for a message no longer being sent, nothing
    /// changed): its delivery now.
    Recorded(Delivery),
    /// The claim was lost (its lease ended and another claimant took the
    /// message): nothing changed. An acceptance is recorded whatever the
    /// claim, since the provider took the message.
    ClaimLost,
    /// No such message.
    Unknown,
}

/// Which messages [`Outbox::deliveries`] lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only deliveries with one of these statuses (any, when empty).
    pub statuses: Vec<DeliveryStatus>,
    /// Only messages on this channel.
    pub channel: Option<String>,
    /// Only messages attempted through this integration.
    pub integration: Option<String>,
    /// Only messages queued after this one (its id): the next page.
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Look at no more than this many messages, so a rare condition
    /// cannot make one call read the whole outbox (no bound when 0); the
    /// page says where to go on.
    pub budget: usize,
}

impl DeliveryFilter {
    /// Every message with one of `statuses`, at most `limit`.
    pub fn with_statuses(statuses: &[DeliveryStatus], limit: usize) -> Self {
        DeliveryFilter {
            statuses: statuses.to_vec(),
            limit,
            ..DeliveryFilter::default()
        }
    }

    /// Whether `message` and its `delivery` pass every condition but the
    /// paging ones.
    pub fn matches(&self, message: &OutboxMessage, delivery: &Delivery) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&delivery.status))
            && self
                .channel
                .as_deref()
                .is_none_or(|channel| channel == message.channel)
            && self
                .integration
                .as_deref()
                .is_none_or(|wanted| delivery.integration.as_deref() == Some(wanted))
    }
}

/// What [`Outbox::deliveries`] found.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    /// The messages, in queue order, with their deliveries.
    pub found: Vec<(OutboxMessage, Delivery)>,
    /// The last message looked at, when there may be more after it (the
    /// page is full, or the budget ran out): the next call's `after`.
    pub more_after: Option<String>,
}

/// Queued messages and their deliveries.
pub trait Outbox: Send + Sync {
    /// Outbox messages in queue order, optionally only one instance's.
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>>;

    /// Claim up to `limit` messages due at or before `now_ms` (queued,
    /// retrying, or sending with a lease that ended), earliest due first,
    /// and start an attempt on each: counted, logged and leased until
    /// `now_ms + lease`, durable on return, so a crash mid-send leaves the
    /// attempt on record. Until the lease ends or the message is marked,
    /// nobody else claims it.
    fn claim_outbox(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>>;

    /// Record how the attempt under `claim` on message `id` ended, and end
    /// the claim. Durable on return. An accepted message is never claimed
    /// again; its provider id finds it for [`Outbox::report_delivery`].
    fn mark_outbox(&self, id: &str, claim: u64, attempt: &DeliveryAttempt) -> Result<Marked> {
        let mark = Mark {
            id: id.to_owned(),
            claim,
            attempt: attempt.clone(),
        };
        Ok(self
            .mark_outbox_many(std::slice::from_ref(&mark))?
            .pop()
            .unwrap_or(Marked::Unknown))
    }

    /// [`Outbox::mark_outbox`] for many attempts at once, in order (a later
    /// mark sees what an earlier one recorded), durable together on return
    /// (one flush): what a busy dispatcher calls.
    fn mark_outbox_many(&self, marks: &[Mark]) -> Result<Vec<Marked>>;

    /// Apply a provider's status report to the message it names, if it
    /// moves its delivery forward. Returns the message and its delivery
    /// after the report, and whether the report changed it; `None` for a
    /// message the store does not know. Durable on return.
    fn report_delivery(
        &self,
        message: MessageRef<'_>,
        report: &StatusReport,
    ) -> Result<Option<(OutboxMessage, Delivery, bool)>>;

    /// Queue an undelivered message (bounced, failed or dead) again under
    /// the same id, due at `now_ms`. Returns its delivery now (unchanged
    /// when it was not undelivered); `None` for an unknown message.
    fn replay_message(&self, id: &str, now_ms: u64) -> Result<Option<Delivery>>;

    /// A message and its delivery so far (`None`: no such message).
    fn message(&self, id: &str) -> Result<Option<(OutboxMessage, Delivery)>>;

    /// Messages and their deliveries that pass `filter`, in queue order.
    fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage>;

    /// When the next message falls due for a dispatcher (queued, retrying,
    /// or sending with a lease that ends then), if any.
    fn next_delivery_due(&self) -> Result<Option<u64>>;

    /// A message's delivery so far (`None`: no such message).
    fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        Ok(self.message(id)?.map(|(_, delivery)| delivery))
    }
}
