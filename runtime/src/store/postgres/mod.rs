//! The PostgreSQL backend of [`Store`](crate::store::Store), for a team
//! whose instances must live in a database it already runs, or that runs
//! several `journeyd` nodes on one.
//!
//! The traits are synchronous (the executor calls them from its own
//! threads, as it calls sled); the client is tokio-postgres, pooled by
//! deadpool. Each connection's I/O runs on a small runtime the store owns,
//! and a call waits for its queries on the calling thread
//! ([`PostgresStore::block`]), so a store call never needs, nor breaks,
//! the caller's runtime.
//!
//! Everything that must hold across nodes is enforced by the database:
//! version numbering and frequency caps take row or advisory locks in
//! their transaction, claims are rows with a lease on the database's
//! clock, canary counts are added in one statement.
//!
//! Files: `schema.sql` is the schema (applied by `migrate.rs`, which
//! keeps the version table); `catalog.rs` the catalog; `commit.rs` the
//! commit path; `journal.rs` instances and histories as read back;
//! `counts.rs` the funnel and standing counts commits move; `timers.rs`
//! timers; `customers.rs` profiles, views and frequency caps; `backup.rs`
//! backups; `outbox.rs` the outbox and its deliveries; `retention.rs`
//! purging finished instances and sweeping old records; `forget.rs`
//! forgetting a customer and scrubbing an anonymised instance.

mod backup;
mod catalog;
mod cluster;
mod cluster_status;
mod commit;
mod counts;
mod customers;
mod forget;
mod journal;
mod migrate;
mod outbox;
mod retention;
mod timers;

use std::future::Future;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use crate::store::{Error, Result};

pub use self::cluster::{NodeOptions, SHARDS, shard_of};
pub use self::cluster_status::{ClusterStatus, NodeStatus, ShardStatus};
pub use self::migrate::SCHEMA_VERSION;

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        if unreachable(&error) {
            Error::Unavailable(Box::new(error))
        } else {
            Error::Backend(Box::new(error))
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError as P;
        match error {
            P::Backend(error) => error.into(),
            // No connection to be had in time: the server is down or
            // every connection is stuck waiting for it.
            P::Timeout(_) | P::Closed => Error::Unavailable(Box::new(error)),
            _ => Error::Backend(Box::new(error)),
        }
    }
}

/// Whether `error` says the server could not be reached or went away (a
/// refused or lost connection, a server shutting down or starting), as
/// against a statement the server refused.
fn unreachable(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
        None => {
            std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

/// Tuning for the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections kept open at most.
    pub pool_size: usize,
    /// How this process takes part in the work, as one of the nodes
    /// sharing the database; `None` for a tool that only looks (it takes
    /// no shard, so it runs no instance).
    pub node: Option<NodeOptions>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            node: Some(NodeOptions::default()),
        }
    }
}

