//! Sharing the work between nodes: which instances this node runs.
//!
//! A store one node has to itself (sled) owns every instance. A store
//! several nodes share (PostgreSQL) spreads instances over a fixed number
//! of shards that nodes lease: only a shard's holder runs its instances'
//! steps and fires their timers, and its commits of that work are fenced
//! by the lease's epoch ([`Applied::Fenced`](super::Applied::Fenced)).
//! What changes under a node (shards gained, instances another node woke,
//! the catalog) reaches the runtime as [`ShardNews`].

use super::{Instance, InstanceId};

/// Which instances this node runs, and what changes about it.
pub trait Shards: Send + Sync {
    /// Whether this node runs `instance`'s steps and fires its timer now.
    fn owns(&self, instance: InstanceId) -> bool {
        let _ = instance;
        true
    }

    /// The news the runtime must act on, for a store several nodes share
    /// (`None` for one a node has to itself). Handed out once.
    fn take_news(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ShardNews>> {
        None
    }

    /// Why this node cannot take work now (it holds no shard yet), if so.
    fn not_serving(&self) -> Option<String> {
        None
    }

    /// Give up every shard at once (a node shutting down), so other nodes
    /// take them without waiting for the leases to end.
    fn leave(&self) {}
}

/// What changed about the instances this node runs.
#[derive(Debug)]
pub enum ShardNews {
    /// This node took `shards` (their holder stopped renewing its lease,
    /// or gave them up): `running` are their instances with a step to
    /// run, interrupted elsewhere. They run again as the next attempt,
    /// with the same idempotency key.
    Resume {
        /// The shards taken.
        shards: Vec<u32>,
        /// Their instances that have a step to run.
        running: Vec<Instance>,
    },
    /// Another node moved these instances of this node's shards to a step
    /// (an event woke them, an operator retried them): run it.
    Run(Vec<InstanceId>),
    /// This node no longer holds `shards`: its work on them is refused.
    Lost(Vec<u32>),
    /// The catalog changed (a hint: the catalog's version says by how much).
    CatalogChanged,
}
