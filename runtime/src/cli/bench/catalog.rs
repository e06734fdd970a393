//! The catalog a bench run sets up: the enquiry plugins pushed, the
//! journey deployed as the options want it (a swapped tag, a failing
//! first step), the customers seeded; and how the other nodes of
//! `--nodes` find what node 1 deployed.

use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::support::read_component;
use super::{BenchArgs, ENQUIRY_PLUGINS, SWAPPED_PLUGIN, load};
use journey_runtime::executor::Runtime;
use journey_runtime::journey::Journey;
use journey_runtime::tooling::{skip_steps, with_custom_section};

/// Push the plugins, deploy the journey (as `--swap-every` and
/// `--fail-first-percent` want it) and seed the customers; returns the
/// swapped plugin's two digests (with `--swap-every`) and the journey.
pub async fn set_up(
    runtime: &Arc<Runtime>,
    args: &BenchArgs,
    dir: &std::path::Path,
    journey_source: String,
) -> anyhow::Result<(Vec<String>, u32, Arc<Journey>)> {
    let mut swap_digests = Vec::new();
    for name in ENQUIRY_PLUGINS {
        let bytes = read_component(dir, &format!("plugin_{name}.wasm"))?;
        if name == SWAPPED_PLUGIN && args.swap_every.is_some() {
            // Two versions of the same code under different digests.
            let second = with_custom_section(bytes.clone(), "bench-build", b"2");
            swap_digests.push(runtime.push_plugin(name, bytes).await?.digest);
            swap_digests.push(runtime.push_plugin(name, second).await?.digest);
            runtime.set_tag(name, "stable", 1, None, "bench")?;
        } else {
            runtime.push_plugin(name, bytes).await?;
        }
    }
    let journey_source = if args.swap_every.is_some() {
        let plain = format!(r#"plugin = "{SWAPPED_PLUGIN}""#);
        if !journey_source.contains(&plain) {
            bail!(
                "--swap-every needs a journey whose step uses {plain}; {} has none",
                args.journey.display()
            );
        }
        journey_source.replace(&plain, &format!(r#"plugin = "{SWAPPED_PLUGIN}:stable""#))
    } else {
        journey_source
    };
    // The shipped journey waits for a person to resolve each enquiry; the
    // benchmark measures the automatic path, from hand-over straight on.
    let journey_source = skip_steps(&journey_source, &["sla", "escalate"], "resolved")
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", args.journey.display()))?;
    let journey_source = match args.fail_first_percent {
        Some(percent) => {
            runtime
                .push_plugin("screen", read_component(dir, "fixture_flaky.wasm")?)
                .await?;
            // Retries wait on durable timers: the timer loop runs.
            runtime.start_timers();
            with_failing_first_step(&journey_source, percent, args.retry_after_ms)?
        }
        None => journey_source,
    };
    let file = args.journey.display().to_string();
    let (version, journey) = runtime.deploy_journey(&file, &journey_source)?;
    load::seed_customers(runtime)?;
    Ok((swap_digests, version, journey))
}

/// The journey node 1 deployed, as nodes 2..N of `--nodes` find it.
pub fn deployed_journey(runtime: &Runtime) -> anyhow::Result<(u32, Arc<Journey>)> {
    let names = runtime.journey_names();
    let [name] = names.as_slice() else {
        bail!("expected the one journey node 1 deployed, found {names:?}");
    };
    let (_, version) = runtime.journey_version(name, 0);
    match runtime.journey_version(name, version) {
        (Some(journey), _) => Ok((version, journey)),
        (None, _) => bail!("journey {name} has no version {version}"),
    }
}

/// The enquiry journey with a first step `screen` whose plugin fails the
/// first attempt of `percent`% of instances, retried after `retry_ms`.
fn with_failing_first_step(source: &str, percent: u8, retry_ms: u64) -> anyhow::Result<String> {
    let mut journey: toml::Table = toml::from_str(source)?;
    let steps = journey
        .get_mut("steps")
        .and_then(toml::Value::as_array_mut)
        .context("the journey has no steps")?;
    let start = steps
        .first()
        .and_then(|step| step.get("name"))
        .and_then(toml::Value::as_str)
        .context("the first step has no name")?
        .to_owned();
    let screen: toml::Table = toml::from_str(&format!(
        r#"
name = "screen"
plugin = "screen"
config = {{ fail_first_percent = {percent}, next = "ok" }}
on = {{ ok = "{start}" }}
retry = {{ attempts = 3, backoff = "fixed", initial = "{retry_ms}ms" }}
"#
    ))?;
    steps.insert(0, toml::Value::Table(screen));
    Ok(toml::to_string(&journey)?)
}
