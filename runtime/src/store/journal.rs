//! The journal: accepted events, instances and their histories, written
//! as atomic commits of domain facts.
//!
//! A commit says *what happened* (an event was accepted and started these
//! instances; an instance took this history entry and queued these
//! messages), never how to index it: each backend derives its own indexes
//! (timers, event waits, correlation, the running set) from the facts.

use super::{
    ChannelPreference, DayTally, Engagement, EventRecord, ForgottenRecords, HistoryEntry, Instance,
    InstanceId, InstanceStatus, Interaction, OutboxMessage, Purge, Result, Scrub, StandingCounts,
};

/// One instance taking one history entry, and everything that goes with
/// it, committed atomically: a step's outcome, a wake-up, an exit, a
/// migration, a split, a restart or an operator's action.
#[derive(Debug, Clone)]
pub struct InstanceCommit {
    /// The instance after the change (state, position, status;
    /// `history_len` already counts the entry). A waiting instance's
    /// timer (`wake_at_ms`) and event wait (`waiting_for`) are set by it.
    pub instance: Instance,
    /// The history entry, written at `instance.history_len - 1`.
    pub entry: HistoryEntry,
    /// The wait the instance leaves, when it was waiting before (a
    /// wake-up, an exit, an operator's action): its timer and event wait
    /// are cleared.
    pub leaves: Option<LeftWait>,
    /// Messages queued for delivery, in send order.
    pub messages: Vec<OutboxMessage>,
    /// Interactions added to the customer's history.
    pub interactions: Vec<Interaction>,
    /// Sends counted against the customer's frequency caps.
    pub counted: Vec<CountedSend>,
    /// Set when the change anonymises the instance (its customer was
    /// forgotten): the backend scrubs every record kept for it (earlier
    /// history, outbox messages, the events it ran on) and re-indexes it
    /// under the pseudonym; messages not yet sent are dropped.
    pub scrub: Option<std::sync::Arc<Scrub>>,
}

/// The timer and event wait of an instance as it waited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftWait {
    /// When its timer was due.
    pub wake_at_ms: Option<u64>,
    /// The event it waited for: (kind, correlation).
    pub event: Option<(String, String)>,
}

impl LeftWait {
    /// The wait `instance` is in (nothing, when it does not wait).
    pub fn of(instance: &Instance) -> LeftWait {
        LeftWait {
            wake_at_ms: instance.wake_at_ms,
            event: instance
                .waiting_for
                .as_ref()
                .map(|wait| (wait.kind.clone(), wait.correlation.clone())),
        }
    }
}

/// A message counted against a frequency cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedSend {
    /// Its channel.
    pub channel: String,
    /// When it was sent, ms since the Unix epoch.
    pub at_ms: u64,
}

impl InstanceCommit {
    /// `instance` (as it is after the change) took `entry`.
    pub fn new(instance: Instance, entry: HistoryEntry) -> Self {
        InstanceCommit {
            instance,
            entry,
            leaves: None,
            messages: Vec::new(),
            interactions: Vec::new(),
            counted: Vec::new(),
            scrub: None,
        }
    }

    /// `instance` took `entry` and left the wait `before` was in (a
    /// wake-up, an exit or an operator's action on a waiting instance).
    /// If another change of the instance commits first, this one is stale
    /// and the caller looks again.
    pub fn leaving(instance: Instance, entry: HistoryEntry, before: &Instance) -> Self {
        InstanceCommit {
            leaves: Some(LeftWait::of(before)),
            ..InstanceCommit::new(instance, entry)
        }
    }

    /// The history slot this change fills.
    pub fn seq(&self) -> u32 {
        self.instance.history_len.saturating_sub(1)
    }

