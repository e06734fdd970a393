//! Customer profiles, views and frequency caps on PostgreSQL.
//!
//! A cap's check and a reservation are one transaction holding the row
//! lock of (customer, channel) in `send_slots`, so two nodes never both
//! take the last slot. A reservation is a row with a lease on the
//! database's clock: a node that dies holding one stops holding the cap's
//! slot when the lease ends.

use serde_json::value::RawValue;

use super::{Cached, PostgresStore, int8, record, records, stored, uint8};
use crate::store::{
    CustomerView, Customers, Error, Result, SendReservation, VIEW_ENGAGEMENT, VIEW_INTERACTIONS,
};

/// How long a send reservation holds at most: far longer than a step
/// takes to run and commit, so only a node that died leaves one to lapse.
const RESERVATION_LEASE_MS: i64 = 10 * 60 * 1000;

/// The database's clock, in ms since the Unix epoch (the one every node
/// agrees on, for leases).
pub(super) const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl Customers for PostgresStore {
    fn put_customer(&self, id: &str, profile: &serde_json::Value) -> Result<()> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .exec(
                    "INSERT INTO customers (id, profile) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET profile = excluded.profile",
                    &[&id, &stored(profile)],
                )
                .await?;
            Ok(())
        })
    }

    fn customer_view(&self, id: &str, limit: usize, kinds: &[String]) -> Result<CustomerView> {
        self.block(async {
            let client = self.pool.get().await?;
            let (limit, recent, engaged) = (
                int8(limit as u64),
                int8(VIEW_INTERACTIONS as u64),
                int8(VIEW_ENGAGEMENT as u64),
            );
            // Four reads sent together: one round trip (every step reads
            // its customer's view).
            let (profile, interactions, channels, engagement) = futures_util::try_join!(
                async {
                    client
                        .opt("SELECT profile FROM customers WHERE id = $1", &[&id])
                        .await
                },
                // Of the most recent VIEW_INTERACTIONS, the most recent
                // `limit` of the kinds asked for.
                async {
                    client
                        .rows(
                            "SELECT record FROM (
                                 SELECT seq, kind, record FROM interactions WHERE customer = $1
                                 ORDER BY seq DESC LIMIT $2
                             ) recent
                             WHERE cardinality($3::text[]) = 0 OR kind = ANY($3)
                             ORDER BY seq DESC LIMIT $4",
                            &[&id, &recent, &kinds, &limit],
                        )
                        .await
                },
                async {
                    client
                        .rows(
                            "SELECT record FROM channel_choices WHERE customer = $1 ORDER BY channel",
                            &[&id],
                        )
                        .await
                },
                async {
                    client
                        .rows(
                            "SELECT record FROM (
                                 SELECT seq, record FROM engagement WHERE customer = $1
                                 ORDER BY seq DESC LIMIT $2
                             ) recent ORDER BY seq",
                            &[&id, &engaged],
                        )
                        .await
                },
            )?;
            let profile = match profile {
                Some(row) => record::<Box<RawValue>>(&row, "profile")?,
                None => RawValue::from_string("{}".to_owned()).map_err(Error::Encode)?,
            };
            let mut interactions = records(&interactions, "record")?;
            interactions.reverse();
            Ok(CustomerView {
                id: id.to_owned(),
                profile,
                interactions,
                channels: records(&channels, "record")?,
                engagement: records(&engagement, "record")?,
            })
        })
    }

    fn sent_since(&self, customer: &str, channel: &str, since_ms: u64) -> Result<Vec<u64>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT at_ms FROM counted_sends
                     WHERE customer = $1 AND channel = $2 AND at_ms >= $3 ORDER BY at_ms",
                    &[&customer, &channel, &int8(since_ms)],
                )
                .await?;
            Ok(rows.iter().map(|row| uint8(row.get(0))).collect())
        })
    }

    fn reserve_send(
        &self,
        customer: &str,
        channel: &str,
        at_ms: u64,
        since_ms: u64,
        limit: u32,
    ) -> Result<SendReservation> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            transaction
                .exec(
                    "INSERT INTO send_slots (customer, channel) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&customer, &channel],
                )
                .await?;
            transaction
                .exec(
                    "SELECT 1 FROM send_slots WHERE customer = $1 AND channel = $2 FOR UPDATE",
                    &[&customer, &channel],
                )
                .await?;
            // Committed sends and live reservations. A step committed but
            // not yet released counts twice for a moment: never under the cap.
            let rows = transaction
                .rows(
                    &format!(
                        "SELECT at_ms FROM counted_sends
                         WHERE customer = $1 AND channel = $2 AND at_ms >= $3
                         UNION ALL
                         SELECT at_ms FROM send_reservations
                         WHERE customer = $1 AND channel = $2 AND at_ms >= $3
                           AND expires_at_ms > {DB_NOW_MS}
                         ORDER BY at_ms"
                    ),
                    &[&customer, &channel, &int8(since_ms)],
                )
                .await?;
            if rows.len() >= limit as usize {
                return Ok(SendReservation::Full {
                    sent: rows.iter().map(|row| uint8(row.get(0))).collect(),
                });
            }
            transaction
                .exec(
                    &format!(
                        "INSERT INTO send_reservations (customer, channel, at_ms, expires_at_ms)
                         VALUES ($1, $2, $3, {DB_NOW_MS} + $4)"
                    ),
                    &[&customer, &channel, &int8(at_ms), &RESERVATION_LEASE_MS],
                )
                .await?;
            transaction.commit().await?;
            Ok(SendReservation::Reserved)
        })
    }

    fn release_send(&self, customer: &str, channel: &str, at_ms: u64) -> Result<()> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .exec(
                    "DELETE FROM send_reservations WHERE id = (
                         SELECT id FROM send_reservations
                         WHERE customer = $1 AND channel = $2 AND at_ms = $3
                         ORDER BY id DESC LIMIT 1
                     )",
                    &[&customer, &channel, &int8(at_ms)],
                )
                .await?;
            Ok(())
        })
    }
}
