//! The gateway's voucher check over real HTTP: every way a voucher can be wrong gets 401
//! problem+json with a bearer challenge, and the right ones get through.

use e2e::{now, raw_jws, sign_rs256, voucher_header, Harness};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PATH: &str = "/anagrafe/v1/residenza";

async fn call(h: &Harness, auth: Option<String>, cf: &str) -> reqwest::Response {
    let mut req = h
        .http
        .post(h.public(PATH))
        .json(&json!({ "codiceFiscale": cf }));
    if let Some(value) = auth {
        req = req.header("Authorization", value);
    }
    req.send().await.expect("request sent")
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

#[tokio::test]
async fn rejected_vouchers_get_401_problem_with_challenge() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let t = now();
    let key = h.authority_key_pem();
    let kid = h.authority_kid();
    let good = h.good_claims(t);
    let sign = |claims: &Value| sign_rs256(voucher_header(&kid), claims, &key);
    let foreign = gateway::pdnd::jwk::RsaPrivateKey::generate().expect("key");
    let public_pem = h
        .env
        .data
        .authority_key
        .public()
        .to_pem()
        .expect("public pem");
    let valid = sign(&good);

    let mut cases: Vec<(&str, Option<String>)> = Vec::new();
    cases.push(("no Authorization header", None));
    cases.push(("Basic scheme", Some("Basic dXNlcjpwYXNz".into())));
    cases.push(("Bearer without a token", Some("Bearer ".into())));
    let alg_none = raw_jws(&json!({"alg":"none","typ":"at+jwt","kid":kid}), &good, b"");
    cases.push(("alg none", Some(format!("Bearer {alg_none}"))));
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .expect("hs256");
    cases.push((
        "HS256 with the public key as secret",
        Some(format!("Bearer {hs256}")),
    ));
    let foreign_same_kid = sign_rs256(voucher_header(&kid), &good, &foreign.to_pem());
    cases.push((
        "RS256 by a key not in the JWKS, our kid",
        Some(format!("Bearer {foreign_same_kid}")),
    ));
    let foreign_own_kid = sign_rs256(voucher_header(&foreign.kid()), &good, &foreign.to_pem());
    cases.push((
        "RS256 by a key not in the JWKS, its kid",
        Some(format!("Bearer {foreign_own_kid}")),
    ));
    let mut no_kid = voucher_header(&kid);
    no_kid.kid = None;
    cases.push((
        "kid missing",
        Some(format!("Bearer {}", sign_rs256(no_kid, &good, &key))),
    ));
    let mut jwt_typ = voucher_header(&kid);
    jwt_typ.typ = Some("JWT".into());
    cases.push((
        "typ JWT",
        Some(format!("Bearer {}", sign_rs256(jwt_typ, &good, &key))),
    ));
    let mut no_typ = voucher_header(&kid);
    no_typ.typ = None;
    cases.push((
        "typ missing",
        Some(format!("Bearer {}", sign_rs256(no_typ, &good, &key))),
    ));
    cases.push((
        "wrong iss",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "iss", json!("uat.interop.pagopa.it")))
        )),
    ));
    let tributi_aud = h.env.config.eservices.tributi.audiences[0].clone();
    cases.push((
        "aud of another e-service",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "aud", json!(tributi_aud)))
        )),
    ));
    cases.push((
        "aud array without ours",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "aud", json!(["a", "b"])))
        )),
    ));
    cases.push((
        "aud missing",
        Some(format!("Bearer {}", sign(&without(good.clone(), "aud")))),
    ));
    cases.push((
        "expired beyond leeway",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "exp", json!(t - 120)))
        )),
    ));
    cases.push((
        "nbf in the future beyond leeway",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "nbf", json!(t + 300)))
        )),
    ));
    cases.push((
        "iat in the future beyond leeway",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "iat", json!(t + 300)))
        )),
    ));
    cases.push((
        "exp missing",
        Some(format!("Bearer {}", sign(&without(good.clone(), "exp")))),
    ));
    cases.push((
        "exp as a string",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "exp", json!((t + 600).to_string())))
        )),
    ));
    cases.push((
        "purposeId missing",
        Some(format!(
            "Bearer {}",
            sign(&without(good.clone(), "purposeId"))
        )),
    ));
    cases.push((
        "purposeId empty",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "purposeId", json!("")))
        )),
    ));
    let mut crit = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    crit["crit"] = json!(["x-pdnd-ext"]);
    crit["x-pdnd-ext"] = json!(true);
    let signed =
        gateway::pdnd::jws::sign_rs256(&crit, &good, &h.env.data.authority_key).expect("signed");
    cases.push(("crit naming an extension", Some(format!("Bearer {signed}"))));
    crit["crit"] = json!([]);
    let signed =
        gateway::pdnd::jws::sign_rs256(&crit, &good, &h.env.data.authority_key).expect("signed");
    cases.push(("crit an empty list", Some(format!("Bearer {signed}"))));
    cases.push((
        "lifetime of two days",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "exp", json!(t + 2 * 86_400)))
        )),
    ));
    cases.push((
        "nbf two days before exp",
        Some(format!(
            "Bearer {}",
            sign(&with(good.clone(), "nbf", json!(t + 600 - 2 * 86_400)))
        )),
    ));
    let other_id = "0f0e0d0c-0b0a-4900-8800-070605040302";
    for claim in ["producerId", "eserviceId", "descriptorId"] {
        cases.push((
            claim,
            Some(format!(
                "Bearer {}",
                sign(&with(good.clone(), claim, json!(other_id)))
            )),
        ));
        cases.push((
            claim,
            Some(format!("Bearer {}", sign(&without(good.clone(), claim)))),
        ));
    }
    cases.push(("malformed base64", Some("Bearer e30.e30$$.c2ln".into())));
    let not_json = format!("{}.{}.{}", "bm90IGpzb24", "bm90IGpzb24", "c2ln");
    cases.push((
        "header and claims not JSON",
        Some(format!("Bearer {not_json}")),
    ));
    let mut parts = valid.split('.');
    let two = format!(
        "{}.{}",
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("")
    );
    cases.push(("two segments", Some(format!("Bearer {two}"))));
    cases.push((
        "64 KiB token",
        Some(format!("Bearer {}", "a".repeat(64 * 1024))),
    ));
    // A valid signature over other claims: swap the payload.
    let other = sign(&with(
        good.clone(),
        "purposeId",
        json!(gateway::dev::sample::TRIBUTI_FULL.purpose_id),
    ));
    let v: Vec<&str> = valid.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    cases.push((
        "payload swapped under another signature",
        Some(format!("Bearer {}.{}.{}", v[0], o[1], v[2])),
    ));

    assert!(cases.len() >= 20, "at least 20 rejected vouchers");
    let mut failures = Vec::new();
    for (name, auth) in &cases {
        let resp = call(&h, auth.clone(), &cf).await;
        let status = resp.status();
        let challenge = e2e::header(&resp, "www-authenticate")
            .as_deref()
            .unwrap_or("")
            .to_owned();
        let ctype = e2e::header(&resp, "content-type")
            .as_deref()
            .unwrap_or("")
            .to_owned();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let ok = status == StatusCode::UNAUTHORIZED
            && challenge.starts_with("Bearer")
            && ctype == "application/problem+json"
            && body["status"] == 401
            && body.get("detail").is_some();
        if !ok {
            failures.push(format!(
                "{name}: {status} challenge={challenge:?} type={ctype:?} body={body}"
            ));
        }
        // Nothing about the cause leaks to the caller.
        let text = body.to_string();
        for leak in ["kid", "signature", "expired", "audience", "issuer"] {
            if text.to_lowercase().contains(leak) {
                failures.push(format!("{name}: body reveals `{leak}`: {text}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn challenge_says_invalid_token_only_for_a_bad_token() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let none = call(&h, None, &cf).await;
    let challenge = none
        .headers()
        .get("www-authenticate")
        .expect("challenge")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!challenge.contains("error="), "{challenge}");
    let bad = call(&h, Some("Bearer abc.def.ghi".into()), &cf).await;
    let challenge = bad
        .headers()
        .get("www-authenticate")
        .expect("challenge")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

#[tokio::test]
async fn accepted_vouchers() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let t = now();
    let key = h.authority_key_pem();
    let kid = h.authority_kid();
    let good = h.good_claims(t);
    let ours = h.env.config.eservices.anagrafe.audiences[0].clone();
    let sign = |claims: &Value| sign_rs256(voucher_header(&kid), claims, &key);
    let cases = [
        (
            "as issued by the authority",
            h.voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
                .await,
        ),
        (
            "aud comma-joined with another",
            sign(&with(
                good.clone(),
                "aud",
                json!(format!("https://other.example/v1,{ours}")),
            )),
        ),
        (
            "aud as an array containing ours",
            sign(&with(
                good.clone(),
                "aud",
                json!(["https://other.example/v1", ours]),
            )),
        ),
        (
            "exp passed but within leeway",
            sign(&with(good.clone(), "exp", json!(t - 30))),
        ),
        (
            "nbf ahead but within leeway",
            sign(&with(good.clone(), "nbf", json!(t + 30))),
        ),
    ];
    for (name, token) in &cases {
        let resp = call(&h, Some(format!("Bearer {token}")), &cf).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{name}: {:?}",
            resp.text().await
        );
    }
    // A voucher is reusable until it expires: no replay check on vouchers.
    let resp = call(&h, Some(format!("Bearer {}", cases[0].1)), &cf).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The lowercase scheme is accepted too (RFC 7235: case-insensitive).
    let resp = call(&h, Some(format!("bearer {}", cases[0].1)), &cf).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn voucher_for_tributi_does_not_open_anagrafe() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let tributi = h
        .voucher(gateway::dev::sample::TRIBUTI_FULL.purpose_id)
        .await;
    let resp = call(&h, Some(format!("Bearer {tributi}")), &cf).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// The ids the gateway is configured with are checked on every voucher, not only when a
/// purpose record repeats them: the authority's voucher, valid for the gateway that shares
/// its ids, is refused by a gateway configured with another producer, e-service or version.
#[tokio::test]
async fn authority_vouchers_for_other_configured_ids_get_401() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let voucher = h
        .voucher(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        .await;
    let ok = call(&h, Some(format!("Bearer {voucher}")), &cf).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let other = "0f0e0d0c-0b0a-4900-8800-070605040302".to_owned();
    type Tweak = Box<dyn FnOnce(&mut gateway::config::Config)>;
    let tweaks: [(&str, Tweak); 3] = [
        ("comune.producer_id", {
            let other = other.clone();
            Box::new(move |c| c.comune.producer_id = Some(other))
        }),
        ("eservices.anagrafe.eservice_id", {
            let other = other.clone();
            Box::new(move |c| c.eservices.anagrafe.eservice_id = Some(other))
        }),
        ("eservices.anagrafe.descriptor_id", {
            let other = other.clone();
            Box::new(move |c| c.eservices.anagrafe.descriptor_id = Some(other))
        }),
    ];
    for (key, tweak) in tweaks {
        let gateway = h.start_consumer(tweak).await;
        let resp = gateway
            .http
            .post(gateway.public(PATH))
            .bearer_auth(&voucher)
            .json(&json!({ "codiceFiscale": cf }))
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{key}");
        let challenge = e2e::header(&resp, "www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{key}: {challenge}");
    }
}
