//! Durable storage behind one narrow trait.
//!
//! [`Store`] is everything the runtime asks of a storage backend: plugins and
//! journey definitions (versioned), customers, and the journal of events,
//! instances, history and outbox. The write path that matters is
//! [`Store::apply`] + [`Store::sync`]: many [`Write`]s applied as one atomic
//! unit, then made durable with one flush, so the executor can group-commit
//! many concurrent steps. Nothing outside this module knows how a backend
//! lays out its keys; `sled.rs` is the embedded default.
//!
//! Records are JSON documents in every backend. A [`Write`] carries them
//! already encoded (its constructor encodes on the caller's thread), so the
//! one thread that applies batches only moves bytes.
//!
//! An instance is its record plus its history: the record is written when
//! the instance starts and again when it stops running, and each step in
//! between appends only its history entry, from which the instance's
//! position and state follow ([`Instance::advance`]).
//!
//! Files: `model.rs` holds the records and the instance state machine;
//! this file the write path and the trait; `suite.rs` the behaviour every
//! backend must show (its tests run it); `keys.rs` and `sled.rs` the sled
//! backend.

pub mod keys;
mod model;
pub mod sled;

use serde::Serialize;

pub use self::model::*;
pub use self::sled::SledStore;

/// Storage errors. Backend details are kept as sources, never flattened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed (I/O, corruption).
    #[error("storage backend error")]
    Backend(#[from] ::sled::Error),
    /// The backend failed inside a transaction.
    #[error("storage transaction failed")]
    Transaction(#[from] ::sled::transaction::TransactionError),
    /// A stored record could not be decoded.
    #[error("stored record `{key}` is corrupt")]
    Corrupt {
        /// The key, printed readably.
        key: String,
        /// Why it did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded (a bug, not bad input).
    #[error("record could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// A fault a test build injected (see [`crate::faults`]).
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An interaction and its encoded record.
#[derive(Debug, Clone)]
pub struct EncodedInteraction {
    /// The interaction (a caching backend keeps it).
    pub interaction: Interaction,
    /// Its JSON record.
    pub bytes: Vec<u8>,
}

impl EncodedInteraction {
    fn new(interaction: Interaction) -> Result<Self> {
        let bytes = encode(&interaction)?;
        Ok(EncodedInteraction { interaction, bytes })
    }
}

/// A step's effects, committed atomically, encoded by [`StepCommit::new`].
#[derive(Debug, Clone)]
pub struct StepCommit {
    /// The instance after the step (state, position, status, `history_len`
    /// already advanced past the entry).
    pub instance: Instance,
    /// The instance record, present when the step finished the instance:
    /// a running instance's record is not rewritten per step.
    pub instance_record: Option<Vec<u8>>,
    /// The history entry, written at `instance.history_len - 1`.
    pub entry: Vec<u8>,
    /// Outbox message records, in send order.
    pub messages: Vec<Vec<u8>>,
    /// Interactions to add to the customer's history.
    pub notes: Vec<EncodedInteraction>,
    /// A timer to set (the instance waits until then).
    pub set_timer: Option<u64>,
    /// A timer to clear (it fired, or the event came first).
    pub clear_timer: Option<u64>,
    /// An event wait to index: (kind, correlation).
    pub set_wait: Option<(String, String)>,
    /// An event wait to drop: (kind, correlation).
    pub clear_wait: Option<(String, String)>,
    /// Messages counted against a frequency cap: (channel, sent at, index
    /// of the message in the step).
    pub counted: Vec<(String, u64, u32)>,
}

impl StepCommit {
    /// Encode a step's effects. `instance` is the instance after the step.
    pub fn new(
        instance: Instance,
        entry: &HistoryEntry,
        messages: &[OutboxMessage],
        notes: Vec<Interaction>,
    ) -> Result<Self> {
        let instance_record = match instance.status {
            InstanceStatus::Running => None,
            _ => Some(encode(&instance)?),
        };
        let set_timer = match instance.status {
            InstanceStatus::Waiting => instance.wake_at_ms,
            _ => None,
        };
        let set_wait = instance
            .waiting_for
            .as_ref()
            .map(|wait| (wait.kind.clone(), wait.correlation.clone()));
        Ok(StepCommit {
            instance_record,
            entry: encode(entry)?,
            messages: messages.iter().map(encode).collect::<Result<_>>()?,
            notes: notes
                .into_iter()
                .map(EncodedInteraction::new)
                .collect::<Result<_>>()?,
            set_timer,
            clear_timer: None,
            set_wait,
            clear_wait: None,
            counted: Vec::new(),
            instance,
        })
    }

    /// Encode a waiting instance's wake-up: `instance` is running again,
    /// with `entry` in its history; `asleep` is its record while it
    /// waited, whose timer and event wait are cleared.
    pub fn wake(instance: Instance, entry: &HistoryEntry, asleep: &Instance) -> Result<Self> {
        Ok(StepCommit {
            clear_timer: asleep.wake_at_ms,
            clear_wait: asleep
                .waiting_for
                .as_ref()
                .map(|wait| (wait.kind.clone(), wait.correlation.clone())),
            ..StepCommit::migration(instance, entry)?
        })
    }

    /// Encode an instance's move to another journey version: the history
    /// entry and, since its version and position change, its record.
    pub fn migration(instance: Instance, entry: &HistoryEntry) -> Result<Self> {
        Ok(StepCommit {
            instance_record: Some(encode(&instance)?),
            entry: encode(entry)?,
            messages: Vec::new(),
            notes: Vec::new(),
            set_timer: None,
            clear_timer: None,
            set_wait: None,
            clear_wait: None,
            counted: Vec::new(),
            instance,
        })
    }

    /// Encode an exit: `instance` has exited, with `entry` in its history;
    /// `before` is the instance as it was, whose timer and event wait (if
    /// it waited) are cleared. If a step of the instance commits first,
    /// the exit is stale and the caller tries again.
    pub fn exit(instance: Instance, entry: &HistoryEntry, before: &Instance) -> Result<Self> {
        StepCommit::wake(instance, entry, before)
    }

    /// The history slot this step fills.
    pub fn seq(&self) -> u32 {
        self.instance.history_len.saturating_sub(1)
    }
}

/// An instance an event starts, with its encoded record.
#[derive(Debug, Clone)]
pub struct StartedInstance {
    /// Its id.
    pub id: InstanceId,
    /// Its journey.
    pub journey: String,
    /// Its correlation value (indexed).
    pub correlation: String,
    /// The instance record.
    pub record: Vec<u8>,
    /// The customer, when the instance is indexed by customer.
    pub indexed_customer: Option<String>,
}

/// An accepted event and the instances it starts, committed atomically,
/// encoded by [`IngestCommit::new`]. An instance's history begins with the
/// event that started it: that first entry is not stored but derived from
/// the instance and event records.
#[derive(Debug, Clone)]
pub struct IngestCommit {
    /// The event id (one record per id).
    pub event_id: String,
    /// The customer the event is about.
    pub customer_id: String,
    /// The instances it starts, as recorded in the event record.
    pub started: Vec<InstanceId>,
    /// The event record.
    pub event: Vec<u8>,
    /// The new instances.
    pub instances: Vec<StartedInstance>,
    /// The interaction this event adds to the customer's history.
    pub interaction: EncodedInteraction,
    /// Waiting instances this event wakes, committed with it (so an
    /// accepted event is never lost to a waiting instance). A wake whose
    /// history slot is taken (its timer fired first) is skipped.
    pub wakes: Vec<StepCommit>,
    /// Instances this event ends (exit rules), committed with it. Each is
    /// also recorded as a pending exit until it applies: an exit whose
    /// history slot is taken (a step came first) is skipped, and the
    /// caller, or the next start, tries again.
    pub exits: Vec<StepCommit>,
    /// A channel opt-in or opt-out this event records: (channel, record).
    pub preference: Option<(String, Vec<u8>)>,
    /// The engagement this event records.
    pub engagement: Option<Vec<u8>>,
}

impl IngestCommit {
    /// Encode an accepted event, the instances it starts and the
    /// interaction it adds to its customer's history.
    pub fn new(
        event: &EventRecord,
        instances: &[Instance],
        interaction: Interaction,
    ) -> Result<Self> {
        Ok(IngestCommit {
            event_id: event.id.clone(),
            customer_id: event.customer_id.clone(),
            started: event.started.clone(),
            event: encode(event)?,
            instances: instances
                .iter()
                .map(|instance| {
                    Ok(StartedInstance {
                        id: instance.id,
                        journey: instance.journey.clone(),
                        correlation: instance.correlation.clone(),
                        record: encode(instance)?,
                        indexed_customer: instance
                            .indexed_by_customer
                            .then(|| instance.customer_id.clone()),
                    })
                })
                .collect::<Result<_>>()?,
            interaction: EncodedInteraction::new(interaction)?,
            wakes: Vec::new(),
            exits: Vec::new(),
            preference: None,
            engagement: None,
        })
    }
}

/// Encode a record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::Encode)
}

/// One unit of the journal write path.
#[derive(Debug, Clone)]
pub enum Write {
    /// An accepted event.
    Ingest(Box<IngestCommit>),
    /// A step's effects.
    Step(Box<StepCommit>),
}

impl Write {
    /// The instance a step write is about (an ingest may be about many).
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            Write::Ingest(_) => None,
            Write::Step(step) => Some(step.instance.id),
        }
    }
}

