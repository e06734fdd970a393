//! What the runtime knows about its own health: whether it has finished
//! starting, whether its step workers and timer loop are alive, which
//! steps wait to run again after a host fault, and which timers could not
//! be fired. `/readyz` is built from this and from the committer's health;
//! nothing here decides anything about an instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::InstanceId;

/// First wait before a step that met a host fault runs again; it doubles
/// per fault of the same instance up to [`MAX_HOST_RETRY_WAIT`].
const FIRST_HOST_RETRY_WAIT: Duration = Duration::from_millis(50);
/// Longest wait before a step that met a host fault runs again.
const MAX_HOST_RETRY_WAIT: Duration = Duration::from_secs(30);
/// First wait before a timer that could not be fired is tried again.
const FIRST_TIMER_RETRY_WAIT: Duration = Duration::from_millis(100);
/// Longest wait before a timer that could not be fired is tried again.
const MAX_TIMER_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The timer loop looks at least once a second; silent for this long, it
/// is reported as stalled.
const TIMER_LOOP_STALLED: Duration = Duration::from_secs(10);

/// The wait before try `failures + 1`: doubling from `first`, at most `max`.
fn backoff(failures: u32, first: Duration, max: Duration) -> Duration {
    first
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max)
}

/// A step waiting to run again after a host fault.
#[derive(Debug, Clone, Serialize)]
pub struct HostFaultReport {
    /// The instance.
    pub instance: InstanceId,
    /// Host faults in a row for it.
    pub faults: u32,
    /// The last one.
    pub reason: String,
}

/// A timer that could not be fired, tried again later.
#[derive(Debug, Clone, Serialize)]
pub struct StuckTimer {
    /// The instance it wakes.
    pub instance: InstanceId,
    /// When it was due, ms since the Unix epoch.
    pub due_ms: u64,
    /// Why it could not be fired.
    pub reason: String,
    /// Tries so far.
    pub failures: u32,
    #[serde(skip)]
    retry_at: Instant,
}

/// The runtime's health, shared by its threads.
pub struct Health {
    started: Instant,
    ready: AtomicBool,
    /// Shutting down: no new events, steps, timers or deliveries.
    draining: AtomicBool,
    workers_expected: usize,
    workers_alive: AtomicUsize,
    /// ms since `started` when the timer loop last went round.
    timer_loop_seen_ms: AtomicU64,
    /// Steps in the sandbox now, and the most there ever were at once.
    steps_running: AtomicUsize,
    steps_running_peak: AtomicUsize,
    /// Host faults by instance, until its step commits; `host_fault_count`
    /// lets the step path skip the lock when there are none.
    host_faults: Mutex<HashMap<InstanceId, HostFaultReport>>,
    host_fault_count: AtomicUsize,
    stuck_timers: Mutex<HashMap<(u64, InstanceId), StuckTimer>>,
}

/// Marks a step worker alive until it is dropped.
pub struct WorkerAlive<'a>(&'a Health);

impl Drop for WorkerAlive<'_> {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a step in the sandbox until it is dropped.
pub struct StepRunning<'a>(&'a Health);

