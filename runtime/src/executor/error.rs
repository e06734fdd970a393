//! The errors of the runtime's operations: one enum, each variant naming
//! the journey, step, plugin, instance or field that is wrong. The HTTP
//! layer maps them to stable codes (`api/error.rs`).

use super::*;
use crate::host::LoadError;

/// Errors of the runtime's operations, each naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A journey definition was rejected.
    #[error(transparent)]
    Journey(#[from] journey::Error),
    /// A pushed plugin was rejected.
    #[error("plugin `{name}`: {source}")]
    Plugin {
        /// The plugin name.
        name: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A name or id is malformed.
    #[error("{field} `{value}` is invalid: {rule}")]
    InvalidId {
        /// Which field.
        field: &'static str,
        /// The value (truncated).
        value: String,
        /// What it must look like.
        rule: &'static str,
    },
    /// The event's `data` is not a JSON object.
    #[error("event `{event}`: `data` must be a JSON object")]
    EventDataNotObject {
        /// The event id.
        event: String,
    },
    /// No deployed journey is triggered by or declares this event type.
    /// journeyd is shutting down and takes no new events.
    #[error(
        "journeyd is shutting down and takes no new events; send it again (to this runtime once it is back, or another)"
    )]
    Draining,
    /// This node lost the shard an event's instances were to start in
    /// (another node took it) before the event committed.
    #[error(
        "this node lost shard {shard} to another node while accepting the event; nothing was accepted: send it again (to any node)"
    )]
    Fenced {
        /// The shard.
        shard: u32,
    },
    #[error(
        "event `{event}`: no deployed journey is triggered by event type `{kind}` or declares it in `[events]`, and no instance waits for one"
    )]
    UnknownEventType {
        /// The event id.
        event: String,
        /// The type.
        kind: String,
    },
    /// The event lacks the correlation key a triggered journey needs.
    #[error(
        "event `{event}`: journey `{journey}` correlates on `data.{key}`, which is missing or not a string or number"
    )]
    MissingCorrelationKey {
        /// The event id.
        event: String,
        /// The journey.
        journey: String,
        /// The key.
        key: String,
    },
    /// An event's data lacks a field its type needs.
    #[error("event `{event}` of type `{kind}`: `data.{field}` {reason}")]
    EventDataField {
        /// The event id.
        event: String,
        /// The type.
        kind: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A customer profile's time zone does not exist.
    #[error("customer `{customer}`: profile `time_zone`: {reason}")]
    InvalidTimeZone {
        /// The customer id.
        customer: String,
        /// What is wrong.
        reason: String,
    },
    /// Frequency caps are malformed; nothing was changed.
    #[error("frequency caps: {0}")]
    InvalidCaps(String),
    /// A customer profile must be a JSON object.
    #[error("customer `{customer}`: the profile must be a JSON object")]
    ProfileNotObject {
        /// The customer id.
        customer: String,
    },
    /// The instance does not exist.
    #[error("instance `{0}` does not exist")]
    UnknownInstance(InstanceId),
    /// No journey of this name was deployed.
    #[error("journey `{0}` has not been deployed")]
    UnknownJourney(String),
    /// The journey has no such version.
    #[error("journey `{journey}` has no version {version}")]
    UnknownJourneyVersion {
        /// The journey.
        journey: String,
        /// The version asked for.
        version: u32,
    },
    /// A migration is malformed; nothing was changed.
    #[error("journey `{journey}`: migration from version {from} to {to}: {reason}")]
    InvalidMigration {
        /// The journey.
        journey: String,
        /// The version instances would leave.
        from: u32,
        /// The version they would move to.
        to: u32,
        /// What is wrong.
        reason: String,
    },
    /// No plugin of this name was pushed.
    #[error("plugin `{0}` has not been pushed")]
    UnknownPlugin(String),
    /// The plugin has no such version.
    #[error("plugin `{plugin}` has no version {version}")]
    UnknownPluginVersion {
        /// The plugin.
        plugin: String,
        /// The version asked for.
        version: u32,
    },
    /// The plugin has no such tag.
    #[error("plugin `{plugin}` has no tag `{tag}`")]
    UnknownTag {
        /// The plugin.
        plugin: String,
        /// The tag.
        tag: String,
    },
    /// A tag change is malformed.
    #[error("plugin `{plugin}`, tag `{tag}`: {reason}")]
    InvalidTag {
        /// The plugin.
        plugin: String,
        /// The tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// The WebAssembly engine could not be configured.
    #[error("the WebAssembly engine could not be set up: {0:#}")]
    Engine(#[source] wasmtime::Error),
    /// A step worker thread could not be started.
    #[error("a step worker thread could not be started")]
    Thread(#[source] std::io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed")]
    Task(#[from] tokio::task::JoinError),
    /// An operator's action does not apply to the instance.
    #[error("instance `{instance}`: {reason}")]
    InvalidAction {
        /// The instance.
        instance: InstanceId,
        /// Why not.
        reason: String,
    },
    /// A journey has no step (or terminal state) of this name.
    #[error("journey `{journey}` has no step or terminal state `{step}`")]
    UnknownStep {
        /// The journey.
        journey: String,
        /// The name asked for.
        step: String,
    },
    /// An instance's current event is not in the store.
    #[error("instance `{instance}`: its event `{event}` is missing from the store")]
    MissingEvent {
        /// The instance.
        instance: InstanceId,
        /// The event it needs.
        event: String,
    },
    /// An integration was refused.
    #[error(transparent)]
    Integration(#[from] crate::delivery::IntegrationError),
    /// No message has this id.
    #[error("no message `{0}` in the outbox")]
    UnknownMessage(String),
    /// A plugin grant is malformed or names an unreadable secret.
    #[error("plugin `{plugin}`: {reason}")]
    InvalidGrant {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// A token of this name exists.
    #[error("a token named `{0}` exists; revoke it first or choose another name")]
    TokenExists(String),
    /// No token has this name.
    #[error("no token named `{0}`")]
    UnknownToken(String),
    /// Only undelivered messages are replayed.
    #[error("message `{message}` is {status}; only bounced, failed or dead messages are replayed", status = status.as_str())]
    NotReplayable {
        /// The message.
        message: String,
        /// Where its delivery is.
        status: DeliveryStatus,
    },
    /// [`Runtime::new`] was called outside a tokio runtime.
    #[error("the runtime must be started inside a tokio runtime")]
    NoAsyncRuntime,
}

/// Result of runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
