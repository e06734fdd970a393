//! Forgetting a customer on PostgreSQL: removing what is kept about them
//! (one transaction, durable on return), and scrubbing an anonymised
//! instance's records inside the commit that anonymises it. The `Journal`
//! method and the commit path call these.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;
use tokio_postgres::types::Json;

use super::catalog::int4;
use super::journal::id8;
use super::retention::kept_instances;
use super::{Cached, PostgresStore, record, records, stored};
use crate::store::{
    Delivery, Error, EventRecord, ForgottenRecords, HistoryEntry, Instance, OutboxMessage, Result,
    Scrub,
};

/// Rows a statement touched, as a count of records.
fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

/// Run `statement`, which removes the rows of the customer `$1`, and
/// count them.
async fn remove_rows(
    transaction: &Transaction<'_>,
    statement: &str,
    customer: &str,
) -> Result<usize> {
    Ok(count(transaction.exec(statement, &[&customer]).await?))
}

impl PostgresStore {
    /// Remove what is kept about `customer` apart from their instances
    /// (see [`Journal::forget_customer`]), in one transaction, counting
    /// what went as sled counts it.
    ///
    /// [`Journal::forget_customer`]: crate::store::Journal::forget_customer
    pub(super) fn forget(&self, customer: &str) -> Result<ForgottenRecords> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let removed = |statement: &'static str| remove_rows(&transaction, statement, customer);
            let mut forgotten = ForgottenRecords {
                profile: removed("DELETE FROM customers WHERE id = $1").await? > 0,
                interactions: removed("DELETE FROM interactions WHERE customer = $1").await?,
                channel_choices: removed("DELETE FROM channel_choices WHERE customer = $1").await?,
                engagement: removed("DELETE FROM engagement WHERE customer = $1").await?,
                counted_sends: removed("DELETE FROM counted_sends WHERE customer = $1").await?,
                ..ForgottenRecords::default()
            };
            // The cap's lock rows and reservations name the customer too
            // (not counted: sled keeps neither). Slots first, as a
            // reservation takes its slot's lock before it is written.
            removed("DELETE FROM send_slots WHERE customer = $1").await?;
            removed("DELETE FROM send_reservations WHERE customer = $1").await?;
            let rows = transaction
                .rows(
                    "SELECT record FROM events WHERE customer = $1 ORDER BY id FOR UPDATE",
                    &[&customer],
                )
                .await?;
            let events: Vec<EventRecord> = records(&rows, "record")?;
            let kept = kept_instances(&transaction, &events).await?;
            let mut gone = Vec::new();
            for event in &events {
                if event.started.iter().any(|id| kept.contains(id)) {
                    forgotten.events_kept += 1;
                } else {
                    gone.push(event.id.as_str());
                }
            }
            if !gone.is_empty() {
                forgotten.events = count(
                    transaction
                        .exec("DELETE FROM events WHERE id = ANY($1)", &[&gone])
                        .await?,
                );
            }
            transaction.commit().await?;
            Ok(forgotten)
        })
    }
}

/// Scrub the records kept for the instance `before` (as stored before
/// the change that anonymises it, whose own entry, at history slot
/// `before.history_len`, and record the caller writes after this): its
/// earlier history, its outbox (messages not yet sent are dropped), the
/// events it ran on (moved to the pseudonym), and the sends counted
/// against its customer's caps. Its correlation and customer columns
/// follow the anonymised record the caller writes.
pub(super) async fn scrub_instance(
    transaction: &Transaction<'_>,
    before: &Instance,
    scrub: &Scrub,
) -> Result<()> {
    let id = id8(before.id);
    let mut events = BTreeSet::from([before.trigger_event_id.clone()]);
    let rows = transaction
        .rows(
            "SELECT seq, entry FROM history WHERE instance = $1 AND seq < $2 ORDER BY seq",
            &[&id, &int4(before.history_len)],
        )
        .await?;
    let (mut seqs, mut entries) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for row in &rows {
        let entry: HistoryEntry = record(row, "entry")?;
        if let HistoryEntry::EventArrived { event_id, .. } | HistoryEntry::Exited { event_id, .. } =
            &entry
        {
            events.insert(event_id.clone());
        }
        seqs.push(row.try_get::<_, i32>("seq")?);
        entries.push(scrub.record(&entry).map_err(Error::Encode)?);
    }
    if !seqs.is_empty() {
        let entries: Vec<Json<&HistoryEntry>> = entries.iter().map(stored).collect();
        transaction
            .exec(
                "UPDATE history SET entry = next.entry
                 FROM unnest($2::int4[], $3::json[]) AS next (seq, entry)
                 WHERE history.instance = $1 AND history.seq = next.seq",
                &[&id, &seqs, &entries],
            )
            .await?;
    }
    scrub_outbox(transaction, id, scrub).await?;
    scrub_events(transaction, &events, scrub).await?;
    transaction
        .exec(
            "DELETE FROM counted_sends WHERE instance = $1 AND customer = $2",
            &[&id, &before.customer_id],
        )
        .await?;
    Ok(())
}

