//! Graceful drain: on SIGTERM journeyd stops taking events (503 with
//! `Retry-After`), reports not ready, lets the steps under way finish,
//! flushes and exits 0; after a restart nothing acknowledged is missing
//! and no step has run twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use journey_tests::{Journeyd, enquiry, fixture, steps_of};
use serde_json::json;

/// Send enquiries until journeyd stops taking them, recording the ids it
/// acknowledged; every refusal must be the drain's `503`.
fn send_until_refused(
    url: &str,
    token: &str,
    next: &AtomicUsize,
    refused: &AtomicBool,
    acknowledged: &Mutex<Vec<String>>,
) {
    let http = journey_tests::client_with_token(token, Duration::from_secs(10));
    while !refused.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let id = format!("drain-{n}");
        let event = enquiry(
            &id,
            ["c-ada", "c-grace", "c-linus"][n % 3],
            &format!("q-{n}"),
            "Where is my parcel?",
        );
        match http.post(format!("{url}/v1/events")).json(&event).send() {
            Ok(response) if response.status().as_u16() == 202 => {
                acknowledged.lock().expect("lock").push(id);
            }
            Ok(response) => {
                assert_eq!(response.status().as_u16(), 503, "event {id}");
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok()),
                    Some("1"),
                    "a 503 says when to try again"
                );
                let body: serde_json::Value = response.json().expect("a JSON error");
                assert_eq!(body["error"]["code"], "shutting_down", "{body}");
                refused.store(true, Ordering::Relaxed);
            }
            // The listener has closed: the drain is over.
            Err(_) => refused.store(true, Ordering::Relaxed),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigterm_under_load_exits_zero_and_loses_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (url, token) = (journeyd.url.clone(), journeyd.token.clone());
            let (next, refused, acknowledged) =
                (next.clone(), refused.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                send_until_refused(&url, &token, &next, &refused, &acknowledged)
            })
        })
        .collect();
    while acknowledged.lock().expect("lock").len() < 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = journeyd.terminate(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "journeyd exits 0 after a drain: {status}"
    );
    for sender in senders {
        sender.join().expect("sender thread");
    }

    let journeyd = Journeyd::start(data.path());
    let acknowledged = acknowledged.lock().expect("lock").clone();
    for id in &acknowledged {
        let n: usize = id
            .trim_start_matches("drain-")
            .parse()
            .expect("numbered id");
        let (status, receipt) = journeyd.send_event(&enquiry(
            id,
            ["c-ada", "c-grace", "c-linus"][n % 3],
            &format!("q-{n}"),
            "Where is my parcel?",
        ));
        assert_eq!(status, 200, "acknowledged event {id} was lost: {receipt}");
        let instance = receipt["instances"][0].as_u64().expect("instance");
        let view = journeyd.wait_instance(instance, Duration::from_secs(30));
        assert_eq!(view["status"], "completed", "{view:#}");
        assert_eq!(
            steps_of(&view),
            ["acknowledge", "classify", "handover", "resolve"],
            "each step ran once: {view:#}"
        );
    }
}

#[test]
fn a_draining_runtime_is_not_ready_refuses_events_and_lets_its_step_finish() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.push("slow", fixture("slow"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.deploy(
        "slow.toml",
        r#"
name = "slow"
[trigger]
event = "slow.started"
correlation_key = "n"

[[steps]]
name = "think"
plugin = "slow"
config = { ms = 1500 }
"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "slow-1", "type": "slow.started", "customer": "c-1", "data": { "n": "1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let instance = receipt["instances"][0].as_u64().expect("instance");
    assert!(
        journeyd.eventually(Duration::from_secs(10), |journeyd| {
            journeyd.get("/readyz")["workers"]["steps_running"] == 1
        }),
        "the slow step is in the sandbox"
    );

    let url = journeyd.url.clone();
    let token = journeyd.token.clone();
    let watcher = std::thread::spawn(move || {
        let http = journey_tests::client_with_token(&token, Duration::from_secs(5));
        // Once the drain has begun: not ready, and events are refused.
        let mut readiness = None;
        for _ in 0..100 {
            let Ok(response) = http.get(format!("{url}/readyz")).send() else {
                break;
            };
            if response.status().as_u16() == 503 {
                readiness = response.json::<serde_json::Value>().ok();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let event = http
            .post(format!("{url}/v1/events"))
            .json(&json!({ "id": "slow-2", "type": "slow.started", "customer": "c-2", "data": { "n": "2" } }))
            .send()
            .expect("journeyd still answers while it drains");
        (
            readiness,
            event.status().as_u16(),
            event.headers().get("retry-after").cloned(),
        )
    });
    let status = journeyd.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}");
    let (readiness, event_status, retry_after) = watcher.join().expect("watcher");
    let readiness = readiness.expect("/readyz said 503 while draining");
    assert!(
        readiness["problems"].to_string().contains("draining"),
        "{readiness:#}"
    );
    assert_eq!(event_status, 503);
    assert!(retry_after.is_some());

    let journeyd = Journeyd::start(data.path());
    let view = journeyd.wait_instance(instance, Duration::from_secs(10));
    assert_eq!(
        view["status"], "completed",
        "the step under way finished before the exit: {view:#}"
    );
    assert_eq!(steps_of(&view), ["think"]);
    let types: Vec<&str> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|entry| entry["type"].as_str())
        .collect();
    assert!(
        !types.contains(&"restarted"),
        "nothing was interrupted: {types:?}"
    );
}
