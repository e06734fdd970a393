//! Why a step (or a channel call) failed, and whose fault it was: the
//! plugin's (it returned an error, trapped, ran too long, took too much
//! memory, broke the contract, asked for what it was not granted) or the
//! host's (the pool, the store behind a host call), which never fails an
//! instance.

use std::time::Duration;

use wasmtime::Trap;

use super::{Limits, Violation};

/// Why a step run failed. Recorded in the instance's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    /// The plugin returned `err`.
    #[error("{0}")]
    Returned(String),
    /// The plugin trapped.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// It ran past its deadline and was interrupted.
    #[error("plugin ran past its {limit_ms} ms deadline and was stopped")]
    Deadline {
        /// The deadline.
        limit_ms: u64,
    },
    /// It tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit of {limit_mib} MiB")]
    Memory {
        /// The limit.
        limit_mib: u64,
    },
    /// Its start-up code trapped while it was being instantiated.
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// It broke the contract: output over a size limit, a `json` value
    /// that is not a JSON object, a malformed channel name.
    #[error("plugin broke the contract: {0}")]
    Contract(String),
    /// The plugin asked for something it was not granted (an outbound
    /// request to a host the operator did not grant it).
    #[error("{0}")]
    Refused(String),
    /// The host failed, not the plugin: the instance pool, the store
    /// behind a host call, a panic in host code. Never recorded as the
    /// instance's failure: the executor drops the attempt's effects and
    /// runs the step again.
    #[error("host fault: {0}")]
    Host(String),
}

impl StepFailure {
    /// Whether the host, not the plugin, is at fault.
    pub fn is_host_fault(&self) -> bool {
        matches!(self, StepFailure::Host(_))
    }

    /// A trap with what the plugin wrote to stderr before it (a Python or
    /// JavaScript exception, a Rust panic message) put first, where a
    /// person reads; the wasm backtrace follows.
    pub fn with_stderr(self, stderr: &str) -> StepFailure {
        match self {
            StepFailure::Trap(trap) if !stderr.is_empty() => {
                StepFailure::Trap(format!("{stderr}\n{trap}"))
            }
            StepFailure::Instantiate(error) if !stderr.is_empty() => {
                StepFailure::Instantiate(format!("{stderr}\n{error}"))
            }
            other => other,
        }
    }
}

/// A fault of the host inside a host call (a store read that failed, say).
/// Host calls return it as their trap so that [`Host::run_step`] reports
/// [`StepFailure::Host`] instead of blaming the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HostFault(pub String);

impl HostFault {
    /// A trap carrying this fault out of a host call.
    pub fn trap(what: impl std::fmt::Display) -> wasmtime::Error {
        wasmtime::Error::new(HostFault(what.to_string()))
    }
}

/// Whose fault a failed instantiation is: the plugin's when its start-up
/// code trapped, ran too long or took too much memory; the host's
/// otherwise (the pool, a host call).
pub(super) fn classify_instantiate_error(
    limits: &Limits,
    memory_exceeded: bool,
    error: wasmtime::Error,
    deadline: Duration,
) -> StepFailure {
    let plugins_fault = error.downcast_ref::<Trap>().is_some() || memory_exceeded;
    match classify_trap(limits, memory_exceeded, error, deadline) {
        StepFailure::Trap(message) if plugins_fault => StepFailure::Instantiate(message),
        StepFailure::Trap(message) => {
            StepFailure::Host(format!("the plugin could not be instantiated: {message}"))
        }
        other => other,
    }
}

/// Whose fault a failed call is, and which: a host call's fault, a broken
/// contract, memory, the deadline, or a trap of the plugin's own.
pub(super) fn classify_trap(
    limits: &Limits,
    memory_exceeded: bool,
    error: wasmtime::Error,
    deadline: Duration,
) -> StepFailure {
    if let Some(fault) = error.downcast_ref::<HostFault>() {
        return StepFailure::Host(fault.0.clone());
    }
    if let Some(violation) = error.downcast_ref::<Violation>() {
        return StepFailure::Contract(violation.to_string());
    }
    if memory_exceeded {
        return StepFailure::Memory {
            limit_mib: (limits.memory_bytes / (1024 * 1024)) as u64,
        };
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return StepFailure::Deadline {
            limit_ms: deadline.as_millis() as u64,
        };
    }
    StepFailure::Trap(format!("{error:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_as_the_host_s_or_the_plugin_s() {
        let limits = Limits::default();
        let deadline = Duration::from_millis(250);
        let trap = |error| classify_trap(&limits, false, error, deadline);
        assert!(matches!(
            trap(HostFault::trap("the store is down")),
            StepFailure::Host(reason) if reason == "the store is down"
        ));
        assert!(matches!(
            trap(wasmtime::Error::new(Violation::TooLarge {
                place: "returned state",
                field: "state",
                size: 2,
                limit: 1
            })),
            StepFailure::Contract(_)
        ));
        assert!(matches!(
            classify_trap(
                &limits,
                true,
                wasmtime::Error::new(Trap::UnreachableCodeReached),
                deadline
            ),
            StepFailure::Memory { limit_mib: 64 }
        ));
        assert!(matches!(
            trap(wasmtime::Error::new(Trap::Interrupt)),
            StepFailure::Deadline { limit_ms: 250 }
        ));
        assert!(matches!(
            trap(wasmtime::Error::new(Trap::UnreachableCodeReached)),
            StepFailure::Trap(_)
        ));
        // At instantiation: the plugin's start-up code trapping is its
        // fault; anything else (the pool, say) is the host's.
        let instantiate = |error| classify_instantiate_error(&limits, false, error, deadline);
        assert!(matches!(
            instantiate(wasmtime::Error::new(Trap::UnreachableCodeReached)),
            StepFailure::Instantiate(_)
        ));
        assert!(matches!(
            instantiate(wasmtime::Error::msg(
                "maximum concurrent instance limit reached"
            )),
            StepFailure::Host(_)
        ));
        assert!(matches!(
            instantiate(HostFault::trap("the store is down")),
            StepFailure::Host(_)
        ));
        assert!(!StepFailure::Trap("x".into()).is_host_fault());
        assert!(StepFailure::Host("x".into()).is_host_fault());
    }
}
