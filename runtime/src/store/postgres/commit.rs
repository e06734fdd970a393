//! The commit path on PostgreSQL: a group of commits is one transaction.
//!
//! A history slot is taken by inserting its row (the primary key refuses
//! a second), an event by inserting its record, so a stale change or a
//! duplicate event is found by the insert itself, also against another
//! node's transaction. Single re-entry takes an advisory lock per
//! (journey, customer) first, in sorted order. The counts are moved in
//! the same transaction (`counts.rs`): the marks of the instances changed
//! are read with a row lock, then each count record touched is locked,
//! moved and written once. A change that anonymises an instance scrubs
//! its records in the same transaction (`forget.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};

use deadpool_postgres::Transaction;
use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, try_join_all};

use super::catalog::int4;
use super::cluster::{RUN_CHANNEL, shard_of};
use super::counts::stored_mark;
use super::forget::scrub_instance;
use super::journal::{history_of, id8, instance_id};
use super::{Cached, PostgresStore, int8, record, stored};
use crate::store::{
    Applied, Commit, Delivery, EventCommit, EventRecord, FunnelMark, Instance, InstanceCommit,
    InstanceId, InstanceStatus, RefusedStart, Result, Shards as _,
};

/// What one transaction has done so far (its own writes are visible to
/// its reads, but these are cheaper to keep than to query).
#[derive(Default)]
pub(super) struct SoFar {
    /// Events accepted in it, with the instances they started.
    events: HashMap<String, Vec<InstanceId>>,
    /// History slots taken in it.
    history: HashSet<(InstanceId, u32)>,
    /// Instances started in it by (journey, customer), for single re-entry.
    started_by_customer: HashMap<(String, String), InstanceId>,
    /// The newest mark of each instance it changed.
    pub(super) marks: HashMap<InstanceId, Option<FunnelMark>>,
    /// Marks moved, in order: (before, after).
    pub(super) moves: Vec<(Option<FunnelMark>, Option<FunnelMark>)>,
    /// The stored marks of the instances the transaction's instance
    /// commits change, read (and locked) at its start in one query.
    pub(super) stored_marks: HashMap<InstanceId, FunnelMark>,
    /// Instances of shards other nodes hold that it moves to a step:
    /// their holders are told to run it.
    run_elsewhere: Vec<InstanceId>,
}

/// The shards whose work `commit` is, which only their holder commits:
/// those of the instances an event starts, and an instance's change that
/// is [shard work](InstanceCommit::is_shard_work).
fn commit_shards(commit: &Commit) -> impl Iterator<Item = u32> + '_ {
    let (started, change) = match commit {
        Commit::Event(event) => (&event.started[..], None),
        Commit::Instance(change) => (&[][..], Some(change)),
    };
    let work = change
        .filter(|change| change.is_shard_work())
        .map(|change| change.instance.id);
    started
        .iter()
        .map(|instance| instance.id)
        .chain(work)
        .map(shard_of)
}

/// Every shard whose work `commits` hold.
fn shard_work(commits: &[Commit]) -> BTreeSet<u32> {
    commits.iter().flat_map(commit_shards).collect()
}

/// Write `instance`'s record and the columns it is looked up by.
async fn put_instance(transaction: &Transaction<'_>, instance: &Instance) -> Result<()> {
    let finished = instance.status.is_finished();
    transaction
        .exec(
            "INSERT INTO instances (id, journey, version, customer, correlation, status,
                 active_by_customer, finished_at_ms, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET journey = excluded.journey,
                 version = excluded.version, customer = excluded.customer,
                 correlation = excluded.correlation, status = excluded.status,
                 active_by_customer = excluded.active_by_customer,
                 finished_at_ms = excluded.finished_at_ms, record = excluded.record",
            &[
                &id8(instance.id),
                &instance.journey,
                &int4(instance.journey_version),
                &instance.customer_id,
                &instance.correlation,
                &instance.status.label(),
                &(instance.indexed_by_customer && !finished),
                &finished.then(|| int8(instance.updated_at_ms)),
                &stored(instance),
            ],
        )
        .await?;
    Ok(())
}