impl Drop for StepRunning<'_> {
    fn drop(&mut self) {
        self.0.steps_running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Health {
    /// Health of a runtime with `workers` step workers.
    pub fn new(workers: usize) -> Self {
        Health {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            workers_expected: workers,
            workers_alive: AtomicUsize::new(0),
            timer_loop_seen_ms: AtomicU64::new(0),
            steps_running: AtomicUsize::new(0),
            steps_running_peak: AtomicUsize::new(0),
            host_faults: Mutex::new(HashMap::new()),
            host_fault_count: AtomicUsize::new(0),
            stuck_timers: Mutex::new(HashMap::new()),
        }
    }

    /// Starting is over: resumed instances are scheduled and the timer
    /// loop runs.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether starting is over.
    pub fn is_started(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Shutting down: no new work is taken (see [`Runtime::drain`](super::Runtime::drain)).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether it is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Steps in the sandbox now.
    pub fn steps_running(&self) -> usize {
        self.steps_running.load(Ordering::Acquire)
    }

    /// A step worker starts; it counts as alive until the guard drops.
    pub fn worker_alive(&self) -> WorkerAlive<'_> {
        self.workers_alive.fetch_add(1, Ordering::AcqRel);
        WorkerAlive(self)
    }

    /// A step enters the sandbox; it counts until the guard drops.
    pub fn step_running(&self) -> StepRunning<'_> {
        let now = self.steps_running.fetch_add(1, Ordering::AcqRel) + 1;
        self.steps_running_peak.fetch_max(now, Ordering::AcqRel);
        StepRunning(self)
    }

    /// The timer loop went round.
    pub fn timer_loop_seen(&self) {
        self.timer_loop_seen_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// Record a host fault of `instance`'s step; returns how long to wait
    /// before running it again.
    pub fn host_fault(&self, instance: InstanceId, reason: String) -> Duration {
        let mut faults = self.host_faults();
        let report = faults.entry(instance).or_insert_with(|| HostFaultReport {
            instance,
            faults: 0,
            reason: String::new(),
        });
        report.faults += 1;
        report.reason = reason;
        let wait = backoff(report.faults, FIRST_HOST_RETRY_WAIT, MAX_HOST_RETRY_WAIT);
        self.host_fault_count.store(faults.len(), Ordering::Release);
        wait
    }

    /// `instance`'s step committed or it stopped running: its host faults
    /// are over.
    pub fn host_fault_over(&self, instance: InstanceId) {
        if self.host_fault_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut faults = self.host_faults();
        faults.remove(&instance);
        self.host_fault_count.store(faults.len(), Ordering::Release);
    }

    fn host_faults(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, HostFaultReport>> {
        self.host_faults
            .lock()
            .expect("the host faults lock is never poisoned")
    }

    fn stuck(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, InstanceId), StuckTimer>> {
        self.stuck_timers
            .lock()
            .expect("the stuck timers lock is never poisoned")
    }

    /// Record that the timer of `instance` due at `due_ms` could not be
    /// fired; it is left alone until its next try.
    pub fn timer_stuck(&self, due_ms: u64, instance: InstanceId, reason: String) {
        let mut stuck = self.stuck();
        let timer = stuck
            .entry((due_ms, instance))
            .or_insert_with(|| StuckTimer {
                instance,
                due_ms,
                reason: String::new(),
                failures: 0,
                retry_at: Instant::now(),
            });
        timer.failures += 1;
        timer.reason = reason;
        timer.retry_at =
            Instant::now() + backoff(timer.failures, FIRST_TIMER_RETRY_WAIT, MAX_TIMER_RETRY_WAIT);
    }

    /// The timer fired or is gone: forget its troubles.
    pub fn timer_fired(&self, due_ms: u64, instance: InstanceId) {
        let mut stuck = self.stuck();
        if !stuck.is_empty() {
            stuck.remove(&(due_ms, instance));
        }
    }

    /// Whether a stuck timer must wait longer before its next try.
    pub fn timer_backing_off(&self, due_ms: u64, instance: InstanceId) -> bool {
        let stuck = self.stuck();
        stuck
            .get(&(due_ms, instance))
            .is_some_and(|timer| timer.retry_at > Instant::now())
    }

    /// How many timers are stuck, and when the next of them is tried.
    pub fn stuck_timers(&self) -> (usize, Option<Duration>) {
        let stuck = self.stuck();
        let now = Instant::now();
        let next = stuck
            .values()
            .map(|timer| timer.retry_at.saturating_duration_since(now))
            .min();
        (stuck.len(), next)
    }

    /// A report for `/readyz`.
    pub fn report(&self, committer: Option<String>, shards: Option<String>) -> Readiness {
        let workers_alive = self.workers_alive.load(Ordering::Acquire);
        let seen_ms = self.timer_loop_seen_ms.load(Ordering::Acquire);
        let now_ms = self.started.elapsed().as_millis() as u64;
        let started = self.is_started();
        let timer_loop_ok =
            started && now_ms.saturating_sub(seen_ms) < TIMER_LOOP_STALLED.as_millis() as u64;
        let mut host_faults: Vec<HostFaultReport> = self.host_faults().values().cloned().collect();
        host_faults.sort_by_key(|report| report.instance);
        host_faults.truncate(20);
        let mut stuck_timers: Vec<StuckTimer> = self.stuck().values().cloned().collect();
        stuck_timers.sort_by_key(|timer| (timer.due_ms, timer.instance));
        stuck_timers.truncate(20);
        let mut problems = Vec::new();
        if self.is_draining() {
            problems.push("draining: journeyd is shutting down".to_owned());
        }
        if !started {
            problems.push("starting: resuming instances".to_owned());
        }
        if workers_alive < self.workers_expected {
            problems.push(format!(
                "{workers_alive} of {} step workers are alive",
                self.workers_expected
            ));
        }
        if started && !timer_loop_ok {
            problems.push(format!(
                "the timer loop has not gone round for {} s",
                now_ms.saturating_sub(seen_ms) / 1000
            ));
        }
        if let Some(error) = &committer {
            problems.push(format!("the committer is retrying: {error}"));
        }
        if let Some(problem) = shards {
            problems.push(problem);
        }
        let faulting = self.host_fault_count.load(Ordering::Acquire);
        if let Some(first) = host_faults.first() {
            problems.push(format!(
                "{faulting} steps wait to run again after a host fault (e.g. {}: {})",
                first.instance, first.reason
            ));
        }
        Readiness {
            ready: problems.is_empty(),
            problems,
            workers: WorkerReport {
                alive: workers_alive,
                expected: self.workers_expected,
                steps_running: self.steps_running.load(Ordering::Acquire),
                steps_running_peak: self.steps_running_peak.load(Ordering::Acquire),
            },
            committer: committer.unwrap_or_else(|| "ok".to_owned()),
            timer_loop: if timer_loop_ok { "ok" } else { "not running" }.to_owned(),
            host_faults,
            stuck_timers,
        }
    }
}

/// The step workers, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// Workers alive.
    pub alive: usize,
    /// Workers started.
    pub expected: usize,
    /// Steps in the sandbox now.
    pub steps_running: usize,
    /// The most steps that were in the sandbox at once.
    pub steps_running_peak: usize,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Whether this runtime can take events and run steps now.
    pub ready: bool,
    /// What stands in the way, for people; empty when ready.
    pub problems: Vec<String>,
    /// The step workers.
    pub workers: WorkerReport,
    /// `ok`, or the store error the committer is retrying.
    pub committer: String,
    /// `ok` or `not running`.
    pub timer_loop: String,
    /// Steps waiting to run again after a host fault (at most 20).
    pub host_faults: Vec<HostFaultReport>,
    /// Timers that could not be fired, tried again with backoff (at most
    /// 20). They do not make the runtime unready.
    pub stuck_timers: Vec<StuckTimer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_longest() {
        let first = Duration::from_millis(50);
        let max = Duration::from_secs(30);
        assert_eq!(backoff(1, first, max), first);
        assert_eq!(backoff(2, first, max), first * 2);
        assert_eq!(backoff(4, first, max), first * 8);
        assert_eq!(backoff(40, first, max), max);
    }

    #[test]
    fn a_host_fault_makes_the_runtime_unready_until_its_step_commits() {
        let health = Health::new(1);
        let _worker = health.worker_alive();
        health.set_ready();
        health.timer_loop_seen();
        assert!(health.report(None, None).ready);
        health.host_fault(InstanceId(7), "the pool is full".into());
        let report = health.report(None, None);
        assert!(!report.ready);
        assert!(
            report.problems[0].contains("i-7: the pool is full"),
            "{report:?}"
        );
        health.host_fault_over(InstanceId(7));
        assert!(health.report(None, None).ready);
        assert!(!health.report(Some("syncing failed".into()), None).ready);
        assert!(!health.report(None, Some("holds no shard yet".into())).ready);
    }

    #[test]
    fn a_stuck_timer_backs_off_and_is_forgotten_once_fired() {
        let health = Health::new(1);
        health.timer_stuck(5, InstanceId(1), "its event is missing".into());
        assert!(health.timer_backing_off(5, InstanceId(1)));
        assert!(!health.timer_backing_off(6, InstanceId(1)));
        assert_eq!(health.stuck_timers().0, 1);
        health.timer_fired(5, InstanceId(1));
        assert_eq!(health.stuck_timers().0, 0);
    }
}
