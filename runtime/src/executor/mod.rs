//! Running instances: ingest, step execution, commit, resume.
//!
//! [`Runtime`] is the one engine behind the HTTP API and the benchmark.
//! An accepted event is committed (through the [`Committer`]) together with
//! the instances it starts before the caller hears `accepted`. Steps run on
//! a fixed pool of step-worker threads (about one per core), in the sandbox,
//! outside any store transaction; a step's outcome, new state, history
//! entry, outbox messages and notes then go to the committer as one
//! [`StepCommit`]. Only when that is durable does the committer queue the
//! instance's next step, so an instance has at most one step queued,
//! running or committing (strict order within an instance, concurrency
//! across instances) and tokio is not on the step path at all. On start,
//! [`Runtime::resume`] queues every instance that still has a step to run;
//! a step interrupted by a crash runs again with the same idempotency key.
//! This module does not parse HTTP or know sled's layout.

pub mod caps;
pub mod committer;
mod funnel;
pub mod health;
mod operator;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use self::registry::Resolved;
use crate::clock::Clock;
use crate::host::{self, Host, LoadError, StepFailure, StepRequest};
use crate::journey::{self, Journey, PluginRef, Reentry, RetryPolicy, Target};
use crate::store::{
    self, Applied, Canary, CappedMessage, ChannelPreference, Engagement, EventRecord, HistoryEntry,
    IngestCommit, Instance, InstanceId, InstanceStatus, Interaction, LogLine, MigrationRecord,
    OutboxMessage, PluginRecord, StateChanges, StepCommit, StepOutcome, StepRecord, Store,
    TagRecord, VersionStats, Write,
};
use crate::window::SendingWindow;

pub use self::caps::{FrequencyCap, SendLedger};
pub use self::committer::{CommitError, Committer};
pub use self::funnel::Funnel;
pub use self::health::{Health, Readiness};
pub use self::operator::{Action, BulkOutcome};
pub use self::registry::{Registry, Tag};

/// Timers woken per store scan.
const TIMER_BATCH: usize = 1_000;
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
/// Longest an event waits for another event's start of the same journey
/// and customer under single re-entry.
const ENTERING_WAIT: Duration = Duration::from_secs(5);

/// Errors of the runtime's operations, each naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A journey definition was rejected.
    #[error(transparent)]
    Journey(#[from] journey::Error),
    /// A pushed plugin was rejected.
    #[error("plugin `{name}`: {source}")]
    Plugin {
        /// The plugin name.
        name: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A name or id is malformed.
    #[error("{field} `{value}` is invalid: {rule}")]
    InvalidId {
        /// Which field.
        field: &'static str,
        /// The value (truncated).
        value: String,
        /// What it must look like.
        rule: &'static str,
    },
    /// The event's `data` is not a JSON object.
    #[error("event `{event}`: `data` must be a JSON object")]
    EventDataNotObject {
        /// The event id.
        event: String,
    },
    /// No deployed journey is triggered by or declares this event type.
    #[error(
        "event `{event}`: no deployed journey is triggered by event type `{kind}` or declares it in `[events]`, and no instance waits for one"
    )]
    UnknownEventType {
        /// The event id.
        event: String,
        /// The type.
        kind: String,
    },
    /// The event lacks the correlation key a triggered journey needs.
    #[error(
        "event `{event}`: journey `{journey}` correlates on `data.{key}`, which is missing or not a string or number"
    )]
    MissingCorrelationKey {
        /// The event id.
        event: String,
        /// The journey.
        journey: String,
        /// The key.
        key: String,
    },
    /// An event's data lacks a field its type needs.
    #[error("event `{event}` of type `{kind}`: `data.{field}` {reason}")]
    EventDataField {
        /// The event id.
        event: String,
        /// The type.
        kind: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A customer profile's time zone does not exist.
    #[error("customer `{customer}`: profile `time_zone`: {reason}")]
    InvalidTimeZone {
        /// The customer id.
        customer: String,
        /// What is wrong.
        reason: String,
    },
    /// Frequency caps are malformed; nothing was changed.
    #[error("frequency caps: {0}")]
    InvalidCaps(String),
    /// A customer profile must be a JSON object.
    #[error("customer `{customer}`: the profile must be a JSON object")]
    ProfileNotObject {
        /// The customer id.
        customer: String,
    },
    /// The instance does not exist.
    #[error("instance `{0}` does not exist")]
    UnknownInstance(InstanceId),
    /// No journey of this name was deployed.
    #[error("journey `{0}` has not been deployed")]
    UnknownJourney(String),
    /// The journey has no such version.
    #[error("journey `{journey}` has no version {version}")]
    UnknownJourneyVersion {
        /// The journey.
        journey: String,
        /// The version asked for.
        version: u32,
    },
    /// A migration is malformed; nothing was changed.
    #[error("journey `{journey}`: migration from version {from} to {to}: {reason}")]
    InvalidMigration {
        /// The journey.
        journey: String,
        /// The version instances would leave.
        from: u32,
        /// The version they would move to.
        to: u32,
        /// What is wrong.
        reason: String,
    },
    /// No plugin of this name was pushed.
    #[error("plugin `{0}` has not been pushed")]
    UnknownPlugin(String),
    /// The plugin has no such version.
    #[error("plugin `{plugin}` has no version {version}")]
    UnknownPluginVersion {
        /// The plugin.
        plugin: String,
        /// The version asked for.
        version: u32,
    },
    /// The plugin has no such tag.
    #[error("plugin `{plugin}` has no tag `{tag}`")]
    UnknownTag {
        /// The plugin.
        plugin: String,
        /// The tag.
        tag: String,
    },
    /// A tag change is malformed.
    #[error("plugin `{plugin}`, tag `{tag}`: {reason}")]
    InvalidTag {
        /// The plugin.
        plugin: String,
        /// The tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// The WebAssembly engine could not be configured.
    #[error("the WebAssembly engine could not be set up: {0:#}")]
    Engine(#[source] wasmtime::Error),
    /// A step worker thread could not be started.
    #[error("a step worker thread could not be started")]
    Thread(#[source] std::io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed")]
    Task(#[from] tokio::task::JoinError),
    /// An operator's action does not apply to the instance.
    #[error("instance `{instance}`: {reason}")]
    InvalidAction {
        /// The instance.
        instance: InstanceId,
        /// Why not.
        reason: String,
    },
    /// A journey has no step (or terminal state) of this name.
    #[error("journey `{journey}` has no step or terminal state `{step}`")]
    UnknownStep {
        /// The journey.
        journey: String,
        /// The name asked for.
        step: String,
    },
    /// An instance's current event is not in the store.
    #[error("instance `{instance}`: its event `{event}` is missing from the store")]
    MissingEvent {
        /// The instance.
        instance: InstanceId,
        /// The event it needs.
        event: String,
    },
    /// [`Runtime::new`] was called outside a tokio runtime.
    #[error("the runtime must be started inside a tokio runtime")]
    NoAsyncRuntime,
}

/// Result of runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An event as sent to the ingest API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// The sender's unique id; re-sending an id is a no-op.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The customer the event is about.
    pub customer: String,
    /// Event data: a JSON object.
    pub data: Box<RawValue>,
}

/// What ingest answers once the event is durable.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// The event id.
    pub event_id: String,
    /// True when this id was accepted before and nothing new happened.
    pub duplicate: bool,
    /// The instances the event started (the first time it was accepted).
    pub instances: Vec<InstanceId>,
    /// Journeys the event triggers but did not enter, and why (entry
    /// rules, re-entry policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Instances the event ended through an exit rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exited: Vec<InstanceId>,
}

/// A journey an event triggers that the customer did not enter.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The journey.
    pub journey: String,
    /// Why: the segment condition that failed, the suppression that held,
    /// or the active instance under single re-entry.
    pub reason: String,
}

impl Receipt {
    fn new(event_id: String, duplicate: bool, instances: Vec<InstanceId>) -> Self {
        Receipt {
            event_id,
            duplicate,
            instances,
            skipped: Vec::new(),
            exited: Vec::new(),
        }
    }
}

/// Journey-and-customer pairs whose instance is being started under single
/// re-entry: held from the check until the start is committed.
#[derive(Default)]
struct Entering(std::sync::Mutex<HashSet<(String, String)>>);

/// Releases the pairs an ingest holds in [`Entering`] when dropped.
struct EnteringGuard<'a> {
    entering: &'a Entering,
    held: Vec<(String, String)>,
}

impl EnteringGuard<'_> {
    /// Take the pair, waiting (up to [`ENTERING_WAIT`]) while another
    /// ingest holds it; false if it is still held then.
    async fn take(&mut self, journey: &str, customer: &str) -> bool {
        let pair = (journey.to_owned(), customer.to_owned());
        let deadline = tokio::time::Instant::now() + ENTERING_WAIT;
        loop {
            let taken = self
                .entering
                .0
                .lock()
                .expect("the entering lock is never poisoned")
                .insert(pair.clone());
            if taken {
                self.held.push(pair);
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for EnteringGuard<'_> {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut entering = self
            .entering
            .0
            .lock()
            .expect("the entering lock is never poisoned");
        for pair in &self.held {
            entering.remove(pair);
        }
    }
}

/// An instance reached the end of its journey.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Which instance.
    pub id: InstanceId,
    /// Completed or failed.
    pub status: InstanceStatus,
}

