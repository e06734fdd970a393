//! Funnel tallies: what instances add to their journey's drop-off report,
//! and how many stand at each step.
//!
//! Each instance has a [`FunnelMark`]: the few facts its counts derive
//! from (variant, steps reached, last step, status, the step it stands
//! at). A backend keeps the marks and moves the counts by the difference
//! as commits land, so the report and the journeys' standing counts are
//! read, never recomputed from histories. An instance removed by
//! retention leaves its counts behind in a tally kept per journey version
//! and start day, so the report (and its experiment variants) reads the
//! same before and after the purge.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{HistoryEntry, Instance, InstanceId, InstanceStatus};

/// The variant of instances that went through no split step.
pub const NO_VARIANT: &str = "-";

/// One step's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTally {
    /// Instances that ran it (or were sent on by it, for a split).
    pub reached: u64,
    /// Instances waiting (a sleep or an event) after it.
    pub waiting: u64,
    /// Instances that completed with it as their last step.
    pub completed_here: u64,
    /// Instances that failed at it.
    pub failed_here: u64,
    /// Instances an exit event ended after it (they left the journey).
    pub exited_here: u64,
    /// Instances an operator cancelled after it.
    pub cancelled_here: u64,
}

impl StepTally {
    fn add(&mut self, other: &StepTally) {
        self.reached += other.reached;
        self.waiting += other.waiting;
        self.completed_here += other.completed_here;
        self.failed_here += other.failed_here;
        self.exited_here += other.exited_here;
        self.cancelled_here += other.cancelled_here;
    }

    fn is_zero(&self) -> bool {
        *self == StepTally::default()
    }
}

/// Counts of instances, per variant and step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelTally {
    /// Instances counted.
    pub instances: u64,
    /// Per variant (`-` for instances that met no split), per step.
    pub variants: BTreeMap<String, BTreeMap<String, StepTally>>,
}

impl FunnelTally {
    /// What one instance adds, from its history: the steps it reached
    /// (each once, also in a loop), under the variant its split chose, and
    /// where it stands or ended.
    pub fn of_instance(instance: &Instance, history: &[HistoryEntry]) -> FunnelTally {
        FunnelMark::of_instance(instance, history).tally()
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &FunnelTally) {
        self.instances += other.instances;
        for (variant, steps) in &other.variants {
            let mine = self.variants.entry(variant.clone()).or_default();
            for (step, tally) in steps {
                mine.entry(step.clone()).or_default().add(tally);
            }
        }
    }

    /// Count one instance's `mark` in (`adds`) or out of these counts.
    pub fn count(&mut self, mark: &FunnelMark, adds: bool) {
        let by = |count: &mut u64| match adds {
            true => *count += 1,
            false => *count = count.saturating_sub(1),
        };
        by(&mut self.instances);
        let steps = variant_mut(&mut self.variants, &mark.variant);
        for step in &mark.reached {
            by(&mut step_mut(steps, step).reached);
        }
        if let Some(last) = &mark.last
            && let Some(field) = status_field(mark.status)
        {
            by(field(step_mut(steps, last)));
        }
        if !adds {
            *self = std::mem::take(self).pruned();
        }
    }

    /// Move one instance's counts from its mark `before` a change to its
    /// mark `after` it, both of this journey version and day. The usual
    /// change (a step more, a new status) touches two or three numbers.
    pub fn recount(&mut self, before: &FunnelMark, after: &FunnelMark) {
        if before.variant != after.variant || !after.reached.starts_with(&before.reached) {
            self.count(before, false);
            self.count(after, true);
            return;
        }
        let steps = variant_mut(&mut self.variants, &after.variant);
        for step in &after.reached[before.reached.len()..] {
            step_mut(steps, step).reached += 1;
        }
        if let Some(last) = &before.last
            && let Some(field) = status_field(before.status)
        {
            let tally = step_mut(steps, last);
            let count = field(tally);
            *count = count.saturating_sub(1);
            if tally.is_zero() {
                steps.remove(last);
            }
        }
        if let Some(last) = &after.last
            && let Some(field) = status_field(after.status)
        {
            *field(step_mut(steps, last)) += 1;
        }
    }

    /// These counts without steps and variants at nothing, so two
    /// tallies of the same instances compare equal however they were
    /// reached.
    pub fn pruned(mut self) -> FunnelTally {
        for steps in self.variants.values_mut() {
            steps.retain(|_, tally| !tally.is_zero());
        }
        self.variants.retain(|_, steps| !steps.is_empty());
        self
    }
}

