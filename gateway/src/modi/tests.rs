//! Behaviour of the ModI module as a whole: sign/verify round trips, cross-checks with
//! independent implementations (josekit for JWS, OpenSSL for the chain), and one rejection test
//! per rule. Keys and certificates come from the dev PKI generated in memory once.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::keys::rsa_thumbprint_of;
use super::pki::{issue_ca, issue_leaf, issue_leaf_with_usages, new_ec_key, new_rsa_key, Validity};
use super::signature::encode;
use super::*;

/// 2026-05-28T20:26:40Z, inside the dev validity window.
const NOW: i64 = 1_780_000_000;
const AUD: &str = "https://anagrafe.comune.example/api/v1";
const BODY: &[u8] = br#"{"testo":"Ciao mondo"}"#;
const BODY_DIGEST: &str = "SHA-256=XPLevcS/HwVMCRq67PMbZd7RWF/zmIKEZPwrdiKIB5o=";
const JSON: &str = "application/json";

struct Identity {
    key_pem: String,
    chain_pem: String,
}

struct Fixture {
    ca_pem: String,
    rsa: Identity,
    ec: Identity,
    /// Signed by a second CA that the trust store does not know.
    stranger: Identity,
    /// Valid only in 2020, issued by `old_ca_pem` (valid 2019-2030).
    expired: Identity,
    old_ca_pem: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let v = Validity::DEV_DEFAULT;
        let (ca_pem, ca_key) = issue_ca("Comune di Esempio dev CA", v).expect("dev CA");
        let identity = |ca: &str, ca_key: &str, key_pem: String, validity: Validity| {
            let leaf = issue_leaf(ca, ca_key, &key_pem, "anagrafe.comune.example", validity)
                .expect("leaf certificate");
            Identity {
                key_pem,
                chain_pem: format!("{leaf}{ca}"),
            }
        };
        let rsa = identity(&ca_pem, &ca_key, new_rsa_key().expect("rsa key"), v);
        let ec = identity(&ca_pem, &ca_key, new_ec_key().expect("ec key"), v);
        let (other_ca, other_key) = issue_ca("Comune di Esempio dev CA", v).expect("second CA");
        let stranger = identity(&other_ca, &other_key, new_rsa_key().expect("rsa key"), v);
        let decade = Validity {
            not_before: 1_546_300_800,
            not_after: 1_893_456_000,
        };
        let (old_ca_pem, old_key) = issue_ca("Comune di Esempio old CA", decade).expect("old CA");
        let year_2020 = Validity {
            not_before: 1_577_836_800,
            not_after: 1_609_459_200,
        };
        let expired = identity(
            &old_ca_pem,
            &old_key,
            new_rsa_key().expect("rsa key"),
            year_2020,
        );
        Fixture {
            ca_pem,
            rsa,
            ec,
            stranger,
            expired,
            old_ca_pem,
        }
    })
}

fn material(identity: &Identity, alg: SigningAlgorithm) -> SigningMaterial {
    SigningMaterial::from_pem(
        identity.key_pem.as_bytes(),
        identity.chain_pem.as_bytes(),
        alg,
    )
    .expect("fixture material loads")
}

fn trust() -> TrustStore {
    TrustStore::from_pem(fixture().ca_pem.as_bytes()).expect("fixture CA loads")
}

fn claims(jti: &str) -> SignatureClaims {
    SignatureClaims {
        iss: "comune-fruitore".into(),
        sub: "comune-fruitore".into(),
        aud: AUD.into(),
        jti: jti.into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 290,
    }
}

fn expect() -> SignatureExpectations {
    SignatureExpectations {
        audience: AUD.into(),
        leeway_secs: 5,
        now: NOW,
        max_lifetime_secs: Some(600),
    }
}

fn json_headers(jws: &str) -> Vec<(&str, &str)> {
    vec![
        ("Content-Type", JSON),
        ("Digest", BODY_DIGEST),
        ("Agid-JWT-Signature", jws),
    ]
}

fn signed(material: &SigningMaterial, jti: &str) -> String {
    sign(
        material,
        &claims(jti),
        &[("Digest", BODY_DIGEST), ("Content-Type", JSON)],
    )
    .expect("signs")
}

