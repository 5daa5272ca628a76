//! The compact-JWS steps shared by every ModI token: header parsing, algorithm allow-list,
//! key lookup through a [`KeySource`], signature check, and the audience and time rules.
//!
//! Claim-specific rules (signed headers, audit claims) stay in the pattern modules. The clock
//! is never read here: callers pass `now`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::SigningAlgorithm;
use super::trust::{jwk_decoding_key, KeySource, Signer};
use super::ModiError;

/// Longest JWS accepted: an `x5c` chain of a few certificates fits easily.
pub(crate) const MAX_JWS_LEN: usize = 64 * 1024;
/// Longest `jti` accepted; it is stored in the replay cache.
pub(crate) const MAX_JTI_LEN: usize = 256;

/// The header members we read. Everything else is ignored, except `crit`, which we refuse
/// because we understand no extension (RFC 7515 §4.1.11). `jwk`, `jku` and `x5u` are never
/// used to find a key (RFC 8725 §3.10): a signer cannot choose its own trust anchor.
#[derive(Debug, Deserialize)]
pub(crate) struct JoseHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub x5c: Option<Vec<String>>,
    #[serde(default)]
    pub crit: Option<Value>,
}

/// Splits and decodes the header of a compact JWS without verifying anything.
pub(crate) fn decode_header(jws: &str) -> Result<JoseHeader, ModiError> {
    if jws.len() > MAX_JWS_LEN {
        return Err(ModiError::malformed("jws", "too long"));
    }
    let mut parts = jws.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ModiError::malformed(
            "jws",
            "not three dot-separated segments",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| ModiError::malformed("jws header", format!("base64url: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ModiError::malformed("jws header", e.to_string()))
}

/// A JWS whose signature verified, with its payload as a JSON object.
pub(crate) struct VerifiedJws {
    pub algorithm: SigningAlgorithm,
    pub signer: Signer,
    pub claims: Map<String, Value>,
}

/// Verifies signature and header rules; claims are returned unchecked.
///
/// Order: shape, `crit`, `alg` allow-list, `typ` (required), key lookup, signature. The algorithm is
/// taken from the allow-list, never trusted from the header as a free string.
pub(crate) fn verify_signature(
    jws: &str,
    source: &KeySource<'_>,
    allowed: &[SigningAlgorithm],
    expected_typ: &str,
    now: i64,
) -> Result<VerifiedJws, ModiError> {
    let header = decode_header(jws)?;
    if header.crit.is_some() {
        return Err(ModiError::malformed(
            "jws header",
            "crit extensions are not supported",
        ));
    }
    let algorithm = SigningAlgorithm::from_jose(&header.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or_else(|| ModiError::AlgorithmNotAllowed(header.alg.clone()))?;
    // Media type names compare case-insensitively (RFC 7515 §4.1.9): "jwt" is "JWT".
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(expected_typ))
    {
        return Err(ModiError::WrongTokenType(header.typ));
    }
    let (key, signer): (DecodingKey, Signer) = match source {
        KeySource::X5c(store) => {
            let x5c = header
                .x5c
                .as_deref()
                .ok_or(ModiError::MissingKeyReference("x5c"))?;
            let leaf = store.verify_chain(x5c, now)?;
            (leaf.decoding_key(algorithm)?, Signer::Certificate(leaf))
        }
        KeySource::Kid(resolver) => {
            let kid = header.kid.ok_or(ModiError::MissingKeyReference("kid"))?;
            let jwk = resolver
                .resolve(&kid)?
                .ok_or_else(|| ModiError::UnknownKid(kid.clone()))?;
            (jwk_decoding_key(&jwk, algorithm)?, Signer::Kid(kid))
        }
    };

    // jsonwebtoken checks the signature only; every claim rule is ours, evaluated at `now`.
    let mut validation = Validation::new(algorithm.jwt_algorithm());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(jws, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => ModiError::BadSignature,
            ErrorKind::InvalidAlgorithm => ModiError::AlgorithmNotAllowed(header.alg.clone()),
            ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidKeyFormat => ModiError::UnusableKey(e.to_string()),
            _ => ModiError::malformed("jws", e.to_string()),
        }
    })?;
    let Value::Object(claims) = data.claims else {
        return Err(ModiError::malformed("jws payload", "not a JSON object"));
    };
    Ok(VerifiedJws {
        algorithm,
        signer,
        claims,
    })
}

/// Reads the `kid` of a JWS without verifying it, so that an async caller can make sure the
/// key is in its [`super::KidResolver`] cache before verifying synchronously.
pub fn unverified_kid(jws: &str) -> Result<Option<String>, ModiError> {
    Ok(decode_header(jws)?.kid)
}

/// A string claim; `Ok(None)` when absent, `Malformed` when of another type.
pub(crate) fn string_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, ModiError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ModiError::malformed(
            "claim",
            format!("{name} is not a string"),
        )),
    }
}

