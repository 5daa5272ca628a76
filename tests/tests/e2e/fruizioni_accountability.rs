//! The fruizioni proxy accountable and bounded, over real sockets: named API keys limited to
//! their fruizioni, an audit record committed for every call before its answer (503 when it
//! cannot be), remote answers read with a size limit, and the appended path allow-listed so
//! hostile segments never reach the remote (a counting stub stands in for it).

use e2e::{raw_post, CountingRemote, Harness, CONSUMER_CALLER};
use gateway::config::ApiKeyConfig;
use gateway::dev::sample;
use gateway::provider::audit::AuditQuery;
use gateway::provider::audit_fruizioni::{FruizioneRecord, FruizioniQuery};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TRIBUTI_KEY: &str = "tributi-0123456789abcdef0123456789abcdef";
/// The key `ufficio-tributi` is rotating away from.
const TRIBUTI_OLD_KEY: &str = "tributi-old-0123456789abcdef0123456789ab";

fn content_type(resp: &reqwest::Response) -> String {
    e2e::header(resp, "content-type").unwrap_or_default()
}

/// The consumer's fruizioni records, oldest first (no waiting: the answer waited for them).
async fn records(consumer: &e2e::ConsumerGateway, q: FruizioniQuery) -> Vec<FruizioneRecord> {
    consumer
        .audit_store()
        .await
        .query_fruizioni(&q)
        .await
        .expect("query")
}

