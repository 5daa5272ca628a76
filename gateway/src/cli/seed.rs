//! `pdnd-gateway seed`: the synthetic sample into a database named on the command line, and
//! never into one that holds data the seed did not write.
//!
//! The seed empties the catalogue tables before writing, so the one thing it must never do is
//! run against a real register. Two guards: the database comes only from `--database-url`
//! (no environment variable, which a production shell or container is likely to carry), and
//! a database with foreign data is refused, untouched, unless `--replace` says to overwrite it
//! (see [`eservices::store::seed_guard`]).

use crate::config::redact_url;
use eservices::store::seed_guard::{self, Ownership};
use eservices::store::{SeedSummary, SqlStore, StoreError};

/// Why the seed did not run.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "{url} holds data `pdnd-gateway seed` did not write (rows in: {tables}); nothing was \
         changed. Seeding empties the catalogue tables: to overwrite them on purpose, add --replace"
    )]
    Foreign { url: String, tables: String },
    #[error("{url}: {source}")]
    Store { url: String, source: StoreError },
}

/// What the seed did.
#[derive(Debug)]
pub struct SeedOutcome {
    pub summary: SeedSummary,
    /// How the database was found before seeding.
    pub found: Ownership,
}

/// Seeds `residents` into the database at `url` when it is empty or the seed's own; a foreign
/// one only with `replace`.
pub async fn run(url: &str, residents: u32, replace: bool) -> Result<SeedOutcome, SeedError> {
    let store_err = |source| SeedError::Store {
        url: redact_url(url),
        source,
    };
    let found = seed_guard::inspect(url).await.map_err(store_err)?;
    if let Ownership::Foreign { tables } = &found {
        if !replace {
            return Err(SeedError::Foreign {
                url: redact_url(url),
                tables: tables.join(", "),
            });
        }
        tracing::warn!(tables = %tables.join(", "), "--replace: overwriting a database with foreign data");
    }
    let store = SqlStore::connect(url).await.map_err(store_err)?;
    store.migrate().await.map_err(store_err)?;
    let summary = eservices::store::seed(&store, residents)
        .await
        .map_err(store_err)?;
    Ok(SeedOutcome { summary, found })
}
