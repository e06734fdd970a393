//! Version numbers are handed out once each: concurrent pushes and deploys
//! get distinct, gap-free numbers, and the runtime, the store and a
//! restarted runtime all agree on them.

use std::collections::BTreeSet;
use std::sync::Arc;

use journey_tests::{Journeyd, fixture, with_custom_section};
use serde_json::Value;

const CONCURRENT: u64 = 20;

fn journey(n: u64) -> String {
    format!(
        r#"
name = "tiny"
description = "version {n}"
[trigger]
event = "tiny.started"
correlation_key = "id"
[[steps]]
name = "only"
plugin = "noop"
"#
    )
}

fn versions(listing: &Value, field: &str, name: &str) -> BTreeSet<u64> {
    listing[field]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|entry| entry["name"] == name)
        .map(|entry| entry["version"].as_u64().expect("a version"))
        .collect()
}

/// The runtime lists exactly `all` as the versions of `rebuilt` and `tiny`.
fn assert_versions(journeyd: &Journeyd, all: &BTreeSet<u64>) {
    assert_eq!(
        &versions(&journeyd.get("/v1/plugins"), "plugins", "rebuilt"),
        all
    );
    assert_eq!(
        &versions(&journeyd.get("/v1/journeys"), "journeys", "tiny"),
        all
    );
}

#[test]
fn concurrent_pushes_and_deploys_get_distinct_versions_that_survive_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Arc::new(Journeyd::start(data.path()));
    let (status, body) = journeyd.push("noop", fixture("noop"));
    assert_eq!(status, 201, "{body}");
    let workers: Vec<_> = (0..CONCURRENT)
        .map(|n| {
            let journeyd = journeyd.clone();
            std::thread::spawn(move || {
                // A rebuilt plugin: the same code under another digest.
                let bytes = with_custom_section(fixture("noop"), "build", &n.to_le_bytes());
                let (status, pushed) = journeyd.push("rebuilt", bytes);
                assert_eq!(status, 201, "{pushed}");
                let (status, deployed) = journeyd.deploy("tiny.toml", &journey(n));
                assert_eq!(status, 201, "{deployed}");
                (
                    pushed["version"].as_u64().expect("a version"),
                    deployed["version"].as_u64().expect("a version"),
                )
            })
        })
        .collect();
    let (mut pushed, mut deployed) = (BTreeSet::new(), BTreeSet::new());
    for worker in workers {
        let (plugin, journey) = worker.join().expect("a worker");
        assert!(pushed.insert(plugin), "plugin version {plugin} twice");
        assert!(deployed.insert(journey), "journey version {journey} twice");
    }
    let all: BTreeSet<u64> = (1..=CONCURRENT).collect();
    assert_eq!((&pushed, &deployed), (&all, &all));
    assert_versions(&journeyd, &all);

    Arc::get_mut(&mut journeyd)
        .expect("the workers are done")
        .kill();
    let journeyd = Journeyd::start(data.path());
    assert_versions(&journeyd, &all);
    // The restarted runtime loaded every version: the latest one runs.
    let (status, receipt) = journeyd.send_event(&serde_json::json!({
        "id": "t-1", "type": "tiny.started", "customer": "c-1", "data": { "id": "1" },
    }));
    assert_eq!(status, 202, "{receipt}");
}
