//! `journeyd bench`: the enquiry journey under load, in-process.
//!
//! Builds a [`Runtime`] on a temporary sled store exactly as `serve` does,
//! pushes the first-party plugins, deploys the shipped enquiry journey and
//! sends N enquiry events through [`Runtime::ingest`] with C in flight.
//! Every step is committed durably (group commit, flushed) before it
//! counts. Prints a readable summary, then one JSON line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;
use tokio::sync::Semaphore;

mod catalog;
mod console;
mod delivery;
mod languages;
mod load;
mod nodes;
mod restart;
mod retention;
mod support;
mod waiting;

use self::support::{
    default_plugin_dir, dir_size, peak_rss_mib, percentile, process_cpu_seconds, read_component,
};
use journey_runtime::clock::SystemClock;
use journey_runtime::executor::{Runtime, Settings};
use journey_runtime::store::sled::SledOptions;
use journey_runtime::store::{InstanceId, InstanceStatus, Store};
use journey_runtime::store::{PostgresOptions, PostgresStore};

/// Arguments of `journeyd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Enquiry journeys to run.
    #[arg(long, default_value_t = 20_000)]
    pub journeys: usize,
    /// Journeys in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Folder with the built plugin components (`plugin_*.wasm`, `fixture_noop.wasm`).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// The journey definition to run.
    #[arg(long, default_value = "examples/enquiry/journey.toml")]
    pub journey: PathBuf,
    /// Steps running in the sandbox at once (default: the number of cores).
    #[arg(long)]
    pub parallel_steps: Option<usize>,
    /// Run the enquiry scenario on this PostgreSQL database
    /// (`postgres://…`) instead of sled; its tables must be empty or
    /// missing.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Keep the store in this (new or empty) directory instead of a
    /// temporary one, e.g. to start `journeyd serve` on it afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Instantiate + call rounds for the step-overhead figure.
    #[arg(long, default_value_t = 5_000)]
    pub overhead_rounds: usize,
    /// Hot-swap test: the classify step names `classify:stable`, and for
    /// the second half of the journeys the tag is moved between two
    /// versions every MS milliseconds. Adds `p99_ms_steady` (first half),
    /// `p99_ms_swapping` (second half), `swaps` and `swap_visible_ms` (tag
    /// change to the first step start on the new digest, the largest).
    #[arg(long, value_name = "MS")]
    pub swap_every: Option<u64>,
    /// What to measure: `enquiry` journeys, or `restart` (a store with
    /// `--plugin-versions` plugin versions, then the time from starting
    /// `journeyd serve` on it to its readiness line).
    #[arg(long, value_enum, default_value_t = Scenario::Enquiry)]
    pub scenario: Scenario,
    /// Plugin versions in the store for `--scenario restart`.
    #[arg(long, default_value_t = 50)]
    pub plugin_versions: usize,
    /// Sleeping instances for `--scenario timers`.
    #[arg(long, default_value_t = 1_000_000)]
    pub timers: usize,
    /// Timers falling due per second for `--scenario timers`.
    #[arg(long, default_value_t = 5_000)]
    pub timer_rate: usize,
    /// Instances parked waiting for an event for `--scenario resume`.
    #[arg(long, default_value_t = 20_000)]
    pub waits: usize,
    /// Matching events sent per second for `--scenario resume`.
    #[arg(long, default_value_t = 2_000)]
    pub event_rate: usize,
    /// Put a `screen` step first whose plugin (`fixture_flaky.wasm`) fails
    /// the first attempt of about this share of instances (0 to 100),
    /// with a policy of 3 attempts `--retry-after-ms` apart. Adds
    /// `retries` and `completed_share` to the figures.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_first_percent: Option<u8>,
    /// The wait before a retry, with `--fail-first-percent`.
    #[arg(long, default_value_t = 50)]
    pub retry_after_ms: u64,
    /// Deliver every message (the enquiry scenario; always on for
    /// `--scenario delivery`): the dispatcher sends them through the
    /// shipped channel plugins to a `provider-sink` process. Adds
    /// `messages_delivered`, `messages_per_s`, `delivery_p50_ms`,
    /// `delivery_p99_ms` (step commit to provider acceptance) and
    /// `delivery_retries`.
    #[arg(long)]
    pub deliver: bool,
    /// Share of provider requests that fail transiently (500), 0 to 100,
    /// when delivering (default: 10 for `--scenario delivery`, else 0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub provider_fail_percent: Option<u8>,
    /// Export the run's traces over OTLP/HTTP to this collector (e.g. a
    /// `provider-sink`), as `serve --otlp-endpoint` does; the `OTEL_*`
    /// variables switch it on too. Adds `traces` to the figures.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Finished instances to purge for `--scenario retention`.
    #[arg(long, default_value_t = 100_000)]
    pub purge_instances: usize,
    /// Enquiries sent per second while measuring `--scenario retention`.
    #[arg(long, default_value_t = 1_000)]
    pub rate: usize,
    /// Seconds of each measured phase of `--scenario retention` (the purge
    /// phase lasts until the purge is done).
    #[arg(long, default_value_t = 20)]
    pub phase_s: u64,
    /// Retention of the journey in the growth phase of `--scenario
    /// retention`, seconds.
    #[arg(long, default_value_t = 20)]
    pub retention_s: u64,
    /// Seconds of the growth phase of `--scenario retention`.
    #[arg(long, default_value_t = 90)]
    pub growth_s: u64,
    /// Enquiries in the store for `--scenario console`.
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// Requests per page for `--scenario console`.
    #[arg(long, default_value_t = 20)]
    pub page_rounds: usize,
    /// With `--store`: run the enquiry journeys on this many nodes sharing
    /// the database, each a `journeyd bench` process of its own (this one
    /// and the N-1 it starts) sending `--journeys` of its own once every
    /// node holds its share of the shards. Adds the figures of every node,
    /// their total, and CPU per journey of the nodes and of the database.
    #[arg(long, default_value_t = 1, requires = "store")]
    pub nodes: usize,
    /// Set by node 1 on the nodes it starts for `--nodes`: this process is
    /// node K, and finds the journey node 1 deployed.
    #[arg(long, hide = true, requires = "store")]
    pub node_index: Option<usize>,
}

