use super::AssertionRejection as R;
use super::*;
use crate::pdnd::client_assertion::CLIENT_ASSERTION_TYPE;
use crate::pdnd::client_assertion::{decode_unverified, ClientAssertionBuilder};
use crate::pdnd::jws::{b64url, CompactJws};
use crate::pdnd::test_keys;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map};

const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
const CONSUMER: &str = "6b3f3fd2-6e1c-4f2b-9b2a-5b1f7d7c0a11";
const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";
const SUSPENDED: &str = "5d1c1e6a-2b1f-4a57-8a77-3f0c6a2c9e01";
const UNREGISTERED: &str = "0f4d2a9e-8c3b-4c1d-9e7f-1a2b3c4d5e6f";
const AUD: &str = "auth.uat.interop.pagopa.it/client-assertion";
const NOW: i64 = 1_700_000_000;
const EVIDENCE_DIGEST: &str = "79ba8c02000c582fbd1631197e83640d0fb0ecb33f1ef641e7c633ac3df556e5";

fn purpose(purpose_id: &str, active: bool) -> RegisteredPurpose {
    RegisteredPurpose {
        purpose_id: purpose_id.into(),
        eservice_id: "e1a2b3c4-0000-4000-8000-000000000001".into(),
        descriptor_id: "d1a2b3c4-0000-4000-8000-000000000002".into(),
        producer_id: "b1a2b3c4-0000-4000-8000-000000000003".into(),
        audience: vec![
            "https://comune.example/anagrafe/v1".into(),
            "anagrafe-v1".into(),
        ],
        active,
    }
}

fn authority() -> Authority {
    Authority::new(
        test_keys::authority().clone(),
        AuthorityConfig {
            issuer: "uat.interop.pagopa.it".into(),
            assertion_audiences: vec![AUD.into(), "auth.interop.pagopa.it/client-assertion".into()],
            voucher_lifetime_secs: 600,
        },
        vec![RegisteredClient {
            client_id: CLIENT.into(),
            consumer_id: CONSUMER.into(),
            public_key: test_keys::client().public().clone(),
            purposes: vec![purpose(PURPOSE, true), purpose(SUSPENDED, false)],
        }],
    )
}

fn header() -> Value {
    json!({"alg": "RS256", "kid": test_keys::client().kid(), "typ": "JWT"})
}

fn claims() -> Value {
    json!({
        "iss": CLIENT, "sub": CLIENT, "aud": AUD, "jti": "23387ac1-c192-4573-8350-207a4213d4be",
        "iat": NOW - 10, "exp": NOW + 590, "purposeId": PURPOSE,
    })
}

fn forge(header: &Value, claims: &Value) -> String {
    jws::sign_rs256(header, claims, test_keys::client()).unwrap()
}

fn request(assertion: String) -> TokenRequest {
    TokenRequest {
        client_id: Some(CLIENT.into()),
        client_assertion: assertion,
        client_assertion_type: CLIENT_ASSERTION_TYPE.into(),
        grant_type: "client_credentials".into(),
    }
}

fn refused(request: &TokenRequest) -> Vec<AssertionRejection> {
    authority()
        .issue(request, NOW)
        .expect_err("the request must be refused")
        .errors
}

fn refused_token(token: String) -> Vec<AssertionRejection> {
    refused(&request(token))
}

