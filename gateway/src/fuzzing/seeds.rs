//! The seed corpora: a few valid and invalid inputs per target, made from the project's own
//! fixed vectors (the unit tests' claims, the ModI `Digest` example, the sample subjects) and
//! signed with the fixed keys.
//!
//! Every signature here is deterministic (RS256), so the seeds are the same bytes on every run:
//! the replay test checks that the committed `seed-*` files are exactly these, and writes them
//! when asked (`FUZZ_WRITE_SEEDS=1 cargo test -p gateway --test fuzz_corpus`).

use serde_json::{json, Value};

use super::fixtures::{self, ASSERTION_AUDIENCE, AUDIENCE, CLIENT_ID, ISSUER, NOW, PURPOSE_ID};
use super::Outcome;
use crate::modi::{build_tracking_evidence, digest_header, sign, SignatureClaims, TrackingClaims};
use crate::pdnd::client_assertion::{CLIENT_ASSERTION_TYPE, GRANT_TYPE};
use crate::pdnd::jws;
use eservices::CodiceFiscale;

/// One seed: its target, its file name in `corpus/<target>/`, its bytes, and whether the
/// target accepts it.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
    pub expected: Outcome,
}

/// The seeds written to be accepted (every other seed is written to be refused).
const ACCEPTED: &[(&str, &[&str])] = &[
    (
        "bearer_voucher",
        &[
            "valid",
            "valid-array-aud-digest",
            "signed-claims",
            "signed-comma-aud-cnf",
        ],
    ),
    ("compact_jws", &["voucher", "modi-x5c-header"]),
    (
        "client_assertion",
        &[
            "form-valid",
            "m2m-voucher",
            "signed-claims",
            "signed-digest",
            "signed-api-client",
        ],
    ),
    ("modi_digest", &["modi-example", "md5-and-sha256"]),
    (
        "modi_signature",
        &[
            "raw-kid",
            "signed-es256-x5c",
            "signed-ps256-x5c",
            "signed-rs256-kid",
        ],
    ),
    ("modi_tracking", &["raw", "signed", "signed-lower-loa"]),
    (
        "pdnd_keys",
        &[
            "jwks",
            "jwks-with-ec-key",
            "key-answer",
            "key-answer-wrapped",
            "key-answer-no-kid",
        ],
    ),
    (
        "codice_fiscale",
        &["personal", "lower-case-spaced", "omocode", "partita-iva"],
    ),
    (
        "eservice_bodies",
        &[
            "codice-fiscale",
            "verifica-residenza",
            "soggetto-anno",
            "soggetto",
        ],
    ),
    (
        "path_resolver",
        &[
            "canonical",
            "canonical-tributi",
            "encoded-letters",
            "encoded-dash",
            "query",
        ],
    ),
];

/// The ModI example body and its `Digest`.
const BODY: &str = r#"{"testo":"Ciao mondo"}"#;

fn with_mode(mode: u8, rest: impl AsRef<[u8]>) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(rest.as_ref());
    out
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&0u8)
}

fn voucher_claims() -> Value {
    json!({
        "jti": "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00", "iss": ISSUER, "aud": AUDIENCE,
        "sub": CLIENT_ID, "client_id": CLIENT_ID, "purposeId": PURPOSE_ID,
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 540,
        "producerId": "p-1", "consumerId": "c-1", "eserviceId": "e-1", "descriptorId": "d-1",
    })
}

fn voucher_header() -> Value {
    json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": fixtures::authority_key().kid()})
}

fn signed_voucher(claims: &Value) -> String {
    jws::sign_rs256(&voucher_header(), claims, fixtures::authority_key())
        .expect("the fixed key signs")
}

fn assertion_claims() -> Value {
    json!({
        "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": ASSERTION_AUDIENCE,
        "jti": "5b6f7e8d-9c0b-4a1f-8e2d-3c4b5a6f7e8d", "iat": NOW, "exp": NOW + 600,
        "purposeId": PURPOSE_ID,
    })
}

fn signature_claims(jti: &str, iat: i64, exp: i64) -> Value {
    json!({
        "iss": "https://fruitore.example", "sub": "https://fruitore.example", "aud": AUDIENCE,
        "iat": iat, "nbf": iat, "exp": exp, "jti": jti,
        "signed_headers": [{"digest": "$DIGEST"}, {"content-type": "application/json"}],
    })
}

const SIGNED_HEADERS: &str = "digest: $DIGEST\ncontent-type: application/json";

