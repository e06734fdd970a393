//! What a step may ask of the host, behind one trait: the generated WIT
//! imports in the component ([`WitHost`]), a fake in native tests
//! ([`crate::testing`]). [`crate::Context`] talks only to this.

use crate::bindings::journey::plugin::{clock, customer, log, metrics, outbox};

/// The host calls of the step world.
pub trait Host {
    /// `customer.view`.
    fn view(&self, max_interactions: u32, kinds: &[String]) -> customer::CustomerView;
    /// `customer.note`; `details` is JSON.
    fn note(&mut self, channel: &str, kind: &str, text: &str, details: &str);
    /// `outbox.send`.
    fn send(&mut self, message: &outbox::Message) -> Result<String, outbox::SendError>;
    /// `metrics.count`.
    fn count(&mut self, name: &str, value: u64);
    /// `clock.now-ms`.
    fn now_ms(&self) -> u64;
    /// `log.write`.
    fn log(&self, level: log::Level, message: &str);
}

/// The real host: the component's imports.
pub struct WitHost;

impl Host for WitHost {
    fn view(&self, max_interactions: u32, kinds: &[String]) -> customer::CustomerView {
        customer::view(max_interactions, kinds)
    }

    fn note(&mut self, channel: &str, kind: &str, text: &str, details: &str) {
        customer::note(channel, kind, text, details);
    }

    fn send(&mut self, message: &outbox::Message) -> Result<String, outbox::SendError> {
        outbox::send(message)
    }

    fn count(&mut self, name: &str, value: u64) {
        metrics::count(name, value);
    }

    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn log(&self, level: log::Level, message: &str) {
        log::write(level, message);
    }
}
