//! `audit purge`: the per-request records are kept for `audit.retention_days`, then go.
//!
//! Why a limit: the trail holds who asked for whose data (a keyed hash of the codice fiscale,
//! the consumer, the purpose, the user of the tracking evidence). GDPR's storage limitation
//! (art. 5(1)(e)) allows personal data only as long as their purpose needs them: answering
//! PDND, the data subjects and the auditors for the period the comune's retention policy sets.
//! There is no default: the period is the comune's decision, and a default that deletes would
//! delete silently. Unset, the purge refuses and names the key to set.
//!
//! Before a day's records go, its calls per side, purpose and HTTP status are added to
//! `audit_daily`, kept for `audit.aggregate_retention_days` (statistics hold no personal data).
//! A day whose PDND tracing deposit is not COMPLETED is never purged (when `[tracing]` is
//! configured): its file must still be computable for a recover or a replace. Every purge
//! leaves a row in `audit_purges` (range and counts); `--dry-run` counts and changes nothing.
//! Days are Europe/Rome days, like the tracing file's.

use super::audit::lookups;
use super::audit_lifecycle::{day_bounds, rome_day};
use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{AnyPool, Row};

/// Why a purge did not run.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("audit.retention_days is not set: the purge deletes nothing until the comune decides how many days per-request records are kept (set audit.retention_days, e.g. PDNDGW_AUDIT__RETENTION_DAYS=365)")]
    NoRetention,
    #[error("audit.aggregate_retention_days ({aggregate}) must not be shorter than audit.retention_days ({records})")]
    AggregatesShorter { aggregate: u32, records: u32 },
    #[error("audit.retention_days must be at least 1")]
    ZeroRetention,
    #[error("audit database: {0}")]
    Store(#[from] sqlx::Error),
}

/// The retention settings of one purge.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub records_days: Option<u32>,
    pub aggregate_days: Option<u32>,
    /// Keep days whose tracing deposit is not COMPLETED (`[tracing]` configured).
    pub require_deposit: bool,
}

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Records before this instant (UTC) are candidates: the start of the first kept day.
    pub before: String,
    /// The purged days' range (Rome days), when any.
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    /// Per-request records removed (or that would be) from `audit_log` and `audit_fruizioni`.
    pub records: u64,
    pub fruizioni: u64,
    /// Daily aggregates older than their own period removed.
    pub aggregates: u64,
    /// Days older than the period kept because their tracing deposit is not COMPLETED.
    pub kept_days: Vec<NaiveDate>,
    pub dry_run: bool,
}

const AGGREGATE: [(&str, &str); 2] = [
    (
        "erogazioni",
        "INSERT INTO audit_daily (day, side, purpose_id, status, requests) \
         SELECT $1, 'erogazioni', COALESCE(purpose_id, ''), status, COUNT(*) FROM audit_log \
         WHERE at >= $2 AND at < $3 GROUP BY COALESCE(purpose_id, ''), status \
         ON CONFLICT (day, side, purpose_id, status) DO UPDATE SET requests = excluded.requests",
    ),
    (
        "fruizioni",
        "INSERT INTO audit_daily (day, side, purpose_id, status, requests) \
         SELECT $1, 'fruizioni', COALESCE(purpose_id, ''), COALESCE(remote_status, status), \
         COUNT(*) FROM audit_fruizioni WHERE at >= $2 AND at < $3 \
         GROUP BY COALESCE(purpose_id, ''), COALESCE(remote_status, status) \
         ON CONFLICT (day, side, purpose_id, status) DO UPDATE SET requests = excluded.requests",
    ),
];

