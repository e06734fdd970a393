//! Readable rendering of instances, timelines and messages for the CLI.

use std::fmt::Write as _;

use serde_json::Value;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

fn short_digest(digest: &Value) -> String {
    digest.as_str().map_or_else(String::new, |digest| {
        format!("sha256:{}", digest.get(..12).unwrap_or(digest))
    })
}

/// One line per instance: id, journey, customer, status.
pub fn summary(instance: &Value) -> String {
    let mut status = text(&instance["status"]).to_owned();
    if let Some(terminal) = instance["terminal"].as_str() {
        status = format!("{status} ({terminal})");
    }
    if let Some(step) = instance["current_step"].as_str() {
        status = format!("{status} at {step}");
    }
    format!(
        "i-{:<6} {} v{}  customer {}  {}",
        instance["id"],
        text(&instance["journey"]),
        instance["journey_version"],
        text(&instance["customer_id"]),
        status
    )
}

/// One line per outbox message.
pub fn message_line(message: &Value) -> String {
    let to = match message["to"].as_str() {
        Some("") | None => "customer".to_owned(),
        Some(to) => to.to_owned(),
    };
    let subject = match message["subject"].as_str() {
        Some("") | None => String::new(),
        Some(subject) => format!("[{subject}] "),
    };
    format!(
        "{} to {}: {}{}",
        text(&message["channel"]),
        to,
        subject,
        text(&message["body"]).replace('\n', " ")
    )
}

/// One line per message and its delivery: id, status, attempts, channel,
/// recipient, and the last error or the provider's id.
pub fn delivery_line(message: &Value, delivery: &Value) -> String {
    let to = match message["to"].as_str() {
        Some("") | None => "customer".to_owned(),
        Some(to) => to.to_owned(),
    };
    let detail = match (delivery["error"].as_str(), delivery["provider_id"].as_str()) {
        (Some(error), _) => format!("  {error}"),
        (None, Some(provider_id)) => format!("  provider id {provider_id}"),
        (None, None) => String::new(),
    };
    format!(
        "{:<16} {:<9} {} attempt(s)  {} to {}{}",
        text(&message["id"]),
        text(&delivery["status"]),
        delivery["attempts"].as_u64().unwrap_or(0),
        text(&message["channel"]),
        to,
        detail
    )
}

/// An instance and its whole timeline, times relative to its start.
/// A time since the instance started, readable from milliseconds to days:
/// `+250ms`, `+4.2s`, `+12m05s`, `+3h20m`, `+2d04h`.
pub fn offset(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        0..1_000 => format!("+{ms}ms"),
        1_000..MINUTE => format!("+{:.1}s", ms as f64 / 1000.0),
        MINUTE..HOUR => format!("+{}m{:02}s", ms / MINUTE, ms % MINUTE / 1000),
        HOUR..DAY => format!("+{}h{:02}m", ms / HOUR, ms % HOUR / MINUTE),
        _ => format!("+{}d{:02}h", ms / DAY, ms % DAY / HOUR),
    }
}

