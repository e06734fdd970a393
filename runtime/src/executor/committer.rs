//! Group commit: two threads own the journal write path.
//!
//! Callers hand a [`Write`] to [`Committer::submit`] and wait. The *apply*
//! thread takes everything that is waiting (up to [`MAX_BATCH`]) and applies
//! it with one atomic [`Store::apply`]; the *sync* thread makes applied
//! batches durable with one [`Store::sync`] for all of them and only then
//! answers their callers. The two overlap: while one batch is being
//! flushed, the next one is already being applied, and everything that
//! arrives meanwhile forms the next batch, so many concurrent steps share
//! each flush and nobody waits for a timer.
//!
//! Guarantee: `submit` returns `Ok` only after a sync that started after
//! the write was applied, i.e. the write is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::{self, Applied, Store, Write};

/// Most writes applied in one batch.
pub const MAX_BATCH: usize = 512;

/// Why a write was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store failed; the batch was not committed.
    #[error("commit failed")]
    Store(#[source] Arc<store::Error>),
    /// The committer has stopped (the runtime is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

/// What runs once a write's fate is known: on the sync thread after a
/// durable commit, or wherever the failure is detected. Keep it short.
pub type Then = Box<dyn FnOnce(Result<Applied, CommitError>) + Send>;

struct Request {
    write: Write,
    reply: Then,
}

/// A batch that is applied but not yet known durable.
struct Applying {
    replies: Vec<(Then, Applied)>,
}

/// Counters of the commit path.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches applied.
    pub batches: AtomicU64,
    /// Syncs (flushes); each covers one or more batches.
    pub syncs: AtomicU64,
    /// Writes applied.
    pub writes: AtomicU64,
    /// Time spent in [`Store::apply`], ns.
    pub apply_nanos: AtomicU64,
    /// Time spent in [`Store::sync`], ns.
    pub sync_nanos: AtomicU64,
}

/// Handle to the committer threads. Cloning shares them.
#[derive(Clone)]
pub struct Committer {
    requests: mpsc::UnboundedSender<Request>,
    stats: Arc<CommitStats>,
}

impl Committer {
    /// Start the committer threads on `store`. They stop when every handle
    /// is dropped.
    pub fn start(store: Arc<dyn Store>) -> Committer {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (applied, to_sync) = std::sync::mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let (apply_store, apply_stats) = (store.clone(), stats.clone());
        std::thread::Builder::new()
            .name("commit-apply".into())
            .spawn(move || apply_batches(&*apply_store, receiver, &applied, &apply_stats))
            .expect("spawning a thread at start-up");
        let sync_stats = stats.clone();
        std::thread::Builder::new()
            .name("commit-sync".into())
            .spawn(move || sync_batches(&*store, &to_sync, &sync_stats))
            .expect("spawning a thread at start-up");
        Committer { requests, stats }
    }

    /// Commit `write` durably, sharing the flush with whatever else is
    /// waiting.
    pub async fn submit(&self, write: Write) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.submit_then(
            write,
            Box::new(move |result| {
                // A caller that went away no longer needs the answer.
                let _ = reply.send(result);
            }),
        );
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Commit `write` durably, then call `then` with the outcome. Never
    /// blocks; `then` runs on a committer thread (or here, if the
    /// committer has stopped).
    pub fn submit_then(&self, write: Write, then: Then) {
        if let Err(refused) = self.requests.send(Request { write, reply: then }) {
            (refused.0.reply)(Err(CommitError::Stopped));
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

fn apply_batches(
    store: &dyn Store,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    to_sync: &std::sync::mpsc::Sender<Applying>,
    stats: &CommitStats,
) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        writes.push(first.write);
        replies.push(first.reply);
        while writes.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => {
                    writes.push(request.write);
                    replies.push(request.reply);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = store.apply(&writes);
        stats
            .apply_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        metrics::counter!("journeyd_commit_batches_total").increment(1);
        metrics::counter!("journeyd_commit_writes_total").increment(writes.len() as u64);
        writes.clear();
        match result {
            Ok(applied) => {
                let batch = Applying {
                    replies: replies.drain(..).zip(applied).collect(),
                };
                if to_sync.send(batch).is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "group commit failed to apply");
                fail_all(replies.drain(..), error);
            }
        }
    }
}

fn sync_batches(
    store: &dyn Store,
    applied: &std::sync::mpsc::Receiver<Applying>,
    stats: &CommitStats,
) {
    while let Ok(first) = applied.recv() {
        let mut batches = vec![first];
        batches.extend(applied.try_iter());
        let started = Instant::now();
        let result = store.sync();
        stats
            .sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        let replies = batches.into_iter().flat_map(|batch| batch.replies);
        match result {
            Ok(()) => {
                for (reply, applied) in replies {
                    reply(Ok(applied));
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "group commit failed to sync");
                fail_all(replies.map(|(reply, _)| reply), error);
            }
        }
    }
}

fn fail_all(replies: impl Iterator<Item = Then>, error: store::Error) {
    let error = Arc::new(error);
    for reply in replies {
        reply(Err(CommitError::Store(error.clone())));
    }
}
