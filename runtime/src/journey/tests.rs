//! Parsing and validation of journey definitions.

use super::*;

const VALID: &str = r#"
    name = "enquiry"
    terminal = ["resolved"]
    [trigger]
    event = "enquiry.received"
    correlation_key = "enquiry_id"
    [[steps]]
    name = "acknowledge"
    plugin = "acknowledge"
    on = { sent = "resolve" }
    config = { channel = "email" }
    [[steps]]
    name = "resolve"
    plugin = "resolve@2"
    on = { done = "resolved" }
"#;

fn parse(source: &str) -> Result<Journey> {
    Journey::parse("enquiry.toml", source, |plugin| plugin.name != "missing")
}

const SPLIT: &str = r#"
name = "webinar"
terminal = ["done"]
[trigger]
event = "signup"
correlation_key = "id"
[[steps]]
name = "subject"
split = { short = 30, long = 70 }
on = { short = "send", long = "send" }
[[steps]]
name = "send"
plugin = "acknowledge"
on = { sent = "done" }
"#;

#[test]
fn split_weights_cannot_wrap_and_variant_and_correlation_names_are_checked() {
    let wrapping = SPLIT.replace(
        "split = { short = 30, long = 70 }",
        "split = { short = 4294967295, long = 101 }",
    );
    let error = parse(&wrapping).expect_err("weights that wrap").to_string();
    assert!(error.contains("add up to 4294967396"), "{error}");
    let spaced = SPLIT
        .replace("short = 30", "\"sh ort\" = 30")
        .replace("short = \"send\"", "\"sh ort\" = \"send\"");
    let error = parse(&spaced)
        .expect_err("a variant with a space")
        .to_string();
    assert!(
        error.contains("variant `sh ort` is not a valid name"),
        "{error}"
    );
    let nul = VALID.replace(
        "plugin = \"acknowledge\"",
        "plugin = \"acknowledge\"\ncorrelate_on = \"a\\u0000b\"",
    );
    let error = parse(&nul).expect_err("a NUL in correlate_on").to_string();
    assert!(error.contains("steps.acknowledge.correlate_on"), "{error}");
}

#[test]
fn a_split_assigns_variants_by_weight_and_keeps_each_instance_on_one() {
    let journey = parse(SPLIT).expect("valid");
    let step = journey.step("subject").expect("step");
    let short = (0..10_000)
        .filter(|id| step.variant_for("webinar", *id) == Some("short"))
        .count();
    assert!((2_700..3_300).contains(&short), "{short} of 10000");
    for id in 0..100 {
        assert_eq!(
            step.variant_for("webinar", id),
            step.variant_for("webinar", id)
        );
    }
    assert_eq!(
        journey
            .step("send")
            .expect("step")
            .variant_for("webinar", 1),
        None
    );
}

#[test]
fn a_bad_split_is_refused_with_the_step_named() {
    for (bad, says) in [
        ("split = { short = 30, long = 60 }", "add up to 90"),
        ("split = { short = 0, long = 100 }", "above 0"),
        (
            "split = { short = 30, other = 70 }",
            "`other` has no transition",
        ),
        (
            "plugin = \"acknowledge\"\nsplit = { short = 30, long = 70 }",
            "not both",
        ),
    ] {
        let source = SPLIT.replace("split = { short = 30, long = 70 }", bad);
        let error = parse(&source).expect_err(bad);
        assert!(
            matches!(&error, Error::InvalidSplit { step, .. } if step == "subject"),
            "{error}"
        );
        assert!(error.to_string().contains(says), "{error}");
    }
}

#[test]
fn a_valid_journey_resolves_transitions() {
    let journey = parse(VALID).expect("valid");
    assert_eq!(journey.start, "acknowledge");
    assert_eq!(
        journey.target("acknowledge", "sent"),
        Some(Target::Step("resolve"))
    );
    assert_eq!(
        journey.target("resolve", "done"),
        Some(Target::Terminal("resolved"))
    );
    assert_eq!(journey.target("resolve", "nope"), None);
    let resolve = journey.step("resolve").expect("step");
    assert_eq!(resolve.plugin.selector, Selector::Version(2));
    assert_eq!(
        journey.step("acknowledge").expect("step").config_json,
        r#"{"channel":"email"}"#
    );
}

#[test]
fn a_missing_field_is_named_with_the_file() {
    let error = parse(&VALID.replace("plugin = \"acknowledge\"", "")).expect_err("missing plugin");
    let message = error.to_string();
    assert!(message.starts_with("enquiry.toml:"), "{message}");
    assert!(message.contains("missing field `plugin`"), "{message}");
}

#[test]
fn an_unknown_field_is_rejected() {
    let error =
        parse(&VALID.replace("on = { sent", "colour = 1\non = { sent")).expect_err("unknown field");
    assert!(
        error.to_string().contains("unknown field `colour`"),
        "{error}"
    );
}

#[test]
fn a_dangling_transition_names_step_transition_and_target() {
    let error =
        parse(&VALID.replace("sent = \"resolve\"", "sent = \"nowhere\"")).expect_err("dangling");
    assert!(
        matches!(
            &error,
            Error::DanglingTransition { step, transition, target, .. }
                if step == "acknowledge" && transition == "sent" && target == "nowhere"
        ),
        "{error}"
    );
}

