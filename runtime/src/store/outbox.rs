//! The outbox: messages steps queued, committed with their steps, waiting
//! for delivery.

use super::{InstanceId, OutboxMessage, Result};

/// Queued messages.
pub trait Outbox: Send + Sync {
    /// Outbox messages in queue order, optionally only one instance's.
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>>;
}
