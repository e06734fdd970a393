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

use std::collections::{HashMap, HashSet, VecDeque};

mod definition;

pub use self::definition::*;

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
    /// The journey's `retention` is neither a duration nor `forever`.
    #[error(
        "{file}: `retention` = \"{value}\" is not a duration such as \"30d\" or \"12h\", nor \"forever\""
    )]
    InvalidRetention {
        /// The file name as given.
        file: String,
        /// The value as written.
        value: String,
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

/// How long finished instances are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// For this long after they finish, in ms.
    For(u64),
    /// Until an operator purges them.
    Forever,
}

impl Retention {
    /// `"forever"`, or a duration such as `"30d"`; `None` if neither.
    pub fn parse(text: &str) -> Option<Retention> {
        match text.trim() {
            "forever" => Some(Retention::Forever),
            text => humantime::parse_duration(text)
                .ok()
                .map(|duration| Retention::For(duration.as_millis() as u64)),
        }
    }

    /// The latest finish time (ms since the epoch) of instances due to be
    /// removed at `now_ms`, if any are.
    pub fn finished_before(self, now_ms: u64) -> Option<u64> {
        match self {
            Retention::For(keep_ms) => now_ms.checked_sub(keep_ms),
            Retention::Forever => None,
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::For(ms) => write!(
                f,
                "{}",
                humantime::format_duration(std::time::Duration::from_millis(*ms))
            ),
            Retention::Forever => f.write_str("forever"),
        }
    }
}

/// A validated journey definition.
#[derive(Debug, Clone)]
pub struct Journey {
    /// The definition as written.
    pub definition: Definition,
    /// The start step's name.
    pub start: String,
    /// How long its finished instances are kept, when the journey says.
    pub retention: Option<Retention>,
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

        let retention = definition
            .retention
            .as_deref()
            .map(|value| {
                Retention::parse(value).ok_or_else(|| Error::InvalidRetention {
                    file: file.clone(),
                    value: value.to_owned(),
                })
            })
            .transpose()?;
        Ok(Journey {
            definition,
            start,
            retention,
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
mod tests;
