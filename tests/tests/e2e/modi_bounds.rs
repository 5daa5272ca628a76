//! What a caller can make the ModI checks hold or spend, over real HTTP: one client's share of
//! the replay memory (the others keep working when it floods), lookups of made-up kids towards
//! the PDND key service (counted at the local authority's `/keys/{kid}`), and a request body
//! that never finishes arriving (a raw TCP client that stalls).

use e2e::{now, Harness};
use gateway::config::RequestIntegrity;
use gateway::dev::sample;
use gateway::modi::{self, SignatureClaims, SigningAlgorithm, SigningMaterial};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RESIDENZA: &str = "/anagrafe/v1/residenza";
const JSON: &str = "application/json";

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asserts a problem+json refusal with `status` whose detail mentions `needle`.
async fn assert_refused(resp: reqwest::Response, status: StatusCode, needle: &str, case: &str) {
    let got = resp.status();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{case}: {body}");
    assert_eq!(content_type, "application/problem+json", "{case}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "{case}: detail {detail:?} lacks {needle:?}"
    );
}

/// Claims of a request signature the gateway accepts for anagrafe, with a fresh jti.
fn request_claims(h: &Harness, iss: &str) -> SignatureClaims {
    let t = now();
    SignatureClaims {
        iss: iss.to_owned(),
        sub: iss.to_owned(),
        aud: h.env.config.eservices.anagrafe.audiences[0].clone(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: t,
        nbf: t,
        exp: t + 60,
    }
}

fn residenza_body(h: &Harness) -> Vec<u8> {
    serde_json::to_vec(&json!({ "codiceFiscale": h.sample_cf() })).expect("json")
}

/// POSTs a request signed by `material` (Digest + Agid-JWT-Signature) with `voucher`.
async fn send_signed(
    h: &Harness,
    voucher: &str,
    material: &SigningMaterial,
    claims: &SignatureClaims,
) -> reqwest::Response {
    let body = residenza_body(h);
    let signed = modi::sign_message(material, claims, Some(JSON), None, &body).expect("signs");
    let auth = format!("Bearer {voucher}");
    h.post_raw(
        RESIDENZA,
        &[
            ("authorization", auth.as_str()),
            ("content-type", JSON),
            ("digest", signed.digest.as_str()),
            ("agid-jwt-signature", signed.agid_jwt_signature.as_str()),
        ],
        body,
    )
    .await
}

/// A voucher of the local authority for another PDND client of the same consumer.
fn voucher_of_client(h: &Harness, client_id: &str) -> String {
    let mut claims = h.good_claims(now());
    claims["sub"] = json!(client_id);
    claims["client_id"] = json!(client_id);
    e2e::sign_rs256(
        e2e::voucher_header(&h.authority_kid()),
        &claims,
        &h.authority_key_pem(),
    )
}

#[tokio::test]
async fn one_client_flooding_unique_jtis_is_refused_alone() {
    let h = Harness::start_with(|c| {
        c.eservices.anagrafe.modi.request_integrity = RequestIntegrity::IntegrityRest01;
        c.modi.replay_cache_per_client = 3;
    })
    .await;
    let material = h
        .modi_pki()
        .signing_material(SigningAlgorithm::RS256)
        .expect("dev RSA identity");
    let flooder = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let flooder_id = h.env.data.client.client_id.clone();
    let other_id = "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706";
    let other = voucher_of_client(&h, other_id);

    // Its share: three live jtis.
    let first = request_claims(&h, &flooder_id);
    let resp = send_signed(&h, &flooder, &material, &first).await;
    assert_eq!(resp.status(), StatusCode::OK);
    for _ in 0..2 {
        let resp = send_signed(&h, &flooder, &material, &request_claims(&h, &flooder_id)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    // The fourth: 429 for this client, with when to retry (its oldest jti's expiry).
    let resp = send_signed(&h, &flooder, &material, &request_claims(&h, &flooder_id)).await;
    let retry_after: u64 = header(&resp, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=200).contains(&retry_after), "{retry_after}");
    assert_refused(
        resp,
        StatusCode::TOO_MANY_REQUESTS,
        "too many unexpired jtis from this client",
        "over the client's share",
    )
    .await;

    // A replay is still answered as a replay, not hidden behind the quota.
    let resp = send_signed(&h, &flooder, &material, &first).await;
    assert_refused(resp, StatusCode::UNAUTHORIZED, "already used", "replay").await;

    // Another client is not affected, up to its own share.
    for _ in 0..3 {
        let resp = send_signed(&h, &other, &material, &request_claims(&h, other_id)).await;
        assert_eq!(resp.status(), StatusCode::OK, "the other client");
    }
    let resp = send_signed(&h, &other, &material, &request_claims(&h, other_id)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn made_up_kids_cost_pdnd_at_most_the_lookup_limit() {
    const LIMIT: u32 = 3;
    let h = Harness::start_with(|c| {
        c.eservices.anagrafe.modi.request_integrity = RequestIntegrity::IntegrityRest02;
        c.modi.kid_lookups_per_minute = LIMIT;
    })
    .await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let client = h.env.data.client.client_id.clone();
    let stats = h.env.token_stats.clone();
    let base = stats.key_requests();

    // The registered key: one lookup, then cached.
    let registered = h.client_material();
    let resp = send_signed(&h, &voucher, &registered, &request_claims(&h, &client)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(stats.key_requests() - base, 1);

    // The same unknown kid twice: PDND is asked once.
    let stranger = gateway::pdnd::jwk::RsaPrivateKey::generate().expect("rsa key");
    let pem = stranger.to_pem();
    let forged = |kid: String| {
        SigningMaterial::with_kid(pem.as_bytes(), kid, SigningAlgorithm::RS256).expect("material")
    };
    let repeated = forged(format!("forged-{}", uuid::Uuid::new_v4().simple()));
    for case in ["first", "second"] {
        let resp = send_signed(&h, &voucher, &repeated, &request_claims(&h, &client)).await;
        assert_refused(resp, StatusCode::UNAUTHORIZED, "unknown key id", case).await;
    }
    assert_eq!(
        stats.key_requests() - base,
        2,
        "an unknown kid is remembered"
    );

    // A new kid per request: the rest of the bucket reaches PDND, then 503 + Retry-After
    // without any outbound request.
    let mut unknown = 0;
    let mut throttled = 0;
    for _ in 0..10 {
        let material = forged(format!("forged-{}", uuid::Uuid::new_v4().simple()));
        let resp = send_signed(&h, &voucher, &material, &request_claims(&h, &client)).await;
        match resp.status() {
            StatusCode::UNAUTHORIZED => unknown += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let retry_after: u64 = header(&resp, "retry-after")
                    .and_then(|v| v.parse().ok())
                    .expect("Retry-After in seconds");
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                assert_eq!(
                    header(&resp, "content-type").as_deref(),
                    Some("application/problem+json")
                );
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let lookups = stats.key_requests() - base;
    assert!(
        lookups <= u64::from(LIMIT),
        "{lookups} lookups for a limit of {LIMIT}"
    );
    assert_eq!(lookups, 2 + unknown, "every 401 was one lookup, no 503 was");
    assert!(throttled >= 7, "{throttled} throttled");

    // Callers whose key is cached are not affected by the flood.
    let resp = send_signed(&h, &voucher, &registered, &request_claims(&h, &client)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(stats.key_requests() - base, lookups);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_within_the_deadline() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start_with(|c| {
        c.eservices.anagrafe.modi.request_integrity = RequestIntegrity::IntegrityRest01;
        c.server.body_read_timeout_ms = 500;
    })
    .await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;

    // Headers announcing 200 bytes, then 16 of them, then nothing.
    let mut stream = tokio::net::TcpStream::connect(h.env.running.public)
        .await
        .expect("connect");
    let head = format!(
        "POST {RESIDENZA} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {voucher}\r\n\
         Content-Type: {JSON}\r\nDigest: SHA-256=AAAA\r\nAgid-JWT-Signature: a.b.c\r\n\
         Content-Length: 200\r\n\r\n{{\"codiceFiscale\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");

    // The gateway answers and closes on its own; the bound here only keeps a regression
    // from hanging the suite.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no answer: the stalled body holds the connection"
    );
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("did not arrive within 500 ms"), "{answer}");

    // The gateway keeps serving.
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&voucher),
            &json!({ "codiceFiscale": h.sample_cf() }),
        )
        .await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "agid-jwt-signature",
        "an unsigned request is still checked",
    )
    .await;
}
