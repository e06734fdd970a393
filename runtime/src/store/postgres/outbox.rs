//! The outbox on PostgreSQL: messages in queue order (instance, seq, idx),
//! each row carrying its delivery, and the index of provider ids.
//!
//! Several nodes share the table. A claim locks the due rows it takes with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimants pass each other by
//! and each message goes to one of them; marks, reports and replays lock
//! the rows they change (`FOR UPDATE`), so each reads what the last wrote.
//! Every change is one transaction, durable when it commits.
//!
//! The columns `status`, `due_ms` and `integration` repeat the delivery's
//! (`due_ms` only while the message may be claimed), so claims and listings
//! find rows without reading the delivery; every write keeps them in step.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use super::{Cached, PostgresStore, int8, record, records, stored, uint8};
use crate::store::{
    AttemptOutcome, ClaimedMessage, Delivery, DeliveryFilter, DeliveryPage, InstanceId, Mark,
    Marked, MessageRef, Outbox, OutboxMessage, Result, StatusReport,
};

/// Claim the due messages, earliest due first, passing over those another
/// claimant holds, each with a fresh claim number from the shared
/// sequence.
const CLAIM_DUE: &str = "SELECT id, record, delivery, nextval('ids') AS claim FROM outbox
     WHERE due_ms <= $1
     ORDER BY due_ms, instance, seq, idx
     LIMIT $2
     FOR UPDATE SKIP LOCKED";

/// Lock messages by id, in id order (so two markers never deadlock).
const LOCK_BY_IDS: &str =
    "SELECT id, delivery FROM outbox WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Lock one message by id.
const LOCK_BY_ID: &str = "SELECT id, record, delivery FROM outbox WHERE id = $1 FOR UPDATE";

/// Lock the message an integration's provider id names.
const LOCK_BY_PROVIDER_ID: &str = "SELECT outbox.id, outbox.record, outbox.delivery
     FROM provider_ids JOIN outbox ON outbox.id = provider_ids.message
     WHERE provider_ids.integration = $1 AND provider_ids.provider_id = $2
     FOR UPDATE OF outbox";

/// Write deliveries (and the columns that repeat them) over their rows,
/// one array element per message.
const WRITE_DELIVERIES: &str = "UPDATE outbox SET
         status = next.status,
         due_ms = next.due_ms,
         integration = next.integration,
         delivery = next.delivery
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::json[])
         AS next (id, status, due_ms, integration, delivery)
     WHERE outbox.id = next.id";

/// Index messages by the ids their providers gave them (a later message
/// under the same provider id takes it over).
const INDEX_PROVIDER_IDS: &str = "INSERT INTO provider_ids (integration, provider_id, message)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
     ON CONFLICT (integration, provider_id) DO UPDATE SET message = excluded.message";

/// A message's place in queue order.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// Its instance.
    instance: i64,
    /// The history slot of the step that queued it.
    seq: i32,
    /// Its index among the step's messages.
    idx: i32,
}

impl Place {
    /// Before every message.
    const FIRST: Place = Place {
        instance: i64::MIN,
        seq: i32::MIN,
        idx: i32::MIN,
    };

    /// The place of the message in `row` (columns `instance`, `seq`, `idx`).
    fn of(row: &Row) -> Result<Place> {
        Ok(Place {
            instance: row.try_get("instance")?,
            seq: row.try_get("seq")?,
            idx: row.try_get("idx")?,
        })
    }
}

/// When a dispatcher may claim a message with `delivery` next, as the
/// `due_ms` column keeps it: its due time while it is pending (queued,
/// retrying, or sending until its lease ends), never (`NULL`) otherwise.
fn claimable_at(delivery: &Delivery) -> Option<i64> {
    delivery
        .due_ms
        .filter(|_| delivery.status.is_pending())
        .map(int8)
}

/// Write each `(id, delivery)` over its row, in one statement.
async fn write_deliveries(
    transaction: &Transaction<'_>,
    deliveries: &[(&str, &Delivery)],
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deliveries.iter().map(|(id, _)| *id).collect();
    let statuses: Vec<&str> = deliveries
        .iter()
        .map(|(_, delivery)| delivery.status.as_str())
        .collect();
    let due: Vec<Option<i64>> = deliveries
        .iter()
        .map(|(_, delivery)| claimable_at(delivery))
        .collect();
    let integrations: Vec<Option<&str>> = deliveries
        .iter()
        .map(|(_, delivery)| delivery.integration.as_deref())
        .collect();
    let records: Vec<Json<&Delivery>> = deliveries
        .iter()
        .map(|(_, delivery)| stored(*delivery))
        .collect();
    let statement = transaction.prepare_cached(WRITE_DELIVERIES).await?;
    transaction
        .execute(
            &statement,
            &[&ids, &statuses, &due, &integrations, &records],
        )
        .await?;
    Ok(())
}

/// The message and delivery of a row (columns `record`, `delivery`).
fn message_of(row: &Row) -> Result<(OutboxMessage, Delivery)> {
    Ok((record(row, "record")?, record(row, "delivery")?))
}

