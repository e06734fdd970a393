//! `journeyd step run`: one step of a plugin in the real sandbox (the same
//! host, limits and contract checks as `journeyd serve`) with a fake host
//! behind it: the customer view from a file, frequency caps from the
//! input, no outbound requests, no server and no store. For plugin
//! authors: what a step does, before it is pushed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use journey_runtime::host::{
    Admission, CustomerSource, Event, FrequencyCap, Host, HostFault, Limits, SendPolicy, StepInput,
    StepRequest,
};
use journey_runtime::store::{self, CustomerView, Customers, SendReservation};

/// Arguments of `journeyd step run`.
#[derive(Debug, Args)]
pub struct StepRunArgs {
    /// The step plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// The step's input, a JSON object with any of: `journey`, `step`,
    /// `config` and `state` (objects), `event` (`kind`, `data`, `id`),
    /// `attempt`, `now_ms`, and `caps` (channel → messages its frequency
    /// cap still allows; other channels are uncapped).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The customer the step sees, a JSON object: `id`, `profile`, and
    /// optionally `interactions`, `channels` and `engagement` as
    /// `GET /v1/customers/{id}` returns them.
    #[arg(long)]
    pub customer: Option<PathBuf>,
    /// Print the result as one JSON object instead.
    #[arg(long)]
    pub json: bool,
    /// How long the step may run, ms.
    #[arg(long, default_value_t = 2000)]
    pub deadline_ms: u64,
    /// Where compiled plugin code is kept between runs, so running the
    /// same component again starts at once (default: `journeyd/compiled`
    /// in the user's cache directory, `$XDG_CACHE_HOME` or `~/.cache`).
    #[arg(long, env = "JOURNEYD_COMPILED_CACHE")]
    pub compiled_cache: Option<PathBuf>,
}

