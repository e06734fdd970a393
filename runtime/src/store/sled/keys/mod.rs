//! Key encoding for the sled backend: the only place that knows the layout.
//!
//! Every key starts with a one-byte prefix naming its record kind. Numbers
//! are big-endian so byte order is numeric order; strings are followed by a
//! `0x00` separator when something comes after them, which is why names and
//! ids must not contain NUL (the API rejects them). Prefix scans therefore
//! return records in the order the runtime reads them: history by sequence,
//! instances and outbox messages by id, versions in ascending order.
//!
//! This file holds the prefixes and the journal's keys; `catalog.rs` and
//! `customers.rs` the keys of those areas; `tests.rs` the layout's
//! properties.

mod catalog;
mod customers;
#[cfg(test)]
mod tests;

pub use self::catalog::*;
pub use self::customers::*;
use crate::store::InstanceId;

/// Accepted events by id: `E id`.
const EVENT: u8 = b'E';
/// Instances by id: `I id:u64`.
const INSTANCE: u8 = b'I';
/// History entries: `H instance:u64 seq:u32`; a finished instance's
/// entries are folded into one record at `H instance:u64` (see
/// [`history_archive`]), which sorts before the instance's other entries.
const HISTORY: u8 = b'H';
/// Outbox messages: `O instance:u64 step-seq:u32 index:u32`. The key is
/// derived from the message's idempotent id, so a step committed again could
/// only overwrite its own messages, never add copies.
const OUTBOX: u8 = b'O';
/// Messages due for delivery, by when: `U due-ms:u64 instance:u64
/// step-seq:u32 index:u32` (the message's outbox key after the time).
const OUTBOX_DUE: u8 = b'U';
/// Deliveries of messages once marked: `D instance:u64 step-seq:u32
/// index:u32` (a message with none is queued).
const DELIVERY: u8 = b'D';
/// Instances that still have a step to run: `R instance:u64`.
const RUNNING: u8 = b'R';
/// Correlation index: `X journey 0 correlation 0 instance:u64`.
const CORRELATION: u8 = b'X';
/// Customer profiles: `C customer`.
const CUSTOMER: u8 = b'C';
/// Customer interactions: `N customer 0 seq:u64`.
const INTERACTION: u8 = b'N';
/// Journey versions: `J name 0 version:u32`.
const JOURNEY: u8 = b'J';
/// Plugin versions: `P name 0 version:u32`.
const PLUGIN: u8 = b'P';
/// Plugin bytes by digest: `B digest`.
const BLOB: u8 = b'B';
/// Plugin tags: `T plugin 0 tag`.
const TAG: u8 = b'T';
/// Every change of a plugin tag: `G plugin 0 seq:u64`.
const TAG_CHANGE: u8 = b'G';
/// Run counts per plugin version: `S plugin 0 version:u32`.
const VERSION_STATS: u8 = b'S';
/// Journey migrations: `M journey 0 from-version:u32`.
const MIGRATION: u8 = b'M';
/// Timers of waiting instances, in due order: `W due-ms:u64 instance:u64`.
const TIMER: u8 = b'W';
/// Instances waiting for an event: `V kind 0 correlation 0 instance:u64`.
const WAIT: u8 = b'V';
/// Runtime settings kept across starts: `K name`.
const META: u8 = b'K';
/// Unfinished instances of journeys that look them up by customer (single
/// re-entry, exit events): `A journey 0 customer 0 instance:u64`.
const ACTIVE: u8 = b'A';
/// Instances an exit event must still end (its exit lost to a step and is
/// retried): `Q instance:u64`, holding the event id.
const PENDING_EXIT: u8 = b'Q';
/// Channel opt-ins: `Y customer 0 channel`.
const PREFERENCE: u8 = b'Y';
/// Engagement: `Z customer 0 seq:u64`.
const ENGAGEMENT: u8 = b'Z';
/// Messages counted against a frequency cap, in time order per customer
/// and channel: `F customer 0 channel 0 at-ms:u64 instance:u64 seq:u32 index:u32`.
const SENT: u8 = b'F';

