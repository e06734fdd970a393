//! Plugins: pushing and loading versions, resolving a step's plugin,
//! tags and rollouts with their automatic rollback, run counts.

use super::*;

impl Runtime {
    /// Check, store and cache a plugin version.
    pub async fn push_plugin(self: &Arc<Self>, name: &str, bytes: Vec<u8>) -> Result<PluginRecord> {
        use sha2::Digest as _;
        check_name("plugin name", name)?;
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        let host = self.host.clone();
        let loaded_digest = digest.clone();
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let checked = host.load(&loaded_digest, &bytes).map(|_| ());
            (bytes, checked)
        })
        .await?;
        checked.map_err(|source| Error::Plugin {
            name: name.to_owned(),
            source,
        })?;
        let runtime = self.clone();
        let name_owned = name.to_owned();
        let record = tokio::task::spawn_blocking(move || {
            let _catalog = runtime.catalog_lock();
            runtime.reload_if_changed()?;
            let record =
                runtime
                    .store
                    .put_plugin(&name_owned, &digest, &bytes, runtime.clock.now_ms())?;
            runtime.registry.add_plugin(record.clone());
            Ok::<_, Error>(record)
        })
        .await??;
        tracing::info!(plugin = name, version = record.version, digest = %record.digest, "plugin pushed");
        self.set_waiting_integrations(name).await;
        Ok(record)
    }

    /// Load every plugin version (from the compiled-code cache when the
    /// engine has one), so no step after a start or a swap waits for a
    /// compilation. Returns how many were loaded.
    pub async fn load_plugins(self: &Arc<Self>) -> Result<usize> {
        let runtime = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let mut loaded = 0;
            for record in runtime.registry.plugins() {
                let plugin = PluginRef::version(&record.name, record.version);
                match runtime.resolve_plugin(&plugin, InstanceId(0)) {
                    Ok(_) => loaded += 1,
                    Err(reason) => {
                        tracing::warn!(plugin = %plugin, %reason, "plugin could not be loaded")
                    }
                }
            }
            loaded
        })
        .await?)
    }

    /// The plugin version a reference resolves to now for `instance`,
    /// compiled. Compiles on a cache miss, one compilation at a time, so
    /// steps that miss together wait for one compilation instead of each
    /// starting one.
    ///
    /// A reference that resolves to nothing fails the step; bytes that
    /// cannot be read or compiled are the host's fault.
    pub(super) fn resolve_plugin(
        &self,
        plugin: &PluginRef,
        instance: InstanceId,
    ) -> Result<(Resolved, Arc<host::LoadedPlugin>), StepFailure> {
        let resolved = self.registry.resolve(plugin, instance).ok_or_else(|| {
            StepFailure::Instantiate(format!("plugin `{plugin}` is not pushed (or tagged)"))
        })?;
        let digest = resolved.record.digest.clone();
        if let Some(loaded) = self.host.cached(&digest) {
            return Ok((resolved, loaded));
        }
        let _loading = self
            .loading
            .lock()
            .expect("the plugin loading lock is never poisoned");
        if let Some(loaded) = self.host.cached(&digest) {
            return Ok((resolved, loaded));
        }
        let bytes = self
            .store
            .plugin_bytes(&digest)
            .map_err(|error| {
                StepFailure::Host(format!(
                    "the bytes of plugin {plugin} (sha256:{digest}) could not be read: {}",
                    crate::error_chain(&error)
                ))
            })?
            .ok_or_else(|| {
                StepFailure::Host(format!(
                    "the bytes of plugin {plugin} (sha256:{digest}) are missing from the store"
                ))
            })?;
        let loaded = self.host.load(&digest, &bytes).map_err(|error| {
            StepFailure::Host(format!(
                "plugin {plugin} (sha256:{digest}) could not be loaded: {error}"
            ))
        })?;
        Ok((resolved, loaded))
    }

    /// Count a step's run against its plugin version and, when it ran a
    /// canary, against the rollout, rolling the tag back if its rule says so.
    pub(super) fn count_run(&self, resolved: &Resolved, failed: bool, duration_us: u64) {
        let record = &resolved.record;
        self.versions
            .lock()
            .expect("the version counts lock is never poisoned")
            .record(&record.name, record.version, failed, duration_us);
        let Some(tag) = resolved.tag.as_ref().filter(|_| resolved.canary) else {
            return;
        };
        // Counted in the store, so the rule judges every runtime's runs.
        let counts = match self
            .store
            .count_canary_runs(&tag.record, 1, u64::from(failed))
        {
            Ok(counts) => counts,
            Err(error) => {
                tracing::error!(plugin = %tag.record.plugin, tag = %tag.record.tag, error = %crate::error_chain(&error), "a canary run could not be counted");
                return;
            }
        };
        if tag.observe_canary(counts) {
            let CanaryCounts { runs, failures } = counts;
            let reason = format!(
                "automatic rollback: version {} failed {failures} of {runs} runs ({:.0}%), above the rule's {:.0}%",
                record.version,
                failures as f64 * 100.0 / runs as f64,
                tag.record
                    .canary
                    .as_ref()
                    .and_then(|canary| canary.rollback)
                    .map_or(0.0, |rule| rule.max_error_rate * 100.0),
            );
            let judged = Some(tag.record.changed_at_ms);
            if let Err(error) =
                self.end_rollout_of(&tag.record.plugin, &tag.record.tag, judged, reason)
            {
                tracing::error!(plugin = %tag.record.plugin, tag = %tag.record.tag, error = %error, "automatic rollback failed");
            }
        }
    }

    /// Point `tag` of `plugin` at `version`, optionally rolling `canary`
    /// out to a share of instances. Validated before anything changes.
    pub fn set_tag(
        &self,
        plugin: &str,
        tag: &str,
        version: u32,
        canary: Option<Canary>,
        reason: &str,
    ) -> Result<TagRecord> {
        check_name("plugin name", plugin)?;
        check_name("tag", tag)?;
        let invalid = |reason: String| Error::InvalidTag {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            reason,
        };
        if !self.registry.has_plugin(plugin) {
            return Err(Error::UnknownPlugin(plugin.to_owned()));
        }
        let versions = std::iter::once(version).chain(canary.as_ref().map(|canary| canary.version));
        for wanted in versions {
            if self.registry.plugin_version(plugin, wanted).is_none() {
                return Err(Error::UnknownPluginVersion {
                    plugin: plugin.to_owned(),
                    version: wanted,
                });
            }
        }
        if let Some(canary) = &canary {
            if canary.percent > 100 {
                return Err(invalid(format!(
                    "a rollout percentage must be 0 to 100, not {}",
                    canary.percent
                )));
            }
            if canary.version == version {
                return Err(invalid(format!(
                    "the canary is version {version}, which the tag already points at"
                )));
            }
            if let Some(rule) = canary.rollback {
                if !(0.0..=1.0).contains(&rule.max_error_rate) {
                    return Err(invalid(format!(
                        "`max_error_rate` must be 0 to 1, not {}",
                        rule.max_error_rate
                    )));
                }
                if rule.min_runs == 0 {
                    return Err(invalid("`min_runs` must be at least 1".into()));
                }
            }
        }
        let record = TagRecord {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            version,
            canary,
            changed_at_ms: self.clock.now_ms(),
            reason: reason.to_owned(),
        };
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        self.write_tag(record)
    }

    /// Store and register a tag change; the caller holds the catalog lock.
    fn write_tag(&self, record: TagRecord) -> Result<TagRecord> {
        self.store.put_tag(&record)?;
        self.registry.set_tag(record.clone());
        tracing::info!(plugin = %record.plugin, tag = %record.tag, version = record.version, canary = ?record.canary, reason = %record.reason, "plugin tag moved");
        Ok(record)
    }

    /// End the rollout on `tag` of `plugin`: every instance runs the
    /// tag's version again. `reason` is recorded with the change.
    pub fn end_rollout(&self, plugin: &str, tag: &str, reason: String) -> Result<TagRecord> {
        self.end_rollout_of(plugin, tag, None, reason)
    }

    /// End the rollout on `tag` of `plugin`; when `judged` names one (by
    /// when it was set), only if it is still that rollout. The check and
    /// the change are made under the catalog lock.
    fn end_rollout_of(
        &self,
        plugin: &str,
        tag: &str,
        judged: Option<u64>,
        reason: String,
    ) -> Result<TagRecord> {
        check_name("plugin name", plugin)?;
        check_name("tag", tag)?;
        let invalid = |reason: &str| Error::InvalidTag {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            reason: reason.to_owned(),
        };
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        let current = self
            .registry
            .tag(plugin, tag)
            .ok_or_else(|| Error::UnknownTag {
                plugin: plugin.to_owned(),
                tag: tag.to_owned(),
            })?;
        if current.record.canary.is_none() {
            return Err(invalid("there is no rollout to roll back"));
        }
        if judged.is_some_and(|judged| judged != current.record.changed_at_ms) {
            return Err(invalid("the rollout changed since it was judged"));
        }
        self.write_tag(TagRecord {
            plugin: plugin.to_owned(),
            tag: tag.to_owned(),
            version: current.record.version,
            canary: None,
            changed_at_ms: self.clock.now_ms(),
            reason,
        })
    }

    /// Every plugin version with its run counts.
    pub fn version_stats(&self) -> Vec<(PluginRecord, VersionStats)> {
        let counts = self
            .versions
            .lock()
            .expect("the version counts lock is never poisoned");
        self.registry
            .plugins()
            .into_iter()
            .map(|record| {
                let stats = counts
                    .total
                    .get(&record.name, record.version)
                    .cloned()
                    .unwrap_or_else(|| VersionStats {
                        plugin: record.name.clone(),
                        version: record.version,
                        ..VersionStats::default()
                    });
                (record, stats)
            })
            .collect()
    }

    /// Resolves with the time the next step starts on the component with
    /// `digest` (how long a swap takes to become visible).
    pub fn first_start_on(
        &self,
        digest: &str,
    ) -> tokio::sync::oneshot::Receiver<std::time::Instant> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut probes = self
            .start_probes
            .lock()
            .expect("the start probes lock is never poisoned");
        probes.push((digest.to_owned(), sender));
        self.has_start_probes
            .store(true, std::sync::atomic::Ordering::Release);
        receiver
    }

    pub(super) fn notify_start(&self, digest: &str) {
        if !self
            .has_start_probes
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let now = std::time::Instant::now();
        let mut probes = self
            .start_probes
            .lock()
            .expect("the start probes lock is never poisoned");
        let mut kept = Vec::with_capacity(probes.len());
        for (wanted, sender) in probes.drain(..) {
            if wanted == digest {
                let _ = sender.send(now);
            } else {
                kept.push((wanted, sender));
            }
        }
        *probes = kept;
        self.has_start_probes
            .store(!probes.is_empty(), std::sync::atomic::Ordering::Release);
    }

    /// Every plugin tag.
    pub fn tags(&self) -> Vec<Arc<Tag>> {
        self.registry.tags()
    }

    /// A tag that was just set.
    pub fn registry_tag(&self, plugin: &str, tag: &str) -> Arc<Tag> {
        self.registry
            .tag(plugin, tag)
            .expect("the tag was set before it is read")
    }

    /// Add the runs counted since the last save to the saved counts.
    pub fn save_version_stats(&self) -> Result<()> {
        let lock = || {
            self.versions
                .lock()
                .expect("the version counts lock is never poisoned")
        };
        let counted = lock().take_unsaved();
        if counted.is_empty() {
            return Ok(());
        }
        self.store.add_version_stats(&counted).inspect_err(|_| {
            lock().keep_unsaved(&counted);
        })?;
        Ok(())
    }
}
