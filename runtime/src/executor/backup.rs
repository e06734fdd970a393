//! Taking a backup while serving: the store writes a consistent snapshot
//! into an anonymous temporary file (writes wait only while the records
//! are read), which the caller then streams out at its own pace.

use std::io::Seek as _;

use super::{Result, Runtime};
use crate::store::BackupSummary;

impl Runtime {
    /// Write a backup of the whole store into a temporary file in the
    /// scratch directory (gone once the file is closed); returns it,
    /// rewound, with its summary.
    pub async fn take_backup(&self) -> Result<(std::fs::File, BackupSummary)> {
        let dir = self.scratch_dir.clone();
        let now = self.clock.now_ms();
        let (file, summary) = self
            .with_store(move |store| {
                let mut file = tempfile::tempfile_in(&dir)?;
                let summary = store.backup(&mut file, now)?;
                file.rewind()?;
                Ok((file, summary))
            })
            .await?;
        tracing::info!(
            records = summary.records,
            bytes = summary.bytes,
            pause_ms = summary.pause_ms,
            "backup taken"
        );
        metrics::histogram!("journeyd_backup_pause_seconds").record(summary.pause_ms as f64 / 1e3);
        Ok((file, summary))
    }
}
