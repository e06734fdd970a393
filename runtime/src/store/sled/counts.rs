//! Counts kept as commits land, on sled: each instance's funnel mark,
//! the live funnel tallies per journey version and start day, and the
//! standing counts per journey version.
//!
//! A commit reads the mark of each instance it changes (or the newer one
//! earlier in its batch), moves it on by the entry, and moves the counts
//! by the difference, in the same batch: the counts are exactly as
//! durable as the commits they count. Each count record a batch touches
//! is read and written once per batch. The purge moves an instance's
//! counts from the live tallies to the purged ones.
//!
//! Marks and counts are derived data: a store without them (written
//! before they existed) has them rebuilt from its instances and histories
//! when it opens.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;

use super::{SledStore, keys};
use crate::store::{
    FunnelMark, FunnelTally, HistoryEntry, Instance, InstanceCommit, InstanceId, Journal, Result,
    StandingCounts,
};

/// The setting that says the derived counts are complete; its value is
/// the layout's version.
pub(super) const COUNTS_KEPT: &str = "funnel_counts";
/// The layout of the derived counts: a store with another is rebuilt.
const COUNTS_LAYOUT: u32 = 1;
/// Marks written per batch by a rebuild.
const REBUILD_BATCH: usize = 10_000;

/// What one batch does to the counts: the marks it moved on and the count
/// records it touched, each read once and written once when the batch is
/// applied.
#[derive(Default)]
pub(super) struct CountChanges {
    /// The newest mark of each instance changed (`None`: removed).
    marks: HashMap<InstanceId, Option<FunnelMark>>,
    /// Live tallies touched, by key.
    tallies: HashMap<Vec<u8>, FunnelTally>,
    /// Standing counts touched, by key.
    standing: HashMap<Vec<u8>, BTreeMap<String, u64>>,
    /// Purged tallies touched, by key.
    purged: HashMap<Vec<u8>, FunnelTally>,
    /// Counts start from nothing rather than from the stored records (a
    /// rebuild).
    from_nothing: bool,
}

/// Where a mark stands: (journey, version, step), while unfinished.
fn standing_of(mark: Option<&FunnelMark>) -> Option<(&String, u32, &String)> {
    let mark = mark?;
    Some((&mark.journey, mark.version, mark.standing.as_ref()?))
}

impl SledStore {
    /// Count `instance`, started by an event in this batch.
    pub(super) fn count_start(&self, counts: &mut CountChanges, instance: &Instance) -> Result<()> {
        let mark = FunnelMark::started(instance);
        self.move_counts(counts, None, Some(&mark))?;
        counts.marks.insert(instance.id, Some(mark));
        Ok(())
    }

    /// Move the counts of the instance `change` is about by its entry.
    pub(super) fn count_change(
        &self,
        counts: &mut CountChanges,
        change: &InstanceCommit,
    ) -> Result<()> {
        let id = change.instance.id;
        let before = self.mark_before(counts, id)?;
        let after = match &before {
            Some(before) => before.took(&change.entry, &change.instance),
            // No mark (its record was lost): counted from the history.
            None => {
                let mut history = self.history(id)?;
                history.push(change.entry.clone());
                FunnelMark::of_instance(&change.instance, &history)
            }
        };
        if before.as_ref() != Some(&after) {
            self.move_counts(counts, before.as_ref(), Some(&after))?;
            counts.marks.insert(id, Some(after));
        }
        Ok(())
    }

    /// Move the counts of a purged instance from the live tallies to the
    /// purged ones and drop its mark. `instance` is its record as read.
    pub(super) fn count_purge(
        &self,
        counts: &mut CountChanges,
        instance: &Instance,
        history: impl FnOnce() -> Result<Vec<HistoryEntry>>,
    ) -> Result<()> {
        let mark = match self.mark_before(counts, instance.id)? {
            Some(mark) => mark,
            None => FunnelMark::of_instance(instance, &history()?),
        };
        self.move_counts(counts, Some(&mark), None)?;
        let key = keys::tally(&mark.journey, mark.version, mark.day_ms);
        self.loaded(&mut counts.purged, key, false)?
            .count(&mark, true);
        counts.marks.insert(instance.id, None);
        Ok(())
    }

    /// Write what `counts` changed into `batch`.
    pub(super) fn write_counts(&self, batch: &mut sled::Batch, counts: CountChanges) -> Result<()> {
        for (id, mark) in counts.marks {
            match mark {
                Some(mark) => batch.insert(keys::mark(id), self.codec.encode_plain(&mark)?),
                None => batch.remove(keys::mark(id)),
            }
        }
        for (key, tally) in counts.tallies.into_iter().chain(counts.purged) {
            match tally.instances {
                0 => batch.remove(key),
                _ => batch.insert(key, self.codec.encode(&tally)?),
            }
        }
        for (key, at) in counts.standing {
            match at.is_empty() {
                true => batch.remove(key),
                false => batch.insert(key, self.codec.encode(&at)?),
            }
        }
        Ok(())
    }

