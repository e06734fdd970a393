//! Customers: profiles and the frequency caps across journeys.

use super::*;

impl Runtime {
    /// Create or replace a customer's profile. A `time_zone` must be an
    /// IANA zone that exists.
    pub fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()> {
        check_id("customer id", id)?;
        if !profile.is_object() {
            return Err(Error::ProfileNotObject {
                customer: id.to_owned(),
            });
        }
        match profile.get("time_zone") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(zone)) => {
                crate::window::time_zone(zone).map_err(|error| Error::InvalidTimeZone {
                    customer: id.to_owned(),
                    reason: error.to_string(),
                })?;
            }
            Some(_) => {
                return Err(Error::InvalidTimeZone {
                    customer: id.to_owned(),
                    reason: "must be a string such as `Europe/Amsterdam`".into(),
                });
            }
        }
        Ok(self.store.put_customer(id, profile)?)
    }

    /// The frequency caps in force.
    pub fn frequency_caps(&self) -> Arc<Vec<FrequencyCap>> {
        self.sends.caps()
    }

    /// Replace the frequency caps; all are checked before any changes.
    pub fn set_frequency_caps(&self, caps: Vec<FrequencyCap>) -> Result<()> {
        if let Some(problem) = caps.iter().find_map(FrequencyCap::problem) {
            return Err(Error::InvalidCaps(problem));
        }
        let mut channels = HashSet::new();
        if let Some(twice) = caps.iter().find(|cap| !channels.insert(&cap.channel)) {
            return Err(Error::InvalidCaps(format!(
                "channel `{}` has two caps",
                twice.channel
            )));
        }
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        Ok(self.sends.set_caps(caps)?)
    }
}
