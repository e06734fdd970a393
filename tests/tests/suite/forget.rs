//! Forgetting a customer: nothing of them is left anywhere the API reads
//! (profile, instances, messages, deliveries, events), the funnel keeps
//! their counts, the audit entry holds counts and the request id only, and
//! with `--instances anonymise` their unfinished instance runs on under a
//! pseudonym, scrubbed.

use std::time::Duration;

use journey_tests::{Journeyd, enquiry};
use serde_json::Value;

/// 1 December 2026, 08:00 UTC.
const START_MS: u64 = 1_796_112_000_000;
/// What would give Ada away.
const ADA: [&str; 4] = ["c-ada", "ada@example.com", "+447700900001", "Ada"];

fn start(data: &std::path::Path) -> Journeyd {
    let journeyd = Journeyd::start_simulated(data, START_MS);
    journeyd.setup_enquiry_as_shipped();
    for (id, customer, enquiry_id) in [
        ("evt-1", "c-ada", "q-1"),
        ("evt-2", "c-ada", "q-2"),
        ("evt-3", "c-grace", "q-3"),
    ] {
        let (status, receipt) = journeyd.send_event(&enquiry(
            id,
            customer,
            enquiry_id,
            "I was charged twice, please refund",
        ));
        assert_eq!(status, 202, "{receipt}");
    }
    journeyd.advance_clock_by(0);
    journeyd
}

/// Everything the API shows about instances, messages and deliveries.
fn readable(journeyd: &Journeyd) -> String {
    let mut all = String::new();
    let instances = journeyd.get("/v1/instances?limit=1000");
    for instance in instances["instances"].as_array().expect("a list") {
        let id = instance["id"].as_u64().expect("an id");
        all.push_str(&journeyd.get(&format!("/v1/instances/i-{id}")).to_string());
    }
    all.push_str(&journeyd.get("/v1/outbox?limit=10000").to_string());
    all.push_str(&journeyd.get("/v1/deliveries?limit=10000").to_string());
    all
}

fn assert_nothing_of_ada(text: &str, what: &str) {
    for giveaway in ADA {
        assert!(
            !text.contains(giveaway),
            "{what} still holds `{giveaway}`:\n{text}"
        );
    }
}

fn backup(journeyd: &Journeyd, to: &std::path::Path) {
    let (ok, printed) = journeyd.run_cli([
        std::ffi::OsStr::new("backup"),
        "--to".as_ref(),
        to.as_os_str(),
    ]);
    assert!(ok, "{printed}");
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn instances_of(journeyd: &Journeyd, status: &str) -> Vec<Value> {
    journeyd.get(&format!("/v1/instances?status={status}&limit=1000"))["instances"]
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn a_forgotten_customer_leaves_nothing_the_api_can_read_and_the_audit_holds_no_personal_data() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = start(data.path());
    let waiting = instances_of(&journeyd, "waiting");
    assert_eq!(
        waiting.len(),
        3,
        "all three wait for the team: {waiting:#?}"
    );
    assert!(
        readable(&journeyd).contains("ada@example.com"),
        "Ada was written to"
    );
    let backup_before = data.path().join("before.backup");
    let backup_after = data.path().join("after.backup");
    backup(&journeyd, &backup_before);
    assert!(
        holds(
            &std::fs::read(&backup_before).expect("read"),
            b"ada@example.com"
        ),
        "a backup before the forget holds Ada's email (the search below can find it)"
    );
    let funnel_before = journeyd.get("/v1/journeys/enquiry/funnel");

    let (ok, stdout) =
        journeyd.run_cli(["customer", "forget", "c-ada", "--request-id", "ticket-42"]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("2 cancelled, 0 anonymised, 2 purged"),
        "{stdout}"
    );

    let (status, body) = journeyd.request("GET", "/v1/customers/c-ada", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_customer", "{body}");
    assert_nothing_of_ada(&readable(&journeyd), "the API");
    // Grace is untouched.
    let left = instances_of(&journeyd, "waiting");
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["customer_id"], "c-grace");
    assert_eq!(journeyd.get("/v1/customers/c-grace")["id"], "c-grace");

    // The funnel still counts Ada's two instances.
    let funnel = journeyd.get("/v1/journeys/enquiry/funnel");
    assert_eq!(
        funnel["instances"], funnel_before["instances"],
        "{funnel:#}"
    );
    assert_eq!(funnel["purged"], 2, "{funnel:#}");

    // The audit entry: what was done, by whom, for which request; not who.
    let audit = journeyd.get("/v1/audit");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audit:#}");
    let entry = &entries[0];
    assert_eq!(entry["action"], "customer.forget", "{entry:#}");
    assert_eq!(entry["request_id"], "ticket-42", "{entry:#}");
    assert_eq!(entry["details"]["cancelled"], 2, "{entry:#}");
    assert_eq!(entry["details"]["purged"], 2, "{entry:#}");
    assert_eq!(entry["details"]["records"]["profile"], true, "{entry:#}");
    assert_eq!(entry["details"]["records"]["events"], 2, "{entry:#}");
    assert_eq!(entry["details"]["records"]["interactions"], 2, "{entry:#}");
    assert_nothing_of_ada(&audit.to_string(), "the audit log");

    // A backup holds only live records, and restoring it rewrites the
    // store without the old copies sled keeps until it reuses their space:
    // neither holds Ada's email or id.
    backup(&journeyd, &backup_after);
    let bytes = std::fs::read(&backup_after).expect("read");
    for giveaway in [&b"ada@example.com"[..], b"c-ada", b"+447700900001"] {
        assert!(
            !holds(&bytes, giveaway),
            "the backup holds {:?}",
            String::from_utf8_lossy(giveaway)
        );
    }
    let restored = data.path().join("restored");
    let (ok, printed) = journeyd.run_cli([
        std::ffi::OsStr::new("restore"),
        backup_after.as_os_str(),
        "--data".as_ref(),
        restored.as_os_str(),
    ]);
    assert!(ok, "{printed}");
    for file in files_under(&restored) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !holds(&bytes, b"ada@example.com") && !holds(&bytes, b"c-ada"),
            "{} holds Ada",
            file.display()
        );
    }

    // Events sent about Ada again start afresh: nothing of before is found.
    let (status, receipt) =
        journeyd.send_event(&enquiry("evt-1", "c-ada", "q-1", "same id as before"));
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["duplicate"], false, "{receipt}");
}