fn with_claims(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<AssertionRejection> {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    refused_token(forge(&header(), &c))
}

fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<AssertionRejection> {
    let mut h = header();
    edit(h.as_object_mut().unwrap());
    refused_token(forge(&h, &claims()))
}

// --- step 2: request parameters ---

#[test]
fn wrong_assertion_type() {
    let mut r = request(forge(&header(), &claims()));
    r.client_assertion_type = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into();
    assert_eq!(
        refused(&r),
        [R::InvalidAssertionType(
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into()
        )]
    );
}

#[test]
fn wrong_grant_type() {
    let mut r = request(forge(&header(), &claims()));
    r.grant_type = "authorization_code".into();
    assert_eq!(
        refused(&r),
        [R::InvalidGrantType("authorization_code".into())]
    );
}

#[test]
fn both_request_parameters_wrong_are_both_reported() {
    let mut r = request(forge(&header(), &claims()));
    r.grant_type = String::new();
    r.client_assertion_type = String::new();
    assert_eq!(
        refused(&r),
        [
            R::InvalidAssertionType(String::new()),
            R::InvalidGrantType(String::new())
        ]
    );
}

// --- step 3: decoding and claims ---

#[test]
fn malformed_jws() {
    assert!(matches!(
        refused_token("abc.def".into()).as_slice(),
        [R::InvalidFormat(_)]
    ));
    assert!(matches!(
        refused_token(String::new()).as_slice(),
        [R::InvalidFormat(_)]
    ));
    let bad_payload = format!("{}.%%%.c2ln", b64url(header().to_string()));
    assert!(matches!(
        refused_token(bad_payload).as_slice(),
        [R::InvalidFormat(_)]
    ));
}

#[test]
fn undecodable_header() {
    let token = format!(
        "{}.{}.c2ln",
        b64url("not json"),
        b64url(claims().to_string())
    );
    assert!(matches!(
        refused_token(token).as_slice(),
        [R::UnexpectedClientAssertion(_)]
    ));
}

#[test]
fn missing_jti() {
    assert_eq!(with_claims(|c| drop(c.remove("jti"))), [R::JtiNotFound]);
    assert_eq!(
        with_claims(|c| drop(c.insert("jti".into(), json!("")))),
        [R::JtiNotFound]
    );
}

#[test]
fn missing_iat() {
    assert_eq!(
        with_claims(|c| drop(c.remove("iat"))),
        [R::IssuedAtNotFound]
    );
    assert_eq!(
        with_claims(|c| drop(c.insert("iat".into(), json!(0)))),
        [R::IssuedAtNotFound]
    );
}

#[test]
fn missing_exp() {
    assert_eq!(with_claims(|c| drop(c.remove("exp"))), [R::ExpNotFound]);
}

#[test]
fn missing_iss() {
    assert_eq!(with_claims(|c| drop(c.remove("iss"))), [R::IssuerNotFound]);
}

#[test]
fn missing_sub() {
    assert_eq!(with_claims(|c| drop(c.remove("sub"))), [R::SubjectNotFound]);
}

#[test]
fn sub_not_a_uuid() {
    assert_eq!(
        with_claims(|c| drop(c.insert("sub".into(), json!("client-1")))),
        [R::InvalidSubjectFormat("client-1".into())]
    );
}

#[test]
fn client_id_not_a_uuid() {
    let mut r = request(forge(&header(), &claims()));
    r.client_id = Some("client-1".into());
    assert_eq!(refused(&r), [R::InvalidClientIdFormat("client-1".into())]);
}

#[test]
fn sub_differs_from_client_id() {
    let other = "11111111-2222-4333-8444-555555555555";
    assert_eq!(
        with_claims(|c| drop(c.insert("sub".into(), json!(other)))),
        [R::InvalidSubject(other.into())]
    );
}

#[test]
fn purpose_id_not_a_uuid() {
    assert_eq!(
        with_claims(|c| drop(c.insert("purposeId".into(), json!("purpose-1")))),
        [R::InvalidPurposeIdFormat("purpose-1".into())]
    );
}

#[test]
fn missing_kid() {
    assert_eq!(with_header(|h| drop(h.remove("kid"))), [R::KidNotFound]);
}

#[test]
fn kid_not_a_thumbprint() {
    // A UUID kid (as in non-normative samples) is not a 43-character thumbprint.
    assert_eq!(
        with_header(|h| drop(
            h.insert("kid".into(), json!("0f4d2a9e-8c3b-4c1d-9e7f-1a2b3c4d5e6f"))
        )),
        [R::InvalidKidFormat]
    );
    let dotted = format!("{}.", &test_keys::client().kid()[..42]);
    assert_eq!(
        with_header(|h| drop(h.insert("kid".into(), json!(dotted)))),
        [R::InvalidKidFormat]
    );
}

#[test]
fn missing_aud() {
    assert_eq!(
        with_claims(|c| drop(c.remove("aud"))),
        [R::AudienceNotFound]
    );
}

#[test]
fn wrong_aud() {
    let with_scheme = "https://auth.uat.interop.pagopa.it/client-assertion";
    assert_eq!(
        with_claims(|c| drop(c.insert("aud".into(), json!(with_scheme)))),
        [R::InvalidAudience(with_scheme.into())]
    );
    assert!(matches!(
        with_claims(|c| drop(c.insert("aud".into(), json!(["somewhere-else"])))).as_slice(),
        [R::InvalidAudience(_)]
    ));
}

#[test]
fn missing_alg() {
    assert_eq!(
        with_header(|h| drop(h.remove("alg"))),
        [R::AlgorithmNotFound]
    );
}

#[test]
fn alg_none_is_not_allowed() {
    let mut h = header();
    h["alg"] = json!("none");
    let token = format!(
        "{}.{}.",
        b64url(h.to_string()),
        b64url(claims().to_string())
    );
    assert_eq!(
        refused_token(token),
        [R::AlgorithmNotAllowed("none".into())]
    );
}

#[test]
fn hs256_with_the_public_key_as_secret_is_not_allowed() {
    let mut h = header();
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
    let secret = test_keys::client().public().to_pem().unwrap();
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        refused_token(format!("{input}.{sig}")),
        [R::AlgorithmNotAllowed("HS256".into())]
    );
}

