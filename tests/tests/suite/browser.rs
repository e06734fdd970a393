//! The console in a real headless Chromium (WebDriver), against a real
//! journeyd running the shipped enquiry journey on a simulated clock: sign
//! in, the journey and what stands at each step, the funnel against the
//! API, an instance's timeline against its history, retrying a failed
//! instance from its page, rolling a canary from the page and seeing the
//! page follow a change made elsewhere without a reload; every page at
//! 1280×800 and at a phone's width. Screenshots of each page are saved in
//! `target/console-screenshots/`.

use std::time::Duration;

use journey_tests::browser::Browser;
use journey_tests::{Journeyd, enquiry, fixture, plugin, with_custom_section};
use serde_json::{Value, json};

/// 2026-11-30T09:00:00Z.
const START_MS: u64 = 1_796_029_200_000;
/// Long enough for a page to follow a change on its own (it asks every 2 s).
const LIVE: Duration = Duration::from_secs(20);

fn resolved(id: &str, customer: &str, enquiry_id: &str) -> Value {
    json!({
        "id": id,
        "type": "enquiry.resolved",
        "customer": customer,
        "data": { "enquiry_id": enquiry_id, "resolution": "Refunded.", "agent": "Sam" },
    })
}

fn send(journeyd: &Journeyd, event: &Value) -> Vec<u64> {
    let (status, receipt) = journeyd.send_event(event);
    assert_eq!(status, 202, "{receipt}");
    receipt["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|id| id.as_u64().expect("an id"))
        .collect()
}

fn tag(journeyd: &Journeyd, body: Value) {
    let (status, answer) = journeyd.set_tag("classify", "stable", &body);
    assert_eq!(status, 200, "{answer}");
}

/// The shipped enquiry journey with `classify` behind its `stable` tag and
/// no retries, five enquiries waiting for their resolution, two resolved,
/// and one failed by a classify that traps. Returns the failed instance.
fn enquiries(journeyd: &Journeyd) -> u64 {
    journeyd.setup_enquiry_as_shipped_with(
        |journeyd| tag(journeyd, json!({ "version": 1 })),
        |source| {
            source.replace(
                r#"plugin = "classify""#,
                "plugin = \"classify:stable\"\nretry = { attempts = 1 }",
            )
        },
    );
    let (status, pushed) = journeyd.push(
        "classify",
        with_custom_section(plugin("classify"), "build", b"2"),
    );
    assert_eq!(status, 201, "{pushed}");
    let (status, pushed) = journeyd.push("classify", fixture("trap"));
    assert_eq!(status, 201, "{pushed}");
    let customers = ["c-ada", "c-grace", "c-linus"];
    for n in 1..=7 {
        send(
            journeyd,
            &enquiry(
                &format!("evt-{n}"),
                customers[n % 3],
                &format!("q-{n}"),
                "I was charged twice, please refund the duplicate payment",
            ),
        );
    }
    journeyd.advance_clock_by(0);
    for n in [1, 2] {
        send(
            journeyd,
            &resolved(&format!("done-{n}"), customers[n % 3], &format!("q-{n}")),
        );
    }
    // Version 3 traps: the next enquiry fails at classify.
    tag(journeyd, json!({ "version": 3 }));
    let failed = send(
        journeyd,
        &enquiry(
            "evt-fail",
            "c-ada",
            "q-fail",
            "<script>window.pwned = true</script><img src=x onerror=\"window.pwned = true\">",
        ),
    )[0];
    journeyd.advance_clock_by(0);
    // Back to version 1, rolling version 2 out to 10%.
    tag(
        journeyd,
        json!({ "version": 1, "canary": { "version": 2, "percent": 10 } }),
    );
    failed
}

/// Every page at both sizes: screenshot, and no sideways scrolling.
fn look(browser: &Browser, name: &str) {
    browser.resize(1280, 800);
    browser.screenshot(&format!("{name}-1280x800"));
    assert!(browser.fits_width(), "{name} is wider than 1280 px");
    browser.resize(390, 844);
    browser.screenshot(&format!("{name}-390x844"));
    assert!(
        browser.fits_width(),
        "{name} is wider than a phone's 390 px"
    );
    browser.resize(1280, 800);
}

#[test]
fn an_operator_follows_enquiries_and_acts_on_them_in_the_console() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), START_MS);
    let failed = enquiries(&journeyd);
    let browser = Browser::start(1280, 800);

    // Signing in: nothing but the sign-in page without a token.
    browser.open(&format!("{}/journeys", journeyd.url));
    assert!(browser.url().ends_with("/signin"), "{}", browser.url());
    look(&browser, "signin");
    browser.fill("#token", "not-a-token");
    browser.follow("form[action='/signin'] button");
    assert!(browser.text("#signin-error").contains("not valid"));
    browser.fill("#token", &journeyd.token);
    browser.follow("form[action='/signin'] button");
    assert!(browser.url().ends_with("/journeys"), "{}", browser.url());
    look(&browser, "journeys");

    // The enquiry journey: each step with the instances standing there.
    browser.follow("a[href='/journeys/enquiry']");
    assert_eq!(browser.text("h1"), "enquiry version 1");
    let waiting = journeyd.get("/v1/instances?journey=enquiry&status=waiting")["instances"]
        .as_array()
        .expect("instances")
        .len();
    assert_eq!(waiting, 5, "five enquiries wait for their resolution");
    assert_eq!(
        browser.text("#step-await_resolution .standing"),
        format!("{waiting} here")
    );
    // The drawing: a box per step and terminal state, with the count.
    let drawn = browser.script(
        "return Array.from(document.querySelectorAll('#graph g.node')).map(node => node.dataset.node);",
    );
    // Every step, in the journey's order, as the funnel report lists them.
    let mut expected: Vec<String> = journeyd.get("/v1/journeys/enquiry/funnel")["variants"]["-"]
        .as_array()
        .expect("a line per step")
        .iter()
        .filter_map(|line| line["step"].as_str().map(str::to_owned))
        .collect();
    assert!(expected.len() >= 5, "{expected:?}");
    expected.push("resolved".into());
    for name in &expected {
        assert!(
            drawn
                .as_array()
                .is_some_and(|drawn| drawn.iter().any(|node| node == name)),
            "{name} is drawn: {drawn}"
        );
    }
    let waiting_box = browser.script(
        "return document.querySelector('#graph g.node[data-node=await_resolution] text.detail').textContent;",
    );
    assert!(
        waiting_box
            .as_str()
            .is_some_and(|text| text.ends_with(&format!("{waiting} here"))),
        "{waiting_box}"
    );
    look(&browser, "journey");
    browser.script("document.getElementById('graph').scrollIntoView(); return true;");
    browser.screenshot("journey-graph-1280x800");

    // The funnel: the page's numbers are the API's.
    browser.follow("#funnel-link");
    let funnel = journeyd.get("/v1/journeys/enquiry/funnel");
    assert_eq!(browser.text("#counted"), funnel["instances"].to_string());
    for line in funnel["variants"]["-"].as_array().expect("one variant") {
        let step = line["step"].as_str().expect("a step");
        for (count, field) in [
            ("reached", "reached"),
            ("waiting", "waiting"),
            ("completed", "completed_here"),
            ("failed", "failed_here"),
        ] {
            let shown = browser.text(&format!(
                "#funnel tr[data-step='{step}'] td[data-count='{count}']"
            ));
            assert_eq!(shown, line[field].to_string(), "{step} {count}");
        }
    }
    look(&browser, "funnel");

    // The failed instance, found by searching, and its timeline.
    browser.open(&format!("{}/instances", journeyd.url));
    look(&browser, "instances");
    browser.run(async {
        use fantoccini::Locator;
        let select = browser
            .client
            .find(Locator::Css("#status"))
            .await
            .expect("the status filter");
        select
            .select_by_value("failed")
            .await
            .expect("failed is offered");
    });
    browser.follow("form.search button");
    assert_eq!(
        browser.texts("#instances tbody tr td:first-child"),
        [format!("i-{failed}")],
        "the search finds the one failed instance"
    );
    browser.follow(&format!("a[href='/instances/i-{failed}']"));
    let view = journeyd.get(&format!("/v1/instances/i-{failed}"));
    let history_steps: Vec<String> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|entry| entry["step"].as_str())
        .map(str::to_owned)
        .collect();
    let timeline_steps: Vec<String> = browser
        .texts("#timeline li.moment .what")
        .iter()
        .filter_map(|title| title.strip_prefix("Step "))
        .map(|rest| {
            rest.split([':', ' '])
                .next()
                .expect("a step name")
                .to_owned()
        })
        .collect();
    assert_eq!(timeline_steps, history_steps, "the timeline's steps");
    assert_eq!(
        timeline_steps,
        ["acknowledge", "classify"],
        "acknowledged, then failed at classify"
    );
    assert!(
        browser
            .text("#timeline li[data-kind=failed]")
            .contains("classify")
    );
    assert_eq!(browser.text("#status"), "failed");
    // The hostile enquiry text is shown as text, never run.
    let started = browser.text("#timeline li[data-kind=event]");
    assert!(
        started.contains("<script>window.pwned = true</script>"),
        "the enquiry's text is shown as it was sent: {started}"
    );
    assert_eq!(browser.script("return window.pwned === undefined;"), true);
    look(&browser, "instance-failed");

    // Retry it from the page, confirming first.
    browser.fill("#retry-reason", "classify fixed");
    browser.follow("#retry");
    assert!(
        browser.text("h1").starts_with("Retry"),
        "a confirmation page"
    );
    look(&browser, "confirm-retry");
    assert_eq!(
        journeyd.get(&format!("/v1/instances/i-{failed}"))["status"],
        "failed",
        "nothing changes before the confirmation"
    );
    browser.follow("#confirm");
    assert!(browser.text("#done").contains("retry"));
    journeyd.advance_clock_by(0);
    let retried = journeyd.get(&format!("/v1/instances/i-{failed}"));
    assert_eq!(retried["status"], "waiting", "{retried:#}");
    assert_eq!(retried["waiting_at"], "await_resolution");
    let reasons: Vec<&str> = retried["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["type"] == "retried")
        .filter_map(|entry| entry["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 1, "{retried:#}");
    assert!(reasons[0].starts_with("classify fixed"), "{reasons:?}");
    // The page follows on its own.
    assert!(
        browser.wait_for(LIVE, |browser| browser.text("#status") == "waiting"),
        "the instance page shows the retried instance waiting without a reload"
    );
    look(&browser, "instance-retried");

    // Deliveries: every message the enquiries queued (no integration is
    // set up here, so none has left).
    browser.open(&format!("{}/deliveries", journeyd.url));
    let outbox = journeyd.get("/v1/outbox?limit=1000")["messages"]
        .as_array()
        .expect("messages")
        .len();
    assert!(outbox > 0);
    assert_eq!(
        browser.texts("#deliveries tbody tr").len(),
        outbox.min(50),
        "the page lists the outbox"
    );
    look(&browser, "deliveries");

    // Ada, whole: every instance of hers, from her instance's page.
    browser.open(&format!("{}/instances/i-{failed}", journeyd.url));
    browser.follow("a[href='/customers/c-ada']");
    let hers = journeyd.get("/v1/instances?limit=1000")["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|instance| instance["customer_id"] == "c-ada")
        .map(|instance| format!("i-{}", instance["id"]))
        .collect::<std::collections::BTreeSet<_>>();
    let shown = browser
        .texts("#instances tbody tr td:first-child")
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(shown, hers, "her instances across journeys");
    look(&browser, "customer");

    // Plugins: move the canary from the page ...
    browser.open(&format!("{}/plugins", journeyd.url));
    let share = "[data-tag='classify:stable'] .share";
    assert_eq!(browser.text(share), "10%");
    look(&browser, "plugins");
    browser.fill("#percent-classify-stable", "25");
    browser.fill("#reason-classify-stable", "looks healthy");
    browser.follow("[data-tag='classify:stable'] .rollout-button");
    look(&browser, "confirm-rollout");
    browser.follow("#confirm");
    assert_eq!(browser.text(share), "25%");
    let classify = journeyd.get("/v1/plugins/classify");
    assert_eq!(classify["tags"][0]["canary"]["percent"], 25);
    // ... and the page follows a move made elsewhere, without a reload.
    tag(
        &journeyd,
        json!({ "version": 1, "canary": { "version": 2, "percent": 40 } }),
    );
    assert!(
        browser.wait_for(LIVE, |browser| browser.text(share) == "40%"),
        "the plugins page shows the canary's new share without a reload"
    );
    look(&browser, "plugins-moved");
}

#[test]
fn a_read_token_sees_the_console_but_cannot_act_in_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), START_MS);
    let failed = enquiries(&journeyd);
    let reader = journeyd.create_token("viewer", "read");
    let browser = Browser::start(1280, 800);
    browser.open(&format!("{}/signin", journeyd.url));
    browser.fill("#token", &reader);
    browser.follow("form[action='/signin'] button");
    browser.open(&format!("{}/instances/i-{failed}", journeyd.url));
    assert_eq!(browser.text("#status"), "failed");
    assert!(!browser.has("#retry"), "no action is offered to a reader");
    browser.open(&format!("{}/plugins", journeyd.url));
    assert!(!browser.has(".rollout-button"));
    // A form posted by hand from the page is refused.
    browser.script(&format!(
        "const form = document.createElement('form');
         form.method = 'post';
         form.action = '/instances/i-{failed}/retry';
         const confirm = document.createElement('input');
         confirm.name = 'confirm';
         confirm.value = 'yes';
         form.appendChild(confirm);
         document.body.appendChild(form);
         form.submit();"
    ));
    assert!(
        browser.wait_for(LIVE, |browser| browser.text("h1") == "Forbidden"),
        "the post is refused"
    );
    assert!(browser.text(".error").contains("admin"));
    assert_eq!(
        journeyd.get(&format!("/v1/instances/i-{failed}"))["status"],
        "failed"
    );
}
