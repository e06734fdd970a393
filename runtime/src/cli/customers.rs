//! `journeyd customer ...` (import, show, forget) and `journeyd audit`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::Client;

/// `journeyd customer ...`
#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create or replace customer profiles from a JSON file `{ "id": {profile}, ... }`.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
    /// Show a customer's single view.
    Show {
        /// The customer id.
        id: String,
    },
    /// Forget a customer: remove their profile, interactions, channel
    /// choices, engagement, events and finished instances, and end or
    /// anonymise their unfinished instances. Recorded in the audit log
    /// without personal data.
    Forget {
        /// The customer id.
        id: String,
        /// What becomes of their unfinished instances.
        #[arg(long, value_enum, default_value_t = Unfinished::Cancel)]
        instances: Unfinished,
        /// The request id the audit log records (one is made up if not
        /// given), e.g. the ticket of the erasure request.
        #[arg(long)]
        request_id: Option<String>,
    },
}

/// What becomes of a forgotten customer's unfinished instances.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Unfinished {
    /// They end as cancelled and are removed with the rest.
    Cancel,
    /// They run on under a pseudonym, scrubbed of the customer's data;
    /// messages not yet sent are dropped.
    Anonymise,
}

/// Run a `journeyd customer` command.
pub async fn run(client: &Client, command: CustomerCommand) -> anyhow::Result<()> {
    match command {
        CustomerCommand::Import { file } => import(client, &file).await,
        CustomerCommand::Show { id } => {
            let body = client.get(&["v1", "customers", &id]).await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        CustomerCommand::Forget {
            id,
            instances,
            request_id,
        } => forget(client, &id, instances, request_id.as_deref()).await,
    }
}

async fn import(client: &Client, file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let customers: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: expected a JSON object of id → profile", file.display()))?;
    for (id, profile) in &customers {
        client.put_json(&["v1", "customers", id], profile).await?;
    }
    println!("imported {} customers", customers.len());
    Ok(())
}

async fn forget(
    client: &Client,
    id: &str,
    instances: Unfinished,
    request_id: Option<&str>,
) -> anyhow::Result<()> {
    let mode = match instances {
        Unfinished::Cancel => "cancel",
        Unfinished::Anonymise => "anonymise",
    };
    let mut request = client
        .http()
        .post(client.url(&["v1", "customers", id, "forget"])?)
        .json(&json!({ "instances": mode }));
    if let Some(request_id) = request_id {
        request = request.header("x-request-id", request_id);
    }
    let done = client.send(request).await?;
    let count = |field: &str| done[field].as_u64().unwrap_or(0);
    println!(
        "forgot customer {id} (request {})",
        done["request_id"].as_str().unwrap_or("?")
    );
    println!(
        "  instances: {} cancelled, {} anonymised, {} purged (the funnel keeps their counts)",
        count("cancelled"),
        count("anonymised"),
        count("purged")
    );
    println!(
        "  removed: profile {}, {} events, {} interactions, {} channel choices, {} engagements, {} counted sends",
        if done["profile"] == json!(true) {
            "yes"
        } else {
            "none"
        },
        count("events"),
        count("interactions"),
        count("channel_choices"),
        count("engagement"),
        count("counted_sends")
    );
    if count("events_kept") > 0 {
        println!(
            "  kept {} events that instances started after the forget began; forget again once nothing sends about this customer",
            count("events_kept")
        );
    }
    println!("  audit entry {}", count("audit_seq"));
    Ok(())
}

/// Print the audit log.
/// `journeyd audit`: which entries to read, and how to print them.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only entries after this one (by number).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    let AuditArgs { after, limit, json } = args;
    let request = client
        .http()
        .get(client.url(&["v1", "audit"])?)
        .query(&[("after", after), ("limit", limit as u64)]);
    let body = client.send(request).await?;
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    if json {
        for entry in &entries {
            println!("{entry}");
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!("the audit log has no entries after {after}");
    }
    for entry in &entries {
        let at = entry["at_ms"]
            .as_i64()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(|| "?".to_owned(), |at| at.to_string());
        println!(
            "{:>6}  {at}  {}  request {}  token {}  {}",
            entry["seq"],
            entry["action"].as_str().unwrap_or("?"),
            entry["request_id"].as_str().unwrap_or("?"),
            entry["token"].as_str().unwrap_or("-"),
            entry["details"]
        );
    }
    Ok(())
}
