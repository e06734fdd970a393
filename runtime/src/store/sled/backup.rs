//! Backup and restore on sled: a backup copies both trees under every
//! write gate (so no commit, delivery mark or catalog change lands in the
//! middle of it); a restore copies the records into a new directory.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use super::{SledStore, keys};
use crate::store::{
    Backup, BackupError, BackupHeader, BackupReader, BackupSummary, BackupWriter, Error, Result,
};

/// The key space of sled's default tree in a backup.
const DEFAULT_TREE: u8 = 0;
/// The key space of the `blobs` tree (plugin components).
const BLOBS_TREE: u8 = 1;
/// What the backup header names as the store.
const STORE: &str = "sled";
/// Records written per batch by a restore.
const RESTORE_BATCH: usize = 10_000;

impl Backup for SledStore {
    fn backup(&self, to: &mut dyn Write, created_at_ms: u64) -> Result<BackupSummary> {
        let header = BackupHeader {
            format: crate::store::BACKUP_FORMAT,
            store: STORE.into(),
            created_at_ms,
            journeyd: env!("CARGO_PKG_VERSION").into(),
        };
        let mut writer = BackupWriter::new(std::io::BufWriter::new(to), &header)?;
        let started = Instant::now();
        {
            // In the order the store's own paths take them. Profile
            // upserts and audit entries do not wait: each is one record.
            let _numbering = self.numbering();
            let _catalog = self
                .catalog_changes
                .lock()
                .expect("the catalog change lock is never poisoned");
            let _outbox = self.outbox_lock();
            let _applying = self
                .applying
                .write()
                .expect("the commit gate is never poisoned");
            for item in self.db.iter() {
                let (key, value) = item?;
                writer.record(DEFAULT_TREE, keys::kind_of(&key), &key, &value)?;
            }
            for item in self.blobs.iter() {
                let (key, value) = item?;
                writer.record(BLOBS_TREE, "plugin_bytes", &key, &value)?;
            }
        }
        let pause_ms = started.elapsed().as_millis() as u64;
        Ok(writer.finish(pause_ms)?)
    }
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a backup this build can read.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The backup is of another backend.
    #[error("the backup is of a `{0}` store; this restores sled backups")]
    OtherStore(String),
    /// The target directory holds something.
    #[error("{0} is not empty: restore into a new directory")]
    NotEmpty(String),
    /// The new store could not be written.
    #[error(transparent)]
    Store(#[from] Error),
}

impl SledStore {
    /// Restore the backup read from `from` into the new store directory
    /// `dir` (created; it must not hold anything). The records are checked
    /// against the backup's checksum before the store is flushed; on any
    /// error the directory is left for the caller to remove.
    pub fn restore(
        from: impl Read,
        dir: &Path,
    ) -> Result<(BackupHeader, BackupSummary), RestoreError> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(Error::from)?
                .next()
                .is_some()
        {
            return Err(RestoreError::NotEmpty(dir.display().to_string()));
        }
        let mut reader = BackupReader::open(std::io::BufReader::new(from))?;
        if reader.header.store != STORE {
            return Err(RestoreError::OtherStore(reader.header.store.clone()));
        }
        let header = reader.header.clone();
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(Error::from)?;
        let blobs = db.open_tree("blobs").map_err(Error::from)?;
        let mut batches = [sled::Batch::default(), sled::Batch::default()];
        let mut pending = 0;
        while let Some(record) = reader.next_record()? {
            let batch = match record.space {
                DEFAULT_TREE => &mut batches[0],
                BLOBS_TREE => &mut batches[1],
                other => {
                    return Err(BackupError::Corrupt(format!("unknown key space {other}")).into());
                }
            };
            batch.insert(record.key, record.value);
            pending += 1;
            if pending == RESTORE_BATCH {
                let [records, plugins] = std::mem::take(&mut batches);
                db.apply_batch(records).map_err(Error::from)?;
                blobs.apply_batch(plugins).map_err(Error::from)?;
                pending = 0;
            }
        }
        let summary = reader.finish()?;
        let [records, plugins] = batches;
        db.apply_batch(records).map_err(Error::from)?;
        blobs.apply_batch(plugins).map_err(Error::from)?;
        db.flush().map_err(Error::from)?;
        Ok((header, summary))
    }
}