/// The user's cache of compiled plugin code, when there is a home.
fn default_compiled_cache() -> Option<PathBuf> {
    let home = |var: &str| std::env::var_os(var).filter(|value| !value.is_empty());
    let base = home("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("journeyd").join("compiled"))
}

/// The input file; every field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct InputFile {
    journey: String,
    step: String,
    config: serde_json::Map<String, Value>,
    state: serde_json::Map<String, Value>,
    event: EventFile,
    attempt: u32,
    now_ms: Option<u64>,
    caps: BTreeMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EventFile {
    id: String,
    kind: String,
    data: serde_json::Map<String, Value>,
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// One customer, read from a file: the view every step sees.
struct FixedCustomer(CustomerView);

impl Customers for FixedCustomer {
    fn put_customer(&self, _: &str, _: &Value) -> store::Result<()> {
        Ok(())
    }

    fn customer_view(
        &self,
        _: &str,
        limit: usize,
        kinds: &[String],
    ) -> store::Result<CustomerView> {
        let mut view = self.0.clone();
        let matching: Vec<_> = view
            .interactions
            .into_iter()
            .filter(|interaction| kinds.is_empty() || kinds.contains(&interaction.kind))
            .collect();
        view.interactions = matching[matching.len().saturating_sub(limit)..].to_vec();
        Ok(view)
    }

    fn sent_since(&self, _: &str, _: &str, _: u64) -> store::Result<Vec<u64>> {
        Ok(Vec::new())
    }

    fn reserve_send(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: u64,
        _: u32,
    ) -> store::Result<SendReservation> {
        Ok(SendReservation::Reserved)
    }

    fn release_send(&self, _: &str, _: &str, _: u64) -> store::Result<()> {
        Ok(())
    }
}

/// Frequency caps as the input file gives them: messages still allowed
/// per channel.
struct FakeCaps(Mutex<BTreeMap<String, u32>>);

impl SendPolicy for FakeCaps {
    fn admit(&self, _: &str, channel: &str, _: &str, now_ms: u64) -> Result<Admission, HostFault> {
        let mut caps = self.0.lock().expect("the caps lock is never poisoned");
        Ok(match caps.get_mut(channel) {
            None => Admission::Uncapped,
            Some(0) => Admission::Capped(FrequencyCap {
                channel: channel.to_owned(),
                limit: 0,
                period_ms: 86_400_000,
                next_allowed_ms: now_ms + 86_400_000,
            }),
            Some(left) => {
                *left -= 1;
                Admission::Counted
            }
        })
    }
}

/// The customer file, with what it leaves out filled in.
fn customer_view(path: Option<&Path>) -> anyhow::Result<CustomerView> {
    let mut file: serde_json::Map<String, Value> = read_json(path)?;
    file.entry("id").or_insert_with(|| json!("c-1"));
    file.entry("profile").or_insert_with(|| json!({}));
    for list in ["interactions", "channels", "engagement"] {
        file.entry(list).or_insert_with(|| json!([]));
    }
    let what = path.map_or("the customer".into(), |path| path.display().to_string());
    serde_json::from_value(Value::Object(file))
        .with_context(|| format!("{what} is not a customer view"))
}

pub async fn step_run(args: StepRunArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("reading {}", args.plugin.display()))?;
    let input: InputFile = read_json(args.input.as_deref())?;
    let customer = customer_view(args.customer.as_deref())?;
    let name = args
        .plugin
        .file_stem()
        .map_or("plugin".into(), |stem| stem.to_string_lossy().into_owned());
    let limits = Limits {
        deadline: std::time::Duration::from_millis(args.deadline_ms),
        ..Limits::default()
    };
    let json_output = args.json;
    let cache = args.compiled_cache.clone().or_else(default_compiled_cache);
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Value> {
        let host =
            Host::new(limits, cache.as_deref()).map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let plugin = host
            .check(&bytes)
            .map_err(|error| anyhow::anyhow!("{} is refused: {error}", args.plugin.display()))?;
        anyhow::ensure!(
            !plugin.is_channel(),
            "{} is a channel plugin: `journeyd step run` runs step plugins",
            args.plugin.display()
        );
        let now_ms = input.now_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64)
        });
        let or = |text: String, default: &str| {
            if text.is_empty() {
                default.to_owned()
            } else {
                text
            }
        };
        let step = or(input.step, "step");
        let request = StepRequest {
            input: StepInput {
                journey: or(input.journey, "try"),
                journey_version: 1,
                instance_id: "i-1".into(),
                step: step.clone(),
                event: Event {
                    id: or(input.event.id, "evt-1"),
                    kind: or(input.event.kind, "try.run"),
                    customer_id: customer.id.clone(),
                    data: Value::Object(input.event.data).to_string(),
                    received_at_ms: now_ms,
                },
                state: Value::Object(input.state).to_string(),
                config: Value::Object(input.config).to_string(),
                attempt: input.attempt.max(1),
                idempotency_key: format!("i-1/{step}/1"),
            },
            customer: CustomerSource {
                customer_id: customer.id.clone(),
                customers: Arc::new(FixedCustomer(customer)),
            },
            now_ms,
            deadline: None,
            sends: Arc::new(FakeCaps(Mutex::new(input.caps))),
            plugin: name,
            http: None,
        };
        let run = host.run_step(&plugin, request);
        Ok(report(&run))
    })
    .await??;
    if json_output {
        println!("{result}");
    } else {
        print_report(&result);
    }
    if result["error"].is_string() {
        std::process::exit(1);
    }
    Ok(())
}

