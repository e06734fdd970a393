//! The outbox on sled: messages in queue order, the due index the
//! dispatcher claims from, deliveries, and the index of provider ids.
//!
//! Claims, marks, reports and replays of deliveries take one lock, so each
//! reads what the last wrote; each is one batch and one flush.

use std::time::Duration;

use super::{SledStore, keys};
use crate::store::{
    AttemptOutcome, ClaimedMessage, Delivery, DeliveryFilter, DeliveryPage, InstanceId, Mark,
    Marked, MessageRef, Outbox, OutboxMessage, Result, StatusReport,
};

impl SledStore {
    /// A message and its delivery, by outbox key.
    fn message_at(&self, slot: &[u8]) -> Result<Option<(OutboxMessage, Delivery)>> {
        let Some(message) = self.get::<OutboxMessage>(slot)? else {
            return Ok(None);
        };
        let delivery = self
            .get::<Delivery>(&keys::delivery(slot))?
            .unwrap_or_else(|| Delivery::queued(message.queued_at_ms));
        Ok(Some((message, delivery)))
    }

    /// The outbox key of message `id`, found among its instance's
    /// messages (a handful).
    fn slot_of(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let Some(instance) = OutboxMessage::instance_of(id) else {
            return Ok(None);
        };
        for item in self.db.scan_prefix(keys::outbox_of(instance)) {
            let (key, bytes) = item?;
            if self.codec.decode::<OutboxMessage>(&key, &bytes)?.id == id {
                return Ok(Some(key.to_vec()));
            }
        }
        Ok(None)
    }

    /// The outbox key of the message a report names.
    fn slot_named(&self, message: MessageRef<'_>) -> Result<Option<Vec<u8>>> {
        match message {
            MessageRef::Id(id) => self.slot_of(id),
            MessageRef::Provider {
                integration,
                provider_id,
            } => Ok(self
                .db
                .get(keys::provider_id(integration, provider_id))?
                .map(|slot| slot.to_vec())),
        }
    }

    pub(super) fn outbox_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.outbox_lock
            .lock()
            .expect("the outbox lock is never poisoned")
    }

    /// Write `next` over `previous` as the delivery at `slot`, moving its
    /// due index entry, into `batch`.
    fn put_delivery(
        &self,
        batch: &mut sled::Batch,
        slot: &[u8],
        previous: &Delivery,
        next: &Delivery,
    ) -> Result<()> {
        if let Some(due) = previous.due_ms {
            batch.remove(keys::outbox_due(due, slot));
        }
        if let Some(due) = next.due_ms {
            batch.insert(keys::outbox_due(due, slot), &[]);
        }
        batch.insert(keys::delivery(slot), self.codec.encode(next)?);
        Ok(())
    }
}

impl Outbox for SledStore {
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>> {
        let prefix = instance.map_or_else(keys::outbox_all, keys::outbox_of);
        self.db
            .scan_prefix(prefix)
            .take(limit)
            .map(|item| {
                let (key, bytes) = item?;
                self.codec.decode(&key, &bytes)
            })
            .collect()
    }

