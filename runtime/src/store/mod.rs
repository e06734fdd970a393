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
    /// A fault a test build injected (see [`crate::faults`]).
    #[error("injected fault: {0}")]
    Injected(&'static str),
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

/// Where a plugin tag points: the version its steps run and, during a
/// rollout, a second version that a share of instances runs instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The plugin.
    pub plugin: String,
    /// The tag name (`stable`, `canary`, ...).
    pub tag: String,
    /// The version steps run (outside a rollout's share).
    pub version: u32,
    /// A rollout in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// When the tag last changed, ms since the Unix epoch.
    pub changed_at_ms: u64,
    /// Why it last changed, for people.
    pub reason: String,
}

/// A rollout: a share of instances runs another version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The version being rolled out.
    pub version: u32,
    /// The share of instances, 0 to 100, that runs it; which instances is
    /// decided by the instance id, so an instance keeps its side.
    pub percent: u8,
    /// When to roll back on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRule>,
}

/// Roll a canary back automatically once it has run `min_runs` times and
/// more than `max_error_rate` of its runs failed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollbackRule {
    /// Failed runs over runs above which the canary is rolled back, 0 to 1.
    pub max_error_rate: f64,
    /// Runs needed before the rule is applied.
    pub min_runs: u64,
}

/// How often one plugin version ran, failed, and how long it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// The plugin.
    pub plugin: String,
    /// The version.
    pub version: u32,
    /// Steps it ran.
    pub runs: u64,
    /// Of those, steps that failed (the plugin failed, trapped or timed out).
    pub failures: u64,
    /// Run time (instantiate + call) by bucket: bucket `i` counts runs of
    /// about `2^(i/4)` µs; see [`VersionStats::percentile_us`].
    pub latency_buckets: Vec<u64>,
}

/// Latency buckets per doubling of run time.
const BUCKETS_PER_DOUBLING: f64 = 4.0;
/// Buckets kept: up to about 2^24 µs (17 s); longer runs count in the last.
const LATENCY_BUCKETS: usize = 96;

impl VersionStats {
    /// Count one run.
    pub fn record(&mut self, failed: bool, duration_us: u64) {
        self.runs += 1;
        self.failures += u64::from(failed);
        let bucket = ((duration_us.max(1) as f64).log2() * BUCKETS_PER_DOUBLING) as usize;
        if self.latency_buckets.len() < LATENCY_BUCKETS {
            self.latency_buckets.resize(LATENCY_BUCKETS, 0);
        }
        self.latency_buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
    }

    /// The run time below which `percent` of runs finished, in µs (the top
    /// of its bucket: within 19%), or `None` before the first run.
    pub fn percentile_us(&self, percent: f64) -> Option<u64> {
        let wanted = (self.runs as f64 * percent / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.latency_buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(
                    2f64.powf((bucket + 1) as f64 / BUCKETS_PER_DOUBLING)
                        .round() as u64,
                );
            }
        }
        None
    }

    /// Failed runs over runs (0 before the first run).
    pub fn failure_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.failures as f64 / self.runs as f64
        }
    }
}

/// Moves running instances of one journey version to another at their next
/// step start, each to the step the mapping names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// The journey.
    pub journey: String,
    /// The version instances leave.
    pub from_version: u32,
    /// The version they move to.
    pub to_version: u32,
    /// For every step of `from_version`, the step of `to_version` an
    /// instance waiting to run it continues at.
    pub steps: std::collections::BTreeMap<String, String>,
    /// When it was made, ms since the Unix epoch.
    pub created_at_ms: u64,
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
    /// It sleeps until a timer wakes it to run its next step.
    Waiting,
    /// It reached a terminal state or a step completed it.
    Completed,
    /// A step failed it.
    Failed,
    /// One of its journey's exit events ended it wherever it was.
    Exited,
    /// An operator cancelled it.
    Cancelled,
}

impl InstanceStatus {
    /// Whether it has finished (completed, failed, exited or cancelled).
    /// A failed instance can still be retried or skipped by an operator.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            InstanceStatus::Completed
                | InstanceStatus::Failed
                | InstanceStatus::Exited
                | InstanceStatus::Cancelled
        )
    }

    /// The status as the API spells it.
    pub fn label(self) -> &'static str {
        match self {
            InstanceStatus::Running => "running",
            InstanceStatus::Waiting => "waiting",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Exited => "exited",
            InstanceStatus::Cancelled => "cancelled",
        }
    }
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
    /// While waiting: when its timer fires, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    /// While waiting for an event: which, and where each ending leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<EventWait>,
    /// The event that ended its last wait, which its steps now see (the
    /// trigger event until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// Whether the store indexes it by journey and customer until it
    /// finishes: its journey allows one active instance per customer, or
    /// has exit events about the customer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indexed_by_customer: bool,
    /// Attempts of its current step so far, once there is more than the
    /// first: after a failed attempt waiting to be retried, after a
    /// restart, or after an operator's retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<StepAttempts>,
}