#[test]
fn digest_with_an_extra_key() {
    let digest = json!({"alg": "SHA256", "value": EVIDENCE_DIGEST, "jws": "x"});
    assert!(matches!(
        with_claims(|c| drop(c.insert("digest".into(), digest))).as_slice(),
        [R::InvalidDigestClaim(_)]
    ));
}

#[test]
fn digest_of_the_wrong_length() {
    let digest = json!({"alg": "SHA256", "value": &EVIDENCE_DIGEST[..63]});
    assert_eq!(
        with_claims(|c| drop(c.insert("digest".into(), digest))),
        [R::InvalidHashLength("SHA256".into())]
    );
}

#[test]
fn digest_with_the_wrong_algorithm() {
    let digest = json!({"alg": "SHA-256", "value": EVIDENCE_DIGEST});
    assert_eq!(
        with_claims(|c| drop(c.insert("digest".into(), digest))),
        [R::InvalidHashAlgorithm]
    );
    let both = json!({"alg": "MD5", "value": "abc"});
    assert_eq!(
        with_claims(|c| drop(c.insert("digest".into(), both))),
        [R::InvalidHashLength("MD5".into()), R::InvalidHashAlgorithm]
    );
}

#[test]
fn claim_errors_are_all_collected_in_pdnd_order() {
    let mut c = claims();
    let map = c.as_object_mut().unwrap();
    map.remove("jti");
    map.remove("iss");
    map.insert("aud".into(), json!("elsewhere"));
    let mut h = header();
    h["alg"] = json!("RS512");
    assert_eq!(
        refused_token(forge(&h, &c)),
        [
            R::JtiNotFound,
            R::IssuerNotFound,
            R::InvalidAudience("elsewhere".into()),
            R::AlgorithmNotAllowed("RS512".into())
        ]
    );
}

#[test]
fn claim_of_the_wrong_type() {
    assert!(matches!(
        with_claims(|c| drop(c.insert("iat".into(), json!("1700000000")))).as_slice(),
        [R::InvalidClaims {
            part: "payload",
            ..
        }]
    ));
    assert!(matches!(
        with_claims(|c| drop(c.insert("purposeId".into(), json!("")))).as_slice(),
        [R::InvalidClaims {
            part: "payload",
            ..
        }]
    ));
    assert!(matches!(
        with_header(|h| drop(h.insert("typ".into(), json!(1)))).as_slice(),
        [R::InvalidClaims { part: "header", .. }]
    ));
}

