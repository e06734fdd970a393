//! The domain records the store keeps: ids, plugin and journey versions,
//! tags and rollouts, run counts, events, instances and their state
//! machine (how a step, a retry, a restart or a split moves one), history
//! entries, outbox messages, and the customer view. Backends store these;
//! how they lay them out is theirs.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

    /// Add the runs counted in `other` (of the same version).
    pub fn add(&mut self, other: &VersionStats) {
        self.runs += other.runs;
        self.failures += other.failures;
        if self.latency_buckets.len() < other.latency_buckets.len() {
            self.latency_buckets.resize(other.latency_buckets.len(), 0);
        }
        for (mine, theirs) in self.latency_buckets.iter_mut().zip(&other.latency_buckets) {
            *mine += theirs;
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().expect("an object")
    }

    fn running(history_len: u32) -> Instance {
        let mut instance = crate::store::suite::instance(7, "c-1");
        instance.current_step = Some("classify".into());
        instance.history_len = history_len;
        instance
    }

    fn ran(attempt: u32, outcome: StepOutcome) -> StepRecord {
        StepRecord {
            at_ms: 10,
            step: "classify".into(),
            plugin: "classify".into(),
            plugin_version: 1,
            digest: "d".into(),
            attempt,
            idempotency_key: "i-7/1".into(),
            state: StateChanges::default(),
            outcome,
            duration_us: 2_000,
            messages: vec![],
            capped: vec![],
            logs: vec![],
            retry_at_ms: None,
        }
    }

    /// `goto` leads to a step or completes at a terminal state; `sleep`
    /// and `wait` make it wait with its timer; `complete` and `fail` end it.
    #[test]
    fn each_outcome_moves_a_running_instance_where_it_says() {
        let is_step = |name: &str| name != "resolved";
        let after = |outcome| {
            let mut instance = running(1);
            instance.advance(&ran(1, outcome), is_step);
            instance
        };
        let goto = |target: &str| StepOutcome::Goto {
            transition: "next".into(),
            target: target.into(),
        };
        let next = after(goto("handover"));
        assert_eq!(
            (next.status, next.current_step.as_deref(), next.history_len),
            (InstanceStatus::Running, Some("handover"), 2)
        );
        assert_eq!(next.updated_at_ms, 12, "the step's start plus its run time");
        let done = after(goto("resolved"));
        assert_eq!(
            (done.status, done.current_step, done.terminal.as_deref()),
            (InstanceStatus::Completed, None, Some("resolved"))
        );
        let asleep = after(StepOutcome::Sleep {
            until_ms: 500,
            transition: "later".into(),
            target: "remind".into(),
            requested_ms: None,
            window: None,
        });
        assert_eq!(
            (
                asleep.status,
                asleep.current_step.as_deref(),
                asleep.wake_at_ms
            ),
            (InstanceStatus::Waiting, Some("remind"), Some(500))
        );
        let waiting = after(StepOutcome::WaitForEvent {
            event: "enquiry.resolved".into(),
            correlation: "enquiry_id=q-1".into(),
            until_ms: 900,
            on_event: "resolved".into(),
            event_target: "resolve".into(),
            on_timeout: "breached".into(),
            timeout_target: "escalate".into(),
        });
        assert_eq!(
            (waiting.status, waiting.wake_at_ms),
            (InstanceStatus::Waiting, Some(900))
        );
        assert_eq!(
            waiting
                .waiting_for
                .map(|wait| (wait.on_event, wait.on_timeout)),
            Some(("resolve".to_owned(), "escalate".to_owned()))
        );
        assert_eq!(
            after(StepOutcome::Complete).status,
            InstanceStatus::Completed
        );
        let failed = after(StepOutcome::Fail {
            reason: "boom".into(),
        });
        assert_eq!(
            (failed.status, failed.failure.as_deref()),
            (InstanceStatus::Failed, Some("step `classify`: boom"))
        );
    }

    /// A failed attempt waits for its retry at the same step with the same
    /// key; a restart counts on; the step that finally runs starts the next
    /// step afresh.
    #[test]
    fn retries_and_restarts_keep_the_key_and_count_attempts() {
        let mut instance = running(1);
        assert_eq!(
            (instance.next_attempt(), instance.idempotency_key()),
            (1, "i-7/1".to_owned())
        );
        let mut failed = ran(1, StepOutcome::Fail { reason: "x".into() });
        failed.retry_at_ms = Some(1_000);
        instance.retry_later(&failed, 1_000);
        assert_eq!(
            (
                instance.status,
                instance.current_step.as_deref(),
                instance.wake_at_ms
            ),
            (InstanceStatus::Waiting, Some("classify"), Some(1_000))
        );
        assert_eq!((instance.next_attempt(), instance.history_len), (2, 2));
        // Woken, it is interrupted by a restart at attempt 2.
        instance.status = InstanceStatus::Running;
        instance.history_len += 1;
        instance.restarted(2, 1_500);
        assert_eq!(
            (instance.next_attempt(), instance.idempotency_key()),
            (3, "i-7/1".to_owned()),
            "the first attempt's key"
        );
        assert_eq!(
            instance.attempts.as_ref().map(|attempts| attempts.failed),
            Some(1)
        );
        let finally = ran(
            3,
            StepOutcome::Fail {
                reason: "still".into(),
            },
        );
        instance.advance(&finally, |_| true);
        assert_eq!(
            instance.failure.as_deref(),
            Some("step `classify`, attempt 3: still")
        );
        assert_eq!(instance.attempts, None, "the next step starts afresh");
        let mut split = running(4);
        split.attempts = instance.attempts.clone();
        split.follow_split("plain", true, 20);
        assert_eq!(
            (split.current_step.as_deref(), split.next_attempt()),
            (Some("plain"), 1)
        );
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