#[tokio::test]
async fn each_key_is_named_and_reaches_only_its_fruizioni() {
    let h = Harness::start().await;
    let remote = CountingRemote::start(16, false).await;
    let consumer = h
        .start_consumer(|c| {
            let mut a = h.anagrafe_fruizione("remota-a");
            a.remote_base_url = format!("http://{}/v1", remote.addr);
            let mut b = a.clone();
            b.name = "remota-b".into();
            c.fruizioni = vec![a, b];
            let mut tributi =
                ApiKeyConfig::for_key("ufficio-tributi", TRIBUTI_KEY, vec!["remota-a".into()]);
            tributi.previous_sha256 =
                Some(ApiKeyConfig::for_key("old", TRIBUTI_OLD_KEY, Vec::new()).sha256);
            c.internal.api_keys = vec![tributi];
        })
        .await;
    let call = |fruizione: &str, key: &str| {
        consumer
            .http
            .post(consumer.internal(&format!("/fruizioni/{fruizione}/x")))
            .header("X-API-Key", key.to_owned())
            .json(&json!({}))
            .send()
    };

    let resp = call("remota-a", TRIBUTI_KEY).await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call("remota-b", TRIBUTI_KEY).await.expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(content_type(&resp), "application/problem+json");
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["status"], 403);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ufficio-tributi") && d.contains("remota-b")),
        "{problem}"
    );
    assert_eq!(
        remote.hits(),
        1,
        "the refused call must not reach the remote"
    );
    // The harness' own caller may call both.
    let resp = call("remota-b", &consumer.api_key()).await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(remote.hits(), 2);
    // During a rotation the old key is the same caller, with the same limits.
    let resp = call("remota-a", TRIBUTI_OLD_KEY).await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call("remota-b", TRIBUTI_OLD_KEY).await.expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(remote.hits(), 3);

    let tributi = records(
        &consumer,
        FruizioniQuery {
            caller: Some("ufficio-tributi".into()),
            ..Default::default()
        },
    )
    .await;
    let seen: Vec<(Option<&str>, u16, Option<u16>)> = tributi
        .iter()
        .map(|r| (r.fruizione.as_deref(), r.status, r.remote_status))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("remota-a"), 200, Some(200)),
            (Some("remota-b"), 403, None),
            (Some("remota-a"), 200, Some(200)),
            (Some("remota-b"), 403, None)
        ]
    );
    assert!(tributi[1].voucher_jti.is_none(), "no voucher for a refusal");
    let harness_caller = records(
        &consumer,
        FruizioniQuery {
            caller: Some(CONSUMER_CALLER.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(harness_caller.len(), 1);
    consumer.stop().await;
}

#[tokio::test]
async fn every_call_is_recorded_before_its_answer() {
    let h = Harness::start().await;
    let consumer = h
        .start_consumer(|c| c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")])
        .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });

    let resp = consumer
        .call_with(
            "anagrafe-remota",
            "residenza",
            &[("X-User-Id", "operatore.42")],
            &body,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let request_id = e2e::header(&resp, "x-request-id").expect("request id");
    // Queried at once: the answer came back only after its record's commit.
    let got = records(
        &consumer,
        FruizioniQuery {
            request_id: Some(request_id.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r.caller, CONSUMER_CALLER);
    assert_eq!(r.fruizione.as_deref(), Some("anagrafe-remota"));
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.purpose_id.as_deref(),
        Some(sample::ANAGRAFE_FULL.purpose_id)
    );
    assert_eq!(r.client_id.as_deref(), Some(consumer.client_id().as_str()));
    assert_eq!((r.status, r.remote_status), (200, Some(200)));
    assert_eq!(r.user_id.as_deref(), Some("operatore.42"));
    assert!(r.latency_ms >= 0);
    // The jti recorded is the voucher the provider received and recorded on its side.
    let jti = r.voucher_jti.clone().expect("voucher jti recorded");
    let provider_side = gateway::provider::audit::AuditStore::connect(&h.env.config.audit.url)
        .await
        .expect("provider audit")
        .query(&AuditQuery {
            request_id: Some(request_id.clone()),
            ..Default::default()
        })
        .await
        .expect("query");
    assert!(
        provider_side
            .iter()
            .any(|p| p.voucher_jti.as_deref() == Some(jti.as_str())),
        "{provider_side:?}"
    );

    // Refusals are recorded with the status the caller got: a bad X-User-Id (400, never
    // stored), an unknown fruizione (404).
    let long = "u".repeat(300);
    let resp = consumer
        .call_with(
            "anagrafe-remota",
            "residenza",
            &[("X-User-Id", &long)],
            &body,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&resp), "application/problem+json");
    let resp = consumer.call("nessuna", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let all = records(&consumer, FruizioniQuery::default()).await;
    type Seen<'a> = (Option<&'a str>, u16, Option<u16>, Option<&'a str>);
    let seen: Vec<Seen> = all
        .iter()
        .map(|r| {
            (
                r.fruizione.as_deref(),
                r.status,
                r.remote_status,
                r.user_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                Some("anagrafe-remota"),
                200,
                Some(200),
                Some("operatore.42")
            ),
            (Some("anagrafe-remota"), 400, None, None),
            (Some("nessuna"), 404, None, None),
        ]
    );

    // One `pdnd-gateway audit` query shows them beside the e-services' records.
    let hasher =
        gateway::provider::audit::SubjectHasher::new(consumer.config.audit.hmac_secret.as_bytes())
            .expect("hasher");
    let entries = gateway::cli::audit::entries(
        &consumer.audit_store().await,
        &hasher,
        &gateway::cli::audit::Filters {
            caller: Some(CONSUMER_CALLER.into()),
            ..Default::default()
        },
    )
    .await
    .expect("entries");
    assert_eq!(entries.len(), 3);
    consumer.stop().await;
}

#[tokio::test]
async fn audit_down_means_503_and_no_answer() {
    let h = Harness::start().await;
    let remote = CountingRemote::start(16, false).await;
    let consumer = h
        .start_consumer(|c| {
            let mut f = h.anagrafe_fruizione("remota");
            f.remote_base_url = format!("http://{}/v1", remote.addr);
            c.fruizioni = vec![f];
        })
        .await;
    let store = consumer.audit_store().await;
    // The trail refuses every fruizioni record, as a full disk or a lost database would.
    sqlx::query(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_fruizioni \
         BEGIN SELECT RAISE(ABORT, 'audit down'); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let resp = consumer.call("remota", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type(&resp), "application/problem+json");
    let text = resp.text().await.expect("body");
    assert!(!text.contains("aaaa"), "the remote's answer leaked: {text}");
    assert_eq!(remote.hits(), 1);
    assert!(records(&consumer, FruizioniQuery::default())
        .await
        .is_empty());

    // Back up: calls are answered and recorded again.
    sqlx::query("DROP TRIGGER audit_down")
        .execute(store.pool())
        .await
        .expect("drop trigger");
    let resp = consumer.call("remota", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(records(&consumer, FruizioniQuery::default()).await.len(), 1);
    consumer.stop().await;
}

#[tokio::test]
async fn remote_answers_over_the_limit_are_refused() {
    const LIMIT: u64 = 64 * 1024;
    let h = Harness::start().await;
    let big = CountingRemote::start(2 * 1024 * 1024, false).await;
    let big_chunked = CountingRemote::start(2 * 1024 * 1024, true).await;
    let just_over = CountingRemote::start(LIMIT as usize + 1, true).await;
    let at_limit = CountingRemote::start(LIMIT as usize, true).await;
    let default_limit = CountingRemote::start(1024 * 1024 + 1, false).await;
    let consumer = h
        .start_consumer(|c| {
            let to = |name: &str, addr: std::net::SocketAddr| {
                let mut f = h.anagrafe_fruizione(name);
                f.remote_base_url = format!("http://{addr}/v1");
                f.max_response_bytes = LIMIT;
                f
            };
            let mut default = to("default", default_limit.addr);
            default.max_response_bytes = gateway::config::DEFAULT_MAX_RESPONSE_BYTES;
            c.fruizioni = vec![
                to("grande", big.addr),
                to("grande-chunked", big_chunked.addr),
                to("appena-sopra", just_over.addr),
                to("al-limite", at_limit.addr),
                default,
            ];
        })
        .await;
    for name in ["grande", "grande-chunked", "appena-sopra", "default"] {
        let resp = consumer.call(name, "x", &json!({})).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{name}");
        assert_eq!(content_type(&resp), "application/problem+json", "{name}");
        let problem: Value = resp.json().await.expect("problem");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("larger")),
            "{name}: {problem}"
        );
    }
    let resp = consumer.call("al-limite", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").len() as u64, LIMIT);
    let refused: Vec<(u16, Option<u16>)> = records(&consumer, FruizioniQuery::default())
        .await
        .iter()
        .map(|r| (r.status, r.remote_status))
        .collect();
    assert_eq!(
        refused,
        [
            (502, Some(200)),
            (502, Some(200)),
            (502, Some(200)),
            (502, Some(200)),
            (200, Some(200))
        ]
    );
    consumer.stop().await;
}

#[tokio::test]
async fn hostile_paths_never_reach_the_remote() {
    let h = Harness::start().await;
    let remote = CountingRemote::start(2, false).await;
    let consumer = h
        .start_consumer(|c| {
            let mut f = h.anagrafe_fruizione("remota");
            f.remote_base_url = format!("http://{}/v1", remote.addr);
            c.fruizioni = vec![f];
        })
        .await;
    let addr = consumer.internal_addr();
    let key = consumer.api_key();
    let hostile = [
        "..",
        "../x",
        "a/../b",
        ".",
        "./x",
        "a/./b",
        "%2e%2e/x",
        "%2E%2E",
        ".%2e/x",
        "%2e./x",
        "%252e%252e/x",
        "%252E%252E/tributi/v1/regolarita",
        "%25252e%25252e/x",
        "%2525252e",
        "a%2fb",
        "a%2Fb",
        "a%252fb",
        "a%25252fb",
        "a\\b",
        "a%5cb",
        "a%5Cb",
        "a%255cb",
        "..;/x",
        "a;b",
        "x/..;/y",
        "%2e%2e%3b/x",
        "a%00b",
        "a%0d%0aX-Injected:%201",
        "a%1fb",
        "a%7fb",
        "a%2500b",
        "a//b",
        "a%",
        "a%zz",
        "a\"b",
        "a<b>",
        "a|b",
    ];
    for path in hostile {
        let status = raw_post(addr, &format!("/fruizioni/remota/{path}"), &key).await;
        assert_eq!(status, 400, "{path}");
    }
    assert_eq!(remote.hits(), 0, "{:?}", remote.paths());

    let ordinary = [
        "residenza",
        "v1/x.json",
        "a..b/c",
        "...",
        ".well-known",
        "citt%C3%A0",
        "anno=2026,rata:1",
        "user@ente",
        "100%25",
        "a/b/",
        "~x_y-z",
    ];
    for path in ordinary {
        let status = raw_post(addr, &format!("/fruizioni/remota/{path}"), &key).await;
        assert_eq!(status, 200, "{path}");
    }
    let expected: Vec<String> = ordinary.iter().map(|p| format!("/v1/{p}")).collect();
    assert_eq!(remote.paths(), expected);
    consumer.stop().await;
}

#[tokio::test]
async fn fruizioni_records_on_postgres_and_its_outage() {
    let _alone = e2e::exclusive().await;
    let Some(pg) = e2e::Postgres::start() else {
        return;
    };
    let h = Harness::start().await;
    let remote = CountingRemote::start(16, false).await;
    let consumer = h
        .start_consumer(|c| {
            let mut f = h.anagrafe_fruizione("remota");
            f.remote_base_url = format!("http://{}/v1", remote.addr);
            c.fruizioni = vec![f];
            c.audit.url = pg.url.clone();
        })
        .await;
    let resp = consumer.call("remota", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = records(&consumer, FruizioniQuery::default()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].status, got[0].remote_status), (200, Some(200)));
    assert!(got[0].user_id.is_none());
    let resp = consumer.call("nessuna", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let refused = records(
        &consumer,
        FruizioniQuery {
            fruizione: Some("nessuna".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].remote_status, None);

    pg.stop();
    // In flight when the trail went down: sent, but its answer is withheld.
    let resp = consumer.call("remota", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type(&resp), "application/problem+json");
    assert_eq!(remote.hits(), 2);
    // Known down: the next call is not sent at all.
    let resp = consumer.call("remota", "x", &json!({})).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = resp.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not sent")),
        "{problem}"
    );
    assert_eq!(remote.hits(), 2, "no call leaves while the trail is down");

    // Back up: calls go out and are recorded again.
    pg.restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..40 {
        status = consumer.call("remota", "x", &json!({})).await.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(status, StatusCode::OK);
    consumer.stop().await;
}
