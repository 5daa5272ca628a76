//! PDND's checks of a token request, one function per step of its order: request parameters,
//! claims decoded without verification, claim types, signature (with `crit`), purpose.

use serde_json::{Map, Value};

use super::{AssertionRejection, RegisteredClient, RegisteredPurpose, Rejection};
use crate::pdnd::client_assertion::{DigestClaim, TokenRequest, CLIENT_ASSERTION_TYPE, GRANT_TYPE};
use crate::pdnd::jwk::RsaPublicKey;
use crate::pdnd::jws::{self, Part};
use crate::pdnd::uuid_format::is_pdnd_uuid;

/// A client assertion whose claims passed step 3 (nothing verified yet).
pub(super) struct DecodedAssertion<'a> {
    pub(super) signing_input: &'a str,
    signature_b64: &'a str,
    pub(super) header: Map<String, Value>,
    pub(super) payload: Map<String, Value>,
    pub(super) kid: String,
    pub(super) sub: String,
    pub(super) purpose_id: Option<String>,
    pub(super) digest: Option<DigestClaim>,
}

/// Step 2: `client_assertion_type` and `grant_type`, both reported when both are wrong.
pub(super) fn check_request_parameters(request: &TokenRequest) -> Result<(), Rejection> {
    let mut errors = Vec::new();
    if request.client_assertion_type != CLIENT_ASSERTION_TYPE {
        errors.push(AssertionRejection::InvalidAssertionType(
            request.client_assertion_type.clone(),
        ));
    }
    if request.grant_type != GRANT_TYPE {
        errors.push(AssertionRejection::InvalidGrantType(
            request.grant_type.clone(),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection { errors })
    }
}

/// JavaScript truthiness, which is what PDND's `if (!claim)` presence checks test: absent,
/// `null`, `false`, `0` and `""` all count as missing.
pub(super) fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// A claim value as PDND would print it in a message.
pub(super) fn shown(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

pub(super) fn is_kid_format(kid: &str) -> bool {
    kid.len() == 43
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Step 3 (verifyClientAssertion): decode without verifying, then check every claim, collecting
/// all failures in PDND's order: jti, iat, exp, iss, sub (+client_id), purposeId, kid, aud,
/// alg, digest.
pub(super) fn decode_assertion<'a>(
    token: &'a str,
    client_id: Option<&str>,
    audiences: &[String],
) -> Result<DecodedAssertion<'a>, Rejection> {
    use AssertionRejection::*;
    // jose.decodeJwt reads the payload first (JWTInvalid -> 0006), then decodeProtectedHeader
    // reads the header (a TypeError -> 0007).
    let [header_b64, payload_b64, signature_b64] =
        jws::split(token).map_err(|e| Rejection::one(InvalidFormat(e.to_string())))?;
    let payload = jws::decode_object(payload_b64, Part::Payload)
        .map_err(|e| Rejection::one(InvalidFormat(e.to_string())))?;
    let header = jws::decode_object(header_b64, Part::Header)
        .map_err(|e| Rejection::one(UnexpectedClientAssertion(e.to_string())))?;

    let mut errors = Vec::new();
    let claim = |name: &str| payload.get(name);
    if !truthy(claim("jti")) {
        errors.push(JtiNotFound);
    }
    if !truthy(claim("iat")) {
        errors.push(IssuedAtNotFound);
    }
    if !truthy(claim("exp")) {
        errors.push(ExpNotFound);
    }
    if !truthy(claim("iss")) {
        errors.push(IssuerNotFound);
    }

    let sub = claim("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !truthy(claim("sub")) {
        errors.push(SubjectNotFound);
    } else if !is_pdnd_uuid(&sub) {
        errors.push(InvalidSubjectFormat(shown(claim("sub"))));
    } else if let Some(client_id) = client_id.filter(|c| !c.is_empty()) {
        if !is_pdnd_uuid(client_id) {
            errors.push(InvalidClientIdFormat(client_id.to_owned()));
        } else if sub != client_id {
            errors.push(InvalidSubject(sub.clone()));
        }
    }

    let purpose_id = claim("purposeId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    if truthy(claim("purposeId")) && !purpose_id.is_some_and(is_pdnd_uuid) {
        errors.push(InvalidPurposeIdFormat(
            purpose_id.unwrap_or_default().to_owned(),
        ));
    }

    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !truthy(header.get("kid")) {
        errors.push(KidNotFound);
    } else if !is_kid_format(&kid) {
        errors.push(InvalidKidFormat);
    }

    match claim("aud") {
        aud if !truthy(aud) => errors.push(AudienceNotFound),
        Some(Value::Array(received)) => {
            if !audiences
                .iter()
                .any(|a| received.iter().any(|r| r.as_str() == Some(a)))
            {
                errors.push(InvalidAudience(shown(claim("aud"))));
            }
        }
        aud => {
            if !audiences
                .iter()
                .any(|a| aud.and_then(Value::as_str) == Some(a))
            {
                errors.push(InvalidAudience(shown(aud)));
            }
        }
    }

    match header.get("alg") {
        alg if !truthy(alg) => errors.push(AlgorithmNotFound),
        Some(Value::String(alg)) if alg == "RS256" => {}
        alg => errors.push(AlgorithmNotAllowed(shown(alg))),
    }

    let digest = match check_digest(claim("digest")) {
        Ok(digest) => digest,
        Err(mut digest_errors) => {
            errors.append(&mut digest_errors);
            None
        }
    };

    if !errors.is_empty() {
        return Err(Rejection { errors });
    }
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(DecodedAssertion {
        signing_input,
        signature_b64,
        purpose_id: purpose_id.map(str::to_owned),
        header,
        payload,
        kid,
        sub,
        digest,
    })
}

/// The `digest` claim: optional, but when present exactly `{alg, value}` (both strings, no
/// other member), `value` 64 characters long and `alg` exactly `SHA256`.
pub(super) fn check_digest(
    digest: Option<&Value>,
) -> Result<Option<DigestClaim>, Vec<AssertionRejection>> {
    use AssertionRejection::*;
    if !truthy(digest) {
        return Ok(None);
    }
    let Some(Value::Object(members)) = digest else {
        return Err(vec![InvalidDigestClaim(format!(
            "expected an object, got {}",
            shown(digest)
        ))]);
    };
    if let Some(extra) = members.keys().find(|k| *k != "alg" && *k != "value") {
        return Err(vec![InvalidDigestClaim(format!(
            "unrecognized key `{extra}`"
        ))]);
    }
    let (Some(Value::String(alg)), Some(Value::String(value))) =
        (members.get("alg"), members.get("value"))
    else {
        return Err(vec![InvalidDigestClaim(
            "`alg` and `value` must be strings".to_owned(),
        )]);
    };
    let mut errors = Vec::new();
    if value.chars().count() != 64 {
        errors.push(InvalidHashLength(alg.clone()));
    }
    if alg != "SHA256" {
        errors.push(InvalidHashAlgorithm);
    }
    if errors.is_empty() {
        Ok(Some(DigestClaim {
            alg: alg.clone(),
            value: value.clone(),
        }))
    } else {
        Err(errors)
    }
}

/// Step 3, second half: PDND's zod schemas for header and payload types (0032), reached only
/// when every claim check passed. Strict mode also refuses members PDND does not allow.
pub(super) fn check_claim_types(
    assertion: &DecodedAssertion<'_>,
    strict: bool,
) -> Result<(), Rejection> {
    let (header, payload) = (&assertion.header, &assertion.payload);
    let mut header_problems = Vec::new();
    let is_string = |v: Option<&Value>| matches!(v, Some(Value::String(_)));
    let is_number = |v: Option<&Value>| matches!(v, Some(Value::Number(_)));
    for name in ["kid", "alg"] {
        if !is_string(header.get(name)) {
            header_problems.push(format!("{name} must be a string"));
        }
    }
    if header.get("typ").is_some() && !is_string(header.get("typ")) {
        header_problems.push("typ must be a string".to_owned());
    }

    let mut payload_problems = Vec::new();
    for name in ["jti", "iss", "sub"] {
        if !is_string(payload.get(name)) {
            payload_problems.push(format!("{name} must be a string"));
        }
    }
    for name in ["iat", "exp"] {
        if !is_number(payload.get(name)) {
            payload_problems.push(format!("{name} must be a number"));
        }
    }
    let aud_ok = match payload.get("aud") {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        _ => false,
    };
    if !aud_ok {
        payload_problems.push("aud must be a string or an array of strings".to_owned());
    }
    if let Some(purpose) = payload.get("purposeId") {
        if !purpose.as_str().is_some_and(is_pdnd_uuid) {
            payload_problems.push("purposeId must be a UUID".to_owned());
        }
    }
    if let Some(digest) = payload.get("digest") {
        if !digest.is_null() && !digest.is_object() {
            payload_problems.push("digest must be an object or null".to_owned());
        }
    }

    if strict {
        const HEADER: [&str; 3] = ["kid", "alg", "typ"];
        const PAYLOAD: [&str; 8] = [
            "iss",
            "sub",
            "aud",
            "jti",
            "iat",
            "exp",
            "purposeId",
            "digest",
        ];
        for name in header.keys().filter(|k| !HEADER.contains(&k.as_str())) {
            header_problems.push(format!("unrecognized key `{name}`"));
        }
        for name in payload.keys().filter(|k| !PAYLOAD.contains(&k.as_str())) {
            payload_problems.push(format!("unrecognized key `{name}`"));
        }
    }

    let mut errors = Vec::new();
    if !header_problems.is_empty() {
        errors.push(AssertionRejection::InvalidClaims {
            part: "header",
            reason: header_problems.join(", "),
        });
    }
    if !payload_problems.is_empty() {
        errors.push(AssertionRejection::InvalidClaims {
            part: "payload",
            reason: payload_problems.join(", "),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection { errors })
    }
}

/// Step 5 (verifyClientAssertionSignature): `jose.jwtVerify` with RS256 and no clock tolerance:
/// the header's `crit` first, then the signature, then `nbf` (> now fails), then `exp`
/// (<= now fails).
pub(super) fn verify_signature(
    assertion: &DecodedAssertion<'_>,
    key: &RsaPublicKey,
    now: i64,
) -> Result<(), Rejection> {
    use AssertionRejection::*;
    let unencoded_payload = check_crit_as_jose(&assertion.header)?;
    if jws::decode_bytes(assertion.signature_b64, Part::Signature).is_err() {
        return Err(Rejection::one(JsonWebToken(
            "the signature is not base64url".to_owned(),
        )));
    }
    if !jws::verify_rs256(assertion.signing_input, assertion.signature_b64, key) {
        return Err(Rejection::one(InvalidSignature));
    }
    if unencoded_payload {
        // jose's jwtVerify, after a good signature (the signing input is the same bytes).
        return Err(Rejection::one(SignatureVerification(
            "JWTs MUST NOT use unencoded payload".to_owned(),
        )));
    }
    let now = now as f64;
    if let Some(nbf) = assertion.payload.get("nbf") {
        // jose reports a non-numeric nbf as a failed nbf claim too, which PDND maps to 0019.
        if nbf.as_f64().is_none_or(|nbf| nbf > now) {
            return Err(Rejection::one(NotBefore));
        }
    }
    // Step 3 established that exp is a number.
    if assertion
        .payload
        .get("exp")
        .and_then(Value::as_f64)
        .is_none_or(|exp| exp <= now)
    {
        return Err(Rejection::one(TokenExpired));
    }
    Ok(())
}

/// The `crit` rules of jose's JWS verification (validateCrit), which PDND's jwtVerify applies
/// before the signature: `crit` must be a non-empty array of non-empty strings (JWSInvalid,
/// PDND's 0018); jose implements one extension, `b64` (RFC 7797), so any other name is
/// refused as not recognised (JOSENotSupported, 0016); a listed `b64` must be present and a
/// boolean (0018). Returns whether the payload is declared unencoded (`b64: false`), which
/// jwtVerify refuses once the signature has verified.
pub(super) fn check_crit_as_jose(header: &Map<String, Value>) -> Result<bool, Rejection> {
    use AssertionRejection::*;
    let names = jws::critical_extensions(header).map_err(|_| {
        Rejection::one(JsonWebToken(
            "\"crit\" (Critical) Header Parameter MUST be an array of non-empty strings when present"
                .to_owned(),
        ))
    })?;
    for name in &names {
        if *name != "b64" {
            return Err(Rejection::one(SignatureVerification(format!(
                "Extension Header Parameter \"{name}\" is not recognized"
            ))));
        }
        if header.get(*name).is_none() {
            return Err(Rejection::one(JsonWebToken(format!(
                "Extension Header Parameter \"{name}\" is missing"
            ))));
        }
    }
    if !names.contains(&"b64") {
        return Ok(false);
    }
    match header.get("b64") {
        Some(Value::Bool(b64)) => Ok(!b64),
        _ => Err(Rejection::one(JsonWebToken(
            "The \"b64\" (base64url-encode payload) Header Parameter must be a boolean".to_owned(),
        ))),
    }
}

/// Step 6 for consumer clients: a purpose is required, must be one the client is associated
/// with, and must be active.
pub(super) fn check_purpose<'c>(
    client: &'c RegisteredClient,
    purpose_id: Option<&str>,
) -> Result<&'c RegisteredPurpose, Rejection> {
    let purpose_id =
        purpose_id.ok_or_else(|| Rejection::one(AssertionRejection::PurposeIdNotProvided))?;
    let purpose = client
        .purposes
        .iter()
        .find(|p| p.purpose_id == purpose_id)
        .ok_or_else(|| {
            Rejection::one(AssertionRejection::PurposeNotRegistered {
                client_id: client.client_id.clone(),
                purpose_id: purpose_id.to_owned(),
            })
        })?;
    if !purpose.active {
        return Err(Rejection::one(AssertionRejection::InvalidPurposeState(
            "INACTIVE".to_owned(),
        )));
    }
    Ok(purpose)
}