/// A NumericDate claim as whole seconds.
pub(crate) fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, ModiError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ModiError::malformed("claim", format!("{name} is not an integer"))),
        Some(_) => Err(ModiError::malformed(
            "claim",
            format!("{name} is not a number"),
        )),
    }
}

/// The `jti`, required and bounded (it becomes a replay-cache key).
pub(crate) fn jti_claim(claims: &Map<String, Value>) -> Result<String, ModiError> {
    let jti = string_claim(claims, "jti")?.ok_or(ModiError::MissingClaim("jti"))?;
    check_jti(&jti)?;
    Ok(jti)
}

/// A `jti` fit to be a replay-memory key: present and at most [`MAX_JTI_LEN`] bytes. One rule
/// for the claim, the in-process memory and the shared store, so none can hold what another
/// would refuse.
pub fn check_jti(jti: &str) -> Result<(), ModiError> {
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(ModiError::malformed("claim", "jti empty or too long"));
    }
    Ok(())
}

/// `aud` must be the expected audience, or an array containing it. Returns the audience as
/// sent (an array joined with ",") for the record.
pub(crate) fn check_audience(
    claims: &Map<String, Value>,
    expected: &str,
) -> Result<String, ModiError> {
    let found = match claims.get("aud") {
        None | Some(Value::Null) => return Err(ModiError::MissingClaim("aud")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ModiError::malformed("claim", "aud array holds a non-string"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ModiError::malformed(
                "claim",
                "aud is neither string nor array",
            ))
        }
    };
    let joined = found.join(",");
    if found.contains(&expected) {
        Ok(joined)
    } else {
        Err(ModiError::WrongAudience {
            expected: expected.to_string(),
            found: joined,
        })
    }
}

/// The time window of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub iat: i64,
    pub nbf: Option<i64>,
    pub exp: i64,
}

