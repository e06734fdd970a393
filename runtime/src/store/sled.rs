//! The embedded sled backend of [`Store`].
//!
//! All journal records (events, instances, history, outbox, correlation
//! index, running index, customers) live in sled's default tree, so one [`sled::Batch`]
//! applies a whole group commit atomically; component bytes live in a
//! separate `blobs` tree because they are large and written rarely.
//! sled's own periodic flush is turned off: every write method ends with an
//! explicit [`sled::Db::flush`], so a return means durable.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{
    Applied, CustomerView, Engagement, Error, EventRecord, HistoryEntry, Instance, InstanceFilter,
    InstanceId, InstanceStatus, Interaction, JourneyRecord, MigrationRecord, OutboxMessage,
    PluginRecord, Result, StepCommit, Store, TagRecord, VIEW_ENGAGEMENT, VIEW_INTERACTIONS,
    VersionStats, Write, encode, keys,
};

/// Tuning for the sled backend.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache in bytes. It bounds most of the store's memory use;
    /// the default keeps an idle runtime with 100k finished instances small.
    pub cache_bytes: u64,
    /// Customer views kept in memory (profile plus the most recent
    /// interactions each).
    pub cached_customers: usize,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 64 * 1024 * 1024,
            cached_customers: 10_000,
        }
    }
}

/// Customer views in memory. Every step reads its customer's view, and a
/// sled read waits behind the group commit's batch and flush, so the views
/// are served from here; the store's own write methods keep them current.
struct CustomerCache {
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

