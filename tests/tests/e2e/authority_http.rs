//! The local PDND authority over HTTP: PDND's token response, PDND's opaque refusal, its JWKS
//! and the key lookup. The rule-by-rule checks are unit tests of `pdnd::authority`.

use e2e::Harness;
use gateway::pdnd::client_assertion::{
    ClientAssertionBuilder, TokenRequest, CLIENT_ASSERTION_TYPE,
};
use reqwest::StatusCode;
use serde_json::Value;

fn form(h: &Harness, purpose: &str, tweak: impl FnOnce(&mut TokenRequest)) -> TokenRequest {
    let client = h.env.config.client.as_ref().expect("dev client");
    let builder = ClientAssertionBuilder {
        client_id: client.client_id.clone(),
        audience: h.env.config.pdnd.client_assertion_audience.clone(),
        purpose_id: Some(purpose.to_owned()),
        digest: None,
        lifetime_secs: 300,
    };
    let signed = builder
        .sign(&h.env.data.client_key, e2e::now())
        .expect("signed");
    let mut req = TokenRequest::new(&client.client_id, &signed);
    tweak(&mut req);
    req
}

async fn post(h: &Harness, body: &TokenRequest) -> reqwest::Response {
    h.http
        .post(h.authority("/token.oauth2"))
        .form(body)
        .send()
        .await
        .expect("sent")
}

async fn assert_pdnd_refusal(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "015-0008", "{body}");
    assert_eq!(body["status"], 400);
}

#[tokio::test]
async fn token_endpoint_issues_pdnd_shaped_answers() {
    let h = Harness::start().await;
    let resp = post(
        &h,
        &form(&h, gateway::dev::sample::ANAGRAFE_FULL.purpose_id, |_| {}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        e2e::header(&resp, "cache-control").as_deref(),
        Some("no-cache, no-store")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let token = body["access_token"].as_str().expect("token");
    let (header, claims) =
        gateway::pdnd::client_assertion::decode_unverified(token).expect("decodes");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], h.authority_kid());
    assert_eq!(
        claims["aud"],
        h.env.config.eservices.anagrafe.audiences.join(",")
    );
    assert_eq!(claims["nbf"], claims["iat"]);
}

#[tokio::test]
async fn refusals_are_pdnd_opaque_400() {
    let h = Harness::start().await;
    let p = gateway::dev::sample::ANAGRAFE_FULL.purpose_id;
    assert_pdnd_refusal(post(&h, &form(&h, p, |f| f.grant_type = "password".into())).await).await;
    assert_pdnd_refusal(post(&h, &form(&h, p, |f| f.client_assertion_type = "jwt".into())).await)
        .await;
    assert_pdnd_refusal(post(&h, &form(&h, p, |f| f.client_assertion = "x.y.z".into())).await)
        .await;
    let unregistered = uuid::Uuid::new_v4().to_string();
    assert_pdnd_refusal(post(&h, &form(&h, &unregistered, |_| {})).await).await;
    // Not even a form.
    let resp = h
        .http
        .post(h.authority("/token.oauth2"))
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_pdnd_refusal(resp).await;
    let resp = h
        .http
        .post(h.authority("/token.oauth2"))
        .form(&[
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("sent");
    assert_pdnd_refusal(resp).await;
}

#[tokio::test]
async fn jwks_and_key_lookup() {
    let h = Harness::start().await;
    let jwks: Value = h
        .http
        .get(h.authority("/.well-known/jwks.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&h.authority_kid().as_str()), "{jwks}");
    let client_kid = h.env.data.client.kid.clone();
    // Like the PDND API, /keys answers the voucher of the API Interop client `dev` registers.
    let api = &h.env.data.api_client;
    let builder = ClientAssertionBuilder {
        client_id: api.client_id.clone(),
        audience: h.env.config.pdnd.client_assertion_audience.clone(),
        purpose_id: None,
        digest: None,
        lifetime_secs: 300,
    };
    let signed = builder
        .sign(&h.env.data.api_client_key, e2e::now())
        .expect("signed");
    let m2m: Value = post(&h, &TokenRequest::new(&api.client_id, &signed))
        .await
        .json()
        .await
        .expect("json");
    let bearer = format!("Bearer {}", m2m["access_token"].as_str().expect("token"));
    let resp = h
        .http
        .get(h.authority(&format!("/keys/{client_kid}")))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let jwk: Value = resp.json().await.expect("json");
    assert_eq!(jwk["kid"], client_kid);
    assert_eq!(jwk["kty"], "RSA");
    let resp = h
        .http
        .get(h.authority("/keys/unknown"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Re-signs a client assertion with its header changed (claims untouched).
fn with_header(
    assertion: &str,
    key: &gateway::pdnd::jwk::RsaPrivateKey,
    edit: impl FnOnce(&mut Value),
) -> String {
    let (mut header, claims) =
        gateway::pdnd::client_assertion::decode_unverified(assertion).expect("decodes");
    edit(&mut header);
    gateway::pdnd::jws::sign_rs256(&header, &claims, key).expect("signed")
}

#[tokio::test]
async fn crit_header_refused_as_pdnd_does() {
    let h = Harness::start().await;
    let p = gateway::dev::sample::ANAGRAFE_FULL.purpose_id;
    let key = &h.env.data.client_key;
    let base = form(&h, p, |_| {});
    for crit in [
        serde_json::json!(["x-ext"]),
        serde_json::json!(["exp"]),
        serde_json::json!([]),
        serde_json::json!("b64"),
    ] {
        let assertion = with_header(&base.client_assertion, key, |hd| {
            hd["crit"] = crit.clone();
            hd["x-ext"] = serde_json::json!(1);
        });
        let req = form(&h, p, |f| f.client_assertion = assertion);
        assert_pdnd_refusal(post(&h, &req).await).await;
    }
    // jose implements `b64` (RFC 7797), so PDND accepts it as critical when it is `true`.
    let assertion = with_header(&base.client_assertion, key, |hd| {
        hd["crit"] = serde_json::json!(["b64"]);
        hd["b64"] = serde_json::json!(true);
    });
    let req = form(&h, p, |f| f.client_assertion = assertion);
    assert_eq!(post(&h, &req).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_client_assertion_with_a_purpose_is_refused() {
    let h = Harness::start().await;
    let api = &h.env.data.api_client;
    let assertion = |purpose_id: Option<&str>| {
        ClientAssertionBuilder {
            client_id: api.client_id.clone(),
            audience: h.env.config.pdnd.client_assertion_audience.clone(),
            purpose_id: purpose_id.map(str::to_owned),
            digest: None,
            lifetime_secs: 300,
        }
        .sign(&h.env.data.api_client_key, e2e::now())
        .expect("signed")
    };
    let with_purpose = assertion(Some(gateway::dev::sample::ANAGRAFE_FULL.purpose_id));
    assert_pdnd_refusal(post(&h, &TokenRequest::new(&api.client_id, &with_purpose)).await).await;
    // Without one it gets its M2M voucher.
    let without = assertion(None);
    let resp = post(&h, &TokenRequest::new(&api.client_id, &without)).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
