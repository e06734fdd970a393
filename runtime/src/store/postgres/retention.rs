//! Retention on PostgreSQL: purging finished instances with everything
//! kept for them (their funnel counts move from the live tallies to the
//! purged ones), and the sweep of old events, interactions and
//! engagement. The `Journal` methods of the same names call these.
//!
//! A purge is one transaction that locks what it changes in a fixed
//! order: the instances' marks, then their records (both by id, as a
//! commit takes a mark before its record), their messages (by id, as
//! markers lock them), their trigger events (by id), then the count
//! records (by key). Two nodes purging at once take turns over shared
//! rows; a commit that changes an instance meanwhile either lands first
//! (and the instance, changed since it was read, stays) or waits.
//!
//! Neither a purge nor a sweep waits for its commit to be flushed
//! (`synchronous_commit` is off for it): the next commit's flush makes it
//! durable, as the trait allows, and a crash before then loses it whole.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};

use super::commit::SoFar;
use super::counts::{locked_tally, write_tally};
use super::journal::{history_of, id8, instance_id};
use super::{Cached, PostgresStore, int8, record, records, stored};
use crate::store::{EventRecord, FunnelMark, Instance, InstanceId, Purge, Result};

/// The `meta` row that keeps where the sweep of old records stopped. Not
/// a setting: the sweep writes it in its own transaction, without moving
/// the catalog's version.
const SWEEP_CURSOR: &str = "retention-sweep-cursor";

/// Ends a transaction without waiting for its flush (see the module doc).
const NOT_FLUSHED: &str = "SET LOCAL synchronous_commit = off";

/// Where the sweep of old records goes on: the table it walks and the
/// last row it looked at there. The tables are walked in this order; the
/// walk starts over with the events after the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
enum SweepCursor {
    /// Events after this id (from the first, when `None`).
    Events {
        /// The last event looked at.
        after: Option<String>,
    },
    /// Interactions after this sequence number.
    Interactions {
        /// The last interaction looked at.
        after: i64,
    },
    /// Engagement after this sequence number.
    Engagement {
        /// The last engagement looked at.
        after: i64,
    },
}

impl SweepCursor {
    /// Where the walk starts: the first event.
    const START: SweepCursor = SweepCursor::Events { after: None };

    /// The start of the table after this one (`None` after the last).
    fn next_table(&self) -> Option<SweepCursor> {
        match self {
            SweepCursor::Events { .. } => Some(SweepCursor::Interactions { after: 0 }),
            SweepCursor::Interactions { .. } => Some(SweepCursor::Engagement { after: 0 }),
            SweepCursor::Engagement { .. } => None,
        }
    }
}

/// What one step of the sweep did in one table.
struct Walked {
    /// Rows looked at.
    looked: usize,
    /// Rows removed.
    removed: usize,
}

