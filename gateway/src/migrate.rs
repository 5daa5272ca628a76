//! The database schemas as an operator step: `pdnd-gateway migrate` creates or upgrades them,
//! and a `serve` told not to migrate (`database.migrate_on_start = false`, `serve --no-migrate`)
//! checks them, read-only, before it listens.
//!
//! Two databases, as `serve` uses them: the e-service store (`database.url`: versioned sqlx
//! migrations embedded in the binary) and the gateway's own (`audit.url`: the audit trail of
//! both sides and the purposes table, created when missing). Migrating them from one place, a
//! Kubernetes Job before a rollout, means replicas can run with a database user without DDL
//! rights and never race each other over a schema change.
//!
//! Errors name the database by its redacted URL, never a password.

use crate::config::{redact_url, Config};
use crate::provider::audit::{AuditError, AuditStore};
use crate::provider::purpose::PurposeDb;
use eservices::store::{SqlStore, StoreError};

/// Why the schemas could not be migrated or are not ready for `serve`.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("e-service store ({url}): {source}")]
    Store { url: String, source: StoreError },
    #[error("audit store ({url}): {source}")]
    Audit { url: String, source: AuditError },
    #[error(
        "the schema of the {what} ({url}) is missing or behind: {detail}. This `serve` does not \
         migrate (database.migrate_on_start = false or --no-migrate): run \
         `pdnd-gateway migrate --config <file>` with this configuration first"
    )]
    Behind {
        what: &'static str,
        url: String,
        detail: String,
    },
}

