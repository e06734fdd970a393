//! Sending windows: the hours of the local day in which a journey may
//! contact a customer (quiet hours are the rest), in an IANA time zone.
//!
//! [`SendingWindow::next_open`] moves a wake-up time that falls in quiet
//! hours to the window's next opening, across daylight-saving changes. The
//! time zone database is compiled in, so results do not depend on the
//! machine's `/usr/share/zoneinfo`.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Minutes in a day: the largest `to_minute`.
const DAY_MINUTES: u32 = 24 * 60;

/// Why a window or time zone cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No IANA time zone has this name.
    #[error("time zone `{0}` does not exist (use an IANA name such as `Europe/Amsterdam`)")]
    UnknownTimeZone(String),
    /// The window's minutes are out of range.
    #[error(
        "sending window {from}-{to}: it must open before 24:00 (minute {DAY_MINUTES}) and close at 24:00 at the latest"
    )]
    Minutes {
        /// Minute it opens.
        from: u32,
        /// Minute it closes.
        to: u32,
    },
    /// A time the calendar cannot place.
    #[error("time {0} ms is outside the supported range")]
    OutOfRange(u64),
    /// The time zone rules could not place the opening.
    #[error("the opening could not be placed in the time zone")]
    Calendar(#[source] jiff::Error),
}

/// A window of local time, e.g. 09:00 to 20:00 in `Europe/Amsterdam`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingWindow {
    /// Opens this many minutes after local midnight.
    pub from_minute: u32,
    /// Closes this many minutes after local midnight (exclusive). Smaller
    /// than `from_minute` for a window across midnight; equal for a window
    /// that is always open.
    pub to_minute: u32,
    /// The time zone, resolved.
    pub time_zone: TimeZone,
    /// The zone's name as given, for history and errors.
    pub time_zone_name: String,
}

/// Look up an IANA time zone by name, e.g. `Europe/Amsterdam` or `UTC`.
pub fn time_zone(name: &str) -> Result<TimeZone, Error> {
    TimeZone::get(name).map_err(|_| Error::UnknownTimeZone(name.to_owned()))
}

impl SendingWindow {
    /// A window from minutes after local midnight, in the named zone.
    pub fn new(from_minute: u32, to_minute: u32, time_zone_name: &str) -> Result<Self, Error> {
        if from_minute >= DAY_MINUTES || to_minute > DAY_MINUTES {
            return Err(Error::Minutes {
                from: from_minute,
                to: to_minute,
            });
        }
        Ok(SendingWindow {
            from_minute,
            to_minute,
            time_zone: time_zone(time_zone_name)?,
            time_zone_name: time_zone_name.to_owned(),
        })
    }

    fn contains(&self, minute: u32) -> bool {
        match self.from_minute.cmp(&self.to_minute) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => (self.from_minute..self.to_minute).contains(&minute),
            std::cmp::Ordering::Greater => minute >= self.from_minute || minute < self.to_minute,
        }
    }

    /// `at_ms` if it is inside the window, else the window's next opening
    /// after it (ms since the Unix epoch).
    pub fn next_open(&self, at_ms: u64) -> Result<u64, Error> {
        let out_of_range = || Error::OutOfRange(at_ms);
        let at = Timestamp::from_millisecond(i64::try_from(at_ms).map_err(|_| out_of_range())?)
            .map_err(|_| out_of_range())?
            .to_zoned(self.time_zone.clone());
        let minute =
            u32::from(at.hour().unsigned_abs()) * 60 + u32::from(at.minute().unsigned_abs());
        if self.contains(minute) {
            return Ok(at_ms);
        }
        let opens = Time::new(
            (self.from_minute / 60 % 24) as i8,
            (self.from_minute % 60) as i8,
            0,
            0,
        )
        .map_err(Error::Calendar)?;
        // Today's opening if it is still ahead, else tomorrow's. A day
        // with a daylight-saving gap at the opening time opens just after
        // the gap (jiff's "compatible" rule).
        let mut day = at.date();
        if minute >= self.from_minute {
            day = day.checked_add(1.day()).map_err(|_| out_of_range())?;
        }
        let opening = day
            .to_datetime(opens)
            .to_zoned(self.time_zone.clone())
            .map_err(Error::Calendar)?;
        u64::try_from(opening.timestamp().as_millisecond()).map_err(|_| out_of_range())
    }
}