fn verify_x5c(
    jws: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<VerifiedSignature, ModiError> {
    let trust = trust();
    verify(jws, &KeySource::X5c(&trust), &expect(), headers, body)
}

fn b64url_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

fn payload_of(jws: &str) -> Value {
    let part = jws.split('.').nth(1).expect("payload segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

fn header_of(jws: &str) -> Value {
    let part = jws.split('.').next().expect("header segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_for_every_algorithm() {
    let f = fixture();
    for (identity, alg) in [
        (&f.rsa, SigningAlgorithm::RS256),
        (&f.rsa, SigningAlgorithm::PS256),
        (&f.ec, SigningAlgorithm::ES256),
    ] {
        let jws = signed(&material(identity, alg), "jti-round-trip");
        let header = header_of(&jws);
        assert_eq!(header["alg"], alg.jose_name());
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5c"].as_array().map(Vec::len), Some(2));

        let payload = payload_of(&jws);
        assert_eq!(
            payload["signed_headers"],
            json!([{"digest": BODY_DIGEST}, {"content-type": JSON}])
        );
        for claim in ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"] {
            assert!(payload.get(claim).is_some(), "{claim} missing for {alg:?}");
        }

        let verified = verify_x5c(&jws, &json_headers(&jws), BODY)
            .unwrap_or_else(|e| panic!("{alg:?} does not verify: {e}"));
        assert_eq!(verified.algorithm, alg);
        assert_eq!(verified.jti, "jti-round-trip");
        assert_eq!(verified.audience, AUD);
        assert_eq!(verified.exp, NOW + 290);
        assert_eq!(verified.replay_expires_at, NOW + 295);
        assert_eq!(verified.iss.as_deref(), Some("comune-fruitore"));
        assert_eq!(
            verified.signed_headers,
            vec![
                ("digest".to_string(), BODY_DIGEST.to_string()),
                ("content-type".into(), JSON.into())
            ]
        );
        match &verified.signer {
            Signer::Certificate(leaf) => {
                assert!(
                    leaf.subject.contains("CN=anagrafe.comune.example"),
                    "{}",
                    leaf.subject
                );
                assert!(
                    leaf.issuer.contains("CN=Comune di Esempio dev CA"),
                    "{}",
                    leaf.issuer
                );
                assert_eq!(leaf.fingerprint_sha256.len(), 64);
            }
            other => panic!("unexpected signer {other:?}"),
        }
    }
}

#[test]
fn header_names_match_case_insensitively() {
    let jws = signed(
        &material(&fixture().rsa, SigningAlgorithm::RS256),
        "jti-case",
    );
    let headers = [("CONTENT-TYPE", JSON), ("dIgEsT", BODY_DIGEST)];
    assert!(verify_x5c(&jws, &headers, BODY).is_ok());
}

#[test]
fn kid_round_trip_through_the_resolver() {
    // INTEGRITY_REST_02: the key is registered on PDND, the header carries only its kid.
    let f = fixture();
    let resolver = InMemoryKidResolver::new();
    let kid = resolver
        .insert_rsa_pem(f.rsa.key_pem.as_bytes())
        .expect("register");
    assert_eq!(
        kid,
        rsa_thumbprint(f.rsa.key_pem.as_bytes()).expect("thumbprint")
    );
    let material = SigningMaterial::with_kid(
        f.rsa.key_pem.as_bytes(),
        kid.clone(),
        SigningAlgorithm::RS256,
    )
    .expect("material");
    let jws = signed(&material, "jti-kid");
    assert_eq!(header_of(&jws)["kid"], kid.as_str());
    assert!(header_of(&jws).get("x5c").is_none());
    assert_eq!(unverified_kid(&jws), Ok(Some(kid.clone())));

    let verified = verify(
        &jws,
        &KeySource::Kid(&resolver),
        &expect(),
        &json_headers(&jws),
        BODY,
    )
    .expect("verifies by kid");
    assert!(matches!(verified.signer, Signer::Kid(ref k) if *k == kid));
}

#[test]
fn the_header_is_the_materials_own_and_the_same_in_every_signature() {
    // The header segment is encoded once per material: it must still be exactly the header of
    // that material (its algorithm, its whole chain or its kid), and never another's.
    let f = fixture();
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        let identity = if alg == SigningAlgorithm::ES256 {
            &f.ec
        } else {
            &f.rsa
        };
        let m = material(identity, alg);
        let chain: Vec<String> = m.chain_der().iter().map(|d| STANDARD.encode(d)).collect();
        let (one, two) = (signed(&m, "jti-h1"), signed(&m, "jti-h2"));
        assert_eq!(one.split('.').next(), two.split('.').next());
        assert_eq!(
            header_of(&one),
            json!({"typ": "JWT", "alg": alg.jose_name(), "x5c": chain})
        );
        assert_ne!(one.split('.').nth(1), two.split('.').nth(1));
    }
    let kid = SigningMaterial::with_kid(f.rsa.key_pem.as_bytes(), "k-1", SigningAlgorithm::PS256)
        .expect("kid material");
    assert_eq!(
        header_of(&signed(&kid, "jti-h3")),
        json!({"typ": "JWT", "alg": "PS256", "kid": "k-1"})
    );
}

// ---------------------------------------------------- independent implementations

#[test]
fn josekit_verifies_what_jsonwebtoken_signs() {
    use josekit::jws::{ES256, PS256, RS256};
    let f = fixture();
    let rsa_public = openssl::pkey::PKey::private_key_from_pem(f.rsa.key_pem.as_bytes())
        .and_then(|k| k.rsa())
        .and_then(|r| r.public_key_to_pem_pkcs1())
        .expect("rsa public pkcs1");
    let ec_public = openssl::pkey::PKey::private_key_from_pem(f.ec.key_pem.as_bytes())
        .and_then(|k| k.public_key_to_pem())
        .expect("ec public");

    let cases: Vec<(SigningAlgorithm, Box<dyn josekit::jws::JwsVerifier>)> = vec![
        (
            SigningAlgorithm::RS256,
            Box::new(
                RS256
                    .verifier_from_pem(&rsa_public)
                    .expect("rs256 verifier"),
            ),
        ),
        (
            SigningAlgorithm::PS256,
            Box::new(
                PS256
                    .verifier_from_pem(&rsa_public)
                    .expect("ps256 verifier"),
            ),
        ),
        (
            SigningAlgorithm::ES256,
            Box::new(ES256.verifier_from_pem(&ec_public).expect("es256 verifier")),
        ),
    ];
    for (alg, verifier) in cases {
        let identity = if alg == SigningAlgorithm::ES256 {
            &f.ec
        } else {
            &f.rsa
        };
        let jws = signed(&material(identity, alg), "jti-josekit");
        let (payload, header) = josekit::jwt::decode_with_verifier(&jws, verifier.as_ref())
            .unwrap_or_else(|e| panic!("josekit rejects our {alg:?}: {e}"));
        assert_eq!(header.algorithm(), Some(alg.jose_name()));
        assert_eq!(payload.jwt_id(), Some("jti-josekit"));
        assert_eq!(
            payload.claim("signed_headers"),
            Some(&json!([{"digest": BODY_DIGEST}, {"content-type": JSON}]))
        );

        // And a flipped signature bit is caught by josekit too.
        let mut bytes = jws.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(josekit::jwt::decode_with_verifier(&tampered, verifier.as_ref()).is_err());
    }
}

#[test]
fn openssl_chains_the_x5c_to_the_dev_ca() {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509};
    let f = fixture();
    let jws = signed(&material(&f.rsa, SigningAlgorithm::RS256), "jti-openssl");
    let x5c: Vec<X509> = header_of(&jws)["x5c"]
        .as_array()
        .expect("x5c array")
        .iter()
        .map(|c| {
            X509::from_der(&STANDARD.decode(c.as_str().expect("string")).expect("b64"))
                .expect("der")
        })
        .collect();
    let ca = X509::from_pem(f.ca_pem.as_bytes()).expect("ca");
    // The leaf's signature verifies with the CA key, and the CA is the second x5c entry.
    assert!(x5c[0]
        .verify(&ca.public_key().expect("ca key"))
        .expect("verify call"));
    assert_eq!(x5c[1].to_der().expect("der"), ca.to_der().expect("der"));

    let mut builder = X509StoreBuilder::new().expect("store");
    builder.add_cert(ca).expect("add");
    let store = builder.build();
    let chain = Stack::new().expect("stack");
    let mut ctx = X509StoreContext::new().expect("ctx");
    let ok = ctx
        .init(&store, &x5c[0], &chain, |c| c.verify_cert())
        .expect("init");
    assert!(ok, "openssl does not chain the leaf to the dev CA");

    // The stranger's leaf does not chain to it.
    let stranger = X509::stack_from_pem(f.stranger.chain_pem.as_bytes()).expect("pem");
    let mut builder = X509StoreBuilder::new().expect("store");
    builder
        .add_cert(X509::from_pem(f.ca_pem.as_bytes()).expect("ca"))
        .expect("add");
    let store = builder.build();
    let ok = ctx
        .init(&store, &stranger[0], &chain, |c| c.verify_cert())
        .expect("init");
    assert!(!ok);
}

#[test]
fn jsonwebtoken_verifies_what_josekit_signs() {
    // The other direction: a JWS made by josekit (as another administration's gateway would)
    // passes our verifier.
    use josekit::jws::{JwsHeader, RS256};
    use josekit::jwt::JwtPayload;
    let f = fixture();
    let signer = RS256
        .signer_from_pem(f.rsa.key_pem.as_bytes())
        .expect("signer");
    let chain: Vec<Vec<u8>> = openssl::x509::X509::stack_from_pem(f.rsa.chain_pem.as_bytes())
        .expect("chain")
        .iter()
        .map(|c| c.to_der().expect("der"))
        .collect();
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_x509_certificate_chain(&chain);
    let mut payload = JwtPayload::new();
    payload.set_audience(vec![AUD]);
    payload.set_jwt_id("jti-from-josekit");
    for (name, value) in [("iat", NOW - 1), ("exp", NOW + 60)] {
        payload.set_claim(name, Some(json!(value))).expect("claim");
    }
    payload
        .set_claim(
            "signed_headers",
            Some(json!([{"digest": BODY_DIGEST}, {"content-type": JSON}])),
        )
        .expect("claim");
    let jws = josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("josekit signs");
    let verified = verify_x5c(&jws, &json_headers(&jws), BODY).expect("we verify josekit's JWS");
    assert_eq!(verified.jti, "jti-from-josekit");
}

#[test]
fn rsa_thumbprint_matches_rfc_7638_and_jsonwebtoken() {
    // RFC 7638 §3.1 example.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    assert_eq!(
        rsa_thumbprint_of(n, "AQAB"),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );

    let f = fixture();
    let ours = rsa_thumbprint(f.rsa.key_pem.as_bytes()).expect("thumbprint");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(f.rsa.key_pem.as_bytes()).expect("key");
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256)
        .expect("jwk");
    let theirs = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .expect("thumbprint");
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 43);
}

