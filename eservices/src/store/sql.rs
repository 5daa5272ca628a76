//! [`SqlStore`]: the one implementation of [`Store`], over SQLite or PostgreSQL.
//!
//! Every query below is written once: `$N` placeholders (which SQLite also accepts), only TEXT
//! and BIGINT columns, dates as ISO text, amounts as integer cents. PostgreSQL (and the schema,
//! the seed, the migrations on either engine) go through sqlx's `Any` driver; a SQLite file's
//! lookups are read on the caller's thread through rusqlite ([`super::sqlite_reader`]). Rows of
//! either driver are decoded into domain models here, through [`Columns`], and a value that
//! breaks the schema contract (a date that does not parse, an unknown sex code) is a
//! [`StoreError::Corrupt`], never a panic.

use super::model::*;
use super::rows::{Columns, Param};
use super::sqlite_reader::SqliteReader;
use super::{Store, StoreError, StoreFuture};
use crate::codice_fiscale::{CodiceFiscale, Sesso, Soggetto};
use crate::wire::{Anno, Importo, Indirizzo, Percentuale};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlStr};
use std::sync::Arc;
use std::time::Duration;

/// The database engine behind a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// The metadata key holding the RFC 3339 time of the last refresh.
pub(crate) const KEY_DATA_AGGIORNAMENTO: &str = "data_aggiornamento";

/// The select-list item that reads the refresh time in a lookup's own statement (NULL when the
/// store was never loaded), so that a lookup is one round trip and one snapshot. A macro
/// because `concat!` takes literals only; the key is [`KEY_DATA_AGGIORNAMENTO`].
macro_rules! data_aggiornamento_column {
    () => {
        "(SELECT valore FROM metadati WHERE chiave = 'data_aggiornamento') AS data_aggiornamento"
    };
}

/// The schema, versioned; embedded so the binary needs no files next to it.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "catalogue".into(),
        MigrationType::Simple,
        SqlStr::from_static(include_str!("../../migrations/0001_catalogue.sql")),
        false,
    )])
}

/// The SQL store (a connection pool; cheap to share behind an `Arc`).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    /// A SQLite file's lookups, read on the caller's thread ([`SqliteReader`]); `None` for
    /// PostgreSQL and an in-memory SQLite database, read through the pool.
    reader: Option<Arc<SqliteReader>>,
}

impl SqlStore {
    /// Connects to `sqlite://path?mode=rwc` or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url).ok_or(StoreError::UnsupportedUrl)?;
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        options = match engine {
            // A SQLite connection is a file handle in this process: pinging it before each use
            // would add a hand-off to its thread in front of every query of every request.
            Engine::Sqlite => options
                .max_connections(4)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                }),
            Engine::Postgres => options.max_connections(16),
        };
        let pool = options.connect(url).await.map_err(|e| match e {
            sqlx::Error::Configuration(_) => StoreError::UnsupportedUrl,
            other => StoreError::Unavailable(other.to_string()),
        })?;
        let reader = match engine {
            Engine::Sqlite => SqliteReader::for_url(url).map(Arc::new),
            Engine::Postgres => None,
        };
        Ok(SqlStore {
            pool,
            engine,
            reader,
        })
    }

    /// Creates or upgrades the schema (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator()
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// The versions of the embedded migrations not (successfully) applied to this database:
    /// empty when the schema is current. Reads only; a `serve` told not to migrate uses it to
    /// refuse a schema that is missing or behind.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<_, _>>()?,
                // No bookkeeping table: nothing was ever applied.
                Err(sqlx::Error::Database(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(migrator()
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Whether the anagrafe has no person yet (a fresh database the seed may fill).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT codice_fiscale FROM persone LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_none())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The pool, for the seed and for tests that read the tables directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The refresh time if the contribuente is known, `None` if not: the first read of every
    /// tributi lookup.
    async fn contribuente(&self, s: &Soggetto) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.fetch_optional(
            concat!(
                "SELECT identificativo, ",
                data_aggiornamento_column!(),
                " FROM contribuenti WHERE identificativo = $1"
            ),
            &[Param::Text(s.as_str())],
            data_aggiornamento,
        )
        .await
    }

    /// The first row of `sql`, decoded; `None` when it has none.
    async fn fetch_optional<T: Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .fetch(sql, params, Some(1), decode)
            .await?
            .into_iter()
            .next())
    }

    /// Every row of `sql`, decoded.
    async fn fetch_all<T: Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        self.fetch(sql, params, None, decode).await
    }

    /// One query, on whichever driver reads this store: rusqlite on the caller's thread for a
    /// SQLite file, sqlx otherwise.
    async fn fetch<T: Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        limit: Option<usize>,
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        if let Some(reader) = &self.reader {
            return reader.fetch(sql, params, limit, decode);
        }
        let mut query = sqlx::query(sql);
        for param in params {
            query = match *param {
                Param::Text(text) => query.bind(text.to_owned()),
                Param::Int(int) => query.bind(int),
            };
        }
        let rows = match limit {
            Some(1) => query
                .fetch_optional(&self.pool)
                .await?
                .into_iter()
                .collect(),
            _ => query.fetch_all(&self.pool).await?,
        };
        rows.iter()
            .take(limit.unwrap_or(usize::MAX))
            .map(|row| decode(row))
            .collect()
    }
}

