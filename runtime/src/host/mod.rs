//! The WebAssembly host: where plugins are compiled, checked and run.
//!
//! [`Host`] owns one wasmtime [`Engine`] (pooling allocator, epoch
//! interruption), one [`Linker`] holding exactly the imports a plugin may
//! use, and a cache of pre-instantiated plugins keyed by digest. Each step
//! runs in a fresh [`Store`] whose data ([`StepState`]) is composed of one
//! context per capability (`log`, `customer`, `outbox`, `metrics`, `clock`,
//! plus the minimal WASI a Rust or Python component needs to start: no
//! filesystem, no sockets; and `wasi:http` outgoing requests, only to the
//! hosts the operator granted the plugin). Capabilities only *collect* effects; the
//! executor commits them with the step. This module does not know about
//! journeys, instances or storage layout.

pub mod channel;
mod clock;
mod contract;
mod customer;
mod failure;
mod http;
mod imports;
mod log;
mod metrics;
mod outbox;
mod wasi;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use self::contract::{OutputLimits, Violation};
pub use self::customer::CustomerSource;
pub use self::failure::{HostFault, StepFailure};
use self::failure::{classify_instantiate_error, classify_trap};
pub use self::http::StepGrant;
pub use self::log::PluginLog;
pub use self::metrics::MetricSample;
pub use self::outbox::{Admission, CappedSend, QueuedMessage, SendPolicy};

/// Bindings generated from `wit/journey.wit`: the one contract.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "step-plugin",
        imports: {
            "journey:plugin/customer.view": trappable,
            "journey:plugin/customer.note": trappable,
            "journey:plugin/outbox.send": trappable,
            "journey:plugin/log.write": trappable,
        },
    });
}

pub use bindings::journey::plugin::outbox::FrequencyCap;
pub use bindings::journey::plugin::types::{Event, Outcome, SendingWindow, StepInput, StepOutput};

/// The version of the `journey:plugin` WIT package this host implements,
/// as a literal for `concat!`. `wit/journey.wit` must declare the same
/// (a unit test checks).
macro_rules! wit_version {
    () => {
        "0.2.0"
    };
}

/// The version of the `journey:plugin` WIT package this host implements.
pub const WIT_VERSION: &str = wit_version!();
/// The export a plugin must provide.
pub const STEP_EXPORT: &str = concat!("journey:plugin/step@", wit_version!());
/// The world a step plugin implements.
pub const STEP_WORLD: &str = concat!("journey:plugin/step-plugin@", wit_version!());
/// The export a channel plugin provides.
pub const CHANNEL_EXPORT: &str = concat!("journey:plugin/channel@", wit_version!());
/// The world a channel plugin implements.
pub const CHANNEL_WORLD: &str = concat!("journey:plugin/channel-plugin@", wit_version!());

/// How often the epoch ticks; step deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Why a component was refused or could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (no `\\0asm` header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: build it for `wasm32-wasip2` (or run `wasm-tools component new`)"
    )]
    CoreModule,
    /// The bytes failed to compile.
    #[error("invalid component: {source:#}{}", fix(hint))]
    Compile {
        /// Why.
        #[source]
        source: wasmtime::Error,
        /// How to build it so it compiles, where known.
        hint: Option<String>,
    },
    /// It exports neither the step nor the channel interface.
    #[error(
        "exports neither `{STEP_EXPORT}` (a step) nor `{CHANNEL_EXPORT}` (a channel); it exports: {exports}{}",
        fix(hint)
    )]
    MissingExport {
        /// What it does export.
        exports: String,
        /// How to build it so it does, where known.
        hint: Option<String>,
    },
    /// It imports interfaces the host does not provide (all of them are
    /// named, each with its fix where known).
    #[error("does not implement the `{world}` world: {}", unmet.join("; "))]
    Imports {
        /// The world it claims by its export.
        world: &'static str,
        /// Each unmet import, in words.
        unmet: Vec<String>,
    },
    /// It imports something the host does not grant, or its export has
    /// the wrong shape.
    #[error("does not implement the `{world}` world: {source:#}")]
    World {
        /// The world it claims by its export.
        world: &'static str,
        /// What is wrong.
        #[source]
        source: wasmtime::Error,
    },
}

