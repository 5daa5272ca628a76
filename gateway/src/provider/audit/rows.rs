//! Audit records into `audit_log` and `audit_fruizioni` as multi-row INSERTs.
//!
//! A batch of n records as n single-row statements costs n round trips to the database
//! driver (for SQLite, n hand-offs to and from its worker thread) inside the transaction that
//! every waiting 2xx depends on. One statement carries up to [`CHUNKS`]`[0]` rows instead. The
//! statement texts come in a few fixed sizes so that the driver's prepared-statement cache
//! holds a handful of them, not one per batch size.
//!
//! A SQLite file's batches go through rusqlite on the audit writer's own thread
//! ([`insert_sqlite`], `super::sqlite`): a batch of one of the fixed sizes is one INSERT run
//! outside an explicit transaction (the statement is its own transaction), any other size is cut
//! into those sizes inside one transaction. An in-memory SQLite database, which only sqlx's pool
//! can see, gets one INSERT of all the batch's rows ([`insert_as_one_statement`]). A batch that holds records of both tables, and every
//! PostgreSQL batch, goes through an explicit transaction ([`insert`] on sqlx). Both drivers
//! bind the one list of values a record gives ([`TableRow::values`]).
//!
//! SQLite gets anonymous `?` parameters, PostgreSQL numbered `$n` ones. sqlx binds SQLite
//! arguments by asking `sqlite3_bind_parameter_name` for each parameter, and SQLite answers that
//! by walking the statement's list of named parameters: with 960 numbered ones the binding of
//! one 64-row statement walked that list 960 times, and under load this was the largest single
//! cost of the audit writer's thread (7.6% of the gateway's samples). Anonymous parameters are
//! not in that list.

use std::sync::OnceLock;

use super::super::audit_fruizioni::FruizioneRecord;
use super::AuditRecord;

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Rows per statement, largest first: a batch is cut greedily into these sizes. 64 rows x 15
/// columns = 960 parameters, far below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// A record stored as one row of one table.
pub(super) trait TableRow: Sync {
    const TABLE: &'static str;
    /// The columns, comma-separated, in the order of [`TableRow::values`].
    const COLUMNS: &'static str;
    /// The statement texts of the [`CHUNKS`] sizes for this table, one set per placeholder
    /// style (a `static` in a generic function would be shared by every table).
    fn texts(placeholders: Placeholders) -> &'static OnceLock<Vec<String>>;
    /// This record's values, in [`TableRow::COLUMNS`] order: the one list both drivers bind.
    fn values(&self) -> Vec<Value<'_>>;
}

/// A column's value as both drivers bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

/// Where each table keeps its statement texts.
macro_rules! statement_texts {
    () => {
        fn texts(placeholders: Placeholders) -> &'static OnceLock<Vec<String>> {
            static ANONYMOUS: OnceLock<Vec<String>> = OnceLock::new();
            static NUMBERED: OnceLock<Vec<String>> = OnceLock::new();
            match placeholders {
                Placeholders::Anonymous => &ANONYMOUS,
                Placeholders::Numbered => &NUMBERED,
            }
        }
    };
}

impl TableRow for AuditRecord {
    const TABLE: &'static str = "audit_log";
    const COLUMNS: &'static str = "record_id, at, request_id, consumer_id, client_id, \
        purpose_id, voucher_jti, eservice, operation, status, latency_ms, subject_hash, user_id, \
        user_location, loa";
    statement_texts!();
    fn values(&self) -> Vec<Value<'_>> {
        use Value::*;
        vec![
            Text(&self.record_id),
            Text(&self.time),
            Text(&self.request_id),
            OptText(self.consumer_id.as_deref()),
            OptText(self.client_id.as_deref()),
            OptText(self.purpose_id.as_deref()),
            OptText(self.voucher_jti.as_deref()),
            Text(&self.eservice),
            OptText(self.operation.as_deref()),
            Int(i64::from(self.status)),
            Int(self.latency_ms),
            OptText(self.subject_hash.as_deref()),
            OptText(self.user_id.as_deref()),
            OptText(self.user_location.as_deref()),
            OptText(self.loa.as_deref()),
        ]
    }
}

