//! A point in time as the `await` and `sleep` steps configure it: either a
//! duration from now, or a time saved in the instance context plus an
//! optional offset.
//!
//! ```toml
//! timeout = "3d"                 # `await`; `sleep` calls it `for`
//! # or
//! until = "starts_at_ms"         # a context field: ms since the Unix epoch
//! offset = "-1h"                 # optional, only with `until`
//! ```

use serde_json::{Map, Value};

use crate::{Error, Result, duration};

/// When something is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadline {
    /// This many milliseconds after now.
    After(u64),
    /// The time in context field `key`, moved by `offset_ms`.
    At {
        /// The context field.
        key: String,
        /// Added to the field's time; negative is earlier.
        offset_ms: i64,
    },
}

impl Deadline {
    /// Read a deadline from config. `relative_field` names the field that
    /// holds a duration from now (`timeout` or `for`), `relative` is its
    /// value; exactly one of it and `until` must be given, and `offset`
    /// only with `until`.
    pub fn from_config(
        relative_field: &str,
        relative: Option<&str>,
        until: Option<&str>,
        offset: Option<&str>,
    ) -> Result<Self> {
        let config = |field: &str, reason: String| Error::Config {
            field: field.to_owned(),
            reason,
        };
        match (relative, until) {
            (Some(_), Some(_)) => Err(config(
                relative_field,
                format!("give either `{relative_field}` or `until`, not both"),
            )),
            (None, None) => Err(config(
                relative_field,
                format!(
                    "missing: give `{relative_field}` (a duration) or `until` (a context field holding a time)"
                ),
            )),
            (Some(_), None) if offset.is_some() => Err(config(
                "offset",
                format!("only applies with `until`, not with `{relative_field}`"),
            )),
            (Some(text), None) => Ok(Deadline::After(duration::duration_ms(
                relative_field,
                text,
            )?)),
            (None, Some(key)) if key.trim().is_empty() => {
                Err(config("until", "names no context field".into()))
            }
            (None, Some(key)) => Ok(Deadline::At {
                key: key.to_owned(),
                offset_ms: offset.map_or(Ok(0), |text| duration::offset_ms("offset", text))?,
            }),
        }
    }

    /// The deadline in ms since the Unix epoch, given the current time and
    /// the instance context. A time before the epoch clamps to 0 (long
    /// past).
    pub fn at_ms(&self, now_ms: u64, context: &Map<String, Value>) -> Result<u64> {
        match self {
            Deadline::After(ms) => Ok(now_ms.saturating_add(*ms)),
            Deadline::At { key, offset_ms } => {
                Ok(context_time("until", key, context)?.saturating_add_signed(*offset_ms))
            }
        }
    }
}

/// The time in context field `key` (a number, or a string of digits), which
/// config field `field` names.
pub fn context_time(field: &str, key: &str, context: &Map<String, Value>) -> Result<u64> {
    match context.get(key) {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| Error::MissingTime {
        field: field.to_owned(),
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    fn context() -> Map<String, Value> {
        let Value::Object(context) = json!({
            "starts_at_ms": 10 * HOUR_MS,
            "ends_at_ms": "36000000",
            "title": "Journeys 101",
        }) else {
            unreachable!("a literal object");
        };
        context
    }

    #[test]
    fn a_duration_counts_from_now() {
        let deadline = Deadline::from_config("timeout", Some("1d 12h"), None, None);
        assert_eq!(deadline, Ok(Deadline::After(36 * HOUR_MS)));
        assert_eq!(
            Deadline::After(HOUR_MS).at_ms(1_000, &Map::new()),
            Ok(HOUR_MS + 1_000)
        );
    }

    #[test]
    fn until_reads_the_context_and_applies_the_offset() {
        let deadline = Deadline::from_config("for", None, Some("starts_at_ms"), Some("-1h"))
            .expect("valid config");
        assert_eq!(deadline.at_ms(0, &context()), Ok(9 * HOUR_MS));
        let deadline =
            Deadline::from_config("for", None, Some("ends_at_ms"), None).expect("valid config");
        assert_eq!(deadline.at_ms(0, &context()), Ok(10 * HOUR_MS));
        let long_past = Deadline::At {
            key: "starts_at_ms".into(),
            offset_ms: -(20 * HOUR_MS as i64),
        };
        assert_eq!(long_past.at_ms(0, &context()), Ok(0));
    }

    #[test]
    fn a_context_field_without_a_time_is_named() {
        for key in ["title", "missing"] {
            let deadline = Deadline::At {
                key: key.into(),
                offset_ms: 0,
            };
            assert_eq!(
                deadline.at_ms(0, &context()),
                Err(Error::MissingTime {
                    field: "until".into(),
                    key: key.into(),
                })
            );
        }
    }

    #[test]
    fn bad_combinations_name_the_field() {
        let message = |result: Result<Deadline>| result.expect_err("refused").to_string();
        assert!(
            message(Deadline::from_config(
                "timeout",
                Some("1h"),
                Some("x"),
                None
            ))
            .contains("either `timeout` or `until`")
        );
        assert!(
            message(Deadline::from_config("for", None, None, None)).starts_with("config `for`")
        );
        assert!(
            message(Deadline::from_config(
                "timeout",
                Some("1h"),
                None,
                Some("1h")
            ))
            .starts_with("config `offset`")
        );
        assert!(
            message(Deadline::from_config(
                "timeout",
                None,
                Some("x"),
                Some("soon")
            ))
            .starts_with("config `offset`")
        );
        assert!(
            message(Deadline::from_config("timeout", Some("3 days"), None, None))
                .starts_with("config `timeout`")
        );
    }
}