/// The catalog's version (a sled id, moved by every catalog write): `v`.
const CATALOG_VERSION: u8 = b'v';
/// Integration, by channel.
const INTEGRATION: u8 = b'i';
/// API token, by name.
const TOKEN: u8 = b't';
/// Provider message id (per integration) → outbox key of the message.
const PROVIDER_ID: u8 = b'p';
/// Compression dictionaries of the record codec: `d id:u32`.
const DICTIONARY: u8 = b'd';
/// Finished instances by when they finished, per journey (what retention
/// removes): `L journey 0 finished-ms:u64 instance:u64`.
const FINISHED: u8 = b'L';
/// Funnel counts of purged instances: `g journey 0 version:u32 day-ms:u64`.
const TALLY: u8 = b'g';
/// Funnel counts of instances still kept, laid out as [`TALLY`]:
/// `f journey 0 version:u32 day-ms:u64`.
const LIVE_TALLY: u8 = b'f';
/// Each instance's funnel mark (what its counts derive from): `m id:u64`.
const MARK: u8 = b'm';
/// Unfinished instances by the step they stand at, per journey version:
/// `s journey 0 version:u32`.
const STANDING: u8 = b's';
/// Events by customer (what forgetting a customer finds their events and
/// instances by): `c customer 0 event-id`.
const CUSTOMER_EVENT: u8 = b'c';
/// The audit log, in order: `a seq:u64`.
const AUDIT: u8 = b'a';

/// Each record kind's name, by prefix (what a backup counts).
const KINDS: [(u8, &str); 37] = [
    (EVENT, "event"),
    (INSTANCE, "instance"),
    (HISTORY, "history"),
    (OUTBOX, "outbox_message"),
    (OUTBOX_DUE, "outbox_due"),
    (DELIVERY, "delivery"),
    (RUNNING, "running"),
    (CORRELATION, "correlation"),
    (CUSTOMER, "customer"),
    (INTERACTION, "interaction"),
    (JOURNEY, "journey_version"),
    (PLUGIN, "plugin_version"),
    (BLOB, "plugin_bytes"),
    (TAG, "tag"),
    (TAG_CHANGE, "tag_change"),
    (VERSION_STATS, "version_stats"),
    (MIGRATION, "migration"),
    (TIMER, "timer"),
    (WAIT, "event_wait"),
    (META, "setting"),
    (ACTIVE, "active_by_customer"),
    (PENDING_EXIT, "pending_exit"),
    (PREFERENCE, "channel_choice"),
    (ENGAGEMENT, "engagement"),
    (SENT, "counted_send"),
    (CATALOG_VERSION, "catalog_version"),
    (INTEGRATION, "integration"),
    (TOKEN, "token"),
    (PROVIDER_ID, "provider_id"),
    (DICTIONARY, "codec_dictionary"),
    (FINISHED, "finished_index"),
    (TALLY, "funnel_tally"),
    (LIVE_TALLY, "live_funnel_tally"),
    (MARK, "funnel_mark"),
    (STANDING, "standing_count"),
    (CUSTOMER_EVENT, "event_by_customer"),
    (AUDIT, "audit"),
];

/// The name of the kind of record at `key` (`other` for keys that are
/// not the runtime's).
pub fn kind_of(key: &[u8]) -> &'static str {
    let prefix = key.first().copied().unwrap_or(0);
    KINDS
        .iter()
        .find(|(kind, _)| *kind == prefix)
        .map_or("other", |(_, name)| name)
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut key = Vec::with_capacity(len);
    key.push(prefix);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// The key of an accepted event.
pub fn event(id: &str) -> Vec<u8> {
    key(EVENT, &[id.as_bytes()])
}

/// The prefix of all accepted events.
pub fn events() -> Vec<u8> {
    vec![EVENT]
}

/// The key of an instance.
pub fn instance(id: InstanceId) -> Vec<u8> {
    key(INSTANCE, &[&id.0.to_be_bytes()])
}

/// The prefix of all instances.
pub fn instances() -> Vec<u8> {
    vec![INSTANCE]
}

/// The instance id in an instance key.
pub fn instance_id_of(key: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 8] = key.strip_prefix(&[INSTANCE])?.try_into().ok()?;
    Some(InstanceId(u64::from_be_bytes(bytes)))
}

