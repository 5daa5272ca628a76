//! How the voucher client behaves when PDND misbehaves, against a token endpoint whose answers
//! the test scripts: 429 with Retry-After then 500 then 200 is waited out as told and counted;
//! a renewal failing keeps the still-valid voucher in use; down with a cached voucher the
//! proxy keeps working, down with none it answers 503 problem+json.

use e2e::{ScriptedTokenEndpoint, Step};
use gateway::pdnd::client_assertion::ClientAssertionBuilder;
use gateway::pdnd::jwk::RsaPrivateKey;
use gateway::pdnd_client::token_client::TokenClient;
use gateway::pdnd_client::voucher_cache::{
    CachePolicy, ManualClock, RetryPolicy, VoucherCache, VoucherFetchError, VoucherSpec,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spec() -> VoucherSpec {
    VoucherSpec {
        builder: ClientAssertionBuilder {
            client_id: "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into(),
            audience: "auth.dev.interop.local/client-assertion".into(),
            purpose_id: Some("2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01".into()),
            digest: None,
            lifetime_secs: 300,
        },
        key: Arc::new(RsaPrivateKey::generate().expect("key")),
        dpop: None,
    }
}

fn policy(max_attempts: u32, max_elapsed_ms: u64) -> CachePolicy {
    CachePolicy {
        renew_margin_fraction: 0.2,
        retry: RetryPolicy {
            max_attempts,
            max_elapsed: Duration::from_millis(max_elapsed_ms),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        },
    }
}

fn cache(
    endpoint: &ScriptedTokenEndpoint,
    clock: Arc<ManualClock>,
    p: CachePolicy,
) -> Arc<VoucherCache> {
    VoucherCache::new(
        TokenClient::new(reqwest::Client::new(), endpoint.url.clone()),
        clock,
        p,
    )
}

#[tokio::test]
async fn waits_as_told_then_succeeds() {
    let _alone = e2e::exclusive().await;
    let endpoint = ScriptedTokenEndpoint::start(
        vec![
            Step::Fail {
                status: 429,
                retry_after: Some("1".into()),
            },
            Step::Fail {
                status: 500,
                retry_after: None,
            },
        ],
        Step::Token { expires_in: 600 },
        None,
    )
    .await;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let cache = cache(&endpoint, clock.clone(), policy(4, 5_000));
    let spec = spec();
    let started = Instant::now();
    let voucher = cache.get(&spec).await.expect("third attempt succeeds");
    let elapsed = started.elapsed();
    assert_eq!(endpoint.requests(), 3, "429, 500, 200");
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: {elapsed:?}"
    );
    assert!(voucher.access_token.starts_with("scripted."));
    assert_eq!(voucher.scheme, "Bearer");
    assert_eq!(voucher.expires_at, 1_800_000_600);
    // Cached from now on.
    assert_eq!(cache.get(&spec).await.expect("cached"), voucher);
    assert_eq!(endpoint.requests(), 3);
}

#[tokio::test]
async fn retry_budget_is_bounded_and_shared_by_waiters() {
    let _alone = e2e::exclusive().await;
    // Always 503: 3 attempts, then every waiter gets the same error, not a flight of its own.
    let endpoint = ScriptedTokenEndpoint::start(
        vec![],
        Step::Fail {
            status: 503,
            retry_after: None,
        },
        None,
    )
    .await;
    let cache = cache(
        &endpoint,
        Arc::new(ManualClock::new(1_800_000_000)),
        policy(3, 5_000),
    );
    let spec = spec();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let cache = cache.clone();
        let spec = spec.clone();
        calls.spawn(async move { cache.get(&spec).await });
    }
    while let Some(r) = calls.join_next().await {
        match r.expect("join") {
            Err(VoucherFetchError::Unavailable { attempts, .. }) => assert_eq!(attempts, 3),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(
        endpoint.requests(),
        3,
        "one flight of 3 attempts for 20 callers"
    );

    // A Retry-After longer than the remaining budget ends the retries at once.
    endpoint.set_default(Step::Fail {
        status: 429,
        retry_after: Some("30".into()),
    });
    let before = endpoint.requests();
    let started = Instant::now();
    let err = cache.get(&spec).await.expect_err("gives up");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(endpoint.requests() - before, 1);
    assert!(
        matches!(
            err,
            VoucherFetchError::Unavailable {
                retry_after: Some(30),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn failed_renewal_keeps_the_valid_voucher() {
    let _alone = e2e::exclusive().await;
    let endpoint =
        ScriptedTokenEndpoint::start(vec![], Step::Token { expires_in: 100 }, None).await;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let cache = cache(&endpoint, clock.clone(), policy(2, 1_000));
    let spec = spec();
    let first = cache.get(&spec).await.expect("voucher");
    assert_eq!(first.renew_at, 1_800_000_080);
    endpoint.set_default(Step::Fail {
        status: 500,
        retry_after: None,
    });
    clock.set(first.renew_at + 5);
    for _ in 0..10 {
        assert_eq!(cache.get(&spec).await.expect("still valid"), first);
    }
    for _ in 0..100 {
        if endpoint.requests() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        endpoint.requests(),
        3,
        "one background renewal of two attempts"
    );
    assert_eq!(cache.get(&spec).await.expect("still valid"), first);
    // Expired and PDND still failing: an error.
    clock.set(first.expires_at);
    let err = cache.get(&spec).await.expect_err("nothing valid");
    assert!(
        matches!(err, VoucherFetchError::Unavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn proxy_with_token_endpoint_down() {
    let _alone = e2e::exclusive().await;
    let h = e2e::Harness::start().await;
    let endpoint = ScriptedTokenEndpoint::start(
        vec![],
        Step::Forward,
        Some(h.env.config.pdnd.token_endpoint.clone()),
    )
    .await;
    let consumer = h
        .start_consumer(|c| {
            c.pdnd.token_endpoint = endpoint.url.clone();
            c.voucher_client.max_attempts = 2;
            c.voucher_client.max_retry_ms = 500;
            c.voucher_client.initial_backoff_ms = 50;
            c.voucher_client.max_backoff_ms = 100;
            c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")];
        })
        .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });
    let resp = consumer.call("anagrafe-remota", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(endpoint.requests(), 1);

    // Token endpoint gone, voucher cached: calls keep succeeding.
    endpoint.stop().await;
    for _ in 0..5 {
        let resp = consumer.call("anagrafe-remota", "residenza", &body).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    consumer.stop().await;

    // A gateway with no voucher yet and the endpoint down: 503 problem+json saying so.
    let cold = h
        .start_consumer(|c| {
            c.pdnd.token_endpoint = endpoint.url.clone();
            c.voucher_client.max_attempts = 2;
            c.voucher_client.max_retry_ms = 500;
            c.voucher_client.initial_backoff_ms = 50;
            c.voucher_client.max_backoff_ms = 100;
            c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")];
        })
        .await;
    let resp = cold.call("anagrafe-remota", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(resp.headers().get("retry-after").is_some());
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("PDND is unreachable"),
        "{problem}"
    );
    cold.stop().await;
}
