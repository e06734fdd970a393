//! The WIT contract is enforced at the host: a step whose output is over
//! a size limit, or whose `json` argument is not a JSON object, fails with
//! an error naming the call, the field and the limit, and nothing of its
//! attempt (messages, notes, state) is committed. Limits are set with
//! `journeyd serve` flags.

use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::json;

#[test]
fn a_step_over_a_limit_or_with_json_that_is_not_an_object_fails_naming_it_and_commits_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(
        data.path(),
        &[
            "--max-state-bytes",
            "1000",
            "--max-message-bytes",
            "1000",
            "--max-json-bytes",
            "500",
            "--max-text-bytes",
            "500",
        ],
    );
    let (status, body) = journeyd.push("contract-breaker", fixture("contract-breaker"));
    assert_eq!(status, 201, "{body}");
    let cases = [
        (
            "state",
            "returned state: `state` is 2025 bytes, over the limit of 1000 bytes",
        ),
        (
            "body",
            "outbox.send: `body` is 2000 bytes, over the limit of 1000 bytes",
        ),
        (
            "metadata",
            "outbox.send: `metadata` is 2010 bytes, over the limit of 500 bytes",
        ),
        (
            "bad_metadata",
            "outbox.send: `metadata` is not a JSON object: key must be a string",
        ),
        (
            "note",
            "customer.note: `text` is 2000 bytes, over the limit of 500 bytes",
        ),
        (
            "log",
            "log.write: `message` is 2000 bytes, over the limit of 500 bytes",
        ),
    ];
    for (n, (case, mention)) in cases.into_iter().enumerate() {
        let journey = format!(
            r#"
name = "break-{n}"
[trigger]
event = "break-{n}.run"
correlation_key = "run"
[[steps]]
name = "misbehave"
plugin = "contract-breaker"
config = {{ break = "{case}", bytes = 2000 }}
retry = {{ attempts = 1 }}
"#
        );
        let (status, body) = journeyd.deploy(&format!("{case}.toml"), &journey);
        assert_eq!(status, 201, "{case}: {body}");
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("run-{case}"), "type": format!("break-{n}.run"),
            "customer": "c-1", "data": { "run": case },
        }));
        assert_eq!(status, 202, "{case}: {receipt}");
        let id = receipt["instances"][0].as_u64().expect("an instance");
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        assert_eq!(view["status"], "failed", "{case}: {view:#}");
        let failure = view["failure"].as_str().expect("a reason");
        assert!(failure.contains(mention), "{case}: {failure}");
        assert!(
            failure.contains("plugin broke the contract"),
            "{case}: {failure}"
        );
        assert_eq!(view["messages"], json!([]), "{case}: no message committed");
        assert_eq!(view["state"], json!({}), "{case}: no state committed");
    }
    let customer = journeyd.get("/v1/customers/c-1");
    assert!(
        customer["interactions"]
            .as_array()
            .expect("interactions")
            .iter()
            .all(|interaction| interaction["kind"] != "note"),
        "no note committed: {customer:#}"
    );
}
