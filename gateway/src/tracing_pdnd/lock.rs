//! One replica at a time runs the daily sync (`[tracing] run_in_serve`).
//!
//! On PostgreSQL, a session advisory lock held on a connection taken out of the pool: if the
//! replica dies, its session ends and the lock goes with it. SQLite has no such thing; a row in
//! `gateway_locks` with an expiry plays the part (only replicas sharing the file can compete,
//! and a crashed holder's row expires after `ttl_secs`).

use sqlx::{AnyConnection, AnyPool, Connection, Row};

/// The advisory lock's key: a fixed number no other part of the gateway uses.
const ADVISORY_KEY: i64 = 0x7064_6e64_7472_6163; // "pdndtrac"

/// The lock row's name.
const LOCK_NAME: &str = "tracing-sync";

/// A held lock; [`SyncLock::release`] gives it back.
pub enum SyncLock {
    Postgres(AnyConnection),
    Row { pool: AnyPool, holder: String },
}

/// Takes the lock if nobody holds it: `None` when another replica does.
pub async fn try_acquire(
    pool: &AnyPool,
    now: i64,
    ttl_secs: i64,
) -> Result<Option<SyncLock>, sqlx::Error> {
    let conn = pool.acquire().await?;
    if conn.backend_name() == "PostgreSQL" {
        let mut conn = conn.detach();
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(ADVISORY_KEY)
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        if got {
            return Ok(Some(SyncLock::Postgres(conn)));
        }
        conn.close().await?;
        return Ok(None);
    }
    drop(conn);
    let holder = uuid::Uuid::new_v4().to_string();
    let taken = sqlx::query(
        "INSERT INTO gateway_locks (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_at = excluded.expires_at WHERE gateway_locks.expires_at <= $4",
    )
    .bind(LOCK_NAME)
    .bind(&holder)
    .bind(now + ttl_secs)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok((taken == 1).then(|| SyncLock::Row {
        pool: pool.clone(),
        holder,
    }))
}

impl SyncLock {
    /// Gives the lock back.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        match self {
            SyncLock::Postgres(mut conn) => {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(ADVISORY_KEY)
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            }
            SyncLock::Row { pool, holder } => {
                sqlx::query("DELETE FROM gateway_locks WHERE name = $1 AND holder = $2")
                    .bind(LOCK_NAME)
                    .bind(&holder)
                    .execute(&pool)
                    .await?;
                Ok(())
            }
        }
    }
}
