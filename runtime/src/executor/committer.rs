//! Group commit: the journal write path.
//!
//! Callers hand a [`Commit`] to [`Committer::submit`] and wait. Two commit
//! threads take turns: one gathers everything that is waiting (up to
//! [`MAX_BATCH`]) and commits it with one [`Journal::commit`], which
//! returns when the group is durable; while it waits for its flush, the
//! other gathers what arrived meanwhile as the next group. So many
//! concurrent steps share each flush and nobody waits for a timer.
//!
//! Guarantee: `submit` returns `Ok` only once its commit is durable.
//!
//! Reads: a backend may show a group a moment before it is durable.
//! [`Committer::wait_durable`] waits until every group that had begun
//! committing is durable, so a reader that calls it after reading never
//! reports what a crash could still take back.
//!
//! Faults: a store error is the host's, never a reason to drop a commit.
//! The group is committed again with backoff until it succeeds (the
//! journal makes that safe), while [`Committer::health`] reports it;
//! callers simply wait longer. A follow-up that panics is caught and
//! reported to the runtime's panic hook (its instance is looked at again).
//! A panic inside the store itself leaves the journal in an unknown state:
//! the process exits with a clear log line, so a supervisor restarts it
//! and recovery starts from what is durable. The committer is never
//! half-alive.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::faults::{self, Fault};
use crate::store::{self, Applied, Commit, InstanceId, Journal};

/// Most commits in one group.
pub const MAX_BATCH: usize = 512;
/// Threads committing groups: two, so one group's flush overlaps the
/// gathering and applying of the next.
const COMMIT_THREADS: usize = 2;
/// First wait before a failed group is committed again; it doubles up to
/// [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(10);
/// Longest wait between tries of a failed group.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// Exit status when the committer cannot go on (see the module docs).
pub const EXIT_COMMITTER_FAILED: i32 = 70;

/// Why a commit was not made.
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

/// Called with the instance (if the commit was about one) whose follow-up
/// panicked: the runtime looks at it again.
pub type PanicHook = Arc<dyn Fn(Option<InstanceId>) + Send + Sync>;

/// What runs once a commit's fate is known: on a commit thread after it is
/// durable, or wherever the failure is detected. Keep it short.
pub type FollowUp = Box<dyn FnOnce(Result<Applied, CommitError>) + Send>;

struct Request {
    commit: Commit,
    follow_up: FollowUp,
}

/// Groups that began committing and are not durable yet, by number.
#[derive(Default)]
struct InFlight {
    /// The number of the latest group that began.
    latest: u64,
    /// The numbers of those still open.
    open: BTreeSet<u64>,
}

/// How far committing has got, in groups.
#[derive(Default)]
struct Watermark {
    in_flight: Mutex<InFlight>,
    /// Every group up to this number is durable (or showed nothing).
    durable: tokio::sync::watch::Sender<u64>,
}

impl Watermark {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .expect("the watermark lock is never poisoned")
    }

    /// A group begins committing: reads may show it from now on.
    fn open(&self) -> u64 {
        let mut in_flight = self.in_flight();
        in_flight.latest += 1;
        let group = in_flight.latest;
        in_flight.open.insert(group);
        group
    }

    /// A group is durable, or is known to show nothing.
    fn close(&self, group: u64) {
        let mut in_flight = self.in_flight();
        in_flight.open.remove(&group);
        let durable = match in_flight.open.first() {
            Some(oldest_open) => oldest_open - 1,
            None => in_flight.latest,
        };
        self.durable.send_if_modified(|known| {
            let moved = durable > *known;
            *known = (*known).max(durable);
            moved
        });
    }
}

/// Counters of the commit path.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Groups committed.
    pub batches: AtomicU64,
    /// Commits made.
    pub writes: AtomicU64,
    /// Time spent in [`Journal::commit`], ns.
    pub commit_nanos: AtomicU64,
}

/// Handle to the committer threads. Cloning shares them.
#[derive(Clone)]
pub struct Committer {
    requests: crossbeam_channel::Sender<Request>,
    /// Commits submitted whose follow-up has not run yet.
    pending: Arc<AtomicUsize>,
    stats: Arc<CommitStats>,
    health: Arc<CommitHealth>,
    watermark: Arc<Watermark>,
}