/// The steps of `variant`, added if missing.
fn variant_mut<'a>(
    variants: &'a mut BTreeMap<String, BTreeMap<String, StepTally>>,
    variant: &str,
) -> &'a mut BTreeMap<String, StepTally> {
    if !variants.contains_key(variant) {
        variants.insert(variant.to_owned(), BTreeMap::new());
    }
    variants.get_mut(variant).expect("inserted above")
}

/// The counts of `step`, added if missing.
fn step_mut<'a>(steps: &'a mut BTreeMap<String, StepTally>, step: &str) -> &'a mut StepTally {
    if !steps.contains_key(step) {
        steps.insert(step.to_owned(), StepTally::default());
    }
    steps.get_mut(step).expect("inserted above")
}

/// The count an instance of `status` adds at its last step (none while it
/// runs).
fn status_field(status: InstanceStatus) -> Option<fn(&mut StepTally) -> &mut u64> {
    match status {
        InstanceStatus::Waiting => Some(|tally| &mut tally.waiting),
        InstanceStatus::Completed => Some(|tally| &mut tally.completed_here),
        InstanceStatus::Failed => Some(|tally| &mut tally.failed_here),
        InstanceStatus::Exited => Some(|tally| &mut tally.exited_here),
        InstanceStatus::Cancelled => Some(|tally| &mut tally.cancelled_here),
        InstanceStatus::Running => None,
    }
}

/// The facts one instance's counts derive from: its funnel tally
/// ([`FunnelMark::tally`]) and the step it stands at. A commit moves the
/// mark on by its entry and the instance after it ([`FunnelMark::took`]),
/// so a backend moves the counts by the difference without reading the
/// instance's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelMark {
    /// Its journey.
    pub journey: String,
    /// Its journey version (a migration moves it).
    pub version: u32,
    /// The day it started: midnight UTC, ms since the Unix epoch.
    pub day_ms: u64,
    /// The variant its last split chose ([`NO_VARIANT`] before any).
    pub variant: String,
    /// The steps it reached, each once, in the order first reached.
    pub reached: Vec<String>,
    /// The step it reached last.
    pub last: Option<String>,
    /// Its status.
    pub status: InstanceStatus,
    /// The step it stands at while unfinished (the one a running
    /// instance runs next, or the one a waiting instance waits at).
    pub standing: Option<String>,
}

impl FunnelMark {
    /// The mark of `instance` as it starts: no step reached yet.
    pub fn started(instance: &Instance) -> FunnelMark {
        let mut mark = FunnelMark {
            journey: instance.journey.clone(),
            version: instance.journey_version,
            day_ms: day_of(instance.created_at_ms),
            variant: NO_VARIANT.to_owned(),
            reached: Vec::new(),
            last: None,
            status: instance.status,
            standing: None,
        };
        mark.settle(instance);
        mark
    }

    /// The mark of `instance` with `history`, from the start.
    pub fn of_instance(instance: &Instance, history: &[HistoryEntry]) -> FunnelMark {
        let mut mark = FunnelMark::started(instance);
        for entry in history {
            mark.reach(entry);
        }
        mark.settle(instance);
        mark
    }

    /// The mark after the instance took `entry` and became `instance`.
    pub fn took(&self, entry: &HistoryEntry, instance: &Instance) -> FunnelMark {
        let mut mark = self.clone();
        mark.reach(entry);
        mark.settle(instance);
        mark
    }

    fn reach(&mut self, entry: &HistoryEntry) {
        let step = match entry {
            HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => &step.step,
            HistoryEntry::Split { step, variant, .. } => {
                self.variant.clone_from(variant);
                step
            }
            _ => return,
        };
        if !self.reached.contains(step) {
            self.reached.push(step.clone());
        }
        self.last = Some(step.clone());
    }

    fn settle(&mut self, instance: &Instance) {
        self.version = instance.journey_version;
        self.status = instance.status;
        self.standing = match instance.status.is_finished() {
            true => None,
            false => Some(instance.standing_at().unwrap_or_default().to_owned()),
        };
    }

    /// Where the live tally that counts it is kept.
    pub fn tally_key(&self) -> TallyKey {
        (self.journey.clone(), self.version, self.day_ms)
    }

