//! Plugins, tags, journeys, migrations, run counts and settings on sled.

use super::{SledStore, keys};
use crate::store::{
    AuditEntry, CanaryCounts, Catalog, IntegrationRecord, JourneyRecord, MigrationRecord,
    PluginRecord, Result, TagRecord, TokenRecord, VersionStats,
};

impl SledStore {
    pub(super) fn numbering(&self) -> std::sync::MutexGuard<'_, ()> {
        self.versions
            .lock()
            .expect("the version numbering lock is never poisoned")
    }

    fn latest_version(&self, prefix: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self.db.scan_prefix(prefix).next_back().transpose()?)
    }

    /// Write `batch` with the catalog's version moved by one, durably.
    /// The version counts catalog changes on its own (it does not take
    /// ids from the sequence instances are numbered from).
    fn change_catalog(&self, mut batch: sled::Batch) -> Result<()> {
        {
            let _changing = self
                .catalog_changes
                .lock()
                .expect("the catalog change lock is never poisoned");
            let next = self.catalog_version()? + 1;
            batch.insert(keys::catalog_version(), &next.to_be_bytes());
            self.db.apply_batch(batch)?;
        }
        self.db.flush()?;
        Ok(())
    }
}

impl Catalog for SledStore {
    fn put_plugin(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        at_ms: u64,
    ) -> Result<PluginRecord> {
        let _numbering = self.numbering();
        let latest = match self.latest_version(&keys::plugin_versions(name))? {
            Some((key, value)) => Some(self.codec.decode::<PluginRecord>(&key, &value)?),
            None => None,
        };
        if let Some(latest) = &latest
            && latest.digest == digest
        {
            return Ok(latest.clone());
        }
        let record = PluginRecord {
            name: name.to_owned(),
            version: latest.map_or(1, |latest| latest.version + 1),
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            pushed_at_ms: at_ms,
        };
        // The blob is durable before any version points at it.
        self.blobs.insert(keys::blob(digest), bytes)?;
        self.blobs.flush()?;
        let mut batch = sled::Batch::default();
        batch.insert(
            keys::plugin(name, record.version),
            self.codec.encode(&record)?,
        );
        self.change_catalog(batch)?;
        Ok(record)
    }

    fn plugin_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .get(keys::blob(digest))?
            .map(|bytes| bytes.to_vec()))
    }

    fn plugins(&self) -> Result<Vec<PluginRecord>> {
        self.scan(&keys::plugins())
    }

    fn put_tag(&self, record: &TagRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        let encoded = self.codec.encode(record)?;
        batch.insert(keys::tag(&record.plugin, &record.tag), &*encoded);
        batch.insert(
            keys::tag_change(&record.plugin, self.db.generate_id()?),
            encoded,
        );
        self.change_catalog(batch)
    }

    fn count_canary_runs(
        &self,
        rollout: &TagRecord,
        runs: u64,
        failures: u64,
    ) -> Result<CanaryCounts> {
        let key = (
            rollout.plugin.clone(),
            rollout.tag.clone(),
            rollout.changed_at_ms,
        );
        let mut canaries = self
            .canaries
            .lock()
            .expect("the canary counts lock is never poisoned");
        if canaries.len() > 1024 {
            // Old rollouts: a tag is set again far less often than this.
            canaries.clear();
        }
        let counts = canaries.entry(key).or_default();
        counts.runs += runs;
        counts.failures += failures;
        Ok(*counts)
    }

    fn tags(&self) -> Result<Vec<TagRecord>> {
        self.scan(&keys::tags())
    }

    fn tag_changes(&self, plugin: &str) -> Result<Vec<TagRecord>> {
        self.scan(&keys::tag_changes_of(plugin))
    }

    fn add_version_stats(&self, counted: &[VersionStats]) -> Result<()> {
        // Read, add and write under the numbering lock, so two savers never
        // both add to the same old count.
        let _numbering = self.numbering();
        let mut batch = sled::Batch::default();
        for version in counted {
            let key = keys::version_stats(&version.plugin, version.version);
            let mut total = self
                .get::<VersionStats>(&key)?
                .unwrap_or_else(|| VersionStats {
                    plugin: version.plugin.clone(),
                    version: version.version,
                    ..VersionStats::default()
                });
            total.add(version);
            batch.insert(key, self.codec.encode(&total)?);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn version_stats(&self) -> Result<Vec<VersionStats>> {
        self.scan(&keys::all_version_stats())
    }

    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord> {
        let _numbering = self.numbering();
        let version = match self.latest_version(&keys::journey_versions(name))? {
            Some((key, value)) => self.codec.decode::<JourneyRecord>(&key, &value)?.version + 1,
            None => 1,
        };
        let record = JourneyRecord {
            name: name.to_owned(),
            version,
            source: source.to_owned(),
            deployed_at_ms: at_ms,
        };
        let mut batch = sled::Batch::default();
        batch.insert(keys::journey(name, version), self.codec.encode(&record)?);
        self.change_catalog(batch)?;
        Ok(record)
    }

    fn journeys(&self) -> Result<Vec<JourneyRecord>> {
        self.scan(&keys::journeys())
    }

    fn put_migration(&self, record: &MigrationRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(
            keys::migration(&record.journey, record.from_version),
            self.codec.encode(record)?,
        );
        self.change_catalog(batch)
    }

    fn migrations(&self) -> Result<Vec<MigrationRecord>> {
        self.scan(&keys::migrations())
    }

    fn catalog_version(&self) -> Result<u64> {
        Ok(self
            .db
            .get(keys::catalog_version())?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn put_integration(&self, record: &IntegrationRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(
            keys::integration(&record.channel),
            self.codec.encode(record)?,
        );
        self.change_catalog(batch)
    }

    fn integrations(&self) -> Result<Vec<IntegrationRecord>> {
        self.scan(&keys::integrations())
    }

    fn put_token(&self, record: &TokenRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(keys::token(&record.name), self.codec.encode(record)?);
        self.change_catalog(batch)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.scan(&keys::tokens())
    }

    fn remove_token(&self, name: &str) -> Result<bool> {
        let key = keys::token(name);
        if self.db.get(&key)?.is_none() {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.remove(key);
        self.change_catalog(batch)?;
        Ok(true)
    }

    fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(keys::meta(name), self.codec.encode(value)?);
        self.change_catalog(batch)
    }

    fn meta(&self, name: &str) -> Result<Option<serde_json::Value>> {
        self.get(&keys::meta(name))
    }

    fn append_audit(&self, mut entry: AuditEntry) -> Result<AuditEntry> {
        // sled's ids grow (from 0); the log reads in their order and
        // numbers its entries from 1, so `after = 0` lists them all.
        entry.seq = self.db.generate_id()? + 1;
        self.db
            .insert(keys::audit(entry.seq), self.codec.encode(&entry)?)?;
        self.db.flush()?;
        Ok(entry)
    }

    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let start = keys::audit(after.saturating_add(1));
        self.db
            .range(start..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(&keys::audit_log()))
            })
            .take(limit)
            .map(|item| {
                let (key, bytes) = item?;
                self.codec.decode(&key, &bytes)
            })
            .collect()
    }
}
