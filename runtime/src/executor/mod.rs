//! Running instances: ingest, step execution, commit, resume.
//!
//! [`Runtime`] is the one engine behind the HTTP API and the benchmark.
//! An accepted event is committed (through the [`Committer`]) together with
//! the instances it starts before the caller hears `accepted`. Steps run on
//! a fixed pool of step-worker threads (about one per core), in the sandbox,
//! outside any store transaction; a step's outcome, new state, history
//! entry, outbox messages and notes then go to the committer as one
//! [`InstanceCommit`]. Only when that is durable does the committer queue the
//! instance's next step, so an instance has at most one step queued,
//! running or committing (strict order within an instance, concurrency
//! across instances) and tokio is not on the step path at all. On start,
//! [`Runtime::resume`] queues every instance that still has a step to run;
//! a step interrupted by a crash runs again with the same idempotency key.
//! This module does not parse HTTP or know sled's layout.
//!
//! Files: this one holds the [`Runtime`] itself, its settings and the step
//! workers; `error` its errors; `ingest`, `step`, `timers`, `recovery`
//! (resume, host faults, readiness), `retention`, `plugins`, `grants`, `journeys`,
//! `customers`, `operator`, `integrations`, `dispatch` (delivery), `drain`,
//! `cluster` (work shared with other nodes),
//! `callbacks` and `tokens` add its operations by concern; `committer`,
//! `caps`, `health`, `registry` and `funnel` are the parts it is built
//! from.

mod backup;
mod callbacks;
pub mod caps;
mod catalog;
mod cluster;
pub mod committer;
mod customers;
mod dispatch;
mod drain;
mod error;
mod forget;
mod funnel;
mod grants;
pub mod health;
mod ingest;
mod integrations;
mod journeys;
mod operator;
mod plugins;
mod recovery;
pub mod registry;
mod retention;
mod step;
mod timers;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use self::catalog::load_registry;
use self::registry::Resolved;
use crate::clock::Clock;
use crate::host::{self, Host, StepFailure, StepRequest};
use crate::journey::{self, Journey, PluginRef, Reentry, RetryPolicy, Target};
use crate::store::{
    self, Applied, Canary, CanaryCounts, CappedMessage, ChannelPreference, Commit, CountedSend,
    Delivery, DeliveryFilter, DeliveryPage, DeliveryStatus, Engagement, EventCommit, EventRecord,
    HistoryEntry, Instance, InstanceCommit, InstanceId, InstanceStatus, IntegrationRecord,
    Interaction, LogLine, MigrationRecord, OutboxMessage, PluginRecord, StateChanges, StepOutcome,
    StepRecord, Store, TagRecord, VersionStats,
};
use crate::telemetry;
use crate::window::SendingWindow;

pub use self::callbacks::{CallbackError, CallbackReceipt};
pub use self::caps::{FrequencyCap, SendLedger};
pub use self::committer::{CommitError, Committer};
pub use self::dispatch::DELIVERY_LEASE;
pub use self::drain::Drained;
pub use self::error::{Error, Result};
pub use self::forget::{ForgetInstances, Forgotten, personal_values};
pub use self::funnel::{Funnel, FunnelScope, StepCounts};
pub use self::grants::PluginGrant;
pub use self::health::{Health, Readiness};
pub use self::ingest::{IncomingEvent, Receipt, Skipped};
pub use self::operator::{Action, BulkOutcome};
pub use self::registry::{Registry, Tag};
pub use self::retention::{PURGE_BATCH, PurgeOutcome};
pub use self::tokens::ADMIN_TOKEN_FILE;

/// Timers woken per store scan.
const TIMER_BATCH: usize = 1_000;
/// How long a claimed timer is ours to fire before another claimant may
/// take it (a wake-up commits well within it).
const TIMER_LEASE: Duration = Duration::from_secs(30);
/// Longest the timer loop sleeps without looking again.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);
/// Where a simulated clock's time is kept across starts.
pub const SIMULATED_CLOCK_META: &str = "simulated_clock_ms";