/// What the commit threads share.
struct Shared {
    journal: Arc<dyn Journal>,
    requests: crossbeam_channel::Receiver<Request>,
    pending: Arc<AtomicUsize>,
    /// Held by the thread gathering the next group.
    gathering: Mutex<()>,
    stats: Arc<CommitStats>,
    health: Arc<CommitHealth>,
    watermark: Arc<Watermark>,
    on_panic: PanicHook,
}

impl Committer {
    /// Start the committer threads on `journal`. They stop when every
    /// handle is dropped. `on_panic` hears of follow-ups that panicked.
    pub fn start(journal: Arc<dyn Journal>, on_panic: PanicHook) -> Committer {
        let (requests, receiver) = crossbeam_channel::unbounded();
        let stats = Arc::new(CommitStats::default());
        let health = Arc::new(CommitHealth::default());
        let watermark = Arc::new(Watermark::default());
        let pending = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            journal,
            requests: receiver,
            pending: pending.clone(),
            gathering: Mutex::new(()),
            stats: stats.clone(),
            health: health.clone(),
            watermark: watermark.clone(),
            on_panic,
        });
        for thread in 0..COMMIT_THREADS {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("commit-{thread}"))
                .spawn(move || exit_on_panic(|| commit_groups(&shared)))
                .expect("spawning a thread at start-up");
        }
        Committer {
            requests,
            pending,
            stats,
            health,
            watermark,
        }
    }

    /// Wait until everything the store shows now is durable: every group
    /// that had begun committing when this was called. Call it after a read.
    pub async fn wait_durable(&self) {
        let target = self.watermark.in_flight().latest;
        let mut durable = self.watermark.durable.subscribe();
        // The sender lives as long as this handle: it cannot close.
        let _ = durable.wait_for(|durable| *durable >= target).await;
    }

    /// Whether the committer is retrying a store error now.
    pub fn health(&self) -> &CommitHealth {
        &self.health
    }

    /// Commit durably, sharing the flush with whatever else is waiting.
    pub async fn submit(&self, commit: impl Into<Commit>) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.submit_then(
            commit,
            Box::new(move |result| {
                // A caller that went away no longer needs the answer.
                let _ = reply.send(result);
            }),
        );
        answer.await.map_err(|_| CommitError::Stopped)?
    }

    /// Commit durably, then call `follow_up` with the outcome. Never
    /// blocks; `follow_up` runs on a commit thread (or here, if the
    /// committer has stopped).
    pub fn submit_then(&self, commit: impl Into<Commit>, follow_up: FollowUp) {
        let request = Request {
            commit: commit.into(),
            follow_up,
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(refused) = self.requests.send(request) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            (refused.0.follow_up)(Err(CommitError::Stopped));
        }
    }

    /// Commits submitted and not yet answered (their follow-ups run).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Counters so far.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

/// Run a commit thread's loop; if it panics, the journal is in an unknown
/// state, so say so and end the process (see the module docs).
fn exit_on_panic(run: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(run)).is_err() {
        tracing::error!(
            "the committer panicked while committing a group; journeyd exits (status {EXIT_COMMITTER_FAILED}) so a supervisor restarts it from what is durable"
        );
        eprintln!(
            "journeyd: the committer panicked while committing a group; exiting with status {EXIT_COMMITTER_FAILED}"
        );
        std::process::exit(EXIT_COMMITTER_FAILED);
    }
}

