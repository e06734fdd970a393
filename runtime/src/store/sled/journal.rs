//! The journal on sled: the commit path, instances, histories, waits,
//! timers and the outbox.
//!
//! A commit is encoded on the caller's thread, then checked and applied
//! as one [`sled::Batch`] under the `applying` lock (so two commits never
//! both take one history slot or event id), then flushed outside it: a
//! second commit can be applied while the first one's flush runs, and
//! both are durable when their flushes return.
//!
//! A running instance's record is written when it starts and whenever a
//! change does more than move it along (see
//! [`InstanceCommit::only_moves_along`]); in between, its history entries
//! are folded onto the record when it is read.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::counts::CountChanges;
use super::history::Archive;
use super::{SledStore, keys};
use crate::store::{
    Applied, Commit, DayTally, Error, EventCommit, EventRecord, ForgottenRecords, HistoryEntry,
    Instance, InstanceCommit, InstanceFilter, InstanceId, InstancePage, InstanceStatus,
    Interaction, Journal, Purge, RefusedStart, Result, StandingCounts, Timers,
};

/// An instance change with its records encoded.
struct EncodedChange<'a> {
    change: &'a InstanceCommit,
    /// The instance record, when the change rewrites it.
    record: Option<Vec<u8>>,
    entry: Vec<u8>,
    /// When the change finishes the instance: its whole history in one
    /// record, written in place of `entry`.
    archive: Option<Archive>,
    messages: Vec<Vec<u8>>,
    interactions: Vec<Vec<u8>>,
}

impl<'a> EncodedChange<'a> {
    fn new(store: &SledStore, change: &'a InstanceCommit) -> Result<Self> {
        let codec = &store.codec;
        Ok(EncodedChange {
            archive: store.archive_of(change)?,
            record: match change.only_moves_along() {
                true => None,
                false => Some(codec.encode(&change.instance)?),
            },
            entry: codec.encode(&change.entry)?,
            messages: change
                .messages
                .iter()
                .map(|record| codec.encode(record))
                .collect::<Result<_>>()?,
            interactions: change
                .interactions
                .iter()
                .map(|record| codec.encode(record))
                .collect::<Result<_>>()?,
            change,
        })
    }
}

/// An accepted event with its records encoded.
struct EncodedEvent<'a> {
    commit: &'a EventCommit,
    event: Vec<u8>,
    started: Vec<Vec<u8>>,
    interaction: Vec<u8>,
    exits: Vec<EncodedChange<'a>>,
    wakes: Vec<EncodedChange<'a>>,
    preference: Option<Vec<u8>>,
    engagement: Option<Vec<u8>>,
}

impl<'a> EncodedEvent<'a> {
    fn new(store: &SledStore, commit: &'a EventCommit) -> Result<Self> {
        let codec = &store.codec;
        let changes = |changes: &'a [InstanceCommit]| {
            changes
                .iter()
                .map(|change| EncodedChange::new(store, change))
                .collect::<Result<Vec<_>>>()
        };
        Ok(EncodedEvent {
            event: codec.encode(&commit.event)?,
            started: commit
                .started
                .iter()
                .map(|record| codec.encode(record))
                .collect::<Result<_>>()?,
            interaction: codec.encode(&commit.interaction)?,
            exits: changes(&commit.exits)?,
            wakes: changes(&commit.wakes)?,
            preference: commit
                .preference
                .as_ref()
                .map(|record| codec.encode(record))
                .transpose()?,
            engagement: commit
                .engagement
                .as_ref()
                .map(|record| codec.encode(record))
                .transpose()?,
            commit,
        })
    }
}

enum Encoded<'a> {
    Event(EncodedEvent<'a>),
    Instance(EncodedChange<'a>),
}

/// What one batch has taken so far (writes earlier in a batch are not
/// visible to reads yet), and what it tells the customer cache.
#[derive(Default)]
struct BatchSoFar<'a> {
    events: HashMap<&'a str, &'a [InstanceId]>,
    history: HashSet<(InstanceId, u32)>,
    interactions: Vec<(&'a str, u64, &'a Interaction)>,
    /// Customers whose channels or engagement changed: their cached views
    /// are dropped once the batch is applied.
    changed_customers: Vec<&'a str>,
    /// Timers cleared: their claims end once the batch is applied.
    cleared_timers: Vec<(u64, InstanceId)>,
    /// Instances started by customer (journey, customer), for single
    /// re-entry within the batch.
    started_by_customer: HashMap<(&'a str, &'a str), InstanceId>,
    /// What the batch does to the funnel and standing counts.
    counts: CountChanges,
}

