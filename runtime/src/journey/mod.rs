//! Journey definitions: the TOML format, parsing and validation.
//!
//! A definition names its entry trigger (an event type and the field of the
//! event data that correlates events to an instance), its steps (each run by
//! a plugin, with a config table and named transitions) and its terminal
//! states. [`Journey::parse`] turns TOML into a validated [`Journey`] or an
//! [`Error`] that names the file, the step and the field at fault. This
//! module does not store journeys or run them.
//!
//! Besides its steps a journey has entry rules (a customer segment, a
//! suppression rule, the re-entry policy), exit rules (events that end an
//! instance wherever it is) and the event kinds it listens to, some of
//! which record the customer's engagement.
//!
//! ```toml
//! name = "enquiry"
//! terminal = ["resolved"]
//!
//! [trigger]
//! event = "enquiry.received"
//! correlation_key = "enquiry_id"
//!
//! [entry]
//! reentry = "allow"               # or "single": one active instance per customer
//! segment = [{ attribute = "tier", in = ["gold", "silver"] }]   # all must hold
//! suppress = [{ attribute = "do_not_contact", in = [true] }]     # any one suppresses
//!
//! [[exit]]
//! event = "enquiry.withdrawn"
//! correlate_on = "enquiry_id"     # without it: the customer's instances
//!
//! [events]                        # kinds the journey listens to
//! "enquiry.withdrawn" = {}
//! "email.opened" = { engagement = "opened", channel = "email" }
//!
//! [[steps]]
//! name = "acknowledge"
//! plugin = "acknowledge"          # latest version, or "acknowledge@2"
//! on = { sent = "resolve" }
//! config = { channel = "email" }
//!
//! [[steps]]
//! name = "resolve"
//! plugin = "resolve"
//! on = { done = "resolved" }      # a terminal state
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Why a journey definition was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not valid TOML, or a field is missing, mistyped or unknown. The TOML
    /// error carries the line, column and field name.
    #[error("{file}: {source}")]
    Syntax {
        /// The file name as given.
        file: String,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The journey has no steps.
    #[error("{file}: journey `{journey}` has no steps")]
    NoSteps {
        /// The file name as given.
        file: String,
        /// The journey name.
        journey: String,
    },
    /// A name is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("{file}: {field} `{value}` is not a valid name (use 1-64 of A-Z a-z 0-9 . _ -)")]
    InvalidName {
        /// The file name as given.
        file: String,
        /// Which field holds the name.
        field: String,
        /// The offending value.
        value: String,
    },
    /// Two steps share a name.
    #[error("{file}: step name `{step}` is used twice")]
    DuplicateStep {
        /// The file name as given.
        file: String,
        /// The duplicated name.
        step: String,
    },
    /// A terminal state has the name of a step.
    #[error("{file}: terminal state `{name}` has the same name as a step")]
    TerminalIsStep {
        /// The file name as given.
        file: String,
        /// The clashing name.
        name: String,
    },
    /// `start` names no step.
    #[error("{file}: start step `{start}` is not defined")]
    UnknownStart {
        /// The file name as given.
        file: String,
        /// The missing step.
        start: String,
    },
    /// A transition leads nowhere.
    #[error(
        "{file}: step `{step}`, transition `{transition}` leads to `{target}`, which is neither a step nor a terminal state"
    )]
    DanglingTransition {
        /// The file name as given.
        file: String,
        /// The step with the transition.
        step: String,
        /// The transition name.
        transition: String,
        /// Where it leads.
        target: String,
    },
    /// No path from the start step reaches this step.
    #[error("{file}: step `{step}` is unreachable from the start step `{start}`")]
    UnreachableStep {
        /// The file name as given.
        file: String,
        /// The unreachable step.
        step: String,
        /// The start step.
        start: String,
    },
    /// A step names neither a plugin nor a split.
    #[error("{file}: step `{step}`: missing field `plugin` (a step runs a plugin or is a `split`)")]
    MissingPlugin {
        /// The file name as given.
        file: String,
        /// The step.
        step: String,
    },
    /// A split step is malformed.
    #[error("{file}: step `{step}`, field `split`: {reason}")]
    InvalidSplit {
        /// The file name as given.
        file: String,
        /// The step.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// A step's `plugin` is malformed (`name`, `name@version` or `name:tag`).
    #[error(
        "{file}: step `{step}`, field `plugin`: `{plugin}` is not `name`, `name@version` or `name:tag`"
    )]
    BadPluginRef {
        /// The file name as given.
        file: String,
        /// The step.
        step: String,
        /// The value.
        plugin: String,
    },
    /// An entry condition is malformed.
    #[error("{file}: entry.{list}[{index}]: {reason}")]
    InvalidCondition {
        /// The file name as given.
        file: String,
        /// `segment` or `suppress`.
        list: &'static str,
        /// The condition's position, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// An exit rule names an event kind the journey does not declare.
    #[error(
        "{file}: exit event `{event}` is not an event kind the journey declares in `[events]` (declared: {declared})"
    )]
    UnknownExitEvent {
        /// The file name as given.
        file: String,
        /// The exit rule's event.
        event: String,
        /// The declared kinds, for the reader.
        declared: String,
    },
    /// An exit rule names the trigger event.
    #[error(
        "{file}: exit event `{event}` is the journey's trigger: it would end instances as they start"
    )]
    ExitIsTrigger {
        /// The file name as given.
        file: String,
        /// The event.
        event: String,
    },
    /// A step's retry policy is malformed.
    #[error("{file}: step `{step}`, field `retry`: {reason}")]
    InvalidRetry {
        /// The file name as given.
        file: String,
        /// The step.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// A step's plugin (or plugin version) was never pushed.
    #[error("{file}: step `{step}` uses plugin `{plugin}`, which has not been pushed (or tagged)")]
    UnknownPlugin {
        /// The file name as given.
        file: String,
        /// The step.
        step: String,
        /// The plugin reference.
        plugin: String,
    },
}