/// A step ready to run: the instance as last committed, the event that
/// started it, and which attempt this is.
#[derive(Debug)]
struct StepJob {
    instance: Instance,
    event: Arc<host::Event>,
    attempt: u32,
}

impl StepJob {
    /// The next attempt of `instance`'s current step, as its record counts.
    fn new(instance: Instance, event: Arc<host::Event>) -> Self {
        StepJob {
            attempt: instance.next_attempt(),
            instance,
            event,
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
}

impl Default for Settings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        Settings {
            limits: host::Limits::default(),
            parallel_steps: cores,
            compiled_cache: None,
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
struct VersionCounts(HashMap<String, HashMap<u32, VersionStats>>);

impl VersionCounts {
    fn record(&mut self, plugin: &str, version: u32, failed: bool, duration_us: u64) {
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
            .record(failed, duration_us);
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
    has_start_probes: std::sync::atomic::AtomicBool,
    /// Frequency caps and the sends counted against them.
    sends: Arc<SendLedger>,
    /// Single re-entry starts in flight.
    entering: Entering,
    /// Workers, timer loop, host faults, stuck timers.
    health: Health,
    /// The counter names each plugin has used, bounded.
    metric_names: MetricNames,
    /// Held while a plugin or journey version is stored and registered,
    /// so the registry learns versions in the order the store numbered
    /// them.
    catalog: std::sync::Mutex<()>,
    /// Where steps that met a host fault wait to run again.
    tokio: tokio::runtime::Handle,
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
        let registry = Registry::default();
        for record in store.plugins()? {
            registry.add_plugin(record);
        }
        for record in store.tags()? {
            registry.set_tag(record);
        }
        for record in store.migrations()? {
            registry.set_migration(record);
        }
        let mut versions = VersionCounts::default();
        for stats in store.version_stats()? {
            versions
                .0
                .entry(stats.plugin.clone())
                .or_default()
                .insert(stats.version, stats);
        }
        for record in store.journeys()? {
            // Stored definitions were valid when deployed; plugins are never
            // deleted, so they still are.
            let journey = Journey::parse(&record.name, &record.source, |_| true)?;
            registry.add_journey(record.version, journey);
        }
        let sends = Arc::new(SendLedger::open(store.clone())?);
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
                has_start_probes: std::sync::atomic::AtomicBool::new(false),
                sends,
                entering: Entering::default(),
                health: Health::new(workers),
                metric_names: MetricNames::default(),
                catalog: std::sync::Mutex::new(()),
                tokio,
            }
        });
        // The workers hold the runtime: it lives as long as the process.
        for worker in 0..workers {
            let (runtime, queued) = (runtime.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("step-worker-{worker}"))
                .spawn(move || runtime.work(queued))
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

    /// Check, store and cache a plugin version.
    pub async fn push_plugin(self: &Arc<Self>, name: &str, bytes: Vec<u8>) -> Result<PluginRecord> {
        use sha2::Digest as _;
        check_name("plugin name", name)?;
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        let host = self.host.clone();
        let loaded_digest = digest.clone();
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let checked = host.load(&loaded_digest, &bytes).map(|_| ());
            (bytes, checked)
        })
        .await?;
        checked.map_err(|source| Error::Plugin {
            name: name.to_owned(),
            source,
        })?;
        let runtime = self.clone();
        let name_owned = name.to_owned();
        let record = tokio::task::spawn_blocking(move || {
            let _catalog = runtime.catalog_lock();
            let record =
                runtime
                    .store
                    .put_plugin(&name_owned, &digest, &bytes, runtime.clock.now_ms())?;
            runtime.registry.add_plugin(record.clone());
            Ok::<_, Error>(record)
        })
        .await??;
        tracing::info!(plugin = name, version = record.version, digest = %record.digest, "plugin pushed");
        Ok(record)
    }

    /// Validate and store a journey definition as its next version.
    pub fn deploy_journey(&self, file: &str, source: &str) -> Result<(u32, Arc<Journey>)> {
        let journey = Journey::parse(file, source, |plugin| self.registry.exists(plugin))?;
        let _catalog = self.catalog_lock();
        let record = self
            .store
            .put_journey(journey.name(), source, self.clock.now_ms())?;
        self.registry.add_journey(record.version, journey);
        let journey = self
            .registry
            .journey(&record.name, record.version)
            .expect("the version was just added");
        tracing::info!(journey = %record.name, version = record.version, "journey deployed");
        Ok((record.version, journey))
    }

    /// Move the running instances of version `from` of `journey` to
    /// version `to`, each at its next step start, to the step `steps` maps
    /// its step to (steps not named keep their name, which `to` must have).
    /// The whole mapping is checked before anything is stored.
    pub fn migrate_journey(
        &self,
        journey: &str,
        from: u32,
        to: u32,
        steps: std::collections::BTreeMap<String, String>,
    ) -> Result<MigrationRecord> {
        let deployed = self.registry.journey_versions(journey);
        if deployed == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        let version = |version: u32| {
            self.registry
                .journey(journey, version)
                .ok_or_else(|| Error::UnknownJourneyVersion {
                    journey: journey.to_owned(),
                    version,
                })
        };
        let (old, new) = (version(from)?, version(to)?);
        let invalid = |reason: String| Error::InvalidMigration {
            journey: journey.to_owned(),
            from,
            to,
            reason,
        };
        if from == to {
            return Err(invalid("the versions are the same".into()));
        }
        for (source, target) in &steps {
            if old.step(source).is_none() {
                return Err(invalid(format!(
                    "`{source}` is not a step of version {from}"
                )));
            }
            if new.step(target).is_none() {
                return Err(invalid(format!(
                    "`{source}` maps to `{target}`, which is not a step of version {to}"
                )));
            }
        }
        let mut mapping = std::collections::BTreeMap::new();
        for step in old.steps() {
            let name = &step.definition.name;
            let target = match steps.get(name) {
                Some(target) => target.clone(),
                None if new.step(name).is_some() => name.clone(),
                None => {
                    return Err(invalid(format!(
                        "step `{name}` has no step of the same name in version {to}: map it to one"
                    )));
                }
            };
            mapping.insert(name.clone(), target);
        }
        // Following the migrations on from `to` must not lead back to `from`.
        let mut next = to;
        while let Some(onward) = self.registry.migration(journey, next) {
            if onward.to_version == from {
                return Err(invalid(format!(
                    "version {to} already migrates on to version {from}: instances would move in a circle"
                )));
            }
            next = onward.to_version;
        }
        let record = MigrationRecord {
            journey: journey.to_owned(),
            from_version: from,
            to_version: to,
            steps: mapping,
            created_at_ms: self.clock.now_ms(),
        };
        self.store.put_migration(&record)?;
        self.registry.set_migration(record.clone());
        tracing::info!(journey, from, to, "journey migration stored");
        Ok(record)
    }

    /// The drop-off report of `journey` over all its instances, by the
    /// steps of its latest version.
    pub fn funnel(&self, journey: &str) -> Result<Funnel> {
        check_name("journey", journey)?;
        let latest = self.registry.journey_versions(journey);
        let definition = self
            .registry
            .journey(journey, latest)
            .ok_or_else(|| Error::UnknownJourney(journey.to_owned()))?;
        let steps: Vec<String> = definition
            .steps()
            .map(|step| step.definition.name.clone())
            .collect();
        Ok(funnel::funnel(&*self.store, journey, &steps)?)
    }

    /// Every migration of `journey`.
    pub fn migrations_of(&self, journey: &str) -> Result<Vec<Arc<MigrationRecord>>> {
        self.known_journey(journey)?;
        Ok(self.registry.migrations_of(journey))
    }

    /// `journey` must be a valid name of a deployed journey.
    pub fn known_journey(&self, journey: &str) -> Result<()> {
        check_name("journey", journey)?;
        if self.registry.journey_versions(journey) == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        Ok(())
    }

