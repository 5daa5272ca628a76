//! The local authority's PDND API `GET /keys/{kid}` asks, like PDND, for the voucher of an API
//! Interop (M2M) client: none, a malformed one or an e-service voucher get 401 problem+json;
//! the M2M voucher `dev` registers (client assertion without purposeId) gets the key. The
//! gateway's own lookups (INTEGRITY_REST_02, AUDIT_REST_02) go through it in tests/modi.rs.

use e2e::Harness;
use gateway::dev::sample;
use gateway::pdnd::client_assertion::{decode_unverified, ClientAssertionBuilder, TokenRequest};
use reqwest::StatusCode;
use serde_json::Value;

/// Asks the authority's token endpoint for a voucher of `client_id` signed with `key`, with
/// the given purpose (none for an API client).
async fn token(
    h: &Harness,
    client_id: &str,
    key: &gateway::pdnd::jwk::RsaPrivateKey,
    purpose: Option<&str>,
) -> reqwest::Response {
    let builder = ClientAssertionBuilder {
        client_id: client_id.to_owned(),
        audience: h.env.config.pdnd.client_assertion_audience.clone(),
        purpose_id: purpose.map(str::to_owned),
        digest: None,
        lifetime_secs: 300,
    };
    let signed = builder.sign(key, e2e::now()).expect("signed");
    h.http
        .post(h.authority("/token.oauth2"))
        .form(&TokenRequest::new(client_id, &signed))
        .send()
        .await
        .expect("sent")
}

async fn m2m_voucher(h: &Harness) -> String {
    let resp = token(
        h,
        &h.env.data.api_client.client_id,
        &h.env.data.api_client_key,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn get_key(h: &Harness, kid: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = h.http.get(h.authority(&format!("/keys/{kid}")));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("sent")
}

async fn assert_unauthorized(resp: reqwest::Response, case: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{case}"
    );
    assert!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "{case}"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], 401, "{case}: {body}");
}

#[tokio::test]
async fn dev_registers_an_api_client_and_configures_the_gateway_with_it() {
    let h = Harness::start().await;
    let api = &h.env.data.api_client;
    assert_ne!(api.client_id, h.env.data.client.client_id);
    assert_eq!(
        h.env.config.pdnd.api_client_id.as_deref(),
        Some(api.client_id.as_str())
    );
    assert_eq!(
        h.env.config.pdnd.api_key_file.as_deref(),
        Some(h.env.data.root.join(&api.key_file).as_path())
    );

    let voucher = m2m_voucher(&h).await;
    let (header, claims) = decode_unverified(&voucher).expect("decodes");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], h.authority_kid());
    assert_eq!(claims["aud"], gateway::dev::m2m_audience(&h.env.config));
    assert_eq!(claims["aud"], "dev.interop.local/m2m");
    assert_eq!(claims["role"], "m2m");
    assert_eq!(claims["client_id"], api.client_id.as_str());
    assert_eq!(
        claims["organizationId"],
        h.env.config.comune.producer_id.clone().unwrap_or_default()
    );
    assert!(claims.get("purposeId").is_none(), "{claims}");
    assert!(claims.get("eserviceId").is_none(), "{claims}");

    // The sample consumer client still needs a purpose.
    let resp = token(
        &h,
        &h.env.data.client.client_id,
        &h.env.data.client_key,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn keys_endpoint_requires_an_m2m_voucher() {
    let h = Harness::start().await;
    let kid = h.env.data.client.kid.clone();

    assert_unauthorized(get_key(&h, &kid, None).await, "no voucher").await;
    assert_unauthorized(
        get_key(&h, &kid, Some("Basic dXNlcjpwYXNz")).await,
        "not a bearer",
    )
    .await;
    assert_unauthorized(
        get_key(&h, &kid, Some("Bearer not.a.voucher")).await,
        "garbage bearer",
    )
    .await;
    let eservice = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    assert_unauthorized(
        get_key(&h, &kid, Some(&format!("Bearer {eservice}"))).await,
        "e-service voucher",
    )
    .await;

    let m2m = m2m_voucher(&h).await;
    let auth = format!("Bearer {m2m}");
    let resp = get_key(&h, &kid, Some(&auth)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let jwk: Value = resp.json().await.expect("json");
    assert_eq!(jwk["kid"], kid);
    assert_eq!(jwk["kty"], "RSA");
    // A tampered M2M voucher is refused like none.
    // (one signature character changed: still base64url, no longer the authority's signature)
    let at = m2m.rfind('.').expect("three segments") + 1;
    let flipped = if &m2m[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &m2m[..at], &m2m[at + 1..]);
    assert_unauthorized(
        get_key(&h, &kid, Some(&format!("Bearer {tampered}"))).await,
        "tampered m2m voucher",
    )
    .await;
    // Authenticated, but a kid nobody registered.
    let resp = get_key(&h, "unknown", Some(&auth)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
