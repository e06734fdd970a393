//! The web console against a real journeyd, over HTTP: it shows nothing
//! but the sign-in page without a valid token, signs a `read` token in
//! with a cookie it checks on every page, shows the journeys with what
//! stands at each step (the same numbers the API gives), and shows
//! hostile text as text.

use std::collections::BTreeMap;
use std::time::Duration;

use journey_tests::{Journeyd, enquiry, workspace};
use serde_json::json;

/// An HTTP client that follows no redirect, so each answer is seen.
fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `GET path` with `cookie` (if any): status, `Location`, body.
fn get(journeyd: &Journeyd, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    let mut request = browser().get(format!("{}{path}", journeyd.url));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    answer(request.send().expect("journeyd answers"))
}

fn answer(response: reqwest::blocking::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    (status, location, response.text().expect("a body"))
}

/// The `Set-Cookie` header of `response`, if any.
fn set_cookie(response: &reqwest::blocking::Response) -> Option<String> {
    response
        .headers()
        .get("set-cookie")
        .map(|value| value.to_str().expect("ASCII").to_owned())
}

/// `POST /signin` with `token`: status, the cookie set (name=value) and
/// its attributes, and the body.
fn sign_in(journeyd: &Journeyd, token: &str) -> (u16, Option<(String, String)>, String) {
    let response = browser()
        .post(format!("{}/signin", journeyd.url))
        .form(&[("token", token)])
        .send()
        .expect("journeyd answers");
    let cookie = set_cookie(&response).map(|set| match set.split_once(';') {
        Some((pair, attributes)) => (pair.to_owned(), attributes.to_owned()),
        None => (set, String::new()),
    });
    let (status, _, body) = answer(response);
    (status, cookie, body)
}

