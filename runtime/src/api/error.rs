//! The one error shape of the HTTP API: `{"error": {"code", "message"}}`
//! with the right status. [`ErrorCode`] lists every code a client can see;
//! they are stable (a test pins the list). Internal failures are logged
//! with their cause and shown only as `internal`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::executor;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $status:ident;)*) => {
        /// Every error code the API answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in a fixed order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status it comes with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    /// A request body is not what the route takes (not JSON, not an
    /// object, a field missing, mistyped or unknown).
    BadBody = "bad_body", BAD_REQUEST;
    /// A request body is over the route's limit.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE;
    /// A query string is malformed.
    BadQuery = "bad_query", BAD_REQUEST;
    /// A path is malformed (not UTF-8, not an id).
    BadPath = "bad_path", BAD_REQUEST;
    /// No route has this path.
    NotFound = "not_found", NOT_FOUND;
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// The body has a content type the route does not take.
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// An id or name is malformed.
    InvalidId = "invalid_id", BAD_REQUEST;
    /// An event is malformed.
    InvalidEvent = "invalid_event", BAD_REQUEST;
    /// A customer profile is malformed.
    InvalidProfile = "invalid_profile", BAD_REQUEST;
    /// A profile names a time zone that does not exist.
    UnknownTimeZone = "unknown_time_zone", BAD_REQUEST;
    /// No journey is triggered by or declares the event type.
    UnknownEventType = "unknown_event_type", UNPROCESSABLE_ENTITY;
    /// The event lacks the correlation key a journey needs.
    MissingCorrelationKey = "missing_correlation_key", UNPROCESSABLE_ENTITY;
    /// Frequency caps are malformed.
    InvalidCaps = "invalid_caps", UNPROCESSABLE_ENTITY;
    /// A journey migration is malformed.
    InvalidMigration = "invalid_migration", UNPROCESSABLE_ENTITY;
    /// A pushed component is not a step plugin the host can run.
    InvalidPlugin = "invalid_plugin", UNPROCESSABLE_ENTITY;
    /// A tag change is malformed.
    InvalidTag = "invalid_tag", UNPROCESSABLE_ENTITY;
    /// The journey has no such version.
    UnknownJourneyVersion = "unknown_journey_version", UNPROCESSABLE_ENTITY;
    /// The plugin has no such version.
    UnknownPluginVersion = "unknown_plugin_version", UNPROCESSABLE_ENTITY;
    /// The journey has no such step.
    UnknownStep = "unknown_step", UNPROCESSABLE_ENTITY;
    /// The simulated clock only moves forward.
    ClockBackwards = "clock_backwards", UNPROCESSABLE_ENTITY;
    /// No such instance.
    UnknownInstance = "unknown_instance", NOT_FOUND;
    /// No such journey.
    UnknownJourney = "unknown_journey", NOT_FOUND;
    /// No such plugin.
    UnknownPlugin = "unknown_plugin", NOT_FOUND;
    /// No such tag.
    UnknownTag = "unknown_tag", NOT_FOUND;
    /// Nothing is known about this customer.
    UnknownCustomer = "unknown_customer", NOT_FOUND;
    /// This process has no metrics recorder.
    MetricsDisabled = "metrics_disabled", NOT_FOUND;
    /// An operator's action does not apply to the instance as it is.
    InvalidAction = "invalid_action", CONFLICT;
    /// The clock is the system's and cannot be moved.
    ClockNotSimulated = "clock_not_simulated", CONFLICT;
    /// The runtime is starting: instances are being resumed.
    NotReady = "not_ready", SERVICE_UNAVAILABLE;
    /// The runtime is stopping.
    ShuttingDown = "shutting_down", SERVICE_UNAVAILABLE;
    /// This node holds no shard to start instances in (it is joining, or
    /// lost its leases): another node takes the work.
    ShardUnavailable = "shard_unavailable", SERVICE_UNAVAILABLE;
    /// The store (a database server) cannot be reached now: ask again in
    /// a moment (an event's id makes a repeat harmless).
    StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE;
    /// An event was not committed in time; it may still be.
    CommitPending = "commit_pending", SERVICE_UNAVAILABLE;
    /// What a read shows was not made durable in time.
    NotDurable = "not_durable", SERVICE_UNAVAILABLE;
    /// Something failed inside journeyd; its log has the cause.
    Internal = "internal", INTERNAL_SERVER_ERROR;
    /// A journey definition is not valid TOML, or a field is missing,
    /// mistyped or unknown.
    JourneySyntax = "journey_syntax", UNPROCESSABLE_ENTITY;
    /// A journey has no steps.
    JourneyNoSteps = "journey_no_steps", UNPROCESSABLE_ENTITY;
    /// A name in a journey is malformed.
    JourneyInvalidName = "journey_invalid_name", UNPROCESSABLE_ENTITY;
    /// Two steps share a name.
    JourneyDuplicateStep = "journey_duplicate_step", UNPROCESSABLE_ENTITY;
    /// A terminal state has a step's name.
    JourneyTerminalIsStep = "journey_terminal_is_step", UNPROCESSABLE_ENTITY;
    /// The start step does not exist.
    JourneyUnknownStart = "journey_unknown_start", UNPROCESSABLE_ENTITY;
    /// A transition leads nowhere.
    JourneyDanglingTransition = "journey_dangling_transition", UNPROCESSABLE_ENTITY;
    /// A step cannot be reached from the start.
    JourneyUnreachableStep = "journey_unreachable_step", UNPROCESSABLE_ENTITY;
    /// A step's plugin reference is malformed.
    JourneyBadPluginRef = "journey_bad_plugin_ref", UNPROCESSABLE_ENTITY;
    /// A split step is malformed.
    JourneyInvalidSplit = "journey_invalid_split", UNPROCESSABLE_ENTITY;
    /// A step's retry policy is malformed.
    JourneyInvalidRetry = "journey_invalid_retry", UNPROCESSABLE_ENTITY;
    /// The journey's retention is not a duration.
    JourneyInvalidRetention = "journey_invalid_retention", UNPROCESSABLE_ENTITY;
    /// A step's plugin was never pushed.
    JourneyUnknownPlugin = "journey_unknown_plugin", UNPROCESSABLE_ENTITY;
    /// An entry condition is malformed.
    JourneyInvalidCondition = "journey_invalid_condition", UNPROCESSABLE_ENTITY;
    /// An exit rule names an undeclared event type.
    JourneyUnknownExitEvent = "journey_unknown_exit_event", UNPROCESSABLE_ENTITY;
    /// An exit rule names the trigger.
    JourneyExitIsTrigger = "journey_exit_is_trigger", UNPROCESSABLE_ENTITY;
    /// No integration for the channel.
    UnknownIntegration = "unknown_integration", NOT_FOUND;
    /// No message has this id.
    UnknownMessage = "unknown_message", NOT_FOUND;
    /// An integration is malformed, or its plugin, hosts or secrets do not fit.
    InvalidIntegration = "invalid_integration", UNPROCESSABLE_ENTITY;
    /// Only undelivered messages are replayed.
    NotReplayable = "not_replayable", CONFLICT;
    /// A callback's signature is missing or does not verify.
    BadSignature = "bad_signature", UNAUTHORIZED;
    /// The integration has no callback secret, so it takes no callbacks.
    CallbacksOff = "callbacks_off", FORBIDDEN;
    /// The channel plugin could not read the callback.
    UnreadableCallback = "unreadable_callback", BAD_REQUEST;
    /// The request carries no API token.
    Unauthenticated = "unauthenticated", UNAUTHORIZED;
    /// The request's API token is not one journeyd knows (or it was revoked).
    InvalidToken = "invalid_token", UNAUTHORIZED;
    /// The request's API token is older than the server's tokens policy
    /// (`token_max_age`) allows.
    TokenExpired = "token_expired", UNAUTHORIZED;
    /// The request's API token lacks the scope the route needs.
    MissingScope = "missing_scope", FORBIDDEN;
    /// A token of this name exists.
    TokenExists = "token_exists", CONFLICT;
    /// No token has this name.
    UnknownToken = "unknown_token", NOT_FOUND;
    /// A plugin grant is malformed or names an unreadable secret.
    InvalidGrant = "invalid_grant", UNPROCESSABLE_ENTITY;
}