async fn count(pool: &AnyPool, table: &str, from: &str, to: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE at >= $1 AND at < $2"
    )))
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?
    .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn oldest(pool: &AnyPool) -> Result<Option<String>, sqlx::Error> {
    let mut oldest: Option<String> = None;
    for table in ["audit_log", "audit_fruizioni"] {
        let at: Option<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT MIN(at) FROM {table}")))
                .fetch_one(pool)
                .await?
                .try_get(0)?;
        oldest = match (oldest, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(oldest)
}

/// Is a lookup index attached to this connection (a SQLite audit file's)?
async fn has_lookup_index(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
    if conn.backend_name() != "SQLite" {
        return Ok(false);
    }
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM pragma_database_list WHERE name = $1")
        .bind(lookups::SCHEMA_NAME)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(n > 0)
}

/// Purges (or, with `dry_run`, counts) the records older than the period at `now`.
pub async fn purge(
    pool: &AnyPool,
    retention: Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PurgeReport, PurgeError> {
    let days = retention.records_days.ok_or(PurgeError::NoRetention)?;
    if days == 0 {
        return Err(PurgeError::ZeroRetention);
    }
    if let Some(aggregate) = retention.aggregate_days.filter(|a| *a < days) {
        return Err(PurgeError::AggregatesShorter {
            aggregate,
            records: days,
        });
    }
    let today = rome_day(now);
    let first_kept = today
        .checked_sub_days(Days::new(u64::from(days)))
        .unwrap_or(today);
    let (before, _) = day_bounds(first_kept);
    let mut report = PurgeReport {
        before: before.clone(),
        dry_run,
        ..PurgeReport::default()
    };
    let mut purgeable = Vec::new();
    if let Some(oldest) = oldest(pool).await?.filter(|o| *o < before) {
        let start = DateTime::parse_from_rfc3339(&oldest)
            .map(|t| rome_day(t.with_timezone(&Utc)))
            .unwrap_or(first_kept);
        let mut day = start;
        while day < first_kept {
            let (from, to) = day_bounds(day);
            let records = count(pool, "audit_log", &from, &to).await?;
            let fruizioni = count(pool, "audit_fruizioni", &from, &to).await?;
            if records + fruizioni > 0 {
                let state: Option<String> =
                    sqlx::query("SELECT state FROM tracing_days WHERE day = $1")
                        .bind(day.format("%Y-%m-%d").to_string())
                        .fetch_optional(pool)
                        .await?
                        .map(|r| r.try_get(0))
                        .transpose()?;
                if retention.require_deposit && state.as_deref() != Some("COMPLETED") {
                    report.kept_days.push(day);
                } else {
                    purgeable.push((day, from, to));
                    report.records += records;
                    report.fruizioni += fruizioni;
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
    }
    report.first_day = purgeable.first().map(|(d, _, _)| *d);
    report.last_day = purgeable.last().map(|(d, _, _)| *d);
    let aggregate_cutoff = retention
        .aggregate_days
        .and_then(|a| today.checked_sub_days(Days::new(u64::from(a))))
        .map(|d| d.format("%Y-%m-%d").to_string());
    if dry_run {
        if let Some(cutoff) = &aggregate_cutoff {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM audit_daily WHERE day < $1")
                .bind(cutoff)
                .fetch_one(pool)
                .await?
                .try_get(0)?;
            report.aggregates = u64::try_from(n).unwrap_or(0);
        }
        return Ok(report);
    }
    let mut tx = pool.begin().await?;
    for (day, from, to) in &purgeable {
        let key = day.format("%Y-%m-%d").to_string();
        for (_, sql) in AGGREGATE {
            sqlx::query(sql)
                .bind(&key)
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        for table in ["audit_log", "audit_fruizioni"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE at >= $1 AND at < $2"
            )))
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        }
    }
    if !purgeable.is_empty() && has_lookup_index(&mut tx).await? {
        // A SQLite file's lookup index (`provider/audit/lookups.rs`): entries of purged
        // records go, and records after a purge that emptied the trail reuse rowids the index
        // had passed, so its end comes down to the trail's.
        sqlx::query(lookups::PURGE_DROPS_ENTRIES)
            .execute(&mut *tx)
            .await?;
        sqlx::query(lookups::PURGE_LOWERS_UPTO)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(cutoff) = &aggregate_cutoff {
        report.aggregates = sqlx::query("DELETE FROM audit_daily WHERE day < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let kept: Vec<String> = report.kept_days.iter().map(|d| d.to_string()).collect();
    sqlx::query(
        "INSERT INTO audit_purges (purge_id, at, before_time, first_day, last_day, records, \
         fruizioni, aggregates, kept_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(crate::provider::audit::format_time(now))
    .bind(&report.before)
    .bind(report.first_day.map(|d| d.to_string()))
    .bind(report.last_day.map(|d| d.to_string()))
    .bind(i64::try_from(report.records).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.fruizioni).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.aggregates).unwrap_or(i64::MAX))
    .bind(kept.join(","))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}