/// A store in a PostgreSQL database.
pub struct PostgresStore {
    /// Drives the connections' I/O; shut down in the background on drop,
    /// so dropping the store never blocks (nor panics inside a runtime).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// This process as a node: the shards it holds (`None`: it holds none).
    membership: Option<std::sync::Arc<cluster::Membership>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(membership) = &self.membership {
            membership.stop();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://user@host/db`; a
    /// Unix socket's directory as the host, percent-encoded) and bring its
    /// schema up to date.
    pub fn open(url: &str, options: &PostgresOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse()?;
        if let Some(node) = &options.node {
            // A node paused inside a transaction (a frozen VM, SIGSTOP)
            // would keep its shards' rows locked, and no other node could
            // take them: the server ends such a session after a lease.
            let timeout_ms = node.lease.as_millis().max(1_000);
            let mut settings = config.get_options().unwrap_or_default().to_owned();
            settings.push_str(&format!(
                " -c idle_in_transaction_session_timeout={timeout_ms}"
            ));
            config.options(settings.trim());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journeyd-postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(backend)?;
        let mut store = PostgresStore {
            runtime: Some(runtime),
            pool,
            membership: None,
        };
        store.block(migrate::migrate(&store.pool))?;
        if let Some(node) = &options.node {
            let membership = std::sync::Arc::new(cluster::Membership::new(node.clone()));
            // The first shards are taken before the store is handed out, so
            // the runtime resumes their instances as it starts.
            store.block(membership.renew(&store.pool, true))?;
            let handle = store.runtime.as_ref().expect("just built").handle();
            let (renewing, pool, on) = (membership.clone(), store.pool.clone(), handle.clone());
            std::thread::Builder::new()
                .name("journeyd-leases".into())
                .spawn(move || renewing.keep_leases(pool, on))?;
            let (listening, pool, on) = (membership.clone(), store.pool.clone(), handle.clone());
            std::thread::Builder::new()
                .name("journeyd-listen".into())
                .spawn(move || listening.listen(config, pool, on))?;
            store.membership = Some(membership);
        }
        Ok(store)
    }

    /// Statements sent so far, WAL written and the database's size.
    pub fn usage(&self) -> Result<PostgresUsage> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .one(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
                            pg_database_size(current_database())",
                    &[],
                )
                .await?;
            Ok(PostgresUsage {
                statements: STATEMENTS.load(std::sync::atomic::Ordering::Relaxed),
                wal_bytes: uint8(row.get(0)),
                database_bytes: uint8(row.get(1)),
            })
        })
    }

    /// Wait on this thread for `work`, whose connections' I/O runs on the
    /// store's runtime. Safe from any thread, inside a runtime or not: it
    /// enters the store's runtime only to reach its reactor and timers.
    fn block<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let _context = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .enter();
        wait_for(work)
    }
}

/// A read-only transaction on `client` whose reads all see one moment.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Wait on this thread for `work`, in a tokio runtime's context.
/// Unconstrained: called from a tokio task, the queries would otherwise
/// spend that task's cooperative budget, and once it ran out they would
/// yield forever (the task cannot yield while this thread waits on them).
fn wait_for<T>(work: impl Future<Output = T>) -> T {
    futures_executor::block_on(tokio::task::unconstrained(work))
}

/// Statements run through the connection's statement cache: each is
/// parsed once per connection, and every call after that is one round
/// trip. Futures of several calls on one connection that are awaited
/// together (`try_join!`) are pipelined: one round trip for all of them.
pub(super) trait Cached {
    /// Run a statement; how many rows it changed.
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64>;
    /// The rows a query returns.
    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>;
    /// The one row a query returns.
    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row>;
    /// The row a query returns, if any.
    async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>>;
}

/// Statements sent by every PostgreSQL store of this process (several
/// sent together share one round trip).
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What a PostgreSQL store has cost so far, for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresUsage {
    /// Statements this process sent.
    pub statements: u64,
    /// WAL the server has written, bytes (its whole history: compare two
    /// readings).
    pub wal_bytes: u64,
    /// The database's size on disk, bytes.
    pub database_bytes: u64,
}

/// [`Cached`] for a pooled connection and for a transaction on one.
macro_rules! cached {
    ($($client:ty),*) => {$(
        impl Cached for $client {
            async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let statement = self.prepare_cached(sql).await?;
                Ok(self.execute(&statement, params).await?)
            }
            async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let statement = self.prepare_cached(sql).await?;
                Ok(self.query(&statement, params).await?)
            }
            async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let statement = self.prepare_cached(sql).await?;
                Ok(self.query_one(&statement, params).await?)
            }
            async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let statement = self.prepare_cached(sql).await?;
                Ok(self.query_opt(&statement, params).await?)
            }
        }
    )*};
}

cached!(
    deadpool_postgres::Object,
    deadpool_postgres::Transaction<'_>
);

/// A backend error from anything that can say what went wrong.
fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend(Box::new(error))
}

/// A record as stored: its serde form, as `json`.
fn stored<T: Serialize>(record: &T) -> Json<&T> {
    Json(record)
}

