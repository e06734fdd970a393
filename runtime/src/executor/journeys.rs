//! Journeys: deploying versions, migrations between them, the drop-off
//! report.

use super::*;

impl Runtime {
    /// Validate and store a journey definition as its next version.
    pub fn deploy_journey(&self, file: &str, source: &str) -> Result<(u32, Arc<Journey>)> {
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        let journey = Journey::parse(file, source, |plugin| self.registry.exists(plugin))?;
        let record = self
            .store
            .put_journey(journey.name(), source, self.clock.now_ms())?;
        self.registry.add_journey(record.version, journey);
        let journey = self
            .registry
            .journey(&record.name, record.version)
            .expect("the version was just added");
        tracing::info!(journey = %record.name, version = record.version, "journey deployed");
        Ok((record.version, journey))
    }

    /// Move the running instances of version `from` of `journey` to
    /// version `to`, each at its next step start, to the step `steps` maps
    /// its step to (steps not named keep their name, which `to` must have).
    /// The whole mapping is checked before anything is stored.
    pub fn migrate_journey(
        &self,
        journey: &str,
        from: u32,
        to: u32,
        steps: std::collections::BTreeMap<String, String>,
    ) -> Result<MigrationRecord> {
        // Checked and stored under the catalog lock: two migrations at
        // once could otherwise form a cycle neither saw.
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        let deployed = self.registry.journey_versions(journey);
        if deployed == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        let version = |version: u32| {
            self.registry
                .journey(journey, version)
                .ok_or_else(|| Error::UnknownJourneyVersion {
                    journey: journey.to_owned(),
                    version,
                })
        };
        let (old, new) = (version(from)?, version(to)?);
        let invalid = |reason: String| Error::InvalidMigration {
            journey: journey.to_owned(),
            from,
            to,
            reason,
        };
        if from == to {
            return Err(invalid("the versions are the same".into()));
        }
        for (source, target) in &steps {
            if old.step(source).is_none() {
                return Err(invalid(format!(
                    "`{source}` is not a step of version {from}"
                )));
            }
            if new.step(target).is_none() {
                return Err(invalid(format!(
                    "`{source}` maps to `{target}`, which is not a step of version {to}"
                )));
            }
        }
        let mut mapping = std::collections::BTreeMap::new();
        for step in old.steps() {
            let name = &step.definition.name;
            let target = match steps.get(name) {
                Some(target) => target.clone(),
                None if new.step(name).is_some() => name.clone(),
                None => {
                    return Err(invalid(format!(
                        "step `{name}` has no step of the same name in version {to}: map it to one"
                    )));
                }
            };
            mapping.insert(name.clone(), target);
        }
        // Following the migrations on from `to` must not lead back to `from`.
        let mut next = to;
        while let Some(onward) = self.registry.migration(journey, next) {
            if onward.to_version == from {
                return Err(invalid(format!(
                    "version {to} already migrates on to version {from}: instances would move in a circle"
                )));
            }
            next = onward.to_version;
        }
        let record = MigrationRecord {
            journey: journey.to_owned(),
            from_version: from,
            to_version: to,
            steps: mapping,
            created_at_ms: self.clock.now_ms(),
        };
        self.store.put_migration(&record)?;
        self.registry.set_migration(record.clone());
        tracing::info!(journey, from, to, "journey migration stored");
        Ok(record)
    }

    /// The drop-off report of `journey` over its instances in `scope`, by
    /// the steps of the scope's version (the latest without one).
    pub fn funnel(&self, journey: &str, scope: &FunnelScope) -> Result<Funnel> {
        check_name("journey", journey)?;
        let latest = self.registry.journey_versions(journey);
        if latest == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        let version = scope.version.unwrap_or(latest);
        let definition = self.registry.journey(journey, version).ok_or_else(|| {
            Error::UnknownJourneyVersion {
                journey: journey.to_owned(),
                version,
            }
        })?;
        let steps: Vec<String> = definition
            .steps()
            .map(|step| step.definition.name.clone())
            .collect();
        Ok(funnel::funnel(&*self.store, journey, &steps, scope)?)
    }

    /// Version `version` of `journey` as deployed (`None`: no such
    /// version), and how many versions it has.
    pub fn journey_version(&self, journey: &str, version: u32) -> (Option<Arc<Journey>>, u32) {
        (
            self.registry.journey(journey, version),
            self.registry.journey_versions(journey),
        )
    }

    /// The names of every deployed journey, sorted.
    pub fn journey_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .registry
            .latest_journeys()
            .iter()
            .map(|journey| journey.definition.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every migration of `journey`.
    pub fn migrations_of(&self, journey: &str) -> Result<Vec<Arc<MigrationRecord>>> {
        self.known_journey(journey)?;
        Ok(self.registry.migrations_of(journey))
    }

    /// `journey` must be a valid name of a deployed journey.
    pub fn known_journey(&self, journey: &str) -> Result<()> {
        check_name("journey", journey)?;
        if self.registry.journey_versions(journey) == 0 {
            return Err(Error::UnknownJourney(journey.to_owned()));
        }
        Ok(())
    }
}
