//! Retention on sled: the finished index, purging an instance with
//! everything kept for it (moving its funnel counts to the purged
//! tallies), and the sweep of old
//! events, interactions and engagement. The `Journal` methods of the same
//! names call these.

use std::collections::HashSet;

use super::counts::CountChanges;
use super::{SledStore, keys};

/// Instances removed in one write under the commit gate: commits wait for
/// that write, so few (about 14 keys each for an enquiry).
const PURGE_UNDER_GATE: usize = 16;
use crate::store::{
    DayTally, Delivery, Engagement, EventRecord, Instance, InstanceId, Interaction, Journal,
    OutboxMessage, Purge, Result,
};

impl SledStore {
    pub(super) fn finished_index(
        &self,
        journey: &str,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(InstanceId, u64)>> {
        let (prefix, end) = keys::finished_before(journey, before_ms);
        self.db
            .range(prefix.clone()..end)
            .keys()
            .take(limit)
            .map(|key| Ok(keys::finished_of(&prefix, &key?).map(|(at, id)| (id, at))))
            .filter_map(Result::transpose)
            .collect()
    }

    /// Removes up to `purges.len()` finished instances, reading what to
    /// remove outside the gates and removing [`PURGE_UNDER_GATE`] at a
    /// time under them.
    pub(super) fn purge_finished(&self, purges: &[Purge]) -> Result<usize> {
        // What to remove, read outside the gates: the instance record as
        // stored (to check at removal that nothing changed it since) and
        // everything kept for it.
        struct Planned {
            record: sled::IVec,
            instance: Instance,
            keys: Vec<Vec<u8>>,
        }
        let mut planned = Vec::with_capacity(purges.len());
        let mut stale = Vec::new();
        let mut removed = HashSet::new();
        for purge in purges {
            let record_key = keys::instance(purge.instance);
            let Some(record) = self.db.get(&record_key)? else {
                continue;
            };
            let instance: Instance = self.codec.decode(&record_key, &record)?;
            let finished_key = keys::finished(&instance.journey, purge.finished_at_ms, instance.id);
            if !instance.status.is_finished()
                || instance.updated_at_ms != purge.finished_at_ms
                || removed.contains(&instance.id)
            {
                // Brought back (or finished again later): the entry is stale.
                stale.push(finished_key);
                continue;
            }
            let mut keys = self.purge_keys(&instance, &removed)?;
            keys.push(finished_key);
            removed.insert(instance.id);
            planned.push(Planned {
                record,
                instance,
                keys,
            });
        }
        // Removed a few instances at a time, each few under the gates in
        // one write: commits wait only for that much.
        let mut count = 0;
        let mut stale = Some(stale);
        let chunks: Vec<&[Planned]> = if planned.is_empty() {
            // Only stale entries to remove.
            vec![&[]]
        } else {
            planned.chunks(PURGE_UNDER_GATE).collect()
        };
        for chunk in chunks {
            let mut batch = sled::Batch::default();
            for key in stale.take().into_iter().flatten() {
                batch.remove(key);
            }
            let mut counts = CountChanges::default();
            // Under both gates: no commit and no delivery mark lands
            // between the check that the instance is as read and the
            // removal.
            let _outbox = self.outbox_lock();
            let _applying = self
                .applying
                .write()
                .expect("the commit gate is never poisoned");
            for plan in chunk {
                let id = plan.instance.id;
                if self.db.get(keys::instance(id))?.as_ref() != Some(&plan.record) {
                    continue;
                }
                for key in &plan.keys {
                    batch.remove(key.as_slice());
                }
                count += 1;
                self.count_purge(&mut counts, &plan.instance, || self.history(id))?;
            }
            self.write_counts(&mut batch, counts)?;
            self.db.apply_batch(batch)?;
        }
        // Not flushed here: the next commit's flush makes it durable (see
        // the trait), and a purge's own flush would hold up theirs.
        Ok(count)
    }

    /// The tallies under `prefix` (purged or live ones of a journey).
    pub(super) fn day_tallies(&self, prefix: &[u8]) -> Result<Vec<DayTally>> {
        let mut tallies = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (key, bytes) = item?;
            let Some((version, day_ms)) = keys::tally_of(prefix, &key) else {
                continue;
            };
            tallies.push(DayTally {
                version,
                day_ms,
                tally: self.codec.decode(&key, &bytes)?,
            });
        }
        Ok(tallies)
    }

