//! A journey as written: the TOML document's types, checked by serde
//! (unknown fields are refused) before the journey itself is validated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Result, is_valid_name};

/// A journey definition as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The journey name.
    pub name: String,
    /// What the journey is for, for people.
    #[serde(default)]
    pub description: String,
    /// What starts an instance.
    pub trigger: Trigger,
    /// The first step; defaults to the first step listed.
    #[serde(default)]
    pub start: Option<String>,
    /// Names a transition may lead to that end the instance successfully.
    #[serde(default)]
    pub terminal: Vec<String>,
    /// The steps.
    #[serde(default)]
    pub steps: Vec<StepDefinition>,
    /// Who may enter.
    #[serde(default)]
    pub entry: Entry,
    /// Events that end an instance wherever it is.
    #[serde(default)]
    pub exit: Vec<ExitRule>,
    /// Event kinds the journey listens to besides its trigger (what its
    /// steps wait for, its exit events, engagement), by kind. An event is
    /// accepted when a journey it triggers or declares is deployed.
    #[serde(default)]
    pub events: BTreeMap<String, EventDeclaration>,
    /// How long a finished instance (completed, failed, exited, cancelled)
    /// is kept, with its history and messages: a duration such as `"30d"`,
    /// or `"forever"`. Absent: the server's default (`serve --retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

/// Entry rules: checked against the customer's profile when the trigger
/// event arrives. An event that starts no instance is still accepted; its
/// receipt says why each journey was not entered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// How many active instances a customer may have at once.
    #[serde(default)]
    pub reentry: Reentry,
    /// Conditions that must all hold (the segment the journey is for).
    #[serde(default)]
    pub segment: Vec<Condition>,
    /// Conditions of which any one keeps a customer out.
    #[serde(default)]
    pub suppress: Vec<Condition>,
}

/// The re-entry policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Every trigger event starts an instance.
    #[default]
    Allow,
    /// At most one active (unfinished) instance per customer.
    Single,
}

/// A test on one customer profile attribute. Exactly one of `in`,
/// `not_in` and `exists` is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A dot path into the profile, e.g. `tier` or `consent.marketing`.
    pub attribute: String,
    /// The attribute is one of these values (for a list attribute: one of
    /// its elements is).
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The attribute is none of these values (for a list attribute: none
    /// of its elements is); a missing attribute passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in: Option<Vec<serde_json::Value>>,
    /// The attribute is present (`true`) or absent (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Condition {
    /// Whether the profile meets the condition.
    pub fn holds(&self, profile: &serde_json::Value) -> bool {
        let value = self
            .attribute
            .split('.')
            .try_fold(profile, |value, field| value.get(field))
            .filter(|value| !value.is_null());
        let any_of = |values: &[serde_json::Value]| match value {
            Some(serde_json::Value::Array(items)) => items.iter().any(|item| values.contains(item)),
            Some(value) => values.contains(value),
            None => false,
        };
        match (&self.one_of, &self.not_in, self.exists) {
            (Some(values), _, _) => any_of(values),
            (_, Some(values), _) => !any_of(values),
            (_, _, Some(exists)) => value.is_some() == exists,
            (None, None, None) => false,
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        let given = [
            self.one_of.is_some(),
            self.not_in.is_some(),
            self.exists.is_some(),
        ];
        if given.iter().filter(|given| **given).count() != 1 {
            return Err("give exactly one of `in`, `not_in` or `exists`".into());
        }
        if self.attribute.is_empty() || self.attribute.split('.').any(str::is_empty) {
            return Err(format!(
                "attribute `{}` is not a dot path such as `tier` or `consent.sms`",
                self.attribute
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |values: &[serde_json::Value]| {
            values
                .iter()
                .map(serde_json::Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&self.one_of, &self.not_in, self.exists) {
            (Some(values), _, _) => write!(f, "`{}` in [{}]", self.attribute, list(values)),
            (_, Some(values), _) => write!(f, "`{}` not in [{}]", self.attribute, list(values)),
            (_, _, Some(true)) => write!(f, "`{}` exists", self.attribute),
            _ => write!(f, "`{}` is absent", self.attribute),
        }
    }
}

/// An event that ends instances of the journey wherever they are, recorded
/// in their history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRule {
    /// The event kind; the journey must declare it in `[events]`.
    pub event: String,
    /// End only the instance whose correlation value equals the event's
    /// `data.<key>`; without it, every active instance of the event's
    /// customer ends.
    #[serde(default)]
    pub correlate_on: Option<String>,
}

/// What a declared event kind means to the journey.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventDeclaration {
    /// The engagement action the event records in the customer's view
    /// (`opened`, `clicked`, `registered`, `attended` ...), if any.
    #[serde(default)]
    pub engagement: Option<String>,
    /// The channel of that engagement when the event data has no
    /// `channel`.
    #[serde(default)]
    pub channel: Option<String>,
}

/// The entry trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event type that starts an instance.
    pub event: String,
    /// The field of the event's data whose value correlates later events
    /// with the instance (e.g. `enquiry_id`).
    pub correlation_key: String,
}

/// One step of a journey.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    /// The step name, unique in the journey.
    pub name: String,
    /// The plugin that runs it: `name` (latest version), `name@version` or
    /// `name:tag`. A split step has none.
    #[serde(default)]
    pub plugin: String,
    /// An experiment instead of a plugin: variant name to weight (the
    /// weights add up to 100). Each instance goes down one variant's
    /// transition, chosen from its id, so the choice is stable.
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
    /// Given to the plugin as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Transition name to the step or terminal state it leads to.
    #[serde(default)]
    pub on: BTreeMap<String, String>,
    /// Deadline for one run of this step, overriding the runtime default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// When the step waits for an event: the event data key whose value
    /// must equal the instance's correlation value. Without it, events
    /// about the instance's customer match.
    #[serde(default)]
    pub correlate_on: Option<String>,
    /// How often the step is tried when its plugin fails (returns an
    /// error, traps, runs past its deadline or its memory); without it,
    /// [`RetryPolicy::DEFAULT`]. A plugin that chooses `fail` is not
    /// retried: that is an outcome, not a failure.
    #[serde(default)]
    pub retry: Option<RetryDefinition>,
}

/// A step's retry policy as written: `retry = { attempts = 3, backoff =
/// "exponential", initial = "1s", max = "5m" }`; what is left out comes
/// from [`RetryPolicy::DEFAULT`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDefinition {
    /// Attempts in all, the first included (1 means no retry).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// How the wait between attempts grows.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// The wait before the first retry, e.g. `"1s"` or `"500ms"`.
    #[serde(default)]
    pub initial: Option<String>,
    /// The longest wait between attempts, e.g. `"5m"`.
    #[serde(default)]
    pub max: Option<String>,
}

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The wait doubles after every failed attempt, up to `max`.
    Exponential,
    /// Every wait is `initial`.
    Fixed,
}

