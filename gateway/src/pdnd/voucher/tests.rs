use super::*;
use crate::pdnd::authority::{Authority, AuthorityConfig, RegisteredClient, RegisteredPurpose};
use crate::pdnd::client_assertion::{ClientAssertionBuilder, TokenRequest};
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd::jws::{self, b64url};
use crate::pdnd::test_keys;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

const NOW: i64 = 1_700_000_000;
const ISS: &str = "interop.pagopa.it";
const AUD: &str = "https://comune.example/anagrafe/v1";
const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";

fn keys() -> JwkSet {
    JwkSet::single(
        &test_keys::authority().kid(),
        test_keys::authority().public(),
    )
}

fn policy() -> VoucherPolicy {
    let mut p = VoucherPolicy::new(vec![ISS.into()], vec![AUD.into()]);
    p.leeway_secs = 30;
    p
}

fn header() -> Value {
    json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
}

fn claims() -> Value {
    json!({
        "jti": "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00", "iss": ISS, "aud": AUD, "sub": CLIENT,
        "client_id": CLIENT, "purposeId": PURPOSE, "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 540,
        "producerId": "p-1", "consumerId": "c-1", "eserviceId": "e-1", "descriptorId": "d-1",
    })
}

fn sign_with(key: &RsaPrivateKey, header: &Value, claims: &Value) -> String {
    jws::sign_rs256(header, claims, key).unwrap()
}

fn mint(header: &Value, claims: &Value) -> String {
    sign_with(test_keys::authority(), header, claims)
}

fn check(token: &str) -> Result<Voucher, VoucherError> {
    validate(token, &keys(), &policy(), NOW)
}

fn with_claims(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Voucher, VoucherError> {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    check(&mint(&header(), &c))
}

fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Voucher, VoucherError> {
    let mut h = header();
    edit(h.as_object_mut().unwrap());
    check(&mint(&h, &claims()))
}

// --- accepted ---

#[test]
fn valid_voucher_exposes_its_claims() {
    let v = check(&mint(&header(), &claims())).unwrap();
    assert_eq!(v.kid(), test_keys::authority().kid());
    assert_eq!(v.jti(), "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00");
    assert_eq!(v.issuer(), ISS);
    assert_eq!(v.client_id(), CLIENT);
    assert_eq!(v.subject(), CLIENT);
    assert_eq!(v.purpose_id(), PURPOSE);
    assert_eq!(v.audiences(), [AUD]);
    assert_eq!((v.iat(), v.nbf(), v.exp()), (NOW - 60, NOW - 60, NOW + 540));
    assert_eq!(v.producer_id(), Some("p-1"));
    assert_eq!(v.consumer_id(), Some("c-1"));
    assert_eq!(v.eservice_id(), Some("e-1"));
    assert_eq!(v.descriptor_id(), Some("d-1"));
    assert_eq!(v.digest(), None);
    assert_eq!(v.confirmation_jkt(), None);
}

#[test]
fn comma_joined_aud_containing_ours_is_accepted() {
    let v = with_claims(|c| drop(c.insert("aud".into(), json!(format!("other-eservice,{AUD}")))))
        .unwrap();
    assert_eq!(v.audiences(), ["other-eservice", AUD]);
}

#[test]
fn aud_array_containing_ours_is_accepted() {
    let v = with_claims(|c| drop(c.insert("aud".into(), json!(["other-eservice", AUD])))).unwrap();
    assert_eq!(v.audiences(), ["other-eservice", AUD]);
}

#[test]
fn exp_within_leeway_is_accepted() {
    assert!(with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 29)))).is_ok());
}

#[test]
fn iat_and_nbf_slightly_in_the_future_are_accepted() {
    assert!(with_claims(|c| {
        c.insert("iat".into(), json!(NOW + 30));
        c.insert("nbf".into(), json!(NOW + 30));
    })
    .is_ok());
}