    fn claim_outbox(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>> {
        let lease_until = now_ms.saturating_add(lease.as_millis() as u64);
        let mut claimed = Vec::new();
        let mut batch = sled::Batch::default();
        let _outbox = self.outbox_lock();
        for key in self.db.range(keys::outbox_due_until(now_ms)).keys() {
            if claimed.len() >= limit {
                break;
            }
            let Some(slot) = keys::outbox_of_due(&key?) else {
                continue;
            };
            let Some((message, delivery)) = self.message_at(&slot)? else {
                continue;
            };
            let due = delivery.due_ms.is_some_and(|due| due <= now_ms);
            if !due || !delivery.status.is_pending() {
                continue;
            }
            // Random, not from the store's id sequence (instance ids come
            // from it): a claim is only ever compared with the one stored.
            let claim = rand::random::<u64>();
            let next = delivery.claimed(claim, now_ms, lease_until);
            self.put_delivery(&mut batch, &slot, &delivery, &next)?;
            claimed.push(ClaimedMessage {
                message,
                delivery: next,
                claim,
            });
        }
        if !claimed.is_empty() {
            self.db.apply_batch(batch)?;
            self.db.flush()?;
        }
        Ok(claimed)
    }

    fn mark_outbox_many(&self, marks: &[Mark]) -> Result<Vec<Marked>> {
        let mut slots = Vec::with_capacity(marks.len());
        for mark in marks {
            slots.push(self.slot_of(&mark.id)?);
        }
        let mut batch = sled::Batch::default();
        let mut results = Vec::with_capacity(marks.len());
        let mut changed = false;
        {
            let _outbox = self.outbox_lock();
            // Deliveries written earlier in this batch, by outbox key.
            let mut written: std::collections::HashMap<Vec<u8>, Delivery> =
                std::collections::HashMap::new();
            for (mark, slot) in marks.iter().zip(slots) {
                let Some(slot) = slot else {
                    results.push(Marked::Unknown);
                    continue;
                };
                let delivery = match written.get(&slot) {
                    Some(delivery) => delivery.clone(),
                    None => match self.message_at(&slot)? {
                        Some((_, delivery)) => delivery,
                        None => {
                            results.push(Marked::Unknown);
                            continue;
                        }
                    },
                };
                if !delivery.status.is_pending() {
                    // Accepted, reported on or dead already: a late or
                    // repeated mark changes nothing.
                    results.push(Marked::Recorded(delivery));
                    continue;
                }
                let accepted = matches!(mark.attempt.outcome, AttemptOutcome::Accepted { .. });
                if delivery.claim != Some(mark.claim) && !accepted {
                    results.push(Marked::ClaimLost);
                    continue;
                }
                let next = delivery.after(&mark.attempt);
                self.put_delivery(&mut batch, &slot, &delivery, &next)?;
                if let AttemptOutcome::Accepted {
                    provider_id: Some(provider_id),
                } = &mark.attempt.outcome
                {
                    batch.insert(
                        keys::provider_id(&mark.attempt.integration, provider_id),
                        slot.clone(),
                    );
                }
                written.insert(slot, next.clone());
                results.push(Marked::Recorded(next));
                changed = true;
            }
            if changed {
                self.db.apply_batch(batch)?;
            }
        }
        if changed {
            self.db.flush()?;
        }
        Ok(results)
    }

    fn report_delivery(
        &self,
        message: MessageRef<'_>,
        report: &StatusReport,
    ) -> Result<Option<(OutboxMessage, Delivery, bool)>> {
        let Some(slot) = self.slot_named(message)? else {
            return Ok(None);
        };
        let (message, next) = {
            let _outbox = self.outbox_lock();
            let Some((message, delivery)) = self.message_at(&slot)? else {
                return Ok(None);
            };
            let Some(next) = delivery.reported(report) else {
                return Ok(Some((message, delivery, false)));
            };
            let mut batch = sled::Batch::default();
            self.put_delivery(&mut batch, &slot, &delivery, &next)?;
            self.db.apply_batch(batch)?;
            (message, next)
        };
        self.db.flush()?;
        Ok(Some((message, next, true)))
    }

    fn replay_message(&self, id: &str, now_ms: u64) -> Result<Option<Delivery>> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(None);
        };
        let next = {
            let _outbox = self.outbox_lock();
            let Some((_, delivery)) = self.message_at(&slot)? else {
                return Ok(None);
            };
            if !delivery.status.is_undelivered() {
                return Ok(Some(delivery));
            }
            let next = delivery.replayed(now_ms);
            let mut batch = sled::Batch::default();
            self.put_delivery(&mut batch, &slot, &delivery, &next)?;
            self.db.apply_batch(batch)?;
            next
        };
        self.db.flush()?;
        Ok(Some(next))
    }

    fn next_delivery_due(&self) -> Result<Option<u64>> {
        match self.db.scan_prefix(keys::outbox_due_all()).keys().next() {
            Some(key) => Ok(keys::due_of(&key?)),
            None => Ok(None),
        }
    }

    fn message(&self, id: &str) -> Result<Option<(OutboxMessage, Delivery)>> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(None);
        };
        self.message_at(&slot)
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage> {
        let start = match &filter.after {
            Some(after) => match self.slot_of(after)? {
                Some(mut slot) => {
                    // The first key after the message's own.
                    slot.push(0);
                    slot
                }
                None => return Ok(DeliveryPage::default()),
            },
            None => keys::outbox_all(),
        };
        let (prefix, mut found, mut last) = (keys::outbox_all(), Vec::new(), None);
        for (looked_at, item) in self.db.range(start..).enumerate() {
            let (slot, bytes) = item?;
            if !slot.starts_with(&prefix) {
                break;
            }
            if found.len() >= filter.limit || (filter.budget > 0 && looked_at >= filter.budget) {
                return Ok(DeliveryPage {
                    found,
                    more_after: last,
                });
            }
            let message: OutboxMessage = self.codec.decode(&slot, &bytes)?;
            let delivery = self
                .get::<Delivery>(&keys::delivery(&slot))?
                .unwrap_or_else(|| Delivery::queued(message.queued_at_ms));
            last = Some(message.id.clone());
            if filter.matches(&message, &delivery) {
                found.push((message, delivery));
            }
        }
        Ok(DeliveryPage {
            found,
            more_after: None,
        })
    }
}
