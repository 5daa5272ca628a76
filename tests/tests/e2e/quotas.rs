//! The quota stage over real HTTP, through the whole pipeline: an e-service's daily calls per
//! consumer are shared by the consumer's purposes, a refused purpose is not counted, the
//! headers count down and the 429 names its problem type (docs/quotas.md).

use e2e::Harness;
use gateway::dev::sample;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn verifica_body(cf: &str) -> Value {
    json!({
        "codiceFiscale": cf,
        "indirizzo": {"dug": "VIA", "toponimo": "ROMA", "civico": "1", "cap": "56100", "codiceIstatComune": "050026"}
    })
}

fn number(resp: &reqwest::Response, name: &str) -> Option<u64> {
    e2e::header(resp, name).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_consumers_purposes_share_its_daily_calls_and_refusals_are_not_counted() {
    let h = Harness::start_with(|c| c.eservices.anagrafe.daily_calls_per_consumer = Some(3)).await;
    let cf = h.sample_cf();
    let full = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let verifica = h.voucher(sample::ANAGRAFE_VERIFICA.purpose_id).await;

    // A purpose refused by the purpose stage (operation not granted): 403, no quota spent,
    // no headers (the quota stage never ran).
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&verifica),
            &json!({"codiceFiscale": cf}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(number(&resp, "x-ratelimit-remaining"), None);

    // Three calls of the day, from two purposes of one consumer.
    let calls = [
        (
            "/anagrafe/v1/residenza",
            &full,
            json!({"codiceFiscale": cf}),
        ),
        (
            "/anagrafe/v1/verifica-residenza",
            &verifica,
            verifica_body(&cf),
        ),
        (
            "/anagrafe/v1/generalita",
            &full,
            json!({"codiceFiscale": cf}),
        ),
    ];
    for ((path, token, body), remaining) in calls.iter().zip([2, 1, 0]) {
        let resp = h.post(path, Some(token), body).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(number(&resp, "x-ratelimit-limit"), Some(3), "{path}");
        assert_eq!(number(&resp, "x-ratelimit-remaining"), Some(remaining));
        assert!(number(&resp, "x-ratelimit-reset").is_some_and(|r| r > 0));
    }
    // The fourth, from either purpose: 429 until Rome's midnight.
    let resp = h
        .post(
            "/anagrafe/v1/verifica-residenza",
            Some(&verifica),
            &verifica_body(&cf),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(number(&resp, "x-ratelimit-remaining"), Some(0));
    let reset = number(&resp, "x-ratelimit-reset");
    assert_eq!(number(&resp, "retry-after"), reset);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.expect("problem body");
    assert_eq!(body["type"], "urn:pdnd-gateway:problem:quota-exceeded");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("consumer"),
        "{body}"
    );
    // Another e-service has its own thresholds.
    let tributi = h.voucher(sample::TRIBUTI_FULL.purpose_id).await;
    let resp = h
        .post(
            "/tributi/v1/regolarita",
            Some(&tributi),
            &json!({"soggetto": cf}),
        )
        .await;
    assert_ne!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(number(&resp, "x-ratelimit-limit").is_some());
}
