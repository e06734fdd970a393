//! Durable storage behind one narrow trait.
//!
//! [`Store`] is everything the runtime asks of a storage backend: plugins and
//! journey definitions (versioned), customers, and the journal of events,
//! instances, history and outbox. The write path that matters is
//! [`Store::commit`]: it applies many [`Write`]s as one atomic unit and makes
//! them durable before returning, so the executor can group-commit many
//! concurrent steps with one flush. Nothing outside this module knows how a
//! backend lays out its keys; `sled.rs` is the embedded default and a later
//! PostgreSQL backend implements the same trait.

pub mod keys;
pub mod sled;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An instance id: allocated by the store, unique for the store's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u64);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "i-{}", self.0)
    }
}

impl std::str::FromStr for InstanceId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.strip_prefix("i-")
            .unwrap_or(text)
            .parse()
            .map(InstanceId)
    }
}

/// A plugin version: a named, numbered pointer to content-addressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The plugin name journeys refer to.
    pub name: String,
    /// 1, 2, 3 ... per name, in push order.
    pub version: u32,
    /// Lower-case hex sha256 of the component bytes.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was pushed, ms since the Unix epoch.
    pub pushed_at_ms: u64,
}

/// A deployed journey definition version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyRecord {
    /// The journey name.
    pub name: String,
    /// 1, 2, 3 ... per name, in deploy order.
    pub version: u32,
    /// The TOML source as deployed.
    pub source: String,
    /// When it was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

/// An accepted event, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// The sender's id; the store keeps one record per id.
    pub id: String,
    /// The event type.
    pub kind: String,
    /// The customer it is about.
    pub customer_id: String,
    /// The event data (a JSON value), kept as the sender's text.
    pub data: Box<RawValue>,
    /// When the runtime accepted it, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// The instances it started.
    pub started: Vec<InstanceId>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// It has a step to run.
    Running,
    /// It reached a terminal state or a step completed it.
    Completed,
    /// A step failed it.
    Failed,
}

/// One customer's run through one journey version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// The journey name.
    pub journey: String,
    /// The journey version it is pinned to.
    pub journey_version: u32,
    /// The customer it is about.
    pub customer_id: String,
    /// Its value of the journey's correlation key.
    pub correlation: String,
    /// The event that started it.
    pub trigger_event_id: String,
    /// Running, completed or failed.
    pub status: InstanceStatus,
    /// The next step to run while running; `None` once finished.
    pub current_step: Option<String>,
    /// The terminal state it ended in, if the journey names one.
    pub terminal: Option<String>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// The state object that steps read and replace (JSON text).
    pub state: Box<RawValue>,
    /// The number of history entries: the next entry's sequence number.
    pub history_len: u32,
    /// When it started, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl Instance {
    /// The idempotency key of the step execution that writes history entry
    /// `history_len`: the same for every attempt of that step.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.id, self.history_len)
    }
}

/// One plugin log line kept with a step's history entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// How a step ended, as recorded in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutcome {
    /// It followed a transition to a step or a terminal state.
    Goto {
        /// The transition name.
        transition: String,
        /// The step or terminal state it leads to.
        target: String,
    },
    /// It completed the instance.
    Complete,
    /// It failed the instance (returned `fail`, an error, or trapped).
    Fail {
        /// Why.
        reason: String,
    },
}

/// One entry of an instance's append-only history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// The event that started the instance was accepted.
    EventReceived {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The event id.
        event_id: String,
        /// The event type.
        kind: String,
    },
    /// A step ran and its effects were committed.
    StepRan(Box<StepRecord>),
}

/// Everything recorded about one committed step execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// When the step started, ms since the Unix epoch.
    pub at_ms: u64,
    /// The step name.
    pub step: String,
    /// The plugin name.
    pub plugin: String,
    /// The plugin version that ran.
    pub plugin_version: u32,
    /// The digest of the component that ran.
    pub digest: String,
    /// Which attempt this was (1 unless re-run after a restart).
    pub attempt: u32,
    /// The idempotency key the step saw.
    pub idempotency_key: String,
    /// The instance state the step was given. A parsed value, not raw
    /// text: history entries are internally tagged, which serde cannot
    /// combine with raw JSON.
    pub input_state: serde_json::Value,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Wall time of instantiate + run, microseconds.
    pub duration_us: u64,
    /// Ids of the outbox messages it queued.
    pub messages: Vec<String>,
    /// Plugin log lines (bounded).
    pub logs: Vec<LogLine>,
}

impl HistoryEntry {
    /// When the entry was recorded.
    pub fn at_ms(&self) -> u64 {
        match self {
            HistoryEntry::EventReceived { at_ms, .. } => *at_ms,
            HistoryEntry::StepRan(step) => step.at_ms,
        }
    }
}