    pub(super) fn sweep_aged(&self, before_ms: u64, limit: usize) -> Result<usize> {
        let mut cursor = self.sweep.lock().expect("the sweep lock is never poisoned");
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut looked = 0;
        let mut customers: Vec<String> = Vec::new();
        let mut from = cursor.take().or_else(|| keys::next_aged(&[0]));
        'walk: while let Some(start) = from.take() {
            for item in self.db.range(start..) {
                let (key, bytes) = item?;
                let Some(kind) = keys::aged_of(&key) else {
                    // Past one kind: on to the next, or round again.
                    from = keys::next_aged(&key);
                    continue 'walk;
                };
                looked += 1;
                let old = match kind {
                    keys::Aged::Event => {
                        let event: EventRecord = self.codec.decode(&key, &bytes)?;
                        let mut left = false;
                        for started in &event.started {
                            if self.db.contains_key(keys::instance(*started))? {
                                left = true;
                                break;
                            }
                        }
                        let old = event.received_at_ms < before_ms && !left;
                        if old {
                            batch.remove(keys::customer_event(&event.customer_id, &event.id));
                        }
                        old
                    }
                    keys::Aged::Interaction => {
                        let interaction: Interaction = self.codec.decode(&key, &bytes)?;
                        interaction.at_ms < before_ms
                    }
                    keys::Aged::Engagement => {
                        let engagement: Engagement = self.codec.decode(&key, &bytes)?;
                        engagement.at_ms < before_ms
                    }
                };
                if old {
                    if kind != keys::Aged::Event
                        && let Some(customer) = keys::customer_of(&key)
                        && customers.last().is_none_or(|last| last != customer)
                    {
                        customers.push(customer.to_owned());
                    }
                    batch.remove(&*key);
                    removed += 1;
                }
                if looked >= limit {
                    let mut after = key.to_vec();
                    after.push(0);
                    *cursor = Some(after);
                    break 'walk;
                }
            }
        }
        if removed > 0 {
            {
                let _applying = self
                    .applying
                    .write()
                    .expect("the commit gate is never poisoned");
                self.db.apply_batch(batch)?;
                let mut cache = self.customer_cache();
                for customer in &customers {
                    cache.forget(customer);
                }
            }
        }
        Ok(removed)
    }

    /// The keys of everything kept for finished `instance` (see
    /// [`Journal::purge`]); `removed` are the instances removed with it.
    /// Read outside the commit gate: nothing adds to a finished instance
    /// but deliveries (guarded by the outbox lock) and operators, whose
    /// change [`Journal::purge`] notices.
    fn purge_keys(
        &self,
        instance: &Instance,
        removed: &HashSet<InstanceId>,
    ) -> Result<Vec<Vec<u8>>> {
        let id = instance.id;
        let mut keys = vec![
            keys::instance(id),
            keys::running(id),
            keys::pending_exit(id),
            keys::correlation(&instance.journey, &instance.correlation, id),
            keys::active(&instance.journey, &instance.customer_id, id),
        ];
        for key in self.db.scan_prefix(keys::history_of(id)).keys() {
            keys.push(key?.to_vec());
        }
        for item in self.db.scan_prefix(keys::outbox_of(id)) {
            let (slot, bytes) = item?;
            match self.get::<Delivery>(&keys::delivery(&slot))? {
                Some(delivery) => {
                    if let Some(due) = delivery.due_ms {
                        keys.push(keys::outbox_due(due, &slot));
                    }
                    if let (Some(integration), Some(provider_id)) =
                        (&delivery.integration, &delivery.provider_id)
                    {
                        keys.push(keys::provider_id(integration, provider_id));
                    }
                    keys.push(keys::delivery(&slot));
                }
                None => {
                    let message: OutboxMessage = self.codec.decode(&slot, &bytes)?;
                    keys.push(keys::outbox_due(message.queued_at_ms, &slot));
                }
            }
            keys.push(slot.to_vec());
        }
        for key in self
            .db
            .scan_prefix(keys::sent_of(&instance.customer_id))
            .keys()
        {
            let key = key?;
            if keys::sent_by_of(&key) == Some(id) {
                keys.push(key.to_vec());
            }
        }
        let event_key = keys::event(&instance.trigger_event_id);
        if let Some(event) = self.get::<EventRecord>(&event_key)? {
            let mut left = false;
            for other in event.started.iter().filter(|other| **other != id) {
                if !removed.contains(other) && self.db.contains_key(keys::instance(*other))? {
                    left = true;
                    break;
                }
            }
            if !left {
                keys.push(keys::customer_event(&event.customer_id, &event.id));
                keys.push(event_key);
            }
        }
        Ok(keys)
    }
}
