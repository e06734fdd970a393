//! Delivery under load: the enquiry benchmark with the dispatcher on,
//! delivering every message through the shipped channel plugins to a
//! `provider-sink` process that fails a share of requests transiently.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::support::{percentile, read_component, round2};
use journey_runtime::delivery::IntegrationSpec;
use journey_runtime::executor::Runtime;
use journey_runtime::store::{DeliveryFilter, DeliveryStatus, Store};

/// The channel plugins and the channels they deliver.
const CHANNELS: [(&str, &str); 4] = [
    ("email", "sendgrid"),
    ("sms", "twilio"),
    ("team", "slack"),
    ("chat", "webhook"),
];

/// A provider sink the benchmark started; stopped when dropped.
pub struct Provider {
    child: Child,
    url: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `provider-sink` (next to this binary) failing `fail_percent`% of
/// requests with a 500, push the channel plugins, and set an integration
/// per channel pointing at it. Secrets are files in `scratch`.
pub async fn switch_on(
    runtime: &Arc<Runtime>,
    plugins: &Path,
    scratch: &Path,
    fail_percent: u8,
) -> anyhow::Result<Provider> {
    use std::io::BufRead as _;
    let binary = std::env::current_exe()?.with_file_name("provider-sink");
    let mut child = Command::new(&binary)
        .args(["--listen", "127.0.0.1:0", "--sendgrid-key", "bench-key"])
        .args([
            "--fail-rate",
            &(f64::from(fail_percent) / 100.0).to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it: cargo build --release -p journey-provider-sink)",
                binary.display()
            )
        })?;
    let stdout = child.stdout.take().context("the sink's stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("provider-sink listening on ")
        .context("provider-sink did not say where it listens")?
        .to_owned();
    let provider = Provider { child, url };
    let host = provider.url.trim_start_matches("http://").to_owned();
    let key = scratch.join("sendgrid-key");
    std::fs::write(&key, "bench-key")?;
    let path = scratch.join("slack-path");
    std::fs::write(&path, "T0/B0/bench")?;
    let signing = scratch.join("webhook-secret");
    std::fs::write(&signing, "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQ=")?;
    let file = |path: &Path| format!("file:{}", path.display());
    for (channel, plugin) in CHANNELS {
        runtime
            .push_plugin(
                plugin,
                read_component(plugins, &format!("plugin_{plugin}.wasm"))?,
            )
            .await?;
        let (config, secrets) = match plugin {
            "sendgrid" => (
                json!({ "url": format!("{}/v3/mail/send", provider.url), "from": "bench@example.com" }),
                json!({ "api_key": file(&key) }),
            ),
            "twilio" => (
                json!({ "base_url": provider.url, "from": "+15005550006" }),
                json!({ "account_sid": file(&key), "auth_token": file(&key) }),
            ),
            "slack" => (
                json!({ "url": format!("{}/services/{{{{secret:webhook_path}}}}", provider.url) }),
                json!({ "webhook_path": file(&path) }),
            ),
            _ => (
                json!({ "url": format!("{}/webhooks/bench", provider.url) }),
                json!({ "signing_key": file(&signing) }),
            ),
        };
        let spec: IntegrationSpec = serde_json::from_value(json!({
            "plugin": plugin,
            "hosts": [host],
            "secrets": secrets,
            "config": config,
            "concurrency": 32,
            "max_attempts": 20,
        }))?;
        runtime.set_integration(channel, spec).await?;
    }
    runtime.start_dispatcher();
    Ok(provider)
}

/// What became of the messages.
pub struct Delivered {
    /// Messages accepted by the provider.
    pub messages: usize,
    /// Messages per second, first queued to last accepted.
    pub per_second: f64,
    /// Step commit (queued) to provider acceptance, ms.
    pub p50_ms: f64,
    /// The same, 99th percentile.
    pub p99_ms: f64,
    /// Attempts beyond the first.
    pub retries: u64,
}

/// Wait (at most `limit`) until nothing is left to send, then measure.
pub fn measure(store: &dyn Store, limit: Duration) -> anyhow::Result<Delivered> {
    let deadline = Instant::now() + limit;
    // Queued, retrying and sending messages are all in the due index.
    while store.next_delivery_due()?.is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "messages were still being delivered after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let accepted = store
        .deliveries(&DeliveryFilter::with_statuses(
            &[DeliveryStatus::Accepted],
            usize::MAX,
        ))?
        .found;
    let all = store.outbox(None, usize::MAX)?.len();
    anyhow::ensure!(
        accepted.len() == all,
        "{} of {all} messages were not accepted",
        all - accepted.len()
    );
    let mut latencies = Vec::with_capacity(accepted.len());
    let (mut first, mut last, mut retries) = (u64::MAX, 0, 0);
    for (message, delivery) in &accepted {
        let at = delivery.updated_at_ms;
        latencies.push(at.saturating_sub(message.queued_at_ms) as f64);
        first = first.min(message.queued_at_ms);
        last = last.max(at);
        retries += u64::from(delivery.attempts.saturating_sub(1));
    }
    latencies.sort_by(f64::total_cmp);
    let seconds = (last.saturating_sub(first) as f64 / 1000.0).max(0.001);
    Ok(Delivered {
        messages: accepted.len(),
        per_second: round2(accepted.len() as f64 / seconds),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        retries,
    })
}