#[test]
fn the_same_voucher_is_accepted_twice() {
    let token = mint(&header(), &claims());
    assert!(check(&token).is_ok());
    assert!(check(&token).is_ok());
}

#[test]
fn typ_not_required_when_policy_allows() {
    let mut p = policy();
    p.require_at_jwt_typ = false;
    let mut h = header();
    h.as_object_mut().unwrap().remove("typ");
    assert!(validate(&mint(&h, &claims()), &keys(), &p, NOW).is_ok());
}

#[test]
fn voucher_minted_by_the_authority_validates() {
    let client = test_keys::client();
    let authority = Authority::new(
        test_keys::authority().clone(),
        AuthorityConfig {
            issuer: ISS.into(),
            assertion_audiences: vec!["auth.interop.pagopa.it/client-assertion".into()],
            voucher_lifetime_secs: 600,
        },
        vec![RegisteredClient {
            client_id: CLIENT.into(),
            consumer_id: "c-1".into(),
            public_key: client.public().clone(),
            purposes: vec![RegisteredPurpose {
                purpose_id: PURPOSE.into(),
                eservice_id: "e-1".into(),
                descriptor_id: "d-1".into(),
                producer_id: "p-1".into(),
                audience: vec!["tributi-v1".into(), AUD.into()],
                active: true,
            }],
        }],
    );
    let evidence = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln";
    let assertion = ClientAssertionBuilder {
        client_id: CLIENT.into(),
        audience: "auth.interop.pagopa.it/client-assertion".into(),
        purpose_id: Some(PURPOSE.into()),
        digest: Some(DigestClaim::sha256_of(evidence)),
        lifetime_secs: 60,
    }
    .sign(client, NOW)
    .unwrap();
    let response = authority
        .issue(&TokenRequest::new(CLIENT, &assertion), NOW)
        .unwrap();
    let v = validate(
        &response.access_token,
        &authority.jwks(),
        &policy(),
        NOW + 10,
    )
    .unwrap();
    assert_eq!(v.client_id(), CLIENT);
    assert_eq!(v.purpose_id(), PURPOSE);
    assert_eq!(v.audiences(), ["tributi-v1", AUD]);
    assert_eq!(v.exp(), NOW + 600);
    assert!(v.digest().unwrap().matches(evidence));
    assert!(!v.digest().unwrap().matches(&format!("{evidence}\n")));
    // ... and expires like any other.
    assert_eq!(
        validate(
            &response.access_token,
            &authority.jwks(),
            &policy(),
            NOW + 630
        )
        .unwrap_err(),
        VoucherError::Expired
    );
}

// --- refused ---

#[test]
fn alg_none() {
    let mut h = header();
    h["alg"] = json!("none");
    let token = format!(
        "{}.{}.",
        b64url(h.to_string()),
        b64url(claims().to_string())
    );
    assert_eq!(
        check(&token).unwrap_err(),
        VoucherError::UnsupportedAlgorithm("none".into())
    );
    // With signature bytes too, and whatever typ it claims.
    assert_eq!(
        with_header(|h| drop(h.insert("alg".into(), json!("none")))).unwrap_err(),
        VoucherError::UnsupportedAlgorithm("none".into())
    );
    assert_eq!(
        check(&format!("{token}c2ln")).unwrap_err(),
        VoucherError::UnsupportedAlgorithm("none".into())
    );
}

#[test]
fn hs256_signed_with_the_public_key_pem() {
    let mut h = header();
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
    let secret = test_keys::authority().public().to_pem().unwrap();
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        check(&format!("{input}.{sig}")).unwrap_err(),
        VoucherError::UnsupportedAlgorithm("HS256".into())
    );
}

#[test]
fn missing_alg() {
    assert_eq!(
        with_header(|h| drop(h.remove("alg"))).unwrap_err(),
        VoucherError::MissingAlgorithm
    );
}

