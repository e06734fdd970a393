//! The embedded sled backend of [`Store`](crate::store::Store).
//!
//! All journal records (events, instances, history, outbox, correlation
//! index, running index, customers) live in sled's default tree, so one
//! [`sled::Batch`] applies a whole group commit atomically; component bytes
//! live in a separate `blobs` tree because they are large and written
//! rarely. sled's own periodic flush is turned off: every write ends with
//! an explicit [`sled::Db::flush`], so a return means durable.
//!
//! Files: `keys.rs` is the key layout (the only place that knows it);
//! `journal.rs` the commit path, instances and timers; `catalog.rs` plugins,
//! journeys and settings; `customers.rs` profiles and the cached views;
//! `history.rs` histories, their folding at finish and onto a record when read; `outbox.rs`
//! deliveries; `retention.rs` purging and the sweep of old
//! records; `counts.rs` the funnel and standing counts kept as commits
//! land; `forget.rs` forgetting a customer; `backup.rs` backup and
//! restore; `codec.rs` how records are stored.
//!
//! Claims (timers, outbox messages), send reservations and canary counts
//! are held in memory: sled opens its directory in one process at a time, so the
//! process is the only claimant there can be, and a restart rightly drops
//! its claims with it.

mod backup;
mod catalog;
mod codec;
mod counts;
mod customers;
mod forget;
mod history;
mod journal;
mod keys;
mod outbox;
mod retention;

use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

pub use self::backup::RestoreError;
use self::codec::Codec;
use self::customers::{CustomerCache, Reservations};
use crate::store::{CanaryCounts, Error, InstanceId, Result};

impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Self {
        Error::Backend(Box::new(error))
    }
}

/// How often sled's background thread runs: it writes out what is
/// buffered (every commit flushes on its own already) and then spends up
/// to half the period moving live pages out of mostly-garbage segments so
/// they can be reused. Without it sled never reclaims space.
const GC_EVERY_MS: u64 = 1000;

/// Tuning for the sled backend.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache in bytes. It bounds most of the store's memory use;
    /// the default keeps an idle runtime with 100k finished instances small.
    pub cache_bytes: u64,
    /// Customer views kept in memory (profile plus the most recent
    /// interactions each).
    pub cached_customers: usize,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 64 * 1024 * 1024,
            cached_customers: 10_000,
        }
    }
}

/// A store on an embedded sled database in one directory.
pub struct SledStore {
    db: sled::Db,
    blobs: sled::Tree,
    /// Turns records into stored bytes and back.
    codec: std::sync::Arc<Codec>,
    customers: std::sync::Mutex<CustomerCache>,
    /// Held for writing while a commit checks and applies its batch (so two
    /// commits never both take one history slot or event id), and for
    /// reading by `settled`: sled makes each read see a batch whole, but
    /// not two reads in a row.
    applying: std::sync::RwLock<()>,
    /// Held while a plugin or journey version is numbered and written, so
    /// two at once never get the same number.
    versions: std::sync::Mutex<()>,
    /// Timers and messages claimed, until when.
    leases: std::sync::Mutex<Leases>,
    /// Held by claims, marks, reports and replays of deliveries.
    outbox_lock: std::sync::Mutex<()>,
    /// Held while a catalog change moves the catalog's version.
    catalog_changes: std::sync::Mutex<()>,
    /// Sends reserved against frequency caps (held in memory like claims).
    reservations: std::sync::Mutex<Reservations>,
    /// Canary runs of rollouts in progress, by (plugin, tag, set at): in
    /// memory like claims, so they count from this process's start.
    canaries: std::sync::Mutex<HashMap<(String, String, u64), CanaryCounts>>,
    /// Where the sweep of old records goes on from.
    sweep: std::sync::Mutex<Option<Vec<u8>>>,
}

/// What is claimed, until when (messages: and by which claim).
#[derive(Default)]
struct Leases {
    timers: HashMap<(u64, InstanceId), Instant>,
}

