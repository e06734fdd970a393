//! Write journey steps for `journeyd` as WebAssembly components.
//!
//! A step plugin implements [`Step`] and registers it with [`export_step!`].
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is a component implementing the `journey:plugin/step-plugin@0.2.0`
//! world from the repository's `wit/` folder, which `journeyd plugin push`
//! accepts.
//!
//! ```no_run
//! use journey_sdk::{Context, Message, Outcome, Step, export_step};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     greeting: String,
//! }
//!
//! struct Greet;
//!
//! impl Step for Greet {
//!     fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
//!         let config: Config = ctx.config()?;
//!         let name = ctx.customer().profile_str("name").unwrap_or("there").to_owned();
//!         ctx.send(Message::new("email", format!("{}, {name}!", config.greeting)))
//!             .map_err(|refused| journey_sdk::Error::Failed(format!("not sent: {refused:?}")))?;
//!         ctx.set("greeted", &true)?;
//!         Ok(Outcome::goto("done"))
//!     }
//! }
//!
//! export_step!(Greet);
//! ```
//!
//! What the SDK owns: the typed view of a step's input ([`Context`]), typed
//! JSON access to config, event data and instance state, and the glue to the
//! generated WIT bindings. It does not own the contract itself (that is
//! `wit/journey.wit`) and never talks to the outside world except through the
//! host imports.

#![deny(missing_docs)]

// The generated bindings name this crate by path, also from inside it.
extern crate self as journey_sdk;

pub mod channel;
#[doc(hidden)]
pub mod host;
pub mod testing;
pub mod text;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "step-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_step_plugin",
        default_bindings_module: "::journey_sdk::bindings",
        runtime_path: "::journey_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings::journey::plugin::types;

    /// Adapts a [`Step`](crate::Step) to the generated `run` export.
    pub fn run<S: crate::Step>(input: types::StepInput) -> Result<types::StepOutput, String> {
        let mut ctx = crate::Context::new(input, Box::new(crate::host::WitHost));
        let outcome = S::run(&mut ctx).map_err(|error| error.to_string())?;
        let state = ctx.take_state().map_err(|error| error.to_string())?;
        Ok(types::StepOutput {
            outcome: outcome.into_wit(),
            state,
        })
    }
}

/// The result type of step code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a step failed. The message is recorded in the instance's history.
#[derive(Debug)]
pub enum Error {
    /// The step's `config` table does not match what the step expects.
    Config(serde_json::Error),
    /// The triggering event's data does not match what the step expects.
    EventData(serde_json::Error),
    /// A value in the instance state does not match what the step expects.
    State {
        /// The state key that could not be read or written.
        key: String,
        /// The underlying JSON error.
        source: serde_json::Error,
    },
    /// The step decided to fail, with a reason for people.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(source) => write!(f, "invalid step config: {source}"),
            Error::EventData(source) => write!(f, "invalid event data: {source}"),
            Error::State { key, source } => write!(f, "invalid state value `{key}`: {source}"),
            Error::Failed(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for Error {}

/// Where an instance goes after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Follow the named transition (`on.<name>` in the journey definition).
    Goto(String),
    /// The instance finished successfully.
    Complete,
    /// The instance failed, with a reason for people.
    Fail(String),
    /// Sleep until `until_ms` (ms since the Unix epoch), then follow the
    /// transition `then`. The timer is durable: it fires after restarts,
    /// and a time already past wakes the instance at once.
    SleepUntil {
        /// When to wake.
        until_ms: u64,
        /// The transition to follow on waking.
        then: String,
        /// Only wake inside this local sending window (see
        /// [`Outcome::within`]).
        window: Option<Window>,
    },
    /// Wait for an event of type `kind` about this instance (its customer,
    /// or the value the journey step correlates on), at most `timeout_ms`;
    /// then follow `on_event` (the next step sees that event) or
    /// `on_timeout`. Durable like a sleep.
    WaitForEvent {
        /// The event type.
        kind: String,
        /// How long to wait, ms.
        timeout_ms: u64,
        /// The transition when the event arrives.
        on_event: String,
        /// The transition when it does not arrive in time.
        on_timeout: String,
    },
}

impl Outcome {
    /// Follow the named transition.
    pub fn goto(transition: impl Into<String>) -> Self {
        Outcome::Goto(transition.into())
    }

    /// Sleep until `until_ms`, then follow transition `then`.
    pub fn sleep_until(until_ms: u64, then: impl Into<String>) -> Self {
        Outcome::SleepUntil {
            until_ms,
            then: then.into(),
            window: None,
        }
    }