/// The attempts of one step execution: every attempt gets the same
/// idempotency key, and the attempt number counts up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepAttempts {
    /// Attempts made so far: failed ones, and ones a restart interrupted.
    pub made: u32,
    /// Of those, the ones whose plugin failed (what the retry policy
    /// counts).
    pub failed: u32,
    /// The idempotency key of every attempt: the first attempt's.
    pub idempotency_key: String,
    /// The plugin to run instead of the step's (`name`, `name@version` or
    /// `name:tag`): an operator's retry onto another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// What a waiting instance waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventWait {
    /// The event type.
    pub kind: String,
    /// What a matching event carries: `customer=<id>` or `<key>=<value>`.
    pub correlation: String,
    /// The step it continues at when the event arrives.
    pub on_event: String,
    /// The step it continues at when the timeout passes first.
    pub on_timeout: String,
}

impl Instance {
    /// Follow a split's variant to `target`, a step or (when `is_step` is
    /// false) a terminal state.
    pub fn follow_split(&mut self, target: &str, is_step: bool, now: u64) {
        self.history_len += 1;
        self.updated_at_ms = now;
        self.attempts = None;
        if is_step {
            self.current_step = Some(target.to_owned());
        } else {
            self.current_step = None;
            self.status = InstanceStatus::Completed;
            self.terminal = Some(target.to_owned());
        }
    }

    /// The event its steps see: the one that ended its last wait, or the
    /// one that started it.
    pub fn current_event_id(&self) -> &str {
        self.last_event_id
            .as_deref()
            .unwrap_or(&self.trigger_event_id)
    }
}

impl Instance {
    /// The idempotency key of its current step execution: the same for
    /// every attempt of that step (the history slot of the first one).
    pub fn idempotency_key(&self) -> String {
        match &self.attempts {
            Some(attempts) => attempts.idempotency_key.clone(),
            None => format!("{}/{}", self.id, self.history_len),
        }
    }

    /// The number of the next attempt of its current step (1 for a first).
    pub fn next_attempt(&self) -> u32 {
        self.attempts
            .as_ref()
            .map_or(1, |attempts| attempts.made + 1)
    }

    /// The attempts of its current step, begun if there were none.
    fn attempts_mut(&mut self) -> &mut StepAttempts {
        let key = self.idempotency_key();
        self.attempts.get_or_insert(StepAttempts {
            made: 0,
            failed: 0,
            idempotency_key: key,
            plugin: None,
        })
    }

    /// A restart interrupted attempt `attempt` of its current step: the
    /// next one counts on (history entry [`HistoryEntry::Restarted`]).
    pub fn restarted(&mut self, attempt: u32, at_ms: u64) {
        let attempts = self.attempts_mut();
        attempts.made = attempts.made.max(attempt);
        self.history_len += 1;
        self.updated_at_ms = at_ms;
    }

    /// Attempt `step.attempt` failed and the step runs again at
    /// `retry_at_ms` (history entry [`HistoryEntry::StepFailed`]): the
    /// instance waits on a durable timer, still at the same step.
    pub fn retry_later(&mut self, step: &StepRecord, retry_at_ms: u64) {
        let attempts = self.attempts_mut();
        attempts.made = step.attempt;
        attempts.failed += 1;
        self.history_len += 1;
        self.updated_at_ms = step.at_ms + step.duration_us / 1000;
        self.status = InstanceStatus::Waiting;
        self.wake_at_ms = Some(retry_at_ms);
    }

