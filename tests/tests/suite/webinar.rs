//! The shipped webinar journey over two simulated weeks, in seconds: the
//! example's own customers and timeline, replayed with `journeyd event
//! replay` against a real journeyd on a simulated clock.

use std::collections::HashMap;

use journey_tests::{Journeyd, plugin, steps_of, workspace};
use serde_json::{Value, json};

/// 2026-12-01T08:00:00Z, where the example's clock starts.
const DEC_1_MS: u64 = 1_796_112_000_000;
const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn setup(journeyd: &Journeyd) {
    for name in ["send", "await", "sleep", "next-best-channel"] {
        let (status, body) = journeyd.push(name, plugin(&name.replace('-', "_")));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let caps = json!({ "caps": [
        { "channel": "email", "limit": 5, "period_ms": DAY_MS },
        { "channel": "sms", "limit": 2, "period_ms": 7 * DAY_MS },
    ] });
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/frequency-caps",
        Some(caps.to_string().into_bytes()),
    );
    assert_eq!(status, 200, "{body}");
    let customers: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/webinar/customers.json"))
            .expect("customers.json"),
    )
    .expect("JSON");
    for (id, profile) in customers.as_object().expect("customers") {
        let (status, body) = journeyd.put_customer(id, profile);
        assert_eq!(status, 200, "{id}: {body}");
    }
    let source = std::fs::read_to_string(workspace().join("examples/webinar/journey.toml"))
        .expect("journey.toml");
    let (status, body) = journeyd.deploy("journey.toml", &source);
    assert_eq!(status, 201, "{body}");
}

#[test]
fn two_weeks_of_the_webinar_journey_run_on_a_simulated_clock() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), DEC_1_MS);
    setup(&journeyd);
    let replay = journeyd
        .cli()
        .args(["event", "replay"])
        .arg(workspace().join("examples/webinar/timeline.json"))
        .output()
        .expect("run journeyd event replay");
    let printed = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        printed.contains("not entered: webinar: suppressed"),
        "{printed}"
    );
    assert!(printed.contains("re-entry is single"), "{printed}");
    assert_eq!(
        journeyd.get("/v1/clock")["now_ms"],
        DEC_1_MS + 14 * DAY_MS + HOUR_MS
    );

    let listed = journeyd.get("/v1/instances?journey=webinar&limit=100");
    let instances = listed["instances"].as_array().expect("instances");
    let by_customer: HashMap<&str, &Value> = instances
        .iter()
        .map(|instance| {
            (
                instance["customer_id"].as_str().expect("customer"),
                instance,
            )
        })
        .collect();
    // The segment and suppression rules let seven of twelve in, once each.
    let mut entered: Vec<&str> = by_customer.keys().copied().collect();
    entered.sort_unstable();
    assert_eq!(
        entered,
        [
            "c-ada",
            "c-barbara",
            "c-grace",
            "c-linus",
            "c-margaret",
            "c-radia",
            "c-yukihiro"
        ]
    );
    assert_eq!(
        instances.len(),
        7,
        "single re-entry: Ada's second invitation started nothing"
    );
    let ended = |customer: &str| {
        let instance = by_customer[customer];
        let terminal = instance["terminal"].as_str().unwrap_or("");
        format!("{} {terminal}", instance["status"].as_str().unwrap_or("?"))
    };
    assert_eq!(ended("c-ada"), "completed attended");
    assert_eq!(ended("c-grace"), "completed attended");
    assert_eq!(ended("c-linus"), "completed no_show");
    assert_eq!(ended("c-margaret"), "completed no_show");
    assert_eq!(ended("c-radia"), "completed not_registered");
    assert_eq!(ended("c-barbara"), "exited ");
    assert_eq!(ended("c-yukihiro"), "exited ");

    let view = |customer: &str| {
        let id = by_customer[customer]["id"].as_u64().expect("id");
        journeyd.get(&format!("/v1/instances/i-{id}"))
    };
    let channels = |view: &Value| -> Vec<String> {
        view["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|message| message["channel"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    // Grace ignored two emails and opted into SMS: the model (the Python
    // plugin) chose SMS, and the SMS brought her in.
    let grace = view("c-grace");
    assert!(
        steps_of(&grace).contains(&"next_best_channel".to_owned()),
        "{grace:#}"
    );
    assert_eq!(
        grace["state"]["next_best_channel"]["decision"], "sms",
        "{grace:#}"
    );
    assert!(channels(&grace).contains(&"sms".to_owned()));
    // Linus opened the invitation and registered after the reminder: no
    // course correction.
    let linus = view("c-linus");
    assert!(!steps_of(&linus).contains(&"next_best_channel".to_owned()));
    assert!(!channels(&linus).contains(&"sms".to_owned()));
    // Radia never registered: the SMS, then a last call by SMS at the start,
    // within the two-a-week cap.
    let radia = view("c-radia");
    assert_eq!(channels(&radia).iter().filter(|c| *c == "sms").count(), 2);
    // Margaret missed it; her follow-up waits for 09:00 in New York
    // (14:00 UTC) instead of arriving in the middle of her night.
    let margaret = view("c-margaret");
    let follow_up = margaret["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|entry| entry["step"] == "no_show_follow_up")
        .cloned()
        .expect("a no-show follow-up");
    let dec_11_14h = DEC_1_MS + 10 * DAY_MS + 6 * HOUR_MS;
    assert_eq!(follow_up["at_ms"], dec_11_14h, "{follow_up:#}");
    // Every timer fired at its due time, however far the clock jumped.
    for instance in instances {
        let id = instance["id"].as_u64().expect("id");
        let history = journeyd.get(&format!("/v1/instances/i-{id}"))["history"].clone();
        for woke in history
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| e["type"] == "woke")
        {
            assert_eq!(woke["at_ms"], woke["due_ms"], "{woke}");
        }
    }

    // The drop-off report adds up, per subject line.
    let funnel = journeyd.get("/v1/journeys/webinar/funnel");
    assert_eq!(funnel["instances"], 7);
    let variants = funnel["variants"].as_object().expect("variants");
    let reached_subject: u64 = variants
        .values()
        .map(|lines| lines[0]["reached"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(reached_subject, 7, "{funnel:#}");
    let exited: u64 = variants
        .values()
        .flat_map(|lines| lines.as_array().expect("lines"))
        .map(|line| line["exited_here"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(exited, 2, "{funnel:#}");
    let waiting: u64 = variants
        .values()
        .flat_map(|lines| lines.as_array().expect("lines"))
        .map(|line| line["waiting"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(waiting, 0, "nobody is left waiting: {funnel:#}");
}