#[test]
fn signed_by_a_key_not_in_the_set() {
    let stranger = test_keys::stranger();
    let mut h = header();
    h["kid"] = json!(stranger.kid());
    assert_eq!(
        check(&sign_with(stranger, &h, &claims())).unwrap_err(),
        VoucherError::UnknownKid(stranger.kid())
    );
    // Same key, but claiming the published kid: the signature does not verify.
    assert_eq!(
        check(&sign_with(stranger, &header(), &claims())).unwrap_err(),
        VoucherError::BadSignature
    );
}

#[test]
fn kid_missing() {
    assert_eq!(
        with_header(|h| drop(h.remove("kid"))).unwrap_err(),
        VoucherError::MissingKid
    );
}

#[test]
fn kid_unknown() {
    assert_eq!(
        with_header(|h| drop(h.insert("kid".into(), json!("rotated-away")))).unwrap_err(),
        VoucherError::UnknownKid("rotated-away".into())
    );
}

#[test]
fn wrong_typ() {
    assert_eq!(
        with_header(|h| drop(h.insert("typ".into(), json!("JWT")))).unwrap_err(),
        VoucherError::WrongType(Some("JWT".into()))
    );
}

#[test]
fn missing_typ() {
    assert_eq!(
        with_header(|h| drop(h.remove("typ"))).unwrap_err(),
        VoucherError::WrongType(None)
    );
}

#[test]
fn wrong_issuer() {
    assert_eq!(
        with_claims(|c| drop(c.insert("iss".into(), json!("uat.interop.pagopa.it")))).unwrap_err(),
        VoucherError::WrongIssuer("uat.interop.pagopa.it".into())
    );
}

#[test]
fn missing_issuer() {
    assert_eq!(
        with_claims(|c| drop(c.remove("iss"))).unwrap_err(),
        VoucherError::MissingClaim("iss")
    );
}

#[test]
fn wrong_audience() {
    assert_eq!(
        with_claims(|c| drop(c.insert("aud".into(), json!("https://comune.example/tributi/v1"))))
            .unwrap_err(),
        VoucherError::WrongAudience
    );
    // A prefix or a substring of ours is not ours.
    assert!(matches!(
        with_claims(|c| drop(c.insert("aud".into(), json!(format!("{AUD}/x,{AUD}x"))))),
        Err(VoucherError::WrongAudience)
    ));
}

#[test]
fn aud_array_without_ours() {
    assert!(matches!(
        with_claims(|c| drop(c.insert("aud".into(), json!(["a", "b"])))),
        Err(VoucherError::WrongAudience)
    ));
}

#[test]
fn expired() {
    assert_eq!(
        with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 30)))).unwrap_err(),
        VoucherError::Expired
    );
    assert_eq!(
        with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 3600)))).unwrap_err(),
        VoucherError::Expired
    );
}

#[test]
fn nbf_beyond_leeway() {
    assert_eq!(
        with_claims(|c| drop(c.insert("nbf".into(), json!(NOW + 31)))).unwrap_err(),
        VoucherError::NotYetValid
    );
}

#[test]
fn iat_in_the_future() {
    assert_eq!(
        with_claims(|c| drop(c.insert("iat".into(), json!(NOW + 31)))).unwrap_err(),
        VoucherError::IssuedInFuture
    );
}

#[test]
fn missing_time_claims() {
    for name in ["exp", "nbf", "iat"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        assert!(
            matches!(check(&mint(&header(), &c)), Err(VoucherError::MissingClaim(n)) if n == name),
            "{name}"
        );
    }
    assert_eq!(
        with_claims(|c| drop(c.insert("exp".into(), json!("1700000600")))).unwrap_err(),
        VoucherError::InvalidClaim("exp")
    );
}

#[test]
fn missing_purpose_id() {
    assert_eq!(
        with_claims(|c| drop(c.remove("purposeId"))).unwrap_err(),
        VoucherError::MissingPurposeId
    );
}