// ------------------------------------------------------------------ rejections

#[test]
fn body_changed_after_signing() {
    let jws = signed(
        &material(&fixture().rsa, SigningAlgorithm::RS256),
        "jti-body",
    );
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), br#"{"testo":"Ciao mondo!"}"#).err(),
        Some(ModiError::DigestMismatch)
    );
}

#[test]
fn digest_of_another_algorithm() {
    let sha512 = "SHA-512=9ZhHsdn6NLq8PYSbNQqKq1HmHRJN8rCFmbRyTCoF3XALSkgCFO6lrlG7vGRAI8yg+sB0TPX0uqOT+fgYv/8C5A==";
    let jws = sign(
        &material(&fixture().rsa, SigningAlgorithm::RS256),
        &claims("jti-sha512"),
        &[("digest", sha512), ("content-type", JSON)],
    )
    .expect("signs");
    let headers = [("content-type", JSON), ("digest", sha512)];
    assert_eq!(
        verify_x5c(&jws, &headers, BODY).err(),
        Some(ModiError::UnsupportedDigestAlgorithm("SHA-512".into()))
    );
}

#[test]
fn signed_header_value_differs_from_the_actual_one() {
    let jws = signed(&material(&fixture().rsa, SigningAlgorithm::RS256), "jti-ct");
    let headers = [("content-type", "application/xml"), ("digest", BODY_DIGEST)];
    assert_eq!(
        verify_x5c(&jws, &headers, BODY).err(),
        Some(ModiError::SignedHeaderMismatch("content-type".into()))
    );
    // A signed header missing from the message is a mismatch too.
    let headers = [("digest", BODY_DIGEST)];
    assert_eq!(
        verify_x5c(&jws, &headers, BODY).err(),
        Some(ModiError::SignedHeaderMismatch("content-type".into()))
    );
}

#[test]
fn content_type_present_but_not_signed() {
    let jws = sign(
        &material(&fixture().rsa, SigningAlgorithm::RS256),
        &claims("jti-unsigned-ct"),
        &[("digest", BODY_DIGEST)],
    )
    .expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::MissingSignedHeader("content-type".into()))
    );
    // Without Content-Type on the message the same JWS is fine.
    assert!(verify_x5c(&jws, &[("digest", BODY_DIGEST)], BODY).is_ok());
    // Content-Encoding follows the same rule.
    let headers = [("digest", BODY_DIGEST), ("content-encoding", "gzip")];
    assert_eq!(
        verify_x5c(&jws, &headers, BODY).err(),
        Some(ModiError::MissingSignedHeader("content-encoding".into()))
    );
}

