//! The `journeyd` command line.
//!
//! `journeyd serve` runs the runtime; every other subcommand is a thin
//! client of the HTTP API that prints readable output, except `bench`,
//! which runs the executor in-process on a temporary store. This module
//! owns argument parsing and presentation only.
//!
//! Which journeyd a client talks to: `--server`, else `JOURNEYD_URL`,
//! else `server` in the config file, else the address a `journeyd serve`
//! on the data directory (`JOURNEYD_DATA`, default `journeyd-data`) wrote
//! into its [`ADDRESS_FILE`] (so `serve --listen 127.0.0.1:0` is found),
//! else `http://127.0.0.1:7700`.
//!
//! The API token it sends: `--token`, else `JOURNEYD_TOKEN`, else `token`
//! in the config file (`JOURNEYD_CONFIG`, default
//! `~/.config/journeyd/config.toml`), else the first admin token `journeyd
//! serve` wrote into that data directory.

mod backup;
pub mod bench;
mod client;
mod cluster;
mod config;
mod customers;
mod delivery;
mod retention;
mod scaffold;
mod serve;
mod step_run;
pub(crate) mod store;
mod timeline;
mod tokens;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use self::bench::BenchArgs;
pub use self::serve::ServeArgs;

/// A host runtime for customer micro journeys.
#[derive(Debug, Parser)]
#[command(name = "journeyd", version, about)]
pub struct Cli {
    /// Where a running journeyd listens (for client subcommands); without
    /// it, the address `journeyd serve` wrote into its data directory
    /// (`JOURNEYD_DATA`, default `journeyd-data`), else
    /// http://127.0.0.1:7700.
    #[arg(long, global = true, env = "JOURNEYD_URL")]
    pub server: Option<String>,
    /// The API token to send (see the module docs for where else it is
    /// looked for).
    #[arg(long, global = true, env = "JOURNEYD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `journeyd config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a `journeyd.toml` (`--config FILE`) with this command line
    /// and environment, and print every setting `serve` would run with and
    /// where it came from (flag, environment, file, default).
    Check(ServeArgs),
}

