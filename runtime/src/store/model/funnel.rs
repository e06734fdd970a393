//! Funnel tallies: what instances add to their journey's drop-off report.
//!
//! The report counts live instances from their histories; an instance
//! removed by retention leaves its counts behind in a tally kept per
//! journey version and start day, so the report (and its experiment
//! variants) reads the same before and after the purge.

use std::collections::{BTreeMap, HashSet};

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
        let mut variant = NO_VARIANT;
        let mut reached: Vec<&str> = Vec::new();
        for entry in history {
            match entry {
                HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => {
                    reached.push(&step.step)
                }
                HistoryEntry::Split {
                    step,
                    variant: chosen,
                    ..
                } => {
                    reached.push(step);
                    variant = chosen;
                }
                _ => {}
            }
        }
        let last = reached.last().copied();
        let mut counted = HashSet::new();
        reached.retain(|step| counted.insert(*step));
        let mut steps: BTreeMap<String, StepTally> = BTreeMap::new();
        for step in reached {
            steps.entry(step.to_owned()).or_default().reached += 1;
        }
        if let Some(tally) = last.and_then(|last| steps.get_mut(last)) {
            match instance.status {
                InstanceStatus::Waiting => tally.waiting += 1,
                InstanceStatus::Completed => tally.completed_here += 1,
                InstanceStatus::Failed => tally.failed_here += 1,
                InstanceStatus::Exited => tally.exited_here += 1,
                InstanceStatus::Cancelled => tally.cancelled_here += 1,
                InstanceStatus::Running => {}
            }
        }
        FunnelTally {
            instances: 1,
            variants: BTreeMap::from([(variant.to_owned(), steps)]),
        }
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
}

/// The tally of purged instances of one journey version that started on
/// one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedTally {
    /// The journey version.
    pub version: u32,
    /// The day they started: midnight UTC, ms since the Unix epoch.
    pub day_ms: u64,
    /// Their counts.
    pub tally: FunnelTally,
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