    /// Keep a sleep's wake-up inside a sending window of local time: the
    /// host moves a wake-up that falls in quiet hours to the window's next
    /// opening. Other outcomes are returned unchanged.
    ///
    /// ```
    /// use journey_sdk::{Outcome, Window};
    /// let outcome = Outcome::sleep_until(0, "remind").within(Window::hours(9, 20));
    /// ```
    pub fn within(self, window: Window) -> Self {
        match self {
            Outcome::SleepUntil { until_ms, then, .. } => Outcome::SleepUntil {
                until_ms,
                then,
                window: Some(window),
            },
            other => other,
        }
    }

    fn into_wit(self) -> bindings::journey::plugin::types::Outcome {
        use bindings::journey::plugin::types::Outcome as Wit;
        match self {
            Outcome::Goto(name) => Wit::Goto(name),
            Outcome::Complete => Wit::Complete,
            Outcome::Fail(reason) => Wit::Fail(reason),
            Outcome::SleepUntil {
                until_ms,
                then,
                window,
            } => Wit::SleepUntil(bindings::journey::plugin::types::SleepSpec {
                until_ms,
                then,
                window: window.map(|window| bindings::journey::plugin::types::SendingWindow {
                    from_minute: window.from_minute,
                    to_minute: window.to_minute,
                    time_zone: window.time_zone,
                }),
            }),
            Outcome::WaitForEvent {
                kind,
                timeout_ms,
                on_event,
                on_timeout,
            } => Wit::WaitForEvent(bindings::journey::plugin::types::WaitSpec {
                kind,
                timeout_ms,
                on_event,
                on_timeout,
            }),
        }
    }
}

/// Hours of the local day in which a journey may contact a customer;
/// outside them are quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Window {
    /// Opens this many minutes after local midnight.
    pub from_minute: u32,
    /// Closes this many minutes after local midnight (exclusive); smaller
    /// than `from_minute` for a window across midnight.
    pub to_minute: u32,
    /// IANA time zone; empty for the customer's profile `time_zone` (UTC
    /// when the profile has none).
    #[serde(default)]
    pub time_zone: String,
}

impl Window {
    /// From `from` o'clock to `to` o'clock in the customer's time zone.
    pub fn hours(from: u32, to: u32) -> Self {
        Window {
            from_minute: from * 60,
            to_minute: to * 60,
            time_zone: String::new(),
        }
    }

    /// Parse `"09:00-20:00"` (the customer's time zone) or
    /// `"09:00-20:00 Europe/Amsterdam"`, the form journey configs use.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || {
            Error::Failed(format!(
                "sending window `{text}` is not `HH:MM-HH:MM` with an optional time zone"
            ))
        };
        let (range, time_zone) = match text.trim().split_once(' ') {
            Some((range, zone)) => (range, zone.trim()),
            None => (text.trim(), ""),
        };
        let (from, to) = range.split_once('-').ok_or_else(invalid)?;
        let minute = |clock: &str| -> Option<u32> {
            let (hours, minutes) = clock.split_once(':')?;
            let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
            (minutes < 60 && hours * 60 + minutes <= 1440).then_some(hours * 60 + minutes)
        };
        Ok(Window {
            from_minute: minute(from).ok_or_else(invalid)?,
            to_minute: minute(to).ok_or_else(invalid)?,
            time_zone: time_zone.to_owned(),
        })
    }
}

/// A journey step. Implement it on a unit struct and pass that to [`export_step!`].
pub trait Step {
    /// Run the step once. It may be re-run after a crash with the same
    /// input and [`Context::idempotency_key`]; only one attempt's effects
    /// (state, messages, notes, metrics) are ever committed.
    fn run(ctx: &mut Context) -> Result<Outcome>;
}

/// Registers a [`Step`] implementation as the component's `step` export.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        // The component export exists only in the wasm build; on the host
        // the plugin still compiles, so its unit tests and lints run there.
        #[allow(dead_code)]
        struct __JourneyStepExport;

        impl $crate::bindings::exports::journey::plugin::step::Guest for __JourneyStepExport {
            fn run(
                input: $crate::bindings::journey::plugin::types::StepInput,
            ) -> ::core::result::Result<
                $crate::bindings::journey::plugin::types::StepOutput,
                ::std::string::String,
            > {
                $crate::__private::run::<$step>(input)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_step_plugin!(__JourneyStepExport);

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(
            $crate::bindings::journey::plugin::types::StepInput,
        ) -> ::core::result::Result<
            $crate::bindings::journey::plugin::types::StepOutput,
            ::std::string::String,
        > = $crate::__private::run::<$step>;
    };
}