/// A message waiting in the outbox for delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Idempotent id: the step's idempotency key plus the send's index.
    pub id: String,
    /// The instance whose step queued it.
    pub instance_id: InstanceId,
    /// The step that queued it.
    pub step: String,
    /// The customer it is for.
    pub customer_id: String,
    /// The channel.
    pub channel: String,
    /// The address (resolved from the profile when the plugin left it empty).
    pub to: String,
    /// Subject line, may be empty.
    pub subject: String,
    /// Message text.
    pub body: String,
    /// Provider metadata (a JSON object).
    pub metadata: Box<RawValue>,
    /// When it was queued, ms since the Unix epoch.
    pub queued_at_ms: u64,
}

/// One interaction in a customer's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interaction {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The channel.
    pub channel: String,
    /// What kind of interaction.
    pub kind: String,
    /// Free text.
    pub text: String,
    /// Structured details as JSON text, kept as text: plugins receive it
    /// as text, so it is never re-serialized on the step path.
    pub details: Box<RawValue>,
}

/// Profile plus interaction history of one customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerView {
    /// The customer id.
    pub id: String,
    /// The profile object as JSON text (`{}` when none was upserted).
    pub profile: Box<RawValue>,
    /// The most recent interactions, oldest first.
    pub interactions: Vec<Interaction>,
}

/// A step's effects, committed atomically.
#[derive(Debug, Clone)]
pub struct StepCommit {
    /// The instance after the step (state, position, status, `history_len`
    /// already advanced past `entry`).
    pub instance: Instance,
    /// The history entry, written at `instance.history_len - 1`.
    pub entry: HistoryEntry,
    /// Messages for the outbox.
    pub messages: Vec<OutboxMessage>,
    /// Interactions to add to the customer's history.
    pub notes: Vec<Interaction>,
}

/// An accepted event and the instances it starts (each with its first
/// history entry written at sequence 0), committed atomically.
#[derive(Debug, Clone)]
pub struct IngestCommit {
    /// The event.
    pub event: EventRecord,
    /// New instances.
    pub instances: Vec<Instance>,
    /// The interaction this event adds to the customer's history.
    pub interaction: Interaction,
}

/// One unit of the journal write path.
#[derive(Debug, Clone)]
pub enum Write {
    /// An accepted event.
    Ingest(Box<IngestCommit>),
    /// A step's effects.
    Step(Box<StepCommit>),
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

    /// Store a journey definition as the next version of `name`.
    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord>;
    /// Every journey version, by name then version.
    fn journeys(&self) -> Result<Vec<JourneyRecord>>;

    /// Create or replace a customer's profile.
    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()>;
    /// The customer's profile and up to `limit` most recent interactions.
    /// A customer nobody upserted has an empty profile.
    fn customer_view(&self, id: &str, limit: usize) -> Result<CustomerView>;

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
    /// An instance's history, in order.
    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>>;
    /// Outbox messages in queue order, optionally only one instance's.
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>>;
    /// Instances of `journey` with this correlation value.
    fn correlated(&self, journey: &str, correlation: &str) -> Result<Vec<InstanceId>>;
}

