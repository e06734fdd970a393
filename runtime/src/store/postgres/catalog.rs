//! Plugins, tags, journeys, migrations, run counts and settings on
//! PostgreSQL. Every change moves `catalog_version` in its transaction and
//! notifies `journeyd_catalog`, so other nodes reload soon after it
//! commits (the notification is a hint; the version is the truth).

use deadpool_postgres::Transaction;

use super::{Cached, PostgresStore, int8, record, records, stored, uint8};
use crate::store::{
    AuditEntry, CanaryCounts, Catalog, IntegrationRecord, JourneyRecord, MigrationRecord,
    PluginRecord, Result, TagRecord, TokenRecord, VersionStats,
};

/// The advisory lock that orders audit appends (any number unique to it).
const AUDIT_LOCK: i64 = 0x6a6f_7572_6e65_7901;

/// The channel a catalog change is announced on.
pub const CATALOG_CHANNEL: &str = "journeyd_catalog";

/// Move the catalog's version, in the transaction of the change, and
/// announce it when the transaction commits.
async fn catalog_changed(transaction: &Transaction<'_>) -> Result<()> {
    transaction
        .batch_execute(&format!(
            "UPDATE catalog_version SET version = version + 1; NOTIFY {CATALOG_CHANNEL}"
        ))
        .await?;
    Ok(())
}

/// Take the lock that numbers versions of `name` (plugins or journeys)
/// until the transaction ends, so two nodes never number one version twice.
async fn numbering(transaction: &Transaction<'_>, kind: &str, name: &str) -> Result<()> {
    transaction
        .exec(
            "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
            &[&kind, &name],
        )
        .await?;
    Ok(())
}

/// `version` (a `u32` everywhere in the runtime) as PostgreSQL's `integer`.
pub(super) fn int4(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

impl PostgresStore {
    /// Every record of `table`'s `record` column, in `order`.
    fn all<T: serde::de::DeserializeOwned>(&self, query: &str) -> Result<Vec<T>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client.rows(query, &[]).await?;
            records(&rows, "record")
        })
    }

    /// Run `statement` with `params` and move the catalog's version, in
    /// one transaction.
    fn change_catalog(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let changed = transaction.exec(statement, params).await?;
            catalog_changed(&transaction).await?;
            transaction.commit().await?;
            Ok(changed)
        })
    }
}