#[test]
fn extra_claims_refused_only_in_strict_mode() {
    let mut c = claims();
    c["nbf"] = json!(NOW - 10);
    let r = request(forge(&header(), &c));
    assert!(authority().issue(&r, NOW).is_ok());
    let strict = authority().with_strict_claims(true);
    let errors = strict.issue(&r, NOW).unwrap_err().errors;
    assert!(
        matches!(errors.as_slice(), [R::InvalidClaims { part: "payload", reason }] if reason.contains("nbf")),
        "{errors:?}"
    );
}

// --- step 4: key lookup ---

#[test]
fn unknown_kid() {
    let stranger = test_keys::stranger();
    let mut h = header();
    h["kid"] = json!(stranger.kid());
    let token = jws::sign_rs256(&h, &claims(), stranger).unwrap();
    assert_eq!(
        refused_token(token),
        [R::EntryNotFound {
            client_id: CLIENT.into(),
            kid: stranger.kid()
        }]
    );
}

#[test]
fn unknown_client() {
    let other = "11111111-2222-4333-8444-555555555555";
    let mut c = claims();
    c["sub"] = json!(other);
    c["iss"] = json!(other);
    let mut r = request(forge(&header(), &c));
    r.client_id = None;
    assert!(
        matches!(refused(&r).as_slice(), [R::EntryNotFound { client_id, .. }] if client_id == other)
    );
}

// --- step 5: signature and time ---

#[test]
fn bad_signature() {
    let token = forge(&header(), &claims());
    let [h, _, s] = jws::split(&token).unwrap();
    let mut c = claims();
    c["purposeId"] = json!(SUSPENDED);
    let tampered = format!("{h}.{}.{s}", b64url(c.to_string()));
    assert_eq!(refused_token(tampered), [R::InvalidSignature]);
    // Signed by another key under the registered kid.
    let forged = jws::sign_rs256(&header(), &claims(), test_keys::stranger()).unwrap();
    assert_eq!(refused_token(forged), [R::InvalidSignature]);
}

#[test]
fn expired() {
    assert_eq!(
        with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 1)))),
        [R::TokenExpired]
    );
    // No clock tolerance: exp == now is already expired.
    assert_eq!(
        with_claims(|c| drop(c.insert("exp".into(), json!(NOW)))),
        [R::TokenExpired]
    );
}

#[test]
fn crit_naming_an_extension_jose_does_not_know() {
    for name in ["exp", "x-pdnd", "kid"] {
        let errors = with_header(|h| drop(h.insert("crit".into(), json!([name]))));
        assert_eq!(
            errors,
            [R::SignatureVerification(format!(
                "Extension Header Parameter \"{name}\" is not recognized"
            ))]
        );
        assert_eq!(errors[0].code(), "0016");
    }
}

#[test]
fn crit_of_the_wrong_shape() {
    for crit in [
        json!([]),
        json!("b64"),
        json!([""]),
        json!([1]),
        json!(null),
    ] {
        let errors = with_header(|h| drop(h.insert("crit".into(), crit.clone())));
        assert!(
            matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("non-empty strings")),
            "{crit}: {errors:?}"
        );
    }
}

#[test]
fn crit_b64_follows_jose() {
    // Listed but absent, or not a boolean: malformed JWS (0018).
    let errors = with_header(|h| drop(h.insert("crit".into(), json!(["b64"]))));
    assert!(
        matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("missing")),
        "{errors:?}"
    );
    let errors = with_header(|h| {
        h.insert("crit".into(), json!(["b64"]));
        h.insert("b64".into(), json!("false"));
    });
    assert!(
        matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("boolean")),
        "{errors:?}"
    );
    // An unencoded payload is refused after the signature verified (0016).
    let errors = with_header(|h| {
        h.insert("crit".into(), json!(["b64"]));
        h.insert("b64".into(), json!(false));
    });
    assert_eq!(
        errors,
        [R::SignatureVerification(
            "JWTs MUST NOT use unencoded payload".into()
        )]
    );
    // `b64: true` is the ordinary encoding: jose, hence PDND, accepts it.
    let mut h = header();
    h["crit"] = json!(["b64"]);
    h["b64"] = json!(true);
    assert!(authority()
        .issue(&request(forge(&h, &claims())), NOW)
        .is_ok());
}