    /// What the instance adds to its journey's report: the steps it
    /// reached under its variant, and where it stands or ended.
    pub fn tally(&self) -> FunnelTally {
        let mut steps: BTreeMap<String, StepTally> = BTreeMap::new();
        for step in &self.reached {
            steps.entry(step.clone()).or_default().reached += 1;
        }
        if let Some(tally) = self.last.as_ref().and_then(|last| steps.get_mut(last))
            && let Some(field) = status_field(self.status)
        {
            *field(tally) += 1;
        }
        FunnelTally {
            instances: 1,
            variants: BTreeMap::from([(self.variant.clone(), steps)]),
        }
    }
}

/// Unfinished instances of one journey version by the step they stand at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingCounts {
    /// The journey.
    pub journey: String,
    /// The version.
    pub version: u32,
    /// Instances by step (none listed at nothing).
    pub at: BTreeMap<String, u64>,
}

/// The tally of the instances of one journey version that started on one
/// day (those still kept, or those retention removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTally {
    /// The journey version.
    pub version: u32,
    /// The day they started: midnight UTC, ms since the Unix epoch.
    pub day_ms: u64,
    /// Their counts.
    pub tally: FunnelTally,
}

/// Where a live tally is kept: (journey, version, start day).
pub type TallyKey = (String, u32, u64);
/// Where standing counts are kept: (journey, version).
pub type StandingKey = (String, u32);

/// The count records one batch of commits moves, for a backend that
/// loads each record once (locking it), moves it by every mark the batch
/// changed, and writes it once: first [`CountBook::touched`] by each move,
/// then the records loaded, then [`CountBook::moved`] by each move in order.
#[derive(Debug, Clone, Default)]
pub struct CountBook {
    /// Live tallies.
    pub tallies: HashMap<TallyKey, FunnelTally>,
    /// Standing counts.
    pub standing: HashMap<StandingKey, BTreeMap<String, u64>>,
}

impl CountBook {
    /// Add the records a move from `before` to `after` touches to `tallies`
    /// and `standing` (sorted: a backend locks them in this order).
    pub fn touched(
        before: Option<&FunnelMark>,
        after: Option<&FunnelMark>,
        tallies: &mut BTreeSet<TallyKey>,
        standing: &mut BTreeSet<StandingKey>,
    ) {
        for mark in before.into_iter().chain(after) {
            tallies.insert(mark.tally_key());
            if mark.standing.is_some() {
                standing.insert((mark.journey.clone(), mark.version));
            }
        }
    }

    /// Take what `before` counted away and add what `after` counts (an
    /// instance started, changed, or removed).
    pub fn moved(&mut self, before: Option<&FunnelMark>, after: Option<&FunnelMark>) {
        match (before, after) {
            (Some(before), Some(after)) if before.tally_key() == after.tally_key() => {
                self.tallies
                    .entry(after.tally_key())
                    .or_default()
                    .recount(before, after);
            }
            _ => {
                for (mark, adds) in before
                    .map(|m| (m, false))
                    .into_iter()
                    .chain(after.map(|m| (m, true)))
                {
                    self.tallies
                        .entry(mark.tally_key())
                        .or_default()
                        .count(mark, adds);
                }
            }
        }
        let standing_of = |mark: Option<&FunnelMark>| {
            mark.and_then(|mark| {
                Some(((mark.journey.clone(), mark.version), mark.standing.clone()?))
            })
        };
        let (was, is) = (standing_of(before), standing_of(after));
        if was == is {
            return;
        }
        if let Some((key, step)) = was {
            let at = self.standing.entry(key).or_default();
            if let Some(count) = at.get_mut(&step) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    at.remove(&step);
                }
            }
        }
        if let Some((key, step)) = is {
            *self
                .standing
                .entry(key)
                .or_default()
                .entry(step)
                .or_default() += 1;
        }
    }
}

/// A day's start (midnight UTC) for a time, ms since the Unix epoch.
pub fn day_of(at_ms: u64) -> u64 {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    at_ms - at_ms % DAY_MS
}

/// A finished instance to remove, as the purger found it.
#[derive(Debug, Clone, Copy)]
pub struct Purge {
    /// The instance.
    pub instance: InstanceId,
    /// When it finished (its last change), as found: if it changed since
    /// (an operator retried it), it is not removed.
    pub finished_at_ms: u64,
}