/// ": <hint>" when there is one.
fn fix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|hint| format!(": {hint}"))
        .unwrap_or_default()
}

/// Limits applied to every step.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a step may grow to.
    pub memory_bytes: usize,
    /// Wall-clock deadline for one step run, unless the step overrides it.
    pub deadline: Duration,
    /// Steps that run in the sandbox at once: one per step worker. The
    /// pool holds this many instances plus [`Self::concurrent_channel_calls`]
    /// plus [`WARM_SLOTS`], so a step never finds it full.
    pub concurrent_steps: u32,
    /// Channel plugin calls (render, interpret, parse a callback) that run
    /// at once; more wait for a slot.
    pub concurrent_channel_calls: u32,
    /// How large one plugin component may be, in the pieces the instance
    /// pool reserves room for.
    pub component: ComponentLimits,
    /// How large what a step hands the host may be.
    pub output: OutputLimits,
}

/// How many core instances, memories and tables one plugin component may
/// have. A Rust component has a handful; interpreter builds many more (a
/// `componentize-py` step has about 40 core instances), so the defaults
/// are sized for them. Raising them costs address space, not memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Core WebAssembly instances in one component.
    pub core_instances: u32,
    /// Linear memories in one component.
    pub memories: u32,
    /// Tables in one component.
    pub tables: u32,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            core_instances: 64,
            memories: 4,
            tables: 64,
        }
    }
}

/// Pool slots beyond one per concurrent step: they keep warm instances of
/// recently run plugins for reuse (module affinity).
pub const WARM_SLOTS: u32 = 14;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            deadline: Duration::from_secs(2),
            concurrent_steps: 2,
            concurrent_channel_calls: 2,
            component: ComponentLimits::default(),
            output: OutputLimits::default(),
        }
    }
}

/// A compiled, linked plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// Its content digest.
    pub digest: String,
    kind: Plugin,
}

/// What a plugin is, by the interface it exports.
enum Plugin {
    /// A journey step.
    Step(bindings::StepPluginPre<StepState>),
    /// A delivery channel.
    Channel(channel::bindings::ChannelPluginPre<channel::ChannelState>),
}

impl LoadedPlugin {
    /// Whether it is a channel plugin (else a step plugin).
    pub fn is_channel(&self) -> bool {
        matches!(self.kind, Plugin::Channel(_))
    }
}

/// What a step asks of the host.
pub struct StepRequest {
    /// The input handed to the plugin.
    pub input: StepInput,
    /// Where the customer view comes from.
    pub customer: CustomerSource,
    /// The runtime clock at step start.
    pub now_ms: u64,
    /// Overrides [`Limits::deadline`].
    pub deadline: Option<Duration>,
    /// The frequency caps messages are checked against.
    pub sends: Arc<dyn SendPolicy>,
    /// The plugin's name (for what its outbound requests are checked
    /// against).
    pub plugin: String,
    /// What the operator granted the plugin: the hosts its `wasi:http`
    /// requests may reach and the secrets they may name (`None`: none).
    pub http: Option<Arc<StepGrant>>,
}

/// Everything a step produced, committed or discarded as a whole.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages queued with `outbox.send`.
    pub messages: Vec<QueuedMessage>,
    /// Messages a frequency cap refused.
    pub capped: Vec<CappedSend>,
    /// Interactions noted with `customer.note`.
    pub notes: Vec<customer::Note>,
    /// Log lines (bounded).
    pub logs: Vec<PluginLog>,
    /// Counter increments.
    pub metrics: Vec<MetricSample>,
}