/// Longest event id, customer id or correlation value accepted.
pub const MAX_ID_LEN: usize = 200;
/// The built-in event that opts a customer into a channel (`data.channel`).
pub const OPTED_IN: &str = "channel.opted_in";
/// The built-in event that opts a customer out of a channel.
pub const OPTED_OUT: &str = "channel.opted_out";
/// Attempts to end an instance whose steps keep committing first.
const EXIT_ATTEMPTS: usize = 100;

/// An instance reached the end of its journey.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Which instance.
    pub id: InstanceId,
    /// Completed or failed.
    pub status: InstanceStatus,
}

/// A step ready to run: the instance as last committed, the event that
/// started it, which attempt this is, and the span its span goes under.
#[derive(Debug)]
struct StepJob {
    instance: Instance,
    event: Arc<host::Event>,
    attempt: u32,
    trace: telemetry::Parent,
}

impl StepJob {
    /// The next attempt of `instance`'s current step, as its record
    /// counts, in a trace of its own.
    fn new(instance: Instance, event: Arc<host::Event>) -> Self {
        StepJob {
            attempt: instance.next_attempt(),
            instance,
            event,
            trace: None,
        }
    }

    /// The same step, its span a child of `parent`.
    fn under(self, parent: telemetry::Parent) -> Self {
        StepJob {
            trace: parent,
            ..self
        }
    }
}

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sandbox limits.
    pub limits: host::Limits,
    /// Step worker threads: steps running in the sandbox at once. Steps
    /// are CPU-bound, so about the number of cores.
    pub parallel_steps: usize,
    /// Where compiled plugins are kept across starts (keyed by component
    /// and engine configuration); `None` compiles on every start.
    pub compiled_cache: Option<std::path::PathBuf>,
    /// How long finished instances are kept when their journey does not
    /// say (and how long events that started nothing are kept).
    pub retention: crate::journey::Retention,
    /// Where large temporary files go (a backup on its way out); the
    /// system's temporary directory when `None`.
    pub scratch_dir: Option<std::path::PathBuf>,
    /// How long an API token is accepted after it was created (the
    /// tokens policy); `Forever` never expires them.
    pub token_max_age: crate::journey::Retention,
}

impl Default for Settings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        Settings {
            limits: host::Limits::default(),
            parallel_steps: cores,
            compiled_cache: None,
            retention: crate::journey::Retention::Forever,
            scratch_dir: None,
            token_max_age: crate::journey::Retention::Forever,
        }
    }
}

/// Counters of the step path.
#[derive(Debug, Default)]
pub struct StepStats {
    /// Steps run in the sandbox.
    pub steps: std::sync::atomic::AtomicU64,
    /// Wall time of those runs (instantiate + call), ns.
    pub sandbox_nanos: std::sync::atomic::AtomicU64,
}

/// Run counts by plugin name, then version: counted on every step without
/// allocating.
#[derive(Default)]
struct VersionCounts {
    /// Every run, saved or not.
    total: CountsByVersion,
    /// Runs since the counts were last saved (the store adds them up).
    unsaved: CountsByVersion,
}

#[derive(Default)]
struct CountsByVersion(HashMap<String, HashMap<u32, VersionStats>>);

impl CountsByVersion {
    fn entry(&mut self, plugin: &str, version: u32) -> &mut VersionStats {
        if !self.0.contains_key(plugin) {
            self.0.insert(plugin.to_owned(), HashMap::new());
        }
        self.0
            .get_mut(plugin)
            .expect("inserted above")
            .entry(version)
            .or_insert_with(|| VersionStats {
                plugin: plugin.to_owned(),
                version,
                ..VersionStats::default()
            })
    }

    fn get(&self, plugin: &str, version: u32) -> Option<&VersionStats> {
        self.0.get(plugin)?.get(&version)
    }

    fn into_list(self) -> Vec<VersionStats> {
        self.0
            .into_values()
            .flat_map(HashMap::into_values)
            .collect()
    }
}

