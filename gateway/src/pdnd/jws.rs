//! Compact JWS plumbing shared by assertions, the authority and voucher checks.
//!
//! Headers and payloads are decoded by hand (strict base64url without padding, JSON objects
//! only) so callers can give a precise reason for every malformed token and look at `alg`
//! themselves before any crypto runs; `alg: none` is then a readable refusal, never a library
//! parse error. Signing and verifying are RS256 only, through jsonwebtoken's `crypto` functions,
//! which check the signature and nothing else: every claim rule belongs to the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Serialize;
use serde_json::{Map, Value};

use super::jwk::{RsaPrivateKey, RsaPublicKey};

/// The three parts of a compact JWS, named for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a string is not a compact JWS with JSON-object header and payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwsFormatError {
    #[error("a compact JWS has 3 dot-separated segments, this has {0}")]
    SegmentCount(usize),
    #[error("the {0} segment is empty")]
    Empty(Part),
    #[error("the {0} segment is not base64url without padding")]
    Base64(Part),
    #[error("the {0} segment is not JSON")]
    Json(Part),
    #[error("the {0} segment is JSON but not an object")]
    NotObject(Part),
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot serialise the JWS {0}: {1}")]
    Serialize(Part, String),
    #[error("RS256 signing failed: {0}")]
    Crypto(String),
}

/// The three raw segments of `token`, with no decoding.
pub fn split(token: &str) -> Result<[&str; 3], JwsFormatError> {
    let segments: Vec<&str> = token.split('.').collect();
    match segments.as_slice() {
        [h, p, s] => Ok([h, p, s]),
        other => Err(JwsFormatError::SegmentCount(other.len())),
    }
}

/// Decodes a base64url segment (strict: no padding, no stray characters).
pub fn decode_bytes(segment: &str, part: Part) -> Result<Vec<u8>, JwsFormatError> {
    if segment.is_empty() {
        return Err(JwsFormatError::Empty(part));
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwsFormatError::Base64(part))
}

/// Decodes a base64url segment holding a JSON object.
pub fn decode_object(segment: &str, part: Part) -> Result<Map<String, Value>, JwsFormatError> {
    let bytes = decode_bytes(segment, part)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwsFormatError::NotObject(part)),
        Err(_) => Err(JwsFormatError::Json(part)),
    }
}

/// Why a header's `crit` member (RFC 7515 section 4.1.11) makes a JWS unacceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CritError {
    /// `crit` is not a non-empty array of non-empty strings.
    #[error("crit must be a non-empty array of non-empty strings")]
    Malformed,
    /// `crit` names an extension the recipient does not implement, so it must not accept it.
    #[error("crit names the extension {0:?}, which is not implemented here")]
    Unsupported(String),
}

/// The extension names listed by the header's `crit` member: empty when there is none, an
/// error when it is not a non-empty array of non-empty strings. Only the shape is checked.
pub fn critical_extensions(header: &Map<String, Value>) -> Result<Vec<&str>, CritError> {
    let Some(crit) = header.get("crit") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = crit else {
        return Err(CritError::Malformed);
    };
    if items.is_empty() {
        return Err(CritError::Malformed);
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(name) if !name.is_empty() => Ok(name.as_str()),
            _ => Err(CritError::Malformed),
        })
        .collect()
}

/// Refuses a header whose `crit` is malformed or names an extension not in `understood`
/// (RFC 7515: a recipient that does not understand a critical extension must reject the JWS).
pub fn check_crit(header: &Map<String, Value>, understood: &[&str]) -> Result<(), CritError> {
    match critical_extensions(header)?
        .into_iter()
        .find(|name| !understood.contains(name))
    {
        Some(name) => Err(CritError::Unsupported(name.to_owned())),
        None => Ok(()),
    }
}

/// A compact JWS whose header and payload decoded to JSON objects and whose signature segment
/// is valid base64url. Nothing about it is trusted yet.
#[derive(Clone, Debug)]
pub struct CompactJws<'a> {
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature_b64: &'a str,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
}

impl<'a> CompactJws<'a> {
    /// Splits and decodes `token`; the signature is not checked.
    pub fn parse(token: &'a str) -> Result<Self, JwsFormatError> {
        let [header_b64, payload_b64, signature_b64] = split(token)?;
        let header = decode_object(header_b64, Part::Header)?;
        let payload = decode_object(payload_b64, Part::Payload)?;
        decode_bytes(signature_b64, Part::Signature)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self {
            signing_input,
            signature_b64,
            header,
            payload,
        })
    }

    /// The header member `name` if it is a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// True when the RS256 signature verifies with `key`.
    pub fn verify_rs256(&self, key: &RsaPublicKey) -> bool {
        verify_rs256(self.signing_input, self.signature_b64, key)
    }
}

