//! Histories on sled: an instance's entries, each under its own key while
//! it runs, folded into one record (at [`keys::history_archive`]) by the
//! change that finishes it; reading them back in order, which history
//! slots are taken, and folding a running instance's entries onto its
//! record when it is read.

use super::{SledStore, keys};
use crate::store::{
    Error, HistoryEntry, Instance, InstanceCommit, InstanceId, InstanceStatus, Result,
};

/// A finished instance's history folded into one record (at
/// [`keys::history_archive`]): a finished enquiry keeps one history
/// record instead of four, which is fewer bytes on disk and fewer keys
/// for retention to remove.
pub(super) struct Archive {
    pub(super) record: Vec<u8>,
    /// The records it takes the place of.
    pub(super) replaces: Vec<sled::IVec>,
}

/// One stored record of an instance's history.
pub(super) enum HistoryRecord {
    /// One entry, under its own key.
    Entry(HistoryEntry),
    /// The first entries of an instance that finished, in order.
    Archive(Vec<HistoryEntry>),
}

impl HistoryRecord {
    pub(super) fn into_entries(self) -> impl Iterator<Item = HistoryEntry> {
        let entries = match self {
            HistoryRecord::Entry(entry) => vec![entry],
            HistoryRecord::Archive(entries) => entries,
        };
        entries.into_iter()
    }
}

impl SledStore {
    /// Whether history slot `seq` of instance `id` is taken: by its own
    /// entry, or by the archive of an instance that finished (which holds
    /// slots `1..=len`; slot 0, the triggering event, is never stored).
    pub(super) fn slot_taken(&self, id: InstanceId, seq: u32) -> Result<bool> {
        if self.db.contains_key(keys::history(id, seq))? {
            return Ok(true);
        }
        if seq > 1 && self.db.contains_key(keys::history(id, seq - 1))? {
            // The usual case: the slot before is an entry of its own, so
            // any archive ends below it.
            return Ok(false);
        }
        Ok(match self.db.get(keys::history_archive(id))? {
            Some(bytes) => {
                let archived: Vec<HistoryEntry> =
                    self.codec.decode(&keys::history_archive(id), &bytes)?;
                archived.len() >= seq as usize
            }
            None => false,
        })
    }

    /// The stored records of instance `id`'s history, in order, with their
    /// keys.
    pub(super) fn history_records(
        &self,
        id: InstanceId,
    ) -> Result<Vec<(sled::IVec, HistoryRecord)>> {
        let archive_key = keys::history_archive(id);
        self.db
            .scan_prefix(keys::history_of(id))
            .map(|item| {
                let (key, bytes) = item?;
                let record = match *key == *archive_key {
                    true => HistoryRecord::Archive(self.codec.decode(&key, &bytes)?),
                    false => HistoryRecord::Entry(self.codec.decode(&key, &bytes)?),
                };
                Ok((key, record))
            })
            .collect()
    }

    /// The archive `change` writes in place of its entry: when it finishes
    /// its instance (and does not scrub it, which rewrites the entries
    /// where they are), the entries before it with it, in one record.
    /// Read before the commit gate is taken: nothing else writes an
    /// instance's earlier entries while a change to it is in flight, and
    /// a change whose slot turns out to be taken is refused whole.
    pub(super) fn archive_of(&self, change: &InstanceCommit) -> Result<Option<Archive>> {
        if !change.instance.status.is_finished() || change.scrub.is_some() {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(change.instance.history_len as usize);
        let mut replaces = Vec::new();
        for (key, record) in self.history_records(change.instance.id)? {
            entries.extend(record.into_entries());
            replaces.push(key);
        }
        if entries.len() + 1 != change.seq() as usize {
            // Not the instance's next entry: the slot is taken, and the
            // change is refused under the gate.
            return Ok(None);
        }
        entries.push(change.entry.clone());
        Ok(Some(Archive {
            record: self.codec.encode(&entries)?,
            replaces,
        }))
    }
}

impl SledStore {
    /// The instance whose record is at `key`, as of the latest commit. The
    /// record and the history folded onto it are read under the commit
    /// gate, so no commit lands between them (one could otherwise rewrite
    /// the record after it was read and leave an entry to be folded onto
    /// the old one).
    pub(super) fn read_instance(&self, key: &[u8]) -> Result<Option<Instance>> {
        let _no_commit = self
            .applying
            .read()
            .expect("the commit gate is never poisoned");
        self.get::<Instance>(key)?
            .map(|record| self.current(record))
            .transpose()
    }

    /// A stored instance record brought up to date: a running instance's
    /// record is as of its last rewrite, so the entries since (which only
    /// move it along) are folded onto it.
    pub(super) fn current(&self, mut instance: Instance) -> Result<Instance> {
        if instance.status != InstanceStatus::Running {
            return Ok(instance);
        }
        let record_key = keys::instance(instance.id);
        let mut state: Option<serde_json::Map<String, serde_json::Value>> = None;
        let prefix = keys::history_of(instance.id);
        for item in self
            .db
            .range(keys::history(instance.id, instance.history_len)..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(&prefix))
            })
        {
            let (key, bytes) = item?;
            let step = match self.codec.decode::<HistoryEntry>(&key, &bytes)? {
                HistoryEntry::StepRan(step) => step,
                HistoryEntry::Split { target, at_ms, .. } => {
                    instance.follow_split(&target, true, at_ms);
                    continue;
                }
                HistoryEntry::Restarted { attempt, at_ms, .. } => {
                    instance.restarted(attempt, at_ms);
                    continue;
                }
                _ => continue,
            };
            instance.advance(&step, |_| true);
            if !step.state.is_empty() {
                let state = match &mut state {
                    Some(state) => state,
                    None => state.insert(
                        self.codec
                            .decode(&record_key, instance.state.get().as_bytes())?,
                    ),
                };
                step.state.apply_to(state);
            }
        }
        if let Some(state) = state {
            instance.state = serde_json::value::to_raw_value(&state).map_err(Error::Encode)?;
        }
        Ok(instance)
    }
}
