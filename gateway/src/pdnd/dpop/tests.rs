//! Proof creation and verification, against fixed keys and hand-built proofs.

use super::*;
use crate::pdnd::jws::{self, b64url};
use crate::pdnd::test_keys;
use jsonwebtoken::{Algorithm, EncodingKey};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde_json::json;
use serde_json::{Map, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://api.comune.example.it/anagrafe/v1/residenza";
const VOUCHER: &str = "eyJhbGciOiJSUzI1NiJ9.eyJjbmYiOnsiamt0IjoieCJ9fQ.c2ln";

fn key() -> &'static DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::generate().unwrap())
}

fn other_key() -> &'static DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::generate().unwrap())
}

fn request() -> ProofRequest<'static> {
    ProofRequest {
        method: "POST",
        url: URL,
        access_token: Some(VOUCHER),
    }
}

fn check(proof: &str) -> Result<VerifiedProof, DpopError> {
    verify(proof, &request(), &ProofPolicy::default(), NOW)
}

fn header() -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key().public().to_jwk()})
}

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW,
           "ath": access_token_hash(VOUCHER)})
}

/// Signs header and claims as given with an ES256 key.
fn sign_es256(key: &DpopKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn with_claims(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<VerifiedProof, DpopError> {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    check(&sign_es256(key(), &header(), &c))
}

fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<VerifiedProof, DpopError> {
    let mut h = header();
    edit(h.as_object_mut().unwrap());
    check(&sign_es256(key(), &h, &claims()))
}

fn rsa_jwk() -> Value {
    let public = test_keys::client().public();
    json!({"kty": "RSA", "n": public.n, "e": public.e})
}

// --- accepted ---

#[test]
fn proof_of_our_own_key_verifies_and_names_the_key() {
    let proof = key().proof("POST", URL, Some(VOUCHER), NOW).unwrap();
    let verified = check(&proof).unwrap();
    assert_eq!(verified.jkt(), key().jkt());
    assert!(verified.is_bound_to(key().jkt()));
    assert!(!verified.is_bound_to(other_key().jkt()));
    assert_eq!(verified.iat(), NOW);
    assert_eq!(verified.algorithm(), ProofAlgorithm::ES256);
    assert_eq!(verified.replay_expires_at(), NOW + 61);
    // Fresh jti each time.
    let again = check(&key().proof("POST", URL, Some(VOUCHER), NOW).unwrap()).unwrap();
    assert_ne!(again.jti(), verified.jti());
}

#[test]
fn hand_built_es256_proof_verifies() {
    let v = check(&sign_es256(key(), &header(), &claims())).unwrap();
    assert_eq!(v.jti(), "e1j3V_bKic8-LAEB");
}

#[test]
fn rs256_and_ps256_proofs_verify() {
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let name = format!("{alg:?}");
        let h = json!({"typ": "dpop+jwt", "alg": name, "jwk": rsa_jwk()});
        let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), test_keys::client().encoding_key(), alg)
                .unwrap();
        let v = check(&format!("{input}.{sig}")).unwrap();
        assert_eq!(v.jkt(), test_keys::client().kid(), "{name}");
    }
}

#[test]
fn token_endpoint_proof_needs_no_ath() {
    let proof = key()
        .proof(
            "POST",
            "https://auth.interop.pagopa.it/token.oauth2",
            None,
            NOW,
        )
        .unwrap();
    let req = ProofRequest {
        method: "POST",
        url: "https://auth.interop.pagopa.it/token.oauth2",
        access_token: None,
    };
    assert!(verify(&proof, &req, &ProofPolicy::default(), NOW).is_ok());
}

#[test]
fn htu_is_compared_after_normalisation() {
    for htu in [
        "HTTPS://API.Comune.Example.IT/anagrafe/v1/residenza",
        "https://api.comune.example.it:443/anagrafe/v1/residenza",
        "https://api.comune.example.it/anagrafe/v1/./residenza",
        "https://api.comune.example.it/anagrafe/v1/%72esidenza",
        "https://api.comune.example.it/anagrafe/v1/residenza?x=1#frag",
    ] {
        assert!(
            with_claims(|c| drop(c.insert("htu".into(), json!(htu)))).is_ok(),
            "{htu}"
        );
    }
    assert_eq!(
        normalize_htu("http://Example.com:80").as_deref(),
        Some("http://example.com/")
    );
    assert_eq!(
        normalize_htu("http://example.com/a%2fb").as_deref(),
        Some("http://example.com/a%2Fb")
    );
    // The request side is normalised the same way, query included.
    let req = ProofRequest {
        method: "POST",
        url: "https://API.comune.example.it:443/anagrafe/v1/residenza?debug=1",
        access_token: Some(VOUCHER),
    };
    let proof = sign_es256(key(), &header(), &claims());
    assert!(verify(&proof, &req, &ProofPolicy::default(), NOW).is_ok());
}