#[test]
fn digest_must_be_signed_and_present() {
    let m = material(&fixture().rsa, SigningAlgorithm::RS256);
    // Our signer refuses to leave it out...
    assert_eq!(
        sign(&m, &claims("j"), &[("content-type", JSON)]).err(),
        Some(ModiError::MissingSignedHeader("digest".into()))
    );
    // ...and a foreign signer that does is refused by the verifier.
    let payload = json!({"aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "j-nodigest",
                         "signed_headers": [{"content-type": JSON}]});
    let jws = encode(&m, &payload).expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::MissingSignedHeader("digest".into()))
    );
    // Signed digest but no Digest header on the message.
    let jws = signed(&m, "jti-nohdr");
    assert_eq!(
        verify_x5c(&jws, &[("content-type", JSON)], BODY).err(),
        Some(ModiError::SignedHeaderMismatch("digest".into()))
    );
    // No signed_headers at all.
    let payload = json!({"aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "j-none"});
    let jws = encode(&m, &payload).expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::MissingClaim("signed_headers"))
    );
    // signed_headers as a plain object instead of an array of single-key objects.
    let payload = json!({"aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "j-obj",
                         "signed_headers": {"digest": BODY_DIGEST}});
    let jws = encode(&m, &payload).expect("signs");
    assert!(matches!(
        verify_x5c(&jws, &json_headers(&jws), BODY),
        Err(ModiError::Malformed { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid() {
    let m = material(&fixture().rsa, SigningAlgorithm::RS256);
    let mut c = claims("jti-exp");
    c.iat = NOW - 400;
    c.nbf = NOW - 400;
    c.exp = NOW - 100;
    let jws = sign(&m, &c, &[("digest", BODY_DIGEST), ("content-type", JSON)]).expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::Expired { exp: NOW - 100 })
    );

    let mut c = claims("jti-nbf");
    c.nbf = NOW + 120;
    c.exp = NOW + 300;
    let jws = sign(&m, &c, &[("digest", BODY_DIGEST), ("content-type", JSON)]).expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::NotYetValid {
            not_before: NOW + 120
        })
    );

    // Within the 5 s leeway both are accepted.
    let mut c = claims("jti-skew");
    c.iat = NOW + 4;
    c.nbf = NOW + 4;
    let jws = sign(&m, &c, &[("digest", BODY_DIGEST), ("content-type", JSON)]).expect("signs");
    assert!(verify_x5c(&jws, &json_headers(&jws), BODY).is_ok());

    let mut c = claims("jti-long");
    c.exp = NOW + 3600;
    let jws = sign(&m, &c, &[("digest", BODY_DIGEST), ("content-type", JSON)]).expect("signs");
    assert!(matches!(
        verify_x5c(&jws, &json_headers(&jws), BODY),
        Err(ModiError::LifetimeTooLong { .. })
    ));
}

#[test]
fn wrong_audience() {
    let m = material(&fixture().ec, SigningAlgorithm::ES256);
    let mut c = claims("jti-aud");
    c.aud = "https://tributi.comune.example/api/v1".into();
    let jws = sign(&m, &c, &[("digest", BODY_DIGEST), ("content-type", JSON)]).expect("signs");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::WrongAudience {
            expected: AUD.into(),
            found: "https://tributi.comune.example/api/v1".into()
        })
    );
}

#[test]
fn replayed_jti() {
    let jws = signed(
        &material(&fixture().rsa, SigningAlgorithm::PS256),
        "jti-replay",
    );
    let guard = InMemoryReplayGuard::new(100);
    let first = verify_x5c(&jws, &json_headers(&jws), BODY).expect("first verifies");
    assert_eq!(first.check_replay(&guard, NOW), Ok(()));
    let second = verify_x5c(&jws, &json_headers(&jws), BODY).expect("signature still fine");
    assert_eq!(
        second.check_replay(&guard, NOW + 1),
        Err(ModiError::Replayed("jti-replay".into()))
    );
    assert_eq!(ModiError::Replayed("x".into()).http_status(), 401);
}

#[test]
fn x5c_not_chained_to_the_trust_store() {
    let jws = signed(
        &material(&fixture().stranger, SigningAlgorithm::RS256),
        "jti-stranger",
    );
    assert!(matches!(
        verify_x5c(&jws, &json_headers(&jws), BODY),
        Err(ModiError::UntrustedChain(_))
    ));
}

#[test]
fn x5c_leaf_must_allow_digital_signatures() {
    use rcgen::KeyUsagePurpose as U;
    let v = Validity::DEV_DEFAULT;
    let (ca_pem, ca_key) = issue_ca("Key usage test CA", v).expect("CA");
    let trust = TrustStore::from_pem(ca_pem.as_bytes()).expect("trust");
    let check = |usages: Vec<U>, jti: &str| {
        let key_pem = new_ec_key().expect("key");
        let leaf =
            issue_leaf_with_usages(&ca_pem, &ca_key, &key_pem, "fruitore.example", v, usages)
                .expect("leaf");
        let material = SigningMaterial::from_pem(
            key_pem.as_bytes(),
            format!("{leaf}{ca_pem}").as_bytes(),
            SigningAlgorithm::ES256,
        )
        .expect("material");
        let jws = signed(&material, jti);
        verify(
            &jws,
            &KeySource::X5c(&trust),
            &expect(),
            &json_headers(&jws),
            BODY,
        )
    };

    // Accepted: digitalSignature alone, with other bits, or no keyUsage extension at all.
    for (usages, jti) in [
        (vec![U::DigitalSignature], "ku-ds"),
        (vec![U::DigitalSignature, U::KeyEncipherment], "ku-ds-ke"),
        (vec![], "ku-none"),
    ] {
        assert!(check(usages, jti).is_ok(), "{jti}");
    }

    // Refused although the chain is trusted: a CA-style key or an encryption-only key.
    for (usages, jti) in [
        (vec![U::KeyCertSign], "ku-certsign"),
        (vec![U::KeyEncipherment], "ku-encipher"),
        (vec![U::KeyAgreement, U::CrlSign], "ku-agree"),
    ] {
        let err = check(usages, jti).unwrap_err();
        assert!(
            matches!(&err, ModiError::CertificateUsage(m) if m.contains("without digitalSignature")),
            "{jti}: {err}"
        );
        assert_eq!(err.http_status(), 401);
    }
}

#[test]
fn certificate_validity_is_checked_at_now() {
    let f = fixture();
    let old_trust = TrustStore::from_pem(f.old_ca_pem.as_bytes()).expect("old CA");
    let jws = signed(
        &material(&f.expired, SigningAlgorithm::RS256),
        "jti-old-cert",
    );
    let err = verify(
        &jws,
        &KeySource::X5c(&old_trust),
        &expect(),
        &json_headers(&jws),
        BODY,
    )
    .err();
    assert!(
        matches!(&err, Some(ModiError::UntrustedChain(reason)) if reason.contains("expired")),
        "{err:?}"
    );
    // The same chain verifies when `now` is inside its 2020 window: the time comes from the
    // caller, not from the system clock.
    let x5c: Vec<String> = header_of(&jws)["x5c"]
        .as_array()
        .expect("x5c")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    assert!(old_trust.verify_chain(&x5c, 1_590_000_000).is_ok());
    assert!(matches!(
        old_trust.verify_chain(&x5c, NOW),
        Err(ModiError::UntrustedChain(_))
    ));
    // And the current leaf is not valid in 2020 (before the dev window starts).
    let jws = signed(
        &material(&f.rsa, SigningAlgorithm::RS256),
        "jti-future-cert",
    );
    let x5c: Vec<String> = header_of(&jws)["x5c"]
        .as_array()
        .expect("x5c")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    assert!(matches!(
        trust().verify_chain(&x5c, 1_590_000_000),
        Err(ModiError::UntrustedChain(_))
    ));
    assert!(matches!(
        trust().verify_chain(&[], NOW),
        Err(ModiError::MissingKeyReference("x5c"))
    ));
    assert!(matches!(
        trust().verify_chain(&["@@".into()], NOW),
        Err(ModiError::Malformed { .. })
    ));
}

