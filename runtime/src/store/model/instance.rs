//! Events and instances, and the instance state machine: how a step,
//! a retry, a restart or a split moves an instance.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::*;

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
    /// While waiting on a sleep or for an event: the step that waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_at: Option<String>,
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

/// The instance state machine: every way an instance moves is one method
/// here, each taking the next history slot. A step's outcome ([`advance`]
/// or [`retry_later`]), a restart, a split, a wake-up, an exit, a
/// migration and an operator's retry, skip or cancel. The executor decides
/// *which* move to make; how the instance changes is said only here.
///
/// [`advance`]: Instance::advance
/// [`retry_later`]: Instance::retry_later
impl Instance {
    /// Follow a split's variant to `target`, a step or (when `is_step` is
    /// false) a terminal state.
    pub fn follow_split(&mut self, target: &str, is_step: bool, now: u64) {
        self.history_len += 1;
        self.updated_at_ms = now;
        self.attempts = None;
        self.lead_to(target.to_owned(), is_step);
    }

    /// Continue at `target`: a step, or a terminal state that completes
    /// the instance.
    fn lead_to(&mut self, target: String, is_step: bool) {
        if is_step {
            self.current_step = Some(target);
        } else {
            self.current_step = None;
            self.status = InstanceStatus::Completed;
            self.terminal = Some(target);
        }
    }

    /// Take the next history slot at `at_ms`, leaving any wait.
    fn next_entry(&self, at_ms: u64) -> Instance {
        let mut next = self.clone();
        next.history_len += 1;
        next.updated_at_ms = at_ms;
        next.wake_at_ms = None;
        next.waiting_for = None;
        next.waiting_at = None;
        next
    }

    /// A waiting instance woken at `at_ms`, by the event `by_event` it
    /// waited for or (`None`) by its timer, running again at `target`;
    /// `is_step` says whether `target` is a step or a terminal state.
    pub fn woken(
        &self,
        target: String,
        is_step: bool,
        by_event: Option<&str>,
        at_ms: u64,
    ) -> Instance {
        let mut next = self.next_entry(at_ms);
        next.status = InstanceStatus::Running;
        next.lead_to(target, is_step);
        if let Some(event) = by_event {
            next.last_event_id = Some(event.to_owned());
        }
        next
    }

    /// An unfinished instance ended at `at_ms` by exit event `event_id`.
    pub fn exited(&self, event_id: &str, at_ms: u64) -> Instance {
        let mut next = self.next_entry(at_ms);
        next.status = InstanceStatus::Exited;
        next.current_step = None;
        next.last_event_id = Some(event_id.to_owned());
        next
    }

    /// A running instance moved to journey version `to_version`, at step
    /// `to_step`, before its next step runs.
    pub fn migrated(&self, to_version: u32, to_step: String, at_ms: u64) -> Instance {
        let mut next = self.next_entry(at_ms);
        next.journey_version = to_version;
        next.current_step = Some(to_step);
        next
    }

    /// An operator's action at `at_ms`: whatever the instance was doing
    /// (waiting, retrying, failed) is over.
    fn acted_on(&self, at_ms: u64) -> Instance {
        let mut next = self.next_entry(at_ms);
        next.attempts = None;
        next.failure = None;
        next
    }

    /// An operator runs `step` again, from a first attempt with a fresh
    /// idempotency key; on `plugin` (a reference such as `classify@3`) when
    /// given, instead of the step's own.
    pub fn retried(&self, step: String, plugin: Option<String>, at_ms: u64) -> Instance {
        let mut next = self.acted_on(at_ms);
        next.status = InstanceStatus::Running;
        next.current_step = Some(step);
        next.terminal = None;
        if plugin.is_some() {
            next.attempts = Some(StepAttempts {
                made: 0,
                failed: 0,
                idempotency_key: next.idempotency_key(),
                plugin,
            });
        }
        next
    }

    /// An operator moves the instance on to `target` (a step, or a
    /// terminal state that completes it).
    pub fn skipped_to(&self, target: String, is_step: bool, at_ms: u64) -> Instance {
        let mut next = self.acted_on(at_ms);
        next.lead_to(target, is_step);
        if next.status != InstanceStatus::Completed {
            next.status = InstanceStatus::Running;
        }
        next
    }

    /// An operator cancels the instance.
    pub fn cancelled(&self, at_ms: u64) -> Instance {
        let mut next = self.acted_on(at_ms);
        next.status = InstanceStatus::Cancelled;
        next.current_step = None;
        next
    }

    /// Its customer was forgotten and it runs on anonymised: `scrub`
    /// applied to every record of it, its customer now the pseudonym.
    pub fn anonymised(&self, scrub: &Scrub, at_ms: u64) -> serde_json::Result<Instance> {
        // Its waits stay as they are, only scrubbed.
        let mut next = scrub.record(self)?;
        next.history_len += 1;
        next.updated_at_ms = at_ms;
        next.customer_id = scrub.pseudonym.clone();
        Ok(next)
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
    /// The step it stands at while unfinished: the one a waiting instance
    /// waits at, else the one it runs next.
    pub fn standing_at(&self) -> Option<&str> {
        self.waiting_at.as_deref().or(self.current_step.as_deref())
    }

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
                self.waiting_at = Some(step.step.clone());
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
                self.waiting_at = Some(step.step.clone());
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
