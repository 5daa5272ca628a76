//! [`SqlStore`]: the one implementation of [`Store`], over SQLite or PostgreSQL.
//!
//! It uses sqlx's `Any` driver so that every query below is written once: `$N` placeholders
//! (which SQLite also accepts), only TEXT and BIGINT columns, dates as ISO text, amounts as
//! integer cents. Rows are decoded into domain models here, and a value that breaks the schema
//! contract (a date that does not parse, an unknown sex code) is a [`StoreError::Corrupt`],
//! never a panic.

use super::model::*;
use super::{Store, StoreError, StoreFuture};
use crate::codice_fiscale::{CodiceFiscale, Sesso, Soggetto};
use crate::wire::{Anno, Importo, Indirizzo, Percentuale};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlStr};
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
        Ok(SqlStore { pool, engine })
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
        let row = sqlx::query(concat!(
            "SELECT identificativo, ",
            data_aggiornamento_column!(),
            " FROM contribuenti WHERE identificativo = $1"
        ))
        .bind(s.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(data_aggiornamento).transpose()
    }
}

/// The refresh time a lookup's row carries ([`data_aggiornamento_column`]).
fn data_aggiornamento(row: &AnyRow) -> Result<DateTime<Utc>, StoreError> {
    let valore = opt_text(row, "data_aggiornamento")?.ok_or(StoreError::NotLoaded)?;
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

fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    Ok(row.try_get::<String, _>(column)?)
}

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn int(row: &AnyRow, column: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<i64, _>(column)?)
}