#[test]
fn crit_is_checked_before_the_signature() {
    let mut h = header();
    h["crit"] = json!(["x-ext"]);
    let forged = jws::sign_rs256(&h, &claims(), test_keys::stranger()).unwrap();
    assert!(matches!(
        refused_token(forged).as_slice(),
        [R::SignatureVerification(_)]
    ));
}

#[test]
fn nbf_in_the_future() {
    assert_eq!(
        with_claims(|c| drop(c.insert("nbf".into(), json!(NOW + 1)))),
        [R::NotBefore]
    );
}

// --- step 6: purpose ---

#[test]
fn purpose_id_missing_for_a_consumer_client() {
    assert_eq!(
        with_claims(|c| drop(c.remove("purposeId"))),
        [R::PurposeIdNotProvided]
    );
}

#[test]
fn purpose_not_registered_for_the_client() {
    assert_eq!(
        with_claims(|c| drop(c.insert("purposeId".into(), json!(UNREGISTERED)))),
        [R::PurposeNotRegistered {
            client_id: CLIENT.into(),
            purpose_id: UNREGISTERED.into()
        }]
    );
}

#[test]
fn suspended_purpose() {
    assert_eq!(
        with_claims(|c| drop(c.insert("purposeId".into(), json!(SUSPENDED)))),
        [R::InvalidPurposeState("INACTIVE".into())]
    );
}

// --- accepted ---

#[test]
fn accepted_assertion_gets_a_voucher_shaped_like_pdnd() {
    let authority = authority();
    let builder = ClientAssertionBuilder {
        client_id: CLIENT.into(),
        audience: AUD.into(),
        purpose_id: Some(PURPOSE.into()),
        digest: Some(crate::pdnd::DigestClaim {
            alg: "SHA256".into(),
            value: EVIDENCE_DIGEST.into(),
        }),
        lifetime_secs: 600,
    };
    let assertion = builder.sign(test_keys::client(), NOW).unwrap();
    let response = authority
        .issue(&TokenRequest::new(CLIENT, &assertion), NOW + 5)
        .unwrap();
    assert_eq!(response.token_type.as_deref(), Some("Bearer"));
    assert_eq!(response.expires_in, 600);

    let (header, claims) = decode_unverified(&response.access_token).unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
    );
    let claims = claims.as_object().unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aud",
            "client_id",
            "consumerId",
            "descriptorId",
            "digest",
            "eserviceId",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "producerId",
            "purposeId",
            "sub"
        ]
    );
    assert_eq!(claims["iss"], "uat.interop.pagopa.it");
    assert_eq!(
        claims["aud"],
        "https://comune.example/anagrafe/v1,anagrafe-v1"
    );
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(claims["client_id"], CLIENT);
    assert_eq!(claims["purposeId"], PURPOSE);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(claims["iat"], NOW + 5);
    assert_eq!(claims["nbf"], NOW + 5);
    assert_eq!(claims["exp"], NOW + 605);
    assert_eq!(claims["producerId"], "b1a2b3c4-0000-4000-8000-000000000003");
    assert_eq!(claims["consumerId"], CONSUMER);
    assert_eq!(claims["eserviceId"], "e1a2b3c4-0000-4000-8000-000000000001");
    assert_eq!(
        claims["descriptorId"],
        "d1a2b3c4-0000-4000-8000-000000000002"
    );
    assert_eq!(
        claims["digest"],
        json!({"alg": "SHA256", "value": EVIDENCE_DIGEST})
    );

    let jws = CompactJws::parse(&response.access_token).unwrap();
    let key = authority.jwks().find(authority.kid()).unwrap();
    assert!(jws.verify_rs256(&key));
    assert!(!jws.verify_rs256(test_keys::client().public()));
}

#[test]
fn accepted_without_client_id_with_aud_array_and_no_digest() {
    let mut c = claims();
    c["aud"] = json!(["other", AUD]);
    let mut r = request(forge(&header(), &c));
    r.client_id = None;
    let response = authority().issue(&r, NOW).unwrap();
    let (_, claims) = decode_unverified(&response.access_token).unwrap();
    assert!(claims.get("digest").is_none());
    assert_eq!(claims["client_id"], CLIENT);
}