/// What `journeyd bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Enquiry journeys through the executor.
    Enquiry,
    /// Restarting on a store with many plugin versions.
    Restart,
    /// `--timers` instances sleeping on durable timers: restart, idle
    /// memory, and lateness as they fall due at `--timer-rate`.
    Timers,
    /// `--waits` instances waiting for an event, resumed by events sent at
    /// `--event-rate`: event accepted to next step committed.
    Resume,
    /// Enquiry journeys with every message delivered to a local provider
    /// that fails `--provider-fail-percent` (10) of requests.
    Delivery,
    /// Purging `--purge-instances` finished instances beside enquiries at
    /// `--rate`: their p99 against the same load without a purge; then the
    /// store's size under retention of `--retention-s`.
    Retention,
    /// The console's pages with `--instances` enquiries in the store:
    /// p50, p95 and the slowest of `--page-rounds` requests per page.
    Console,
    /// The trivial step in Rust, Python and JavaScript: per-step overhead,
    /// component size, compile and cached-load times, memory of ten loaded
    /// interpreter plugins.
    Languages,
}

/// The step whose plugin `--swap-every` swaps.
const SWAPPED_PLUGIN: &str = "classify";

const ENQUIRY_PLUGINS: [&str; 4] = ["acknowledge", "classify", "handover", "resolve"];

/// Mean recorded duration of each step over the given instances, in
/// journey order.
fn step_durations(
    store: &dyn Store,
    instances: &[InstanceId],
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut totals: Vec<(String, u64, u64)> = Vec::new();
    for &instance in instances {
        for entry in store.history(instance)? {
            if let journey_runtime::store::HistoryEntry::StepRan(step) = entry {
                match totals.iter_mut().find(|(name, ..)| *name == step.step) {
                    Some((_, sum, count)) => {
                        *sum += step.duration_us;
                        *count += 1;
                    }
                    None => totals.push((step.step.clone(), step.duration_us, 1)),
                }
            }
        }
    }
    Ok(totals
        .into_iter()
        .map(|(name, sum, count)| (name, sum as f64 / count.max(1) as f64))
        .collect())
}