/// True when `signature_b64` is a valid RS256 signature of `signing_input` by `key`. A key whose
/// members do not decode, or a signature that is not base64url, simply does not verify.
pub fn verify_rs256(signing_input: &str, signature_b64: &str, key: &RsaPublicKey) -> bool {
    let Ok((n, e)) = key.components() else {
        return false;
    };
    let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
    jsonwebtoken::crypto::verify(
        signature_b64,
        signing_input.as_bytes(),
        &decoding,
        Algorithm::RS256,
    )
    .unwrap_or(false)
}

/// Signs `header` and `claims` (serialised as given, member order kept) with RS256. Callers
/// choose the header exactly, e.g. PDND's `{"alg","use","typ","kid"}` for vouchers.
pub fn sign_rs256<H: Serialize, C: Serialize>(
    header: &H,
    claims: &C,
    key: &RsaPrivateKey,
) -> Result<String, SignError> {
    let header = serde_json::to_vec(header)
        .map_err(|e| SignError::Serialize(Part::Header, e.to_string()))?;
    let claims = serde_json::to_vec(claims)
        .map_err(|e| SignError::Serialize(Part::Payload, e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        key.encoding_key(),
        Algorithm::RS256,
    )
    .map_err(|e| SignError::Crypto(e.to_string()))?;
    Ok(format!("{signing_input}.{signature}"))
}

/// base64url without padding, the JWS encoding.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::test_keys;
    use serde_json::json;

    #[test]
    fn signed_token_parses_and_verifies_only_with_its_key() {
        let key = test_keys::client();
        let token = sign_rs256(&json!({"alg": "RS256"}), &json!({"a": 1}), key).unwrap();
        let jws = CompactJws::parse(&token).unwrap();
        assert_eq!(jws.header_str("alg"), Some("RS256"));
        assert_eq!(jws.payload["a"], 1);
        assert!(jws.verify_rs256(key.public()));
        assert!(!jws.verify_rs256(test_keys::stranger().public()));
    }

    #[test]
    fn crit_absent_or_understood_is_accepted() {
        let header = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert_eq!(check_crit(&header(json!({"alg": "RS256"})), &[]), Ok(()));
        assert_eq!(
            critical_extensions(&header(json!({"crit": ["b64"], "b64": true}))),
            Ok(vec!["b64"])
        );
        assert_eq!(
            check_crit(&header(json!({"crit": ["b64"], "b64": true})), &["b64"]),
            Ok(())
        );
    }

    #[test]
    fn crit_naming_an_unknown_extension_is_refused() {
        let header = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert_eq!(
            check_crit(&header(json!({"crit": ["exp"], "exp": 1})), &[]),
            Err(CritError::Unsupported("exp".into()))
        );
        assert_eq!(
            check_crit(&header(json!({"crit": ["b64", "x-ext"]})), &["b64"]),
            Err(CritError::Unsupported("x-ext".into()))
        );
    }

    #[test]
    fn crit_of_the_wrong_shape_is_refused() {
        let header = |v: serde_json::Value| v.as_object().unwrap().clone();
        for crit in [
            json!([]),
            json!("b64"),
            json!([""]),
            json!([1]),
            json!(["b64", null]),
            json!({"b64": true}),
            json!(null),
        ] {
            assert_eq!(
                check_crit(&header(json!({ "crit": crit })), &["b64"]),
                Err(CritError::Malformed),
                "{crit}"
            );
        }
    }

    #[test]
    fn malformed_tokens_say_why() {
        let h = b64url(br#"{"alg":"RS256"}"#);
        let p = b64url(br#"{"a":1}"#);
        assert_eq!(
            CompactJws::parse("a.b").unwrap_err(),
            JwsFormatError::SegmentCount(2)
        );
        assert_eq!(
            CompactJws::parse("a.b.c.d.e").unwrap_err(),
            JwsFormatError::SegmentCount(5)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}..c2ln")).unwrap_err(),
            JwsFormatError::Empty(Part::Payload)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}.{p}=.c2ln")).unwrap_err(),
            JwsFormatError::Base64(Part::Payload)
        );
        assert_eq!(
            CompactJws::parse(&format!("{}.{p}.c2ln", b64url("{nope"))).unwrap_err(),
            JwsFormatError::Json(Part::Header)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}.{}.c2ln", b64url("[1]"))).unwrap_err(),
            JwsFormatError::NotObject(Part::Payload)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}.{p}.c2l+")).unwrap_err(),
            JwsFormatError::Base64(Part::Signature)
        );
    }
}
