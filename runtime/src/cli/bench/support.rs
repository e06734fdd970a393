//! What the benchmark scenarios share: finding and pushing the built
//! plugins, starting `journeyd serve`, and reading the process's resources.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};

use journey_runtime::host;
use journey_runtime::store::Catalog;
use journey_runtime::store::sled::SledStore;

/// Where `cargo build --profile plugin --target wasm32-wasip2` puts components.
pub fn default_plugin_dir() -> PathBuf {
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

pub fn read_component(dir: &Path, file: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(file);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (build the plugins first: cargo build --profile plugin --target wasm32-wasip2 --workspace)",
            path.display()
        )
    })
}

pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        })
        .unwrap_or(0.0)
}

/// Clock ticks per second in `/proc`'s CPU times (USER_HZ on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU time of this process so far, seconds.
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime
            // are the 12th and 13th of them.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

/// CPU seconds the whole machine spent busy so far (every process).
pub fn machine_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let ticks: Vec<f64> = line
                .split_whitespace()
                .filter_map(|field| field.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy is all
            // but idle and iowait.
            let busy: f64 = ticks.iter().take(8).sum::<f64>()
                - ticks.get(3).copied().unwrap_or(0.0)
                - ticks.get(4).copied().unwrap_or(0.0);
            Some(busy / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Store `bytes` as the next version of plugin `name` and compile it into
/// the compiled-code cache, as a push does; returns its digest.
pub fn seed_plugin(
    store: &SledStore,
    host: &host::Host,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let digest = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(bytes))
    };
    host.load(&digest, bytes)?;
    store.put_plugin(name, &digest, bytes, 0)?;
    Ok(digest)
}

/// Start `journeyd serve` on `data` (plus `extra` arguments); returns the
/// process, its URL and the time from start to its readiness line.
pub async fn start_serve(
    data: &Path,
    extra: &[String],
) -> anyhow::Result<(std::process::Child, String, std::time::Duration)> {
    let exe = std::env::current_exe().context("finding the journeyd binary")?;
    let started = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting journeyd serve")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("journeyd listening on ")
                    .map(str::to_owned)
            })
    })
    .await?;
    let elapsed = started.elapsed();
    match ready {
        Some(url) => Ok((child, url, elapsed)),
        None => {
            let _ = child.kill();
            bail!("journeyd serve exited before it was ready")
        }
    }
}

/// Reads the `/metrics` of a `journeyd serve` that [`start_serve`] started
/// on a data directory, with the admin token it wrote there.
pub struct Metrics {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Metrics {
    pub fn new(data: &Path, url: &str) -> anyhow::Result<Metrics> {
        let file = data.join(journey_runtime::executor::ADMIN_TOKEN_FILE);
        let token = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the admin token in {}", file.display()))?;
        Ok(Metrics {
            http: reqwest::Client::new(),
            url: format!("{url}/metrics"),
            token: token.trim().to_owned(),
        })
    }

    /// The metrics text.
    pub async fn read(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }
}

pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The input of the trivial step's run number `round` (the step-overhead
/// figures): an empty event, state and config, a key of its own.
pub fn trivial_step_input(round: usize) -> host::StepInput {
    host::StepInput {
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
    }
}

/// Run the trivial step's run number `round` on `plugin` in a fresh
/// instance; its instantiate + call time.
pub fn run_trivial_step(
    host: &host::Host,
    plugin: &host::LoadedPlugin,
    customers: &std::sync::Arc<dyn journey_runtime::store::Customers>,
    round: usize,
) -> anyhow::Result<std::time::Duration> {
    let run = host.run_step(
        plugin,
        host::StepRequest {
            input: trivial_step_input(round),
            customer: host::CustomerSource {
                customers: customers.clone(),
                customer_id: "c".into(),
            },
            now_ms: 0,
            deadline: None,
            sends: std::sync::Arc::new(journey_runtime::tooling::NoCaps),
            plugin: "noop".into(),
            http: None,
        },
    );
    if let Err(failure) = run.result {
        bail!("the trivial step failed: {failure}");
    }
    Ok(run.duration)
}
