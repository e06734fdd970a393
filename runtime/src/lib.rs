//! `journeyd`: a host runtime for customer micro journeys.
//!
//! Journey instances live durably in a [`store::Store`] (sled by default);
//! every touchpoint step runs as a sandboxed WebAssembly component
//! ([`host`]) implementing the `journey:plugin` WIT contract. The
//! [`executor`] drives instances and commits each step's effects
//! atomically with group commit; [`api`] serves it over HTTP and [`cli`]
//! is the `journeyd` command line, a thin client of that API.
//!
//! Module map: [`journey`] parses and validates definitions, [`store`]
//! owns persistence, [`host`] owns wasmtime, [`executor`] owns running
//! instances, [`api`] owns HTTP, [`console`] owns the web console, [`cli`]
//! owns the command line and the benchmark, [`clock`] owns time,
//! [`window`] owns sending windows and time zones.

#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod console;
pub mod delivery;
pub mod executor;
pub mod faults;
pub mod host;
pub mod journey;
pub mod json;
pub mod store;
pub mod telemetry;
pub mod tooling;
pub mod window;

/// An error and its sources, `outer: inner: innermost`, for logs and
/// recorded reasons.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}
