//! `--scenario retention`: what purging costs the journeys running beside
//! it, and whether the store stops growing once retention is on.
//!
//! 1. Fill: `--purge-instances` enquiries (100,000) run to completion.
//! 2. Steady: enquiries at `--rate` per second for `--phase-s` seconds;
//!    their event-to-finish p99 is the reference.
//! 3. Purge: the filled instances are purged by hand (paced as the
//!    background purge is) while enquiries go on at the same rate; their
//!    p99 against the reference is the figure.
//! 4. Growth: the journey is deployed again with `retention` of
//!    `--retention-s` seconds and the background purge switched on;
//!    enquiries at the same rate for `--growth-s` seconds, the store's size
//!    read every 5 s. With retention on it levels off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::sync::Semaphore;

use super::BenchArgs;
use super::load::{Finishes, run_enquiry, seed_customers};
use super::support::{default_plugin_dir, dir_size, percentile, read_component, round2};
use journey_runtime::clock::{Clock as _, SystemClock};
use journey_runtime::executor::{Runtime, Settings};
use journey_runtime::journey::Retention;
use journey_runtime::store::InstanceStatus;
use journey_runtime::store::sled::{SledOptions, SledStore};
use journey_runtime::tooling::skip_steps;

const PLUGINS: [&str; 4] = ["acknowledge", "classify", "handover", "resolve"];