fn indirizzo(row: &AnyRow) -> Result<Indirizzo, StoreError> {
    Ok(Indirizzo {
        dug: text(row, "dug")?,
        toponimo: text(row, "toponimo")?,
        civico: text(row, "civico")?,
        cap: text(row, "cap")?,
        codice_istat_comune: text(row, "codice_istat_comune")?,
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
            self.pool.execute("SELECT 1").await?;
            Ok(())
        })
    }

    fn data_aggiornamento(&self) -> StoreFuture<'_, DateTime<Utc>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT valore FROM metadati WHERE chiave = $1")
                .bind(KEY_DATA_AGGIORNAMENTO)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotLoaded)?;
            parse_data_aggiornamento(&text(&row, "valore")?)
        })
    }

    fn persona<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Persona>>> {
        Box::pin(async move {
            let Some(row) = sqlx::query(concat!(
                "SELECT codice_fiscale, cognome, nome, sesso, data_nascita, comune_nascita, \
                 codice_catastale_nascita, data_decesso, ",
                data_aggiornamento_column!(),
                " FROM persone WHERE codice_fiscale = $1"
            ))
            .bind(cf.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?
            else {
                return Ok(None);
            };
            let sesso: Sesso = text(&row, "sesso")?
                .parse()
                .map_err(|_| StoreError::Corrupt("persone.sesso is not M or F".into()))?;
            let updated = data_aggiornamento(&row)?;
            Ok(dated(
                Persona {
                    codice_fiscale: text(&row, "codice_fiscale")?,
                    cognome: text(&row, "cognome")?,
                    nome: text(&row, "nome")?,
                    sesso,
                    data_nascita: date(&text(&row, "data_nascita")?, "persone.data_nascita")?,
                    comune_nascita: text(&row, "comune_nascita")?,
                    codice_catastale_nascita: text(&row, "codice_catastale_nascita")?,
                    data_decesso: opt_date(
                        opt_text(&row, "data_decesso")?,
                        "persone.data_decesso",
                    )?,
                },
                updated,
            ))
        })
    }

    fn residenza<'a>(
        &'a self,
        cf: &'a CodiceFiscale,
    ) -> StoreFuture<'a, Option<Dated<StatoResidenza>>> {
        Box::pin(async move {
            let Some(row) = sqlx::query(concat!(
                "SELECT p.data_decesso, r.dug, r.toponimo, r.civico, r.cap, r.codice_istat_comune, \
                 r.data_decorrenza, ",
                data_aggiornamento_column!(),
                " FROM persone p LEFT JOIN residenze r \
                 ON r.codice_fiscale = p.codice_fiscale WHERE p.codice_fiscale = $1"
            ))
            .bind(cf.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?
            else {
                return Ok(None);
            };
            let deceased = opt_text(&row, "data_decesso")?.is_some();
            let decorrenza = opt_text(&row, "data_decorrenza")?;
            let residenza = match decorrenza {
                Some(d) if !deceased => Some(Residenza {
                    indirizzo: indirizzo(&row)?,
                    data_decorrenza: date(&d, "residenze.data_decorrenza")?,
                }),
                _ => None,
            };
            Ok(dated(
                StatoResidenza { residenza },
                data_aggiornamento(&row)?,
            ))
        })
    }

    fn famiglia<'a>(&'a self, cf: &'a CodiceFiscale) -> StoreFuture<'a, Option<Dated<Famiglia>>> {
        Box::pin(async move {
            let rows = sqlx::query(concat!(
                "SELECT m.id_famiglia, m.codice_fiscale, m.cognome, m.nome, \
                 m.relazione_intestatario, ",
                data_aggiornamento_column!(),
                " FROM persone p JOIN persone m ON m.id_famiglia = p.id_famiglia \
                 WHERE p.codice_fiscale = $1 AND p.data_decesso IS NULL AND m.data_decesso IS NULL \
                 ORDER BY m.ordine_famiglia, m.codice_fiscale LIMIT $2"
            ))
            .bind(cf.as_str().to_owned())
            .bind(MAX_COMPONENTI)
            .fetch_all(&self.pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let id_famiglia = text(first, "id_famiglia")?;
            let updated = data_aggiornamento(first)?;
            let componenti = rows
                .iter()
                .map(|row| {
                    let code = opt_text(row, "relazione_intestatario")?.unwrap_or_default();
                    Ok(Componente {
                        codice_fiscale: text(row, "codice_fiscale")?,
                        cognome: text(row, "cognome")?,
                        nome: text(row, "nome")?,
                        relazione: Relazione::from_code(&code).ok_or_else(|| {
                            StoreError::Corrupt(
                                "persone.relazione_intestatario is not a known code".into(),
                            )
                        })?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(dated(
                Famiglia {
                    id_famiglia,
                    componenti,
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
            let rows = sqlx::query(
                "SELECT foglio, particella, subalterno, categoria, rendita_centesimi, quota_centesimi \
                 FROM imu_immobili WHERE identificativo = $1 AND anno_inizio <= $2 \
                 AND (anno_fine IS NULL OR anno_fine >= $2) \
                 ORDER BY foglio, particella, subalterno LIMIT $3",
            )
            .bind(s.as_str().to_owned())
            .bind(anno)
            .bind(MAX_IMMOBILI)
            .fetch_all(&self.pool)
            .await?;
            let immobili = rows
                .iter()
                .map(|row| {
                    let sub = text(row, "subalterno")?;
                    Ok(Immobile {
                        foglio: text(row, "foglio")?,
                        particella: text(row, "particella")?,
                        subalterno: (!sub.is_empty()).then_some(sub),
                        categoria: text(row, "categoria")?,
                        rendita: Importo(int(row, "rendita_centesimi")?),
                        quota: Percentuale(int(row, "quota_centesimi")?),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let totals = sqlx::query(
                "SELECT dovuto_centesimi, versato_centesimi FROM imu_posizioni \
                 WHERE identificativo = $1 AND anno = $2",
            )
            .bind(s.as_str().to_owned())
            .bind(anno)
            .fetch_optional(&self.pool)
            .await?;
            let (dovuto, versato) = match totals {
                Some(row) => (
                    int(&row, "dovuto_centesimi")?,
                    int(&row, "versato_centesimi")?,
                ),
                None => (0, 0),
            };
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
            let rows = sqlx::query(
                "SELECT dug, toponimo, civico, cap, codice_istat_comune, superficie_mq, occupanti, \
                 categoria FROM tari_utenze WHERE identificativo = $1 AND anno_inizio <= $2 \
                 AND (anno_fine IS NULL OR anno_fine >= $2) ORDER BY progressivo LIMIT $3",
            )
            .bind(s.as_str().to_owned())
            .bind(anno)
            .bind(MAX_UTENZE)
            .fetch_all(&self.pool)
            .await?;
            let utenze = rows
                .iter()
                .map(|row| {
                    Ok(Utenza {
                        indirizzo: indirizzo(row)?,
                        superficie_mq: int(row, "superficie_mq")?,
                        occupanti: int(row, "occupanti")?,
                        categoria: text(row, "categoria")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let totals = sqlx::query(
                "SELECT importo_centesimi, pagato_centesimi FROM tari_posizioni \
                 WHERE identificativo = $1 AND anno = $2",
            )
            .bind(s.as_str().to_owned())
            .bind(anno)
            .fetch_optional(&self.pool)
            .await?;
            let (importo, pagato) = match totals {
                Some(row) => (
                    int(&row, "importo_centesimi")?,
                    int(&row, "pagato_centesimi")?,
                ),
                None => (0, 0),
            };
            let rate = sqlx::query(
                "SELECT rata, data_scadenza, importo_centesimi FROM tari_rate \
                 WHERE identificativo = $1 AND anno = $2 ORDER BY rata LIMIT $3",
            )
            .bind(s.as_str().to_owned())
            .bind(anno)
            .bind(MAX_SCADENZE)
            .fetch_all(&self.pool)
            .await?;
            let scadenze = rate
                .iter()
                .map(|row| {
                    Ok(Scadenza {
                        rata: int(row, "rata")?,
                        data_scadenza: date(
                            &text(row, "data_scadenza")?,
                            "tari_rate.data_scadenza",
                        )?,
                        importo: Importo(int(row, "importo_centesimi")?),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
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
            let rows = sqlx::query(
                "SELECT anno FROM imu_posizioni WHERE identificativo = $1 \
                 AND versato_centesimi < dovuto_centesimi \
                 UNION SELECT anno FROM tari_posizioni WHERE identificativo = $1 \
                 AND pagato_centesimi < importo_centesimi ORDER BY anno",
            )
            .bind(s.as_str().to_owned())
            .fetch_all(&self.pool)
            .await?;
            let anni = rows
                .iter()
                .map(|row| {
                    let anno = int(row, "anno")?;
                    u16::try_from(anno).map_err(|_| StoreError::Corrupt("anno out of range".into()))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
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
            let rows = sqlx::query(
                "SELECT iuv, tributo, importo_centesimi, data_pagamento FROM pagamenti \
                 WHERE identificativo = $1 AND anno = $2 ORDER BY data_pagamento, iuv LIMIT $3",
            )
            .bind(s.as_str().to_owned())
            .bind(i64::from(anno.get()))
            .bind(MAX_PAGAMENTI)
            .fetch_all(&self.pool)
            .await?;
            let pagamenti = rows
                .iter()
                .map(|row| {
                    Ok(Pagamento {
                        iuv: text(row, "iuv")?,
                        tributo: Tributo::from_code(&text(row, "tributo")?).ok_or_else(|| {
                            StoreError::Corrupt("pagamenti.tributo is not IMU or TARI".into())
                        })?,
                        importo: Importo(int(row, "importo_centesimi")?),
                        data: date(&text(row, "data_pagamento")?, "pagamenti.data_pagamento")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(dated(pagamenti, updated))
        })
    }
}
