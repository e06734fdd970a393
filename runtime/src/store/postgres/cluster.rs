//! Several nodes on one database: shards, their leases and the fence.
//!
//! Instances are spread over [`SHARDS`] shards (`id % SHARDS`). Each node
//! ([`Membership`]) renews its leases every third of the lease time on
//! the database's clock, and takes its fair share (`SHARDS / live nodes`,
//! rounded up, or down while another node holds less than that: see
//! [`fair_share`]) of the shards nobody holds or whose lease ended, each
//! with a new epoch; a node holding more than its share gives the rest
//! back, so a node that joins gets work at the next renewals. A commit of a
//! shard's work (a step's outcome, a timer's wake-up, a start) reads the
//! shard's row with `FOR KEY SHARE` as its transaction's first statement
//! and goes ahead only if this node holds it at the epoch it took it with
//! and the lease has not ended: taking a shard locks its row `FOR UPDATE
//! SKIP LOCKED`, so a node that lost a shard can never commit beside its
//! new holder. Renewals do not conflict with commits (a plain update
//! takes a weaker lock than the fence's).
//!
//! A listener connection hears `journeyd_catalog` (catalog changes) and
//! `journeyd_run` (another node moved an instance of a shard to a step),
//! and the runtime hears both as [`ShardNews`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::PostgresStore;
use super::catalog::CATALOG_CHANNEL;
use super::customers::DB_NOW_MS;
use super::{Cached, int8, records, wait_for};
use crate::store::{Instance, InstanceId, Result, ShardNews, Shards};

/// How many shards instances are spread over (fixed by the schema).
pub const SHARDS: u32 = 16;

/// The channel a commit names instances on that another node must run.
pub(super) const RUN_CHANNEL: &str = "journeyd_run";

/// The shard `instance` belongs to.
pub fn shard_of(instance: InstanceId) -> u32 {
    (instance.0 % u64::from(SHARDS)) as u32
}

/// How a process takes part in the work on a shared database.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The node's name, as `journeyd cluster status` shows it (the host
    /// name unless given).
    pub name: String,
    /// How long a lease lasts unrenewed: a stopped node's shards move to
    /// the others after at most this long.
    pub lease: Duration,
    /// Where the node serves its API, for `journeyd cluster status`.
    pub address: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "journeyd".to_owned());
        NodeOptions {
            name,
            lease: Duration::from_secs(10),
            address: None,
        }
    }
}

/// How many shards node `me` should hold, given the live nodes and what
/// each holds: the shards divided evenly, rounded up (16 over 3 nodes: 6),
/// but rounded down while another node holds fewer than that, so the
/// rounding never leaves a node short (6, 6, 4 becomes 5, 5, 6).
fn fair_share(me: &str, live: &[(String, i64)]) -> usize {
    let nodes = live.len().max(1) as u32;
    let (floor, ceiling) = (SHARDS / nodes, SHARDS.div_ceil(nodes));
    let someone_short = live
        .iter()
        .any(|(node, holds)| node != me && *holds < i64::from(floor));
    (if someone_short { floor } else { ceiling }) as usize
}

/// A shard this node holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The epoch it took the shard with.
    epoch: i64,
    /// Until when it may act on it, by this process's clock: the lease as
    /// renewed, counted from before the renewal was sent.
    until: Instant,
}

/// This process as one of the nodes sharing the database.
pub(super) struct Membership {
    /// Its key in `nodes` and `shards.owner`: the name and a start id, so
    /// a restarted node never mistakes its predecessor's leases for its own.
    node: String,
    options: NodeOptions,
    held: RwLock<BTreeMap<u32, Held>>,
    /// Turns through the held shards for new instance ids.
    turn: AtomicUsize,
    news: mpsc::UnboundedSender<ShardNews>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<ShardNews>>>,
    /// Set when the store is dropped: its threads stop.
    stopped: AtomicBool,
    /// Why the last renewal failed, until one succeeds.
    renewal_failing: Mutex<Option<String>>,
}

