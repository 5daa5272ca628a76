//! The SQLite audit trail's commits, through rusqlite on the writer's own thread.
//!
//! Through sqlx, every commit was a hand-off from the writer task to the thread sqlx keeps for
//! each SQLite connection and back, with the batch's values converted twice on the way; under
//! load the writer is busy nine tenths of the time, so those hand-offs were CPU taken from the
//! answers and time every waiting 2xx spent. Here the writer calls SQLite directly: the
//! [`super::AuditLog`] of a SQLite store runs its writer on a thread of its own (a blocking
//! commit there holds nobody else), and that thread owns the connection.
//!
//! Durability is SQLite's as before: WAL, `synchronous=FULL`, and a statement outside an
//! explicit transaction is its own transaction (all rows or none, synced when it returns). A
//! lock held by another connection is waited for at most the commit timeout
//! ([`SqliteAudit::set_busy_timeout`]), after which the batch fails and its waiters are told.

use super::rows::{insert_sqlite, TableRow};
use super::AuditError;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The writer's connection to one SQLite audit file, opened on first use.
#[derive(Debug)]
pub(super) struct SqliteAudit {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    conn: Option<Connection>,
    busy_timeout: Duration,
    closed: bool,
}

impl SqliteAudit {
    /// The commits to one audit file (the file a sqlx SQLite URL names:
    /// [`eservices::store::sqlite_file`]).
    pub(super) fn new(path: PathBuf) -> SqliteAudit {
        SqliteAudit {
            path,
            state: Mutex::new(State {
                conn: None,
                busy_timeout: Duration::from_secs(5),
                closed: false,
            }),
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// After [`SqliteAudit::close`] (or a poisoned lock): nothing more will be written.
    pub(super) fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true)
    }

    /// How long a commit waits for a lock another connection holds.
    pub(super) fn set_busy_timeout(&self, timeout: Duration) -> Result<(), AuditError> {
        let mut state = self.lock()?;
        state.busy_timeout = timeout;
        if let Some(conn) = &state.conn {
            conn.busy_timeout(timeout).map_err(commit_error)?;
        }
        Ok(())
    }

    /// Commits the records of both tables, all or nothing: records of one table as
    /// [`insert_sqlite`] does, records of both in one transaction around the two.
    pub(super) fn insert<E: TableRow, F: TableRow>(
        &self,
        eservice: &[&E],
        fruizioni: &[&F],
    ) -> Result<(), AuditError> {
        let mut state = self.lock()?;
        if state.closed {
            return Err(AuditError::Commit("the audit store is closed".into()));
        }
        let busy_timeout = state.busy_timeout;
        let conn = match &mut state.conn {
            Some(conn) => conn,
            slot => slot.insert(open(&self.path, busy_timeout)?),
        };
        if fruizioni.is_empty() {
            return insert_sqlite(conn, eservice).map_err(commit_error);
        }
        if eservice.is_empty() {
            return insert_sqlite(conn, fruizioni).map_err(commit_error);
        }
        // Dropped without commit (an error on the way) it rolls back.
        let tx = conn.transaction().map_err(commit_error)?;
        insert_sqlite(&tx, eservice).map_err(commit_error)?;
        insert_sqlite(&tx, fruizioni).map_err(commit_error)?;
        tx.commit().map_err(commit_error)
    }

    /// Closes the connection; every later commit fails.
    pub(super) fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
            state.conn = None;
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, AuditError> {
        self.state
            .lock()
            .map_err(|_| AuditError::Commit("the audit connection was poisoned".into()))
    }
}

fn open(path: &std::path::Path, busy_timeout: Duration) -> Result<Connection, AuditError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(commit_error)?;
    conn.busy_timeout(busy_timeout).map_err(commit_error)?;
    // WAL is a property of the file (the pool set it when it created the tables); FULL is one
    // of the connection and is what makes a commit survive power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(commit_error)?;
    Ok(conn)
}

fn commit_error(e: rusqlite::Error) -> AuditError {
    AuditError::Commit(e.to_string())
}
