//! History entries: what happened to an instance, step by step.

use serde::{Deserialize, Serialize};

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
    /// The instance's customer asked to be forgotten and an operator chose
    /// to let it run on anonymised: its customer is now a pseudonym and
    /// its records no longer hold their personal data.
    Anonymised {
        /// Entry time, ms since the Unix epoch.
        at_ms: u64,
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
            | HistoryEntry::Cancelled { at_ms, .. }
            | HistoryEntry::Anonymised { at_ms, .. } => *at_ms,
            HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => step.at_ms,
        }
    }
}
