//! Customers: profiles, the view a step reads, and the sends counted
//! against their frequency caps. Interactions, channel choices and
//! engagement are written by journal commits.

use super::{CustomerView, Result};

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
    /// `channel` since `since_ms` were sent, oldest first.
    fn sent_since(&self, customer: &str, channel: &str, since_ms: u64) -> Result<Vec<u64>>;
}
