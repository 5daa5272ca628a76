//! The ModI security patterns over real HTTP: signed responses checked by independent
//! implementations (josekit for the JWS, OpenSSL for the x5c chain, OpenSSL's SHA-256 for the
//! Digest), INTEGRITY_REST_01/02 requests accepted and refused one rule at a time,
//! AUDIT_REST_01/02 tracking evidence bound to a voucher obtained through the voucher CLI's code
//! path and landing in the audit trail, and `verify-response` on a saved answer.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use e2e::{now, Harness};
use gateway::config::{AuditPattern, RequestIntegrity};
use gateway::dev::sample;
use gateway::modi::{self, SignatureClaims, SigningAlgorithm, SigningMaterial, TrackingClaims};
use gateway::provider::audit::{AuditQuery, AuditStore};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContext, X509};
use reqwest::StatusCode;
use serde_json::{json, Value};

const RESIDENZA: &str = "/anagrafe/v1/residenza";
const JSON: &str = "application/json";

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn b64url_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

fn jws_header(jws: &str) -> Value {
    b64url_json(jws.split('.').next().expect("header segment"))
}

/// `SHA-256=<base64>` computed with OpenSSL, not with the gateway's code.
fn openssl_digest(body: &[u8]) -> String {
    format!("SHA-256={}", STANDARD.encode(openssl::sha::sha256(body)))
}

/// Does OpenSSL chain `leaf` (with `intermediates`) to `ca`?
fn chains_to(ca_pem: &[u8], leaf: &X509, intermediates: &[X509]) -> bool {
    let mut builder = X509StoreBuilder::new().expect("store");
    for ca in X509::stack_from_pem(ca_pem).expect("ca pem") {
        builder.add_cert(ca).expect("add ca");
    }
    let store = builder.build();
    let mut chain = Stack::new().expect("stack");
    for cert in intermediates {
        chain.push(cert.clone()).expect("push");
    }
    let mut ctx = X509StoreContext::new().expect("ctx");
    ctx.init(&store, leaf, &chain, |c| c.verify_cert())
        .expect("verify call")
}

