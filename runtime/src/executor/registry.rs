//! The in-memory index of deployed journeys and pushed plugins.
//!
//! Loaded from the store at start and updated after every successful
//! deploy or push, so resolving a step's plugin or an event's journeys
//! never touches the store on the step path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::journey::{Journey, PluginRef};
use crate::store::PluginRecord;

#[derive(Default)]
struct Index {
    /// Every journey version, by name then version.
    journeys: HashMap<String, Vec<Arc<Journey>>>,
    /// Journey names by the event type that triggers them.
    triggers: HashMap<String, Vec<String>>,
    /// Plugin versions by name, ascending.
    plugins: HashMap<String, Vec<PluginRecord>>,
}

/// Deployed journeys and pushed plugins.
#[derive(Default)]
pub struct Registry {
    index: RwLock<Index>,
}

impl Registry {
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

    /// Record a plugin version.
    pub fn add_plugin(&self, record: PluginRecord) {
        let mut index = self.write();
        let versions = index.plugins.entry(record.name.clone()).or_default();
        if !versions.iter().any(|known| known.version == record.version) {
            versions.push(record);
            versions.sort_by_key(|known| known.version);
        }
    }

    /// The latest version of every plugin.
    pub fn latest_plugins(&self) -> Vec<PluginRecord> {
        self.read()
            .plugins
            .values()
            .filter_map(|versions| versions.last().cloned())
            .collect()
    }

    /// The plugin version a reference resolves to now.
    pub fn resolve(&self, plugin: &PluginRef) -> Option<PluginRecord> {
        let index = self.read();
        let versions = index.plugins.get(&plugin.name)?;
        match plugin.version {
            Some(version) => versions.iter().find(|known| known.version == version),
            None => versions.last(),
        }
        .cloned()
    }
}
