//! The outbound proxy over real sockets: the dev sample fruizione's round trip, API keys on the
//! internal listener, a second gateway instance calling this one as remote provider (its audit
//! trail names the proxy's client and purpose), and the proxy's own refusals as problem+json.

use e2e::{closed_port, raw_post, silent_remote, Harness};
use gateway::dev::{sample, SAMPLE_FRUIZIONE};
use gateway::provider::audit::{AuditQuery, AuditStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn content_type(resp: &reqwest::Response) -> String {
    e2e::header(resp, "content-type")
        .as_deref()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn dev_round_trip_and_api_keys() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let body = json!({ "codiceFiscale": cf });
    let url = h.internal(&format!("/fruizioni/{SAMPLE_FRUIZIONE}/residenza"));

    // No key, a wrong key, a key under the wrong scheme: 401 problem+json, nothing forwarded.
    let before = h.token_requests();
    for (name, value) in [
        (None, String::new()),
        (
            Some("X-API-Key"),
            "not-the-key-not-the-key-not-the-key".to_owned(),
        ),
        (Some("Authorization"), format!("Bearer {}", h.api_key())),
        (Some("X-API-Key"), format!("{}x", h.api_key())),
    ] {
        let mut req = h.http.post(&url).json(&body);
        if let Some(name) = name {
            req = req.header(name, value.clone());
        }
        let resp = req.send().await.expect("sent");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{name:?} {value}");
        assert_eq!(content_type(&resp), "application/problem+json");
        assert!(resp.headers().get("www-authenticate").is_some());
        let problem: Value = resp.json().await.expect("problem");
        assert_eq!(problem["status"], 401);
    }
    assert_eq!(
        h.token_requests(),
        before,
        "a refused caller must not cost a voucher"
    );

    // With the key: the anagrafe's answer, through proxy, voucher and provider.
    let resp = h.fruizione_post(SAMPLE_FRUIZIONE, "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(content_type(&resp), "application/json");
    let via_proxy: Value = resp.json().await.expect("json");
    assert_eq!(via_proxy["residente"], true, "{via_proxy}");

    // The same answer as calling the provider directly with a voucher.
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let direct: Value = h
        .post("/anagrafe/v1/residenza", Some(&voucher), &body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(via_proxy, direct);

    // `Authorization: ApiKey <key>` works too.
    let resp = h
        .http
        .post(&url)
        .header("Authorization", format!("ApiKey {}", h.api_key()))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    // The remote's refusals come back unchanged: an unknown subject is the provider's 404.
    let nobody = "XXXYYY80A01H501";
    let check = eservices::codice_fiscale::compute_check_char(nobody).expect("check char");
    let resp = h
        .fruizione_post(
            SAMPLE_FRUIZIONE,
            "residenza",
            &json!({ "codiceFiscale": format!("{nobody}{check}") }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&resp), "application/problem+json");

    // /status stays open.
    let resp = h
        .http
        .get(h.internal("/status"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    // Unknown fruizione: 404 problem+json; a path escaping the base URL: 400.
    let resp = h.fruizione_post("nessuna", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&resp), "application/problem+json");
    let problem: Value = resp.json().await.expect("problem");
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("nessuna"),
        "{problem}"
    );
    // HTTP clients resolve dot segments themselves, so these go over a raw socket.
    for path in ["%2e%2e/%2e%2e/tributi/v1/regolarita", "../x", "a%2f..%2fb"] {
        let status = raw_post(
            h.env.running.internal,
            &format!("/fruizioni/{SAMPLE_FRUIZIONE}/{path}"),
            &h.api_key(),
        )
        .await;
        assert_eq!(status, 400, "{path}");
    }

    // The fruizioni are not on the public listener.
    let resp = h
        .http
        .post(h.public(&format!("/fruizioni/{SAMPLE_FRUIZIONE}/residenza")))
        .header("X-API-Key", h.api_key())
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn second_gateway_calls_this_one_and_is_audited() {
    // `h` is the remote provider (with the dev authority); `consumer` is another gateway
    // instance whose fruizione calls h's anagrafe.
    let h = Harness::start().await;
    let consumer = h
        .start_consumer(|c| c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")])
        .await;
    let cf = h.sample_cf();
    let before = h.token_requests();
    for path in ["residenza", "generalita", "esistenza-in-vita"] {
        let resp = consumer
            .call("anagrafe-remota", path, &json!({ "codiceFiscale": cf }))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert!(body["dataAggiornamento"].is_string(), "{path}: {body}");
    }
    assert_eq!(h.token_requests() - before, 1, "three calls, one voucher");

    // The provider's audit trail names the consumer's client and purpose.
    let audit = AuditStore::connect(&h.env.config.audit.url)
        .await
        .expect("audit store");
    let query = AuditQuery {
        purpose_id: Some(sample::ANAGRAFE_FULL.purpose_id.to_owned()),
        ..Default::default()
    };
    let mut records = Vec::new();
    for _ in 0..100 {
        records = audit.query(&query).await.expect("query");
        if records.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(records.len() >= 3, "{records:?}");
    let client_id = consumer
        .config
        .client
        .as_ref()
        .expect("client")
        .client_id
        .clone();
    for r in &records {
        assert_eq!(r.client_id.as_deref(), Some(client_id.as_str()), "{r:?}");
        assert_eq!(
            r.purpose_id.as_deref(),
            Some(sample::ANAGRAFE_FULL.purpose_id),
            "{r:?}"
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    let ops: Vec<_> = records.iter().filter_map(|r| r.operation.clone()).collect();
    for op in ["residenza", "generalita", "esistenza-in-vita"] {
        assert!(ops.iter().any(|o| o == op), "{op} not audited: {ops:?}");
    }
    consumer.stop().await;
}

#[tokio::test]
async fn remote_failures_and_concurrency_limit() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    let hung = silent_remote().await;
    let closed = closed_port();
    let consumer = h
        .start_consumer(|c| {
            let mut down = h.anagrafe_fruizione("giu");
            down.remote_base_url = format!("http://{closed}/v1");
            let mut slow = h.anagrafe_fruizione("lenta");
            slow.remote_base_url = format!("http://{hung}/v1");
            slow.timeout_ms = 300;
            let mut narrow = h.anagrafe_fruizione("stretta");
            narrow.remote_base_url = format!("http://{hung}/v1");
            narrow.timeout_ms = 3_000;
            narrow.max_concurrency = 1;
            c.fruizioni = vec![down, slow, narrow];
        })
        .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });

    let resp = consumer.call("giu", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(content_type(&resp), "application/problem+json");

    let resp = consumer.call("lenta", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(content_type(&resp), "application/problem+json");

    // One call hangs on the only slot; the next is refused at once with 503 + Retry-After.
    let first = tokio::spawn({
        let http = consumer.http.clone();
        let url = consumer.internal("/fruizioni/stretta/residenza");
        let key = consumer.api_key();
        let body = body.clone();
        async move {
            http.post(url)
                .header("X-API-Key", key)
                .json(&body)
                .send()
                .await
                .expect("sent")
                .status()
        }
    });
    let mut refused = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let resp = consumer.call("stretta", "residenza", &body).await;
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("a second call while the slot is taken is refused");
    assert_eq!(content_type(&resp), "application/problem+json");
    assert_eq!(e2e::header(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(first.await.expect("join"), StatusCode::GATEWAY_TIMEOUT);
    consumer.stop().await;
}
