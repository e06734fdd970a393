//! Customer profiles and views on sled. Every step reads its customer's
//! view, and a sled read waits behind the group commit's batch and flush,
//! so views are served from an in-memory cache that the store's own writes
//! keep current.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::{SledStore, keys};
use crate::store::{
    CustomerView, Customers, Engagement, Error, Interaction, Result, SendReservation,
    VIEW_ENGAGEMENT, VIEW_INTERACTIONS,
};

/// Sends reserved against frequency caps and not yet released, by
/// (customer, channel): their times.
pub(super) type Reservations = HashMap<(String, String), Vec<u64>>;

/// Customer views in memory, at most `capacity`.
pub(super) struct CustomerCache {
    views: HashMap<String, CachedView>,
    capacity: usize,
}

struct CachedView {
    view: CustomerView,
    /// Sequence number of the newest interaction in `view` (0: none). An
    /// interaction applied while the view was being read from sled may
    /// already be in it; appends at or below this number are skipped.
    newest: u64,
}

impl CustomerCache {
    pub(super) fn new(capacity: usize) -> Self {
        CustomerCache {
            views: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn insert(&mut self, cached: CachedView) {
        let id = cached.view.id.clone();
        if self.views.len() >= self.capacity
            && !self.views.contains_key(&id)
            && let Some(evicted) = self.views.keys().next().cloned()
        {
            self.views.remove(&evicted);
        }
        self.views.insert(id, cached);
    }

    /// Add an interaction committed under sequence number `seq`.
    pub(super) fn append(&mut self, customer: &str, seq: u64, interaction: &Interaction) {
        if let Some(cached) = self.views.get_mut(customer)
            && seq > cached.newest
        {
            cached.newest = seq;
            let interactions = &mut cached.view.interactions;
            interactions.push(interaction.clone());
            let excess = interactions.len().saturating_sub(VIEW_INTERACTIONS);
            interactions.drain(..excess);
        }
    }

    /// Drop a customer's view: the next read takes it from sled.
    pub(super) fn forget(&mut self, customer: &str) {
        self.views.remove(customer);
    }
}

impl SledStore {
    fn reservations(&self) -> std::sync::MutexGuard<'_, Reservations> {
        self.reservations
            .lock()
            .expect("the reservations lock is never poisoned")
    }

    pub(super) fn customer_cache(&self) -> std::sync::MutexGuard<'_, CustomerCache> {
        self.customers
            .lock()
            .expect("the customer cache lock is never poisoned")
    }

    /// The last `limit` records under `prefix` (keys ending in a sequence
    /// number), oldest first, and the highest sequence number among them
    /// (0: none).
    fn newest_under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<(Vec<T>, u64)> {
        let mut newest = 0;
        let mut records = Vec::new();
        for item in self.db.scan_prefix(prefix).rev().take(limit) {
            let (key, bytes) = item?;
            newest = newest.max(keys::seq_of(&key).unwrap_or(0));
            records.push(self.codec.decode::<T>(&key, &bytes)?);
        }
        records.reverse();
        Ok((records, newest))
    }

    fn read_customer_view(&self, id: &str, limit: usize) -> Result<CachedView> {
        let profile = match self.get::<Box<RawValue>>(&keys::customer(id))? {
            Some(profile) => profile,
            None => RawValue::from_string("{}".to_owned()).map_err(Error::Encode)?,
        };
        let (interactions, newest) =
            self.newest_under::<Interaction>(&keys::interactions_of(id), limit)?;
        let channels = self.scan(&keys::preferences_of(id))?;
        let (engagement, _) =
            self.newest_under::<Engagement>(&keys::engagement_of(id), VIEW_ENGAGEMENT)?;
        Ok(CachedView {
            view: CustomerView {
                id: id.to_owned(),
                profile,
                interactions,
                channels,
                engagement,
            },
            newest,
        })
    }
}

impl Customers for SledStore {
    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()> {
        self.db
            .insert(keys::customer(id), self.codec.encode(profile)?)?;
        self.db.flush()?;
        // Dropped, not patched: concurrent upserts could patch in the
        // wrong order, while the next read always sees the stored profile.
        self.customer_cache().forget(id);
        Ok(())
    }

