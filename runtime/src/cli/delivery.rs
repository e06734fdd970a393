//! `journeyd integration ...` and `journeyd delivery ...`: how messages
//! leave the runtime, and what became of them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::timeline;

/// `journeyd integration ...`
#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Set how messages on CHANNEL are delivered: a channel plugin, its
    /// config, the hosts it may reach and the secrets it may use. Checked
    /// by rendering a sample message before anything changes.
    Set(Box<SetIntegration>),
    /// List the integrations.
    List,
}

/// `journeyd integration set ...`
#[derive(Debug, clap::Args)]
pub struct SetIntegration {
    /// The channel: `email`, `sms`, `chat`, `team`, ...
    channel: String,
    /// The channel plugin: `name`, `name@version` or `name:tag`.
    #[arg(long)]
    plugin: String,
    /// A host requests may go to (`api.example.com`, `*.example.com`,
    /// `127.0.0.1:8025`); repeat for several.
    #[arg(long = "host", value_name = "HOST", required = true)]
    hosts: Vec<String>,
    /// `NAME=env:VARIABLE` or `NAME=file:PATH`: a secret the plugin may
    /// name, read by the server (never stored); repeat for several.
    #[arg(long = "secret", value_name = "NAME=REF")]
    secrets: Vec<String>,
    /// The plugin's config, as JSON.
    #[arg(long, conflicts_with = "config_file")]
    config: Option<String>,
    /// The plugin's config, from a JSON file.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// The secret that verifies the provider's callbacks (Standard
    /// Webhooks); without it the integration takes no callbacks.
    #[arg(long)]
    callback_secret: Option<String>,
    /// Requests per second at most.
    #[arg(long)]
    rate: Option<u32>,
    /// Requests in flight at most.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Attempts per message before it is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Age after which a message is dead instead of sent (e.g. `12h`):
    /// shorter than the provider's idempotency window.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<Duration>,
    /// Timeout of one request (e.g. `10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Disable it: its messages wait.
    #[arg(long, conflicts_with = "enable")]
    disable: bool,
    /// Enable it again (also after a provider's 410 disabled it).
    #[arg(long)]
    enable: bool,
}

/// `journeyd delivery ...`
#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// List messages by delivery status (bounced, failed and dead unless
    /// --status says otherwise).
    List {
        /// Statuses, comma-separated: queued, sending, retrying, accepted,
        /// delivered, opened, clicked, bounced, failed, dead.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one message and every attempt to deliver it.
    Show {
        /// The message id (e.g. `i-12/3/m0`).
        id: String,
    },
    /// Queue undelivered messages again, under the same ids (a provider
    /// that already has one drops the repeat).
    Replay {
        /// The message ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

pub async fn integration_command(
    client: &Client,
    command: IntegrationCommand,
) -> anyhow::Result<()> {
    match command {
        IntegrationCommand::Set(set) => {
            let SetIntegration {
                channel,
                plugin,
                hosts,
                secrets,
                config,
                config_file,
                callback_secret,
                rate,
                concurrency,
                max_attempts,
                max_age,
                timeout,
                disable,
                enable,
            } = *set;
            let mut secret_refs = serde_json::Map::new();
            for pair in secrets {
                let Some((name, reference)) = pair.split_once('=') else {
                    anyhow::bail!(
                        "--secret takes NAME=env:VARIABLE or NAME=file:PATH, not `{pair}`"
                    );
                };
                secret_refs.insert(name.to_owned(), reference.into());
            }
            let config: Option<Value> = match (config, config_file) {
                (Some(text), _) => {
                    Some(serde_json::from_str(&text).context("--config is not JSON")?)
                }
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    Some(
                        serde_json::from_str(&text)
                            .with_context(|| format!("{} is not JSON", file.display()))?,
                    )
                }
                (None, None) => None,
            };
            let mut body = json!({ "plugin": plugin, "hosts": hosts, "secrets": secret_refs });
            let optional = [
                ("config", config),
                ("callback_secret", callback_secret.map(Value::from)),
                ("rate_per_second", rate.map(Value::from)),
                ("concurrency", concurrency.map(Value::from)),
                ("max_attempts", max_attempts.map(Value::from)),
                (
                    "max_age_ms",
                    max_age.map(|age| Value::from(age.as_millis() as u64)),
                ),
                (
                    "timeout_ms",
                    timeout.map(|timeout| Value::from(timeout.as_millis() as u64)),
                ),
                (
                    "enabled",
                    (disable || enable).then_some(Value::from(enable)),
                ),
            ];
            for (field, value) in optional {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            let answer = client
                .put_json(&["v1", "integrations", &channel], &body)
                .await?;
            println!("{}", integration_line(&answer["integration"]));
            Ok(())
        }
        IntegrationCommand::List => {
            let answer = client.get(&["v1", "integrations"]).await?;
            let integrations = answer["integrations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if integrations.is_empty() {
                println!(
                    "no integrations: messages stay queued until one is set for their channel"
                );
            }
            for integration in &integrations {
                println!("{}", integration_line(integration));
            }
            Ok(())
        }
    }
}

fn integration_line(integration: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
    let hosts: Vec<String> = integration["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let secrets: Vec<String> = integration["secrets"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect();
    let state = match integration["disabled"].as_str() {
        Some(reason) => format!("DISABLED ({reason})"),
        None => "enabled".into(),
    };
    format!(
        "{:<8} {:<16} {}  hosts {}  secrets {}  {} attempts, {} in flight{}",
        text(&integration["channel"]),
        text(&integration["plugin"]),
        state,
        hosts.join(","),
        if secrets.is_empty() {
            "-".into()
        } else {
            secrets.join(",")
        },
        integration["max_attempts"],
        integration["concurrency"],
        integration["rate_per_second"]
            .as_u64()
            .map_or_else(String::new, |rate| format!(", {rate}/s")),
    )
}

pub async fn delivery_command(client: &Client, command: DeliveryCommand) -> anyhow::Result<()> {
    match command {
        DeliveryCommand::List { status, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(status.map(|status| ("status", status)));
            let answer = client
                .send(
                    client
                        .http()
                        .get(client.url(&["v1", "deliveries"])?)
                        .query(&query),
                )
                .await?;
            let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
            if deliveries.is_empty() {
                println!("no messages with that status");
            }
            for entry in &deliveries {
                println!(
                    "{}",
                    timeline::delivery_line(&entry["message"], &entry["delivery"])
                );
            }
            Ok(())
        }
        DeliveryCommand::Show { id } => {
            let mut segments = vec!["v1", "deliveries"];
            segments.extend(id.split('/'));
            let answer = client.get(&segments).await?;
            println!(
                "{}",
                timeline::delivery_line(&answer["message"], &answer["delivery"])
            );
            println!("  {}", timeline::message_line(&answer["message"]));
            for line in answer["delivery"]["log"].as_array().into_iter().flatten() {
                println!(
                    "  {:<9} {}",
                    line["status"].as_str().unwrap_or("?"),
                    line["note"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        DeliveryCommand::Replay { ids } => {
            let answer = client
                .post_json(&["v1", "deliveries", "replay"], &json!({ "ids": ids }))
                .await?;
            for replayed in answer["replayed"].as_array().into_iter().flatten() {
                println!("{} queued again", replayed["id"].as_str().unwrap_or("?"));
            }
            Ok(())
        }
    }
}
