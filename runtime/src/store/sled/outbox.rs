//! The outbox on sled: messages in queue order, the due index the
//! dispatcher claims from, and deliveries.

use std::time::Duration;

use super::{SledStore, decode, keys};
use crate::store::{
    ClaimedMessage, Delivery, DeliveryAttempt, DeliveryStatus, InstanceId, Outbox, OutboxMessage,
    Result, encode,
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
            if super::claim(&mut self.leases().messages, message.id.clone(), lease) {
                claimed.push(ClaimedMessage { message, delivery });
            }
        }
        Ok(claimed)
    }

    fn mark_outbox(&self, id: &str, attempt: &DeliveryAttempt) -> Result<Option<Delivery>> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(None);
        };
        let next = {
            // One mark of a message at a time: each reads what the last
            // one wrote.
            let mut leases = self.leases();
            let Some((_, delivery)) = self.message_at(&slot)? else {
                return Ok(None);
            };
            leases.messages.remove(id);
            if matches!(
                delivery.status,
                DeliveryStatus::Delivered | DeliveryStatus::Dead
            ) {
                // Final: a late or repeated mark changes nothing.
                return Ok(Some(delivery));
            }
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
        Ok(Some(next))
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let Some(slot) = self.slot_of(id)? else {
            return Ok(None);
        };
        Ok(self.message_at(&slot)?.map(|(_, delivery)| delivery))
    }
}
