//! Retention on a simulated clock: finished instances go once their
//! journey's retention has passed, with their history and messages,
//! waiting ones stay, and the funnel (with its experiment variants) reads
//! the same before and after. Operators purge by hand with a dry run.

use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// 1 December 2026, 08:00 UTC.
const START_MS: u64 = 1_796_112_000_000;

/// A split: `plain` instances complete at once, `emoji` ones wait ten days
/// for a poke. Finished instances are kept for two days.
fn journey() -> String {
    format!(
        r#"
name = "launch"
terminal = ["done"]
retention = "2d"

[trigger]
event = "launch.signup"
correlation_key = "signup_id"

[[steps]]
name = "subject"
split = {{ plain = 50, emoji = 50 }}
on = {{ plain = "send_plain", emoji = "send_emoji" }}

[[steps]]
name = "send_plain"
plugin = "noop"

[[steps]]
name = "send_emoji"
plugin = "slow"
on = {{ came = "done", late = "done" }}
config = {{ wait_for = "launch.poke", timeout_ms = {}, next = "came", timeout_next = "late" }}
"#,
        10 * DAY_MS
    )
}

fn start(data: &std::path::Path, args: &[&str]) -> Journeyd {
    let start = START_MS.to_string();
    let mut all = vec!["--simulated-clock", "--simulated-clock-start", &start];
    all.extend_from_slice(args);
    let journeyd = Journeyd::start_with(data, &all);
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let (status, body) = journeyd.deploy("launch.toml", &journey());
    assert_eq!(status, 201, "{body}");
    journeyd
}

/// Start `count` instances and let them settle; returns their ids.
fn sign_up(journeyd: &Journeyd, count: usize) -> Vec<u64> {
    let ids = (0..count)
        .map(|n| {
            let (status, receipt) = journeyd.send_event(&json!({
                "id": format!("signup-{n}"), "type": "launch.signup", "customer": format!("c-{n}"),
                "data": { "signup_id": format!("s-{n}") },
            }));
            assert_eq!(status, 202, "{receipt}");
            receipt["instances"][0].as_u64().expect("an instance")
        })
        .collect();
    journeyd.advance_clock_by(0);
    ids
}

fn ids_with_status(journeyd: &Journeyd, status: &str) -> Vec<u64> {
    journeyd.get(&format!(
        "/v1/instances?journey=launch&status={status}&limit=1000"
    ))["instances"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|instance| instance["id"].as_u64().expect("an id"))
        .collect()
}

fn funnel(journeyd: &Journeyd) -> Value {
    journeyd.get("/v1/journeys/launch/funnel")
}

