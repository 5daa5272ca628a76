//! The seed's guard on each engine: which databases [`inspect`] calls empty, the seed's own,
//! or foreign, and that inspecting changes nothing.

mod common;

use common::{fresh_url, Db};
use eservices::store::seed_guard::{inspect, Ownership};
use eservices::store::{seed, SqlStore};
use sqlx::{AnyPool, AssertSqlSafe};

async fn exec(pool: &AnyPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn foreign(ownership: Ownership) -> Vec<String> {
    match ownership {
        Ownership::Foreign { tables } => tables,
        other => panic!("not foreign: {other:?}"),
    }
}

async fn the_seed_recognises_only_its_own_databases(db: Db) {
    let Some(url) = fresh_url(db).await else {
        return;
    };
    assert_eq!(inspect(&url).await.unwrap(), Ownership::Empty);
    let store = SqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        inspect(&url).await.unwrap(),
        Ownership::Empty,
        "a migrated schema holds no data"
    );
    seed(&store, 30).await.unwrap();
    assert_eq!(inspect(&url).await.unwrap(), Ownership::Seeded);
    assert_eq!(
        inspect(&url).await.unwrap(),
        Ownership::Seeded,
        "inspecting twice"
    );
    seed(&store, 20).await.unwrap();
    assert_eq!(inspect(&url).await.unwrap(), Ownership::Seeded);

    // A person the seed did not write.
    exec(
        store.pool(),
        "CREATE TEMP TABLE intruso AS SELECT * FROM persone LIMIT 1; \
         UPDATE intruso SET codice_fiscale = 'RSSMRA80A01H501U'; \
         INSERT INTO persone SELECT * FROM intruso;",
    )
    .await;
    assert!(foreign(inspect(&url).await.unwrap()).contains(&"persone".to_owned()));

    // The same catalogue without the marker: a register filled by the comune's software.
    seed(&store, 20).await.unwrap();
    exec(store.pool(), "DROP TABLE seed_marker").await;
    assert!(foreign(inspect(&url).await.unwrap()).contains(&"residenze".to_owned()));

    // Rows in a table the seed knows nothing of, even next to a marked sample.
    seed(&store, 20).await.unwrap();
    exec(
        store.pool(),
        "CREATE TABLE protocollo (oggetto TEXT); INSERT INTO protocollo VALUES ('delibera');",
    )
    .await;
    let tables = foreign(inspect(&url).await.unwrap());
    assert!(tables.contains(&"protocollo".to_owned()), "{tables:?}");
}

on_both_engines!(the_seed_recognises_only_its_own_databases);