#[test]
fn an_unreachable_step_is_named() {
    let source = VALID.replace("sent = \"resolve\"", "sent = \"resolved\"");
    let error = parse(&source).expect_err("unreachable");
    assert!(
        matches!(&error, Error::UnreachableStep { step, .. } if step == "resolve"),
        "{error}"
    );
}

#[test]
fn a_duplicate_step_name_is_named() {
    let source = VALID.replace("name = \"resolve\"", "name = \"acknowledge\"");
    let error = parse(&source).expect_err("duplicate");
    assert!(
        matches!(&error, Error::DuplicateStep { step, .. } if step == "acknowledge"),
        "{error}"
    );
}

#[test]
fn an_unknown_plugin_is_named_with_its_step() {
    let error = parse(&VALID.replace("plugin = \"acknowledge\"", "plugin = \"missing\""))
        .expect_err("unknown plugin");
    assert!(
        matches!(
            &error,
            Error::UnknownPlugin { step, plugin, .. } if step == "acknowledge" && plugin == "missing"
        ),
        "{error}"
    );
}

#[test]
fn plugin_refs_parse_name_version_and_tag() {
    assert_eq!(
        PluginRef::parse("classify@3"),
        Some(PluginRef::version("classify", 3))
    );
    assert_eq!(
        PluginRef::parse("classify:stable").map(|plugin| plugin.selector),
        Some(Selector::Tag("stable".into()))
    );
    assert_eq!(
        PluginRef::parse("classify").map(|plugin| plugin.selector),
        Some(Selector::Latest)
    );
    for bad in ["classify@x", "bad name", "classify:", "classify:a b", "@3"] {
        assert_eq!(PluginRef::parse(bad), None, "{bad}");
    }
    assert_eq!(
        PluginRef::parse("classify:canary")
            .expect("valid")
            .to_string(),
        "classify:canary"
    );
}

const RULES: &str = r#"
    [entry]
    reentry = "single"
    segment = [{ attribute = "interests", in = ["data"] }, { attribute = "consent.email", in = [true] }]
    suppress = [{ attribute = "do_not_contact", in = [true] }]
    [[exit]]
    event = "webinar.unsubscribed"
    [[exit]]
    event = "customer.converted"
    correlate_on = "webinar_id"
    [events]
    "webinar.unsubscribed" = {}
    "customer.converted" = {}
    "email.opened" = { engagement = "opened", channel = "email" }
"#;

#[test]
fn entry_rules_check_the_segment_then_suppression() {
    let journey = parse(&format!("{VALID}{RULES}")).expect("valid rules");
    assert!(journey.indexes_by_customer());
    assert!(journey.listens_to("email.opened") && journey.listens_to("enquiry.received"));
    assert!(!journey.listens_to("email.clicked"));
    let profile = serde_json::json!({ "interests": ["ai", "data"], "consent": { "email": true } });
    assert_eq!(journey.entry_refusal(&profile), None);
    let outside = serde_json::json!({ "interests": ["ai"], "consent": { "email": true } });
    assert_eq!(
        journey.entry_refusal(&outside).as_deref(),
        Some(r#"not in the segment: `interests` in ["data"] does not hold"#)
    );
    assert!(journey.entry_refusal(&serde_json::json!({})).is_some());
    let suppressed = serde_json::json!({ "interests": "data", "consent": { "email": true }, "do_not_contact": true });
    assert_eq!(
        journey.entry_refusal(&suppressed).as_deref(),
        Some("suppressed: `do_not_contact` in [true]")
    );
}

#[test]
fn conditions_cover_not_in_and_exists() {
    let condition = |source: &str| -> Condition { toml::from_str(source).expect("a condition") };
    let tier = condition(
        r#"attribute = "tier"
not_in = ["free"]"#,
    );
    assert!(tier.holds(&serde_json::json!({ "tier": "gold" })));
    assert!(tier.holds(&serde_json::json!({})));
    assert!(!tier.holds(&serde_json::json!({ "tier": "free" })));
    let phone = condition(
        r#"attribute = "phone"
exists = true"#,
    );
    assert!(phone.holds(&serde_json::json!({ "phone": "+31" })));
    assert!(!phone.holds(&serde_json::json!({ "phone": null })));
}

#[test]
fn bad_entry_and_exit_rules_are_named() {
    let error = parse(&format!(
        "{VALID}\n[[exit]]\nevent = \"webinar.unsubscrbed\"\n[events]\n\"webinar.unsubscribed\" = {{}}\n"
    ))
    .expect_err("an exit on an undeclared kind");
    assert!(
        error.to_string().contains(
            "exit event `webinar.unsubscrbed` is not an event kind the journey declares in `[events]` (declared: webinar.unsubscribed)"
        ),
        "{error}"
    );
    let error = parse(&format!(
        "{VALID}\n[[exit]]\nevent = \"enquiry.received\"\n"
    ))
    .expect_err("an exit on the trigger");
    assert!(
        error.to_string().contains("is the journey's trigger"),
        "{error}"
    );
    let error = parse(&format!(
        "{VALID}\n[entry]\nsegment = [{{ attribute = \"tier\", in = [\"gold\"], exists = true }}]\n"
    ))
    .expect_err("two tests in one condition");
    assert!(
        error
            .to_string()
            .contains("entry.segment[0]: give exactly one of"),
        "{error}"
    );
    let error = parse(&format!("{VALID}\n[entry]\nreentry = \"sometimes\"\n"))
        .expect_err("an unknown policy");
    assert!(error.to_string().contains("sometimes"), "{error}");
}
