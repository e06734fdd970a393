//! Forgetting a customer: their unfinished instances are cancelled or run
//! on anonymised (as the operator chooses), every finished one is purged
//! (its funnel counts stay), and then what is kept about them goes:
//! profile, interactions, channel choices, engagement, counted sends and
//! events. An audit entry records the request and the counts, never the
//! customer.
//!
//! Personal data, for scrubbing, is the customer's id and the strings of
//! their profile (see [`personal_values`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Error, Result, Runtime, check_id};
use crate::store::{
    Applied, AuditEntry, ForgottenRecords, HistoryEntry, InstanceCommit, InstanceId, Purge, Scrub,
};

/// Tries to anonymise an instance whose steps keep committing first.
const ANONYMISE_ATTEMPTS: usize = 20;
/// What the history and the audit log say forgetting was for.
const REASON: &str = "customer forgotten";

/// What becomes of a forgotten customer's unfinished instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgetInstances {
    /// They end as cancelled and are purged with the rest.
    #[default]
    Cancel,
    /// They run on under a pseudonym, their records scrubbed; messages
    /// not yet sent are dropped.
    Anonymise,
}

/// What forgetting a customer did.
#[derive(Debug, Clone, Serialize)]
pub struct Forgotten {
    /// The request, as the audit log records it.
    pub request_id: String,
    /// What became of unfinished instances.
    pub instances: ForgetInstances,
    /// Instances cancelled.
    pub cancelled: usize,
    /// Instances anonymised.
    pub anonymised: usize,
    /// Instances purged (their funnel counts are kept).
    pub purged: usize,
    /// The rest of what was removed.
    #[serde(flatten)]
    pub records: ForgottenRecords,
    /// The audit entry's place in the log.
    pub audit_seq: u64,
}

/// The personal values of a profile: its strings, except single
/// lowercase words (`email`, `gold`), which are settings, not data about a
/// person, and which the instance's own logic may read.
pub fn personal_values(profile: &serde_json::Value) -> Vec<String> {
    Scrub::strings_in(profile)
        .into_iter()
        .filter(|value| {
            !value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '-')
        })
        .collect()
}

impl Runtime {
    /// Forget `customer`. `request_id` and `token` go into the audit entry.
    pub async fn forget_customer(
        self: &Arc<Self>,
        customer: &str,
        mode: ForgetInstances,
        request_id: &str,
        token: Option<&str>,
    ) -> Result<Forgotten> {
        check_id("customer id", customer)?;
        let who = customer.to_owned();
        let (events, profile) = self
            .with_store(move |store| {
                let events = store.customer_events(&who)?;
                let view = store.customer_view(&who, 0, &[])?;
                Ok((events, view.profile))
            })
            .await?;
        let profile: serde_json::Value =
            serde_json::from_str(profile.get()).map_err(crate::store::Error::Encode)?;
        let pseudonym = format!("anon-{:016x}", rand::random::<u64>());
        let scrub = Arc::new(Scrub::new(customer, &pseudonym, personal_values(&profile)));
        let mut forgotten = Forgotten {
            request_id: request_id.to_owned(),
            instances: mode,
            cancelled: 0,
            anonymised: 0,
            purged: 0,
            records: ForgottenRecords::default(),
            audit_seq: 0,
        };
        let started: Vec<InstanceId> = events
            .iter()
            .flat_map(|event| event.started.iter().copied())
            .collect();
        for id in started {
            let Some(instance) = self.with_store(move |store| store.instance(id)).await? else {
                continue;
            };
            if instance.status.is_finished() {
                continue;
            }
            match mode {
                ForgetInstances::Cancel => {
                    match self
                        .act_on_instance(id, &super::Action::Cancel, REASON)
                        .await
                    {
                        Ok(_) => forgotten.cancelled += 1,
                        // It finished meanwhile: purged below.
                        Err(Error::InvalidAction { .. }) => {}
                        Err(error) => return Err(error),
                    }
                }
                ForgetInstances::Anonymise => {
                    if self.anonymise(id, &scrub).await? {
                        forgotten.anonymised += 1;
                    }
                }
            }
        }
        // Every instance still theirs is finished now, or anonymised (and
        // so no longer theirs): purge the finished.
        let who = customer.to_owned();
        let (purged, records) = self
            .with_store(move |store| {
                let mut purges = Vec::new();
                let events = store.customer_events(&who)?;
                let event_count = events.len();
                for event in events {
                    for id in event.started {
                        if let Some(instance) = store.instance(id)?
                            && instance.customer_id == who
                            && instance.status.is_finished()
                        {
                            purges.push(Purge {
                                instance: id,
                                finished_at_ms: instance.updated_at_ms,
                            });
                        }
                    }
                }
                let purged = store.purge(&purges)?;
                let mut records = store.forget_customer(&who)?;
                // A purge removes the events of the instances it removes.
                records.events = event_count.saturating_sub(records.events_kept);
                Ok((purged, records))
            })
            .await?;
        forgotten.purged = purged;
        forgotten.records = records;
        let entry = AuditEntry {
            seq: 0,
            at_ms: self.clock.now_ms(),
            action: "customer.forget".into(),
            request_id: request_id.to_owned(),
            token: token.map(str::to_owned),
            details: serde_json::json!({
                "instances": mode,
                "cancelled": forgotten.cancelled,
                "anonymised": forgotten.anonymised,
                "purged": forgotten.purged,
                "records": records,
            }),
        };
        let entry = self
            .with_store(move |store| store.append_audit(entry))
            .await?;
        forgotten.audit_seq = entry.seq;
        tracing::info!(
            request_id,
            audit_seq = entry.seq,
            cancelled = forgotten.cancelled,
            anonymised = forgotten.anonymised,
            purged = forgotten.purged,
            "customer forgotten"
        );
        Ok(forgotten)
    }

    /// Anonymise unfinished instance `id`; false when it finished first.
    async fn anonymise(self: &Arc<Self>, id: InstanceId, scrub: &Arc<Scrub>) -> Result<bool> {
        for _ in 0..ANONYMISE_ATTEMPTS {
            let Some(instance) = self.with_store(move |store| store.instance(id)).await? else {
                return Ok(false);
            };
            if instance.status.is_finished() || instance.customer_id != scrub.customer {
                return Ok(false);
            }
            let now = self.clock.now_ms();
            let next = instance
                .anonymised(scrub, now)
                .map_err(crate::store::Error::Encode)?;
            let entry = HistoryEntry::Anonymised {
                at_ms: now,
                reason: REASON.into(),
            };
            let mut commit = InstanceCommit::leaving(next.clone(), entry, &instance);
            commit.scrub = Some(scrub.clone());
            if self.committer.submit(commit).await? == Applied::Done {
                self.after_action(next, &instance).await?;
                return Ok(true);
            }
            tokio::task::yield_now().await;
        }
        Err(Error::InvalidAction {
            instance: id,
            reason: "it kept moving on; try again".into(),
        })
    }

    /// Audit entries after `after`, oldest first, at most `limit`.
    pub async fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.with_store(move |store| store.audit_log(after, limit))
            .await
    }
}
