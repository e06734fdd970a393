//! The drop-off report of a journey: for each step, how many instances
//! reached it, are waiting after it, or ended there (completed, failed, or
//! left through an exit event), by experiment variant.
//!
//! The store keeps the counts as commits land, per journey version and
//! the day instances started: those of instances still kept
//! ([`store::Journal::live_tallies`]) and those retention removed left
//! behind ([`store::Journal::purged_tallies`]). A report adds up the days
//! in scope, so it costs the same at any number of instances and reads
//! the same before and after a purge.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{self, FunnelTally, StepTally, Store, day_of};

/// One step's line of the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepCounts {
    /// The step.
    pub step: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: StepTally,
}

/// Which instances a report counts: those of one version, or started in
/// a time range (each optional). Instances are counted by the day (UTC)
/// they started, so a range counts every day it touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunnelScope {
    /// Only this journey version.
    pub version: Option<u32>,
    /// Only instances started on the day of this time or later, ms since
    /// the Unix epoch.
    pub since_ms: Option<u64>,
    /// Only instances started on a day that begins before this, ms since
    /// the Unix epoch.
    pub until_ms: Option<u64>,
}

impl FunnelScope {
    /// Whether the instances of `version` that started on the day
    /// beginning `day_ms` are in scope.
    fn counts(&self, version: u32, day_ms: u64) -> bool {
        self.version.is_none_or(|wanted| wanted == version)
            && self.since_ms.is_none_or(|since| day_ms >= day_of(since))
            && self.until_ms.is_none_or(|until| day_ms < until)
    }
}

/// The drop-off report of one journey.
#[derive(Debug, Clone, Serialize)]
pub struct Funnel {
    /// The journey.
    pub journey: String,
    /// Instances counted (purged ones included).
    pub instances: u64,
    /// Of those, instances retention has removed.
    pub purged: u64,
    /// Per variant (`-` for instances that met no split): one line per
    /// step, in the journey's order.
    pub variants: BTreeMap<String, Vec<StepCounts>>,
}

/// Build the report of the instances of `journey` in `scope`, whose
/// steps, in order, are `steps`.
pub fn funnel(
    store: &dyn Store,
    journey: &str,
    steps: &[String],
    scope: &FunnelScope,
) -> store::Result<Funnel> {
    let mut total = FunnelTally::default();
    for purged in store.purged_tallies(journey)? {
        if scope.counts(purged.version, purged.day_ms) {
            total.add(&purged.tally);
        }
    }
    let purged = total.instances;
    for live in store.live_tallies(journey)? {
        if scope.counts(live.version, live.day_ms) {
            total.add(&live.tally);
        }
    }
    let variants = total
        .variants
        .into_iter()
        .map(|(variant, mut counted)| {
            let lines = steps
                .iter()
                .map(|step| StepCounts {
                    step: step.clone(),
                    counts: counted.remove(step).unwrap_or_default(),
                })
                .collect();
            (variant, lines)
        })
        .collect();
    Ok(Funnel {
        journey: journey.to_owned(),
        instances: total.instances,
        purged,
        variants,
    })
}