#[test]
fn kid_unknown_or_missing() {
    let f = fixture();
    let resolver = InMemoryKidResolver::new();
    let m = SigningMaterial::with_kid(
        f.rsa.key_pem.as_bytes(),
        "not-registered",
        SigningAlgorithm::RS256,
    )
    .expect("material");
    let jws = signed(&m, "jti-kid-unknown");
    assert_eq!(
        verify(
            &jws,
            &KeySource::Kid(&resolver),
            &expect(),
            &json_headers(&jws),
            BODY
        )
        .err(),
        Some(ModiError::UnknownKid("not-registered".into()))
    );
    // An x5c-only JWS under the kid trust model has no key reference.
    let jws = signed(&material(&f.rsa, SigningAlgorithm::RS256), "jti-no-kid");
    assert_eq!(
        verify(
            &jws,
            &KeySource::Kid(&resolver),
            &expect(),
            &json_headers(&jws),
            BODY
        )
        .err(),
        Some(ModiError::MissingKeyReference("kid"))
    );
    // And a kid-only JWS under the x5c model likewise.
    let jws = signed(&m, "jti-no-x5c");
    assert_eq!(
        verify_x5c(&jws, &json_headers(&jws), BODY).err(),
        Some(ModiError::MissingKeyReference("x5c"))
    );
}

#[test]
fn kid_key_registered_for_another_algorithm_or_signed_by_another_key() {
    let f = fixture();
    let resolver = InMemoryKidResolver::new();
    let kid = resolver
        .insert_rsa_pem(f.rsa.key_pem.as_bytes())
        .expect("register");
    // Registered as RS256 (as PDND does); a PS256 JWS under it is refused.
    let m = SigningMaterial::with_kid(
        f.rsa.key_pem.as_bytes(),
        kid.clone(),
        SigningAlgorithm::PS256,
    )
    .expect("m");
    let jws = signed(&m, "jti-ps-under-rs");
    assert!(matches!(
        verify(
            &jws,
            &KeySource::Kid(&resolver),
            &expect(),
            &json_headers(&jws),
            BODY
        ),
        Err(ModiError::AlgorithmNotAllowed(_))
    ));
    // Another key claiming the registered kid.
    let m = SigningMaterial::with_kid(f.stranger.key_pem.as_bytes(), kid, SigningAlgorithm::RS256)
        .expect("m");
    let jws = signed(&m, "jti-impostor");
    assert_eq!(
        verify(
            &jws,
            &KeySource::Kid(&resolver),
            &expect(),
            &json_headers(&jws),
            BODY
        )
        .err(),
        Some(ModiError::BadSignature)
    );
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let f = fixture();
    let genuine = signed(&material(&f.rsa, SigningAlgorithm::RS256), "jti-alg");
    let mut header = header_of(&genuine);
    let payload = genuine.split('.').nth(1).expect("payload").to_string();

    header["alg"] = json!("none");
    let none = format!("{}.{payload}.", b64url_json(&header));
    assert_eq!(
        verify_x5c(&none, &json_headers(&none), BODY).err(),
        Some(ModiError::AlgorithmNotAllowed("none".into()))
    );

    // Key confusion: HS256 keyed with the public certificate bytes a verifier could see.
    header["alg"] = json!("HS256");
    let signing_input = format!("{}.{payload}", b64url_json(&header));
    let secret = f.rsa.chain_pem.as_bytes();
    let mac = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    };
    let hs = format!("{signing_input}.{mac}");
    assert_eq!(
        verify_x5c(&hs, &json_headers(&hs), BODY).err(),
        Some(ModiError::AlgorithmNotAllowed("HS256".into()))
    );

    // An RSA certificate cannot vouch for an ES256 signature.
    header["alg"] = json!("ES256");
    let es = format!(
        "{}.{payload}.{}",
        b64url_json(&header),
        genuine.split('.').nth(2).expect("sig")
    );
    assert!(matches!(
        verify_x5c(&es, &json_headers(&es), BODY),
        Err(ModiError::UnusableKey(_))
    ));
}

#[test]
fn tampered_payload_wrong_typ_and_crit() {
    let m = material(&fixture().rsa, SigningAlgorithm::RS256);
    let genuine = signed(&m, "jti-tamper");
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut payload = payload_of(&genuine);
    payload["aud"] = json!("https://attacker.example");
    let tampered = format!("{}.{}.{}", parts[0], b64url_json(&payload), parts[2]);
    assert_eq!(
        verify_x5c(&tampered, &json_headers(&tampered), BODY).err(),
        Some(ModiError::BadSignature)
    );

    let mut header = header_of(&genuine);
    header["typ"] = json!("at+jwt");
    let typ = format!("{}.{}.{}", b64url_json(&header), parts[1], parts[2]);
    assert_eq!(
        verify_x5c(&typ, &json_headers(&typ), BODY).err(),
        Some(ModiError::WrongTokenType(Some("at+jwt".into())))
    );

    let mut header = header_of(&genuine);
    header["crit"] = json!(["b64"]);
    let crit = format!("{}.{}.{}", b64url_json(&header), parts[1], parts[2]);
    assert!(matches!(
        verify_x5c(&crit, &json_headers(&crit), BODY),
        Err(ModiError::Malformed { .. })
    ));

    assert!(matches!(
        verify_x5c("not-a-jws", &[], BODY),
        Err(ModiError::Malformed { .. })
    ));
}

