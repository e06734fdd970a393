//! The drop-off report of a journey: for each step, how many instances
//! reached it, are waiting after it, or ended there (completed, failed, or
//! left through an exit event), by experiment variant.
//!
//! Live instances are counted from their histories on request (an
//! operator's report, not a step-path cost); instances retention removed
//! are counted from the tallies they left behind
//! ([`store::Journal::purged_tallies`]), so the report reads the same
//! before and after a purge.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{self, FunnelTally, Instance, InstanceFilter, StepTally, Store, day_of};

/// Instances read per page while building a report.
const PAGE: usize = 1_000;

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
/// a time range (each optional). Instances retention removed are counted
/// by the day they started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunnelScope {
    /// Only this journey version.
    pub version: Option<u32>,
    /// Only instances started at or after this, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Only instances started before this, ms since the Unix epoch.
    pub until_ms: Option<u64>,
}

impl FunnelScope {
    fn counts(&self, instance: &Instance) -> bool {
        self.version
            .is_none_or(|version| instance.journey_version == version)
            && self
                .since_ms
                .is_none_or(|since| instance.created_at_ms >= since)
            && self
                .until_ms
                .is_none_or(|until| instance.created_at_ms < until)
    }

    /// Whether the purged instances of `version` that started on the day
    /// beginning `day_ms` are in scope.
    fn counts_purged(&self, version: u32, day_ms: u64) -> bool {
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
        if scope.counts_purged(purged.version, purged.day_ms) {
            total.add(&purged.tally);
        }
    }
    let purged = total.instances;
    let mut after = None;
    loop {
        let page = store.instances(&InstanceFilter {
            journey: Some(journey.to_owned()),
            status: None,
            after,
            limit: PAGE,
            ..InstanceFilter::default()
        })?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        for instance in page.iter().filter(|instance| scope.counts(instance)) {
            total.add(&FunnelTally::of_instance(
                instance,
                &store.history(instance.id)?,
            ));
        }
        if page.len() < PAGE {
            break;
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
