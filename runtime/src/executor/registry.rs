//! The in-memory index of deployed journeys, pushed plugins and their tags.
//!
//! Loaded from the store at start and updated after every successful
//! deploy, push or tag change, so resolving a step's plugin or an event's
//! journeys never touches the store on the step path. Resolution happens at
//! each step start: an instance already running picks up a moved tag at its
//! next step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::journey::{Journey, PluginRef, Selector};
use crate::store::{CanaryCounts, InstanceId, MigrationRecord, PluginRecord, TagRecord};

/// A tag as the step path sees it: where it points, plus the counts of the
/// rollout in progress as the store last reported them.
#[derive(Debug)]
pub struct Tag {
    /// Where it points.
    pub record: TagRecord,
    /// Steps the canary version ran in this rollout (every runtime's).
    pub canary_runs: AtomicU64,
    /// Of those, steps that failed.
    pub canary_failures: AtomicU64,
    /// Set once an automatic rollback has been started.
    pub rolling_back: AtomicBool,
}

impl Tag {
    fn new(record: TagRecord) -> Self {
        Tag {
            record,
            canary_runs: AtomicU64::new(0),
            canary_failures: AtomicU64::new(0),
            rolling_back: AtomicBool::new(false),
        }
    }

    /// Take the rollout's counts as the store totals them; true when its
    /// rollback rule now says to roll back (once per rollout).
    pub fn observe_canary(&self, counts: CanaryCounts) -> bool {
        let CanaryCounts { runs, failures } = counts;
        self.canary_runs.fetch_max(runs, Ordering::Relaxed);
        self.canary_failures.fetch_max(failures, Ordering::Relaxed);
        let Some(rule) = self
            .record
            .canary
            .as_ref()
            .and_then(|canary| canary.rollback)
        else {
            return false;
        };
        runs >= rule.min_runs
            && failures as f64 / runs as f64 > rule.max_error_rate
            && !self.rolling_back.swap(true, Ordering::AcqRel)
    }
}

/// What a step runs: the plugin version, and the tag it came through.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plugin version.
    pub record: PluginRecord,
    /// The tag, when the step named one.
    pub tag: Option<Arc<Tag>>,
    /// Whether the instance is in the tag's rollout share.
    pub canary: bool,
}

#[derive(Default)]
struct Index {
    /// Every journey version, by name then version.
    journeys: HashMap<String, Vec<Arc<Journey>>>,
    /// Journey names by the event type that triggers them.
    triggers: HashMap<String, Vec<String>>,
    /// Plugin versions by name, ascending.
    plugins: HashMap<String, Vec<PluginRecord>>,
    /// Tags by plugin, then tag name.
    tags: HashMap<String, HashMap<String, Arc<Tag>>>,
    /// Migrations by journey, then the version they move instances away from.
    migrations: HashMap<String, HashMap<u32, Arc<MigrationRecord>>>,
}

/// Deployed journeys, pushed plugins and their tags.
#[derive(Default)]
pub struct Registry {
    index: RwLock<Index>,
}

/// Which side of a rollout an instance is on: a number in `0..100` that
/// depends only on the instance, plugin and tag, so an instance keeps its
/// side for every step and across restarts.
pub fn rollout_bucket(instance: InstanceId, plugin: &str, tag: &str) -> u8 {
    crate::journey::stable_percentile(plugin, tag, instance.0)
}