/// What [`run`] did, for the command's output.
#[derive(Debug)]
pub struct Migrated {
    /// The e-service store's migrations applied now (empty: it was already current).
    pub store_applied: Vec<i64>,
    pub store_url: String,
    pub audit_url: String,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let applied = if self.store_applied.is_empty() {
            "already current".to_owned()
        } else {
            format!(
                "applied migration(s) {}",
                self.store_applied
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        writeln!(f, "e-service store {}: {applied}", self.store_url)?;
        write!(
            f,
            "audit store {}: audit, tracing and purge tables present",
            self.audit_url
        )
    }
}

/// The tables of the gateway's own database and the columns `serve` reads and writes. A
/// unit test checks this list against what [`AuditStore::migrate`] creates, so a column added
/// there without being added here fails the build's tests.
const AUDIT_TABLES: [(&str, &str); 8] = [
    (
        "audit_log",
        "record_id, at, request_id, consumer_id, client_id, purpose_id, voucher_jti, eservice, \
         operation, status, latency_ms, subject_hash, user_id, user_location, loa",
    ),
    (
        "audit_fruizioni",
        "record_id, at, request_id, caller, fruizione, method, purpose_id, client_id, \
         voucher_jti, status, remote_status, latency_ms, user_id",
    ),
    (
        "purposes",
        "purpose_id, consumer_name, consumer_id, eservice, operations, daily_quota, state, \
         eservice_id, descriptor_id, producer_id",
    ),
    (
        "tracing_days",
        "day, tracing_id, state, errors, checksum, row_errors, updated_at",
    ),
    (
        "tracing_deposits",
        "deposit_id, day, action, tracing_id, state, errors, checksum, rows_count, at",
    ),
    ("audit_daily", "day, side, purpose_id, status, requests"),
    (
        "audit_purges",
        "purge_id, at, before_time, first_day, last_day, records, fruizioni, aggregates, \
         kept_days",
    ),
    ("gateway_locks", "name, holder, expires_at"),
];

/// Creates or upgrades both schemas (idempotent: a second run changes nothing).
pub async fn run(config: &Config) -> Result<Migrated, MigrateError> {
    let store_url = redact_url(&config.database.url);
    let audit_url = redact_url(&config.audit.url);
    let store_err = |source| MigrateError::Store {
        url: store_url.clone(),
        source,
    };
    let store = SqlStore::connect(&config.database.url)
        .await
        .map_err(store_err)?;
    let store_applied = store.pending_migrations().await.map_err(store_err)?;
    store.migrate().await.map_err(store_err)?;
    store.pool().close().await;

    let audit_err = |source| MigrateError::Audit {
        url: audit_url.clone(),
        source,
    };
    let audit = AuditStore::connect(&config.audit.url)
        .await
        .map_err(audit_err)?;
    PurposeDb::open(audit.pool().clone())
        .await
        .map_err(|e| audit_err(AuditError::Store(e)))?;
    audit.close().await;
    Ok(Migrated {
        store_applied,
        store_url,
        audit_url,
    })
}

/// Checks, without changing anything, that both schemas are current.
pub async fn verify(config: &Config) -> Result<(), MigrateError> {
    let store_url = redact_url(&config.database.url);
    let store = SqlStore::connect(&config.database.url)
        .await
        .map_err(|source| MigrateError::Store {
            url: store_url.clone(),
            source,
        })?;
    let pending = store
        .pending_migrations()
        .await
        .map_err(|source| MigrateError::Store {
            url: store_url.clone(),
            source,
        })?;
    store.pool().close().await;
    if !pending.is_empty() {
        return Err(MigrateError::Behind {
            what: "e-service store",
            url: store_url,
            detail: format!(
                "migration(s) {} not applied",
                pending
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }

    let audit_url = redact_url(&config.audit.url);
    let audit = AuditStore::open(&config.audit.url)
        .await
        .map_err(|source| MigrateError::Audit {
            url: audit_url.clone(),
            source,
        })?;
    let result = verify_audit_tables(audit.pool()).await;
    audit.close().await;
    result.map_err(|detail| MigrateError::Behind {
        what: "audit store",
        url: audit_url,
        detail,
    })
}

/// Each table answers a query naming every column it must have.
async fn verify_audit_tables(pool: &sqlx::AnyPool) -> Result<(), String> {
    for (table, columns) in AUDIT_TABLES {
        // Built only from the constants above, never from input.
        let probe = format!("SELECT {columns} FROM {table} WHERE 1 = 0");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(probe))
            .fetch_optional(pool)
            .await
        {
            return Err(match e {
                sqlx::Error::Database(db) => {
                    format!(
                        "table `{table}` is missing a column or is absent ({})",
                        db.message()
                    )
                }
                other => format!("table `{table}` could not be read: {other}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
        format!("sqlite://{}?mode=rwc", dir.join(name).display())
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pdndgw-migrate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config::from_toml_str(crate::config::DEV_TOML).expect("dev config");
        c.database.url = sqlite_url(dir, "comune.db");
        c.audit.url = sqlite_url(dir, "audit.db");
        c
    }

    #[tokio::test]
    async fn a_fresh_database_is_behind_until_migrated_then_current_and_a_rerun_applies_nothing() {
        let dir = temp_dir();
        let c = config(&dir);
        let err = verify(&c).await.expect_err("nothing migrated yet");
        assert!(
            err.to_string().contains("e-service store") && err.to_string().contains("migrate"),
            "{err}"
        );
        let first = run(&c).await.expect("migrates");
        assert_eq!(first.store_applied, vec![1]);
        verify(&c).await.expect("current after migrate");
        let second = run(&c).await.expect("idempotent");
        assert!(second.store_applied.is_empty(), "{second:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn an_audit_table_missing_a_column_is_behind() {
        let dir = temp_dir();
        let c = config(&dir);
        run(&c).await.expect("migrates");
        let audit = AuditStore::open(&c.audit.url).await.expect("open");
        sqlx::query("DROP TABLE purposes")
            .execute(audit.pool())
            .await
            .expect("drop");
        sqlx::query("CREATE TABLE purposes (purpose_id TEXT PRIMARY KEY)")
            .execute(audit.pool())
            .await
            .expect("old shape");
        audit.close().await;
        let err = verify(&c)
            .await
            .expect_err("purposes is behind")
            .to_string();
        assert!(
            err.contains("audit store") && err.contains("`purposes`"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// The column lists above are exactly what the migration creates, nothing more or less.
    #[tokio::test]
    async fn the_checked_columns_are_the_migrated_columns() {
        let dir = temp_dir();
        let c = config(&dir);
        run(&c).await.expect("migrates");
        let audit = AuditStore::open(&c.audit.url).await.expect("open");
        for (table, columns) in AUDIT_TABLES {
            use sqlx::Row;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(audit.pool())
            .await
            .expect("table info");
            let mut created: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>(0).expect("name"))
                .collect();
            let mut listed: Vec<String> = columns.split(',').map(|c| c.trim().to_owned()).collect();
            created.sort();
            listed.sort();
            assert_eq!(created, listed, "{table}");
        }
        // And no table is created that the check does not know of.
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(audit.pool())
        .await
        .expect("tables");
        let mut created: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0).expect("name"))
            .collect();
        let mut listed: Vec<String> = AUDIT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
        // A SQLite file's trail id (`provider/audit/lookups.rs`): not checked, a trail
        // without one (from before it) works and gets one at its next migration.
        listed.push("audit_trail".into());
        created.sort();
        listed.sort();
        assert_eq!(created, listed);
        audit.close().await;
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn errors_show_the_url_without_its_password() {
        let err = MigrateError::Behind {
            what: "audit store",
            url: redact_url("postgres://gw:s3cret-Passw0rd@db/audit"),
            detail: "x".into(),
        };
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
