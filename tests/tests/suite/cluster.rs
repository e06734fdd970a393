//! Several nodes on one PostgreSQL database: three `journeyd` share the
//! shards while one of them is SIGKILLed and restarted, and every journey
//! still runs exactly once, its timers fire once and on time (simulated
//! clock), and every message takes effect once at a local provider. A node
//! paused past its lease is fenced out; a database restarted under load
//! makes the nodes say they are not ready, and nothing acknowledged is
//! lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use journey_tests::{Journeyd, PostgresDatabase, PostgresServer, ProviderSink, enquiry, steps_of};
use serde_json::{Value, json};

use super::delivery::{SENDGRID_KEY, SLACK_PATH, deliveries, setup_integrations};

const DEC_1_MS: u64 = 1_796_112_000_000;
const NODES: [&str; 3] = ["a", "b", "c"];
const ENQUIRIES: usize = 36;

/// Start node `name` on `database`, sharing `data` (its admin token and
/// compiled plugins) with the others.
fn node(data: &Path, database: &PostgresDatabase, name: &str) -> Journeyd {
    Journeyd::start_with(
        data,
        &[
            "--store",
            &database.url,
            "--node",
            name,
            "--shard-lease",
            "2s",
            "--simulated-clock",
            "--simulated-clock-start",
            &DEC_1_MS.to_string(),
        ],
    )
}

/// Wait until every node holds shards (a node that joins gets its share
/// as the others renew their leases).
fn wait_until_all_serve(nodes: &[Journeyd]) {
    for node in nodes {
        let ready = node.eventually(Duration::from_secs(30), |node| {
            node.request("GET", "/readyz", None).0 == 200
        });
        assert!(ready, "{}: {}", node.url, node.get("/readyz"));
    }
}

/// Nodes a and b on `database`, the enquiry journey (without its wait for
/// a person) set up, each holding its share.
fn two_nodes_with_the_enquiry(data: &Path, database: &PostgresDatabase) -> Vec<Journeyd> {
    let a = node(data, database, "a");
    a.setup_enquiry();
    let nodes = vec![a, node(data, database, "b")];
    wait_until_all_serve(&nodes);
    nodes
}

