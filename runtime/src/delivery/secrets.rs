//! Secrets: named by integrations, read where the operator keeps them,
//! filled into a provider request just before it is sent, and never
//! stored, logged or shown.
//!
//! An integration maps a secret name to a reference: `env:NAME` (an
//! environment variable of the `journeyd serve` process) or `file:PATH`
//! (a file's contents, without a trailing newline). Plugins name secrets
//! in what they render: `{{secret:NAME}}` is replaced by the value, and
//! `{{basic-auth:USER:PASSWORD}}` by the base64 of `user:password` for an
//! HTTP Basic `Authorization` header.

use std::collections::BTreeMap;

use base64::Engine as _;

/// Why a secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// A reference is neither `env:NAME` nor `file:PATH`.
    #[error("secret `{name}`: `{reference}` is not a reference (use env:NAME or file:PATH)")]
    BadReference {
        /// The secret's name.
        name: String,
        /// What was given.
        reference: String,
    },
    /// The environment variable is not set (or not UTF-8).
    #[error("secret `{name}`: environment variable `{variable}` is not set on the server")]
    MissingVariable {
        /// The secret's name.
        name: String,
        /// The variable.
        variable: String,
    },
    /// The file cannot be read.
    #[error("secret `{name}`: file `{path}` cannot be read: {reason}")]
    UnreadableFile {
        /// The secret's name.
        name: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The plugin named a secret the integration was not given.
    #[error("the request names secret `{0}`, which the integration was not given")]
    NotGranted(String),
    /// A placeholder is malformed.
    #[error("a malformed secret placeholder: `{0}`")]
    BadPlaceholder(String),
}

/// Where a secret's value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the server process.
    Env(String),
    /// A file on the server.
    File(String),
}

impl SecretRef {
    /// Parse `env:NAME` or `file:PATH` for secret `name`.
    pub fn parse(name: &str, reference: &str) -> Result<Self, SecretError> {
        let bad = || SecretError::BadReference {
            name: name.to_owned(),
            reference: reference.chars().take(200).collect(),
        };
        match reference.split_once(':') {
            Some(("env", variable)) if !variable.is_empty() => Ok(SecretRef::Env(variable.into())),
            Some(("file", path)) if !path.is_empty() => Ok(SecretRef::File(path.into())),
            _ => Err(bad()),
        }
    }

    /// The secret's value now.
    pub fn read(&self, name: &str) -> Result<String, SecretError> {
        match self {
            SecretRef::Env(variable) => {
                std::env::var(variable).map_err(|_| SecretError::MissingVariable {
                    name: name.to_owned(),
                    variable: variable.clone(),
                })
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|value| value.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|error| SecretError::UnreadableFile {
                    name: name.to_owned(),
                    path: path.clone(),
                    reason: error.to_string(),
                }),
        }
    }
}

/// The secrets of one integration, read for one request.
#[derive(Default)]
pub struct SecretValues {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValues")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretValues {
    /// Read every secret `references` names.
    pub fn read(references: &BTreeMap<String, String>) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (name, reference) in references {
            values.insert(name.clone(), SecretRef::parse(name, reference)?.read(name)?);
        }
        Ok(SecretValues { values })
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Result<&str, SecretError> {
        self.values
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| SecretError::NotGranted(name.to_owned()))
    }

    /// `text` with every placeholder replaced by its value.
    pub fn fill(&self, text: &str) -> Result<String, SecretError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let inner = &after[..end];
            if let Some(name) = inner.strip_prefix("secret:") {
                out.push_str(self.get(name)?);
            } else if let Some(pair) = inner.strip_prefix("basic-auth:") {
                let (user, password) = pair
                    .split_once(':')
                    .ok_or_else(|| SecretError::BadPlaceholder(format!("{{{{{inner}}}}}")))?;
                let credentials = format!("{}:{}", self.get(user)?, self.get(password)?);
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(credentials));
            } else {
                // Not a placeholder of ours (a template's braces): as is.
                out.push_str(&rest[start..start + 2 + end + 2]);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `text` with every secret value replaced by `[secret NAME]`, for
    /// errors and logs that might quote what was sent.
    pub fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_owned();
        for (name, value) in &self.values {
            if value.len() >= 4 {
                redacted = redacted.replace(value.as_str(), &format!("[secret {name}]"));
            }
        }
        redacted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> SecretValues {
        SecretValues {
            values: pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn placeholders_are_filled_and_only_granted_secrets_are_used() {
        let secrets = values(&[("api_key", "k-123"), ("sid", "AC1"), ("token", "t0k")]);
        assert_eq!(
            secrets.fill("Bearer {{secret:api_key}}").expect("fills"),
            "Bearer k-123"
        );
        assert_eq!(
            secrets
                .fill("Basic {{basic-auth:sid:token}}")
                .expect("fills"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("AC1:t0k")
            )
        );
        assert_eq!(
            secrets
                .fill("{{name}} stays, {{secret:sid}}")
                .expect("fills"),
            "{{name}} stays, AC1"
        );
        assert_eq!(
            secrets.fill("{{secret:other}}"),
            Err(SecretError::NotGranted("other".into()))
        );
        assert_eq!(
            secrets.redact("error: bad key k-123 for AC1"),
            "error: bad key [secret api_key] for AC1"
        );
    }

    #[test]
    fn references_name_a_variable_or_a_file() {
        assert_eq!(
            SecretRef::parse("k", "env:KEY"),
            Ok(SecretRef::Env("KEY".into()))
        );
        assert_eq!(
            SecretRef::parse("k", "file:/run/secrets/k"),
            Ok(SecretRef::File("/run/secrets/k".into()))
        );
        assert!(SecretRef::parse("k", "k-123").is_err());
        assert!(SecretRef::parse("k", "env:").is_err());
        let missing = SecretRef::Env("JOURNEYD_TEST_SURELY_UNSET".into()).read("k");
        assert!(matches!(missing, Err(SecretError::MissingVariable { .. })));
    }
}
