//! Where the e-services read their data: one [`Store`] trait, one SQL implementation.
//!
//! The handlers ask the store domain questions ("the family of this codice fiscale", "the IMU
//! position of this subject in this year") and get domain models back; they never see SQL. The
//! [`SqlStore`] answers them with one set of portable queries over SQLite (the embedded default,
//! filled by [`seed`]) or PostgreSQL (filled by the comune's registry software or a nightly
//! import, following `SCHEMA.md`). `None` from a lookup means the subject is unknown.

mod model;
mod rows;
mod seed;
pub mod seed_guard;
mod sql;
mod sqlite_reader;

pub use model::*;
pub use seed::{seed, SampleSubject, SeedSummary};
pub use sql::{Engine, SqlStore};
pub use sqlite_reader::sqlite_file;

use crate::codice_fiscale::{CodiceFiscale, Soggetto};
use crate::wire::Anno;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out: the caller may retry later (503).
    #[error("the data store is unavailable: {0}")]
    Unavailable(String),
    /// The store has no data yet (no refresh timestamp): nothing can be answered (503).
    #[error("the data store has not been loaded")]
    NotLoaded,
    /// A stored value breaks the schema contract (e.g. a date that is not a date).
    #[error("stored data breaks the schema contract: {0}")]
    Corrupt(String),
    /// The URL names an engine this build does not support.
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Whether the caller should be told to retry (503) rather than that it failed (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::NotLoaded)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// The future every store method returns (boxed, so `Store` can be used as `dyn Store`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The lookups the catalogue needs. Every method is one read; `Ok(None)` = unknown subject.
/// Each answer carries the time of the data it was read from; a known subject in a store that
/// was never loaded is [`StoreError::NotLoaded`].
pub trait Store: Send + Sync {
    /// Cheap liveness check of the backing database.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// When the data was last refreshed from the comune's systems (`dataAggiornamento`).
    fn data_aggiornamento(&self) -> StoreFuture<'_, DateTime<Utc>>;
    /// The person's registry record (generalità, life status).
    fn persona<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Persona>>>;
    /// Whether and where the person resides.
    fn residenza<'a>(
        &'a self,
        cf: &'a CodiceFiscale,
    ) -> StoreFuture<'a, Option<Dated<StatoResidenza>>>;
    /// The person's current family; `None` if unknown or not in a family (deceased, emigrated).
    fn famiglia<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Famiglia>>>;
    /// The IMU position of a contribuente in a year.
    fn posizione_imu<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<PosizioneImu>>>;
    /// The TARI position of a contribuente in a year.
    fn posizione_tari<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<PosizioneTari>>>;
    /// The years in which an IMU or TARI position is not fully paid, ascending.
    fn anni_con_debito<'a>(&'a self, s: &'a Soggetto) -> StoreFuture<'a, Option<Dated<Vec<u16>>>>;
    /// The pagoPA payments of a contribuente for a tax year.
    fn pagamenti<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<Vec<Pagamento>>>>;
}
