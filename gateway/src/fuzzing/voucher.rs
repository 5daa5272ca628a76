//! Targets of the PDND side: the `Authorization` header and voucher, compact JWS parsing, and
//! the dev authority's client-assertion checks.

use serde_json::{Map, Value};

use super::fixtures::{self, NOW};
use super::{mode, parts, Outcome};
use crate::modi::jws as modi_jws;
use crate::pdnd::client_assertion::{decode_unverified, TokenRequest, CLIENT_ASSERTION_TYPE};
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd::jws::{self, CompactJws, Part};
use crate::pdnd::voucher::{validate, Voucher, VOUCHER_TYP};
use crate::provider::voucher::{parse_bearer, parse_credential, Credential};

/// The header PDND puts on vouchers, with the fixed authority key's `kid`.
fn voucher_header() -> Vec<u8> {
    let kid = fixtures::authority_key().kid();
    format!(r#"{{"alg":"RS256","use":"sig","typ":"{VOUCHER_TYP}","kid":"{kid}"}}"#).into_bytes()
}

/// `header` and `claims` exactly as given (not re-serialised), signed RS256 with `key`.
fn sign_raw(header: &[u8], claims: &[u8], key: &RsaPrivateKey) -> Option<String> {
    let signing_input = format!("{}.{}", jws::b64url(header), jws::b64url(claims));
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        key.encoding_key(),
        jsonwebtoken::Algorithm::RS256,
    )
    .ok()?;
    Some(format!("{signing_input}.{signature}"))
}

/// `Authorization` header value and voucher. Modes: 0 the raw header value; 1 claims signed
/// under PDND's voucher header; 2 `header NUL claims`, both signed as given.
pub fn bearer_voucher(data: &[u8]) -> Outcome {
    let Some((mode, rest)) = mode(data, 3) else {
        return Outcome::Refused;
    };
    match mode {
        0 => {
            let Ok(credential) = parse_credential(rest) else {
                return Outcome::Refused;
            };
            let (scheme, token) = match credential {
                Credential::Bearer(token) => ("bearer", token),
                Credential::Dpop(token) => ("dpop", token),
            };
            assert!(!token.is_empty() && !token.contains(' '), "{token:?}");
            assert_eq!(token, token.trim(), "the token keeps surrounding blanks");
            let value = std::str::from_utf8(rest).expect("an accepted header value is text");
            assert!(
                value[..scheme.len()].eq_ignore_ascii_case(scheme),
                "{value:?}"
            );
            // Only the Bearer scheme is a bearer token.
            assert_eq!(parse_bearer(rest).is_ok(), scheme == "bearer", "{value:?}");
            check_voucher(token)
        }
        1 => match sign_raw(&voucher_header(), rest, fixtures::authority_key()) {
            Some(token) => check_voucher(&token),
            None => Outcome::Refused,
        },
        _ => {
            let [header, claims] = parts(rest);
            match sign_raw(header, claims, fixtures::authority_key()) {
                Some(token) => check_voucher(&token),
                None => Outcome::Refused,
            }
        }
    }
}

/// Validates `token`; an accepted voucher must carry exactly what its token says and satisfy
/// the policy.
fn check_voucher(token: &str) -> Outcome {
    let policy = fixtures::voucher_policy();
    let Ok(voucher) = validate(token, fixtures::voucher_keys(), policy, NOW) else {
        return Outcome::Refused;
    };
    let jws = CompactJws::parse(token).expect("an accepted voucher is a compact JWS");
    assert_eq!(jws.header_str("alg"), Some("RS256"));
    assert_eq!(jws.header_str("typ"), Some(VOUCHER_TYP));
    assert_eq!(jws.header_str("kid"), Some(voucher.kid()));
    assert_eq!(voucher.kid(), fixtures::authority_key().kid());
    assert_claims_are_the_tokens(&voucher, &jws.payload);

    assert!(policy.issuers.iter().any(|i| i == voucher.issuer()));
    let whole_aud = jws.payload.get("aud").and_then(Value::as_str);
    let ours = |a: &str| policy.audiences.iter().any(|p| p == a);
    assert!(voucher.audiences().iter().any(|a| ours(a)) || whole_aud.is_some_and(ours));
    assert!(
        voucher.exp() > NOW - policy.leeway_secs,
        "expired voucher accepted"
    );
    assert!(
        voucher.nbf() <= NOW + policy.leeway_secs,
        "early voucher accepted"
    );
    assert!(
        voucher.iat() <= NOW + policy.leeway_secs,
        "future voucher accepted"
    );
    assert!(!voucher.purpose_id().is_empty());
    Outcome::Accepted
}

