//! Durable storage: the traits the runtime asks of a backend, and the
//! records they keep.
//!
//! The traits follow the domain ([`Catalog`], [`Journal`], [`Customers`],
//! [`Timers`], [`Outbox`], [`Shards`]); [`Store`] is all of them, which is what a
//! backend implements. Writes are domain facts ([`Commit`]): each backend
//! decides how to lay out and index them, and nothing outside its module
//! knows its keys. `sled/` is the embedded default; `postgres/` keeps
//! everything in a PostgreSQL database that several nodes share.
//!
//! Files: `model/` holds the records and the instance state machine; one
//! file per trait (`backup.rs` also holds the backup file's layout); `suite/` the behaviour every backend must show (each
//! backend's tests run it); `sled/` the sled backend. See
//! `docs/architecture.md` for where each invariant is enforced.

mod backup;
mod catalog;
mod customers;
mod journal;
mod model;
mod outbox;
pub mod postgres;
mod shards;
pub mod sled;
mod timers;

pub use self::backup::{
    Backup, BackupError, BackupHeader, BackupReader, BackupRecord, BackupSummary, BackupWriter,
    FORMAT as BACKUP_FORMAT, MAGIC as BACKUP_MAGIC,
};
pub use self::catalog::{CanaryCounts, Catalog};
pub use self::customers::{Customers, SendReservation};
pub use self::journal::{
    Applied, Commit, CountedSend, EventCommit, InstanceCommit, InstanceFilter, InstancePage,
    Journal, LeftWait, RefusedStart,
};
pub use self::model::*;
pub use self::outbox::{
    AttemptOutcome, ClaimedMessage, DELIVERY_LOG_LINES, Delivery, DeliveryAttempt, DeliveryFilter,
    DeliveryNote, DeliveryPage, DeliveryStatus, Mark, Marked, MessageRef, Outbox, StatusReport,
};
pub use self::postgres::{
    ClusterStatus, NodeOptions, NodeStatus, PostgresOptions, PostgresStore, PostgresUsage,
    ShardStatus,
};
pub use self::shards::{ShardNews, Shards};
pub use self::sled::{RestoreError, SledStore};
pub use self::timers::Timers;

/// Storage errors, the same for every backend. A backend's own error is
/// kept as the source, never flattened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed (I/O, corruption).
    #[error("storage backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot be reached now (a database server that is
    /// down, restarting or unreachable, or a connection lost during the
    /// call): the same call can be made again in a moment. A write whose
    /// connection went at its commit may have taken effect; the journal's
    /// commits are safe to repeat (see [`Journal::commit`]).
    #[error("the store cannot be reached now; try again in a moment")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A commit was applied but could not be made durable: reads may show
    /// it, and the next commit that succeeds (an empty one will do) makes
    /// it durable (see [`Journal::commit`]).
    #[error("commit applied but not made durable")]
    NotDurable {
        /// What became of each commit of the unit.
        applied: Vec<Applied>,
        /// Why it is not durable.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored record could not be decoded.
    #[error("stored record `{key}` is corrupt")]
    Corrupt {
        /// The key, printed readably.
        key: String,
        /// Why it did not decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be encoded (a bug, not bad input).
    #[error("record could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// This node holds no shard to start an instance in: it is joining
    /// the nodes that share the store, or lost its leases (see
    /// [`Shards`]). Another node can take the work.
    #[error(
        "this node holds no shard yet (joining, or its leases ended): another node takes the work, or try again in a moment"
    )]
    NoShard,
    /// A fault a test build injected (see [`crate::faults`]).
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Backend(Box::new(error))
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the runtime keeps: a backend implements each trait, and is
/// then a `Store`. Implementations are safe to share across threads.
pub trait Store:
    Catalog + Journal + Customers + Timers + Outbox + Backup + Shards + 'static
{
}

impl<T: Catalog + Journal + Customers + Timers + Outbox + Backup + Shards + 'static> Store for T {}

#[cfg(any(test, feature = "testing"))]
pub mod suite;
