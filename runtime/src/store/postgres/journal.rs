//! The journal on PostgreSQL: events, instances, histories and waits as
//! read back; the commit path is `commit.rs`, retention `retention.rs`.

use deadpool_postgres::Transaction;

use super::cluster::{SHARDS, running_in};
use super::{Cached, PostgresStore, int8, record, records, snapshot, uint8};
use crate::store::{
    Applied, Commit, DayTally, EventRecord, ForgottenRecords, HistoryEntry, Instance,
    InstanceFilter, InstanceId, InstancePage, Journal, Purge, Result, StandingCounts,
};

/// Instances read per query while a search walks the journal.
const SEARCH_CHUNK: usize = 500;

/// The id as PostgreSQL's `bigint`.
pub(super) fn id8(id: InstanceId) -> i64 {
    int8(id.0)
}

/// An instance id read back.
pub(super) fn instance_id(row: &tokio_postgres::Row, column: usize) -> InstanceId {
    InstanceId(uint8(row.get(column)))
}

impl PostgresStore {
    /// The ids one query returns (its first column).
    fn ids(
        &self,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<InstanceId>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client.rows(query, params).await?;
            Ok(rows.iter().map(|row| instance_id(row, 0)).collect())
        })
    }
}

/// `instance`'s history: the entry of the event that started it, then
/// every stored entry in order.
pub(super) async fn history_of(
    client: &Transaction<'_>,
    instance: &Instance,
) -> Result<Vec<HistoryEntry>> {
    let received = match client
        .opt(
            "SELECT record FROM events WHERE id = $1",
            &[&instance.trigger_event_id],
        )
        .await?
    {
        Some(row) => {
            let event: EventRecord = record(&row, "record")?;
            HistoryEntry::EventReceived {
                at_ms: event.received_at_ms,
                event_id: event.id,
                kind: event.kind,
            }
        }
        None => HistoryEntry::EventReceived {
            at_ms: instance.created_at_ms,
            event_id: instance.trigger_event_id.clone(),
            kind: String::new(),
        },
    };
    let rows = client
        .rows(
            "SELECT entry FROM history WHERE instance = $1 ORDER BY seq",
            &[&id8(instance.id)],
        )
        .await?;
    let mut history = vec![received];
    history.extend(records::<HistoryEntry>(&rows, "entry")?);
    Ok(history)
}
impl Journal for PostgresStore {
    /// An id in one of the shards this node holds, so this node runs the
    /// instance it names.
    fn next_id(&self) -> Result<u64> {
        let shard = self
            .membership
            .as_ref()
            .and_then(|membership| membership.shard_for_new())
            .ok_or(crate::store::Error::NoShard)?;
        self.block(async {
            let client = self.pool.get().await?;
            let row = client.one("SELECT nextval('ids')", &[]).await?;
            Ok(uint8(row.get(0)) * u64::from(SHARDS) + u64::from(shard))
        })
    }

    fn commit(&self, commits: &[Commit]) -> Result<Vec<Applied>> {
        self.block(self.commit_group(commits))
    }

    fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .opt("SELECT record FROM events WHERE id = $1", &[&id])
                .await?
                .map(|row| record(&row, "record"))
                .transpose()
        })
    }

    fn instance(&self, id: InstanceId) -> Result<Option<Instance>> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .opt("SELECT record FROM instances WHERE id = $1", &[&id8(id)])
                .await?
                .map(|row| record(&row, "record"))
                .transpose()
        })
    }

    fn search_instances(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        self.block(async {
            let client = self.pool.get().await?;
            let mut after = filter.after.map_or(0, id8);
            let (mut found, mut last, mut looked_at) = (Vec::new(), None, 0usize);
            loop {
                let rows = client
                    .rows(
                        "SELECT id, record FROM instances WHERE id > $1 ORDER BY id LIMIT $2",
                        &[&after, &int8(SEARCH_CHUNK as u64)],
                    )
                    .await?;
                for row in &rows {
                    if found.len() >= filter.limit
                        || (filter.budget > 0 && looked_at >= filter.budget)
                    {
                        return Ok(InstancePage {
                            found,
                            more_after: last,
                        });
                    }
                    looked_at += 1;
                    let id = instance_id(row, 0);
                    last = Some(id);
                    after = id8(id);
                    let instance: Instance = record(row, "record")?;
                    if filter.matches(&instance) {
                        found.push(instance);
                    }
                }
                if rows.len() < SEARCH_CHUNK {
                    return Ok(InstancePage {
                        found,
                        more_after: None,
                    });
                }
            }
        })
    }

    /// Those of the shards this node holds: the others are their
    /// holders' to run.
    fn running_instances(&self) -> Result<Vec<Instance>> {
        let shards = self.held_shards();
        self.block(async {
            let client = self.pool.get().await?;
            running_in(&client, &shards).await
        })
    }

    fn settled(&self, now_ms: u64) -> Result<bool> {
        self.block(async {
            let client = self.pool.get().await?;
            // One statement: one snapshot.
            let row = client
                .one(
                    "SELECT NOT EXISTS (SELECT 1 FROM instances WHERE status = 'running')
                        AND NOT EXISTS (SELECT 1 FROM timers WHERE due_ms <= $1)",
                    &[&int8(now_ms)],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>> {
        self.block(async {
            let mut client = self.pool.get().await?;
            // One snapshot for the instance, its event and its entries.
            let transaction = snapshot(&mut client).await?;
            let Some(row) = transaction
                .opt("SELECT record FROM instances WHERE id = $1", &[&id8(id)])
                .await?
            else {
                return Ok(Vec::new());
            };
            let instance: Instance = record(&row, "record")?;
            history_of(&transaction, &instance).await
        })
    }

    fn correlated(&self, journey: &str, correlation: &str) -> Result<Vec<InstanceId>> {
        self.ids(
            "SELECT id FROM instances WHERE journey = $1 AND correlation = $2 ORDER BY id",
            &[&journey, &correlation],
        )
    }

    fn active_of(&self, journey: &str, customer: &str) -> Result<Vec<InstanceId>> {
        self.ids(
            "SELECT id FROM instances WHERE active_by_customer AND journey = $1 AND customer = $2
             ORDER BY id",
            &[&journey, &customer],
        )
    }

    fn any_waiting_for(&self, kind: &str) -> Result<bool> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .one(
                    "SELECT EXISTS (SELECT 1 FROM waits WHERE kind = $1)",
                    &[&kind],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn waiting_for(&self, kind: &str, correlation: &str) -> Result<Vec<InstanceId>> {
        self.ids(
            "SELECT instance FROM waits WHERE kind = $1 AND correlation = $2 ORDER BY instance",
            &[&kind, &correlation],
        )
    }

    fn pending_exits(&self) -> Result<Vec<(InstanceId, String)>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT instance, event FROM pending_exits ORDER BY instance",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (instance_id(row, 0), row.get(1)))
                .collect())
        })
    }

    fn forget_exit(&self, instance: InstanceId) -> Result<()> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .exec(
                    "DELETE FROM pending_exits WHERE instance = $1",
                    &[&id8(instance)],
                )
                .await?;
            Ok(())
        })
    }

    fn finished_before(
        &self,
        journey: &str,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(InstanceId, u64)>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT id, finished_at_ms FROM instances
                     WHERE journey = $1 AND finished_at_ms < $2
                     ORDER BY finished_at_ms, id LIMIT $3",
                    &[&journey, &int8(before_ms), &int8(limit as u64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| (instance_id(row, 0), uint8(row.get(1))))
                .collect())
        })
    }

    fn purge(&self, purges: &[Purge]) -> Result<usize> {
        self.purge_finished(purges)
    }

    fn purged_tallies(&self, journey: &str) -> Result<Vec<DayTally>> {
        self.day_tallies("purged_tallies", journey)
    }

    fn live_tallies(&self, journey: &str) -> Result<Vec<DayTally>> {
        self.day_tallies("live_tallies", journey)
    }

    fn standing(&self, journey: Option<&str>) -> Result<Vec<StandingCounts>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT journey, version, counts FROM standing
                     WHERE $1::text IS NULL OR journey = $1 ORDER BY journey, version",
                    &[&journey],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(StandingCounts {
                        journey: row.get(0),
                        version: row.get::<_, i32>(1) as u32,
                        at: record(row, "counts")?,
                    })
                })
                .collect()
        })
    }

    fn purge_old_records(&self, before_ms: u64, limit: usize) -> Result<usize> {
        self.sweep_aged(before_ms, limit)
    }

    fn customer_events(&self, customer: &str) -> Result<Vec<EventRecord>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT record FROM events WHERE customer = $1 ORDER BY id",
                    &[&customer],
                )
                .await?;
            records(&rows, "record")
        })
    }

    fn forget_customer(&self, customer: &str) -> Result<ForgottenRecords> {
        self.forget(customer)
    }
}
