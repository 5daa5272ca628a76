//! DPoP proofs (RFC 9449): how a PDND voucher is bound to a key its holder must prove it has.
//!
//! A DPoP-bound voucher carries `cnf.jkt`, the RFC 7638 thumbprint of the consumer's proof key;
//! every request that presents it (`Authorization: DPoP <voucher>`) must carry a fresh `DPoP`
//! header: a JWS signed with that key, whose header holds the public key itself (`jwk`) and
//! whose claims name this very request (`htm`, `htu`), a moment (`iat`), a unique `jti` and
//! the hash of the voucher (`ath`). A stolen voucher is then useless without the private key.
//!
//! [`verify`] applies every rule of RFC 9449 section 4.3 that needs no memory, in this order:
//! bounded length, JWS shape, `typ` exactly `dpop+jwt`, `alg` in [`ProofAlgorithm`] (so `none`
//! and HMAC are refused by name before any crypto runs), no `crit`, `jwk` a public key of the
//! algorithm's type with no private members, the signature with that key, `htm`, `htu` (after
//! RFC 3986 syntax- and scheme-based normalisation of both sides, query and fragment dropped),
//! `iat` within the policy's window (PDND: 60 s of validity, 10 s of tolerance for clocks
//! ahead), `jti` present, and `ath` when a voucher accompanies the proof. Two rules are the
//! caller's, because they need state: the `jti` must be new (a replay store, see
//! [`VerifiedProof::replay_expires_at`]) and [`VerifiedProof::jkt`] must equal the voucher's
//! `cnf.jkt`. [`DpopKey`] is the other side: it signs proofs for the gateway as fruitore.
//! Nothing here reads the clock or does I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::jwk::{EcPublicKey, RsaPublicKey, MIN_RSA_BITS, P256_COORDINATE_LEN};
use super::jws::{self, Part};

/// The header `typ` of every DPoP proof (RFC 9449 section 4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The HTTP header that carries the proof.
pub const DPOP_HEADER: &str = "DPoP";

/// The `Authorization` scheme of a DPoP-bound voucher.
pub const DPOP_SCHEME: &str = "DPoP";

/// Longest proof accepted: an RSA-4096 `jwk` and the claims fit well within it.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest `jti` accepted; it becomes a replay-store key.
pub const MAX_JTI_LEN: usize = 256;

/// PDND's validity of a proof after its `iat` (DPOP_DURATION_SECONDS).
pub const PDND_PROOF_VALIDITY_SECS: i64 = 60;

/// PDND's tolerance for a proof whose `iat` is ahead of our clock (DPOP_IAT_TOLERANCE_SECONDS).
pub const PDND_IAT_TOLERANCE_SECS: i64 = 10;

/// The signature algorithms a proof may use. `none` and the HMAC family cannot be represented:
/// a proof's key is public, so a symmetric algorithm would let anybody sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProofAlgorithm {
    /// ECDSA P-256 with SHA-256: what PDND recommends for proofs, and what the gateway signs.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
}

impl ProofAlgorithm {
    /// Every accepted algorithm, in the order the `algs` challenge parameter lists them.
    pub const ALL: [ProofAlgorithm; 3] = [Self::ES256, Self::RS256, Self::PS256];

    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
        }
    }

    /// Parses a JOSE `alg`: only the allow-list, compared exactly.
    pub fn from_jose(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.jose_name() == alg)
    }

    /// The allow-list as the `algs` parameter of a `WWW-Authenticate: DPoP` challenge wants it.
    pub fn challenge_list() -> String {
        Self::ALL.map(Self::jose_name).join(" ")
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
            Self::PS256 => Algorithm::PS256,
        }
    }
}

/// The public key a proof carries in its `jwk` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofKey {
    Ec(EcPublicKey),
    Rsa(RsaPublicKey),
}

impl ProofKey {
    /// RFC 7638 thumbprint: what a bound voucher's `cnf.jkt` must equal.
    pub fn thumbprint(&self) -> String {
        match self {
            ProofKey::Ec(k) => k.thumbprint(),
            ProofKey::Rsa(k) => k.thumbprint(),
        }
    }
}

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

