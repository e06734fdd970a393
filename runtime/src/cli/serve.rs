//! `journeyd serve`: open the store, resume unfinished instances, serve
//! the API until SIGINT or SIGTERM, then drain: refuse new events, let the
//! steps under way finish (bounded by `--drain-timeout`), flush, exit 0.
//! A second signal exits at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::io::AsyncWriteExt as _;

use journey_runtime::api::{self, AppState};
use journey_runtime::clock::{Clock, ShiftedClock, SimulatedClock, SystemClock};
use journey_runtime::executor::{ADMIN_TOKEN_FILE, Runtime, SIMULATED_CLOCK_META, Settings};
use journey_runtime::host::{ComponentLimits, Limits, OutputLimits};
use journey_runtime::journey::Retention;
use journey_runtime::store::sled::SledOptions;
use journey_runtime::store::{NodeOptions, PostgresOptions};
use journey_runtime::telemetry;

/// Arguments of `journeyd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A `journeyd.toml` holding any of these settings (its keys are the
    /// flags without dashes, `-` written `_`); a flag or its environment
    /// variable wins over the file.
    #[arg(long, env = "JOURNEYD_SERVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory (created if missing).
    #[arg(long, env = "JOURNEYD_DATA", default_value = "journeyd-data")]
    pub data: PathBuf,
    /// Keep instances in this PostgreSQL database (`postgres://user@host/db`;
    /// a Unix socket's directory as the host, percent-encoded) instead of
    /// the embedded store in the data directory. The schema is created or
    /// brought up to date at start. The data directory still holds the
    /// admin token, the address file and compiled code.
    #[arg(long, env = "JOURNEYD_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// This node's name among the nodes sharing a PostgreSQL store, as
    /// `journeyd cluster status` shows it (default: the host name).
    #[arg(long, env = "JOURNEYD_NODE", requires = "store")]
    pub node: Option<String>,
    /// How long a node's shard leases last unrenewed (PostgreSQL store):
    /// the shards of a node that stops move to the others after at most
    /// this long. Renewed every third of it.
    #[arg(long, env = "JOURNEYD_SHARD_LEASE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shard_lease: Duration,
    /// Where compiled plugin code is kept, so a restart compiles nothing
    /// (default: `compiled` in the data directory). Runtimes may share
    /// one: entries are keyed by the component's bytes and the engine's
    /// settings.
    #[arg(long, env = "JOURNEYD_COMPILED_CACHE")]
    pub compiled_cache: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "JOURNEYD_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Memory limit of one step's sandbox, MiB.
    #[arg(long, default_value_t = 64)]
    pub step_memory_mib: usize,
    /// Default deadline of one step run, ms.
    #[arg(long, default_value_t = 2000)]
    pub step_deadline_ms: u64,
    /// Largest instance state a step may return, bytes (over it, the step
    /// fails naming the limit).
    #[arg(long, default_value_t = OutputLimits::default().state_bytes)]
    pub max_state_bytes: usize,
    /// Largest message body a step may queue, bytes.
    #[arg(long, default_value_t = OutputLimits::default().message_bytes)]
    pub max_message_bytes: usize,
    /// Largest JSON argument (message metadata, note details), bytes.
    #[arg(long, default_value_t = OutputLimits::default().json_bytes)]
    pub max_json_bytes: usize,
    /// Largest free text (note text, log line, `fail` reason), bytes.
    #[arg(long, default_value_t = OutputLimits::default().text_bytes)]
    pub max_text_bytes: usize,
    /// Step workers: steps that run in the sandbox at once (default: one
    /// per core). Steps are CPU-bound; more workers than cores only helps
    /// when steps wait, e.g. on a slow plugin.
    #[arg(long, env = "JOURNEYD_STEP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub step_workers: Option<u16>,
    /// Core WebAssembly instances one plugin component may have (the
    /// instance pool reserves room for this many per slot). Interpreter
    /// builds need many: a componentize-py step has about 40.
    #[arg(long, default_value_t = ComponentLimits::default().core_instances)]
    pub plugin_core_instances: u32,
    /// Linear memories one plugin component may have.
    #[arg(long, default_value_t = ComponentLimits::default().memories)]
    pub plugin_memories: u32,
    /// Tables one plugin component may have.
    #[arg(long, default_value_t = ComponentLimits::default().tables)]
    pub plugin_tables: u32,
    /// How long finished instances (completed, failed, exited, cancelled)
    /// are kept with their history and messages when their journey sets
    /// no `retention`: a duration such as `30d`, or `forever`. Events that
    /// started nothing are kept this long too.
    #[arg(long, env = "JOURNEYD_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub retention: Retention,
    /// On SIGTERM or SIGINT, how long to wait for the steps, commits and
    /// deliveries under way to finish before exiting (a second signal
    /// exits at once).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// sled page cache, MiB.
    #[arg(long, default_value_t = 64)]
    pub cache_mib: u64,
    /// Run on a simulated clock that stands still until moved with
    /// `POST /v1/clock/advance` (kept in the store across restarts; the
    /// first start begins at the system time).
    #[arg(long)]
    pub simulated_clock: bool,
    /// Start the simulated clock at this time (ms since the Unix epoch)
    /// instead of where it stood, e.g. to have time pass while journeyd was
    /// down. Never moves it backwards.
    #[arg(long, requires = "simulated_clock", value_name = "MS")]
    pub simulated_clock_start: Option<u64>,
    /// Run the clock at real speed from this time (ms since the Unix
    /// epoch) instead of the system time, e.g. to rehearse a journey from
    /// another date. Not kept across restarts.
    #[arg(long, conflicts_with = "simulated_clock", value_name = "MS")]
    pub clock_start: Option<u64>,
    /// The tokens policy: how long an API token is accepted after it was
    /// made (`90d`, or `forever`). An expired token gets `401
    /// token_expired`; when every admin token has expired, a start makes
    /// a new `admin` token in the data directory.
    #[arg(long, env = "JOURNEYD_TOKEN_MAX_AGE", default_value = "forever", value_parser = parse_retention)]
    pub token_max_age: Retention,
    /// Export traces over OTLP/HTTP to this collector (its base URL;
    /// `/v1/traces` is added). Off when neither this nor the other
    /// `OTEL_*` variables name an endpoint; see docs/operations.md.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// A retention as given on the command line.