    /// Whether the change is work only the holder of the instance's shard
    /// may commit (see [`Shards`](super::Shards)): a step's outcome, a
    /// restart, a split or a timer's wake-up. Events, exits and
    /// operators' actions may change an instance from any node; the
    /// history slot keeps them in order with the holder's work.
    pub fn is_shard_work(&self) -> bool {
        matches!(
            self.entry,
            HistoryEntry::StepRan(_)
                | HistoryEntry::StepFailed(_)
                | HistoryEntry::Restarted { .. }
                | HistoryEntry::Split { .. }
                | HistoryEntry::Woke { .. }
        )
    }

    /// Whether a backend may leave the stored instance record as it is
    /// and derive the instance from it and its history instead: the
    /// instance goes on running and the entry only moves it along (a step
    /// that led to a step, a split, a restart). Every other change must
    /// rewrite the record.
    pub fn only_moves_along(&self) -> bool {
        self.instance.status == InstanceStatus::Running
            && self.leaves.is_none()
            && matches!(
                self.entry,
                HistoryEntry::StepRan(_)
                    | HistoryEntry::Split { .. }
                    | HistoryEntry::Restarted { .. }
            )
    }
}

/// An accepted event and everything it causes, committed atomically. An
/// instance's history begins with the event that started it: that first
/// entry is not stored but derived from the instance and event records.
#[derive(Debug, Clone)]
pub struct EventCommit {
    /// The event (one record per id).
    pub event: EventRecord,
    /// The instances it starts (`event.started` lists them).
    pub started: Vec<Instance>,
    /// Those of `started` that start only if their customer has no
    /// unfinished instance of their journey (single re-entry). The journal
    /// checks it at commit, against what is stored and what commits with
    /// it, so two events at once never both start one.
    pub exclusive: Vec<InstanceId>,
    /// The interaction it adds to its customer's history.
    pub interaction: Interaction,
    /// Waiting instances it wakes, committed with it (so an accepted event
    /// is never lost to a waiting instance). A wake-up whose history slot
    /// is taken (its timer fired first) is skipped.
    pub wakes: Vec<InstanceCommit>,
    /// Instances it ends (exit rules), committed with it. Each is also
    /// recorded as a pending exit until it applies: an exit whose history
    /// slot is taken (a step came first) is skipped, and the caller, or
    /// the next start, tries again.
    pub exits: Vec<InstanceCommit>,
    /// A channel opt-in or opt-out it records.
    pub preference: Option<ChannelPreference>,
    /// An engagement it records.
    pub engagement: Option<Engagement>,
}

impl EventCommit {
    /// `event` was accepted, started `started` and adds `interaction`.
    pub fn new(event: EventRecord, started: Vec<Instance>, interaction: Interaction) -> Self {
        EventCommit {
            event,
            started,
            exclusive: Vec::new(),
            interaction,
            wakes: Vec::new(),
            exits: Vec::new(),
            preference: None,
            engagement: None,
        }
    }
}

/// One unit of a journal commit.
#[derive(Debug, Clone)]
pub enum Commit {
    /// An accepted event.
    Event(Box<EventCommit>),
    /// A change of one instance.
    Instance(Box<InstanceCommit>),
}

impl Commit {
    /// The instance an instance commit is about (an event may touch many).
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            Commit::Event(_) => None,
            Commit::Instance(change) => Some(change.instance.id),
        }
    }
}

impl From<EventCommit> for Commit {
    fn from(event: EventCommit) -> Self {
        Commit::Event(Box::new(event))
    }
}

impl From<InstanceCommit> for Commit {
    fn from(change: InstanceCommit) -> Self {
        Commit::Instance(Box::new(change))
    }
}

