//! Customers: profiles, the view a step reads, and the sends counted
//! against their frequency caps. Interactions, channel choices and
//! engagement are written by journal commits.

use super::{CustomerView, Result};

/// The answer to a send reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendReservation {
    /// Reserved: the send counts from now on, until it is released.
    Reserved,
    /// The cap is full: when each send in the period was made (counted or
    /// reserved), oldest first.
    Full {
        /// The send times.
        sent: Vec<u64>,
    },
}

/// Customer profiles and views.
pub trait Customers: Send + Sync {
    /// Create or replace a customer's profile. Durable on return.
    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()>;
    /// The customer's view as of the latest commit: their profile (`{}`
    /// when nobody upserted one), their channel choices, their most recent
    /// [`VIEW_ENGAGEMENT`](super::VIEW_ENGAGEMENT) engagements, and, of
    /// their [`VIEW_INTERACTIONS`](super::VIEW_INTERACTIONS) most recent
    /// interactions, the most recent `limit` whose kind is in `kinds` (any
    /// kind when `kinds` is empty), oldest first.
    fn customer_view(&self, id: &str, limit: usize, kinds: &[String]) -> Result<CustomerView>;
    /// When the messages counted against `customer`'s frequency cap on
    /// `channel` since `since_ms` were sent, oldest first (committed sends
    /// only).
    fn sent_since(&self, customer: &str, channel: &str, since_ms: u64) -> Result<Vec<u64>>;
    /// Reserve a send to `customer` on `channel` at `at_ms` if fewer than
    /// `limit` sends were committed or reserved since `since_ms`. The check
    /// and the reservation are one step, so concurrent senders never both
    /// take the last slot. A reservation holds until released: release it
    /// once the step that made it is committed (its counted send is in
    /// the journal then) or discarded.
    fn reserve_send(
        &self,
        customer: &str,
        channel: &str,
        at_ms: u64,
        since_ms: u64,
        limit: u32,
    ) -> Result<SendReservation>;
    /// End the reservation made at `at_ms` (one, if several were).
    fn release_send(&self, customer: &str, channel: &str, at_ms: u64) -> Result<()>;
}
