//! The audit trail on PostgreSQL, and what happens when it goes away: no data is served that
//! could not be recorded (503 problem+json, /status not ok), and service resumes by itself
//! when the database is back.

use e2e::{Harness, Postgres};
use gateway::dev::sample;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn audit_on_postgres_outage_gives_503_then_recovers() {
    let _alone = e2e::exclusive().await;
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url.clone();
    let h = Harness::start_with(move |c| c.audit.url = url).await;
    let cf = h.sample_cf();
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let body = json!({"codiceFiscale": cf});

    let resp = h
        .post("/anagrafe/v1/residenza", Some(&voucher), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = e2e::header(&resp, "x-request-id")
        .as_deref()
        .expect("request id")
        .to_owned();
    // The record is in PostgreSQL.
    let store = gateway::provider::audit::AuditStore::connect(&pg.url)
        .await
        .expect("audit store");
    let q = gateway::provider::audit::AuditQuery {
        request_id: Some(id),
        ..Default::default()
    };
    assert_eq!(store.query(&q).await.expect("query").len(), 1);
    store.close().await;

    pg.stop();
    let resp = h
        .post("/anagrafe/v1/residenza", Some(&voucher), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let text = resp.text().await.expect("body");
    assert!(!text.contains("residente"), "no data in a 503: {text}");
    let status = h
        .http
        .get(h.public("/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(status.status(), StatusCode::SERVICE_UNAVAILABLE);

    pg.restart();
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let resp = h
            .post("/anagrafe/v1/residenza", Some(&voucher), &body)
            .await;
        if resp.status() == StatusCode::OK {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "not serving again within 10 s of the database coming back"
    );
    let status = h
        .http
        .get(h.public("/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(status.status(), StatusCode::OK);
}

#[tokio::test]
async fn audit_queries_on_postgres_match_sqlite() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url.clone();
    let h = Harness::start_with(move |c| c.audit.url = url).await;
    let cf = h.sample_cf();
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    for _ in 0..3 {
        let resp = h
            .post(
                "/anagrafe/v1/residenza",
                Some(&voucher),
                &json!({"codiceFiscale": cf}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some("bad.token.here"),
            &json!({"codiceFiscale": cf}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let store = gateway::provider::audit::AuditStore::connect(&pg.url)
        .await
        .expect("audit store");
    let hasher =
        gateway::provider::audit::SubjectHasher::new(h.env.config.audit.hmac_secret.as_bytes())
            .expect("hasher");
    let filters = gateway::cli::audit::Filters {
        codice_fiscale: Some(cf.to_lowercase()),
        ..Default::default()
    };
    let about = gateway::cli::audit::query(&store, &hasher, &filters)
        .await
        .expect("query");
    assert_eq!(about.len(), 3, "{about:?}");
    assert!(about
        .iter()
        .all(|r| r.status == 200
            && r.purpose_id.as_deref() == Some(sample::ANAGRAFE_FULL.purpose_id)));
    // The refused request is recorded too, without consumer data.
    let all = store.query(&Default::default()).await.expect("query");
    let refused: Vec<_> = all.iter().filter(|r| r.status == 401).collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].client_id.is_none());
}

#[tokio::test]
async fn a_hung_postgres_gives_503_within_the_commit_timeout_not_a_hung_request() {
    let _alone = e2e::exclusive().await;
    use sqlx::Connection;
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url.clone();
    let h = Harness::start_with(move |c| {
        c.audit.url = url;
        c.audit.commit_timeout_ms = 500;
    })
    .await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let body = json!({"codiceFiscale": h.sample_cf()});
    let resp = h
        .post("/anagrafe/v1/residenza", Some(&voucher), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A lock nobody releases: PostgreSQL waits for ever (no busy timeout as in SQLite).
    let mut blocker = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("lock");
    // The client gives up after 30 s; the gateway must answer long before.
    let resp = h
        .http
        .post(h.public("/anagrafe/v1/residenza"))
        .bearer_auth(&voucher)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hung request");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = resp.text().await.expect("body");
    assert!(!text.contains("residente"), "no data in a 503: {text}");

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("unlock");
    drop(blocker);
    let mut recovered = false;
    for _ in 0..60 {
        let r = h
            .post("/anagrafe/v1/residenza", Some(&voucher), &body)
            .await;
        if r.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "service did not resume after the lock was released"
    );
}