    /// The instance's mark before this change: the batch's newest, or the
    /// stored one.
    fn mark_before(&self, counts: &CountChanges, id: InstanceId) -> Result<Option<FunnelMark>> {
        match counts.marks.get(&id) {
            Some(mark) => Ok(mark.clone()),
            None => self.get(&keys::mark(id)),
        }
    }

    /// Take what `before` counted away and add what `after` counts.
    fn move_counts(
        &self,
        counts: &mut CountChanges,
        before: Option<&FunnelMark>,
        after: Option<&FunnelMark>,
    ) -> Result<()> {
        let day = |mark: &FunnelMark| keys::live_tally(&mark.journey, mark.version, mark.day_ms);
        match (before, after) {
            (Some(before), Some(after)) if day(before) == day(after) => {
                self.live_tally(counts, day(after))?.recount(before, after);
            }
            _ => {
                if let Some(before) = before {
                    self.live_tally(counts, day(before))?.count(before, false);
                }
                if let Some(after) = after {
                    self.live_tally(counts, day(after))?.count(after, true);
                }
            }
        }
        let (was, is) = (standing_of(before), standing_of(after));
        if was == is {
            return Ok(());
        }
        if let Some((journey, version, step)) = was {
            let at = self.standing_at(counts, keys::standing(journey, version))?;
            if let Some(count) = at.get_mut(step.as_str()) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    at.remove(step.as_str());
                }
            }
        }
        if let Some((journey, version, step)) = is {
            let at = self.standing_at(counts, keys::standing(journey, version))?;
            match at.get_mut(step.as_str()) {
                Some(count) => *count += 1,
                None => {
                    at.insert(step.clone(), 1);
                }
            }
        }
        Ok(())
    }

    /// The live tally at `key` as the batch has it so far.
    fn live_tally<'c>(
        &self,
        counts: &'c mut CountChanges,
        key: Vec<u8>,
    ) -> Result<&'c mut FunnelTally> {
        self.loaded(&mut counts.tallies, key, counts.from_nothing)
    }

    /// The standing counts at `key` as the batch has them so far.
    fn standing_at<'c>(
        &self,
        counts: &'c mut CountChanges,
        key: Vec<u8>,
    ) -> Result<&'c mut BTreeMap<String, u64>> {
        self.loaded(&mut counts.standing, key, counts.from_nothing)
    }

    /// The count record at `key` in `touched`, read from the store the
    /// first time a batch touches it (or begun at nothing, in a rebuild).
    fn loaded<'c, T: DeserializeOwned + Default>(
        &self,
        touched: &'c mut HashMap<Vec<u8>, T>,
        key: Vec<u8>,
        from_nothing: bool,
    ) -> Result<&'c mut T> {
        Ok(match touched.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let stored = match from_nothing {
                    true => None,
                    false => self.get(entry.key())?,
                };
                entry.insert(stored.unwrap_or_default())
            }
        })
    }

    pub(super) fn standing_counts(&self, journey: Option<&str>) -> Result<Vec<StandingCounts>> {
        let mut standing = Vec::new();
        for item in self.db.scan_prefix(keys::standing_of(journey)) {
            let (key, bytes) = item?;
            let Some((journey, version)) = keys::standing_key_of(&key) else {
                continue;
            };
            standing.push(StandingCounts {
                journey: journey.to_owned(),
                version,
                at: self.codec.decode(&key, &bytes)?,
            });
        }
        Ok(standing)
    }

    /// Rebuild the marks and counts from the instances and their
    /// histories, unless they are complete. Runs at open, before any
    /// commit.
    pub(super) fn keep_counts(&self) -> Result<()> {
        if self.get::<u32>(&keys::meta(COUNTS_KEPT))? == Some(COUNTS_LAYOUT) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut clear = sled::Batch::default();
        for prefix in keys::derived_counts() {
            for key in self.db.scan_prefix(prefix).keys() {
                clear.remove(key?);
            }
        }
        self.db.apply_batch(clear)?;
        let mut counts = CountChanges {
            from_nothing: true,
            ..CountChanges::default()
        };
        let mut marks = sled::Batch::default();
        let mut pending = 0;
        let mut instances = 0;
        for item in self.db.scan_prefix(keys::instances()) {
            let (key, bytes) = item?;
            let instance = self.current(self.codec.decode(&key, &bytes)?)?;
            let mark = FunnelMark::of_instance(&instance, &self.history(instance.id)?);
            self.move_counts(&mut counts, None, Some(&mark))?;
            marks.insert(keys::mark(instance.id), self.codec.encode_plain(&mark)?);
            instances += 1;
            pending += 1;
            if pending == REBUILD_BATCH {
                self.db.apply_batch(std::mem::take(&mut marks))?;
                pending = 0;
            }
        }
        // The counts and the setting last, in one batch: a crash before
        // it leaves the setting unwritten, and the next open starts over.
        self.write_counts(&mut marks, counts)?;
        marks.insert(keys::meta(COUNTS_KEPT), self.codec.encode(&COUNTS_LAYOUT)?);
        self.db.apply_batch(marks)?;
        self.db.flush()?;
        if instances > 0 {
            tracing::info!(
                instances,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "counted the store's instances for the funnel and journeys pages"
            );
        }
        Ok(())
    }
}
