//! Durable timers: a waiting instance's wake-up time. A timer is set and
//! cleared by the journal commits that put an instance to sleep and wake it.

use super::{InstanceId, Result};

/// The timers of waiting instances.
pub trait Timers: Send + Sync {
    /// Timers due at or before `now_ms`, earliest first, at most `limit`.
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, InstanceId)>>;
    /// When the earliest timer is due.
    fn next_timer(&self) -> Result<Option<u64>>;
    /// Remove a timer whose instance no longer waits for it (it is gone,
    /// or waits for another time). Durable on return.
    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()>;
}
