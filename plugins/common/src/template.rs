//! `{placeholder}` rendering for message templates.
//!
//! Values come from layers of JSON objects, earlier layers first (for a
//! message: the current event's data, then the instance context, then the
//! customer profile). Strings are inserted as they are, numbers and
//! booleans as JSON writes them. A placeholder no layer has a string,
//! number or boolean for is left as written, so a template mistake shows
//! in the message instead of vanishing.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Placeholder values, looked up layer by layer.
#[derive(Debug, Default, Clone)]
pub struct Placeholders<'a> {
    layers: Vec<&'a Map<String, Value>>,
}

impl<'a> Placeholders<'a> {
    /// No values yet: every placeholder stays as written.
    pub fn new() -> Self {
        Placeholders::default()
    }

    /// Add a layer, consulted after the layers added before it.
    pub fn then(mut self, values: &'a Map<String, Value>) -> Self {
        self.layers.push(values);
        self
    }

    /// The text for placeholder `name`, from the first layer that has it.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.layers.iter().find_map(|layer| match layer.get(name)? {
            Value::String(text) => Some(Cow::Borrowed(text.as_str())),
            Value::Number(number) => Some(Cow::Owned(number.to_string())),
            Value::Bool(flag) => Some(Cow::Owned(flag.to_string())),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        })
    }

    /// `template` with every known `{name}` replaced. Names are letters,
    /// digits and `_`; anything else in braces is left alone.
    pub fn render(&self, template: &str) -> String {
        let mut rendered = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            rendered.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let name = &after[..close];
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                valid
                    .then(|| self.get(name))
                    .flatten()
                    .map(|value| (value, close))
            });
            match value {
                Some((value, close)) => {
                    rendered.push_str(&value);
                    rest = &after[close + 1..];
                }
                None => {
                    rendered.push('{');
                    rest = after;
                }
            }
        }
        rendered.push_str(rest);
        rendered
    }
}

/// The last layer of a message to a customer: `{name}` is "there" for a
/// customer whose profile has no name, as in "Hi there".
pub fn defaults() -> Map<String, Value> {
    Map::from_iter([("name".to_owned(), Value::from("there"))])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn earlier_layers_win() {
        let event = object(json!({ "title": "From the event" }));
        let context = object(json!({ "title": "From the context", "join_url": "https://x/j" }));
        let profile = object(json!({ "name": "Ada", "title": "Dr" }));
        let values = Placeholders::new()
            .then(&event)
            .then(&context)
            .then(&profile);
        assert_eq!(
            values.render("Hi {name}: {title} at {join_url}"),
            "Hi Ada: From the event at https://x/j"
        );
    }

    #[test]
    fn numbers_and_booleans_render_unknown_names_stay() {
        let values =
            object(json!({ "seats": 40, "vip": true, "nested": { "a": 1 }, "none": null }));
        let values = Placeholders::new().then(&values);
        assert_eq!(
            values.render("{seats} seats, vip {vip}, {nested} {none} {missing}"),
            "40 seats, vip true, {nested} {none} {missing}"
        );
    }

    #[test]
    fn a_customer_without_a_name_is_greeted_as_there() {
        let defaults = defaults();
        let named = object(json!({ "name": "Ada" }));
        let anonymous = Map::new();
        let greet = |profile| {
            Placeholders::new()
                .then(profile)
                .then(&defaults)
                .render("Hi {name}")
        };
        assert_eq!(greet(&named), "Hi Ada");
        assert_eq!(greet(&anonymous), "Hi there");
    }

    #[test]
    fn braces_that_are_not_placeholders_are_kept() {
        let values = object(json!({ "name": "Ada" }));
        let values = Placeholders::new().then(&values);
        assert_eq!(
            values.render("{{name}} {} {a b} {name"),
            "{Ada} {} {a b} {name"
        );
        assert_eq!(values.render("héllo {name}ü"), "héllo Adaü");
        assert_eq!(Placeholders::new().render("{name}"), "{name}");
    }
}