impl Membership {
    pub(super) fn new(options: NodeOptions) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let (news, receiver) = mpsc::unbounded_channel();
        Membership {
            node: format!("{}#{}.{started}", options.name, std::process::id()),
            options,
            held: RwLock::new(BTreeMap::new()),
            turn: AtomicUsize::new(0),
            news,
            receiver: Mutex::new(Some(receiver)),
            stopped: AtomicBool::new(false),
            renewal_failing: Mutex::new(None),
        }
    }

    /// Why it holds no shard, when it holds none.
    pub(super) fn not_serving(&self) -> Option<String> {
        if !self.holding().is_empty() {
            return None;
        }
        let failing = self
            .renewal_failing
            .lock()
            .ok()
            .and_then(|last| last.clone());
        Some(match failing {
            Some(error) => format!(
                "node `{}` holds no shard: its leases ran out and renewing them fails ({error})",
                self.node
            ),
            None => format!(
                "node `{}` holds no shard yet: it is joining (the others give up part of their \
                 share at their next renewal)",
                self.node
            ),
        })
    }

    fn held(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Held>> {
        self.held
            .read()
            .expect("the held shards are never poisoned")
    }

    /// The shards held now, with their epochs.
    pub(super) fn holding(&self) -> Vec<(u32, i64)> {
        let now = Instant::now();
        self.held()
            .iter()
            .filter(|(_, held)| held.until > now)
            .map(|(shard, held)| (*shard, held.epoch))
            .collect()
    }

    pub(super) fn owns(&self, instance: InstanceId) -> bool {
        self.held()
            .get(&shard_of(instance))
            .is_some_and(|held| held.until > Instant::now())
    }

    /// A shard to start an instance in: the held ones in turn.
    pub(super) fn shard_for_new(&self) -> Option<u32> {
        let holding = self.holding();
        if holding.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(holding[turn % holding.len()].0)
    }

    pub(super) fn take_news(&self) -> Option<mpsc::UnboundedReceiver<ShardNews>> {
        self.receiver.lock().ok()?.take()
    }

    fn tell(&self, news: ShardNews) {
        // Nobody listening (a store used without a runtime): nothing to do.
        let _ = self.news.send(news);
    }

    /// Of `needed`, the shards this node holds in the database now at
    /// the epochs it took them with, locked against being taken until
    /// `transaction` ends. Must be the transaction's first statement, so
    /// it waits for a taker holding nothing else.
    pub(super) async fn fence(
        &self,
        transaction: &Transaction<'_>,
        needed: &BTreeSet<u32>,
    ) -> Result<HashSet<u32>> {
        let (shards, epochs): (Vec<i32>, Vec<i64>) = self
            .holding()
            .into_iter()
            .filter(|(shard, _)| needed.contains(shard))
            .map(|(shard, epoch)| (shard as i32, epoch))
            .unzip();
        if shards.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = transaction
            .rows(
                &format!(
                    "SELECT shard FROM shards
                     WHERE (shard, epoch) IN (SELECT * FROM unnest($1::integer[], $2::bigint[]))
                       AND owner = $3 AND lease_until_ms > {DB_NOW_MS}
                     ORDER BY shard FOR KEY SHARE"
                ),
                &[&shards, &epochs, &self.node],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect())
    }

    /// Renew this node's heartbeat and leases, give back what is beyond
    /// its share, take what it lacks, and tell the runtime what changed.
    ///
    /// The first renewal (`starting`, before the runtime resumes what the
    /// node holds) also takes over the shards an earlier run of a node of
    /// the same name still holds (it was killed, or restarted), so a
    /// restart does not wait for its predecessor's leases to end; nothing
    /// is told then, since the runtime resumes every held shard as it starts.
    pub(super) async fn renew(&self, pool: &Pool, starting: bool) -> Result<()> {
        let sent = Instant::now();
        let lease_ms = int8(self.options.lease.as_millis() as u64);
        let client = pool.get().await?;
        client
            .exec(
                &format!(
                    "INSERT INTO nodes (node, name, started_ms, heartbeat_ms, address)
                     VALUES ($1, $2, {DB_NOW_MS}, {DB_NOW_MS}, $3)
                     ON CONFLICT (node) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms,
                         address = excluded.address"
                ),
                &[&self.node, &self.options.name, &self.options.address],
            )
            .await?;
        if starting {
            let before = format!("{}#", self.options.name);
            let taken = client
                .exec(
                    &format!(
                        "UPDATE shards SET owner = $1, epoch = epoch + 1,
                             lease_until_ms = {DB_NOW_MS} + $2
                         WHERE shard IN (
                             SELECT shard FROM shards
                             WHERE left(owner, length($3)) = $3 AND owner <> $1
                             ORDER BY shard FOR UPDATE SKIP LOCKED
                         )"
                    ),
                    &[&self.node, &lease_ms, &before],
                )
                .await?;
            if taken > 0 {
                tracing::info!(node = %self.node, shards = taken, "took over the shards an earlier run of this node held");
            }
            client
                .exec(
                    "DELETE FROM nodes WHERE left(node, length($2)) = $2 AND node <> $1",
                    &[&self.node, &before],
                )
                .await?;
        }
        // Nodes whose heartbeat is older than a lease are gone; their rows
        // are kept a day for `cluster status`. The live ones, with the
        // shards each holds.
        let live: Vec<(String, i64)> = client
            .rows(
                &format!(
                    "WITH gone AS (DELETE FROM nodes WHERE heartbeat_ms < {DB_NOW_MS} - 86400000)
                     SELECT node, (SELECT count(*) FROM shards
                                   WHERE owner = node AND lease_until_ms > {DB_NOW_MS})
                     FROM nodes WHERE heartbeat_ms > {DB_NOW_MS} - $1"
                ),
                &[&lease_ms],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let share = fair_share(&self.node, &live);
        let renewed = client
            .rows(
                &format!(
                    "UPDATE shards SET lease_until_ms = {DB_NOW_MS} + $2
                     WHERE owner = $1 AND lease_until_ms > {DB_NOW_MS}
                     RETURNING shard, epoch"
                ),
                &[&self.node, &lease_ms],
            )
            .await?;
        let mut holding: BTreeMap<u32, i64> = renewed
            .iter()
            .map(|row| (row.get::<_, i32>(0) as u32, row.get::<_, i64>(1)))
            .collect();
        let extra: Vec<i32> = holding
            .keys()
            .rev()
            .take(holding.len().saturating_sub(share))
            .map(|shard| *shard as i32)
            .collect();
        if !extra.is_empty() {
            client
                .exec(
                    "UPDATE shards SET owner = NULL, lease_until_ms = 0
                     WHERE owner = $1 AND shard = ANY($2)",
                    &[&self.node, &extra],
                )
                .await?;
            for shard in &extra {
                holding.remove(&(*shard as u32));
            }
            tracing::info!(node = %self.node, given = ?extra, share, "gave shards beyond this node's share to the others");
        }
        let mut gained = Vec::new();
        if holding.len() < share {
            let taken = client
                .rows(
                    &format!(
                        "UPDATE shards SET owner = $1, epoch = epoch + 1,
                             lease_until_ms = {DB_NOW_MS} + $2
                         WHERE shard IN (
                             SELECT shard FROM shards
                             WHERE owner IS NULL OR lease_until_ms <= {DB_NOW_MS}
                             ORDER BY shard LIMIT $3
                             FOR UPDATE SKIP LOCKED
                         )
                         RETURNING shard, epoch"
                    ),
                    &[&self.node, &lease_ms, &int8((share - holding.len()) as u64)],
                )
                .await?;
            for row in &taken {
                let shard = row.get::<_, i32>(0) as u32;
                holding.insert(shard, row.get(1));
                gained.push(shard);
            }
        }
        let until = sent + self.options.lease;
        let (lost, lapsed): (Vec<u32>, Vec<u32>) = {
            let mut held = self
                .held
                .write()
                .expect("the held shards are never poisoned");
            // Renewed in time by the database's clock but not by ours (a
            // renewal held up, the database away): this node turned their
            // work away meanwhile, so it is looked at again as if taken.
            let now = Instant::now();
            let lapsed = holding
                .iter()
                .filter(|(shard, epoch)| {
                    held.get(shard)
                        .is_some_and(|was| was.epoch == **epoch && was.until <= now)
                })
                .map(|(shard, _)| *shard)
                .collect();
            let lost = held
                .iter()
                .filter(|(shard, was)| holding.get(shard) != Some(&was.epoch))
                .filter(|(shard, _)| !extra.contains(&(**shard as i32)))
                .map(|(shard, _)| *shard)
                .collect();
            *held = holding
                .iter()
                .map(|(shard, epoch)| {
                    (
                        *shard,
                        Held {
                            epoch: *epoch,
                            until,
                        },
                    )
                })
                .collect();
            (lost, lapsed)
        };
        if !lost.is_empty() {
            tracing::warn!(node = %self.node, ?lost, "this node no longer holds these shards");
            self.tell(ShardNews::Lost(lost));
        }
        if !lapsed.is_empty() {
            tracing::warn!(node = %self.node, ?lapsed, "renewed leases that had run out by this node's clock");
            gained.extend(lapsed);
        }
        if !gained.is_empty() && !starting {
            tracing::info!(node = %self.node, ?gained, holding = holding.len(), "took shards");
            let running = running_in(&client, &gained).await?;
            self.tell(ShardNews::Resume {
                shards: gained,
                running,
            });
        }
        Ok(())
    }

    /// Keep the leases until the store is dropped, on a thread of its
    /// own (in `runtime`'s context, for its connections' I/O).
    pub(super) fn keep_leases(self: Arc<Self>, pool: Pool, runtime: tokio::runtime::Handle) {
        let _context = runtime.enter();
        let every = self.options.lease / 3;
        loop {
            std::thread::sleep(every);
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let failing = match wait_for(self.renew(&pool, false)) {
                Ok(()) => None,
                Err(error) => {
                    let error = crate::error_chain(&error);
                    tracing::warn!(node = %self.node, %error, "renewing shard leases failed; retrying");
                    Some(error)
                }
            };
            if let Ok(mut last) = self.renewal_failing.lock() {
                *last = failing;
            }
        }
    }

    /// The store is going: its threads stop.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Give every shard back at once.
    pub(super) async fn leave(&self, pool: &Pool) -> Result<()> {
        let client = pool.get().await?;
        client
            .exec(
                "UPDATE shards SET owner = NULL, lease_until_ms = 0 WHERE owner = $1",
                &[&self.node],
            )
            .await?;
        client
            .exec("DELETE FROM nodes WHERE node = $1", &[&self.node])
            .await?;
        self.held
            .write()
            .expect("the held shards are never poisoned")
            .clear();
        Ok(())
    }

    /// Hear notifications until the store is dropped, on a thread and a
    /// connection of its own, connecting again when it drops. After a
    /// reconnection the runtime is told to look at what it may have missed.
    pub(super) fn listen(
        self: Arc<Self>,
        config: tokio_postgres::Config,
        pool: Pool,
        runtime: tokio::runtime::Handle,
    ) {
        let _context = runtime.enter();
        let mut reconnected = false;
        while !self.stopped.load(Ordering::Acquire) {
            if let Err(error) = wait_for(self.hear(&config, &pool, reconnected))
                && !self.stopped.load(Ordering::Acquire)
            {
                tracing::warn!(error = %crate::error_chain(&error), "listening for notifications failed; connecting again");
            }
            reconnected = true;
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Hear notifications on one connection until it drops.
    async fn hear(
        &self,
        config: &tokio_postgres::Config,
        pool: &Pool,
        reconnected: bool,
    ) -> Result<()> {
        let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
        let (heard, mut hearing) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        let _ = heard.send(note);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the notification connection dropped");
                        return;
                    }
                }
            }
        });
        let listening = client
            .batch_execute(&format!("LISTEN {CATALOG_CHANNEL}; LISTEN {RUN_CHANNEL}"))
            .await;
        if listening.is_ok() && reconnected {
            self.tell(ShardNews::CatalogChanged);
            self.rerun_held(pool).await?;
        }
        if listening.is_ok() {
            while let Some(note) = hearing.recv().await {
                self.heard(note.channel(), note.payload());
            }
        }
        driver.abort();
        listening?;
        Ok(())
    }

    fn heard(&self, channel: &str, payload: &str) {
        if channel == CATALOG_CHANNEL {
            self.tell(ShardNews::CatalogChanged);
        } else if channel == RUN_CHANNEL {
            let ours: Vec<InstanceId> = payload
                .split(',')
                .filter_map(|id| id.parse().ok().map(InstanceId))
                .filter(|id| self.owns(*id))
                .collect();
            if !ours.is_empty() {
                self.tell(ShardNews::Run(ours));
            }
        }
    }

    /// Tell the runtime to run every instance of the held shards that has
    /// a step to run (notifications may have been missed).
    async fn rerun_held(&self, pool: &Pool) -> Result<()> {
        let shards: Vec<u32> = self.holding().into_iter().map(|(shard, _)| shard).collect();
        let client = pool.get().await?;
        let running = running_in(&client, &shards).await?;
        self.tell(ShardNews::Run(
            running.iter().map(|instance| instance.id).collect(),
        ));
        Ok(())
    }
}

