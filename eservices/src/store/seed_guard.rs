//! Whether the seed may write into a database: it empties the catalogue tables before writing
//! the synthetic sample, so pointed at a real register by mistake it would wipe it.
//!
//! The seed marks what it writes: a `seed_marker` table (never created by the migrations, so a
//! register filled by the comune's software never has one) holding the number of persons the
//! seed wrote. A database is the seed's to overwrite when it holds no rows at all, or when it
//! has the marker, its rows are all in the seed's own tables and the persons are still the
//! ones the seed counted. Anything else is foreign, and [`inspect`] says which tables hold
//! data; the caller refuses unless told explicitly to replace it.
//!
//! The inspection opens one plain connection (no pragmas, no migrations), reads only
//! catalogue metadata and `LIMIT 1` probes, and closes it: a refused database is left as it
//! was.

use super::sql::Engine;
use super::StoreError;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

/// The table the seed marks its databases with.
pub const MARKER_TABLE: &str = "seed_marker";

/// The tables the seed empties and fills (the catalogue of the migrations).
pub const SEED_TABLES: [&str; 10] = [
    "pagamenti",
    "tari_rate",
    "tari_posizioni",
    "tari_utenze",
    "imu_posizioni",
    "imu_immobili",
    "contribuenti",
    "residenze",
    "persone",
    "metadati",
];

/// sqlx's record of applied migrations: bookkeeping, not data.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The `persone` value of a marker whose seed has started but not finished.
pub(super) const SEED_IN_PROGRESS: i64 = -1;

/// What a database is, from the seed's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No table holds a row (a new file, a new database, or a schema just migrated).
    Empty,
    /// Written by the seed and untouched since.
    Seeded,
    /// Holds data the seed did not write; `tables` are those with rows.
    Foreign { tables: Vec<String> },
}

/// Inspects the database at `url` (`sqlite:...` or `postgres://...`) without changing it.
pub async fn inspect(url: &str) -> Result<Ownership, StoreError> {
    sqlx::any::install_default_drivers();
    let engine = Engine::from_url(url).ok_or(StoreError::UnsupportedUrl)?;
    let mut conn = AnyConnection::connect(url).await.map_err(|e| match e {
        sqlx::Error::Configuration(_) => StoreError::UnsupportedUrl,
        other => StoreError::Unavailable(other.to_string()),
    })?;
    let result = inspect_connection(&mut conn, engine).await;
    let _ = conn.close().await;
    result
}

async fn inspect_connection(
    conn: &mut AnyConnection,
    engine: Engine,
) -> Result<Ownership, StoreError> {
    let list = match engine {
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let tables: Vec<String> = sqlx::query(list)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let mut with_rows = Vec::new();
    for table in tables
        .iter()
        .filter(|t| t.as_str() != MIGRATIONS_TABLE && t.as_str() != MARKER_TABLE)
    {
        let probe = format!("SELECT 1 FROM {} LIMIT 1", quote_identifier(table));
        if sqlx::query(AssertSqlSafe(probe))
            .fetch_optional(&mut *conn)
            .await?
            .is_some()
        {
            with_rows.push(table.clone());
        }
    }
    if with_rows.is_empty() {
        return Ok(Ownership::Empty);
    }
    with_rows.sort();
    let foreign = Ok(Ownership::Foreign {
        tables: with_rows.clone(),
    });
    if !tables.iter().any(|t| t == MARKER_TABLE)
        || with_rows.iter().any(|t| !SEED_TABLES.contains(&t.as_str()))
    {
        return foreign;
    }
    let marked = sqlx::query(AssertSqlSafe(format!(
        "SELECT persone FROM {MARKER_TABLE} LIMIT 1"
    )))
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| row.try_get::<i64, _>(0))
    .transpose()?;
    let Some(marked) = marked else {
        return foreign;
    };
    if marked == SEED_IN_PROGRESS {
        return Ok(Ownership::Seeded);
    }
    let persone: i64 = sqlx::query("SELECT COUNT(*) FROM persone")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if persone == marked {
        Ok(Ownership::Seeded)
    } else {
        foreign
    }
}

/// A table name as an SQL identifier (double quotes, inner quotes doubled): names come from
/// the database's own catalogue, and are quoted all the same.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("persone"), "\"persone\"");
        assert_eq!(quote_identifier("a\"; DROP"), "\"a\"\"; DROP\"");
    }
}