impl PostgresStore {
    /// Remove the finished instances `purges` names, each with everything
    /// kept for them, in one transaction (see [`Journal::purge`]).
    ///
    /// [`Journal::purge`]: crate::store::Journal::purge
    pub(super) fn purge_finished(&self, purges: &[Purge]) -> Result<usize> {
        // When each instance was found finished (the first time, when one
        // is named twice).
        let mut wanted: BTreeMap<InstanceId, u64> = BTreeMap::new();
        for purge in purges {
            wanted.entry(purge.instance).or_insert(purge.finished_at_ms);
        }
        if wanted.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = wanted.keys().map(|id| id8(*id)).collect();
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            transaction.batch_execute(NOT_FLUSHED).await?;
            let rows = transaction
                .rows(
                    "SELECT instance, mark FROM funnel_marks WHERE instance = ANY($1)
                     ORDER BY instance FOR UPDATE",
                    &[&ids],
                )
                .await?;
            let mut marks = HashMap::with_capacity(rows.len());
            for row in &rows {
                marks.insert(instance_id(row, 0), record::<FunnelMark>(row, "mark")?);
            }
            let rows = transaction
                .rows(
                    "SELECT record FROM instances WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[&ids],
                )
                .await?;
            let mut removed: Vec<Instance> = Vec::with_capacity(rows.len());
            for row in &rows {
                let instance: Instance = record(row, "record")?;
                // Unfinished, or changed since it was read (an operator
                // brought it back): it stays as it is.
                if instance.status.is_finished()
                    && wanted.get(&instance.id) == Some(&instance.updated_at_ms)
                {
                    removed.push(instance);
                }
            }
            if removed.is_empty() {
                transaction.commit().await?;
                return Ok(0);
            }
            // Each one's counts, read before its history goes.
            let mut counts = SoFar::default();
            let mut purged_marks = Vec::with_capacity(removed.len());
            for instance in &removed {
                let mark = match marks.remove(&instance.id) {
                    Some(mark) => mark,
                    // No mark (its record was lost): counted from the history.
                    None => FunnelMark::of_instance(
                        instance,
                        &history_of(&transaction, instance).await?,
                    ),
                };
                counts.moves.push((Some(mark.clone()), None));
                counts.marks.insert(instance.id, None);
                purged_marks.push(mark);
            }
            remove_instances(&transaction, &removed).await?;
            remove_trigger_events(&transaction, &removed).await?;
            self.write_counts(&transaction, counts).await?;
            add_purged(&transaction, &purged_marks).await?;
            transaction.commit().await?;
            Ok(removed.len())
        })
    }

    /// Look at up to `limit` events, interactions and engagement from
    /// where the last sweep stopped, removing those from before
    /// `before_ms` that nothing holds on to (see
    /// [`Journal::purge_old_records`]). Nodes take turns: the sweep holds
    /// the lock of its cursor's row until it commits.
    ///
    /// [`Journal::purge_old_records`]: crate::store::Journal::purge_old_records
    pub(super) fn sweep_aged(&self, before_ms: u64, limit: usize) -> Result<usize> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            transaction.batch_execute(NOT_FLUSHED).await?;
            transaction
                .exec(
                    "INSERT INTO meta (name, value) VALUES ($1, 'null') ON CONFLICT DO NOTHING",
                    &[&SWEEP_CURSOR],
                )
                .await?;
            let row = transaction
                .one(
                    "SELECT value FROM meta WHERE name = $1 FOR UPDATE",
                    &[&SWEEP_CURSOR],
                )
                .await?;
            // A cursor it cannot read (written by another build) only
            // means starting over.
            let cursor: serde_json::Value = record(&row, "value")?;
            let mut at = serde_json::from_value::<Option<SweepCursor>>(cursor)
                .ok()
                .flatten()
                .unwrap_or(SweepCursor::START);
            // One record at least, as on sled.
            let mut left = limit.max(1);
            let mut removed = 0;
            let stopped_at = loop {
                let (walked, cursor) = match &at {
                    SweepCursor::Events { after } => {
                        let (walked, after) =
                            sweep_events(&transaction, after.as_deref(), before_ms, left).await?;
                        (walked, SweepCursor::Events { after })
                    }
                    SweepCursor::Interactions { after } => {
                        let (walked, after) =
                            sweep_by_seq(&transaction, "interactions", *after, before_ms, left)
                                .await?;
                        (walked, SweepCursor::Interactions { after })
                    }
                    SweepCursor::Engagement { after } => {
                        let (walked, after) =
                            sweep_by_seq(&transaction, "engagement", *after, before_ms, left)
                                .await?;
                        (walked, SweepCursor::Engagement { after })
                    }
                };
                removed += walked.removed;
                left -= walked.looked;
                if left == 0 {
                    break Some(cursor);
                }
                // That table is done: on to the next, or, after the last,
                // the next sweep starts over.
                match at.next_table() {
                    Some(next) => at = next,
                    None => break None,
                }
            };
            transaction
                .exec(
                    "UPDATE meta SET value = $2 WHERE name = $1",
                    &[&SWEEP_CURSOR, &stored(&stopped_at)],
                )
                .await?;
            transaction.commit().await?;
            Ok(removed)
        })
    }
}

/// Remove the records of the instances `removed` and everything kept for
/// them but their trigger events and counts: history, messages (their
/// provider ids go with them), counted sends, timers, waits and pending
/// exits.
async fn remove_instances(transaction: &Transaction<'_>, removed: &[Instance]) -> Result<()> {
    let ids: Vec<i64> = removed.iter().map(|instance| id8(instance.id)).collect();
    // Locked in id order, as markers lock them, before they go.
    transaction
        .rows(
            "SELECT id FROM outbox WHERE instance = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    for statement in [
        "DELETE FROM outbox WHERE instance = ANY($1)",
        "DELETE FROM history WHERE instance = ANY($1)",
        "DELETE FROM counted_sends WHERE instance = ANY($1)",
        // Neither table is indexed by instance (a finished instance
        // normally holds neither): one scan each per purge, to drop any
        // left over.
        "DELETE FROM timers WHERE instance = ANY($1)",
        "DELETE FROM waits WHERE instance = ANY($1)",
        "DELETE FROM pending_exits WHERE instance = ANY($1)",
        "DELETE FROM instances WHERE id = ANY($1)",
    ] {
        transaction.exec(statement, &[&ids]).await?;
    }
    Ok(())
}

