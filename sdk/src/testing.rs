//! Unit-test a step natively, without a component, a server or a store:
//! [`TestStep`] builds its input and a fake host (the customer view,
//! frequency caps, the clock), runs [`Step::run`](crate::Step::run) and
//! returns what the step did as a [`TestRun`].
//!
//! ```
//! use journey_sdk::testing::TestStep;
//! use journey_sdk::{Context, Message, Outcome, Step};
//!
//! struct Greet;
//!
//! impl Step for Greet {
//!     fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
//!         let name = ctx.customer().profile_str("name").unwrap_or("there").to_owned();
//!         match ctx.send(Message::new("sms", format!("Hi {name}"))) {
//!             Ok(_) => Ok(Outcome::goto("sent")),
//!             Err(_) => Ok(Outcome::goto("capped")),
//!         }
//!     }
//! }
//!
//! let run = TestStep::new().profile(serde_json::json!({ "name": "Ada" })).run::<Greet>();
//! assert_eq!(run.outcome, Ok(Outcome::goto("sent")));
//! assert_eq!(run.messages[0].body, "Hi Ada");
//!
//! let capped = TestStep::new().cap("sms", 0).run::<Greet>();
//! assert_eq!(capped.outcome, Ok(Outcome::goto("capped")));
//! assert_eq!(capped.refused.len(), 1);
//! ```
//!
//! It runs the same [`Context`](crate::Context) the component runs; try
//! the built component with `journeyd step run` for the sandbox's limits.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::bindings::journey::plugin::{customer, log, outbox, types};
use crate::{ChannelPreference, Context, Engagement, Interaction, Outcome, Step};

/// The most messages one step may queue (as in journeyd).
pub const MAX_MESSAGES: usize = 16;

/// A step's input and the fake host's setting, built up and then run.
#[derive(Debug, Clone)]
pub struct TestStep {
    config: Value,
    state: Map<String, Value>,
    event_kind: String,
    event_data: Value,
    attempt: u32,
    now_ms: u64,
    customer_id: String,
    profile: Value,
    interactions: Vec<Interaction>,
    channels: Vec<ChannelPreference>,
    engagement: Vec<Engagement>,
    caps: BTreeMap<String, u32>,
}

impl Default for TestStep {
    fn default() -> Self {
        TestStep {
            config: Value::Object(Map::new()),
            state: Map::new(),
            event_kind: "test.event".into(),
            event_data: Value::Object(Map::new()),
            attempt: 1,
            now_ms: 1_796_112_000_000,
            customer_id: "c-test".into(),
            profile: Value::Object(Map::new()),
            interactions: Vec::new(),
            channels: Vec::new(),
            engagement: Vec::new(),
            caps: BTreeMap::new(),
        }
    }
}

/// A message the step queued or a cap refused.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// Its id (`test-key/m<n>`), empty when refused.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// The address (empty: the customer's).
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The body.
    pub body: String,
    /// The metadata.
    pub metadata: Value,
}

/// An interaction the step noted.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteMade {
    /// The channel.
    pub channel: String,
    /// The kind.
    pub kind: String,
    /// The text.
    pub text: String,
    /// The details.
    pub details: Value,
}

/// What one run did. When the attempt failed (`outcome` is `Err`), no
/// effect is kept, as in journeyd: messages, notes and metrics are empty.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The outcome, or the attempt's failure.
    pub outcome: Result<Outcome, String>,
    /// The whole state when the step set anything.
    pub state: Option<Map<String, Value>>,
    /// Messages queued.
    pub messages: Vec<SentMessage>,
    /// Messages a frequency cap refused.
    pub refused: Vec<SentMessage>,
    /// Interactions noted.
    pub notes: Vec<NoteMade>,
    /// Counters, by name.
    pub metrics: BTreeMap<String, u64>,
    /// Log lines: level and text.
    pub logs: Vec<(String, String)>,
}

impl TestStep {
    /// An input with empty config, state and event, and an unknown customer.
    pub fn new() -> Self {
        TestStep::default()
    }

    /// The step's `config` table.
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Set `key` in the instance state before the step runs.
    pub fn state(mut self, key: &str, value: Value) -> Self {
        self.state.insert(key.to_owned(), value);
        self
    }

    /// The event the step sees.
    pub fn event(mut self, kind: &str, data: Value) -> Self {
        self.event_kind = kind.to_owned();
        self.event_data = data;
        self
    }

