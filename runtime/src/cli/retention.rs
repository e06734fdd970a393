//! `journeyd instance purge`: remove a journey's finished instances by
//! hand, in calls of bounded size, with progress and a dry run.

use serde_json::{Value, json};

use super::client::Client;

/// Instances removed per API call.
const PER_CALL: usize = 5_000;

/// Purge the finished instances of `journey` that finished before
/// `before` (RFC 3339 or a date), or only count them.
pub async fn purge(
    client: &Client,
    journey: &str,
    before: &str,
    dry_run: bool,
) -> anyhow::Result<()> {
    let path = ["v1", "journeys", journey, "purge"];
    if dry_run {
        let answer = client
            .post_json(&path, &json!({ "before": before, "dry_run": true }))
            .await?;
        println!(
            "{} finished instances of {journey} finished before {before} (dry run: nothing removed)",
            count(&answer)
        );
        return Ok(());
    }
    let mut purged = 0;
    loop {
        let answer = client
            .post_json(&path, &json!({ "before": before, "limit": PER_CALL }))
            .await?;
        purged += count(&answer);
        if answer["more"].as_bool() != Some(true) {
            break;
        }
        eprintln!("  … {purged} purged so far");
    }
    println!(
        "purged {purged} finished instances of {journey} that finished before {before}, with their history and messages (the funnel keeps their counts)"
    );
    Ok(())
}

fn count(answer: &Value) -> u64 {
    answer["purged"].as_u64().unwrap_or(0)
}
