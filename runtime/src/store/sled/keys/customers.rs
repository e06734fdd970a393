//! Keys of what is kept about customers: profiles, interactions,
//! channel choices, engagement, counted sends, their events and their
//! unfinished instances by journey.

use super::*;

/// The key of a customer's profile.
pub fn customer(id: &str) -> Vec<u8> {
    key(CUSTOMER, &[id.as_bytes()])
}

/// The key of interaction `seq` of a customer.
pub fn interaction(customer: &str, seq: u64) -> Vec<u8> {
    key(
        INTERACTION,
        &[customer.as_bytes(), &[0], &seq.to_be_bytes()],
    )
}

/// The sequence number at the end of an interaction or engagement key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The prefix of a customer's interactions.
pub fn interactions_of(customer: &str) -> Vec<u8> {
    key(INTERACTION, &[customer.as_bytes(), &[0]])
}

/// The key of an unfinished instance of `journey` about `customer`.
pub fn active(journey: &str, customer: &str, instance: InstanceId) -> Vec<u8> {
    key(
        ACTIVE,
        &[
            journey.as_bytes(),
            &[0],
            customer.as_bytes(),
            &[0],
            &instance.0.to_be_bytes(),
        ],
    )
}

/// The prefix of the unfinished instances of `journey` about `customer`.
pub fn active_of(journey: &str, customer: &str) -> Vec<u8> {
    key(
        ACTIVE,
        &[journey.as_bytes(), &[0], customer.as_bytes(), &[0]],
    )
}

/// The key of a customer's choice about `channel`.
pub fn preference(customer: &str, channel: &str) -> Vec<u8> {
    key(PREFERENCE, &[customer.as_bytes(), &[0], channel.as_bytes()])
}

/// The prefix of a customer's channel choices.
pub fn preferences_of(customer: &str) -> Vec<u8> {
    key(PREFERENCE, &[customer.as_bytes(), &[0]])
}

/// The key of a customer's engagement number `seq`.
pub fn engagement(customer: &str, seq: u64) -> Vec<u8> {
    key(ENGAGEMENT, &[customer.as_bytes(), &[0], &seq.to_be_bytes()])
}

/// The prefix of a customer's engagement.
pub fn engagement_of(customer: &str) -> Vec<u8> {
    key(ENGAGEMENT, &[customer.as_bytes(), &[0]])
}

/// The key of a message counted against `customer`'s cap on `channel`.
pub fn sent(
    customer: &str,
    channel: &str,
    at_ms: u64,
    instance: InstanceId,
    seq: u32,
    index: u32,
) -> Vec<u8> {
    key(
        SENT,
        &[
            customer.as_bytes(),
            &[0],
            channel.as_bytes(),
            &[0],
            &at_ms.to_be_bytes(),
            &instance.0.to_be_bytes(),
            &seq.to_be_bytes(),
            &index.to_be_bytes(),
        ],
    )
}

/// The prefix of the messages counted against `customer`'s cap on
/// `channel`, and the first key of those sent at or after `since_ms`.
pub fn sent_since(customer: &str, channel: &str, since_ms: u64) -> (Vec<u8>, Vec<u8>) {
    let prefix = key(SENT, &[customer.as_bytes(), &[0], channel.as_bytes(), &[0]]);
    let mut start = prefix.clone();
    start.extend_from_slice(&since_ms.to_be_bytes());
    (prefix, start)
}

/// When a counted message was sent, from its key under `prefix`.
pub fn sent_at_of(prefix: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(prefix)?;
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

/// The messages counted against any of `customer`'s caps.
pub fn sent_of(customer: &str) -> Vec<u8> {
    key(SENT, &[customer.as_bytes(), &[0]])
}

/// The instance a counted message was sent by, from its key (the key ends
/// `instance:u64 seq:u32 index:u32`).
pub fn sent_by_of(key: &[u8]) -> Option<InstanceId> {
    let end = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key.get(end.checked_sub(8)?..end)?.try_into().ok()?;
    Some(InstanceId(u64::from_be_bytes(bytes)))
}

/// The key indexing event `event` under its customer.
pub fn customer_event(customer: &str, event: &str) -> Vec<u8> {
    key(
        CUSTOMER_EVENT,
        &[customer.as_bytes(), &[0], event.as_bytes()],
    )
}

/// The prefix of a customer's events.
pub fn customer_events(customer: &str) -> Vec<u8> {
    key(CUSTOMER_EVENT, &[customer.as_bytes(), &[0]])
}

/// The event id of a key under `prefix` (from [`customer_events`]).
pub fn customer_event_of<'k>(prefix: &[u8], key: &'k [u8]) -> Option<&'k str> {
    std::str::from_utf8(key.strip_prefix(prefix)?).ok()
}

/// The customer of an interaction or engagement key.
pub fn customer_of(key: &[u8]) -> Option<&str> {
    let rest = key.get(1..key.len().checked_sub(9)?)?;
    std::str::from_utf8(rest).ok()
}
