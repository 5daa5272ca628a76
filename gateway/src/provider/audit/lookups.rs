//! The lookup index of a SQLite audit file: which records name a data subject, a purpose or a
//! consumer, kept in a file of its own beside the trail and filled behind the writer.
//!
//! Why not indexes inside the trail: every index of the trail is one more b-tree that each
//! commit (the one every 2xx waits for) changes, writes into the WAL and fsyncs. The subject is
//! a keyed hash, random by design, so its index put each record on a page of its own: with
//! 20,000 different subjects under load it cost a commit 1.9 ms instead of 0.7 ms, and the
//! stalls of its checkpoints were the slowest hundredth of the answers. The purpose and consumer
//! indexes cost less each, but together they were about 7 µs of CPU an answer and 0.4 ms a
//! commit (`docs/performance.md`).
//!
//! Here the trail's commits touch only the rows, their ids and their times, and an indexer
//! thread copies each new record's keys ([`key`]: a 64-bit number; a shared key only costs a row
//! that the lookup's own `subject_hash =`, `purpose_id =` or `consumer_id =` then drops) and
//! rowid into `<audit file>.lookups`, once a second, sorted, in one transaction a batch. Those
//! commits sync nothing (`synchronous=NORMAL`: a power loss may take the last batches back,
//! never the file's consistency), and the indexer holds the trail's snapshot only while it
//! reads the batch.
//!
//! Nothing is lost by that, because the index is derived and says how far it goes: the one row
//! of `indexed_upto` holds `rowid_upto`, and every record of the trail at or below it has its
//! entries in `lookup_index` (the two change in one transaction). A lookup reads the index up to
//! there and scans the records above it, the tail the indexer has not reached (about a second
//! of records under load); see [`Lookup::filter`]. Deleting the file is safe: it is rebuilt
//! from the trail.
//!
//! SQLite reuses a rowid only when the records above it were deleted: a purge that empties the
//! trail. The purge lowers `rowid_upto` in its own transaction ([`PURGE_LOWERS_UPTO`]), and
//! the writer's start reconciles the index with the trail it finds ([`Indexer::reconcile`]): a
//! different trail (its `audit_trail` id) empties the index, a shorter one trims it.

use super::AuditError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name the audit pool's connections give the index file.
pub(crate) const SCHEMA_NAME: &str = "lookups";

/// A column of `audit_log` that the lookup index answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Subject,
    Purpose,
    Consumer,
}

/// The clause that restricts a query of `audit_log` to the records of one `kind` (its number in
/// the index), with `{}` where the value's [`key`] is bound: the indexed records, and the tail
/// above `rowid_upto` (whose value the query's own `column =` filter then checks).
macro_rules! lookup_filter {
    ($kind:literal) => {
        concat!(
            "rowid IN (SELECT record_rowid FROM lookups.lookup_index WHERE kind = ",
            $kind,
            " AND lookup_key = {} UNION ALL SELECT rowid FROM audit_log \
             WHERE rowid > (SELECT rowid_upto FROM lookups.indexed_upto))"
        )
    };
}

impl Lookup {
    pub(crate) const ALL: [Lookup; 3] = [Lookup::Subject, Lookup::Purpose, Lookup::Consumer];

    /// Its number in the index's `kind` column; the indexer reads the columns (`subject_hash`,
    /// `purpose_id`, `consumer_id`) in the order of [`Lookup::ALL`].
    fn kind(self) -> i64 {
        match self {
            Lookup::Subject => 0,
            Lookup::Purpose => 1,
            Lookup::Consumer => 2,
        }
    }

    /// The `audit_log` index a trail had for this column before the lookup index (dropped
    /// by the migration of a SQLite file, kept by PostgreSQL and in-memory SQLite).
    pub(crate) fn trail_index(self) -> &'static str {
        match self {
            Lookup::Subject => "audit_log_subject",
            Lookup::Purpose => "audit_log_purpose",
            Lookup::Consumer => "audit_log_consumer",
        }
    }

    /// The restriction of a query to the records whose column has one value (see the macro).
    pub(crate) fn filter(self) -> &'static str {
        match self {
            Lookup::Subject => lookup_filter!("0"),
            Lookup::Purpose => lookup_filter!("1"),
            Lookup::Consumer => lookup_filter!("2"),
        }
    }
}

