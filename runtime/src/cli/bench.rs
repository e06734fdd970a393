//! `journeyd bench`: the enquiry journey under load, in-process.
//!
//! Builds a [`Runtime`] on a temporary sled store exactly as `serve` does,
//! pushes the first-party plugins, deploys the shipped enquiry journey and
//! sends N enquiry events through [`Runtime::ingest`] with C in flight.
//! Every step is committed durably (group commit, flushed) before it
//! counts. Prints a readable summary, then one JSON line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

use crate::clock::SystemClock;
use crate::executor::{IncomingEvent, Runtime, Settings};
use crate::host::{self, StepRequest};
use crate::store::sled::{SledOptions, SledStore};
use crate::store::{InstanceId, InstanceStatus, Store};

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
    /// Keep the store in this (new or empty) directory instead of a
    /// temporary one, e.g. to start `journeyd serve` on it afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Instantiate + call rounds for the step-overhead figure.
    #[arg(long, default_value_t = 5_000)]
    pub overhead_rounds: usize,
}

const ENQUIRY_PLUGINS: [&str; 4] = ["acknowledge", "classify", "handover", "resolve"];

const SAMPLE_ENQUIRIES: [&str; 6] = [
    "I was charged twice for my order, please refund the duplicate payment",
    "My package has not arrived and the tracking has not moved in a week",
    "How do I reset my password? The reset email never comes",
    "This is unacceptable, the product broke after one day and I want my money back now",
    "Can I change the delivery address for my order before it ships?",
    "The app crashes every time I open my invoices, please fix this",
];

/// Where `cargo build --profile plugin --target wasm32-wasip2` puts components.
fn default_plugin_dir() -> PathBuf {
    let local = PathBuf::from("target/wasm32-wasip2/plugin");
    if local.is_dir() {
        return local;
    }
    // Beside the binary: target/release/journeyd → target/wasm32-wasip2/plugin.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("wasm32-wasip2/plugin")))
        .unwrap_or(local)
}

fn read_component(dir: &Path, file: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(file);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (build the plugins first: cargo build --profile plugin --target wasm32-wasip2 --workspace)",
            path.display()
        )
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        })
        .unwrap_or(0.0)
}

