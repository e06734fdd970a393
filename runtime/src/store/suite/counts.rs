//! The counts a backend keeps as commits land (live funnel tallies and
//! standing counts) must equal what the instances and their histories
//! say, read from scratch.

use std::collections::BTreeMap;

use super::*;

/// The live tallies and standing counts of every journey equal their
/// recomputation from every instance kept and its history.
pub(super) fn counts_equal_their_recomputation(store: &dyn Store, when: &str) {
    let mut tallies: BTreeMap<(String, u32, u64), FunnelTally> = BTreeMap::new();
    let mut standing: BTreeMap<(String, u32), BTreeMap<String, u64>> = BTreeMap::new();
    for instance in store
        .instances(&InstanceFilter {
            limit: usize::MAX,
            ..InstanceFilter::default()
        })
        .expect("list instances")
    {
        let history = store.history(instance.id).expect("history");
        let mark = FunnelMark::of_instance(&instance, &history);
        tallies
            .entry((instance.journey.clone(), mark.version, mark.day_ms))
            .or_default()
            .add(&mark.tally());
        if let Some(step) = mark.standing {
            *standing
                .entry((instance.journey.clone(), mark.version))
                .or_default()
                .entry(step)
                .or_default() += 1;
        }
    }
    let journeys: std::collections::BTreeSet<&String> =
        tallies.keys().map(|(journey, _, _)| journey).collect();
    for journey in journeys {
        let kept: BTreeMap<(u32, u64), FunnelTally> = store
            .live_tallies(journey)
            .expect("live tallies")
            .into_iter()
            .map(|day| ((day.version, day.day_ms), day.tally.pruned()))
            .filter(|(_, tally)| tally.instances > 0)
            .collect();
        let expected: BTreeMap<(u32, u64), FunnelTally> = tallies
            .iter()
            .filter(|((name, _, _), _)| name == journey)
            .map(|((_, version, day), tally)| ((*version, *day), tally.clone().pruned()))
            .collect();
        assert_eq!(
            kept, expected,
            "{when}: the live funnel tallies of `{journey}` differ from their recomputation"
        );
    }
    let kept: BTreeMap<(String, u32), BTreeMap<String, u64>> = store
        .standing(None)
        .expect("standing counts")
        .into_iter()
        .filter(|counts| !counts.at.is_empty())
        .map(|counts| ((counts.journey, counts.version), counts.at))
        .collect();
    assert_eq!(
        kept, standing,
        "{when}: the standing counts differ from the instances"
    );
    for (journey, _) in standing.keys() {
        let one: Vec<StandingCounts> = store.standing(Some(journey)).expect("standing of one");
        assert!(
            one.iter().all(|counts| &counts.journey == journey),
            "{when}: standing counts of `{journey}` name another journey"
        );
    }
}