/// Why the host did not queue a message: a frequency cap, or too many
/// messages from one step.
pub use bindings::journey::plugin::outbox::{FrequencyCap, SendError};

impl SendError {
    /// The refusal in words, for logs and reasons.
    pub fn describe(&self) -> String {
        match self {
            SendError::FrequencyCapped(cap) => format!(
                "the customer's {} frequency cap is reached ({} per {} s; the next message is allowed at {} ms)",
                cap.channel,
                cap.limit,
                cap.period_ms / 1000,
                cap.next_allowed_ms
            ),
            SendError::TooManyMessages => {
                "the step already queued the most messages a step may".to_owned()
            }
        }
    }
}

/// A customer's opt-in or opt-out of one channel.
pub use bindings::journey::plugin::customer::ChannelPreference;

/// One engagement of a customer (opened, clicked, registered, attended ...).
pub use bindings::journey::plugin::customer::Engagement;

/// The event a step sees: the one that started the instance, or the one
/// that ended its last wait.
#[derive(Debug, Clone)]
pub struct Event {
    /// The sender's event id.
    pub id: String,
    /// The event type, e.g. `enquiry.received`.
    pub kind: String,
    /// The customer the event is about.
    pub customer_id: String,
    /// The event data as JSON text.
    pub data: String,
    /// When the host accepted it, ms since the Unix epoch.
    pub received_at_ms: u64,
}

/// One past interaction from the customer's history.
pub type Interaction = bindings::journey::plugin::customer::Interaction;

/// The single customer view: profile and interaction history.
#[derive(Debug, Clone)]
pub struct CustomerView {
    /// The customer id.
    pub id: String,
    /// The profile JSON object (empty when the customer has none).
    pub profile: Map<String, Value>,
    /// Interactions, oldest first.
    pub interactions: Vec<Interaction>,
    /// Channel opt-ins and opt-outs.
    pub channels: Vec<ChannelPreference>,
    /// Engagement, oldest first (at most 50).
    pub engagement: Vec<Engagement>,
}

impl CustomerView {
    /// A string field of the profile, if present.
    pub fn profile_str(&self, field: &str) -> Option<&str> {
        self.profile.get(field).and_then(Value::as_str)
    }

    /// Whether the customer opted into `channel`: `Some(false)` after an
    /// opt-out, `None` when they never chose.
    pub fn opted_in(&self, channel: &str) -> Option<bool> {
        self.channels
            .iter()
            .find(|preference| preference.channel == channel)
            .map(|preference| preference.opted_in)
    }

    /// Engagement since `since_ms` whose details have `key` equal to
    /// `value` (e.g. `webinar_id` = `w-42`), oldest first.
    pub fn engagement_about<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        since_ms: u64,
    ) -> impl Iterator<Item = &'a Engagement> + 'a {
        self.engagement.iter().filter(move |engagement| {
            engagement.at_ms >= since_ms
                && serde_json::from_str::<Map<String, Value>>(&engagement.details)
                    .ok()
                    .and_then(|details| details.get(key).cloned())
                    .is_some_and(|found| match found {
                        Value::String(text) => text == value,
                        Value::Number(number) => number.to_string() == value,
                        _ => false,
                    })
        })
    }
}

/// An outbound message, queued with [`Context::send`].
#[derive(Debug, Clone)]
pub struct Message {
    /// The channel: `email`, `sms`, `chat`, ...
    pub channel: String,
    /// The address; empty means the customer's address from their profile.
    pub to: String,
    /// Subject line (may be empty).
    pub subject: String,
    /// Message text.
    pub body: String,
    /// Extra data for the channel provider.
    pub metadata: Value,
}

impl Message {
    /// A message on `channel` to the customer's own address.
    pub fn new(channel: impl Into<String>, body: impl Into<String>) -> Self {
        Message {
            channel: channel.into(),
            to: String::new(),
            subject: String::new(),
            body: body.into(),
            metadata: Value::Object(Map::new()),
        }
    }

    /// Set the subject line.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Attach structured metadata for the channel provider.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A running step: its input, plus the host capabilities it may use.
pub struct Context {
    input: bindings::journey::plugin::types::StepInput,
    host: Box<dyn host::Host>,
    state: Option<Map<String, Value>>,
    state_changed: bool,
}

impl Context {
    fn new(input: bindings::journey::plugin::types::StepInput, host: Box<dyn host::Host>) -> Self {
        Context {
            input,
            host,
            state: None,
            state_changed: false,
        }
    }

    /// The journey's name.
    pub fn journey(&self) -> &str {
        &self.input.journey
    }

    /// The step's name in the journey definition.
    pub fn step(&self) -> &str {
        &self.input.step
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.input.instance_id
    }

