//! The catalog: what the runtime runs (plugin versions and their bytes,
//! tags and rollouts, journey versions and migrations), what it counted of
//! each plugin version, and the runtime settings operators change.

use super::{
    AuditEntry, IntegrationRecord, JourneyRecord, MigrationRecord, PluginRecord, Result, TagRecord,
    TokenRecord, VersionStats,
};

/// The runs of a rollout's canary version so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanaryCounts {
    /// Steps the canary ran.
    pub runs: u64,
    /// Of those, steps that failed.
    pub failures: u64,
}

/// Plugins, tags, journeys, migrations, run counts and settings. Every
/// write is durable on return, except canary counts (statistics of the
/// rollout in progress).
pub trait Catalog: Send + Sync {
    /// Store plugin bytes under their digest and give `name` a new version
    /// pointing at them, unless the latest version of `name` already has
    /// this digest (then that record is returned). Two pushes at once never
    /// get the same version.
    fn put_plugin(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        at_ms: u64,
    ) -> Result<PluginRecord>;
    /// The component bytes with this digest.
    fn plugin_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// Every plugin version, by name then version.
    fn plugins(&self) -> Result<Vec<PluginRecord>>;

    /// Point a plugin tag at `record` and append it to the plugin's tag
    /// changes.
    fn put_tag(&self, record: &TagRecord) -> Result<()>;
    /// Every plugin tag, by plugin then tag.
    fn tags(&self) -> Result<Vec<TagRecord>>;
    /// Every change of the tags of `plugin`, oldest first.
    fn tag_changes(&self, plugin: &str) -> Result<Vec<TagRecord>>;

    /// Count `runs` runs of the canary of `rollout` (a tag record with a
    /// canary; a new record is a new rollout), `failures` of them failed,
    /// and return the rollout's totals as counted by every runtime, so the
    /// rollback rule judges all of them.
    fn count_canary_runs(
        &self,
        rollout: &TagRecord,
        runs: u64,
        failures: u64,
    ) -> Result<CanaryCounts>;

    /// Add run counts to the saved ones of the same versions: each
    /// runtime adds what it counted since it last saved, so counts from
    /// several never overwrite each other.
    fn add_version_stats(&self, counted: &[VersionStats]) -> Result<()>;
    /// The saved run counts of every plugin version.
    fn version_stats(&self) -> Result<Vec<VersionStats>>;

    /// Store a journey definition as the next version of `name`. Two
    /// deploys at once never get the same version.
    fn put_journey(&self, name: &str, source: &str, at_ms: u64) -> Result<JourneyRecord>;
    /// Every journey version, by name then version.
    fn journeys(&self) -> Result<Vec<JourneyRecord>>;
    /// Store a journey migration (replacing one away from the same version).
    fn put_migration(&self, record: &MigrationRecord) -> Result<()>;
    /// Every journey migration.
    fn migrations(&self) -> Result<Vec<MigrationRecord>>;

    /// Store an integration, replacing the one of the same channel.
    fn put_integration(&self, record: &IntegrationRecord) -> Result<()>;
    /// Every integration, by channel.
    fn integrations(&self) -> Result<Vec<IntegrationRecord>>;

    /// Store an API token (by the hash of its secret), replacing one of
    /// the same name.
    fn put_token(&self, record: &TokenRecord) -> Result<()>;
    /// Every API token, by name.
    fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Remove the token `name`; whether there was one.
    fn remove_token(&self, name: &str) -> Result<bool>;

    /// A number that moves whenever the catalog changes (plugins, tags,
    /// journeys, migrations, integrations, tokens, settings), whoever changed it: a runtime that
    /// sees it move reloads what it holds of the catalog in memory.
    fn catalog_version(&self) -> Result<u64>;

    /// Keep a runtime setting across starts.
    fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()>;
    /// A runtime setting, if kept.
    fn meta(&self, name: &str) -> Result<Option<serde_json::Value>>;

    /// Append `entry` to the audit log (its `seq` is set here); returns
    /// it as stored. Durable on return.
    fn append_audit(&self, entry: AuditEntry) -> Result<AuditEntry>;
    /// Audit entries after `after` (by `seq`), oldest first, at most
    /// `limit`.
    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;
}
