//! The erogatore's side: [`verify`] checks a proof against the request it came with, in the
//! order the module documentation gives, and says why it refused ([`DpopError`]).

use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use super::{
    access_token_hash, ProofAlgorithm, ProofKey, DPOP_TYP, MAX_JTI_LEN, MAX_PROOF_LEN,
    PDND_IAT_TOLERANCE_SECS, PDND_PROOF_VALIDITY_SECS,
};
use crate::pdnd::jwk::{EcPublicKey, RsaPublicKey, MIN_RSA_BITS};
use crate::pdnd::jws::{self, Part};

/// Why a proof was refused. The caller answers 401 `invalid_dpop_proof` for all of them; the
/// log gets the variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is longer than {MAX_PROOF_LEN} bytes")]
    TooLarge,
    #[error("the DPoP proof is not a compact JWS with JSON header and claims: {0}")]
    Malformed(String),
    #[error("DPoP proof typ is {0:?}, expected dpop+jwt")]
    WrongType(Option<String>),
    #[error("the DPoP proof header has no alg")]
    MissingAlgorithm,
    #[error("DPoP proof algorithm {0} is not allowed (ES256, RS256, PS256 only)")]
    AlgorithmNotAllowed(String),
    #[error("the DPoP proof header has crit extensions, none is supported")]
    CriticalExtension,
    #[error("the DPoP proof header has no jwk")]
    MissingJwk,
    #[error("the DPoP proof jwk is not a usable public key for {alg}: {reason}")]
    InvalidJwk { alg: &'static str, reason: String },
    #[error("the DPoP proof jwk holds private key members")]
    PrivateJwk,
    #[error("the DPoP proof signature does not verify with its jwk")]
    BadSignature,
    #[error("the DPoP proof has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the DPoP proof claim {0} has the wrong type or an unusable value")]
    InvalidClaim(&'static str),
    #[error("DPoP proof htm {found} does not match the request method {expected}")]
    MethodMismatch { expected: String, found: String },
    #[error("DPoP proof htu {found} does not match the request URL {expected}")]
    UrlMismatch { expected: String, found: String },
    #[error("the request URL {0} cannot be compared (not an absolute http(s) URL)")]
    UnusableRequestUrl(String),
    #[error("the DPoP proof was issued at {iat}, too far in the future")]
    IssuedInFuture { iat: i64 },
    #[error("the DPoP proof was issued at {iat} and is no longer valid")]
    Expired { iat: i64 },
    #[error("the DPoP proof has no ath although a voucher accompanies it")]
    MissingAth,
    #[error("the DPoP proof ath is not the hash of the voucher it accompanies")]
    AthMismatch,
}

/// The time rules, built once from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofPolicy {
    /// How long after its `iat` a proof is accepted.
    pub validity_secs: i64,
    /// How far ahead of `now` an `iat` may be (the signer's clock running fast).
    pub future_tolerance_secs: i64,
}

impl Default for ProofPolicy {
    /// PDND's values: 60 s of validity, 10 s of tolerance.
    fn default() -> Self {
        Self {
            validity_secs: PDND_PROOF_VALIDITY_SECS,
            future_tolerance_secs: PDND_IAT_TOLERANCE_SECS,
        }
    }
}

/// The request a proof must describe.
#[derive(Clone, Copy, Debug)]
pub struct ProofRequest<'a> {
    /// The HTTP method, e.g. `POST` (compared exactly, as RFC 9110 methods are case-sensitive).
    pub method: &'a str,
    /// The absolute URL the caller used; its query and fragment are ignored.
    pub url: &'a str,
    /// The voucher presented with the proof: its `ath` is then required. `None` at the token
    /// endpoint, where no voucher exists yet.
    pub access_token: Option<&'a str>,
}

/// A proof that passed [`verify`]. Still to be checked by the caller: [`Self::jti`] is new,
/// [`Self::jkt`] is the voucher's `cnf.jkt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    jti: String,
    iat: i64,
    jkt: String,
    algorithm: ProofAlgorithm,
    replay_expires_at: i64,
}