/// What the run did, as JSON.
fn report(run: &journey_runtime::host::StepRun) -> Value {
    use journey_runtime::host::Outcome;
    let parse =
        |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.into()));
    let outcome = run
        .result
        .as_ref()
        .ok()
        .map(|output| match &output.outcome {
            Outcome::Goto(transition) => json!({ "goto": transition }),
            Outcome::Complete => json!("complete"),
            Outcome::Fail(reason) => json!({ "fail": reason }),
            Outcome::WaitForEvent(wait) => json!({ "wait_for_event": {
                "kind": wait.kind, "timeout_ms": wait.timeout_ms,
                "on_event": wait.on_event, "on_timeout": wait.on_timeout,
            }}),
            Outcome::SleepUntil(sleep) => json!({ "sleep_until": {
                "until_ms": sleep.until_ms, "then": sleep.then,
                "window": sleep.window.as_ref().map(|window| json!({
                    "from_minute": window.from_minute, "to_minute": window.to_minute,
                    "time_zone": window.time_zone,
                })),
            }}),
        });
    let state = run
        .result
        .as_ref()
        .ok()
        .and_then(|output| output.state.as_deref())
        .map(parse);
    let effects = &run.effects;
    let committed = run.result.is_ok();
    json!({
        "outcome": outcome,
        "error": run.result.as_ref().err().map(ToString::to_string),
        "state": state,
        "messages": effects.messages.iter().filter(|_| committed).map(|queued| json!({
            "id": queued.id, "channel": queued.message.channel, "to": queued.message.to,
            "subject": queued.message.subject, "body": queued.message.body,
            "metadata": parse(&queued.message.metadata),
        })).collect::<Vec<_>>(),
        "capped": effects.capped.iter().map(|capped| json!({
            "channel": capped.message.channel, "body": capped.message.body,
        })).collect::<Vec<_>>(),
        "notes": effects.notes.iter().filter(|_| committed).map(|note| json!({
            "channel": note.interaction.channel, "kind": note.interaction.kind,
            "text": note.interaction.text, "details": parse(&note.interaction.details),
        })).collect::<Vec<_>>(),
        "metrics": effects.metrics.iter().filter(|_| committed).map(|sample| json!({
            "name": sample.name, "value": sample.value,
        })).collect::<Vec<_>>(),
        "logs": effects.logs.iter().map(|line| json!({
            "level": line.level, "message": line.message,
        })).collect::<Vec<_>>(),
        "duration_ms": (run.duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
    })
}

/// An outcome in words.
fn describe_outcome(outcome: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    if let Some(transition) = outcome.get("goto") {
        return format!("goto {}", text(transition));
    }
    if let Some(reason) = outcome.get("fail") {
        return format!("fail the instance: {}", text(reason));
    }
    if let Some(wait) = outcome.get("wait_for_event") {
        return format!(
            "wait up to {} ms for `{}`: then {}, else {}",
            wait["timeout_ms"],
            text(&wait["kind"]),
            text(&wait["on_event"]),
            text(&wait["on_timeout"])
        );
    }
    if let Some(sleep) = outcome.get("sleep_until") {
        return format!(
            "sleep until {} ms, then {}",
            sleep["until_ms"],
            text(&sleep["then"])
        );
    }
    text(outcome)
}

fn print_report(result: &Value) {
    let list = |key: &str| result[key].as_array().cloned().unwrap_or_default();
    println!("ran in {} ms", result["duration_ms"]);
    match result["error"].as_str() {
        Some(error) => println!("FAILED (the attempt's effects are dropped): {error}"),
        None => println!("outcome: {}", describe_outcome(&result["outcome"])),
    }
    if !result["state"].is_null() {
        println!("state: {}", result["state"]);
    }
    for message in list("messages") {
        let to = match message["to"].as_str() {
            Some("") | None => "the customer".to_owned(),
            Some(to) => to.to_owned(),
        };
        println!(
            "message {} to {to}: {} ({})",
            message["channel"].as_str().unwrap_or_default(),
            message["body"],
            message["id"].as_str().unwrap_or_default()
        );
    }
    for capped in list("capped") {
        println!(
            "refused by the {} frequency cap: {}",
            capped["channel"].as_str().unwrap_or_default(),
            capped["body"]
        );
    }
    for note in list("notes") {
        println!(
            "note {}/{}: {} {}",
            note["channel"].as_str().unwrap_or_default(),
            note["kind"].as_str().unwrap_or_default(),
            note["text"],
            note["details"]
        );
    }
    for sample in list("metrics") {
        println!(
            "metric {} += {}",
            sample["name"].as_str().unwrap_or_default(),
            sample["value"]
        );
    }
    for line in list("logs") {
        println!(
            "log {}: {}",
            line["level"].as_str().unwrap_or_default(),
            line["message"].as_str().unwrap_or_default()
        );
    }
}
