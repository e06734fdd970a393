//! Backups of a PostgreSQL store. Not yet written: PostgreSQL's own tools
//! (`pg_dump`, base backups with WAL archiving) back it up meanwhile.

use std::io::Write;

use super::PostgresStore;
use crate::store::{Backup, BackupSummary, Error, Result};

impl Backup for PostgresStore {
    fn backup(&self, _to: &mut dyn Write, _created_at_ms: u64) -> Result<BackupSummary> {
        Err(Error::Backend(
            "journeyd backup does not yet read a PostgreSQL store: use pg_dump".into(),
        ))
    }
}
