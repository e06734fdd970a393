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
//!
//! Reads: the store shows a batch as soon as it is applied, a moment
//! before it is durable. [`Committer::wait_durable`] waits until every
//! batch that had begun applying is durable, so a reader that calls it
//! after reading never reports what a crash could still take back.
//!
//! Faults: a store error is the host's, never a reason to drop a write.
//! The failed apply or sync is tried again with backoff until it succeeds,
//! while [`Committer::health`] reports it; callers simply wait longer. A
//! reply callback that panics is caught and reported to the runtime's
//! panic hook (its instance is looked at again). A panic inside the store
//! itself leaves the journal in an unknown state: the process exits with
//! a clear log line, so a supervisor restarts it and recovery starts from
//! what is durable. The committer is never half-alive.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::faults::{self, Fault};
use crate::store::{self, Applied, InstanceId, Store, Write};

/// Most writes applied in one batch.
pub const MAX_BATCH: usize = 512;
/// First wait before a failed apply or sync is tried again; it doubles
/// up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(10);
/// Longest wait between tries of a failed apply or sync.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Exit status when the committer cannot go on (see the module docs).
pub const EXIT_COMMITTER_FAILED: i32 = 70;

/// Why a write was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The committer has stopped (the runtime is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

/// What the committer reports about itself for readiness.
#[derive(Debug, Default)]
pub struct CommitHealth {
    /// The store error the committer is retrying, while it lasts.
    failing: Mutex<Option<String>>,
    /// Store errors met so far.
    pub failures: AtomicU64,
}

impl CommitHealth {
    /// The error being retried now, if any.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .expect("the commit health lock is never poisoned")
            .clone()
    }

    fn set_failing(&self, error: Option<String>) {
        *self
            .failing
            .lock()
            .expect("the commit health lock is never poisoned") = error;
    }
}

/// Called with the instance (if the write was about one) whose reply
/// callback panicked: the runtime looks at it again.
pub type PanicHook = Arc<dyn Fn(Option<InstanceId>) + Send + Sync>;

/// What runs once a write's fate is known: on the sync thread after a
/// durable commit, or wherever the failure is detected. Keep it short.
pub type Then = Box<dyn FnOnce(Result<Applied, CommitError>) + Send>;

struct Request {
    write: Write,
    reply: Then,
}

/// A reply waiting for its write to be durable, with the instance the
/// write is about (for the panic hook).
struct Reply {
    then: Then,
    instance: Option<InstanceId>,
}

/// A batch that is applied but not yet known durable.
struct Applying {
    /// Its number in apply order, from 1.
    seq: u64,
    replies: Vec<(Reply, Applied)>,
}

/// How far applying and syncing have got, in batches.
struct Watermark {
    /// Batches that began applying (written by the apply thread only).
    started: AtomicU64,
    /// The last batch known durable (every one before it is too).
    durable: tokio::sync::watch::Sender<u64>,
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
    health: Arc<CommitHealth>,
    watermark: Arc<Watermark>,
}

impl Committer {
    /// Start the committer threads on `store`. They stop when every handle
    /// is dropped. `on_panic` hears of reply callbacks that panicked.
    pub fn start(store: Arc<dyn Store>, on_panic: PanicHook) -> Committer {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (applied, to_sync) = std::sync::mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let health = Arc::new(CommitHealth::default());
        let watermark = Arc::new(Watermark {
            started: AtomicU64::new(0),
            durable: tokio::sync::watch::Sender::new(0),
        });
        let (apply_store, apply_stats, apply_health, apply_watermark) = (
            store.clone(),
            stats.clone(),
            health.clone(),
            watermark.clone(),
        );
        std::thread::Builder::new()
            .name("commit-apply".into())
            .spawn(move || {
                exit_on_panic("applying", || {
                    apply_batches(
                        &*apply_store,
                        receiver,
                        &applied,
                        &apply_stats,
                        &apply_health,
                        &apply_watermark,
                    )
                })
            })
            .expect("spawning a thread at start-up");
        let (sync_stats, sync_health, sync_watermark) =
            (stats.clone(), health.clone(), watermark.clone());
        std::thread::Builder::new()
            .name("commit-sync".into())
            .spawn(move || {
                exit_on_panic("syncing", || {
                    sync_batches(
                        &*store,
                        &to_sync,
                        &sync_stats,
                        &sync_health,
                        &sync_watermark,
                        &*on_panic,
                    )
                })
            })
            .expect("spawning a thread at start-up");
        Committer {
            requests,
            stats,
            health,
            watermark,
        }
    }