/// `iat` and `exp` required, `nbf` optional; all compared to `now` with `leeway_secs` of
/// tolerance for clock skew. A token is expired once `now >= exp + leeway` (RFC 7519: not to
/// be accepted on or after `exp`), not yet valid while `nbf` or `iat` is beyond `now + leeway`.
pub(crate) fn check_window(
    claims: &Map<String, Value>,
    now: i64,
    leeway_secs: i64,
    max_lifetime_secs: Option<i64>,
) -> Result<Window, ModiError> {
    let iat = time_claim(claims, "iat")?.ok_or(ModiError::MissingClaim("iat"))?;
    let exp = time_claim(claims, "exp")?.ok_or(ModiError::MissingClaim("exp"))?;
    let nbf = time_claim(claims, "nbf")?;
    let leeway = leeway_secs.max(0);
    if exp < iat {
        return Err(ModiError::malformed("claim", "exp before iat"));
    }
    if now >= exp.saturating_add(leeway) {
        return Err(ModiError::Expired { exp });
    }
    let not_before = nbf.map_or(iat, |nbf| nbf.max(iat));
    if not_before > now.saturating_add(leeway) {
        return Err(ModiError::NotYetValid { not_before });
    }
    if let Some(max) = max_lifetime_secs {
        // exp >= iat here, but their difference may not fit an i64 (iat far in the past, exp
        // far in the future): such a lifetime is the longest there is, never a wrapped one.
        let lifetime = exp.saturating_sub(iat);
        if lifetime > max {
            return Err(ModiError::LifetimeTooLong { lifetime, max });
        }
    }
    Ok(Window { iat, nbf, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test literal is an object"),
        }
    }

    #[test]
    fn header_shape_is_checked() {
        assert!(matches!(
            decode_header("a.b"),
            Err(ModiError::Malformed { .. })
        ));
        assert!(matches!(
            decode_header("a.b.c.d"),
            Err(ModiError::Malformed { .. })
        ));
        assert!(matches!(
            decode_header("!!.b.c"),
            Err(ModiError::Malformed { .. })
        ));
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let parsed = decode_header(&format!("{h}.e30.c2ln")).map_err(|e| e.to_string());
        assert_eq!(
            parsed.as_ref().map(|h| h.kid.clone()),
            Ok(Some("k1".to_string()))
        );
        assert_eq!(
            unverified_kid(&format!("{h}.e30.c2ln")),
            Ok(Some("k1".to_string()))
        );
    }

    #[test]
    fn audience_string_or_array() {
        let c = obj(json!({"aud": "https://comune.example/api"}));
        assert_eq!(
            check_audience(&c, "https://comune.example/api"),
            Ok("https://comune.example/api".into())
        );
        let c = obj(json!({"aud": ["x", "https://comune.example/api"]}));
        assert!(check_audience(&c, "https://comune.example/api").is_ok());
        let c = obj(json!({"aud": "https://other.example"}));
        assert!(matches!(
            check_audience(&c, "https://comune.example/api"),
            Err(ModiError::WrongAudience { .. })
        ));
        let c = obj(json!({}));
        assert_eq!(check_audience(&c, "x"), Err(ModiError::MissingClaim("aud")));
        let c = obj(json!({"aud": 3}));
        assert!(matches!(
            check_audience(&c, "x"),
            Err(ModiError::Malformed { .. })
        ));
    }

    #[test]
    fn time_window_with_leeway() {
        let c = obj(json!({"iat": 1000, "nbf": 1000, "exp": 1100}));
        assert!(check_window(&c, 1050, 0, None).is_ok());
        assert_eq!(
            check_window(&c, 1100, 0, None),
            Err(ModiError::Expired { exp: 1100 })
        );
        assert!(check_window(&c, 1100, 10, None).is_ok());
        assert_eq!(
            check_window(&c, 1110, 10, None),
            Err(ModiError::Expired { exp: 1100 })
        );
        assert_eq!(
            check_window(&c, 990, 5, None),
            Err(ModiError::NotYetValid { not_before: 1000 })
        );
        assert!(check_window(&c, 995, 5, None).is_ok());
        assert_eq!(
            check_window(&c, 1050, 0, Some(60)),
            Err(ModiError::LifetimeTooLong {
                lifetime: 100,
                max: 60
            })
        );
        let c = obj(json!({"iat": i64::MIN, "exp": i64::MAX}));
        assert_eq!(
            check_window(&c, 1050, 0, Some(60)),
            Err(ModiError::LifetimeTooLong {
                lifetime: i64::MAX,
                max: 60
            })
        );
        let c = obj(json!({"iat": 1000, "exp": 1100.5}));
        assert!(matches!(
            check_window(&c, 1050, 0, None),
            Err(ModiError::Malformed { .. })
        ));
        let c = obj(json!({"iat": 1000}));
        assert_eq!(
            check_window(&c, 1050, 0, None),
            Err(ModiError::MissingClaim("exp"))
        );
    }
}
