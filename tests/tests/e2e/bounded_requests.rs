//! Nothing a request waits on is unbounded: a hung audit database gives 503 within the commit
//! timeout (and not a hung request); requests refused before the voucher check do not wait on
//! the audit commit at all, yet are still recorded; a body that trickles in is cut off with 408.

use e2e::{raw_request, Harness};
use gateway::provider::audit::{AuditQuery, AuditStore};
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_hung_audit_database_answers_503_and_unauthenticated_refusals_do_not_wait() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| {
        c.audit.commit_timeout_ms = 300;
    })
    .await;
    let cf = h.sample_cf();
    let token = h
        .voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        .await;
    let body = json!({"codiceFiscale": cf});
    let ok = h.post("/anagrafe/v1/residenza", Some(&token), &body).await;
    assert_eq!(ok.status(), 200);

    // Hold the database's write lock from another connection: commits cannot finish.
    let mut blocker = sqlx::SqliteConnection::connect(&h.env.config.audit.url)
        .await
        .expect("audit database");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .expect("lock");

    let served = h.post("/anagrafe/v1/residenza", Some(&token), &body).await;
    assert_eq!(served.status(), 503);
    assert_eq!(
        e2e::header(&served, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let text = served.text().await.unwrap_or_default();
    assert!(!text.contains(&cf), "no data without its record: {text}");

    // No voucher: refused by the voucher stage, recorded best effort, not held by the lock.
    let refused = h
        .http
        .post(h.public("/anagrafe/v1/residenza"))
        .header("x-request-id", "refused-while-locked")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        refused.status(),
        401,
        "not a 503: it did not wait on the commit"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("unlock");
    drop(blocker);

    // Served again, and the refusal's record was written after all.
    let mut back = false;
    for _ in 0..40 {
        let r = h.post("/anagrafe/v1/residenza", Some(&token), &body).await;
        if r.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "the gateway did not serve again after the lock was released"
    );
    let store = AuditStore::connect(&h.env.config.audit.url)
        .await
        .expect("audit store");
    let mut found = Vec::new();
    for _ in 0..40 {
        found = store
            .query(&AuditQuery {
                request_id: Some("refused-while-locked".into()),
                ..Default::default()
            })
            .await
            .expect("query");
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "the refused request's record");
    assert_eq!(found[0].status, 401);
    assert_eq!(found[0].operation.as_deref(), Some("residenza"));
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_with_408() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| {
        c.server.body_read_timeout_ms = 500;
    })
    .await;
    let token = h
        .voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        .await;
    let addr = h.env.running.public;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /anagrafe/v1/residenza HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"codice"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // ... and nothing more. The answer must come without the rest of the body.
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the gateway waited for the body with no deadline"
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    // A body that arrives in time is served as usual.
    let body = json!({"codiceFiscale": h.sample_cf()}).to_string();
    let auth = format!("Bearer {token}");
    let r = raw_request(
        addr,
        "POST",
        "/anagrafe/v1/residenza",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