/// Claim `key` in `claims` for `lease` unless someone holds it now.
fn claim<K: Hash + Eq>(claims: &mut HashMap<K, Instant>, key: K, lease: Duration) -> bool {
    let now = Instant::now();
    if claims.len() > 4096 {
        claims.retain(|_, until| *until > now);
    }
    match claims.get(&key) {
        Some(until) if *until > now => false,
        _ => {
            claims.insert(key, now + lease);
            true
        }
    }
}

/// One node has a sled store to itself: it runs every instance.
impl crate::store::Shards for SledStore {}

impl SledStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path, options: &SledOptions) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(GC_EVERY_MS))
            .open()?;
        let blobs = db.open_tree("blobs")?;
        let store = SledStore {
            codec: Codec::open(&db)?,
            db,
            blobs,
            customers: std::sync::Mutex::new(CustomerCache::new(options.cached_customers)),
            applying: std::sync::RwLock::new(()),
            versions: std::sync::Mutex::new(()),
            leases: std::sync::Mutex::new(Leases::default()),
            outbox_lock: std::sync::Mutex::new(()),
            catalog_changes: std::sync::Mutex::new(()),
            reservations: std::sync::Mutex::new(Reservations::default()),
            canaries: std::sync::Mutex::new(HashMap::new()),
            sweep: std::sync::Mutex::new(None),
        };
        store.index_events_by_customer()?;
        store.keep_counts()?;
        Ok(store)
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases
            .lock()
            .expect("the leases lock is never poisoned")
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.db
            .get(key)?
            .map(|bytes| self.codec.decode(key, &bytes))
            .transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item?;
                self.codec.decode(&key, &bytes)
            })
            .collect()
    }

    /// The instance ids of the index keys under `prefix`.
    fn ids_under(
        &self,
        prefix: &[u8],
        id_of: fn(&[u8]) -> Option<InstanceId>,
    ) -> Result<Vec<InstanceId>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .map(|key| Ok(id_of(&key?)))
            .filter_map(Result::transpose)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Journal;

    #[test]
    fn the_sled_store_passes_the_store_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        crate::store::suite::run(&store);
    }

    /// The live tallies of `journey`, without counts at nothing.
    fn pruned(store: &SledStore, journey: &str) -> Vec<(u32, u64, crate::store::FunnelTally)> {
        store
            .live_tallies(journey)
            .expect("tallies")
            .into_iter()
            .map(|day| (day.version, day.day_ms, day.tally.pruned()))
            .collect()
    }

    #[test]
    fn counts_missing_from_an_older_store_are_rebuilt_when_it_opens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (journey, expected) = {
            let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
            crate::store::suite::run(&store);
            let journey = "enquiry";
            let expected = (
                pruned(&store, journey),
                store.standing(None).expect("standing"),
            );
            assert!(!expected.0.is_empty(), "the suite leaves instances counted");
            // As a store written before the counts were kept: none of them.
            for prefix in keys::derived_counts() {
                for key in store.db.scan_prefix(prefix).keys() {
                    store.db.remove(key.expect("key")).expect("remove");
                }
            }
            store
                .db
                .remove(keys::meta(counts::COUNTS_KEPT))
                .expect("remove");
            store.db.flush().expect("flush");
            assert!(store.live_tallies(journey).expect("tallies").is_empty());
            (journey, expected)
        };
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("reopen");
        assert_eq!(
            (
                pruned(&store, journey),
                store.standing(None).expect("standing")
            ),
            expected
        );
    }

    #[test]
    fn the_sled_store_passes_the_store_suite_with_compressed_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        for n in 0..2_000 {
            let sample = serde_json::json!({
                "type": "step_ran",
                "step": format!("step-{}", n % 7),
                "at_ms": n,
                "outcome": {"kind": "goto", "transition": "next", "target": format!("step-{}", n % 5)},
            });
            store.codec.encode(&sample).expect("encode");
        }
        store.codec.train_now().expect("train");
        crate::store::suite::run(&store);
    }
}
