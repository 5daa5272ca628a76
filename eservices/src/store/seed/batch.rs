//! Rows waiting to be written, table by table, and their multi-row INSERTs: one statement per
//! `PARAMS_PER_STATEMENT` bind parameters, so a block of persons costs a few round trips.

use super::PARAMS_PER_STATEMENT;
use crate::store::sql::Engine;
use crate::store::StoreError;
use chrono::NaiveDate;
use sqlx::{AnyConnection, AssertSqlSafe};

/// A value bound into an INSERT.
pub(super) enum Val {
    T(String),
    I(i64),
    NullT,
    NullI,
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::T(s.to_owned())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::T(s)
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::I(i)
    }
}
impl From<NaiveDate> for Val {
    fn from(d: NaiveDate) -> Self {
        Val::T(d.format("%Y-%m-%d").to_string())
    }
}

/// Rows waiting to be written to one table.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [&'static str],
    pub(super) rows: Vec<Vec<Val>>,
}

impl Table {
    pub(super) fn new(name: &'static str, columns: &'static [&'static str]) -> Self {
        Table {
            name,
            columns,
            rows: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: Vec<Val>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width of {}", self.name);
        self.rows.push(row);
    }

    /// A multi-row INSERT. SQLite gets anonymous `?` placeholders: it resolves named ones
    /// (`$N`) with a linear scan per parameter, which makes a statement of thousands of
    /// parameters quadratic.
    pub(super) fn insert_sql(&self, rows: usize, engine: Engine) -> String {
        let cols = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.name,
            self.columns.join(", ")
        );
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..cols {
                if c > 0 {
                    sql.push(',');
                }
                match engine {
                    Engine::Sqlite => sql.push('?'),
                    Engine::Postgres => {
                        sql.push('$');
                        sql.push_str(&(r * cols + c + 1).to_string());
                    }
                }
            }
            sql.push(')');
        }
        sql
    }

    pub(super) async fn flush(
        &mut self,
        conn: &mut AnyConnection,
        engine: Engine,
    ) -> Result<(), StoreError> {
        let per_statement = (PARAMS_PER_STATEMENT / self.columns.len()).max(1);
        let rows = std::mem::take(&mut self.rows);
        let full_sql = self.insert_sql(per_statement, engine);
        let mut iter = rows.into_iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<Vec<Val>> = iter.by_ref().take(per_statement).collect();
            let sql = if chunk.len() == per_statement {
                full_sql.clone()
            } else {
                self.insert_sql(chunk.len(), engine)
            };
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                for v in row {
                    query = match v {
                        Val::T(s) => query.bind(s),
                        Val::I(i) => query.bind(i),
                        Val::NullT => query.bind(None::<String>),
                        Val::NullI => query.bind(None::<i64>),
                    };
                }
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

pub(super) struct Tables {
    pub(super) persone: Table,
    pub(super) residenze: Table,
    pub(super) contribuenti: Table,
    pub(super) imu_immobili: Table,
    pub(super) imu_posizioni: Table,
    pub(super) tari_utenze: Table,
    pub(super) tari_posizioni: Table,
    pub(super) tari_rate: Table,
    pub(super) pagamenti: Table,
}

impl Tables {
    pub(super) fn new() -> Self {
        Tables {
            persone: Table::new(
                "persone",
                &[
                    "codice_fiscale",
                    "cognome",
                    "nome",
                    "sesso",
                    "data_nascita",
                    "comune_nascita",
                    "codice_catastale_nascita",
                    "data_decesso",
                    "id_famiglia",
                    "relazione_intestatario",
                    "ordine_famiglia",
                ],
            ),
            residenze: Table::new(
                "residenze",
                &[
                    "codice_fiscale",
                    "dug",
                    "toponimo",
                    "civico",
                    "cap",
                    "codice_istat_comune",
                    "data_decorrenza",
                ],
            ),
            contribuenti: Table::new("contribuenti", &["identificativo", "tipo"]),
            imu_immobili: Table::new(
                "imu_immobili",
                &[
                    "identificativo",
                    "foglio",
                    "particella",
                    "subalterno",
                    "categoria",
                    "rendita_centesimi",
                    "quota_centesimi",
                    "anno_inizio",
                    "anno_fine",
                ],
            ),
            imu_posizioni: Table::new(
                "imu_posizioni",
                &[
                    "identificativo",
                    "anno",
                    "dovuto_centesimi",
                    "versato_centesimi",
                ],
            ),
            tari_utenze: Table::new(
                "tari_utenze",
                &[
                    "identificativo",
                    "progressivo",
                    "dug",
                    "toponimo",
                    "civico",
                    "cap",
                    "codice_istat_comune",
                    "superficie_mq",
                    "occupanti",
                    "categoria",
                    "anno_inizio",
                    "anno_fine",
                ],
            ),
            tari_posizioni: Table::new(
                "tari_posizioni",
                &[
                    "identificativo",
                    "anno",
                    "importo_centesimi",
                    "pagato_centesimi",
                ],
            ),
            tari_rate: Table::new(
                "tari_rate",
                &[
                    "identificativo",
                    "anno",
                    "rata",
                    "data_scadenza",
                    "importo_centesimi",
                ],
            ),
            pagamenti: Table::new(
                "pagamenti",
                &[
                    "iuv",
                    "identificativo",
                    "anno",
                    "tributo",
                    "importo_centesimi",
                    "data_pagamento",
                ],
            ),
        }
    }

    /// Writes every pending row, parents before children (foreign keys).
    pub(super) async fn flush(
        &mut self,
        conn: &mut AnyConnection,
        engine: Engine,
    ) -> Result<(), StoreError> {
        self.persone.flush(conn, engine).await?;
        self.residenze.flush(conn, engine).await?;
        self.contribuenti.flush(conn, engine).await?;
        self.imu_immobili.flush(conn, engine).await?;
        self.imu_posizioni.flush(conn, engine).await?;
        self.tari_utenze.flush(conn, engine).await?;
        self.tari_posizioni.flush(conn, engine).await?;
        self.tari_rate.flush(conn, engine).await?;
        self.pagamenti.flush(conn, engine).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Engine;

    #[test]
    fn insert_sql_numbers_placeholders() {
        let t = Table::new("x", &["a", "b"]);
        assert_eq!(
            t.insert_sql(2, Engine::Postgres),
            "INSERT INTO x (a, b) VALUES ($1,$2),($3,$4)"
        );
        assert_eq!(
            t.insert_sql(2, Engine::Sqlite),
            "INSERT INTO x (a, b) VALUES (?,?),(?,?)"
        );
    }
}