/// The id and place of the message in `row` (columns `id`, `instance`,
/// `seq`, `idx`).
fn named_place(row: &Row) -> Result<(String, Place)> {
    Ok((row.try_get("id")?, Place::of(row)?))
}

/// The place in queue order of message `id`, if there is one.
async fn place_of(client: &Client, id: &str) -> Result<Option<Place>> {
    client
        .opt(
            "SELECT instance, seq, idx FROM outbox WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|row| Place::of(&row))
        .transpose()
}

/// Whether any message comes after `place` in queue order.
async fn any_after(client: &Client, place: Place) -> Result<bool> {
    let row = client
        .one(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE (instance, seq, idx) > ($1, $2, $3))",
            &[&place.instance, &place.seq, &place.idx],
        )
        .await?;
    Ok(row.try_get(0)?)
}

impl Outbox for PostgresStore {
    fn outbox(&self, instance: Option<InstanceId>, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.block(async {
            let client = self.pool.get().await?;
            let limit = int8(limit as u64);
            let rows = match instance {
                Some(instance) => {
                    client
                        .rows(
                            "SELECT record FROM outbox WHERE instance = $1
                             ORDER BY seq, idx LIMIT $2",
                            &[&int8(instance.0), &limit],
                        )
                        .await?
                }
                None => {
                    client
                        .rows(
                            "SELECT record FROM outbox ORDER BY instance, seq, idx LIMIT $1",
                            &[&limit],
                        )
                        .await?
                }
            };
            records(&rows, "record")
        })
    }

