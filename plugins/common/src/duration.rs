//! Duration strings as journey configs write them: one or more
//! `<number><unit>` parts with units `d`, `h`, `m` and `s`, optionally
//! separated by spaces (`3d`, `12h`, `1d 12h`, `1h30m`). An offset may
//! start with `-` (or `+`). Durations are milliseconds.

use crate::{Error, Result};

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Parse the duration in config field `field` to milliseconds.
pub fn duration_ms(field: &str, text: &str) -> Result<u64> {
    parse(text).map_err(|reason| Error::Duration {
        field: field.to_owned(),
        value: text.to_owned(),
        reason,
    })
}

/// Parse an offset in config field `field`: a duration that may start
/// with `-` (earlier) or `+`.
pub fn offset_ms(field: &str, text: &str) -> Result<i64> {
    let trimmed = text.trim();
    let (negative, magnitude) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let invalid = |reason| Error::Duration {
        field: field.to_owned(),
        value: text.to_owned(),
        reason,
    };
    let ms = parse(magnitude).map_err(invalid)?;
    let ms = i64::try_from(ms).map_err(|_| invalid("too long"))?;
    Ok(if negative { -ms } else { ms })
}

fn parse(text: &str) -> std::result::Result<u64, &'static str> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty");
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("each part is a number followed by d, h, m or s");
        }
        let number: u64 = rest[..digits].parse().map_err(|_| "too long")?;
        let unit_ms = match rest[digits..].chars().next() {
            Some('d') => DAY_MS,
            Some('h') => HOUR_MS,
            Some('m') => MINUTE_MS,
            Some('s') => SECOND_MS,
            Some(_) => return Err("the unit must be d, h, m or s"),
            None => return Err("a number needs a unit: d, h, m or s"),
        };
        total = number
            .checked_mul(unit_ms)
            .and_then(|part| total.checked_add(part))
            .ok_or("too long")?;
        rest = rest[digits + 1..].trim_start();
    }
    Ok(total)
}

/// Milliseconds for people: `1d 12h`, `45m`, `30s`, `0s`; below a second
/// rounds down.
pub fn display(ms: u64) -> String {
    let mut parts = Vec::new();
    let mut rest = ms;
    for (unit_ms, unit) in [
        (DAY_MS, 'd'),
        (HOUR_MS, 'h'),
        (MINUTE_MS, 'm'),
        (SECOND_MS, 's'),
    ] {
        if rest >= unit_ms {
            parts.push(format!("{}{unit}", rest / unit_ms));
            rest %= unit_ms;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_combined_units() {
        assert_eq!(duration_ms("timeout", "3d"), Ok(3 * DAY_MS));
        assert_eq!(duration_ms("timeout", "12h"), Ok(12 * HOUR_MS));
        assert_eq!(duration_ms("timeout", "30m"), Ok(30 * MINUTE_MS));
        assert_eq!(duration_ms("timeout", "45s"), Ok(45 * SECOND_MS));
        assert_eq!(duration_ms("timeout", "1d 12h"), Ok(36 * HOUR_MS));
        assert_eq!(duration_ms("timeout", " 1h30m "), Ok(90 * MINUTE_MS));
        assert_eq!(duration_ms("timeout", "0s"), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_a_duration_naming_the_field() {
        for text in [
            "",
            "3",
            "d",
            "3x",
            "1d -2h",
            "1.5h",
            "99999999999999999999d",
        ] {
            let error = duration_ms("sla.high", text).expect_err(text);
            assert!(
                error.to_string().starts_with("config `sla.high`: "),
                "{error}"
            );
        }
        assert_eq!(
            duration_ms("timeout", "3 days"),
            Err(Error::Duration {
                field: "timeout".into(),
                value: "3 days".into(),
                reason: "the unit must be d, h, m or s",
            })
        );
    }

    #[test]
    fn offsets_may_be_negative() {
        assert_eq!(offset_ms("offset", "-1h"), Ok(-(HOUR_MS as i64)));
        assert_eq!(offset_ms("offset", "+30m"), Ok(30 * MINUTE_MS as i64));
        assert_eq!(offset_ms("offset", "1d"), Ok(DAY_MS as i64));
        assert!(offset_ms("offset", "--1h").is_err());
        assert!(offset_ms("offset", "-").is_err());
    }

    #[test]
    fn displays_the_largest_units_first() {
        assert_eq!(display(36 * HOUR_MS), "1d 12h");
        assert_eq!(display(90 * MINUTE_MS + 5 * SECOND_MS + 999), "1h 30m 5s");
        assert_eq!(display(999), "0s");
        assert_eq!(display(2 * DAY_MS), "2d");
    }
}
