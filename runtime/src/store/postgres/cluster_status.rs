//! What `journeyd cluster status` reads: the nodes sharing the database,
//! the shards they hold and how far behind each shard's work is, in one
//! snapshot, straight from the database (it works with every node down).

use super::cluster::SHARDS;
use super::customers::DB_NOW_MS;
use super::{Cached, PostgresStore, snapshot, uint8};
use crate::store::Result;

/// What `journeyd cluster status` shows: the nodes, the shards they
/// hold and how far behind the work of each shard is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    /// The database's clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// The nodes seen in the last day, newest first.
    pub nodes: Vec<NodeStatus>,
    /// Every shard, in order.
    pub shards: Vec<ShardStatus>,
    /// Outbox messages due and not sent yet (any node sends them).
    pub outbox_due: u64,
}

/// One node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// Its key: name and start id.
    pub node: String,
    /// Its name.
    pub name: String,
    /// Where it serves its API.
    pub address: Option<String>,
    /// Since its last heartbeat, ms.
    pub heartbeat_age_ms: u64,
    /// Whether it holds a shard with a live lease.
    pub live: bool,
    /// Shards it holds with a live lease.
    pub shards: usize,
}

/// One shard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    /// Its number.
    pub shard: u32,
    /// The node holding it, when its lease is live.
    pub owner: Option<String>,
    /// Its epoch.
    pub epoch: i64,
    /// Until the lease ends, ms (negative: ended that long ago).
    pub lease_left_ms: i64,
    /// Its instances with a step to run.
    pub running: u64,
    /// Its timers due by the database's clock and not fired.
    pub timers_due: u64,
    /// How late its oldest due timer is, ms (0 when none is due).
    pub timer_lag_ms: u64,
}

impl PostgresStore {
    /// The nodes, the shards and their backlog, read in one snapshot
    /// (timers are judged by the database's clock: on a simulated clock
    /// they fall due when the runtimes say).
    pub fn cluster_status(&self) -> Result<ClusterStatus> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = snapshot(&mut client).await?;
            let now: i64 = transaction
                .one(&format!("SELECT {DB_NOW_MS}"), &[])
                .await?
                .get(0);
            let shard_rows = transaction
                .rows(
                    &format!(
                        "SELECT s.shard, s.owner, s.epoch, s.lease_until_ms - $1,
                            (SELECT count(*) FROM instances
                             WHERE status = 'running' AND id % {SHARDS} = s.shard),
                            (SELECT count(*) FROM timers
                             WHERE instance % {SHARDS} = s.shard AND due_ms <= $1),
                            (SELECT $1 - min(due_ms) FROM timers
                             WHERE instance % {SHARDS} = s.shard AND due_ms <= $1)
                         FROM shards s ORDER BY s.shard"
                    ),
                    &[&now],
                )
                .await?;
            let shards: Vec<ShardStatus> = shard_rows
                .iter()
                .map(|row| {
                    let lease_left_ms: i64 = row.get(3);
                    ShardStatus {
                        shard: row.get::<_, i32>(0) as u32,
                        owner: row
                            .get::<_, Option<String>>(1)
                            .filter(|_| lease_left_ms > 0),
                        epoch: row.get(2),
                        lease_left_ms,
                        running: uint8(row.get(4)),
                        timers_due: uint8(row.get(5)),
                        timer_lag_ms: row.get::<_, Option<i64>>(6).map_or(0, uint8),
                    }
                })
                .collect();
            let node_rows = transaction
                .rows(
                    "SELECT node, name, address, $1 - heartbeat_ms FROM nodes
                     ORDER BY started_ms DESC, node",
                    &[&now],
                )
                .await?;
            let nodes = node_rows
                .iter()
                .map(|row| {
                    let node: String = row.get(0);
                    let age: i64 = row.get(3);
                    NodeStatus {
                        shards: shards
                            .iter()
                            .filter(|shard| shard.owner.as_deref() == Some(node.as_str()))
                            .count(),
                        name: row.get(1),
                        address: row.get(2),
                        heartbeat_age_ms: uint8(age.max(0)),
                        live: shards
                            .iter()
                            .any(|shard| shard.owner.as_deref() == Some(node.as_str())),
                        node,
                    }
                })
                .collect();
            let outbox_due: i64 = transaction
                .one(
                    "SELECT count(*) FROM outbox
                     WHERE status IN ('queued', 'retrying') AND due_ms <= $1",
                    &[&now],
                )
                .await?
                .get(0);
            Ok(ClusterStatus {
                now_ms: uint8(now),
                nodes,
                shards,
                outbox_due: uint8(outbox_due),
            })
        })
    }
}