    /// The attempt number (1 on the first).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The runtime's clock, ms since the Unix epoch.
    pub fn now_ms(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// The customer's id.
    pub fn customer(mut self, id: &str) -> Self {
        self.customer_id = id.to_owned();
        self
    }

    /// The customer's profile object.
    pub fn profile(mut self, profile: Value) -> Self {
        self.profile = profile;
        self
    }

    /// An interaction in the customer's history (oldest first).
    pub fn interaction(mut self, channel: &str, kind: &str, text: &str, at_ms: u64) -> Self {
        self.interactions.push(Interaction {
            at_ms,
            channel: channel.to_owned(),
            kind: kind.to_owned(),
            text: text.to_owned(),
            details: "{}".into(),
        });
        self
    }

    /// The customer's opt-in (or opt-out) of `channel`.
    pub fn opted_in(mut self, channel: &str, opted_in: bool) -> Self {
        self.channels.push(ChannelPreference {
            channel: channel.to_owned(),
            opted_in,
            changed_at_ms: self.now_ms,
        });
        self
    }

    /// An engagement of the customer (oldest first).
    pub fn engagement(mut self, action: &str, channel: &str, details: Value, at_ms: u64) -> Self {
        self.engagement.push(Engagement {
            at_ms,
            action: action.to_owned(),
            channel: channel.to_owned(),
            event_kind: format!("{channel}.{action}"),
            details: details.to_string(),
        });
        self
    }

    /// Let `channel`'s frequency cap allow `messages` more (channels not
    /// named are uncapped).
    pub fn cap(mut self, channel: &str, messages: u32) -> Self {
        self.caps.insert(channel.to_owned(), messages);
        self
    }

    /// Run step `S` once against the fake host.
    pub fn run<S: Step>(self) -> TestRun {
        let recorded = Rc::new(RefCell::new(Recorded::default()));
        let host = FakeHost {
            view: customer::CustomerView {
                id: self.customer_id.clone(),
                profile: self.profile.to_string(),
                interactions: self.interactions,
                channels: self.channels,
                engagement: self.engagement,
            },
            caps: self.caps,
            now_ms: self.now_ms,
            recorded: recorded.clone(),
        };
        let input = types::StepInput {
            journey: "test".into(),
            journey_version: 1,
            instance_id: "i-1".into(),
            step: "step".into(),
            event: types::Event {
                id: "evt-1".into(),
                kind: self.event_kind,
                customer_id: self.customer_id,
                data: self.event_data.to_string(),
                received_at_ms: self.now_ms,
            },
            state: Value::Object(self.state).to_string(),
            config: self.config.to_string(),
            attempt: self.attempt,
            idempotency_key: "test-key".into(),
        };
        let mut ctx = Context::new(input, Box::new(host));
        let outcome = S::run(&mut ctx).map_err(|error| error.to_string());
        let state = ctx
            .take_state()
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok());
        drop(ctx);
        let recorded = Rc::try_unwrap(recorded)
            .map(RefCell::into_inner)
            .unwrap_or_else(|shared| shared.borrow().clone());
        let kept = outcome.is_ok();
        TestRun {
            state: if kept { state } else { None },
            outcome,
            messages: if kept { recorded.messages } else { Vec::new() },
            refused: recorded.refused,
            notes: if kept { recorded.notes } else { Vec::new() },
            metrics: if kept {
                recorded.metrics
            } else {
                BTreeMap::new()
            },
            logs: recorded.logs,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Recorded {
    messages: Vec<SentMessage>,
    refused: Vec<SentMessage>,
    notes: Vec<NoteMade>,
    metrics: BTreeMap<String, u64>,
    logs: Vec<(String, String)>,
}

/// Stands in for journeyd's host imports and records every effect.
struct FakeHost {
    view: customer::CustomerView,
    caps: BTreeMap<String, u32>,
    now_ms: u64,
    recorded: Rc<RefCell<Recorded>>,
}

fn sent(id: String, message: &outbox::Message) -> SentMessage {
    SentMessage {
        id,
        channel: message.channel.clone(),
        to: message.to.clone(),
        subject: message.subject.clone(),
        body: message.body.clone(),
        metadata: serde_json::from_str(&message.metadata).unwrap_or(Value::Null),
    }
}

impl crate::host::Host for FakeHost {
    fn view(&self, max_interactions: u32, kinds: &[String]) -> customer::CustomerView {
        let matching: Vec<Interaction> = self
            .view
            .interactions
            .iter()
            .filter(|interaction| kinds.is_empty() || kinds.contains(&interaction.kind))
            .cloned()
            .collect();
        let keep = matching.len().saturating_sub(max_interactions as usize);
        customer::CustomerView {
            interactions: matching[keep..].to_vec(),
            ..self.view.clone()
        }
    }

    fn note(&mut self, channel: &str, kind: &str, text: &str, details: &str) {
        self.recorded.borrow_mut().notes.push(NoteMade {
            channel: channel.to_owned(),
            kind: kind.to_owned(),
            text: text.to_owned(),
            details: serde_json::from_str(details).unwrap_or(Value::Null),
        });
    }

    fn send(&mut self, message: &outbox::Message) -> Result<String, outbox::SendError> {
        let mut recorded = self.recorded.borrow_mut();
        if recorded.messages.len() >= MAX_MESSAGES {
            return Err(outbox::SendError::TooManyMessages);
        }
        match self.caps.get_mut(&message.channel) {
            Some(0) => {
                recorded.refused.push(sent(String::new(), message));
                return Err(outbox::SendError::FrequencyCapped(outbox::FrequencyCap {
                    channel: message.channel.clone(),
                    limit: 0,
                    period_ms: 86_400_000,
                    next_allowed_ms: self.now_ms + 86_400_000,
                }));
            }
            Some(left) => *left -= 1,
            None => {}
        }
        let id = format!("test-key/m{}", recorded.messages.len());
        recorded.messages.push(sent(id.clone(), message));
        Ok(id)
    }

    fn count(&mut self, name: &str, value: u64) {
        *self
            .recorded
            .borrow_mut()
            .metrics
            .entry(name.to_owned())
            .or_default() += value;
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn log(&self, level: log::Level, message: &str) {
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.recorded
            .borrow_mut()
            .logs
            .push((level.to_owned(), message.to_owned()));
    }
}
