//! The catalog as this runtime holds it: loaded from the store at start,
//! updated by this runtime's own changes, and reloaded when another
//! runtime on the same store changed it (the store's catalog version
//! moved).

use super::*;

/// The catalog as the store holds it, indexed for the step path.
pub(super) fn load_registry(store: &dyn Store) -> Result<Registry> {
    let registry = Registry::default();
    for record in store.plugins()? {
        registry.add_plugin(record);
    }
    for record in store.tags()? {
        registry.set_tag(record);
    }
    for record in store.migrations()? {
        registry.set_migration(record);
    }
    for record in store.journeys()? {
        // Stored definitions were valid when deployed; plugins are never
        // deleted, so they still are.
        let journey = Journey::parse(&record.name, &record.source, |_| true)?;
        registry.add_journey(record.version, journey);
    }
    Ok(registry)
}

impl Runtime {
    /// Reload the catalog (plugins, tags, journeys, migrations, caps,
    /// integrations, tokens) if
    /// the store's changed since it was last loaded: another runtime on
    /// the same store changed it. Returns whether it did. Reads the store:
    /// call it off the async threads.
    pub fn refresh_catalog(&self) -> Result<bool> {
        let _catalog = self.catalog_lock();
        self.reload_if_changed()
    }

    /// [`Runtime::refresh_catalog`] for a caller that holds the catalog
    /// lock (every catalog change calls it first, so it never writes over
    /// a change it has not seen).
    pub(super) fn reload_if_changed(&self) -> Result<bool> {
        use std::sync::atomic::Ordering;
        let version = self.store.catalog_version()?;
        if version == self.catalog_seen.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.registry.replace_with(load_registry(&*self.store)?);
        self.sends.reload()?;
        self.integrations.replace_with(self.store.integrations()?);
        self.tokens.replace_with(self.store.tokens()?);
        self.grants.reload(&*self.store)?;
        self.catalog_seen.store(version, Ordering::Release);
        tracing::debug!(version, "catalog reloaded");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimulatedClock;
    use crate::store::sled::{SledOptions, SledStore};

    const JOURNEY: &str = r#"
name = "greeting"
terminal = ["done"]

[trigger]
event = "customer.joined"
correlation_key = "customer_id"

[[steps]]
name = "hello"
plugin = "noop"
on = { ok = "done" }
"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_catalog_another_runtime_changed_is_reloaded_from_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).expect("open"));
        let runtime = Runtime::new(
            store.clone(),
            Arc::new(SimulatedClock::starting_at(1_000)),
            Settings::default(),
        )
        .expect("a runtime");
        assert!(
            !runtime.refresh_catalog().expect("refresh"),
            "nothing changed"
        );

        // Another runtime on the same store pushes a plugin, tags it,
        // deploys a journey that uses it and sets a cap.
        let plugin = store
            .put_plugin("noop", "d-1", b"not compiled here", 2_000)
            .expect("push");
        store
            .put_tag(&TagRecord {
                plugin: "noop".into(),
                tag: "stable".into(),
                version: plugin.version,
                canary: None,
                changed_at_ms: 2_000,
                reason: "first".into(),
            })
            .expect("tag");
        store
            .put_journey("greeting", JOURNEY, 2_000)
            .expect("deploy");
        let caps = serde_json::json!([{ "channel": "sms", "limit": 1, "period_ms": 60_000 }]);
        store.put_meta(caps::CAPS_META, &caps).expect("caps");
        assert!(runtime.registry.journey("greeting", 1).is_none());

        assert!(runtime.refresh_catalog().expect("refresh"), "reloaded");
        assert!(runtime.registry.journey("greeting", 1).is_some());
        assert!(runtime.registry.tag("noop", "stable").is_some());
        assert_eq!(runtime.frequency_caps().len(), 1);
        assert!(!runtime.refresh_catalog().expect("refresh"), "once");

        // Its own changes are in memory already; a reload changes nothing.
        let (version, _) = runtime
            .deploy_journey("greeting.toml", JOURNEY)
            .expect("deploy");
        assert_eq!(version, 2);
        runtime.refresh_catalog().expect("refresh");
        assert_eq!(runtime.registry.journey_versions("greeting"), 2);
    }
}