impl TableRow for FruizioneRecord {
    const TABLE: &'static str = "audit_fruizioni";
    const COLUMNS: &'static str = "record_id, at, request_id, caller, fruizione, method, \
        purpose_id, client_id, voucher_jti, status, remote_status, latency_ms, user_id";
    statement_texts!();
    fn values(&self) -> Vec<Value<'_>> {
        use Value::*;
        vec![
            Text(&self.record_id),
            Text(&self.time),
            Text(&self.request_id),
            Text(&self.caller),
            OptText(self.fruizione.as_deref()),
            Text(&self.method),
            OptText(self.purpose_id.as_deref()),
            OptText(self.client_id.as_deref()),
            OptText(self.voucher_jti.as_deref()),
            Int(i64::from(self.status)),
            OptInt(self.remote_status.map(i64::from)),
            Int(self.latency_ms),
            OptText(self.user_id.as_deref()),
        ]
    }
}

/// How a statement's parameters are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Placeholders {
    /// `?`: SQLite (bound in order).
    Anonymous,
    /// `$1`, `$2`, ...: PostgreSQL.
    Numbered,
}

impl Placeholders {
    fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Placeholders::Anonymous
        } else {
            Placeholders::Numbered
        }
    }
}

/// `INSERT INTO <table> (<columns>) VALUES ($1, ..., $n), ($n+1, ...)` for `rows` rows of
/// `R`'s n columns (or with `?` for every parameter).
fn statement_text<R: TableRow>(rows: usize, placeholders: Placeholders) -> String {
    let per_row = R::COLUMNS.split(',').count();
    let mut sql = format!("INSERT INTO {} ({}) VALUES ", R::TABLE, R::COLUMNS);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..per_row {
            if col > 0 {
                sql.push_str(", ");
            }
            match placeholders {
                Placeholders::Anonymous => sql.push('?'),
                Placeholders::Numbered => {
                    sql.push('$');
                    sql.push_str(&(row * per_row + col + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

fn statement<R: TableRow>(rows: usize, placeholders: Placeholders) -> &'static str {
    let texts = R::texts(placeholders).get_or_init(|| {
        CHUNKS
            .iter()
            .map(|&n| statement_text::<R>(n, placeholders))
            .collect()
    });
    let i = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNKS.len() - 1);
    &texts[i]
}

/// Inserts `records` on a SQLite `conn` as one statement of `records.len()` rows, outside any
/// explicit transaction, so that the statement is its own transaction (all rows or none).
///
/// The statement text differs with the batch size. Only the [`CHUNKS`] sizes are kept prepared
/// in the driver's per-connection statement cache: a prepared multi-row INSERT holds several
/// KiB a row, and keeping every size up to `audit.batch_max` on every connection could hold
/// hundreds of MiB. Other sizes are prepared for the one execution, on the connection's thread,
/// with no extra hand-off.
pub(super) async fn insert_as_one_statement<R: TableRow>(
    conn: &mut sqlx::AnyConnection,
    records: &[&R],
) -> Result<(), sqlx::Error> {
    let rows = records.len();
    let query = if CHUNKS.contains(&rows) {
        sqlx::query(statement::<R>(rows, Placeholders::Anonymous))
    } else {
        sqlx::query(sqlx::AssertSqlSafe(statement_text::<R>(
            rows,
            Placeholders::Anonymous,
        )))
        .persistent(false)
    };
    bind_all(query, records).execute(&mut *conn).await?;
    Ok(())
}

/// `query` with the values of each record bound, in order.
fn bind_all<'q, R: TableRow>(mut query: Query<'q>, records: &'q [&R]) -> Query<'q> {
    for r in records {
        for value in r.values() {
            query = match value {
                Value::Text(v) => query.bind(v),
                Value::OptText(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
                Value::OptInt(v) => query.bind(v),
            };
        }
    }
    query
}

/// Inserts `records` through rusqlite (the SQLite audit writer, [`super::sqlite`]), all or
/// none. A batch of one of the [`CHUNKS`] sizes is one statement, which outside an explicit
/// transaction is its own transaction; any other size is cut greedily into those sizes, run in
/// one transaction (the caller's, when it has one open). Every statement comes from the
/// connection's statement cache: preparing a statement of the batch's own size for the one
/// execution took about 4% of the gateway's CPU under load (SQLite parsing some 300
/// placeholders a commit), more than the `BEGIN` and `COMMIT` the cut adds.
pub(super) fn insert_sqlite<R: TableRow>(
    conn: &rusqlite::Connection,
    records: &[&R],
) -> rusqlite::Result<()> {
    let rows = records.len();
    if rows == 0 {
        return Ok(());
    }
    if CHUNKS.contains(&rows) {
        let mut statement = conn.prepare_cached(statement::<R>(rows, Placeholders::Anonymous))?;
        return bind_and_run(&mut statement, records);
    }
    // Dropped without commit (an error on the way) it rolls back.
    let tx = if conn.is_autocommit() {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    let mut rest = records;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(chunk_of(rest.len()));
        let mut statement =
            conn.prepare_cached(statement::<R>(now.len(), Placeholders::Anonymous))?;
        bind_and_run(&mut statement, now)?;
        rest = later;
    }
    match tx {
        Some(tx) => tx.commit(),
        None => Ok(()),
    }
}

/// The largest of the [`CHUNKS`] sizes that `rows` records fill.
fn chunk_of(rows: usize) -> usize {
    CHUNKS.iter().copied().find(|&n| n <= rows).unwrap_or(1)
}

fn bind_and_run<R: TableRow>(
    statement: &mut rusqlite::Statement<'_>,
    records: &[&R],
) -> rusqlite::Result<()> {
    let mut index = 1;
    for r in records {
        for value in r.values() {
            match value {
                Value::Text(v) => statement.raw_bind_parameter(index, v),
                Value::OptText(v) => statement.raw_bind_parameter(index, v),
                Value::Int(v) => statement.raw_bind_parameter(index, v),
                Value::OptInt(v) => statement.raw_bind_parameter(index, v),
            }?;
            index += 1;
        }
    }
    statement.raw_execute()?;
    Ok(())
}

/// Inserts `records` on `conn` (inside the caller's transaction), in order.
pub(super) async fn insert<R: TableRow>(
    conn: &mut sqlx::AnyConnection,
    records: &[&R],
) -> Result<(), sqlx::Error> {
    let placeholders = Placeholders::of(conn);
    let mut rest = records;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(chunk_of(rest.len()));
        bind_all(sqlx::query(statement::<R>(now.len(), placeholders)), now)
            .execute(&mut *conn)
            .await?;
        rest = later;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_numbers_every_parameter_once() {
        let sql = statement_text::<AuditRecord>(3, Placeholders::Numbered);
        assert!(sql.ends_with(
            "($31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45)"
        ));
        assert_eq!(sql.matches('$').count(), 45);
        assert!(!sql.contains('?'));
        for &n in &CHUNKS {
            for p in [Placeholders::Anonymous, Placeholders::Numbered] {
                assert_eq!(statement::<AuditRecord>(n, p).matches('(').count(), n + 1);
                assert_eq!(
                    statement::<FruizioneRecord>(n, p).matches('(').count(),
                    n + 1
                );
            }
        }
    }

    #[test]
    fn each_table_has_its_own_statements() {
        let log = statement::<AuditRecord>(2, Placeholders::Anonymous);
        let fruizioni = statement::<FruizioneRecord>(2, Placeholders::Anonymous);
        assert!(log.starts_with("INSERT INTO audit_log (record_id, at, request_id, consumer_id"));
        assert!(
            fruizioni.starts_with("INSERT INTO audit_fruizioni (record_id, at, request_id, caller")
        );
        assert_eq!(fruizioni.matches('?').count(), 2 * 13);
        let numbered = statement_text::<FruizioneRecord>(2, Placeholders::Numbered);
        assert!(
            numbered.ends_with("($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)")
        );
    }

    #[test]
    fn sqlite_statements_have_only_anonymous_parameters() {
        let sql = statement_text::<AuditRecord>(2, Placeholders::Anonymous);
        assert!(sql.ends_with(&format!("({})", ["?"; 15].join(", "))));
        assert_eq!(sql.matches('?').count(), 2 * 15);
        assert!(!sql.contains('$'));
        assert_eq!(
            statement::<AuditRecord>(64, Placeholders::Anonymous)
                .matches('?')
                .count(),
            64 * 15
        );
    }
}
