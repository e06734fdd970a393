//! Keys of the catalog: plugin and journey versions, tags, run counts,
//! migrations, integrations, tokens, settings, codec dictionaries and the
//! audit log.

use super::*;

/// The key of the catalog's version.
pub fn catalog_version() -> Vec<u8> {
    vec![CATALOG_VERSION]
}

/// The key of the integration of `channel`.
pub fn integration(channel: &str) -> Vec<u8> {
    key(INTEGRATION, &[channel.as_bytes()])
}

/// The prefix of every integration.
pub fn integrations() -> Vec<u8> {
    vec![INTEGRATION]
}

/// The key of the API token `name`.
pub fn token(name: &str) -> Vec<u8> {
    key(TOKEN, &[name.as_bytes()])
}

/// The prefix of every API token.
pub fn tokens() -> Vec<u8> {
    vec![TOKEN]
}

/// The key of version `version` of journey `name`.
pub fn journey(name: &str, version: u32) -> Vec<u8> {
    key(JOURNEY, &[name.as_bytes(), &[0], &version.to_be_bytes()])
}

/// The prefix of every journey version.
pub fn journeys() -> Vec<u8> {
    vec![JOURNEY]
}

/// The prefix of the versions of journey `name`.
pub fn journey_versions(name: &str) -> Vec<u8> {
    key(JOURNEY, &[name.as_bytes(), &[0]])
}

/// The key of version `version` of plugin `name`.
pub fn plugin(name: &str, version: u32) -> Vec<u8> {
    key(PLUGIN, &[name.as_bytes(), &[0], &version.to_be_bytes()])
}

/// The prefix of every plugin version.
pub fn plugins() -> Vec<u8> {
    vec![PLUGIN]
}

/// The prefix of the versions of plugin `name`.
pub fn plugin_versions(name: &str) -> Vec<u8> {
    key(PLUGIN, &[name.as_bytes(), &[0]])
}

/// The key of plugin bytes by digest.
pub fn blob(digest: &str) -> Vec<u8> {
    key(BLOB, &[digest.as_bytes()])
}

/// The key of tag `tag` of plugin `plugin`.
pub fn tag(plugin: &str, tag: &str) -> Vec<u8> {
    key(TAG, &[plugin.as_bytes(), &[0], tag.as_bytes()])
}

/// The prefix of every plugin tag.
pub fn tags() -> Vec<u8> {
    vec![TAG]
}

/// The key of change `seq` of a tag of plugin `plugin`.
pub fn tag_change(plugin: &str, seq: u64) -> Vec<u8> {
    key(TAG_CHANGE, &[plugin.as_bytes(), &[0], &seq.to_be_bytes()])
}

/// The prefix of the tag changes of plugin `plugin`.
pub fn tag_changes_of(plugin: &str) -> Vec<u8> {
    key(TAG_CHANGE, &[plugin.as_bytes(), &[0]])
}

/// The key of the run counts of version `version` of plugin `plugin`.
pub fn version_stats(plugin: &str, version: u32) -> Vec<u8> {
    key(
        VERSION_STATS,
        &[plugin.as_bytes(), &[0], &version.to_be_bytes()],
    )
}

/// The prefix of every version's run counts.
pub fn all_version_stats() -> Vec<u8> {
    vec![VERSION_STATS]
}

/// The key of the migration of journey `journey` away from version `from`.
pub fn migration(journey: &str, from: u32) -> Vec<u8> {
    key(MIGRATION, &[journey.as_bytes(), &[0], &from.to_be_bytes()])
}

/// The prefix of every journey migration.
pub fn migrations() -> Vec<u8> {
    vec![MIGRATION]
}

/// The key of runtime setting `name`.
pub fn meta(name: &str) -> Vec<u8> {
    key(META, &[name.as_bytes()])
}

/// The key of compression dictionary `id`.
pub fn dictionary(id: u32) -> Vec<u8> {
    key(DICTIONARY, &[&id.to_be_bytes()])
}

/// The prefix of every compression dictionary.
pub fn dictionaries() -> Vec<u8> {
    vec![DICTIONARY]
}

/// The dictionary id in a dictionary key.
pub fn dictionary_of(key: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = key.strip_prefix(&[DICTIONARY])?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The key of audit entry `seq`.
pub fn audit(seq: u64) -> Vec<u8> {
    key(AUDIT, &[&seq.to_be_bytes()])
}

/// The prefix of the audit log.
pub fn audit_log() -> Vec<u8> {
    vec![AUDIT]
}
