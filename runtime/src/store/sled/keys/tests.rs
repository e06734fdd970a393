//! The key layout's properties: order, round trips, one prefix per kind.

use super::*;

#[test]
fn every_record_kind_has_a_prefix_of_its_own() {
    let mut prefixes: Vec<u8> = KINDS.iter().map(|(prefix, _)| *prefix).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    assert_eq!(prefixes.len(), KINDS.len(), "two kinds share a prefix");
    assert_eq!(kind_of(&instance(InstanceId(1))), "instance");
    assert_eq!(kind_of(b""), "other");
}

#[test]
fn finished_keys_sort_by_time_within_a_journey_and_round_trip() {
    let (prefix, end) = finished_before("enquiry", 2_000);
    let early = finished("enquiry", 1_000, InstanceId(9));
    let late = finished("enquiry", 2_000, InstanceId(1));
    assert!(early < end && end <= late);
    assert!(
        early.starts_with(&prefix) && !finished("enquiry2", 1, InstanceId(1)).starts_with(&prefix)
    );
    assert_eq!(finished_of(&prefix, &early), Some((1_000, InstanceId(9))));
    let prefix = tallies_of("enquiry");
    assert_eq!(
        tally_of(&prefix, &tally("enquiry", 3, 86_400_000)),
        Some((3, 86_400_000))
    );
    let prefix = customer_events("c-1");
    assert_eq!(
        customer_event_of(&prefix, &customer_event("c-1", "evt-9")),
        Some("evt-9")
    );
    assert!(!customer_event("c-10", "evt-9").starts_with(&prefix));
    let counted = sent("c-1", "sms", 5, InstanceId(42), 3, 0);
    assert!(counted.starts_with(&sent_of("c-1")));
    assert_eq!(sent_by_of(&counted), Some(InstanceId(42)));
}

#[test]
fn sent_keys_sort_by_time_within_a_customer_and_channel() {
    let (prefix, start) = sent_since("c-1", "sms", 1_000);
    let before = sent("c-1", "sms", 999, InstanceId(5), 1, 0);
    let after = sent("c-1", "sms", 1_000, InstanceId(1), 1, 0);
    assert!(before < start && start <= after);
    assert!(after.starts_with(&prefix));
    assert!(!sent("c-1", "smsx", 1_000, InstanceId(1), 1, 0).starts_with(&prefix));
    assert!(!sent("c-10", "sms", 1_000, InstanceId(1), 1, 0).starts_with(&prefix));
    assert_eq!(sent_at_of(&prefix, &after), Some(1_000));
    assert!(active("webinar", "c-1", InstanceId(3)).starts_with(&active_of("webinar", "c-1")));
    assert!(!active("webinar", "c-10", InstanceId(3)).starts_with(&active_of("webinar", "c-1")));
}

#[test]
fn due_keys_sort_by_time_and_lead_back_to_their_message() {
    let message = outbox(InstanceId(9), 2, 1);
    let early = outbox_due(1_000, &message);
    let late = outbox_due(2_000, &outbox(InstanceId(1), 1, 0));
    assert!(early < late);
    assert!(outbox_due_until(1_000).contains(&early));
    assert!(!outbox_due_until(1_999).contains(&late));
    assert_eq!(outbox_of_due(&early), Some(message.clone()));
    assert!(delivery(&message).ends_with(&message[1..]));
}

#[test]
fn instance_keys_round_trip_and_sort_numerically() {
    let small = instance(InstanceId(2));
    let large = instance(InstanceId(300));
    assert!(small < large, "big-endian ids sort numerically");
    assert_eq!(instance_id_of(&large), Some(InstanceId(300)));
    assert_eq!(instance_id_of(&history(InstanceId(300), 1)), None);
}

#[test]
fn history_sorts_by_sequence_within_an_instance() {
    let id = InstanceId(7);
    let keys: Vec<_> = [0u32, 1, 255, 256, 70_000]
        .iter()
        .map(|&seq| history(id, seq))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(keys.iter().all(|key| key.starts_with(&history_of(id))));
    assert!(!history(InstanceId(8), 0).starts_with(&history_of(id)));
    assert!(history_archive(id) < history(id, 0));
    assert!(history_archive(id).starts_with(&history_of(id)));
    assert!(history(InstanceId(6), u32::MAX) < history_archive(id));
}

