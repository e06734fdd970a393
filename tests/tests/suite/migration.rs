//! Journey versions: deploying a changed journey leaves running instances
//! on their version until an operator migrates them with a step mapping,
//! which is validated before anything changes.

use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::{Value, json};

/// A journey whose first step keeps an instance busy for 400 ms.
fn journey(second: &str) -> String {
    format!(
        r#"
name = "order"
terminal = ["done"]

[trigger]
event = "order.placed"
correlation_key = "order_id"

[[steps]]
name = "first"
plugin = "slow"
on = {{ next = "{second}" }}
config = {{ ms = 400, next = "next" }}

[[steps]]
name = "{second}"
plugin = "noop"
"#
    )
}

fn setup(journeyd: &Journeyd) {
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let (status, body) = journeyd.deploy("order-v1.toml", &journey("second"));
    assert_eq!(status, 201, "{body}");
}

fn migrate(journeyd: &Journeyd, journey: &str, body: Value) -> (u16, Value) {
    journeyd.request(
        "POST",
        &format!("/v1/journeys/{journey}/migrations"),
        Some(body.to_string().into_bytes()),
    )
}

#[test]
fn running_instances_move_to_the_new_version_at_their_next_step_with_the_mapping() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    setup(&journeyd);
    let started: Vec<u64> = (0..4)
        .map(|n| {
            let (status, receipt) = journeyd.send_event(&json!({
                "id": format!("order-{n}"),
                "type": "order.placed",
                "customer": "c-1",
                "data": { "order_id": format!("o-{n}") },
            }));
            assert_eq!(status, 202, "{receipt}");
            receipt["instances"][0].as_u64().expect("instance")
        })
        .collect();
    // While they are busy in `first`, deploy v2 (its second step renamed)
    // and move v1's instances there.
    let (status, body) = journeyd.deploy("order-v2.toml", &journey("confirm"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2);
    let (status, record) = migrate(
        &journeyd,
        "order",
        json!({ "from": 1, "to": 2, "steps": { "second": "confirm" } }),
    );
    assert_eq!(status, 201, "{record}");
    assert_eq!(
        record["steps"],
        json!({ "first": "first", "second": "confirm" })
    );

    for id in started {
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        assert_eq!(view["status"], "completed", "{view:#}");
        assert_eq!(view["journey_version"], 2, "{view:#}");
        let history = view["history"].as_array().expect("history");
        let migrated: Vec<&Value> = history
            .iter()
            .filter(|entry| entry["type"] == "migrated")
            .collect();
        assert_eq!(migrated.len(), 1, "moved once: {view:#}");
        let moved = migrated[0];
        assert_eq!(
            (moved["from_version"].as_u64(), moved["to_version"].as_u64()),
            (Some(1), Some(2))
        );
        let expected_target = match moved["from_step"].as_str() {
            Some("first") => "first",
            Some("second") => "confirm",
            other => panic!("unexpected step {other:?}: {view:#}"),
        };
        assert_eq!(moved["to_step"], expected_target);
        let steps: Vec<&str> = history
            .iter()
            .filter(|entry| entry["type"] == "step_ran")
            .filter_map(|entry| entry["step"].as_str())
            .collect();
        assert_eq!(steps, ["first", "confirm"], "{view:#}");
    }
    // New instances start on the latest version and are not moved.
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "order-new", "type": "order.placed", "customer": "c-1",
        "data": { "order_id": "o-new" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let view = journeyd.wait_instance(
        receipt["instances"][0].as_u64().expect("instance"),
        Duration::from_secs(30),
    );
    assert_eq!(view["journey_version"], 2);
    assert!(
        view["history"]
            .as_array()
            .expect("history")
            .iter()
            .all(|entry| entry["type"] != "migrated")
    );
}

#[test]
fn bad_migrations_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    setup(&journeyd);
    let (status, body) = journeyd.deploy("order-v2.toml", &journey("confirm"));
    assert_eq!(status, 201, "{body}");

    let cases = [
        (
            "order",
            json!({ "from": 1, "to": 9 }),
            422,
            "unknown_journey_version",
            "no version 9",
        ),
        (
            "order",
            json!({ "from": 1, "to": 2, "steps": { "nope": "confirm" } }),
            422,
            "invalid_migration",
            "`nope` is not a step of version 1",
        ),
        (
            "order",
            json!({ "from": 1, "to": 2, "steps": { "second": "nope" } }),
            422,
            "invalid_migration",
            "`nope`, which is not a step of version 2",
        ),
        (
            "order",
            json!({ "from": 1, "to": 2 }),
            422,
            "invalid_migration",
            "step `second` has no step of the same name in version 2",
        ),
        (
            "order",
            json!({ "from": 2, "to": 2 }),
            422,
            "invalid_migration",
            "the same",
        ),
        (
            "nothing",
            json!({ "from": 1, "to": 2 }),
            404,
            "unknown_journey",
            "nothing",
        ),
        ("order", json!({ "from": 1 }), 400, "bad_body", "to"),
    ];
    for (journey, body, status, code, says) in cases {
        let (got, answer) = migrate(&journeyd, journey, body.clone());
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{message}");
    }
    let migrations = journeyd.get("/v1/journeys/order/migrations");
    assert_eq!(migrations["migrations"], json!([]), "nothing was stored");

    let (status, body) = migrate(
        &journeyd,
        "order",
        json!({ "from": 1, "to": 2, "steps": { "second": "confirm" } }),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = migrate(
        &journeyd,
        "order",
        json!({ "from": 2, "to": 1, "steps": { "confirm": "second" } }),
    );
    assert_eq!(status, 422, "a circle is refused: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("circle"))
    );
    let migrations = journeyd.get("/v1/journeys/order/migrations");
    assert_eq!(migrations["migrations"].as_array().map(Vec::len), Some(1));
}
