//! Forgetting a customer on sled: the index of events by customer (and
//! its one-off backfill for stores written before it), removing what is
//! kept about a customer, and scrubbing an anonymised instance's records.
//! The `Customers` and `Journal` methods call these.

use std::collections::HashSet;

use super::history::HistoryRecord;
use super::{SledStore, keys};
use crate::store::{
    Delivery, DeliveryStatus, EventRecord, ForgottenRecords, HistoryEntry, Instance, InstanceId,
    OutboxMessage, Result, Scrub,
};

/// The setting that says the events-by-customer index is complete.
const EVENTS_INDEXED: &str = "events-indexed-by-customer";
/// Index entries written per batch by the backfill.
const BACKFILL_BATCH: usize = 10_000;

impl SledStore {
    /// Index every kept event under its customer, once: stores written
    /// before the index existed get it on their first open.
    pub(super) fn index_events_by_customer(&self) -> Result<()> {
        if self.db.contains_key(keys::meta(EVENTS_INDEXED))? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for item in self.db.scan_prefix(keys::events()) {
            let (key, bytes) = item?;
            let event: EventRecord = self.codec.decode(&key, &bytes)?;
            batch.insert(keys::customer_event(&event.customer_id, &event.id), &[]);
            pending += 1;
            if pending == BACKFILL_BATCH {
                self.db.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        batch.insert(
            keys::meta(EVENTS_INDEXED),
            self.codec.encode(&serde_json::Value::Bool(true))?,
        );
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    pub(super) fn events_of_customer(&self, customer: &str) -> Result<Vec<EventRecord>> {
        let prefix = keys::customer_events(customer);
        let mut events = Vec::new();
        for key in self.db.scan_prefix(&prefix).keys() {
            let key = key?;
            let Some(id) = keys::customer_event_of(&prefix, &key) else {
                continue;
            };
            if let Some(event) = self.get::<EventRecord>(&keys::event(id))? {
                events.push(event);
            }
        }
        Ok(events)
    }

    pub(super) fn forget(&self, customer: &str) -> Result<ForgottenRecords> {
        let mut forgotten = ForgottenRecords::default();
        let mut batch = sled::Batch::default();
        {
            // Under the commit gate: no commit adds to what is counted and
            // removed here while it is.
            let _applying = self
                .applying
                .write()
                .expect("the commit gate is never poisoned");
            forgotten.profile = self.db.contains_key(keys::customer(customer))?;
            batch.remove(keys::customer(customer));
            let mut remove_all = |prefix: Vec<u8>| -> Result<usize> {
                let mut count = 0;
                for key in self.db.scan_prefix(prefix).keys() {
                    batch.remove(key?);
                    count += 1;
                }
                Ok(count)
            };
            forgotten.interactions = remove_all(keys::interactions_of(customer))?;
            forgotten.channel_choices = remove_all(keys::preferences_of(customer))?;
            forgotten.engagement = remove_all(keys::engagement_of(customer))?;
            forgotten.counted_sends = remove_all(keys::sent_of(customer))?;
            for event in self.events_of_customer(customer)? {
                let mut kept = false;
                for started in &event.started {
                    kept = kept || self.db.contains_key(keys::instance(*started))?;
                }
                if kept {
                    forgotten.events_kept += 1;
                } else {
                    batch.remove(keys::event(&event.id));
                    batch.remove(keys::customer_event(customer, &event.id));
                    forgotten.events += 1;
                }
            }
            self.db.apply_batch(batch)?;
            self.customer_cache().forget(customer);
        }
        self.db.flush()?;
        Ok(forgotten)
    }

    /// Add to `batch` the scrubbed records of `instance` (as it is after
    /// the anonymising change, whose own entry and record the caller
    /// writes): its earlier history, its outbox (messages not yet sent
    /// are dropped), the events it ran on, and its index entries under the
    /// customer. `before` is the instance as it was.
    pub(super) fn add_scrub(
        &self,
        batch: &mut sled::Batch,
        before: &Instance,
        scrub: &Scrub,
    ) -> Result<()> {
        let id = before.id;
        let mut events: HashSet<String> = HashSet::from([before.trigger_event_id.clone()]);
        for (key, record) in self.history_records(id)? {
            let entries = match &record {
                HistoryRecord::Entry(entry) => std::slice::from_ref(entry),
                HistoryRecord::Archive(entries) => entries.as_slice(),
            };
            for entry in entries {
                if let HistoryEntry::EventArrived { event_id, .. }
                | HistoryEntry::Exited { event_id, .. } = entry
                {
                    events.insert(event_id.clone());
                }
            }
            let encode = crate::store::Error::Encode;
            let scrubbed = match &record {
                HistoryRecord::Entry(entry) => {
                    self.codec.encode(&scrub.record(entry).map_err(encode)?)
                }
                HistoryRecord::Archive(entries) => {
                    self.codec.encode(&scrub.record(entries).map_err(encode)?)
                }
            }?;
            batch.insert(key, scrubbed);
        }
        self.add_outbox_scrub(batch, id, scrub)?;
        for event_id in events {
            let key = keys::event(&event_id);
            let Some(event) = self.get::<EventRecord>(&key)? else {
                continue;
            };
            if event.customer_id != scrub.customer {
                continue;
            }
            let mut scrubbed = scrub.record(&event).map_err(crate::store::Error::Encode)?;
            scrubbed.customer_id = scrub.pseudonym.clone();
            batch.insert(key, self.codec.encode(&scrubbed)?);
            batch.remove(keys::customer_event(&scrub.customer, &event_id));
            batch.insert(keys::customer_event(&scrub.pseudonym, &event_id), &[]);
        }
        batch.remove(keys::correlation(&before.journey, &before.correlation, id));
        batch.insert(
            keys::correlation(&before.journey, &scrub.text(&before.correlation), id),
            &[],
        );
        batch.remove(keys::active(&before.journey, &before.customer_id, id));
        for key in self
            .db
            .scan_prefix(keys::sent_of(&before.customer_id))
            .keys()
        {
            let key = key?;
            if keys::sent_by_of(&key) == Some(id) {
                batch.remove(key);
            }
        }
        Ok(())
    }

    /// Scrub the messages of instance `id`: those a provider took keep
    /// their delivery record, scrubbed; the rest are dropped, since a
    /// forgotten customer must not be written to.
    fn add_outbox_scrub(
        &self,
        batch: &mut sled::Batch,
        id: InstanceId,
        scrub: &Scrub,
    ) -> Result<()> {
        for item in self.db.scan_prefix(keys::outbox_of(id)) {
            let (slot, bytes) = item?;
            let message: OutboxMessage = self.codec.decode(&slot, &bytes)?;
            let delivery_key = keys::delivery(&slot);
            let delivery = self.get::<Delivery>(&delivery_key)?;
            let sent = delivery.as_ref().is_some_and(|delivery| {
                !matches!(
                    delivery.status,
                    DeliveryStatus::Queued | DeliveryStatus::Retrying | DeliveryStatus::Sending
                )
            });
            if !sent {
                let due = delivery
                    .as_ref()
                    .and_then(|delivery| delivery.due_ms)
                    .unwrap_or(message.queued_at_ms);
                batch.remove(keys::outbox_due(due, &slot));
                batch.remove(delivery_key);
                batch.remove(&*slot);
                continue;
            }
            let mut scrubbed = scrub
                .record(&message)
                .map_err(crate::store::Error::Encode)?;
            scrubbed.customer_id = scrub.pseudonym.clone();
            batch.insert(&*slot, self.codec.encode(&scrubbed)?);
            if let Some(delivery) = delivery {
                let scrubbed = scrub
                    .record(&delivery)
                    .map_err(crate::store::Error::Encode)?;
                batch.insert(delivery_key, self.codec.encode(&scrubbed)?);
            }
        }
        Ok(())
    }
}
