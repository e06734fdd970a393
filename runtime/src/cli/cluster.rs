//! `journeyd cluster status`: the nodes sharing a PostgreSQL store, the
//! shards they hold, lease ages and how far behind each shard's work is.
//! Reads the database directly, so it works when no node is up.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use journey_runtime::store::{ClusterStatus, PostgresOptions, PostgresStore};

/// `journeyd cluster …`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the nodes, the shards they hold, lease ages and lag.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The PostgreSQL database the nodes share.
    #[arg(long, env = "JOURNEYD_STORE", value_name = "URL")]
    pub store: String,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status(args) = command;
    let shown = super::store::redacted(&args.store);
    // Only looks: takes no shard.
    let store = PostgresStore::open(
        &args.store,
        &PostgresOptions {
            pool_size: 1,
            node: None,
        },
    )
    .with_context(|| format!("opening the PostgreSQL store at {shown}"))?;
    let status = store
        .cluster_status()
        .with_context(|| format!("reading the cluster's status from {shown}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// The status as a person reads it.
fn render(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let live = status.nodes.iter().filter(|node| node.live).count();
    out.push_str(&format!(
        "{live} node(s) holding shards; {} outbox message(s) due\n\nnodes\n",
        status.outbox_due
    ));
    out.push_str(&format!(
        "  {:<36} {:>6} {:>14}  {}\n",
        "NODE", "SHARDS", "HEARTBEAT AGO", "ADDRESS"
    ));
    for node in &status.nodes {
        out.push_str(&format!(
            "  {:<36} {:>6} {:>12.1} s  {}\n",
            node.node,
            node.shards,
            node.heartbeat_age_ms as f64 / 1000.0,
            node.address.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        "\nshards\n  {:>5} {:<36} {:>6} {:>10} {:>8} {:>11} {:>10}\n",
        "SHARD", "HOLDER", "EPOCH", "LEASE LEFT", "RUNNING", "TIMERS DUE", "TIMER LAG"
    ));
    for shard in &status.shards {
        let lease = if shard.owner.is_some() {
            format!("{:.1} s", shard.lease_left_ms as f64 / 1000.0)
        } else {
            "ended".to_owned()
        };
        out.push_str(&format!(
            "  {:>5} {:<36} {:>6} {:>10} {:>8} {:>11} {:>8.1} s\n",
            shard.shard,
            shard.owner.as_deref().unwrap_or("(nobody)"),
            shard.epoch,
            lease,
            shard.running,
            shard.timers_due,
            shard.timer_lag_ms as f64 / 1000.0
        ));
    }
    out
}