    fn append(&mut self, customer: &str, seq: u64, interaction: &Interaction) {
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
}

/// A [`Store`] on an embedded sled database in one directory.
pub struct SledStore {
    db: sled::Db,
    blobs: sled::Tree,
    customers: std::sync::Mutex<CustomerCache>,
    /// Held for writing while [`Store::apply`] applies its batch, and for
    /// reading by [`Store::settled`]: sled makes each read see a batch
    /// whole, but not two reads in a row.
    applying: std::sync::RwLock<()>,
    /// Held while a plugin or journey version is numbered and written, so
    /// two at once never get the same number.
    versions: std::sync::Mutex<()>,
}

impl SledStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path, options: &SledOptions) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()?;
        let blobs = db.open_tree("blobs")?;
        Ok(SledStore {
            db,
            blobs,
            customers: std::sync::Mutex::new(CustomerCache {
                views: HashMap::new(),
                capacity: options.cached_customers.max(1),
            }),
            applying: std::sync::RwLock::new(()),
            versions: std::sync::Mutex::new(()),
        })
    }

    fn customer_cache(&self) -> std::sync::MutexGuard<'_, CustomerCache> {
        self.customers
            .lock()
            .expect("the customer cache lock is never poisoned")
    }

    fn read_customer_view(&self, id: &str, limit: usize) -> Result<CachedView> {
        let profile = match self.get::<Box<RawValue>>(&keys::customer(id))? {
            Some(profile) => profile,
            None => RawValue::from_string("{}".to_owned()).map_err(Error::Encode)?,
        };
        let mut newest = 0;
        let mut interactions = Vec::new();
        for item in self
            .db
            .scan_prefix(keys::interactions_of(id))
            .rev()
            .take(limit)
        {
            let (key, bytes) = item?;
            newest = newest.max(keys::interaction_seq_of(&key).unwrap_or(0));
            interactions.push(decode::<Interaction>(&key, &bytes)?);
        }
        interactions.reverse();
        let channels = self.scan(&keys::preferences_of(id))?;
        let mut engagement = Vec::new();
        for item in self
            .db
            .scan_prefix(keys::engagement_of(id))
            .rev()
            .take(VIEW_ENGAGEMENT)
        {
            let (key, bytes) = item?;
            engagement.push(decode::<Engagement>(&key, &bytes)?);
        }
        engagement.reverse();
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

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.db
            .get(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item?;
                decode(&key, &bytes)
            })
            .collect()
    }

    /// The instance ids of the index keys under `prefix`.
    fn ids_under(
        &self,
        prefix: &[u8],
        id_of: fn(&[u8]) -> Option<InstanceId>,
    ) -> Result<Vec<InstanceId>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .map(|key| Ok(id_of(&key?)))
            .filter_map(Result::transpose)
            .collect()
    }

    /// Add a step's effects to `batch`, unless its history slot is taken
    /// (in the store or earlier in the batch).
    fn add_step<'a>(
        &self,
        batch: &mut sled::Batch,
        step: &'a StepCommit,
        history_in_batch: &mut HashSet<(InstanceId, u32)>,
        interactions: &mut Vec<(&'a str, u64, &'a Interaction)>,
    ) -> Result<Applied> {
        let instance = &step.instance;
        let seq = step.seq();
        let history_key = keys::history(instance.id, seq);
        if history_in_batch.contains(&(instance.id, seq)) || self.db.contains_key(&history_key)? {
            return Ok(Applied::StaleStep);
        }
        history_in_batch.insert((instance.id, seq));
        batch.insert(history_key, &*step.entry);
        if let Some(record) = &step.instance_record {
            batch.insert(keys::instance(instance.id), &**record);
            if instance.status == InstanceStatus::Running {
                batch.insert(keys::running(instance.id), &[]);
            } else {
                batch.remove(keys::running(instance.id));
            }
            if matches!(
                instance.status,
                InstanceStatus::Exited | InstanceStatus::Cancelled
            ) {
                batch.remove(keys::pending_exit(instance.id));
            }
            if instance.indexed_by_customer {
                // Indexed while unfinished, including an instance an
                // operator brought back from `failed`.
                let active = keys::active(&instance.journey, &instance.customer_id, instance.id);
                if instance.status.is_finished() {
                    batch.remove(active);
                } else {
                    batch.insert(active, &[]);
                }
            }
        }
        for (channel, at_ms, index) in &step.counted {
            batch.insert(
                keys::sent(
                    &instance.customer_id,
                    channel,
                    *at_ms,
                    instance.id,
                    seq,
                    *index,
                ),
                &[],
            );
        }
        if let Some(due) = step.set_timer {
            batch.insert(keys::timer(due, instance.id), &[]);
        }
        if let Some(due) = step.clear_timer {
            batch.remove(keys::timer(due, instance.id));
        }
        if let Some((kind, correlation)) = &step.set_wait {
            batch.insert(keys::wait(kind, correlation, instance.id), &[]);
        }
        if let Some((kind, correlation)) = &step.clear_wait {
            batch.remove(keys::wait(kind, correlation, instance.id));
        }
        for (index, message) in step.messages.iter().enumerate() {
            batch.insert(keys::outbox(instance.id, seq, index as u32), &**message);
        }
        for note in &step.notes {
            let seq = self.db.generate_id()?;
            batch.insert(keys::interaction(&instance.customer_id, seq), &*note.bytes);
            interactions.push((&instance.customer_id, seq, &note.interaction));
        }
        Ok(Applied::Done)
    }

    /// A stored instance record brought up to date: a running instance's
    /// record is as of its start, so its step entries are folded onto it
    /// (every entry's target is a step: the entry that finishes an
    /// instance is written together with its final record).
    fn current(&self, mut instance: Instance) -> Result<Instance> {
        if instance.status != InstanceStatus::Running {
            return Ok(instance);
        }
        let record_key = keys::instance(instance.id);
        let mut state: Option<serde_json::Map<String, serde_json::Value>> = None;
        let prefix = keys::history_of(instance.id);
        for item in self
            .db
            .range(keys::history(instance.id, instance.history_len)..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(&prefix))
            })
        {
            let (key, bytes) = item?;
            // A running instance's entries since its record: steps that
            // led on to steps, splits, and restarts (every other entry
            // rewrites the record).
            let step = match decode::<HistoryEntry>(&key, &bytes)? {
                HistoryEntry::StepRan(step) => step,
                HistoryEntry::Split { target, at_ms, .. } => {
                    instance.follow_split(&target, true, at_ms);
                    continue;
                }
                HistoryEntry::Restarted { attempt, at_ms, .. } => {
                    instance.restarted(attempt, at_ms);
                    continue;
                }
                _ => continue,
            };
            instance.advance(&step, |_| true);
            if !step.state.is_empty() {
                let state = match &mut state {
                    Some(state) => state,
                    None => state.insert(decode(&record_key, instance.state.get().as_bytes())?),
                };
                step.state.apply_to(state);
            }
        }
        if let Some(state) = state {
            instance.state = serde_json::value::to_raw_value(&state).map_err(Error::Encode)?;
        }
        Ok(instance)
    }

    fn numbering(&self) -> std::sync::MutexGuard<'_, ()> {
        self.versions
            .lock()
            .expect("the version numbering lock is never poisoned")
    }

    fn latest_version(&self, prefix: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self.db.scan_prefix(prefix).next_back().transpose()?)
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        key: keys::display(key),
        source,
    })
}