#[test]
fn empty_purpose_id() {
    assert_eq!(
        with_claims(|c| drop(c.insert("purposeId".into(), json!("")))).unwrap_err(),
        VoucherError::MissingPurposeId
    );
}

#[test]
fn m2m_token_without_purpose_is_refused() {
    let result = with_claims(|c| {
        c.remove("purposeId");
        c.insert("role".into(), json!("m2m"));
    });
    assert_eq!(result.unwrap_err(), VoucherError::MissingPurposeId);
}

#[test]
fn malformed_base64() {
    let token = mint(&header(), &claims());
    let [h, p, s] = jws::split(&token).unwrap();
    assert!(matches!(
        check(&format!("{h}.{p}*.{s}")),
        Err(VoucherError::Malformed)
    ));
    assert!(matches!(
        check(&format!("{h}=.{p}.{s}")),
        Err(VoucherError::Malformed)
    ));
}

#[test]
fn malformed_json() {
    let token = format!(
        "{}.{}.c2ln",
        b64url(header().to_string()),
        b64url("{\"iss\":")
    );
    assert!(matches!(check(&token), Err(VoucherError::Malformed)));
}

#[test]
fn two_segments() {
    let token = mint(&header(), &claims());
    let two = token.rsplit_once('.').unwrap().0;
    assert!(matches!(check(two), Err(VoucherError::Malformed)));
}

#[test]
fn token_of_64_kib() {
    let mut c = claims();
    c["padding"] = json!("x".repeat(64 * 1024));
    assert_eq!(
        check(&mint(&header(), &c)).unwrap_err(),
        VoucherError::TooLarge
    );
}

#[test]
fn tampered_payload() {
    let token = mint(&header(), &claims());
    let [h, _, s] = jws::split(&token).unwrap();
    let mut c = claims();
    c["purposeId"] = json!("11111111-2222-4333-8444-555555555555");
    assert_eq!(
        check(&format!("{h}.{}.{s}", b64url(c.to_string()))).unwrap_err(),
        VoucherError::BadSignature
    );
}

#[test]
fn crit_naming_any_extension() {
    for name in ["exp", "b64", "x-pdnd-ext"] {
        assert_eq!(
            with_header(|h| {
                h.insert("crit".into(), json!([name]));
                h.insert(name.into(), json!(false));
            })
            .unwrap_err(),
            VoucherError::CriticalExtension(name.into())
        );
    }
}

#[test]
fn crit_of_the_wrong_shape() {
    for crit in [
        json!([]),
        json!("exp"),
        json!([""]),
        json!([7]),
        json!(null),
    ] {
        assert_eq!(
            with_header(|h| drop(h.insert("crit".into(), crit.clone()))).unwrap_err(),
            VoucherError::MalformedCrit,
            "{crit}"
        );
    }
}

fn lifetime_policy(max: i64) -> VoucherPolicy {
    let mut p = policy();
    p.max_lifetime_secs = max;
    p
}

#[test]
fn lifetime_up_to_the_maximum_is_accepted() {
    // claims(): iat = nbf = NOW - 60, exp = NOW + 540: a lifetime of 600 s.
    let token = mint(&header(), &claims());
    assert!(validate(&token, &keys(), &lifetime_policy(600), NOW).is_ok());
    assert_eq!(VoucherPolicy::new(vec![], vec![]).max_lifetime_secs, 86_400);
}

#[test]
fn lifetime_from_iat_beyond_the_maximum() {
    let token = mint(&header(), &claims());
    assert_eq!(
        validate(&token, &keys(), &lifetime_policy(599), NOW).unwrap_err(),
        VoucherError::LifetimeTooLong {
            from: "iat",
            lifetime: 600,
            max: 599
        }
    );
    // A week-long voucher against the default bound.
    assert!(matches!(
        with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 60 + 7 * 86_400)))),
        Err(VoucherError::LifetimeTooLong { from: "iat", .. })
    ));
}

