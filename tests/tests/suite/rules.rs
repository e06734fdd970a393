//! Journey rules through a real journeyd on a simulated clock: entry
//! (segment, suppression, single re-entry), exit events, frequency caps
//! across journeys, channel opt-ins and engagement in the customer view,
//! and sending windows in the customer's time zone.

use journey_tests::{Journeyd, plugin};
use serde_json::{Value, json};

/// 2026-12-01T12:00:00Z: 07:00 in New York, 21:00 in Tokyo.
const START_MS: u64 = 1_796_126_400_000;
const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn start(dir: &std::path::Path) -> Journeyd {
    let journeyd = Journeyd::start_simulated(dir, START_MS);
    for name in ["send", "await", "sleep"] {
        let (status, body) = journeyd.push(name, plugin(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    journeyd
}

fn put_customer(journeyd: &Journeyd, id: &str, profile: Value) -> (u16, Value) {
    journeyd.put_customer(id, &profile)
}

fn send(journeyd: &Journeyd, id: &str, kind: &str, customer: &str, data: Value) -> Value {
    let (status, receipt) = journeyd.send_event(&json!({
        "id": id, "type": kind, "customer": customer, "data": data,
    }));
    assert_eq!(status, 202, "{kind} {id}: {receipt}");
    receipt
}

fn advance(journeyd: &Journeyd, ms: u64) {
    journeyd.advance_clock_by(ms);
}

fn instance(journeyd: &Journeyd, id: u64) -> Value {
    journeyd.get(&format!("/v1/instances/i-{id}"))
}

fn started(receipt: &Value) -> Vec<u64> {
    receipt["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|id| id.as_u64().expect("an id"))
        .collect()
}

/// A promotion: wait up to three days for a click. Single re-entry, a
/// segment, a suppression rule and two exit rules.
const PROMO: &str = r#"
name = "promo"
terminal = ["clicked", "ignored"]

[trigger]
event = "promo.started"
correlation_key = "promo_id"

[entry]
reentry = "single"
segment = [{ attribute = "interests", in = ["data"] }]
suppress = [{ attribute = "do_not_contact", in = [true] }]

[[exit]]
event = "customer.unsubscribed"

[[exit]]
event = "promo.converted"
correlate_on = "promo_id"

[events]
"customer.unsubscribed" = {}
"promo.converted" = {}
"promo.clicked" = { engagement = "clicked", channel = "email" }
"email.opened" = { engagement = "opened", channel = "email" }

[[steps]]
name = "wait_click"
plugin = "await"
on = { arrived = "clicked", timeout = "ignored" }
config = { event = "promo.clicked", timeout = "3d" }
"#;

#[test]
fn entry_rules_let_in_the_segment_once_and_keep_out_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    let (status, body) = journeyd.deploy("promo.toml", PROMO);
    assert_eq!(status, 201, "{body}");
    for (id, profile) in [
        ("c-in", json!({ "interests": ["data", "ai"] })),
        ("c-out", json!({ "interests": ["ai"] })),
        (
            "c-blocked",
            json!({ "interests": ["data"], "do_not_contact": true }),
        ),
    ] {
        let (status, body) = put_customer(&journeyd, id, profile);
        assert_eq!(status, 200, "{body}");
    }

    let first = send(
        &journeyd,
        "p-1",
        "promo.started",
        "c-in",
        json!({ "promo_id": "p" }),
    );
    let entered = started(&first);
    assert_eq!(entered.len(), 1, "{first}");
    let again = send(
        &journeyd,
        "p-2",
        "promo.started",
        "c-in",
        json!({ "promo_id": "p" }),
    );
    assert!(started(&again).is_empty(), "{again}");
    assert_eq!(
        again["skipped"][0]["reason"],
        format!(
            "re-entry is single and instance i-{} is still active",
            entered[0]
        ),
    );
    let outside = send(
        &journeyd,
        "p-3",
        "promo.started",
        "c-out",
        json!({ "promo_id": "p" }),
    );
    assert!(started(&outside).is_empty());
    assert_eq!(
        outside["skipped"][0]["reason"],
        r#"not in the segment: `interests` in ["data"] does not hold"#
    );
    let blocked = send(
        &journeyd,
        "p-4",
        "promo.started",
        "c-blocked",
        json!({ "promo_id": "p" }),
    );
    assert_eq!(
        blocked["skipped"][0]["reason"],
        "suppressed: `do_not_contact` in [true]"
    );
    // A customer nobody upserted has an empty profile: outside the segment.
    let unknown = send(
        &journeyd,
        "p-5",
        "promo.started",
        "c-ghost",
        json!({ "promo_id": "p" }),
    );
    assert!(started(&unknown).is_empty(), "{unknown}");

    // Once the first instance has finished, the customer may enter again.
    advance(&journeyd, 3 * DAY_MS + 1);
    assert_eq!(instance(&journeyd, entered[0])["terminal"], "ignored");
    let later = send(
        &journeyd,
        "p-6",
        "promo.started",
        "c-in",
        json!({ "promo_id": "p2" }),
    );
    assert_eq!(started(&later).len(), 1, "{later}");
}

#[test]
fn exit_events_end_instances_wherever_they_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    let (status, body) = journeyd.deploy("promo.toml", PROMO);
    assert_eq!(status, 201, "{body}");
    for id in ["c-1", "c-2"] {
        put_customer(&journeyd, id, json!({ "interests": ["data"] }));
    }
    let first = started(&send(
        &journeyd,
        "s-1",
        "promo.started",
        "c-1",
        json!({ "promo_id": "p1" }),
    ))[0];
    let second = started(&send(
        &journeyd,
        "s-2",
        "promo.started",
        "c-2",
        json!({ "promo_id": "p2" }),
    ))[0];
    advance(&journeyd, 1_000);
    assert_eq!(instance(&journeyd, first)["status"], "waiting");

    // About the customer: ends their instance, not the other one.
    let receipt = send(&journeyd, "u-1", "customer.unsubscribed", "c-1", json!({}));
    assert_eq!(receipt["exited"], json!([first]), "{receipt}");
    let ended = instance(&journeyd, first);
    assert_eq!(ended["status"], "exited", "{ended}");
    let last = ended["history"]
        .as_array()
        .expect("history")
        .last()
        .cloned();
    assert_eq!(
        last.as_ref().map(|entry| &entry["type"]),
        Some(&json!("exited"))
    );
    assert_eq!(
        last.as_ref().map(|entry| &entry["kind"]),
        Some(&json!("customer.unsubscribed"))
    );
    assert_eq!(instance(&journeyd, second)["status"], "waiting");

    // Correlated: only the instance carrying the value; another value ends nothing.
    let none = send(
        &journeyd,
        "v-0",
        "promo.converted",
        "c-2",
        json!({ "promo_id": "other" }),
    );
    assert!(none.get("exited").is_none(), "{none}");
    let receipt = send(
        &journeyd,
        "v-1",
        "promo.converted",
        "c-2",
        json!({ "promo_id": "p2" }),
    );
    assert_eq!(receipt["exited"], json!([second]), "{receipt}");
    // Sent again, the event is a no-op.
    let (status, again) = journeyd.send_event(&json!({
        "id": "v-1", "type": "promo.converted", "customer": "c-2",
        "data": { "promo_id": "p2" },
    }));
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );

    // Their timers are gone: days later nothing wakes them.
    advance(&journeyd, 4 * DAY_MS);
    for id in [first, second] {
        let view = instance(&journeyd, id);
        assert_eq!(view["status"], "exited");
        assert!(
            view["history"]
                .as_array()
                .expect("history")
                .iter()
                .all(|entry| entry["type"] != "woke"),
            "{view}"
        );
    }
    let funnel = journeyd.get("/v1/journeys/promo/funnel");
    assert_eq!(funnel["variants"]["-"][0]["exited_here"], 2, "{funnel}");
    // An exit event for a customer without instances is accepted and ends nothing.
    let receipt = send(
        &journeyd,
        "u-9",
        "customer.unsubscribed",
        "c-nobody",
        json!({}),
    );
    assert!(receipt.get("exited").is_none(), "{receipt}");
}

/// A journey that sends one email per step, `count` times.
fn mailer(name: &str, trigger: &str, count: usize) -> String {
    let mut source = format!(
        "name = \"{name}\"\nterminal = [\"done\"]\n[trigger]\nevent = \"{trigger}\"\ncorrelation_key = \"id\"\n"
    );
    for index in 0..count {
        let next = if index + 1 == count {
            "done".to_owned()
        } else {
            format!("mail_{}", index + 1)
        };
        source.push_str(&format!(
            "[[steps]]\nname = \"mail_{index}\"\nplugin = \"send\"\non = {{ sent = \"{next}\", capped = \"{next}\" }}\nconfig = {{ channel = \"email\", subject = \"{name} {index}\", template = \"Hello {{name}}\" }}\n"
        ));
    }
    source
}

#[test]
fn a_frequency_cap_holds_across_journeys_and_the_step_sees_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/frequency-caps",
        Some(
            json!({ "caps": [{ "channel": "email", "limit": 2, "period_ms": DAY_MS }] })
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    for (name, trigger, count) in [("welcome", "signed_up", 2), ("offer", "browsed", 1)] {
        let (status, body) =
            journeyd.deploy(&format!("{name}.toml"), &mailer(name, trigger, count));
        assert_eq!(status, 201, "{body}");
    }
    put_customer(
        &journeyd,
        "c-1",
        json!({ "name": "Ada", "email": "ada@example.com" }),
    );
    let welcome = started(&send(
        &journeyd,
        "w-1",
        "signed_up",
        "c-1",
        json!({ "id": "w" }),
    ))[0];
    advance(&journeyd, 1_000);
    assert_eq!(instance(&journeyd, welcome)["status"], "completed");
    let offer = started(&send(
        &journeyd,
        "o-1",
        "browsed",
        "c-1",
        json!({ "id": "o" }),
    ))[0];
    advance(&journeyd, 1_000);

    let view = instance(&journeyd, offer);
    assert_eq!(view["terminal"], "done", "{view}");
    let step = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|entry| entry["type"] == "step_ran")
        .cloned()
        .expect("the mail step ran");
    assert_eq!(step["outcome"]["transition"], "capped", "{step}");
    assert_eq!(step["capped"][0]["channel"], "email", "{step}");
    assert_eq!(step["capped"][0]["limit"], 2);
    assert!(step["messages"].as_array().expect("messages").is_empty());
    let outbox = journeyd.get("/v1/outbox?limit=50");
    let emails = outbox["messages"].as_array().map_or(0, |messages| {
        messages
            .iter()
            .filter(|message| message["customer_id"] == "c-1")
            .count()
    });
    assert_eq!(emails, 2, "{outbox}");

    // A day later the cap has room again.
    advance(&journeyd, DAY_MS);
    let later = started(&send(
        &journeyd,
        "o-2",
        "browsed",
        "c-1",
        json!({ "id": "o2" }),
    ))[0];
    advance(&journeyd, 1_000);
    let step = instance(&journeyd, later)["history"][1].clone();
    assert_eq!(step["outcome"]["transition"], "sent", "{step}");

    // Bad caps are refused and change nothing.
    for caps in [
        json!([{ "channel": "email", "limit": 0, "period_ms": DAY_MS }]),
        json!([{ "channel": "sms", "limit": 1, "period_ms": 10 }]),
        json!([{ "channel": "sms", "limit": 1, "period_ms": DAY_MS }, { "channel": "sms", "limit": 2, "period_ms": DAY_MS }]),
    ] {
        let (status, body) = journeyd.request(
            "PUT",
            "/v1/frequency-caps",
            Some(json!({ "caps": caps }).to_string().into_bytes()),
        );
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_caps");
    }
    assert_eq!(journeyd.get("/v1/frequency-caps")["caps"][0]["limit"], 2);
}

