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

use crate::store::{self, FunnelTally, InstanceFilter, StepTally, Store};

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

/// Build the report of `journey` whose steps, in order, are `steps`.
pub fn funnel(store: &dyn Store, journey: &str, steps: &[String]) -> store::Result<Funnel> {
    let mut total = FunnelTally::default();
    for purged in store.purged_tallies(journey)? {
        total.add(&purged.tally);
    }
    let purged = total.instances;
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