#[test]
fn iat_at_the_edges_of_the_window_is_accepted() {
    assert!(with_claims(|c| drop(c.insert("iat".into(), json!(NOW - 60)))).is_ok());
    assert!(with_claims(|c| drop(c.insert("iat".into(), json!(NOW + 10)))).is_ok());
}

// --- refused, one rule each ---

#[test]
fn typ_other_than_dpop_jwt() {
    for typ in ["JWT", "at+jwt", "DPOP+JWT"] {
        assert_eq!(
            with_header(|h| drop(h.insert("typ".into(), json!(typ)))).unwrap_err(),
            DpopError::WrongType(Some(typ.into()))
        );
    }
    assert_eq!(
        with_header(|h| drop(h.remove("typ"))).unwrap_err(),
        DpopError::WrongType(None)
    );
}

#[test]
fn alg_none_and_hmac() {
    let mut h = header();
    h["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        b64url(h.to_string()),
        b64url(claims().to_string())
    );
    assert_eq!(
        check(&unsigned).unwrap_err(),
        DpopError::AlgorithmNotAllowed("none".into())
    );
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(key().public().x.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        check(&format!("{input}.{sig}")).unwrap_err(),
        DpopError::AlgorithmNotAllowed("HS256".into())
    );
    assert_eq!(
        with_header(|h| drop(h.remove("alg"))).unwrap_err(),
        DpopError::MissingAlgorithm
    );
}

#[test]
fn crit_is_refused() {
    assert_eq!(
        with_header(|h| drop(h.insert("crit".into(), json!(["exp"])))).unwrap_err(),
        DpopError::CriticalExtension
    );
}

#[test]
fn jwk_missing_private_or_unfit() {
    assert_eq!(
        with_header(|h| drop(h.remove("jwk"))).unwrap_err(),
        DpopError::MissingJwk
    );
    assert_eq!(
        with_header(|h| drop(
            h["jwk"]
                .as_object_mut()
                .unwrap()
                .insert("d".into(), json!("AAAA"))
        ))
        .unwrap_err(),
        DpopError::PrivateJwk
    );
    // An RSA key under ES256, a P-384 curve, a short coordinate.
    assert!(matches!(
        with_header(|h| drop(h.insert("jwk".into(), rsa_jwk()))),
        Err(DpopError::InvalidJwk { .. })
    ));
    assert!(matches!(
        with_header(|h| drop(
            h["jwk"]
                .as_object_mut()
                .unwrap()
                .insert("crv".into(), json!("P-384"))
        )),
        Err(DpopError::InvalidJwk { .. })
    ));
    assert!(matches!(
        with_header(|h| drop(
            h["jwk"]
                .as_object_mut()
                .unwrap()
                .insert("x".into(), json!("AAAA"))
        )),
        Err(DpopError::InvalidJwk { .. })
    ));
}

#[test]
fn short_rsa_jwk_is_refused() {
    let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
    let jwk = json!({"kty": "RSA", "n": b64url(rsa.n().to_vec()), "e": b64url(rsa.e().to_vec())});
    let h = json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk});
    let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
    // aws-lc refuses to sign with so short a key; OpenSSL still does.
    let pkey = PKey::from_rsa(rsa).unwrap();
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    let sig = b64url(signer.sign_oneshot_to_vec(input.as_bytes()).unwrap());
    assert!(matches!(
        check(&format!("{input}.{sig}")),
        Err(DpopError::InvalidJwk { .. })
    ));
}

#[test]
fn signed_by_another_key_than_its_jwk() {
    assert_eq!(
        check(&sign_es256(other_key(), &header(), &claims())).unwrap_err(),
        DpopError::BadSignature
    );
}

#[test]
fn tampered_claims() {
    let proof = sign_es256(key(), &header(), &claims());
    let [h, _, s] = jws::split(&proof).unwrap();
    let mut c = claims();
    c["iat"] = json!(NOW - 1);
    assert_eq!(
        check(&format!("{h}.{}.{s}", b64url(c.to_string()))).unwrap_err(),
        DpopError::BadSignature
    );
}