/// What a `503` asks the client to wait, seconds.
const RETRY_AFTER_S: &str = "1";

/// An API error: a stable code (with its status) and a message for people.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// An internal failure: logged with its causes, shown as `internal`.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        let chain = crate::error_chain(error);
        tracing::error!(error = %chain, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; see the journeyd log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        let status = self.code.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Starting, shutting down, or a commit still pending: worth
            // asking again soon.
            return (
                status,
                [(axum::http::header::RETRY_AFTER, RETRY_AFTER_S)],
                Json(body),
            )
                .into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<executor::Error> for ApiError {
    fn from(error: executor::Error) -> Self {
        use executor::Error as E;
        let error = match error {
            E::Store(store @ crate::store::Error::Unavailable(_)) => return store.into(),
            error => error,
        };
        let code = match &error {
            E::Journey(journey) => journey_code(journey),
            E::Plugin { .. } => ErrorCode::InvalidPlugin,
            E::InvalidId { .. } => ErrorCode::InvalidId,
            E::EventDataNotObject { .. } | E::EventDataField { .. } => ErrorCode::InvalidEvent,
            E::UnknownEventType { .. } => ErrorCode::UnknownEventType,
            E::MissingCorrelationKey { .. } => ErrorCode::MissingCorrelationKey,
            E::ProfileNotObject { .. } => ErrorCode::InvalidProfile,
            E::InvalidTimeZone { .. } => ErrorCode::UnknownTimeZone,
            E::InvalidCaps(_) => ErrorCode::InvalidCaps,
            E::UnknownInstance(_) => ErrorCode::UnknownInstance,
            E::UnknownJourney(_) => ErrorCode::UnknownJourney,
            E::UnknownJourneyVersion { .. } => ErrorCode::UnknownJourneyVersion,
            E::InvalidMigration { .. } => ErrorCode::InvalidMigration,
            E::UnknownPlugin(_) => ErrorCode::UnknownPlugin,
            E::UnknownPluginVersion { .. } => ErrorCode::UnknownPluginVersion,
            E::UnknownTag { .. } => ErrorCode::UnknownTag,
            E::InvalidTag { .. } => ErrorCode::InvalidTag,
            E::InvalidAction { .. } => ErrorCode::InvalidAction,
            E::UnknownStep { .. } => ErrorCode::UnknownStep,
            E::Integration(crate::delivery::IntegrationError::Unknown(_)) => {
                ErrorCode::UnknownIntegration
            }
            E::Integration(_) => ErrorCode::InvalidIntegration,
            E::UnknownMessage(_) => ErrorCode::UnknownMessage,
            E::NotReplayable { .. } => ErrorCode::NotReplayable,
            E::TokenExists(_) => ErrorCode::TokenExists,
            E::UnknownToken(_) => ErrorCode::UnknownToken,
            E::InvalidGrant { .. } => ErrorCode::InvalidGrant,
            E::Commit(executor::CommitError::Stopped) | E::Draining => ErrorCode::ShuttingDown,
            E::Fenced { .. } | E::Store(crate::store::Error::NoShard) => {
                ErrorCode::ShardUnavailable
            }
            E::Store(_)
            | E::Task(_)
            | E::Engine(_)
            | E::Thread(_)
            | E::MissingEvent { .. }
            | E::NoAsyncRuntime => return ApiError::internal(&error),
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(error: crate::store::Error) -> Self {
        match error {
            crate::store::Error::Unavailable(_) => {
                tracing::warn!(error = %crate::error_chain(&error), "the store cannot be reached");
                ApiError::new(ErrorCode::StoreUnavailable, error.to_string())
            }
            error => ApiError::internal(&error),
        }
    }
}

fn journey_code(error: &crate::journey::Error) -> ErrorCode {
    use crate::journey::Error as J;
    match error {
        J::Syntax { .. } | J::MissingPlugin { .. } => ErrorCode::JourneySyntax,
        J::NoSteps { .. } => ErrorCode::JourneyNoSteps,
        J::InvalidName { .. } => ErrorCode::JourneyInvalidName,
        J::DuplicateStep { .. } => ErrorCode::JourneyDuplicateStep,
        J::TerminalIsStep { .. } => ErrorCode::JourneyTerminalIsStep,
        J::UnknownStart { .. } => ErrorCode::JourneyUnknownStart,
        J::DanglingTransition { .. } => ErrorCode::JourneyDanglingTransition,
        J::UnreachableStep { .. } => ErrorCode::JourneyUnreachableStep,
        J::BadPluginRef { .. } => ErrorCode::JourneyBadPluginRef,
        J::InvalidSplit { .. } => ErrorCode::JourneyInvalidSplit,
        J::InvalidRetry { .. } => ErrorCode::JourneyInvalidRetry,
        J::InvalidRetention { .. } => ErrorCode::JourneyInvalidRetention,
        J::UnknownPlugin { .. } => ErrorCode::JourneyUnknownPlugin,
        J::InvalidCondition { .. } => ErrorCode::JourneyInvalidCondition,
        J::UnknownExitEvent { .. } => ErrorCode::JourneyUnknownExitEvent,
        J::ExitIsTrigger { .. } => ErrorCode::JourneyExitIsTrigger,
    }
}

/// The code for an error response some layer other than a handler made
/// (axum's rejections, the router's 404 and 405), by its status.
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        status if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadBody,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients rely on these codes: a change here is a breaking change of
    /// the API, and must be deliberate.
    #[test]
    fn the_error_codes_are_pinned() {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "bad_body",
                "body_too_large",
                "bad_query",
                "bad_path",
                "not_found",
                "method_not_allowed",
                "unsupported_media_type",
                "invalid_id",
                "invalid_event",
                "invalid_profile",
                "unknown_time_zone",
                "unknown_event_type",
                "missing_correlation_key",
                "invalid_caps",
                "invalid_migration",
                "invalid_plugin",
                "invalid_tag",
                "unknown_journey_version",
                "unknown_plugin_version",
                "unknown_step",
                "clock_backwards",
                "unknown_instance",
                "unknown_journey",
                "unknown_plugin",
                "unknown_tag",
                "unknown_customer",
                "metrics_disabled",
                "invalid_action",
                "clock_not_simulated",
                "not_ready",
                "shutting_down",
                "shard_unavailable",
                "store_unavailable",
                "commit_pending",
                "not_durable",
                "internal",
                "journey_syntax",
                "journey_no_steps",
                "journey_invalid_name",
                "journey_duplicate_step",
                "journey_terminal_is_step",
                "journey_unknown_start",
                "journey_dangling_transition",
                "journey_unreachable_step",
                "journey_bad_plugin_ref",
                "journey_invalid_split",
                "journey_invalid_retry",
                "journey_invalid_retention",
                "journey_unknown_plugin",
                "journey_invalid_condition",
                "journey_unknown_exit_event",
                "journey_exit_is_trigger",
                "unknown_integration",
                "unknown_message",
                "invalid_integration",
                "not_replayable",
                "bad_signature",
                "callbacks_off",
                "unreadable_callback",
                "unauthenticated",
                "invalid_token",
                "token_expired",
                "missing_scope",
                "token_exists",
                "unknown_token",
                "invalid_grant",
            ]
        );
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "no code twice");
    }
}
