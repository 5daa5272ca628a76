//! What the queries of [`super::SqlStore`] need from a database row and a parameter, whichever
//! driver read it: sqlx's `Any` row (PostgreSQL) or a rusqlite row (SQLite, read on the
//! caller's thread by [`super::sqlite_reader`]). The decoding of every lookup is written once,
//! against [`Columns`].

use super::StoreError;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A row, read by column name. A value of the wrong type is [`StoreError::Corrupt`]: the
/// schema contract says which columns are TEXT and which BIGINT.
pub(crate) trait Columns {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }
}

impl Columns for AnyRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get::<i64, _>(column)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get::<_, Option<String>>(column).map_err(from_rusqlite)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.get::<_, i64>(column).map_err(from_rusqlite)
    }
}

/// A query parameter. The queries number them `$1`, `$2`, ... (both engines accept it), and a
/// number may appear more than once in a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// A rusqlite error as the store reports it: a locked or unreadable database is
/// [`StoreError::Unavailable`] (retry later), a value of the wrong type [`StoreError::Corrupt`].
pub(crate) fn from_rusqlite(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::OutOfMemory
                    | ErrorCode::PermissionDenied
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DatabaseCorrupt => {
            StoreError::Corrupt(e.to_string())
        }
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}
