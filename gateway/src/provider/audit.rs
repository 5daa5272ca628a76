//! The audit trail: who asked for whose data, when, for which purpose, and what they got.
//!
//! Every request that reaches the pipeline leaves one record. A 2xx answer is sent only after
//! its record is committed: the [`AuditLog`] hands records to one writer task, which commits
//! them in batches (one transaction for everything queued) and only then releases the waiting
//! responses. A crash can lose an answer that was never sent, never a record of one that was.
//! If the store cannot commit, the waiting requests get an error and the gateway answers 503:
//! it never serves data it could not record.
//!
//! The comune's own outbound calls (fruizioni) are recorded in the same database and through
//! the same writer, in a table of their own ([`super::audit_fruizioni`]).
//!
//! The data subject is stored as HMAC-SHA-256(secret, codice fiscale): the comune can answer a
//! citizen's "who looked at my data" (GDPR art. 15) by recomputing the hash, while the log
//! itself holds no codice fiscale.

use super::audit_fruizioni::{FruizioneRecord, FruizioniQuery};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("audit writer stopped")]
    WriterGone,
    /// The batch holding this record failed to commit.
    #[error("audit commit failed: {0}")]
    Commit(String),
    #[error("audit secret must be at least 32 bytes")]
    WeakSecret,
    /// The record was not committed within the configured time (a hung database).
    #[error("audit commit not confirmed within {0:?}")]
    Timeout(Duration),
    /// The lookup index beside a SQLite trail (`provider/audit/lookups.rs`).
    #[error("audit lookup index: {0}")]
    LookupIndex(String),
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique per record (request ids may be chosen by the caller and repeat).
    pub record_id: String,
    /// UTC, RFC 3339 with milliseconds: sorts as text.
    pub time: String,
    pub request_id: String,
    pub consumer_id: Option<String>,
    pub client_id: Option<String>,
    pub purpose_id: Option<String>,
    pub voucher_jti: Option<String>,
    pub eservice: String,
    pub operation: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    pub latency_ms: i64,
    /// HMAC-SHA-256 (hex) of the codice fiscale or partita IVA the request was about.
    pub subject_hash: Option<String>,
    /// From the Agid-JWT-TrackingEvidence (AUDIT_REST_01/02), when the call carried one.
    pub user_id: Option<String>,
    pub user_location: Option<String>,
    pub loa: Option<String>,
}

/// A new record id: a UUID v7, unique like a v4 (74 random bits) but ordered by its
/// millisecond time. Why: `record_id` is the table's primary key, and the writer inserts a
/// batch into that index inside the transaction every waiting 2xx depends on. Random (v4) ids
/// land on a different leaf page each, so a batch of n records dirtied about n pages of the
/// index, each a 4 KiB frame in the WAL; time-ordered ids append to the same last pages.
pub fn record_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Formats a timestamp the way records store it.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The keyed hash of a data subject.
///
/// Holds the HMAC already keyed (the inner and outer pads absorbed once), so that each hash
/// costs the two compressions of the message instead of four.
#[derive(Clone)]
pub struct SubjectHasher {
    keyed: Hmac<Sha256>,
}

impl SubjectHasher {
    pub fn new(secret: &[u8]) -> Result<Self, AuditError> {
        if secret.len() < 32 {
            return Err(AuditError::WeakSecret);
        }
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Ok(SubjectHasher { keyed })
    }

