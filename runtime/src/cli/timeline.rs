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
        text(&message["body"])
    )
}

/// An instance and its whole timeline, times relative to its start.
pub fn render(view: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(view));
    if let Some(failure) = view["failure"].as_str() {
        let _ = writeln!(out, "  failure: {failure}");
    }
    let start = view["created_at_ms"].as_u64().unwrap_or(0);
    let messages: Vec<&Value> = view["messages"].as_array().into_iter().flatten().collect();
    for entry in view["history"].as_array().into_iter().flatten() {
        let at = entry["at_ms"]
            .as_u64()
            .unwrap_or(start)
            .saturating_sub(start);
        match text(&entry["type"]) {
            "event_received" => {
                let _ = writeln!(
                    out,
                    "  +{at:>5}ms  event   {} ({})",
                    text(&entry["kind"]),
                    text(&entry["event_id"])
                );
            }
            "step_ran" => {
                let outcome = &entry["outcome"];
                let result = match text(&outcome["kind"]) {
                    "goto" => format!(
                        "{} → {}",
                        text(&outcome["transition"]),
                        text(&outcome["target"])
                    ),
                    "complete" => "complete".to_owned(),
                    "wait_for_event" => format!(
                        "wait for {} ({}) until +{}ms: {} → {}, else {} → {}",
                        text(&outcome["event"]),
                        text(&outcome["correlation"]),
                        outcome["until_ms"]
                            .as_u64()
                            .unwrap_or(start)
                            .saturating_sub(start),
                        text(&outcome["on_event"]),
                        text(&outcome["event_target"]),
                        text(&outcome["on_timeout"]),
                        text(&outcome["timeout_target"])
                    ),
                    "sleep" => format!(
                        "sleep until +{}ms, then {} → {}",
                        outcome["until_ms"]
                            .as_u64()
                            .unwrap_or(start)
                            .saturating_sub(start),
                        text(&outcome["transition"]),
                        text(&outcome["target"])
                    ),
                    "fail" => format!("FAILED: {}", text(&outcome["reason"])),
                    other => other.to_owned(),
                };
                let attempt = match entry["attempt"].as_u64() {
                    Some(attempt) if attempt > 1 => format!(" attempt {attempt}"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  +{at:>5}ms  step    {:<12} {}@{} {} {:.2}ms{attempt}  {result}",
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
                    }
                }
            }
            "split" => {
                let _ = writeln!(
                    out,
                    "  +{at:>5}ms  split   {:<12} variant {} → {}",
                    text(&entry["step"]),
                    text(&entry["variant"]),
                    text(&entry["target"])
                );
            }
            "event_arrived" => {
                let _ = writeln!(
                    out,
                    "  +{at:>5}ms  event   {} ({}) ended the wait",
                    text(&entry["kind"]),
                    text(&entry["event_id"])
                );
            }
            "woke" => {
                let late = entry["at_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(entry["due_ms"].as_u64().unwrap_or(0));
                let _ = writeln!(out, "  +{at:>5}ms  woke    (timer, {late} ms late)");
            }
            "migrated" => {
                let _ = writeln!(
                    out,
                    "  +{at:>5}ms  migrated v{} → v{} ({} → {})",
                    entry["from_version"],
                    entry["to_version"],
                    text(&entry["from_step"]),
                    text(&entry["to_step"])
                );
            }
            other => {
                let _ = writeln!(out, "  +{at:>5}ms  {other}");
            }
        }
    }
    out
}
