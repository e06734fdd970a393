//! The funnel and standing counts on PostgreSQL, moved in the commit's
//! transaction: the marks of the instances changed are read with a row
//! lock, then each count record touched is locked (made if missing, in
//! sorted order, so two transactions never wait on each other in a
//! circle), moved by every mark in turn, and written once.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::Transaction;
use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, try_join_all};

use super::catalog::int4;
use super::commit::SoFar;
use super::journal::id8;
use super::{Cached, PostgresStore, int8, record, stored, uint8};
use crate::store::{
    CountBook, DayTally, FunnelMark, FunnelTally, InstanceId, Result, StandingKey, TallyKey,
};

impl PostgresStore {
    /// Move the counts by every mark the transaction moved: each count
    /// record touched is locked (in sorted order, so two transactions
    /// never wait on each other), moved and written once.
    pub(super) async fn write_counts(
        &self,
        transaction: &Transaction<'_>,
        so_far: SoFar,
    ) -> Result<()> {
        if so_far.moves.is_empty() {
            return Ok(());
        }
        let (mut tally_keys, mut standing_keys) = (BTreeSet::new(), BTreeSet::new());
        for (before, after) in &so_far.moves {
            CountBook::touched(
                before.as_ref(),
                after.as_ref(),
                &mut tally_keys,
                &mut standing_keys,
            );
        }
        // Locks sent together, in sorted order (PostgreSQL takes them in
        // the order sent): one round trip.
        let tally_keys: Vec<TallyKey> = tally_keys.into_iter().collect();
        let standing_keys: Vec<StandingKey> = standing_keys.into_iter().collect();
        let (tallies, standing) = futures_util::try_join!(
            try_join_all(tally_keys.iter().map(|key| locked_tally(
                transaction,
                "live_tallies",
                key
            ))),
            try_join_all(
                standing_keys
                    .iter()
                    .map(|key| locked_standing(transaction, key))
            ),
        )?;
        let mut book = CountBook {
            tallies: tally_keys.into_iter().zip(tallies).collect(),
            standing: standing_keys.into_iter().zip(standing).collect(),
        };
        for (before, after) in &so_far.moves {
            book.moved(before.as_ref(), after.as_ref());
        }
        // And the writes: one more.
        let mut writes: Vec<LocalBoxFuture<'_, Result<()>>> = Vec::new();
        for (id, mark) in so_far.marks {
            writes.push(
                async move {
                    match mark {
                        Some(mark) => {
                            transaction
                                .exec(
                                    "INSERT INTO funnel_marks (instance, mark) VALUES ($1, $2)
                                     ON CONFLICT (instance) DO UPDATE SET mark = excluded.mark",
                                    &[&id8(id), &stored(&mark)],
                                )
                                .await?
                        }
                        None => {
                            transaction
                                .exec("DELETE FROM funnel_marks WHERE instance = $1", &[&id8(id)])
                                .await?
                        }
                    };
                    Ok(())
                }
                .boxed_local(),
            );
        }
        for (key, tally) in book.tallies {
            writes.push(
                async move { write_tally(transaction, "live_tallies", &key, &tally).await }
                    .boxed_local(),
            );
        }
        for (key, at) in book.standing {
            writes.push(async move { write_standing(transaction, &key, &at).await }.boxed_local());
        }
        try_join_all(writes).await?;
        Ok(())
    }

    /// The tallies of `journey` in `table`.
    pub(super) fn day_tallies(&self, table: &str, journey: &str) -> Result<Vec<DayTally>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    &format!(
                        "SELECT version, day_ms, tally FROM {table} WHERE journey = $1
                         ORDER BY version, day_ms"
                    ),
                    &[&journey],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(DayTally {
                        version: row.get::<_, i32>(0) as u32,
                        day_ms: uint8(row.get(1)),
                        tally: record(row, "tally")?,
                    })
                })
                .collect()
        })
    }
}

/// An instance's stored mark, locked until the transaction ends.
pub(super) async fn stored_mark(
    transaction: &Transaction<'_>,
    id: InstanceId,
) -> Result<Option<FunnelMark>> {
    transaction
        .opt(
            "SELECT mark FROM funnel_marks WHERE instance = $1 FOR UPDATE",
            &[&id8(id)],
        )
        .await?
        .map(|row| record(&row, "mark"))
        .transpose()
}

/// The tally at `key` in `table` (live or purged), locked until the
/// transaction ends: made (empty) if missing, in the same statement, so
/// two transactions that both begin a tally take turns rather than each
/// counting from nothing.
pub(super) async fn locked_tally(
    transaction: &Transaction<'_>,
    table: &str,
    key: &TallyKey,
) -> Result<FunnelTally> {
    let row = transaction
        .one(
            &format!(
                "INSERT INTO {table} (journey, version, day_ms, tally) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (journey, version, day_ms) DO UPDATE SET tally = {table}.tally
                 RETURNING tally"
            ),
            &[
                &key.0,
                &int4(key.1),
                &int8(key.2),
                &stored(&FunnelTally::default()),
            ],
        )
        .await?;
    record(&row, "tally")
}

/// The standing counts at `key`, locked until the transaction ends (made
/// if missing, as [`locked_tally`] does).
async fn locked_standing(
    transaction: &Transaction<'_>,
    key: &StandingKey,
) -> Result<BTreeMap<String, u64>> {
    let row = transaction
        .one(
            "INSERT INTO standing (journey, version, counts) VALUES ($1, $2, '{}')
             ON CONFLICT (journey, version) DO UPDATE SET counts = standing.counts
             RETURNING counts",
            &[&key.0, &int4(key.1)],
        )
        .await?;
    record(&row, "counts")
}

/// Write a tally into `table`, or remove it at nothing.
pub(super) async fn write_tally(
    transaction: &Transaction<'_>,
    table: &str,
    key: &TallyKey,
    tally: &FunnelTally,
) -> Result<()> {
    let (journey, version, day) = (&key.0, int4(key.1), int8(key.2));
    if tally.instances == 0 {
        transaction
            .exec(
                &format!("DELETE FROM {table} WHERE journey = $1 AND version = $2 AND day_ms = $3"),
                &[journey, &version, &day],
            )
            .await?;
    } else {
        transaction
            .exec(
                &format!(
                    "INSERT INTO {table} (journey, version, day_ms, tally) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (journey, version, day_ms) DO UPDATE SET tally = excluded.tally"
                ),
                &[journey, &version, &day, &stored(tally)],
            )
            .await?;
    }
    Ok(())
}

/// Write standing counts, or remove them at nothing.
async fn write_standing(
    transaction: &Transaction<'_>,
    key: &StandingKey,
    at: &BTreeMap<String, u64>,
) -> Result<()> {
    if at.is_empty() {
        transaction
            .exec(
                "DELETE FROM standing WHERE journey = $1 AND version = $2",
                &[&key.0, &int4(key.1)],
            )
            .await?;
    } else {
        transaction
            .exec(
                "INSERT INTO standing (journey, version, counts) VALUES ($1, $2, $3)
                 ON CONFLICT (journey, version) DO UPDATE SET counts = excluded.counts",
                &[&key.0, &int4(key.1), &stored(at)],
            )
            .await?;
    }
    Ok(())
}