/// The key of history entry `seq` of an instance.
pub fn history(id: InstanceId, seq: u32) -> Vec<u8> {
    key(HISTORY, &[&id.0.to_be_bytes(), &seq.to_be_bytes()])
}

/// The prefix of an instance's history.
pub fn history_of(id: InstanceId) -> Vec<u8> {
    key(HISTORY, &[&id.0.to_be_bytes()])
}

/// The key of the record that holds a finished instance's first entries,
/// in order (the entries it took later, when an operator brought it back,
/// follow under their own keys). It is the history's prefix itself, so a
/// scan of the history meets it first.
pub fn history_archive(id: InstanceId) -> Vec<u8> {
    history_of(id)
}

/// The key of message `index` queued by the step that wrote history entry
/// `seq` of an instance.
pub fn outbox(id: InstanceId, seq: u32, index: u32) -> Vec<u8> {
    key(
        OUTBOX,
        &[
            &id.0.to_be_bytes(),
            &seq.to_be_bytes(),
            &index.to_be_bytes(),
        ],
    )
}

/// The prefix of one instance's outbox messages.
pub fn outbox_of(id: InstanceId) -> Vec<u8> {
    key(OUTBOX, &[&id.0.to_be_bytes()])
}

/// The prefix of the outbox.
pub fn outbox_all() -> Vec<u8> {
    vec![OUTBOX]
}

/// The key that makes the message with outbox key `outbox` due at `due_ms`.
pub fn outbox_due(due_ms: u64, outbox: &[u8]) -> Vec<u8> {
    let slot = outbox.strip_prefix(&[OUTBOX]).unwrap_or(outbox);
    key(OUTBOX_DUE, &[&due_ms.to_be_bytes(), slot])
}

/// The range of due keys up to and including `now_ms`.
pub fn outbox_due_until(now_ms: u64) -> std::ops::RangeInclusive<Vec<u8>> {
    vec![OUTBOX_DUE]..=key(OUTBOX_DUE, &[&now_ms.to_be_bytes(), &[0xff; 16]])
}

/// The prefix of the due index.
pub fn outbox_due_all() -> Vec<u8> {
    vec![OUTBOX_DUE]
}

/// The due time of a due key.
pub fn due_of(due: &[u8]) -> Option<u64> {
    let rest = due.strip_prefix(&[OUTBOX_DUE])?;
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

/// The outbox key of a due key.
pub fn outbox_of_due(due: &[u8]) -> Option<Vec<u8>> {
    let slot = due.strip_prefix(&[OUTBOX_DUE])?.get(8..)?;
    (slot.len() == 16).then(|| key(OUTBOX, &[slot]))
}

/// The key of the delivery of the message with outbox key `outbox`.
pub fn delivery(outbox: &[u8]) -> Vec<u8> {
    let slot = outbox.strip_prefix(&[OUTBOX]).unwrap_or(outbox);
    key(DELIVERY, &[slot])
}

/// The key of the index entry naming the message integration
/// `integration`'s provider calls `provider_id`.
pub fn provider_id(integration: &str, provider_id: &str) -> Vec<u8> {
    key(
        PROVIDER_ID,
        &[integration.as_bytes(), &[0], provider_id.as_bytes()],
    )
}

/// The marker of an instance that still has a step to run.
pub fn running(id: InstanceId) -> Vec<u8> {
    key(RUNNING, &[&id.0.to_be_bytes()])
}

/// The prefix of all running markers.
pub fn running_all() -> Vec<u8> {
    vec![RUNNING]
}

/// The instance id in a running marker.
pub fn running_id_of(key: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 8] = key.strip_prefix(&[RUNNING])?.try_into().ok()?;
    Some(InstanceId(u64::from_be_bytes(bytes)))
}

/// The correlation index entry of an instance.
pub fn correlation(journey: &str, correlation: &str, id: InstanceId) -> Vec<u8> {
    key(
        CORRELATION,
        &[
            journey.as_bytes(),
            &[0],
            correlation.as_bytes(),
            &[0],
            &id.0.to_be_bytes(),
        ],
    )
}