fn assert_claims_are_the_tokens(voucher: &Voucher, claims: &Map<String, Value>) {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    assert_eq!(text("jti"), Some(voucher.jti()));
    assert_eq!(text("iss"), Some(voucher.issuer()));
    assert_eq!(text("sub"), Some(voucher.subject()));
    assert_eq!(text("client_id"), Some(voucher.client_id()));
    assert_eq!(text("purposeId"), Some(voucher.purpose_id()));
    assert_eq!(text("producerId"), voucher.producer_id());
    assert_eq!(text("consumerId"), voucher.consumer_id());
    assert_eq!(text("eserviceId"), voucher.eservice_id());
    assert_eq!(text("descriptorId"), voucher.descriptor_id());
    let number = |name: &str| {
        let n = claims
            .get(name)
            .expect("an accepted voucher has its time claims");
        n.as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .expect("time claims are numbers")
    };
    assert_eq!(number("exp"), voucher.exp());
    assert_eq!(number("nbf"), voucher.nbf());
    assert_eq!(number("iat"), voucher.iat());
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        other => panic!("accepted voucher with aud {other:?}"),
    };
    assert_eq!(audiences, voucher.audiences());
    let jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    assert_eq!(jkt, voucher.confirmation_jkt());
    match (claims.get("digest"), voucher.digest()) {
        (None | Some(Value::Null), None) => {}
        (Some(d), Some(parsed)) => {
            assert_eq!(
                d.get("alg").and_then(Value::as_str),
                Some(parsed.alg.as_str())
            );
            assert_eq!(
                d.get("value").and_then(Value::as_str),
                Some(parsed.value.as_str())
            );
        }
        (d, parsed) => panic!("digest claim {d:?} read as {parsed:?}"),
    }
}

/// The compact JWS parsers of both protocol modules on the same text: PDND's strict split and
/// decode (vouchers, assertions) and ModI's header decoding (Agid-JWT-Signature, tracking).
pub fn compact_jws(data: &[u8]) -> Outcome {
    let Ok(token) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let dots = token.matches('.').count();
    match jws::split(token) {
        Ok([h, p, s]) => {
            assert_eq!(dots, 2);
            assert_eq!(format!("{h}.{p}.{s}"), token);
        }
        Err(_) => assert_ne!(dots, 2),
    }

    let parsed = CompactJws::parse(token);
    if let Ok(jws) = &parsed {
        let [h, p, s] = jws::split(token).expect("a parsed JWS splits");
        assert_eq!(jws.signing_input, format!("{h}.{p}"));
        assert_eq!(jws.signature_b64, s);
        // Strict base64url: what decodes re-encodes to the very same text.
        for (segment, part) in [(h, Part::Header), (p, Part::Payload), (s, Part::Signature)] {
            let bytes = jws::decode_bytes(segment, part).expect("a parsed segment decodes");
            assert_eq!(jws::b64url(bytes), segment);
        }
        let (header, payload) = decode_unverified(token).expect("a parsed JWS decodes");
        assert_eq!(header, Value::Object(jws.header.clone()));
        assert_eq!(payload, Value::Object(jws.payload.clone()));
        // Only the authority's own tokens verify with its key; nothing here is one of them
        // unless the input was signed with the fixed key, which then must verify consistently.
        let verified = jws.verify_rs256(fixtures::authority_key().public());
        assert_eq!(
            verified,
            jws::verify_rs256(
                jws.signing_input,
                jws.signature_b64,
                fixtures::authority_key().public()
            )
        );
    }

    match modi_jws::decode_header(token) {
        Ok(header) => {
            assert_eq!(dots, 2, "ModI accepted a JWS without three segments");
            assert_eq!(
                crate::modi::unverified_kid(token).ok().flatten(),
                header.kid
            );
            if let Ok(jws) = &parsed {
                assert_eq!(jws.header_str("alg"), Some(header.alg.as_str()));
                assert_eq!(jws.header_str("kid"), header.kid.as_deref());
            }
        }
        Err(_) => assert!(crate::modi::unverified_kid(token).is_err()),
    }
    parsed.is_ok().into()
}

