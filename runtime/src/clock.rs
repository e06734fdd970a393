//! The one clock the runtime reads time from.
//!
//! Everything that stamps or compares time (events, steps, timers, the
//! `clock` capability, the WASI wall clock a plugin sees) asks a [`Clock`],
//! so a controllable clock can replace the system one without touching
//! callers. [`SimulatedClock`] is that controllable clock: it stands still
//! until it is advanced (`journeyd serve --simulated-clock`, then
//! `POST /v1/clock/advance`), so days of waiting take no time in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A time as an operator writes it: RFC 3339, or a date (midnight UTC).
pub fn parse_time_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let timestamp = match text.parse::<jiff::Timestamp>() {
        Ok(timestamp) => timestamp,
        Err(_) => text
            .parse::<jiff::civil::Date>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    u64::try_from(timestamp.as_millisecond()).ok()
}

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// The simulated clock, when this is one.
    fn simulated(&self) -> Option<&SimulatedClock> {
        None
    }
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }
}

/// The system clock shifted to read a chosen time when it is made, then
/// running at real speed: rehearse a journey from another date, or let a
/// benchmark's timers fall due a known time after a restart.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    offset_ms: i64,
}

impl ShiftedClock {
    /// A clock that reads `start_ms` now.
    pub fn starting_at(start_ms: u64) -> Self {
        ShiftedClock {
            offset_ms: start_ms as i64 - SystemClock.now_ms() as i64,
        }
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> u64 {
        (SystemClock.now_ms() as i64 + self.offset_ms).max(0) as u64
    }
}

/// A clock that moves only when told to, and only forwards.
#[derive(Debug)]
pub struct SimulatedClock {
    now_ms: AtomicU64,
}

impl SimulatedClock {
    /// A clock standing at `now_ms`.
    pub fn starting_at(now_ms: u64) -> Self {
        SimulatedClock {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// Move forward by `ms`; returns the new time.
    pub fn advance(&self, ms: u64) -> u64 {
        self.now_ms
            .fetch_add(ms, Ordering::AcqRel)
            .saturating_add(ms)
    }

    /// Move forward to `to_ms` (a time in the past leaves it where it is);
    /// returns the new time.
    pub fn advance_to(&self, to_ms: u64) -> u64 {
        self.now_ms.fetch_max(to_ms, Ordering::AcqRel).max(to_ms)
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Acquire)
    }

    fn simulated(&self) -> Option<&SimulatedClock> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_clock_moves_only_forward_and_only_when_told() {
        let clock = SimulatedClock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(clock.advance(500), 1_500);
        assert_eq!(clock.advance_to(1_200), 1_500, "never backwards");
        assert_eq!(clock.advance_to(86_400_000), 86_400_000);
        assert_eq!(clock.now_ms(), 86_400_000);
        assert!(clock.simulated().is_some());
        assert!(SystemClock.simulated().is_none());
    }

    #[test]
    fn a_shifted_clock_starts_where_asked_and_runs() {
        let clock = ShiftedClock::starting_at(1_000_000);
        let first = clock.now_ms();
        assert!((1_000_000..1_001_000).contains(&first), "{first}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.now_ms() >= first + 5);
        assert!(clock.simulated().is_none());
    }
}