/// Run by a purge inside its transaction, after its deletes: records above the highest rowid
/// left may now take rowids the index had already passed.
pub(crate) const PURGE_LOWERS_UPTO: &str = "UPDATE lookups.indexed_upto SET rowid_upto = \
     MIN(rowid_upto, (SELECT COALESCE(MAX(rowid), 0) FROM audit_log))";

/// Run by a purge too: index entries below the oldest record left (all of them, when none is
/// left) point at nothing.
pub(crate) const PURGE_DROPS_ENTRIES: &str = "DELETE FROM lookups.lookup_index WHERE \
     record_rowid < COALESCE((SELECT MIN(rowid) FROM audit_log), 9223372036854775807)";

/// The id that tells one trail file from another (created with the trail's tables).
pub(crate) const TRAIL_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS audit_trail (trail_id TEXT NOT NULL)";

const INDEX_SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS lookup_index (kind INTEGER NOT NULL, lookup_key INTEGER NOT NULL, \
     record_rowid INTEGER NOT NULL, PRIMARY KEY (kind, lookup_key, record_rowid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS indexed_upto (one INTEGER PRIMARY KEY CHECK (one = 1), \
     trail_id TEXT, rowid_upto INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO indexed_upto (one, trail_id, rowid_upto) VALUES (1, NULL, 0)",
];

/// The index key of a value: for a subject hash, its first 16 hex digits as a 64-bit number (a
/// quarter of the hash's size in the index); any other text (a purpose or consumer id) gets
/// FNV-1a of its bytes, so that the lookup and the indexer agree. Two values may share a key;
/// the lookup's own `column =` keeps only the asked one's records.
pub(crate) fn key(value: &str) -> i64 {
    let prefix = value.get(..16).unwrap_or("");
    let value = match u64::from_str_radix(prefix, 16) {
        Ok(v) if prefix.bytes().all(|b| b.is_ascii_hexdigit()) => v,
        _ => value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }),
    };
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Entries a multi-row INSERT of the indexer carries (3 parameters each).
const ROWS: usize = 64;

/// `INSERT OR IGNORE` of `rows` entries: one text for [`ROWS`], one for 1, each built once.
fn insert_text(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        [ROWS, 1].map(|n| {
            let values = vec!["(?, ?, ?)"; n].join(", ");
            format!("INSERT OR IGNORE INTO lookup_index (kind, lookup_key, record_rowid) VALUES {values}")
        })
    });
    if rows == ROWS {
        &texts[0]
    } else {
        &texts[1]
    }
}

/// Records read from the trail in one indexing transaction.
pub(super) const CHUNK: i64 = 20_000;

/// How often the indexer looks for new records.
pub(super) const INTERVAL: Duration = Duration::from_secs(1);

/// The index file of an audit file: `<audit file>.lookups`.
pub(crate) fn index_path(audit: &Path) -> PathBuf {
    with_suffix(audit, ".lookups")
}

