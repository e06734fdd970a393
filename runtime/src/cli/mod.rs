//! The `journeyd` command line.
//!
//! `journeyd serve` runs the runtime; every other subcommand is a thin
//! client of the HTTP API (`--server`, default `http://127.0.0.1:7700`)
//! that prints readable output, except `bench`, which runs the executor
//! in-process on a temporary store. This module owns argument parsing and
//! presentation only.

mod bench;
mod client;
mod serve;
mod timeline;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use self::bench::BenchArgs;
pub use self::serve::ServeArgs;

/// A host runtime for customer micro journeys.
#[derive(Debug, Parser)]
#[command(name = "journeyd", version, about)]
pub struct Cli {
    /// Where a running journeyd listens (for client subcommands).
    #[arg(
        long,
        global = true,
        env = "JOURNEYD_URL",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the runtime and its HTTP API.
    Serve(ServeArgs),
    /// Deploy and list journey definitions.
    #[command(subcommand)]
    Journey(JourneyCommand),
    /// Push and list plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Upsert and show customers.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Send events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Show and list instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// List queued outbox messages.
    Outbox {
        /// Only this instance's messages.
        #[arg(long)]
        instance: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run enquiry journeys through the executor on a temporary store and
    /// print throughput, latency and overhead (last line: JSON).
    Bench(BenchArgs),
}

/// `journeyd journey ...`
#[derive(Debug, Subcommand)]
pub enum JourneyCommand {
    /// Validate and deploy a TOML definition as the journey's next version.
    Deploy {
        /// The definition file.
        file: PathBuf,
    },
    /// List deployed journey versions.
    List,
}

/// `journeyd plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Push a component as the next version of plugin NAME.
    Push {
        /// The plugin name journeys refer to.
        name: String,
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// List plugin versions.
    List,
}

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
}

/// `journeyd event ...`
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Send one event, or every event in a JSON file (an array or one object).
    Send(SendArgs),
}

/// Arguments of `journeyd event send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// A JSON file of events `{"id", "type", "customer", "data"}`.
    #[arg(long, conflicts_with_all = ["kind", "customer", "data"])]
    pub file: Option<PathBuf>,
    /// The event type.
    #[arg(long = "type", required_unless_present = "file")]
    pub kind: Option<String>,
    /// The customer id.
    #[arg(long, required_unless_present = "file")]
    pub customer: Option<String>,
    /// The event id (default: a fresh one).
    #[arg(long)]
    pub id: Option<String>,
    /// The event data, a JSON object.
    #[arg(long, default_value = "{}")]
    pub data: Option<String>,
    /// Wait for each started instance to finish and print its timeline.
    #[arg(long)]
    pub wait: bool,
}

/// `journeyd instance ...`
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Show an instance and its timeline.
    Show {
        /// The instance id (`i-42`).
        id: String,
        /// Wait up to this many ms for it to finish first.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List instances.
    List {
        /// Only this journey.
        #[arg(long)]
        journey: Option<String>,
        /// Only this status (`running`, `completed`, `failed`).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Run the command line.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = client::Client::new(&cli.server);
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::Journey(JourneyCommand::Deploy { file }) => client.deploy_journey(&file).await,
        Command::Journey(JourneyCommand::List) => client.list_journeys().await,
        Command::Plugin(PluginCommand::Push { name, file }) => {
            client.push_plugin(&name, &file).await
        }
        Command::Plugin(PluginCommand::List) => client.list_plugins().await,
        Command::Customer(CustomerCommand::Import { file }) => client.import_customers(&file).await,
        Command::Customer(CustomerCommand::Show { id }) => client.show_customer(&id).await,
        Command::Event(EventCommand::Send(args)) => client.send_events(args).await,
        Command::Instance(InstanceCommand::Show { id, wait_ms, json }) => {
            client.show_instance(&id, wait_ms, json).await
        }
        Command::Instance(InstanceCommand::List {
            journey,
            status,
            limit,
        }) => client.list_instances(journey, status, limit).await,
        Command::Outbox { instance, limit } => client.list_outbox(instance, limit).await,
    }
}
