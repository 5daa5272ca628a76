//! Targets of the ModI request checks: `Digest`, `Agid-JWT-Signature`, `Agid-JWT-TrackingEvidence`.

use serde_json::Value;

use super::fixtures::{self, LEEWAY_SECS, MAX_PEER_LIFETIME_SECS, NOW};
use super::{mode, parts, Outcome};
use crate::modi::signature::{encode, single_header};
use crate::modi::tracking::{binds_to_voucher, check_voucher_binding, tracking_evidence_digest};
use crate::modi::{
    digest_header, verify, verify_digest, verify_tracking_evidence, KeySource, ModiError, Signer,
    SigningMaterial, VerifiedSignature, DIGEST,
};

/// Signed modes replace this text in the claims and the headers with the body's `Digest`, so
/// an input can sign the digest of a body the fuzzer cannot hash.
const DIGEST_PLACEHOLDER: &str = "$DIGEST";

/// `Digest` header against a body: `header NUL body`.
pub fn digest(data: &[u8]) -> Outcome {
    let [header, body] = parts(data);
    let ours = digest_header(body);
    assert_eq!(verify_digest(&ours, body), Ok(()));
    let Ok(header) = std::str::from_utf8(header) else {
        return Outcome::Refused;
    };
    let accepted = verify_digest(header, body).is_ok();
    if accepted {
        assert!(
            header
                .split(',')
                .any(|i| i.trim().to_ascii_uppercase().starts_with("SHA-256")),
            "{header:?} accepted without a SHA-256 instance"
        );
        // Every SHA-256 instance matched, so another body cannot match too.
        let mut other = body.to_vec();
        other.push(b'.');
        assert_eq!(
            verify_digest(header, &other),
            Err(ModiError::DigestMismatch),
            "{header:?} accepted two bodies"
        );
    }
    accepted.into()
}

/// Header lines (`name: value`) of the headers part.
fn header_lines(block: &str) -> Vec<(&str, &str)> {
    block
        .lines()
        .filter_map(|line| line.split_once(':'))
        .collect()
}

/// Claims JSON from the input with the placeholder replaced, signed with `material`.
fn sign_claims(material: &SigningMaterial, claims: &[u8], digest: &str) -> Option<String> {
    let claims = std::str::from_utf8(claims)
        .ok()?
        .replace(DIGEST_PLACEHOLDER, digest);
    let claims: Value = serde_json::from_str(&claims).ok()?;
    encode(material, &claims).ok()
}

/// `Agid-JWT-Signature` (INTEGRITY_REST_01/02) with the request's headers and body. Input:
/// `jws-or-claims NUL header lines NUL body`. Modes: 0 a raw JWS, checked against both the
/// `x5c` trust store and the PDND `kid` keys; 1 claims signed ES256 with `x5c`; 2 claims
/// signed PS256 with `x5c`; 3 claims signed RS256 with `kid`.
pub fn signature(data: &[u8]) -> Outcome {
    let Some((mode, rest)) = mode(data, 4) else {
        return Outcome::Refused;
    };
    let [token, headers, body] = parts(rest);
    let digest = digest_header(body);
    let Ok(headers) = std::str::from_utf8(headers) else {
        return Outcome::Refused;
    };
    let headers = headers.replace(DIGEST_PLACEHOLDER, &digest);
    let headers = header_lines(&headers);
    let trust = KeySource::X5c(fixtures::trust_store());
    let kids = KeySource::Kid(fixtures::kid_resolver());
    let expect = fixtures::modi_expectations();
    let check =
        |jws: &str, source: &KeySource<'_>| match verify(jws, source, &expect, &headers, body) {
            Ok(verified) => {
                assert_signature_holds(&verified, source, &headers, body);
                true
            }
            Err(_) => false,
        };
    let material = match mode {
        0 => {
            let Ok(jws) = std::str::from_utf8(token) else {
                return Outcome::Refused;
            };
            let by_x5c = check(jws, &trust);
            let by_kid = check(jws, &kids);
            return (by_x5c || by_kid).into();
        }
        1 => fixtures::ec_x5c_material(),
        2 => fixtures::rsa_x5c_material(),
        _ => fixtures::kid_material(),
    };
    let Some(jws) = sign_claims(material, token, &digest) else {
        return Outcome::Refused;
    };
    check(&jws, if mode == 3 { &kids } else { &trust }).into()
}