impl VerifiedProof {
    pub fn jti(&self) -> &str {
        &self.jti
    }
    pub fn iat(&self) -> i64 {
        self.iat
    }
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    pub fn algorithm(&self) -> ProofAlgorithm {
        self.algorithm
    }
    /// Until when (unix seconds, exclusive) the `jti` must be remembered: past it the proof is
    /// refused as expired anyway.
    pub fn replay_expires_at(&self) -> i64 {
        self.replay_expires_at
    }
    /// True when the proof's key is the one a voucher is bound to.
    pub fn is_bound_to(&self, cnf_jkt: &str) -> bool {
        self.jkt == cnf_jkt
    }
}

/// The form of a URL that `htu` comparisons use (RFC 9449 section 4.3 asks for RFC 3986
/// syntax- and scheme-based normalisation): an absolute `http`/`https` URL with no user
/// information; scheme and host lower-cased; the default port dropped; an empty path made `/`;
/// `.`/`..` segments resolved; percent-encoded unreserved characters decoded and the other
/// escapes upper-cased; query and fragment removed.
pub fn normalize_htu(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return None;
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    let path = normalize_percent_encoding(parsed.path());
    parsed.set_path(&path);
    Some(parsed.to_string())
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986 section 2.3) and upper-cases the
/// hex digits of the others; anything else is kept as is.
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        if let (b'%', Some(hex)) = (bytes[i], escape) {
            let hex = String::from_utf8_lossy(hex);
            if let Ok(value) = u8::from_str_radix(&hex, 16) {
                let c = value as char;
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                    out.push(c);
                } else {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Checks `proof` for `request` at `now` (unix seconds) under `policy`.
pub fn verify(
    proof: &str,
    request: &ProofRequest<'_>,
    policy: &ProofPolicy,
    now: i64,
) -> Result<VerifiedProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::TooLarge);
    }
    let malformed = |e: jws::JwsFormatError| DpopError::Malformed(e.to_string());
    // The header alone first, so that `alg: none` with an empty signature is refused for its
    // algorithm rather than reported as a formatting problem.
    let [header_b64, _, _] = jws::split(proof).map_err(malformed)?;
    let header = jws::decode_object(header_b64, Part::Header).map_err(malformed)?;
    // typ exactly: RFC 9449 names the value, and an access token or ModI JWS (typ at+jwt / JWT)
    // must never pass for a proof.
    match header.get("typ") {
        Some(Value::String(t)) if t == DPOP_TYP => {}
        Some(Value::String(t)) => return Err(DpopError::WrongType(Some(t.clone()))),
        Some(other) => return Err(DpopError::WrongType(Some(other.to_string()))),
        None => return Err(DpopError::WrongType(None)),
    }
    let algorithm = match header.get("alg") {
        None => return Err(DpopError::MissingAlgorithm),
        Some(Value::String(alg)) => ProofAlgorithm::from_jose(alg)
            .ok_or_else(|| DpopError::AlgorithmNotAllowed(alg.clone()))?,
        Some(other) => return Err(DpopError::AlgorithmNotAllowed(other.to_string())),
    };
    if header.contains_key("crit") {
        return Err(DpopError::CriticalExtension);
    }
    let key = proof_key(header.get("jwk"), algorithm)?;
    let jws = jws::CompactJws::parse(proof).map_err(malformed)?;
    if !verify_signature(&jws, &key, algorithm) {
        return Err(DpopError::BadSignature);
    }
    let claims = &jws.payload;

    let htm = string_claim(claims, "htm")?;
    if htm != request.method {
        return Err(DpopError::MethodMismatch {
            expected: request.method.to_owned(),
            found: htm.to_owned(),
        });
    }
    let htu = string_claim(claims, "htu")?;
    let expected = normalize_htu(request.url)
        .ok_or_else(|| DpopError::UnusableRequestUrl(request.url.to_owned()))?;
    if normalize_htu(htu).as_deref() != Some(expected.as_str()) {
        return Err(DpopError::UrlMismatch {
            expected,
            found: htu.to_owned(),
        });
    }

    let iat = match claims.get("iat") {
        None | Some(Value::Null) => return Err(DpopError::MissingClaim("iat")),
        Some(v) => v.as_i64().ok_or(DpopError::InvalidClaim("iat"))?,
    };
    if iat > now.saturating_add(policy.future_tolerance_secs.max(0)) {
        return Err(DpopError::IssuedInFuture { iat });
    }
    let valid_until = iat.saturating_add(policy.validity_secs.max(0));
    if now > valid_until {
        return Err(DpopError::Expired { iat });
    }

    let jti = string_claim(claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopError::InvalidClaim("jti"));
    }

    if let Some(token) = request.access_token {
        let ath = match claims.get("ath") {
            None | Some(Value::Null) => return Err(DpopError::MissingAth),
            Some(Value::String(ath)) => ath,
            Some(_) => return Err(DpopError::InvalidClaim("ath")),
        };
        if *ath != access_token_hash(token) {
            return Err(DpopError::AthMismatch);
        }
    }

    Ok(VerifiedProof {
        jti: jti.to_owned(),
        iat,
        jkt: key.thumbprint(),
        algorithm,
        // Accepted up to and including `valid_until`; remembered strictly past it.
        replay_expires_at: valid_until.saturating_add(1),
    })
}