    /// Hex HMAC-SHA-256 of the identifier, upper-cased and trimmed first so that the same
    /// subject always hashes the same however it was typed.
    ///
    /// Runs on every audited request: the upper-casing goes through a buffer on the stack and
    /// the hex into one exact allocation.
    pub fn hash(&self, subject: &str) -> String {
        let mut mac = self.keyed.clone();
        let mut buf = [0u8; 64];
        for chunk in subject.trim().as_bytes().chunks(buf.len()) {
            let upper = &mut buf[..chunk.len()];
            upper.copy_from_slice(chunk);
            upper.make_ascii_uppercase();
            mac.update(upper);
        }
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 64];
        match hex::encode_to_slice(digest, &mut out) {
            Ok(()) => String::from_utf8(out.to_vec()).unwrap_or_else(|_| hex::encode(digest)),
            Err(_) => hex::encode(digest),
        }
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_log (
    record_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    consumer_id TEXT,
    client_id TEXT,
    purpose_id TEXT,
    voucher_jti TEXT,
    eservice TEXT NOT NULL,
    operation TEXT,
    status BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    subject_hash TEXT,
    user_id TEXT,
    user_location TEXT,
    loa TEXT
)";

/// The indexes of `audit_log`. PostgreSQL and an in-memory SQLite database have them all; a
/// SQLite file keeps those by subject, purpose and consumer beside the trail instead
/// ([`lookups`]).
const INDEXES: [(&str, &str); 4] = [
    (
        "audit_log_at",
        "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)",
    ),
    (
        "audit_log_subject",
        "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject_hash)",
    ),
    (
        "audit_log_purpose",
        "CREATE INDEX IF NOT EXISTS audit_log_purpose ON audit_log (purpose_id)",
    ),
    (
        "audit_log_consumer",
        "CREATE INDEX IF NOT EXISTS audit_log_consumer ON audit_log (consumer_id)",
    ),
];

/// The audit database: SQLite (WAL, synchronous FULL) in the embedded default, PostgreSQL in
/// production. One schema and one set of queries for both.
#[derive(Clone)]
pub struct AuditStore {
    pool: AnyPool,
    /// SQLite: a batch of e-service records is one statement, committed on its own.
    sqlite: bool,
    /// A SQLite file's commits, through rusqlite on the writer's thread ([`sqlite`]); `None`
    /// for PostgreSQL (and an in-memory SQLite database), committed through the pool.
    direct: Option<Arc<sqlite::SqliteAudit>>,
    /// A SQLite file's lookup index is attached to the pool's connections as `lookups`.
    lookups: bool,
}

impl AuditStore {
    /// Connects and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<AuditStore, AuditError> {
        let store = Self::open(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema (a `serve` told not to migrate).
    pub async fn open(url: &str) -> Result<AuditStore, AuditError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        // A SQLite file's lookup index lives beside it (`provider/audit/lookups.rs`); every
        // connection of the pool sees it as `lookups`, so it must exist before they open.
        let file = if is_sqlite {
            eservices::store::sqlite_file(url)
        } else {
            None
        };
        // The index is derived: a trail whose index cannot be made beside it (a read-only copy
        // an auditor opens) is still read whole, its lookups scanning it.
        let attach = match &file {
            Some(file) => {
                lookups::remove_former(file);
                let index = lookups::index_path(file);
                match lookups::prepare(&index) {
                    Ok(()) => Some(index.to_string_lossy().into_owned()),
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            index = %index.display(),
                            "audit: no lookup index beside the trail; lookups by subject, \
                             purpose or consumer scan it"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let has_lookups = attach.is_some();
        let options = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(3))
            // A SQLite connection is a file handle in this process: pinging it before each use
            // only adds a hand-off to its thread on the way to every audit commit.
            .test_before_acquire(!is_sqlite)
            .after_connect(move |conn, _meta| {
                let attach = attach.clone();
                Box::pin(async move {
                    if let Some(index) = attach {
                        sqlx::query("ATTACH DATABASE $1 AS lookups")
                            .bind(index)
                            .execute(&mut *conn)
                            .await?;
                    }
                    if is_sqlite {
                        // WAL lets readers (the audit CLI) run beside the writer; FULL makes a
                        // commit survive power loss, not only a process crash.
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        Ok(AuditStore {
            pool: options.connect(url).await?,
            sqlite: is_sqlite,
            direct: file.map(|file| Arc::new(sqlite::SqliteAudit::new(file))),
            lookups: has_lookups,
        })
    }

    /// Creates the tables and indexes when missing (idempotent).
    pub async fn migrate(&self) -> Result<(), AuditError> {
        sqlx::query(SCHEMA).execute(&self.pool).await?;
        let is_lookup = |name: &str| {
            lookups::Lookup::ALL
                .into_iter()
                .any(|l| l.trail_index() == name)
        };
        for (name, create) in INDEXES {
            match (self.direct.is_some() && is_lookup(name), self.lookups) {
                // A SQLite file keeps this index in its lookup index; one inside the trail,
                // from before, would only slow every commit.
                (true, true) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
                        .execute(&self.pool)
                        .await?;
                }
                // Its lookup index could not be made (a read-only copy): the trail is left as
                // it is, and lookups scan it.
                (true, false) => {}
                (false, _) => {
                    sqlx::query(create).execute(&self.pool).await?;
                }
            }
        }
        if self.direct.is_some() {
            sqlx::query(lookups::TRAIL_TABLE)
                .execute(&self.pool)
                .await?;
            sqlx::query(
                "INSERT INTO audit_trail (trail_id) SELECT $1 \
                 WHERE NOT EXISTS (SELECT 1 FROM audit_trail)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .execute(&self.pool)
            .await?;
        }
        super::audit_fruizioni::migrate(&self.pool).await?;
        super::audit_lifecycle::migrate(&self.pool).await?;
        Ok(())
    }

    /// Commits records in one transaction.
    pub async fn insert_batch(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        let entries: Vec<Entry> = records.iter().cloned().map(Entry::Eservice).collect();
        self.insert_entries(&entries).await
    }

    /// Commits records of either side in one transaction.
    async fn insert_entries(&self, entries: &[Entry]) -> Result<(), AuditError> {
        let mut eservice = Vec::with_capacity(entries.len());
        let mut fruizioni = Vec::new();
        for entry in entries {
            match entry {
                Entry::Eservice(r) => eservice.push(r),
                Entry::Fruizione(r) => fruizioni.push(r),
                Entry::Flush => {}
            }
        }
        if eservice.is_empty() && fruizioni.is_empty() {
            return Ok(());
        }
        if let Some(direct) = &self.direct {
            return direct.insert(&eservice, &fruizioni);
        }
        // SQLite runs each statement outside an explicit transaction as a transaction of its
        // own: all of its rows or none, durable (synchronous=FULL) when it returns. So a batch
        // of one table's records is one statement and one hand-off to the connection's
        // thread, where BEGIN, the INSERTs and COMMIT each cost one. Under load a hand-off
        // costs a few hundred microseconds of waiting for the thread to be scheduled, and they
        // were most of the commit's time.
        if self.sqlite && (eservice.is_empty() || fruizioni.is_empty()) {
            let mut conn = self.pool.acquire().await?;
            if fruizioni.is_empty() {
                rows::insert_as_one_statement(&mut conn, &eservice).await?;
            } else {
                rows::insert_as_one_statement(&mut conn, &fruizioni).await?;
            }
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        rows::insert(&mut tx, &eservice).await?;
        rows::insert(&mut tx, &fruizioni).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The connection pool (the purposes table lives in the same database).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> Result<(), AuditError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records matching a query, oldest first.
    pub async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let sql = "SELECT record_id, at, request_id, consumer_id, client_id, purpose_id, \
             voucher_jti, eservice, operation, status, latency_ms, subject_hash, user_id, \
             user_location, loa FROM audit_log";
        // A SQLite file's lookups by subject, purpose and consumer go through its lookup index,
        // by the value's key (bound as text: SQLite compares it with the INTEGER column as a
        // number); the `column =` filters above them keep only the asked value's records.
        let key = |value: Option<&str>| {
            value
                .filter(|_| self.lookups)
                .map(|v| lookups::key(v).to_string())
        };
        let (subject_key, purpose_key, consumer_key) = (
            key(q.subject_hash.as_deref()),
            key(q.purpose_id.as_deref()),
            key(q.consumer_id.as_deref()),
        );
        let filters = [
            ("at >=", q.from.as_deref()),
            ("at <", q.to.as_deref()),
            ("consumer_id =", q.consumer_id.as_deref()),
            ("purpose_id =", q.purpose_id.as_deref()),
            ("subject_hash =", q.subject_hash.as_deref()),
            ("request_id =", q.request_id.as_deref()),
            (Lookup::Subject.filter(), subject_key.as_deref()),
            (Lookup::Purpose.filter(), purpose_key.as_deref()),
            (Lookup::Consumer.filter(), consumer_key.as_deref()),
        ];
        let rows = select_where(&self.pool, sql, &filters, q.limit).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Brings a SQLite file's lookup index up to the trail's end, on the caller's thread (it
    /// blocks); returns the records it passed. The writer's indexer does the same every
    /// second; lookups never depend on it (they scan what it has not reached).
    pub fn index_lookups(&self) -> Result<u64, AuditError> {
        match &self.direct {
            Some(direct) => lookups::Indexer::open(direct.path())?.catch_up(),
            None => Ok(0),
        }
    }

    /// Number of records (for tests and the CLI summary).
    pub async fn count(&self) -> Result<i64, AuditError> {
        let row = sqlx::query("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Closes the pool (tests use it to simulate an outage).
    pub async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
    }
}

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, AuditError> {
    let status: i64 = row.try_get("status")?;
    Ok(AuditRecord {
        record_id: row.try_get("record_id")?,
        time: row.try_get("at")?,
        request_id: row.try_get("request_id")?,
        consumer_id: row.try_get("consumer_id")?,
        client_id: row.try_get("client_id")?,
        purpose_id: row.try_get("purpose_id")?,
        voucher_jti: row.try_get("voucher_jti")?,
        eservice: row.try_get("eservice")?,
        operation: row.try_get("operation")?,
        status: u16::try_from(status).unwrap_or(0),
        latency_ms: row.try_get("latency_ms")?,
        subject_hash: row.try_get("subject_hash")?,
        user_id: row.try_get("user_id")?,
        user_location: row.try_get("user_location")?,
        loa: row.try_get("loa")?,
    })
}

impl AuditStore {
    /// The fruizioni's records matching a query, oldest first.
    pub async fn query_fruizioni(
        &self,
        q: &FruizioniQuery,
    ) -> Result<Vec<FruizioneRecord>, AuditError> {
        let sql = "SELECT record_id, at, request_id, caller, fruizione, method, purpose_id, \
             client_id, voucher_jti, status, remote_status, latency_ms, user_id \
             FROM audit_fruizioni";
        let filters = [
            ("at >=", q.from.as_deref()),
            ("at <", q.to.as_deref()),
            ("caller =", q.caller.as_deref()),
            ("fruizione =", q.fruizione.as_deref()),
            ("purpose_id =", q.purpose_id.as_deref()),
            ("request_id =", q.request_id.as_deref()),
        ];
        let rows = select_where(self.pool(), sql, &filters, q.limit).await?;
        Ok(rows
            .iter()
            .map(super::audit_fruizioni::record_from_row)
            .collect::<Result<_, _>>()?)
    }
}

/// Runs `select` (a `SELECT … FROM table` with no `WHERE`) with one `AND clause $n` per filter
/// that is set, oldest first, at most `limit` rows. Only the fixed clauses are concatenated;
/// every value is a bind parameter.
async fn select_where(
    pool: &AnyPool,
    select: &str,
    filters: &[(&str, Option<&str>)],
    limit: Option<u32>,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut sql = format!("{select} WHERE 1=1");
    let mut binds: Vec<&str> = Vec::new();
    for (clause, value) in filters {
        if let Some(value) = value {
            binds.push(value);
            let param = format!("${}", binds.len());
            // A clause names where its value goes with `{}`, or takes it at its end.
            if clause.contains("{}") {
                sql.push_str(&format!(" AND {}", clause.replace("{}", &param)));
            } else {
                sql.push_str(&format!(" AND {clause} {param}"));
            }
        }
    }
    sql.push_str(" ORDER BY at, record_id");
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    query.fetch_all(pool).await
}

/// A query over the trail; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Inclusive lower bound, RFC 3339 UTC.
    pub from: Option<String>,
    /// Exclusive upper bound, RFC 3339 UTC.
    pub to: Option<String>,
    pub consumer_id: Option<String>,
    pub purpose_id: Option<String>,
    pub subject_hash: Option<String>,
    pub request_id: Option<String>,
    pub limit: Option<u32>,
}

/// A record of either side, as the writer queues it.
#[derive(Debug)]
enum Entry {
    Eservice(AuditRecord),
    Fruizione(FruizioneRecord),
    /// Writes nothing: answered once everything queued before it is committed.
    Flush,
}

/// A queued entry and, when somebody waits for its commit, where to say how it went.
type Pending = (Entry, Waiter);
/// Where the writer says how the commit holding a record went (`None`: nobody waits).
type Waiter = Option<oneshot::Sender<Result<(), String>>>;

/// How the writer commits and how long anybody waits for it.
#[derive(Debug, Clone, Copy)]
pub struct AuditSettings {
    /// Most records committed in one transaction.
    pub batch_max: usize,
    /// Longest wait for a commit, in the writer and in [`AuditLog::record`]: a hung database
    /// turns into 503 answers instead of requests that hang with it.
    pub commit_timeout: Duration,
    /// Records per second accepted by [`AuditLog::record_best_effort`] (with a burst of as
    /// many), so that a flood of refused requests cannot crowd out the records of served ones.
    pub best_effort_per_sec: u32,
    /// Longest a small batch waits for records still on their way before it commits (group
    /// commit, see [`SMALL_BATCH`]); zero commits at once.
    pub commit_delay: Duration,
}

/// A batch smaller than this, while other requests are inside the audit stage, waits up to the
/// commit delay for their records. Why: every commit costs a transaction, a hand-off to the
/// database thread and back, and (SQLite) an fsync, whatever its size. When each answer is slow
/// to produce (an RSA signature takes most of a millisecond), records arrive one or two per
/// commit, and the commits themselves took about a sixth of the CPU of a signed answer. Larger
/// batches arrive by themselves when answers are fast, so they never wait; a lone request
/// never waits either (nobody else is on the way).
pub const SMALL_BATCH: usize = 8;

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            batch_max: 256,
            commit_timeout: Duration::from_secs(5),
            best_effort_per_sec: 200,
            commit_delay: Duration::from_millis(2),
        }
    }
}

type Limiter = governor::DefaultDirectRateLimiter;

/// The handle the pipeline uses: `record(..).await` returns once the record is committed.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    healthy: Arc<AtomicBool>,
    store: AuditStore,
    commit_timeout: Duration,
    best_effort: Arc<Limiter>,
    /// Best-effort records not written (over the rate, or the queue full), for the log.
    dropped: Arc<AtomicU64>,
    /// Requests inside the audit stage whose record is not queued yet ([`AuditLog::expect`]).
    coming: Arc<AtomicUsize>,
}

/// A request inside the audit stage whose record will follow: while it lives, the writer knows
/// one more record is on its way. Dropped when the record is queued (or the request ends
/// without one).
pub struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AuditLog {
    /// Starts the writer ([`AuditLog::start_with`]) with the default settings but `batch_max`.
    pub fn start(store: AuditStore, batch_max: usize) -> AuditLog {
        Self::start_with(
            store,
            AuditSettings {
                batch_max,
                ..AuditSettings::default()
            },
        )
    }

    /// Starts the writer: a task on the current runtime for PostgreSQL, a thread of its own for
    /// a SQLite file (its commits block: `provider/audit/sqlite.rs`).
    pub fn start_with(store: AuditStore, settings: AuditSettings) -> AuditLog {
        let batch_max = settings.batch_max.max(1);
        let (tx, rx) = mpsc::channel::<Pending>(batch_max * 8);
        let healthy = Arc::new(AtomicBool::new(true));
        let commit_timeout = settings.commit_timeout.max(Duration::from_millis(1));
        let coming = Arc::new(AtomicUsize::new(0));
        let task = writer(
            store.clone(),
            rx,
            Batching {
                max: batch_max,
                commit_delay: settings.commit_delay.min(commit_timeout),
                coming: coming.clone(),
            },
            commit_timeout,
            healthy.clone(),
        );
        match &store.direct {
            // The SQLite writer blocks on each commit: it gets a thread (and a runtime for
            // its timers) of its own, so that its waits hold nobody else.
            Some(direct) => {
                if let Err(e) = direct.set_busy_timeout(commit_timeout) {
                    tracing::error!(error = %e, "audit: cannot set the SQLite busy timeout");
                }
                lookups::start(direct);
                // The runtime is built on the new thread: one dropped here, inside the
                // caller's runtime, would panic.
                let spawned = std::thread::Builder::new()
                    .name("audit-writer".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                        {
                            Ok(runtime) => runtime.block_on(task),
                            Err(e) => {
                                tracing::error!(error = %e, "audit: cannot start the writer's runtime")
                            }
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "audit: cannot start the writer's thread");
                }
            }
            None => {
                tokio::spawn(task);
            }
        }
        let rate = NonZeroU32::new(settings.best_effort_per_sec).unwrap_or(NonZeroU32::MIN);
        AuditLog {
            tx,
            healthy,
            store,
            commit_timeout,
            best_effort: Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                rate,
            ))),
            dropped: Arc::new(AtomicU64::new(0)),
            coming,
        }
    }

    /// Announces a record that will follow (a request entering the audit stage): a small batch
    /// may wait for it, see [`SMALL_BATCH`].
    pub fn expect(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::Relaxed);
        Coming(self.coming.clone())
    }

    /// Queues a record and waits for its commit, at most the commit timeout.
    pub async fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        self.commit(Entry::Eservice(record)).await
    }

