//! Durable timers: a waiting instance's wake-up time. A timer is set and
//! cleared by the journal commits that put an instance to sleep and wake it.

use std::time::Duration;

use super::{InstanceId, Result};

/// The timers of waiting instances.
pub trait Timers: Send + Sync {
    /// Timers due at or before `now_ms`, earliest first, at most `limit`
    /// (claimed or not).
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, InstanceId)>>;
    /// Claim up to `limit` timers due at or before `now_ms`, earliest
    /// first, for `lease`: until the lease ends or the claim is released,
    /// nobody else claims them, so no timer fires twice. The claimant
    /// fires a timer by committing its instance's wake-up, which clears
    /// the timer and its claim.
    fn claim_due_timers(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<(u64, InstanceId)>>;
    /// Give back a claimed timer that was not fired, so it can be claimed
    /// again at once.
    fn release_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()>;
    /// When the earliest timer is due.
    fn next_timer(&self) -> Result<Option<u64>>;
    /// Remove a timer whose instance no longer waits for it (it is gone,
    /// or waits for another time). Durable on return.
    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()>;
}