/// Scrub the messages of instance `id` (locked in id order, as markers
/// lock them): those a provider took keep their delivery, scrubbed; the
/// rest are dropped, since a forgotten customer must not be written to.
async fn scrub_outbox(transaction: &Transaction<'_>, id: i64, scrub: &Scrub) -> Result<()> {
    let rows = transaction
        .rows(
            "SELECT id, record, delivery FROM outbox WHERE instance = $1 ORDER BY id FOR UPDATE",
            &[&id],
        )
        .await?;
    let (mut dropped, mut ids, mut messages, mut deliveries) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let message_id: String = row.try_get("id")?;
        let delivery: Delivery = record(row, "delivery")?;
        if delivery.status.is_pending() {
            dropped.push(message_id);
            continue;
        }
        let message: OutboxMessage = record(row, "record")?;
        let mut message = scrub.record(&message).map_err(Error::Encode)?;
        message.customer_id = scrub.pseudonym.clone();
        ids.push(message_id);
        messages.push(message);
        // Its status, due time and integration (the columns that repeat
        // them) are structural: left as they are.
        deliveries.push(scrub.record(&delivery).map_err(Error::Encode)?);
    }
    if !dropped.is_empty() {
        transaction
            .exec("DELETE FROM outbox WHERE id = ANY($1)", &[&dropped])
            .await?;
    }
    if !ids.is_empty() {
        let messages: Vec<Json<&OutboxMessage>> = messages.iter().map(stored).collect();
        let deliveries: Vec<Json<&Delivery>> = deliveries.iter().map(stored).collect();
        transaction
            .exec(
                "UPDATE outbox SET record = next.record, delivery = next.delivery
                 FROM unnest($1::text[], $2::json[], $3::json[]) AS next (id, record, delivery)
                 WHERE outbox.id = next.id",
                &[&ids, &messages, &deliveries],
            )
            .await?;
    }
    Ok(())
}

/// Scrub those of the events `ids` (locked in id order) that are about
/// the forgotten customer, and move them to the pseudonym.
async fn scrub_events(
    transaction: &Transaction<'_>,
    ids: &BTreeSet<String>,
    scrub: &Scrub,
) -> Result<()> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let rows = transaction
        .rows(
            "SELECT record FROM events WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let mut scrubbed = Vec::new();
    for event in records::<EventRecord>(&rows, "record")? {
        if event.customer_id != scrub.customer {
            continue;
        }
        let mut event = scrub.record(&event).map_err(Error::Encode)?;
        event.customer_id = scrub.pseudonym.clone();
        scrubbed.push(event);
    }
    if scrubbed.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = scrubbed.iter().map(|event| event.id.as_str()).collect();
    let customers: Vec<&str> = scrubbed
        .iter()
        .map(|event| event.customer_id.as_str())
        .collect();
    let events: Vec<Json<&EventRecord>> = scrubbed.iter().map(stored).collect();
    transaction
        .exec(
            "UPDATE events SET customer = next.customer, record = next.record
             FROM unnest($1::text[], $2::text[], $3::json[]) AS next (id, customer, record)
             WHERE events.id = next.id",
            &[&ids, &customers, &events],
        )
        .await?;
    Ok(())
}
