//! The HTTP client behind the CLI's subcommands.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::SendArgs;
use super::timeline;

pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// Turn an API error body into a readable error.
async fn check(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => bail!("{message} [{code}, HTTP {status}]"),
        _ => bail!("HTTP {status}"),
    }
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

impl Client {
    /// A client of the journeyd at `base`, sending `token` with every
    /// request.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = token.and_then(|token| {
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).ok()
        }) {
            let mut value = value;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("a client without TLS roots to load builds"),
        }
    }

    /// The HTTP client, for requests the helpers below do not cover.
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL of the API path made of `segments`, each percent-encoded:
    /// an id such as `c-1?note=1` or `a/b` stays one path segment.
    pub(super) fn url(&self, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.base).with_context(|| {
            format!(
                "`{}` is not a URL: give journeyd's address with --server or JOURNEYD_URL",
                self.base
            )
        })?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("`{}` cannot be a base URL", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    pub(super) async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(segments)?)).await
    }

    pub(super) async fn post_json(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(segments)?).json(body))
            .await
    }

    pub(super) async fn put_json(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(segments)?).json(body))
            .await
    }

    pub(super) async fn delete(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(segments)?)).await
    }

    pub(super) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot reach journeyd at {} ({error}); is it running? Give its address with --server or JOURNEYD_URL",
                self.base
            )
        })?;
        check(response).await
    }

    pub async fn deploy_journey(&self, file: &Path) -> anyhow::Result<()> {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let body = self
            .send(
                self.http
                    .post(self.url(&["v1", "journeys"])?)
                    .query(&[("file", name)])
                    .body(read(file)?),
            )
            .await?;
        println!(
            "deployed journey {} v{} (trigger {}; steps {})",
            body["name"].as_str().unwrap_or("?"),
            body["version"],
            body["trigger"].as_str().unwrap_or("?"),
            body["steps"]
                .as_array()
                .map(|steps| steps
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" → "))
                .unwrap_or_default()
        );
        Ok(())
    }

    pub async fn list_journeys(&self) -> anyhow::Result<()> {
        let body = self.get(&["v1", "journeys"]).await?;
        for journey in body["journeys"].as_array().into_iter().flatten() {
            println!(
                "{} v{}",
                journey["name"].as_str().unwrap_or("?"),
                journey["version"]
            );
        }
        Ok(())
    }

    pub async fn show_clock(&self) -> anyhow::Result<()> {
        let clock = self.get(&["v1", "clock"]).await?;
        println!("{}", clock_line(&clock));
        Ok(())
    }

    pub async fn advance_clock(&self, body: Value) -> anyhow::Result<()> {
        let clock = self.post_json(&["v1", "clock", "advance"], &body).await?;
        let settled = if clock["settled"].as_bool() == Some(false) {
            " (still busy: timers or steps are running)"
        } else {
            ""
        };
        println!("{}{settled}", clock_line(&clock));
        Ok(())
    }

    pub async fn show_caps(&self) -> anyhow::Result<()> {
        print_caps(&self.get(&["v1", "frequency-caps"]).await?);
        Ok(())
    }

    pub async fn set_caps(&self, caps: Vec<Value>) -> anyhow::Result<()> {
        let body = self
            .put_json(&["v1", "frequency-caps"], &json!({ "caps": caps }))
            .await?;
        print_caps(&body);
        Ok(())
    }

    pub async fn show_funnel(&self, name: &str) -> anyhow::Result<()> {
        let report = self.get(&["v1", "journeys", name, "funnel"]).await?;
        println!("journey {name}: {} instances", report["instances"]);
        for (variant, lines) in report["variants"].as_object().into_iter().flatten() {
            if variant != "-" {
                println!("variant {variant}");
            }
            println!(
                "  {:<24} {:>8} {:>8} {:>10} {:>8} {:>7} {:>10}",
                "step", "reached", "waiting", "completed", "failed", "exited", "cancelled"
            );
            for line in lines.as_array().into_iter().flatten() {
                let count = |field: &str| line[field].as_u64().unwrap_or(0);
                println!(
                    "  {:<24} {:>8} {:>8} {:>10} {:>8} {:>7} {:>10}",
                    line["step"].as_str().unwrap_or("?"),
                    count("reached"),
                    count("waiting"),
                    count("completed_here"),
                    count("failed_here"),
                    count("exited_here"),
                    count("cancelled_here"),
                );
            }
        }
        Ok(())
    }

    pub async fn migrate_journey(&self, name: &str, body: Value) -> anyhow::Result<()> {
        let record = self
            .post_json(&["v1", "journeys", name, "migrations"], &body)
            .await?;
        println!(
            "journey {name}: running instances of v{} move to v{} at their next step",
            record["from_version"], record["to_version"]
        );
        for (old, new) in record["steps"].as_object().into_iter().flatten() {
            println!("  {old} → {}", new.as_str().unwrap_or("?"));
        }
        Ok(())
    }

    /// Push a plugin; returns the version it became.
    pub async fn push_plugin(&self, name: &str, file: &Path) -> anyhow::Result<u64> {
        let body = self
            .send(
                self.http
                    .put(self.url(&["v1", "plugins", name])?)
                    .body(read(file)?),
            )
            .await?;
        println!(
            "pushed plugin {name} v{} sha256:{} ({} KiB)",
            body["version"],
            body["digest"].as_str().unwrap_or("?"),
            body["size"].as_u64().unwrap_or(0) / 1024
        );
        body["version"]
            .as_u64()
            .context("the push answer has no version")
    }

    pub async fn set_tag(&self, name: &str, tag: &str, body: Value) -> anyhow::Result<()> {
        let answer = self
            .put_json(&["v1", "plugins", name, "tags", tag], &body)
            .await?;
        println!("{}", tag_line(&answer));
        Ok(())
    }

    /// The version a tag points at (its stable side during a rollout).
    pub async fn tag_version(&self, name: &str, tag: &str) -> anyhow::Result<u64> {
        let plugin = self.get(&["v1", "plugins", name]).await?;
        plugin["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|known| known["tag"] == tag)
            .and_then(|known| known["version"].as_u64())
            .with_context(|| {
                format!("plugin `{name}` has no tag `{tag}` yet: point it at a version first (journeyd plugin tag {name} {tag} VERSION)")
            })
    }

    pub async fn roll_back(
        &self,
        name: &str,
        tag: &str,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        let answer = self
            .send(
                self.http
                    .post(format!(
                        "{}/v1/plugins/{name}/tags/{tag}/rollback",
                        self.base
                    ))
                    .json(&body),
            )
            .await?;
        println!("{}", tag_line(&answer));
        Ok(())
    }

    pub async fn grant_plugin(&self, name: &str, body: &Value) -> anyhow::Result<()> {
        let answer = self
            .put_json(&["v1", "plugins", name, "grant"], body)
            .await?;
        match answer["grant"]["hosts"].as_array() {
            Some(hosts) => println!(
                "plugin {name} may reach {}",
                hosts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => println!("plugin {name} may reach no host"),
        }
        Ok(())
    }

    pub async fn list_plugins(&self) -> anyhow::Result<()> {
        let body = self.get(&["v1", "plugins"]).await?;
        print_versions(&body["plugins"]);
        for tag in body["tags"].as_array().into_iter().flatten() {
            println!("{}", tag_line(tag));
        }
        Ok(())
    }

    pub async fn show_plugin(&self, name: &str) -> anyhow::Result<()> {
        let body = self.get(&["v1", "plugins", name]).await?;
        print_versions(&body["versions"]);
        for tag in body["tags"].as_array().into_iter().flatten() {
            println!("{}", tag_line(tag));
        }
        println!("tag changes:");
        for change in body["tag_changes"].as_array().into_iter().flatten() {
            println!(
                "  {}  {}",
                change["changed_at_ms"],
                tag_line(change).trim_start()
            );
        }
        Ok(())
    }

    pub async fn send_events(&self, args: SendArgs) -> anyhow::Result<()> {
        let events: Vec<Value> = match &args.file {
            Some(file) => match serde_json::from_slice(&read(file)?)
                .with_context(|| format!("{}: not JSON", file.display()))?
            {
                Value::Array(events) => events,
                event => vec![event],
            },
            None => {
                let data: Value = serde_json::from_str(args.data.as_deref().unwrap_or("{}"))
                    .context("--data is not JSON")?;
                let id = args.id.clone().unwrap_or_else(|| {
                    let nanos = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |elapsed| elapsed.as_nanos());
                    format!("evt-{nanos}")
                });
                vec![
                    json!({ "id": id, "type": args.kind, "customer": args.customer, "data": data }),
                ]
            }
        };
        for event in events {
            let receipt = self.post_json(&["v1", "events"], &event).await?;
            let instances = print_receipt(&event, &receipt);
            if args.wait {
                for id in instances {
                    self.show_instance(&id, 30_000, false).await?;
                }
            }
        }
        Ok(())
    }

    /// Send timed events on a simulated clock: the moments of every file,
    /// in time order; before each, the clock moves to its time (timer by
    /// timer, letting the runtime settle), then its events are sent.
    pub async fn replay(&self, files: &[std::path::PathBuf]) -> anyhow::Result<()> {
        let mut moments = Vec::new();
        for file in files {
            let text = read(file)?;
            let list: Vec<Moment> = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{}: not a list of moments {{\"at\", \"note\", \"events\"}}",
                    file.display()
                )
            })?;
            for moment in list {
                let at = super::parse_time(&moment.at)
                    .with_context(|| format!("{}: moment `{}`", file.display(), moment.at))?;
                moments.push((at, moment));
            }
        }
        moments.sort_by_key(|(at, _)| *at);
        for (at, moment) in moments {
            let clock = self
                .post_json(
                    &["v1", "clock", "advance"],
                    &json!({ "to_ms": at, "settle_ms": 30_000 }),
                )
                .await
                .or_else(|error| {
                    // A moment at or before the current time happens now.
                    if error.to_string().contains("clock_backwards") {
                        Ok(Value::Null)
                    } else {
                        Err(error)
                    }
                })?;
            if clock["settled"].as_bool() == Some(false) {
                eprintln!(
                    "warning: the runtime was still busy when the clock reached {}",
                    moment.at
                );
            }
            println!("\n── {} · {}", moment.at, moment.note);
            for event in moment.events {
                let receipt = self.post_json(&["v1", "events"], &event).await?;
                print_receipt(&event, &receipt);
            }
        }
        Ok(())
    }

    pub async fn show_instance(&self, id: &str, wait_ms: u64, raw: bool) -> anyhow::Result<()> {
        let body = self
            .send(
                self.http
                    .get(self.url(&["v1", "instances", id])?)
                    .query(&[("wait_ms", wait_ms)]),
            )
            .await?;
        if raw {
            println!("{}", serde_json::to_string_pretty(&body)?);
        } else {
            print!("{}", timeline::render(&body));
        }
        Ok(())
    }

    pub async fn list_instances(
        &self,
        journey: Option<String>,
        status: Option<String>,
        limit: usize,
        timelines: bool,
    ) -> anyhow::Result<()> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(journey.map(|journey| ("journey", journey)));
        query.extend(status.map(|status| ("status", status)));
        let body = self
            .send(self.http.get(self.url(&["v1", "instances"])?).query(&query))
            .await?;
        for instance in body["instances"].as_array().into_iter().flatten() {
            match (timelines, instance["id"].as_u64()) {
                (true, Some(id)) => {
                    self.show_instance(&format!("i-{id}"), 0, false).await?;
                    println!();
                }
                _ => println!("{}", timeline::summary(instance)),
            }
        }
        Ok(())
    }

    /// An operator's action on one instance or a journey's instances.
    pub async fn instance_action(
        &self,
        action: &str,
        target: super::ActionTarget,
        mut body: serde_json::Map<String, Value>,
    ) -> anyhow::Result<()> {
        if let Some(reason) = target.reason {
            body.insert("reason".into(), reason.into());
        }
        match (target.id, target.journey) {
            (Some(id), _) => {
                let answer = self
                    .post_json(&["v1", "instances", &id, action], &Value::Object(body))
                    .await?;
                println!("{action}: {}", timeline::summary(&answer["instance"]));
            }
            (None, Some(journey)) => {
                if let Some(step) = &target.step {
                    body.insert("step".into(), step.clone().into());
                }
                body.insert("dry_run".into(), target.dry_run.into());
                let outcome = self
                    .post_json(
                        &["v1", "journeys", &journey, "instances", action],
                        &Value::Object(body),
                    )
                    .await?;
                let at = target
                    .step
                    .map(|step| format!(" at step {step}"))
                    .unwrap_or_default();
                let matched = outcome["matched"].as_u64().unwrap_or(0);
                if target.dry_run {
                    println!(
                        "{action} would apply to {matched} instances of {journey}{at} (dry run: nothing changed)"
                    );
                    return Ok(());
                }
                let ids = |list: &Value| -> Vec<String> {
                    list.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|id| id.as_u64().or_else(|| id[0].as_u64()))
                        .map(|id| format!("i-{id}"))
                        .collect()
                };
                let changed = ids(&outcome["changed"]);
                println!(
                    "{action}: {} of {matched} instances of {journey}{at}: {}",
                    changed.len(),
                    changed.join(", ")
                );
                for refused in outcome["refused"].as_array().into_iter().flatten() {
                    println!(
                        "    not changed: i-{}: {}",
                        refused[0],
                        refused[1].as_str().unwrap_or("?")
                    );
                }
            }
            (None, None) => bail!("give an instance id or --journey"),
        }
        Ok(())
    }

    pub async fn list_outbox(&self, instance: Option<String>, limit: usize) -> anyhow::Result<()> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(instance.map(|instance| ("instance", instance)));
        let body = self
            .send(self.http.get(self.url(&["v1", "outbox"])?).query(&query))
            .await?;
        for message in body["messages"].as_array().into_iter().flatten() {
            let status = body["deliveries"][message["id"].as_str().unwrap_or_default()]["status"]
                .as_str()
                .unwrap_or("queued");
            println!("{status:<9} {}", timeline::message_line(message));
        }
        Ok(())
    }
}