/// What became of one [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Written and durable.
    Done,
    /// An event with this id was accepted before; nothing was written. The
    /// earlier record's instances are returned.
    DuplicateEvent {
        /// The instances the first delivery started.
        started: Vec<InstanceId>,
    },
    /// The instance's history slot is taken: the change was committed
    /// already, or another came first. Nothing was written.
    StaleStep,
    /// The event was accepted, but some instances it would start were not
    /// started (see [`EventCommit::exclusive`]); the event's record lists
    /// only those that were.
    PartlyStarted {
        /// Each instance not started, with the unfinished one in its way.
        refused: Vec<RefusedStart>,
    },
    /// The change is work of a shard this node does not hold now (its
    /// lease ended, or another node took the shard; see
    /// [`Shards`](super::Shards)): nothing was written. The shard's holder
    /// does the work.
    Fenced {
        /// The shard.
        shard: u32,
    },
}

/// An exclusive start refused at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedStart {
    /// The instance that was not started.
    pub instance: InstanceId,
    /// The customer's unfinished instance of the same journey.
    pub active: InstanceId,
}

/// Which instances to list.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this journey.
    pub journey: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
    /// Only instances about this customer.
    pub customer: Option<String>,
    /// Only instances with this value of their journey's correlation key.
    pub correlation: Option<String>,
    /// Only instances standing at this step: the step a running instance
    /// runs next, or the one a waiting instance waits at.
    pub step: Option<String>,
    /// Only ids greater than this (for paging).
    pub after: Option<InstanceId>,
    /// At most this many.
    pub limit: usize,
    /// Look at no more than this many instances, so a rare condition
    /// cannot make one call read the whole journal (no bound when 0); the
    /// page says where to go on ([`Journal::search_instances`]).
    pub budget: usize,
}

/// What [`Journal::search_instances`] found.
#[derive(Debug, Clone, Default)]
pub struct InstancePage {
    /// The instances, by id.
    pub found: Vec<Instance>,
    /// The last instance looked at, when there may be more after it (the
    /// page is full, or the budget ran out): the next call's `after`.
    pub more_after: Option<InstanceId>,
}

impl InstanceFilter {
    /// Whether `instance` passes every condition but the paging ones.
    pub fn matches(&self, instance: &Instance) -> bool {
        let equals = |wanted: &Option<String>, value: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == value)
        };
        equals(&self.journey, &instance.journey)
            && self.status.is_none_or(|status| instance.status == status)
            && equals(&self.customer, &instance.customer_id)
            && equals(&self.correlation, &instance.correlation)
            && self
                .step
                .as_deref()
                .is_none_or(|step| instance.standing_at() == Some(step))
    }
}

/// Events, instances and their histories.
///
/// Durability contract: [`Journal::commit`] returns only when its commits
/// are durable, however the backend groups them. Callers may call it from
/// several threads at once; that is how they overlap one group's flush with
/// the next group's work. Reads may show a commit a moment before it
/// returns (callers that report must wait for it; see the executor's
/// committer).
pub trait Journal: Send + Sync {
    /// A fresh id, never handed out before by this store.
    fn next_id(&self) -> Result<u64>;

    /// Apply `commits` as one atomic unit and make them durable, returning
    /// one [`Applied`] per commit, in order. Duplicate events and stale
    /// instance changes are skipped (not errors), so one of them never
    /// fails the others. A crash before the return loses the unit whole,
    /// never in part.
    ///
    /// On [`Error::NotDurable`](super::Error::NotDurable) the unit was
    /// applied (reads may show it) but may not be durable: the next
    /// commit that returns `Ok` (an empty one will do) makes it durable,
    /// since a successful commit means it and everything applied before it
    /// are durable. Any other error means nothing of the unit was applied.
    fn commit(&self, commits: &[Commit]) -> Result<Vec<Applied>>;