impl VersionCounts {
    fn record(&mut self, plugin: &str, version: u32, failed: bool, duration_us: u64) {
        self.total
            .entry(plugin, version)
            .record(failed, duration_us);
        self.unsaved
            .entry(plugin, version)
            .record(failed, duration_us);
    }

    /// The runs since the last save, to be added to the saved counts.
    fn take_unsaved(&mut self) -> Vec<VersionStats> {
        std::mem::take(&mut self.unsaved).into_list()
    }

    /// Runs that could not be saved, to be saved next time.
    fn keep_unsaved(&mut self, counted: &[VersionStats]) {
        for stats in counted {
            self.unsaved.entry(&stats.plugin, stats.version).add(stats);
        }
    }
}

/// Counter names a plugin may create on `/metrics`: each metric is a
/// series for as long as the process lives, so a plugin cannot make more
/// than [`MAX_METRIC_NAMES`] of them (further names are dropped, and
/// counted in `journeyd_plugin_metrics_dropped_total`).
#[derive(Default)]
struct MetricNames(std::sync::Mutex<HashMap<String, HashSet<String>>>);

/// Counter names one plugin may create.
pub const MAX_METRIC_NAMES: usize = 32;

impl MetricNames {
    /// Whether `plugin` may add to counter `name`.
    fn admit(&self, plugin: &str, name: &str) -> bool {
        let mut names = self
            .0
            .lock()
            .expect("the metric names lock is never poisoned");
        let known = names.entry(plugin.to_owned()).or_default();
        if known.contains(name) {
            return true;
        }
        if known.len() >= MAX_METRIC_NAMES {
            metrics::counter!("journeyd_plugin_metrics_dropped_total", "plugin" => plugin.to_owned())
                .increment(1);
            return false;
        }
        known.insert(name.to_owned());
        true
    }
}

/// The runtime: store, sandbox, committer, and the instances in flight.
pub struct Runtime {
    store: Arc<dyn Store>,
    host: Arc<Host>,
    committer: Committer,
    clock: Arc<dyn Clock>,
    registry: Registry,
    /// Steps waiting for a step worker.
    jobs: crossbeam_channel::Sender<StepJob>,
    /// Held while a plugin compiles, so concurrent steps that miss the
    /// cache wait for one compilation instead of each starting their own.
    loading: std::sync::Mutex<()>,
    finished: broadcast::Sender<Finished>,
    step_stats: StepStats,
    /// Run counts per plugin version (saved by [`Runtime::save_version_stats`]).
    versions: std::sync::Mutex<VersionCounts>,
    /// Waiting for the first step start on a digest (see
    /// [`Runtime::first_start_on`]); checked with one atomic load per step.
    start_probes: std::sync::Mutex<Vec<(String, tokio::sync::oneshot::Sender<std::time::Instant>)>>,
    /// Wakes the timer loop: a timer was set or the clock was advanced.
    timers_changed: tokio::sync::Notify,
    /// Wakes the retention loop: the clock was advanced.
    retention_due: tokio::sync::Notify,
    /// The server's default retention.
    retention_default: crate::journey::Retention,
    /// Where large temporary files go.
    scratch_dir: std::path::PathBuf,

    has_start_probes: std::sync::atomic::AtomicBool,
    /// Frequency caps and the sends counted against them.
    sends: Arc<SendLedger>,
    /// Single re-entry starts in flight.
    /// Workers, timer loop, host faults, stuck timers.
    health: Health,
    /// The counter names each plugin has used, bounded.
    metric_names: MetricNames,
    /// Held while a catalog change is stored and registered (so the
    /// registry learns versions in the order the store numbered them), and
    /// while the catalog is reloaded.
    catalog: std::sync::Mutex<()>,
    /// The store's catalog version when the catalog was last loaded.
    catalog_seen: std::sync::atomic::AtomicU64,
    /// Where steps that met a host fault wait to run again.
    tokio: tokio::runtime::Handle,
    /// The integrations in force.
    integrations: crate::delivery::IntegrationSet,
    /// The HTTP client of deliveries.
    outbound: crate::delivery::Outbound,
    /// Wakes the dispatcher: messages were queued or replayed, an
    /// integration was set, the clock moved.
    outbox_changed: tokio::sync::Notify,
    /// Messages this process is sending now.
    in_flight: dispatch::InFlight,
    /// The API tokens in force.
    tokens: tokens::TokenSet,
    /// How long a token is accepted after it was created.
    token_max_age: crate::journey::Retention,
    /// Integrations a config file declared whose plugin is not pushed
    /// yet, by channel.
    declared_integrations: std::sync::Mutex<Vec<(String, crate::delivery::IntegrationSpec)>>,
    /// What step plugins were granted beyond the sandbox.
    grants: grants::GrantSet,
}