    /// Move a running instance past one step entry: the next history slot
    /// and where the step's outcome leads (its state changes are the
    /// caller's). A `goto` target for which `is_step` is false is a
    /// terminal state, which completes the instance.
    pub fn advance(&mut self, step: &StepRecord, is_step: impl Fn(&str) -> bool) {
        self.history_len += 1;
        self.updated_at_ms = step.at_ms + step.duration_us / 1000;
        self.attempts = None;
        match &step.outcome {
            StepOutcome::Goto { target, .. } if is_step(target) => {
                self.current_step = Some(target.clone());
            }
            StepOutcome::Goto { target, .. } => {
                self.current_step = None;
                self.status = InstanceStatus::Completed;
                self.terminal = Some(target.clone());
            }
            StepOutcome::Sleep {
                until_ms, target, ..
            } => {
                self.current_step = Some(target.clone());
                self.status = InstanceStatus::Waiting;
                self.wake_at_ms = Some(*until_ms);
            }
            StepOutcome::WaitForEvent {
                event,
                correlation,
                until_ms,
                event_target,
                timeout_target,
                ..
            } => {
                self.current_step = None;
                self.status = InstanceStatus::Waiting;
                self.wake_at_ms = Some(*until_ms);
                self.waiting_for = Some(EventWait {
                    kind: event.clone(),
                    correlation: correlation.clone(),
                    on_event: event_target.clone(),
                    on_timeout: timeout_target.clone(),
                });
            }
            StepOutcome::Complete => {
                self.current_step = None;
                self.status = InstanceStatus::Completed;
            }
            StepOutcome::Fail { reason } => {
                self.current_step = None;
                self.status = InstanceStatus::Failed;
                self.failure = Some(match step.attempt {
                    1 => format!("step `{}`: {reason}", step.step),
                    attempt => format!("step `{}`, attempt {attempt}: {reason}", step.step),
                });
            }
        }
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
    /// It put the instance to sleep until a time, then to follow a
    /// transition.
    Sleep {
        /// When it wakes, ms since the Unix epoch.
        until_ms: u64,
        /// The transition it follows then.
        transition: String,
        /// The step that transition leads to.
        target: String,
        /// The time the plugin asked for, when a sending window moved the
        /// wake-up out of quiet hours.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_ms: Option<u64>,
        /// The sending window the wake-up was kept in, e.g.
        /// `09:00-20:00 Europe/Amsterdam`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<String>,
    },
    /// It made the instance wait for an event, with a timeout.
    WaitForEvent {
        /// The event type.
        event: String,
        /// What a matching event carries: `customer=<id>` or `<key>=<value>`.
        correlation: String,
        /// When the wait times out, ms since the Unix epoch.
        until_ms: u64,
        /// The transition followed when the event arrives ...
        on_event: String,
        /// ... and the step it leads to.
        event_target: String,
        /// The transition followed on timeout ...
        on_timeout: String,
        /// ... and the step it leads to.
        timeout_target: String,
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
    /// An attempt of a step failed and the step runs again at its
    /// `retry_at_ms` (its retry policy). Nothing of the attempt but this
    /// record was committed.
    StepFailed(Box<StepRecord>),
    /// The runtime restarted while the instance had a step to run: the
    /// attempt in progress was interrupted and the step runs again.
    Restarted {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The step.
        step: String,
        /// The attempt the restart interrupted.
        attempt: u32,
    },
    /// An operator retried the failed instance at the step it failed at.
    Retried {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The step it runs again.
        step: String,
        /// The plugin it runs instead of the step's, if the operator named
        /// one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
        /// Why, as the operator gave it.
        reason: String,
    },
    /// An operator moved the instance on to another step.
    Skipped {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The step it was at, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_step: Option<String>,
        /// The step (or terminal state) it continues at.
        to_step: String,
        /// Why, as the operator gave it.
        reason: String,
    },
    /// An operator cancelled the instance.
    Cancelled {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The step it was at, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// Why, as the operator gave it.
        reason: String,
    },
    /// A split step sent the instance down one variant.
    Split {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The split step.
        step: String,
        /// The variant it was assigned.
        variant: String,
        /// The step or terminal state that variant leads to.
        target: String,
    },
    /// The event an instance waited for arrived: it runs its next step
    /// with that event.
    EventArrived {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The event id.
        event_id: String,
        /// The event type.
        kind: String,
    },
    /// The instance's timer fired (a sleep ended or a wait timed out): it
    /// runs its next step.
    Woke {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// When the timer was due.
        due_ms: u64,
    },
    /// An exit event of its journey ended the instance wherever it was.
    Exited {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The event id.
        event_id: String,
        /// The event type (the exit rule's event).
        kind: String,
        /// The step it was at or waiting to continue at, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
    },
    /// The instance moved to another version of its journey (an operator's
    /// migration), before its next step started.
    Migrated {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
        /// The version it left.
        from_version: u32,
        /// The version it moved to.
        to_version: u32,
        /// The step it was about to run.
        from_step: String,
        /// The step it continues at.
        to_step: String,
    },
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
    /// Which attempt this was: 1, or more after failed attempts, host
    /// faults or restarts.
    pub attempt: u32,
    /// The idempotency key the step saw.
    pub idempotency_key: String,
    /// How the step changed the instance state (top-level keys).
    /// Replaying the changes of the entries before a step gives the state
    /// that step was given, so with the trigger event, the journey
    /// version's step config and the attempt and idempotency key above,
    /// the entry records the step's whole input without copying the state
    /// into every entry.
    #[serde(default, skip_serializing_if = "StateChanges::is_empty")]
    pub state: StateChanges,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Wall time of instantiate + run, microseconds.
    pub duration_us: u64,
    /// Ids of the outbox messages it queued.
    pub messages: Vec<String>,
    /// Messages the host refused because of a frequency cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<CappedMessage>,
    /// Plugin log lines (bounded).
    pub logs: Vec<LogLine>,
    /// On a failed attempt that is retried: when the next attempt runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
}

/// A message a step asked to send that a frequency cap refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CappedMessage {
    /// The channel.
    pub channel: String,
    /// The subject (may be empty).
    pub subject: String,
    /// The cap: messages allowed per period.
    pub limit: u32,
    /// The cap's period, ms.
    pub period_ms: u64,
    /// When the next message on the channel is allowed, ms since the Unix epoch.
    pub next_allowed_ms: u64,
}

/// The top-level keys of the instance state a step set or removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateChanges {
    /// Keys the step set, with their new values.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub set: serde_json::Map<String, serde_json::Value>,
    /// Keys the step removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl StateChanges {
    /// What turns state `before` into state `after`.
    pub fn between(
        before: &serde_json::Map<String, serde_json::Value>,
        after: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let removed = before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .cloned()
            .collect();
        let set = after
            .into_iter()
            .filter(|(key, value)| before.get(key) != Some(value))
            .collect();
        StateChanges { set, removed }
    }