#[test]
fn htm_mismatch() {
    assert_eq!(
        with_claims(|c| drop(c.insert("htm".into(), json!("GET")))).unwrap_err(),
        DpopError::MethodMismatch {
            expected: "POST".into(),
            found: "GET".into()
        }
    );
    // Methods are case-sensitive.
    assert!(matches!(
        with_claims(|c| drop(c.insert("htm".into(), json!("post")))),
        Err(DpopError::MethodMismatch { .. })
    ));
}

#[test]
fn htu_mismatch() {
    for htu in [
        "https://api.comune.example.it/anagrafe/v1/stato-famiglia",
        "http://api.comune.example.it/anagrafe/v1/residenza",
        "https://api.comune.example.it:8443/anagrafe/v1/residenza",
        "https://evil.example/anagrafe/v1/residenza",
        "https://api.comune.example.it/anagrafe/v1/residenza/",
        "/anagrafe/v1/residenza",
        "https://user@api.comune.example.it/anagrafe/v1/residenza",
    ] {
        assert!(
            matches!(
                with_claims(|c| drop(c.insert("htu".into(), json!(htu)))),
                Err(DpopError::UrlMismatch { .. })
            ),
            "{htu}"
        );
    }
}

#[test]
fn proof_older_than_the_window() {
    assert_eq!(
        with_claims(|c| drop(c.insert("iat".into(), json!(NOW - 61)))).unwrap_err(),
        DpopError::Expired { iat: NOW - 61 }
    );
}

#[test]
fn proof_from_the_future() {
    assert_eq!(
        with_claims(|c| drop(c.insert("iat".into(), json!(NOW + 11)))).unwrap_err(),
        DpopError::IssuedInFuture { iat: NOW + 11 }
    );
}

#[test]
fn missing_or_mistyped_claims() {
    for name in ["htm", "htu", "iat", "jti"] {
        assert_eq!(
            with_claims(|c| drop(c.remove(name))).unwrap_err(),
            DpopError::MissingClaim(name),
            "{name}"
        );
    }
    assert_eq!(
        with_claims(|c| drop(c.insert("iat".into(), json!("1700000000")))).unwrap_err(),
        DpopError::InvalidClaim("iat")
    );
    assert_eq!(
        with_claims(|c| drop(c.insert("jti".into(), json!("")))).unwrap_err(),
        DpopError::InvalidClaim("jti")
    );
    assert_eq!(
        with_claims(|c| drop(c.insert("jti".into(), json!("x".repeat(MAX_JTI_LEN + 1)))))
            .unwrap_err(),
        DpopError::InvalidClaim("jti")
    );
}

#[test]
fn ath_missing_or_of_another_voucher() {
    assert_eq!(
        with_claims(|c| drop(c.remove("ath"))).unwrap_err(),
        DpopError::MissingAth
    );
    assert_eq!(
        with_claims(|c| drop(c.insert("ath".into(), json!(access_token_hash("another")))))
            .unwrap_err(),
        DpopError::AthMismatch
    );
}

#[test]
fn oversized_and_malformed() {
    assert_eq!(
        check(&"a".repeat(MAX_PROOF_LEN + 1)).unwrap_err(),
        DpopError::TooLarge
    );
    assert!(matches!(check("a.b"), Err(DpopError::Malformed(_))));
    assert!(matches!(check("!!.e30.c2ln"), Err(DpopError::Malformed(_))));
}

#[test]
fn our_proofs_strip_query_and_fragment_and_refuse_relative_urls() {
    let proof = key()
        .proof("GET", "https://api.example.it/x?y=1#z", None, NOW)
        .unwrap();
    let (_, claims) = crate::pdnd::client_assertion::decode_unverified(&proof).unwrap();
    assert_eq!(claims["htu"], "https://api.example.it/x");
    assert!(claims.get("ath").is_none());
    assert!(key().proof("GET", "/x", None, NOW).is_err());
    assert!(key().proof("GET", "ftp://example.it/x", None, NOW).is_err());
}

#[test]
fn pem_round_trip_keeps_the_thumbprint() {
    let ec = EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
    let pem = String::from_utf8(
        PKey::from_ec_key(ec.clone())
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap(),
    )
    .unwrap();
    let a = DpopKey::from_pem(&pem).unwrap();
    let b = DpopKey::from_ec(ec).unwrap();
    assert_eq!(a.jkt(), b.jkt());
    assert!(DpopKey::from_pem(&test_keys::client().to_pem()).is_err());
}

#[test]
fn challenge_lists_the_allowed_algorithms() {
    assert_eq!(ProofAlgorithm::challenge_list(), "ES256 RS256 PS256");
}
