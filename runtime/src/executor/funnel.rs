//! The drop-off report of a journey: for each step, how many instances
//! reached it, are waiting after it, or ended there (completed, failed, or
//! left through an exit event), by experiment variant.
//!
//! Computed from instances and their histories on request (an operator's
//! report, not a step-path cost).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{self, HistoryEntry, InstanceFilter, InstanceStatus, Store};

/// Instances read per page while building a report.
const PAGE: usize = 1_000;
/// The variant of instances that went through no split step.
pub const NO_VARIANT: &str = "-";

/// One step's line of the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepCounts {
    /// The step.
    pub step: String,
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

/// The drop-off report of one journey.
#[derive(Debug, Clone, Serialize)]
pub struct Funnel {
    /// The journey.
    pub journey: String,
    /// Instances counted.
    pub instances: u64,
    /// Per variant (`-` for instances that met no split): one line per
    /// step, in the journey's order.
    pub variants: BTreeMap<String, Vec<StepCounts>>,
}

/// Build the report of `journey` whose steps, in order, are `steps`.
pub fn funnel(store: &dyn Store, journey: &str, steps: &[String]) -> store::Result<Funnel> {
    let mut report = Funnel {
        journey: journey.to_owned(),
        instances: 0,
        variants: BTreeMap::new(),
    };
    let mut after = None;
    loop {
        let page = store.instances(&InstanceFilter {
            journey: Some(journey.to_owned()),
            status: None,
            after,
            limit: PAGE,
        })?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        for instance in &page {
            report.instances += 1;
            let mut variant = NO_VARIANT.to_owned();
            let mut reached = Vec::new();
            for entry in store.history(instance.id)? {
                match entry {
                    HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => {
                        reached.push(step.step)
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
            let last = reached.last().cloned();
            // An instance that ran a step more than once (a loop) counts
            // once for it.
            let mut counted = std::collections::HashSet::new();
            reached.retain(|step| counted.insert(step.clone()));
            let lines = report.variants.entry(variant).or_insert_with(|| {
                steps
                    .iter()
                    .map(|step| StepCounts {
                        step: step.clone(),
                        ..StepCounts::default()
                    })
                    .collect()
            });
            for step in &reached {
                if let Some(line) = lines.iter_mut().find(|line| &line.step == step) {
                    line.reached += 1;
                }
            }
            let Some(line) = last
                .as_ref()
                .and_then(|last| lines.iter_mut().find(|line| &line.step == last))
            else {
                continue;
            };
            match instance.status {
                InstanceStatus::Waiting => line.waiting += 1,
                InstanceStatus::Completed => line.completed_here += 1,
                InstanceStatus::Failed => line.failed_here += 1,
                InstanceStatus::Exited => line.exited_here += 1,
                InstanceStatus::Cancelled => line.cancelled_here += 1,
                InstanceStatus::Running => {}
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(report)
}
