//! Outbox messages and what the store knows of a customer: interactions,
//! channel choices, engagement and the view a step reads.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::*;

/// A message waiting in the outbox for delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Idempotent id: the step's idempotency key plus the send's index.
    pub id: String,
    /// The instance whose step queued it.
    pub instance_id: InstanceId,
    /// The journey of that instance.
    #[serde(default)]
    pub journey: String,
    /// The step that queued it.
    pub step: String,
    /// The customer it is for.
    pub customer_id: String,
    /// The channel.
    pub channel: String,
    /// The address (resolved from the profile when the plugin left it empty).
    pub to: String,
    /// Subject line, may be empty.
    pub subject: String,
    /// Message text.
    pub body: String,
    /// Provider metadata (a JSON object).
    pub metadata: Box<RawValue>,
    /// When it was queued, ms since the Unix epoch.
    pub queued_at_ms: u64,
    /// The W3C `traceparent` of the step that queued it, when tracing was
    /// on: its delivery attempts join that step's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl OutboxMessage {
    /// The instance message `id` belongs to: ids are `<idempotency
    /// key>/m<index>`, and idempotency keys begin with the instance
    /// (`i-<id>/<slot>`).
    pub fn instance_of(id: &str) -> Option<InstanceId> {
        id.split('/').next()?.parse().ok()
    }
}

/// One interaction in a customer's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interaction {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The channel.
    pub channel: String,
    /// What kind of interaction.
    pub kind: String,
    /// Free text.
    pub text: String,
    /// Structured details as JSON text, kept as text: plugins receive it
    /// as text, so it is never re-serialized on the step path.
    pub details: Box<RawValue>,
}

/// How many of a customer's most recent interactions their view covers.
pub const VIEW_INTERACTIONS: usize = 100;

/// How many of a customer's most recent engagements their view covers.
pub const VIEW_ENGAGEMENT: usize = 50;

/// A customer's opt-in or opt-out of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPreference {
    /// The channel.
    pub channel: String,
    /// Whether they opted in.
    pub opted_in: bool,
    /// When they chose, ms since the Unix epoch.
    pub changed_at_ms: u64,
}

/// One engagement of a customer (opened, clicked, registered ...), from
/// an event a journey declares as engagement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engagement {
    /// When the event was accepted, ms since the Unix epoch.
    pub at_ms: u64,
    /// What the customer did.
    pub action: String,
    /// The channel it happened on (may be empty).
    pub channel: String,
    /// The event type.
    pub event_kind: String,
    /// The event data.
    pub details: Box<RawValue>,
}

/// Profile plus interaction history of one customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerView {
    /// The customer id.
    pub id: String,
    /// The profile object as JSON text (`{}` when none was upserted).
    pub profile: Box<RawValue>,
    /// The most recent interactions, oldest first.
    pub interactions: Vec<Interaction>,
    /// Channel opt-ins, by channel name.
    #[serde(default)]
    pub channels: Vec<ChannelPreference>,
    /// The most recent engagement, oldest first.
    #[serde(default)]
    pub engagement: Vec<Engagement>,
}

impl CustomerView {
    /// Whether anything is known about the customer: a profile other
    /// than `{}`, an interaction, a channel choice or an engagement.
    pub fn is_known(&self) -> bool {
        self.profile.get() != "{}"
            || !self.interactions.is_empty()
            || !self.channels.is_empty()
            || !self.engagement.is_empty()
    }
}

/// What forgetting a customer removed from the store besides their
/// instances (see [`Customers::forget_customer`](crate::store::Customers::forget_customer)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgottenRecords {
    /// Whether they had a profile.
    pub profile: bool,
    /// Interactions removed.
    pub interactions: usize,
    /// Channel choices removed.
    pub channel_choices: usize,
    /// Engagements removed.
    pub engagement: usize,
    /// Sends counted against their frequency caps, removed.
    pub counted_sends: usize,
    /// Their events removed.
    pub events: usize,
    /// Their events kept because an instance still kept needs them (a
    /// step may yet run on it).
    pub events_kept: usize,
}