#[test]
fn the_console_signs_a_token_in_and_shows_nothing_without_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();

    let (status, location, _) = get(&journeyd, "/", None);
    assert_eq!((status, location.as_str()), (303, "/journeys"));
    for path in [
        "/journeys",
        "/journeys/enquiry",
        "/journeys/enquiry?version=1",
    ] {
        let (status, location, body) = get(&journeyd, path, None);
        assert_eq!(
            (status, location.as_str()),
            (303, "/signin"),
            "{path}: {body}"
        );
        assert!(!body.contains("enquiry"), "{path} shows data: {body}");
    }
    let (status, _, page) = get(&journeyd, "/signin", None);
    assert_eq!(status, 200);
    assert!(page.contains(r#"<label for="token">"#), "{page}");
    assert!(
        !page.contains("enquiry"),
        "the sign-in page shows data: {page}"
    );
    let forged = "journeyd_console=not-a-token";
    let (status, location, _) = get(&journeyd, "/journeys", Some(forged));
    assert_eq!(
        (status, location.as_str()),
        (303, "/signin"),
        "a forged cookie"
    );

    let (status, cookie, page) = sign_in(&journeyd, "not-a-token");
    assert_eq!(status, 401);
    assert!(cookie.is_none(), "a refused token sets no cookie");
    assert!(page.contains("not valid"), "{page}");
    let ingest = journeyd.create_token("sender", "ingest");
    let (status, cookie, page) = sign_in(&journeyd, &ingest);
    assert_eq!(status, 401);
    assert!(cookie.is_none());
    assert!(page.contains("needs `read` or `admin`"), "{page}");

    let read = journeyd.create_token("viewer", "read");
    // Another site's page cannot sign a browser in, even with a valid token.
    let response = browser()
        .post(format!("{}/signin", journeyd.url))
        .header("Origin", "http://evil.example")
        .form(&[("token", read.as_str())])
        .send()
        .expect("journeyd answers");
    assert_eq!(response.status().as_u16(), 403);
    assert!(
        set_cookie(&response).is_none(),
        "no cookie for another site's post"
    );
    let (status, cookie, _) = sign_in(&journeyd, &read);
    assert_eq!(status, 303);
    let (cookie, attributes) = cookie.expect("a cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    let (status, _, page) = get(&journeyd, "/journeys", Some(&cookie));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"href="/journeys/enquiry""#), "{page}");
    assert!(page.contains("viewer <small>(read)</small>"), "{page}");

    // Revoked: the next page is the sign-in page again.
    let (status, body) = journeyd.request("DELETE", "/v1/tokens/viewer", None);
    assert_eq!(status, 200, "{body}");
    let (status, location, _) = get(&journeyd, "/journeys", Some(&cookie));
    assert_eq!(
        (status, location.as_str()),
        (303, "/signin"),
        "a revoked token"
    );

    let admin = journeyd.token.clone();
    let (_, cookie, _) = sign_in(&journeyd, &admin);
    let (cookie, _) = cookie.expect("a cookie");
    let response = browser()
        .post(format!("{}/signout", journeyd.url))
        .header("Cookie", &cookie)
        .send()
        .expect("journeyd answers");
    let cleared = set_cookie(&response).unwrap_or_default();
    assert_eq!(response.status().as_u16(), 303);
    assert!(
        cleared.starts_with("journeyd_console=;") && cleared.contains("Max-Age=0"),
        "signing out clears the cookie: {cleared}"
    );
}

#[test]
fn the_journey_page_shows_each_step_with_what_stands_there_and_text_as_text() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry_as_shipped();
    let customers = ["c-ada", "c-grace", "c-linus"];
    for n in 0..6 {
        let event = enquiry(
            &format!("evt-{n}"),
            customers[n % 3],
            &format!("q-{n}"),
            "<script>alert('enquiry')</script> my order is late",
        );
        let (status, body) = journeyd.send_event(&event);
        assert_eq!(status, 202, "{body}");
    }
    // Every enquiry reaches the wait for the team's resolution.
    let settled = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        let all = journeyd.get("/v1/instances?journey=enquiry");
        all["instances"].as_array().is_some_and(|instances| {
            instances.len() == 6
                && instances
                    .iter()
                    .all(|instance| instance["status"] == "waiting")
        })
    });
    assert!(settled, "the enquiries never all waited");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for instance in journeyd.get("/v1/instances?journey=enquiry")["instances"]
        .as_array()
        .expect("instances")
    {
        let step = instance["waiting_at"]
            .as_str()
            .unwrap_or_else(|| panic!("a step: {instance}"))
            .to_owned();
        *expected.entry(step).or_default() += 1;
    }

    // Version 2 says something hostile about itself.
    let source = std::fs::read_to_string(workspace().join("examples/enquiry/journey.toml"))
        .expect("the shipped journey");
    let hostile = source.replace(
        "description = \"Customer enquiry: acknowledge, classify, hand over, resolve within the SLA\"",
        "description = \"<script>alert('journey')</script> & <b>bold</b>\"",
    );
    assert_ne!(hostile, source, "the description line is where it was");
    let (status, body) = journeyd.deploy("journey.toml", &hostile);
    assert_eq!(status, 201, "{body}");

    let (_, cookie, _) = sign_in(&journeyd, &journeyd.token);
    let (cookie, _) = cookie.expect("a cookie");
    let (status, _, latest) = get(&journeyd, "/journeys/enquiry", Some(&cookie));
    assert_eq!(status, 200, "{latest}");
    assert!(
        latest.contains("version 2"),
        "the latest version by default"
    );
    assert!(!latest.contains("<script>"), "hostile text ran: {latest}");
    assert!(!latest.contains("<b>bold"), "{latest}");
    assert!(
        latest.contains("&#60;script&#62;alert(&#39;journey&#39;)&#60;/script&#62; &#38; &#60;b&#62;bold&#60;/b&#62;")
            || latest.contains("&lt;script&gt;alert(&#x27;journey&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"),
        "the description is shown as text: {latest}"
    );

    let (status, _, first) = get(&journeyd, "/journeys/enquiry?version=1", Some(&cookie));
    assert_eq!(status, 200, "{first}");
    let shown = |page: &str, step: &str| -> u64 {
        let marker = format!(r#"data-step="{step}">"#);
        let (_, after) = page
            .split_once(&marker)
            .unwrap_or_else(|| panic!("step {step}: {page}"));
        let (count, _) = after.split_once(" here").expect("a count");
        count.parse().expect("a number")
    };
    let steps = [
        "acknowledge",
        "classify",
        "handover",
        "await_resolution",
        "escalate",
        "resolve",
    ];
    for step in steps {
        assert_eq!(
            shown(&first, step),
            expected.get(step).copied().unwrap_or(0),
            "instances at {step}; the API says {expected:?}"
        );
        assert_eq!(shown(&latest, step), 0, "version 2 has none at {step}");
    }
    assert_eq!(expected.values().sum::<u64>(), 6, "{expected:?}");
    for step in steps {
        assert!(
            first.contains(&format!(r#"id="step-{step}""#)),
            "{step}: {first}"
        );
    }
    assert!(
        first.contains(r#"<span class="terminal">resolved</span>"#),
        "{first}"
    );

    let (status, _, missing) = get(&journeyd, "/journeys/enquiry?version=9", Some(&cookie));
    assert_eq!(status, 404);
    assert!(missing.contains("versions 1 to 2, not 9"), "{missing}");
    let (status, _, missing) = get(&journeyd, "/journeys/nothing", Some(&cookie));
    assert_eq!(status, 404);
    assert!(missing.contains("no journey `nothing`"), "{missing}");
}

/// `POST path` with `cookie`, an `Origin` (if any) and a form.
fn post(
    journeyd: &Journeyd,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = browser()
        .post(format!("{}{path}", journeyd.url))
        .header("Cookie", cookie)
        .form(form);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    answer(request.send().expect("journeyd answers"))
}

#[test]
fn acting_needs_an_admin_token_a_page_of_the_console_and_a_confirmation() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry_as_shipped();
    for (n, customer) in ["c-ada", "c-grace"].into_iter().enumerate() {
        let event = enquiry(&format!("evt-{n}"), customer, &format!("q-{n}"), "late");
        let (status, body) = journeyd.send_event(&event);
        assert_eq!(status, 202, "{body}");
    }
    let waiting = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        journeyd.get("/v1/instances?journey=enquiry&status=waiting")["instances"]
            .as_array()
            .is_some_and(|instances| instances.len() == 2)
    });
    assert!(waiting, "both enquiries wait for their resolution");
    let status_of = |id: &str| journeyd.get(&format!("/v1/instances/{id}"))["status"].clone();
    // The two instances, by customer: Ada's enquiry q-0, Grace's q-1.
    let id_of = |customer: &str| {
        journeyd.get("/v1/instances?journey=enquiry")["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|instance| instance["customer_id"] == customer)
            .map(|instance| format!("i-{}", instance["id"]))
            .expect("an instance")
    };
    let (ada, grace) = (id_of("c-ada"), id_of("c-grace"));
    let row = |id: &str| format!(r#"data-instance="{id}""#);
    let origin = journeyd.url.clone();

    let reader = journeyd.create_token("viewer", "read");
    let (_, cookie, _) = sign_in(&journeyd, &reader);
    let (reader, _) = cookie.expect("a cookie");
    let (_, cookie, _) = sign_in(&journeyd, &journeyd.token);
    let (admin, _) = cookie.expect("a cookie");
    let confirmed = [("reason", "duplicate"), ("confirm", "yes")];

    // The search: by customer, by correlation value, by step.
    let (status, _, found) = get(&journeyd, "/instances?customer=c-grace", Some(&reader));
    assert_eq!(status, 200, "{found}");
    assert!(
        found.contains(&row(&grace)) && !found.contains(&row(&ada)),
        "{found}"
    );
    let (_, _, found) = get(
        &journeyd,
        "/instances?correlation=q-0&step=await_resolution",
        Some(&reader),
    );
    assert!(
        found.contains(&row(&ada)) && !found.contains(&row(&grace)),
        "{found}"
    );
    let (status, _, refused) = get(&journeyd, "/instances?status=lost", Some(&reader));
    assert_eq!(status, 400);
    assert!(refused.contains("no status `lost`"), "{refused}");

    // A read token is refused, whatever it sends.
    let (status, _, page) = post(
        &journeyd,
        &format!("/instances/{ada}/cancel"),
        &reader,
        Some(&origin),
        &confirmed,
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("acting needs an `admin` token"), "{page}");
    // An admin's browser made to post by another site, or by no page at all.
    for foreign in [Some("http://evil.example"), Some("null"), None] {
        let (status, _, page) = post(
            &journeyd,
            &format!("/instances/{ada}/cancel"),
            &admin,
            foreign,
            &confirmed,
        );
        assert_eq!(status, 403, "{foreign:?}: {page}");
    }
    assert_eq!(status_of(&ada), "waiting", "nothing was changed");

    // From the console's own page: first the confirmation, then the act.
    let (status, _, page) = post(
        &journeyd,
        &format!("/instances/{ada}/cancel"),
        &admin,
        Some(&origin),
        &[("reason", "duplicate")],
    );
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("Cancel {ada}?")) && page.contains(r#"name="confirm" value="yes""#),
        "{page}"
    );
    assert_eq!(status_of(&ada), "waiting", "asking changes nothing");
    let (status, location, page) = post(
        &journeyd,
        &format!("/instances/{ada}/cancel"),
        &admin,
        Some(&origin),
        &confirmed,
    );
    assert_eq!(
        (status, location.as_str()),
        (303, format!("/instances/{ada}?done=cancel").as_str()),
        "{page}"
    );
    let cancelled = journeyd.get(&format!("/v1/instances/{ada}"));
    assert_eq!(cancelled["status"], "cancelled");
    let reason = cancelled["history"]
        .as_array()
        .and_then(|history| history.last())
        .and_then(|entry| entry["reason"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(reason, "duplicate (console, admin)");
    // An action that does not apply says why and changes nothing.
    let (status, _, page) = post(
        &journeyd,
        &format!("/instances/{ada}/retry"),
        &admin,
        Some(&origin),
        &confirmed,
    );
    assert_eq!(status, 409, "{page}");
    assert_eq!(status_of(&ada), "cancelled");
    assert_eq!(status_of(&grace), "waiting");
}

#[test]
fn deliveries_are_listed_by_status_a_dead_one_is_replayed_and_a_customer_seen_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (journeyd, sink) = super::delivery::three_dead_messages(dir.path());
    let (_, cookie, _) = sign_in(&journeyd, &journeyd.token);
    let (admin, _) = cookie.expect("a cookie");
    let reader = journeyd.create_token("viewer", "read");
    let (_, cookie, _) = sign_in(&journeyd, &reader);
    let (reader, _) = cookie.expect("a cookie");
    let dead = journeyd.get("/v1/deliveries?status=dead");
    let dead: Vec<(String, String, String)> = dead["deliveries"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|entry| {
            (
                entry["message"]["id"].as_str().expect("an id").to_owned(),
                entry["message"]["channel"]
                    .as_str()
                    .expect("a channel")
                    .to_owned(),
                entry["delivery"]["error"]
                    .as_str()
                    .expect("an error")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");

    // The dead messages, each with its error, as the API lists them.
    let (status, _, page) = get(&journeyd, "/deliveries?status=dead", Some(&reader));
    assert_eq!(status, 200, "{page}");
    for (id, _, _) in &dead {
        assert!(
            page.contains(&format!(r#"data-message="{id}""#)),
            "{id}: {page}"
        );
    }
    for error in ["valid address", "channel_is_archived"] {
        assert!(dead.iter().any(|(_, _, said)| said.contains(error)));
        assert!(page.contains(error), "{error}: {page}");
    }
    assert!(
        !page.contains("Replay…"),
        "a read token is offered no replay"
    );
    let (_, _, undelivered) = get(&journeyd, "/deliveries?status=undelivered", Some(&admin));
    assert_eq!(undelivered.matches("data-message=").count(), 3);
    assert_eq!(undelivered.matches("Replay…").count(), 3, "{undelivered}");
    let (_, _, by_integration) = get(
        &journeyd,
        "/deliveries?status=dead&integration=team",
        Some(&admin),
    );
    let team: Vec<&String> = dead
        .iter()
        .filter(|(_, channel, _)| channel == "team")
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(by_integration.matches("data-message=").count(), team.len());
    let (_, _, delivered) = get(&journeyd, "/deliveries?status=delivered", Some(&admin));
    assert!(delivered.contains("No message matches"), "{delivered}");
    let (status, _, bad) = get(&journeyd, "/deliveries?status=lost", Some(&admin));
    assert_eq!(status, 400);
    assert!(bad.contains("no delivery status `lost`"), "{bad}");

    // Replaying: not with a read token, and only once confirmed.
    super::delivery::revive_team(&journeyd, &sink);
    let id = team[0].as_str();
    let origin = journeyd.url.clone();
    let (status, _, _) = post(
        &journeyd,
        "/deliveries/replay",
        &reader,
        Some(&origin),
        &[("id", id), ("confirm", "yes")],
    );
    assert_eq!(status, 403);
    let (status, _, confirm) = post(
        &journeyd,
        "/deliveries/replay",
        &admin,
        Some(&origin),
        &[("id", id)],
    );
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains("Send message"), "{confirm}");
    let status_of = |id: &str| super::delivery::status_of(&journeyd, id)["status"].clone();
    assert_eq!(
        status_of(id),
        "dead",
        "nothing changes before the confirmation"
    );
    let (status, location, _) = post(
        &journeyd,
        "/deliveries/replay",
        &admin,
        Some(&origin),
        &[("id", id), ("confirm", "yes")],
    );
    assert_eq!(status, 303);
    assert!(
        location.starts_with("/deliveries?status=queued&replayed="),
        "{location}"
    );
    let delivered = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        journeyd.advance_clock_by(1_000);
        super::delivery::status_of(journeyd, id)["status"] == "accepted"
    });
    assert!(delivered, "the replayed message is sent: {}", status_of(id));
    let taken = sink
        .messages()
        .into_iter()
        .filter(|message| message["idempotency_key"] == id)
        .count();
    assert_eq!(taken, 1, "sent once, under its own id");
    // Only an undelivered message is replayed.
    let (status, _, again) = post(
        &journeyd,
        "/deliveries/replay",
        &admin,
        Some(&origin),
        &[("id", id), ("confirm", "yes")],
    );
    assert_eq!(status, 409, "{again}");
    let (status, _, _) = post(
        &journeyd,
        "/deliveries/replay",
        &admin,
        Some(&origin),
        &[("id", "i-999/1/m0"), ("confirm", "yes")],
    );
    assert_eq!(status, 404);

    // Ada, whole: her instance, her profile (hostile text shown as text).
    let (status, body) = journeyd.put_customer(
        "c-ada",
        &json!({ "name": "<script>alert(1)</script>", "email": "invalid@example" }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, location, _) = get(&journeyd, "/customers?id=c-ada", Some(&reader));
    assert_eq!((status, location.as_str()), (303, "/customers/c-ada"));
    let (status, _, ada) = get(&journeyd, "/customers/c-ada", Some(&reader));
    assert_eq!(status, 200, "{ada}");
    let instances = journeyd.get("/v1/instances?journey=enquiry")["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|instance| instance["customer_id"] == "c-ada")
        .map(|instance| format!(r#"data-instance="i-{}""#, instance["id"]))
        .collect::<Vec<_>>();
    assert_eq!(instances.len(), 1);
    assert!(ada.contains(&instances[0]), "{ada}");
    assert!(ada.contains("alert(1)"), "the name is shown: {ada}");
    assert!(
        !ada.contains("<script>alert"),
        "as text, never a tag: {ada}"
    );
    assert!(ada.contains("invalid@example"));
    let (status, _, nobody) = get(&journeyd, "/customers/c-nobody", Some(&reader));
    assert_eq!(status, 404);
    assert!(nobody.contains("Nothing is known"), "{nobody}");
    let (status, location, _) = get(&journeyd, "/customers/c-ada", None);
    assert_eq!((status, location.as_str()), (303, "/signin"));
}
