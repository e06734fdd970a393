//! Timers on PostgreSQL: a row per waiting instance's wake-up, written
//! and cleared by journal commits. A claim is a lease on the database's
//! clock (every node shares it), so no timer fires twice.

use std::time::Duration;

use super::cluster::SHARDS;
use super::customers::DB_NOW_MS;
use super::journal::{id8, instance_id};
use super::{Cached, PostgresStore, int8, uint8};
use crate::store::{InstanceId, Result, Timers};

impl Timers for PostgresStore {
    fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, InstanceId)>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT due_ms, instance FROM timers WHERE due_ms <= $1
                     ORDER BY due_ms, instance LIMIT $2",
                    &[&int8(now_ms), &int8(limit as u64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (uint8(row.get(0)), instance_id(row, 1)))
                .collect())
        })
    }

    fn claim_due_timers(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<(u64, InstanceId)>> {
        // Only the holder of a timer's shard fires it.
        let shards = self.held_shard_keys();
        self.block(async {
            let client = self.pool.get().await?;
            // Leases run on the database's clock, which every node shares;
            // `now_ms` (the runtime's clock, maybe simulated) says what is due.
            let rows = client
                .rows(
                    &format!(
                        "UPDATE timers SET claimed_until_ms = {DB_NOW_MS} + $3
                         WHERE (due_ms, instance) IN (
                             SELECT due_ms, instance FROM timers
                             WHERE due_ms <= $1 AND instance % {SHARDS} = ANY($4)
                               AND (claimed_until_ms IS NULL OR claimed_until_ms <= {DB_NOW_MS})
                             ORDER BY due_ms, instance LIMIT $2
                             FOR UPDATE SKIP LOCKED
                         )
                         RETURNING due_ms, instance"
                    ),
                    &[
                        &int8(now_ms),
                        &int8(limit as u64),
                        &int8(lease.as_millis() as u64),
                        &shards,
                    ],
                )
                .await?;
            let mut claimed: Vec<_> = rows
                .iter()
                .map(|row| (uint8(row.get(0)), instance_id(row, 1)))
                .collect();
            claimed.sort_unstable();
            Ok(claimed)
        })
    }

    fn release_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .exec(
                    "UPDATE timers SET claimed_until_ms = NULL WHERE due_ms = $1 AND instance = $2",
                    &[&int8(due_ms), &id8(instance)],
                )
                .await?;
            Ok(())
        })
    }

    /// The earliest of the timers this node fires.
    fn next_timer(&self) -> Result<Option<u64>> {
        let shards = self.held_shard_keys();
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .one(
                    &format!("SELECT min(due_ms) FROM timers WHERE instance % {SHARDS} = ANY($1)"),
                    &[&shards],
                )
                .await?;
            Ok(row.get::<_, Option<i64>>(0).map(uint8))
        })
    }

    fn forget_timer(&self, due_ms: u64, instance: InstanceId) -> Result<()> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .exec(
                    "DELETE FROM timers WHERE due_ms = $1 AND instance = $2",
                    &[&int8(due_ms), &id8(instance)],
                )
                .await?;
            Ok(())
        })
    }
}
