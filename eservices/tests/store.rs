//! The store on each engine: migrations, emptiness, seed determinism and validity, and how
//! lookups treat data that breaks the schema contract.

mod common;

use chrono::{DateTime, Utc};
use common::{fresh_url, seeded, Db};
use eservices::store::{seed, Dated, Engine, SqlStore, Store, StoreError};
use eservices::wire::Anno;
use eservices::{CodiceFiscale, PartitaIva, Soggetto};
use sqlx::{AnyPool, AssertSqlSafe, Row};

/// Every table of the sample as sorted text lines (metadati excluded: it holds the seed time).
async fn dump(pool: &AnyPool) -> Vec<String> {
    let tables: &[(&str, &str)] = &[
        ("persone", "codice_fiscale || '|' || cognome || '|' || nome || '|' || sesso || '|' || data_nascita || '|' || comune_nascita || '|' || codice_catastale_nascita || '|' || COALESCE(data_decesso, '') || '|' || COALESCE(id_famiglia, '') || '|' || COALESCE(relazione_intestatario, '') || '|' || COALESCE(CAST(ordine_famiglia AS TEXT), '')"),
        ("residenze", "codice_fiscale || '|' || dug || '|' || toponimo || '|' || civico || '|' || cap || '|' || codice_istat_comune || '|' || data_decorrenza"),
        ("contribuenti", "identificativo || '|' || tipo"),
        ("imu_immobili", "identificativo || '|' || foglio || '|' || particella || '|' || subalterno || '|' || categoria || '|' || CAST(rendita_centesimi AS TEXT) || '|' || CAST(quota_centesimi AS TEXT) || '|' || CAST(anno_inizio AS TEXT) || '|' || COALESCE(CAST(anno_fine AS TEXT), '')"),
        ("imu_posizioni", "identificativo || '|' || CAST(anno AS TEXT) || '|' || CAST(dovuto_centesimi AS TEXT) || '|' || CAST(versato_centesimi AS TEXT)"),
        ("tari_utenze", "identificativo || '|' || CAST(progressivo AS TEXT) || '|' || dug || '|' || toponimo || '|' || civico || '|' || cap || '|' || CAST(superficie_mq AS TEXT) || '|' || CAST(occupanti AS TEXT) || '|' || categoria || '|' || CAST(anno_inizio AS TEXT)"),
        ("tari_posizioni", "identificativo || '|' || CAST(anno AS TEXT) || '|' || CAST(importo_centesimi AS TEXT) || '|' || CAST(pagato_centesimi AS TEXT)"),
        ("tari_rate", "identificativo || '|' || CAST(anno AS TEXT) || '|' || CAST(rata AS TEXT) || '|' || data_scadenza || '|' || CAST(importo_centesimi AS TEXT)"),
        ("pagamenti", "iuv || '|' || identificativo || '|' || CAST(anno AS TEXT) || '|' || tributo || '|' || CAST(importo_centesimi AS TEXT) || '|' || data_pagamento"),
    ];
    let mut out = Vec::new();
    for (table, expr) in tables {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {expr} AS r FROM {table}")))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        let mut lines: Vec<String> = rows
            .iter()
            .map(|r| format!("{table}|{}", r.try_get::<String, _>(0).unwrap()))
            .collect();
        lines.sort();
        assert!(!lines.is_empty(), "{table} is empty");
        out.extend(lines);
    }
    out
}

