//! Schema migrations: numbered scripts, applied in order at open, each in
//! its own transaction with its row in `schema_version`. Nodes starting at
//! once take turns (an advisory lock), so each script runs once.

use deadpool_postgres::Pool;

use crate::store::{Error, Result};

/// The migrations, in order: version `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("shards.sql")];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock migrations take (any number no other user of the
/// database takes: "journeyd" in ASCII).
const MIGRATION_LOCK: i64 = 0x6a6f_7572_6e65_7964;

/// Bring the schema up to [`SCHEMA_VERSION`]. A database written by a
/// newer build is refused: this one does not know its layout.
pub(super) async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    outcome
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let current: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::Backend(
            format!(
                "the database's schema is version {current}, newer than this journeyd's \
                 ({SCHEMA_VERSION}): run a journeyd at least as new as the one that wrote it"
            )
            .into(),
        ));
    }
    for version in current + 1..=SCHEMA_VERSION {
        let script = MIGRATIONS[(version - 1) as usize];
        let transaction = client.transaction().await?;
        transaction.batch_execute(script).await?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    Ok(())
}