impl SledStore {
    /// Add an event and what it causes to `batch`, unless the event was
    /// accepted before.
    fn add_event<'a>(
        &self,
        batch: &mut sled::Batch,
        encoded: &'a EncodedEvent<'a>,
        so_far: &mut BatchSoFar<'a>,
    ) -> Result<Applied> {
        let commit = encoded.commit;
        let event = &commit.event;
        if let Some(started) = so_far.events.get(event.id.as_str()) {
            return Ok(Applied::DuplicateEvent {
                started: started.to_vec(),
            });
        }
        if let Some(earlier) = self.get::<EventRecord>(&keys::event(&event.id))? {
            return Ok(Applied::DuplicateEvent {
                started: earlier.started,
            });
        }
        let mut refused = Vec::new();
        for instance in &commit.started {
            if !commit.exclusive.contains(&instance.id) {
                continue;
            }
            let pair = (instance.journey.as_str(), instance.customer_id.as_str());
            let active = match so_far.started_by_customer.get(&pair) {
                Some(active) => Some(*active),
                None => self
                    .active_of(&instance.journey, &instance.customer_id)?
                    .first()
                    .copied(),
            };
            if let Some(active) = active {
                refused.push(RefusedStart {
                    instance: instance.id,
                    active,
                });
            }
        }
        let is_refused = |id: InstanceId| refused.iter().any(|refused| refused.instance == id);
        so_far.events.insert(&event.id, &event.started);
        batch.insert(keys::customer_event(&event.customer_id, &event.id), &[]);
        if refused.is_empty() {
            batch.insert(keys::event(&event.id), &*encoded.event);
        } else {
            // Rare: the record lists only the instances that started.
            let mut record = event.clone();
            record.started.retain(|id| !is_refused(*id));
            batch.insert(keys::event(&event.id), self.codec.encode(&record)?);
        }
        for (instance, record) in commit.started.iter().zip(&encoded.started) {
            if is_refused(instance.id) {
                continue;
            }
            if instance.indexed_by_customer {
                so_far
                    .started_by_customer
                    .insert((&instance.journey, &instance.customer_id), instance.id);
            }
            self.count_start(&mut so_far.counts, instance)?;
            batch.insert(keys::instance(instance.id), &**record);
            batch.insert(keys::running(instance.id), &[]);
            batch.insert(
                keys::correlation(&instance.journey, &instance.correlation, instance.id),
                &[],
            );
            if instance.indexed_by_customer {
                batch.insert(
                    keys::active(&instance.journey, &instance.customer_id, instance.id),
                    &[],
                );
            }
        }
        let seq = self.db.generate_id()?;
        batch.insert(
            keys::interaction(&event.customer_id, seq),
            &*encoded.interaction,
        );
        so_far
            .interactions
            .push((&event.customer_id, seq, &commit.interaction));
        // An exit or wake-up whose slot is taken (a step or timer came
        // first) is not applied; exits are tried again.
        for exit in &encoded.exits {
            batch.insert(
                keys::pending_exit(exit.change.instance.id),
                event.id.as_bytes(),
            );
        }
        for change in encoded.exits.iter().chain(&encoded.wakes) {
            self.add_change(batch, change, so_far)?;
        }
        if let (Some(preference), Some(record)) = (&commit.preference, &encoded.preference) {
            batch.insert(
                keys::preference(&event.customer_id, &preference.channel),
                &**record,
            );
            so_far.changed_customers.push(&event.customer_id);
        }
        if let Some(record) = &encoded.engagement {
            let seq = self.db.generate_id()?;
            batch.insert(keys::engagement(&event.customer_id, seq), &**record);
            so_far.changed_customers.push(&event.customer_id);
        }
        Ok(match refused.is_empty() {
            true => Applied::Done,
            false => Applied::PartlyStarted { refused },
        })
    }

    /// Add an instance change to `batch`, unless its history slot is taken
    /// (in the store or earlier in the batch).
    fn add_change<'a>(
        &self,
        batch: &mut sled::Batch,
        encoded: &'a EncodedChange<'a>,
        so_far: &mut BatchSoFar<'a>,
    ) -> Result<Applied> {
        let change = encoded.change;
        let instance = &change.instance;
        let seq = change.seq();
        if so_far.history.contains(&(instance.id, seq)) || self.slot_taken(instance.id, seq)? {
            return Ok(Applied::StaleStep);
        }
        so_far.history.insert((instance.id, seq));
        self.count_change(&mut so_far.counts, change)?;
        if let Some(scrub) = &change.scrub
            && let Some(before) = self.get::<Instance>(&keys::instance(instance.id))?
        {
            // First, so the change's own records below win.
            self.add_scrub(batch, &before, scrub)?;
        }
        match &encoded.archive {
            Some(archive) => {
                for key in &archive.replaces {
                    batch.remove(key);
                }
                batch.insert(keys::history_archive(instance.id), &*archive.record);
            }
            None => batch.insert(keys::history(instance.id, seq), &*encoded.entry),
        }
        if let Some(record) = &encoded.record {
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
            if instance.status.is_finished() {
                // What retention walks. An entry left behind when an
                // operator brings a failed instance back is dropped by
                // the purge that finds it.
                batch.insert(
                    keys::finished(&instance.journey, instance.updated_at_ms, instance.id),
                    &[],
                );
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
        for (index, counted) in change.counted.iter().enumerate() {
            batch.insert(
                keys::sent(
                    &instance.customer_id,
                    &counted.channel,
                    counted.at_ms,
                    instance.id,
                    seq,
                    index as u32,
                ),
                &[],
            );
        }
        // Cleared before set: an instance may leave a wait for the same one.
        if let Some(left) = &change.leaves {
            if let Some(due) = left.wake_at_ms {
                batch.remove(keys::timer(due, instance.id));
                so_far.cleared_timers.push((due, instance.id));
            }
            if let Some((kind, correlation)) = &left.event {
                batch.remove(keys::wait(kind, correlation, instance.id));
            }
        }
        if instance.status == InstanceStatus::Waiting {
            if let Some(due) = instance.wake_at_ms {
                batch.insert(keys::timer(due, instance.id), &[]);
            }
            if let Some(wait) = &instance.waiting_for {
                batch.insert(keys::wait(&wait.kind, &wait.correlation, instance.id), &[]);
            }
        }
        for (index, (message, record)) in change.messages.iter().zip(&encoded.messages).enumerate()
        {
            let slot = keys::outbox(instance.id, seq, index as u32);
            batch.insert(keys::outbox_due(message.queued_at_ms, &slot), &[]);
            batch.insert(slot, &**record);
        }
        for (interaction, record) in change.interactions.iter().zip(&encoded.interactions) {
            let seq = self.db.generate_id()?;
            batch.insert(keys::interaction(&instance.customer_id, seq), &**record);
            so_far
                .interactions
                .push((&instance.customer_id, seq, interaction));
        }
        Ok(Applied::Done)
    }
}

impl Journal for SledStore {
    fn next_id(&self) -> Result<u64> {
        // sled never hands out an id twice, also across restarts; 0 is
        // skipped so ids read well.
        Ok(self.db.generate_id()? + 1)
    }

    fn commit(&self, commits: &[Commit]) -> Result<Vec<Applied>> {
        let encoded: Vec<Encoded> = commits
            .iter()
            .map(|commit| match commit {
                Commit::Event(event) => EncodedEvent::new(self, event).map(Encoded::Event),
                Commit::Instance(change) => EncodedChange::new(self, change).map(Encoded::Instance),
            })
            .collect::<Result<_>>()?;
        let mut batch = sled::Batch::default();
        let mut applied = Vec::with_capacity(commits.len());
        let mut so_far = BatchSoFar::default();
        {
            let _applying = self
                .applying
                .write()
                .expect("the commit gate is never poisoned");
            for commit in &encoded {
                applied.push(match commit {
                    Encoded::Event(event) => self.add_event(&mut batch, event, &mut so_far)?,
                    Encoded::Instance(change) => {
                        self.add_change(&mut batch, change, &mut so_far)?
                    }
                });
            }
            self.write_counts(&mut batch, std::mem::take(&mut so_far.counts))?;
            self.db.apply_batch(batch)?;
            // Under the gate, so the cache hears of batches in the order
            // they were applied.
            if !so_far.interactions.is_empty() || !so_far.changed_customers.is_empty() {
                let mut cache = self.customer_cache();
                for (customer, seq, interaction) in so_far.interactions {
                    cache.append(customer, seq, interaction);
                }
                for customer in so_far.changed_customers {
                    cache.forget(customer);
                }
            }
        }
        if !so_far.cleared_timers.is_empty() {
            let mut leases = self.leases();
            for timer in &so_far.cleared_timers {
                leases.timers.remove(timer);
            }
        }
        match self.db.flush() {
            Ok(_) => Ok(applied),
            Err(error) => Err(Error::NotDurable {
                applied,
                source: Box::new(error),
            }),
        }
    }

    fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        self.get(&keys::event(id))
    }

    fn instance(&self, id: InstanceId) -> Result<Option<Instance>> {
        self.read_instance(&keys::instance(id))
    }

    fn search_instances(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        let start = match filter.after {
            Some(after) => keys::instance(InstanceId(after.0.saturating_add(1))),
            None => keys::instances(),
        };
        let (mut found, mut last) = (Vec::new(), None);
        for (looked_at, key) in self.db.range(start..).keys().enumerate() {
            let key = key?;
            let Some(id) = keys::instance_id_of(&key) else {
                break;
            };
            if found.len() >= filter.limit || (filter.budget > 0 && looked_at >= filter.budget) {
                return Ok(InstancePage {
                    found,
                    more_after: last,
                });
            }
            last = Some(id);
            let Some(instance) = self.read_instance(&key)? else {
                continue;
            };
            if filter.matches(&instance) {
                found.push(instance);
            }
        }
        Ok(InstancePage {
            found,
            more_after: None,
        })
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
        for (_, record) in self.history_records(id)? {
            history.extend(record.into_entries());
        }
        Ok(history)
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

    fn finished_before(
        &self,
        journey: &str,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(InstanceId, u64)>> {
        self.finished_index(journey, before_ms, limit)
    }

    fn purge(&self, purges: &[Purge]) -> Result<usize> {
        self.purge_finished(purges)
    }

    fn purged_tallies(&self, journey: &str) -> Result<Vec<DayTally>> {
        self.day_tallies(&keys::tallies_of(journey))
    }

    fn live_tallies(&self, journey: &str) -> Result<Vec<DayTally>> {
        self.day_tallies(&keys::live_tallies_of(journey))
    }

    fn standing(&self, journey: Option<&str>) -> Result<Vec<StandingCounts>> {
        self.standing_counts(journey)
    }

    fn purge_old_records(&self, before_ms: u64, limit: usize) -> Result<usize> {
        self.sweep_aged(before_ms, limit)
    }

    fn customer_events(&self, customer: &str) -> Result<Vec<EventRecord>> {
        self.events_of_customer(customer)
    }

    fn forget_customer(&self, customer: &str) -> Result<ForgottenRecords> {
        self.forget(customer)
    }
}

impl Timers for SledStore {
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

    fn claim_due_timers(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<(u64, InstanceId)>> {
        let end = keys::timer(now_ms, InstanceId(u64::MAX));
        let mut claimed = Vec::new();
        let mut leases = self.leases();
        for key in self.db.range(keys::timers()..=end).keys() {
            if claimed.len() >= limit {
                break;
            }
            let Some(timer) = keys::timer_of(&key?) else {
                continue;
            };
            if super::claim(&mut leases.timers, timer, lease) {
                claimed.push(timer);
            }
        }
        Ok(claimed)
    }

    fn release_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()> {
        self.leases().timers.remove(&(due_ms, instance));
        Ok(())
    }

    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()> {
        self.db.remove(keys::timer(due_ms, instance))?;
        self.db.flush()?;
        self.leases().timers.remove(&(due_ms, instance));
        Ok(())
    }
}
