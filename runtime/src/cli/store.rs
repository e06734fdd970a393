//! Which store a command opens: sled in the data directory (the
//! default), or a PostgreSQL database when `--store` names one.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use journey_runtime::store::sled::{SledOptions, SledStore};
use journey_runtime::store::{PostgresOptions, PostgresStore, Store};

/// Open the store `store` names (`postgres://…`, with `postgres`), or
/// sled in `data`.
pub fn open_store(
    store: Option<&str>,
    data: &Path,
    sled: &SledOptions,
    postgres: &PostgresOptions,
) -> anyhow::Result<Arc<dyn Store>> {
    match store {
        None => Ok(Arc::new(SledStore::open(data, sled).with_context(
            || format!("opening the store in {}", data.display()),
        )?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::open(url, postgres)
                .with_context(|| format!("opening the PostgreSQL store at {}", redacted(url)))?;
            Ok(Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "`--store {}` names no store this journeyd knows: give a PostgreSQL URL \
             (postgres://user@host/database), or leave it out for the embedded store in the \
             data directory",
            redacted(other)
        ),
    }
}

/// `url` with any password replaced, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_log() {
        assert_eq!(
            redacted("postgres://app:s3cret@db.internal/journeys"),
            "postgres://app:***@db.internal/journeys"
        );
        assert_eq!(
            redacted("postgresql://journeyd@%2Ftmp%2Fpg/postgres"),
            "postgresql://journeyd@%2Ftmp%2Fpg/postgres"
        );
    }

    #[test]
    fn an_unknown_store_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = open_store(
            Some("mysql://root:pw@x/y"),
            dir.path(),
            &SledOptions::default(),
            &PostgresOptions::default(),
        )
        .err()
        .expect("refused");
        let message = error.to_string();
        assert!(message.contains("mysql://root:***@x/y"), "{message}");
        assert!(!message.contains("pw"), "{message}");
    }
}
