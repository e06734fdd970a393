//! Crash safety: acknowledged events survive SIGKILL, every journey they
//! started completes, and no step or outbox message is committed twice;
//! on the embedded store and on PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use journey_tests::{Journeyd, PostgresDatabase, enquiry, steps_of};
use serde_json::Value;

const ROUNDS: usize = 4;
const SENDERS: usize = 4;

/// Send enquiries until `stop`, recording the ids journeyd acknowledged.
fn send_until_stopped(
    url: &str,
    token: &str,
    next: &AtomicUsize,
    stop: &AtomicBool,
    acknowledged: &Mutex<Vec<String>>,
) {
    let http = journey_tests::client_with_token(token, Duration::from_secs(5));
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let id = format!("crash-{n}");
        let event = enquiry(
            &id,
            ["c-ada", "c-grace", "c-linus"][n % 3],
            &format!("q-{n}"),
            "I was charged twice, please refund",
        );
        match http.post(format!("{url}/v1/events")).json(&event).send() {
            Ok(response) if response.status().as_u16() == 202 => {
                acknowledged.lock().expect("lock").push(id);
            }
            Ok(response) => panic!("event {id} refused: {}", response.status()),
            // The process was killed: this event is in doubt, not acknowledged.
            Err(_) => return,
        }
        // Paced so a few hundred journeys are in flight across the kills.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn acknowledged_events_survive_sigkill_and_nothing_is_committed_twice() {
    survive_sigkill(&[]);
}

#[test]
fn on_postgres_acknowledged_events_survive_sigkill_and_nothing_is_committed_twice() {
    let database = PostgresDatabase::create();
    survive_sigkill(&["--store", &database.url]);
}

/// Kill journeyd (started with `args`) under load several times, then
/// check every acknowledged event's journey completed exactly once.
fn survive_sigkill(args: &[&str]) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start_with(data.path(), args);
    journeyd.setup_enquiry();

    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    // Kill after varied delays so the crash lands in different phases.
    let delays_ms = [350u64, 700, 200, 500];
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let (url, token, next, stop, acknowledged) = (
                    journeyd.url.clone(),
                    journeyd.token.clone(),
                    next.clone(),
                    stop.clone(),
                    acknowledged.clone(),
                );
                std::thread::spawn(move || {
                    send_until_stopped(&url, &token, &next, &stop, &acknowledged)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(delays_ms[round % delays_ms.len()]));
        journeyd.kill();
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            sender.join().expect("sender thread");
        }
        journeyd = Journeyd::start_with(data.path(), args);
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 20,
        "only {} events were acknowledged",
        acknowledged.len()
    );

    // Every acknowledged event is known after the crashes: re-sending it is
    // a duplicate, and its instance completes.
    let mut instances = HashSet::new();
    for id in &acknowledged {
        let n: usize = id
            .trim_start_matches("crash-")
            .parse()
            .expect("numbered id");
        let (status, receipt) = journeyd.send_event(&enquiry(
            id,
            ["c-ada", "c-grace", "c-linus"][n % 3],
            &format!("q-{n}"),
            "I was charged twice, please refund",
        ));
        assert_eq!(status, 200, "acknowledged event {id} was lost: {receipt}");
        assert_eq!(receipt["duplicate"], true);
        instances.insert(receipt["instances"][0].as_u64().expect("instance"));
    }
    for &id in &instances {
        let view = journeyd.wait_instance(id, Duration::from_secs(20));
        assert_eq!(view["status"], "completed", "instance {id}: {view:#}");
        assert_eq!(
            steps_of(&view),
            ["acknowledge", "classify", "handover", "resolve"],
            "instance {id} committed a step twice or skipped one: {view:#}"
        );
    }

    // Count the outbox directly: exactly three messages per instance
    // (acknowledgement, team hand-over, resolution), no id twice.
    let outbox = journeyd.get("/v1/outbox?limit=100000");
    let mut per_instance: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for message in outbox["messages"].as_array().expect("messages") {
        let id = message["id"].as_str().expect("message id").to_owned();
        assert!(
            ids.insert(id.clone()),
            "message {id} is in the outbox twice"
        );
        let instance = message["instance_id"].as_u64().expect("instance id");
        per_instance.entry(instance).or_default().push(id);
    }
    for &id in &instances {
        let messages = per_instance.get(&id).map_or(0, Vec::len);
        assert_eq!(messages, 3, "instance {id} has {messages} outbox messages");
    }
    let all: Vec<Value> = journeyd.get("/v1/instances?limit=1000")["instances"]
        .as_array()
        .expect("instances")
        .clone();
    assert!(all.len() < 1000, "the listing above holds every instance");
    let completed = all
        .iter()
        .filter(|instance| instance["status"] == "completed")
        .count();
    assert_eq!(
        completed,
        all.len(),
        "every instance, in-doubt ones included, completed"
    );
    assert_eq!(
        ids.len(),
        3 * all.len(),
        "exactly three messages per instance"
    );
    eprintln!(
        "crash test {args:?}: {ROUNDS} SIGKILLs, {} acknowledged events, {} instances, {} outbox messages",
        acknowledged.len(),
        all.len(),
        ids.len()
    );
}