    /// Queues the record of a call through `/fruizioni` and waits for its commit.
    pub async fn record_fruizione(&self, record: FruizioneRecord) -> Result<(), AuditError> {
        self.commit(Entry::Fruizione(record)).await
    }

    async fn commit(&self, entry: Entry) -> Result<(), AuditError> {
        let (done_tx, done_rx) = oneshot::channel();
        let wait = async {
            self.tx
                .send((entry, Some(done_tx)))
                .await
                .map_err(|_| AuditError::WriterGone)?;
            match done_rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(AuditError::Commit(reason)),
                Err(_) => Err(AuditError::WriterGone),
            }
        };
        match tokio::time::timeout(self.commit_timeout, wait).await {
            Ok(result) => result,
            Err(_) => {
                self.healthy.store(false, Ordering::Relaxed);
                Err(AuditError::Timeout(self.commit_timeout))
            }
        }
    }

    /// Waits until every record queued so far (best-effort ones included) is committed: the
    /// last step of a graceful shutdown.
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.commit(Entry::Flush).await
    }

    /// Queues a record without waiting for its commit, for requests refused before the
    /// voucher check: they served nothing, so their answer need not wait on the database,
    /// and an unauthenticated flood must not be able to make the trail (and with it every
    /// served answer) slow. Rate-limited; what is over the rate or finds the queue full is
    /// counted and reported in the log, not written. Returns whether it was queued.
    pub fn record_best_effort(&self, record: AuditRecord) -> bool {
        let queued = self.best_effort.check().is_ok()
            && self.tx.try_send((Entry::Eservice(record), None)).is_ok();
        if !queued {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "audit records of refused unauthenticated requests not written (rate limit)"
                );
            }
        }
        queued
    }

    /// Best-effort records not written so far.
    pub fn best_effort_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// False after a failed commit, until a commit or a ping succeeds again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Pings the store and updates the health flag (for `/status`).
    pub async fn check(&self) -> bool {
        let ok = self.store.ping().await.is_ok();
        self.healthy.store(ok, Ordering::Relaxed);
        ok
    }

    pub fn store(&self) -> &AuditStore {
        &self.store
    }
}