/// `ath`: BASE64URL(SHA-256(the voucher's ASCII bytes)) (RFC 9449 section 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
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

/// Why a proof key could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum DpopKeyError {
    #[error("P-256 key: {0}")]
    Key(String),
    #[error("ES256 signing failed: {0}")]
    Sign(String),
    #[error("{0} is not an absolute http(s) URL to name in htu")]
    Url(String),
}

/// A P-256 key that signs the gateway's own proofs (ES256), as fruitore.
#[derive(Clone)]
pub struct DpopKey {
    encoding: EncodingKey,
    public: EcPublicKey,
    jkt: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DpopKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

/// The header of our proofs.
#[derive(Serialize)]
struct ProofHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    jwk: &'a Value,
}

/// The claims of our proofs.
#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let ec = EcKey::generate(&group).map_err(|e| DpopKeyError::Key(e.to_string()))?;
        Self::from_ec(ec)
    }

    /// A P-256 private key from PEM (PKCS#8 or SEC1).
    pub fn from_pem(pem: &str) -> Result<Self, DpopKeyError> {
        let pkey = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let ec = pkey
            .ec_key()
            .map_err(|_| DpopKeyError::Key("not an EC key".into()))?;
        Self::from_ec(ec)
    }

    fn from_ec(ec: EcKey<openssl::pkey::Private>) -> Result<Self, DpopKeyError> {
        let err = |e: openssl::error::ErrorStack| DpopKeyError::Key(e.to_string());
        if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err(DpopKeyError::Key("ES256 needs a P-256 key".into()));
        }
        let mut ctx = BigNumContext::new().map_err(err)?;
        let mut x = BigNum::new().map_err(err)?;
        let mut y = BigNum::new().map_err(err)?;
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
            .map_err(err)?;
        let width = P256_COORDINATE_LEN as i32;
        let public = EcPublicKey {
            x: URL_SAFE_NO_PAD.encode(x.to_vec_padded(width).map_err(err)?),
            y: URL_SAFE_NO_PAD.encode(y.to_vec_padded(width).map_err(err)?),
        };
        let pkcs8 = PKey::from_ec_key(ec)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(err)?;
        let encoding =
            EncodingKey::from_ec_pem(&pkcs8).map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let jkt = public.thumbprint();
        Ok(Self {
            encoding,
            public,
            jkt,
        })
    }

    /// The public half.
    pub fn public(&self) -> &EcPublicKey {
        &self.public
    }

    /// The RFC 7638 thumbprint: the `cnf.jkt` of vouchers bound to this key.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request: `htu` is `url` without query and fragment; `ath` is set when
    /// a voucher accompanies the request. Each call has a fresh UUID v4 `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<String, DpopKeyError> {
        let mut htu = url::Url::parse(url).map_err(|_| DpopKeyError::Url(url.to_owned()))?;
        if !matches!(htu.scheme(), "http" | "https") {
            return Err(DpopKeyError::Url(url.to_owned()));
        }
        htu.set_query(None);
        htu.set_fragment(None);
        let jwk = self.public.to_jwk();
        let header = ProofHeader {
            typ: DPOP_TYP,
            alg: ProofAlgorithm::ES256.jose_name(),
            jwk: &jwk,
        };
        let claims = ProofClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            htm: method,
            htu: htu.as_str(),
            iat: now,
            ath: access_token.map(access_token_hash),
        };
        let encode = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
        let header = serde_json::to_vec(&header).map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        let claims = serde_json::to_vec(&claims).map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        let signing_input = format!("{}.{}", encode(header), encode(claims));
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, Algorithm::ES256)
                .map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        Ok(format!("{signing_input}.{signature}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::jws::b64url;
    use crate::pdnd::test_keys;
    use serde_json::json;
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
            let sig = jsonwebtoken::crypto::sign(
                input.as_bytes(),
                test_keys::client().encoding_key(),
                alg,
            )
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
        let jwk =
            json!({"kty": "RSA", "n": b64url(rsa.n().to_vec()), "e": b64url(rsa.e().to_vec())});
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
        let ec =
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
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
}