/// Median of instantiate + call of the trivial plugin, in µs.
fn step_overhead_us(runtime: &Runtime, noop: &[u8], rounds: usize) -> anyhow::Result<f64> {
    let host = runtime.host();
    let plugin = host.load("bench-noop", noop)?;
    let customers: Arc<dyn journey_runtime::store::Customers> = runtime.store().clone();
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds + rounds / 10 {
        let took = support::run_trivial_step(host, &plugin, &customers, round)?;
        // The first tenth warms the pool and caches up.
        if round >= rounds / 10 {
            samples.push(took.as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(percentile(&samples, 50.0))
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Restart => return restart::restart(&args).await,
        Scenario::Timers => return waiting::timers(&args).await,
        Scenario::Resume => return waiting::resume(&args).await,
        Scenario::Languages => return languages::languages(&args),
        Scenario::Retention => return retention::retention(&args).await,
        Scenario::Console => return console::console(&args).await,
        Scenario::Enquiry | Scenario::Delivery => {}
    }
    nodes::check(&args)?;
    // Nodes 2..N of `--nodes` use the catalog node 1 set up.
    let joining = args.node_index.is_some();
    let deliver = args.deliver || args.scenario == Scenario::Delivery;
    let provider_fail_percent =
        args.provider_fail_percent
            .unwrap_or(if args.scenario == Scenario::Delivery {
                10
            } else {
                0
            });
    let exporting = journey_runtime::telemetry::start(
        &journey_runtime::telemetry::ExportSettings {
            otlp_endpoint: args.otlp_endpoint.clone(),
        },
        tokio::runtime::Handle::current(),
    )
    .context("setting up trace export")?;
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    let journey_source = std::fs::read_to_string(&args.journey)
        .with_context(|| format!("reading {}", args.journey.display()))?;
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path());
    // On PostgreSQL the store's costs are read from the server.
    let postgres = match args.store.as_deref() {
        Some(url) => Some(Arc::new(
            PostgresStore::open(url, &nodes::options(&args))
                .with_context(|| format!("opening {}", crate::cli::store::redacted(url)))?,
        )),
        None => None,
    };
    let store: Arc<dyn Store> = match &postgres {
        Some(postgres) => postgres.clone(),
        None => crate::cli::store::open_store(
            None,
            data,
            &SledOptions::default(),
            &PostgresOptions::default(),
        )?,
    };
    let mut settings = Settings::default();
    if let Some(parallel_steps) = args.parallel_steps {
        settings.parallel_steps = parallel_steps;
    }
    let runtime = Runtime::new(store.clone(), Arc::new(SystemClock), settings.clone())?;

    let (swap_digests, version, journey) = if joining {
        // As `serve` starts: every plugin compiled before the first step.
        runtime.load_plugins().await?;
        let (version, journey) = catalog::deployed_journey(&runtime)?;
        (Vec::new(), version, journey)
    } else {
        catalog::set_up(&runtime, &args, &dir, journey_source).await?
    };
    let steps_per_journey = journey.steps().count();

    let provider = if deliver {
        Some(delivery::switch_on(&runtime, &dir, temporary.path(), provider_fail_percent).await?)
    } else {
        None
    };
    let overhead = if joining {
        0.0
    } else {
        let noop = read_component(&dir, "fixture_noop.wasm")?;
        step_overhead_us(&runtime, &noop, args.overhead_rounds)?
    };
    println!(
        "bench: {} journeys of `{}` v{version} ({} steps each), {} in flight, {} sandbox slots",
        args.journeys,
        journey.name(),
        steps_per_journey,
        args.concurrency,
        settings.parallel_steps
    );
    if !joining {
        println!(
            "  step overhead (fresh store + instantiate + call, trivial plugin): median {overhead:.1} µs"
        );
    }
    // Several nodes start together once each holds its share of shards.
    let mut others = None;
    if let (Some(postgres), Some(url)) = (&postgres, &args.store) {
        runtime.start_cluster();
        if args.nodes > 1 {
            if !joining {
                others = Some(nodes::Others::start(&args, url)?);
            }
            let (postgres, nodes) = (postgres.clone(), args.nodes);
            tokio::task::spawn_blocking(move || nodes::wait_for_shares(&postgres, nodes)).await??;
        }
    }
    let machine_cpu_before = support::machine_cpu_seconds();
    let prefix: Arc<str> = match args.node_index {
        Some(index) => format!("bench-{index}").into(),
        None => "bench".into(),
    };

    let finishes = load::Finishes::start(&runtime);

    let counters = |runtime: &Runtime| {
        let commits = runtime.committer().stats();
        let steps = runtime.step_stats();
        [
            commits.batches.load(Ordering::Relaxed),
            commits.writes.load(Ordering::Relaxed),
            commits.commit_nanos.load(Ordering::Relaxed),
            steps.steps.load(Ordering::Relaxed),
            steps.sandbox_nanos.load(Ordering::Relaxed),
        ]
    };
    let before = counters(&runtime);
    let cpu_before = process_cpu_seconds();
    let in_flight = Arc::new(Semaphore::new(args.concurrency.max(1)));
    // The store before the first event: plugins, the journey, customers.
    let store_before = dir_size(data);
    let postgres_before = postgres.as_ref().map(|store| store.usage()).transpose()?;
    let started = Instant::now();
    // The swapper starts with the second half of the journeys.
    let swap_from = args.swap_every.map(|_| args.journeys / 2);
    let mut swapper: Option<tokio::task::JoinHandle<anyhow::Result<(u32, f64)>>> = None;
    let (stop_swapping, swapping_stopped) = tokio::sync::watch::channel(false);
    let mut swap_started: Option<Instant> = None;
    let mut tasks = tokio::task::JoinSet::new();
    let progress_every = (args.journeys / 10).max(1);
    for n in 0..args.journeys {
        if let (Some(every), Some(from)) = (args.swap_every, swap_from)
            && n == from
        {
            swap_started = Some(Instant::now());
            swapper = Some(tokio::spawn(swap_tags(
                runtime.clone(),
                swap_digests.clone(),
                std::time::Duration::from_millis(every.max(1)),
                swapping_stopped.clone(),
            )));
        }
        let permit = in_flight.clone().acquire_owned().await?;
        let runtime = runtime.clone();
        let finishes = finishes.clone();
        let prefix = prefix.clone();
        tasks.spawn(async move {
            let _permit = permit;
            load::run_enquiry(&runtime, &finishes, &prefix, n).await
        });
        if !joining && (n + 1) % progress_every == 0 {
            eprintln!(
                "  … {} / {} sent ({:.1} s)",
                n + 1,
                args.journeys,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut latencies = Vec::with_capacity(args.journeys);
    // In completion order: the last ones sample the steady state.
    let mut finished_ids = Vec::with_capacity(args.journeys);
    let mut failed = 0usize;
    let (mut steady, mut swapping) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        let (id, accepted, latency, status) = result??;
        finished_ids.push(id);
        if status != InstanceStatus::Completed {
            failed += 1;
        }
        let latency_ms = latency.as_secs_f64() * 1000.0;
        latencies.push(latency_ms);
        match swap_started {
            Some(swap_started) if accepted >= swap_started => swapping.push(latency_ms),
            _ => steady.push(latency_ms),
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_swapping.send(true);
    let swaps = match swapper {
        Some(swapper) => Some(swapper.await??),
        None => None,
    };
    let cpu = process_cpu_seconds() - cpu_before;
    let after = counters(&runtime);
    let [groups, writes, commit_nanos, steps_run, sandbox_nanos]: [u64; 5] =
        std::array::from_fn(|index| after[index] - before[index]);

    latencies.sort_by(f64::total_cmp);
    let journeys_per_s = args.journeys as f64 / elapsed.as_secs_f64();
    let steps = args.journeys * steps_per_journey;
    let steps_per_s = steps as f64 / elapsed.as_secs_f64();
    let steps_per_group = writes as f64 / groups.max(1) as f64;
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    let rss = peak_rss_mib();
    let outbox = store.outbox(None, usize::MAX)?.len();

    println!(
        "  elapsed {:.2} s: {journeys_per_s:.0} journeys/s, {steps_per_s:.0} durable steps/s",
        elapsed.as_secs_f64()
    );
    println!(
        "  event accepted → journey complete: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "  group commit: {writes} commits in {groups} groups ({steps_per_group:.1} per group)"
    );
    let elapsed_ns = elapsed.as_nanos() as f64;
    println!(
        "  where the time goes: sandbox {:.0} µs/step; commit {:.2} ms/group (committers {:.0}% busy); process CPU {:.2} of {} cores",
        sandbox_nanos as f64 / steps_run.max(1) as f64 / 1e3,
        commit_nanos as f64 / groups.max(1) as f64 / 1e6,
        commit_nanos as f64 / elapsed_ns * 100.0,
        cpu / elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |cores| cores.get()),
    );
    let sampled = &finished_ids[finished_ids.len().saturating_sub(200)..];
    let per_step = step_durations(&*store, sampled)?;
    println!(
        "  sandbox time by step (mean of the last {} journeys to finish): {}",
        sampled.len(),
        per_step
            .iter()
            .map(|(step, us)| format!("{step} {us:.0} µs"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  outbox: {outbox} messages; failed journeys: {failed}; peak RSS {rss:.0} MiB");
    let mut postgres_figures = None;
    let (store_bytes, bytes_per_journey) = match (&postgres, postgres_before) {
        (Some(postgres), Some(before)) => {
            let after = postgres.usage()?;
            let per_step = |total: u64| total as f64 / writes.max(1) as f64;
            let statements = per_step(after.statements - before.statements);
            let wal = per_step(after.wal_bytes.saturating_sub(before.wal_bytes));
            if args.nodes > 1 {
                // The database's WAL and size are every node's.
                println!(
                    "  PostgreSQL: {statements:.1} statements per step commit ({:.1} per group)",
                    statements * steps_per_group,
                );
            } else {
                println!(
                    "  PostgreSQL: {statements:.1} statements per step commit ({:.1} per group), {wal:.0} WAL bytes per step commit, database {:.0} MiB",
                    statements * steps_per_group,
                    after.database_bytes as f64 / (1024.0 * 1024.0)
                );
            }
            postgres_figures = Some(json!({
                "statements_per_step": (statements * 10.0).round() / 10.0,
                "wal_bytes_per_step": wal.round(),
                "statements": after.statements - before.statements,
            }));
            let grown = after.database_bytes.saturating_sub(before.database_bytes);
            (after.database_bytes, grown / args.journeys.max(1) as u64)
        }
        _ => {
            let store_bytes = dir_size(data);
            let grown = store_bytes.saturating_sub(store_before);
            (store_bytes, grown / args.journeys.max(1) as u64)
        }
    };
    if args.nodes == 1 {
        println!(
            "  store on disk: {:.0} MiB, {bytes_per_journey} bytes per finished journey",
            store_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let retries = match args.fail_first_percent {
        Some(percent) => {
            let mut retries = 0;
            for id in &finished_ids {
                retries += store
                    .history(*id)?
                    .iter()
                    .filter(|entry| {
                        matches!(entry, journey_runtime::store::HistoryEntry::StepFailed(_))
                    })
                    .count();
            }
            println!(
                "  failing plugin: `screen` failed the first attempt of {percent}% of instances: {retries} retries ({:.1}% of journeys), {} of {} journeys completed",
                retries as f64 * 100.0 / args.journeys.max(1) as f64,
                args.journeys - failed,
                args.journeys
            );
            Some(retries)
        }
        None => None,
    };
    if failed > 0 {
        bail!("{failed} journeys failed; see the log");
    }
    let delivered = match provider {
        Some(provider) => {
            let store = store.clone();
            let delivered = tokio::task::spawn_blocking(move || {
                delivery::measure(&*store, std::time::Duration::from_secs(300))
            })
            .await??;
            println!(
                "  delivery: {} messages accepted by the provider ({provider_fail_percent}% of requests failing transiently, {} retries): {:.0} messages/s; step commit → provider acceptance p50 {:.0} ms, p99 {:.0} ms",
                delivered.messages,
                delivered.retries,
                delivered.per_second,
                delivered.p50_ms,
                delivered.p99_ms,
            );
            drop(provider);
            Some(delivered)
        }
        None => None,
    };
    let mut figures = json!({
            "journeys": args.journeys,
            "concurrency": args.concurrency,
            "journeys_per_s": (journeys_per_s * 10.0).round() / 10.0,
            "steps_per_s": steps_per_s.round(),
            "p50_ms": (p50 * 100.0).round() / 100.0,
            "p99_ms": (p99 * 100.0).round() / 100.0,
            "step_overhead_us": (overhead * 10.0).round() / 10.0,
            "commits_per_group": (steps_per_group * 10.0).round() / 10.0,
            "peak_rss_mib": rss.round(),
            "store_bytes_per_journey": bytes_per_journey,
            "traces": exporting.is_some(),
            "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "cpu_ms_per_journey": (cpu * 1e6 / args.journeys.max(1) as f64).round() / 1000.0,
            "step_commits": writes,
    });
    if let Some(postgres) = postgres_figures {
        figures["store"] = json!("postgres");
        figures["node"] = json!(format!("bench-{}", nodes::index(&args)));
        figures["statements"] = postgres["statements"].clone();
        figures["postgres"] = postgres;
    }
    // Node 1 on PostgreSQL: every node's figures together, and the
    // database's CPU.
    if let (Some(postgres), Some(before), false) = (&postgres, postgres_before, joining) {
        let mut all = vec![figures.clone()];
        if let Some(others) = others.take() {
            all.extend(tokio::task::spawn_blocking(move || others.figures()).await??);
        }
        let after = postgres.usage()?;
        let together = nodes::Together {
            nodes: all,
            machine_cpu_s: support::machine_cpu_seconds() - machine_cpu_before,
            wal_bytes: after.wal_bytes.saturating_sub(before.wal_bytes),
            database_bytes: after.database_bytes.saturating_sub(before.database_bytes),
        };
        figures["cluster"] = together.report();
    }
    if let Some(delivered) = delivered {
        figures["scenario"] = json!("delivery");
        figures["provider_fail_percent"] = json!(provider_fail_percent);
        figures["messages_delivered"] = json!(delivered.messages);
        figures["messages_per_s"] = json!(delivered.per_second.round());
        figures["delivery_p50_ms"] = json!(delivered.p50_ms.round());
        figures["delivery_p99_ms"] = json!(delivered.p99_ms.round());
        figures["delivery_retries"] = json!(delivered.retries);
    }
    if let Some(retries) = retries {
        figures["fail_first_percent"] = json!(args.fail_first_percent);
        figures["retries"] = json!(retries);
        figures["completed_share"] =
            json!((args.journeys - failed) as f64 / args.journeys.max(1) as f64);
    }
    if let Some((swaps, swap_visible_ms)) = swaps {
        steady.sort_by(f64::total_cmp);
        swapping.sort_by(f64::total_cmp);
        let (p99_steady, p99_swapping) = (percentile(&steady, 99.0), percentile(&swapping, 99.0));
        println!(
            "  hot swap: {swaps} retags of {SWAPPED_PLUGIN}:stable; p99 steady {p99_steady:.2} ms ({} journeys), while swapping {p99_swapping:.2} ms ({} journeys, {:.2}x); tag change to first step on the new digest: at most {swap_visible_ms:.2} ms",
            steady.len(),
            swapping.len(),
            p99_swapping / p99_steady.max(f64::MIN_POSITIVE),
        );
        figures["p99_ms_steady"] = json!((p99_steady * 100.0).round() / 100.0);
        figures["p99_ms_swapping"] = json!((p99_swapping * 100.0).round() / 100.0);
        figures["swaps"] = json!(swaps);
        figures["swap_visible_ms"] = json!((swap_visible_ms * 100.0).round() / 100.0);
    }
    if let Some(exporting) = exporting {
        let flushing = Instant::now();
        tokio::task::spawn_blocking(move || exporting.shutdown()).await?;
        println!(
            "  traces: exported over OTLP; the last spans flushed in {} ms",
            flushing.elapsed().as_millis()
        );
    }
    println!("{figures}");
    Ok(())
}

/// Move `classify:stable` between the two versions every `every` until
/// told to stop; returns the retags done and the longest time from a retag
/// to the first step start on its digest, in ms.
async fn swap_tags(
    runtime: Arc<Runtime>,
    digests: Vec<String>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(u32, f64)> {
    let mut swaps = 0u32;
    let mut visible_ms: f64 = 0.0;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let version = if swaps.is_multiple_of(2) { 2 } else { 1 };
        let digest = &digests[version as usize - 1];
        let first_start = runtime.first_start_on(digest);
        let changed = Instant::now();
        let tagger = runtime.clone();
        tokio::task::spawn_blocking(move || {
            tagger.set_tag(SWAPPED_PLUGIN, "stable", version, None, "bench swap")
        })
        .await??;
        swaps += 1;
        tokio::select! {
            started = first_start => {
                if let Ok(started) = started {
                    visible_ms = visible_ms.max(started.duration_since(changed).as_secs_f64() * 1000.0);
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok((swaps, visible_ms))
}