async fn problem(resp: reqwest::Response) -> (StatusCode, String, Value) {
    let status = resp.status();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

/// Asserts a problem+json refusal with `status` whose detail mentions `needle`.
async fn assert_refused(resp: reqwest::Response, status: StatusCode, needle: &str, case: &str) {
    let (got, content_type, body) = problem(resp).await;
    assert_eq!(got, status, "{case}: {body}");
    assert_eq!(content_type, "application/problem+json", "{case}");
    assert_eq!(body["status"], status.as_u16(), "{case}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "{case}: detail {detail:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn responses_are_signed_and_verify_with_independent_implementations() {
    let h = Harness::start().await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let body = json!({ "codiceFiscale": h.sample_cf() });
    let resp = h.post(RESIDENZA, Some(&voucher), &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let digest = header(&resp, "digest").expect("Digest header");
    let jws = header(&resp, "agid-jwt-signature").expect("Agid-JWT-Signature header");
    let content_type = header(&resp, "content-type").expect("content-type");
    let first_body = resp.bytes().await.expect("body").to_vec();

    // Digest is SHA-256 of the exact body bytes (OpenSSL's hash, not ours).
    assert_eq!(digest, openssl_digest(&first_body));

    // Header: typ JWT, RS256 (the default), x5c = leaf then the dev CA.
    let jose = jws_header(&jws);
    assert_eq!(jose["typ"], "JWT");
    assert_eq!(jose["alg"], "RS256");
    let x5c: Vec<X509> = jose["x5c"]
        .as_array()
        .expect("x5c array")
        .iter()
        .map(|c| {
            X509::from_der(&STANDARD.decode(c.as_str().expect("str")).expect("b64")).expect("der")
        })
        .collect();
    assert_eq!(x5c.len(), 2);

    // OpenSSL chains the leaf to the dev CA the gateway was given, and not to a stranger's CA.
    let pki = h.modi_pki();
    let ca_pem = std::fs::read(&pki.ca_cert).expect("dev CA");
    assert!(chains_to(&ca_pem, &x5c[0], &x5c[1..]));
    let stranger_dir = e2e::temp_dir("stranger");
    let stranger = modi::generate_dev_pki(stranger_dir.path(), "stranger").expect("stranger PKI");
    let stranger_ca = std::fs::read(&stranger.ca_cert).expect("stranger CA");
    assert!(!chains_to(&stranger_ca, &x5c[0], &x5c[1..]));

    // josekit verifies the signature jsonwebtoken made, with the leaf's public key.
    let spki = x5c[0]
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .expect("leaf public key");
    let verifier = josekit::jws::RS256
        .verifier_from_der(&spki)
        .expect("josekit verifier");
    let (payload, header_seen) =
        josekit::jwt::decode_with_verifier(&jws, &verifier).expect("josekit verifies");
    assert_eq!(header_seen.token_type(), Some("JWT"));
    let client_id = &h.env.data.client.client_id;
    assert_eq!(
        payload.claim("aud"),
        Some(&json!(client_id)),
        "aud is the caller's clientId"
    );
    assert_eq!(payload.claim("iss"), Some(&json!(h.env.config.modi.issuer)));
    assert_eq!(payload.claim("sub"), Some(&json!(h.env.config.modi.issuer)));
    assert_eq!(
        payload.claim("signed_headers"),
        Some(&json!([{ "digest": digest }, { "content-type": content_type }]))
    );
    let claim_i64 = |name: &str| payload.claim(name).and_then(Value::as_i64).expect(name);
    let (iat, nbf, exp) = (claim_i64("iat"), claim_i64("nbf"), claim_i64("exp"));
    assert_eq!(exp - iat, h.env.config.modi.signature_lifetime_secs);
    assert_eq!(nbf, iat);
    assert!((iat - now()).abs() <= 5, "iat {iat} is not now");
    let first_jti = payload.jwt_id().expect("jti").to_owned();

    // A flipped signature byte is refused by josekit as well (the check can fail).
    let mut tampered = jws.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(josekit::jwt::decode_with_verifier(&tampered, &verifier).is_err());

    // The same question again is a cache hit: the body is byte-identical, so is its Digest,
    // while the signature is a new one (fresh jti).
    let resp = h.post(RESIDENZA, Some(&voucher), &body).await;
    assert_eq!(
        header(&resp, "cache-status").as_deref(),
        Some("pdnd-gateway; hit")
    );
    assert_eq!(header(&resp, "digest").as_deref(), Some(digest.as_str()));
    let second_jws = header(&resp, "agid-jwt-signature").expect("signed");
    let second_body = resp.bytes().await.expect("body").to_vec();
    assert_eq!(second_body, first_body);
    let (second, _) = josekit::jwt::decode_with_verifier(&second_jws, &verifier).expect("verifies");
    assert_ne!(second.jwt_id(), Some(first_jti.as_str()));

    // Refusals after the voucher check are signed too (here a 403 of the purpose stage).
    let limited = h.voucher(sample::ANAGRAFE_VERIFICA.purpose_id).await;
    let resp = h.post(RESIDENZA, Some(&limited), &body).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let digest = header(&resp, "digest").expect("403 has a Digest");
    assert!(header(&resp, "agid-jwt-signature").is_some());
    let bytes = resp.bytes().await.expect("body");
    assert_eq!(digest, openssl_digest(&bytes));

    // Without an accepted voucher there is nobody to address a signature to: none.
    let resp = h.post(RESIDENZA, None, &body).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&resp, "agid-jwt-signature").is_none());
    assert!(header(&resp, "digest").is_none());
}

#[tokio::test]
async fn sign_responses_false_leaves_answers_unsigned() {
    let h = Harness::start_with(|c| c.eservices.anagrafe.modi.sign_responses = false).await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let resp = h
        .post(
            RESIDENZA,
            Some(&voucher),
            &json!({ "codiceFiscale": h.sample_cf() }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "agid-jwt-signature").is_none());
    assert!(header(&resp, "digest").is_none());
    // Tributi keeps the default and signs.
    let voucher = h.voucher(sample::TRIBUTI_FULL.purpose_id).await;
    let resp = h
        .post(
            "/tributi/v1/regolarita",
            Some(&voucher),
            &json!({ "soggetto": h.sample_cf() }),
        )
        .await;
    assert!(
        header(&resp, "agid-jwt-signature").is_some(),
        "{}",
        resp.status()
    );
}

/// Claims of a request signature the gateway accepts for anagrafe.
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

/// A signed request: (Digest, Agid-JWT-Signature) over `body` with Content-Type JSON.
fn sign_request(
    material: &SigningMaterial,
    claims: &SignatureClaims,
    body: &[u8],
) -> (String, String) {
    let signed = modi::sign_message(material, claims, Some(JSON), None, body).expect("signs");
    (signed.digest, signed.agid_jwt_signature)
}

async fn send_signed(
    h: &Harness,
    voucher: &str,
    digest: &str,
    signature: &str,
    content_type: &str,
    body: &[u8],
) -> reqwest::Response {
    let auth = format!("Bearer {voucher}");
    h.post_raw(
        RESIDENZA,
        &[
            ("authorization", auth.as_str()),
            ("content-type", content_type),
            ("digest", digest),
            ("agid-jwt-signature", signature),
        ],
        body.to_vec(),
    )
    .await
}

#[tokio::test]
async fn integrity_rest_01_requests_accepted_and_refused() {
    let h = Harness::start_with(|c| {
        c.eservices.anagrafe.modi.request_integrity = RequestIntegrity::IntegrityRest01;
    })
    .await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let material = h
        .modi_pki()
        .signing_material(SigningAlgorithm::RS256)
        .expect("dev RSA identity");
    let body = serde_json::to_vec(&json!({ "codiceFiscale": h.sample_cf() })).expect("json");
    let client = h.env.data.client.client_id.clone();

    // Accepted: the handler still reads the body the stage consumed, and answers signed.
    let claims = request_claims(&h, &client);
    let (digest, signature) = sign_request(&material, &claims, &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "agid-jwt-signature").is_some());
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["residente"], true, "{answer}");

    // The identical request again: its jti was used.
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "already used",
        "replayed jti",
    )
    .await;

    // Also accepted: ES256 from the dev PKI's EC identity, chained to the same CA.
    let ec = h
        .modi_pki()
        .signing_material(SigningAlgorithm::ES256)
        .expect("dev EC identity");
    let (digest, signature) = sign_request(&ec, &request_claims(&h, &client), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_eq!(resp.status(), StatusCode::OK, "ES256 request");

    // Body changed after signing (a different codice fiscale, same headers).
    let (digest, signature) = sign_request(&material, &request_claims(&h, &client), &body);
    let other = serde_json::to_vec(&json!({ "codiceFiscale": h.env.samples[1].codice_fiscale }))
        .expect("json");
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &other).await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "digest does not match the body",
        "body changed",
    )
    .await;

    // A Digest of another algorithm, correctly computed and signed: SHA-256 is required.
    let sha512 = format!("SHA-512={}", STANDARD.encode(openssl::sha::sha512(&body)));
    let signature = modi::sign(
        &material,
        &request_claims(&h, &client),
        &[("digest", sha512.as_str()), ("content-type", JSON)],
    )
    .expect("signs");
    let resp = send_signed(&h, &voucher, &sha512, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "unsupported digest algorithm SHA-512",
        "SHA-512 digest",
    )
    .await;

    // signed_headers say one Content-Type, the request carries another.
    let (digest, signature) = sign_request(&material, &request_claims(&h, &client), &body);
    let resp = send_signed(
        &h,
        &voucher,
        &digest,
        &signature,
        "application/json; charset=utf-8",
        &body,
    )
    .await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "signed header content-type differs",
        "content-type mismatch",
    )
    .await;

    // Expired: valid for 200 s, ended beyond the 60 s leeway.
    let mut expired = request_claims(&h, &client);
    expired.iat -= 400;
    expired.nbf -= 400;
    expired.exp = expired.iat + 200;
    let (digest, signature) = sign_request(&material, &expired, &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "token expired",
        "expired signature",
    )
    .await;

    // Addressed to another e-service.
    let mut elsewhere = request_claims(&h, &client);
    elsewhere.aud = h.env.config.eservices.tributi.audiences[0].clone();
    let (digest, signature) = sign_request(&material, &elsewhere, &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(resp, StatusCode::UNAUTHORIZED, "audience", "wrong aud").await;

    // A certificate from a CA the gateway does not trust.
    let stranger_dir = e2e::temp_dir("stranger");
    let stranger = modi::generate_dev_pki(stranger_dir.path(), "stranger")
        .and_then(|p| p.signing_material(SigningAlgorithm::RS256))
        .expect("stranger identity");
    let (digest, signature) = sign_request(&stranger, &request_claims(&h, &client), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "certificate chain not trusted",
        "untrusted x5c",
    )
    .await;

    // No ModI headers at all where the e-service requires them.
    let resp = h
        .post(
            RESIDENZA,
            Some(&voucher),
            &json!({ "codiceFiscale": h.sample_cf() }),
        )
        .await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "agid-jwt-signature",
        "unsigned request",
    )
    .await;

    // A body over the handlers' 16 KiB limit is refused before any signature work.
    let big = vec![b' '; 17 * 1024];
    let (digest, signature) = sign_request(&material, &request_claims(&h, &client), &big);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &big).await;
    assert_refused(
        resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "16384 bytes",
        "oversized body",
    )
    .await;

    // None of the refused requests consumed the jti of a later good one, and the good path
    // still works after them.
    let (digest, signature) = sign_request(&material, &request_claims(&h, &client), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Tracking claims of the sample client for `purpose`.
fn evidence_claims(h: &Harness, aud: &str, user: &str, purpose: &str) -> TrackingClaims {
    let t = now();
    TrackingClaims {
        iss: h.env.data.client.client_id.clone(),
        aud: aud.to_owned(),
        user_id: user.to_owned(),
        user_location: "ufficio-anagrafe-3".to_owned(),
        loa: "substantial".to_owned(),
        iat: t,
        exp: t + 120,
        jti: uuid::Uuid::new_v4().to_string(),
        purpose_id: Some(purpose.to_owned()),
    }
}

/// A TrackingEvidence signed by the sample client's PDND key, for the full anagrafe purpose.
fn tracking_evidence(h: &Harness, aud: &str, user: &str) -> String {
    tracking_evidence_for(h, aud, user, sample::ANAGRAFE_FULL.purpose_id)
}

/// A TrackingEvidence signed by the sample client's PDND key, for `purpose`.
fn tracking_evidence_for(h: &Harness, aud: &str, user: &str, purpose: &str) -> String {
    modi::build_tracking_evidence(
        &h.client_material(),
        &evidence_claims(h, aud, user, purpose),
    )
    .expect("tracking evidence signs")
}

async fn send_with_evidence(
    h: &Harness,
    voucher: &str,
    evidence: Option<&str>,
    request_id: &str,
) -> reqwest::Response {
    let auth = format!("Bearer {voucher}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", JSON),
        ("x-request-id", request_id),
    ];
    if let Some(evidence) = evidence {
        // Mixed case on purpose: header names are case-insensitive.
        headers.push(("Agid-JWT-TrackingEvidence", evidence));
    }
    let body = serde_json::to_vec(&json!({ "codiceFiscale": h.sample_cf() })).expect("json");
    h.post_raw(RESIDENZA, &headers, body).await
}