impl Registry {
    /// Take everything `other` holds instead of what this one does (a
    /// catalog reloaded from the store).
    pub fn replace_with(&self, other: Registry) {
        let index = other
            .index
            .into_inner()
            .expect("registry lock is never poisoned");
        *self.write() = index;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().expect("registry lock is never poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().expect("registry lock is never poisoned")
    }

    /// Record a journey version. Versions must arrive in ascending order.
    pub fn add_journey(&self, version: u32, journey: Journey) {
        let mut index = self.write();
        let name = journey.name().to_owned();
        let trigger = journey.definition.trigger.event.clone();
        let versions = index.journeys.entry(name.clone()).or_default();
        debug_assert_eq!(versions.len() + 1, version as usize);
        versions.push(Arc::new(journey));
        let triggered = index.triggers.entry(trigger).or_default();
        if !triggered.contains(&name) {
            triggered.push(name);
        }
    }

    /// A journey version, if deployed.
    pub fn journey(&self, name: &str, version: u32) -> Option<Arc<Journey>> {
        let index = self.read();
        let versions = index.journeys.get(name)?;
        versions
            .get(usize::try_from(version).ok()?.checked_sub(1)?)
            .cloned()
    }

    /// The latest version of each journey `event` triggers, with its number.
    pub fn triggered_by(&self, event: &str) -> Vec<(u32, Arc<Journey>)> {
        let index = self.read();
        index
            .triggers
            .get(event)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                let versions = index.journeys.get(name)?;
                let latest = versions.last()?.clone();
                Some((versions.len() as u32, latest))
            })
            .collect()
    }

    /// The latest version of every journey that listens to `event` (its
    /// trigger or a declared kind): whose exit rules and engagement apply.
    /// In name order, so whichever decides (an engagement declared twice)
    /// decides the same way every time.
    pub fn listening_to(&self, event: &str) -> Vec<Arc<Journey>> {
        let mut listening: Vec<Arc<Journey>> = self
            .read()
            .journeys
            .values()
            .filter_map(|versions| versions.last())
            .filter(|journey| journey.listens_to(event))
            .cloned()
            .collect();
        listening.sort_by(|a, b| a.name().cmp(b.name()));
        listening
    }

    /// Record a plugin version.
    pub fn add_plugin(&self, record: PluginRecord) {
        let mut index = self.write();
        let versions = index.plugins.entry(record.name.clone()).or_default();
        if !versions.iter().any(|known| known.version == record.version) {
            versions.push(record);
            versions.sort_by_key(|known| known.version);
        }
    }

    /// Every plugin version, by name then version.
    pub fn plugins(&self) -> Vec<PluginRecord> {
        let index = self.read();
        let mut all: Vec<PluginRecord> = index.plugins.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        all
    }

    /// Whether any version of plugin `name` was pushed.
    pub fn has_plugin(&self, name: &str) -> bool {
        self.read().plugins.contains_key(name)
    }

    /// Version `version` of plugin `name`, if pushed.
    pub fn plugin_version(&self, name: &str, version: u32) -> Option<PluginRecord> {
        let index = self.read();
        index
            .plugins
            .get(name)?
            .iter()
            .find(|known| known.version == version)
            .cloned()
    }

    /// Point a tag at `record`, starting its rollout counts afresh.
    pub fn set_tag(&self, record: TagRecord) {
        let mut index = self.write();
        index
            .tags
            .entry(record.plugin.clone())
            .or_default()
            .insert(record.tag.clone(), Arc::new(Tag::new(record)));
    }

    /// A tag, if set.
    pub fn tag(&self, plugin: &str, tag: &str) -> Option<Arc<Tag>> {
        self.read().tags.get(plugin)?.get(tag).cloned()
    }

    /// Every tag, by plugin then tag name.
    pub fn tags(&self) -> Vec<Arc<Tag>> {
        let index = self.read();
        let mut all: Vec<Arc<Tag>> = index
            .tags
            .values()
            .flat_map(|tags| tags.values().cloned())
            .collect();
        all.sort_by(|a, b| {
            (&a.record.plugin, &a.record.tag).cmp(&(&b.record.plugin, &b.record.tag))
        });
        all
    }

    /// Record a journey migration (replacing one from the same version).
    pub fn set_migration(&self, record: MigrationRecord) {
        let mut index = self.write();
        index
            .migrations
            .entry(record.journey.clone())
            .or_default()
            .insert(record.from_version, Arc::new(record));
    }

    /// The migration away from `version` of `journey`, if any.
    pub fn migration(&self, journey: &str, version: u32) -> Option<Arc<MigrationRecord>> {
        self.read().migrations.get(journey)?.get(&version).cloned()
    }

    /// Every migration of `journey`, by the version it moves away from.
    pub fn migrations_of(&self, journey: &str) -> Vec<Arc<MigrationRecord>> {
        let index = self.read();
        let mut all: Vec<_> = index
            .migrations
            .get(journey)
            .into_iter()
            .flat_map(|migrations| migrations.values().cloned())
            .collect();
        all.sort_by_key(|migration| migration.from_version);
        all
    }

    /// The latest version of every deployed journey.
    pub fn latest_journeys(&self) -> Vec<Arc<Journey>> {
        self.read()
            .journeys
            .values()
            .filter_map(|versions| versions.last().cloned())
            .collect()
    }

    /// How many versions of `journey` are deployed.
    pub fn journey_versions(&self, journey: &str) -> u32 {
        self.read()
            .journeys
            .get(journey)
            .map_or(0, |versions| versions.len() as u32)
    }

    /// Whether a reference resolves (for validating journeys).
    pub fn exists(&self, plugin: &PluginRef) -> bool {
        self.resolve(plugin, InstanceId(0)).is_some()
    }

    /// The plugin version a reference resolves to now for `instance`.
    pub fn resolve(&self, plugin: &PluginRef, instance: InstanceId) -> Option<Resolved> {
        let index = self.read();
        let versions = index.plugins.get(&plugin.name)?;
        let find = |version: u32| versions.iter().find(|known| known.version == version);
        match &plugin.selector {
            Selector::Latest => Some(Resolved {
                record: versions.last()?.clone(),
                tag: None,
                canary: false,
            }),
            Selector::Version(version) => Some(Resolved {
                record: find(*version)?.clone(),
                tag: None,
                canary: false,
            }),
            Selector::Tag(name) => {
                let tag = index.tags.get(&plugin.name)?.get(name)?;
                let canary =
                    tag.record.canary.as_ref().filter(|canary| {
                        rollout_bucket(instance, &plugin.name, name) < canary.percent
                    });
                let version = canary.map_or(tag.record.version, |canary| canary.version);
                Some(Resolved {
                    record: find(version)?.clone(),
                    tag: Some(tag.clone()),
                    canary: canary.is_some(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Canary, RollbackRule};

    fn version(version: u32) -> PluginRecord {
        PluginRecord {
            name: "classify".into(),
            version,
            digest: format!("d{version}"),
            size: 1,
            pushed_at_ms: 1,
        }
    }

    fn rollout(percent: u8, rollback: Option<RollbackRule>) -> TagRecord {
        TagRecord {
            plugin: "classify".into(),
            tag: "stable".into(),
            version: 1,
            canary: Some(Canary {
                version: 2,
                percent,
                rollback,
            }),
            changed_at_ms: 1,
            reason: "test".into(),
        }
    }

    #[test]
    fn a_rollout_sends_its_share_of_instances_to_the_canary_and_each_instance_stays() {
        let registry = Registry::default();
        registry.add_plugin(version(1));
        registry.add_plugin(version(2));
        registry.set_tag(rollout(25, None));
        let plugin = PluginRef::parse("classify:stable").expect("valid");
        let canaries = (0..4000)
            .filter(|id| {
                let resolved = registry.resolve(&plugin, InstanceId(*id)).expect("tag");
                assert_eq!(resolved.canary, resolved.record.version == 2);
                resolved.canary
            })
            .count();
        assert!((900..1100).contains(&canaries), "{canaries} of 4000");
        for id in 0..50 {
            let first = registry.resolve(&plugin, InstanceId(id)).expect("tag");
            let again = registry.resolve(&plugin, InstanceId(id)).expect("tag");
            assert_eq!(first.record.version, again.record.version);
        }
        assert!(registry.exists(&plugin));
        assert!(!registry.exists(&PluginRef::parse("classify:canary").expect("valid")));
    }

    #[test]
    fn the_rollback_rule_fires_once_after_enough_failed_runs() {
        let tag = Tag::new(rollout(
            50,
            Some(RollbackRule {
                max_error_rate: 0.5,
                min_runs: 4,
            }),
        ));
        let counts = |runs, failures| CanaryCounts { runs, failures };
        assert!(!tag.observe_canary(counts(1, 1)), "too few runs");
        assert!(!tag.observe_canary(counts(2, 2)));
        assert!(!tag.observe_canary(counts(3, 2)));
        assert!(tag.observe_canary(counts(4, 3)), "3 of 4 failed");
        assert!(!tag.observe_canary(counts(5, 4)), "only once");
    }
}
