//! JSON as the runtime accepts it from outside (requests, plugins): where
//! the contract says "a JSON object", an object and nothing else, with no
//! key given twice at any depth, nested at most [`MAX_DEPTH`] deep, and no
//! number too large for a 64-bit float. One check, used by every boundary,
//! so that what passes here never fails later in a step.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// How deep objects and arrays may nest.
pub const MAX_DEPTH: usize = 64;

/// Why a JSON text was refused, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// `text` must be one JSON object (see the module docs).
pub fn check_object(text: &str) -> Result<(), JsonError> {
    check(text, true)
}

/// `text` must be one JSON value (see the module docs).
pub fn check_value(text: &str) -> Result<(), JsonError> {
    check(text, false)
}

fn check(text: &str, object_only: bool) -> Result<(), JsonError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Strict {
        depth: 0,
        object_only,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(|error| JsonError(describe(&error)))
}

/// serde_json's message, with its `recursion limit exceeded` said plainly.
fn describe(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("recursion limit exceeded") {
        format!("nested deeper than {MAX_DEPTH} levels")
    } else {
        message
    }
}

/// Walks a value without building it, refusing repeated keys and depth.
struct Strict {
    depth: usize,
    object_only: bool,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Strict {
    fn inner(&self) -> Strict {
        Strict {
            depth: self.depth + 1,
            object_only: false,
        }
    }

    fn scalar<E: serde::de::Error>(&self, what: &str) -> Result<(), E> {
        if self.object_only {
            Err(E::custom(format_args!(
                "expected a JSON object, found {what}"
            )))
        } else {
            Ok(())
        }
    }

    fn enter<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(format_args!(
                "nested deeper than {MAX_DEPTH} levels"
            )))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.object_only {
            "a JSON object"
        } else {
            "a JSON value"
        })
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar("a boolean")
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar("a number")
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        if !value.is_finite() {
            return Err(E::custom("a number is too large"));
        }
        self.scalar("a number")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar("a string")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar("null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.scalar::<A::Error>("an array")?;
        self.enter::<A::Error>()?;
        while items.next_element_seed(self.inner())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        self.enter::<A::Error>()?;
        // Objects on the step path are small: a list is cheaper than a set
        // until they are not. Keys are borrowed from the text unless they
        // have escapes.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = entries.next_key_seed(Key)? {
            let repeated = if many.is_empty() && few.len() < 16 {
                let repeated = few.contains(&key);
                few.push(key.clone());
                repeated
            } else {
                many.extend(few.drain(..));
                !many.insert(key.clone())
            };
            if repeated {
                return Err(serde::de::Error::custom(format_args!(
                    "key `{}` is given twice",
                    key.chars().take(64).collect::<String>()
                )));
            }
            entries.next_value_seed(self.inner())?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the text where it can be.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_is_an_object() {
        assert!(check_object(r#"{"a": {"b": [1, 2.5, null, "x"]}}"#).is_ok());
        for (text, mention) in [
            ("[1]", "expected a JSON object, found an array"),
            ("\"text\"", "found a string"),
            ("{nope", "key must be a string"),
            (r#"{"a": 1} {"b": 2}"#, "trailing characters"),
        ] {
            let error = check_object(text).expect_err(text).to_string();
            assert!(error.contains(mention), "{text}: {error}");
        }
        assert!(check_value("[1]").is_ok());
    }

    #[test]
    fn repeated_keys_deep_nesting_huge_numbers_and_lone_surrogates_are_refused() {
        let twice = check_object(r#"{"a": {"b": 1, "b": 2}}"#).expect_err("repeated");
        assert_eq!(
            twice.to_string(),
            "key `b` is given twice at line 1 column 18"
        );
        let many: Vec<String> = (0..30).map(|n| format!(r#""k{n}": {n}"#)).collect();
        assert!(check_object(&format!("{{{}}}", many.join(","))).is_ok());
        let again = format!(r#"{{{}, "k3": 0}}"#, many.join(","));
        let error = check_object(&again).expect_err("repeated").to_string();
        assert!(error.starts_with("key `k3` is given twice"), "{error}");
        let escaped = check_object(r#"{"a\u0062": 1, "ab": 2}"#).expect_err("the same key");
        assert!(
            escaped.to_string().starts_with("key `ab` is given twice"),
            "{escaped}"
        );
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let error = check_value(&deep).expect_err("deep").to_string();
        assert!(error.contains("nested deeper than 64 levels"), "{error}");
        let very_deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(check_value(&very_deep).is_err());
        let huge = check_object(r#"{"n": 1e400}"#)
            .expect_err("huge")
            .to_string();
        assert!(huge.contains("number out of range"), "{huge}");
        let surrogate = check_object(r#"{"s": "\ud800"}"#)
            .expect_err("surrogate")
            .to_string();
        assert!(surrogate.contains("escape"), "{surrogate}");
    }
}