/// The instances of `shards` that have a step to run.
pub(super) async fn running_in(client: &impl Cached, shards: &[u32]) -> Result<Vec<Instance>> {
    let shards: Vec<i64> = shards.iter().map(|shard| i64::from(*shard)).collect();
    let rows = client
        .rows(
            &format!(
                "SELECT record FROM instances
                 WHERE status = 'running' AND id % {SHARDS} = ANY($1) ORDER BY id"
            ),
            &[&shards],
        )
        .await?;
    records(&rows, "record")
}

impl PostgresStore {
    /// The shards this node holds now (none for a tool that only looks).
    pub(super) fn held_shards(&self) -> Vec<u32> {
        self.membership
            .as_ref()
            .map(|membership| {
                membership
                    .holding()
                    .into_iter()
                    .map(|(shard, _)| shard)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl PostgresStore {
    /// [`PostgresStore::held_shards`] as the key `instance % SHARDS` compares to.
    pub(super) fn held_shard_keys(&self) -> Vec<i64> {
        self.held_shards().into_iter().map(i64::from).collect()
    }
}

impl Shards for PostgresStore {
    fn owns(&self, instance: InstanceId) -> bool {
        self.membership
            .as_ref()
            .is_some_and(|membership| membership.owns(instance))
    }

    fn take_news(&self) -> Option<mpsc::UnboundedReceiver<ShardNews>> {
        self.membership.as_ref()?.take_news()
    }

    fn not_serving(&self) -> Option<String> {
        match &self.membership {
            None => Some("this process takes no part in the work (no node options)".into()),
            Some(membership) => membership.not_serving(),
        }
    }

    fn leave(&self) {
        if let Some(membership) = &self.membership
            && let Err(error) = self.block(membership.leave(&self.pool))
        {
            tracing::warn!(error = %crate::error_chain(&error), "giving up the shards failed; they move when the leases end");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::PostgresOptions;
    use crate::store::postgres::tests::fresh_store_with;
    use crate::store::suite::{ingest, step};
    use crate::store::{Applied, Journal as _};

    fn node(name: &str, lease: Duration) -> PostgresOptions {
        PostgresOptions {
            node: Some(NodeOptions {
                name: name.into(),
                lease,
                address: None,
            }),
            ..PostgresOptions::default()
        }
    }

    /// Wait until `done` holds: leases move on the database's clock, so
    /// this polls it, failing after a bound far beyond the leases used.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < give_up, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_node_whose_shard_was_taken_cannot_commit_its_work() {
        // A long lease: the node renews only at open, so it still believes
        // it holds shard 3 when the database says otherwise.
        let (store, database) = fresh_store_with(&node("a", Duration::from_secs(120)));
        assert_eq!(
            store.held_shards().len(),
            SHARDS as usize,
            "alone: every shard"
        );
        assert_eq!(
            store.commit(&[ingest(3, "c")]).expect("store"),
            [Applied::Done]
        );
        database.run(&format!(
            "UPDATE shards SET owner = 'b#1.1', epoch = epoch + 1,
                 lease_until_ms = {DB_NOW_MS} + 120000 WHERE shard = 3"
        ));
        assert!(store.owns(InstanceId(3)), "it has not noticed");
        assert_eq!(
            store
                .commit(&[step(3, "c", 1, false, vec![]), ingest(4, "d")])
                .expect("store"),
            [Applied::Fenced { shard: 3 }, Applied::Done],
            "the step of the lost shard is refused; the others' work commits"
        );
        assert_eq!(
            store.history(InstanceId(3)).expect("store").len(),
            1,
            "nothing written"
        );
        assert_eq!(
            store.commit(&[ingest(19, "e")]).expect("store"),
            [Applied::Fenced { shard: 3 }],
            "an event starting an instance in it is refused whole"
        );
        assert!(store.event("evt-19").expect("store").is_none());
    }

    #[test]
    fn a_lease_that_ended_fences_even_with_nobody_else_holding_the_shard() {
        let (store, database) = fresh_store_with(&node("a", Duration::from_secs(120)));
        database.run("UPDATE shards SET lease_until_ms = 0 WHERE shard = 7");
        assert_eq!(
            store.commit(&[ingest(7, "c")]).expect("store"),
            [Applied::Fenced { shard: 7 }]
        );
    }

    #[test]
    fn nodes_share_the_shards_and_take_a_stopped_nodes_with_its_running_instances() {
        let lease = Duration::from_millis(900);
        let (a, database) = fresh_store_with(&node("a", lease));
        // Instance 5 has a step to run on node a.
        assert_eq!(a.commit(&[ingest(5, "c")]).expect("store"), [Applied::Done]);
        let b = PostgresStore::open(&database.url, &node("b", lease)).expect("store");
        let mut news = b.take_news().expect("a node hears news");
        eventually("two nodes share the shards evenly", || {
            a.held_shards().len() == 8 && b.held_shards().len() == 8
        });
        assert!(a.owns(InstanceId(5)) && !b.owns(InstanceId(5)));
        assert!(
            b.running_instances().expect("store").is_empty(),
            "a's to run"
        );
        // A second taker of one shard never gets it while it is held.
        assert_eq!(
            b.commit(&[step(5, "c", 1, false, vec![])]).expect("store"),
            [Applied::Fenced { shard: 5 }]
        );
        drop(a);
        eventually("b takes every shard once a's leases end", || {
            b.held_shards().len() == SHARDS as usize
        });
        let mut resumed = Vec::new();
        eventually(
            "b is told about the instances of the shards it took",
            || {
                while let Ok(news) = news.try_recv() {
                    if let ShardNews::Resume { running, .. } = news {
                        resumed.extend(running.into_iter().map(|instance| instance.id));
                    }
                }
                !resumed.is_empty()
            },
        );
        assert_eq!(resumed, [InstanceId(5)], "told to run a's interrupted step");
        assert_eq!(
            b.commit(&[step(5, "c", 1, false, vec![])]).expect("store"),
            [Applied::Done]
        );
    }

    #[test]
    fn the_fair_share_rounds_down_while_another_node_is_short() {
        let live = |holds: &[i64]| -> Vec<(String, i64)> {
            holds
                .iter()
                .enumerate()
                .map(|(n, holds)| (format!("n{n}"), *holds))
                .collect()
        };
        assert_eq!(fair_share("n0", &live(&[16])), 16);
        assert_eq!(fair_share("n0", &live(&[16, 0])), 8, "a joining node");
        assert_eq!(fair_share("n0", &live(&[6, 6, 4])), 5, "n2 is short");
        assert_eq!(fair_share("n2", &live(&[6, 6, 4])), 6, "the short one");
        assert_eq!(fair_share("n0", &live(&[5, 5, 6])), 6, "settled");
        assert_eq!(
            fair_share("n0", &live(&[])),
            16,
            "before its first heartbeat"
        );
    }

    #[test]
    fn a_lease_renewed_after_it_ran_out_by_the_nodes_clock_brings_its_work_back() {
        let (store, _database) = fresh_store_with(&node("a", Duration::from_secs(120)));
        let mut news = store.take_news().expect("a node hears news");
        assert_eq!(
            store.commit(&[ingest(3, "c")]).expect("store"),
            [Applied::Done]
        );
        let membership = store.membership.as_ref().expect("a node");
        // A renewal held up past the lease by this node's clock, not yet
        // by the database's: meanwhile the node turned instance 3 away.
        let past = Instant::now() - Duration::from_millis(1);
        for held in membership.held.write().expect("lock").values_mut() {
            held.until = past;
        }
        assert!(!store.owns(InstanceId(3)));
        store
            .block(membership.renew(&store.pool, false))
            .expect("renewed");
        assert!(store.owns(InstanceId(3)));
        match news.try_recv() {
            Ok(ShardNews::Resume { shards, running }) => {
                assert_eq!(shards.len(), SHARDS as usize);
                assert_eq!(
                    running
                        .iter()
                        .map(|instance| instance.id)
                        .collect::<Vec<_>>(),
                    [InstanceId(3)],
                    "its step is run again"
                );
            }
            other => panic!("expected the shards' work back, got {other:?}"),
        }
    }

    #[test]
    fn a_restarted_node_takes_its_predecessors_shards_at_once() {
        let lease = Duration::from_secs(120);
        let (first, database) = fresh_store_with(&node("a", lease));
        assert_eq!(
            first.commit(&[ingest(2, "c")]).expect("store"),
            [Applied::Done]
        );
        // Killed: nothing given back, its leases run for 2 minutes.
        first.membership.as_ref().expect("a node").stop();
        std::mem::forget(first);
        let again = PostgresStore::open(&database.url, &node("a", lease)).expect("open");
        assert_eq!(again.held_shards().len(), SHARDS as usize);
        let running = again.running_instances().expect("store");
        assert_eq!(
            running.len(),
            1,
            "its running instance is resumed by the runtime"
        );
        assert_eq!(
            again
                .commit(&[step(2, "c", 1, false, vec![])])
                .expect("store"),
            [Applied::Done]
        );
    }

    #[test]
    fn a_node_leaving_gives_its_shards_up_at_once() {
        let lease = Duration::from_secs(120);
        let (a, database) = fresh_store_with(&node("a", lease));
        let b = PostgresStore::open(&database.url, &node("b", Duration::from_millis(300)))
            .expect("store");
        assert!(
            b.held_shards().is_empty(),
            "a holds them all, for 2 minutes"
        );
        a.leave();
        eventually("b takes them at its next renewal", || {
            b.held_shards().len() == SHARDS as usize
        });
    }
}
