//! The fruizioni's side of the audit trail: which of the comune's offices called which other
//! administration, for which purpose, with which voucher, on behalf of which user, and what came
//! back.
//!
//! Outbound calls are recorded in the same database as the e-services' records (table
//! `audit_fruizioni`, created beside `audit_log` when missing, so an existing trail is migrated
//! in place on start) and through the same [`super::audit::AuditLog`] writer: batched commits,
//! and the proxy's answer waits for its record's commit. A separate table rather than new
//! columns in `audit_log`: the two directions share few fields (no consumer or data subject
//! here, no internal caller there), and `pdnd-gateway audit` merges both by time.

use sqlx::any::AnyRow;
use sqlx::Row;

/// One call through `/fruizioni`, refused or forwarded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FruizioneRecord {
    /// Unique per record.
    pub record_id: String,
    /// UTC, RFC 3339 with milliseconds (as [`super::audit::format_time`]).
    pub time: String,
    pub request_id: String,
    /// The internal caller's configured name (`[[internal.api_key]] name`).
    pub caller: String,
    /// The fruizione called; `None` when the name asked for is not a well-formed one.
    pub fruizione: Option<String>,
    /// The HTTP method of the call.
    pub method: String,
    /// The purpose the voucher was asked for (the fruizione's), when the fruizione exists.
    pub purpose_id: Option<String>,
    /// The PDND client the voucher was asked with.
    pub client_id: Option<String>,
    /// The `jti` of the voucher sent, when one was.
    pub voucher_jti: Option<String>,
    /// The status the internal caller got (the remote's, or the proxy's own refusal).
    pub status: u16,
    /// The status the remote answered, when it answered.
    pub remote_status: Option<u16>,
    pub latency_ms: i64,
    /// `X-User-Id` of the call, when given (validated: at most 256 bytes, no control characters).
    pub user_id: Option<String>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_fruizioni (
    record_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    fruizione TEXT,
    method TEXT NOT NULL,
    purpose_id TEXT,
    client_id TEXT,
    voucher_jti TEXT,
    status BIGINT NOT NULL,
    remote_status BIGINT,
    latency_ms BIGINT NOT NULL,
    user_id TEXT
)";

const INDEXES: [&str; 3] = [
    "CREATE INDEX IF NOT EXISTS audit_fruizioni_at ON audit_fruizioni (at)",
    "CREATE INDEX IF NOT EXISTS audit_fruizioni_caller ON audit_fruizioni (caller)",
    "CREATE INDEX IF NOT EXISTS audit_fruizioni_purpose ON audit_fruizioni (purpose_id)",
];

/// Creates the table and its indexes when missing (idempotent: run on every start).
pub(crate) async fn migrate(pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(SCHEMA).execute(pool).await?;
    for index in INDEXES {
        sqlx::query(index).execute(pool).await?;
    }
    Ok(())
}

/// A query over the fruizioni's records; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct FruizioniQuery {
    /// Inclusive lower bound, RFC 3339 UTC.
    pub from: Option<String>,
    /// Exclusive upper bound, RFC 3339 UTC.
    pub to: Option<String>,
    pub caller: Option<String>,
    pub fruizione: Option<String>,
    pub purpose_id: Option<String>,
    pub request_id: Option<String>,
    pub limit: Option<u32>,
}