impl PostgresStore {
    /// Apply `commits` in one transaction (see [`Journal::commit`]).
    pub(super) async fn commit_group(&self, commits: &[Commit]) -> Result<Vec<Applied>> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        // The fence first, holding nothing else: the shards whose work
        // this group commits must still be this node's.
        let needed = shard_work(commits);
        let held = match (&self.membership, needed.is_empty()) {
            (Some(membership), false) => membership.fence(&transaction, &needed).await?,
            _ => HashSet::new(),
        };
        // Single re-entry: one transaction at a time per (journey,
        // customer), taken in sorted order.
        let exclusive: BTreeSet<(&str, &str)> = commits
            .iter()
            .filter_map(|commit| match commit {
                Commit::Event(event) => Some(event),
                Commit::Instance(_) => None,
            })
            .flat_map(|event| {
                event
                    .started
                    .iter()
                    .filter(|instance| event.exclusive.contains(&instance.id))
                    .map(|instance| (instance.journey.as_str(), instance.customer_id.as_str()))
            })
            .collect();
        for (journey, customer) in exclusive {
            transaction
                .exec(
                    "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                    &[&journey, &customer],
                )
                .await?;
        }
        let mut so_far = SoFar {
            stored_marks: stored_marks(&transaction, commits).await?,
            ..SoFar::default()
        };
        let mut applied = Vec::with_capacity(commits.len());
        for commit in commits {
            if let Some(shard) = commit_shards(commit).find(|shard| !held.contains(shard)) {
                applied.push(Applied::Fenced { shard });
                continue;
            }
            applied.push(match commit {
                Commit::Event(event) => self.add_event(&transaction, event, &mut so_far).await?,
                Commit::Instance(change) => {
                    self.add_change(&transaction, change, &mut so_far).await?
                }
            });
        }
        if !so_far.run_elsewhere.is_empty() {
            // Delivered to the holders when (and only if) this commits.
            let ids: Vec<String> = so_far
                .run_elsewhere
                .iter()
                .map(|id| id.0.to_string())
                .collect();
            transaction
                .exec("SELECT pg_notify($1, $2)", &[&RUN_CHANNEL, &ids.join(",")])
                .await?;
        }
        self.write_counts(&transaction, so_far).await?;
        // A failed COMMIT leaves it unknown whether the unit landed;
        // it is reported as not applied, and a retry is safe (a
        // duplicate event or a taken slot is skipped).
        transaction.commit().await?;
        Ok(applied)
    }

    /// Apply an event and what it causes, unless it was accepted before.
    async fn add_event(
        &self,
        transaction: &Transaction<'_>,
        commit: &EventCommit,
        so_far: &mut SoFar,
    ) -> Result<Applied> {
        let event = &commit.event;
        if let Some(started) = so_far.events.get(&event.id) {
            return Ok(Applied::DuplicateEvent {
                started: started.clone(),
            });
        }
        if let Some(earlier) = event_record(transaction, &event.id).await? {
            return Ok(Applied::DuplicateEvent {
                started: earlier.started,
            });
        }
        let mut refused = Vec::new();
        for instance in &commit.started {
            if !commit.exclusive.contains(&instance.id) {
                continue;
            }
            let pair = (instance.journey.clone(), instance.customer_id.clone());
            let active = match so_far.started_by_customer.get(&pair) {
                Some(active) => Some(*active),
                None => transaction
                    .opt(
                        "SELECT id FROM instances
                         WHERE active_by_customer AND journey = $1 AND customer = $2
                         ORDER BY id LIMIT 1",
                        &[&instance.journey, &instance.customer_id],
                    )
                    .await?
                    .map(|row| instance_id(&row, 0)),
            };
            if let Some(active) = active {
                refused.push(RefusedStart {
                    instance: instance.id,
                    active,
                });
            }
        }
        let is_refused = |id: InstanceId| refused.iter().any(|refused| refused.instance == id);
        let mut accepted = event.clone();
        accepted.started.retain(|id| !is_refused(*id));
        let inserted = transaction
            .exec(
                "INSERT INTO events (id, customer, received_at_ms, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    &event.id,
                    &event.customer_id,
                    &int8(event.received_at_ms),
                    &stored(&accepted),
                ],
            )
            .await?;
        if inserted == 0 {
            // Another node's transaction accepted it a moment ago.
            let earlier = event_record(transaction, &event.id).await?;
            return Ok(Applied::DuplicateEvent {
                started: earlier.map(|earlier| earlier.started).unwrap_or_default(),
            });
        }
        so_far
            .events
            .insert(event.id.clone(), accepted.started.clone());
        for instance in &commit.started {
            if is_refused(instance.id) {
                continue;
            }
            if instance.indexed_by_customer {
                so_far.started_by_customer.insert(
                    (instance.journey.clone(), instance.customer_id.clone()),
                    instance.id,
                );
            }
            let mark = FunnelMark::started(instance);
            so_far.moves.push((None, Some(mark.clone())));
            so_far.marks.insert(instance.id, Some(mark));
            put_instance(transaction, instance).await?;
        }
        add_interaction(transaction, &event.customer_id, &commit.interaction).await?;
        for exit in &commit.exits {
            transaction
                .exec(
                    "INSERT INTO pending_exits (instance, event) VALUES ($1, $2)
                     ON CONFLICT (instance) DO UPDATE SET event = excluded.event",
                    &[&id8(exit.instance.id), &event.id],
                )
                .await?;
        }
        // An exit or wake-up whose slot is taken (a step or timer came
        // first) is not applied; exits are tried again.
        for change in commit.exits.iter().chain(&commit.wakes) {
            Box::pin(self.add_change(transaction, change, so_far)).await?;
        }
        if let Some(preference) = &commit.preference {
            transaction
                .exec(
                    "INSERT INTO channel_choices (customer, channel, record) VALUES ($1, $2, $3)
                     ON CONFLICT (customer, channel) DO UPDATE SET record = excluded.record",
                    &[&event.customer_id, &preference.channel, &stored(preference)],
                )
                .await?;
        }
        if let Some(engagement) = &commit.engagement {
            transaction
                .exec(
                    "INSERT INTO engagement (customer, at_ms, record) VALUES ($1, $2, $3)",
                    &[
                        &event.customer_id,
                        &int8(engagement.at_ms),
                        &stored(engagement),
                    ],
                )
                .await?;
        }
        Ok(match refused.is_empty() {
            true => Applied::Done,
            false => Applied::PartlyStarted { refused },
        })
    }

    /// Apply an instance change, unless its history slot is taken.
    async fn add_change(
        &self,
        transaction: &Transaction<'_>,
        change: &InstanceCommit,
        so_far: &mut SoFar,
    ) -> Result<Applied> {
        let instance = &change.instance;
        let seq = change.seq();
        if so_far.history.contains(&(instance.id, seq)) {
            return Ok(Applied::StaleStep);
        }
        // The slot's row is the change's first write: if it is taken,
        // nothing of the change is written.
        let taken = transaction
            .exec(
                "INSERT INTO history (instance, seq, entry) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id8(instance.id), &int4(seq), &stored(&change.entry)],
            )
            .await?
            == 0;
        if taken {
            return Ok(Applied::StaleStep);
        }
        so_far.history.insert((instance.id, seq));
        if instance.status == InstanceStatus::Running && !self.owns(instance.id) {
            so_far.run_elsewhere.push(instance.id);
        }
        let before = match so_far.marks.get(&instance.id) {
            Some(mark) => mark.clone(),
            None => match so_far.stored_marks.get(&instance.id).cloned() {
                Some(mark) => Some(mark),
                None => stored_mark(transaction, instance.id).await?,
            },
        };
        let after = match &before {
            Some(before) => before.took(&change.entry, instance),
            // No mark (its record was lost): counted from the history,
            // which holds this change's entry already.
            None => FunnelMark::of_instance(instance, &history_of(transaction, instance).await?),
        };
        if before.as_ref() != Some(&after) {
            so_far.moves.push((before, Some(after.clone())));
            so_far.marks.insert(instance.id, Some(after));
        }
        if let Some(scrub) = &change.scrub
            && let Some(row) = transaction
                .opt(
                    "SELECT record FROM instances WHERE id = $1",
                    &[&id8(instance.id)],
                )
                .await?
        {
            // Before the change's own records (its entry, written above,
            // is left alone), so they win; after its mark is locked, as a
            // purge takes the mark first.
            scrub_instance(transaction, &record(&row, "record")?, scrub).await?;
        }
        // The rest of the change's writes are independent of each other's
        // results: sent together, in this order, in one round trip.
        let id = id8(instance.id);
        let mut writes: Vec<LocalBoxFuture<'_, Result<u64>>> = vec![
            async move {
                put_instance(transaction, instance).await?;
                Ok(1)
            }
            .boxed_local(),
        ];
        if matches!(
            instance.status,
            InstanceStatus::Exited | InstanceStatus::Cancelled
        ) {
            writes.push(
                async move {
                    transaction
                        .exec("DELETE FROM pending_exits WHERE instance = $1", &[&id])
                        .await
                }
                .boxed_local(),
            );
        }
        for (index, counted) in change.counted.iter().enumerate() {
            let message = format!("{}/{seq}/{index}", instance.id.0);
            writes.push(
                async move {
                    transaction
                        .exec(
                            "INSERT INTO counted_sends (customer, channel, at_ms, message, instance)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[
                                &instance.customer_id,
                                &counted.channel,
                                &int8(counted.at_ms),
                                &message,
                                &id,
                            ],
                        )
                        .await
                }
                .boxed_local(),
            );
        }
        // Cleared before set: an instance may leave a wait for the same one.
        if let Some(left) = &change.leaves {
            if let Some(due) = left.wake_at_ms {
                writes.push(
                    async move {
                        transaction
                            .exec(
                                "DELETE FROM timers WHERE due_ms = $1 AND instance = $2",
                                &[&int8(due), &id],
                            )
                            .await
                    }
                    .boxed_local(),
                );
            }
            if let Some((kind, correlation)) = &left.event {
                writes.push(
                    async move {
                        transaction
                            .exec(
                                "DELETE FROM waits
                                 WHERE kind = $1 AND correlation = $2 AND instance = $3",
                                &[kind, correlation, &id],
                            )
                            .await
                    }
                    .boxed_local(),
                );
            }
        }
        if instance.status == InstanceStatus::Waiting {
            if let Some(due) = instance.wake_at_ms {
                writes.push(
                    async move {
                        transaction
                            .exec(
                                "INSERT INTO timers (due_ms, instance) VALUES ($1, $2)
                                 ON CONFLICT (due_ms, instance) DO UPDATE SET claimed_until_ms = NULL",
                                &[&int8(due), &id],
                            )
                            .await
                    }
                    .boxed_local(),
                );
            }
            if let Some(wait) = &instance.waiting_for {
                writes.push(
                    async move {
                        transaction
                            .exec(
                                "INSERT INTO waits (kind, correlation, instance) VALUES ($1, $2, $3)
                                 ON CONFLICT DO NOTHING",
                                &[&wait.kind, &wait.correlation, &id],
                            )
                            .await
                    }
                    .boxed_local(),
                );
            }
        }
        for (index, message) in change.messages.iter().enumerate() {
            writes.push(
                async move {
                    let queued = Delivery::queued(message.queued_at_ms);
                    transaction
                        .exec(
                            "INSERT INTO outbox (id, instance, seq, idx, channel, record, status,
                                 due_ms, integration, delivery)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)
                             ON CONFLICT DO NOTHING",
                            &[
                                &message.id,
                                &id,
                                &int4(seq),
                                &int4(index as u32),
                                &message.channel,
                                &stored(message),
                                &queued.status.as_str(),
                                &int8(message.queued_at_ms),
                                &stored(&queued),
                            ],
                        )
                        .await
                }
                .boxed_local(),
            );
        }
        for interaction in &change.interactions {
            writes.push(
                async move {
                    add_interaction(transaction, &instance.customer_id, interaction).await?;
                    Ok(1)
                }
                .boxed_local(),
            );
        }
        try_join_all(writes).await?;
        Ok(Applied::Done)
    }
}