    /// 1 on the first attempt of this step; more when the host runs it
    /// again after a failed attempt (the step's retry policy), a host
    /// fault or a restart. Every attempt has the same
    /// [`Context::idempotency_key`].
    pub fn attempt(&self) -> u32 {
        self.input.attempt
    }

    /// Stable across attempts of this step execution.
    pub fn idempotency_key(&self) -> &str {
        &self.input.idempotency_key
    }

    /// The event this step sees: the one that started the instance, or the
    /// one that ended its last wait. A step that needs the trigger's data
    /// after a wait keeps it in state before waiting.
    pub fn event(&self) -> Event {
        let event = &self.input.event;
        Event {
            id: event.id.clone(),
            kind: event.kind.clone(),
            customer_id: event.customer_id.clone(),
            data: event.data.clone(),
            received_at_ms: event.received_at_ms,
        }
    }

    /// The triggering event's data, deserialized.
    pub fn event_data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.input.event.data).map_err(Error::EventData)
    }

    /// The step's config table, deserialized.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.input.config).map_err(Error::Config)
    }

    fn state_map(&mut self) -> &mut Map<String, Value> {
        let input = &self.input.state;
        self.state.get_or_insert_with(|| {
            // The host guarantees state is a JSON object.
            serde_json::from_str(input).unwrap_or_default()
        })
    }

    /// Read `key` from the instance state; `None` when absent.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        match self.state_map().get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|source| Error::State {
                    key: key.to_owned(),
                    source,
                }),
        }
    }

    /// Set `key` in the instance state. Committed with the step's outcome.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|source| Error::State {
            key: key.to_owned(),
            source,
        })?;
        self.state_map().insert(key.to_owned(), value);
        self.state_changed = true;
        Ok(())
    }

    fn take_state(&mut self) -> Result<Option<String>> {
        match (&self.state, self.state_changed) {
            (Some(map), true) => {
                serde_json::to_string(map)
                    .map(Some)
                    .map_err(|source| Error::State {
                        key: String::new(),
                        source,
                    })
            }
            _ => Ok(None),
        }
    }

    /// The customer's single view: profile and their 20 most recent
    /// interactions.
    pub fn customer(&self) -> CustomerView {
        self.customer_with_history(20)
    }

    /// The customer's profile and up to `max_interactions` of their most
    /// recent interactions (the view covers their 100 most recent). The view
    /// is copied into the plugin on every call, so ask for 0 when the
    /// profile is all you need.
    pub fn customer_with_history(&self, max_interactions: u32) -> CustomerView {
        self.customer_with_history_of(max_interactions, &[])
    }

    /// Like [`Context::customer_with_history`], with only the interactions
    /// whose kind is one of `kinds` (every kind when empty): the host
    /// filters, so only what the step reads is copied in.
    pub fn customer_with_history_of(&self, max_interactions: u32, kinds: &[&str]) -> CustomerView {
        let kinds: Vec<String> = kinds.iter().map(|kind| (*kind).to_owned()).collect();
        let view = self.host.view(max_interactions, &kinds);
        CustomerView {
            id: view.id,
            profile: serde_json::from_str(&view.profile).unwrap_or_default(),
            interactions: view.interactions,
            channels: view.channels,
            engagement: view.engagement,
        }
    }

    /// Record an interaction in the customer's history, in this step's commit.
    pub fn note(&mut self, channel: &str, kind: &str, text: &str, details: &Value) {
        self.host.note(channel, kind, text, &details.to_string());
    }

    /// Queue a message in the durable outbox; returns its idempotent id.
    ///
    /// The host refuses a message that would break the customer's
    /// frequency cap on its channel ([`SendError::FrequencyCapped`], also
    /// recorded in history), or one more than a step may queue.
    pub fn send(&mut self, message: Message) -> std::result::Result<String, SendError> {
        self.host.send(&bindings::journey::plugin::outbox::Message {
            channel: message.channel,
            to: message.to,
            subject: message.subject,
            body: message.body,
            metadata: message.metadata.to_string(),
        })
    }

    /// Add to a counter exported on the host's `/metrics`.
    pub fn count(&mut self, name: &str, value: u64) {
        self.host.count(name, value);
    }

    /// The runtime's current time, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.host.now_ms()
    }

    /// Log at info level, attributed to this instance and step.
    pub fn info(&self, message: &str) {
        self.host
            .log(bindings::journey::plugin::log::Level::Info, message);
    }

    /// Log at warn level, attributed to this instance and step.
    pub fn warn(&self, message: &str) {
        self.host
            .log(bindings::journey::plugin::log::Level::Warn, message);
    }
}
