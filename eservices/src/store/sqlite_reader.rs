//! The SQLite store's reads, on the caller's thread.
//!
//! sqlx's SQLite driver runs every statement on a thread of its own: a lookup is a message to
//! that thread, a wake-up of it, each row sent back through a channel and a wake-up of the
//! caller. On a cold lookup (cache off or missed) those hand-offs cost about as much CPU as
//! SQLite's own work, and on two cores every extra runnable thread adds scheduling delay to
//! the answers. An indexed lookup in a database the OS keeps in memory takes tens of
//! microseconds, so here it runs where the request is, through rusqlite, on a connection
//! taken from a small stack of idle ones.
//!
//! The trade-off: while a lookup runs, the worker thread serves no other connection. A read
//! that has to wait for the disk (a database larger than memory, a cold start) holds the
//! worker for that long; the database is memory-mapped so that pages already in the OS cache
//! are read without a system call. The cost of the mapping is SQLite's documented one: an I/O
//! error while reading a mapped page reaches the process as a signal instead of an error
//! code. Writes (the seed, migrations) stay with sqlx.

use super::rows::{from_rusqlite, Columns, Param};
use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How much of the database file a connection maps into memory (SQLite caps it at its
/// compile-time limit, 2 GiB by default): a comune's register fits many times over.
const MMAP_BYTES: i64 = 1 << 30;
/// Idle connections kept; more may be open at once under load, the rest are closed.
const MAX_IDLE: usize = 8;
/// How long a read waits for a lock (SQLite's busy handler) before the store is unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `$1`, `$2`, ... : the names of the queries' parameters, in order.
const PARAM_NAMES: [&str; 4] = ["$1", "$2", "$3", "$4"];

/// The database file a sqlx SQLite URL (`sqlite://path?mode=rwc`) names, as sqlx itself reads
/// the URL; `None` for an in-memory database, which only sqlx's own connections can see, and
/// for a URL that is not SQLite's. Connections opened outside sqlx (this reader, the audit
/// writer) open the file this names.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    use sqlx::sqlite::SqliteConnectOptions;
    use std::str::FromStr;
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return None;
    }
    Some(path.to_path_buf())
}