#[test]
fn jwks_and_client_keys() {
    let authority = authority();
    let jwks = authority.jwks();
    assert_eq!(jwks.kids(), [test_keys::authority().kid().as_str()]);
    assert_eq!(
        jwks.find(&test_keys::authority().kid()).as_ref(),
        Some(test_keys::authority().public())
    );
    let kid = test_keys::client().kid();
    let jwk = authority.client_key(&kid).unwrap();
    assert_eq!(jwk["kid"], kid.as_str());
    assert_eq!(jwk["n"], test_keys::client().public().n.as_str());
    assert_eq!(authority.client_key(&test_keys::stranger().kid()), None);
}

// --- API Interop (M2M) clients ---

const API_CLIENT: &str = "a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f";
const ORGANIZATION: &str = "b1a2b3c4-0000-4000-8000-000000000003";
const M2M_AUD: &str = "dev.interop.local/m2m";

fn api_authority() -> Authority {
    authority().with_api_clients(
        M2M_AUD,
        vec![RegisteredApiClient {
            client_id: API_CLIENT.into(),
            organization_id: ORGANIZATION.into(),
            public_key: test_keys::stranger().public().clone(),
        }],
    )
}

fn api_builder() -> ClientAssertionBuilder {
    ClientAssertionBuilder {
        client_id: API_CLIENT.into(),
        audience: AUD.into(),
        purpose_id: None,
        digest: None,
        lifetime_secs: 600,
    }
}

fn m2m_voucher(authority: &Authority, now: i64) -> String {
    let assertion = api_builder().sign(test_keys::stranger(), now).unwrap();
    authority
        .issue(&TokenRequest::new(API_CLIENT, &assertion), now)
        .expect("an API client needs no purposeId")
        .access_token
}

#[test]
fn api_client_without_purpose_gets_an_m2m_voucher() {
    let authority = api_authority();
    let token = m2m_voucher(&authority, NOW);
    let (header, claims) = decode_unverified(&token).unwrap();
    assert_eq!(
        header,
        json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
    );
    let claims = claims.as_object().unwrap();
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "organizationId",
            "role",
            "sub"
        ]
    );
    assert_eq!(claims["aud"], M2M_AUD);
    assert_eq!(claims["iss"], "uat.interop.pagopa.it");
    assert_eq!(claims["sub"], API_CLIENT);
    assert_eq!(claims["client_id"], API_CLIENT);
    assert_eq!(claims["organizationId"], ORGANIZATION);
    assert_eq!(claims["role"], "m2m");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 600);
    assert!(CompactJws::parse(&token)
        .unwrap()
        .verify_rs256(test_keys::authority().public()));
    assert_eq!(
        authority.verify_m2m_voucher(&token, NOW + 1),
        Ok(M2mCaller {
            client_id: API_CLIENT.into(),
            organization_id: ORGANIZATION.into()
        })
    );
    assert_eq!(
        authority.verify_m2m_voucher(&token, NOW + 600),
        Err(M2mRefusal::Expired)
    );
    assert_eq!(
        authority.verify_m2m_voucher(&token, NOW - 1),
        Err(M2mRefusal::NotBefore)
    );
}

#[test]
fn consumer_client_without_purpose_still_refused_beside_api_clients() {
    let authority = api_authority();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("purposeId");
    let refused = authority
        .issue(&request(forge(&header(), &c)), NOW)
        .expect_err("a consumer client needs a purposeId");
    assert_eq!(refused.errors, [R::PurposeIdNotProvided]);
}