#[tokio::test]
async fn audit_rest_02_end_to_end_into_the_audit_trail() {
    let h =
        Harness::start_with(|c| c.eservices.anagrafe.modi.audit = AuditPattern::AuditRest02).await;
    let aud = h.env.config.eservices.anagrafe.audiences[0].clone();
    let purpose = sample::ANAGRAFE_FULL.purpose_id;

    // The consumer side: evidence first, then a voucher bound to its digest (voucher CLI path).
    let evidence = tracking_evidence(&h, &aud, "utente-42");
    let digest = modi::tracking_evidence_digest(&evidence);
    assert_eq!(digest.len(), 64);
    let bound = h.voucher_with_digest(purpose, &digest).await;

    let request_id = format!("audit02-{}", uuid::Uuid::new_v4());
    let resp = send_with_evidence(&h, &bound, Some(&evidence), &request_id).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // The audit record carries who, in the consumer's domain, caused the request.
    let store = AuditStore::connect(&h.env.config.audit.url)
        .await
        .expect("audit store");
    let records = store
        .query(&AuditQuery {
            request_id: Some(request_id.clone()),
            ..Default::default()
        })
        .await
        .expect("query");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.status, 200);
    assert_eq!(record.user_id.as_deref(), Some("utente-42"));
    assert_eq!(record.user_location.as_deref(), Some("ufficio-anagrafe-3"));
    assert_eq!(record.loa.as_deref(), Some("substantial"));
    assert_eq!(
        record.client_id.as_deref(),
        Some(h.env.data.client.client_id.as_str())
    );

    // The same evidence again: its jti was used.
    let resp = send_with_evidence(&h, &bound, Some(&evidence), "audit02-replay").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "already used",
        "replayed evidence",
    )
    .await;

    // Another (valid, fresh) evidence with the voucher bound to the first one.
    let other = tracking_evidence(&h, &aud, "utente-43");
    let resp = send_with_evidence(&h, &bound, Some(&other), "audit02-other").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "not bound to the voucher digest",
        "digest mismatch",
    )
    .await;

    // A voucher whose digest was computed over the evidence plus a newline (PDND docs' bug).
    let fresh = tracking_evidence(&h, &aud, "utente-44");
    let newline = hex_sha256(format!("{fresh}\n").as_bytes());
    let wrong = h.voucher_with_digest(purpose, &newline).await;
    let resp = send_with_evidence(&h, &wrong, Some(&fresh), "audit02-newline").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "not bound",
        "digest of JWS + newline",
    )
    .await;

    // A voucher without any digest cannot vouch for evidence.
    let unbound = h.voucher(purpose).await;
    let resp = send_with_evidence(&h, &unbound, Some(&fresh), "audit02-unbound").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "not bound",
        "voucher without digest",
    )
    .await;

    // Required but missing.
    let resp = send_with_evidence(&h, &bound, None, "audit02-missing").await;
    assert_refused(
        resp,
        StatusCode::BAD_REQUEST,
        "agid-jwt-trackingevidence",
        "missing evidence",
    )
    .await;

    // Refusals are audited too, without tracking claims (nothing verified to record).
    let records = store
        .query(&AuditQuery {
            request_id: Some("audit02-missing".into()),
            ..Default::default()
        })
        .await
        .expect("query");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, 400);
    assert_eq!(records[0].user_id, None);
}

