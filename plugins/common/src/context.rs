//! The instance context: the data of the event that started an instance,
//! kept in state under `context`.
//!
//! A step after a wait sees the event that arrived, not the trigger, so the
//! trigger's data (a webinar's title and join URL, an enquiry's id and
//! text) would be lost without it. The first step that calls
//! [`ensure_context`] saves the current event's data, together with
//! `started_at_ms`, when that event was accepted; later calls return what
//! was saved and never overwrite it.

use journey_sdk::Context;
use serde_json::{Map, Value};

/// The state key holding the context object.
pub const CONTEXT: &str = "context";
/// The state key holding when the context's event was accepted, ms since
/// the Unix epoch.
pub const STARTED_AT: &str = "started_at_ms";

/// The saved context, saving the current event's data (and
/// `started_at_ms`) first when state has none.
pub fn ensure_context(ctx: &mut Context) -> journey_sdk::Result<Map<String, Value>> {
    if let Some(context) = saved_context(ctx)? {
        return Ok(context);
    }
    let context: Map<String, Value> = ctx.event_data()?;
    ctx.set(CONTEXT, &context)?;
    let accepted_at = ctx.event().received_at_ms;
    ctx.set(STARTED_AT, &accepted_at)?;
    Ok(context)
}

/// The saved context, if a step saved one.
pub fn saved_context(ctx: &mut Context) -> journey_sdk::Result<Option<Map<String, Value>>> {
    ctx.get(CONTEXT)
}

/// The text of a string or number field of a JSON object, e.g. an id that
/// senders write either way.
pub fn text_field(values: &Map<String, Value>, key: &str) -> Option<String> {
    match values.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_may_be_strings_or_numbers() {
        let Value::Object(values) = json!({ "a": "w-42", "b": 42, "c": [1], "d": null }) else {
            unreachable!("a literal object");
        };
        assert_eq!(text_field(&values, "a").as_deref(), Some("w-42"));
        assert_eq!(text_field(&values, "b").as_deref(), Some("42"));
        assert_eq!(text_field(&values, "c"), None);
        assert_eq!(text_field(&values, "d"), None);
        assert_eq!(text_field(&values, "e"), None);
    }
}
