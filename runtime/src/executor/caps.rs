//! Frequency caps: at most N messages per channel per customer per period,
//! across every journey.
//!
//! The caps are a runtime setting (kept in the store). [`SendLedger`]
//! answers the host's `outbox.send` at the moment a plugin sends, by
//! reserving the send in the store
//! ([`Customers::reserve_send`](crate::store::Customers::reserve_send)), which
//! counts the committed sends inside the cap's period plus the
//! reservations of steps still running or committing in one step, so two
//! steps running at once cannot both take the last slot. A step gives its
//! reservations back once its commit is applied or discarded.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::host::{Admission, FrequencyCap as CapHit, HostFault, SendPolicy};
use crate::store::{SendReservation, Store};

/// Where the caps are kept in the store's runtime settings.
pub const CAPS_META: &str = "frequency_caps";

/// One cap: at most `limit` messages on `channel` per `period_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// The channel, e.g. `email`.
    pub channel: String,
    /// Messages allowed per period, at least 1.
    pub limit: u32,
    /// The period in milliseconds, at least one second.
    pub period_ms: u64,
    /// Only messages from these journeys count and are capped (e.g. the
    /// marketing ones, so service messages such as an enquiry's
    /// acknowledgement are never held back); empty: every journey.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journeys: Vec<String>,
}

impl FrequencyCap {
    /// Why the cap is not valid, if it is not.
    pub fn problem(&self) -> Option<String> {
        if !crate::journey::is_valid_name(&self.channel) {
            return Some(format!(
                "channel `{}` is not a valid name (use 1-64 of A-Z a-z 0-9 . _ -)",
                self.channel
            ));
        }
        if self.limit == 0 {
            return Some(format!(
                "channel `{}`: limit must be at least 1 (to stop a channel, use opt-outs)",
                self.channel
            ));
        }
        if let Some(journey) = self
            .journeys
            .iter()
            .find(|journey| !crate::journey::is_valid_name(journey))
        {
            return Some(format!(
                "channel `{}`: journey `{journey}` is not a valid name",
                self.channel
            ));
        }
        if self.period_ms < 1000 {
            return Some(format!(
                "channel `{}`: period_ms must be at least 1000",
                self.channel
            ));
        }
        None
    }
}

/// The runtime's caps and the sends counted against them.
pub struct SendLedger {
    store: Arc<dyn Store>,
    caps: RwLock<Arc<Vec<FrequencyCap>>>,
}

impl SendLedger {
    /// A ledger with the caps saved in `store` (none when never set).
    pub fn open(store: Arc<dyn Store>) -> crate::store::Result<Self> {
        let caps = saved_caps(&*store)?;
        Ok(SendLedger {
            store,
            caps: RwLock::new(Arc::new(caps)),
        })
    }

    /// Take the caps saved in the store again (another runtime set them).
    pub fn reload(&self) -> crate::store::Result<()> {
        let caps = saved_caps(&*self.store)?;
        *self.caps.write().expect("the caps lock is never poisoned") = Arc::new(caps);
        Ok(())
    }

    /// The caps in force.
    pub fn caps(&self) -> Arc<Vec<FrequencyCap>> {
        self.caps
            .read()
            .expect("the caps lock is never poisoned")
            .clone()
    }

    /// Replace the caps (already validated) and save them.
    pub fn set_caps(&self, caps: Vec<FrequencyCap>) -> crate::store::Result<()> {
        self.store.put_meta(
            CAPS_META,
            &serde_json::to_value(&caps).expect("caps are plain data"),
        )?;
        *self.caps.write().expect("the caps lock is never poisoned") = Arc::new(caps);
        Ok(())
    }

    /// Drop the reservation of a counted message once its step's commit
    /// is applied (the store counts it from then on) or discarded (failed,
    /// stale, or not written).
    pub fn release(&self, customer: &str, channel: &str, at_ms: u64) {
        if let Err(error) = self.store.release_send(customer, channel, at_ms) {
            // It holds a slot until the store answers again or restarts:
            // the cap errs on the side of sending less.
            tracing::error!(customer, channel, error = %crate::error_chain(&error), "a send reservation could not be released");
        }
    }
}

/// The caps saved in `store` (none when never set or unreadable).
fn saved_caps(store: &dyn Store) -> crate::store::Result<Vec<FrequencyCap>> {
    Ok(match store.meta(CAPS_META)? {
        Some(value) => serde_json::from_value(value).unwrap_or_else(|error| {
            tracing::error!(%error, "saved frequency caps are unreadable; running without caps");
            Vec::new()
        }),
        None => Vec::new(),
    })
}