    /// An accepted event.
    fn event(&self, id: &str) -> Result<Option<EventRecord>>;
    /// One instance, as of its latest committed change.
    fn instance(&self, id: InstanceId) -> Result<Option<Instance>>;
    /// Instances matching `filter`, by id.
    fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        Ok(self.search_instances(filter)?.found)
    }
    /// Instances matching `filter`, by id, and where to go on.
    fn search_instances(&self, filter: &InstanceFilter) -> Result<InstancePage>;
    /// Every instance that still has a step to run.
    fn running_instances(&self) -> Result<Vec<Instance>>;
    /// Whether the journal is at rest at `now_ms`: no instance has a step
    /// to run and no timer is due, read at one moment (a wake-up moves an
    /// instance from a due timer to running in one commit).
    fn settled(&self, now_ms: u64) -> Result<bool>;
    /// An instance's history, in order.
    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>>;
    /// Instances of `journey` with this correlation value.
    fn correlated(&self, journey: &str, correlation: &str) -> Result<Vec<InstanceId>>;
    /// The unfinished instances of `journey` about `customer`, for the
    /// journeys whose instances are indexed by customer.
    fn active_of(&self, journey: &str, customer: &str) -> Result<Vec<InstanceId>>;
    /// Whether any instance waits for an event of `kind`.
    fn any_waiting_for(&self, kind: &str) -> Result<bool>;
    /// Instances waiting for an event of `kind` with `correlation`.
    fn waiting_for(&self, kind: &str, correlation: &str) -> Result<Vec<InstanceId>>;
    /// Exits events still owe instances: (instance, event id).
    fn pending_exits(&self) -> Result<Vec<(InstanceId, String)>>;
    /// Forget a pending exit (its instance finished another way). Durable
    /// on return.
    fn forget_exit(&self, instance: InstanceId) -> Result<()>;

    /// Finished instances of `journey` whose last change was before
    /// `before_ms`, oldest first, with that time: what retention removes.
    fn finished_before(
        &self,
        journey: &str,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(InstanceId, u64)>>;
    /// Remove finished instances with everything kept for them (history,
    /// messages and their deliveries, counted sends, index entries, and
    /// the trigger event once no instance it started is left) and add each
    /// one's counts ([`FunnelTally::of_instance`](super::FunnelTally::of_instance))
    /// from its journey's live tallies to its purged tallies, atomically. Durable with the next
    /// commit (not flushed on its own, so it never holds up a commit's
    /// flush): a crash before then brings the instances back whole, with
    /// their counts out of the tallies, and a later purge removes them
    /// again. An instance that is gone, unfinished, or changed since it
    /// was read (an operator retried it) is left as it is. Returns how many
    /// were removed.
    fn purge(&self, purges: &[Purge]) -> Result<usize>;
    /// The tallies purged instances of `journey` left behind.
    fn purged_tallies(&self, journey: &str) -> Result<Vec<DayTally>>;
    /// The funnel counts of `journey`'s instances still kept, per version
    /// and start day: the sum of each one's
    /// [`FunnelTally::of_instance`](super::FunnelTally::of_instance),
    /// kept up to date as commits land (never recomputed on a read).
    fn live_tallies(&self, journey: &str) -> Result<Vec<DayTally>>;
    /// Unfinished instances (running or waiting) per journey version and
    /// the step they stand at ([`Instance::standing_at`]), of one journey
    /// or all; kept up to date as commits land.
    fn standing(&self, journey: Option<&str>) -> Result<Vec<StandingCounts>>;
    /// Remove old records no instance holds on to: events received
    /// before `before_ms` that no remaining instance started, and
    /// customers' interactions and engagement from before it. Looks at up
    /// to `limit` records, going on where the last call stopped and round
    /// again after the end. Durable with the next commit. Returns how many were
    /// removed.
    fn purge_old_records(&self, before_ms: u64, limit: usize) -> Result<usize>;

    /// The events about `customer` the store keeps, in id order.
    fn customer_events(&self, customer: &str) -> Result<Vec<EventRecord>>;
    /// Remove what is kept about `customer` apart from their instances:
    /// profile, interactions, channel choices, engagement, counted sends,
    /// and each of their events that started no instance still kept (an
    /// anonymised instance's events are no longer theirs). Durable on
    /// return.
    fn forget_customer(&self, customer: &str) -> Result<ForgottenRecords>;
}