/// Result of journey parsing.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

    fn check(&self) -> Result<(), String> {
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

/// Where a transition leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Another step.
    Step(&'a str),
    /// A terminal state: the instance completes.
    Terminal(&'a str),
}

/// A step ready to run: its definition plus what is precomputed once.
#[derive(Debug, Clone)]
pub struct Step {
    /// The definition as written.
    pub definition: StepDefinition,
    /// The plugin it uses (the empty latest reference for a split step).
    pub plugin: PluginRef,
    /// Its config as JSON text, as the plugin receives it.
    pub config_json: String,
    /// When it runs again after its plugin failed.
    pub retry: RetryPolicy,
}

/// A validated journey definition.
#[derive(Debug, Clone)]
pub struct Journey {
    /// The definition as written.
    pub definition: Definition,
    /// The start step's name.
    pub start: String,
    steps: HashMap<String, Step>,
    terminal: HashSet<String>,
}

/// Names of steps, plugins, journeys: short and printable.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// A split step names no plugin, its weights add up to 100 and each
/// variant has a transition.
fn check_split(file: &str, step: &StepDefinition) -> Result<()> {
    let invalid = |reason: String| Error::InvalidSplit {
        file: file.to_owned(),
        step: step.name.clone(),
        reason,
    };
    if !step.plugin.is_empty() {
        return Err(invalid(
            "a step has either a `plugin` or a `split`, not both".into(),
        ));
    }
    if let Some(variant) = step.split.keys().find(|variant| !is_valid_name(variant)) {
        return Err(invalid(format!(
            "variant `{}` is not a valid name (use 1-64 of A-Z a-z 0-9 . _ -)",
            variant.escape_debug()
        )));
    }
    // Summed wide: weights near u32::MAX must not wrap around to 100.
    let total: u64 = step.split.values().map(|weight| u64::from(*weight)).sum();
    if total != 100 || step.split.values().any(|weight| *weight == 0) {
        return Err(invalid(format!(
            "the weights must be above 0 and add up to 100; they add up to {total}"
        )));
    }
    if let Some(variant) = step
        .split
        .keys()
        .find(|variant| !step.on.contains_key(*variant))
    {
        return Err(invalid(format!(
            "variant `{variant}` has no transition in `on`"
        )));
    }
    Ok(())
}

/// A journey's TOML with the steps run by `plugins` cut out: a transition
/// into a removed step leads where that step's `via` transition leads.
/// The benchmark and the core tests use it to run the enquiry journey
/// without its wait for a person (`skip_steps(source, &["sla",
/// "escalate"], "resolved")`). Returns the TOML, or why it cannot.
pub fn skip_steps(source: &str, plugins: &[&str], via: &str) -> Result<String, String> {
    let mut journey: toml::Table = toml::from_str(source).map_err(|error| error.to_string())?;
    let steps = journey
        .get_mut("steps")
        .and_then(toml::Value::as_array_mut)
        .ok_or("the journey has no steps")?;
    let removed: HashMap<String, String> = steps
        .iter()
        .filter(|step| {
            step.get("plugin")
                .and_then(toml::Value::as_str)
                .is_some_and(|plugin| plugins.contains(&plugin))
        })
        .filter_map(|step| {
            let name = step.get("name")?.as_str()?.to_owned();
            let next = step.get("on")?.get(via)?.as_str()?.to_owned();
            Some((name, next))
        })
        .collect();
    steps.retain(|step| {
        !step
            .get("plugin")
            .and_then(toml::Value::as_str)
            .is_some_and(|plugin| plugins.contains(&plugin))
    });
    for step in steps.iter_mut() {
        let Some(on) = step.get_mut("on").and_then(toml::Value::as_table_mut) else {
            continue;
        };
        for (_, target) in on.iter_mut() {
            if let Some(next) = target.as_str().and_then(|name| removed.get(name)) {
                *target = toml::Value::String(next.clone());
            }
        }
    }
    toml::to_string(&journey).map_err(|error| error.to_string())
}

/// A number in `0..100` that depends only on two names and an id: which
/// side of a rollout or variant of a split an instance is on, the same at
/// every step and after restarts.
pub fn stable_percentile(first: &str, second: &str, id: u64) -> u8 {
    // FNV-1a of the names, mixed with the id (the splitmix64 finaliser).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in first.bytes().chain([0]).chain(second.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut mixed = hash ^ id;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((mixed ^ (mixed >> 31)) % 100) as u8
}

impl Step {
    /// The variant of this split step an instance goes down, chosen from
    /// its id, or `None` for a plugin step.
    pub fn variant_for(&self, journey: &str, instance: u64) -> Option<&str> {
        if self.definition.split.is_empty() {
            return None;
        }
        let mut bucket = u32::from(stable_percentile(journey, &self.definition.name, instance));
        for (variant, weight) in &self.definition.split {
            if bucket < *weight {
                return Some(variant);
            }
            bucket -= weight;
        }
        None
    }
}

impl Journey {
    /// Parse and validate TOML. `file` names the source in errors;
    /// `plugin_exists` says whether a plugin reference resolves.
    pub fn parse(
        file: &str,
        source: &str,
        plugin_exists: impl Fn(&PluginRef) -> bool,
    ) -> Result<Journey> {
        let definition: Definition = toml::from_str(source).map_err(|source| Error::Syntax {
            file: file.to_owned(),
            source: Box::new(source),
        })?;
        Journey::validate(file, definition, plugin_exists)
    }

    fn validate(
        file: &str,
        definition: Definition,
        plugin_exists: impl Fn(&PluginRef) -> bool,
    ) -> Result<Journey> {
        let file = file.to_owned();
        let check_name = |field: String, value: &str| {
            if is_valid_name(value) {
                Ok(())
            } else {
                Err(Error::InvalidName {
                    file: file.clone(),
                    field,
                    value: value.to_owned(),
                })
            }
        };
        check_name("name".into(), &definition.name)?;
        check_name("trigger.event".into(), &definition.trigger.event)?;
        check_name(
            "trigger.correlation_key".into(),
            &definition.trigger.correlation_key,
        )?;
        for (kind, declaration) in &definition.events {
            check_name("events".into(), kind)?;
            if let Some(action) = &declaration.engagement {
                check_name(format!("events.\"{kind}\".engagement"), action)?;
            }
            if let Some(channel) = &declaration.channel {
                check_name(format!("events.\"{kind}\".channel"), channel)?;
            }
        }
        for (list, conditions) in [
            ("segment", &definition.entry.segment),
            ("suppress", &definition.entry.suppress),
        ] {
            for (index, condition) in conditions.iter().enumerate() {
                condition
                    .check()
                    .map_err(|reason| Error::InvalidCondition {
                        file: file.clone(),
                        list,
                        index,
                        reason,
                    })?;
            }
        }
        for rule in &definition.exit {
            if rule.event == definition.trigger.event {
                return Err(Error::ExitIsTrigger {
                    file,
                    event: rule.event.clone(),
                });
            }
            if !definition.events.contains_key(&rule.event) {
                let declared: Vec<&str> = definition.events.keys().map(String::as_str).collect();
                return Err(Error::UnknownExitEvent {
                    file,
                    event: rule.event.clone(),
                    declared: if declared.is_empty() {
                        "none".into()
                    } else {
                        declared.join(", ")
                    },
                });
            }
            if let Some(key) = &rule.correlate_on {
                check_name(format!("exit.{}.correlate_on", rule.event), key)?;
            }
        }
        let Some(first) = definition.steps.first() else {
            return Err(Error::NoSteps {
                file,
                journey: definition.name,
            });
        };
        let start = definition
            .start
            .clone()
            .unwrap_or_else(|| first.name.clone());

        let mut steps = HashMap::new();
        for step in &definition.steps {
            check_name("steps.name".into(), &step.name)?;
            if let Some(key) = &step.correlate_on {
                check_name(format!("steps.{}.correlate_on", step.name), key)?;
            }
            if !step.split.is_empty() {
                check_split(&file, step)?;
                let ready = Step {
                    definition: step.clone(),
                    plugin: PluginRef {
                        name: String::new(),
                        selector: Selector::Latest,
                    },
                    config_json: "{}".into(),
                    retry: RetryPolicy::DEFAULT,
                };
                if steps.insert(step.name.clone(), ready).is_some() {
                    return Err(Error::DuplicateStep {
                        file,
                        step: step.name.clone(),
                    });
                }
                continue;
            }
            if step.plugin.is_empty() {
                return Err(Error::MissingPlugin {
                    file,
                    step: step.name.clone(),
                });
            }
            let plugin = PluginRef::parse(&step.plugin).ok_or_else(|| Error::BadPluginRef {
                file: file.clone(),
                step: step.name.clone(),
                plugin: step.plugin.clone(),
            })?;
            if !plugin_exists(&plugin) {
                return Err(Error::UnknownPlugin {
                    file,
                    step: step.name.clone(),
                    plugin: step.plugin.clone(),
                });
            }
            for transition in step.on.keys() {
                check_name(format!("steps.{}.on", step.name), transition)?;
            }
            let config_json =
                serde_json::to_string(&step.config).expect("a TOML table always converts to JSON");
            let retry = match &step.retry {
                None => RetryPolicy::DEFAULT,
                Some(definition) => RetryPolicy::from_definition(definition).map_err(|reason| {
                    Error::InvalidRetry {
                        file: file.clone(),
                        step: step.name.clone(),
                        reason,
                    }
                })?,
            };
            let ready = Step {
                definition: step.clone(),
                plugin,
                config_json,
                retry,
            };
            if steps.insert(step.name.clone(), ready).is_some() {
                return Err(Error::DuplicateStep {
                    file,
                    step: step.name.clone(),
                });
            }
        }

        let mut terminal = HashSet::new();
        for name in &definition.terminal {
            check_name("terminal".into(), name)?;
            if steps.contains_key(name) {
                return Err(Error::TerminalIsStep {
                    file,
                    name: name.clone(),
                });
            }
            terminal.insert(name.clone());
        }
        if !steps.contains_key(&start) {
            return Err(Error::UnknownStart { file, start });
        }
        for step in &definition.steps {
            for (transition, target) in &step.on {
                if !steps.contains_key(target) && !terminal.contains(target) {
                    return Err(Error::DanglingTransition {
                        file,
                        step: step.name.clone(),
                        transition: transition.clone(),
                        target: target.clone(),
                    });
                }
            }
        }

        let mut reached = HashSet::from([start.as_str()]);
        let mut queue = VecDeque::from([start.as_str()]);
        while let Some(name) = queue.pop_front() {
            for target in steps[name].definition.on.values() {
                if steps.contains_key(target) && reached.insert(target.as_str()) {
                    queue.push_back(target);
                }
            }
        }
        if let Some(step) = definition
            .steps
            .iter()
            .find(|step| !reached.contains(step.name.as_str()))
        {
            return Err(Error::UnreachableStep {
                file,
                step: step.name.clone(),
                start,
            });
        }

        Ok(Journey {
            definition,
            start,
            steps,
            terminal,
        })
    }

    /// The journey name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Whether its instances are indexed by customer while active: for
    /// single re-entry, or exit events about the customer.
    pub fn indexes_by_customer(&self) -> bool {
        self.definition.entry.reentry == Reentry::Single
            || self
                .definition
                .exit
                .iter()
                .any(|rule| rule.correlate_on.is_none())
    }

    /// Why a customer with this profile may not enter, if they may not:
    /// a segment condition that does not hold or a suppression that does.
    pub fn entry_refusal(&self, profile: &serde_json::Value) -> Option<String> {
        let entry = &self.definition.entry;
        if let Some(condition) = entry
            .segment
            .iter()
            .find(|condition| !condition.holds(profile))
        {
            return Some(format!("not in the segment: {condition} does not hold"));
        }
        entry
            .suppress
            .iter()
            .find(|condition| condition.holds(profile))
            .map(|condition| format!("suppressed: {condition}"))
    }

    /// Whether the journey listens to events of `kind` (its trigger or a
    /// declared kind).
    pub fn listens_to(&self, kind: &str) -> bool {
        self.definition.trigger.event == kind || self.definition.events.contains_key(kind)
    }

    /// Whether `name` is a step or a terminal state: somewhere an
    /// instance can be sent.
    pub fn leads_to(&self, name: &str) -> bool {
        self.steps.contains_key(name) || self.terminal.contains(name)
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.get(name)
    }

    /// Every step, in definition order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.definition
            .steps
            .iter()
            .filter_map(|step| self.steps.get(&step.name))
    }

    /// Where `transition` from `step` leads, if the journey defines it.
    pub fn target(&self, step: &str, transition: &str) -> Option<Target<'_>> {
        let target = self.steps.get(step)?.definition.on.get(transition)?;
        if self.terminal.contains(target) {
            Some(Target::Terminal(target))
        } else {
            Some(Target::Step(target))
        }
    }
}

#[cfg(test)]
mod tests {
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
        let error =
            parse(&VALID.replace("plugin = \"acknowledge\"", "")).expect_err("missing plugin");
        let message = error.to_string();
        assert!(message.starts_with("enquiry.toml:"), "{message}");
        assert!(message.contains("missing field `plugin`"), "{message}");
    }

    #[test]
    fn an_unknown_field_is_rejected() {
        let error = parse(&VALID.replace("on = { sent", "colour = 1\non = { sent"))
            .expect_err("unknown field");
        assert!(
            error.to_string().contains("unknown field `colour`"),
            "{error}"
        );
    }

    #[test]
    fn a_dangling_transition_names_step_transition_and_target() {
        let error = parse(&VALID.replace("sent = \"resolve\"", "sent = \"nowhere\""))
            .expect_err("dangling");
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
        let profile =
            serde_json::json!({ "interests": ["ai", "data"], "consent": { "email": true } });
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
        let condition =
            |source: &str| -> Condition { toml::from_str(source).expect("a condition") };
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
}
