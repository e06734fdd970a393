//! The backup file: a consistent copy of every record a store keeps, and
//! the trait a backend implements to write one.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! magic      16 bytes  "JOURNEYD-BACKUP\n"
//! format     u32       1
//! header     u32 length, then JSON: {format, store, created_at_ms, journeyd}
//! records    each: space u8 (< 0xFF), key u32 length + bytes, value u32 length + bytes
//! end        0xFF
//! trailer    u32 length, then JSON: {records, bytes, kinds: {kind: count}, pause_ms}
//! checksum   32 bytes: SHA-256 of everything before it
//! ```
//!
//! Records are the backend's own keys and stored values (for sled: one
//! space per tree, values as its codec stored them), so a restore is a
//! copy and a backup is only read back by the same backend.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Result;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"JOURNEYD-BACKUP\n";
/// The layout this build writes and reads.
pub const FORMAT: u32 = 1;
/// Marks the end of the records.
const END: u8 = 0xFF;
/// Keys and values larger than this are refused as corrupt (plugin
/// components, the largest records, are far smaller).
const MAX_FIELD_BYTES: u32 = 256 * 1024 * 1024;

/// What a backup says about itself before its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The layout ([`FORMAT`]).
    pub format: u32,
    /// The backend that wrote it (`sled`).
    pub store: String,
    /// When it was taken, ms since the Unix epoch (the runtime's clock).
    pub created_at_ms: u64,
    /// The journeyd version that took it.
    pub journeyd: String,
}

/// What a backup holds, written after its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Records in it.
    pub records: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Records by kind (`instance`, `history`, `timer`, ...).
    pub kinds: BTreeMap<String, u64>,
    /// How long writes waited while the records were read, in ms.
    pub pause_ms: u64,
}

/// One record of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// The backend's key space (for sled: the tree).
    pub space: u8,
    /// The key.
    pub key: Vec<u8>,
    /// The stored value.
    pub value: Vec<u8>,
}

/// Why a file cannot be read as a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing failed.
    #[error("backup I/O failed")]
    Io(#[from] std::io::Error),
    /// It does not start with [`MAGIC`].
    #[error("not a journeyd backup (it does not start with `JOURNEYD-BACKUP`)")]
    NotABackup,
    /// It was written in a layout this build does not read.
    #[error("backup format {0} is not one this journeyd reads (it reads format {FORMAT})")]
    UnsupportedFormat(u32),
    /// It ends before its checksum.
    #[error("the backup is truncated: it ends before its checksum")]
    Truncated,
    /// Its bytes are not the ones it was written with.
    #[error("the backup's checksum does not match its contents: it is damaged")]
    ChecksumMismatch,
    /// Its structure is wrong.
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
}

/// A backend that can write a consistent backup of itself while it
/// serves.
pub trait Backup: Send + Sync {
    /// Write every record to `to` as one consistent snapshot: no write
    /// lands in the middle of it.
    fn backup(&self, to: &mut dyn Write, created_at_ms: u64) -> Result<BackupSummary>;
}

/// Writes a backup file, hashing as it goes.
pub struct BackupWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    summary: BackupSummary,
}

impl<W: Write> BackupWriter<W> {
    /// Start a backup with `header`.
    pub fn new(inner: W, header: &BackupHeader) -> std::io::Result<Self> {
        let mut writer = BackupWriter {
            inner,
            hasher: Sha256::new(),
            summary: BackupSummary::default(),
        };
        writer.put(MAGIC)?;
        writer.put(&FORMAT.to_be_bytes())?;
        writer.field(&serde_json::to_vec(header)?)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }

    fn field(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| *len <= MAX_FIELD_BYTES)
            .ok_or_else(|| std::io::Error::other("a record is larger than a backup allows"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }

    /// Add a record of kind `kind` (counted in the summary).
    pub fn record(
        &mut self,
        space: u8,
        kind: &str,
        key: &[u8],
        value: &[u8],
    ) -> std::io::Result<()> {
        debug_assert!(space != END, "space 0xFF marks the end");
        self.put(&[space])?;
        self.field(key)?;
        self.field(value)?;
        self.summary.records += 1;
        self.summary.bytes += (key.len() + value.len()) as u64;
        *self.summary.kinds.entry(kind.to_owned()).or_default() += 1;
        Ok(())
    }

    /// End the backup: trailer and checksum. Returns its summary.
    pub fn finish(mut self, pause_ms: u64) -> std::io::Result<BackupSummary> {
        self.summary.pause_ms = pause_ms;
        self.put(&[END])?;
        let trailer = serde_json::to_vec(&self.summary)?;
        self.field(&trailer)?;
        let checksum = self.hasher.clone().finalize();
        self.inner.write_all(&checksum)?;
        self.inner.flush()?;
        Ok(self.summary)
    }
}

/// Reads a backup file, checking its structure and checksum.
pub struct BackupReader<R: Read> {
    inner: R,
    hasher: Sha256,
    /// The header, once read.
    pub header: BackupHeader,
    records: u64,
}

impl<R: Read> BackupReader<R> {
    /// Open a backup: checks the magic and format, reads the header.
    pub fn open(inner: R) -> Result<Self, BackupError> {
        let mut reader = BackupReader {
            inner,
            hasher: Sha256::new(),
            header: BackupHeader {
                format: 0,
                store: String::new(),
                created_at_ms: 0,
                journeyd: String::new(),
            },
            records: 0,
        };
        let mut magic = [0; 16];
        reader.take(&mut magic).map_err(|error| match error {
            BackupError::Truncated => BackupError::NotABackup,
            other => other,
        })?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let format = reader.u32()?;
        if format != FORMAT {
            return Err(BackupError::UnsupportedFormat(format));
        }
        let header = reader.field()?;
        reader.header = serde_json::from_slice(&header)
            .map_err(|error| BackupError::Corrupt(format!("its header: {error}")))?;
        Ok(reader)
    }