impl Store for SledStore {
    fn next_id(&self) -> Result<u64> {
        // sled never hands out an id twice, also across restarts; 0 is
        // skipped so ids read well.
        Ok(self.db.generate_id()? + 1)
    }

    fn put_plugin(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        at_ms: u64,
    ) -> Result<PluginRecord> {
        let _numbering = self.numbering();
        let latest = match self.latest_version(&keys::plugin_versions(name))? {
            Some((key, value)) => Some(decode::<PluginRecord>(&key, &value)?),
            None => None,
        };
        if let Some(latest) = &latest
            && latest.digest == digest
        {
            return Ok(latest.clone());
        }
        let record = PluginRecord {
            name: name.to_owned(),
            version: latest.map_or(1, |latest| latest.version + 1),
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            pushed_at_ms: at_ms,
        };
        // The blob is durable before any version points at it.
        self.blobs.insert(keys::blob(digest), bytes)?;
        self.blobs.flush()?;
        self.db
            .insert(keys::plugin(name, record.version), encode(&record)?)?;
        self.db.flush()?;
        Ok(record)
    }

    fn plugin_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .get(keys::blob(digest))?
            .map(|bytes| bytes.to_vec()))
    }

    fn plugins(&self) -> Result<Vec<PluginRecord>> {
        self.scan(&keys::plugins())
    }

    fn put_tag(&self, record: &TagRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        let encoded = encode(record)?;
        batch.insert(keys::tag(&record.plugin, &record.tag), &*encoded);
        batch.insert(
            keys::tag_change(&record.plugin, self.db.generate_id()?),
            encoded,
        );
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn tags(&self) -> Result<Vec<TagRecord>> {
        self.scan(&keys::tags())
    }

    fn tag_changes(&self, plugin: &str) -> Result<Vec<TagRecord>> {
        self.scan(&keys::tag_changes_of(plugin))
    }

    fn put_version_stats(&self, stats: &[VersionStats]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for version in stats {
            batch.insert(
                keys::version_stats(&version.plugin, version.version),
                encode(version)?,
            );
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn version_stats(&self) -> Result<Vec<VersionStats>> {
        self.scan(&keys::all_version_stats())
    }

    fn any_waiting_for(&self, kind: &str) -> Result<bool> {
        Ok(self
            .db
            .scan_prefix(keys::waiting_kind(kind))
            .keys()
            .next()
            .transpose()?
            .is_some())
    }

    fn waiting_for(&self, kind: &str, correlation: &str) -> Result<Vec<InstanceId>> {
        self.ids_under(
            &keys::waiting(kind, correlation),
            keys::trailing_instance_of,
        )
    }

    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, InstanceId)>> {
        let end = keys::timer(now_ms, InstanceId(u64::MAX));
        self.db
            .range(keys::timers()..=end)
            .keys()
            .take(limit)
            .map(|key| Ok(keys::timer_of(&key?)))
            .filter_map(Result::transpose)
            .collect()
    }

    fn next_timer(&self) -> Result<Option<u64>> {
        Ok(self
            .db
            .scan_prefix(keys::timers())
            .keys()
            .next()
            .transpose()?
            .and_then(|key| keys::timer_of(&key))
            .map(|(due, _)| due))
    }

    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()> {
        self.db.remove(keys::timer(due_ms, instance))?;
        self.db.flush()?;
        Ok(())
    }

    fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        self.db.insert(keys::meta(name), encode(value)?)?;
        self.db.flush()?;
        Ok(())
    }

    fn meta(&self, name: &str) -> Result<Option<serde_json::Value>> {
        self.get(&keys::meta(name))
    }

    fn put_migration(&self, record: &MigrationRecord) -> Result<()> {
        self.db.insert(
            keys::migration(&record.journey, record.from_version),
            encode(record)?,
        )?;
        self.db.flush()?;
        Ok(())
    }

    fn migrations(&self) -> Result<Vec<MigrationRecord>> {
        self.scan(&keys::migrations())
    }

    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord> {
        let _numbering = self.numbering();
        let version = match self.latest_version(&keys::journey_versions(name))? {
            Some((key, value)) => decode::<JourneyRecord>(&key, &value)?.version + 1,
            None => 1,
        };
        let record = JourneyRecord {
            name: name.to_owned(),
            version,
            source: source.to_owned(),
            deployed_at_ms: at_ms,
        };
        self.db
            .insert(keys::journey(name, version), encode(&record)?)?;
        self.db.flush()?;
        Ok(record)
    }

    fn journeys(&self) -> Result<Vec<JourneyRecord>> {
        self.scan(&keys::journeys())
    }

    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()> {
        self.db.insert(keys::customer(id), encode(profile)?)?;
        self.db.flush()?;
        // Dropped, not patched: concurrent upserts could patch in the
        // wrong order, while the next read always sees the stored profile.
        self.customer_cache().views.remove(id);
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

    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>> {
        let mut batch = sled::Batch::default();
        let mut applied = Vec::with_capacity(writes.len());
        // Writes earlier in this batch are not visible to `get` yet.
        let mut events_in_batch: HashMap<&str, &[InstanceId]> = HashMap::new();
        let mut history_in_batch: HashSet<(InstanceId, u32)> = HashSet::new();
        let mut interactions: Vec<(&str, u64, &Interaction)> = Vec::new();
        // Customers whose channels or engagement changed: their cached
        // views are dropped once the batch is applied.
        let mut changed_customers: Vec<&str> = Vec::new();
        for write in writes {
            match write {
                Write::Ingest(ingest) => {
                    if let Some(started) = events_in_batch.get(ingest.event_id.as_str()) {
                        applied.push(Applied::DuplicateEvent {
                            started: started.to_vec(),
                        });
                        continue;
                    }
                    if let Some(earlier) =
                        self.get::<EventRecord>(&keys::event(&ingest.event_id))?
                    {
                        applied.push(Applied::DuplicateEvent {
                            started: earlier.started,
                        });
                        continue;
                    }
                    events_in_batch.insert(&ingest.event_id, &ingest.started);
                    batch.insert(keys::event(&ingest.event_id), &*ingest.event);
                    for instance in &ingest.instances {
                        batch.insert(keys::instance(instance.id), &*instance.record);
                        batch.insert(keys::running(instance.id), &[]);
                        batch.insert(
                            keys::correlation(
                                &instance.journey,
                                &instance.correlation,
                                instance.id,
                            ),
                            &[],
                        );
                        if let Some(customer) = &instance.indexed_customer {
                            batch.insert(
                                keys::active(&instance.journey, customer, instance.id),
                                &[],
                            );
                        }
                    }
                    let seq = self.db.generate_id()?;
                    let interaction = &ingest.interaction;
                    batch.insert(
                        keys::interaction(&ingest.customer_id, seq),
                        &*interaction.bytes,
                    );
                    interactions.push((&ingest.customer_id, seq, &interaction.interaction));
                    // An exit or wake whose slot is taken (a step or timer
                    // came first) is not applied; exits are tried again.
                    for exit in &ingest.exits {
                        batch.insert(
                            keys::pending_exit(exit.instance.id),
                            ingest.event_id.as_bytes(),
                        );
                    }
                    for change in ingest.exits.iter().chain(&ingest.wakes) {
                        self.add_step(
                            &mut batch,
                            change,
                            &mut history_in_batch,
                            &mut interactions,
                        )?;
                    }
                    if let Some((channel, record)) = &ingest.preference {
                        batch.insert(keys::preference(&ingest.customer_id, channel), &**record);
                        changed_customers.push(&ingest.customer_id);
                    }
                    if let Some(record) = &ingest.engagement {
                        let seq = self.db.generate_id()?;
                        batch.insert(keys::engagement(&ingest.customer_id, seq), &**record);
                        changed_customers.push(&ingest.customer_id);
                    }
                    applied.push(Applied::Done);
                }
                Write::Step(step) => {
                    applied.push(self.add_step(
                        &mut batch,
                        step,
                        &mut history_in_batch,
                        &mut interactions,
                    )?);
                }
            }
        }
        {
            let _applying = self
                .applying
                .write()
                .expect("the commit gate is never poisoned");
            self.db.apply_batch(batch)?;
        }
        if !interactions.is_empty() || !changed_customers.is_empty() {
            let mut cache = self.customer_cache();
            for (customer, seq, interaction) in interactions {
                cache.append(customer, seq, interaction);
            }
            for customer in changed_customers {
                cache.views.remove(customer);
            }
        }
        Ok(applied)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        self.get(&keys::event(id))
    }

    fn instance(&self, id: InstanceId) -> Result<Option<Instance>> {
        self.get::<Instance>(&keys::instance(id))?
            .map(|record| self.current(record))
            .transpose()
    }

    fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        let start = match filter.after {
            Some(after) => keys::instance(InstanceId(after.0.saturating_add(1))),
            None => keys::instances(),
        };
        let mut found = Vec::new();
        for item in self.db.range(start..) {
            let (key, bytes) = item?;
            if keys::instance_id_of(&key).is_none() {
                break;
            }
            let instance = self.current(decode(&key, &bytes)?)?;
            let journey_matches = filter
                .journey
                .as_deref()
                .is_none_or(|journey| instance.journey == journey);
            let status_matches = filter.status.is_none_or(|status| instance.status == status);
            if journey_matches && status_matches {
                found.push(instance);
                if found.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    fn running_instances(&self) -> Result<Vec<Instance>> {
        let mut running = Vec::new();
        for item in self.db.scan_prefix(keys::running_all()) {
            let (key, _) = item?;
            let Some(id) = keys::running_id_of(&key) else {
                continue;
            };
            if let Some(instance) = self.instance(id)? {
                running.push(instance);
            }
        }
        Ok(running)
    }

    fn settled(&self, now_ms: u64) -> Result<bool> {
        let _no_commit = self
            .applying
            .read()
            .expect("the commit gate is never poisoned");
        Ok(self.db.scan_prefix(keys::running_all()).next().is_none()
            && self.due_timers(now_ms, 1)?.is_empty())
    }

    fn pending_exits(&self) -> Result<Vec<(InstanceId, String)>> {
        let mut pending = Vec::new();
        for item in self.db.scan_prefix(keys::pending_exits()) {
            let (key, event) = item?;
            if let Some(id) = keys::pending_exit_of(&key) {
                pending.push((id, String::from_utf8_lossy(&event).into_owned()));
            }
        }
        Ok(pending)
    }

    fn forget_exit(&self, instance: InstanceId) -> Result<()> {
        self.db.remove(keys::pending_exit(instance))?;
        self.db.flush()?;
        Ok(())
    }

    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>> {
        let Some(instance) = self.get::<Instance>(&keys::instance(id))? else {
            return Ok(Vec::new());
        };
        let received = match self.event(&instance.trigger_event_id)? {
            Some(event) => HistoryEntry::EventReceived {
                at_ms: event.received_at_ms,
                event_id: event.id,
                kind: event.kind,
            },
            None => HistoryEntry::EventReceived {
                at_ms: instance.created_at_ms,
                event_id: instance.trigger_event_id,
                kind: String::new(),
            },
        };
        let mut history = vec![received];
        history.extend(self.scan::<HistoryEntry>(&keys::history_of(id))?);
        Ok(history)
    }

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

    fn correlated(&self, journey: &str, correlation: &str) -> Result<Vec<InstanceId>> {
        self.ids_under(
            &keys::correlated(journey, correlation),
            keys::correlated_id_of,
        )
    }

    fn active_of(&self, journey: &str, customer: &str) -> Result<Vec<InstanceId>> {
        self.ids_under(
            &keys::active_of(journey, customer),
            keys::trailing_instance_of,
        )
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

    #[test]
    fn the_sled_store_passes_the_store_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        crate::store::suite::run(&store);
    }

    #[test]
    fn the_sled_store_is_never_seen_settled_mid_wake_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        crate::store::suite::settled_is_never_seen_between_a_timer_and_its_step(&store);
    }

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
        // As apply does: the batch is visible in sled before the cache is
        // told; a reader that missed the cache in between has read it.
        let seq = store.db.generate_id().expect("id");
        store
            .db
            .insert(
                keys::interaction("c-1", seq),
                encode(&interaction).expect("encode"),
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