/// Send `event` to the nodes in turn from `first` until one takes it;
/// a node that is down or between shards leaves it in doubt, and the
/// next one is asked (the id makes a repeat harmless).
fn deliver(nodes: &[Journeyd], first: usize, event: &Value) -> Value {
    for attempt in 0..60 {
        let node = &nodes[(first + attempt) % nodes.len()];
        let answer = journey_tests::client_with_token(&node.token, Duration::from_secs(10))
            .post(format!("{}/v1/events", node.url))
            .json(event)
            .send();
        match answer {
            Ok(response) if matches!(response.status().as_u16(), 200 | 202) => {
                return response.json().expect("a receipt");
            }
            Ok(response) if response.status().as_u16() == 503 => {}
            Ok(response) => panic!("{event} refused: {:?}", response.text()),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no node took {event}");
}

/// Move every node's simulated clock by `ms` at once (each fires the
/// timers of its own shards) and wait for them to settle.
fn advance_all(nodes: &[Journeyd], ms: u64) {
    std::thread::scope(|scope| {
        for node in nodes {
            scope.spawn(move || node.advance_clock_by(ms));
        }
    });
}

/// The names of the nodes holding shards, per `journeyd cluster status`,
/// once every shard is held.
fn holders(database: &PostgresDatabase) -> BTreeSet<String> {
    let output = journey_tests::journeyd_command()
        .args(["cluster", "status", "--json", "--store", &database.url])
        .output()
        .expect("journeyd runs");
    assert!(output.status.success(), "{output:?}");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status is JSON");
    let owners: Vec<&str> = status["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter_map(|shard| shard["owner"].as_str())
        .collect();
    if owners.len() < 16 {
        return BTreeSet::new();
    }
    owners
        .iter()
        .map(|owner| owner.split('#').next().unwrap_or(owner).to_owned())
        .collect()
}

/// Every one of `instances` (of the enquiry journey without its wait for a
/// person) completes, each step committed once.
fn assert_each_completed_once<'a>(node: &Journeyd, instances: impl IntoIterator<Item = &'a u64>) {
    for id in instances {
        let view = node.wait_instance(*id, Duration::from_secs(60));
        assert_eq!(view["status"], "completed", "i-{id}: {view:#}");
        assert_eq!(
            steps_of(&view),
            ["acknowledge", "classify", "handover", "resolve"],
            "i-{id} committed a step twice or skipped one: {view:#}"
        );
    }
}

#[test]
fn three_nodes_share_the_work_through_sigkills_and_each_effect_happens_once() {
    let database = PostgresDatabase::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let sink = ProviderSink::start(&["--sendgrid-key", SENDGRID_KEY, "--slack-path", SLACK_PATH]);
    let first = node(&data, &database, NODES[0]);
    first.setup_enquiry_as_shipped();
    setup_integrations(&first, &sink, dir.path(), json!({}));
    let mut nodes = vec![first];
    for name in &NODES[1..] {
        nodes.push(node(&data, &database, name));
    }
    wait_until_all_serve(&nodes);
    // The shares settle over a few renewals (a node gives some back
    // before the short one takes them).
    let everyone: BTreeSet<String> = NODES.iter().map(|name| name.to_string()).collect();
    let shared = nodes[0].eventually(Duration::from_secs(30), |_| holders(&database) == everyone);
    assert!(shared, "every node holds shards: {:?}", holders(&database));

    // Enquiries round-robin, node c killed and restarted three times.
    let customers = ["c-ada", "c-grace", "c-linus"];
    let mut instances = BTreeMap::new();
    for n in 0..ENQUIRIES {
        if n % 12 == 5 {
            nodes[2].kill();
        }
        if n % 12 == 6 {
            // Its shards move to the others once its leases end.
            let moved = nodes[0].eventually(Duration::from_secs(30), |_| {
                holders(&database) == BTreeSet::from(["a".to_owned(), "b".to_owned()])
            });
            assert!(
                moved,
                "c's shards moved to a and b: {:?}",
                holders(&database)
            );
        }
        if n % 12 == 9 {
            nodes[2] = node(&data, &database, NODES[2]);
        }
        let receipt = deliver(
            &nodes,
            n,
            &enquiry(
                &format!("e-{n}"),
                customers[n % 3],
                &format!("q-{n}"),
                if n % 2 == 0 {
                    "This is unacceptable, I was charged twice, refund now"
                } else {
                    "My parcel has not arrived"
                },
            ),
        );
        instances.insert(n, receipt["instances"][0].as_u64().expect("an instance"));
    }
    wait_until_all_serve(&nodes);
    let waiting = nodes[0].eventually(Duration::from_secs(60), |node| {
        instances
            .values()
            .all(|id| node.get(&format!("/v1/instances/i-{id}"))["status"] == "waiting")
    });
    assert!(waiting, "every enquiry reached its wait for a resolution");

    // Past every first SLA (high 1 h, normal 4 h): each breach escalates
    // once, on its own shard's node, and the enquiry waits again.
    advance_all(&nodes, 4 * 3_600_000 + 60_000);
    // Resolutions, round-robin: mostly to a node that does not hold the
    // instance, which wakes it and tells its holder to run it.
    for n in 0..ENQUIRIES {
        let event = json!({
            "id": format!("r-{n}"),
            "type": "enquiry.resolved",
            "customer": customers[n % 3],
            "data": { "enquiry_id": format!("q-{n}"), "resolution": "Refunded.", "agent": "Sam" },
        });
        deliver(&nodes, n + 1, &event);
    }
    let delivered = nodes[0].eventually(Duration::from_secs(120), |node| {
        advance_all(&nodes, 60_000);
        let all = deliveries(node);
        instances
            .values()
            .all(|id| node.get(&format!("/v1/instances/i-{id}"))["status"] == "completed")
            && all.iter().all(|(_, delivery)| {
                matches!(
                    delivery["status"].as_str(),
                    Some("accepted" | "delivered" | "opened" | "clicked")
                )
            })
    });
    assert!(
        delivered,
        "every enquiry completed and every message was accepted"
    );

    let mut escalations = 0;
    for id in instances.values() {
        let view = nodes[1].get(&format!("/v1/instances/i-{id}"));
        let steps = steps_of(&view);
        let woke: Vec<&Value> = view["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|entry| entry["type"] == "woke")
            .collect();
        // Each breach fired once, at the moment it was due.
        for entry in &woke {
            assert_eq!(
                entry["at_ms"], entry["due_ms"],
                "i-{id} woke late: {view:#}"
            );
        }
        escalations += woke.len();
        let mut expected = vec!["acknowledge", "classify", "handover"];
        for _ in &woke {
            expected.extend(["await_resolution", "escalate"]);
        }
        expected.extend(["await_resolution", "resolve"]);
        assert_eq!(
            steps, expected,
            "i-{id} ran a step twice or skipped one: {view:#}"
        );
    }
    assert!(escalations > 0, "some SLA timers fired");

    // Every message took effect once at the provider, none was lost.
    let ours: BTreeSet<String> = deliveries(&nodes[0])
        .iter()
        .map(|(message, _)| message["id"].as_str().expect("id").to_owned())
        .collect();
    let keys: Vec<String> = sink
        .messages()
        .iter()
        .map(|message| {
            message["idempotency_key"]
                .as_str()
                .expect("an Idempotency-Key")
                .to_owned()
        })
        .collect();
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), unique.len(), "a message took effect twice");
    assert_eq!(unique, ours, "every message took effect");
    eprintln!(
        "three nodes: {ENQUIRIES} enquiries, 3 SIGKILLs, {escalations} SLA escalations, {} messages",
        ours.len()
    );
}

#[test]
fn a_node_paused_past_its_lease_is_fenced_out_and_takes_a_share_back_cleanly() {
    let database = PostgresDatabase::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let nodes = two_nodes_with_the_enquiry(&dir.path().join("data"), &database);
    let customers = ["c-ada", "c-grace", "c-linus"];
    let event = |n: usize| {
        enquiry(
            &format!("e-{n}"),
            customers[n % 3],
            &format!("q-{n}"),
            "I was charged twice, please refund",
        )
    };
    let mut instances = BTreeSet::new();
    for n in 0..12 {
        instances.insert(
            deliver(&nodes, 0, &event(n))["instances"][0]
                .as_u64()
                .expect("id"),
        );
    }
    // Paused with steps in flight: its leases end, b takes every shard.
    nodes[0].signal("STOP");
    let taken = nodes[1].eventually(Duration::from_secs(30), |_| {
        holders(&database) == BTreeSet::from(["b".to_owned()])
    });
    assert!(taken, "b took a's shards: {:?}", holders(&database));
    // An event sent to the paused node waits in its listen queue.
    let paused = std::thread::spawn({
        let (url, token, event) = (nodes[0].url.clone(), nodes[0].token.clone(), event(12));
        move || {
            journey_tests::client_with_token(&token, Duration::from_secs(60))
                .post(format!("{url}/v1/events"))
                .json(&event)
                .send()
                .expect("a answers once resumed")
                .status()
                .as_u16()
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    nodes[0].signal("CONT");
    let answer = paused.join().expect("sender");
    // Resumed, a finds its shards gone: its work there is refused, and it
    // answers with a retryable 503 until it holds a share again.
    assert!(matches!(answer, 202 | 503), "answered {answer}");
    let receipt = deliver(&nodes, 1, &event(12));
    instances.insert(receipt["instances"][0].as_u64().expect("id"));
    let noticed = nodes[0].eventually(Duration::from_secs(30), |a| {
        a.metric("journeyd_shards_lost_total") >= 1.0
    });
    assert!(noticed, "a noticed it lost its shards");
    let both = BTreeSet::from(["a".to_owned(), "b".to_owned()]);
    let shared = nodes[0].eventually(Duration::from_secs(30), |_| holders(&database) == both);
    assert!(shared, "a took a share back: {:?}", holders(&database));
    wait_until_all_serve(&nodes);
    assert_each_completed_once(&nodes[1], &instances);
    eprintln!(
        "paused node: answered {answer} on resume, fenced commits {}",
        nodes[0].metric("journeyd_fenced_commits_total")
    );
}

/// What the senders of [`postgresql_restarted_under_load_loses_no_acknowledged_event`]
/// saw: the instances of acknowledged events, and how the others ended.
#[derive(Default)]
struct LoadSeen {
    acknowledged: Vec<u64>,
    /// Refused with a retryable 503, by error code.
    refused: BTreeMap<String, usize>,
    /// No answer within the client's timeout: in doubt, not acknowledged.
    in_doubt: usize,
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn postgresql_restarted_under_load_loses_no_acknowledged_event() {
    // A server of the test's own: the shared one must not go down under
    // the other tests.
    let server = PostgresServer::start();
    let database = server.database();
    let dir = tempfile::tempdir().expect("temp dir");
    let nodes = two_nodes_with_the_enquiry(&dir.path().join("data"), &database);

    let seen = Mutex::new(LoadSeen::default());
    let acknowledged = || seen.lock().expect("not poisoned").acknowledged.len();
    let stop = AtomicBool::new(false);
    let mut not_ready = Vec::new();
    std::thread::scope(|scope| {
        // The senders stop however this scope ends, a failed assertion too.
        let _stop_senders = StopOnDrop(&stop);
        for (sender, node) in nodes.iter().enumerate() {
            let (seen, stop) = (&seen, &stop);
            scope.spawn(move || {
                let client = journey_tests::client_with_token(&node.token, Duration::from_secs(20));
                let mut n = sender;
                while !stop.load(Ordering::Acquire) {
                    let event = enquiry(
                        &format!("e-{n}"),
                        &format!("c-{n}"),
                        &format!("q-{n}"),
                        "I was charged twice, please refund",
                    );
                    n += 2;
                    let answer = client
                        .post(format!("{}/v1/events", node.url))
                        .json(&event)
                        .send();
                    let mut seen = seen.lock().expect("not poisoned");
                    match answer {
                        Ok(response) if matches!(response.status().as_u16(), 200 | 202) => {
                            let receipt: Value = response.json().expect("a receipt");
                            seen.acknowledged
                                .push(receipt["instances"][0].as_u64().expect("an instance"));
                        }
                        Ok(response) if response.status().as_u16() == 503 => {
                            let body: Value = response.json().expect("a JSON error");
                            let code = body["error"]["code"].as_str().unwrap_or("?").to_owned();
                            *seen.refused.entry(code).or_default() += 1;
                            drop(seen);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(response) => panic!(
                            "{event} answered {}: {:?}",
                            response.status(),
                            response.text()
                        ),
                        Err(_) => seen.in_doubt += 1,
                    }
                }
            });
        }
        let under_load = nodes[0].eventually(Duration::from_secs(30), |_| acknowledged() >= 20);
        assert!(under_load, "events are acknowledged before the restart");

        server.stop();
        // Down for longer than a lease: each node stops serving its
        // shards (nobody may take them meanwhile) and says so.
        for node in &nodes {
            let noticed = node.eventually(Duration::from_secs(30), |node| {
                let (status, body) = node.request("GET", "/readyz", None);
                status == 503 && body["problems"].to_string().contains("renewing them fails")
            });
            assert!(
                noticed,
                "{} says it is not ready while the database is down: {}",
                node.url,
                node.request("GET", "/readyz", None).1
            );
            not_ready.push(node.request("GET", "/readyz", None).1["problems"].clone());
        }
        let before = acknowledged();
        server.start_again();
        wait_until_all_serve(&nodes);
        let recovered =
            nodes[0].eventually(Duration::from_secs(30), |_| acknowledged() >= before + 20);
        assert!(recovered, "events are acknowledged again after the restart");
    });

    let seen = seen.into_inner().expect("not poisoned");
    assert_each_completed_once(&nodes[1], &seen.acknowledged);
    eprintln!(
        "database restart under load: {} acknowledged and completed, refused {:?}, {} in doubt; not ready said {not_ready:?}",
        seen.acknowledged.len(),
        seen.refused,
        seen.in_doubt
    );
}