    /// Whether the step left the state as it was.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    /// Apply the changes to `state`.
    pub fn apply_to(&self, state: &mut serde_json::Map<String, serde_json::Value>) {
        for key in &self.removed {
            state.remove(key);
        }
        for (key, value) in &self.set {
            state.insert(key.clone(), value.clone());
        }
    }
}

impl HistoryEntry {
    /// When the entry was recorded.
    pub fn at_ms(&self) -> u64 {
        match self {
            HistoryEntry::EventReceived { at_ms, .. }
            | HistoryEntry::Migrated { at_ms, .. }
            | HistoryEntry::Woke { at_ms, .. }
            | HistoryEntry::EventArrived { at_ms, .. }
            | HistoryEntry::Exited { at_ms, .. }
            | HistoryEntry::Split { at_ms, .. }
            | HistoryEntry::Restarted { at_ms, .. }
            | HistoryEntry::Retried { at_ms, .. }
            | HistoryEntry::Skipped { at_ms, .. }
            | HistoryEntry::Cancelled { at_ms, .. } => *at_ms,
            HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => step.at_ms,
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

/// How many of a customer's most recent interactions their view covers.
pub const VIEW_INTERACTIONS: usize = 100;

/// How many of a customer's most recent engagements their view covers.
pub const VIEW_ENGAGEMENT: usize = 50;

/// A customer's opt-in or opt-out of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPreference {
    /// The channel.
    pub channel: String,
    /// Whether they opted in.
    pub opted_in: bool,
    /// When they chose, ms since the Unix epoch.
    pub changed_at_ms: u64,
}

/// One engagement of a customer (opened, clicked, registered ...), from
/// an event a journey declares as engagement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engagement {
    /// When the event was accepted, ms since the Unix epoch.
    pub at_ms: u64,
    /// What the customer did.
    pub action: String,
    /// The channel it happened on (may be empty).
    pub channel: String,
    /// The event type.
    pub event_kind: String,
    /// The event data.
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
    /// Channel opt-ins, by channel name.
    #[serde(default)]
    pub channels: Vec<ChannelPreference>,
    /// The most recent engagement, oldest first.
    #[serde(default)]
    pub engagement: Vec<Engagement>,
}

impl CustomerView {
    /// Whether anything is known about the customer: a profile other
    /// than `{}`, an interaction, a channel choice or an engagement.
    pub fn is_known(&self) -> bool {
        self.profile.get() != "{}"
            || !self.interactions.is_empty()
            || !self.channels.is_empty()
            || !self.engagement.is_empty()
    }
}

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
            wake_at_ms: None,
            waiting_for: None,
            last_event_id: None,
            indexed_by_customer: false,
            attempts: None,
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
        let event = EventRecord {
            id: instance.trigger_event_id.clone(),
            kind: "enquiry.received".into(),
            customer_id: customer.into(),
            data: raw(r#"{"enquiry_id":"q"}"#),
            received_at_ms: 1,
            started: vec![instance.id],
        };
        Write::Ingest(Box::new(
            IngestCommit::new(
                &event,
                &[instance],
                interaction("enquiry.received", "hello"),
            )
            .expect("encode"),
        ))
    }

    /// The history entry of an `acknowledge` step.
    fn acknowledged(
        idempotency_key: String,
        state: StateChanges,
        outcome: StepOutcome,
        messages: Vec<String>,
    ) -> HistoryEntry {
        HistoryEntry::StepRan(Box::new(StepRecord {
            at_ms: 2,
            step: "acknowledge".into(),
            plugin: "acknowledge".into(),
            plugin_version: 1,
            digest: "d".into(),
            attempt: 1,
            idempotency_key,
            state,
            outcome,
            duration_us: 5,
            messages,
            capped: vec![],
            logs: vec![],
            retry_at_ms: None,
        }))
    }