/// The prefix of the instances with one correlation value.
pub fn correlated(journey: &str, correlation: &str) -> Vec<u8> {
    key(
        CORRELATION,
        &[journey.as_bytes(), &[0], correlation.as_bytes(), &[0]],
    )
}

/// The instance id at the end of a correlation index key.
pub fn correlated_id_of(key: &[u8]) -> Option<InstanceId> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(InstanceId(u64::from_be_bytes(tail)))
}

/// The key of the timer that wakes `instance` at `due_ms`.
pub fn timer(due_ms: u64, instance: InstanceId) -> Vec<u8> {
    key(TIMER, &[&due_ms.to_be_bytes(), &instance.0.to_be_bytes()])
}

/// The prefix of every timer.
pub fn timers() -> Vec<u8> {
    vec![TIMER]
}

/// The due time and instance of a timer key.
pub fn timer_of(key: &[u8]) -> Option<(u64, InstanceId)> {
    let rest = key.strip_prefix(&[TIMER])?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    Some((due, InstanceId(id)))
}

/// The key of `instance` waiting for an event of `kind` with `correlation`.
pub fn wait(kind: &str, correlation: &str, instance: InstanceId) -> Vec<u8> {
    key(
        WAIT,
        &[
            kind.as_bytes(),
            &[0],
            correlation.as_bytes(),
            &[0],
            &instance.0.to_be_bytes(),
        ],
    )
}

/// The prefix of the instances waiting for an event of `kind` with `correlation`.
pub fn waiting(kind: &str, correlation: &str) -> Vec<u8> {
    key(WAIT, &[kind.as_bytes(), &[0], correlation.as_bytes(), &[0]])
}

/// The prefix of every instance waiting for an event of `kind`.
pub fn waiting_kind(kind: &str) -> Vec<u8> {
    key(WAIT, &[kind.as_bytes(), &[0]])
}

/// The instance id that ends a wait or active-instance key.
pub fn trailing_instance_of(key: &[u8]) -> Option<InstanceId> {
    let id = key.get(key.len().checked_sub(8)?..)?;
    Some(InstanceId(u64::from_be_bytes(id.try_into().ok()?)))
}

/// The key of an exit an event still owes `instance`.
pub fn pending_exit(instance: InstanceId) -> Vec<u8> {
    key(PENDING_EXIT, &[&instance.0.to_be_bytes()])
}

/// The prefix of every pending exit.
pub fn pending_exits() -> Vec<u8> {
    vec![PENDING_EXIT]
}

/// The instance of a pending exit key.
pub fn pending_exit_of(key: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 8] = key.strip_prefix(&[PENDING_EXIT])?.try_into().ok()?;
    Some(InstanceId(u64::from_be_bytes(bytes)))
}

/// The key of an instance of `journey` that finished at `finished_ms`.
pub fn finished(journey: &str, finished_ms: u64, instance: InstanceId) -> Vec<u8> {
    key(
        FINISHED,
        &[
            journey.as_bytes(),
            &[0],
            &finished_ms.to_be_bytes(),
            &instance.0.to_be_bytes(),
        ],
    )
}

/// The prefix of `journey`'s finished instances, and the first key of
/// those that finished at or after `before_ms` (the end of a scan).
pub fn finished_before(journey: &str, before_ms: u64) -> (Vec<u8>, Vec<u8>) {
    let prefix = key(FINISHED, &[journey.as_bytes(), &[0]]);
    let mut end = prefix.clone();
    end.extend_from_slice(&before_ms.to_be_bytes());
    (prefix, end)
}

/// When an instance finished and its id, from its key under `prefix`.
pub fn finished_of(prefix: &[u8], key: &[u8]) -> Option<(u64, InstanceId)> {
    let rest = key.strip_prefix(prefix)?;
    let at: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    let id: [u8; 8] = rest.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(at), InstanceId(u64::from_be_bytes(id))))
}

/// The key of the tally of `journey`'s purged instances of `version` that
/// started on the day beginning at `day_ms`.
pub fn tally(journey: &str, version: u32, day_ms: u64) -> Vec<u8> {
    key(
        TALLY,
        &[
            journey.as_bytes(),
            &[0],
            &version.to_be_bytes(),
            &day_ms.to_be_bytes(),
        ],
    )
}