/// A stored record read back from `row`'s column `column`.
fn record<T: DeserializeOwned>(row: &tokio_postgres::Row, column: &str) -> Result<T> {
    let Json(value) = row
        .try_get::<_, Json<T>>(column)
        .map_err(|error| Error::Corrupt {
            key: column.to_owned(),
            source: Box::new(error),
        })?;
    Ok(value)
}

/// Every record in `rows`' column `column`.
fn records<T: DeserializeOwned>(rows: &[tokio_postgres::Row], column: &str) -> Result<Vec<T>> {
    rows.iter().map(|row| record(row, column)).collect()
}

/// A time or count the runtime keeps as `u64`, as PostgreSQL's `bigint`.
fn int8(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `bigint` read back as the `u64` it was stored from.
fn uint8(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A store on a fresh database of the test server
    /// (`JOURNEYD_TEST_POSTGRES`, set by `scripts/postgres.sh`), dropped
    /// with the guard.
    pub(crate) fn fresh_store() -> (PostgresStore, TestDatabase) {
        fresh_store_with(&PostgresOptions::default())
    }

    /// [`fresh_store`] opened with `options`.
    pub(crate) fn fresh_store_with(options: &PostgresOptions) -> (PostgresStore, TestDatabase) {
        let server = std::env::var("JOURNEYD_TEST_POSTGRES").expect(
            "JOURNEYD_TEST_POSTGRES names a PostgreSQL server for the PostgreSQL backend's \
             tests: run tests/run.sh, or `source scripts/postgres.sh` first",
        );
        let database = TestDatabase::create(&server);
        let store = PostgresStore::open(&database.url, options).expect("open");
        (store, database)
    }

    /// A database made for one test, dropped after it.
    pub(crate) struct TestDatabase {
        server: String,
        name: String,
        /// Where it is.
        pub(crate) url: String,
    }

    impl TestDatabase {
        fn create(server: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let name = format!(
                "test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            admin(server, &format!("CREATE DATABASE {name}"));
            let (base, _) = server.rsplit_once('/').expect("a URL with a database");
            TestDatabase {
                url: format!("{base}/{name}"),
                server: server.to_owned(),
                name,
            }
        }
    }

    impl TestDatabase {
        /// Run `statement` on it, as another client would.
        pub(crate) fn run(&self, statement: &str) {
            admin(&self.url, statement);
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            admin(
                &self.server,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }

    /// Run one statement on the server's own database.
    fn admin(server: &str, statement: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
            tokio::spawn(connection);
            client.batch_execute(statement).await.expect(statement);
        });
    }

    #[test]
    fn the_postgres_store_passes_the_store_suite() {
        let (store, _database) = fresh_store();
        crate::store::suite::run(&store);
    }

    #[test]
    fn calls_from_one_tokio_task_never_run_out_of_its_budget() {
        use crate::store::Catalog as _;
        let (store, _database) = fresh_store();
        let store = std::sync::Arc::new(store);
        let (done, finished) = std::sync::mpsc::channel();
        let caller = store.clone();
        // One task that never yields: tokio's cooperative budget (128
        // operations) would run out long before the loop ends.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let calls = runtime.block_on(async {
                (0..1_000)
                    .map(|_| caller.catalog_version())
                    .collect::<Result<Vec<_>>>()
            });
            let _ = done.send(calls.map(|calls| calls.len()));
        });
        let calls = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("1,000 store calls from one task return");
        assert_eq!(calls.expect("calls"), 1_000);
    }

    #[test]
    fn opening_twice_applies_the_schema_once() {
        let (store, database) = fresh_store();
        drop(store);
        let again =
            PostgresStore::open(&database.url, &PostgresOptions::default()).expect("reopen");
        let versions = again
            .block(async {
                let client = again.pool.get().await?;
                let rows = client
                    .query("SELECT version FROM schema_version ORDER BY version", &[])
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| row.get::<_, i32>(0))
                    .collect::<Vec<_>>())
            })
            .expect("versions");
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    }
}