    fn customer_view(&self, id: &str, limit: usize, kinds: &[String]) -> Result<CustomerView> {
        let mut cache = self.customer_cache();
        if !cache.views.contains_key(id) {
            let cached = self.read_customer_view(id, VIEW_INTERACTIONS)?;
            cache.insert(cached);
        }
        let cached = &cache.views[id].view;
        // Copy only what was asked for: views are read on every step.
        let mut interactions: Vec<Interaction> = cached
            .interactions
            .iter()
            .rev()
            .filter(|interaction| kinds.is_empty() || kinds.contains(&interaction.kind))
            .take(limit)
            .cloned()
            .collect();
        interactions.reverse();
        Ok(CustomerView {
            id: cached.id.clone(),
            profile: cached.profile.clone(),
            interactions,
            channels: cached.channels.clone(),
            engagement: cached.engagement.clone(),
        })
    }

    fn reserve_send(
        &self,
        customer: &str,
        channel: &str,
        at_ms: u64,
        since_ms: u64,
        limit: u32,
    ) -> Result<SendReservation> {
        let key = (customer.to_owned(), channel.to_owned());
        // Held across the read, so the count and the reservation are one
        // step. A commit applied but not yet released is counted twice for
        // a moment: never under the cap.
        let mut reservations = self.reservations();
        let mut sent = self.sent_since(customer, channel, since_ms)?;
        sent.extend(
            reservations
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|at| **at >= since_ms),
        );
        if sent.len() >= limit as usize {
            sent.sort_unstable();
            return Ok(SendReservation::Full { sent });
        }
        reservations.entry(key).or_default().push(at_ms);
        Ok(SendReservation::Reserved)
    }

    fn release_send(&self, customer: &str, channel: &str, at_ms: u64) -> Result<()> {
        let key = (customer.to_owned(), channel.to_owned());
        let mut reservations = self.reservations();
        if let Some(sent) = reservations.get_mut(&key)
            && let Some(position) = sent.iter().rposition(|sent_at| *sent_at == at_ms)
        {
            sent.remove(position);
            if sent.is_empty() {
                reservations.remove(&key);
            }
        }
        Ok(())
    }

    fn sent_since(&self, customer: &str, channel: &str, since_ms: u64) -> Result<Vec<u64>> {
        let (prefix, start) = keys::sent_since(customer, channel, since_ms);
        let mut sent = Vec::new();
        for key in self.db.range(start..).keys() {
            let key = key?;
            match keys::sent_at_of(&prefix, &key) {
                Some(at_ms) => sent.push(at_ms),
                None => break,
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledOptions;

    #[test]
    fn an_interaction_read_from_sled_is_not_appended_to_the_cached_view_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        let interaction = Interaction {
            at_ms: 1,
            channel: "email".into(),
            kind: "enquiry.received".into(),
            text: "hello".into(),
            details: RawValue::from_string("{}".into()).expect("JSON"),
        };
        // As a commit does: the batch is visible in sled before the cache
        // is told; a reader that missed the cache in between has read it.
        let seq = store.db.generate_id().expect("id");
        store
            .db
            .insert(
                keys::interaction("c-1", seq),
                store.codec.encode(&interaction).expect("encode"),
            )
            .expect("insert");
        assert_eq!(
            store
                .customer_view("c-1", 10, &[])
                .expect("view")
                .interactions
                .len(),
            1
        );
        store.customer_cache().append("c-1", seq, &interaction);
        assert_eq!(
            store
                .customer_view("c-1", 10, &[])
                .expect("view")
                .interactions
                .len(),
            1,
            "the interaction is in the view once"
        );
    }

    #[test]
    fn the_customer_cache_evicts_beyond_its_capacity_and_stays_correct() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = SledOptions {
            cached_customers: 2,
            ..SledOptions::default()
        };
        let store = SledStore::open(dir.path(), &options).expect("open");
        for id in ["a", "b", "c"] {
            store
                .put_customer(id, &serde_json::json!({ "name": id }))
                .expect("put");
            store.customer_view(id, 5, &[]).expect("view");
        }
        assert!(store.customer_cache().views.len() <= 2);
        for id in ["a", "b", "c"] {
            let view = store.customer_view(id, 5, &[]).expect("view");
            assert_eq!(view.profile.get(), format!(r#"{{"name":"{id}"}}"#));
        }
    }
}