#[test]
fn typ_is_required_and_compared_case_insensitively() {
    let m = material(&fixture().rsa, SigningAlgorithm::RS256);
    let KeyReference::X5c(chain) = m.key_reference().clone() else {
        panic!("x5c material expected");
    };
    let payload = payload_of(&signed(&m, "jti-typ"));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5c = Some(chain);
    for (typ, accepted) in [
        (Some("jwt"), true),
        (Some("JWT"), true),
        (None, false),
        (Some("JOSE"), false),
    ] {
        header.typ = typ.map(str::to_string);
        let jws = jsonwebtoken::encode(&header, &payload, m.encoding_key()).expect("signs");
        let result = verify_x5c(&jws, &json_headers(&jws), BODY);
        if accepted {
            assert!(result.is_ok(), "typ {typ:?}: {result:?}");
        } else {
            assert_eq!(
                result.err(),
                Some(ModiError::WrongTokenType(typ.map(str::to_string)))
            );
        }
    }
}

#[test]
fn duplicate_headers_with_different_values_are_refused() {
    let jws = signed(
        &material(&fixture().rsa, SigningAlgorithm::RS256),
        "jti-dup",
    );
    let headers = [
        ("content-type", JSON),
        ("content-type", "text/plain"),
        ("digest", BODY_DIGEST),
    ];
    assert!(matches!(
        verify_x5c(&jws, &headers, BODY),
        Err(ModiError::Malformed { .. })
    ));
}

#[test]
fn signing_material_is_checked_on_load() {
    let f = fixture();
    // EC key with an RSA algorithm.
    assert!(matches!(
        SigningMaterial::from_pem(
            f.ec.key_pem.as_bytes(),
            f.ec.chain_pem.as_bytes(),
            SigningAlgorithm::RS256
        ),
        Err(ModiError::KeyMaterial(_))
    ));
    // Key and certificate of different identities.
    assert!(matches!(
        SigningMaterial::from_pem(
            f.rsa.key_pem.as_bytes(),
            f.stranger.chain_pem.as_bytes(),
            SigningAlgorithm::RS256
        ),
        Err(ModiError::KeyMaterial(_))
    ));
    // A 1024-bit RSA key.
    let small = openssl::rsa::Rsa::generate(1024)
        .and_then(openssl::pkey::PKey::from_rsa)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .expect("small key");
    assert!(matches!(
        SigningMaterial::with_kid(&small, "k", SigningAlgorithm::RS256),
        Err(ModiError::KeyMaterial(_))
    ));
    assert!(matches!(
        TrustStore::from_pem(b"nothing"),
        Err(ModiError::KeyMaterial(_))
    ));
    // Debug never shows key bytes.
    let debug = format!("{:?}", material(&f.rsa, SigningAlgorithm::RS256));
    assert!(!debug.contains("PRIVATE"), "{debug}");
}

// ---------------------------------------------------------------- responses

#[test]
fn signed_response_verifies_for_the_receiver() {
    let m = material(&fixture().ec, SigningAlgorithm::ES256);
    let client_id = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    let mut c = claims("jti-response");
    c.aud = client_id.into();
    let signed = sign_response(200, &m, &c, Some(JSON), None, BODY)
        .expect("signs")
        .expect("has body");
    assert_eq!(signed.digest, BODY_DIGEST);
    let headers = [
        ("Content-Type", JSON),
        ("Digest", signed.digest.as_str()),
        ("Agid-JWT-Signature", signed.agid_jwt_signature.as_str()),
    ];
    let trust = trust();
    let receiver = SignatureExpectations {
        audience: client_id.into(),
        ..expect()
    };
    let verified =
        verify_response(200, &headers, BODY, &KeySource::X5c(&trust), &receiver).expect("verifies");
    assert_eq!(verified.jti, "jti-response");

    // The saved body altered afterwards.
    assert_eq!(
        verify_response(200, &headers, b"{}", &KeySource::X5c(&trust), &receiver).err(),
        Some(ModiError::DigestMismatch)
    );
    // Verified by someone it was not meant for.
    assert!(matches!(
        verify_response(200, &headers, BODY, &KeySource::X5c(&trust), &expect()),
        Err(ModiError::WrongAudience { .. })
    ));
    // Unsigned response.
    assert_eq!(
        verify_response(200, &headers[..2], BODY, &KeySource::X5c(&trust), &receiver).err(),
        Some(ModiError::MissingHeader("agid-jwt-signature".into()))
    );
    // 204/304 are never signed.
    assert!(!is_signable_status(204) && !is_signable_status(304) && is_signable_status(200));
    assert_eq!(
        sign_response(204, &m, &c, None, None, b"").expect("no error"),
        None
    );
    assert_eq!(
        verify_response(304, &[], b"", &KeySource::X5c(&trust), &receiver).err(),
        Some(ModiError::MissingHeader("agid-jwt-signature".into()))
    );
    // verify_request finds the headers the same way.
    let verified =
        verify_request(&headers, BODY, &KeySource::X5c(&trust), &receiver).expect("verifies");
    assert_eq!(verified.audience, client_id);
}

// ---------------------------------------------------------------- tracking evidence

/// The TrackingEvidence sample from PDND's documentation (HS256, so only its bytes matter).
const DOCS_TRACKING_JWS: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlptWXhaR0UyWWpRdE16WTJZeTAwTldJNUxUaGpOR0l0TURKbVltUXlaR0l5TW1aaCIsInR5cCI6ImF0K2p3dCJ9.eyJqdGkiOiJkc2Zkc2Zkc2ZkcyIsImEiOiJiIn0.2QcY5UpoE2PgJhe1FKnHx-SZZq_NS6AKDTlfFdpVP9Q";

#[test]
fn tracking_evidence_digest_vectors() {
    let good = "79ba8c02000c582fbd1631197e83640d0fb0ecb33f1ef641e7c633ac3df556e5";
    let with_newline = "5db26201b684761d2b970329ab8596773164ba1b43b1559980e20045941b8065";
    assert_eq!(tracking_evidence_digest(DOCS_TRACKING_JWS), good);
    assert_eq!(
        tracking_evidence_digest(&format!("{DOCS_TRACKING_JWS}\n")),
        with_newline
    );
    assert!(binds_to_voucher(DOCS_TRACKING_JWS, good));
    assert!(binds_to_voucher(
        DOCS_TRACKING_JWS,
        &good.to_ascii_uppercase()
    ));
    // The docs' value (hash of JWS + "\n") does not bind the JWS.
    assert!(!binds_to_voucher(DOCS_TRACKING_JWS, with_newline));
    assert!(!binds_to_voucher(DOCS_TRACKING_JWS, &good[..63]));
    assert!(!binds_to_voucher(DOCS_TRACKING_JWS, ""));
    assert_eq!(check_voucher_binding(DOCS_TRACKING_JWS, Some(good)), Ok(()));
    assert_eq!(
        check_voucher_binding(DOCS_TRACKING_JWS, Some(with_newline)),
        Err(ModiError::TrackingEvidenceNotBound)
    );
    assert_eq!(
        check_voucher_binding(DOCS_TRACKING_JWS, None),
        Err(ModiError::TrackingEvidenceNotBound)
    );
}