impl std::fmt::Display for SendingWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02} {}",
            self.from_minute / 60,
            self.from_minute % 60,
            self.to_minute / 60,
            self.to_minute % 60,
            self.time_zone_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms since the epoch of an RFC 3339 instant.
    fn ms(text: &str) -> u64 {
        let at: Timestamp = text.parse().expect("an RFC 3339 instant");
        at.as_millisecond() as u64
    }

    fn window(from: u32, to: u32, zone: &str) -> SendingWindow {
        SendingWindow::new(from * 60, to * 60, zone).expect("a valid window")
    }

    #[test]
    fn a_time_inside_the_window_is_kept() {
        let amsterdam = window(9, 20, "Europe/Amsterdam");
        // 12:00 UTC is 13:00 in Amsterdam in winter.
        let noon = ms("2026-12-01T12:00:00Z");
        assert_eq!(amsterdam.next_open(noon).ok(), Some(noon));
    }

    #[test]
    fn quiet_hours_move_to_the_next_local_opening() {
        let amsterdam = window(9, 20, "Europe/Amsterdam");
        // 21:30 local (20:30 UTC) moves to 09:00 local the next day (08:00 UTC).
        assert_eq!(
            amsterdam.next_open(ms("2026-12-01T20:30:00Z")).ok(),
            Some(ms("2026-12-02T08:00:00Z"))
        );
        // 06:00 local (05:00 UTC) moves to 09:00 local the same day.
        assert_eq!(
            amsterdam.next_open(ms("2026-12-01T05:00:00Z")).ok(),
            Some(ms("2026-12-01T08:00:00Z"))
        );
        // The same instant is inside the window in New York (15:30 local).
        let new_york = window(9, 20, "America/New_York");
        assert_eq!(
            new_york.next_open(ms("2026-12-01T20:30:00Z")).ok(),
            Some(ms("2026-12-01T20:30:00Z"))
        );
    }

    #[test]
    fn openings_follow_daylight_saving_time() {
        let amsterdam = window(9, 20, "Europe/Amsterdam");
        // Clocks go forward on 2026-03-29: 09:00 local is 07:00 UTC after it.
        assert_eq!(
            amsterdam.next_open(ms("2026-03-28T20:00:00Z")).ok(),
            Some(ms("2026-03-29T07:00:00Z"))
        );
    }

    #[test]
    fn a_window_across_midnight_opens_in_the_evening() {
        let night = window(22, 6, "UTC");
        assert_eq!(
            night.next_open(ms("2026-12-01T23:00:00Z")).ok(),
            Some(ms("2026-12-01T23:00:00Z"))
        );
        assert_eq!(
            night.next_open(ms("2026-12-01T03:00:00Z")).ok(),
            Some(ms("2026-12-01T03:00:00Z"))
        );
        assert_eq!(
            night.next_open(ms("2026-12-01T12:00:00Z")).ok(),
            Some(ms("2026-12-01T22:00:00Z"))
        );
    }

    #[test]
    fn an_unknown_time_zone_is_named_in_the_error() {
        let error = SendingWindow::new(540, 1200, "Mars/Olympus_Mons").expect_err("no such zone");
        assert!(
            error
                .to_string()
                .contains("`Mars/Olympus_Mons` does not exist"),
            "{error}"
        );
        assert!(SendingWindow::new(540, 1500, "UTC").is_err());
        assert!(
            SendingWindow::new(1440, 600, "UTC").is_err(),
            "24:00 opens nothing"
        );
    }
}