/// Remove the trigger events of the instances `removed` (gone already in
/// this transaction) that started no instance still kept. The events are
/// locked first, so of two purges that remove the last instances of one
/// event, the later sees the earlier's removal and removes the event.
async fn remove_trigger_events(transaction: &Transaction<'_>, removed: &[Instance]) -> Result<()> {
    let ids: BTreeSet<&str> = removed
        .iter()
        .map(|instance| instance.trigger_event_id.as_str())
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let rows = transaction
        .rows(
            "SELECT record FROM events WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let events: Vec<EventRecord> = records(&rows, "record")?;
    remove_events_left_alone(transaction, &events).await?;
    Ok(())
}

/// Remove those of `events` (locked by the caller) that started no
/// instance still kept; returns how many.
async fn remove_events_left_alone(
    transaction: &Transaction<'_>,
    events: &[EventRecord],
) -> Result<usize> {
    let kept = kept_instances(transaction, events).await?;
    let alone: Vec<&str> = events
        .iter()
        .filter(|event| !event.started.iter().any(|id| kept.contains(id)))
        .map(|event| event.id.as_str())
        .collect();
    if alone.is_empty() {
        return Ok(0);
    }
    let count = transaction
        .exec("DELETE FROM events WHERE id = ANY($1)", &[&alone])
        .await?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// The instances some of `events` started that are still kept.
pub(super) async fn kept_instances(
    transaction: &Transaction<'_>,
    events: &[EventRecord],
) -> Result<HashSet<InstanceId>> {
    let started: Vec<i64> = events
        .iter()
        .flat_map(|event| &event.started)
        .map(|id| id8(*id))
        .collect();
    if started.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = transaction
        .rows("SELECT id FROM instances WHERE id = ANY($1)", &[&started])
        .await?;
    Ok(rows.iter().map(|row| instance_id(row, 0)).collect())
}

/// Add the counts of the purged instances' `marks` to the purged tallies
/// they fall in: each tally is locked in key order (made if missing), so
/// two purges of one day add up rather than overwrite each other, then
/// moved and written once.
async fn add_purged(transaction: &Transaction<'_>, marks: &[FunnelMark]) -> Result<()> {
    let mut by_key: BTreeMap<_, Vec<&FunnelMark>> = BTreeMap::new();
    for mark in marks {
        by_key.entry(mark.tally_key()).or_default().push(mark);
    }
    for (key, marks) in by_key {
        let mut tally = locked_tally(transaction, "purged_tallies", &key).await?;
        for mark in marks {
            tally.count(mark, true);
        }
        write_tally(transaction, "purged_tallies", &key, &tally).await?;
    }
    Ok(())
}

/// Look at up to `limit` events after `after` (from the first, when
/// `None`), in id order, and remove those received before `before_ms`
/// that started no instance still kept. Returns what it did and the last
/// event looked at.
async fn sweep_events(
    transaction: &Transaction<'_>,
    after: Option<&str>,
    before_ms: u64,
    limit: usize,
) -> Result<(Walked, Option<String>)> {
    let rows = transaction
        .rows(
            "SELECT id, received_at_ms FROM events WHERE ($1::text IS NULL OR id > $1)
             ORDER BY id LIMIT $2",
            &[&after, &int8(limit as u64)],
        )
        .await?;
    let last: Option<String> = match rows.last() {
        Some(row) => Some(row.try_get("id")?),
        None => after.map(str::to_owned),
    };
    let before = int8(before_ms);
    let mut old = Vec::new();
    for row in &rows {
        if row.try_get::<_, i64>("received_at_ms")? < before {
            old.push(row.try_get::<_, String>("id")?);
        }
    }
    let mut removed = 0;
    if !old.is_empty() {
        // Locked (in id order) before their instances are looked up.
        let locked = transaction
            .rows(
                "SELECT record FROM events WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&old],
            )
            .await?;
        let events: Vec<EventRecord> = records(&locked, "record")?;
        removed = remove_events_left_alone(transaction, &events).await?;
    }
    let walked = Walked {
        looked: rows.len(),
        removed,
    };
    Ok((walked, last))
}

/// Look at up to `limit` rows of `table` (`interactions` or
/// `engagement`) after sequence number `after`, and remove those from
/// before `before_ms`, in one statement. Returns what it did and the last
/// sequence number looked at.
async fn sweep_by_seq(
    transaction: &Transaction<'_>,
    table: &str,
    after: i64,
    before_ms: u64,
    limit: usize,
) -> Result<(Walked, i64)> {
    let row = transaction
        .one(
            &format!(
                "WITH looked AS (
                     SELECT seq, at_ms FROM {table} WHERE seq > $1 ORDER BY seq LIMIT $2
                 ), gone AS (
                     DELETE FROM {table}
                     WHERE seq IN (SELECT seq FROM looked WHERE at_ms < $3)
                     RETURNING seq
                 )
                 SELECT (SELECT count(*) FROM looked), (SELECT max(seq) FROM looked),
                        (SELECT count(*) FROM gone)"
            ),
            &[&after, &int8(limit as u64), &int8(before_ms)],
        )
        .await?;
    let looked: i64 = row.try_get(0)?;
    let last: Option<i64> = row.try_get(1)?;
    let removed: i64 = row.try_get(2)?;
    let walked = Walked {
        looked: usize::try_from(looked).unwrap_or(0),
        removed: usize::try_from(removed).unwrap_or(0),
    };
    Ok((walked, last.unwrap_or(after)))
}
