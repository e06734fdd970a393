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
//! keeps the version table); `catalog.rs` the catalog; `journal.rs` the
//! commit path, instances and timers; `customers.rs` profiles, views and
//! frequency caps; `backup.rs` backups; `outbox.rs` the outbox and its
//! deliveries.

mod backup;
mod catalog;
mod customers;
mod journal;
mod migrate;
mod outbox;

use std::future::Future;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::types::Json;

use crate::store::{Error, Result};

pub use self::migrate::SCHEMA_VERSION;

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Backend(Box::new(error))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Error::Backend(Box::new(error))
    }
}

/// Tuning for the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections kept open at most.
    pub pool_size: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { pool_size: 16 }
    }
}

/// A store in a PostgreSQL database.
pub struct PostgresStore {
    /// Drives the connections' I/O; shut down in the background on drop,
    /// so dropping the store never blocks (nor panics inside a runtime).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
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
        let config: tokio_postgres::Config = url.parse()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journeyd-postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config,
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
        let store = PostgresStore {
            runtime: Some(runtime),
            pool,
        };
        store.block(migrate::migrate(&store.pool))?;
        Ok(store)
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
        futures_executor::block_on(work)
    }
}

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
        let server = std::env::var("JOURNEYD_TEST_POSTGRES").expect(
            "JOURNEYD_TEST_POSTGRES names a PostgreSQL server for the PostgreSQL backend's \
             tests: run tests/run.sh, or `source scripts/postgres.sh` first",
        );
        let database = TestDatabase::create(&server);
        let store = PostgresStore::open(&database.url, &PostgresOptions::default()).expect("open");
        (store, database)
    }

    /// A database made for one test, dropped after it.
    pub(crate) struct TestDatabase {
        server: String,
        name: String,
        url: String,
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
        crate::store::suite::run_journal(&store);
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
