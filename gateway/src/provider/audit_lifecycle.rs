//! The tables of the audit trail's lifecycle, beside `audit_log` and `audit_fruizioni`:
//!
//! - `tracing_days`: for each day, what PDND holds of the comune's tracing file (its
//!   `tracingId`, state, errors flag, the checksum of the file deposited, the row errors PDND
//!   reported). `tracing sync` reads it to know what changed since a deposit, and the purge
//!   reads it to keep every day PDND has not accepted yet.
//! - `tracing_deposits`: every submit, recover and replace, never updated: the history an
//!   auditor asks for ("what did you send PDND for 3 March, and when").
//! - `audit_daily`: calls per day, side, purpose and status, filled before per-request records
//!   are purged, and kept longer (`audit.aggregate_retention_days`).
//! - `audit_purges`: one row per purge (range and count), the trace that data went on purpose.
//! - `gateway_locks`: the lock row that lets one replica at a time run the daily sync on SQLite
//!   (PostgreSQL uses an advisory lock instead).
//!
//! The trail's days are Europe/Rome calendar days (PDND's): [`day_bounds`] turns one into the
//! UTC range the records are stored in.
//!
//! Created when missing on every start, like the other audit tables, on SQLite and PostgreSQL
//! alike (TEXT and BIGINT only).

use chrono::{NaiveDate, TimeZone, Utc};

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS tracing_days (
        day TEXT PRIMARY KEY,
        tracing_id TEXT,
        state TEXT NOT NULL,
        errors BIGINT NOT NULL,
        checksum TEXT,
        row_errors TEXT,
        updated_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS tracing_deposits (
        deposit_id TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        action TEXT NOT NULL,
        tracing_id TEXT,
        state TEXT NOT NULL,
        errors BIGINT NOT NULL,
        checksum TEXT NOT NULL,
        rows_count BIGINT NOT NULL,
        at TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS tracing_deposits_day ON tracing_deposits (day)",
    "CREATE TABLE IF NOT EXISTS audit_daily (
        day TEXT NOT NULL,
        side TEXT NOT NULL,
        purpose_id TEXT NOT NULL,
        status BIGINT NOT NULL,
        requests BIGINT NOT NULL,
        PRIMARY KEY (day, side, purpose_id, status)
    )",
    "CREATE TABLE IF NOT EXISTS audit_purges (
        purge_id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        before_time TEXT NOT NULL,
        first_day TEXT,
        last_day TEXT,
        records BIGINT NOT NULL,
        fruizioni BIGINT NOT NULL,
        aggregates BIGINT NOT NULL,
        kept_days TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS gateway_locks (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
];

/// Creates the tables when missing (idempotent: run on every start).
pub(crate) async fn migrate(pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    for statement in SCHEMA {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// The day's bounds as the audit trail stores times (UTC, RFC 3339, milliseconds): `[from, to)`.
/// Midnight exists on every day in Rome (the clocks change at 02:00 and 03:00), so the day is
/// 23 hours long in March and 25 in October.
pub fn day_bounds(date: NaiveDate) -> (String, String) {
    let next = date.succ_opt().unwrap_or(date);
    (
        super::audit::format_time(day_start(date)),
        super::audit::format_time(day_start(next)),
    )
}

/// The instant a Rome calendar day begins (its midnight, in UTC).
pub fn day_start(date: NaiveDate) -> chrono::DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    chrono_tz::Europe::Rome
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// The next Rome midnight after `t`: when the day of `t` ends.
pub fn next_midnight(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let day = rome_day(t);
    day_start(day.succ_opt().unwrap_or(day))
}

/// The Rome calendar day of a UTC instant.
pub fn rome_day(t: chrono::DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&chrono_tz::Europe::Rome).date_naive()
}