/// Mean recorded duration of each step over the given instances, in
/// journey order.
fn step_durations(
    store: &dyn Store,
    instances: &[InstanceId],
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut totals: Vec<(String, u64, u64)> = Vec::new();
    for &instance in instances {
        for entry in store.history(instance)? {
            if let crate::store::HistoryEntry::StepRan(step) = entry {
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

/// User + system CPU time of this process so far, seconds.
fn process_cpu_seconds() -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime
            // are the 12th and 13th of them.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks_per_second)
        })
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Median of instantiate + call of the trivial plugin, in µs.
fn step_overhead_us(runtime: &Runtime, noop: &[u8], rounds: usize) -> anyhow::Result<f64> {
    let host = runtime.host();
    let plugin = host.load("bench-noop", noop)?;
    let input = |round: usize| host::StepInput {
        journey: "bench".into(),
        journey_version: 1,
        instance_id: format!("i-{round}"),
        step: "noop".into(),
        event: host::Event {
            id: "evt".into(),
            kind: "bench".into(),
            customer_id: "c".into(),
            data: "{}".into(),
            received_at_ms: 0,
        },
        state: "{}".into(),
        config: "{}".into(),
        attempt: 1,
        idempotency_key: format!("i-{round}/1"),
    };
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds + rounds / 10 {
        let request = StepRequest {
            input: input(round),
            customer: host::CustomerSource {
                store: runtime.store().clone(),
                customer_id: "c".into(),
            },
            now_ms: 0,
            deadline: None,
        };
        let run = host.run_step(&plugin, request);
        if let Err(failure) = run.result {
            bail!("the noop plugin failed: {failure}");
        }
        // The first tenth warms the pool and caches up.
        if round >= rounds / 10 {
            samples.push(run.duration.as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(percentile(&samples, 50.0))
}

/// Matches finished instances to the tasks waiting for them, whichever
/// comes first.
#[derive(Default)]
struct Waiters {
    waiting: HashMap<InstanceId, oneshot::Sender<(Instant, InstanceStatus)>>,
    early: HashMap<InstanceId, (Instant, InstanceStatus)>,
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    let journey_source = std::fs::read_to_string(&args.journey)
        .with_context(|| format!("reading {}", args.journey.display()))?;
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path());
    let store = Arc::new(SledStore::open(data, &SledOptions::default())?);
    let mut settings = Settings::default();
    if let Some(parallel_steps) = args.parallel_steps {
        settings.parallel_steps = parallel_steps;
    }
    let runtime = Runtime::new(store.clone(), Arc::new(SystemClock), settings.clone())?;

    for name in ENQUIRY_PLUGINS {
        let bytes = read_component(&dir, &format!("plugin_{name}.wasm"))?;
        runtime.push_plugin(name, bytes).await?;
    }
    let file = args.journey.display().to_string();
    let (version, journey) = runtime.deploy_journey(&file, &journey_source)?;
    let steps_per_journey = journey.steps().count();
    for customer in 0..1000 {
        runtime.put_customer(
            &format!("c-{customer}"),
            &json!({
                "name": format!("Customer {customer}"),
                "email": format!("c{customer}@example.com"),
                "sms": format!("+4470000{customer:05}"),
                "preferred_channel": if customer % 3 == 0 { "sms" } else { "email" },
                "tier": if customer % 10 == 0 { "gold" } else { "standard" },
            }),
        )?;
    }

    let noop = read_component(&dir, "fixture_noop.wasm")?;
    let overhead = step_overhead_us(&runtime, &noop, args.overhead_rounds)?;
    println!(
        "bench: {} journeys of `{}` v{version} ({} steps each), {} in flight, {} sandbox slots",
        args.journeys,
        journey.name(),
        steps_per_journey,
        args.concurrency,
        settings.parallel_steps
    );
    println!(
        "  step overhead (fresh store + instantiate + call, trivial plugin): median {overhead:.1} µs"
    );

    let waiters = Arc::new(Mutex::new(Waiters::default()));
    let mut finished = runtime.subscribe();
    let dispatcher_waiters = waiters.clone();
    let dispatcher = tokio::spawn(async move {
        while let Ok(done) = finished.recv().await {
            let at = Instant::now();
            let mut waiters = dispatcher_waiters.lock().expect("waiters lock");
            match waiters.waiting.remove(&done.id) {
                Some(waiter) => {
                    let _ = waiter.send((at, done.status));
                }
                None => {
                    waiters.early.insert(done.id, (at, done.status));
                }
            }
        }
    });

    let counters = |runtime: &Runtime| {
        let commits = runtime.committer().stats();
        let steps = runtime.step_stats();
        [
            commits.syncs.load(Ordering::Relaxed),
            commits.writes.load(Ordering::Relaxed),
            commits.apply_nanos.load(Ordering::Relaxed),
            commits.sync_nanos.load(Ordering::Relaxed),
            steps.steps.load(Ordering::Relaxed),
            steps.sandbox_nanos.load(Ordering::Relaxed),
        ]
    };
    let before = counters(&runtime);
    let cpu_before = process_cpu_seconds();
    let in_flight = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let progress_every = (args.journeys / 10).max(1);
    for n in 0..args.journeys {
        let permit = in_flight.clone().acquire_owned().await?;
        let runtime = runtime.clone();
        let waiters = waiters.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let event = IncomingEvent {
                id: format!("bench-{n}"),
                kind: "enquiry.received".into(),
                customer: format!("c-{}", n % 1000),
                data: serde_json::value::to_raw_value(&json!({
                    "enquiry_id": format!("q-{n}"),
                    "channel": if n % 3 == 0 { "sms" } else { "email" },
                    "text": SAMPLE_ENQUIRIES[n % SAMPLE_ENQUIRIES.len()],
                }))
                .expect("a JSON literal serializes"),
            };
            let accepted = Instant::now();
            let receipt = runtime.ingest(event).await?;
            let id = *receipt
                .instances
                .first()
                .context("the event started no instance")?;
            let (tx, rx) = oneshot::channel();
            {
                let mut waiters = waiters.lock().expect("waiters lock");
                match waiters.early.remove(&id) {
                    Some(done) => {
                        let _ = tx.send(done);
                    }
                    None => {
                        waiters.waiting.insert(id, tx);
                    }
                }
            }
            let (at, status) = rx.await.context("the runtime stopped")?;
            anyhow::Ok((id, at.duration_since(accepted), status))
        });
        if (n + 1) % progress_every == 0 {
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
    while let Some(result) = tasks.join_next().await {
        let (id, latency, status) = result??;
        finished_ids.push(id);
        if status != InstanceStatus::Completed {
            failed += 1;
        }
        latencies.push(latency.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed();
    dispatcher.abort();
    let cpu = process_cpu_seconds() - cpu_before;
    let after = counters(&runtime);
    let [
        syncs,
        writes,
        apply_nanos,
        sync_nanos,
        steps_run,
        sandbox_nanos,
    ]: [u64; 6] = std::array::from_fn(|index| after[index] - before[index]);

    latencies.sort_by(f64::total_cmp);
    let journeys_per_s = args.journeys as f64 / elapsed.as_secs_f64();
    let steps = args.journeys * steps_per_journey;
    let steps_per_s = steps as f64 / elapsed.as_secs_f64();
    let steps_per_flush = writes as f64 / syncs.max(1) as f64;
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
    println!("  group commit: {writes} writes in {syncs} flushes ({steps_per_flush:.1} per flush)");
    let elapsed_ns = elapsed.as_nanos() as f64;
    println!(
        "  where the time goes: sandbox {:.0} µs/step; apply {:.0} µs/write ({:.0}% busy); sync {:.2} ms/flush ({:.0}% busy); process CPU {:.2} of {} cores",
        sandbox_nanos as f64 / steps_run.max(1) as f64 / 1e3,
        apply_nanos as f64 / writes.max(1) as f64 / 1e3,
        apply_nanos as f64 / elapsed_ns * 100.0,
        sync_nanos as f64 / syncs.max(1) as f64 / 1e6,
        sync_nanos as f64 / elapsed_ns * 100.0,
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
    if failed > 0 {
        bail!("{failed} journeys failed; see the log");
    }
    println!(
        "{}",
        json!({
            "journeys": args.journeys,
            "concurrency": args.concurrency,
            "journeys_per_s": (journeys_per_s * 10.0).round() / 10.0,
            "steps_per_s": steps_per_s.round(),
            "p50_ms": (p50 * 100.0).round() / 100.0,
            "p99_ms": (p99 * 100.0).round() / 100.0,
            "step_overhead_us": (overhead * 10.0).round() / 10.0,
            "steps_per_flush": (steps_per_flush * 10.0).round() / 10.0,
            "peak_rss_mib": rss.round(),
        })
    );
    Ok(())
}
