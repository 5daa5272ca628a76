//! One voucher request per purpose at a time, counted where it lands: at the dev authority's
//! token endpoint. A cold cache under 1,000 concurrent proxy calls costs exactly one request;
//! renewal ahead of expiry costs exactly one more, whether driven by a moved clock or by a
//! short real voucher lifetime.

use e2e::Harness;
use gateway::dev::{sample, SAMPLE_FRUIZIONE};
use gateway::pdnd::client_assertion::ClientAssertionBuilder;
use gateway::pdnd::jwk::RsaPrivateKey;
use gateway::pdnd_client::token_client::TokenClient;
use gateway::pdnd_client::voucher_cache::{CachePolicy, ManualClock, VoucherCache, VoucherSpec};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_calls_one_token_request() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| {
        let mut f = gateway::dev::sample_fruizione(c);
        f.max_concurrency = 2_000;
        c.fruizioni.push(f);
    })
    .await;
    assert_eq!(h.token_requests(), 0, "nothing asked before the first call");
    let url = h.internal(&format!("/fruizioni/{SAMPLE_FRUIZIONE}/residenza"));
    let body = json!({ "codiceFiscale": h.sample_cf() });
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let http = h.http.clone();
        let (url, key, body) = (url.clone(), h.api_key(), body.clone());
        calls.spawn(async move {
            // 1,000 connections at once on two loaded cores: actix answers 408 to a connection
            // whose request it could not read within its 5 s client request timeout. Such a
            // request never reached the gateway (no voucher asked for it), and HTTP lets a
            // client send it again; the single flight is measured on the ones that got in.
            let mut timed_out = 0;
            loop {
                let req = http.post(&url).header("X-API-Key", &key).json(&body);
                let status = req.send().await.map(|r| r.status())?;
                if status != StatusCode::REQUEST_TIMEOUT || timed_out == 3 {
                    return Ok::<_, reqwest::Error>((status, timed_out));
                }
                timed_out += 1;
            }
        });
    }
    let (mut ok, mut resent) = (0, 0);
    while let Some(result) = calls.join_next().await {
        let (status, timed_out) = result.expect("join").expect("sent");
        assert_eq!(status, StatusCode::OK);
        ok += 1;
        resent += timed_out;
    }
    println!("1,000 calls, {resent} sent again after a 408 from the listener");
    assert_eq!(ok, 1_000);
    assert_eq!(h.token_requests(), 1, "1,000 cold calls, one token request");
    assert_eq!(h.env.token_stats.issued(), 1);
}

#[tokio::test]
async fn short_lived_voucher_is_renewed_once_through_the_proxy() {
    let _alone = e2e::exclusive().await;
    // Vouchers live 4 s; renewal starts in the last half (2 s before expiry).
    let h = Harness::start_with(|c| {
        c.dev.voucher_lifetime_secs = 4;
        c.voucher_client.renew_margin_fraction = 0.5;
    })
    .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });
    let resp = h.fruizione_post(SAMPLE_FRUIZIONE, "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    // In the renewal window: served at once with the valid voucher, one renewal started.
    for _ in 0..20 {
        let resp = h.fruizione_post(SAMPLE_FRUIZIONE, "residenza", &body).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    wait_for("the renewal", || h.token_requests() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.token_requests(), 2, "exactly one renewal");
}

#[tokio::test]
async fn renewal_by_clock_costs_exactly_one_request() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| c.dev.voucher_lifetime_secs = 600).await;
    let client = h.env.config.client.clone().expect("dev client");
    let key = RsaPrivateKey::from_pem(&std::fs::read_to_string(&client.key_file).expect("key"))
        .expect("pem");
    let spec = VoucherSpec {
        builder: ClientAssertionBuilder {
            client_id: client.client_id.clone(),
            audience: h.env.config.pdnd.client_assertion_audience.clone(),
            purpose_id: Some(sample::ANAGRAFE_FULL.purpose_id.to_owned()),
            digest: None,
            lifetime_secs: 300,
        },
        key: Arc::new(key),
        dpop: None,
    };
    let start = e2e::now();
    let clock = Arc::new(ManualClock::new(start));
    let cache = VoucherCache::new(
        TokenClient::new(
            reqwest::Client::new(),
            h.env.config.pdnd.token_endpoint.clone(),
        ),
        clock.clone(),
        CachePolicy::default(),
    );
    let first = cache.get(&spec).await.expect("voucher");
    assert_eq!(h.token_requests(), 1);
    assert_eq!(first.expires_at, start + 600);
    assert_eq!(first.renew_at, start + 480, "20 % of 600 s before expiry");

    // Just before the margin: cached.
    clock.set(first.renew_at - 1);
    for _ in 0..10 {
        assert_eq!(cache.get(&spec).await.expect("cached"), first);
    }
    assert_eq!(h.token_requests(), 1);

    // Past it: 100 concurrent callers all get the still-valid voucher, one renewal starts.
    clock.set(first.renew_at + 1);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let cache = cache.clone();
        let spec = spec.clone();
        calls.spawn(async move { cache.get(&spec).await });
    }
    while let Some(r) = calls.join_next().await {
        assert!(r.expect("join").is_ok());
    }
    wait_for("the renewal", || h.token_requests() >= 2).await;
    let mut renewed = cache.get(&spec).await.expect("renewed");
    for _ in 0..100 {
        if renewed != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        renewed = cache.get(&spec).await.expect("renewed");
    }
    assert_ne!(renewed.access_token, first.access_token);
    assert_eq!(renewed.expires_at, first.renew_at + 1 + 600);
    for _ in 0..10 {
        assert_eq!(cache.get(&spec).await.expect("cached"), renewed);
    }
    assert_eq!(h.token_requests(), 2, "exactly one renewal");

    // Another purpose is another cache entry: its own request.
    let mut other = spec.clone();
    other.builder.purpose_id = Some(sample::ANAGRAFE_VERIFICA.purpose_id.to_owned());
    let v = cache.get(&other).await.expect("other purpose");
    assert_ne!(v.access_token, renewed.access_token);
    assert_eq!(h.token_requests(), 3);

    // Past expiry with the renewal due: the caller waits for a fresh one (single flight).
    clock.set(renewed.expires_at + 1);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let spec = spec.clone();
        calls.spawn(async move { cache.get(&spec).await });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(r) = calls.join_next().await {
        tokens.insert(r.expect("join").expect("voucher").access_token.clone());
    }
    assert_eq!(tokens.len(), 1, "every waiter got the same fresh voucher");
    assert!(!tokens.contains(&renewed.access_token));
    assert_eq!(h.token_requests(), 4);
}