/// How the writer gathers a batch.
struct Batching {
    max: usize,
    commit_delay: Duration,
    coming: Arc<AtomicUsize>,
}

async fn writer(
    store: AuditStore,
    mut rx: mpsc::Receiver<Pending>,
    batching: Batching,
    commit_timeout: Duration,
    healthy: Arc<AtomicBool>,
) {
    let batch_max = batching.max;
    // The records and their waiters side by side, so that the records go to the store as they
    // came, not copied (a copy is a dozen strings allocated and freed on this thread).
    let mut records: Vec<Entry> = Vec::with_capacity(batch_max);
    let mut waiters: Vec<Waiter> = Vec::with_capacity(batch_max);
    fn push((entry, done): Pending, records: &mut Vec<Entry>, waiters: &mut Vec<Waiter>) {
        records.push(entry);
        waiters.push(done);
    }
    while let Some(first) = rx.recv().await {
        push(first, &mut records, &mut waiters);
        while records.len() < batch_max {
            match rx.try_recv() {
                Ok(p) => push(p, &mut records, &mut waiters),
                Err(_) => break,
            }
        }
        // Group commit: a small batch waits (at most the delay) while more records are on
        // their way. Every waiter's answer still waits for the commit that holds its record.
        let small = SMALL_BATCH.min(batch_max);
        if records.len() < small && batching.coming.load(Ordering::Relaxed) > 0 {
            let deadline = tokio::time::Instant::now() + batching.commit_delay;
            while records.len() < small && batching.coming.load(Ordering::Relaxed) > 0 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(p)) => push(p, &mut records, &mut waiters),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let started = std::time::Instant::now();
        // A commit that does not finish in time counts as failed: its waiters answer 503. If
        // the database completes it later, the trail holds a record of an answer never sent,
        // which errs on the side the trail must err on.
        let result =
            match tokio::time::timeout(commit_timeout, store.insert_entries(&records)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("commit not finished within {commit_timeout:?}")),
            };
        healthy.store(result.is_ok(), Ordering::Relaxed);
        crate::telemetry::metrics::audit_commit(records.len(), result.is_ok(), started.elapsed());
        if let Err(e) = &result {
            tracing::error!(error = %e, records = records.len(), "audit commit failed");
        }
        for done in waiters.drain(..).flatten() {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        // Freed after the waiters are told, not before.
        records.clear();
    }
}