pub(crate) fn parse_retention(text: &str) -> Result<Retention, String> {
    Retention::parse(text)
        .ok_or_else(|| format!("`{text}` is not a duration such as `30d` or `12h`, nor `forever`"))
}

/// Log to stderr; `RUST_LOG` overrides the default level.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a log file.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    // Absolute from here on: the compiled-plugin cache refuses a
    // relative directory (and the default, `journeyd-data`, is one).
    args.data = std::path::absolute(&args.data)
        .with_context(|| format!("the data directory {}", args.data.display()))?;
    let exporting = telemetry::start(
        &telemetry::ExportSettings {
            otlp_endpoint: args.otlp_endpoint.clone(),
        },
        tokio::runtime::Handle::current(),
    )
    .context("setting up trace export")?;
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating the data directory {}", args.data.display()))?;
    // Bound first, so a node sharing a store says where it serves.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    let mut node = NodeOptions {
        lease: args.shard_lease,
        address: Some(format!("http://{address}")),
        ..NodeOptions::default()
    };
    if let Some(name) = &args.node {
        node.name = name.clone();
    }
    let store = super::store::open_store(
        args.store.as_deref(),
        &args.data,
        &SledOptions {
            cache_bytes: args.cache_mib * 1024 * 1024,
            ..SledOptions::default()
        },
        &PostgresOptions {
            node: Some(node),
            ..PostgresOptions::default()
        },
    )?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    telemetry::describe_metrics();
    let settings = Settings {
        limits: Limits {
            memory_bytes: args.step_memory_mib * 1024 * 1024,
            deadline: Duration::from_millis(args.step_deadline_ms),
            output: OutputLimits {
                state_bytes: args.max_state_bytes,
                message_bytes: args.max_message_bytes,
                json_bytes: args.max_json_bytes,
                text_bytes: args.max_text_bytes,
                ..OutputLimits::default()
            },
            component: ComponentLimits {
                core_instances: args.plugin_core_instances,
                memories: args.plugin_memories,
                tables: args.plugin_tables,
            },
            ..Limits::default()
        },
        compiled_cache: Some(
            args.compiled_cache
                .clone()
                .unwrap_or_else(|| args.data.join("compiled")),
        ),
        retention: args.retention,
        scratch_dir: Some(args.data.clone()),
        token_max_age: args.token_max_age,
        ..Settings::default()
    };
    let settings = match args.step_workers {
        Some(workers) => Settings {
            parallel_steps: usize::from(workers),
            ..settings
        },
        None => settings,
    };
    let clock: Arc<dyn Clock> = if args.simulated_clock {
        let kept = store
            .meta(SIMULATED_CLOCK_META)?
            .and_then(|value| value.as_u64());
        let start = match (kept, args.simulated_clock_start) {
            (Some(kept), Some(start)) => kept.max(start),
            (None, Some(start)) => start,
            (Some(kept), None) => kept,
            (None, None) => SystemClock.now_ms(),
        };
        tracing::info!(now_ms = start, "running on a simulated clock");
        Arc::new(SimulatedClock::starting_at(start))
    } else if let Some(start) = args.clock_start {
        tracing::info!(now_ms = start, "running on a shifted clock");
        Arc::new(ShiftedClock::starting_at(start))
    } else {
        Arc::new(SystemClock)
    };
    let runtime = Runtime::new(store, clock, settings)?;
    // Every route wants a token: the first start makes an admin token and
    // leaves it, readable by this user only, where the CLI looks for it.
    if let Some(secret) = runtime.first_admin_token()? {
        let path = args.data.join(ADMIN_TOKEN_FILE);
        write_private(&path, &secret)
            .with_context(|| format!("writing the first admin token to {}", path.display()))?;
        tracing::info!(file = %path.display(), "created the admin token (`admin`); the CLI on this machine reads it from there, others take JOURNEYD_TOKEN");
    }
    // Health answers from now on; every `/v1` route says `not_ready`
    // until the instances are resumed and the timer loop runs.
    let state = AppState {
        runtime: runtime.clone(),
        metrics: Some(metrics),
    };
    let app = journey_runtime::console::router(state.clone()).merge(api::router(state));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });

    let loading = std::time::Instant::now();
    let plugins = runtime.load_plugins().await?;
    let counts = runtime.host().cache_counts();
    tracing::info!(
        plugins,
        from_cache = counts.map_or(0, |counts| counts.hits),
        compiled = counts.map_or(0, |counts| counts.misses),
        elapsed_ms = loading.elapsed().as_millis() as u64,
        "plugins loaded"
    );
    if let Some(counts) = counts {
        metrics::gauge!("journeyd_start_plugins_from_cache").set(counts.hits as f64);
        metrics::gauge!("journeyd_start_plugins_compiled").set(counts.misses as f64);
    }
    // Run counts per plugin version survive restarts, saved every 2 s.
    let saver = runtime.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(2));
        loop {
            every.tick().await;
            let saver = saver.clone();
            match tokio::task::spawn_blocking(move || saver.save_version_stats()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(error = %error, "saving plugin run counts failed"),
                Err(error) => tracing::warn!(error = %error, "saving plugin run counts failed"),
            }
        }
    });
    // The catalog another runtime on the same store changed is picked up
    // within a second (a version check; nothing is read when unchanged).
    let refresher = runtime.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let refresher = refresher.clone();
            match tokio::task::spawn_blocking(move || refresher.refresh_catalog()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "checking the catalog for changes failed")
                }
                Err(error) => {
                    tracing::warn!(error = %error, "checking the catalog for changes failed")
                }
            }
        }
    });
    // Resume first, with nothing else moving instances: the timer loop
    // and new events start only once every running instance is scheduled.
    let resumed = runtime.resume().await?;
    let exits = runtime.resume_exits().await?;
    if exits > 0 {
        tracing::info!(exits, "applied exits left pending by the last run");
    }
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished instances");
    }
    let declared = super::config::integrations(args.config.as_deref())?;
    if !declared.is_empty() {
        let count = declared.len();
        let waiting = runtime
            .declare_integrations(declared)
            .await
            .context("setting the integrations of the config file")?;
        tracing::info!(
            count,
            ?waiting,
            "integrations of the config file set (those waiting are set when their plugin is pushed)"
        );
    }
    runtime.start_cluster();
    runtime.start_timers();
    runtime.start_dispatcher();
    runtime.start_retention();
    runtime.set_ready();
    // Client commands on this data directory find the server here, also
    // when it listens on a port the system picked.
    let url = format!("http://{address}");
    if let Err(error) = std::fs::write(args.data.join(super::ADDRESS_FILE), &url) {
        tracing::warn!(%error, "could not write the address file; clients need --server or JOURNEYD_URL");
    }
    tracing::info!(%address, data = %args.data.display(), "serving; clients: export JOURNEYD_URL={url}");
    // The readiness line: scripts and tests wait for it on stdout.
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("journeyd listening on http://{address}\n").as_bytes())
        .await?;
    stdout.flush().await?;
    tokio::select! {
        _ = shutdown_signal() => {}
        served = &mut server => {
            served??;
            anyhow::bail!("the HTTP server stopped by itself");
        }
    }
    drain(&runtime, args.drain_timeout).await;
    let _ = stop_http.send(());
    server.await??;
    // Other nodes take this one's shards now, not when the leases end.
    let leaving = runtime.clone();
    tokio::task::spawn_blocking(move || leaving.store().leave()).await?;
    if let Err(error) = runtime.save_version_stats() {
        tracing::warn!(error = %error, "saving plugin run counts failed");
    }
    // Every commit is durable on return already; an empty one flushes
    // whatever else the store holds.
    runtime.store().commit(&[]).context("flushing the store")?;
    if let Some(exporting) = exporting {
        // The last spans, sent before the process ends.
        let _ = tokio::task::spawn_blocking(move || exporting.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The exit status after a second signal cut the drain short.
const EXIT_INTERRUPTED: i32 = 130;

/// Stop taking work and wait for what is under way (see
/// `Runtime::drain`); a second signal exits at once.
async fn drain(runtime: &Runtime, limit: Duration) {
    tracing::info!(
        limit_ms = limit.as_millis() as u64,
        "draining: not ready, new events get 503 with Retry-After; waiting for the steps, commits and deliveries under way"
    );
    tokio::spawn(async {
        shutdown_signal().await;
        // Nothing acknowledged is lost: every answer came after its flush.
        eprintln!("journeyd: a second signal; exiting now (status {EXIT_INTERRUPTED})");
        std::process::exit(EXIT_INTERRUPTED);
    });
    let drained = runtime.drain(limit).await;
    if drained.is_clean() {
        tracing::info!(waited_ms = drained.waited_ms, "drained: nothing under way");
    } else {
        tracing::warn!(
            waited_ms = drained.waited_ms,
            steps_running = drained.steps_running,
            commits_pending = drained.commits_pending,
            sending = drained.sending,
            "drain limit reached; what is left runs again at the next start with the same idempotency keys"
        );
    }
}

/// Write `contents` to a file only its owner may read.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
