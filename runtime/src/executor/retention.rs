//! Retention: finished instances (completed, failed, exited, cancelled)
//! are removed once their journey's retention has passed, with their
//! history, messages and deliveries, leaving their funnel counts behind.
//!
//! A background loop works in bounded batches and rests between them for
//! as long as a batch took, so a large backlog is worked off at no more
//! than half of one core and steps keep their latency. Operators can also
//! purge by hand ([`Runtime::purge_instances`]), with a dry run. Events
//! that started nothing still kept go after the server's default retention.

use std::time::{Duration, Instant};

use super::{Error, Result, Runtime};
use crate::journey::Retention;
use crate::store::{FunnelTally, Purge, Store};

/// Instances removed per batch.
pub const PURGE_BATCH: usize = 256;
/// Events looked at per batch of the event sweep.
const EVENT_BATCH: usize = 1_000;
/// How often the loop looks for expired instances when nothing woke it.
const LOOK_EVERY: Duration = Duration::from_secs(10);
/// The shortest rest between two full batches.
const MIN_REST: Duration = Duration::from_millis(10);

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
        loop {
            let started = Instant::now();
            let rest = match self.purge_expired().await {
                // More to do: rest as long as the batch took.
                Ok(true) => started.elapsed().max(MIN_REST),
                Ok(false) => {
                    let _ = tokio::time::timeout(LOOK_EVERY, self.retention_due.notified()).await;
                    continue;
                }
                Err(error) => {
                    tracing::error!(error = %error, "purging expired instances failed; retrying in 10 s");
                    LOOK_EVERY
                }
            };
            tokio::time::sleep(rest).await;
        }
    }

    /// One batch of expired instances (of every journey) and of old
    /// events; returns whether a batch was full (more may be due).
    async fn purge_expired(self: &std::sync::Arc<Self>) -> Result<bool> {
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
        if let Some(before) = self.retention_default.finished_before(now) {
            let cursor = self
                .event_sweep
                .lock()
                .expect("the event sweep lock is never poisoned")
                .clone();
            let (removed, next) = self
                .with_store(move |store| store.purge_events(before, cursor.as_deref(), EVENT_BATCH))
                .await?;
            metrics::counter!("journeyd_events_purged_total").increment(removed as u64);
            *self
                .event_sweep
                .lock()
                .expect("the event sweep lock is never poisoned") = next;
        }
        Ok(full)
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
                // At most half a core, as in the background.
                std::thread::sleep(started.elapsed());
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
    let mut purges = Vec::with_capacity(due.len());
    for (id, finished_at_ms) in &due {
        let tally = match store.instance(*id)? {
            Some(instance) if instance.status.is_finished() => {
                FunnelTally::of_instance(&instance, &store.history(*id)?)
            }
            // Gone or brought back: the purge drops the index entry.
            _ => FunnelTally::default(),
        };
        purges.push(Purge {
            instance: *id,
            finished_at_ms: *finished_at_ms,
            tally,
        });
    }
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