#[test]
fn opt_ins_and_engagement_events_feed_the_customer_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    let (status, body) = journeyd.deploy("promo.toml", PROMO);
    assert_eq!(status, 201, "{body}");
    send(
        &journeyd,
        "o-1",
        "channel.opted_in",
        "c-1",
        json!({ "channel": "sms" }),
    );
    send(
        &journeyd,
        "o-2",
        "channel.opted_out",
        "c-1",
        json!({ "channel": "push" }),
    );
    send(
        &journeyd,
        "e-1",
        "email.opened",
        "c-1",
        json!({ "promo_id": "p" }),
    );
    let view = journeyd.get("/v1/customers/c-1");
    let channels = view["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 2, "{view}");
    assert!(
        channels
            .iter()
            .any(|c| c["channel"] == "sms" && c["opted_in"] == true)
    );
    assert!(
        channels
            .iter()
            .any(|c| c["channel"] == "push" && c["opted_in"] == false)
    );
    assert_eq!(view["engagement"][0]["action"], "opened", "{view}");
    assert_eq!(view["engagement"][0]["channel"], "email");
    assert_eq!(view["engagement"][0]["details"]["promo_id"], "p");
    // An opt-in must say which channel.
    let (status, body) = journeyd.send_event(&json!({
        "id": "o-3", "type": "channel.opted_in", "customer": "c-1", "data": {},
    }));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`data.channel`"),
        "{body}"
    );
}