#[test]
fn an_anonymised_instance_runs_on_under_a_pseudonym_without_the_customers_data() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = start(data.path());
    let (status, body) = journeyd.request(
        "POST",
        "/v1/customers/c-ada/forget",
        Some(br#"{"instances": "anonymise"}"#.to_vec()),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["anonymised"], 2, "{body}");
    assert_eq!(body["purged"], 0, "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_nothing_of_ada(&readable(&journeyd), "the API");
    let waiting = instances_of(&journeyd, "waiting");
    assert_eq!(waiting.len(), 3, "they still wait: {waiting:#?}");
    let anonymised: Vec<&Value> = waiting
        .iter()
        .filter(|instance| instance["customer_id"] != "c-grace")
        .collect();
    let pseudonym = anonymised[0]["customer_id"].as_str().expect("a customer");
    assert!(pseudonym.starts_with("anon-"), "{pseudonym}");
    assert!(
        anonymised
            .iter()
            .all(|instance| instance["customer_id"] == pseudonym),
        "one pseudonym for the customer: {anonymised:#?}"
    );

    // They run on: the team's resolution still reaches one, the SLA timer
    // still fires for the other.
    let (status, receipt) = journeyd.send_event(&serde_json::json!({
        "id": "res-1", "type": "enquiry.resolved", "customer": "support",
        "data": { "enquiry_id": "q-1", "resolution": "refunded", "agent": "sam" },
    }));
    assert_eq!(status, 202, "{receipt}");
    journeyd.advance_clock_by(2 * 24 * 60 * 60 * 1000);
    let after: Vec<Value> = anonymised
        .iter()
        .map(|instance| {
            let id = instance["id"].as_u64().expect("an id");
            journeyd.wait_instance(id, Duration::from_secs(10))
        })
        .collect();
    let history: Vec<String> = after
        .iter()
        .map(|view| journey_tests::steps_of(view).join(","))
        .collect();
    assert!(
        after.iter().any(|view| view["status"] == "completed"),
        "the resolved one completed: {history:?}"
    );
    assert!(
        history.iter().any(|steps| steps.contains("escalate")),
        "the other's SLA timer fired: {history:?}"
    );
    assert_nothing_of_ada(&readable(&journeyd), "the API after they ran on");
}