fn with_suffix(audit: &Path, suffix: &str) -> PathBuf {
    let mut name = audit.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Deletes the index file of subjects only that earlier versions kept beside the trail
/// (`<audit file>.subjects`): derived, and replaced by the lookup index.
pub(crate) fn remove_former(audit: &Path) {
    for suffix in [".subjects", ".subjects-wal", ".subjects-shm"] {
        let _ = std::fs::remove_file(with_suffix(audit, suffix));
    }
}

/// Creates the index file and its tables if missing: the audit pool attaches it to every
/// connection, and its queries need the tables to exist.
pub(crate) fn prepare(index: &Path) -> Result<(), AuditError> {
    let conn = Connection::open(index).map_err(error)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(error)?;
    for sql in INDEX_SCHEMA {
        conn.execute(sql, []).map_err(error)?;
    }
    Ok(())
}

/// A connection to the index file with the trail attached (read only by this code) as `trail`.
pub(crate) struct Indexer {
    conn: Connection,
    /// One pass's `(kind, key, rowid)` entries, kept between passes: no allocation a record.
    entries: Vec<(i64, i64, i64)>,
}

impl Indexer {
    pub(crate) fn open(audit: &Path) -> Result<Indexer, AuditError> {
        let index = index_path(audit);
        prepare(&index)?;
        let conn = Connection::open(&index).map_err(error)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(error)?;
        // The index is derived: a power loss may undo its last transactions (they are redone
        // from the trail), so its commits need no fsync of their own.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(error)?;
        conn.execute(
            "ATTACH DATABASE ?1 AS trail",
            [audit.to_string_lossy().as_ref()],
        )
        .map_err(error)?;
        let mut indexer = Indexer {
            conn,
            entries: Vec::new(),
        };
        indexer.reconcile()?;
        Ok(indexer)
    }

    /// Makes the index agree with the trail it finds ([`Indexer::open`] does it, and the
    /// writer's start opens one before its first commit): a trail with another id (or none
    /// where there was one) empties it; a trail whose records end below `rowid_upto` (an older
    /// copy put back) loses the entries above its end. While the writer runs neither can
    /// happen: its records only raise the end, and a purge lowers `rowid_upto` itself.
    fn reconcile(&mut self) -> Result<(), AuditError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(error)?;
        let has_trail_id: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM trail.sqlite_master WHERE name = 'audit_trail')",
                [],
                |r| r.get(0),
            )
            .map_err(error)?;
        let trail_id: Option<String> = if has_trail_id {
            tx.query_row("SELECT trail_id FROM trail.audit_trail LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(error)?
        } else {
            None
        };
        let (indexed_id, upto): (Option<String>, i64) = tx
            .query_row(
                "SELECT trail_id, rowid_upto FROM indexed_upto WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(error)?;
        if indexed_id != trail_id {
            tx.execute("DELETE FROM lookup_index", []).map_err(error)?;
            tx.execute(
                "UPDATE indexed_upto SET trail_id = ?1, rowid_upto = 0",
                [&trail_id],
            )
            .map_err(error)?;
        } else {
            let end: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(rowid), 0) FROM trail.audit_log",
                    [],
                    |r| r.get(0),
                )
                .map_err(error)?;
            if upto > end {
                tx.execute("DELETE FROM lookup_index WHERE record_rowid > ?1", [end])
                    .map_err(error)?;
                tx.execute("UPDATE indexed_upto SET rowid_upto = ?1", [end])
                    .map_err(error)?;
            }
        }
        tx.commit().map_err(error)
    }

    /// Indexes the next records above `rowid_upto`, at most `chunk` of them. Returns how many
    /// records it passed (0: the index has reached the trail's end).
    ///
    /// The trail is read in one statement of its own, so that its snapshot is held for the
    /// read and not while the index is written (a reader the trail's checkpoints would have to
    /// wait for); the entries are sorted by key, so the inserts walk the index in order. The
    /// end moves only from the value this pass started from: a purge that lowered it in between
    /// makes the pass roll back (the next one starts from the purge's end).
    pub(crate) fn pass(&mut self, chunk: i64) -> Result<u64, AuditError> {
        let upto: i64 = self
            .conn
            .query_row(
                "SELECT rowid_upto FROM indexed_upto WHERE one = 1",
                [],
                |r| r.get(0),
            )
            .map_err(error)?;
        self.entries.clear();
        let mut last = None;
        let mut passed = 0u64;
        {
            let mut read = self
                .conn
                .prepare_cached(
                    "SELECT rowid, subject_hash, purpose_id, consumer_id FROM trail.audit_log \
                     WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )
                .map_err(error)?;
            let mut rows = read.query([upto, chunk]).map_err(error)?;
            while let Some(row) = rows.next().map_err(error)? {
                let rowid: i64 = row.get(0).map_err(error)?;
                for (column, lookup) in Lookup::ALL.into_iter().enumerate() {
                    if let Some(value) = row
                        .get_ref(column + 1)
                        .map_err(error)?
                        .as_str_or_null()
                        .map_err(|e| error(e.into()))?
                    {
                        self.entries.push((lookup.kind(), key(value), rowid));
                    }
                }
                last = Some(rowid);
                passed += 1;
            }
        }
        let Some(last) = last else {
            return Ok(0);
        };
        self.entries.sort_unstable();
        let tx = self.conn.transaction().map_err(error)?;
        // Up to [`ROWS`] entries a statement: the statement's own work (setting up, stepping,
        // resetting) was most of the indexer's time with one entry a statement.
        for part in self.entries.chunks(ROWS) {
            // A full part in one statement, the last one's few entries one at a time.
            let rows = if part.len() == ROWS { ROWS } else { 1 };
            let mut insert = tx.prepare_cached(insert_text(rows)).map_err(error)?;
            for entries in part.chunks(rows) {
                for (i, (kind, key, rowid)) in entries.iter().enumerate() {
                    insert.raw_bind_parameter(3 * i + 1, kind).map_err(error)?;
                    insert.raw_bind_parameter(3 * i + 2, key).map_err(error)?;
                    insert.raw_bind_parameter(3 * i + 3, rowid).map_err(error)?;
                }
                insert.raw_execute().map_err(error)?;
            }
        }
        let moved = tx
            .execute(
                "UPDATE indexed_upto SET rowid_upto = ?1 WHERE rowid_upto = ?2",
                [last, upto],
            )
            .map_err(error)?;
        if moved != 1 {
            // Dropped without commit: rolls back.
            return Ok(0);
        }
        tx.commit().map_err(error)?;
        Ok(passed)
    }

    /// Passes until the index reaches the trail's end; returns the records passed.
    pub(crate) fn catch_up(&mut self) -> Result<u64, AuditError> {
        let mut total = 0;
        loop {
            let passed = self.pass(CHUNK)?;
            if passed == 0 {
                // The pages this catch-up cached are not needed until the next one, a second
                // later; kept, the cache of the growing index and of the trail grew with them
                // (an RSS that rose by 20 MB over 300 s of (b) in `tests/load/ratio.sh`).
                self.conn.release_memory().map_err(error)?;
                return Ok(total);
            }
            total += passed;
        }
    }
}