    /// The step that writes history slot `seq` of instance `id`: it goes
    /// on to `classify`, or completes the instance when `last`.
    fn step(id: u64, customer: &str, seq: u32, last: bool, notes: Vec<Interaction>) -> Write {
        let mut next = instance(id, customer);
        next.history_len = seq;
        let key = next.idempotency_key();
        next.history_len = seq + 1;
        next.state = raw(&format!(r#"{{"seq":{seq}}}"#));
        let outcome = if last {
            next.status = InstanceStatus::Completed;
            next.current_step = None;
            StepOutcome::Complete
        } else {
            next.current_step = Some("classify".into());
            StepOutcome::Goto {
                transition: "sent".into(),
                target: "classify".into(),
            }
        };
        let state = StateChanges {
            set: json!({ "seq": seq })
                .as_object()
                .cloned()
                .expect("an object"),
            removed: vec![],
        };
        let entry = acknowledged(key, state, outcome, vec![format!("i-{id}/{seq}/m0")]);
        let message = OutboxMessage {
            id: format!("i-{id}/{seq}/m0"),
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
        Write::Step(Box::new(
            StepCommit::new(next, &entry, &[message], notes).expect("encode"),
        ))
    }

    /// Run every check on `store`, which must be empty.
    pub(crate) fn run(store: &dyn Store) {
        an_event_is_accepted_once(store);
        a_step_commits_once_with_its_effects(store);
        customer_views_follow_writes(store);
        plugin_and_journey_versions_count_up(store);
        tags_keep_their_changes_and_run_counts_are_saved(store);
        a_migration_replaces_the_one_from_the_same_version(store);
        a_sleeping_instance_has_a_timer_until_it_wakes(store);
        channels_engagement_and_counted_sends_are_kept(store);
        an_exit_ends_an_instance_indexed_by_customer(store);
        attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(store);
    }

    fn attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(store: &dyn Store) {
        // A restart interrupts a running instance's first step: read back,
        // its next attempt is the second, with the first one's key.
        store.commit(&[ingest(91, "c-9")]).expect("commit");
        let mut restarted = instance(91, "c-9");
        restarted.restarted(1, 3);
        let entry = HistoryEntry::Restarted {
            at_ms: 3,
            step: "acknowledge".into(),
            attempt: 1,
        };
        let commit = StepCommit::new(restarted, &entry, &[], vec![]).expect("encode");
        store
            .commit(&[Write::Step(Box::new(commit))])
            .expect("commit");
        let read = store
            .instance(InstanceId(91))
            .expect("read")
            .expect("exists");
        assert_eq!(
            (
                read.history_len,
                read.next_attempt(),
                read.idempotency_key()
            ),
            (2, 2, "i-91/1".to_owned())
        );

        // That attempt fails and is retried on a timer, still with the key.
        let mut retrying = read.clone();
        let failed = StepRecord {
            attempt: 2,
            idempotency_key: read.idempotency_key(),
            retry_at_ms: Some(9_000),
            ..match acknowledged(
                read.idempotency_key(),
                StateChanges::default(),
                StepOutcome::Fail {
                    reason: "boom".into(),
                },
                vec![],
            ) {
                HistoryEntry::StepRan(step) => *step,
                _ => unreachable!("acknowledged makes a step entry"),
            }
        };
        retrying.retry_later(&failed, 9_000);
        let entry = HistoryEntry::StepFailed(Box::new(failed));
        let commit = StepCommit::new(retrying, &entry, &[], vec![]).expect("encode");
        store
            .commit(&[Write::Step(Box::new(commit))])
            .expect("commit");
        let read = store
            .instance(InstanceId(91))
            .expect("read")
            .expect("exists");
        assert_eq!(read.status, InstanceStatus::Waiting);
        assert_eq!(
            read.attempts,
            Some(StepAttempts {
                made: 2,
                failed: 1,
                idempotency_key: "i-91/1".into(),
                plugin: None,
            })
        );
        assert!(
            store
                .due_timers(9_000, 10)
                .expect("timers")
                .contains(&(9_000, InstanceId(91)))
        );
        store.forget_timer(9_000, InstanceId(91)).expect("forget");
        assert!(
            !store
                .due_timers(9_000, 10)
                .expect("timers")
                .contains(&(9_000, InstanceId(91)))
        );
    }

    /// While one thread wakes an instance from a due timer and puts it back
    /// to sleep on one, over and over, the store is never at rest; another
    /// thread asking [`Store::settled`] must never be told it is. `store`
    /// must be empty.
    pub(crate) fn settled_is_never_seen_between_a_timer_and_its_step(store: &dyn Store) {
        const NOW: u64 = 5_000;
        store.commit(&[ingest(80, "c-8")]).expect("commit");
        assert!(!store.settled(NOW).expect("settled"), "a running instance");
        let mut running = store
            .instance(InstanceId(80))
            .expect("read")
            .expect("exists");
        let rounds = 2_000;
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let mut looks = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    assert!(
                        !store.settled(NOW).expect("settled"),
                        "a busy store looked settled after {looks} looks"
                    );
                    looks += 1;
                }
                looks
            });
            for _ in 0..rounds {
                let mut asleep = running.clone();
                asleep.history_len += 1;
                asleep.status = InstanceStatus::Waiting;
                asleep.wake_at_ms = Some(NOW);
                let outcome = StepOutcome::Sleep {
                    until_ms: NOW,
                    transition: "later".into(),
                    target: "acknowledge".into(),
                    requested_ms: None,
                    window: None,
                };
                let key = running.idempotency_key();
                let entry = acknowledged(key, StateChanges::default(), outcome, vec![]);
                let sleep = StepCommit::new(asleep.clone(), &entry, &[], vec![]).expect("encode");
                let mut awake = asleep.clone();
                awake.status = InstanceStatus::Running;
                awake.wake_at_ms = None;
                awake.history_len += 1;
                let woke = HistoryEntry::Woke {
                    at_ms: NOW,
                    due_ms: NOW,
                };
                let wake = StepCommit::wake(awake.clone(), &woke, &asleep).expect("encode");
                for commit in [sleep, wake] {
                    let applied = store
                        .commit(&[Write::Step(Box::new(commit))])
                        .expect("commit");
                    assert_eq!(applied, [Applied::Done]);
                }
                running = awake;
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            let looks = watcher
                .join()
                .expect("the watcher saw a busy store as busy");
            assert!(looks > 0, "the watcher looked at least once");
        });
        let mut finished = running.clone();
        finished.history_len += 1;
        finished.status = InstanceStatus::Completed;
        finished.current_step = None;
        let entry = acknowledged(
            running.idempotency_key(),
            StateChanges::default(),
            StepOutcome::Complete,
            vec![],
        );
        let last = StepCommit::new(finished, &entry, &[], vec![]).expect("encode");
        store
            .commit(&[Write::Step(Box::new(last))])
            .expect("commit");
        assert!(store.settled(NOW).expect("settled"), "nothing left to do");
    }

    fn channels_engagement_and_counted_sends_are_kept(store: &dyn Store) {
        let customer = "c-engaged";
        // Read once so a cached view exists and must be refreshed.
        assert!(
            store
                .customer_view(customer, 0, &[])
                .expect("view")
                .channels
                .is_empty()
        );
        let mut opt_in = match ingest(60, customer) {
            Write::Ingest(ingest) => ingest,
            Write::Step(_) => unreachable!("ingest builds an ingest"),
        };
        let preference = ChannelPreference {
            channel: "sms".into(),
            opted_in: true,
            changed_at_ms: 7,
        };
        opt_in.preference = Some(("sms".into(), encode(&preference).expect("encode")));
        let engagement = Engagement {
            at_ms: 8,
            action: "opened".into(),
            channel: "email".into(),
            event_kind: "email.opened".into(),
            details: raw(r#"{"webinar_id":"w-1"}"#),
        };
        opt_in.engagement = Some(encode(&engagement).expect("encode"));
        store.commit(&[Write::Ingest(opt_in)]).expect("commit");
        let view = store.customer_view(customer, 0, &[]).expect("view");
        assert_eq!(view.channels, vec![preference]);
        assert_eq!(view.engagement.len(), 1);
        assert_eq!(view.engagement[0].action, "opened");
        assert_eq!(view.engagement[0].details.get(), r#"{"webinar_id":"w-1"}"#);

        let mut next = instance(60, customer);
        next.history_len = 2;
        let entry = acknowledged(
            "i-60/1".into(),
            StateChanges::default(),
            StepOutcome::Goto {
                transition: "sent".into(),
                target: "classify".into(),
            },
            vec![],
        );
        let mut step = StepCommit::new(next, &entry, &[], vec![]).expect("encode");
        step.counted = vec![("sms".into(), 1_000, 0), ("sms".into(), 2_000, 1)];
        store
            .commit(&[Write::Step(Box::new(step))])
            .expect("commit");
        assert_eq!(
            store.sent_since(customer, "sms", 0).expect("sent"),
            vec![1_000, 2_000]
        );
        assert_eq!(
            store.sent_since(customer, "sms", 1_001).expect("sent"),
            vec![2_000]
        );
        assert!(
            store
                .sent_since(customer, "email", 0)
                .expect("sent")
                .is_empty()
        );
    }

    fn an_exit_ends_an_instance_indexed_by_customer(store: &dyn Store) {
        let customer = "c-leaving";
        let mut started = instance(70, customer);
        started.indexed_by_customer = true;
        let event = EventRecord {
            id: "evt-70".into(),
            kind: "enquiry.received".into(),
            customer_id: customer.into(),
            data: raw(r#"{"enquiry_id":"q"}"#),
            received_at_ms: 1,
            started: vec![started.id],
        };
        let commit =
            IngestCommit::new(&event, &[started.clone()], interaction("x", "y")).expect("encode");
        store
            .commit(&[Write::Ingest(Box::new(commit))])
            .expect("commit");
        assert_eq!(
            store.active_of("enquiry", customer).expect("active"),
            vec![InstanceId(70)]
        );
        let mut exited = started.clone();
        exited.status = InstanceStatus::Exited;
        exited.current_step = None;
        exited.history_len = 2;
        let entry = HistoryEntry::Exited {
            at_ms: 3,
            event_id: "evt-71".into(),
            kind: "enquiry.withdrawn".into(),
            step: Some("acknowledge".into()),
        };
        let exit = StepCommit::exit(exited, &entry, &started).expect("encode");
        // A step that commits first takes the slot: the exit is stale.
        let mut stepped = started.clone();
        stepped.history_len = 2;
        let step = acknowledged(
            "i-70/1".into(),
            StateChanges::default(),
            StepOutcome::Goto {
                transition: "sent".into(),
                target: "classify".into(),
            },
            vec![],
        );
        let step = StepCommit::new(stepped, &step, &[], vec![]).expect("encode");
        let withdrawn = EventRecord {
            id: "evt-71".into(),
            kind: "enquiry.withdrawn".into(),
            customer_id: customer.into(),
            data: raw("{}"),
            received_at_ms: 3,
            started: vec![],
        };
        let mut ingest = IngestCommit::new(&withdrawn, &[], interaction("x", "y")).expect("encode");
        ingest.exits = vec![exit];
        let applied = store
            .commit(&[Write::Step(Box::new(step)), Write::Ingest(Box::new(ingest))])
            .expect("commit");
        assert_eq!(applied, vec![Applied::Done, Applied::Done]);
        // The exit lost to the step: it stays owed until it applies.
        assert_eq!(
            store.pending_exits().expect("pending"),
            vec![(InstanceId(70), "evt-71".to_owned())]
        );
        // Tried again from its new position, it ends the instance.
        let current = store
            .instance(InstanceId(70))
            .expect("read")
            .expect("exists");
        let mut exited = current.clone();
        exited.status = InstanceStatus::Exited;
        exited.current_step = None;
        exited.history_len = current.history_len + 1;
        let exit = StepCommit::exit(exited, &entry, &current).expect("encode");
        let applied = store
            .commit(&[Write::Step(Box::new(exit))])
            .expect("commit");
        assert_eq!(applied, vec![Applied::Done]);
        let ended = store
            .instance(InstanceId(70))
            .expect("read")
            .expect("exists");
        assert!(store.pending_exits().expect("pending").is_empty());
        assert_eq!(ended.status, InstanceStatus::Exited);
        assert!(
            store
                .active_of("enquiry", customer)
                .expect("active")
                .is_empty()
        );
        assert!(
            store
                .running_instances()
                .expect("running")
                .iter()
                .all(|i| i.id != ended.id)
        );
        let history = store.history(InstanceId(70)).expect("history");
        assert!(
            matches!(history.last(), Some(HistoryEntry::Exited { kind, .. }) if kind == "enquiry.withdrawn")
        );
    }

    fn a_sleeping_instance_has_a_timer_until_it_wakes(store: &dyn Store) {
        store.commit(&[ingest(30, "c-3")]).expect("commit");
        let mut asleep = instance(30, "c-3");
        asleep.history_len = 2;
        asleep.status = InstanceStatus::Waiting;
        asleep.current_step = Some("classify".into());
        asleep.wake_at_ms = Some(5_000);
        let sleep = StepOutcome::Sleep {
            until_ms: 5_000,
            transition: "later".into(),
            target: "classify".into(),
            requested_ms: None,
            window: None,
        };
        let entry = acknowledged("i-30/1".into(), StateChanges::default(), sleep, vec![]);
        let sleep = StepCommit::new(asleep.clone(), &entry, &[], vec![]).expect("encode");
        store
            .commit(&[Write::Step(Box::new(sleep))])
            .expect("commit");
        assert!(store.due_timers(4_999, 10).expect("timers").is_empty());
        assert_eq!(
            store.due_timers(5_000, 10).expect("timers"),
            [(5_000, InstanceId(30))]
        );
        assert_eq!(store.next_timer().expect("timers"), Some(5_000));
        assert!(
            store
                .running_instances()
                .expect("running")
                .iter()
                .all(|running| running.id != InstanceId(30)),
            "a waiting instance is not resumed as running"
        );
        let read = store
            .instance(InstanceId(30))
            .expect("read")
            .expect("exists");
        assert_eq!(
            (read.status, read.wake_at_ms),
            (InstanceStatus::Waiting, Some(5_000))
        );

        let mut awake = asleep;
        awake.status = InstanceStatus::Running;
        awake.wake_at_ms = None;
        awake.history_len = 3;
        let woke = HistoryEntry::Woke {
            at_ms: 5_001,
            due_ms: 5_000,
        };
        let wake = StepCommit::wake(awake, &woke, &read).expect("encode");
        store
            .commit(&[Write::Step(Box::new(wake))])
            .expect("commit");
        assert_eq!(store.next_timer().expect("timers"), None);
        assert!(
            store
                .running_instances()
                .expect("running")
                .iter()
                .any(|running| running.id == InstanceId(30)),
            "a woken instance is running again"
        );
        store.put_meta("clock", &json!(5_001)).expect("meta");
        assert_eq!(store.meta("clock").expect("meta"), Some(json!(5_001)));
        assert_eq!(store.meta("other").expect("meta"), None);
    }

    fn a_migration_replaces_the_one_from_the_same_version(store: &dyn Store) {
        let first = MigrationRecord {
            journey: "enquiry".into(),
            from_version: 1,
            to_version: 2,
            steps: [("classify".to_owned(), "classify".to_owned())].into(),
            created_at_ms: 1,
        };
        let again = MigrationRecord {
            to_version: 3,
            created_at_ms: 2,
            ..first.clone()
        };
        store.put_migration(&first).expect("store");
        store.put_migration(&again).expect("store");
        assert_eq!(store.migrations().expect("read"), [again]);
    }

    fn tags_keep_their_changes_and_run_counts_are_saved(store: &dyn Store) {
        let stable = TagRecord {
            plugin: "classify".into(),
            tag: "stable".into(),
            version: 1,
            canary: None,
            changed_at_ms: 1,
            reason: "first".into(),
        };
        let rollout = TagRecord {
            version: 1,
            canary: Some(Canary {
                version: 2,
                percent: 10,
                rollback: Some(RollbackRule {
                    max_error_rate: 0.2,
                    min_runs: 20,
                }),
            }),
            changed_at_ms: 2,
            reason: "rollout".into(),
            ..stable.clone()
        };
        store.put_tag(&stable).expect("tag");
        store.put_tag(&rollout).expect("tag");
        assert_eq!(store.tags().expect("tags"), std::slice::from_ref(&rollout));
        assert_eq!(
            store.tag_changes("classify").expect("changes"),
            [stable, rollout],
            "oldest first"
        );
        assert!(store.tag_changes("class").expect("changes").is_empty());

        let mut counts = VersionStats {
            plugin: "classify".into(),
            version: 2,
            ..VersionStats::default()
        };
        counts.record(false, 40);
        store.put_version_stats(&[counts.clone()]).expect("save");
        counts.record(true, 900);
        store.put_version_stats(&[counts.clone()]).expect("save");
        assert_eq!(store.version_stats().expect("read"), [counts]);
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
        let applied = store
            .commit(&[step(1, "c-1", 1, false, vec![])])
            .expect("commit");
        assert_eq!(applied, [Applied::Done]);
        let stale = store
            .commit(&[step(1, "c-1", 1, false, vec![])])
            .expect("commit");
        assert_eq!(stale, [Applied::StaleStep], "the history slot is taken");
        let running = store
            .instance(InstanceId(1))
            .expect("read")
            .expect("exists");
        assert_eq!(
            (running.status, running.current_step.as_deref()),
            (InstanceStatus::Running, Some("classify")),
            "a running instance reads as of its last step"
        );
        assert_eq!(
            (running.history_len, running.state.get()),
            (2, r#"{"seq":1}"#)
        );
        assert_eq!(
            store.running_instances().expect("running")[0]
                .current_step
                .as_deref(),
            Some("classify"),
            "a resumed instance continues where it was"
        );

        store
            .commit(&[step(1, "c-1", 2, true, vec![])])
            .expect("commit");
        let instance = store
            .instance(InstanceId(1))
            .expect("read")
            .expect("exists");
        assert_eq!(instance.status, InstanceStatus::Completed);
        assert_eq!(instance.state.get(), r#"{"seq":2}"#);
        let history = store.history(InstanceId(1)).expect("history");
        assert_eq!(history.len(), 3);
        assert!(
            matches!(&history[0], HistoryEntry::EventReceived { event_id, kind, .. }
                if event_id == "evt-1" && kind == "enquiry.received"),
            "history starts with the event: {history:?}"
        );
        assert_eq!(
            store.outbox(Some(InstanceId(1)), 10).expect("outbox").len(),
            2
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
        let first = store.customer_view("c-2", 10, &[]).expect("view");
        assert!(first.interactions.is_empty());
        store.commit(&[ingest(2, "c-2")]).expect("commit");
        store
            .commit(&[step(
                2,
                "c-2",
                1,
                true,
                vec![interaction("enquiry.resolved", "fixed")],
            )])
            .expect("commit");
        store
            .put_customer("c-2", &json!({"name": "Ada L."}))
            .expect("put");
        let view = store.customer_view("c-2", 10, &[]).expect("view");
        assert_eq!(view.profile.get(), r#"{"name":"Ada L."}"#);
        let kinds: Vec<&str> = view.interactions.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["enquiry.received", "enquiry.resolved"],
            "oldest first"
        );
        let last = store.customer_view("c-2", 1, &[]).expect("view");
        assert_eq!(last.interactions.len(), 1);
        assert_eq!(
            last.interactions[0].kind, "enquiry.resolved",
            "the most recent"
        );
        let resolved = store
            .customer_view("c-2", 10, &["enquiry.resolved".to_owned()])
            .expect("view");
        assert_eq!(resolved.interactions.len(), 1, "only the kinds asked for");
        assert_eq!(resolved.interactions[0].text, "fixed");
        let none = store.customer_view("c-2", 0, &[]).expect("view");
        assert!(none.interactions.is_empty());
        let unknown = store.customer_view("nobody", 10, &[]).expect("view");
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn run_counts_give_failure_rate_and_percentiles() {
        let mut stats = VersionStats::default();
        assert_eq!(stats.percentile_us(50.0), None);
        for duration_us in 1..=100 {
            stats.record(duration_us % 10 == 0, duration_us);
        }
        assert_eq!((stats.runs, stats.failures), (100, 10));
        assert!((stats.failure_rate() - 0.1).abs() < 1e-9);
        let p50 = stats.percentile_us(50.0).expect("runs");
        let p99 = stats.percentile_us(99.0).expect("runs");
        assert!((50..=60).contains(&p50), "{p50}");
        assert!((99..=120).contains(&p99), "{p99}");
        stats.record(false, u64::MAX);
        assert_eq!(
            stats.latency_buckets.len(),
            96,
            "very long runs share the last bucket"
        );
    }

    #[test]
    fn state_changes_record_only_what_a_step_changed_and_replay_to_its_state() {
        let before = object(json!({ "kept": 1, "changed": "a", "dropped": true }));
        let after = object(json!({ "kept": 1, "changed": "b", "added": [1, 2] }));
        let changes = StateChanges::between(&before, after.clone());
        assert_eq!(
            changes.set,
            object(json!({ "changed": "b", "added": [1, 2] }))
        );
        assert_eq!(changes.removed, ["dropped"]);
        let mut replayed = before.clone();
        changes.apply_to(&mut replayed);
        assert_eq!(replayed, after);
        assert!(StateChanges::between(&after, after.clone()).is_empty());
    }
}