impl SendPolicy for SendLedger {
    fn admit(
        &self,
        customer: &str,
        channel: &str,
        journey: &str,
        now_ms: u64,
    ) -> Result<Admission, HostFault> {
        let caps = self.caps();
        let Some(cap) = caps.iter().find(|cap| {
            cap.channel == channel
                && (cap.journeys.is_empty() || cap.journeys.iter().any(|name| name == journey))
        }) else {
            return Ok(Admission::Uncapped);
        };
        let since = now_ms.saturating_sub(cap.period_ms - 1);
        let reservation = self
            .store
            .reserve_send(customer, channel, now_ms, since, cap.limit)
            .map_err(|error| {
                HostFault(format!(
                    "the frequency cap on {channel} could not be checked: {}",
                    crate::error_chain(&error)
                ))
            })?;
        match reservation {
            SendReservation::Reserved => Ok(Admission::Counted),
            SendReservation::Full { sent } => {
                // A slot frees when the send `limit` places from the
                // newest leaves the period.
                let leaving = sent[sent.len().saturating_sub(cap.limit as usize)];
                Ok(Admission::Capped(CapHit {
                    channel: channel.to_owned(),
                    limit: cap.limit,
                    period_ms: cap.period_ms,
                    next_allowed_ms: leaving + cap.period_ms,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::{SledOptions, SledStore};

    fn ledger() -> (tempfile::TempDir, SendLedger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        let ledger = SendLedger::open(Arc::new(store)).expect("ledger");
        (dir, ledger)
    }

    #[test]
    fn a_cap_admits_its_limit_per_period_and_then_refuses() {
        let (_dir, ledger) = ledger();
        ledger
            .set_caps(vec![FrequencyCap {
                channel: "sms".into(),
                limit: 2,
                period_ms: 10_000,
                journeys: vec!["promo".into()],
            }])
            .expect("set caps");
        assert!(matches!(
            ledger
                .admit("c-1", "email", "promo", 0)
                .expect("the store answers"),
            Admission::Uncapped
        ));
        assert!(matches!(
            ledger
                .admit("c-1", "sms", "promo", 1_000)
                .expect("the store answers"),
            Admission::Counted
        ));
        assert!(matches!(
            ledger
                .admit("c-1", "sms", "promo", 2_000)
                .expect("the store answers"),
            Admission::Counted
        ));
        let Admission::Capped(hit) = ledger
            .admit("c-1", "sms", "promo", 3_000)
            .expect("the store answers")
        else {
            panic!("the third message in the period must be capped");
        };
        assert_eq!((hit.limit, hit.next_allowed_ms), (2, 11_000));
        assert!(matches!(
            ledger
                .admit("c-2", "sms", "promo", 3_000)
                .expect("the store answers"),
            Admission::Counted
        ));
        // Messages of journeys outside the cap's scope are not capped.
        assert!(matches!(
            ledger
                .admit("c-1", "sms", "enquiry", 3_000)
                .expect("the store answers"),
            Admission::Uncapped
        ));
        // A step that did not commit gives its slot back.
        ledger.release("c-1", "sms", 2_000);
        assert!(matches!(
            ledger
                .admit("c-1", "sms", "promo", 3_000)
                .expect("the store answers"),
            Admission::Counted
        ));
        // Once the period has passed the first send no longer counts.
        assert!(matches!(
            ledger
                .admit("c-1", "sms", "promo", 11_000)
                .expect("the store answers"),
            Admission::Counted
        ));
    }

    #[test]
    fn invalid_caps_are_named() {
        let cap = |channel: &str, limit, period_ms| FrequencyCap {
            channel: channel.into(),
            limit,
            period_ms,
            journeys: Vec::new(),
        };
        assert!(cap("email", 3, 86_400_000).problem().is_none());
        assert!(
            cap("e mail", 3, 86_400_000)
                .problem()
                .expect("a problem")
                .contains("`e mail`")
        );
        assert!(
            cap("email", 0, 86_400_000)
                .problem()
                .expect("a problem")
                .contains("limit")
        );
        assert!(
            cap("email", 3, 10)
                .problem()
                .expect("a problem")
                .contains("period_ms")
        );
    }
}