fn error(e: rusqlite::Error) -> AuditError {
    AuditError::LookupIndex(e.to_string())
}

/// Opens the index (which reconciles it with the trail: [`Indexer::reconcile`]; called before
/// the writer's first commit), then starts the thread that keeps it filled: every [`INTERVAL`]
/// it passes the new records, until the trail's store is dropped or closed. A failure is logged, not
/// fatal: the lookups stay complete (they scan whatever the index has not reached), only
/// slower.
pub(super) fn start(direct: &std::sync::Arc<super::sqlite::SqliteAudit>) {
    let mut indexer = match Indexer::open(direct.path()) {
        Ok(indexer) => indexer,
        Err(e) => {
            tracing::error!(error = %e, "audit: the lookup index is not kept (lookups by subject, purpose or consumer scan the trail)");
            return;
        }
    };
    let store = std::sync::Arc::downgrade(direct);
    let spawned = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || loop {
            std::thread::sleep(INTERVAL);
            match store.upgrade() {
                Some(direct) if !direct.is_closed() => {}
                _ => return,
            }
            if let Err(e) = indexer.catch_up() {
                tracing::warn!(error = %e, "audit: lookup index pass failed (retried)");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "audit: cannot start the lookup indexer's thread");
    }
}

#[cfg(test)]
mod tests;
