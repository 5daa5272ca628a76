//! The gateway's JWKS cache against the real local authority, over real HTTP: a PDND outage
//! costs no request (stale keys keep serving, the refresh backs off), a flood of unknown kids
//! is not a flood towards PDND, and only a gateway that never loaded keys answers 503.

use e2e::{now, sign_rs256, voucher_header, Harness};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const PATH: &str = "/anagrafe/v1/residenza";

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_down_and_ttl_passed_every_request_still_served() {
    let _alone = e2e::exclusive().await;
    // TTL and the first back-off of one second, so the run spans several refresh attempts.
    let h = Harness::start_with(|c| {
        c.pdnd.jwks_cache_ttl_secs = 1;
        c.pdnd.jwks_min_refetch_interval_secs = 1;
        c.pdnd.jwks_max_backoff_secs = 4;
        c.pdnd.jwks_fetch_timeout_ms = 500;
        // What is measured is the voucher stage: spare the shared CPU the response signatures.
        c.eservices.anagrafe.modi.sign_responses = false;
    })
    .await;
    let voucher = h
        .voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        .await;
    let cf = h.sample_cf();
    let body = json!({ "codiceFiscale": cf });
    let first = h.post(PATH, Some(&voucher), &body).await;
    assert_eq!(first.status(), StatusCode::OK);

    let jwks = h.jwks();
    assert!(jwks.is_loaded());
    h.env.running.stop_authority().await;
    // The keys go stale and a refresh fails against the stopped authority.
    let loaded_at = jwks.fetch_count();
    wait_for("a failed refresh", || jwks.fetch_count() > loaded_at).await;

    let before = jwks.fetch_count();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let http = h.http.clone();
        let url = h.public(PATH);
        let voucher = voucher.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(voucher)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let status = task.await.expect("task").expect("answered");
        *statuses.entry(status.as_u16()).or_insert(0u32) += 1;
    }
    let elapsed = started.elapsed();
    let fetched = jwks.fetch_count() - before;
    println!("1000 requests in {elapsed:?} during the outage: {statuses:?}; JWKS fetch attempts: {fetched}");
    assert_eq!(
        statuses,
        [(200, 1_000)].into_iter().collect(),
        "every request answered 200 with the cached keys"
    );
    // The back-off is at least the minimum interval (1 s) between the end of one attempt and
    // the start of the next: at most one fetch per second, plus the one possibly under way.
    let bound = elapsed.as_secs() + 1;
    assert!(
        fetched <= bound,
        "{fetched} JWKS fetches in {elapsed:?} (bound {bound})"
    );
}

#[tokio::test]
async fn unknown_kid_flood_is_not_a_flood_towards_pdnd() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| {
        c.pdnd.jwks_min_refetch_interval_secs = 2;
        c.pdnd.jwks_max_backoff_secs = 2;
    })
    .await;
    let t = now();
    let claims = h.good_claims(t);
    let foreign = gateway::pdnd::jwk::RsaPrivateKey::generate().expect("key");
    let forged = sign_rs256(voucher_header(&foreign.kid()), &claims, &foreign.to_pem());
    let good = sign_rs256(
        voucher_header(&h.authority_kid()),
        &claims,
        &h.authority_key_pem(),
    );
    let cf = h.sample_cf();
    let body = json!({ "codiceFiscale": cf });
    // Loaded at start.
    let ok = h.post(PATH, Some(&good), &body).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let jwks = h.jwks();
    let before = jwks.fetch_count();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let http = h.http.clone();
        let url = h.public(PATH);
        let forged = forged.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(forged)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.expect("task").expect("answered"),
            StatusCode::UNAUTHORIZED
        );
    }
    let elapsed = started.elapsed();
    let fetched = jwks.fetch_count() - before;
    let bound = elapsed.as_secs() / 2 + 1;
    assert!(
        fetched <= bound,
        "{fetched} fetches for 300 unknown kids in {elapsed:?} (bound {bound})"
    );
    // The known key still works.
    let ok = h.post(PATH, Some(&good), &body).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_gateway_that_never_loaded_keys_answers_503() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    let voucher = h
        .voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        .await;
    // A second gateway whose JWKS URL answers nothing (port 9, discard).
    let blind = h
        .start_consumer(|c| {
            c.pdnd.jwks_url = "http://127.0.0.1:9/.well-known/jwks.json".into();
        })
        .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });
    for _ in 0..3 {
        let resp = blind
            .http
            .post(blind.public(PATH))
            .bearer_auth(&voucher)
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e2e::header(&resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    // The same voucher at the gateway that has keys.
    let resp = h.post(PATH, Some(&voucher), &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