fn tracking_claims(jti: &str) -> TrackingClaims {
    TrackingClaims {
        iss: "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into(),
        aud: AUD.into(),
        user_id: "operatore-042".into(),
        user_location: "ufficio-anagrafe-pc-07".into(),
        loa: "substantial".into(),
        iat: NOW - 5,
        exp: NOW + 295,
        jti: jti.into(),
        purpose_id: Some("34f1624b-91cb-4b05-b8c0-cad208a30222".into()),
    }
}

fn tracking_setup() -> (InMemoryKidResolver, SigningMaterial) {
    let f = fixture();
    let resolver = InMemoryKidResolver::new();
    let kid = resolver
        .insert_rsa_pem(f.rsa.key_pem.as_bytes())
        .expect("register");
    let m = SigningMaterial::with_kid(f.rsa.key_pem.as_bytes(), kid, SigningAlgorithm::RS256)
        .expect("m");
    (resolver, m)
}

#[test]
fn tracking_evidence_round_trip_and_binding() {
    let (resolver, m) = tracking_setup();
    let jws = build_tracking_evidence(&m, &tracking_claims("te-1")).expect("builds");
    let header = header_of(&jws);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].is_string());
    let payload = payload_of(&jws);
    assert_eq!(payload["userID"], "operatore-042");
    assert_eq!(payload["userLocation"], "ufficio-anagrafe-pc-07");
    assert_eq!(payload["LoA"], "substantial");
    assert_eq!(payload["purposeId"], "34f1624b-91cb-4b05-b8c0-cad208a30222");

    let evidence = verify_tracking_evidence(&jws, &resolver, &expect()).expect("verifies");
    assert_eq!(evidence.user_id, "operatore-042");
    assert_eq!(evidence.user_location, "ufficio-anagrafe-pc-07");
    assert_eq!(evidence.loa, "substantial");
    assert_eq!(evidence.jti, "te-1");
    assert_eq!(
        evidence.purpose_id.as_deref(),
        Some("34f1624b-91cb-4b05-b8c0-cad208a30222")
    );
    assert_eq!(evidence.digest, tracking_evidence_digest(&jws));
    assert!(binds_to_voucher(&jws, &evidence.digest));
    assert!(!binds_to_voucher(&format!("{jws}\n"), &evidence.digest));

    // Replay of the same evidence.
    let guard = InMemoryReplayGuard::new(10);
    assert_eq!(evidence.check_replay(&guard, NOW), Ok(()));
    assert_eq!(
        evidence.check_replay(&guard, NOW),
        Err(ModiError::Replayed("te-1".into()))
    );

    // josekit agrees on the signature.
    let public = openssl::pkey::PKey::private_key_from_pem(fixture().rsa.key_pem.as_bytes())
        .and_then(|k| k.public_key_to_pem())
        .expect("public");
    let verifier = josekit::jws::RS256
        .verifier_from_pem(&public)
        .expect("verifier");
    let (p, _) = josekit::jwt::decode_with_verifier(&jws, &verifier).expect("josekit verifies");
    assert_eq!(p.claim("userID"), Some(&json!("operatore-042")));
}

#[test]
fn tracking_evidence_digest_not_matching_the_voucher() {
    let (_, m) = tracking_setup();
    let jws = build_tracking_evidence(&m, &tracking_claims("te-2")).expect("builds");
    let other = build_tracking_evidence(&m, &tracking_claims("te-3")).expect("builds");
    let voucher_digest = tracking_evidence_digest(&other);
    assert!(!binds_to_voucher(&jws, &voucher_digest));
    assert_eq!(
        check_voucher_binding(&jws, Some(&voucher_digest)),
        Err(ModiError::TrackingEvidenceNotBound)
    );
}

#[test]
fn tracking_evidence_speaks_for_the_voucher_client_and_purpose() {
    const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";
    let (resolver, m) = tracking_setup();
    let verified = |c: &TrackingClaims| {
        let jws = build_tracking_evidence(&m, c).expect("builds");
        verify_tracking_evidence(&jws, &resolver, &expect()).expect("verifies")
    };

    // iss = client id, purposeId = the voucher's: bound.
    let good = verified(&tracking_claims("id-1"));
    assert_eq!(check_voucher_identity(&good, CLIENT, PURPOSE), Ok(()));

    // No purposeId at all: AgID's AUDIT_REST_01 does not require it.
    let mut c = tracking_claims("id-2");
    c.purpose_id = None;
    assert_eq!(
        check_voucher_identity(&verified(&c), CLIENT, PURPOSE),
        Ok(())
    );

    // Another client's id in iss.
    assert_eq!(
        check_voucher_identity(&good, "another-client", PURPOSE),
        Err(ModiError::TrackingIssuerMismatch {
            expected: "another-client".into(),
            found: Some(CLIENT.into()),
        })
    );

    // Another purpose than the voucher's.
    let other_purpose = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
    let err = check_voucher_identity(&good, CLIENT, other_purpose).unwrap_err();
    assert_eq!(
        err,
        ModiError::TrackingPurposeMismatch {
            expected: other_purpose.into(),
            found: PURPOSE.into(),
        }
    );
    assert_eq!(err.http_status(), 401);

    // Evidence without iss: signed by a registered key, but for nobody in particular.
    let payload = json!({
        "aud": AUD, "iat": NOW - 5, "exp": NOW + 60, "jti": "id-3",
        "userID": "u", "userLocation": "l", "LoA": "low", "purposeId": PURPOSE,
    });
    let jws = encode(&m, &payload).expect("signs");
    let no_iss = verify_tracking_evidence(&jws, &resolver, &expect()).expect("verifies");
    assert_eq!(no_iss.iss, None);
    let err = check_voucher_identity(&no_iss, CLIENT, PURPOSE).unwrap_err();
    assert_eq!(
        err,
        ModiError::TrackingIssuerMismatch {
            expected: CLIENT.into(),
            found: None,
        }
    );
    assert_eq!(err.http_status(), 401);
}