/// When a failed step runs again. A retry waits on a durable timer, like
/// a sleep: it survives restarts, and on a simulated clock it waits for
/// the clock to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// How the wait grows.
    pub backoff: Backoff,
    /// The wait before the first retry, ms.
    pub initial_ms: u64,
    /// The longest wait, ms.
    pub max_ms: u64,
}

/// Most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

impl RetryPolicy {
    /// Three attempts, one second then two seconds apart: a passing fault
    /// does not fail a customer, a broken plugin fails them within seconds
    /// (and an operator can retry them once it is fixed).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        attempts: 3,
        backoff: Backoff::Exponential,
        initial_ms: 1_000,
        max_ms: 60_000,
    };

    /// The wait after the `failed`-th failed attempt (from 1), ms.
    pub fn delay_ms(&self, failed: u32) -> u64 {
        match self.backoff {
            Backoff::Fixed => self.initial_ms,
            Backoff::Exponential => self
                .initial_ms
                .saturating_mul(1u64 << failed.saturating_sub(1).min(40))
                .min(self.max_ms),
        }
    }

    /// The policy `definition` describes, or what is wrong with it.
    pub fn from_definition(definition: &RetryDefinition) -> Result<Self, String> {
        let duration = |field: &str, text: &Option<String>, default: u64| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text)
                .map(|duration| duration.as_millis() as u64)
                .map_err(|error| {
                    format!(
                        "`{field}` = \"{text}\" is not a duration such as \"1s\" or \"5m\": {error}"
                    )
                }),
        };
        let attempts = definition.attempts.unwrap_or(Self::DEFAULT.attempts);
        if !(1..=MAX_ATTEMPTS).contains(&attempts) {
            return Err(format!(
                "`attempts` must be 1 to {MAX_ATTEMPTS} (the first attempt included), not {attempts}"
            ));
        }
        let initial_ms = duration("initial", &definition.initial, Self::DEFAULT.initial_ms)?;
        let max_ms = duration("max", &definition.max, Self::DEFAULT.max_ms.max(initial_ms))?;
        if max_ms < initial_ms {
            return Err(format!(
                "`max` ({max_ms} ms) is shorter than `initial` ({initial_ms} ms)"
            ));
        }
        Ok(RetryPolicy {
            attempts,
            backoff: definition.backoff.unwrap_or(Self::DEFAULT.backoff),
            initial_ms,
            max_ms,
        })
    }
}

/// A reference from a step to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    /// The plugin name.
    pub name: String,
    /// Which of its versions.
    pub selector: Selector,
}

/// Which version of a plugin a step runs, decided at each step start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The latest version pushed (`name`).
    Latest,
    /// One version (`name@3`).
    Version(u32),
    /// Wherever a tag points (`name:stable`), including its rollout.
    Tag(String),
}

impl PluginRef {
    /// Parse `name`, `name@version` or `name:tag`.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, selector) = if let Some((name, version)) = text.split_once('@') {
            (name, Selector::Version(version.parse().ok()?))
        } else if let Some((name, tag)) = text.split_once(':') {
            if !is_valid_name(tag) {
                return None;
            }
            (name, Selector::Tag(tag.to_owned()))
        } else {
            (text, Selector::Latest)
        };
        is_valid_name(name).then(|| PluginRef {
            name: name.to_owned(),
            selector,
        })
    }

    /// A reference to one version.
    pub fn version(name: &str, version: u32) -> Self {
        PluginRef {
            name: name.to_owned(),
            selector: Selector::Version(version),
        }
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Latest => f.write_str(&self.name),
            Selector::Version(version) => write!(f, "{}@{version}", self.name),
            Selector::Tag(tag) => write!(f, "{}:{tag}", self.name),
        }
    }
}