/// An id from outside (an event, a customer, a correlation value): 1-200
/// characters, no control characters. Writes and reads check ids the same
/// way, so a read of an id no write could store is refused, not empty.
pub fn check_id(field: &'static str, value: &str) -> Result<()> {
    let valid =
        !value.is_empty() && value.len() <= MAX_ID_LEN && !value.chars().any(|c| c.is_control());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidId {
            field,
            value: value.chars().take(64).collect(),
            rule: "1-200 characters, no control characters",
        })
    }
}

/// A name (journey, plugin, tag, step, event type): 1-64 of A-Z a-z 0-9
/// . _ -, checked the same way by writes and reads.
pub fn check_name(field: &'static str, value: &str) -> Result<()> {
    if journey::is_valid_name(value) {
        Ok(())
    } else {
        Err(Error::InvalidId {
            field,
            value: value.chars().take(64).collect(),
            rule: "1-64 of A-Z a-z 0-9 . _ -",
        })
    }
}

fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("the host only stores JSON it produced or checked")
}

fn empty_object() -> Box<RawValue> {
    raw_json("{}".to_owned())
}

impl Runtime {
    /// Run store work on the blocking pool, off the async threads.
    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || work(&*store)).await??)
    }

    /// Build a runtime on `store`, loading deployed journeys and plugin
    /// versions. Call [`Runtime::resume`] to restart unfinished instances.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Arc<Self>> {
        let workers = settings.parallel_steps.max(1);
        // Only the step workers run plugins, one step each at a time: the
        // instance pool is sized from them so it is never exhausted.
        let limits = host::Limits {
            concurrent_steps: u32::try_from(workers).unwrap_or(u32::MAX),
            ..settings.limits.clone()
        };
        let host = Host::new(limits, settings.compiled_cache.as_deref()).map_err(Error::Engine)?;
        let tokio = tokio::runtime::Handle::try_current().map_err(|_| Error::NoAsyncRuntime)?;
        // Read first: a change made while the catalog loads is seen later.
        let catalog_seen = store.catalog_version()?;
        let registry = load_registry(&*store)?;
        let mut versions = VersionCounts::default();
        for stats in store.version_stats()? {
            versions
                .total
                .entry(&stats.plugin, stats.version)
                .add(&stats);
        }
        let sends = Arc::new(SendLedger::open(store.clone())?);
        let integrations = crate::delivery::IntegrationSet::default();
        integrations.replace_with(store.integrations()?);
        let tokens = tokens::TokenSet::default();
        tokens.replace_with(store.tokens()?);
        let step_grants = grants::GrantSet::default();
        step_grants.reload(&*store)?;
        let (finished, _) = broadcast::channel(65_536);
        let (jobs, queued) = crossbeam_channel::unbounded();
        let runtime = Arc::new_cyclic(|runtime: &std::sync::Weak<Runtime>| {
            let runtime = runtime.clone();
            // A commit's follow-up that panicked may not have scheduled
            // its instance's next step: look at the instance again.
            let on_panic: committer::PanicHook = Arc::new(move |instance| {
                if let (Some(runtime), Some(id)) = (runtime.upgrade(), instance) {
                    runtime.host_fault(id, 1, "a commit's follow-up panicked".into());
                }
            });
            Runtime {
                committer: Committer::start(store.clone(), on_panic),
                store,
                host: Arc::new(host),
                clock,
                registry,
                jobs,
                loading: std::sync::Mutex::new(()),
                finished,
                step_stats: StepStats::default(),
                versions: std::sync::Mutex::new(versions),
                start_probes: std::sync::Mutex::new(Vec::new()),
                timers_changed: tokio::sync::Notify::new(),
                retention_due: tokio::sync::Notify::new(),
                retention_default: settings.retention,
                scratch_dir: settings
                    .scratch_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),

                has_start_probes: std::sync::atomic::AtomicBool::new(false),
                sends,
                health: Health::new(workers),
                metric_names: MetricNames::default(),
                catalog: std::sync::Mutex::new(()),
                catalog_seen: std::sync::atomic::AtomicU64::new(catalog_seen),
                tokio,
                integrations,
                outbound: crate::delivery::Outbound::new(Duration::from_secs(5)),
                outbox_changed: tokio::sync::Notify::new(),
                in_flight: dispatch::InFlight::default(),
                tokens,
                token_max_age: settings.token_max_age,
                declared_integrations: std::sync::Mutex::new(Vec::new()),
                grants: step_grants,
            }
        });
        // The workers hold the runtime: it lives as long as the process.
        for worker in 0..workers {
            let (runtime, queued) = (runtime.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("step-worker-{worker}"))
                .spawn(move || runtime.run_step_jobs(queued))
                .map_err(Error::Thread)?;
        }
        Ok(runtime)
    }

    fn catalog_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.catalog
            .lock()
            .expect("the catalog lock is never poisoned")
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sandbox host.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// The committer (for its statistics).
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Counters of the step path.
    pub fn step_stats(&self) -> &StepStats {
        &self.step_stats
    }

    /// Subscribe to instances finishing.
    pub fn subscribe(&self) -> broadcast::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// Queue an instance's current step for a step worker, if this node
    /// runs the instance (on a store several nodes share, the holder of
    /// its shard runs it, told by the store).
    fn schedule(&self, job: StepJob) {
        if !self.store.owns(job.instance.id) {
            tracing::debug!(instance = %job.instance.id, "its shard is another node's: that node runs the step");
            return;
        }
        if self.jobs.send(job).is_err() {
            tracing::error!("step workers have stopped; instance left for the next start");
        }
    }

    /// A step worker: runs queued steps until the runtime goes away. A
    /// panic while running one is a host fault: the worker goes on and the
    /// step runs again later.
    fn run_step_jobs(self: Arc<Self>, jobs: crossbeam_channel::Receiver<StepJob>) {
        let _alive = self.health.worker_alive();
        while let Ok(job) = jobs.recv() {
            if self.is_draining() {
                // Not started: left as a crash would leave it, for the
                // next start.
                continue;
            }
            let (id, attempt) = (job.instance.id, job.attempt);
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_step(job)));
            if ran.is_err() {
                metrics::counter!("journeyd_host_faults_total", "kind" => "panic").increment(1);
                self.host_fault(id, attempt, "the step worker panicked".into());
            }
        }
    }

    fn finish(&self, instance: &Instance) {
        metrics::counter!("journeyd_instances_finished_total", "status" => instance.status.label())
            .increment(1);
        let _ = self.finished.send(Finished {
            id: instance.id,
            status: instance.status,
        });
    }
}

fn wit_event(record: &EventRecord) -> host::Event {
    host::Event {
        id: record.id.clone(),
        kind: record.kind.clone(),
        customer_id: record.customer_id.clone(),
        data: record.data.get().to_owned(),
        received_at_ms: record.received_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_may_use_only_so_many_counter_names() {
        let names = MetricNames::default();
        for n in 0..MAX_METRIC_NAMES {
            assert!(names.admit("classify", &format!("counter_{n}")));
        }
        assert!(!names.admit("classify", "one_too_many"), "beyond the bound");
        assert!(
            names.admit("classify", "counter_0"),
            "a known name still counts"
        );
        assert!(
            names.admit("handover", "one_too_many"),
            "the bound is per plugin"
        );
    }
}