fn tracking_claims(jti: &str, iat: i64, exp: i64) -> Value {
    json!({
        "iss": CLIENT_ID, "aud": AUDIENCE, "iat": iat, "exp": exp, "jti": jti,
        "userID": "operatore-042", "userLocation": "ufficio-anagrafe-pc-07", "LoA": "substantial",
        "purposeId": PURPOSE_ID,
    })
}

fn text(v: &Value) -> String {
    v.to_string()
}

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        let accepted = ACCEPTED
            .iter()
            .any(|(t, names)| *t == target && names.contains(&name));
        out.push(Seed {
            target,
            name: format!("seed-{name}"),
            data,
            expected: accepted.into(),
        })
    };

    // --- bearer_voucher
    let voucher = signed_voucher(&voucher_claims());
    let mut array_aud = voucher_claims();
    array_aud["aud"] = json!(["https://other.example", AUDIENCE]);
    array_aud["digest"] = json!({"alg": "SHA256", "value": "a".repeat(64)});
    let mut expired = voucher_claims();
    expired["exp"] = json!(NOW - 120);
    let mut comma_aud = voucher_claims();
    comma_aud["aud"] = json!(format!("https://other.example,{AUDIENCE}"));
    comma_aud["exp"] = json!((NOW + 540) as f64 + 0.5);
    comma_aud["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let unsigned = format!(
        "{}.{}.",
        jws::b64url(br#"{"alg":"none","typ":"at+jwt"}"#),
        jws::b64url(text(&voucher_claims()))
    );
    add(
        "bearer_voucher",
        "valid",
        with_mode(0, format!("Bearer {voucher}")),
    );
    add(
        "bearer_voucher",
        "valid-array-aud-digest",
        with_mode(0, format!("bearer  {}", signed_voucher(&array_aud))),
    );
    add(
        "bearer_voucher",
        "expired",
        with_mode(0, format!("Bearer {}", signed_voucher(&expired))),
    );
    add(
        "bearer_voucher",
        "alg-none",
        with_mode(0, format!("Bearer {unsigned}")),
    );
    add(
        "bearer_voucher",
        "basic",
        with_mode(0, "Basic dXNlcjpwYXNz"),
    );
    add(
        "bearer_voucher",
        "two-tokens",
        with_mode(0, format!("Bearer {voucher} {voucher}")),
    );
    add(
        "bearer_voucher",
        "signed-claims",
        with_mode(1, text(&voucher_claims())),
    );
    add(
        "bearer_voucher",
        "signed-comma-aud-cnf",
        with_mode(1, text(&comma_aud)),
    );
    add(
        "bearer_voucher",
        "signed-expired",
        with_mode(1, text(&expired)),
    );
    let jwt_typ = json!({"alg": "RS256", "typ": "JWT", "kid": fixtures::authority_key().kid()});
    add(
        "bearer_voucher",
        "signed-typ-jwt",
        with_mode(
            2,
            joined(&[
                text(&jwt_typ).as_bytes(),
                text(&voucher_claims()).as_bytes(),
            ]),
        ),
    );
    let unknown_kid = json!({"alg": "RS256", "typ": "at+jwt", "kid": "unknown"});
    add(
        "bearer_voucher",
        "signed-unknown-kid",
        with_mode(
            2,
            joined(&[
                text(&unknown_kid).as_bytes(),
                text(&voucher_claims()).as_bytes(),
            ]),
        ),
    );

    // --- compact_jws
    add("compact_jws", "voucher", voucher.clone().into_bytes());
    add("compact_jws", "alg-none", unsigned.clone().into_bytes());
    add(
        "compact_jws",
        "two-segments",
        b"eyJhbGciOiJSUzI1NiJ9.e30".to_vec(),
    );
    add("compact_jws", "padded", format!("{voucher}=").into_bytes());
    add(
        "compact_jws",
        "modi-x5c-header",
        format!(
            "{}.{}.c2ln",
            jws::b64url(br#"{"alg":"ES256","typ":"JWT","x5c":["AAAA"],"kid":"k"}"#),
            jws::b64url("{}")
        )
        .into_bytes(),
    );
    add(
        "compact_jws",
        "header-array",
        format!("{}.e30.c2ln", jws::b64url("[1]")).into_bytes(),
    );

    // --- client_assertion
    let assertion_header =
        json!({"alg": "RS256", "kid": fixtures::client_key().kid(), "typ": "JWT"});
    let assertion = jws::sign_rs256(
        &assertion_header,
        &assertion_claims(),
        fixtures::client_key(),
    )
    .expect("the fixed key signs");
    let form = serde_urlencoded::to_string([
        ("client_id", CLIENT_ID),
        ("client_assertion", assertion.as_str()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("grant_type", GRANT_TYPE),
    ])
    .expect("a form encodes");
    add("client_assertion", "form-valid", with_mode(0, form));
    add(
        "client_assertion",
        "form-wrong-grant",
        with_mode(
            0,
            format!("grant_type=password&client_assertion={assertion}"),
        ),
    );
    let m2m = jws::sign_rs256(
        &voucher_header(),
        &json!({
            "jti": "m2m-1", "iss": ISSUER, "aud": fixtures::M2M_AUDIENCE, "sub": fixtures::API_CLIENT_ID,
            "iat": NOW, "nbf": NOW, "exp": NOW + 600, "client_id": fixtures::API_CLIENT_ID,
            "organizationId": "f4e5d6c7-8b9a-4d0e-1f2a-3b4c5d6e7f80", "role": "m2m",
        }),
        fixtures::authority_key(),
    )
    .expect("the fixed key signs");
    add("client_assertion", "m2m-voucher", with_mode(0, m2m));
    add(
        "client_assertion",
        "signed-claims",
        with_mode(1, text(&assertion_claims())),
    );
    let mut suspended = assertion_claims();
    suspended["purposeId"] = json!(fixtures::SUSPENDED_PURPOSE_ID);
    add(
        "client_assertion",
        "signed-suspended-purpose",
        with_mode(1, text(&suspended)),
    );
    let mut with_digest = assertion_claims();
    with_digest["digest"] = json!({"alg": "SHA256", "value": "b".repeat(64)});
    add(
        "client_assertion",
        "signed-digest",
        with_mode(1, text(&with_digest)),
    );
    let mut expired_assertion = assertion_claims();
    expired_assertion["exp"] = json!(NOW - 1);
    add(
        "client_assertion",
        "signed-expired",
        with_mode(1, text(&expired_assertion)),
    );
    let mut api = assertion_claims();
    api["iss"] = json!(fixtures::API_CLIENT_ID);
    api["sub"] = json!(fixtures::API_CLIENT_ID);
    api.as_object_mut().expect("an object").remove("purposeId");
    add(
        "client_assertion",
        "signed-api-client",
        with_mode(
            2,
            joined(&[
                text(&assertion_header).as_bytes(),
                text(&api).as_bytes(),
                fixtures::API_CLIENT_ID.as_bytes(),
            ]),
        ),
    );

    // --- modi_digest
    let digest = digest_header(BODY.as_bytes());
    add(
        "modi_digest",
        "modi-example",
        joined(&[digest.as_bytes(), BODY.as_bytes()]),
    );
    add(
        "modi_digest",
        "md5-and-sha256",
        joined(&[
            format!("MD5=HUXZLQLMuI/KZ5KDcJPcOA==, {digest}").as_bytes(),
            BODY.as_bytes(),
        ]),
    );
    add(
        "modi_digest",
        "sha512-only",
        joined(&[&b"SHA-512=WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew=="[..], BODY.as_bytes()]),
    );
    add(
        "modi_digest",
        "short-value",
        joined(&[&b"SHA-256=AAAA"[..], BODY.as_bytes()]),
    );
    add(
        "modi_digest",
        "mismatch",
        joined(&[digest.as_bytes(), &b"{}"[..]]),
    );

    // --- modi_signature
    let claims = SignatureClaims {
        iss: "https://fruitore.example".into(),
        sub: "https://fruitore.example".into(),
        aud: AUDIENCE.into(),
        jti: "sig-raw-1".into(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 50,
    };
    let raw = sign(
        fixtures::kid_material(),
        &claims,
        &[
            ("digest", digest.as_str()),
            ("content-type", "application/json"),
        ],
    )
    .expect("the fixed key signs");
    let headers = format!("Digest: {digest}\nContent-Type: application/json");
    add(
        "modi_signature",
        "raw-kid",
        with_mode(
            0,
            joined(&[raw.as_bytes(), headers.as_bytes(), BODY.as_bytes()]),
        ),
    );
    let valid = text(&signature_claims("sig-1", NOW - 10, NOW + 50));
    for (mode, name) in [
        (1, "signed-es256-x5c"),
        (2, "signed-ps256-x5c"),
        (3, "signed-rs256-kid"),
    ] {
        add(
            "modi_signature",
            name,
            with_mode(
                mode,
                joined(&[valid.as_bytes(), SIGNED_HEADERS.as_bytes(), BODY.as_bytes()]),
            ),
        );
    }
    let too_long = text(&signature_claims("sig-2", NOW - 10, NOW + 3600));
    add(
        "modi_signature",
        "signed-lifetime-too-long",
        with_mode(
            3,
            joined(&[
                too_long.as_bytes(),
                SIGNED_HEADERS.as_bytes(),
                BODY.as_bytes(),
            ]),
        ),
    );
    // A lifetime of 2^64 - 1 s once overflowed `exp - iat` (a panic, or a wrap to -1 that
    // passed the lifetime bound).
    let overflow = text(&signature_claims("sig-4", i64::MIN, i64::MAX));
    add(
        "modi_signature",
        "signed-lifetime-overflow",
        with_mode(
            3,
            joined(&[
                overflow.as_bytes(),
                SIGNED_HEADERS.as_bytes(),
                BODY.as_bytes(),
            ]),
        ),
    );
    add(
        "modi_signature",
        "signed-unsigned-content-type",
        with_mode(
            1,
            joined(&[
                text(
                    &json!({"aud": AUDIENCE, "iat": NOW, "exp": NOW + 60, "jti": "sig-3",
                    "signed_headers": [{"digest": "$DIGEST"}]}),
                )
                .as_bytes(),
                SIGNED_HEADERS.as_bytes(),
                BODY.as_bytes(),
            ]),
        ),
    );

    // --- modi_tracking
    let evidence = build_tracking_evidence(
        fixtures::kid_material(),
        &TrackingClaims {
            iss: CLIENT_ID.into(),
            aud: AUDIENCE.into(),
            user_id: "operatore-042".into(),
            user_location: "ufficio-anagrafe-pc-07".into(),
            loa: "substantial".into(),
            iat: NOW - 10,
            exp: NOW + 50,
            jti: "te-raw-1".into(),
            purpose_id: Some(PURPOSE_ID.into()),
        },
    )
    .expect("the fixed key signs");
    add("modi_tracking", "raw", with_mode(0, evidence));
    add(
        "modi_tracking",
        "signed",
        with_mode(1, text(&tracking_claims("te-1", NOW - 10, NOW + 50))),
    );
    let mut lower_loa = tracking_claims("te-2", NOW - 10, NOW + 50);
    let loa = lower_loa
        .as_object_mut()
        .expect("an object")
        .remove("LoA")
        .expect("has LoA");
    lower_loa["loa"] = loa;
    lower_loa["extra"] = json!({"nested": [1, 2]});
    add(
        "modi_tracking",
        "signed-lower-loa",
        with_mode(1, text(&lower_loa)),
    );
    add(
        "modi_tracking",
        "signed-lifetime-overflow",
        with_mode(1, text(&tracking_claims("te-4", i64::MIN, i64::MAX))),
    );
    let mut no_user = tracking_claims("te-3", NOW - 10, NOW + 50);
    no_user.as_object_mut().expect("an object").remove("userID");
    add(
        "modi_tracking",
        "signed-no-user",
        with_mode(1, text(&no_user)),
    );
    add(
        "modi_tracking",
        "signed-wrong-audience",
        with_mode(
            1,
            text(&json!({"aud": "https://other.example", "iat": NOW, "exp": NOW + 60})),
        ),
    );

    // --- pdnd_keys
    let authority_jwk = fixtures::authority_key()
        .public()
        .to_jwk(&fixtures::authority_key().kid());
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    add(
        "pdnd_keys",
        "jwks",
        with_mode(0, text(&json!({"keys": [authority_jwk]}))),
    );
    add(
        "pdnd_keys",
        "jwks-with-ec-key",
        with_mode(0, text(&json!({"keys": [ec_jwk, authority_jwk]}))),
    );
    let mut other_kid = authority_jwk.clone();
    other_kid["kid"] = json!("other");
    add(
        "pdnd_keys",
        "jwks-other-kid",
        with_mode(0, text(&json!({"keys": [other_kid]}))),
    );
    let mut encryption = authority_jwk.clone();
    encryption["use"] = json!("enc");
    add(
        "pdnd_keys",
        "jwks-encryption-key",
        with_mode(0, text(&json!({"keys": [encryption]}))),
    );
    let modi_jwk = serde_json::to_value(
        crate::modi::KidResolver::resolve(fixtures::kid_resolver(), fixtures::modi_kid())
            .expect("resolves")
            .expect("the fixed kid is registered"),
    )
    .expect("a JWK serialises");
    add("pdnd_keys", "key-answer", with_mode(1, text(&modi_jwk)));
    add(
        "pdnd_keys",
        "key-answer-wrapped",
        with_mode(1, text(&json!({"key": modi_jwk}))),
    );
    let mut no_kid = modi_jwk.clone();
    no_kid.as_object_mut().expect("an object").remove("kid");
    add(
        "pdnd_keys",
        "key-answer-no-kid",
        with_mode(1, text(&no_kid)),
    );
    let mut wrong_kid = modi_jwk.clone();
    wrong_kid["kid"] = json!("another");
    add(
        "pdnd_keys",
        "key-answer-other-kid",
        with_mode(1, text(&wrong_kid)),
    );
    add(
        "pdnd_keys",
        "key-answer-not-json",
        with_mode(1, "<html>502</html>"),
    );

    // --- codice_fiscale
    let known = CodiceFiscale::parse("MRNSFN44C26G702G").expect("the example is valid");
    let omocode = known.omocode(3).expect("a personal code has omocodes");
    for (name, text) in [
        ("personal", "MRNSFN44C26G702G"),
        ("lower-case-spaced", " rssmra85t10a562s "),
        ("omocode", omocode.as_str()),
        ("partita-iva", "10000070507"),
        ("all-zeros", "00000000000"),
        ("bad-check", "RSSMRA85T10A562X"),
        ("bad-day", "RSSMRA85T99A562S"),
        ("non-ascii", "RSSMRA85T10A562\u{00C8}"),
        ("too-short", "RSSMRA85"),
    ] {
        add("codice_fiscale", name, text.as_bytes().to_vec());
    }

    // --- eservice_bodies
    for (name, body) in [
        ("codice-fiscale", r#"{"codiceFiscale":"MRNSFN44C26G702G"}"#),
        (
            "verifica-residenza",
            r#"{"codiceFiscale":"MRNSFN44C26G702G","indirizzo":{"dug":"VIA","toponimo":"DI CISANELLO","civico":"147","cap":"56121","codiceIstatComune":"050026"}}"#,
        ),
        ("soggetto-anno", r#"{"soggetto":"10000070507","anno":2024}"#),
        ("soggetto", r#"{"soggetto":"rssmra85t10a562s"}"#),
        ("unknown-field", r#"{"soggetto":"10000070507","extra":1}"#),
        ("anno-out-of-range", r#"{"soggetto":"10000070507","anno":1992}"#),
        ("trailing-garbage", r#"{"codiceFiscale":"MRNSFN44C26G702G"} x"#),
        ("control-character", "{\"codiceFiscale\":\"MRNSFN44C26G702G\",\"indirizzo\":{\"dug\":\"VIA\\u0007\",\"toponimo\":\"X\",\"civico\":\"1\",\"cap\":\"56121\",\"codiceIstatComune\":\"050026\"}}"),
    ] {
        add("eservice_bodies", name, body.as_bytes().to_vec());
    }

    // --- path_resolver
    for (name, target) in [
        ("canonical", "/anagrafe/v1/residenza"),
        ("canonical-tributi", "/tributi/v1/imu/posizione"),
        ("encoded-letters", "/%61nagrafe/v%31/residenz%61"),
        ("encoded-dash", "/anagrafe/v1/stato%2Dfamiglia"),
        ("query", "/anagrafe/v1/generalita?operation=residenza"),
        ("encoded-slash", "/tributi/v1/imu%2Fposizione"),
        ("dot-segment", "/anagrafe/v1/x/../residenza"),
        ("encoded-dot-segment", "/anagrafe/v1/%2e/residenza"),
        ("trailing-slash", "/anagrafe/v1/residenza/"),
        ("double-slash", "/anagrafe/v1//residenza"),
        ("matrix-parameter", "/anagrafe/v1/residenza;x=1"),
        ("case", "/anagrafe/v1/Residenza"),
        ("double-encoded", "/anagrafe/v1/residenz%2561"),
    ] {
        add("path_resolver", name, target.as_bytes().to_vec());
    }
    out
}