/// The stored marks of the instances `commits` change one by one, locked
/// until the transaction ends (in id order, as a purge locks them).
async fn stored_marks(
    transaction: &Transaction<'_>,
    commits: &[Commit],
) -> Result<HashMap<InstanceId, FunnelMark>> {
    let mut ids: Vec<i64> = commits
        .iter()
        .filter_map(Commit::instance)
        .map(id8)
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    let rows = transaction
        .rows(
            "SELECT instance, mark FROM funnel_marks WHERE instance = ANY($1)
             ORDER BY instance FOR UPDATE",
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((instance_id(row, 0), record(row, "mark")?)))
        .collect()
}

/// An accepted event, read in `transaction`.
async fn event_record(transaction: &Transaction<'_>, id: &str) -> Result<Option<EventRecord>> {
    transaction
        .opt("SELECT record FROM events WHERE id = $1", &[&id])
        .await?
        .map(|row| record(&row, "record"))
        .transpose()
}

/// Add an interaction to a customer's history.
async fn add_interaction(
    transaction: &Transaction<'_>,
    customer: &str,
    interaction: &crate::store::Interaction,
) -> Result<()> {
    transaction
        .exec(
            "INSERT INTO interactions (customer, at_ms, kind, record) VALUES ($1, $2, $3, $4)",
            &[
                &customer,
                &int8(interaction.at_ms),
                &interaction.kind,
                &stored(interaction),
            ],
        )
        .await?;
    Ok(())
}