/// What happened to one [`Write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Written and durable.
    Done,
    /// An event with this id was accepted before; nothing was written. The
    /// earlier record is returned.
    DuplicateEvent {
        /// The instances the first delivery started.
        started: Vec<InstanceId>,
    },
    /// The step's history slot is taken: the step was committed already
    /// (the caller is a stale attempt). Nothing was written.
    StaleStep,
}

/// Which instances to list.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this journey.
    pub journey: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
    /// Only ids greater than this (for paging).
    pub after: Option<InstanceId>,
    /// At most this many.
    pub limit: usize,
}

/// The storage interface. Implementations are safe to share across threads.
///
/// Durability contract: every method that writes returns only after the
/// write is durable (flushed to stable storage), except [`Store::apply`],
/// which the group committer pairs with [`Store::sync`].
pub trait Store: Send + Sync + 'static {
    /// A fresh id, never handed out before by this store.
    fn next_id(&self) -> Result<u64>;

    /// Store plugin bytes under their digest and give `name` a new version
    /// pointing at them, unless the latest version of `name` already has this
    /// digest (then that record is returned).
    fn put_plugin(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        at_ms: u64,
    ) -> Result<PluginRecord>;
    /// The component bytes with this digest.
    fn plugin_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// Every plugin version, by name then version.
    fn plugins(&self) -> Result<Vec<PluginRecord>>;

    /// Point a plugin tag at `record` and append it to the plugin's tag
    /// changes. Durable on return.
    fn put_tag(&self, record: &TagRecord) -> Result<()>;
    /// Every plugin tag, by plugin then tag.
    fn tags(&self) -> Result<Vec<TagRecord>>;
    /// Every change of the tags of `plugin`, oldest first.
    fn tag_changes(&self, plugin: &str) -> Result<Vec<TagRecord>>;
    /// Save run counts (replacing the saved ones of the same versions).
    fn put_version_stats(&self, stats: &[VersionStats]) -> Result<()>;
    /// The saved run counts of every plugin version.
    fn version_stats(&self) -> Result<Vec<VersionStats>>;

    /// Whether any instance waits for an event of `kind`.
    fn any_waiting_for(&self, kind: &str) -> Result<bool>;
    /// Instances waiting for an event of `kind` with `correlation`.
    fn waiting_for(&self, kind: &str, correlation: &str) -> Result<Vec<InstanceId>>;
    /// Timers due at or before `now_ms`, earliest first, at most `limit`.
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, InstanceId)>>;
    /// When the earliest timer is due.
    fn next_timer(&self) -> Result<Option<u64>>;
    /// Remove a timer whose instance no longer waits for it (it is gone,
    /// or waits for another time). Durable on return.
    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()>;
    /// Keep a runtime setting across starts. Durable on return.
    fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()>;
    /// A runtime setting, if kept.
    fn meta(&self, name: &str) -> Result<Option<serde_json::Value>>;

    /// Store a journey migration (replacing one away from the same version).
    /// Durable on return.
    fn put_migration(&self, record: &MigrationRecord) -> Result<()>;
    /// Every journey migration.
    fn migrations(&self) -> Result<Vec<MigrationRecord>>;

    /// Store a journey definition as the next version of `name`.
    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord>;
    /// Every journey version, by name then version.
    fn journeys(&self) -> Result<Vec<JourneyRecord>>;

    /// Create or replace a customer's profile.
    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()>;
    /// The customer's profile and, of their [`VIEW_INTERACTIONS`] most
    /// recent interactions, the most recent `limit` whose kind is in `kinds`
    /// (any kind when `kinds` is empty). A customer nobody upserted has an
    /// empty profile.
    fn customer_view(&self, id: &str, limit: usize, kinds: &[String]) -> Result<CustomerView>;

    /// Apply `writes` as one atomic unit, returning one [`Applied`] per
    /// write, in order. Duplicate events and stale steps are skipped (not
    /// errors) so one bad write never fails the others. The writes are
    /// visible to reads at once but durable only after [`Store::sync`]
    /// returns; a crash before that loses them whole, never in part.
    fn apply(&self, writes: &[Write]) -> Result<Vec<Applied>>;

    /// Make everything applied so far durable.
    fn sync(&self) -> Result<()>;

    /// [`Store::apply`] then [`Store::sync`]: durable on return.
    fn commit(&self, writes: &[Write]) -> Result<Vec<Applied>> {
        let applied = self.apply(writes)?;
        self.sync()?;
        Ok(applied)
    }

    /// An accepted event.
    fn event(&self, id: &str) -> Result<Option<EventRecord>>;
    /// One instance.
    fn instance(&self, id: InstanceId) -> Result<Option<Instance>>;
    /// Instances matching `filter`, by id.
    fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>>;
    /// Every instance that still has a step to run.
    fn running_instances(&self) -> Result<Vec<Instance>>;
    /// Whether the store is at rest at `now_ms`: no instance has a step to
    /// run and no timer is due. Both are read at one moment, so a commit
    /// that moves an instance from a due timer to running (a wake-up) or
    /// back cannot fall between the reads and make a busy store look idle.
    fn settled(&self, now_ms: u64) -> Result<bool>;
    /// Exits events still owe instances: (instance, event id).
    fn pending_exits(&self) -> Result<Vec<(InstanceId, String)>>;
    /// Forget a pending exit (its instance finished another way).
    fn forget_exit(&self, instance: InstanceId) -> Result<()>;
    /// An instance's history, in order.
    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>>;
    /// Outbox messages in queue order, optionally only one instance's.
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>>;
    /// Instances of `journey` with this correlation value.
    fn correlated(&self, journey: &str, correlation: &str) -> Result<Vec<InstanceId>>;
    /// The unfinished instances of `journey` about `customer`, for the
    /// journeys whose instances are indexed by customer.
    fn active_of(&self, journey: &str, customer: &str) -> Result<Vec<InstanceId>>;
    /// When the messages counted against `customer`'s frequency cap on
    /// `channel` since `since_ms` were sent, oldest first.
    fn sent_since(&self, customer: &str, channel: &str, since_ms: u64) -> Result<Vec<u64>>;
}

#[cfg(test)]
pub(crate) mod suite;