/// The header the dev authority expects on a client assertion, with the client key's `kid`.
fn assertion_header() -> Vec<u8> {
    let kid = fixtures::client_key().kid();
    format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"JWT"}}"#).into_bytes()
}

/// The dev authority's `/token.oauth2`: the form body and the client assertion in it. Modes:
/// 0 the raw form body (also tried as an M2M bearer token); 1 assertion claims signed under
/// the client's header; 2 `header NUL claims NUL client_id`, signed as given.
pub fn client_assertion(data: &[u8]) -> Outcome {
    let Some((mode, rest)) = mode(data, 3) else {
        return Outcome::Refused;
    };
    let request = match mode {
        0 => {
            if std::str::from_utf8(rest).is_ok_and(check_m2m) {
                return Outcome::Accepted;
            }
            // What actix's `web::Form` does with the body.
            match serde_urlencoded::from_bytes::<TokenRequest>(rest) {
                Ok(request) => request,
                Err(_) => return Outcome::Refused,
            }
        }
        1 => {
            let Some(assertion) = sign_raw(&assertion_header(), rest, fixtures::client_key())
            else {
                return Outcome::Refused;
            };
            form_request(Some(fixtures::CLIENT_ID), assertion)
        }
        _ => {
            let [header, claims, client_id] = parts(rest);
            let Some(assertion) = sign_raw(header, claims, fixtures::client_key()) else {
                return Outcome::Refused;
            };
            let client_id = std::str::from_utf8(client_id)
                .ok()
                .filter(|c| !c.is_empty());
            form_request(client_id, assertion)
        }
    };
    let authority = fixtures::authority();
    let Ok(response) = authority.issue(&request, NOW) else {
        return Outcome::Refused;
    };
    assert_eq!(request.client_assertion_type, CLIENT_ASSERTION_TYPE);
    assert_eq!(
        response.expires_in,
        authority.config().voucher_lifetime_secs
    );
    let voucher_jws =
        CompactJws::parse(&response.access_token).expect("the authority issues compact JWS");
    assert!(voucher_jws.verify_rs256(fixtures::authority_key().public()));
    // An issued voucher is either an e-service voucher our provider accepts, or an M2M one
    // the authority's own API accepts.
    if voucher_jws.payload.contains_key("purposeId") {
        let voucher = validate(
            &response.access_token,
            fixtures::voucher_keys(),
            fixtures::voucher_policy(),
            NOW,
        )
        .expect("an issued e-service voucher validates");
        assert_eq!(voucher.client_id(), fixtures::CLIENT_ID);
        assert_eq!(
            voucher.purpose_id(),
            fixtures::PURPOSE_ID,
            "a voucher for a suspended or unknown purpose"
        );
        assert_eq!(voucher.exp(), NOW + response.expires_in);
    } else {
        let caller = authority
            .verify_m2m_voucher(&response.access_token, NOW)
            .expect("an issued M2M voucher verifies");
        assert_eq!(caller.client_id, fixtures::API_CLIENT_ID);
    }
    Outcome::Accepted
}

fn form_request(client_id: Option<&str>, assertion: String) -> TokenRequest {
    TokenRequest {
        client_id: client_id.map(str::to_owned),
        client_assertion: assertion,
        client_assertion_type: CLIENT_ASSERTION_TYPE.to_owned(),
        grant_type: "client_credentials".to_owned(),
    }
}

/// The authority's check of an M2M voucher on its PDND API routes: only a token signed with
/// the authority's key, carrying the caller it names, may pass.
fn check_m2m(token: &str) -> bool {
    let Ok(caller) = fixtures::authority().verify_m2m_voucher(token, NOW) else {
        return false;
    };
    let jws = CompactJws::parse(token).expect("an accepted M2M voucher parses");
    assert!(jws.verify_rs256(fixtures::authority_key().public()));
    assert_eq!(
        jws.payload.get("client_id").and_then(Value::as_str),
        Some(caller.client_id.as_str())
    );
    true
}