#[test]
fn tracking_evidence_wrong_audience_expired_or_unknown_key() {
    let (resolver, m) = tracking_setup();
    let mut c = tracking_claims("te-aud");
    c.aud = "https://tributi.comune.example/api/v1".into();
    let jws = build_tracking_evidence(&m, &c).expect("builds");
    assert!(matches!(
        verify_tracking_evidence(&jws, &resolver, &expect()),
        Err(ModiError::WrongAudience { .. })
    ));

    let mut c = tracking_claims("te-exp");
    c.iat = NOW - 700;
    c.exp = NOW - 400;
    let jws = build_tracking_evidence(&m, &c).expect("builds");
    assert_eq!(
        verify_tracking_evidence(&jws, &resolver, &expect()).err(),
        Some(ModiError::Expired { exp: NOW - 400 })
    );

    let jws = build_tracking_evidence(&m, &tracking_claims("te-kid")).expect("builds");
    let empty = InMemoryKidResolver::new();
    assert!(matches!(
        verify_tracking_evidence(&jws, &empty, &expect()),
        Err(ModiError::UnknownKid(_))
    ));
}

#[test]
fn tracking_evidence_needs_rs256_kid_and_the_audit_claims() {
    let f = fixture();
    let (resolver, m) = tracking_setup();
    // Building with x5c material or another algorithm is refused.
    assert!(matches!(
        build_tracking_evidence(
            &material(&f.rsa, SigningAlgorithm::RS256),
            &tracking_claims("x")
        ),
        Err(ModiError::KeyMaterial(_))
    ));
    let ps = SigningMaterial::with_kid(f.rsa.key_pem.as_bytes(), "k", SigningAlgorithm::PS256)
        .expect("m");
    assert!(matches!(
        build_tracking_evidence(&ps, &tracking_claims("x")),
        Err(ModiError::KeyMaterial(_))
    ));

    // A verifier-side token without userLocation.
    let payload = json!({"iss": "c", "aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "te-min",
                         "userID": "u", "loa": "high"});
    let jws = encode(&m, &payload).expect("signs");
    assert_eq!(
        verify_tracking_evidence(&jws, &resolver, &expect()).err(),
        Some(ModiError::MissingClaim("userLocation"))
    );
    // Lower-case `loa` (IT-Wallet profile) is read as LoA; unknown claims are kept.
    let payload = json!({"iss": "c", "aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "te-lc",
                         "userID": "u", "userLocation": "l", "loa": "high", "dnonce": 6528424213685_i64});
    let jws = encode(&m, &payload).expect("signs");
    let evidence = verify_tracking_evidence(&jws, &resolver, &expect()).expect("verifies");
    assert_eq!(evidence.loa, "high");
    assert_eq!(
        evidence.other_claims.get("dnonce"),
        Some(&json!(6528424213685_i64))
    );
}

// ---------------------------------------------------------------- dev PKI on disk

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "modi-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dev_pki_is_written_reused_and_completed() {
    let tmp = TempDir::new("pki");
    let dir = tmp.0.join("certs");
    let pki = generate_dev_pki(&dir, "anagrafe.comune.example").expect("generates");
    assert_eq!(pki.created.len(), 6);
    for path in [
        &pki.ca_cert,
        &pki.ca_key,
        &pki.rsa_key,
        &pki.rsa_chain,
        &pki.ec_key,
        &pki.ec_chain,
    ] {
        assert!(path.is_file(), "{} missing", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pki.rsa_key)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Every algorithm signs with the files and verifies against the dev CA.
    let trust = pki.trust_store().expect("trust");
    for alg in SigningAlgorithm::ALL {
        let jws = signed(&pki.signing_material(alg).expect("material"), "jti-pki");
        verify(
            &jws,
            &KeySource::X5c(&trust),
            &expect(),
            &json_headers(&jws),
            BODY,
        )
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }

    // Second run: nothing written, same CA.
    let ca_before = std::fs::read(&pki.ca_cert).expect("read");
    let again = generate_dev_pki(&dir, "anagrafe.comune.example").expect("reuses");
    assert!(again.created.is_empty());
    assert_eq!(std::fs::read(&pki.ca_cert).expect("read"), ca_before);

    // A removed chain is re-issued by the existing CA for the existing key.
    let key_before = std::fs::read(&pki.ec_key).expect("read");
    std::fs::remove_file(&pki.ec_chain).expect("rm");
    let completed = generate_dev_pki(&dir, "anagrafe.comune.example").expect("completes");
    assert_eq!(completed.created, vec![pki.ec_chain.clone()]);
    assert_eq!(std::fs::read(&pki.ec_key).expect("read"), key_before);
    let jws = signed(
        &completed
            .signing_material(SigningAlgorithm::ES256)
            .expect("m"),
        "jti-pki-2",
    );
    assert!(verify(
        &jws,
        &KeySource::X5c(&trust),
        &expect(),
        &json_headers(&jws),
        BODY
    )
    .is_ok());

    // Half a CA is an error, not a silent replacement.
    std::fs::remove_file(&pki.ca_key).expect("rm");
    assert!(matches!(
        generate_dev_pki(&dir, "anagrafe.comune.example"),
        Err(ModiError::Pki(_))
    ));
    // No CA at all but chains from the old one: refused too, and no new CA written.
    std::fs::remove_file(&pki.ca_cert).expect("rm");
    assert!(matches!(
        generate_dev_pki(&dir, "anagrafe.comune.example"),
        Err(ModiError::Pki(_))
    ));
    assert!(!pki.ca_cert.exists());
}

#[test]
fn dev_pki_chain_without_key_is_an_error() {
    let tmp = TempDir::new("pki-orphan");
    let pki = generate_dev_pki(&tmp.0, "x.example").expect("generates");
    std::fs::remove_file(&pki.rsa_key).expect("rm");
    assert!(matches!(
        generate_dev_pki(&tmp.0, "x.example"),
        Err(ModiError::Pki(_))
    ));
    assert!(matches!(
        generate_dev_pki(&tmp.0.join("y"), " "),
        Err(ModiError::Pki(_))
    ));
}