    /// Create or replace a customer's profile. A `time_zone` must be an
    /// IANA zone that exists.
    pub fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()> {
        check_id("customer id", id)?;
        if !profile.is_object() {
            return Err(Error::ProfileNotObject {
                customer: id.to_owned(),
            });
        }
        match profile.get("time_zone") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(zone)) => {
                crate::window::time_zone(zone).map_err(|reason| Error::InvalidTimeZone {
                    customer: id.to_owned(),
                    reason,
                })?;
            }
            Some(_) => {
                return Err(Error::InvalidTimeZone {
                    customer: id.to_owned(),
                    reason: "must be a string such as `Europe/Amsterdam`".into(),
                });
            }
        }
        Ok(self.store.put_customer(id, profile)?)
    }

    /// The frequency caps in force.
    pub fn frequency_caps(&self) -> Arc<Vec<FrequencyCap>> {
        self.sends.caps()
    }

    /// Replace the frequency caps; all are checked before any changes.
    pub fn set_frequency_caps(&self, caps: Vec<FrequencyCap>) -> Result<()> {
        if let Some(problem) = caps.iter().find_map(FrequencyCap::problem) {
            return Err(Error::InvalidCaps(problem));
        }
        let mut channels = HashSet::new();
        if let Some(twice) = caps.iter().find(|cap| !channels.insert(&cap.channel)) {
            return Err(Error::InvalidCaps(format!(
                "channel `{}` has two caps",
                twice.channel
            )));
        }
        Ok(self.sends.set_caps(caps)?)
    }

    /// Accept an event: once this returns `Ok`, the event and the instances
    /// it starts are durable and their first steps are scheduled.
    pub async fn ingest(self: &Arc<Self>, event: IncomingEvent) -> Result<Receipt> {
        check_id("event id", &event.id)?;
        check_id("customer id", &event.customer)?;
        check_name("event type", &event.kind)?;
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(event.data.get()).map_err(|_| Error::EventDataNotObject {
                event: event.id.clone(),
            })?;
        let triggered = self.registry.triggered_by(&event.kind);
        let listening = self.registry.listening_to(&event.kind);
        let now = self.clock.now_ms();
        let mut entering = EnteringGuard {
            entering: &self.entering,
            held: Vec::new(),
        };
        let mut skipped = Vec::new();
        let mut profile = None;
        let mut instances = Vec::with_capacity(triggered.len());
        for (version, journey) in &triggered {
            let key = &journey.definition.trigger.correlation_key;
            let correlation = match data.get(key) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(serde_json::Value::Number(number)) => number.to_string(),
                _ => {
                    return Err(Error::MissingCorrelationKey {
                        event: event.id,
                        journey: journey.name().to_owned(),
                        key: key.clone(),
                    });
                }
            };
            check_id("correlation value", &correlation)?;
            let refusal = self
                .entry_refusal(journey, &event.customer, &mut profile, &mut entering)
                .await?;
            if let Some(reason) = refusal {
                skipped.push(Skipped {
                    journey: journey.name().to_owned(),
                    reason,
                });
                continue;
            }
            instances.push(Instance {
                id: InstanceId(self.store.next_id()?),
                journey: journey.name().to_owned(),
                journey_version: *version,
                customer_id: event.customer.clone(),
                correlation,
                trigger_event_id: event.id.clone(),
                status: InstanceStatus::Running,
                current_step: Some(journey.start.clone()),
                terminal: None,
                failure: None,
                state: empty_object(),
                history_len: 1,
                created_at_ms: now,
                updated_at_ms: now,
                wake_at_ms: None,
                waiting_for: None,
                last_event_id: None,
                indexed_by_customer: journey.indexes_by_customer(),
                attempts: None,
            });
        }
        let text = data
            .get("text")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let data_channel = data
            .get("channel")
            .and_then(serde_json::Value::as_str)
            .filter(|channel| journey::is_valid_name(channel));
        let channel = data_channel.unwrap_or("api").to_owned();
        let preference = channel_preference(&event, data_channel, now)?;
        let engagement = engagement(&event, data_channel, &listening, now);
        let record = EventRecord {
            id: event.id,
            kind: event.kind,
            customer_id: event.customer,
            data: event.data,
            received_at_ms: now,
            started: instances.iter().map(|instance| instance.id).collect(),
        };
        let interaction = Interaction {
            at_ms: now,
            channel,
            kind: record.kind.clone(),
            text,
            details: record.data.clone(),
        };
        let exits = self.exits_for(&record, &data, &listening)?;
        let exiting: HashSet<InstanceId> = exits.iter().map(|exit| exit.instance.id).collect();
        let mut wakes = self.wakes_for(&record, &data)?;
        // An instance the event both wakes and ends just ends.
        wakes.retain(|wake| !exiting.contains(&wake.instance.id));
        let accepted = !triggered.is_empty()
            || !listening.is_empty()
            || !wakes.is_empty()
            || preference.is_some();
        if !accepted {
            // A re-sent event is a no-op even once nothing waits for it.
            if let Some(earlier) = self.store.event(&record.id)? {
                return Ok(Receipt::new(record.id, true, earlier.started));
            }
            return Err(Error::UnknownEventType {
                event: record.id,
                kind: record.kind,
            });
        }
        let woken: Vec<Instance> = wakes.iter().map(|wake| wake.instance.clone()).collect();
        let event_id = record.id.clone();
        let wit_event = Arc::new(wit_event(&record));
        let mut commit = IngestCommit::new(&record, &instances, interaction)?;
        commit.wakes = wakes;
        commit.exits = exits;
        commit.preference = preference
            .map(|preference| {
                Ok::<_, store::Error>((preference.channel.clone(), store::encode(&preference)?))
            })
            .transpose()?;
        commit.engagement = engagement.as_ref().map(store::encode).transpose()?;
        let applied = self
            .committer
            .submit(Write::Ingest(Box::new(commit)))
            .await?;
        drop(entering);
        match applied {
            Applied::DuplicateEvent { started } => Ok(Receipt::new(event_id, true, started)),
            Applied::Done | Applied::StaleStep => {
                metrics::counter!("journeyd_events_accepted_total").increment(1);
                let ids = instances.iter().map(|instance| instance.id).collect();
                for instance in instances {
                    self.schedule(StepJob::new(instance, wit_event.clone()));
                }
                for instance in woken {
                    // Its wake-up is skipped when its timer fired first.
                    let current = self.store.instance(instance.id)?;
                    let woke_here = current.is_some_and(|current| {
                        current.history_len == instance.history_len
                            && current.last_event_id.as_deref() == Some(event_id.as_str())
                    });
                    if woke_here {
                        self.run_next(instance, wit_event.clone());
                    }
                }
                let mut exited = Vec::new();
                for id in exiting {
                    // The event is committed, so this answers `accepted`
                    // whatever happens here; a pending exit is retried at
                    // the next start.
                    match self.finish_exit(id, &record).await {
                        Ok(true) => exited.push(id),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::error!(instance = %id, %error, "exit not applied yet; retried at the next start");
                        }
                    }
                }
                exited.sort();
                let mut receipt = Receipt::new(event_id, false, ids);
                receipt.skipped = skipped;
                receipt.exited = exited;
                Ok(receipt)
            }
        }
    }

    /// Why the customer does not enter `journey` now, if they do not: its
    /// segment and suppression rules (their profile is read once per
    /// event), or single re-entry with an instance active or starting.
    async fn entry_refusal(
        &self,
        journey: &Journey,
        customer: &str,
        profile: &mut Option<serde_json::Value>,
        entering: &mut EnteringGuard<'_>,
    ) -> Result<Option<String>> {
        let entry = &journey.definition.entry;
        if !entry.segment.is_empty() || !entry.suppress.is_empty() {
            let profile = match profile {
                Some(profile) => profile,
                None => {
                    let view = self.store.customer_view(customer, 0, &[])?;
                    profile.insert(serde_json::from_str(view.profile.get()).unwrap_or_default())
                }
            };
            if let Some(reason) = journey.entry_refusal(profile) {
                return Ok(Some(reason));
            }
        }
        if entry.reentry == Reentry::Single {
            if !entering.take(journey.name(), customer).await {
                return Ok(Some(
                    "re-entry is single and another instance is still starting".into(),
                ));
            }
            if let Some(id) = self.store.active_of(journey.name(), customer)?.first() {
                return Ok(Some(format!(
                    "re-entry is single and instance {id} is still active"
                )));
            }
        }
        Ok(None)
    }

    /// The exits an accepted event causes: every unfinished instance of a
    /// journey with an exit rule for its type, about its customer or (when
    /// the rule correlates) carrying the value.
    fn exits_for(
        &self,
        event: &EventRecord,
        data: &serde_json::Map<String, serde_json::Value>,
        listening: &[Arc<Journey>],
    ) -> Result<Vec<StepCommit>> {
        let mut exits = Vec::new();
        let mut seen = HashSet::new();
        for journey in listening {
            for rule in &journey.definition.exit {
                if rule.event != event.kind {
                    continue;
                }
                let ids = match &rule.correlate_on {
                    Some(key) => match data.get(key) {
                        Some(serde_json::Value::String(text)) => {
                            self.store.correlated(journey.name(), text)?
                        }
                        Some(serde_json::Value::Number(number)) => {
                            self.store.correlated(journey.name(), &number.to_string())?
                        }
                        // Without the value the rule ends nothing.
                        _ => continue,
                    },
                    None => self.store.active_of(journey.name(), &event.customer_id)?,
                };
                for id in ids {
                    if !seen.insert(id) {
                        continue;
                    }
                    if let Some(instance) = self.store.instance(id)?
                        && !instance.status.is_finished()
                    {
                        exits.push(exit_commit(&instance, event));
                    }
                }
            }
        }
        Ok(exits)
    }

    /// Make sure instance `id` is ended by exit event `event`: its exit was
    /// committed with the event unless one of its steps committed first, in
    /// which case the exit is committed again from where it now is. Returns
    /// whether this event ended it.
    async fn finish_exit(&self, id: InstanceId, event: &EventRecord) -> Result<bool> {
        for _ in 0..EXIT_ATTEMPTS {
            let Some(current) = self.store.instance(id)? else {
                self.store.forget_exit(id)?;
                return Ok(false);
            };
            if current.status.is_finished() {
                let ended_here = current.status == InstanceStatus::Exited
                    && current.last_event_id.as_deref() == Some(event.id.as_str());
                if ended_here {
                    self.finish(&current);
                } else {
                    // It completed, failed or exited another way first.
                    self.store.forget_exit(id)?;
                }
                return Ok(ended_here);
            }
            let commit = exit_commit(&current, event);
            if self.committer.submit(Write::Step(Box::new(commit))).await? == Applied::Done {
                continue;
            }
            // A step committed first; try again from its new position.
            tokio::task::yield_now().await;
        }
        tracing::error!(instance = %id, event = %event.id, "instance kept moving; exit not applied");
        Ok(false)
    }

    /// Load every plugin version (from the compiled-code cache when the
    /// engine has one), so no step after a start or a swap waits for a
    /// compilation. Returns how many were loaded.
    pub async fn load_plugins(self: &Arc<Self>) -> Result<usize> {
        let runtime = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let mut loaded = 0;
            for record in runtime.registry.plugins() {
                let plugin = PluginRef::version(&record.name, record.version);
                match runtime.resolve_plugin(&plugin, InstanceId(0)) {
                    Ok(_) => loaded += 1,
                    Err(reason) => {
                        tracing::warn!(plugin = %plugin, %reason, "plugin could not be loaded")
                    }
                }
            }
            loaded
        })
        .await?)
    }

    /// Restart every instance that has a step to run. Their interrupted
    /// step runs again as attempt 2 with the same idempotency key.
    ///
    /// Call it once at start, before the timer loop runs and before
    /// events are taken: it reads running instances one by one, and an
    /// instance that moved on meanwhile would be scheduled twice.
    pub async fn resume(self: &Arc<Self>) -> Result<usize> {
        let store = self.store.clone();
        let running = tokio::task::spawn_blocking(move || store.running_instances()).await??;
        let count = running.len();
        let now = self.clock.now_ms();
        // Each interrupted attempt is recorded (all in one group commit),
        // so the next one counts on.
        let mut restarts = tokio::task::JoinSet::new();
        for instance in running {
            let Some(step) = instance
                .current_step
                .clone()
                .filter(|_| instance.status == InstanceStatus::Running)
            else {
                continue;
            };
            let mut next = instance.clone();
            next.restarted(instance.next_attempt(), now);
            let entry = HistoryEntry::Restarted {
                at_ms: now,
                step,
                attempt: instance.next_attempt(),
            };
            let commit = StepCommit::new(next.clone(), &entry, &[], Vec::new())
                .expect("a restart entry is plain data that always encodes as JSON");
            let committer = self.committer.clone();
            restarts.spawn(async move {
                let applied = committer.submit(Write::Step(Box::new(commit))).await;
                (next, applied)
            });
        }
        while let Some(restarted) = restarts.join_next().await {
            let (instance, applied) = restarted?;
            if applied? != Applied::Done {
                continue;
            }
            let id = instance.id;
            match self.store.event(instance.current_event_id()) {
                Ok(Some(event)) => {
                    self.schedule(StepJob::new(instance, Arc::new(wit_event(&event))))
                }
                Ok(None) => self.host_fault(
                    id,
                    1,
                    format!("its event `{}` is missing", instance.current_event_id()),
                ),
                Err(error) => self.host_fault(
                    id,
                    1,
                    format!(
                        "its event could not be read: {}",
                        crate::error_chain(&error)
                    ),
                ),
            }
        }
        Ok(count)
    }

    /// Starting is over: events may come in.
    pub fn set_ready(&self) {
        self.health.set_ready();
    }

    /// Whether the runtime has finished starting.
    pub fn is_started(&self) -> bool {
        self.health.is_started()
    }

    /// What `/readyz` answers: whether the runtime can take events and
    /// run steps now, and what stands in the way.
    pub fn readiness(&self) -> Readiness {
        self.health.report(self.committer.health().failing())
    }

    /// A host fault met `instance`'s step (it did not run, or its
    /// attempt's effects were dropped): nothing was committed for the
    /// customer. Logged and counted; after a backoff that grows with each
    /// fault in a row, the instance is read again and, if it still has
    /// that step to run, the step runs again as attempt `attempt + 1`.
    fn host_fault(self: &Arc<Self>, id: InstanceId, attempt: u32, reason: String) {
        metrics::counter!("journeyd_host_faults_total", "kind" => "step").increment(1);
        let wait = self.health.host_fault(id, reason.clone());
        tracing::warn!(instance = %id, %reason, retry_in_ms = wait.as_millis() as u64, "host fault: the step runs again; the instance does not fail");
        let runtime = self.clone();
        self.tokio.spawn(async move {
            tokio::time::sleep(wait).await;
            let rerun = runtime.clone();
            if let Err(error) =
                tokio::task::spawn_blocking(move || rerun.run_again(id, attempt + 1)).await
            {
                runtime.host_fault(id, attempt, format!("running it again failed: {error}"));
            }
        });
    }

    /// After a host fault: schedule `id`'s step again if it still has one
    /// to run (it may have moved on: a duplicate run is discarded as stale).
    fn run_again(self: &Arc<Self>, id: InstanceId, attempt: u32) {
        // A host fault is not recorded, so the run it spoiled is counted
        // here: the plugin may have started.
        let instance = match self.store.instance(id) {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                self.health.host_fault_over(id);
                return;
            }
            Err(error) => {
                let reason = format!(
                    "the instance could not be read: {}",
                    crate::error_chain(&error)
                );
                return self.host_fault(id, attempt - 1, reason);
            }
        };
        if instance.status != InstanceStatus::Running || instance.current_step.is_none() {
            self.health.host_fault_over(id);
            return;
        }
        match self.store.event(instance.current_event_id()) {
            Ok(Some(event)) => {
                let mut job = StepJob::new(instance, Arc::new(wit_event(&event)));
                job.attempt = job.attempt.max(attempt);
                self.schedule(job);
            }
            Ok(None) => {
                let reason = format!("its event `{}` is missing", instance.current_event_id());
                self.host_fault(id, attempt - 1, reason);
            }
            Err(error) => {
                let reason = format!(
                    "its event could not be read: {}",
                    crate::error_chain(&error)
                );
                self.host_fault(id, attempt - 1, reason);
            }
        }
    }

    /// Apply the exits that events still owe instances: their exit lost to
    /// a step and the runtime stopped before trying again. Returns how
    /// many were pending.
    pub async fn resume_exits(self: &Arc<Self>) -> Result<usize> {
        let pending = self.store.pending_exits()?;
        for (id, event_id) in &pending {
            let Some(event) = self.store.event(event_id)? else {
                tracing::error!(instance = %id, event = %event_id, "the exit's event is missing; exit dropped");
                self.store.forget_exit(*id)?;
                continue;
            };
            self.finish_exit(*id, &event).await?;
        }
        Ok(pending.len())
    }

    /// Queue an instance's current step for a step worker.
    fn schedule(&self, job: StepJob) {
        if self.jobs.send(job).is_err() {
            tracing::error!("step workers have stopped; instance left for the next start");
        }
    }

    /// A step worker: runs queued steps until the runtime goes away. A
    /// panic while running one is a host fault: the worker goes on and the
    /// step runs again later.
    fn work(self: Arc<Self>, jobs: crossbeam_channel::Receiver<StepJob>) {
        let _alive = self.health.worker_alive();
        while let Ok(job) = jobs.recv() {
            let (id, attempt) = (job.instance.id, job.attempt);
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_step(job)));
            if ran.is_err() {
                metrics::counter!("journeyd_host_faults_total", "kind" => "panic").increment(1);
                self.host_fault(id, attempt, "the step worker panicked".into());
            }
        }
    }

    /// Run an instance's current step on this thread and hand its effects
    /// to the committer. Once they are durable, the committer thread
    /// schedules the instance's next step (or records it finished), so an
    /// instance has at most one step queued, running or committing.
    fn run_step(self: &Arc<Self>, job: StepJob) {
        if let Some(migration) = self
            .registry
            .migration(&job.instance.journey, job.instance.journey_version)
        {
            self.migrate(job, &migration);
            return;
        }
        let StepJob {
            instance,
            event,
            attempt,
        } = job;
        let Some(step_name) = instance
            .current_step
            .clone()
            .filter(|_| instance.status == InstanceStatus::Running)
        else {
            tracing::warn!(instance = %instance.id, status = ?instance.status, "a step was scheduled for an instance with no step to run; dropped");
            return;
        };
        let journey = self
            .registry
            .journey(&instance.journey, instance.journey_version);
        let step = journey
            .as_ref()
            .and_then(|journey| journey.step(&step_name));
        let started_ms = self.clock.now_ms();
        if let Some((step, journey)) = step.zip(journey.as_deref())
            && let Some(variant) = step.variant_for(&instance.journey, instance.id.0)
        {
            let variant = variant.to_owned();
            let target = step.definition.on[&variant].clone();
            let is_step = journey.step(&target).is_some();
            self.take_split(
                instance, event, step_name, variant, target, is_step, started_ms,
            );
            return;
        }
        let idempotency_key = instance.idempotency_key();

        // An operator's retry may name another plugin version for this step.
        let chosen = instance
            .attempts
            .as_ref()
            .and_then(|attempts| attempts.plugin.as_deref())
            .and_then(PluginRef::parse);
        let (plugin, run) = match step {
            Some(step) => {
                match self.resolve_plugin(chosen.as_ref().unwrap_or(&step.plugin), instance.id) {
                    Ok((resolved, loaded)) => {
                        let _running = self.health.step_running();
                        self.notify_start(&resolved.record.digest);
                        let request = StepRequest {
                            input: host::StepInput {
                                journey: instance.journey.clone(),
                                journey_version: instance.journey_version,
                                instance_id: instance.id.to_string(),
                                step: step_name.clone(),
                                event: (*event).clone(),
                                state: instance.state.get().to_owned(),
                                config: step.config_json.clone(),
                                attempt,
                                idempotency_key: idempotency_key.clone(),
                            },
                            customer: host::CustomerSource {
                                store: self.store.clone(),
                                customer_id: instance.customer_id.clone(),
                            },
                            now_ms: started_ms,
                            deadline: step.definition.timeout_ms.map(Duration::from_millis),
                            sends: self.sends.clone(),
                        };
                        (Some(resolved), self.host.run_step(&loaded, request))
                    }
                    Err(failure) => (None, failed_run(failure)),
                }
            }
            None => (
                None,
                failed_run(StepFailure::Instantiate(format!(
                    "journey `{}` version {} has no step `{step_name}`",
                    instance.journey, instance.journey_version
                ))),
            ),
        };
        if let Err(failure) = &run.result
            && failure.is_host_fault()
        {
            // Nothing of the attempt is committed: its cap reservations
            // are given back and the step runs again.
            for queued in run.effects.messages.iter().filter(|queued| queued.counted) {
                self.sends
                    .release(&instance.customer_id, &queued.message.channel, started_ms);
            }
            return self.host_fault(instance.id, attempt, failure.to_string());
        }
        let plugin_name = plugin.as_ref().map(|resolved| resolved.record.name.clone());
        let (commit, mut samples) = self.build_commit(
            &instance,
            journey.as_deref(),
            &step_name,
            plugin,
            attempt,
            idempotency_key,
            started_ms,
            run,
        );
        samples.retain(|sample| {
            plugin_name
                .as_deref()
                .is_some_and(|plugin| self.metric_names.admit(plugin, &sample.name))
        });
        let next = commit.instance.clone();
        let counted: Vec<String> = commit
            .counted
            .iter()
            .map(|(channel, _, _)| channel.clone())
            .collect();
        let runtime = self.clone();
        self.committer.submit_then(
            Write::Step(Box::new(commit)),
            Box::new(move |result| {
                // Committed, the store counts them; discarded, they never
                // happened: either way their reservations end here.
                for channel in &counted {
                    runtime
                        .sends
                        .release(&next.customer_id, channel, started_ms);
                }
                runtime.after_step_commit(result, next, event, samples, &step_name);
            }),
        );
    }

    /// What follows a step's commit: its metrics and next step, or the
    /// instance's end.
    fn after_step_commit(
        self: &Arc<Self>,
        result: Result<Applied, CommitError>,
        next: Instance,
        event: Arc<host::Event>,
        samples: Vec<host::MetricSample>,
        step_name: &str,
    ) {
        self.health.host_fault_over(next.id);
        match result {
            Ok(Applied::Done) => {
                for sample in samples {
                    metrics::counter!(format!("journey_plugin_{}_total", sample.name))
                        .increment(sample.value);
                }
                match next.status {
                    InstanceStatus::Running => self.schedule(StepJob::new(next, event)),
                    // Its timer is in the store; the timer loop may be
                    // sleeping until a later one.
                    InstanceStatus::Waiting => self.timers_changed.notify_one(),
                    InstanceStatus::Completed
                    | InstanceStatus::Failed
                    | InstanceStatus::Exited
                    | InstanceStatus::Cancelled => {
                        self.finish(&next);
                    }
                }
            }
            Ok(_) => {
                tracing::info!(instance = %next.id, step = %step_name, "step discarded: the instance moved on first (another attempt, or an exit event)");
            }
            Err(CommitError::Stopped) => {
                tracing::info!(instance = %next.id, "the runtime is stopping; the step runs again at the next start");
            }
        }
    }

    /// The clock the runtime reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Move the simulated clock forward to `to_ms` and let timers that
    /// fell due fire; returns the new time. `None` on the system clock.
    pub fn advance_clock(&self, to_ms: u64) -> Result<Option<u64>> {
        let Some(clock) = self.clock.simulated() else {
            return Ok(None);
        };
        let now = clock.advance_to(to_ms);
        self.store
            .put_meta(SIMULATED_CLOCK_META, &serde_json::json!(now))?;
        self.timers_changed.notify_one();
        Ok(Some(now))
    }

    /// Move the simulated clock to `to_ms` one due timer at a time: the
    /// clock stops at each timer's due time until the runtime has settled
    /// (the woken steps, and whatever they set in motion, are committed),
    /// so every timer fires on time even across a jump of weeks. Gives up
    /// waiting after `limit`. Returns the new time and whether it settled;
    /// `None` on the system clock.
    pub async fn advance_clock_settled(
        self: &Arc<Self>,
        to_ms: u64,
        limit: Duration,
    ) -> Result<Option<(u64, bool)>> {
        let deadline = std::time::Instant::now() + limit;
        let Some(clock) = self.clock.simulated() else {
            return Ok(None);
        };
        // Whatever is under way finishes at the current time first. When
        // the runtime does not settle in time (a step paused by a store
        // error, say), the clock still moves: to `to_ms` in one jump.
        let jump = |runtime: Arc<Self>| async move {
            let moved = tokio::task::spawn_blocking(move || runtime.advance_clock(to_ms)).await??;
            Ok::<_, Error>(moved.map(|now| (now, false)))
        };
        if !self.settle(clock.now_ms(), deadline).await? {
            return jump(self.clone()).await;
        }
        loop {
            let now = clock.now_ms();
            let stop = match self.store.next_timer()? {
                Some(due) if due <= to_ms => due.max(now),
                _ => to_ms,
            };
            let runtime = self.clone();
            tokio::task::spawn_blocking(move || runtime.advance_clock(stop)).await??;
            if !self.settle(stop, deadline).await? {
                return jump(self.clone()).await;
            }
            if stop >= to_ms {
                return Ok(Some((stop.max(now), true)));
            }
        }
    }

    /// Wait until no timer is due at `now_ms` and no instance has a step
    /// to run, or `deadline` passes; returns whether it settled.
    pub async fn settle(&self, now_ms: u64, deadline: std::time::Instant) -> Result<bool> {
        loop {
            let store = self.store.clone();
            if tokio::task::spawn_blocking(move || store.settled(now_ms)).await?? {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Start the timer loop under supervision: if it panics, the panic
    /// is logged and counted as a host fault and the loop starts again
    /// after a second. Start it after [`Runtime::resume`].
    pub fn start_timers(self: &Arc<Self>) {
        let runtime = self.clone();
        self.tokio.spawn(async move {
            loop {
                match tokio::spawn(runtime.clone().run_timers()).await {
                    Err(error) if error.is_panic() => {
                        metrics::counter!("journeyd_host_faults_total", "kind" => "panic")
                            .increment(1);
                        tracing::error!("the timer loop panicked; it starts again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    // Cancelled: the process is stopping.
                    Err(_) | Ok(()) => return,
                }
            }
        });
    }

    /// Fire timers as they fall due, for as long as the runtime lives.
    /// Timers that fell due while the runtime was down fire at once.
    async fn run_timers(self: Arc<Self>) {
        loop {
            let wait = match self.fire_due_timers().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(error = %error, "firing timers failed; retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            let _ = tokio::time::timeout(wait, self.timers_changed.notified()).await;
        }
    }

    /// Wake every instance whose timer is due; returns how long the loop
    /// may sleep before the next timer (the system clock) or until it is
    /// told the clock moved (a simulated clock).
    ///
    /// A timer that cannot be fired (its event is missing, the store
    /// fails) is recorded with the reason and tried again with backoff,
    /// never in a busy loop; one whose instance no longer waits for it is
    /// removed.
    async fn fire_due_timers(self: &Arc<Self>) -> Result<Duration> {
        self.health.timer_loop_seen();
        loop {
            let now = self.clock.now_ms();
            // Stuck timers are due too: read past them.
            let limit = TIMER_BATCH + self.health.stuck_timers().0;
            let due = self.store.due_timers(now, limit)?;
            let scanned = due.len();
            let mut woken = tokio::task::JoinSet::new();
            for (due_ms, id) in due {
                if self.health.timer_backing_off(due_ms, id) {
                    continue;
                }
                let runtime = self.clone();
                woken.spawn(async move { (due_ms, id, runtime.wake(id, due_ms, now).await) });
            }
            let mut fired = 0;
            while let Some(result) = woken.join_next().await {
                let (due_ms, id, result) = result?;
                match result {
                    Ok(()) => {
                        self.health.timer_fired(due_ms, id);
                        fired += 1;
                    }
                    Err(error) => {
                        let reason = crate::error_chain(&error);
                        tracing::error!(instance = %id, due_ms, %reason, "a timer could not be fired; it is tried again later");
                        metrics::counter!("journeyd_timers_stuck_total").increment(1);
                        self.health.timer_stuck(due_ms, id, reason);
                    }
                }
            }
            if scanned < limit || fired == 0 {
                break;
            }
        }
        let next = self.store.next_timer()?;
        let now = self.clock.now_ms();
        let wait = match (next, self.clock.simulated()) {
            (_, Some(_)) | (None, None) => MAX_TIMER_SLEEP,
            (Some(due), None) => {
                Duration::from_millis(due.saturating_sub(now)).min(MAX_TIMER_SLEEP)
            }
        };
        if wait.is_zero() {
            // Only stuck timers are due: wait for the first of their next tries.
            let next_try = self.health.stuck_timers().1.unwrap_or(MAX_TIMER_SLEEP);
            return Ok(next_try.clamp(Duration::from_millis(10), MAX_TIMER_SLEEP));
        }
        Ok(wait)
    }

    /// Commit a waiting instance's wake-up, then run its next step.
    async fn wake(self: &Arc<Self>, id: InstanceId, due_ms: u64, now: u64) -> Result<()> {
        let asleep = match self.store.instance(id)? {
            Some(asleep)
                if asleep.status == InstanceStatus::Waiting
                    && asleep.wake_at_ms == Some(due_ms) =>
            {
                asleep
            }
            stale => {
                // Gone, or woken some other way and its timer left over.
                tracing::warn!(instance = %id, due_ms, status = ?stale.map(|instance| instance.status), "removing a timer its instance no longer waits for");
                self.store.forget_timer(due_ms, id)?;
                return Ok(());
            }
        };
        let Some(event) = self.store.event(asleep.current_event_id())? else {
            return Err(Error::MissingEvent {
                instance: id,
                event: asleep.current_event_id().to_owned(),
            });
        };
        let mut next = awake(&asleep, now);
        let target = match &asleep.waiting_for {
            Some(wait) => wait.on_timeout.clone(),
            None => asleep.current_step.clone().unwrap_or_default(),
        };
        self.continue_at(&mut next, target);
        let entry = HistoryEntry::Woke { at_ms: now, due_ms };
        let commit = StepCommit::wake(next.clone(), &entry, &asleep)
            .expect("a wake-up entry is plain data that always encodes as JSON");
        metrics::histogram!("journeyd_timer_lateness_seconds")
            .record(now.saturating_sub(due_ms) as f64 / 1000.0);
        if self.committer.submit(Write::Step(Box::new(commit))).await? == Applied::Done {
            self.run_next(next, Arc::new(wit_event(&event)));
        }
        Ok(())
    }

    /// Point a woken instance at `target`: the step it runs next, or, when
    /// the journey has no such step, the terminal state it completes in.
    fn continue_at(&self, instance: &mut Instance, target: String) {
        let is_step = self
            .registry
            .journey(&instance.journey, instance.journey_version)
            .is_some_and(|journey| journey.step(&target).is_some());
        if is_step {
            instance.current_step = Some(target);
        } else {
            instance.current_step = None;
            instance.status = InstanceStatus::Completed;
            instance.terminal = Some(target);
        }
    }

    /// After a committed wake-up: run the instance's next step, or report
    /// it finished when the wait led to a terminal state.
    fn run_next(&self, instance: Instance, event: Arc<host::Event>) {
        if instance.status.is_finished() {
            self.finish(&instance);
        } else {
            self.schedule(StepJob::new(instance, event));
        }
    }

    /// The wake-ups an accepted event causes: every instance waiting for an
    /// event of its type about its customer, or carrying the value it
    /// correlates on.
    fn wakes_for(
        &self,
        event: &EventRecord,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<StepCommit>> {
        if !self.store.any_waiting_for(&event.kind)? {
            return Ok(Vec::new());
        }
        let mut correlations = vec![format!("customer={}", event.customer_id)];
        for (key, value) in data {
            match value {
                serde_json::Value::String(text) => correlations.push(format!("{key}={text}")),
                serde_json::Value::Number(number) => correlations.push(format!("{key}={number}")),
                _ => {}
            }
        }
        let mut wakes = Vec::new();
        for correlation in &correlations {
            for id in self.store.waiting_for(&event.kind, correlation)? {
                let Some(asleep) = self.store.instance(id)? else {
                    continue;
                };
                let Some(wait) = asleep
                    .waiting_for
                    .as_ref()
                    .filter(|wait| wait.kind == event.kind && &wait.correlation == correlation)
                else {
                    continue;
                };
                let mut next = awake(&asleep, event.received_at_ms);
                self.continue_at(&mut next, wait.on_event.clone());
                next.last_event_id = Some(event.id.clone());
                let entry = HistoryEntry::EventArrived {
                    at_ms: event.received_at_ms,
                    event_id: event.id.clone(),
                    kind: event.kind.clone(),
                };
                wakes.push(
                    StepCommit::wake(next, &entry, &asleep)
                        .expect("a wake-up entry is plain data that always encodes as JSON"),
                );
            }
        }
        Ok(wakes)
    }

    /// Send an instance down the variant of a split step it is assigned
    /// to, recorded in its history; then run what follows.
    #[allow(clippy::too_many_arguments)]
    fn take_split(
        self: &Arc<Self>,
        instance: Instance,
        event: Arc<host::Event>,
        step: String,
        variant: String,
        target: String,
        is_step: bool,
        now: u64,
    ) {
        let mut next = instance;
        next.follow_split(&target, is_step, now);
        let entry = HistoryEntry::Split {
            at_ms: now,
            step,
            variant,
            target,
        };
        let commit = StepCommit::new(next.clone(), &entry, &[], Vec::new())
            .expect("a split entry is plain data that always encodes as JSON");
        metrics::counter!("journeyd_steps_total", "outcome" => "split").increment(1);
        let runtime = self.clone();
        self.committer.submit_then(
            Write::Step(Box::new(commit)),
            Box::new(move |result| match result {
                Ok(Applied::Done) if next.status == InstanceStatus::Running => {
                    runtime.schedule(StepJob::new(next, event));
                }
                Ok(Applied::Done) => runtime.finish(&next),
                Ok(_) => {
                    tracing::warn!(instance = %next.id, "split was already committed by another attempt");
                }
                Err(CommitError::Stopped) => {
                    tracing::info!(instance = %next.id, "the runtime is stopping; the split is taken at the next start");
                }
            }),
        );
    }

    /// Move an instance to the version `migration` leads to, before its
    /// next step; once that is durable, the step runs under the new version.
    fn migrate(self: &Arc<Self>, job: StepJob, migration: &MigrationRecord) {
        let StepJob {
            instance, event, ..
        } = job;
        let Some(from_step) = instance.current_step.clone() else {
            tracing::warn!(instance = %instance.id, "a migration was scheduled for an instance with no step to run; dropped");
            return;
        };
        let to_step = migration
            .steps
            .get(&from_step)
            .cloned()
            .unwrap_or_else(|| from_step.clone());
        let mut next = instance.clone();
        next.journey_version = migration.to_version;
        next.current_step = Some(to_step.clone());
        next.history_len += 1;
        next.updated_at_ms = self.clock.now_ms();
        let entry = HistoryEntry::Migrated {
            at_ms: next.updated_at_ms,
            from_version: migration.from_version,
            to_version: migration.to_version,
            from_step,
            to_step,
        };
        let commit = StepCommit::migration(next.clone(), &entry)
            .expect("a migration entry is plain data that always encodes as JSON");
        let runtime = self.clone();
        self.committer.submit_then(
            Write::Step(Box::new(commit)),
            Box::new(move |result| match result {
                Ok(Applied::Done) => runtime.schedule(StepJob::new(next, event)),
                Ok(_) => {
                    tracing::warn!(instance = %next.id, "migration was already committed by another attempt");
                }
                Err(CommitError::Stopped) => {
                    tracing::info!(instance = %next.id, "the runtime is stopping; the migration is made at the next start");
                }
            }),
        );
    }

    fn finish(&self, instance: &Instance) {
        metrics::counter!("journeyd_instances_finished_total", "status" => instance.status.label())
            .increment(1);
        let _ = self.finished.send(Finished {
            id: instance.id,
            status: instance.status,
        });
    }

    /// The plugin version a reference resolves to now for `instance`,
    /// compiled. Compiles on a cache miss, one compilation at a time, so
    /// steps that miss together wait for one compilation instead of each
    /// starting one.
    ///
    /// A reference that resolves to nothing fails the step; bytes that
    /// cannot be read or compiled are the host's fault.
    fn resolve_plugin(
        &self,
        plugin: &PluginRef,
        instance: InstanceId,
    ) -> Result<(Resolved, Arc<host::LoadedPlugin>), StepFailure> {
        let resolved = self.registry.resolve(plugin, instance).ok_or_else(|| {
            StepFailure::Instantiate(format!("plugin `{plugin}` is not pushed (or tagged)"))
        })?;
        let digest = resolved.record.digest.clone();
        if let Some(loaded) = self.host.cached(&digest) {
            return Ok((resolved, loaded));
        }
        let _loading = self
            .loading
            .lock()
            .expect("the plugin loading lock is never poisoned");
        if let Some(loaded) = self.host.cached(&digest) {
            return Ok((resolved, loaded));
        }
        let bytes = self
            .store
            .plugin_bytes(&digest)
            .map_err(|error| {
                StepFailure::Host(format!(
                    "the bytes of plugin {plugin} (sha256:{digest}) could not be read: {}",
                    crate::error_chain(&error)
                ))
            })?
            .ok_or_else(|| {
                StepFailure::Host(format!(
                    "the bytes of plugin {plugin} (sha256:{digest}) are missing from the store"
                ))
            })?;
        let loaded = self.host.load(&digest, &bytes).map_err(|error| {
            StepFailure::Host(format!(
                "plugin {plugin} (sha256:{digest}) could not be loaded: {error}"
            ))
        })?;
        Ok((resolved, loaded))
    }

    /// Count a step's run against its plugin version and, when it ran a
    /// canary, against the rollout, rolling the tag back if its rule says so.
    fn count_run(&self, resolved: &Resolved, failed: bool, duration_us: u64) {
        let record = &resolved.record;
        self.versions
            .lock()
            .expect("the version counts lock is never poisoned")
            .record(&record.name, record.version, failed, duration_us);
        let Some(tag) = resolved.tag.as_ref().filter(|_| resolved.canary) else {
            return;
        };
        if tag.count_canary_run(failed) {
            let runs = tag.canary_runs.load(std::sync::atomic::Ordering::Relaxed);
            let failures = tag
                .canary_failures
                .load(std::sync::atomic::Ordering::Relaxed);
            let reason = format!(
                "automatic rollback: version {} failed {failures} of {runs} runs ({:.0}%), above the rule's {:.0}%",
                record.version,
                failures as f64 * 100.0 / runs as f64,
                tag.record
                    .canary
                    .as_ref()
                    .and_then(|canary| canary.rollback)
                    .map_or(0.0, |rule| rule.max_error_rate * 100.0),
            );
            if let Err(error) = self.end_rollout(&tag.record.plugin, &tag.record.tag, reason) {
                tracing::error!(plugin = %tag.record.plugin, tag = %tag.record.tag, error = %error, "automatic rollback failed");
            }
        }
    }

    /// Point `tag` of `plugin` at `version`, optionally rolling `canary`
    /// out to a share of instances. Validated before anything changes.
    pub fn set_tag(
        &self,
        plugin: &str,
        tag: &str,
        version: u32,
        canary: Option<Canary>,
        reason: &str,
    ) -> Result<TagRecord> {
        check_name("plugin name", plugin)?;
        check_name("tag", tag)?;
        let invalid = |reason: String| Error::InvalidTag {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            reason,
        };
        if !self.registry.has_plugin(plugin) {
            return Err(Error::UnknownPlugin(plugin.to_owned()));
        }
        let versions = std::iter::once(version).chain(canary.as_ref().map(|canary| canary.version));
        for wanted in versions {
            if self.registry.plugin_version(plugin, wanted).is_none() {
                return Err(Error::UnknownPluginVersion {
                    plugin: plugin.to_owned(),
                    version: wanted,
                });
            }
        }
        if let Some(canary) = &canary {
            if canary.percent > 100 {
                return Err(invalid(format!(
                    "a rollout percentage must be 0 to 100, not {}",
                    canary.percent
                )));
            }
            if canary.version == version {
                return Err(invalid(format!(
                    "the canary is version {version}, which the tag already points at"
                )));
            }
            if let Some(rule) = canary.rollback {
                if !(0.0..=1.0).contains(&rule.max_error_rate) {
                    return Err(invalid(format!(
                        "`max_error_rate` must be 0 to 1, not {}",
                        rule.max_error_rate
                    )));
                }
                if rule.min_runs == 0 {
                    return Err(invalid("`min_runs` must be at least 1".into()));
                }
            }
        }
        let record = TagRecord {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            version,
            canary,
            changed_at_ms: self.clock.now_ms(),
            reason: reason.to_owned(),
        };
        self.store.put_tag(&record)?;
        self.registry.set_tag(record.clone());
        tracing::info!(plugin, tag, version, canary = ?record.canary, reason, "plugin tag moved");
        Ok(record)
    }

    /// End the rollout on `tag` of `plugin`: every instance runs the
    /// tag's version again. `reason` is recorded with the change.
    pub fn end_rollout(&self, plugin: &str, tag: &str, reason: String) -> Result<TagRecord> {
        check_name("plugin name", plugin)?;
        check_name("tag", tag)?;
        let current = self
            .registry
            .tag(plugin, tag)
            .ok_or_else(|| Error::UnknownTag {
                plugin: plugin.to_owned(),
                tag: tag.to_owned(),
            })?;
        if current.record.canary.is_none() {
            return Err(Error::InvalidTag {
                plugin: plugin.to_owned(),
                tag: tag.to_owned(),
                reason: "there is no rollout to roll back".into(),
            });
        }
        self.set_tag(plugin, tag, current.record.version, None, &reason)
    }

    /// Every plugin version with its run counts.
    pub fn version_stats(&self) -> Vec<(PluginRecord, VersionStats)> {
        let counts = self
            .versions
            .lock()
            .expect("the version counts lock is never poisoned");
        self.registry
            .plugins()
            .into_iter()
            .map(|record| {
                let stats = counts
                    .0
                    .get(&record.name)
                    .and_then(|versions| versions.get(&record.version))
                    .cloned()
                    .unwrap_or_else(|| VersionStats {
                        plugin: record.name.clone(),
                        version: record.version,
                        ..VersionStats::default()
                    });
                (record, stats)
            })
            .collect()
    }

    /// Resolves with the time the next step starts on the component with
    /// `digest` (how long a swap takes to become visible).
    pub fn first_start_on(
        &self,
        digest: &str,
    ) -> tokio::sync::oneshot::Receiver<std::time::Instant> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut probes = self
            .start_probes
            .lock()
            .expect("the start probes lock is never poisoned");
        probes.push((digest.to_owned(), sender));
        self.has_start_probes
            .store(true, std::sync::atomic::Ordering::Release);
        receiver
    }

    fn notify_start(&self, digest: &str) {
        if !self
            .has_start_probes
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let now = std::time::Instant::now();
        let mut probes = self
            .start_probes
            .lock()
            .expect("the start probes lock is never poisoned");
        let mut kept = Vec::with_capacity(probes.len());
        for (wanted, sender) in probes.drain(..) {
            if wanted == digest {
                let _ = sender.send(now);
            } else {
                kept.push((wanted, sender));
            }
        }
        *probes = kept;
        self.has_start_probes
            .store(!probes.is_empty(), std::sync::atomic::Ordering::Release);
    }

    /// Every plugin tag.
    pub fn tags(&self) -> Vec<Arc<Tag>> {
        self.registry.tags()
    }

    /// A tag that was just set.
    pub fn registry_tag(&self, plugin: &str, tag: &str) -> Arc<Tag> {
        self.registry
            .tag(plugin, tag)
            .expect("the tag was set before it is read")
    }

    /// Save the run counts of every plugin version.
    pub fn save_version_stats(&self) -> Result<()> {
        let counts: Vec<VersionStats> = self
            .versions
            .lock()
            .expect("the version counts lock is never poisoned")
            .0
            .values()
            .flat_map(HashMap::values)
            .cloned()
            .collect();
        Ok(self.store.put_version_stats(&counts)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_commit(
        &self,
        instance: &Instance,
        journey: Option<&Journey>,
        step: &str,
        plugin: Option<Resolved>,
        attempt: u32,
        idempotency_key: String,
        started_ms: u64,
        run: host::StepRun,
    ) -> (StepCommit, Vec<host::MetricSample>) {
        let duration_us = run.duration.as_micros() as u64;
        self.step_stats
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.step_stats.sandbox_nanos.fetch_add(
            run.duration.as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        metrics::histogram!("journeyd_step_duration_seconds").record(run.duration.as_secs_f64());

        let customer_zone = || {
            let view = self
                .store
                .customer_view(&instance.customer_id, 0, &[])
                .ok()?;
            let profile: serde_json::Value = serde_json::from_str(view.profile.get()).ok()?;
            profile.get("time_zone")?.as_str().map(str::to_owned)
        };
        let decided = match run.result {
            Ok(output) => decide(journey, step, instance, output, started_ms, &customer_zone),
            Err(failure) => Err(failure.to_string()),
        };
        let (outcome, new_state, effects, plugin_failed) = match decided {
            Ok((outcome, state)) => (outcome, state, run.effects, false),
            Err(reason) => {
                // A failed attempt's effects came from an unfinished step:
                // none of them are committed, and the cap slots its
                // messages took are given back. Its log lines are kept:
                // they say what went wrong.
                for queued in run.effects.messages.iter().filter(|queued| queued.counted) {
                    self.sends
                        .release(&instance.customer_id, &queued.message.channel, started_ms);
                }
                let kept = host::Effects {
                    logs: run.effects.logs,
                    ..host::Effects::default()
                };
                (StepOutcome::Fail { reason }, None, kept, true)
            }
        };
        // A failed plugin runs again while its step's retry policy allows,
        // on a durable timer.
        let retry_at_ms = if plugin_failed {
            let policy = journey
                .and_then(|journey| journey.step(step))
                .map_or(RetryPolicy::DEFAULT, |step| step.retry);
            let failed = instance
                .attempts
                .as_ref()
                .map_or(0, |attempts| attempts.failed)
                + 1;
            (failed < policy.attempts)
                .then(|| self.clock.now_ms().max(started_ms) + policy.delay_ms(failed))
        } else {
            None
        };
        if retry_at_ms.is_some() {
            metrics::counter!("journeyd_step_retries_total").increment(1);
        }
        metrics::counter!("journeyd_steps_total", "outcome" => outcome_label(&outcome))
            .increment(1);

        let host::Effects {
            messages,
            capped,
            notes,
            logs,
            metrics,
        } = effects;
        let counted: Vec<(String, u64, u32)> = messages
            .iter()
            .enumerate()
            .filter(|(_, queued)| queued.counted)
            .map(|(index, queued)| (queued.message.channel.clone(), started_ms, index as u32))
            .collect();
        let capped: Vec<CappedMessage> = capped
            .into_iter()
            .map(|capped| CappedMessage {
                channel: capped.message.channel,
                subject: capped.message.subject,
                limit: capped.cap.limit,
                period_ms: capped.cap.period_ms,
                next_allowed_ms: capped.cap.next_allowed_ms,
            })
            .collect();
        let messages: Vec<OutboxMessage> = messages
            .into_iter()
            .map(|queued| {
                let message = queued.message;
                OutboxMessage {
                    id: queued.id,
                    instance_id: instance.id,
                    step: step.to_owned(),
                    customer_id: instance.customer_id.clone(),
                    channel: message.channel,
                    to: message.to,
                    subject: message.subject,
                    body: message.body,
                    // The host checked it is a JSON object.
                    metadata: raw_json(message.metadata),
                    queued_at_ms: started_ms,
                }
            })
            .collect();
        let notes = notes
            .into_iter()
            .map(|note| Interaction {
                at_ms: note.at_ms,
                channel: note.interaction.channel,
                kind: note.interaction.kind,
                text: note.interaction.text,
                // The host checked it is a JSON object.
                details: raw_json(note.interaction.details),
            })
            .collect();
        let state = match &new_state {
            Some(new_state) => {
                StateChanges::between(&object(instance.state.get()), object(new_state.get()))
            }
            None => StateChanges::default(),
        };
        if let Some(resolved) = &plugin {
            let failed = matches!(outcome, StepOutcome::Fail { .. });
            self.count_run(resolved, failed, duration_us);
        }
        let (plugin_name, plugin_version, digest) = match plugin {
            Some(resolved) => (
                resolved.record.name,
                resolved.record.version,
                resolved.record.digest,
            ),
            None => (String::new(), 0, String::new()),
        };
        let record = StepRecord {
            at_ms: started_ms,
            step: step.to_owned(),
            plugin: plugin_name,
            plugin_version,
            digest,
            attempt,
            idempotency_key,
            state,
            outcome,
            duration_us,
            messages: messages.iter().map(|message| message.id.clone()).collect(),
            capped,
            logs: logs
                .into_iter()
                .map(|line| LogLine {
                    level: line.level,
                    message: line.message,
                })
                .collect(),
            retry_at_ms,
        };
        let mut next = instance.clone();
        let entry = match retry_at_ms {
            Some(retry_at_ms) => {
                next.retry_later(&record, retry_at_ms);
                HistoryEntry::StepFailed(Box::new(record))
            }
            None => {
                next.advance(&record, |target| {
                    journey.is_some_and(|journey| journey.step(target).is_some())
                });
                if let Some(new_state) = new_state {
                    next.state = new_state;
                }
                HistoryEntry::StepRan(Box::new(record))
            }
        };
        let mut commit = StepCommit::new(next, &entry, &messages, notes)
            .expect("step records are plain data that always encode as JSON");
        commit.counted = counted;
        (commit, metrics)
    }
}

/// Turn a plugin's output into a recorded outcome and new state, or the
/// reason the step fails.
fn decide(
    journey: Option<&Journey>,
    step: &str,
    instance: &Instance,
    output: host::StepOutput,
    started_ms: u64,
    customer_zone: &dyn Fn() -> Option<String>,
) -> Result<(StepOutcome, Option<Box<RawValue>>), String> {
    // Where a wait or sleep continues: a step, or a terminal state that
    // completes the instance when it wakes.
    let step_target = |transition: &str, what: &str| match journey
        .and_then(|journey| journey.target(step, transition))
    {
        Some(Target::Step(target) | Target::Terminal(target)) => Ok(target.to_owned()),
        None => Err(format!(
            "plugin chose to {what}, then take transition `{transition}`, which step `{step}` does not define"
        )),
    };
    let state = match output.state {
        None => None,
        Some(text) => match crate::json::check_object(&text) {
            Ok(()) => Some(raw_json(text)),
            Err(error) => {
                return Err(format!(
                    "plugin returned a state that is not a JSON object: {error}"
                ));
            }
        },
    };
    let outcome = match output.outcome {
        host::Outcome::Goto(transition) => {
            match journey.and_then(|journey| journey.target(step, &transition)) {
                Some(Target::Step(target)) | Some(Target::Terminal(target)) => StepOutcome::Goto {
                    target: target.to_owned(),
                    transition,
                },
                None => {
                    return Err(format!(
                        "plugin chose transition `{transition}`, which step `{step}` does not define"
                    ));
                }
            }
        }
        host::Outcome::Complete => StepOutcome::Complete,
        host::Outcome::Fail(reason) => StepOutcome::Fail { reason },
        host::Outcome::WaitForEvent(spec) => {
            if spec.kind.is_empty() {
                return Err("plugin chose to wait for an event with no event type".into());
            }
            if spec.timeout_ms == 0 {
                return Err(format!(
                    "plugin chose to wait for `{}` without a timeout: `timeout-ms` must be above 0, so nobody waits forever",
                    spec.kind
                ));
            }
            let correlation = match journey
                .and_then(|journey| journey.step(step))
                .and_then(|step| step.definition.correlate_on.as_deref())
            {
                Some(key) => format!("{key}={}", instance.correlation),
                None => format!("customer={}", instance.customer_id),
            };
            StepOutcome::WaitForEvent {
                event_target: step_target(&spec.on_event, "wait for an event")?,
                timeout_target: step_target(&spec.on_timeout, "wait for an event")?,
                event: spec.kind,
                correlation,
                until_ms: started_ms.saturating_add(spec.timeout_ms),
                on_event: spec.on_event,
                on_timeout: spec.on_timeout,
            }
        }
        host::Outcome::SleepUntil(spec) => {
            let (until_ms, window) = match &spec.window {
                None => (spec.until_ms, None),
                Some(window) => {
                    let (zone, source) = match window.time_zone.as_str() {
                        "" => match customer_zone() {
                            Some(zone) => (zone, "the customer's profile `time_zone`: "),
                            None => ("UTC".to_owned(), ""),
                        },
                        zone => (zone.to_owned(), ""),
                    };
                    let window = SendingWindow::new(window.from_minute, window.to_minute, &zone)
                        .map_err(|reason| {
                            format!(
                                "plugin chose to sleep within a sending window: {source}{reason}"
                            )
                        })?;
                    (window.next_open(spec.until_ms)?, Some(window.to_string()))
                }
            };
            StepOutcome::Sleep {
                until_ms,
                target: step_target(&spec.then, "sleep")?,
                transition: spec.then,
                requested_ms: (until_ms != spec.until_ms).then_some(spec.until_ms),
                window,
            }
        }
    };
    Ok((outcome, state))
}

/// The channel choice an opt-in or opt-out event records; `None` for other
/// events. Those two must name the channel in `data.channel`.
fn channel_preference(
    event: &IncomingEvent,
    data_channel: Option<&str>,
    now: u64,
) -> Result<Option<ChannelPreference>> {
    if event.kind != OPTED_IN && event.kind != OPTED_OUT {
        return Ok(None);
    }
    let Some(channel) = data_channel else {
        return Err(Error::EventDataField {
            event: event.id.clone(),
            kind: event.kind.clone(),
            field: "channel",
            reason: "must name the channel: 1-64 of A-Z a-z 0-9 . _ -, e.g. \"sms\"",
        });
    };
    Ok(Some(ChannelPreference {
        channel: channel.to_owned(),
        opted_in: event.kind == OPTED_IN,
        changed_at_ms: now,
    }))
}

/// The engagement an event records, when a journey listening to it
/// declares it as engagement (the first such journey decides).
fn engagement(
    event: &IncomingEvent,
    data_channel: Option<&str>,
    listening: &[Arc<Journey>],
    now: u64,
) -> Option<Engagement> {
    listening.iter().find_map(|journey| {
        let declared = journey.definition.events.get(&event.kind)?;
        Some(Engagement {
            at_ms: now,
            action: declared.engagement.clone()?,
            channel: data_channel
                .map(str::to_owned)
                .or_else(|| declared.channel.clone())
                .unwrap_or_default(),
            event_kind: event.kind.clone(),
            details: event.data.clone(),
        })
    })
}

/// Encode the exit of `instance` (unfinished) through exit event `event`.
fn exit_commit(instance: &Instance, event: &EventRecord) -> StepCommit {
    let mut next = instance.clone();
    next.status = InstanceStatus::Exited;
    next.current_step = None;
    next.wake_at_ms = None;
    next.waiting_for = None;
    next.history_len += 1;
    next.updated_at_ms = event.received_at_ms;
    next.last_event_id = Some(event.id.clone());
    let entry = HistoryEntry::Exited {
        at_ms: event.received_at_ms,
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        step: instance.current_step.clone(),
    };
    StepCommit::exit(next, &entry, instance)
        .expect("an exit entry is plain data that always encodes as JSON")
}

/// A waiting instance running again: its next history slot, no timer or
/// wait (the caller sets where it continues).
fn awake(asleep: &Instance, now: u64) -> Instance {
    let mut next = asleep.clone();
    next.status = InstanceStatus::Running;
    next.wake_at_ms = None;
    next.waiting_for = None;
    next.history_len += 1;
    next.updated_at_ms = now;
    next
}

/// Instance state as a map. It is always a JSON object: [`decide`]
/// checks what plugins return before it is recorded.
fn object(state: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(state).unwrap_or_default()
}

fn failed_run(failure: StepFailure) -> host::StepRun {
    host::StepRun {
        result: Err(failure),
        effects: host::Effects::default(),
        duration: Duration::ZERO,
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

fn outcome_label(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Goto { .. } => "goto",
        StepOutcome::Sleep { .. } => "sleep",
        StepOutcome::WaitForEvent { .. } => "wait_for_event",
        StepOutcome::Complete => "complete",
        StepOutcome::Fail { .. } => "fail",
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
