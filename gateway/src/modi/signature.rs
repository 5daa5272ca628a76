//! INTEGRITY_REST_01/02: the `Agid-JWT-Signature` JWS that signs a message's headers, and
//! through the signed `Digest` header, its body.
//!
//! [`sign`] produces the JWS for a message we send; [`verify`] checks one we receive against
//! the actual headers and body bytes. Replay of the `jti` is checked by the caller with a
//! [`super::ReplayGuard`] using the values [`VerifiedSignature`] returns, so that the same
//! verifier serves messages (which must be unique) and saved evidence (re-verified later).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::digest::{digest_header, verify_digest};
use super::jws::{self, check_audience, check_window, jti_claim, string_claim};
use super::keys::{SigningAlgorithm, SigningMaterial};
use super::trust::{KeySource, Signer};
use super::{ModiError, ReplayGuard};

/// HTTP header carrying the signature JWS (lower case; header names compare case-insensitively).
pub const AGID_JWT_SIGNATURE: &str = "agid-jwt-signature";
/// HTTP header carrying the body digest.
pub const DIGEST: &str = "digest";
/// Headers that ModI requires to be signed whenever they are on the message.
pub const MUST_SIGN_IF_PRESENT: [&str; 2] = ["content-type", "content-encoding"];
/// Most entries accepted in `signed_headers`.
const MAX_SIGNED_HEADERS: usize = 32;

/// The registered claims of an `Agid-JWT-Signature`, chosen by the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureClaims {
    /// Who signs: our client id (INTEGRITY_REST_02) or our identifier.
    pub iss: String,
    pub sub: String,
    /// The receiver: the provider's audience for a request, the consumer's client id for a
    /// response.
    pub aud: String,
    /// Unique per message: the receiver refuses a second message with the same jti.
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

#[derive(Serialize)]
struct WireClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    signed_headers: Vec<BTreeMap<String, &'a str>>,
}

/// Signs `signed_headers` (name, exact value as sent) into an `Agid-JWT-Signature`.
///
/// Names are written in lower case, in the order given, as an array of single-key objects:
/// `[{"digest":"SHA-256=…"},{"content-type":"application/json"}]`. `digest` must be among them
/// (ModI); including `content-type` / `content-encoding` when the message has them is the
/// caller's duty, which [`sign_message`] does for it.
pub fn sign(
    material: &SigningMaterial,
    claims: &SignatureClaims,
    signed_headers: &[(&str, &str)],
) -> Result<String, ModiError> {
    let mut entries = Vec::with_capacity(signed_headers.len());
    let mut names: Vec<String> = Vec::with_capacity(signed_headers.len());
    for (name, value) in signed_headers {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ModiError::malformed("signed header name", name));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(ModiError::malformed("signed header value", name));
        }
        if names.contains(&name) {
            return Err(ModiError::malformed(
                "signed headers",
                format!("{name} listed twice"),
            ));
        }
        names.push(name.clone());
        entries.push(BTreeMap::from([(name, *value)]));
    }
    if !names.iter().any(|n| n == DIGEST) {
        return Err(ModiError::MissingSignedHeader(DIGEST.into()));
    }
    let wire = WireClaims {
        iss: &claims.iss,
        sub: &claims.sub,
        aud: &claims.aud,
        iat: claims.iat,
        nbf: claims.nbf,
        exp: claims.exp,
        jti: &claims.jti,
        signed_headers: entries,
    };
    encode(material, &wire)
}

/// Encodes and signs any claims with `typ: JWT` and the material's key reference (the header
/// segment comes encoded from the material: [`SigningMaterial::jws_header`]).
pub(crate) fn encode<T: Serialize>(
    material: &SigningMaterial,
    claims: &T,
) -> Result<String, ModiError> {
    // What jsonwebtoken::encode does, but with the key parsed once (see `super::signer`).
    let header = material.jws_header();
    let claims = serde_json::to_vec(claims)
        .map_err(|e| ModiError::KeyMaterial(format!("signing: claims: {e}")))?;
    let mut jws = String::with_capacity(header.len() + claims.len() * 4 / 3 + 350);
    jws.push_str(header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
    let signature = material.held_key().sign(jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut jws);
    Ok(jws)
}

/// The two headers to add to an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSignature {
    /// Value of the `Digest` header.
    pub digest: String,
    /// Value of the `Agid-JWT-Signature` header.
    pub agid_jwt_signature: String,
}

/// Computes the `Digest` of `body` and signs it together with the `Content-Type` and
/// `Content-Encoding` the message will carry (pass exactly the values that will be sent).
pub fn sign_message(
    material: &SigningMaterial,
    claims: &SignatureClaims,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<MessageSignature, ModiError> {
    let digest = digest_header(body);
    let mut headers: Vec<(&str, &str)> = vec![(DIGEST, &digest)];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    if let Some(ce) = content_encoding {
        headers.push(("content-encoding", ce));
    }
    let agid_jwt_signature = sign(material, claims, &headers)?;
    Ok(MessageSignature {
        digest,
        agid_jwt_signature,
    })
}

/// What the receiver expects of a JWS: built once from configuration, `now` set per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureExpectations {
    /// Our audience: the e-service URL as provider, our client id as consumer of a response.
    pub audience: String,
    /// Clock-skew tolerance on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Unix seconds of the verification.
    pub now: i64,
    /// Longest `exp - iat` accepted; bounds how long a jti occupies the replay cache.
    pub max_lifetime_secs: Option<i64>,
}