pub fn render(view: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(view));
    if let Some(failure) = view["failure"].as_str() {
        let _ = writeln!(out, "  failure: {failure}");
    }
    let start = view["created_at_ms"].as_u64().unwrap_or(0);
    let messages: Vec<&Value> = view["messages"].as_array().into_iter().flatten().collect();
    for entry in view["history"].as_array().into_iter().flatten() {
        let at = offset(
            entry["at_ms"]
                .as_u64()
                .unwrap_or(start)
                .saturating_sub(start),
        );
        match text(&entry["type"]) {
            "event_received" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  event   {} ({})",
                    text(&entry["kind"]),
                    text(&entry["event_id"])
                );
            }
            "step_ran" | "step_failed" => {
                let outcome = &entry["outcome"];
                let result = match text(&outcome["kind"]) {
                    "goto" => format!(
                        "{} → {}",
                        text(&outcome["transition"]),
                        text(&outcome["target"])
                    ),
                    "complete" => "complete".to_owned(),
                    "wait_for_event" => format!(
                        "wait for {} ({}) until {}: {} → {}, else {} → {}",
                        text(&outcome["event"]),
                        text(&outcome["correlation"]),
                        offset(
                            outcome["until_ms"]
                                .as_u64()
                                .unwrap_or(start)
                                .saturating_sub(start)
                        ),
                        text(&outcome["on_event"]),
                        text(&outcome["event_target"]),
                        text(&outcome["on_timeout"]),
                        text(&outcome["timeout_target"])
                    ),
                    "sleep" => {
                        let since_start = |field: &str| {
                            offset(
                                outcome[field]
                                    .as_u64()
                                    .unwrap_or(start)
                                    .saturating_sub(start),
                            )
                        };
                        let quiet =
                            match (outcome["window"].as_str(), outcome["requested_ms"].is_u64()) {
                                (Some(window), true) => format!(
                                    " (asked {}, moved out of quiet hours into {window})",
                                    since_start("requested_ms")
                                ),
                                (Some(window), false) => format!(" (inside {window})"),
                                _ => String::new(),
                            };
                        format!(
                            "sleep until {}{quiet}, then {} → {}",
                            since_start("until_ms"),
                            text(&outcome["transition"]),
                            text(&outcome["target"])
                        )
                    }
                    "fail" => match entry["retry_at_ms"].as_u64() {
                        Some(retry_at) => format!(
                            "attempt failed: {}; retried at {}",
                            text(&outcome["reason"]),
                            offset(retry_at.saturating_sub(start))
                        ),
                        None => format!("FAILED: {}", text(&outcome["reason"])),
                    },
                    other => other.to_owned(),
                };
                let attempt = match entry["attempt"].as_u64() {
                    Some(attempt) if attempt > 1 => format!(" attempt {attempt}"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {at:>9}  step    {:<12} {}@{} {} {:.2}ms{attempt}  {result}",
                    text(&entry["step"]),
                    text(&entry["plugin"]),
                    entry["plugin_version"],
                    short_digest(&entry["digest"]),
                    entry["duration_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
                );
                for line in entry["logs"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "              log     {}: {}",
                        text(&line["level"]),
                        text(&line["message"])
                    );
                }
                for id in entry["messages"].as_array().into_iter().flatten() {
                    if let Some(message) = messages.iter().find(|message| message["id"] == *id) {
                        let _ = writeln!(out, "              message {}", message_line(message));
                        let delivery = &view["deliveries"][text(id)];
                        if let Some(status) = delivery["status"].as_str() {
                            let last = delivery["log"]
                                .as_array()
                                .and_then(|log| log.last())
                                .and_then(|line| line["note"].as_str())
                                .map_or_else(String::new, |note| format!(": {note}"));
                            let _ = writeln!(
                                out,
                                "                      {status} after {} attempt(s){last}",
                                delivery["attempts"].as_u64().unwrap_or(0)
                            );
                        }
                    }
                }
                for capped in entry["capped"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "              capped  {} \"{}\": over {} per {}",
                        text(&capped["channel"]),
                        text(&capped["subject"]),
                        capped["limit"],
                        offset(capped["period_ms"].as_u64().unwrap_or(0))
                    );
                }
            }
            "restarted" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  restart {:<12} attempt {} interrupted by a restart; runs again",
                    text(&entry["step"]),
                    entry["attempt"]
                );
            }
            "retried" | "skipped" | "cancelled" => {
                let what = match entry["type"].as_str() {
                    Some("retried") => format!(
                        "retried at {}{}",
                        text(&entry["step"]),
                        entry["plugin"]
                            .as_str()
                            .map(|plugin| format!(" on {plugin}"))
                            .unwrap_or_default()
                    ),
                    Some("skipped") => format!(
                        "skipped {}to {}",
                        entry["from_step"]
                            .as_str()
                            .map(|step| format!("from {step} "))
                            .unwrap_or_default(),
                        text(&entry["to_step"])
                    ),
                    _ => format!(
                        "cancelled{}",
                        entry["step"]
                            .as_str()
                            .map(|step| format!(" at {step}"))
                            .unwrap_or_default()
                    ),
                };
                let _ = writeln!(
                    out,
                    "  {at:>9}  operator {what}: {}",
                    text(&entry["reason"])
                );
            }
            "split" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  split   {:<12} variant {} → {}",
                    text(&entry["step"]),
                    text(&entry["variant"]),
                    text(&entry["target"])
                );
            }
            "event_arrived" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  event   {} ({}) ended the wait",
                    text(&entry["kind"]),
                    text(&entry["event_id"])
                );
            }
            "woke" => {
                let late = entry["at_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(entry["due_ms"].as_u64().unwrap_or(0));
                let _ = writeln!(out, "  {at:>9}  woke    (timer, {late} ms late)");
            }
            "exited" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  exited  {} ({}){}",
                    text(&entry["kind"]),
                    text(&entry["event_id"]),
                    entry["step"]
                        .as_str()
                        .map(|step| format!(" before step {step}"))
                        .unwrap_or_default()
                );
            }
            "migrated" => {
                let _ = writeln!(
                    out,
                    "  {at:>9}  migrated v{} → v{} ({} → {})",
                    entry["from_version"],
                    entry["to_version"],
                    text(&entry["from_step"]),
                    text(&entry["to_step"])
                );
            }
            other => {
                let _ = writeln!(out, "  {at:>9}  {other}");
            }
        }
    }
    out
}