#[test]
fn correlation_prefix_does_not_match_a_longer_value() {
    let id = InstanceId(9);
    let entry = correlation("enquiry", "q-1", id);
    assert!(entry.starts_with(&correlated("enquiry", "q-1")));
    assert!(!entry.starts_with(&correlated("enquiry", "q-")));
    assert!(!correlation("enquiry", "q-10", id).starts_with(&correlated("enquiry", "q-1")));
    assert_eq!(correlated_id_of(&entry), Some(id));
}

#[test]
fn versions_sort_numerically_and_names_do_not_overlap() {
    assert!(journey("enquiry", 2) < journey("enquiry", 10));
    assert!(plugin("ack", 9) < plugin("ack", 256));
    assert!(!plugin("acknowledge", 1).starts_with(&plugin_versions("ack")));
    assert!(journey("a", 1).starts_with(&journeys()));
}

#[test]
fn interaction_keys_sort_by_sequence_and_round_trip() {
    let (early, late) = (interaction("c-1", 9), interaction("c-1", 300));
    assert!(early < late);
    assert!(late.starts_with(&interactions_of("c-1")));
    assert!(!interaction("c-10", 1).starts_with(&interactions_of("c-1")));
    assert_eq!(seq_of(&late), Some(300));
}

#[test]
fn tag_changes_sort_in_order_and_plugins_do_not_overlap() {
    assert!(tag_change("classify", 9) < tag_change("classify", 300));
    assert!(tag_change("classify", 1).starts_with(&tag_changes_of("classify")));
    assert!(!tag_change("classify2", 1).starts_with(&tag_changes_of("classify")));
    assert!(tag("classify", "stable").starts_with(&tags()));
    assert!(version_stats("ack", 2) < version_stats("ack", 10));
}

#[test]
fn timers_sort_by_due_time_and_round_trip() {
    let early = timer(1_000, InstanceId(900));
    let late = timer(70_000, InstanceId(2));
    assert!(early < late, "due time first, whatever the instance");
    assert_eq!(timer_of(&late), Some((70_000, InstanceId(2))));
    assert!(late.starts_with(&timers()));
    assert_eq!(timer_of(&instance(InstanceId(1))), None);
}

#[test]
fn wait_keys_do_not_match_a_longer_correlation() {
    let id = InstanceId(4);
    let entry = wait("registered", "customer=c-1", id);
    assert!(entry.starts_with(&waiting("registered", "customer=c-1")));
    assert!(!entry.starts_with(&waiting("registered", "customer=c-")));
    assert!(
        !wait("registered", "customer=c-10", id)
            .starts_with(&waiting("registered", "customer=c-1"))
    );
    assert_eq!(trailing_instance_of(&entry), Some(id));
}

#[test]
fn running_marker_round_trips() {
    assert_eq!(
        running_id_of(&running(InstanceId(u64::MAX))),
        Some(InstanceId(u64::MAX))
    );
}

#[test]
fn display_escapes_binary() {
    assert_eq!(
        display(&instance(InstanceId(1))),
        "I\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
    );
}

#[test]
fn derived_count_keys_round_trip_and_keep_journeys_apart() {
    let prefix = live_tallies_of("enquiry");
    let key = live_tally("enquiry", 2, 86_400_000);
    assert_eq!(tally_of(&prefix, &key), Some((2, 86_400_000)));
    assert!(!live_tally("enquiry2", 2, 1).starts_with(&prefix));
    assert!(!tally("enquiry", 2, 86_400_000).starts_with(&prefix));
    let key = standing("enquiry", 7);
    assert_eq!(standing_key_of(&key), Some(("enquiry", 7)));
    assert!(key.starts_with(&standing_of(Some("enquiry"))));
    assert!(!standing("enquiry2", 7).starts_with(&standing_of(Some("enquiry"))));
    assert!(key.starts_with(&standing_of(None)));
    assert_eq!(kind_of(&mark(InstanceId(3))), "funnel_mark");
}
