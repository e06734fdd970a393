//! Scrubbing a forgotten customer out of the records an anonymised
//! instance keeps: their id becomes a pseudonym, and every other personal
//! value they gave (profile and event strings) becomes [`FORGOTTEN`].

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a personal value is replaced with.
pub const FORGOTTEN: &str = "[forgotten]";

/// Personal values shorter than this are left alone ("en", "FR").
pub const MIN_PERSONAL_LEN: usize = 3;

/// Personal values shorter than this are replaced only as whole words, so
/// a name like "Ada" leaves "Adam" and "readable" alone.
const WHOLE_WORD_BELOW: usize = 6;

/// Fields that name parts of the runtime (steps, plugins, event types,
/// ids), never a customer's data: scrubbing them could break an instance.
const STRUCTURAL_FIELDS: &[&str] = &[
    "id",
    "type",
    "journey",
    "trigger_event_id",
    "last_event_id",
    "event_id",
    "instance_id",
    "status",
    "current_step",
    "terminal",
    "step",
    "from_step",
    "to_step",
    "target",
    "transition",
    "plugin",
    "digest",
    "kind",
    "event",
    "on_event",
    "variant",
    "channel",
    "integration",
    "provider_id",
    "tag",
];

/// How to scrub one customer out of records.
#[derive(Debug, Clone)]
pub struct Scrub {
    /// The customer forgotten.
    pub customer: String,
    /// Their records' customer from now on.
    pub pseudonym: String,
    matcher: AhoCorasick,
    /// What each pattern of `matcher` is replaced with.
    replacements: Vec<String>,
}

impl Scrub {
    /// Scrub `customer` (replaced by `pseudonym`) and the personal values
    /// `personal` (those shorter than [`MIN_PERSONAL_LEN`] are ignored;
    /// short ones are replaced as whole words only).
    pub fn new(
        customer: &str,
        pseudonym: &str,
        personal: impl IntoIterator<Item = String>,
    ) -> Scrub {
        let mut patterns = vec![customer.to_owned()];
        let mut replacements = vec![pseudonym.to_owned()];
        for value in personal {
            let value = value.trim().to_owned();
            if value.chars().count() >= MIN_PERSONAL_LEN && !patterns.contains(&value) {
                patterns.push(value);
                replacements.push(FORGOTTEN.to_owned());
            }
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("literal patterns of bounded size always build");
        Scrub {
            customer: customer.to_owned(),
            pseudonym: pseudonym.to_owned(),
            matcher,
            replacements,
        }
    }

    /// `text` with every personal value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut scrubbed = String::with_capacity(text.len());
        let mut copied = 0;
        for found in self.matcher.find_iter(text) {
            let pattern = found.pattern().as_usize();
            if !self.stands_alone(text, found.start(), found.end()) {
                continue;
            }
            scrubbed.push_str(&text[copied..found.start()]);
            scrubbed.push_str(&self.replacements[pattern]);
            copied = found.end();
        }
        scrubbed.push_str(&text[copied..]);
        scrubbed
    }

    /// Whether the match at `start..end` of `text` counts: long values
    /// anywhere, short ones only as whole words.
    fn stands_alone(&self, text: &str, start: usize, end: usize) -> bool {
        if text[start..end].chars().count() >= WHOLE_WORD_BELOW {
            return true;
        }
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    }

    /// Scrub every string in `value` but those of structural fields.
    pub fn value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) if self.matcher.is_match(text.as_str()) => {
                *text = self.text(text);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.value(item)),
            serde_json::Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    if !STRUCTURAL_FIELDS.contains(&name.as_str()) {
                        self.value(field);
                    }
                }
            }
            _ => {}
        }
    }

    /// A scrubbed copy of `record`.
    pub fn record<T: Serialize + DeserializeOwned>(&self, record: &T) -> serde_json::Result<T> {
        let mut value = serde_json::to_value(record)?;
        self.value(&mut value);
        serde_json::from_value(value)
    }

    /// The strings long enough to be personal (at least
    /// [`MIN_PERSONAL_LEN`] characters) in a profile or event data.
    pub fn strings_in(value: &serde_json::Value) -> Vec<String> {
        let mut found = Vec::new();
        collect_strings(value, &mut found);
        found
    }
}

fn collect_strings(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if text.trim().chars().count() >= MIN_PERSONAL_LEN => {
            found.push(text.trim().to_owned())
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| collect_strings(item, found))
        }
        serde_json::Value::Object(fields) => fields
            .values()
            .for_each(|field| collect_strings(field, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scrub() -> Scrub {
        let profile = json!({"name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"});
        Scrub::new("c-ada", "anon-1", Scrub::strings_in(&profile))
    }

    #[test]
    fn personal_values_and_the_id_are_replaced_inside_text() {
        let scrub = scrub();
        assert_eq!(
            scrub.text("Dear Ada Lovelace (c-ada), write to ada@example.com; tier gold"),
            "Dear [forgotten] (anon-1), write to [forgotten]; tier [forgotten]"
        );
        let short = Scrub::new("c-ada", "anon-1", ["Ada".to_owned()]);
        assert_eq!(
            short.text("Ada, Adam and readable; ADA"),
            "[forgotten], Adam and readable; ADA"
        );
    }

    #[test]
    fn structural_fields_and_short_values_are_kept() {
        let scrub = scrub();
        let mut value = json!({
            "step": "ada@example.com",
            "customer_id": "c-ada",
            "state": {"to": ["ada@example.com"], "tier": "gold", "n": 3, "x": "en"},
        });
        scrub.value(&mut value);
        assert_eq!(
            value,
            json!({
                "step": "ada@example.com",
                "customer_id": "anon-1",
                "state": {"to": ["[forgotten]"], "tier": "[forgotten]", "n": 3, "x": "en"},
            })
        );
    }
}