#[tokio::test]
async fn tracking_evidence_must_speak_for_the_voucher_client_and_purpose() {
    let h =
        Harness::start_with(|c| c.eservices.anagrafe.modi.audit = AuditPattern::AuditRest01).await;
    let aud = h.env.config.eservices.anagrafe.audiences[0].clone();
    let purpose = sample::ANAGRAFE_FULL.purpose_id;
    let voucher = h.voucher(purpose).await;
    let material = h.client_material();
    let sign = |claims: &TrackingClaims| {
        modi::build_tracking_evidence(&material, claims).expect("tracking evidence signs")
    };

    // iss = the voucher's client, purposeId = the voucher's: accepted.
    let good = sign(&evidence_claims(&h, &aud, "utente-1", purpose));
    let resp = send_with_evidence(&h, &voucher, Some(&good), "te-bound").await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Without purposeId: accepted (AgID does not require it; the voucher carries the purpose).
    let mut claims = evidence_claims(&h, &aud, "utente-2", purpose);
    claims.purpose_id = None;
    let resp = send_with_evidence(&h, &voucher, Some(&sign(&claims)), "te-no-purpose").await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Signed with the client's registered key but in another client's name.
    let mut claims = evidence_claims(&h, &aud, "utente-3", purpose);
    claims.iss = "0f0e0d0c-0b0a-4908-8706-050403020100".into();
    let resp = send_with_evidence(&h, &voucher, Some(&sign(&claims)), "te-other-iss").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "is not the voucher's client id",
        "iss of another client",
    )
    .await;

    // No iss at all.
    let t = now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(h.env.data.client.kid.clone());
    let no_iss = e2e::sign_rs256(
        header,
        &json!({
            "aud": aud, "iat": t, "exp": t + 60, "jti": uuid::Uuid::new_v4().to_string(),
            "userID": "utente-4", "userLocation": "x", "LoA": "low", "purposeId": purpose,
        }),
        &h.env.data.client_key.to_pem(),
    );
    let resp = send_with_evidence(&h, &voucher, Some(&no_iss), "te-no-iss").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "iss (absent) is not the voucher's client id",
        "evidence without iss",
    )
    .await;

    // Another purpose than the voucher's (one the same client holds, for verifica).
    let other = sample::ANAGRAFE_VERIFICA.purpose_id;
    let evidence = sign(&evidence_claims(&h, &aud, "utente-5", other));
    let resp = send_with_evidence(&h, &voucher, Some(&evidence), "te-other-purpose").await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "is not the voucher's purposeId",
        "purposeId of another purpose",
    )
    .await;

    // The refused requests did not burn the jti of a fresh good one.
    let good = sign(&evidence_claims(&h, &aud, "utente-6", purpose));
    let resp = send_with_evidence(&h, &voucher, Some(&good), "te-bound-again").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