/// The result of one step run.
pub struct StepRun {
    /// The plugin's output, or why there is none.
    pub result: Result<StepOutput, StepFailure>,
    /// Effects collected during the run; the executor drops them unless
    /// `result` is `Ok`.
    pub effects: Effects,
    /// Instantiate + call wall time.
    pub duration: Duration,
}

pub use self::customer::Note;

/// Per-step store data: one context per capability, nothing shared.
pub struct StepState {
    wasi: wasi::WasiState,
    log: log::LogCapability,
    customer: customer::CustomerCapability,
    outbox: outbox::OutboxCapability,
    metrics: metrics::MetricsCapability,
    clock: clock::ClockCapability,
    http: http::HttpCapability,
    memory: MemoryLimiter,
}

impl wasmtime_wasi_http::WasiHttpView for StepState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: self.wasi.table(),
            hooks: &mut self.http.hooks,
        }
    }
}

/// Enforces the per-step memory limit and remembers that it did.
struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The wasmtime engine, linker and plugin cache.
pub struct Host {
    engine: Engine,
    linker: Linker<StepState>,
    channel_linker: Linker<channel::ChannelState>,
    limits: Limits,
    /// The HTTP client of steps' outbound requests.
    outbound: crate::delivery::Outbound,
    plugins: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    compiled_cache: Option<wasmtime::Cache>,
    /// Bounds the channel calls running at once.
    channel_slots: channel::Slots,
}

/// How plugin loads were served by the compiled-code cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    /// Loaded from compiled code in the cache.
    pub hits: usize,
    /// Compiled (and then stored in the cache).
    pub misses: usize,
}