/// A signature that verified, with the values the caller still needs.
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    pub algorithm: SigningAlgorithm,
    /// The certificate or PDND key the signature verified with.
    pub signer: Signer,
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// `aud` as sent (arrays joined with ",").
    pub audience: String,
    /// Check it with a [`ReplayGuard`]: verification alone cannot see replays.
    pub jti: String,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub exp: i64,
    /// Until when the jti must be remembered: `exp + leeway`, after which the JWS is refused
    /// as expired anyway.
    pub replay_expires_at: i64,
    /// The signed headers, lower-case names, in signed order.
    pub signed_headers: Vec<(String, String)>,
}

impl VerifiedSignature {
    /// Records the jti in `guard`, failing with [`ModiError::Replayed`] on a second use.
    pub fn check_replay(&self, guard: &dyn ReplayGuard, now: i64) -> Result<(), ModiError> {
        guard.check_and_store(&self.jti, self.replay_expires_at, now)
    }

    /// [`Self::check_replay`], counted against `client`'s share of the guard's memory.
    pub fn check_replay_for(
        &self,
        guard: &dyn ReplayGuard,
        client: &str,
        now: i64,
    ) -> Result<(), ModiError> {
        guard.check_and_store_for(client, &self.jti, self.replay_expires_at, now)
    }
}

/// Verifies an `Agid-JWT-Signature` against the message it came with.
///
/// Checks, in order: JWS shape; `alg` in RS256/PS256/ES256 (never `none` or HMAC); `typ` JWT;
/// the key (an `x5c` chain to the trust store, or a `kid` known to the resolver); the
/// signature; `aud`; `iat`/`nbf`/`exp` with leeway; `jti` present; `signed_headers` present,
/// well formed, every listed header equal to the actual one; `digest` listed and, when on the
/// message, `content-type` and `content-encoding` listed; the `Digest` header against the body,
/// byte for byte.
pub fn verify(
    jws: &str,
    trust: &KeySource<'_>,
    expect: &SignatureExpectations,
    actual_headers: &[(&str, &str)],
    body: &[u8],
) -> Result<VerifiedSignature, ModiError> {
    let verified = jws::verify_signature(jws, trust, &SigningAlgorithm::ALL, "JWT", expect.now)?;
    let claims = &verified.claims;
    let audience = check_audience(claims, &expect.audience)?;
    let window = check_window(
        claims,
        expect.now,
        expect.leeway_secs,
        expect.max_lifetime_secs,
    )?;
    let jti = jti_claim(claims)?;
    let signed_headers = parse_signed_headers(claims.get("signed_headers"))?;

    for (name, signed_value) in &signed_headers {
        match single_header(actual_headers, name)? {
            Some(actual) if actual == signed_value.trim() => {}
            _ => return Err(ModiError::SignedHeaderMismatch(name.clone())),
        }
    }
    let is_signed = |name: &str| signed_headers.iter().any(|(n, _)| n == name);
    if !is_signed(DIGEST) {
        return Err(ModiError::MissingSignedHeader(DIGEST.into()));
    }
    for name in MUST_SIGN_IF_PRESENT {
        if single_header(actual_headers, name)?.is_some() && !is_signed(name) {
            return Err(ModiError::MissingSignedHeader(name.into()));
        }
    }
    let digest = single_header(actual_headers, DIGEST)?
        .ok_or_else(|| ModiError::MissingHeader(DIGEST.into()))?;
    verify_digest(digest, body)?;

    Ok(VerifiedSignature {
        algorithm: verified.algorithm,
        signer: verified.signer,
        iss: string_claim(claims, "iss")?,
        sub: string_claim(claims, "sub")?,
        audience,
        jti,
        iat: window.iat,
        nbf: window.nbf,
        exp: window.exp,
        replay_expires_at: window.exp.saturating_add(expect.leeway_secs.max(0)),
        signed_headers,
    })
}

/// `signed_headers`: an array of objects with exactly one string member each; names are
/// lower-cased for comparison and may not repeat.
fn parse_signed_headers(value: Option<&Value>) -> Result<Vec<(String, String)>, ModiError> {
    let Some(value) = value else {
        return Err(ModiError::MissingClaim("signed_headers"));
    };
    let bad = |reason: &str| ModiError::malformed("signed_headers", reason);
    let items = value.as_array().ok_or_else(|| bad("not an array"))?;
    if items.len() > MAX_SIGNED_HEADERS {
        return Err(bad("too many entries"));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
    for item in items {
        let object = item
            .as_object()
            .ok_or_else(|| bad("entry is not an object"))?;
        let mut members = object.iter();
        let (Some((name, value)), None) = (members.next(), members.next()) else {
            return Err(bad("entry does not have exactly one member"));
        };
        let value = value
            .as_str()
            .ok_or_else(|| bad("header value is not a string"))?;
        let name = name.to_ascii_lowercase();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(bad("header listed twice"));
        }
        out.push((name, value.to_string()));
    }
    Ok(out)
}

/// The value of header `name` (case-insensitive), trimmed. The same header sent twice with
/// different values is refused: we could not tell which one was signed.
pub(crate) fn single_header<'h>(
    headers: &[(&str, &'h str)],
    name: &str,
) -> Result<Option<&'h str>, ModiError> {
    let mut found: Option<&'h str> = None;
    for (n, v) in headers {
        if n.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            match found {
                Some(previous) if previous != v => {
                    return Err(ModiError::malformed(
                        "headers",
                        format!("{name} sent twice with different values"),
                    ))
                }
                _ => found = Some(v),
            }
        }
    }
    Ok(found)
}

/// RFC 9110 token characters, the only ones allowed in a header name.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
