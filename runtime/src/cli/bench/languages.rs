//! Plugins in Python and JavaScript next to Rust: the per-step overhead of
//! each language's smallest step (a fresh instance per step, as every step
//! gets), the component's size, the time to compile it and to load it
//! again from the compiled-code cache (what a restart does), and the
//! memory ten loaded interpreter plugins take.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::BenchArgs;
use super::support::{default_plugin_dir, percentile, read_component, round2, run_trivial_step};
use journey_runtime::host::{Host, Limits};
use journey_runtime::store::Customers;
use journey_runtime::store::sled::{SledOptions, SledStore};

/// The languages measured: a name and the trivial step's component.
const LANGUAGES: [(&str, &str); 4] = [
    ("rust", "fixture_noop.wasm"),
    ("python", "fixture_py_noop.wasm"),
    ("javascript", "fixture_js_noop.wasm"),
    ("quickjs", "fixture_qjs_noop.wasm"),
];

/// Interpreter plugins loaded at once for the memory figure.
const LOADED: usize = 10;

/// This process's resident memory, MiB.
fn rss_mib() -> f64 {
    super::support::rss_mib(std::process::id()).unwrap_or(0.0)
}

fn milliseconds(duration: Duration) -> f64 {
    round2(duration.as_secs_f64() * 1000.0)
}

pub fn languages(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    let scratch = tempfile::tempdir()?;
    let cache = scratch.path().join("compiled");
    let store = SledStore::open(&scratch.path().join("store"), &SledOptions::default())?;
    let customers: Arc<dyn Customers> = Arc::new(store);
    let rounds = args.overhead_rounds.max(10);
    println!(
        "bench: the trivial step in each language, {rounds} runs each (a fresh instance per run)"
    );
    let mut rows = Vec::new();
    for (language, file) in LANGUAGES {
        let bytes = read_component(&dir, file)?;
        let digest = format!("bench-{language}");
        // Compiled here, then loaded by a second engine from the cache,
        // as after a restart.
        let compiled = {
            let host = Host::new(Limits::default(), Some(&cache))
                .map_err(|error| anyhow::anyhow!("{error:#}"))?;
            let started = Instant::now();
            host.load(&digest, &bytes)
                .with_context(|| format!("loading {file}"))?;
            started.elapsed()
        };
        let host = Host::new(Limits::default(), Some(&cache))
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let started = Instant::now();
        let plugin = host.load(&digest, &bytes)?;
        let from_cache = started.elapsed();
        let counts = host.cache_counts().context("the host has a cache")?;
        let recompiled = counts.misses;
        let mut samples = Vec::with_capacity(rounds);
        for round in 0..rounds + rounds / 10 {
            let took = run_trivial_step(&host, &plugin, &customers, round)?;
            // The first tenth warms the pool up.
            if round >= rounds / 10 {
                samples.push(took.as_secs_f64() * 1e6);
            }
        }
        samples.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
        println!(
            "  {language:<10} {:>6.2} MiB component; compiled in {:>7.1} ms, loaded from the cache in {:>6.1} ms ({recompiled} recompiled); step overhead p50 {:>7.1} µs, p99 {:>7.1} µs",
            bytes.len() as f64 / (1024.0 * 1024.0),
            milliseconds(compiled),
            milliseconds(from_cache),
            p50,
            p99
        );
        rows.push((
            language,
            bytes.len(),
            compiled,
            from_cache,
            recompiled,
            p50,
            p99,
        ));
    }

    // Memory: ten interpreter plugins loaded (from the cache) and run once
    // each, then idle.
    let mut memory = Vec::new();
    for (language, file) in &LANGUAGES[1..3] {
        let bytes = read_component(&dir, file)?;
        let host = Host::new(Limits::default(), Some(&cache))
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let before = rss_mib();
        let mut plugins = Vec::new();
        for copy in 0..LOADED {
            let plugin = host.load(&format!("bench-{language}-{copy}"), &bytes)?;
            run_trivial_step(&host, &plugin, &customers, copy)?;
            plugins.push(plugin);
        }
        let after = rss_mib();
        println!(
            "  {LOADED} {language} plugins loaded and run once: resident memory {before:.0} → {after:.0} MiB (+{:.0} MiB)",
            after - before
        );
        memory.push((language, round2(after - before)));
        drop(plugins);
    }

    let mut summary = serde_json::Map::new();
    summary.insert("scenario".into(), json!("languages"));
    summary.insert("rounds".into(), json!(rounds));
    for (language, size, compiled, from_cache, recompiled, p50, p99) in rows {
        summary.insert(
            language.into(),
            json!({
                "component_bytes": size,
                "compile_ms": milliseconds(compiled),
                "cached_load_ms": milliseconds(from_cache),
                "recompiled_on_reload": recompiled,
                "step_overhead_p50_us": round2(p50),
                "step_overhead_p99_us": round2(p99),
            }),
        );
    }
    for (language, added) in memory {
        summary.insert(format!("rss_mib_{LOADED}_{language}_plugins"), json!(added));
    }
    println!("{}", serde_json::Value::Object(summary));
    Ok(())
}
