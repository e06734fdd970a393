//! Histories on sled: an instance's entries, each under its own key while
//! it runs, folded into one record (at [`keys::history_archive`]) by the
//! change that finishes it; reading them back in order, and which history
//! slots are taken.

use super::{SledStore, keys};
use crate::store::{HistoryEntry, InstanceCommit, InstanceId, Result};

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
