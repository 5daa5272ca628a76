//! Audit records into `audit_log` as multi-row INSERTs.
//!
//! A batch of n records as n single-row statements costs n round trips to the database
//! driver (for SQLite, n hand-offs to and from its worker thread) inside the transaction that
//! every waiting 2xx depends on. One statement carries up to [`CHUNKS`]`[0]` rows instead. The
//! statement texts come in a few fixed sizes so that the driver's prepared-statement cache
//! holds a handful of them, not one per batch size.
//!
//! On SQLite a batch of e-service records alone is one INSERT of all its rows, run outside an
//! explicit transaction so that the statement is its own transaction
//! ([`insert_as_one_statement`]): one hand-off to the connection's thread instead of BEGIN,
//! one per chunk and COMMIT. A batch that also holds fruizioni records, and every PostgreSQL
//! batch, goes through an explicit transaction and [`insert`].
//!
//! SQLite gets anonymous `?` parameters, PostgreSQL numbered `$n` ones. sqlx binds SQLite
//! arguments by asking `sqlite3_bind_parameter_name` for each parameter, and SQLite answers that
//! by walking the statement's list of named parameters: with 960 numbered ones the binding of
//! one 64-row statement walked that list 960 times, and under load this was the largest single
//! cost of the audit writer's thread (7.6% of the gateway's samples). Anonymous parameters are
//! not in that list.

use std::sync::OnceLock;

use super::AuditRecord;

/// Rows per statement, largest first: a batch is cut greedily into these sizes. 64 rows x 15
/// columns = 960 parameters, far below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

const COLUMNS: &str = "record_id, at, request_id, consumer_id, client_id, purpose_id, \
    voucher_jti, eservice, operation, status, latency_ms, subject_hash, user_id, user_location, \
    loa";
const PER_ROW: usize = 15;

/// How a statement's parameters are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholders {
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

/// `INSERT INTO audit_log (...) VALUES ($1, ..., $15), ($16, ...)` for `rows` rows (or with
/// `?` for every parameter).
fn statement_text(rows: usize, placeholders: Placeholders) -> String {
    let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..PER_ROW {
            if col > 0 {
                sql.push_str(", ");
            }
            match placeholders {
                Placeholders::Anonymous => sql.push('?'),
                Placeholders::Numbered => {
                    sql.push('$');
                    sql.push_str(&(row * PER_ROW + col + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

fn statement(rows: usize, placeholders: Placeholders) -> &'static str {
    static ANONYMOUS: OnceLock<Vec<String>> = OnceLock::new();
    static NUMBERED: OnceLock<Vec<String>> = OnceLock::new();
    let texts = match placeholders {
        Placeholders::Anonymous => &ANONYMOUS,
        Placeholders::Numbered => &NUMBERED,
    }
    .get_or_init(|| {
        CHUNKS
            .iter()
            .map(|&n| statement_text(n, placeholders))
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
pub(super) async fn insert_as_one_statement(
    conn: &mut sqlx::AnyConnection,
    records: &[&AuditRecord],
) -> Result<(), sqlx::Error> {
    let rows = records.len();
    let query = if CHUNKS.contains(&rows) {
        sqlx::query(statement(rows, Placeholders::Anonymous))
    } else {
        sqlx::query(sqlx::AssertSqlSafe(statement_text(
            rows,
            Placeholders::Anonymous,
        )))
        .persistent(false)
    };
    bind_all(query, records).execute(&mut *conn).await?;
    Ok(())
}

/// `query` with the 15 values of each record bound, in order.
fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    records: &'q [&AuditRecord],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for r in records {
        query = query
            .bind(&r.record_id)
            .bind(&r.time)
            .bind(&r.request_id)
            .bind(&r.consumer_id)
            .bind(&r.client_id)
            .bind(&r.purpose_id)
            .bind(&r.voucher_jti)
            .bind(&r.eservice)
            .bind(&r.operation)
            .bind(i64::from(r.status))
            .bind(r.latency_ms)
            .bind(&r.subject_hash)
            .bind(&r.user_id)
            .bind(&r.user_location)
            .bind(&r.loa);
    }
    query
}

/// Inserts `records` on `conn` (inside the caller's transaction), in order.
pub(super) async fn insert(
    conn: &mut sqlx::AnyConnection,
    records: &[&AuditRecord],
) -> Result<(), sqlx::Error> {
    let placeholders = Placeholders::of(conn);
    let mut rest = records;
    while !rest.is_empty() {
        let rows = CHUNKS
            .iter()
            .copied()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (now, later) = rest.split_at(rows);
        bind_all(sqlx::query(statement(rows, placeholders)), now)
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
        let sql = statement_text(3, Placeholders::Numbered);
        assert!(sql.ends_with(
            "($31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45)"
        ));
        assert_eq!(sql.matches('$').count(), 45);
        assert!(!sql.contains('?'));
        assert_eq!(COLUMNS.split(',').count(), PER_ROW);
        for &n in &CHUNKS {
            for p in [Placeholders::Anonymous, Placeholders::Numbered] {
                assert_eq!(statement(n, p).matches('(').count(), n + 1);
            }
        }
    }

    #[test]
    fn sqlite_statements_have_only_anonymous_parameters() {
        let sql = statement_text(2, Placeholders::Anonymous);
        assert!(sql.ends_with(&format!("({})", ["?"; PER_ROW].join(", "))));
        assert_eq!(sql.matches('?').count(), 2 * PER_ROW);
        assert!(!sql.contains('$'));
        assert_eq!(
            statement(64, Placeholders::Anonymous).matches('?').count(),
            64 * PER_ROW
        );
    }
}
