//! The outbox on sled: messages in queue order, the due index the
//! dispatcher claims from, and deliveries.

use std::time::{Duration, Instant};

use super::{SledStore, decode, keys};
use crate::store::{
    AttemptOutcome, ClaimedMessage, Delivery, DeliveryAttempt, DeliveryStatus, InstanceId, Marked,
    Outbox, OutboxMessage, Result, encode,
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
            if decode::<OutboxMessage>(&key, &bytes)?.id == id {
                return Ok(Some(key.to_vec()));
            }
        }
        Ok(None)
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
                decode(&key, &bytes)
            })
            .collect()
    }

    fn claim_outbox(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>> {
        let mut claimed = Vec::new();
        // Under the leases lock, which marks hold too: a message marked
        // meanwhile is seen as marked.
        let mut leases = self.leases();
        let now = Instant::now();
        if leases.messages.len() > 4096 {
            leases.messages.retain(|_, (until, _)| *until > now);
        }
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
            let due = delivery.due_ms.is_some_and(|due| due <= now_ms)
                && matches!(
                    delivery.status,
                    DeliveryStatus::Queued | DeliveryStatus::Failed
                );
            let held = leases
                .messages
                .get(&message.id)
                .is_some_and(|(until, _)| *until > now);
            if !due || held {
                continue;
            }
            let claim = self.db.generate_id()?;
            leases
                .messages
                .insert(message.id.clone(), (now + lease, claim));
            claimed.push(ClaimedMessage {
                message,
                delivery,
                claim,
            });
        }
        Ok(claimed)
    }

    fn mark_outbox(&self, id: &str, claim: u64, attempt: &DeliveryAttempt) -> Result<Marked> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(Marked::Unknown);
        };
        let next = {
            // One mark or claim at a time: each reads what the last wrote.
            let mut leases = self.leases();
            let Some((_, delivery)) = self.message_at(&slot)? else {
                return Ok(Marked::Unknown);
            };
            if matches!(
                delivery.status,
                DeliveryStatus::Delivered | DeliveryStatus::Dead
            ) {
                // Final: a late or repeated mark changes nothing.
                return Ok(Marked::Recorded(delivery));
            }
            let ours = leases
                .messages
                .get(id)
                .is_none_or(|(_, holder)| *holder == claim);
            let delivered = matches!(attempt.outcome, AttemptOutcome::Delivered { .. });
            if !ours && !delivered {
                return Ok(Marked::ClaimLost);
            }
            leases.messages.remove(id);
            let next = delivery.after(attempt);
            let mut batch = sled::Batch::default();
            if let Some(due) = delivery.due_ms {
                batch.remove(keys::outbox_due(due, &slot));
            }
            if let Some(due) = next.due_ms {
                batch.insert(keys::outbox_due(due, &slot), &[]);
            }
            batch.insert(keys::delivery(&slot), encode(&next)?);
            self.db.apply_batch(batch)?;
            next
        };
        self.db.flush()?;
        Ok(Marked::Recorded(next))
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(None);
        };
        Ok(self.message_at(&slot)?.map(|(_, delivery)| delivery))
    }
}