/// The refresh time a lookup's row carries ([`data_aggiornamento_column`]).
fn data_aggiornamento(row: &dyn Columns) -> Result<DateTime<Utc>, StoreError> {
    let valore = row
        .opt_text("data_aggiornamento")?
        .ok_or(StoreError::NotLoaded)?;
    parse_data_aggiornamento(&valore)
}

fn parse_data_aggiornamento(valore: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(valore)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt("metadati.data_aggiornamento is not RFC 3339".into()))
}

fn dated<T>(value: T, data_aggiornamento: DateTime<Utc>) -> Option<Dated<T>> {
    Some(Dated {
        value,
        data_aggiornamento,
    })
}

fn date(s: &str, column: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| StoreError::Corrupt(format!("{column} is not a YYYY-MM-DD date")))
}

fn opt_date(s: Option<String>, column: &str) -> Result<Option<NaiveDate>, StoreError> {
    s.map(|s| date(&s, column)).transpose()
}

fn indirizzo(row: &dyn Columns) -> Result<Indirizzo, StoreError> {
    Ok(Indirizzo {
        dug: row.text("dug")?,
        toponimo: row.text("toponimo")?,
        civico: row.text("civico")?,
        cap: row.text("cap")?,
        codice_istat_comune: row.text("codice_istat_comune")?,
    })
}

/// Longest lists an answer carries (the OpenAPI `maxItems`).
pub(crate) const MAX_COMPONENTI: i64 = 50;
pub(crate) const MAX_IMMOBILI: i64 = 500;
pub(crate) const MAX_UTENZE: i64 = 100;
pub(crate) const MAX_SCADENZE: i64 = 24;
pub(crate) const MAX_PAGAMENTI: i64 = 500;

