//! Group commit: one thread owns the journal write path.
//!
//! Callers hand a [`Write`] to [`Committer::submit`] and wait. The committer
//! thread takes everything that is waiting (up to [`MAX_BATCH`]), applies it
//! with one [`Store::commit`] (one atomic batch, one flush) and then answers
//! every caller. While it flushes, new writes queue up and form the next
//! batch, so many concurrent steps share each flush and nobody waits for a
//! timer. A caller's write is durable when `submit` returns `Ok`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::store::{self, Applied, Store, Write};

/// Most writes applied in one batch.
pub const MAX_BATCH: usize = 512;

/// Why a write was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store failed; the whole batch was not committed.
    #[error("commit failed")]
    Store(#[source] Arc<store::Error>),
    /// The committer has stopped (the runtime is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Applied, CommitError>>,
}

/// Counters of the commit path.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches applied (one flush each).
    pub batches: AtomicU64,
    /// Writes applied.
    pub writes: AtomicU64,
    /// Time spent inside [`Store::commit`] (encode, apply, flush), ns.
    pub busy_nanos: AtomicU64,
}

/// Handle to the committer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Committer {
    requests: mpsc::UnboundedSender<Request>,
    stats: Arc<CommitStats>,
}

impl Committer {
    /// Start the committer thread on `store`. It stops when every handle
    /// is dropped.
    pub fn start(store: Arc<dyn Store>) -> Committer {
        let (requests, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(CommitStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(store, receiver, &thread_stats))
            .expect("spawning a thread at start-up");
        Committer { requests, stats }
    }

    /// Commit `write` durably, sharing the flush with whatever else is
    /// waiting.
    pub async fn submit(&self, write: Write) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { write, reply })
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Batches and writes so far.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

fn run(store: Arc<dyn Store>, mut receiver: mpsc::UnboundedReceiver<Request>, stats: &CommitStats) {
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
        let started = std::time::Instant::now();
        let result = store.commit(&writes);
        stats
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        metrics::counter!("journeyd_commit_batches_total").increment(1);
        metrics::counter!("journeyd_commit_writes_total").increment(writes.len() as u64);
        match result {
            Ok(applied) => {
                for (reply, applied) in replies.drain(..).zip(applied) {
                    // A caller that went away no longer needs the answer.
                    let _ = reply.send(Ok(applied));
                }
            }
            Err(error) => {
                tracing::error!(error = %error, writes = writes.len(), "group commit failed");
                let error = Arc::new(error);
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(CommitError::Store(error.clone())));
                }
            }
        }
        writes.clear();
    }
}