/// What an accepted signature guarantees to the stages after it.
fn assert_signature_holds(
    verified: &VerifiedSignature,
    source: &KeySource<'_>,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    match (source, &verified.signer) {
        (KeySource::X5c(_), Signer::Certificate(_)) => {}
        (KeySource::Kid(_), Signer::Kid(kid)) => assert_eq!(kid, fixtures::modi_kid()),
        (_, signer) => panic!("signer {signer:?} from the wrong key source"),
    }
    assert!(verified
        .audience
        .split(',')
        .any(|a| a == fixtures::AUDIENCE));
    assert_window(verified.iat, verified.exp);
    assert!(verified.replay_expires_at >= verified.exp);
    assert!(!verified.jti.is_empty());
    for (name, value) in &verified.signed_headers {
        let actual = single_header(headers, name)
            .expect("signed headers were read once")
            .expect("every signed header is present");
        assert_eq!(actual, value.trim());
    }
    assert!(verified.signed_headers.iter().any(|(n, _)| n == DIGEST));
    let sent = single_header(headers, DIGEST)
        .expect("one digest")
        .expect("a digest header");
    assert_eq!(verify_digest(sent, body), Ok(()));
}

/// The time window every accepted ModI token satisfies at [`NOW`].
fn assert_window(iat: i64, exp: i64) {
    let lifetime = i128::from(exp) - i128::from(iat);
    assert!(
        (0..=i128::from(MAX_PEER_LIFETIME_SECS)).contains(&lifetime),
        "a token living {lifetime} s was accepted (iat {iat}, exp {exp})"
    );
    assert!(
        i128::from(exp) + i128::from(LEEWAY_SECS) > i128::from(NOW),
        "expired token accepted"
    );
    assert!(iat <= NOW + LEEWAY_SECS, "token from the future accepted");
}

/// `Agid-JWT-TrackingEvidence` (AUDIT_REST_02) and its binding to the voucher's `digest`.
/// Modes: 0 a raw JWS; 1 claims signed RS256 with the registered `kid`.
pub fn tracking(data: &[u8]) -> Outcome {
    let Some((mode, rest)) = mode(data, 2) else {
        return Outcome::Refused;
    };
    let jws = match mode {
        0 => match std::str::from_utf8(rest) {
            Ok(jws) => jws.to_owned(),
            Err(_) => return Outcome::Refused,
        },
        _ => match sign_claims(fixtures::kid_material(), rest, "") {
            Some(jws) => jws,
            None => return Outcome::Refused,
        },
    };
    let digest = tracking_evidence_digest(&jws);
    assert!(binds_to_voucher(&jws, &digest));
    assert!(binds_to_voucher(&jws, &digest.to_ascii_uppercase()));
    assert!(check_voucher_binding(&jws, None).is_err());
    assert!(!binds_to_voucher(&jws, &digest[1..]));

    let Ok(evidence) = verify_tracking_evidence(
        &jws,
        fixtures::kid_resolver(),
        &fixtures::modi_expectations(),
    ) else {
        return Outcome::Refused;
    };
    assert_eq!(evidence.kid, fixtures::modi_kid());
    assert_eq!(evidence.digest, digest);
    assert_eq!(check_voucher_binding(&jws, Some(&evidence.digest)), Ok(()));
    assert!(evidence
        .audience
        .split(',')
        .any(|a| a == fixtures::AUDIENCE));
    assert_window(evidence.iat, evidence.exp);
    assert!(evidence.replay_expires_at >= evidence.exp);
    assert!(!evidence.jti.is_empty());
    for known in [
        "iss",
        "aud",
        "iat",
        "exp",
        "jti",
        "userID",
        "userLocation",
        "LoA",
        "purposeId",
    ] {
        assert!(
            !evidence.other_claims.contains_key(known),
            "{known} left in other_claims"
        );
    }
    Outcome::Accepted
}