/// Plugin authors' local tools.
#[derive(Debug, Subcommand)]
pub enum StepCommand {
    /// Run one step of a plugin component in the real sandbox with a fake
    /// host (the customer from a file, caps from the input, no outbound
    /// requests) and print its outcome, state, messages, notes, metrics,
    /// logs and time. Exits 1 when the attempt failed.
    Run(step_run::StepRunArgs),
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
    Customer(customers::CustomerCommand),
    /// Read the audit log: what forgetting customers (and other audited
    /// actions) did, without personal data.
    Audit(customers::AuditArgs),
    /// Send events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Show and list instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Show or move the runtime's clock (moving needs `serve --simulated-clock`).
    #[command(subcommand)]
    Clock(ClockCommand),
    /// The settings file of `journeyd serve`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show or set frequency caps: messages per channel per customer per
    /// period, across journeys.
    #[command(subcommand)]
    Caps(CapsCommand),
    /// Set and list integrations: how messages on each channel leave
    /// journeyd (a channel plugin, its hosts and secrets, limits).
    #[command(subcommand)]
    Integration(delivery::IntegrationCommand),
    /// List, show and replay message deliveries.
    #[command(subcommand)]
    Delivery(delivery::DeliveryCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// List queued outbox messages.
    Outbox {
        /// Only this instance's messages.
        #[arg(long)]
        instance: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Take a consistent backup from the running server (`--to FILE`), or
    /// check one (`verify FILE`).
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data directory (offline).
    Restore(backup::RestoreArgs),
    /// Run enquiry journeys through the executor on a temporary store and
    /// print throughput, latency and overhead (last line: JSON).
    Bench(BenchArgs),
    /// The nodes sharing a PostgreSQL store: which holds which shards,
    /// lease ages and lag.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run plugins locally, without a server or a store.
    #[command(subcommand)]
    Step(StepCommand),
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
    /// Drop-off report: per step (and experiment variant), how many
    /// instances reached it, wait after it, or ended there.
    Funnel {
        /// The journey.
        name: String,
    },
    /// Move the running instances of version FROM to version TO, each at
    /// its next step start (validated before anything changes).
    Migrate {
        /// The journey.
        name: String,
        /// The version instances leave.
        #[arg(long)]
        from: u32,
        /// The version they move to.
        #[arg(long)]
        to: u32,
        /// `OLD=NEW`: an instance about to run step OLD continues at step
        /// NEW. Steps not named keep their name.
        #[arg(long = "map", value_name = "OLD=NEW")]
        steps: Vec<String>,
    },
}

/// `journeyd plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project that builds at once and passes its own
    /// tests: Rust, Python or JavaScript, a step or a channel.
    New(scaffold::NewArgs),
    /// Push a component as the next version of plugin NAME.
    Push {
        /// The plugin name journeys refer to.
        name: String,
        /// The `.wasm` component.
        file: PathBuf,
        /// Also point this tag at the new version (e.g. `stable`).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Point tag TAG of plugin NAME at VERSION (ending any rollout on it).
    Tag {
        /// The plugin.
        name: String,
        /// The tag (e.g. `stable`).
        tag: String,
        /// The version steps naming `NAME:TAG` run from their next start.
        version: u32,
    },
    /// Roll VERSION out to a share of the instances whose steps name NAME:TAG.
    Rollout {
        /// The plugin.
        name: String,
        /// The tag whose steps take part.
        tag: String,
        /// The version to roll out.
        version: u32,
        /// Share of instances, 0 to 100.
        #[arg(long)]
        percent: u8,
        /// Roll back on its own when more than this share of the canary's
        /// runs fail (0 to 1) ...
        #[arg(long, requires = "min_runs")]
        max_error_rate: Option<f64>,
        /// ... once it has run at least this many times.
        #[arg(long, requires = "max_error_rate")]
        min_runs: Option<u64>,
    },
    /// End the rollout on NAME:TAG: every instance runs the tag's version.
    Rollback {
        /// The plugin.
        name: String,
        /// The tag.
        tag: String,
        /// Why, recorded with the change.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let step plugin NAME's outbound HTTP requests (`wasi:http`) reach
    /// the given hosts, naming the given secrets (none: revoke). Steps may
    /// run more than once: such requests must be idempotent reads or carry
    /// the step's idempotency key (sent as `Idempotency-Key`).
    Grant {
        /// The plugin.
        name: String,
        /// A host its requests may reach; repeat for several, none revokes.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// `NAME=env:VARIABLE` or `NAME=file:PATH`: a secret its requests
        /// may name in header values as `{{secret:NAME}}`.
        #[arg(long = "secret", value_name = "NAME=REF")]
        secrets: Vec<String>,
        /// Timeout of one request (e.g. `5s`).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// List plugin versions with their run counts, and tags.
    List,
    /// Show one plugin: versions, counts, tags and every tag change.
    Show {
        /// The plugin.
        name: String,
    },
}

/// `journeyd clock ...`
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Print the runtime's time.
    Show,
    /// Move a simulated clock forward; timers that fall due fire, and the
    /// command returns once the runtime has settled (or after --settle).
    Advance {
        /// How far, e.g. `90m`, `1d`, `2days 3h` (or use --to).
        #[arg(required_unless_present = "to", value_parser = humantime::parse_duration)]
        by: Option<std::time::Duration>,
        /// To this time: ms since the Unix epoch or RFC 3339 (`2026-12-01T09:00:00Z`).
        #[arg(long, conflicts_with = "by")]
        to: Option<String>,
        /// Wait at most this long for due timers and their steps to finish.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        settle: std::time::Duration,
    },
}

/// `journeyd caps ...`
#[derive(Debug, Subcommand)]
pub enum CapsCommand {
    /// Print the caps in force.
    Show,
    /// Replace every cap: `CHANNEL=LIMIT/PERIOD`, e.g. `email=3/7d sms=1/1d`,
    /// optionally only for some journeys: `sms=2/7d@webinar,promo`. No
    /// arguments removes all caps.
    Set {
        /// The caps.
        caps: Vec<String>,
    },
}

/// Parse `email=3/7d` into a cap body.
fn parse_cap(text: &str) -> anyhow::Result<serde_json::Value> {
    let usage = || {
        anyhow::anyhow!(
            "`{text}` is not CHANNEL=LIMIT/PERIOD[@JOURNEY,...], e.g. email=3/7d or sms=2/7d@webinar"
        )
    };
    let (text, journeys) = match text.split_once('@') {
        Some((cap, journeys)) => (cap, journeys.split(',').map(str::to_owned).collect()),
        None => (text, Vec::new()),
    };
    let (channel, rest) = text.split_once('=').ok_or_else(usage)?;
    let (limit, period) = rest.split_once('/').ok_or_else(usage)?;
    let limit: u32 = limit.parse().map_err(|_| usage())?;
    let period = humantime::parse_duration(period).map_err(|_| usage())?;
    Ok(serde_json::json!({
        "channel": channel,
        "limit": limit,
        "period_ms": period.as_millis() as u64,
        "journeys": journeys,
    }))
}

/// `--to`: ms since the epoch or an RFC 3339 time.
pub(crate) fn parse_time(text: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is neither ms since the epoch nor RFC 3339"))?;
    u64::try_from(at.as_millisecond()).map_err(|_| anyhow::anyhow!("`{text}` is before 1970"))
}

/// `journeyd event ...`
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Send one event, or every event in a JSON file (an array or one object).
    Send(SendArgs),
    /// Replay timed events on a simulated clock: files of moments
    /// `[{"at": "2026-12-01T09:00:00Z", "note": "...", "events": [...]}]`,
    /// merged in time order; the clock moves to each moment (firing the
    /// timers due on the way) before its events are sent.
    Replay {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
        /// Print each instance's whole timeline.
        #[arg(long)]
        timelines: bool,
    },
    /// Run a failed instance's failed step again as a new step execution,
    /// optionally on another plugin version; with --journey, every failed
    /// instance of the journey (at --step).
    Retry {
        /// Which instances.
        #[command(flatten)]
        target: ActionTarget,
        /// Run this plugin for the step instead of the journey's
        /// (`name@version` or `name:tag`).
        #[arg(long)]
        plugin: Option<String>,
    },
    /// Move a failed or waiting instance on to another step (or terminal
    /// state); with --journey, every such instance of the journey (at --step).
    Skip {
        /// Which instances.
        #[command(flatten)]
        target: ActionTarget,
        /// The step it continues at.
        #[arg(long)]
        to: String,
    },
    /// Cancel a running, waiting or failed instance; with --journey, every
    /// such instance of the journey (at --step).
    Cancel {
        /// Which instances.
        #[command(flatten)]
        target: ActionTarget,
    },
    /// Remove a journey's finished instances (completed, failed, exited,
    /// cancelled) that finished before a time, with their history and
    /// messages. The funnel keeps their counts. Retention does this on its
    /// own; this is for doing it now.
    Purge {
        /// The journey.
        #[arg(long)]
        journey: String,
        /// Those that finished before this time: RFC 3339
        /// (`2026-11-01T00:00:00Z`) or a date (`2026-11-01`, midnight UTC).
        #[arg(long)]
        before: String,
        /// Only count them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which instances an operator's action is for: one, or a journey's.
#[derive(Debug, Args)]
pub struct ActionTarget {
    /// The instance (`i-42`); or give --journey.
    #[arg(required_unless_present = "journey", conflicts_with = "journey")]
    pub id: Option<String>,
    /// Every instance of this journey the action applies to.
    #[arg(long)]
    pub journey: Option<String>,
    /// With --journey: only instances at this step.
    #[arg(long, requires = "journey")]
    pub step: Option<String>,
    /// With --journey: only count the instances, change nothing.
    #[arg(long, requires = "journey")]
    pub dry_run: bool,
    /// Why; recorded in each instance's history.
    #[arg(long)]
    pub reason: Option<String>,
}

/// The file in a data directory where `journeyd serve` writes the URL it
/// listens on, for client commands to find it.
pub const ADDRESS_FILE: &str = "address";
/// Where clients look when nothing else names a server.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// The CLI's config file: `server` and `token`, both optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
}

/// The config file, if there is one (a malformed one is an error).
fn config_file() -> anyhow::Result<ConfigFile> {
    use anyhow::Context as _;
    let path = match std::env::var_os("JOURNEYD_CONFIG") {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("XDG_CONFIG_HOME").or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").into())
        }) {
            Some(config) => PathBuf::from(config).join("journeyd/config.toml"),
            None => return Ok(ConfigFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// The data directory a local `journeyd serve` uses.
fn data_dir() -> PathBuf {
    std::env::var_os("JOURNEYD_DATA")
        .unwrap_or_else(|| "journeyd-data".into())
        .into()
}

/// The journeyd a client command talks to (see the module docs).
fn server_url(server: Option<String>, config: &ConfigFile) -> String {
    if let Some(server) = server.or_else(|| config.server.clone()) {
        return server;
    }
    std::fs::read_to_string(data_dir().join(ADDRESS_FILE))
        .ok()
        .map(|address| address.trim().to_owned())
        .filter(|address| address.starts_with("http"))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// The API token a client command sends (see the module docs).
fn api_token(token: Option<String>, config: &ConfigFile) -> Option<String> {
    token.or_else(|| config.token.clone()).or_else(|| {
        std::fs::read_to_string(data_dir().join(journey_runtime::executor::ADMIN_TOKEN_FILE))
            .ok()
            .map(|token| token.trim().to_owned())
    })
}

/// Run the command line. Errors are printed as one readable line (with
/// their causes), never as a backtrace: they are the user's to fix.
pub fn main() -> std::process::ExitCode {
    let cli = config::parse();
    // Blocking work is short store reads and writes (and the odd plugin
    // compile): a few threads serve it. An unbounded pool would grow a
    // thread per concurrent request, each with its own allocator heap.
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads((2 * cores).max(8))
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve(args) = cli.command {
        return serve::serve(args).await;
    }
    if let Command::Step(StepCommand::Run(args)) = cli.command {
        return step_run::step_run(args).await;
    }
    if let Command::Config(ConfigCommand::Check(args)) = &cli.command {
        return config::check(args.config.as_deref());
    }
    if let Command::Plugin(PluginCommand::New(args)) = cli.command {
        return scaffold::new_plugin(args);
    }
    if let Command::Restore(args) = cli.command {
        return backup::restore(args);
    }
    if let Command::Cluster(command) = cli.command {
        return cluster::run(command);
    }
    let config = config_file()?;
    let client = client::Client::new(
        &server_url(cli.server, &config),
        api_token(cli.token, &config).as_deref(),
    );
    match cli.command {
        Command::Serve(_)
        | Command::Step(_)
        | Command::Config(_)
        | Command::Restore(_)
        | Command::Cluster(_) => {
            unreachable!("run above")
        }
        Command::Backup(args) => backup::backup(&client, args).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::Journey(JourneyCommand::Deploy { file }) => client.deploy_journey(&file).await,
        Command::Journey(JourneyCommand::List) => client.list_journeys().await,
        Command::Journey(JourneyCommand::Funnel { name }) => client.show_funnel(&name).await,
        Command::Journey(JourneyCommand::Migrate {
            name,
            from,
            to,
            steps,
        }) => {
            let mut mapping = serde_json::Map::new();
            for pair in steps {
                let Some((old, new)) = pair.split_once('=') else {
                    anyhow::bail!("--map takes OLD=NEW, not `{pair}`");
                };
                mapping.insert(old.to_owned(), new.into());
            }
            client
                .migrate_journey(
                    &name,
                    serde_json::json!({ "from": from, "to": to, "steps": mapping }),
                )
                .await
        }
        Command::Plugin(command) => plugin_command(&client, command).await,
        Command::Customer(command) => customers::run(&client, command).await,
        Command::Audit(args) => customers::audit(&client, args).await,
        Command::Event(EventCommand::Send(args)) => client.send_events(args).await,
        Command::Instance(InstanceCommand::Show { id, wait_ms, json }) => {
            client.show_instance(&id, wait_ms, json).await
        }
        Command::Instance(InstanceCommand::List {
            journey,
            status,
            limit,
            timelines,
        }) => {
            client
                .list_instances(journey, status, limit, timelines)
                .await
        }
        Command::Instance(InstanceCommand::Retry { target, plugin }) => {
            let mut body = serde_json::Map::new();
            if let Some(plugin) = plugin {
                body.insert("plugin".into(), plugin.into());
            }
            client.instance_action("retry", target, body).await
        }
        Command::Instance(InstanceCommand::Skip { target, to }) => {
            let mut body = serde_json::Map::new();
            body.insert("to".into(), to.into());
            client.instance_action("skip", target, body).await
        }
        Command::Instance(InstanceCommand::Cancel { target }) => {
            client
                .instance_action("cancel", target, serde_json::Map::new())
                .await
        }
        Command::Instance(InstanceCommand::Purge {
            journey,
            before,
            dry_run,
        }) => retention::purge(&client, &journey, &before, dry_run).await,
        Command::Event(EventCommand::Replay { files }) => client.replay(&files).await,
        Command::Outbox { instance, limit } => client.list_outbox(instance, limit).await,
        Command::Integration(command) => delivery::integration_command(&client, command).await,
        Command::Delivery(command) => delivery::delivery_command(&client, command).await,
        Command::Token(command) => tokens::token_command(&client, command).await,
        Command::Clock(ClockCommand::Show) => client.show_clock().await,
        Command::Clock(ClockCommand::Advance { by, to, settle }) => {
            let settle_ms = settle.as_millis() as u64;
            let body = match (by, to) {
                (Some(by), _) => {
                    serde_json::json!({ "ms": by.as_millis() as u64, "settle_ms": settle_ms })
                }
                (None, Some(to)) => {
                    serde_json::json!({ "to_ms": parse_time(&to)?, "settle_ms": settle_ms })
                }
                (None, None) => anyhow::bail!("give how far to move (e.g. `1d`) or --to"),
            };
            client.advance_clock(body).await
        }
        Command::Caps(CapsCommand::Show) => client.show_caps().await,
        Command::Caps(CapsCommand::Set { caps }) => {
            let caps = caps
                .iter()
                .map(|cap| parse_cap(cap))
                .collect::<anyhow::Result<Vec<_>>>()?;
            client.set_caps(caps).await
        }
    }
}

async fn plugin_command(client: &client::Client, command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New(_) => unreachable!("run before a client is made"),
        PluginCommand::Push { name, file, tag } => {
            let version = client.push_plugin(&name, &file).await?;
            if let Some(tag) = tag {
                client
                    .set_tag(&name, &tag, serde_json::json!({ "version": version }))
                    .await?;
            }
            Ok(())
        }
        PluginCommand::Grant {
            name,
            hosts,
            secrets,
            timeout,
        } => {
            let mut references = serde_json::Map::new();
            for pair in secrets {
                let Some((secret, reference)) = pair.split_once('=') else {
                    anyhow::bail!(
                        "--secret takes NAME=env:VARIABLE or NAME=file:PATH, not `{pair}`"
                    );
                };
                references.insert(secret.to_owned(), reference.into());
            }
            let mut body = serde_json::json!({ "hosts": hosts, "secrets": references });
            if let Some(timeout) = timeout {
                body["timeout_ms"] = (timeout.as_millis() as u64).into();
            }
            client.grant_plugin(&name, &body).await
        }
        PluginCommand::Tag { name, tag, version } => {
            client
                .set_tag(&name, &tag, serde_json::json!({ "version": version }))
                .await
        }
        PluginCommand::Rollout {
            name,
            tag,
            version,
            percent,
            max_error_rate,
            min_runs,
        } => {
            let current = client.tag_version(&name, &tag).await?;
            let rollback = max_error_rate
                .zip(min_runs)
                .map(|(max_error_rate, min_runs)| {
                    serde_json::json!({ "max_error_rate": max_error_rate, "min_runs": min_runs })
                });
            let mut canary = serde_json::json!({ "version": version, "percent": percent });
            if let Some(rollback) = rollback {
                canary["rollback"] = rollback;
            }
            client
                .set_tag(
                    &name,
                    &tag,
                    serde_json::json!({ "version": current, "canary": canary }),
                )
                .await
        }
        PluginCommand::Rollback { name, tag, reason } => {
            client.roll_back(&name, &tag, reason).await
        }
        PluginCommand::List => client.list_plugins().await,
        PluginCommand::Show { name } => client.show_plugin(&name).await,
    }
}