/// One commit thread: gather a group (while holding the gathering lock, so
/// the other thread gathers the next one), commit it, answer its callers.
fn commit_groups(shared: &Shared) {
    let mut commits = Vec::with_capacity(MAX_BATCH);
    let mut follow_ups = Vec::with_capacity(MAX_BATCH);
    loop {
        let group = {
            let _gathering = shared
                .gathering
                .lock()
                .expect("the gathering lock is never poisoned");
            let Ok(first) = shared.requests.recv() else {
                return;
            };
            let mut next = Some(first);
            while let Some(request) = next {
                follow_ups.push((request.follow_up, request.commit.instance()));
                commits.push(request.commit);
                next = match commits.len() < MAX_BATCH {
                    true => shared.requests.try_recv().ok(),
                    false => None,
                };
            }
            // Opened before the journal may show any of it.
            shared.watermark.open()
        };
        let started = Instant::now();
        let applied = commit_until_it_succeeds(shared, group, &commits);
        let stats = &shared.stats;
        stats
            .commit_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(commits.len() as u64, Ordering::Relaxed);
        metrics::counter!("journeyd_commit_batches_total").increment(1);
        metrics::counter!("journeyd_commit_writes_total").increment(commits.len() as u64);
        commits.clear();
        for ((follow_up, instance), applied) in follow_ups.drain(..).zip(applied) {
            if std::panic::catch_unwind(AssertUnwindSafe(|| follow_up(Ok(applied)))).is_err() {
                tracing::error!(instance = ?instance, "a commit's follow-up panicked; the instance is looked at again");
                metrics::counter!("journeyd_host_faults_total", "kind" => "panic").increment(1);
                (shared.on_panic)(instance);
            }
            shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Commit `commits` as group number `group` until the journal has them
/// durably, waiting longer after each store error and reporting it in the
/// health while it lasts; the group is closed in the watermark once
/// durable.
fn commit_until_it_succeeds(shared: &Shared, mut group: u64, commits: &[Commit]) -> Vec<Applied> {
    let health = &shared.health;
    let mut wait = FIRST_RETRY_WAIT;
    // Set once the group is applied but not known durable: from then on,
    // any successful commit (an empty one) makes it durable.
    let mut applied_not_durable: Option<Vec<Applied>> = None;
    loop {
        let to_commit = match applied_not_durable {
            Some(_) => &[][..],
            None => commits,
        };
        let result = if faults::armed(Fault::Commit) {
            Err(store::Error::Injected("commit"))
        } else {
            shared.journal.commit(to_commit)
        };
        match result {
            Ok(applied) => {
                shared.watermark.close(group);
                if health.failing().is_some() {
                    tracing::info!("group commit works again");
                    health.set_failing(None);
                }
                return applied_not_durable.unwrap_or(applied);
            }
            Err(error) => {
                if let store::Error::NotDurable { applied, .. } = &error
                    && applied_not_durable.is_none()
                {
                    applied_not_durable = Some(applied.clone());
                }
                // A group the journal may show stays open, so readers wait
                // for it; one that shows nothing does not hold them up.
                let shows_nothing = applied_not_durable.is_none();
                if shows_nothing {
                    shared.watermark.close(group);
                }
                let error = crate::error_chain(&error);
                tracing::error!(%error, retry_in_ms = wait.as_millis() as u64, "group commit failed; retrying");
                metrics::counter!("journeyd_host_faults_total", "kind" => "commit").increment(1);
                health.failures.fetch_add(1, Ordering::Relaxed);
                health.set_failing(Some(format!("committing failed: {error}")));
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_RETRY_WAIT);
                if shows_nothing {
                    group = shared.watermark.open();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::store::{
        EventRecord, HistoryEntry, Instance, InstanceCommit, InstanceFilter, InstancePage,
        Result as StoreResult,
    };

    /// A journal that records each group it is given, answers `StaleStep`
    /// for odd instance ids, and can be told to fail or to hold commits.
    #[derive(Default)]
    struct JournalDouble {
        groups: Mutex<Vec<Vec<u64>>>,
        /// Errors to return, first first, before committing normally.
        errors: Mutex<Vec<store::Error>>,
        /// Calls so far.
        calls: AtomicU64,
        /// Calls from this one on (0: none) say so on `entered`, then wait
        /// for a message on `hold`.
        hold_from: u64,
        entered: Mutex<Option<mpsc::Sender<()>>>,
        hold: Mutex<Option<mpsc::Receiver<()>>>,
    }

    impl JournalDouble {
        /// A double that holds calls from `from` on; returns it with the
        /// receiver of "entered" signals and the sender of releases.
        fn holding(from: u64) -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
            let (entered, entries) = mpsc::channel();
            let (release, hold) = mpsc::channel();
            let double = JournalDouble {
                hold_from: from,
                entered: Mutex::new(Some(entered)),
                hold: Mutex::new(Some(hold)),
                ..JournalDouble::default()
            };
            (double, entries, release)
        }
    }

    fn backend_error() -> store::Error {
        store::Error::Backend("disk on fire".into())
    }

    impl Journal for JournalDouble {
        fn commit(&self, commits: &[Commit]) -> StoreResult<Vec<Applied>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.hold_from > 0 && call >= self.hold_from {
                if let Some(entered) = &*self.entered.lock().expect("lock") {
                    let _ = entered.send(());
                }
                // One held call takes one release; the lock is not held
                // while waiting, so two calls can wait at once.
                loop {
                    let released = self
                        .hold
                        .lock()
                        .expect("lock")
                        .as_ref()
                        .map(|hold| hold.try_recv());
                    match released {
                        Some(Ok(())) | None => break,
                        Some(Err(_)) => std::thread::yield_now(),
                    }
                }
            }
            let ids: Vec<u64> = commits
                .iter()
                .map(|commit| commit.instance().map_or(0, |id| id.0))
                .collect();
            self.groups.lock().expect("lock").push(ids.clone());
            let applied = ids
                .iter()
                .map(|id| match id % 2 {
                    0 => Applied::Done,
                    _ => Applied::StaleStep,
                })
                .collect();
            let mut errors = self.errors.lock().expect("lock");
            if !errors.is_empty() {
                return Err(match errors.remove(0) {
                    store::Error::NotDurable { source, .. } => {
                        store::Error::NotDurable { applied, source }
                    }
                    other => other,
                });
            }
            Ok(applied)
        }

        fn next_id(&self) -> StoreResult<u64> {
            unreachable!("the committer only commits")
        }
        fn event(&self, _: &str) -> StoreResult<Option<EventRecord>> {
            unreachable!("the committer only commits")
        }
        fn instance(&self, _: InstanceId) -> StoreResult<Option<Instance>> {
            unreachable!("the committer only commits")
        }
        fn search_instances(&self, _: &InstanceFilter) -> StoreResult<InstancePage> {
            unreachable!("the committer only commits")
        }
        fn running_instances(&self) -> StoreResult<Vec<Instance>> {
            unreachable!("the committer only commits")
        }
        fn settled(&self, _: u64) -> StoreResult<bool> {
            unreachable!("the committer only commits")
        }
        fn history(&self, _: InstanceId) -> StoreResult<Vec<HistoryEntry>> {
            unreachable!("the committer only commits")
        }
        fn correlated(&self, _: &str, _: &str) -> StoreResult<Vec<InstanceId>> {
            unreachable!("the committer only commits")
        }
        fn active_of(&self, _: &str, _: &str) -> StoreResult<Vec<InstanceId>> {
            unreachable!("the committer only commits")
        }
        fn any_waiting_for(&self, _: &str) -> StoreResult<bool> {
            unreachable!("the committer only commits")
        }
        fn waiting_for(&self, _: &str, _: &str) -> StoreResult<Vec<InstanceId>> {
            unreachable!("the committer only commits")
        }
        fn pending_exits(&self) -> StoreResult<Vec<(InstanceId, String)>> {
            unreachable!("the committer only commits")
        }
        fn forget_exit(&self, _: InstanceId) -> StoreResult<()> {
            unreachable!("the committer only commits")
        }
        fn finished_before(
            &self,
            _: &str,
            _: u64,
            _: usize,
        ) -> StoreResult<Vec<(InstanceId, u64)>> {
            unreachable!("the committer only commits")
        }
        fn purge(&self, _: &[crate::store::Purge]) -> StoreResult<usize> {
            unreachable!("the committer only commits")
        }
        fn purged_tallies(&self, _: &str) -> StoreResult<Vec<crate::store::DayTally>> {
            unreachable!("the committer only commits")
        }
        fn live_tallies(&self, _: &str) -> StoreResult<Vec<crate::store::DayTally>> {
            unreachable!("the committer only commits")
        }
        fn standing(&self, _: Option<&str>) -> StoreResult<Vec<crate::store::StandingCounts>> {
            unreachable!("the committer only commits")
        }
        fn purge_old_records(&self, _: u64, _: usize) -> StoreResult<usize> {
            unreachable!("the committer only commits")
        }
        fn customer_events(&self, _: &str) -> StoreResult<Vec<EventRecord>> {
            unreachable!("the committer only commits")
        }
        fn forget_customer(&self, _: &str) -> StoreResult<crate::store::ForgottenRecords> {
            unreachable!("the committer only commits")
        }
    }

    fn change(id: u64) -> InstanceCommit {
        let instance = crate::store::suite::instance(id, "c-1");
        let entry = HistoryEntry::Woke {
            at_ms: 1,
            due_ms: 1,
        };
        InstanceCommit::new(instance, entry)
    }

    fn start(journal: &Arc<JournalDouble>) -> Committer {
        Committer::start(journal.clone(), Arc::new(|_| {}))
    }

    /// Submit `ids`; the receivers hear each one's outcome.
    fn submit_all(
        committer: &Committer,
        ids: impl IntoIterator<Item = u64>,
    ) -> Vec<(u64, mpsc::Receiver<Result<Applied, CommitError>>)> {
        ids.into_iter()
            .map(|id| {
                let (sender, receiver) = mpsc::channel();
                committer.submit_then(
                    change(id),
                    Box::new(move |result| sender.send(result).expect("listening")),
                );
                (id, receiver)
            })
            .collect()
    }

    #[test]
    fn commits_waiting_behind_a_busy_committer_share_a_group_and_each_hears_its_own_outcome() {
        let (journal, entries, release) = JournalDouble::holding(1);
        let journal = Arc::new(journal);
        let committer = start(&journal);
        // Both commit threads take a group and wait in the journal; the
        // rest queue up behind them.
        let first = submit_all(&committer, [2]);
        entries.recv().expect("the first group is in the journal");
        let second = submit_all(&committer, [4]);
        entries.recv().expect("the second group is in the journal");
        let rest = submit_all(&committer, 10..30);
        for _ in 0..3 {
            release.send(()).expect("held");
        }
        let first = first.into_iter().chain(second);
        for (id, outcome) in first.into_iter().chain(rest) {
            let expected = match id % 2 {
                0 => Applied::Done,
                _ => Applied::StaleStep,
            };
            assert_eq!(
                outcome.recv().expect("answered").expect("committed"),
                expected
            );
        }
        let groups = journal.groups.lock().expect("lock").clone();
        let committed: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(committed, 22, "every commit once: {groups:?}");
        assert!(
            groups.iter().any(|group| group.len() >= 10),
            "the queued commits went in one group: {groups:?}"
        );
    }

    #[test]
    fn a_failing_journal_is_retried_and_reported_until_it_commits() {
        let journal = Arc::new(JournalDouble::default());
        *journal.errors.lock().expect("lock") = vec![backend_error(), backend_error()];
        let committer = start(&journal);
        let outcomes = submit_all(&committer, [2]);
        let (_, outcome) = &outcomes[0];
        assert_eq!(
            outcome.recv().expect("answered").expect("committed"),
            Applied::Done
        );
        assert_eq!(committer.health().failures.load(Ordering::Relaxed), 2);
        assert_eq!(committer.health().failing(), None, "recovered");
        assert_eq!(
            journal.groups.lock().expect("lock").len(),
            3,
            "tried three times"
        );
    }

    #[test]
    fn a_group_applied_but_not_durable_is_made_durable_by_an_empty_commit() {
        let journal = Arc::new(JournalDouble::default());
        *journal.errors.lock().expect("lock") = vec![
            store::Error::NotDurable {
                applied: Vec::new(),
                source: "flush failed".into(),
            },
            backend_error(),
        ];
        let committer = start(&journal);
        let outcomes = submit_all(&committer, [3]);
        let (_, outcome) = &outcomes[0];
        assert_eq!(
            outcome.recv().expect("answered").expect("committed"),
            Applied::StaleStep,
            "the outcome of the try that applied it"
        );
        let groups = journal.groups.lock().expect("lock").clone();
        assert_eq!(
            groups,
            vec![vec![3], vec![], vec![]],
            "applied once, then flushed"
        );
    }

    #[test]
    fn a_reader_waits_for_a_group_that_is_applied_but_not_durable() {
        // The first try reports NotDurable; the retry is held.
        let (journal, entries, release) = JournalDouble::holding(2);
        *journal.errors.lock().expect("lock") = vec![store::Error::NotDurable {
            applied: Vec::new(),
            source: "flush failed".into(),
        }];
        let journal = Arc::new(journal);
        let committer = start(&journal);
        let outcomes = submit_all(&committer, [2]);
        entries.recv().expect("the retry is in the journal");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let waited = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), committer.wait_durable()).await
        });
        assert!(
            waited.is_err(),
            "the read waits while the group is not durable"
        );
        release.send(()).expect("the retry is held");
        outcomes[0].1.recv().expect("answered").expect("committed");
        runtime.block_on(committer.wait_durable());
    }
}
