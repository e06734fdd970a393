//! Retention: finished instances (completed, failed, exited, cancelled)
//! are removed once their journey's retention has passed, with their
//! history, messages and deliveries, leaving their funnel counts behind.
//!
//! A background loop works in small batches and rests between them twice
//! as long as a batch took, so a backlog is worked off at no more than a
//! third of one core and steps keep their latency. A backlog that lasts
//! (instances finish faster than a third of a core removes them) gets
//! shorter rests, down to half a batch's time (two thirds of a core), so
//! retention keeps up with a sustained load (see [`Pace`]). Operators can also
//! purge by hand ([`Runtime::purge_instances`]), with a dry run. Events
//! that started nothing still kept, and customers' interactions and
//! engagement, go after the server's default retention.

use std::time::{Duration, Instant};

use super::{Error, Result, Runtime};
use crate::journey::Retention;
use crate::store::{Purge, Store};

/// Instances removed per batch: one atomic write, during which commits
/// wait, so small.
pub const PURGE_BATCH: usize = 64;
/// A batch is followed by a rest this many times as long as it took: a
/// backlog is worked off at no more than a third of a core.
const REST_FACTOR: u32 = 2;
/// Old events, interactions and engagement looked at per sweep ...
const SWEEP_BATCH: usize = 5_000;
/// ... and how often a sweep runs: it keeps up with 5,000 new records a
/// second.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the loop looks for expired records when nothing woke it.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The shortest rest between two full batches.
const MIN_REST: Duration = Duration::from_millis(10);
/// Full batches in a row after which the rest is halved (again after as
/// many more, at most [`MAX_HALVINGS`] times).
const CATCH_UP_BATCHES: u32 = 50;
/// How often the rest may be halved: at most two thirds of a core go to
/// a lasting backlog, so steps keep a core and a third.
const MAX_HALVINGS: u32 = 2;

/// How long the background purge rests after a batch.
#[derive(Debug, Default)]
struct Pace {
    /// Full batches in a row: how long the backlog has lasted.
    full_batches: u32,
}

impl Pace {
    /// The rest after a batch that took `worked`; `None` when it was not
    /// full (caught up: wait for more to expire).
    fn rest(&mut self, worked: Duration, full: bool) -> Option<Duration> {
        if !full {
            self.full_batches = 0;
            return None;
        }
        self.full_batches = self.full_batches.saturating_add(1);
        let halvings = (self.full_batches / CATCH_UP_BATCHES).min(MAX_HALVINGS);
        let factor = f64::from(REST_FACTOR) / f64::from(1_u32 << halvings);
        Some(worked.mul_f64(factor).max(MIN_REST))
    }
}

/// What a purge by hand did (or, on a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PurgeOutcome {
    /// Instances removed (on a dry run: that would be removed).
    pub purged: u64,
    /// Whether more remain (the call stopped at its limit).
    pub more: bool,
}

impl Runtime {
    /// Start removing expired instances in the background, for as long as
    /// the process lives.
    pub fn start_retention(self: &std::sync::Arc<Self>) {
        self.supervise("the retention loop", |runtime| runtime.run_retention());
    }

    /// The retention in force for `journey`: what its latest version says,
    /// else the server's default.
    pub fn retention_of(&self, journey: &str) -> Retention {
        let latest = self.registry.journey_versions(journey);
        self.registry
            .journey(journey, latest)
            .and_then(|journey| journey.retention)
            .unwrap_or(self.retention_default)
    }