#[test]
fn api_client_with_a_purpose_id_has_no_entry() {
    let assertion = ClientAssertionBuilder {
        purpose_id: Some(PURPOSE.into()),
        ..api_builder()
    }
    .sign(test_keys::stranger(), NOW)
    .unwrap();
    let refused = api_authority()
        .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
        .expect_err("an API client has no entry for a purpose");
    assert_eq!(
        refused.errors,
        [R::ApiClientWithPurpose {
            client_id: API_CLIENT.into(),
            purpose_id: PURPOSE.into()
        }]
    );
    assert_eq!(refused.errors[0].code(), "entry-not-found");
    assert!(!refused.is_internal());
    // Even a purpose the consumer client is registered for, and before the signature:
    // a forged signature gets the same answer.
    let forged = ClientAssertionBuilder {
        purpose_id: Some(PURPOSE.into()),
        ..api_builder()
    }
    .sign(test_keys::client(), NOW)
    .unwrap();
    let [h, p, _] = jws::split(&assertion.jws).unwrap();
    let [_, _, s] = jws::split(&forged.jws).unwrap();
    let mut request = TokenRequest::new(API_CLIENT, &assertion);
    request.client_assertion = format!("{h}.{p}.{s}");
    let refused = api_authority().issue(&request, NOW).expect_err("no entry");
    assert!(matches!(
        refused.errors.as_slice(),
        [R::ApiClientWithPurpose { .. }]
    ));
}

#[test]
fn api_client_with_a_foreign_key_is_unknown() {
    // The API client's id with the consumer client's key: no (clientId, kid) entry.
    let assertion = api_builder().sign(test_keys::client(), NOW).unwrap();
    let refused = api_authority()
        .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
        .expect_err("wrong key");
    assert_eq!(
        refused.errors,
        [R::EntryNotFound {
            client_id: API_CLIENT.into(),
            kid: test_keys::client().kid()
        }]
    );
    // Without with_api_clients the same client does not exist at all.
    let assertion = api_builder().sign(test_keys::stranger(), NOW).unwrap();
    assert!(authority()
        .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
        .is_err());
}

#[test]
fn m2m_verification_refuses_e_service_vouchers_and_forgeries() {
    let api = api_authority();
    let consumer = api
        .issue(&request(forge(&header(), &claims())), NOW)
        .unwrap()
        .access_token;
    assert_eq!(
        api.verify_m2m_voucher(&consumer, NOW),
        Err(M2mRefusal::Audience(Some(
            "https://comune.example/anagrafe/v1,anagrafe-v1".into()
        )))
    );
    let token = m2m_voucher(&api, NOW);
    // Same claims, signed by someone else under the authority's kid.
    let (h, c) = decode_unverified(&token).unwrap();
    let forged = jws::sign_rs256(&h, &c, test_keys::stranger()).unwrap();
    assert_eq!(
        api.verify_m2m_voucher(&forged, NOW),
        Err(M2mRefusal::Signature)
    );
    let mut wrong_role = c.clone();
    wrong_role["role"] = json!("admin");
    let wrong_role = jws::sign_rs256(&h, &wrong_role, test_keys::authority()).unwrap();
    assert_eq!(
        api.verify_m2m_voucher(&wrong_role, NOW),
        Err(M2mRefusal::Role(Some("admin".into())))
    );
    assert!(matches!(
        api.verify_m2m_voucher("not-a-token", NOW),
        Err(M2mRefusal::Malformed(_))
    ));
    // An authority without API clients accepts no bearer at all.
    assert_eq!(
        authority().verify_m2m_voucher(&token, NOW),
        Err(M2mRefusal::NotConfigured)
    );
    // The API client's key is served like any client key.
    let kid = test_keys::stranger().kid();
    assert_eq!(api.client_key(&kid).unwrap()["kid"], kid.as_str());
}

#[test]
fn rejection_display_and_codes() {
    let rejection = Rejection {
        errors: vec![R::JtiNotFound, R::InvalidAudience("x".into())],
    };
    assert_eq!(
            rejection.to_string(),
            "token request refused: [0008] JTI not found in client assertion; [0004] Unexpected client assertion audience: x"
        );
    assert!(!rejection.is_internal());
    assert_eq!(R::InvalidSignature.code(), "0033");
    assert_eq!(R::PurposeIdNotProvided.code(), "0030");
    let body = pdnd_error_body("abc");
    assert_eq!(body["status"], 400);
    assert_eq!(body["errors"][0]["code"], "015-0008");
    assert_eq!(body["correlationId"], "abc");
}