impl Host {
    /// Build the engine and linker, and start the epoch ticker.
    pub fn new(limits: Limits, compiled_cache: Option<&std::path::Path>) -> wasmtime::Result<Host> {
        let mut pool = PoolingAllocationConfig::default();
        // Only the step workers and the bounded channel calls instantiate
        // plugins, one each at a time, so the pool cannot run out by design.
        let slots =
            limits.concurrent_steps.max(1) + limits.concurrent_channel_calls.max(1) + WARM_SLOTS;
        let shape = limits.component;
        pool.total_component_instances(slots)
            .total_core_instances(slots * shape.core_instances)
            .max_core_instances_per_component(shape.core_instances)
            .total_memories(slots * shape.memories)
            .max_memories_per_component(shape.memories)
            .total_tables(slots * shape.tables)
            .max_tables_per_component(shape.tables)
            .max_memory_size(limits.memory_bytes.max(1 << 20) * 2)
            // Reset slots without madvise (a TLB shootdown on every core
            // each time a slot is reused): keep them resident and, where the
            // kernel has PAGEMAP_SCAN (Linux 6.7+), restore only the pages
            // the step dirtied instead of memset-ing the whole window.
            .linear_memory_keep_resident(4 * 1024 * 1024)
            .table_keep_resident(256 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let compiled_cache = match compiled_cache {
            Some(directory) => {
                // wasmtime keys each entry by the component's bytes and the
                // engine's configuration, so an upgrade or a changed setting
                // never loads code compiled for another engine.
                let mut cache = wasmtime::CacheConfig::new();
                cache.with_directory(directory);
                Some(wasmtime::Cache::new(cache)?)
            }
            None => None,
        };
        config.cache(compiled_cache.clone());
        // `JOURNEYD_PERF_MAP=1` writes /tmp/perf-PID.map so `perf report`
        // names the functions of plugin code.
        if std::env::var_os("JOURNEYD_PERF_MAP").is_some_and(|value| value == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        log::add_to_linker(&mut linker)?;
        customer::add_to_linker(&mut linker)?;
        outbox::add_to_linker(&mut linker)?;
        metrics::add_to_linker(&mut linker)?;
        clock::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        let channel_linker = channel::linker(&engine)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning a thread at start-up");

        let channel_slots = channel::Slots::new(limits.concurrent_channel_calls);
        Ok(Host {
            engine,
            linker,
            channel_linker,
            limits,
            outbound: crate::delivery::Outbound::new(Duration::from_secs(5)),
            plugins: RwLock::new(HashMap::new()),
            compiled_cache,
            channel_slots,
        })
    }

    /// Loads served from the compiled-code cache and compilations so far,
    /// when the host has a cache.
    pub fn cache_counts(&self) -> Option<CacheCounts> {
        self.compiled_cache.as_ref().map(|cache| CacheCounts {
            hits: cache.cache_hits(),
            misses: cache.cache_misses(),
        })
    }

    /// The limits every step runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile and check `bytes` without caching: does it implement the
    /// step or the channel world with only the imports the host grants?
    pub fn check(&self, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        match bytes.get(..8) {
            Some([0x00, b'a', b's', b'm', _, _, 0x01, 0x00]) => {}
            Some([0x00, b'a', b's', b'm', ..]) => return Err(LoadError::CoreModule),
            _ => return Err(LoadError::NotWasm),
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|source| LoadError::Compile {
                hint: imports::compile_hint(&source),
                source,
            })?;
        let ty = component.component_type();
        let exports = |export: &str| {
            ty.exports(&self.engine).any(|(name, item)| {
                name == export && matches!(item.ty, ComponentItem::ComponentInstance(_))
            })
        };
        if exports(CHANNEL_EXPORT) && !exports(STEP_EXPORT) {
            let unmet = imports::unmet(
                &self.engine,
                &component,
                CHANNEL_WORLD,
                imports::CHANNEL_IMPORTS,
            );
            if !unmet.is_empty() {
                return Err(LoadError::Imports {
                    world: CHANNEL_WORLD,
                    unmet,
                });
            }
            let world = |source| LoadError::World {
                world: CHANNEL_WORLD,
                source,
            };
            let pre = self
                .channel_linker
                .instantiate_pre(&component)
                .map_err(world)?;
            let pre = channel::bindings::ChannelPluginPre::new(pre).map_err(world)?;
            return Ok(LoadedPlugin {
                digest: String::new(),
                kind: Plugin::Channel(pre),
            });
        }
        if !exports(STEP_EXPORT) {
            let names: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
            return Err(LoadError::MissingExport {
                exports: if names.is_empty() {
                    "nothing".into()
                } else {
                    names
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                hint: imports::export_hint(names.iter().copied()),
            });
        }
        let unmet = imports::unmet(&self.engine, &component, STEP_WORLD, imports::STEP_IMPORTS);
        if !unmet.is_empty() {
            return Err(LoadError::Imports {
                world: STEP_WORLD,
                unmet,
            });
        }
        let world = |source| LoadError::World {
            world: STEP_WORLD,
            source,
        };
        let pre = self.linker.instantiate_pre(&component).map_err(world)?;
        let pre = bindings::StepPluginPre::new(pre).map_err(world)?;
        Ok(LoadedPlugin {
            digest: String::new(),
            kind: Plugin::Step(pre),
        })
    }

    /// The cached plugin with this digest, if loaded.
    pub fn cached(&self, digest: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .expect("plugin cache lock is never poisoned")
            .get(digest)
            .cloned()
    }

    /// Compile, check and cache `bytes` under `digest`.
    pub fn load(&self, digest: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        if let Some(plugin) = self.cached(digest) {
            return Ok(plugin);
        }
        let mut plugin = self.check(bytes)?;
        plugin.digest = digest.to_owned();
        let plugin = Arc::new(plugin);
        self.plugins
            .write()
            .expect("plugin cache lock is never poisoned")
            .insert(digest.to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// Run one step in a fresh store. Blocks the calling thread for at most
    /// the deadline; call it from a blocking-capable thread.
    pub fn run_step(&self, plugin: &LoadedPlugin, request: StepRequest) -> StepRun {
        let started = Instant::now();
        let deadline = request.deadline.unwrap_or(self.limits.deadline);
        let state = StepState {
            wasi: wasi::WasiState::new(request.now_ms, &request.input.idempotency_key),
            log: log::LogCapability::new(&request.input, self.limits.output.text_bytes),
            outbox: outbox::OutboxCapability::new(
                &request.input.idempotency_key,
                &request.customer.customer_id,
                &request.input.journey,
                request.now_ms,
                request.sends,
                self.limits.output.clone(),
            ),
            customer: customer::CustomerCapability::new(
                request.customer,
                request.now_ms,
                self.limits.output.clone(),
            ),
            metrics: metrics::MetricsCapability::default(),
            clock: clock::ClockCapability::new(request.now_ms),
            http: http::HttpCapability::new(
                &request.plugin,
                request.http,
                &request.input.idempotency_key,
                self.outbound.clone(),
            ),
            memory: MemoryLimiter {
                limit: self.limits.memory_bytes,
                exceeded: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.deadline_ticks(deadline));

        let Plugin::Step(pre) = &plugin.kind else {
            return StepRun {
                result: Err(StepFailure::Instantiate(
                    "a channel plugin, not a step: it exports `journey:plugin/channel`, not `journey:plugin/step`".into(),
                )),
                effects: Effects::default(),
                duration: started.elapsed(),
            };
        };
        let result = match pre.instantiate(&mut store) {
            Ok(instance) => instance
                .journey_plugin_step()
                .call_run(&mut store, &request.input)
                .map_err(|error| {
                    classify_trap(&self.limits, store.data().memory.exceeded, error, deadline)
                })
                .and_then(|returned| returned.map_err(|error| self.returned_error(error)))
                .and_then(|output| {
                    contract::check_output(&output, &self.limits.output)
                        .map_err(|violation| StepFailure::Contract(violation.to_string()))?;
                    Ok(output)
                }),
            Err(error) => Err(classify_instantiate_error(
                &self.limits,
                store.data().memory.exceeded,
                error,
                deadline,
            )),
        };
        let duration = started.elapsed();
        let state = store.into_data();
        let result = result.map_err(|failure| failure.with_stderr(&state.wasi.stderr()));
        // A refused outbound request fails the step, whatever the plugin
        // made of the error it saw.
        let result = match state.http.refused() {
            Some(reason) if !matches!(result, Err(StepFailure::Host(_))) => {
                Err(StepFailure::Refused(reason))
            }
            _ => result,
        };
        let (messages, capped) = state.outbox.into_parts();
        StepRun {
            result,
            effects: Effects {
                messages,
                capped,
                notes: state.customer.into_notes(),
                logs: state.log.into_lines(),
                metrics: state.metrics.into_samples(),
            },
            duration,
        }
    }

    /// Epoch ticks a call may run for before it is interrupted.
    fn deadline_ticks(&self, deadline: Duration) -> u64 {
        (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }

    /// The error a plugin returned, cut to the text limit: it is already a
    /// failure, so an oversized one is shortened rather than refused.
    fn returned_error(&self, error: String) -> StepFailure {
        let limit = self.limits.output.text_bytes;
        if error.len() <= limit {
            return StepFailure::Returned(error);
        }
        let mut end = limit;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        StepFailure::Returned(format!(
            "{}… ({} bytes, cut to the limit of {limit})",
            &error[..end],
            error.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wit_file_declares_the_version_the_host_implements() {
        let wit = include_str!("../../../wit/journey.wit");
        assert!(
            wit.contains(&format!("package journey:plugin@{WIT_VERSION};")),
            "wit/journey.wit and WIT_VERSION disagree"
        );
        assert_eq!(STEP_EXPORT, format!("journey:plugin/step@{WIT_VERSION}"));
    }
}
