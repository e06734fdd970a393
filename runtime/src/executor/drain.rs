//! Shutting down without dropping work: [`Runtime::drain`] stops taking
//! new work (events are refused with `503`, no new step, timer, delivery
//! or purge starts, readiness goes false) and waits, up to a limit, for the
//! steps in the sandbox, the commits in flight and the deliveries being
//! sent to finish. What did not start is left in the store exactly as a
//! crash would leave it, and the next start takes it up.

use std::time::{Duration, Instant};

use super::Runtime;

/// How often [`Runtime::drain`] looks whether the work has finished.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// What was still going on when a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Drained {
    /// Steps still in the sandbox (their instances run them again at the
    /// next start, with the same idempotency key).
    pub steps_running: usize,
    /// Commits not yet durable (their callers hear nothing).
    pub commits_pending: usize,
    /// Whether deliveries were still being sent (they are sent again
    /// after their lease, with the same idempotency key).
    pub sending: bool,
    /// How long the drain took, ms.
    pub waited_ms: u64,
}

impl Drained {
    /// Whether everything finished.
    pub fn is_clean(&self) -> bool {
        self.steps_running == 0 && self.commits_pending == 0 && !self.sending
    }
}

impl Runtime {
    /// Whether the runtime is shutting down.
    pub fn is_draining(&self) -> bool {
        self.health.is_draining()
    }

    /// Stop taking new work and wait up to `limit` for the work under way
    /// to finish; see the module docs.
    pub async fn drain(&self, limit: Duration) -> Drained {
        self.health.set_draining();
        // Loops that sleep until told hear it now.
        self.timers_changed.notify_one();
        self.outbox_changed.notify_one();
        self.retention_due.notify_one();
        let started = Instant::now();
        loop {
            let drained = Drained {
                steps_running: self.health.steps_running(),
                commits_pending: self.committer.pending(),
                sending: !self.in_flight.is_empty(),
                waited_ms: started.elapsed().as_millis() as u64,
            };
            if drained.is_clean() || started.elapsed() >= limit {
                return drained;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}