    /// Wait until everything the store shows now is durable: every batch
    /// that had begun applying when this was called. Call it after a read.
    pub async fn wait_durable(&self) {
        let target = self.watermark.started.load(Ordering::Acquire);
        let mut durable = self.watermark.durable.subscribe();
        // The sender lives as long as this handle: it cannot close.
        let _ = durable.wait_for(|durable| *durable >= target).await;
    }

    /// Whether the committer is retrying a store error now.
    pub fn health(&self) -> &CommitHealth {
        &self.health
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

/// Run a committer thread's loop; if it panics, the journal is in an
/// unknown state, so say so and end the process (see the module docs).
fn exit_on_panic(doing: &str, run: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(run)).is_err() {
        tracing::error!(
            "the committer panicked while {doing} a batch; journeyd exits (status {EXIT_COMMITTER_FAILED}) so a supervisor restarts it from what is durable"
        );
        eprintln!(
            "journeyd: the committer panicked while {doing} a batch; exiting with status {EXIT_COMMITTER_FAILED}"
        );
        std::process::exit(EXIT_COMMITTER_FAILED);
    }
}

/// Run `attempt` until it succeeds, waiting longer after each store error
/// and reporting the error in `health` while it lasts.
fn until_it_succeeds<T>(
    doing: &str,
    health: &CommitHealth,
    mut attempt: impl FnMut() -> store::Result<T>,
) -> T {
    let mut wait = FIRST_RETRY_WAIT;
    loop {
        let result = if faults::armed(Fault::Commit) {
            Err(store::Error::Injected("commit"))
        } else {
            attempt()
        };
        match result {
            Ok(value) => {
                if health.failing().is_some() {
                    tracing::info!("group commit {doing} works again");
                    health.set_failing(None);
                }
                return value;
            }
            Err(error) => {
                let error = crate::error_chain(&error);
                tracing::error!(%error, retry_in_ms = wait.as_millis() as u64, "group commit failed {doing}; retrying");
                metrics::counter!("journeyd_host_faults_total", "kind" => "commit").increment(1);
                health.failures.fetch_add(1, Ordering::Relaxed);
                health.set_failing(Some(format!("{doing} failed: {error}")));
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
}

fn apply_batches(
    store: &dyn Store,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    to_sync: &std::sync::mpsc::Sender<Applying>,
    stats: &CommitStats,
    health: &CommitHealth,
    watermark: &Watermark,
) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        while let Some(request) = next {
            replies.push(Reply {
                then: request.reply,
                instance: request.write.instance(),
            });
            writes.push(request.write);
            next = match replies.len() < MAX_BATCH {
                true => receiver.try_recv().ok(),
                false => None,
            };
        }
        let started = Instant::now();
        // Counted before each try to apply it, so a reader that sees any of
        // it waits for its sync; uncounted when a try fails, since a failed
        // apply shows nothing (readers go on while the store is failing).
        let seq = watermark.started.load(Ordering::Acquire) + 1;
        let applied = until_it_succeeds("applying", health, || {
            watermark.started.store(seq, Ordering::Release);
            let result = store.apply(&writes);
            if result.is_err() {
                watermark.started.store(seq - 1, Ordering::Release);
            }
            result
        });
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
        let batch = Applying {
            seq,
            replies: replies.drain(..).zip(applied).collect(),
        };
        if to_sync.send(batch).is_err() {
            return;
        }
    }
}

fn sync_batches(
    store: &dyn Store,
    applied: &std::sync::mpsc::Receiver<Applying>,
    stats: &CommitStats,
    health: &CommitHealth,
    watermark: &Watermark,
    on_panic: &(dyn Fn(Option<InstanceId>) + Send + Sync),
) {
    while let Ok(first) = applied.recv() {
        let mut batches = vec![first];
        batches.extend(applied.try_iter());
        let started = Instant::now();
        until_it_succeeds("syncing", health, || store.sync());
        stats
            .sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        let newest = batches.iter().map(|batch| batch.seq).max().unwrap_or(0);
        watermark.durable.send_if_modified(|durable| {
            let moved = newest > *durable;
            *durable = (*durable).max(newest);
            moved
        });
        for (reply, applied) in batches.into_iter().flat_map(|batch| batch.replies) {
            let Reply { then, instance } = reply;
            if std::panic::catch_unwind(AssertUnwindSafe(|| then(Ok(applied)))).is_err() {
                tracing::error!(instance = ?instance, "a commit's follow-up panicked; the instance is looked at again");
                metrics::counter!("journeyd_host_faults_total", "kind" => "panic").increment(1);
                on_panic(instance);
            }
        }
    }
}
