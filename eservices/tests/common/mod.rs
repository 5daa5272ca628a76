//! Test harness: a seeded store on each engine and the e-service routes on a real listener.

#![allow(dead_code)]

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use eservices::store::{seed, SeedSummary, SqlStore};
use eservices::{json_config, route, CacheConfig, DataSubject, Eservice, EserviceState};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::sync::Arc;
use test_support::TestDb;

/// Residents the HTTP suites seed (large enough to hold every kind of subject).
pub const RESIDENTS: u32 = 1_500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for the suites: from `PDNDGW_TEST_POSTGRES_URL`. Unset in CI is a
/// failure (CI must never silently skip PostgreSQL); unset locally is a visible skip.
pub fn postgres_url() -> Option<String> {
    test_support::postgres_url()
}

/// A fresh, empty database for one test: a new SQLite file (removed when the value drops), or a
/// new PostgreSQL schema.
pub async fn fresh_url(db: Db) -> Option<TestDb> {
    match db {
        Db::Sqlite => Some(TestDb::sqlite("eservices-test")),
        Db::Postgres => TestDb::postgres().await,
    }
}

/// A migrated, seeded store and a separate pool to read the tables independently.
pub struct SeededStore {
    pub url: String,
    /// Removes the SQLite file when the store is dropped.
    _db: TestDb,
    pub store: SqlStore,
    pub raw: AnyPool,
    pub summary: SeedSummary,
}

pub async fn seeded(db: Db, residents: u32) -> Option<SeededStore> {
    let db = fresh_url(db).await?;
    let url = db.url.clone();
    let store = SqlStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let summary = seed(&store, residents).await.expect("seed");
    let raw = AnyPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("independent pool");
    Some(SeededStore {
        url,
        _db: db,
        store,
        raw,
        summary,
    })
}

/// The routes on a real listener, as the gateway mounts them, plus a test-only middleware
/// that copies the `DataSubject` extension into an `x-test-data-subject` response header.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub seeded: SeededStore,
}

pub const SUBJECT_HEADER: &str = "x-test-data-subject";

pub async fn server(db: Db, cache: CacheConfig) -> Option<Server> {
    let seeded = seeded(db, RESIDENTS).await?;
    let state = EserviceState::new(Arc::new(seeded.store.clone()), cache);
    let http = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(json_config())
            .wrap_fn(|req, srv| {
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    let subject = res.request().extensions().get::<DataSubject>().cloned();
                    if let Some(DataSubject(s)) = subject {
                        res.headers_mut().insert(
                            HeaderName::from_static(SUBJECT_HEADER),
                            HeaderValue::from_str(&s).expect("identifiers are ASCII"),
                        );
                    }
                    Ok(res)
                }
            })
            .service(web::scope("/anagrafe/v1").configure(route::routes(Eservice::Anagrafe)))
            .service(web::scope("/tributi/v1").configure(route::routes(Eservice::Tributi)))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = http.addrs()[0];
    actix_web::rt::spawn(http.run());
    Some(Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        seeded,
    })
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub x_cache: Option<String>,
    pub subject: Option<String>,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("the answer is JSON")
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .json()
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

impl Server {
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.expect("request");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = res.status().as_u16();
        let content_type = header("content-type").unwrap_or_default();
        // RFC 9211 `Cache-Status: pdnd-gateway; hit | fwd=miss`, as `hit` / `miss`.
        let x_cache = header("cache-status").map(|v| match v.as_str() {
            "pdnd-gateway; hit" => "hit".to_owned(),
            "pdnd-gateway; fwd=miss" => "miss".to_owned(),
            other => format!("unexpected Cache-Status `{other}`"),
        });
        let subject = header(SUBJECT_HEADER);
        let bytes = res.bytes().await.expect("body").to_vec();
        Answer {
            status,
            content_type,
            x_cache,
            subject,
            bytes,
        }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.post_raw(
            path,
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    pub fn raw(&self) -> &AnyPool {
        &self.seeded.raw
    }
}

/// First column of the first row of `sql` as text (the test's own view of the tables).
pub async fn one_text(pool: &AnyPool, sql: &str) -> String {
    let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.try_get::<String, _>(0).expect("a text column")
}

pub fn keys(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Euro from cents, as the answers carry it.
pub fn euro(cents: i64) -> serde_json::Value {
    serde_json::json!(cents as f64 / 100.0)
}

/// Runs a suite on one engine; `None` = skipped (no PostgreSQL configured, locally).
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(super::common::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if super::common::postgres_url().is_some() {
                        super::$name(super::common::Db::Postgres).await;
                    }
                }
            )*
        }
    };
}