    async fn run_retention(self: std::sync::Arc<Self>) {
        let mut last_sweep: Option<Instant> = None;
        let mut pace = Pace::default();
        loop {
            let started = Instant::now();
            let full = match self.purge_expired().await {
                Ok(full) => full,
                Err(error) => {
                    tracing::error!(error = %error, "purging expired instances failed; retrying in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    continue;
                }
            };
            let worked = started.elapsed();
            if last_sweep.is_none_or(|last| last.elapsed() >= SWEEP_EVERY) {
                last_sweep = Some(Instant::now());
                if let Err(error) = self.sweep_old_records().await {
                    tracing::error!(error = %error, "sweeping old records failed");
                }
            }
            match pace.rest(worked, full) {
                // More to do: rest, then go on.
                Some(rest) => tokio::time::sleep(rest).await,
                None => {
                    let _ = tokio::time::timeout(LOOK_EVERY, self.retention_due.notified()).await;
                }
            }
        }
    }

    /// One batch of expired instances of every journey; returns whether a
    /// batch was full (more may be due).
    async fn purge_expired(self: &std::sync::Arc<Self>) -> Result<bool> {
        if self.is_draining() {
            return Ok(false);
        }
        let now = self.clock.now_ms();
        let mut full = false;
        for journey in self.registry.latest_journeys() {
            let Some(before) = self.retention_of(journey.name()).finished_before(now) else {
                continue;
            };
            let name = journey.name().to_owned();
            let purged = self
                .with_store(move |store| purge_batch(store, &name, before, PURGE_BATCH))
                .await?;
            if purged.looked == PURGE_BATCH {
                full = true;
            }
        }
        Ok(full)
    }

    /// A stretch of the sweep of events that started nothing still kept,
    /// and of customers' interactions and engagement, older than the
    /// server's retention.
    async fn sweep_old_records(&self) -> Result<()> {
        if self.is_draining() {
            return Ok(());
        }
        let Some(before) = self.retention_default.finished_before(self.clock.now_ms()) else {
            return Ok(());
        };
        let removed = self
            .with_store(move |store| store.purge_old_records(before, SWEEP_BATCH))
            .await?;
        metrics::counter!("journeyd_records_purged_total").increment(removed as u64);
        Ok(())
    }

    /// Remove up to `limit` finished instances of `journey` that finished
    /// before `before_ms` (an operator's purge; the journey's retention
    /// does not matter), in batches paced like the background's. On a dry
    /// run, count them instead, all of them.
    pub async fn purge_instances(
        &self,
        journey: &str,
        before_ms: u64,
        limit: usize,
        dry_run: bool,
    ) -> Result<PurgeOutcome> {
        if self.registry.journey_versions(journey) == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        let journey = journey.to_owned();
        let limit = limit.max(1);
        self.with_store(move |store| {
            if dry_run {
                let mut purged = 0;
                for (id, finished_at) in store.finished_before(&journey, before_ms, usize::MAX)? {
                    // An index entry can outlive an operator's retry.
                    if store.instance(id)?.is_some_and(|instance| {
                        instance.status.is_finished() && instance.updated_at_ms == finished_at
                    }) {
                        purged += 1;
                    }
                }
                return Ok(PurgeOutcome {
                    purged,
                    more: false,
                });
            }
            let mut purged = 0;
            while purged < limit {
                let want = PURGE_BATCH.min(limit - purged);
                let started = Instant::now();
                let batch = purge_batch(store, &journey, before_ms, want)?;
                purged += batch.removed;
                // Paced as in the background.
                std::thread::sleep(started.elapsed() * REST_FACTOR);
                if batch.looked < want {
                    return Ok(PurgeOutcome {
                        purged: purged as u64,
                        more: false,
                    });
                }
            }
            Ok(PurgeOutcome {
                purged: purged as u64,
                more: !store.finished_before(&journey, before_ms, 1)?.is_empty(),
            })
        })
        .await
    }
}

/// What one batch did.
struct Batch {
    /// Index entries looked at.
    looked: usize,
    /// Instances removed.
    removed: usize,
}

/// Remove up to `limit` instances of `journey` that finished before
/// `before_ms`, each with its funnel counts kept.
fn purge_batch(
    store: &dyn Store,
    journey: &str,
    before_ms: u64,
    limit: usize,
) -> crate::store::Result<Batch> {
    let due = store.finished_before(journey, before_ms, limit)?;
    let purges: Vec<Purge> = due
        .iter()
        .map(|(id, finished_at_ms)| Purge {
            instance: *id,
            finished_at_ms: *finished_at_ms,
        })
        .collect();
    let removed = if purges.is_empty() {
        0
    } else {
        store.purge(&purges)?
    };
    metrics::counter!("journeyd_instances_purged_total").increment(removed as u64);
    if removed > 0 {
        tracing::debug!(journey, removed, "purged finished instances");
    }
    Ok(Batch {
        looked: due.len(),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_backlog_gets_shorter_rests_and_catching_up_resets_them() {
        let mut pace = Pace::default();
        let batch = Duration::from_millis(40);
        let rests: Vec<Duration> = (0..4 * CATCH_UP_BATCHES)
            .map(|_| pace.rest(batch, true).expect("full batches rest"))
            .collect();
        // The rest after the n-th full batch in a row is rests[n - 1].
        let after = |n: u32| rests[n as usize - 1];
        assert_eq!(after(1), batch * 2, "a third of the time at first");
        assert_eq!(after(CATCH_UP_BATCHES - 1), batch * 2);
        assert_eq!(after(CATCH_UP_BATCHES), batch);
        assert_eq!(after(2 * CATCH_UP_BATCHES), batch / 2);
        assert_eq!(
            rests[3 * CATCH_UP_BATCHES as usize],
            batch / 2,
            "never below half"
        );
        assert_eq!(pace.rest(batch, false), None, "caught up");
        assert_eq!(
            pace.rest(batch, true),
            Some(batch * 2),
            "a new backlog starts gently"
        );
        assert_eq!(pace.rest(Duration::ZERO, true), Some(MIN_REST));
    }
}
