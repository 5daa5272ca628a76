//! The deterministic synthetic sample: a small comune (Pisa's codes) a newcomer can query.
//!
//! A fixed-seed generator produces families with valid codici fiscali (homonyms resolved by
//! omocodia, as the Agenzia delle Entrate does), addresses, a few deceased and emigrated
//! people, IMU properties and positions, TARI utenze and instalments, pagoPA payments with
//! valid-looking IUVs, and a few companies identified by partita IVA. The same `residents`
//! gives the same rows on every engine. Rows go in with multi-row INSERTs, one transaction per
//! block, so a million residents is a matter of seconds, not hours.

mod batch;
mod generator;
mod names;

use super::seed_guard::{MARKER_TABLE, SEED_IN_PROGRESS, SEED_TABLES};
use super::sql::{SqlStore, KEY_DATA_AGGIORNAMENTO};
use super::StoreError;
use batch::Tables;
use chrono::{SecondsFormat, Utc};
use generator::Generator;
use sqlx::{AssertSqlSafe, Row};

/// What the seed wrote, with a few subjects worth trying.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    pub residents: u32,
    pub samples: Vec<SampleSubject>,
}

/// A subject of the sample, with what makes it interesting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSubject {
    pub codice_fiscale: String,
    pub cognome: String,
    pub nome: String,
    pub description: String,
}

/// The comune of the sample (Pisa: ISTAT 050026, Belfiore G702).
const COMUNE_ISTAT: &str = "050026";
/// The tax years the sample has positions for.
const ANNI: std::ops::RangeInclusive<i64> = 2023..=2025;
/// "Today" of the sample, fixed so the data never depends on when it is generated.
const OGGI: (i32, u32, u32) = (2025, 6, 1);
/// Persons generated per transaction.
const BLOCK: usize = 5_000;
/// Bind parameters per INSERT statement (SQLite allows 32766, PostgreSQL 65535).
const PARAMS_PER_STATEMENT: usize = 8_000;

/// Replaces the store's content with the deterministic sample of `residents` persons.
pub async fn seed(store: &SqlStore, residents: u32) -> Result<SeedSummary, StoreError> {
    let pool = store.pool();
    let mut conn = pool.acquire().await?;
    {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for table in SEED_TABLES {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        // Marked as the seed's before the first row goes in: an interrupted seed leaves a
        // database the next seed still recognises as its own.
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (persone BIGINT NOT NULL)"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {MARKER_TABLE}")))
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {MARKER_TABLE} (persone) VALUES ($1)"
        )))
        .bind(SEED_IN_PROGRESS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let mut generator = Generator::new();
    let mut tables = Tables::new();
    while generator.generated < residents {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let block_end = generator
            .generated
            .saturating_add(u32::try_from(BLOCK).unwrap_or(u32::MAX))
            .min(residents);
        while generator.generated < block_end {
            let budget = residents - generator.generated;
            generator.generated += generator.family(&mut tables, budget)?;
        }
        tables.flush(&mut tx, store.engine()).await?;
        tx.commit().await?;
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    sqlx::query("INSERT INTO metadati (chiave, valore) VALUES ($1, $2)")
        .bind(KEY_DATA_AGGIORNAMENTO)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let persone: i64 = sqlx::query("SELECT COUNT(*) FROM persone")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {MARKER_TABLE} SET persone = $1"
    )))
    .bind(persone)
    .execute(&mut *conn)
    .await?;
    Ok(SeedSummary {
        residents: generator.generated,
        samples: generator.samples,
    })
}