impl Catalog for PostgresStore {
    fn put_plugin(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        at_ms: u64,
    ) -> Result<PluginRecord> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            numbering(&transaction, "plugin", name).await?;
            let latest = transaction
                .opt(
                    "SELECT record FROM plugins WHERE name = $1 ORDER BY version DESC LIMIT 1",
                    &[&name],
                )
                .await?
                .map(|row| record::<PluginRecord>(&row, "record"))
                .transpose()?;
            if let Some(latest) = latest.as_ref().filter(|latest| latest.digest == digest) {
                return Ok(latest.clone());
            }
            let plugin = PluginRecord {
                name: name.to_owned(),
                version: latest.map_or(1, |latest| latest.version + 1),
                digest: digest.to_owned(),
                size: bytes.len() as u64,
                pushed_at_ms: at_ms,
            };
            transaction
                .exec(
                    "INSERT INTO blobs (digest, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&digest, &bytes],
                )
                .await?;
            transaction
                .exec(
                    "INSERT INTO plugins (name, version, record) VALUES ($1, $2, $3)",
                    &[&name, &int4(plugin.version), &stored(&plugin)],
                )
                .await?;
            catalog_changed(&transaction).await?;
            transaction.commit().await?;
            Ok(plugin)
        })
    }

    fn plugin_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .opt("SELECT bytes FROM blobs WHERE digest = $1", &[&digest])
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn plugins(&self) -> Result<Vec<PluginRecord>> {
        self.all("SELECT record FROM plugins ORDER BY name, version")
    }

    fn put_tag(&self, tag: &TagRecord) -> Result<()> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            transaction
                .exec(
                    "INSERT INTO tags (plugin, tag, record) VALUES ($1, $2, $3)
                     ON CONFLICT (plugin, tag) DO UPDATE SET record = excluded.record",
                    &[&tag.plugin, &tag.tag, &stored(tag)],
                )
                .await?;
            transaction
                .exec(
                    "INSERT INTO tag_changes (plugin, record) VALUES ($1, $2)",
                    &[&tag.plugin, &stored(tag)],
                )
                .await?;
            catalog_changed(&transaction).await?;
            transaction.commit().await?;
            Ok(())
        })
    }

    fn tags(&self) -> Result<Vec<TagRecord>> {
        self.all("SELECT record FROM tags ORDER BY plugin, tag")
    }

    fn tag_changes(&self, plugin: &str) -> Result<Vec<TagRecord>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT record FROM tag_changes WHERE plugin = $1 ORDER BY seq",
                    &[&plugin],
                )
                .await?;
            records(&rows, "record")
        })
    }

    fn count_canary_runs(
        &self,
        rollout: &TagRecord,
        runs: u64,
        failures: u64,
    ) -> Result<CanaryCounts> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .one(
                    "INSERT INTO canary_runs (plugin, tag, set_at_ms, runs, failures)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (plugin, tag, set_at_ms) DO UPDATE
                     SET runs = canary_runs.runs + excluded.runs,
                         failures = canary_runs.failures + excluded.failures
                     RETURNING runs, failures",
                    &[
                        &rollout.plugin,
                        &rollout.tag,
                        &int8(rollout.changed_at_ms),
                        &int8(runs),
                        &int8(failures),
                    ],
                )
                .await?;
            Ok(CanaryCounts {
                runs: uint8(row.get(0)),
                failures: uint8(row.get(1)),
            })
        })
    }

    fn add_version_stats(&self, counted: &[VersionStats]) -> Result<()> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            for version in counted {
                let number = int4(version.version);
                // The row lock holds off another node's addition until
                // this transaction ends, so neither adds to an old count.
                transaction
                    .exec(
                        "INSERT INTO version_stats (plugin, version, record) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[
                            &version.plugin,
                            &number,
                            &stored(&VersionStats {
                                plugin: version.plugin.clone(),
                                version: version.version,
                                ..VersionStats::default()
                            }),
                        ],
                    )
                    .await?;
                let row = transaction
                    .one(
                        "SELECT record FROM version_stats WHERE plugin = $1 AND version = $2
                         FOR UPDATE",
                        &[&version.plugin, &number],
                    )
                    .await?;
                let mut total: VersionStats = record(&row, "record")?;
                total.add(version);
                transaction
                    .exec(
                        "UPDATE version_stats SET record = $3 WHERE plugin = $1 AND version = $2",
                        &[&version.plugin, &number, &stored(&total)],
                    )
                    .await?;
            }
            transaction.commit().await?;
            Ok(())
        })
    }

    fn version_stats(&self) -> Result<Vec<VersionStats>> {
        self.all("SELECT record FROM version_stats ORDER BY plugin, version")
    }

    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            numbering(&transaction, "journey", name).await?;
            let latest: Option<i32> = transaction
                .one(
                    "SELECT max(version) FROM journeys WHERE name = $1",
                    &[&name],
                )
                .await?
                .get(0);
            let journey = JourneyRecord {
                name: name.to_owned(),
                version: latest.map_or(1, |latest| latest as u32 + 1),
                source: source.to_owned(),
                deployed_at_ms: at_ms,
            };
            transaction
                .exec(
                    "INSERT INTO journeys (name, version, record) VALUES ($1, $2, $3)",
                    &[&name, &int4(journey.version), &stored(&journey)],
                )
                .await?;
            catalog_changed(&transaction).await?;
            transaction.commit().await?;
            Ok(journey)
        })
    }

    fn journeys(&self) -> Result<Vec<JourneyRecord>> {
        self.all("SELECT record FROM journeys ORDER BY name, version")
    }

    fn put_migration(&self, migration: &MigrationRecord) -> Result<()> {
        self.change_catalog(
            "INSERT INTO migrations (journey, from_version, record) VALUES ($1, $2, $3)
             ON CONFLICT (journey, from_version) DO UPDATE SET record = excluded.record",
            &[
                &migration.journey,
                &int4(migration.from_version),
                &stored(migration),
            ],
        )
        .map(drop)
    }

    fn migrations(&self) -> Result<Vec<MigrationRecord>> {
        self.all("SELECT record FROM migrations ORDER BY journey, from_version")
    }

    fn put_integration(&self, integration: &IntegrationRecord) -> Result<()> {
        self.change_catalog(
            "INSERT INTO integrations (channel, record) VALUES ($1, $2)
             ON CONFLICT (channel) DO UPDATE SET record = excluded.record",
            &[&integration.channel, &stored(integration)],
        )
        .map(drop)
    }

    fn integrations(&self) -> Result<Vec<IntegrationRecord>> {
        self.all("SELECT record FROM integrations ORDER BY channel")
    }

    fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.change_catalog(
            "INSERT INTO tokens (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            &[&token.name, &stored(token)],
        )
        .map(drop)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.all("SELECT record FROM tokens ORDER BY name")
    }

    fn remove_token(&self, name: &str) -> Result<bool> {
        Ok(self.change_catalog("DELETE FROM tokens WHERE name = $1", &[&name])? > 0)
    }

    fn catalog_version(&self) -> Result<u64> {
        self.block(async {
            let client = self.pool.get().await?;
            let row = client
                .one("SELECT version FROM catalog_version", &[])
                .await?;
            Ok(uint8(row.get(0)))
        })
    }

    fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        self.change_catalog(
            "INSERT INTO meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &stored(value)],
        )
        .map(drop)
    }

    fn meta(&self, name: &str) -> Result<Option<serde_json::Value>> {
        self.block(async {
            let client = self.pool.get().await?;
            client
                .opt("SELECT value FROM meta WHERE name = $1", &[&name])
                .await?
                .map(|row| record(&row, "value"))
                .transpose()
        })
    }

    fn append_audit(&self, mut entry: AuditEntry) -> Result<AuditEntry> {
        self.block(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            // One append at a time across nodes, so entries commit in the
            // order of their numbers and a reader following `after` never
            // passes one that commits later with a smaller number.
            transaction
                .exec("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
                .await?;
            let seq: i64 = transaction
                .one("SELECT nextval('audit_seq_seq')", &[])
                .await?
                .get(0);
            entry.seq = uint8(seq);
            transaction
                .exec(
                    "INSERT INTO audit (seq, record) VALUES ($1, $2)",
                    &[&seq, &stored(&entry)],
                )
                .await?;
            transaction.commit().await?;
            Ok(entry)
        })
    }

    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.block(async {
            let client = self.pool.get().await?;
            let rows = client
                .rows(
                    "SELECT record FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&int8(after), &int8(limit as u64)],
                )
                .await?;
            records(&rows, "record")
        })
    }
}