/// Who, in the consumer's domain, caused the request (from Agid-JWT-TrackingEvidence); the
/// ModI stage puts it into the request extensions when the call carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingInfo {
    pub user_id: Option<String>,
    pub user_location: Option<String>,
    pub loa: Option<String>,
}

/// The audit stage of one e-service: outermost, so it sees every outcome, refusals included.
pub struct AuditStage {
    pub eservice: eservices::Eservice,
    pub log: AuditLog,
    pub hasher: SubjectHasher,
}

impl AuditStage {
    /// Builds the record of a finished request.
    fn record_for(
        &self,
        res: &actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        started: std::time::Instant,
    ) -> AuditRecord {
        let req = res.request();
        let ext = actix_web::HttpMessage::extensions(req);
        let voucher = ext.get::<crate::pdnd::voucher::Voucher>();
        let subject = ext.get::<eservices::DataSubject>();
        let tracking = ext.get::<TrackingInfo>();
        AuditRecord {
            record_id: record_id(),
            time: format_time(Utc::now()),
            request_id: ext
                .get::<super::request_id::RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            consumer_id: voucher.and_then(|v| v.consumer_id()).map(str::to_owned),
            client_id: voucher.map(|v| v.client_id().to_owned()),
            purpose_id: voucher.map(|v| v.purpose_id().to_owned()),
            voucher_jti: voucher.map(|v| v.jti().to_owned()),
            eservice: self.eservice.id().to_owned(),
            // The router's decision, never the raw path: the record names the operation that
            // actually ran (none for a request no operation's resource matched).
            operation: ext
                .get::<eservices::route::Resolved>()
                .map(|r| r.operation().id().to_owned()),
            status: res.status().as_u16(),
            latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            subject_hash: subject.map(|s| self.hasher.hash(&s.0)),
            user_id: tracking.and_then(|t| t.user_id.clone()),
            user_location: tracking.and_then(|t| t.user_location.clone()),
            loa: tracking.and_then(|t| t.loa.clone()),
        }
    }