async fn count(pool: &AnyPool, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

async fn migrations_and_emptiness(db: Db) {
    let Some(url) = fresh_url(db).await else {
        return;
    };
    let store = SqlStore::connect(&url).await.unwrap();
    assert_eq!(
        store.engine(),
        match db {
            Db::Sqlite => Engine::Sqlite,
            Db::Postgres => Engine::Postgres,
        }
    );
    store.ping().await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrating twice is a no-op");
    assert!(store.is_empty().await.unwrap());
    assert!(matches!(
        store.data_aggiornamento().await,
        Err(StoreError::NotLoaded)
    ));
    let summary = seed(&store, 200).await.unwrap();
    assert_eq!(summary.residents, 200);
    assert!(!store.is_empty().await.unwrap());
    assert_eq!(count(store.pool(), "persone").await, 200);
    // Re-seeding replaces, not appends.
    seed(&store, 120).await.unwrap();
    assert_eq!(count(store.pool(), "persone").await, 120);
}

async fn seed_is_deterministic_and_valid(db: Db) {
    let Some(a) = seeded(db, 2_000).await else {
        return;
    };
    let Some(b) = seeded(db, 2_000).await else {
        return;
    };
    let dump_a = dump(&a.raw).await;
    assert_eq!(dump_a, dump(&b.raw).await, "same N, same data");
    assert_eq!(a.summary.samples, b.summary.samples);

    // The other engine writes exactly the same rows.
    let other = match db {
        Db::Sqlite => None,
        Db::Postgres => seeded(Db::Sqlite, 2_000).await,
    };
    if let Some(other) = other {
        assert_eq!(
            dump_a,
            dump(&other.raw).await,
            "SQLite and PostgreSQL hold the same sample"
        );
    }

    // Every identifier is valid; omocodia happened; IUVs look like pagoPA ones.
    let cfs = sqlx::query("SELECT codice_fiscale FROM persone")
        .fetch_all(&a.raw)
        .await
        .unwrap();
    let mut omocodes = 0;
    for r in &cfs {
        let cf: String = r.try_get(0).unwrap();
        let parsed = CodiceFiscale::parse(&cf).unwrap_or_else(|e| panic!("{cf}: {e}"));
        if !parsed.as_str().as_bytes()[14].is_ascii_digit() {
            omocodes += 1;
        }
    }
    assert_eq!(cfs.len(), 2_000);
    assert!(omocodes > 0, "the sample has homonyms resolved by omocodia");
    let ids = sqlx::query("SELECT identificativo, tipo FROM contribuenti")
        .fetch_all(&a.raw)
        .await
        .unwrap();
    let mut companies = 0;
    for r in &ids {
        let id: String = r.try_get(0).unwrap();
        let tipo: String = r.try_get(1).unwrap();
        Soggetto::parse(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        if tipo == "PNF" {
            PartitaIva::parse(&id).unwrap();
            companies += 1;
        }
    }
    assert!(companies > 0);
    let iuvs = sqlx::query("SELECT iuv FROM pagamenti")
        .fetch_all(&a.raw)
        .await
        .unwrap();
    for r in &iuvs {
        let iuv: String = r.try_get(0).unwrap();
        assert_eq!(iuv.len(), 17, "{iuv}");
        let n: u64 = format!("3{}", &iuv[..15]).parse().unwrap();
        assert_eq!(iuv[15..].parse::<u64>().unwrap(), n % 93, "{iuv}");
    }
    assert!(count(&a.raw, "persone WHERE data_decesso IS NOT NULL").await > 0);

    // The samples exist and are what they say.
    assert!(a.summary.samples.len() >= 4, "{:?}", a.summary.samples);
    for s in &a.summary.samples {
        let subject = Soggetto::parse(&s.codice_fiscale).unwrap();
        if let Soggetto::CodiceFiscale(cf) = &subject {
            let p = a
                .store
                .persona(cf)
                .await
                .unwrap()
                .expect("sample is in persone")
                .value;
            assert_eq!(
                (p.cognome.as_str(), p.nome.as_str()),
                (s.cognome.as_str(), s.nome.as_str())
            );
        }
        assert!(!s.description.is_empty());
    }
    assert!(a
        .summary
        .samples
        .iter()
        .any(|s| s.description.contains("omocodia")));
}

async fn broken_rows_are_corrupt_not_panics(db: Db) {
    let Some(s) = seeded(db, 50).await else {
        return;
    };
    let cf = "BNCNNA90C47G702Y";
    let cf_valid = CodiceFiscale::parse(&format!(
        "{}{}",
        &cf[..15],
        eservices::codice_fiscale::compute_check_char(&cf[..15]).unwrap()
    ))
    .unwrap();
    sqlx::query(
        "INSERT INTO persone (codice_fiscale, cognome, nome, sesso, data_nascita, comune_nascita, \
         codice_catastale_nascita) VALUES ($1, 'BIANCHI', 'ANNA', 'X', '1990-13-45', 'PISA', 'G702')",
    )
    .bind(cf_valid.as_str().to_owned())
    .execute(&s.raw)
    .await
    .unwrap();
    let err = s.store.persona(&cf_valid).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(!err.is_unavailable());
    // Unknown subjects are None, not errors.
    let unknown = CodiceFiscale::parse("RSSMRA85T10A562S").unwrap();
    assert!(s.store.persona(&unknown).await.unwrap().is_none());
    assert!(s.store.famiglia(&unknown).await.unwrap().is_none());
}

/// The refresh time of every lookup, as its own statement read it: `None` when the store was
/// never loaded (so that a known subject is `NotLoaded`), else the text in `metadati`.
async fn times(
    store: &SqlStore,
    cf: &CodiceFiscale,
    soggetto: &Soggetto,
) -> Vec<Result<Option<DateTime<Utc>>, StoreError>> {
    fn time<T>(
        lookup: Result<Option<Dated<T>>, StoreError>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        lookup.map(|d| d.map(|d| d.data_aggiornamento))
    }
    let anno = Anno::new(2024).unwrap();
    vec![
        time(store.persona(cf).await),
        time(store.residenza(cf).await),
        time(store.famiglia(cf).await),
        time(store.posizione_imu(soggetto, anno).await),
        time(store.posizione_tari(soggetto, anno).await),
        time(store.anni_con_debito(soggetto).await),
        time(store.pagamenti(soggetto, anno).await),
    ]
}

async fn first_text(pool: &AnyPool, sql: &'static str) -> String {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get::<String, _>(0)
        .unwrap()
}

async fn set_data_aggiornamento(pool: &AnyPool, valore: &str) {
    sqlx::query("UPDATE metadati SET valore = $1 WHERE chiave = 'data_aggiornamento'")
        .bind(valore.to_owned())
        .execute(pool)
        .await
        .unwrap();
}

async fn every_lookup_carries_the_refresh_time_it_read(db: Db) {
    let Some(s) = seeded(db, 200).await else {
        return;
    };
    // A living resident in a family, and a contribuente: every lookup finds its subject.
    let cf = CodiceFiscale::parse(
        &first_text(
            &s.raw,
            "SELECT p.codice_fiscale FROM persone p JOIN residenze r \
             ON r.codice_fiscale = p.codice_fiscale \
             WHERE p.id_famiglia IS NOT NULL AND p.data_decesso IS NULL LIMIT 1",
        )
        .await,
    )
    .unwrap();
    let soggetto = Soggetto::parse(
        &first_text(&s.raw, "SELECT identificativo FROM contribuenti LIMIT 1").await,
    )
    .unwrap();
    let seeded_at = DateTime::parse_from_rfc3339(
        &first_text(
            &s.raw,
            "SELECT valore FROM metadati WHERE chiave = 'data_aggiornamento'",
        )
        .await,
    )
    .unwrap()
    .with_timezone(&Utc);
    for t in times(&s.store, &cf, &soggetto).await {
        assert_eq!(t.unwrap(), Some(seeded_at));
    }

    // A refresh moves every answer's time at once: it is read, not remembered.
    set_data_aggiornamento(&s.raw, "2031-02-03T04:05:06+01:00").await;
    let refreshed = DateTime::parse_from_rfc3339("2031-02-03T03:05:06Z")
        .unwrap()
        .with_timezone(&Utc);
    for t in times(&s.store, &cf, &soggetto).await {
        assert_eq!(t.unwrap(), Some(refreshed));
    }

    // A time that is not RFC 3339 breaks the contract: Corrupt (500), not a panic or a guess.
    set_data_aggiornamento(&s.raw, "ieri sera").await;
    for t in times(&s.store, &cf, &soggetto).await {
        let err = t.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    // Never loaded: a known subject cannot be answered (503), an unknown one is still unknown.
    sqlx::query("DELETE FROM metadati")
        .execute(&s.raw)
        .await
        .unwrap();
    for t in times(&s.store, &cf, &soggetto).await {
        let err = t.unwrap_err();
        assert!(matches!(err, StoreError::NotLoaded), "{err:?}");
        assert!(err.is_unavailable());
    }
    let unknown_cf = CodiceFiscale::parse("RSSMRA85T10A562S").unwrap();
    let unknown = Soggetto::parse("RSSMRA85T10A562S").unwrap();
    for t in times(&s.store, &unknown_cf, &unknown).await {
        assert_eq!(t.unwrap(), None);
    }
}

on_both_engines!(
    migrations_and_emptiness,
    seed_is_deterministic_and_valid,
    broken_rows_are_corrupt_not_panics,
    every_lookup_carries_the_refresh_time_it_read,
);

#[actix_web::test]
async fn unsupported_urls_are_rejected() {
    assert!(matches!(
        SqlStore::connect("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}