// --- DPoP ---

const TOKEN_URL: &str = "https://auth.uat.interop.pagopa.it/token.oauth2";

fn dpop_key() -> &'static crate::pdnd::dpop::DpopKey {
    static KEY: std::sync::OnceLock<crate::pdnd::dpop::DpopKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| crate::pdnd::dpop::DpopKey::generate().unwrap())
}

fn good_request() -> TokenRequest {
    let builder = ClientAssertionBuilder {
        client_id: CLIENT.into(),
        audience: AUD.into(),
        purpose_id: Some(PURPOSE.into()),
        digest: None,
        lifetime_secs: 600,
    };
    TokenRequest::new(CLIENT, &builder.sign(test_keys::client(), NOW).unwrap())
}

#[test]
fn valid_proof_binds_the_voucher_to_its_key() {
    let authority = authority();
    let proof = dpop_key().proof("POST", TOKEN_URL, None, NOW).unwrap();
    let verified = authority.check_dpop_proof(&proof, TOKEN_URL, NOW).unwrap();
    let response = authority
        .issue_bound(&good_request(), Some(&verified), NOW)
        .unwrap();
    assert_eq!(response.token_type.as_deref(), Some("DPoP"));
    assert_eq!(response.authorization_scheme(), "DPoP");
    let (header, claims) = decode_unverified(&response.access_token).unwrap();
    // The voucher's header is PDND's usual one: at+jwt, not dpop+jwt.
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["cnf"], json!({"jkt": dpop_key().jkt()}));
    // The provider's check sees the binding.
    let policy = crate::pdnd::voucher::VoucherPolicy::new(
        vec!["uat.interop.pagopa.it".into()],
        vec!["anagrafe-v1".into()],
    );
    let voucher =
        crate::pdnd::voucher::validate(&response.access_token, &authority.jwks(), &policy, NOW)
            .unwrap();
    assert_eq!(voucher.confirmation_jkt(), Some(dpop_key().jkt()));
    // Without a proof: Bearer, no cnf (the control).
    let plain = authority.issue(&good_request(), NOW).unwrap();
    assert_eq!(plain.token_type.as_deref(), Some("Bearer"));
    let (_, claims) = decode_unverified(&plain.access_token).unwrap();
    assert!(claims.get("cnf").is_none());
}

#[test]
fn proof_for_another_endpoint_method_or_time_is_refused() {
    let authority = authority();
    for (proof, at) in [
        (
            dpop_key().proof("POST", "https://evil.example/token.oauth2", None, NOW),
            NOW,
        ),
        (dpop_key().proof("GET", TOKEN_URL, None, NOW), NOW),
        (dpop_key().proof("POST", TOKEN_URL, None, NOW), NOW + 61),
    ] {
        let rejection = authority
            .check_dpop_proof(&proof.unwrap(), TOKEN_URL, at)
            .unwrap_err();
        assert!(
            matches!(rejection.errors.as_slice(), [R::DpopProofInvalid(_)]),
            "{rejection}"
        );
        assert_eq!(rejection.errors[0].code(), "015-0009");
    }
}

#[test]
fn proof_signed_by_another_key_is_a_signature_failure() {
    let proof = dpop_key().proof("POST", TOKEN_URL, None, NOW).unwrap();
    let other = crate::pdnd::dpop::DpopKey::generate().unwrap();
    let forged = other.proof("POST", TOKEN_URL, None, NOW).unwrap();
    // The header (and its jwk) of the first proof, the claims and signature of the second.
    let [h, _, _] = jws::split(&proof).unwrap();
    let [_, p, sig] = jws::split(&forged).unwrap();
    let rejection = authority()
        .check_dpop_proof(&format!("{h}.{p}.{sig}"), TOKEN_URL, NOW)
        .unwrap_err();
    assert_eq!(rejection.errors, [R::DpopProofSignature]);
    assert_eq!(R::DpopProofSignature.code(), "015-0010");
    assert_eq!(R::DpopProofJtiAlreadyUsed("j".into()).code(), "015-0012");
}