/// The behaviour every [`Store`] backend must have. Each backend's tests
/// call [`suite::run`] on a fresh store.
#[cfg(test)]
pub(crate) mod suite {
    use serde_json::json;
    use serde_json::value::RawValue;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("test JSON")
    }

    fn instance(id: u64, customer: &str) -> Instance {
        Instance {
            id: InstanceId(id),
            journey: "enquiry".into(),
            journey_version: 1,
            customer_id: customer.into(),
            correlation: format!("q-{id}"),
            trigger_event_id: format!("evt-{id}"),
            status: InstanceStatus::Running,
            current_step: Some("acknowledge".into()),
            terminal: None,
            failure: None,
            state: raw("{}"),
            history_len: 1,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn interaction(kind: &str, text: &str) -> Interaction {
        Interaction {
            at_ms: 1,
            channel: "email".into(),
            kind: kind.into(),
            text: text.into(),
            details: raw(r#"{"k":1}"#),
        }
    }

    fn ingest(id: u64, customer: &str) -> Write {
        let instance = instance(id, customer);
        Write::Ingest(Box::new(IngestCommit {
            event: EventRecord {
                id: instance.trigger_event_id.clone(),
                kind: "enquiry.received".into(),
                customer_id: customer.into(),
                data: raw(r#"{"enquiry_id":"q"}"#),
                received_at_ms: 1,
                started: vec![instance.id],
            },
            instances: vec![instance],
            interaction: interaction("enquiry.received", "hello"),
        }))
    }

    fn step(id: u64, customer: &str, notes: Vec<Interaction>) -> Write {
        let mut next = instance(id, customer);
        next.history_len = 2;
        next.status = InstanceStatus::Completed;
        next.current_step = None;
        next.state = raw(r#"{"done":true}"#);
        let entry = HistoryEntry::StepRan(Box::new(StepRecord {
            at_ms: 2,
            step: "acknowledge".into(),
            plugin: "acknowledge".into(),
            plugin_version: 1,
            digest: "d".into(),
            attempt: 1,
            idempotency_key: next.idempotency_key(),
            input_state: json!({}),
            outcome: StepOutcome::Complete,
            duration_us: 5,
            messages: vec![format!("i-{id}/1/m0")],
            logs: vec![],
        }));
        let message = OutboxMessage {
            id: format!("i-{id}/1/m0"),
            instance_id: InstanceId(id),
            step: "acknowledge".into(),
            customer_id: customer.into(),
            channel: "email".into(),
            to: String::new(),
            subject: String::new(),
            body: "hi".into(),
            metadata: raw("{}"),
            queued_at_ms: 2,
        };
        Write::Step(Box::new(StepCommit {
            instance: next,
            entry,
            messages: vec![message],
            notes,
        }))
    }

    /// Run every check on `store`, which must be empty.
    pub(crate) fn run(store: &dyn Store) {
        an_event_is_accepted_once(store);
        a_step_commits_once_with_its_effects(store);
        customer_views_follow_writes(store);
        plugin_and_journey_versions_count_up(store);
    }

    fn an_event_is_accepted_once(store: &dyn Store) {
        let applied = store
            .commit(&[ingest(1, "c-1"), ingest(1, "c-1")])
            .expect("commit");
        assert_eq!(
            applied,
            [
                Applied::Done,
                Applied::DuplicateEvent {
                    started: vec![InstanceId(1)]
                }
            ],
            "a duplicate in the same batch is skipped"
        );
        let again = store.commit(&[ingest(1, "c-1")]).expect("commit");
        assert_eq!(
            again,
            [Applied::DuplicateEvent {
                started: vec![InstanceId(1)]
            }]
        );
        assert_eq!(store.history(InstanceId(1)).expect("history").len(), 1);
        let running: Vec<InstanceId> = store
            .running_instances()
            .expect("running")
            .iter()
            .map(|instance| instance.id)
            .collect();
        assert_eq!(running, [InstanceId(1)]);
        assert_eq!(
            store.correlated("enquiry", "q-1").expect("index"),
            [InstanceId(1)]
        );
    }

    fn a_step_commits_once_with_its_effects(store: &dyn Store) {
        let applied = store.commit(&[step(1, "c-1", vec![])]).expect("commit");
        assert_eq!(applied, [Applied::Done]);
        let stale = store.commit(&[step(1, "c-1", vec![])]).expect("commit");
        assert_eq!(stale, [Applied::StaleStep], "the history slot is taken");
        let instance = store
            .instance(InstanceId(1))
            .expect("read")
            .expect("exists");
        assert_eq!(instance.status, InstanceStatus::Completed);
        assert_eq!(instance.state.get(), r#"{"done":true}"#);
        assert_eq!(store.history(InstanceId(1)).expect("history").len(), 2);
        assert_eq!(
            store.outbox(Some(InstanceId(1)), 10).expect("outbox").len(),
            1
        );
        assert!(
            store.running_instances().expect("running").is_empty(),
            "a finished instance is no longer running"
        );
    }

    fn customer_views_follow_writes(store: &dyn Store) {
        store
            .put_customer("c-2", &json!({"name": "Ada"}))
            .expect("put");
        // Read once so a caching backend holds the view, then write more.
        let first = store.customer_view("c-2", 10).expect("view");
        assert!(first.interactions.is_empty());
        store.commit(&[ingest(2, "c-2")]).expect("commit");
        store
            .commit(&[step(
                2,
                "c-2",
                vec![interaction("enquiry.resolved", "fixed")],
            )])
            .expect("commit");
        store
            .put_customer("c-2", &json!({"name": "Ada L."}))
            .expect("put");
        let view = store.customer_view("c-2", 10).expect("view");
        assert_eq!(view.profile.get(), r#"{"name":"Ada L."}"#);
        let kinds: Vec<&str> = view.interactions.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["enquiry.received", "enquiry.resolved"],
            "oldest first"
        );
        let last = store.customer_view("c-2", 1).expect("view");
        assert_eq!(last.interactions.len(), 1);
        assert_eq!(
            last.interactions[0].kind, "enquiry.resolved",
            "the most recent"
        );
        let none = store.customer_view("c-2", 0).expect("view");
        assert!(none.interactions.is_empty());
        let unknown = store.customer_view("nobody", 10).expect("view");
        assert_eq!(unknown.profile.get(), "{}");
    }

    fn plugin_and_journey_versions_count_up(store: &dyn Store) {
        let first = store.put_plugin("ack", "aa", b"one", 1).expect("push");
        let same = store.put_plugin("ack", "aa", b"one", 2).expect("push");
        let second = store.put_plugin("ack", "bb", b"two", 3).expect("push");
        assert_eq!((first.version, same.version, second.version), (1, 1, 2));
        assert_eq!(
            store.plugin_bytes("bb").expect("read").as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(store.plugins().expect("list").len(), 2);
        let v1 = store.put_journey("enquiry", "a", 1).expect("deploy");
        let v2 = store.put_journey("enquiry", "b", 2).expect("deploy");
        assert_eq!((v1.version, v2.version), (1, 2));
    }
}
