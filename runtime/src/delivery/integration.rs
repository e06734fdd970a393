//! Integrations: what an operator asks for (an [`IntegrationSpec`]), the
//! checks it must pass, and the integrations in force with their rate
//! limiters and concurrency permits ([`IntegrationSet`]).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::outbound::{Grants, OutboundError};
use super::secrets::{SecretError, SecretRef};
use crate::journey::PluginRef;
use crate::store::IntegrationRecord;

/// Requests in flight per integration unless set.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Attempts per message unless set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Age after which a message is dead unless set: within the 24 hours most
/// providers keep idempotency keys.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Request timeout unless set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An integration as an operator sets it (`PUT /v1/integrations/{channel}`,
/// `journeyd integration set`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    /// The channel plugin: `name`, `name@version` or `name:tag`.
    pub plugin: String,
    /// The plugin's config (a JSON object; `{}` when left out).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Hosts requests may go to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Secret name → `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The secret that verifies callbacks (Standard Webhooks).
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// Requests per second at most.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Requests in flight at most.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Attempts per message before it is dead.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Age (from queueing) after which a message is dead, ms.
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// Timeout of one request, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `false` disables it (its messages wait); `true` (the default)
    /// enables it, also after a provider's 410 disabled it.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Why an integration was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// A field is out of range or malformed.
    #[error("integration `{channel}`: `{field}` {reason}")]
    Invalid {
        /// The integration.
        channel: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A host grant is malformed.
    #[error("integration `{channel}`: {source}")]
    Grant {
        /// The integration.
        channel: String,
        /// What is wrong.
        #[source]
        source: OutboundError,
    },
    /// A secret is malformed or cannot be read.
    #[error("integration `{channel}`: {source}")]
    Secret {
        /// The integration.
        channel: String,
        /// What is wrong.
        #[source]
        source: SecretError,
    },
    /// No integration for this channel.
    #[error("no integration for channel `{0}`")]
    Unknown(String),
}

impl IntegrationSpec {
    /// The record to store, checked: every field in range, grants and
    /// secret references well formed and readable now. The plugin is
    /// checked by the caller, which knows the plugins.
    pub fn into_record(
        self,
        channel: &str,
        previous: Option<&IntegrationRecord>,
        now_ms: u64,
    ) -> Result<(IntegrationRecord, PluginRef), IntegrationError> {
        let invalid = |field, reason: String| IntegrationError::Invalid {
            channel: channel.to_owned(),
            field,
            reason,
        };
        let plugin = PluginRef::parse(&self.plugin).ok_or_else(|| {
            invalid(
                "plugin",
                format!(
                    "`{}` is not `name`, `name@version` or `name:tag`",
                    self.plugin
                ),
            )
        })?;
        let config = self.config.unwrap_or_else(|| serde_json::json!({}));
        if !config.is_object() {
            return Err(invalid("config", "must be a JSON object".into()));
        }
        if self.hosts.is_empty() {
            return Err(invalid(
                "hosts",
                "is empty: grant the provider's host (e.g. --host api.sendgrid.com)".into(),
            ));
        }
        Grants::parse(&self.hosts).map_err(|source| IntegrationError::Grant {
            channel: channel.to_owned(),
            source,
        })?;
        for (name, reference) in &self.secrets {
            if !crate::journey::is_valid_name(name) {
                return Err(invalid(
                    "secrets",
                    format!("`{name}` is not a name (1-64 of A-Z a-z 0-9 . _ -)"),
                ));
            }
            SecretRef::parse(name, reference)
                .and_then(|secret| secret.read(name))
                .map_err(|source| IntegrationError::Secret {
                    channel: channel.to_owned(),
                    source,
                })?;
        }
        if let Some(secret) = self
            .callback_secret
            .as_ref()
            .filter(|secret| !self.secrets.contains_key(*secret))
        {
            return Err(invalid(
                "callback_secret",
                format!("names `{secret}`, which is not one of its secrets"),
            ));
        }
        let in_range =
            |field, value: Option<u64>, default: u64, range: std::ops::RangeInclusive<u64>| {
                let value = value.unwrap_or(default);
                if range.contains(&value) {
                    Ok(value)
                } else {
                    Err(invalid(
                        field,
                        format!(
                            "is {value}; it must be {} to {}",
                            range.start(),
                            range.end()
                        ),
                    ))
                }
            };
        let rate_per_second = match self.rate_per_second {
            Some(rate) => {
                Some(in_range("rate_per_second", Some(rate.into()), 0, 1..=100_000)? as u32)
            }
            None => None,
        };
        let concurrency = in_range(
            "concurrency",
            self.concurrency.map(u64::from),
            DEFAULT_CONCURRENCY.into(),
            1..=1024,
        )? as u32;
        let max_attempts = in_range(
            "max_attempts",
            self.max_attempts.map(u64::from),
            DEFAULT_MAX_ATTEMPTS.into(),
            1..=100,
        )? as u32;
        let max_age_ms = in_range(
            "max_age_ms",
            self.max_age_ms,
            DEFAULT_MAX_AGE.as_millis() as u64,
            1_000..=7 * 24 * 3_600_000,
        )?;
        let timeout_ms = in_range(
            "timeout_ms",
            self.timeout_ms,
            DEFAULT_TIMEOUT.as_millis() as u64,
            100..=120_000,
        )?;
        let disabled = match self.enabled {
            Some(false) => Some("disabled by an operator".to_owned()),
            Some(true) => None,
            None => previous.and_then(|previous| previous.disabled.clone()),
        };
        Ok((
            IntegrationRecord {
                channel: channel.to_owned(),
                plugin: self.plugin,
                config,
                hosts: self.hosts,
                secrets: self.secrets,
                callback_secret: self.callback_secret,
                rate_per_second,
                concurrency,
                max_attempts,
                max_age_ms,
                timeout_ms,
                disabled,
                updated_at_ms: now_ms,
            },
            plugin,
        ))
    }
}

