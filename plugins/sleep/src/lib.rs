//! Journey step `sleep`: sleep until a time, optionally waking only inside
//! a window of the customer's local day.
//!
//! ```toml
//! [steps.config]
//! for = "12h"                     # a duration from now: 3d, 12h, 30m, 45s, 1d 12h
//! # or a time in the instance context, optionally moved:
//! # until = "starts_at_ms"
//! # offset = "-1h"                # may start with `-`
//! window = "09:00-20:00"          # optional; the customer's time zone,
//!                                 # or e.g. "09:00-20:00 Europe/Amsterdam"
//! ```
//!
//! Transition: `woke`. The host moves a wake-up that falls outside the
//! window to the window's next opening; a time already past wakes at once.
//! On its first run in an instance the step saves the current event's data
//! as the instance `context`, so `until` can name a field of the
//! trigger's data.

use journey_plugin_common::context::ensure_context;
use journey_plugin_common::deadline::Deadline;
use journey_sdk::{Context, Outcome, Step, Window, export_step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default, rename = "for")]
    duration: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    offset: Option<String>,
    #[serde(default)]
    window: Option<String>,
}

/// The sending window in config field `window`, if any.
fn window(text: Option<&str>) -> journey_sdk::Result<Option<Window>> {
    text.map(|text| {
        Window::parse(text)
            .map_err(|error| journey_sdk::Error::Failed(format!("config `window`: {error}")))
    })
    .transpose()
}

struct Sleep;

impl Step for Sleep {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let deadline = Deadline::from_config(
            "for",
            config.duration.as_deref(),
            config.until.as_deref(),
            config.offset.as_deref(),
        )?;
        let window = window(config.window.as_deref())?;
        let context = ensure_context(ctx)?;
        let until_ms = deadline.at_ms(ctx.now_ms(), &context)?;
        let outcome = Outcome::sleep_until(until_ms, "woke");
        Ok(match window {
            Some(window) => outcome.within(window),
            None => outcome,
        })
    }
}

export_step!(Sleep);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_is_the_duration_field() {
        let config: Config =
            serde_json::from_str(r#"{"for": "12h", "window": "09:00-20:00"}"#).expect("parses");
        assert_eq!(config.duration.as_deref(), Some("12h"));
        let deadline = Deadline::from_config("for", config.duration.as_deref(), None, None);
        assert_eq!(deadline, Ok(Deadline::After(12 * 3_600_000)));
    }

    #[test]
    fn a_window_may_name_a_time_zone() {
        assert_eq!(window(None).expect("no window"), None);
        let parsed = window(Some("08:00-21:00 Europe/Amsterdam")).expect("valid window");
        assert_eq!(
            parsed,
            Some(Window {
                from_minute: 480,
                to_minute: 1260,
                time_zone: "Europe/Amsterdam".into(),
            })
        );
    }

    #[test]
    fn a_bad_window_names_the_field() {
        let error = window(Some("9-20")).expect_err("not HH:MM");
        assert!(
            error.to_string().starts_with("config `window`: "),
            "{error}"
        );
    }
}
