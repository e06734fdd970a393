//! Experiments: a split step sends each instance down one weighted
//! variant, chosen from the instance and recorded in its history.

use std::collections::BTreeMap;
use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::json;

fn journey(split: &str) -> String {
    format!(
        r#"
name = "launch"
terminal = ["done"]

[trigger]
event = "launch.signup"
correlation_key = "signup_id"

[[steps]]
name = "subject"
split = {split}
on = {{ plain = "send_plain", emoji = "send_emoji" }}

[[steps]]
name = "send_plain"
plugin = "noop"

[[steps]]
name = "send_emoji"
plugin = "noop"
"#
    )
}

#[test]
fn a_split_sends_instances_down_weighted_variants_recorded_in_history() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.push("noop", fixture("noop"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.deploy("launch.toml", &journey("{ plain = 50, emoji = 50 }"));
    assert_eq!(status, 201, "{body}");

    let mut variants: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..60 {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("signup-{n}"), "type": "launch.signup", "customer": format!("c-{n}"),
            "data": { "signup_id": format!("s-{n}") },
        }));
        assert_eq!(status, 202, "{receipt}");
        let id = receipt["instances"][0].as_u64().expect("instance");
        let view = journeyd.wait_instance(id, Duration::from_secs(10));
        assert_eq!(view["status"], "completed", "{view:#}");
        let split = &view["history"][1];
        assert_eq!(split["type"], "split", "{view:#}");
        assert_eq!(split["step"], "subject");
        let variant = split["variant"].as_str().expect("variant").to_owned();
        assert_eq!(split["target"], format!("send_{variant}"));
        assert_eq!(
            view["history"][2]["step"],
            format!("send_{variant}"),
            "{view:#}"
        );
        *variants.entry(variant).or_default() += 1;
    }
    assert_eq!(variants.len(), 2, "both variants were taken: {variants:?}");
    assert!(variants.values().all(|count| *count >= 15), "{variants:?}");

    // The drop-off report breaks down by variant.
    let funnel = journeyd.get("/v1/journeys/launch/funnel");
    assert_eq!(funnel["instances"], 60);
    for (variant, count) in &variants {
        let lines = funnel["variants"][variant].as_array().expect("lines");
        let line = |step: &str| {
            lines
                .iter()
                .find(|line| line["step"] == step)
                .unwrap_or_else(|| panic!("{step}: {funnel:#}"))
                .clone()
        };
        assert_eq!(line("subject")["reached"], *count as u64, "{funnel:#}");
        let sent = line(&format!("send_{variant}"));
        assert_eq!(
            (sent["reached"].as_u64(), sent["completed_here"].as_u64()),
            (Some(*count as u64), Some(*count as u64))
        );
        let other = if variant == "plain" {
            "send_emoji"
        } else {
            "send_plain"
        };
        assert_eq!(line(other)["reached"], 0);
    }
}

#[test]
fn split_weights_that_do_not_add_up_are_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.push("noop", fixture("noop"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.deploy("launch.toml", &journey("{ plain = 50, emoji = 40 }"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "journey_invalid_split");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("launch.toml")
            && message.contains("`subject`")
            && message.contains("add up to 90"),
        "{message}"
    );
    assert_eq!(
        journeyd.get("/v1/journeys")["journeys"],
        json!([]),
        "nothing deployed"
    );
}