fn print_versions(versions: &Value) {
    println!(
        "{:<16} {:>5}  {:<12} {:>8} {:>8} {:>8} {:>8}",
        "plugin", "ver", "digest", "runs", "failed", "p50 µs", "p99 µs"
    );
    for version in versions.as_array().into_iter().flatten() {
        let digest = version["digest"].as_str().unwrap_or("?");
        println!(
            "{:<16} {:>5}  {:<12} {:>8} {:>8} {:>8} {:>8}",
            version["name"].as_str().unwrap_or("?"),
            format!("v{}", version["version"]),
            &digest[..digest.len().min(12)],
            version["runs"].as_u64().unwrap_or(0),
            version["failures"].as_u64().unwrap_or(0),
            version["p50_us"]
                .as_u64()
                .map_or("-".into(), |us| us.to_string()),
            version["p99_us"]
                .as_u64()
                .map_or("-".into(), |us| us.to_string()),
        );
    }
}

/// `classify:stable → v2 (v3 for 10%: 4 runs, 0 failed)  why`
fn tag_line(tag: &Value) -> String {
    let mut line = format!(
        "{}:{} → v{}",
        tag["plugin"].as_str().unwrap_or("?"),
        tag["tag"].as_str().unwrap_or("?"),
        tag["version"]
    );
    let canary = &tag["canary"];
    if canary.is_object() {
        line.push_str(&format!(
            " (v{} for {}%",
            canary["version"], canary["percent"]
        ));
        if let (Some(runs), Some(failures)) =
            (tag["canary_runs"].as_u64(), tag["canary_failures"].as_u64())
        {
            line.push_str(&format!(": {runs} runs, {failures} failed"));
        }
        let rule = &canary["rollback"];
        if rule.is_object() {
            line.push_str(&format!(
                "; rolls back above {}% failed after {} runs",
                rule["max_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                rule["min_runs"]
            ));
        }
        line.push(')');
    }
    line.push_str(&format!("  {}", tag["reason"].as_str().unwrap_or("")));
    line
}

/// `clock 2026-12-01T09:00:00Z (simulated)`.
fn clock_line(clock: &Value) -> String {
    let now = clock["now_ms"].as_u64().unwrap_or(0);
    let at = jiff::Timestamp::from_millisecond(now as i64)
        .map_or_else(|_| format!("{now} ms"), |at| at.to_string());
    let kind = if clock["simulated"].as_bool() == Some(true) {
        "simulated"
    } else {
        "system"
    };
    format!("clock {at} ({kind}, {now} ms)")
}

fn print_caps(body: &Value) {
    let caps = body["caps"].as_array().cloned().unwrap_or_default();
    if caps.is_empty() {
        println!("no frequency caps");
    }
    for cap in caps {
        let scope = match cap["journeys"].as_array() {
            Some(journeys) if !journeys.is_empty() => format!(
                " (messages of {})",
                journeys
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => " (every journey)".to_owned(),
        };
        println!(
            "{}: at most {} per {} per customer{scope}",
            cap["channel"].as_str().unwrap_or("?"),
            cap["limit"],
            humantime::format_duration(std::time::Duration::from_millis(
                cap["period_ms"].as_u64().unwrap_or(0)
            ))
        );
    }
}

/// One moment of a replay file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Moment {
    /// When: RFC 3339 or ms since the Unix epoch.
    at: String,
    /// What happens, for the reader.
    #[serde(default)]
    note: String,
    /// The events sent then.
    #[serde(default)]
    events: Vec<Value>,
}

/// Print what the runtime did with one event; returns the instances it
/// started (`i-N`).
fn print_receipt(event: &Value, receipt: &Value) -> Vec<String> {
    let instances: Vec<String> = receipt["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_u64().map(|id| format!("i-{id}")))
        .collect();
    println!(
        "{} event {} ({}, {}) → {}",
        if receipt["duplicate"].as_bool() == Some(true) {
            "duplicate"
        } else {
            "accepted"
        },
        receipt["event_id"].as_str().unwrap_or("?"),
        event["type"].as_str().unwrap_or("?"),
        event["customer"].as_str().unwrap_or("?"),
        if instances.is_empty() {
            "no new instance".to_owned()
        } else {
            format!("started {}", instances.join(", "))
        }
    );
    for skipped in receipt["skipped"].as_array().into_iter().flatten() {
        println!(
            "    not entered: {}: {}",
            skipped["journey"].as_str().unwrap_or("?"),
            skipped["reason"].as_str().unwrap_or("?")
        );
    }
    for id in receipt["exited"].as_array().into_iter().flatten() {
        println!("    exited: i-{id} left its journey (exit rule)");
    }
    instances
}