    fn claim_outbox(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let lease_until = now_ms.saturating_add(lease_ms);
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let statement = transaction.prepare_cached(CLAIM_DUE).await?;
            let rows = transaction
                .query(&statement, &[&int8(now_ms), &int8(limit as u64)])
                .await?;
            if rows.is_empty() {
                transaction.commit().await?;
                return Ok(Vec::new());
            }
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                let (message, delivery) = message_of(row)?;
                let claim = uint8(row.try_get("claim")?);
                claimed.push(ClaimedMessage {
                    delivery: delivery.claimed(claim, now_ms, lease_until),
                    message,
                    claim,
                });
            }
            let writes: Vec<(&str, &Delivery)> = claimed
                .iter()
                .map(|claimed| (claimed.message.id.as_str(), &claimed.delivery))
                .collect();
            write_deliveries(&transaction, &writes).await?;
            transaction.commit().await?;
            Ok(claimed)
        })
    }

    fn mark_outbox_many(&self, marks: &[Mark]) -> Result<Vec<Marked>> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let ids: Vec<&str> = marks.iter().map(|mark| mark.id.as_str()).collect();
            let statement = transaction.prepare_cached(LOCK_BY_IDS).await?;
            let rows = transaction.query(&statement, &[&ids]).await?;
            // Each message's delivery: as stored, then as this batch
            // leaves it (a later mark of the same message reads that).
            let mut deliveries: HashMap<String, Delivery> = HashMap::with_capacity(rows.len());
            for row in &rows {
                deliveries.insert(row.try_get("id")?, record(row, "delivery")?);
            }
            let mut changed: HashSet<&str> = HashSet::new();
            // Provider ids to index, by (integration, provider id): the
            // last message named under one wins.
            let mut provider_ids: HashMap<(&str, &str), &str> = HashMap::new();
            let mut results = Vec::with_capacity(marks.len());
            for mark in marks {
                let Some(delivery) = deliveries.get_mut(&mark.id) else {
                    results.push(Marked::Unknown);
                    continue;
                };
                if !delivery.status.is_pending() {
                    // Accepted, reported on or dead already: a late or
                    // repeated mark changes nothing.
                    results.push(Marked::Recorded(delivery.clone()));
                    continue;
                }
                let accepted = matches!(mark.attempt.outcome, AttemptOutcome::Accepted { .. });
                if delivery.claim != Some(mark.claim) && !accepted {
                    results.push(Marked::ClaimLost);
                    continue;
                }
                *delivery = delivery.after(&mark.attempt);
                if let AttemptOutcome::Accepted {
                    provider_id: Some(provider_id),
                } = &mark.attempt.outcome
                {
                    provider_ids.insert(
                        (mark.attempt.integration.as_str(), provider_id.as_str()),
                        mark.id.as_str(),
                    );
                }
                changed.insert(mark.id.as_str());
                results.push(Marked::Recorded(delivery.clone()));
            }
            if !changed.is_empty() {
                let writes: Vec<(&str, &Delivery)> = changed
                    .iter()
                    .filter_map(|id| deliveries.get(*id).map(|delivery| (*id, delivery)))
                    .collect();
                write_deliveries(&transaction, &writes).await?;
            }
            if !provider_ids.is_empty() {
                let (mut integrations, mut names, mut messages) =
                    (Vec::new(), Vec::new(), Vec::new());
                for ((integration, provider_id), message) in provider_ids {
                    integrations.push(integration);
                    names.push(provider_id);
                    messages.push(message);
                }
                let statement = transaction.prepare_cached(INDEX_PROVIDER_IDS).await?;
                transaction
                    .execute(&statement, &[&integrations, &names, &messages])
                    .await?;
            }
            transaction.commit().await?;
            Ok(results)
        })
    }

    fn report_delivery(
        &self,
        message: MessageRef<'_>,
        report: &StatusReport,
    ) -> Result<Option<(OutboxMessage, Delivery, bool)>> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let row = match message {
                MessageRef::Id(id) => transaction.opt(LOCK_BY_ID, &[&id]).await?,
                MessageRef::Provider {
                    integration,
                    provider_id,
                } => {
                    transaction
                        .opt(LOCK_BY_PROVIDER_ID, &[&integration, &provider_id])
                        .await?
                }
            };
            let Some(row) = row else {
                transaction.commit().await?;
                return Ok(None);
            };
            let id: String = row.try_get("id")?;
            let (message, delivery) = message_of(&row)?;
            let outcome = match delivery.reported(report) {
                Some(next) => {
                    write_deliveries(&transaction, &[(id.as_str(), &next)]).await?;
                    (message, next, true)
                }
                None => (message, delivery, false),
            };
            transaction.commit().await?;
            Ok(Some(outcome))
        })
    }

    fn replay_message(&self, id: &str, now_ms: u64) -> Result<Option<Delivery>> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let Some(row) = transaction.opt(LOCK_BY_ID, &[&id]).await? else {
                transaction.commit().await?;
                return Ok(None);
            };
            let delivery: Delivery = record(&row, "delivery")?;
            let now = if delivery.status.is_undelivered() {
                let next = delivery.replayed(now_ms);
                write_deliveries(&transaction, &[(id, &next)]).await?;
                next
            } else {
                delivery
            };
            transaction.commit().await?;
            Ok(Some(now))
        })
    }

    fn message(&self, id: &str) -> Result<Option<(OutboxMessage, Delivery)>> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .opt("SELECT record, delivery FROM outbox WHERE id = $1", &[&id])
                .await?
                .map(|row| message_of(&row))
                .transpose()
        })
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage> {
        if filter.limit == 0 {
            return Ok(DeliveryPage::default());
        }
        self.block(async {
            let client = self.pool.get().await?;
            let start = match &filter.after {
                Some(after) => match place_of(&client, after).await? {
                    Some(place) => place,
                    None => return Ok(DeliveryPage::default()),
                },
                None => Place::FIRST,
            };
            let budget = int8(filter.budget as u64);
            let limit = int8(filter.limit as u64);
            let statuses: Vec<&str> = filter
                .statuses
                .iter()
                .map(|status| status.as_str())
                .collect();
            let mut params: Vec<&(dyn ToSql + Sync)> =
                vec![&start.instance, &start.seq, &start.idx, &limit];
            // The messages looked at: all after the start, or, within a
            // budget, only the first `budget` of them.
            let looked_at = if filter.budget > 0 {
                params.push(&budget);
                format!(
                    "(SELECT * FROM outbox WHERE (instance, seq, idx) > ($1, $2, $3)
                      ORDER BY instance, seq, idx LIMIT ${}) AS looked_at",
                    params.len()
                )
            } else {
                "outbox".to_owned()
            };
            let mut conditions = vec!["(instance, seq, idx) > ($1, $2, $3)".to_owned()];
            if !statuses.is_empty() {
                params.push(&statuses);
                conditions.push(format!("status = ANY(${})", params.len()));
            }
            if let Some(channel) = &filter.channel {
                params.push(channel);
                conditions.push(format!("channel = ${}", params.len()));
            }
            if let Some(integration) = &filter.integration {
                params.push(integration);
                conditions.push(format!("integration = ${}", params.len()));
            }
            let rows = client
                .rows(
                    &format!(
                        "SELECT id, instance, seq, idx, record, delivery FROM {looked_at}
                         WHERE {}
                         ORDER BY instance, seq, idx LIMIT $4",
                        conditions.join(" AND ")
                    ),
                    &params,
                )
                .await?;
            let found = rows.iter().map(message_of).collect::<Result<Vec<_>>>()?;
            // Where the walk stopped short: at the last message found when
            // the page is full, else at the last one the budget allowed.
            let stopped_at = match rows.last() {
                Some(last) if found.len() >= filter.limit => Some(named_place(last)?),
                _ if filter.budget > 0 => client
                    .opt(
                        "SELECT id, instance, seq, idx FROM outbox
                         WHERE (instance, seq, idx) > ($1, $2, $3)
                         ORDER BY instance, seq, idx OFFSET $4 LIMIT 1",
                        &[&start.instance, &start.seq, &start.idx, &(budget - 1)],
                    )
                    .await?
                    .map(|row| named_place(&row))
                    .transpose()?,
                _ => None,
            };
            // There is more only if some message comes after that one.
            let more_after = match stopped_at {
                Some((id, place)) if any_after(&client, place).await? => Some(id),
                _ => None,
            };
            Ok(DeliveryPage { found, more_after })
        })
    }

    fn next_delivery_due(&self) -> Result<Option<u64>> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client.one("SELECT min(due_ms) FROM outbox", &[]).await?;
            Ok(row.try_get::<_, Option<i64>>(0)?.map(uint8))
        })
    }
}
