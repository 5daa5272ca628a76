//! The subject index of a SQLite audit file: which records name a data subject, kept in a file
//! of its own beside the trail and filled behind the writer.
//!
//! Why not an index inside the trail: the subject is a keyed hash, random by design, so each
//! record's key lands on a different page of such an index, and every commit wrote (and
//! fsynced) about one index page a record besides the few pages of the rows themselves; the
//! checkpoints then copied those scattered pages back into the file. With 20,000 different
//! subjects under load that index cost a commit 1.9 ms instead of 0.7 ms, and the stalls of its
//! checkpoints were the slowest hundredth of the answers (`docs/performance.md`).
//!
//! Here the trail's commits touch only pages that grow at the end (the rows, the time-ordered
//! keys), and an indexer thread copies each new record's key (the first 16 hex digits of its
//! subject hash as a 64-bit number, [`key`]: a quarter of the entry; a shared prefix only costs a row that the
//! lookup's own `subject_hash =` then drops) and rowid into `<audit file>.subjects`, once a
//! second, sorted, in one transaction a batch. Those commits sync nothing
//! (`synchronous=NORMAL`: a power loss may take the last batches back, never the file's
//! consistency), and the indexer holds the trail's snapshot only while it reads the batch.
//!
//! Nothing is lost by that, because the index is derived and says how far it goes: the one row
//! of `indexed_upto` holds `rowid_upto`, and every record of the trail at or below it that has a
//! subject is in `subject_index` (the two change in one transaction). A lookup by subject reads
//! the index up to there and scans the records above it, the tail the indexer has not reached
//! (about a second of records under load); see [`SUBJECT_FILTER`]. Deleting the file is safe:
//! it is rebuilt from the trail.
//!
//! SQLite reuses a rowid only when the records above it were deleted: a purge that empties the
//! trail. The purge lowers `rowid_upto` in its own transaction ([`PURGE_LOWERS_UPTO`]), and
//! the writer's start reconciles the index with the trail it finds ([`Indexer::reconcile`]): a
//! different trail (its `audit_trail` id) empties the index, a shorter one trims it.

use super::AuditError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The clause that restricts a query of `audit_log` to one subject's records, with `{}` where
/// the subject's [`key`] is bound: the indexed records, and the tail above `rowid_upto` (whose
/// subject the outer `subject_hash =` filter then checks).
pub(crate) const SUBJECT_FILTER: &str = "rowid IN (SELECT record_rowid FROM \
     subjects.subject_index WHERE subject_key = {} UNION ALL SELECT rowid FROM audit_log \
     WHERE rowid > (SELECT rowid_upto FROM subjects.indexed_upto))";

/// Run by a purge inside its transaction, after its deletes: records above the highest rowid
/// left may now take rowids the index had already passed.
pub(crate) const PURGE_LOWERS_UPTO: &str = "UPDATE subjects.indexed_upto SET rowid_upto = \
     MIN(rowid_upto, (SELECT COALESCE(MAX(rowid), 0) FROM audit_log))";

/// Run by a purge too: index entries below the oldest record left (all of them, when none is
/// left) point at nothing.
pub(crate) const PURGE_DROPS_ENTRIES: &str = "DELETE FROM subjects.subject_index WHERE \
     record_rowid < COALESCE((SELECT MIN(rowid) FROM audit_log), 9223372036854775807)";

/// The id that tells one trail file from another (created with the trail's tables).
pub(crate) const TRAIL_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS audit_trail (trail_id TEXT NOT NULL)";

const INDEX_SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS subject_index (subject_key INTEGER NOT NULL, \
     record_rowid INTEGER NOT NULL, PRIMARY KEY (subject_key, record_rowid)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS indexed_upto (one INTEGER PRIMARY KEY CHECK (one = 1), \
     trail_id TEXT, rowid_upto INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO indexed_upto (one, trail_id, rowid_upto) VALUES (1, NULL, 0)",
];

/// The index key of a subject hash: its first 16 hex digits as a 64-bit number (a quarter of
/// the hash's size in the index); any other text (no trail written by this code holds one)
/// gets FNV-1a of its bytes, so that the lookup and the indexer still agree. Two subjects may
/// share a key; the lookup's `subject_hash =` keeps only the asked one's records.
pub(crate) fn key(subject_hash: &str) -> i64 {
    let prefix = subject_hash.get(..16).unwrap_or("");
    let value = match u64::from_str_radix(prefix, 16) {
        Ok(v) if prefix.bytes().all(|b| b.is_ascii_hexdigit()) => v,
        _ => subject_hash
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
    };
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Records read from the trail in one indexing transaction.
pub(super) const CHUNK: i64 = 20_000;

/// How often the indexer looks for new records.
pub(super) const INTERVAL: Duration = Duration::from_secs(1);

/// The index file of an audit file: `<audit file>.subjects`.
pub(crate) fn index_path(audit: &Path) -> PathBuf {
    let mut name = audit.as_os_str().to_owned();
    name.push(".subjects");
    PathBuf::from(name)
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
    /// One pass's `(key, rowid)` pairs, kept between passes: no allocation a record.
    entries: Vec<(i64, i64)>,
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
            tx.execute("DELETE FROM subject_index", []).map_err(error)?;
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
                tx.execute("DELETE FROM subject_index WHERE record_rowid > ?1", [end])
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
                    "SELECT rowid, subject_hash FROM trail.audit_log \
                     WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )
                .map_err(error)?;
            let mut rows = read.query([upto, chunk]).map_err(error)?;
            while let Some(row) = rows.next().map_err(error)? {
                let rowid: i64 = row.get(0).map_err(error)?;
                if let Some(hash) = row
                    .get_ref(1)
                    .map_err(error)?
                    .as_str_or_null()
                    .map_err(|e| error(e.into()))?
                {
                    self.entries.push((key(hash), rowid));
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
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO subject_index (subject_key, record_rowid) \
                     VALUES (?1, ?2)",
                )
                .map_err(error)?;
            for (key, rowid) in &self.entries {
                insert
                    .execute(rusqlite::params![key, rowid])
                    .map_err(error)?;
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
    AuditError::SubjectIndex(e.to_string())
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
            tracing::error!(error = %e, "audit: the subject index is not kept (lookups by subject scan the trail)");
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
                tracing::warn!(error = %e, "audit: subject index pass failed (retried)");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "audit: cannot start the subject indexer's thread");
    }
}

#[cfg(test)]
mod tests;