/// An integration in force.
pub struct ActiveIntegration {
    /// As stored.
    pub record: IntegrationRecord,
    /// Its plugin reference.
    pub plugin: PluginRef,
    /// The hosts it may reach.
    pub grants: Grants,
    /// Its rate limit, if it has one.
    limiter: Option<DefaultDirectRateLimiter>,
    /// Its concurrency cap.
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for ActiveIntegration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveIntegration")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl ActiveIntegration {
    /// An integration from its stored record (stored records were checked
    /// when set; one that no longer parses is skipped by the caller).
    pub fn new(record: IntegrationRecord) -> Result<Self, IntegrationError> {
        let plugin = PluginRef::parse(&record.plugin).ok_or_else(|| IntegrationError::Invalid {
            channel: record.channel.clone(),
            field: "plugin",
            reason: format!("`{}` does not parse", record.plugin),
        })?;
        let grants = Grants::parse(&record.hosts).map_err(|source| IntegrationError::Grant {
            channel: record.channel.clone(),
            source,
        })?;
        let limiter = record
            .rate_per_second
            .and_then(NonZeroU32::new)
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let permits = Arc::new(Semaphore::new(record.concurrency.max(1) as usize));
        Ok(ActiveIntegration {
            record,
            plugin,
            grants,
            limiter,
            permits,
        })
    }

    /// Wait for a slot under the integration's rate limit and concurrency
    /// cap; the slot is held until the permit is dropped.
    pub async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the permits of an integration are never closed");
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        permit
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.record.timeout_ms)
    }
}

/// The integrations in force, by channel.
#[derive(Default)]
pub struct IntegrationSet {
    active: RwLock<Arc<HashMap<String, Arc<ActiveIntegration>>>>,
}

impl IntegrationSet {
    /// The integration of `channel`.
    pub fn get(&self, channel: &str) -> Option<Arc<ActiveIntegration>> {
        self.snapshot().get(channel).cloned()
    }

