//! `/metrics` of the internal listener, parsed by Prometheus' reference parser: after a known
//! mix of calls the counters say exactly that mix; the public listener has no `/metrics`;
//! nothing personal or secret is in a label; and every metric the Helm chart's dashboard and
//! alert rules query is in the exposition.
//!
//! The meter provider is one per process (see `gateway::telemetry::metrics`), so the test runs
//! alone ([`e2e::exclusive`]) and compares counts before and after its own calls.

use e2e::metrics::Exposition;
use e2e::Harness;
use gateway::dev::sample;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const REFUSALS: &str = "pdnd_gateway_refusals_total";
const CACHE: &str = "pdnd_gateway_cache_requests_total";

async fn scrape(h: &Harness) -> (String, Exposition) {
    let resp = h
        .http
        .get(h.internal("/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = e2e::header(&resp, "content-type").unwrap_or_default();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.expect("body");
    let parsed = Exposition::parse(&text).expect("the parser was found before");
    (text, parsed)
}

fn requests(e: &Exposition, operation: &str, status: &str) -> f64 {
    e.value(
        DURATION_COUNT,
        &[
            ("eservice", "anagrafe"),
            ("operation", operation),
            ("http_response_status_code", status),
        ],
    )
}

fn refusals(e: &Exposition, reason: &str) -> f64 {
    e.value(REFUSALS, &[("eservice", "anagrafe"), ("reason", reason)])
}

fn cache(e: &Exposition, result: &str) -> f64 {
    e.value(CACHE, &[("eservice", "anagrafe"), ("result", result)])
}

/// The metric names a PromQL text (a dashboard or a rule file) queries.
fn queried_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["pdnd_gateway_", "http_server_", "http_client_"] {
        for (i, _) in text.match_indices(prefix) {
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[tokio::test]
async fn metrics_count_exactly_the_calls_made() {
    let _alone = e2e::exclusive().await;
    // Two calls a day for the consumer, so the third accepted one is over its quota.
    let h = Harness::start_with(|c| c.eservices.anagrafe.daily_calls_per_consumer = Some(2)).await;
    if Exposition::parse("").is_none() {
        return;
    }
    let cf = h.sample_cf();
    let verifica = h.voucher(sample::ANAGRAFE_VERIFICA.purpose_id).await;
    let body = json!({
        "codiceFiscale": cf,
        "indirizzo": {"dug": "VIA", "toponimo": "ROMA", "civico": "1", "cap": "56100", "codiceIstatComune": "050026"}
    });
    let (_, before) = scrape(&h).await;

    // Accepted twice: the second answer comes from the cache.
    for _ in 0..2 {
        let resp = h
            .post("/anagrafe/v1/verifica-residenza", Some(&verifica), &body)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // 401: no voucher. Twice, to tell a count from a flag.
    for _ in 0..2 {
        let resp = h
            .post(
                "/anagrafe/v1/residenza",
                None,
                &json!({"codiceFiscale": cf}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // 403: a voucher whose purpose is not granted this operation.
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&verifica),
            &json!({"codiceFiscale": cf}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // 429: the consumer's third admitted call of the day (the 403 above was not counted).
    let resp = h
        .post("/anagrafe/v1/verifica-residenza", Some(&verifica), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);

    // /metrics is internal only.
    let resp = h.http.get(h.public("/metrics")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let (text, after) = scrape(&h).await;
    let delta = |f: &dyn Fn(&Exposition) -> f64| f(&after) - f(&before);
    assert_eq!(delta(&|e| requests(e, "verifica-residenza", "200")), 2.0);
    assert_eq!(delta(&|e| requests(e, "residenza", "401")), 2.0);
    assert_eq!(delta(&|e| requests(e, "residenza", "403")), 1.0);
    assert_eq!(delta(&|e| requests(e, "residenza", "200")), 0.0);
    assert_eq!(delta(&|e| refusals(e, "voucher")), 2.0);
    assert_eq!(delta(&|e| refusals(e, "purpose")), 1.0);
    assert_eq!(delta(&|e| refusals(e, "modi")), 0.0);
    assert_eq!(delta(&|e| requests(e, "verifica-residenza", "429")), 1.0);
    assert_eq!(delta(&|e| refusals(e, "quota")), 1.0);
    assert_eq!(delta(&|e| cache(e, "miss")), 1.0);
    assert_eq!(delta(&|e| cache(e, "hit")), 1.0);
    // Each accepted call was committed to the audit trail before its answer.
    assert!(delta(&|e| e.value("pdnd_gateway_audit_batch_size_sum", &[])) >= 2.0);
    assert!(after.value("pdnd_gateway_jwks_refreshes_total", &[("outcome", "ok")]) >= 1.0);
    // dev signs responses: the signing certificate's expiry is published, in the future.
    assert!(
        after.value(
            "pdnd_gateway_certificate_expiry_seconds",
            &[("certificate", "modi_signing")]
        ) > 0.0
    );

    // No codice fiscale, voucher or jti anywhere in the exposition.
    assert!(!text.contains(&cf), "a codice fiscale in /metrics");
    assert!(!text.contains(&verifica), "a voucher in /metrics");
    let jti = e2e::jws::jti_of(&verifica);
    assert!(!text.contains(&jti), "a jti in /metrics");
    for value in after.label_values() {
        assert!(value.len() < 64, "an unexpected label value: {value}");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alert_rules_query_is_exported() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    if Exposition::parse("").is_none() {
        return;
    }
    // A mix that makes every series appear: provider calls (accepted, refused, cached) and a
    // fruizione through a second gateway (voucher asked of PDND, outbound latency).
    let cf = h.sample_cf();
    let full = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    for token in [Some(full.as_str()), Some(full.as_str()), None] {
        h.post(
            "/anagrafe/v1/residenza",
            token,
            &json!({"codiceFiscale": cf}),
        )
        .await;
    }
    let consumer = h
        .start_consumer(|c| c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")])
        .await;
    let resp = consumer
        .call(
            "anagrafe-remota",
            "residenza",
            &json!({"codiceFiscale": cf}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, exposition) = scrape(&h).await;
    consumer.stop().await;
    let exported = exposition.names();

    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/pdnd-gateway/files");
    let mut checked = 0;
    for file in ["dashboard.json", "prometheus-rules.yaml"] {
        let text = std::fs::read_to_string(chart.join(file)).expect("chart file readable");
        let queried = queried_metrics(&text);
        assert!(!queried.is_empty(), "{file} queries no metric");
        for name in queried {
            assert!(
                exported.contains(&name),
                "{file} queries `{name}`, which /metrics does not export; exported: {exported:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} queries checked");
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = queried_metrics(
        r#"histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket[5m]))) / x_pdnd_gateway_no"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["http_server_request_duration_seconds_bucket"]
    );
}