/// Latencies (ms, sorted) of enquiries sent at `rate` per second for at
/// least `at_least`, and until `until` says stop.
async fn at_rate(
    runtime: &Arc<Runtime>,
    finishes: &Arc<Finishes>,
    prefix: &str,
    rate: usize,
    at_least: Duration,
    until: impl Fn() -> bool,
) -> anyhow::Result<Vec<f64>> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0;
    while started.elapsed() < at_least || !until() {
        ticker.tick().await;
        let (runtime, finishes, prefix) = (runtime.clone(), finishes.clone(), prefix.to_owned());
        tasks.spawn(async move { run_enquiry(&runtime, &finishes, &prefix, n).await });
        n += 1;
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(result) = tasks.join_next().await {
        let (id, _, latency, status) = result??;
        if status != InstanceStatus::Completed {
            bail!("instance {id} ended {status:?}; see the log");
        }
        latencies.push(latency.as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn mib(bytes: u64) -> f64 {
    round2(bytes as f64 / (1024.0 * 1024.0))
}

/// `--scenario retention`.
pub async fn retention(args: &BenchArgs) -> anyhow::Result<()> {
    let fill = args.purge_instances.max(1);
    let rate = args.rate.max(1);
    let phase = Duration::from_secs(args.phase_s.max(1));
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path()).to_owned();
    let store = Arc::new(SledStore::open(&data, &SledOptions::default())?);
    // The server's retention sweeps interactions and engagement once the
    // background purge runs (step 4).
    let settings = Settings {
        retention: Retention::For(args.retention_s * 1000),
        ..Settings::default()
    };
    let runtime = Runtime::new(store, Arc::new(SystemClock), settings)?;
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    for name in PLUGINS {
        runtime
            .push_plugin(name, read_component(&dir, &format!("plugin_{name}.wasm"))?)
            .await?;
    }
    let source = std::fs::read_to_string(&args.journey)
        .with_context(|| format!("reading {}", args.journey.display()))?;
    let source = skip_steps(&source, &["sla", "escalate"], "resolved")
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", args.journey.display()))?;
    let file = args.journey.display().to_string();
    runtime.deploy_journey(&file, &source)?;
    seed_customers(&runtime)?;
    let finishes = Finishes::start(&runtime);
    println!(
        "bench: retention — {fill} finished enquiries purged while enquiries run at {rate}/s; then the store under retention of {} s",
        args.retention_s
    );

    // 1. Fill.
    let filling = Instant::now();
    let in_flight = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..fill {
        let permit = in_flight.clone().acquire_owned().await?;
        let (runtime, finishes) = (runtime.clone(), finishes.clone());
        tasks.spawn(async move {
            let _permit = permit;
            run_enquiry(&runtime, &finishes, "fill", n).await
        });
        if (n + 1) % (fill / 5).max(1) == 0 {
            eprintln!(
                "  … {} / {fill} filled ({:.0} s)",
                n + 1,
                filling.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let filled_before = SystemClock.now_ms() + 1;
    let filled_bytes = dir_size(&data);
    println!(
        "  fill: {fill} enquiries finished in {:.1} s; store {:.0} MiB",
        filling.elapsed().as_secs_f64(),
        mib(filled_bytes)
    );

    // 2. Steady.
    let steady = at_rate(&runtime, &finishes, "steady", rate, phase, || true).await?;
    let p99_steady = percentile(&steady, 99.0);
    println!(
        "  steady: {} enquiries at {rate}/s: p50 {:.2} ms, p99 {p99_steady:.2} ms",
        steady.len(),
        percentile(&steady, 50.0)
    );

    // 3. Purge beside the same load.
    let purging = Instant::now();
    let purger = {
        let runtime = runtime.clone();
        let journey = "enquiry".to_owned();
        tokio::spawn(async move {
            runtime
                .purge_instances(&journey, filled_before, usize::MAX, false)
                .await
        })
    };
    let during = at_rate(&runtime, &finishes, "during", rate, phase, || {
        purger.is_finished()
    })
    .await?;
    let purged = purger.await??.purged;
    let purge_s = purging.elapsed().as_secs_f64();
    let p99_during = percentile(&during, 99.0);
    let ratio = p99_during / p99_steady.max(f64::MIN_POSITIVE);
    let purged_bytes = dir_size(&data);
    println!(
        "  purge: {purged} instances in {purge_s:.1} s ({:.0}/s) beside {} enquiries at {rate}/s: p50 {:.2} ms, p99 {p99_during:.2} ms ({ratio:.2}x steady); store {:.0} MiB",
        purged as f64 / purge_s,
        during.len(),
        percentile(&during, 50.0),
        mib(purged_bytes)
    );
    if purged < fill as u64 {
        bail!("purged {purged} of {fill} finished instances");
    }

    // 4. Growth under retention.
    let with_retention = format!("retention = \"{}s\"\n{source}", args.retention_s);
    runtime.deploy_journey(&file, &with_retention)?;
    runtime.start_retention();
    let growth = Duration::from_secs(args.growth_s.max(5));
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (sizes, data, store) = (sizes.clone(), data.clone(), runtime.store().clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                let size = mib(dir_size(&data));
                // Finished instances still kept: what the purge is behind by.
                let kept = store
                    .finished_before("enquiry", u64::MAX, usize::MAX)
                    .map_or(0, |finished| finished.len());
                sizes
                    .lock()
                    .expect("the sizes lock is never poisoned")
                    .push((kept, size));
            }
        })
    };
    let growing = at_rate(&runtime, &finishes, "growth", rate, growth, || true).await?;
    sampler.abort();
    let sizes = sizes
        .lock()
        .expect("the sizes lock is never poisoned")
        .clone();
    let last_half: Vec<f64> = sizes[sizes.len() / 2..]
        .iter()
        .map(|(_, size)| *size)
        .collect();
    let (low, high) = last_half
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), size| {
            (low.min(*size), high.max(*size))
        });
    println!(
        "  growth: {} enquiries at {rate}/s over {} s with retention {} s (p99 {:.2} ms); store size every 5 s, MiB (finished instances kept): {}",
        growing.len(),
        growth.as_secs(),
        args.retention_s,
        percentile(&growing, 99.0),
        sizes
            .iter()
            .map(|(kept, size)| format!("{size:.0} ({kept} kept)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  second half of the run: between {low:.0} and {high:.0} MiB ({} enquiries were sent in it)",
        growing.len() / 2
    );
    println!(
        "{}",
        json!({
            "scenario": "retention",
            "purge_instances": fill,
            "rate": rate,
            "p99_ms_steady": round2(p99_steady),
            "p99_ms_during_purge": round2(p99_during),
            "p99_ratio": round2(ratio),
            "purge_s": round2(purge_s),
            "purged_per_s": (purged as f64 / purge_s).round(),
            "store_mib_filled": mib(filled_bytes),
            "store_mib_after_purge": mib(purged_bytes),
            "retention_s": args.retention_s,
            "growth_store_mib": sizes.iter().map(|(_, size)| *size).collect::<Vec<_>>(),
            "growth_finished_kept": sizes.iter().map(|(kept, _)| *kept).collect::<Vec<_>>(),
            "growth_second_half_mib": [round2(low), round2(high)],
        })
    );
    Ok(())
}
