//! What the gateway remembers of its deposits (tables in `provider::audit_lifecycle`).

use sqlx::{AnyPool, Row};

/// PDND's states of a day's deposit, as the tracing service names them.
pub const COMPLETED: &str = "COMPLETED";
pub const PENDING: &str = "PENDING";
pub const MISSING: &str = "MISSING";
pub const ERROR: &str = "ERROR";

/// What the gateway knows of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRecord {
    /// `YYYY-MM-DD`, Europe/Rome.
    pub day: String,
    pub tracing_id: Option<String>,
    /// PDND's state (`PENDING`, `COMPLETED`, `MISSING`, `ERROR`).
    pub state: String,
    /// PDND's `errors` flag of the last answer (errors somewhere in the tenant's history).
    pub errors: bool,
    /// SHA-256 of the file deposited last (`None`: deposited by something else than this
    /// gateway's sync, or never).
    pub checksum: Option<String>,
    /// The row errors PDND reported for the deposit (JSON array), when it is in ERROR.
    pub row_errors: Option<String>,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<DayRecord, sqlx::Error> {
    let errors: i64 = row.try_get("errors")?;
    Ok(DayRecord {
        day: row.try_get("day")?,
        tracing_id: row.try_get("tracing_id")?,
        state: row.try_get("state")?,
        errors: errors != 0,
        checksum: row.try_get("checksum")?,
        row_errors: row.try_get("row_errors")?,
    })
}

const SELECT: &str =
    "SELECT day, tracing_id, state, errors, checksum, row_errors FROM tracing_days";

/// The record of `day`, if any.
pub async fn day(pool: &AnyPool, day: &str) -> Result<Option<DayRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE day = $1")))
        .bind(day)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every day recorded, oldest first.
pub async fn days(pool: &AnyPool) -> Result<Vec<DayRecord>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY day")))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Writes `record` unless it is already what the table holds; `true` when it wrote.
pub async fn save_day(pool: &AnyPool, record: &DayRecord, now: &str) -> Result<bool, sqlx::Error> {
    if day(pool, &record.day).await?.as_ref() == Some(record) {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO tracing_days (day, tracing_id, state, errors, checksum, row_errors, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (day) DO UPDATE SET \
         tracing_id = excluded.tracing_id, state = excluded.state, errors = excluded.errors, \
         checksum = excluded.checksum, row_errors = excluded.row_errors, \
         updated_at = excluded.updated_at",
    )
    .bind(&record.day)
    .bind(&record.tracing_id)
    .bind(&record.state)
    .bind(i64::from(record.errors))
    .bind(&record.checksum)
    .bind(&record.row_errors)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(true)
}

/// One deposit, as it goes into the history.
#[derive(Debug, Clone)]
pub struct Deposit<'a> {
    pub day: &'a str,
    /// `submit`, `recover` or `replace`.
    pub action: &'a str,
    pub tracing_id: Option<&'a str>,
    pub state: &'a str,
    pub errors: bool,
    pub checksum: &'a str,
    pub rows: usize,
}

/// Appends a deposit to the history.
pub async fn record_deposit(
    pool: &AnyPool,
    deposit: &Deposit<'_>,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tracing_deposits (deposit_id, day, action, tracing_id, state, errors, \
         checksum, rows_count, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(deposit.day)
    .bind(deposit.action)
    .bind(deposit.tracing_id)
    .bind(deposit.state)
    .bind(i64::from(deposit.errors))
    .bind(deposit.checksum)
    .bind(i64::try_from(deposit.rows).unwrap_or(i64::MAX))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The history of deposits as (day, action), oldest first (tests and reports).
pub async fn deposits(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT day, action FROM tracing_deposits ORDER BY at, deposit_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("day")?, r.try_get("action")?)))
        .collect()
}