/// Sleep an hour, but only wake between 09:00 and 20:00 local time.
const NAP: &str = r#"
name = "nap"
terminal = ["done"]

[trigger]
event = "nap.started"
correlation_key = "id"

[[steps]]
name = "nap"
plugin = "sleep"
on = { woke = "done" }
config = { for = "1h", window = "09:00-20:00" }
"#;

#[test]
fn a_sending_window_keeps_wake_ups_out_of_local_quiet_hours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    let (status, body) = journeyd.deploy("nap.toml", NAP);
    assert_eq!(status, 201, "{body}");
    let zones = [
        // 13:00 UTC is 08:00 in New York: moved to 09:00 local (14:00 UTC).
        ("c-ny", "America/New_York", START_MS + 2 * HOUR_MS),
        // 13:00 UTC is 22:00 in Tokyo: moved to 09:00 local (00:00 UTC).
        ("c-tokyo", "Asia/Tokyo", START_MS + 12 * HOUR_MS),
        // 13:00 UTC is 14:00 in Amsterdam: inside the window.
        ("c-ams", "Europe/Amsterdam", START_MS + HOUR_MS),
    ];
    let mut instances = Vec::new();
    for (customer, zone, expected) in zones {
        put_customer(&journeyd, customer, json!({ "time_zone": zone }));
        let receipt = send(
            &journeyd,
            &format!("n-{customer}"),
            "nap.started",
            customer,
            json!({ "id": customer }),
        );
        instances.push((started(&receipt)[0], expected));
    }
    // Let the steps run without moving the clock.
    advance(&journeyd, 0);
    for (id, expected) in &instances {
        let view = instance(&journeyd, *id);
        assert_eq!(view["wake_at_ms"], *expected, "{view}");
    }
    advance(&journeyd, 12 * HOUR_MS);
    for (id, _) in &instances {
        assert_eq!(instance(&journeyd, *id)["status"], "completed");
    }
    let moved = instance(&journeyd, instances[0].0)["history"][1]["outcome"].clone();
    assert_eq!(moved["requested_ms"], START_MS + HOUR_MS, "{moved}");
    assert_eq!(moved["window"], "09:00-20:00 America/New_York");
}