#[test]
fn lifetime_from_nbf_beyond_the_maximum() {
    // iat recent, but nbf set far back: exp - nbf is what exceeds the bound.
    let mut c = claims();
    c["nbf"] = json!(NOW - 1_000);
    let token = mint(&header(), &c);
    assert_eq!(
        validate(&token, &keys(), &lifetime_policy(1_000), NOW).unwrap_err(),
        VoucherError::LifetimeTooLong {
            from: "nbf",
            lifetime: 1_540,
            max: 1_000
        }
    );
}

fn ids_policy() -> VoucherPolicy {
    let mut p = policy();
    p.producer_id = Some("p-1".into());
    p.eservice_id = Some("e-1".into());
    p.descriptor_id = Some("d-1".into());
    p
}

#[test]
fn configured_identifiers_that_match_are_accepted() {
    let token = mint(&header(), &claims());
    assert!(validate(&token, &keys(), &ids_policy(), NOW).is_ok());
}

#[test]
fn configured_identifiers_that_differ_or_are_missing() {
    for claim in ["producerId", "eserviceId", "descriptorId"] {
        let mut c = claims();
        c[claim] = json!("another-id");
        assert_eq!(
            validate(&mint(&header(), &c), &keys(), &ids_policy(), NOW).unwrap_err(),
            VoucherError::WrongIdentifier(claim),
        );
        c.as_object_mut().unwrap().remove(claim);
        assert_eq!(
            validate(&mint(&header(), &c), &keys(), &ids_policy(), NOW).unwrap_err(),
            VoucherError::MissingClaim(claim),
        );
        // Not configured: not checked.
        assert!(check(&mint(&header(), &c)).is_ok(), "{claim}");
    }
}

#[test]
fn dpop_bound_voucher_exposes_its_thumbprint() {
    let v = with_claims(|c| drop(c.insert("cnf".into(), json!({"jkt": "abc"})))).unwrap();
    assert_eq!(v.confirmation_jkt(), Some("abc"));
}

// --- remembered vouchers ---

use crate::pdnd::verified::VerifiedVouchers;

fn memory() -> VerifiedVouchers {
    VerifiedVouchers::new(policy())
}

#[test]
fn a_validated_voucher_is_remembered_and_still_accepted() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = mint(&header(), &claims());
    for _ in 0..3 {
        let v = memory.validate(&token, &keys, NOW).unwrap();
        assert_eq!(v.purpose_id(), PURPOSE);
        assert_eq!(v.client_id(), CLIENT);
    }
    assert_eq!(memory.len(), 1);
}

#[test]
fn a_remembered_voucher_gives_the_same_answer_as_a_full_check() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = mint(&header(), &claims());
    let first = memory.validate(&token, &keys, NOW).unwrap();
    let again = memory.validate(&token, &keys, NOW + 1).unwrap();
    let full = validate(&token, &keys, &policy(), NOW + 1).unwrap();
    assert_eq!(format!("{again:?}"), format!("{full:?}"));
    assert_eq!(format!("{first:?}"), format!("{full:?}"));
}

#[test]
fn a_bad_signature_is_refused_every_time_and_not_remembered() {
    let memory = memory();
    let keys = Arc::new(keys());
    let forged = sign_with(test_keys::stranger(), &header(), &claims());
    for _ in 0..2 {
        assert!(matches!(
            memory.validate(&forged, &keys, NOW),
            Err(VoucherError::BadSignature)
        ));
    }
    assert!(memory.is_empty());
}

#[test]
fn a_refused_voucher_is_not_remembered() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = mint(&header(), &claims());
    // Expired at the first sight: refused, and still refused at a time it would be valid
    // only through a full check (which is what runs).
    assert!(matches!(
        memory.validate(&token, &keys, NOW + 540 + 31),
        Err(VoucherError::Expired)
    ));
    assert!(memory.is_empty());
    assert!(memory.validate(&token, &keys, NOW).is_ok());
}