    fn take(&mut self, buffer: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buffer).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                BackupError::Truncated
            } else {
                BackupError::Io(error)
            }
        })?;
        self.hasher.update(&*buffer);
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut bytes = [0; 4];
        self.take(&mut bytes)?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn field(&mut self) -> Result<Vec<u8>, BackupError> {
        let len = self.u32()?;
        if len > MAX_FIELD_BYTES {
            return Err(BackupError::Corrupt(format!(
                "a field claims {len} bytes, more than a backup allows"
            )));
        }
        let mut bytes = vec![0; len as usize];
        self.take(&mut bytes)?;
        Ok(bytes)
    }

    /// The next record; `Ok(None)` once the records end, after the trailer
    /// and checksum were checked (see [`BackupReader::finish`]).
    pub fn next_record(&mut self) -> Result<Option<BackupRecord>, BackupError> {
        let mut space = [0];
        self.take(&mut space)?;
        if space[0] == END {
            return Ok(None);
        }
        let key = self.field()?;
        let value = self.field()?;
        self.records += 1;
        Ok(Some(BackupRecord {
            space: space[0],
            key,
            value,
        }))
    }

    /// After the last record: read the trailer, check the checksum and
    /// that the trailer counts the records read.
    pub fn finish(mut self) -> Result<BackupSummary, BackupError> {
        let trailer = self.field()?;
        let expected = self.hasher.clone().finalize();
        let mut checksum = [0; 32];
        self.inner.read_exact(&mut checksum).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                BackupError::Truncated
            } else {
                BackupError::Io(error)
            }
        })?;
        if checksum[..] != expected[..] {
            return Err(BackupError::ChecksumMismatch);
        }
        let summary: BackupSummary = serde_json::from_slice(&trailer)
            .map_err(|error| BackupError::Corrupt(format!("its trailer: {error}")))?;
        if summary.records != self.records {
            return Err(BackupError::Corrupt(format!(
                "its trailer counts {} records, it holds {}",
                summary.records, self.records
            )));
        }
        let mut rest = [0];
        if self.inner.read(&mut rest)? != 0 {
            return Err(BackupError::Corrupt("bytes follow its checksum".into()));
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> Vec<u8> {
        let header = BackupHeader {
            format: FORMAT,
            store: "test".into(),
            created_at_ms: 7,
            journeyd: "0".into(),
        };
        let mut bytes = Vec::new();
        let mut writer = BackupWriter::new(&mut bytes, &header).expect("write");
        writer.record(0, "instance", b"I1", b"{}").expect("write");
        writer.record(1, "blob", b"B1", &[0; 300]).expect("write");
        writer.finish(3).expect("finish");
        bytes
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<BackupRecord>, BackupSummary), BackupError> {
        let mut reader = BackupReader::open(bytes)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok((records, reader.finish()?))
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let bytes = written();
        let (records, summary) = read_all(&bytes).expect("read");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].value.len(), 300);
        assert_eq!(summary.records, 2);
        assert_eq!(summary.kinds["instance"], 1);
        assert_eq!(summary.pause_ms, 3);
    }

    #[test]
    fn damage_and_truncation_are_found() {
        let bytes = written();
        let mut damaged = bytes.clone();
        damaged[60] ^= 1;
        assert!(matches!(
            read_all(&damaged),
            Err(BackupError::ChecksumMismatch | BackupError::Corrupt(_))
        ));
        assert!(matches!(
            read_all(&bytes[..bytes.len() - 5]),
            Err(BackupError::Truncated)
        ));
        assert!(matches!(
            read_all(b"PK\x03\x04 a zip file"),
            Err(BackupError::NotABackup)
        ));
    }
}