/// Read-only access to one SQLite database file.
#[derive(Debug)]
pub(crate) struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// A reader of the file that `url` (a sqlx SQLite URL) names ([`sqlite_file`]).
    pub(crate) fn for_url(url: &str) -> Option<SqliteReader> {
        Some(SqliteReader {
            path: sqlite_file(url)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `sql` with `params`, decoding at most `limit` rows (`None`: all of them).
    pub(crate) fn fetch<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        limit: Option<usize>,
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.take()?;
        let result = run(&conn, sql, params, limit, decode);
        self.give_back(conn);
        result
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// Opens a connection that can only read: `query_only` refuses any write, whatever the
    /// statement. Read-write at the file level, because a read-only handle cannot recover the
    /// WAL index after a crash of the writer.
    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(from_rusqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(from_rusqlite)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(from_rusqlite)?;
        // The pragma answers with the size it set, which rusqlite's update would refuse.
        conn.query_row(&format!("PRAGMA mmap_size = {MMAP_BYTES}"), [], |_| Ok(()))
            .map_err(from_rusqlite)?;
        Ok(conn)
    }
}

fn run<T>(
    conn: &Connection,
    sql: &str,
    params: &[Param<'_>],
    limit: Option<usize>,
    decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(from_rusqlite)?;
    if params.len() > PARAM_NAMES.len() || params.len() != statement.parameter_count() {
        return Err(StoreError::Database(format!(
            "the query has {} parameters, {} given",
            statement.parameter_count(),
            params.len()
        )));
    }
    for (param, name) in params.iter().zip(PARAM_NAMES) {
        let index = statement
            .parameter_index(name)
            .map_err(from_rusqlite)?
            .ok_or_else(|| StoreError::Database(format!("the query has no parameter {name}")))?;
        match *param {
            Param::Text(text) => statement.raw_bind_parameter(index, text),
            Param::Int(int) => statement.raw_bind_parameter(index, int),
        }
        .map_err(from_rusqlite)?;
    }
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while limit.is_none_or(|limit| out.len() < limit) {
        match rows.next().map_err(from_rusqlite)? {
            Some(row) => out.push(decode(row)?),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::TestDb;

    /// A reader over a new WAL file with one table of `rows` rows, and the file's own
    /// read-write connection (the writer a deployment's seed or import would be).
    fn reader_with(rows: i64) -> (TestDb, SqliteReader, Connection) {
        let db = TestDb::sqlite("sqlite-reader");
        let reader = SqliteReader::for_url(&db.url).expect("a file, not memory");
        let writer = Connection::open(&reader.path).expect("create");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; \
                 CREATE TABLE t (id INTEGER PRIMARY KEY, nome TEXT, importo BIGINT);",
            )
            .expect("schema");
        for id in 0..rows {
            writer
                .execute(
                    "INSERT INTO t (id, nome, importo) VALUES (?1, ?2, ?3)",
                    (id, format!("n{id}"), id * 100),
                )
                .expect("row");
        }
        (db, reader, writer)
    }

    fn count(reader: &SqliteReader) -> i64 {
        reader
            .fetch("SELECT count(*) AS n FROM t", &[], Some(1), |row| {
                row.int("n")
            })
            .expect("count")[0]
    }

    #[test]
    fn reads_bind_numbered_parameters_and_stop_at_the_limit() {
        let (_db, reader, _writer) = reader_with(10);
        let names = reader
            .fetch(
                "SELECT nome FROM t WHERE importo >= $1 AND id <> $2 ORDER BY id LIMIT $3",
                &[Param::Int(300), Param::Int(4), Param::Int(4)],
                None,
                |row| row.text("nome"),
            )
            .unwrap();
        assert_eq!(names, ["n3", "n5", "n6", "n7"]);
        // A number used twice is one parameter.
        let twice = reader
            .fetch(
                "SELECT id FROM t WHERE nome = $1 OR 'n' || id = $1",
                &[Param::Text("n8")],
                None,
                |row| row.int("id"),
            )
            .unwrap();
        assert_eq!(twice, [8]);
        let first = reader
            .fetch("SELECT id FROM t ORDER BY id", &[], Some(2), |row| {
                row.int("id")
            })
            .unwrap();
        assert_eq!(first, [0, 1]);
    }

    #[test]
    fn a_read_stopped_early_keeps_no_snapshot_open() {
        let (_db, reader, writer) = reader_with(5);
        // One row of five: the statement is left with rows unread.
        let one = reader
            .fetch("SELECT id FROM t ORDER BY id", &[], Some(1), |row| {
                row.int("id")
            })
            .unwrap();
        assert_eq!(one, [0]);
        writer
            .execute(
                "INSERT INTO t (id, nome, importo) VALUES (99, 'nuovo', 1)",
                [],
            )
            .unwrap();
        // The same idle connection answers, and sees the row written after the first read.
        assert_eq!(count(&reader), 6);
        // The writer can checkpoint the whole WAL: no reader holds an old snapshot.
        let (busy, _, _): (i64, i64, i64) = writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
    }

    #[test]
    fn a_reader_cannot_write() {
        let (_db, reader, _writer) = reader_with(3);
        for sql in [
            "DELETE FROM t",
            "INSERT INTO t (id) VALUES (50)",
            "DROP TABLE t",
        ] {
            let err = reader.fetch(sql, &[], None, |_| Ok(())).unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{sql}: {err:?}");
        }
        assert_eq!(count(&reader), 3);
    }

    #[test]
    fn wrong_types_and_parameters_are_errors_not_panics() {
        let (_db, reader, writer) = reader_with(1);
        // SQLite keeps text in a BIGINT column as text: the schema contract is broken.
        writer
            .execute(
                "INSERT INTO t (id, nome, importo) VALUES (7, 'x', 'molto')",
                [],
            )
            .unwrap();
        let err = reader
            .fetch(
                "SELECT importo FROM t WHERE id = $1",
                &[Param::Int(7)],
                None,
                |row| row.int("importo"),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        // NULL where a value is required.
        writer
            .execute("INSERT INTO t (id, importo) VALUES (8, 1)", [])
            .unwrap();
        let err = reader
            .fetch(
                "SELECT nome FROM t WHERE id = $1",
                &[Param::Int(8)],
                None,
                |row| row.text("nome"),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        // Too few, too many, and unnamed parameters; an unknown column.
        for (sql, params) in [
            ("SELECT id FROM t WHERE id = $1", &[][..]),
            (
                "SELECT id FROM t WHERE id = $1",
                &[Param::Int(1), Param::Int(2)][..],
            ),
            ("SELECT id FROM t WHERE id = ?", &[Param::Int(1)][..]),
            (
                "SELECT id FROM t WHERE id IN ($1, $2, $3, $4, $5)",
                &[Param::Int(1); 5][..],
            ),
        ] {
            let err = reader
                .fetch(sql, params, None, |row| row.int("id"))
                .unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{sql}: {err:?}");
        }
        let err = reader
            .fetch("SELECT id FROM t", &[], None, |row| row.int("manca"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    }

    #[test]
    fn a_missing_file_is_unavailable_and_memory_is_not_read_here() {
        let dir = std::env::temp_dir().join("pdndgw-no-such-dir-for-the-reader");
        let url = format!("sqlite://{}/comune.db", dir.display());
        let reader = SqliteReader::for_url(&url).unwrap();
        let err = reader
            .fetch("SELECT 1 AS uno", &[], None, |row| row.int("uno"))
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        for memory in ["sqlite::memory:", "sqlite://:memory:"] {
            assert!(SqliteReader::for_url(memory).is_none(), "{memory}");
        }
    }
}