#[test]
fn a_time_zone_that_does_not_exist_is_refused_or_fails_its_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journeyd = start(dir.path());
    put_customer(
        &journeyd,
        "c-1",
        json!({ "name": "Ada", "time_zone": "Europe/Amsterdam" }),
    );
    let (status, body) = put_customer(
        &journeyd,
        "c-1",
        json!({ "time_zone": "Mars/Olympus_Mons" }),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_time_zone");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`Mars/Olympus_Mons`"),
        "{body}"
    );
    assert_eq!(journeyd.get("/v1/customers/c-1")["profile"]["name"], "Ada");

    // A zone named in the journey that does not exist fails the step, named.
    let journey = NAP.replace("09:00-20:00", "09:00-20:00 Moon/Tranquility");
    let (status, body) = journeyd.deploy("nap.toml", &journey);
    assert_eq!(status, 201, "{body}");
    let id = started(&send(
        &journeyd,
        "n-1",
        "nap.started",
        "c-1",
        json!({ "id": "n" }),
    ))[0];
    advance(&journeyd, 1);
    // The default retry policy tries it three times, 1 s and 2 s apart.
    assert_eq!(instance(&journeyd, id)["status"], "waiting");
    advance(&journeyd, 3_000);
    let view = instance(&journeyd, id);
    assert_eq!(view["status"], "failed", "{view}");
    assert!(
        view["failure"]
            .as_str()
            .unwrap_or("")
            .contains("`Moon/Tranquility` does not exist"),
        "{view}"
    );
}