#[test]
fn a_remembered_voucher_does_not_cover_another_payload() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = mint(&header(), &claims());
    memory.validate(&token, &keys, NOW).unwrap();
    // The same header and signature over a payload with a longer exp.
    let [h, _, s] = jws::split(&token).unwrap();
    let mut c = claims();
    c["exp"] = json!(NOW + 3000);
    let spliced = format!("{h}.{}.{s}", b64url(serde_json::to_vec(&c).unwrap()));
    assert!(matches!(
        memory.validate(&spliced, &keys, NOW),
        Err(VoucherError::BadSignature)
    ));
    // One byte more (trailing whitespace) is another token, checked in full.
    assert!(matches!(
        memory.validate(&format!("{token} "), &keys, NOW),
        Err(VoucherError::Malformed)
    ));
}

#[test]
fn a_remembered_voucher_still_expires_and_waits_for_nbf() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = mint(&header(), &claims());
    memory.validate(&token, &keys, NOW).unwrap();
    assert!(matches!(
        memory.validate(&token, &keys, NOW + 540 + 31),
        Err(VoucherError::Expired)
    ));
    assert!(matches!(
        memory.validate(&token, &keys, NOW - 60 - 31),
        Err(VoucherError::NotYetValid)
    ));
    let mut c = claims();
    c["nbf"] = json!(NOW - 60);
    c["iat"] = json!(NOW + 40);
    let issued_later = mint(&header(), &c);
    memory.validate(&issued_later, &keys, NOW + 40).unwrap();
    assert!(matches!(
        memory.validate(&issued_later, &keys, NOW),
        Err(VoucherError::IssuedInFuture)
    ));
}

#[test]
fn a_remembered_voucher_follows_the_current_key_set() {
    let memory = memory();
    let token = mint(&header(), &claims());
    memory.validate(&token, &Arc::new(keys()), NOW).unwrap();
    // The kid removed from the JWKS: unknown, whatever was remembered.
    let other = Arc::new(JwkSet::single(
        "another-kid",
        test_keys::authority().public(),
    ));
    assert!(matches!(
        memory.validate(&token, &other, NOW),
        Err(VoucherError::UnknownKid(_))
    ));
    // The kid now names a different key: the remembered voucher does not apply.
    memory.validate(&token, &Arc::new(keys()), NOW).unwrap();
    let rotated = Arc::new(JwkSet::single(
        &test_keys::authority().kid(),
        test_keys::stranger().public(),
    ));
    assert!(matches!(
        memory.validate(&token, &rotated, NOW),
        Err(VoucherError::BadSignature)
    ));
}

#[test]
fn another_key_set_empties_the_memory() {
    let memory = memory();
    let first = mint(&header(), &claims());
    let mut c = claims();
    c["jti"] = json!("another-jti");
    let second = mint(&header(), &c);
    let keys = Arc::new(keys());
    memory.validate(&first, &keys, NOW).unwrap();
    memory.validate(&second, &keys, NOW).unwrap();
    assert_eq!(memory.len(), 2);
    // A refreshed set with the same content is another set: what was remembered goes.
    memory
        .validate(&first, &Arc::new(self::keys()), NOW)
        .unwrap();
    assert_eq!(memory.len(), 1);
}

#[test]
fn an_oversized_token_is_refused_before_the_memory() {
    let memory = memory();
    let keys = Arc::new(keys());
    let token = "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1);
    assert_eq!(
        memory.validate(&token, &keys, NOW).unwrap_err(),
        VoucherError::TooLarge
    );
    assert!(memory.is_empty());
}

#[test]
fn the_memory_is_bounded() {
    let memory = VerifiedVouchers::with_capacity(policy(), 2);
    let keys = Arc::new(keys());
    for i in 0..5 {
        let mut c = claims();
        c["jti"] = json!(format!("jti-{i}"));
        memory.validate(&mint(&header(), &c), &keys, NOW).unwrap();
        assert!(memory.len() <= 2);
    }
}