impl Store for SqlStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.fetch_optional("SELECT 1 AS uno", &[], |row| row.int("uno"))
                .await?;
            Ok(())
        })
    }

    fn data_aggiornamento(&self) -> StoreFuture<'_, DateTime<Utc>> {
        Box::pin(async move {
            let valore = self
                .fetch_optional(
                    "SELECT valore FROM metadati WHERE chiave = $1",
                    &[Param::Text(KEY_DATA_AGGIORNAMENTO)],
                    |row| row.text("valore"),
                )
                .await?
                .ok_or(StoreError::NotLoaded)?;
            parse_data_aggiornamento(&valore)
        })
    }

    fn persona<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Persona>>> {
        Box::pin(async move {
            self.fetch_optional(
                concat!(
                    "SELECT codice_fiscale, cognome, nome, sesso, data_nascita, comune_nascita, \
                     codice_catastale_nascita, data_decesso, ",
                    data_aggiornamento_column!(),
                    " FROM persone WHERE codice_fiscale = $1"
                ),
                &[Param::Text(cf.as_str())],
                |row| {
                    let sesso: Sesso = row
                        .text("sesso")?
                        .parse()
                        .map_err(|_| StoreError::Corrupt("persone.sesso is not M or F".into()))?;
                    let persona = Persona {
                        codice_fiscale: row.text("codice_fiscale")?,
                        cognome: row.text("cognome")?,
                        nome: row.text("nome")?,
                        sesso,
                        data_nascita: date(&row.text("data_nascita")?, "persone.data_nascita")?,
                        comune_nascita: row.text("comune_nascita")?,
                        codice_catastale_nascita: row.text("codice_catastale_nascita")?,
                        data_decesso: opt_date(
                            row.opt_text("data_decesso")?,
                            "persone.data_decesso",
                        )?,
                    };
                    Ok(Dated {
                        value: persona,
                        data_aggiornamento: data_aggiornamento(row)?,
                    })
                },
            )
            .await
        })
    }

    fn residenza<'a>(
        &'a self,
        cf: &'a CodiceFiscale,
    ) -> StoreFuture<'a, Option<Dated<StatoResidenza>>> {
        Box::pin(async move {
            self.fetch_optional(
                concat!(
                    "SELECT p.data_decesso, r.dug, r.toponimo, r.civico, r.cap, \
                     r.codice_istat_comune, r.data_decorrenza, ",
                    data_aggiornamento_column!(),
                    " FROM persone p LEFT JOIN residenze r \
                     ON r.codice_fiscale = p.codice_fiscale WHERE p.codice_fiscale = $1"
                ),
                &[Param::Text(cf.as_str())],
                |row| {
                    let deceased = row.opt_text("data_decesso")?.is_some();
                    let residenza = match row.opt_text("data_decorrenza")? {
                        Some(d) if !deceased => Some(Residenza {
                            indirizzo: indirizzo(row)?,
                            data_decorrenza: date(&d, "residenze.data_decorrenza")?,
                        }),
                        _ => None,
                    };
                    Ok(Dated {
                        value: StatoResidenza { residenza },
                        data_aggiornamento: data_aggiornamento(row)?,
                    })
                },
            )
            .await
        })
    }

    fn famiglia<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Famiglia>>> {
        Box::pin(async move {
            let rows = self
                .fetch_all(
                    concat!(
                        "SELECT m.id_famiglia, m.codice_fiscale, m.cognome, m.nome, \
                         m.relazione_intestatario, ",
                        data_aggiornamento_column!(),
                        " FROM persone p JOIN persone m ON m.id_famiglia = p.id_famiglia \
                         WHERE p.codice_fiscale = $1 AND p.data_decesso IS NULL \
                         AND m.data_decesso IS NULL \
                         ORDER BY m.ordine_famiglia, m.codice_fiscale LIMIT $2"
                    ),
                    &[Param::Text(cf.as_str()), Param::Int(MAX_COMPONENTI)],
                    |row| {
                        let code = row.opt_text("relazione_intestatario")?.unwrap_or_default();
                        let componente = Componente {
                            codice_fiscale: row.text("codice_fiscale")?,
                            cognome: row.text("cognome")?,
                            nome: row.text("nome")?,
                            relazione: Relazione::from_code(&code).ok_or_else(|| {
                                StoreError::Corrupt(
                                    "persone.relazione_intestatario is not a known code".into(),
                                )
                            })?,
                        };
                        Ok((
                            row.text("id_famiglia")?,
                            componente,
                            data_aggiornamento(row)?,
                        ))
                    },
                )
                .await?;
            let Some((id_famiglia, _, updated)) = rows.first() else {
                return Ok(None);
            };
            let (id_famiglia, updated) = (id_famiglia.clone(), *updated);
            Ok(dated(
                Famiglia {
                    id_famiglia,
                    componenti: rows.into_iter().map(|(_, c, _)| c).collect(),
                },
                updated,
            ))
        })
    }

    fn posizione_imu<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<PosizioneImu>>> {
        Box::pin(async move {
            let Some(updated) = self.contribuente(s).await? else {
                return Ok(None);
            };
            let anno = i64::from(anno.get());
            let immobili = self
                .fetch_all(
                    "SELECT foglio, particella, subalterno, categoria, rendita_centesimi, \
                     quota_centesimi FROM imu_immobili WHERE identificativo = $1 \
                     AND anno_inizio <= $2 AND (anno_fine IS NULL OR anno_fine >= $2) \
                     ORDER BY foglio, particella, subalterno LIMIT $3",
                    &[
                        Param::Text(s.as_str()),
                        Param::Int(anno),
                        Param::Int(MAX_IMMOBILI),
                    ],
                    |row| {
                        let sub = row.text("subalterno")?;
                        Ok(Immobile {
                            foglio: row.text("foglio")?,
                            particella: row.text("particella")?,
                            subalterno: (!sub.is_empty()).then_some(sub),
                            categoria: row.text("categoria")?,
                            rendita: Importo(row.int("rendita_centesimi")?),
                            quota: Percentuale(row.int("quota_centesimi")?),
                        })
                    },
                )
                .await?;
            let (dovuto, versato) = self
                .fetch_optional(
                    "SELECT dovuto_centesimi, versato_centesimi FROM imu_posizioni \
                     WHERE identificativo = $1 AND anno = $2",
                    &[Param::Text(s.as_str()), Param::Int(anno)],
                    |row| Ok((row.int("dovuto_centesimi")?, row.int("versato_centesimi")?)),
                )
                .await?
                .unwrap_or((0, 0));
            Ok(dated(
                PosizioneImu {
                    immobili,
                    dovuto: Importo(dovuto),
                    versato: Importo(versato),
                },
                updated,
            ))
        })
    }

    fn posizione_tari<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<PosizioneTari>>> {
        Box::pin(async move {
            let Some(updated) = self.contribuente(s).await? else {
                return Ok(None);
            };
            let anno = i64::from(anno.get());
            let utenze = self
                .fetch_all(
                    "SELECT dug, toponimo, civico, cap, codice_istat_comune, superficie_mq, \
                     occupanti, categoria FROM tari_utenze WHERE identificativo = $1 \
                     AND anno_inizio <= $2 AND (anno_fine IS NULL OR anno_fine >= $2) \
                     ORDER BY progressivo LIMIT $3",
                    &[
                        Param::Text(s.as_str()),
                        Param::Int(anno),
                        Param::Int(MAX_UTENZE),
                    ],
                    |row| {
                        Ok(Utenza {
                            indirizzo: indirizzo(row)?,
                            superficie_mq: row.int("superficie_mq")?,
                            occupanti: row.int("occupanti")?,
                            categoria: row.text("categoria")?,
                        })
                    },
                )
                .await?;
            let (importo, pagato) = self
                .fetch_optional(
                    "SELECT importo_centesimi, pagato_centesimi FROM tari_posizioni \
                     WHERE identificativo = $1 AND anno = $2",
                    &[Param::Text(s.as_str()), Param::Int(anno)],
                    |row| Ok((row.int("importo_centesimi")?, row.int("pagato_centesimi")?)),
                )
                .await?
                .unwrap_or((0, 0));
            let scadenze = self
                .fetch_all(
                    "SELECT rata, data_scadenza, importo_centesimi FROM tari_rate \
                     WHERE identificativo = $1 AND anno = $2 ORDER BY rata LIMIT $3",
                    &[
                        Param::Text(s.as_str()),
                        Param::Int(anno),
                        Param::Int(MAX_SCADENZE),
                    ],
                    |row| {
                        Ok(Scadenza {
                            rata: row.int("rata")?,
                            data_scadenza: date(
                                &row.text("data_scadenza")?,
                                "tari_rate.data_scadenza",
                            )?,
                            importo: Importo(row.int("importo_centesimi")?),
                        })
                    },
                )
                .await?;
            Ok(dated(
                PosizioneTari {
                    utenze,
                    importo: Importo(importo),
                    pagato: Importo(pagato),
                    scadenze,
                },
                updated,
            ))
        })
    }

    fn anni_con_debito<'a>(&'a self, s: &'a Soggetto) -> StoreFuture<'a, Option<Dated<Vec<u16>>>> {
        Box::pin(async move {
            let Some(updated) = self.contribuente(s).await? else {
                return Ok(None);
            };
            let anni = self
                .fetch_all(
                    "SELECT anno FROM imu_posizioni WHERE identificativo = $1 \
                     AND versato_centesimi < dovuto_centesimi \
                     UNION SELECT anno FROM tari_posizioni WHERE identificativo = $1 \
                     AND pagato_centesimi < importo_centesimi ORDER BY anno",
                    &[Param::Text(s.as_str())],
                    |row| {
                        u16::try_from(row.int("anno")?)
                            .map_err(|_| StoreError::Corrupt("anno out of range".into()))
                    },
                )
                .await?;
            Ok(dated(anni, updated))
        })
    }

    fn pagamenti<'a>(
        &'a self,
        s: &'a Soggetto,
        anno: Anno,
    ) -> StoreFuture<'a, Option<Dated<Vec<Pagamento>>>> {
        Box::pin(async move {
            let Some(updated) = self.contribuente(s).await? else {
                return Ok(None);
            };
            let pagamenti = self
                .fetch_all(
                    "SELECT iuv, tributo, importo_centesimi, data_pagamento FROM pagamenti \
                     WHERE identificativo = $1 AND anno = $2 \
                     ORDER BY data_pagamento, iuv LIMIT $3",
                    &[
                        Param::Text(s.as_str()),
                        Param::Int(i64::from(anno.get())),
                        Param::Int(MAX_PAGAMENTI),
                    ],
                    |row| {
                        Ok(Pagamento {
                            iuv: row.text("iuv")?,
                            tributo: Tributo::from_code(&row.text("tributo")?).ok_or_else(
                                || {
                                    StoreError::Corrupt(
                                        "pagamenti.tributo is not IMU or TARI".into(),
                                    )
                                },
                            )?,
                            importo: Importo(row.int("importo_centesimi")?),
                            data: date(&row.text("data_pagamento")?, "pagamenti.data_pagamento")?,
                        })
                    },
                )
                .await?;
            Ok(dated(pagamenti, updated))
        })
    }
}