#[test]
fn finished_instances_go_after_their_retention_and_the_funnel_reads_the_same() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = start(data.path(), &["--retention", "30d"]);
    let signed_up = sign_up(&journeyd, 40);
    let completed = ids_with_status(&journeyd, "completed");
    let waiting = ids_with_status(&journeyd, "waiting");
    assert!(
        !completed.is_empty() && !waiting.is_empty(),
        "both variants ran: {completed:?} {waiting:?}"
    );
    assert_eq!(completed.len() + waiting.len(), 40);
    let before = funnel(&journeyd);
    assert_eq!(before["purged"], 0, "{before:#}");
    let outbox_before = journeyd.get(&format!("/v1/outbox?instance=i-{}", completed[0]));

    // A day on: within the journey's two days, nothing goes.
    journeyd.advance_clock_by(DAY_MS);
    assert_eq!(ids_with_status(&journeyd, "completed"), completed);

    // Three days on: the completed ones go (the retention loop hears of
    // the clock's move); the waiting ones stay.
    journeyd.advance_clock_by(2 * DAY_MS);
    assert!(
        journeyd.eventually(Duration::from_secs(30), |journeyd| {
            ids_with_status(journeyd, "completed").is_empty()
        }),
        "the completed instances were purged"
    );
    assert_eq!(ids_with_status(&journeyd, "waiting"), waiting);
    let (status, body) =
        journeyd.request("GET", &format!("/v1/instances/i-{}", completed[0]), None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_instance", "{body}");
    assert!(outbox_before["messages"].is_array(), "{outbox_before}");
    let outbox = journeyd.get(&format!("/v1/outbox?instance=i-{}", completed[0]));
    assert_eq!(outbox["messages"], json!([]), "{outbox}");

    let after = funnel(&journeyd);
    assert_eq!(after["purged"], completed.len(), "{after:#}");
    assert_eq!(after["instances"], before["instances"], "{after:#}");
    assert_eq!(
        after["variants"], before["variants"],
        "the funnel and its variants read the same:\nbefore {before:#}\nafter {after:#}"
    );

    // The waiting ones finish in their turn; after two more days they go
    // too, and the funnel still counts every instance.
    for n in (0..40).filter(|n| waiting.contains(&signed_up[*n])) {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("poke-{n}"), "type": "launch.poke", "customer": format!("c-{n}"),
            "data": { "signup_id": format!("s-{n}") },
        }));
        assert_eq!(status, 202, "{receipt}");
    }
    journeyd.advance_clock_by(0);
    assert_eq!(ids_with_status(&journeyd, "completed").len(), waiting.len());
    journeyd.advance_clock_by(2 * DAY_MS + 1);
    assert!(
        journeyd.eventually(Duration::from_secs(30), |journeyd| {
            ids_with_status(journeyd, "completed").is_empty()
        }),
        "the rest were purged"
    );
    let last = funnel(&journeyd);
    assert_eq!(last["purged"], 40, "{last:#}");
    assert_eq!(last["instances"], 40, "{last:#}");
    let emoji = &last["variants"]["emoji"];
    let waited = emoji
        .as_array()
        .expect("lines")
        .iter()
        .find(|line| line["step"] == "send_emoji")
        .expect("send_emoji");
    assert_eq!(waited["completed_here"], waiting.len(), "{last:#}");
    assert_eq!(waited["waiting"], 0, "{last:#}");
}

#[test]
fn an_operator_purges_by_hand_with_a_dry_run_first() {
    let data = tempfile::tempdir().expect("temp dir");
    // Retention never removes anything here on its own.
    let journeyd = start(data.path(), &["--retention", "forever"]);
    sign_up(&journeyd, 20);
    let completed = ids_with_status(&journeyd, "completed");
    let waiting = ids_with_status(&journeyd, "waiting");
    journeyd.advance_clock_by(DAY_MS);

    let run = |args: &[&str]| {
        let output = journeyd
            .cli()
            .args(["instance", "purge", "--journey", "launch"])
            .args(args)
            .output()
            .expect("journeyd runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    // Before the instances finished: nothing matches.
    let (ok, stdout, stderr) = run(&["--before", "2026-11-30", "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("0 finished instances"), "{stdout}");
    let (ok, stdout, stderr) = run(&["--before", "2026-12-02", "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("{} finished instances", completed.len())),
        "{stdout}"
    );
    assert_eq!(
        ids_with_status(&journeyd, "completed"),
        completed,
        "a dry run removes nothing"
    );

    let (ok, stdout, stderr) = run(&["--before", "2026-12-02T00:00:00Z"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("purged {} finished instances", completed.len())),
        "{stdout}"
    );
    assert!(ids_with_status(&journeyd, "completed").is_empty());
    assert_eq!(
        ids_with_status(&journeyd, "waiting"),
        waiting,
        "unfinished instances stay"
    );
    assert_eq!(funnel(&journeyd)["instances"], 20);

    // Bad input is refused, naming what is wrong, and changes nothing.
    let (status, body) = journeyd.request(
        "POST",
        "/v1/journeys/launch/purge",
        Some(json!({ "before": "last tuesday" }).to_string().into_bytes()),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_body")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("last tuesday")),
        "{body}"
    );
    let (status, body) = journeyd.request(
        "POST",
        "/v1/journeys/nope/purge",
        Some(json!({ "before": "2026-12-02" }).to_string().into_bytes()),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_journey")),
        "{body}"
    );
    let (status, body) = journeyd.deploy(
        "bad.toml",
        &journey().replace(r#"retention = "2d""#, r#"retention = "a while""#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("journey_invalid_retention")),
        "{body}"
    );
    assert_eq!(ids_with_status(&journeyd, "waiting"), waiting);
}