/// The prefix of `journey`'s tallies.
pub fn tallies_of(journey: &str) -> Vec<u8> {
    key(TALLY, &[journey.as_bytes(), &[0]])
}

/// The version and day of a tally, from its key under `prefix`.
pub fn tally_of(prefix: &[u8], key: &[u8]) -> Option<(u32, u64)> {
    let rest = key.strip_prefix(prefix)?;
    let version: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let day: [u8; 8] = rest.get(4..12)?.try_into().ok()?;
    Some((u32::from_be_bytes(version), u64::from_be_bytes(day)))
}

/// The key of the funnel tally of `journey`'s kept instances of
/// `version` that started on the day beginning at `day_ms`.
pub fn live_tally(journey: &str, version: u32, day_ms: u64) -> Vec<u8> {
    let mut key = tally(journey, version, day_ms);
    key[0] = LIVE_TALLY;
    key
}

/// The prefix of `journey`'s live tallies (read with [`tally_of`]).
pub fn live_tallies_of(journey: &str) -> Vec<u8> {
    key(LIVE_TALLY, &[journey.as_bytes(), &[0]])
}

/// The key of an instance's funnel mark.
pub fn mark(id: InstanceId) -> Vec<u8> {
    key(MARK, &[&id.0.to_be_bytes()])
}

/// The key of the standing counts of `journey`'s `version`.
pub fn standing(journey: &str, version: u32) -> Vec<u8> {
    key(
        STANDING,
        &[journey.as_bytes(), &[0], &version.to_be_bytes()],
    )
}

/// The prefix of the standing counts of `journey`, or of every journey.
pub fn standing_of(journey: Option<&str>) -> Vec<u8> {
    match journey {
        Some(journey) => key(STANDING, &[journey.as_bytes(), &[0]]),
        None => vec![STANDING],
    }
}

/// The journey and version of standing counts, from their key.
pub fn standing_key_of(key: &[u8]) -> Option<(&str, u32)> {
    let rest = key.strip_prefix(&[STANDING])?;
    let split = rest.len().checked_sub(5)?;
    let (journey, tail) = rest.split_at(split);
    let version: [u8; 4] = tail.strip_prefix(&[0])?.try_into().ok()?;
    Some((
        std::str::from_utf8(journey).ok()?,
        u32::from_be_bytes(version),
    ))
}

/// The prefixes of the counts derived from instances (marks, live
/// tallies, standing counts), which a rebuild starts over.
pub fn derived_counts() -> [Vec<u8>; 3] {
    [vec![LIVE_TALLY], vec![MARK], vec![STANDING]]
}

/// Kinds of records swept by age (see `Journal::purge_old_records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aged {
    /// An accepted event.
    Event,
    /// A customer interaction.
    Interaction,
    /// A customer's engagement.
    Engagement,
}

/// The kinds swept by age, in key order, with their prefixes.
pub const AGED: [(u8, Aged); 3] = [
    (EVENT, Aged::Event),
    (INTERACTION, Aged::Interaction),
    (ENGAGEMENT, Aged::Engagement),
];

/// Which kind swept by age a key holds, if any.
pub fn aged_of(key: &[u8]) -> Option<Aged> {
    let prefix = *key.first()?;
    AGED.iter()
        .find(|(kind_prefix, _)| *kind_prefix == prefix)
        .map(|(_, kind)| *kind)
}

/// The first key at or after `key` that may hold a kind swept by age
/// (`None`: none is after it).
pub fn next_aged(key: &[u8]) -> Option<Vec<u8>> {
    let prefix = *key.first()?;
    if AGED.iter().any(|(aged, _)| *aged == prefix) {
        return Some(key.to_vec());
    }
    AGED.iter()
        .find(|(aged, _)| *aged > prefix)
        .map(|(aged, _)| vec![*aged])
}

/// Prints a key readably for error messages: prefix, then printable bytes
/// as text and the rest as hex.
pub fn display(key: &[u8]) -> String {
    key.iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() {
                (byte as char).to_string()
            } else {
                format!("\\x{byte:02x}")
            }
        })
        .collect()
}