/// The record a row of `audit_fruizioni` holds (the table's one reader is
/// `AuditStore::query_fruizioni`, beside the writer, so that this module needs nothing of it).
pub(crate) fn record_from_row(row: &AnyRow) -> Result<FruizioneRecord, sqlx::Error> {
    let status: i64 = row.try_get("status")?;
    let remote_status: Option<i64> = row.try_get("remote_status")?;
    Ok(FruizioneRecord {
        record_id: row.try_get("record_id")?,
        time: row.try_get("at")?,
        request_id: row.try_get("request_id")?,
        caller: row.try_get("caller")?,
        fruizione: row.try_get("fruizione")?,
        method: row.try_get("method")?,
        purpose_id: row.try_get("purpose_id")?,
        client_id: row.try_get("client_id")?,
        voucher_jti: row.try_get("voucher_jti")?,
        status: u16::try_from(status).unwrap_or(0),
        remote_status: remote_status.and_then(|s| u16::try_from(s).ok()),
        latency_ms: row.try_get("latency_ms")?,
        user_id: row.try_get("user_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::audit::{format_time, AuditLog, AuditQuery, AuditStore};

    fn record(i: usize, caller: &str) -> FruizioneRecord {
        FruizioneRecord {
            record_id: uuid::Uuid::new_v4().to_string(),
            time: format_time(chrono::Utc::now()),
            request_id: format!("req-{i}"),
            caller: caller.to_owned(),
            fruizione: Some("inps-isee".into()),
            method: "POST".into(),
            purpose_id: Some("p-1".into()),
            client_id: Some("c-1".into()),
            voucher_jti: Some(format!("jti-{i}")),
            status: 200,
            remote_status: Some(200),
            latency_ms: 12,
            user_id: Some("operatore.7".into()),
        }
    }

    /// A SQLite file of its own, removed (with its WAL) when the `TestDb` drops.
    fn temp_db() -> test_support::TestDb {
        test_support::TestDb::sqlite("pdndgw-audit-fr")
    }

    #[tokio::test]
    async fn records_commit_through_the_shared_writer_and_filter() {
        let url = temp_db();
        let store = AuditStore::connect(&url).await.unwrap();
        let log = AuditLog::start(store.clone(), 16);
        let mut tasks = Vec::new();
        for i in 0..40usize {
            let log = log.clone();
            let caller = if i % 4 == 0 {
                "protocollo"
            } else {
                "ufficio-tributi"
            };
            let r = record(i, caller);
            tasks.push(tokio::spawn(async move { log.record_fruizione(r).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let all = store
            .query_fruizioni(&FruizioniQuery::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 40);
        let protocollo = store
            .query_fruizioni(&FruizioniQuery {
                caller: Some("protocollo".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(protocollo.len(), 10);
        assert!(protocollo.iter().all(|r| r.caller == "protocollo"));
        let limited = store
            .query_fruizioni(&FruizioniQuery {
                limit: Some(3),
                fruizione: Some("inps-isee".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(limited.len(), 3);
        assert_eq!(limited[0].remote_status, Some(200));
        // The e-services' table is untouched by them.
        assert_eq!(store.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn closed_store_fails_a_fruizione_record() {
        let url = temp_db();
        let store = AuditStore::connect(&url).await.unwrap();
        let log = AuditLog::start(store.clone(), 8);
        log.record_fruizione(record(0, "x")).await.unwrap();
        store.close().await;
        assert!(log.record_fruizione(record(1, "x")).await.is_err());
        assert!(!log.is_healthy());
    }

    /// A trail created before the fruizioni were audited (only `audit_log`, with records in
    /// it) opens, keeps its records, and takes fruizioni records beside them.
    #[tokio::test]
    async fn an_existing_trail_is_migrated_in_place() {
        let url = temp_db();
        {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            // The schema as it was before this table existed.
            sqlx::query(
                "CREATE TABLE audit_log (record_id TEXT PRIMARY KEY, at TEXT NOT NULL, \
                 request_id TEXT NOT NULL, consumer_id TEXT, client_id TEXT, purpose_id TEXT, \
                 voucher_jti TEXT, eservice TEXT NOT NULL, operation TEXT, status BIGINT NOT NULL, \
                 latency_ms BIGINT NOT NULL, subject_hash TEXT, user_id TEXT, user_location TEXT, \
                 loa TEXT)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO audit_log (record_id, at, request_id, eservice, status, latency_ms) \
                 VALUES ('old-1', '2026-01-01T00:00:00.000Z', 'req-old', 'anagrafe', 200, 5)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = AuditStore::connect(&url).await.unwrap();
        let old = store.query(&AuditQuery::default()).await.unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].record_id, "old-1");
        let log = AuditLog::start(store.clone(), 4);
        log.record_fruizione(record(1, "protocollo")).await.unwrap();
        assert_eq!(
            store
                .query_fruizioni(&FruizioniQuery::default())
                .await
                .unwrap()
                .len(),
            1
        );
        store.close().await;
        // A second start over the migrated trail is a no-op.
        let again = AuditStore::connect(&url).await.unwrap();
        assert_eq!(again.count().await.unwrap(), 1);
        assert_eq!(
            again
                .query_fruizioni(&FruizioniQuery::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