/// A required string claim.
fn string_claim<'c>(
    claims: &'c Map<String, Value>,
    name: &'static str,
) -> Result<&'c str, DpopError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(DpopError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopError::InvalidClaim(name)),
    }
}

/// The `jwk` header as a public key fit for `algorithm` (RFC 9449 section 4.3 check 7: a
/// public key, no private members; RFC 8725 section 3.1: the key type fits the algorithm).
fn proof_key(jwk: Option<&Value>, algorithm: ProofAlgorithm) -> Result<ProofKey, DpopError> {
    let alg = algorithm.jose_name();
    let invalid = |reason: &str| DpopError::InvalidJwk {
        alg,
        reason: reason.to_owned(),
    };
    let jwk = match jwk {
        None | Some(Value::Null) => return Err(DpopError::MissingJwk),
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(invalid("not a JSON object")),
    };
    // Private members of EC (d) and RSA (d, p, q, dp, dq, qi, oth) keys, and a symmetric key.
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err(DpopError::PrivateJwk);
    }
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    match (algorithm, member("kty")) {
        (ProofAlgorithm::ES256, Some("EC")) => {
            if member("crv") != Some("P-256") {
                return Err(invalid("ES256 needs crv P-256"));
            }
            let key = EcPublicKey {
                x: member("x").ok_or_else(|| invalid("no x"))?.to_owned(),
                y: member("y").ok_or_else(|| invalid("no y"))?.to_owned(),
            };
            key.coordinates().map_err(|e| invalid(&e.to_string()))?;
            Ok(ProofKey::Ec(key))
        }
        (ProofAlgorithm::RS256 | ProofAlgorithm::PS256, Some("RSA")) => {
            let key = RsaPublicKey {
                n: member("n").ok_or_else(|| invalid("no n"))?.to_owned(),
                e: member("e").ok_or_else(|| invalid("no e"))?.to_owned(),
            };
            let (n, _) = key.components().map_err(|e| invalid(&e.to_string()))?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS as usize {
                return Err(invalid(&format!("RSA key of about {bits} bits")));
            }
            Ok(ProofKey::Rsa(key))
        }
        (_, kty) => Err(invalid(&format!("kty {kty:?} does not fit the algorithm"))),
    }
}

/// True when the proof's signature verifies with its own key under `algorithm`.
fn verify_signature(jws: &jws::CompactJws<'_>, key: &ProofKey, algorithm: ProofAlgorithm) -> bool {
    let decoding = match key {
        ProofKey::Ec(k) => match DecodingKey::from_ec_components(&k.x, &k.y) {
            Ok(d) => d,
            Err(_) => return false,
        },
        ProofKey::Rsa(k) => match k.components() {
            Ok((n, e)) => DecodingKey::from_rsa_raw_components(&n, &e),
            Err(_) => return false,
        },
    };
    jsonwebtoken::crypto::verify(
        jws.signature_b64,
        jws.signing_input.as_bytes(),
        &decoding,
        algorithm.jsonwebtoken(),
    )
    .unwrap_or(false)
}