    pub async fn run(
        self: Arc<Self>,
        req: actix_web::dev::ServiceRequest,
        next: actix_web::middleware::Next<actix_web::body::BoxBody>,
    ) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
        let started = std::time::Instant::now();
        let coming = self.log.expect();
        let res = next.call(req).await?;
        let record = self.record_for(&res, started);
        drop(coming);
        let request_id = record.request_id.clone();
        // Refused before the voucher check (no voucher, a bad one, no such operation): nothing
        // was served, so the answer does not wait on the commit. Anything else, a 2xx above
        // all, is sent only once its record is committed.
        let authenticated = actix_web::HttpMessage::extensions(res.request())
            .contains::<crate::pdnd::voucher::Voucher>();
        if !authenticated && !res.status().is_success() {
            self.log.record_best_effort(record);
            return Ok(res);
        }
        match self.log.record(record).await {
            Ok(()) => Ok(res),
            Err(e) => {
                // The answer (maybe personal data) is dropped unsent: no record, no data.
                tracing::error!(request_id, error = %e, "audit record not committed; answering 503");
                let unavailable = crate::problem::unavailable(
                    "The audit trail is unavailable, so no data can be served; retry later.",
                    Some(&request_id),
                );
                Ok(res.into_response(unavailable))
            }
        }
    }
}

impl super::Stage for AuditStage {
    const SPAN: &'static str = "audit";
    fn call(
        self: Arc<Self>,
        req: actix_web::dev::ServiceRequest,
        next: actix_web::middleware::Next<actix_web::body::BoxBody>,
    ) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}

pub(crate) mod lookups;
mod rows;
mod sqlite;
use lookups::Lookup;
#[cfg(test)]
mod tests;
