//! `--scenario restart`: how fast `journeyd serve` is ready on a store
//! with many plugin versions, loaded from the compiled-code cache.

use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use super::support::{Metrics, default_plugin_dir, read_component, seed_plugin, start_serve};
use super::{BenchArgs, ENQUIRY_PLUGINS};
use journey_runtime::host;
use journey_runtime::store::sled::{SledOptions, SledStore};
use journey_runtime::tooling::with_custom_section;

/// `--scenario restart`: push `--plugin-versions` versions of the enquiry
/// plugins (the same code under different digests) into a store, compiling
/// each once into the store's compiled-code cache, then start `journeyd
/// serve` on that store and time it to its readiness line (every version
/// loaded).
pub async fn restart(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path()).to_owned();
    let versions = args.plugin_versions.max(1);
    println!(
        "bench: restart with {versions} plugin versions in the store ({})",
        data.display()
    );
    let seeding = Instant::now();
    {
        let store = SledStore::open(&data, &SledOptions::default())?;
        let host = host::Host::new(host::Limits::default(), Some(&data.join("compiled")))
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let mut sources = Vec::new();
        for name in ENQUIRY_PLUGINS {
            sources.push((name, read_component(&dir, &format!("plugin_{name}.wasm"))?));
        }
        for n in 0..versions {
            let (name, bytes) = &sources[n % sources.len()];
            let bytes =
                with_custom_section(bytes.clone(), "bench-version", n.to_string().as_bytes());
            seed_plugin(&store, &host, name, &bytes)?;
            if (n + 1) % 10 == 0 || n + 1 == versions {
                eprintln!(
                    "  … {} / {versions} versions pushed and compiled ({:.1} s)",
                    n + 1,
                    seeding.elapsed().as_secs_f64()
                );
            }
        }
    }

    let (mut child, url, ready) = start_serve(&data, &[]).await?;
    let ready_ms = ready.as_secs_f64() * 1000.0;
    let metrics = Metrics::new(&data, &url)?.read().await?;
    let _ = child.kill();
    let _ = child.wait();
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    };
    let (from_cache, compiled) = (
        gauge("journeyd_start_plugins_from_cache"),
        gauge("journeyd_start_plugins_compiled"),
    );
    let (Some(from_cache), Some(compiled)) = (from_cache, compiled) else {
        bail!("journeyd serve did not report how it loaded its plugins");
    };
    println!(
        "  restart: ready in {ready_ms:.0} ms with {versions} versions loaded ({from_cache} from the compiled-code cache, {compiled} compiled)"
    );
    println!(
        "{}",
        json!({
            "scenario": "restart",
            "plugin_versions": versions,
            "restart_ready_ms": ready_ms.round(),
            "plugins_from_cache": from_cache,
            "plugins_compiled": compiled,
        })
    );
    Ok(())
}