    /// Whether any integration is set.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Every integration, by channel.
    pub fn records(&self) -> Vec<IntegrationRecord> {
        let mut records: Vec<IntegrationRecord> = self
            .snapshot()
            .values()
            .map(|active| active.record.clone())
            .collect();
        records.sort_by(|a, b| a.channel.cmp(&b.channel));
        records
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<ActiveIntegration>>> {
        self.active
            .read()
            .expect("the integrations lock is never poisoned")
            .clone()
    }

    /// Put `records` in force. An integration whose record did not change
    /// keeps its rate limiter and permits (and the requests holding them).
    pub fn replace_with(&self, records: Vec<IntegrationRecord>) {
        let current = self.snapshot();
        let mut next = HashMap::new();
        for record in records {
            let channel = record.channel.clone();
            let active = match current.get(&channel) {
                Some(active) if active.record == record => active.clone(),
                _ => match ActiveIntegration::new(record) {
                    Ok(active) => Arc::new(active),
                    Err(error) => {
                        tracing::error!(%error, "a stored integration is unusable; skipped");
                        continue;
                    }
                },
            };
            next.insert(channel, active);
        }
        *self
            .active
            .write()
            .expect("the integrations lock is never poisoned") = Arc::new(next);
    }

    /// Put one record in force (after it was stored).
    pub fn put(&self, record: IntegrationRecord) {
        let mut records: Vec<IntegrationRecord> = self
            .records()
            .into_iter()
            .filter(|existing| existing.channel != record.channel)
            .collect();
        records.push(record);
        self.replace_with(records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IntegrationSpec {
        IntegrationSpec {
            plugin: "sendgrid".into(),
            hosts: vec!["api.sendgrid.com".into()],
            ..IntegrationSpec::default()
        }
    }

    #[test]
    fn a_spec_gets_defaults_and_is_checked_field_by_field() {
        let (record, plugin) = spec().into_record("email", None, 5).expect("valid");
        assert_eq!(plugin.to_string(), "sendgrid");
        assert_eq!(record.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(record.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(record.config, serde_json::json!({}));
        assert_eq!(record.disabled, None);

        let refused = |spec: IntegrationSpec| {
            spec.into_record("email", None, 5)
                .expect_err("refused")
                .to_string()
        };
        assert!(
            refused(IntegrationSpec {
                hosts: vec![],
                ..spec()
            })
            .contains("`hosts` is empty")
        );
        assert!(
            refused(IntegrationSpec {
                plugin: "a@b".into(),
                ..spec()
            })
            .contains("`plugin`")
        );
        assert!(
            refused(IntegrationSpec {
                config: Some(serde_json::json!([1])),
                ..spec()
            })
            .contains("`config` must be a JSON object")
        );
        assert!(
            refused(IntegrationSpec {
                concurrency: Some(0),
                ..spec()
            })
            .contains("`concurrency` is 0")
        );
        assert!(
            refused(IntegrationSpec {
                hosts: vec!["no way".into()],
                ..spec()
            })
            .contains("host grant")
        );
        let secrets = BTreeMap::from([(
            "api_key".to_owned(),
            "env:JOURNEYD_TEST_SURELY_UNSET".to_owned(),
        )]);
        assert!(
            refused(IntegrationSpec { secrets, ..spec() })
                .contains("environment variable `JOURNEYD_TEST_SURELY_UNSET` is not set")
        );
        assert!(
            refused(IntegrationSpec {
                callback_secret: Some("hook".into()),
                ..spec()
            })
            .contains("`callback_secret` names `hook`")
        );
    }

    #[test]
    fn a_disabled_integration_stays_disabled_until_enabled() {
        let (mut record, _) = spec().into_record("email", None, 5).expect("valid");
        record.disabled = Some("the provider answered 410".into());
        let (kept, _) = spec()
            .into_record("email", Some(&record), 6)
            .expect("valid");
        assert_eq!(kept.disabled.as_deref(), Some("the provider answered 410"));
        let (enabled, _) = IntegrationSpec {
            enabled: Some(true),
            ..spec()
        }
        .into_record("email", Some(&record), 7)
        .expect("valid");
        assert_eq!(enabled.disabled, None);
    }
}