fn hex_sha256(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn integrity_rest_02_and_audit_rest_01_with_pdnd_keys() {
    let h = Harness::start_with(|c| {
        c.eservices.anagrafe.modi.request_integrity = RequestIntegrity::IntegrityRest02;
        c.eservices.tributi.modi.audit = AuditPattern::AuditRest01;
    })
    .await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let client = h.env.data.client.client_id.clone();
    let material = h.client_material();
    let body = serde_json::to_vec(&json!({ "codiceFiscale": h.sample_cf() })).expect("json");

    // Accepted: kid resolved at the local authority's /keys/{kid}, iss = the voucher's client.
    let (digest, signature) = sign_request(&material, &request_claims(&h, &client), &body);
    assert_eq!(jws_header(&signature)["kid"], json!(h.env.data.client.kid));
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A kid PDND does not know.
    let stranger = gateway::pdnd::jwk::RsaPrivateKey::generate().expect("rsa key");
    let unknown = SigningMaterial::with_kid(
        stranger.to_pem().as_bytes(),
        stranger.kid(),
        SigningAlgorithm::RS256,
    )
    .expect("material");
    let (digest, signature) = sign_request(&unknown, &request_claims(&h, &client), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "unknown key id",
        "unknown kid",
    )
    .await;

    // The registered key, but signed as somebody else (iss is not the voucher's client).
    let (digest, signature) = sign_request(&material, &request_claims(&h, "another-client"), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "is not the voucher's client id",
        "iss mismatch",
    )
    .await;

    // An x5c-signed request where a PDND kid is required.
    let x5c = h
        .modi_pki()
        .signing_material(SigningAlgorithm::RS256)
        .expect("dev identity");
    let (digest, signature) = sign_request(&x5c, &request_claims(&h, &client), &body);
    let resp = send_signed(&h, &voucher, &digest, &signature, JSON, &body).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "JWS header carries no kid",
        "no kid",
    )
    .await;

    // AUDIT_REST_01 on tributi: valid evidence is enough, no voucher binding needed.
    let tributi_aud = h.env.config.eservices.tributi.audiences[0].clone();
    let tributi_voucher = h.voucher(sample::TRIBUTI_FULL.purpose_id).await;
    let resp = regolarita(
        &h,
        &tributi_voucher,
        &tracking_evidence_for(
            &h,
            &tributi_aud,
            "utente-7",
            sample::TRIBUTI_FULL.purpose_id,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Evidence addressed to anagrafe is not for tributi.
    let resp = regolarita(
        &h,
        &tributi_voucher,
        &tracking_evidence(
            &h,
            &h.env.config.eservices.anagrafe.audiences[0],
            "utente-7",
        ),
    )
    .await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "audience",
        "evidence for another e-service",
    )
    .await;
    // Evidence signed by a key PDND does not know.
    let t = now();
    let forged = modi::build_tracking_evidence(
        &unknown,
        &TrackingClaims {
            iss: client.clone(),
            aud: tributi_aud.clone(),
            user_id: "utente-7".into(),
            user_location: "x".into(),
            loa: "low".into(),
            iat: t,
            exp: t + 60,
            jti: uuid::Uuid::new_v4().to_string(),
            purpose_id: None,
        },
    )
    .expect("signs");
    let resp = regolarita(&h, &tributi_voucher, &forged).await;
    assert_refused(
        resp,
        StatusCode::UNAUTHORIZED,
        "unknown key id",
        "evidence with unknown kid",
    )
    .await;
}

async fn regolarita(h: &Harness, voucher: &str, evidence: &str) -> reqwest::Response {
    let auth = format!("Bearer {voucher}");
    let body = serde_json::to_vec(&json!({ "soggetto": h.sample_cf() })).expect("json");
    h.post_raw(
        "/tributi/v1/regolarita",
        &[
            ("authorization", auth.as_str()),
            ("content-type", JSON),
            ("agid-jwt-trackingevidence", evidence),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn verify_response_on_a_saved_answer() {
    use gateway::cli::verify_response::{verify, VerifyArgs, VerifyResponseError};
    let h = Harness::start().await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let resp = h
        .post(
            RESIDENZA,
            Some(&voucher),
            &json!({ "codiceFiscale": h.sample_cf() }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Save it the way `curl -si` does: status line, headers, blank line, body bytes.
    let mut saved = format!("HTTP/1.1 {}\r\n", resp.status()).into_bytes();
    for (name, value) in resp.headers() {
        saved.extend_from_slice(name.as_str().as_bytes());
        saved.extend_from_slice(b": ");
        saved.extend_from_slice(value.as_bytes());
        saved.extend_from_slice(b"\r\n");
    }
    saved.extend_from_slice(b"\r\n");
    saved.extend_from_slice(&resp.bytes().await.expect("body"));
    let file = h.dir.join("answer.http");
    std::fs::write(&file, &saved).expect("saved");

    let args = VerifyArgs {
        ca: h.modi_pki().ca_cert,
        audience: h.env.data.client.client_id.clone(),
        response: file.clone(),
        at: None,
        leeway_secs: 60,
    };
    let verified = verify(&args, now()).expect("the saved answer verifies");
    assert_eq!(verified.status, 200);
    let report = verified.to_string();
    assert!(report.starts_with("VERIFIED"), "{report}");
    assert!(report.contains("CN=localhost"), "{report}");
    assert!(
        report.contains("signed header  digest: SHA-256="),
        "{report}"
    );

    // One byte of the body changed: the precise reason, and an error (non-zero exit).
    let mut tampered = saved.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    let tampered_file = h.dir.join("tampered.http");
    std::fs::write(&tampered_file, &tampered).expect("saved");
    let err = verify(
        &VerifyArgs {
            response: tampered_file,
            ..args.clone()
        },
        now(),
    )
    .expect_err("a tampered body must fail");
    assert!(
        matches!(
            err,
            VerifyResponseError::Verification(modi::ModiError::DigestMismatch)
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "NOT VERIFIED: digest does not match the body"
    );

    // Another receiver's clientId, and a check long after the signature expired.
    let err = verify(
        &VerifyArgs {
            audience: "someone-else".into(),
            ..args.clone()
        },
        now(),
    )
    .expect_err("wrong audience");
    assert!(err.to_string().contains("audience"), "{err}");
    let err = verify(
        &VerifyArgs {
            at: Some((now() + 3600).to_string()),
            ..args.clone()
        },
        now(),
    )
    .expect_err("expired at that time");
    assert!(err.to_string().contains("expired"), "{err}");

    // The signer's CA is required: another CA does not do.
    let stranger_dir = e2e::temp_dir("stranger");
    let stranger = modi::generate_dev_pki(stranger_dir.path(), "stranger").expect("stranger PKI");
    let err = verify(
        &VerifyArgs {
            ca: stranger.ca_cert.clone(),
            ..args
        },
        now(),
    )
    .expect_err("untrusted CA");
    assert!(err.to_string().contains("not trusted"), "{err}");
}
