//! Where the verification key of a received JWS comes from.
//!
//! ModI has two trust models: an X.509 chain in the JWS header checked against our CA list
//! (INTEGRITY_REST_01, [`KeySource::X5c`]) and a key registered on PDND named by `kid`
//! (INTEGRITY_REST_02 / AUDIT_REST_02, [`KeySource::Kid`]). Fetching PDND keys is I/O, so it is
//! not done here: the HTTP layer implements [`KidResolver`] over its cache, after prefetching
//! with [`super::unverified_kid`] if it wants to stay async.

use std::collections::HashMap;
use std::sync::RwLock;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::DecodingKey;

use super::keys::{
    rsa_components, rsa_thumbprint_of, LeafKey, SigningAlgorithm, TrustStore, MIN_RSA_BITS,
};
use super::ModiError;

/// Resolves a `kid` to the public key registered under it (on PDND: `GET /keys/{kid}`).
///
/// Synchronous on purpose: the protocol code never does I/O. An implementation answers from a
/// cache the HTTP layer fills (and may refill on a miss before calling the verifier).
pub trait KidResolver: Send + Sync {
    /// `Ok(None)` means the key does not exist (PDND 404) and the JWS is refused with
    /// [`ModiError::UnknownKid`]; an `Err` (typically [`ModiError::KeyUnavailable`]) means the
    /// answer is unknown right now.
    fn resolve(&self, kid: &str) -> Result<Option<Jwk>, ModiError>;
}

/// The trust model a JWS is verified under.
#[derive(Clone, Copy)]
pub enum KeySource<'a> {
    /// The header's `x5c` chain must lead to one of these CAs (INTEGRITY_REST_01).
    X5c(&'a TrustStore),
    /// The header's `kid` must resolve to a registered key (INTEGRITY_REST_02).
    Kid(&'a dyn KidResolver),
}

impl std::fmt::Debug for KeySource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::X5c(store) => f.debug_tuple("X5c").field(store).finish(),
            KeySource::Kid(_) => f.write_str("Kid(..)"),
        }
    }
}

/// Who signed a verified JWS, as far as the trust model tells.
#[derive(Debug, Clone)]
pub enum Signer {
    /// The leaf certificate of the verified `x5c` chain.
    Certificate(LeafKey),
    /// The PDND key id the signature verified with.
    Kid(String),
}

/// Turns a resolved JWK into a verification key for `algorithm`.
///
/// Refuses symmetric (`oct`) keys outright, keys whose own `alg` names another algorithm
/// (RFC 8725 §3.1: one key, one algorithm), RSA keys under 2048 bits, and EC keys for RSA
/// algorithms or vice versa.
pub(crate) fn jwk_decoding_key(
    jwk: &Jwk,
    algorithm: SigningAlgorithm,
) -> Result<DecodingKey, ModiError> {
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg.to_string() != algorithm.jose_name() {
            return Err(ModiError::AlgorithmNotAllowed(format!(
                "{} with a key registered for {key_alg}",
                algorithm.jose_name()
            )));
        }
    }
    match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(rsa), SigningAlgorithm::RS256 | SigningAlgorithm::PS256) => {
            let n_bits = base64_len_to_bits(&rsa.n);
            if n_bits < MIN_RSA_BITS as usize {
                return Err(ModiError::UnusableKey(format!(
                    "RSA key of about {n_bits} bits"
                )));
            }
            DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
        }
        (AlgorithmParameters::EllipticCurve(ec), SigningAlgorithm::ES256) => {
            if ec.curve != EllipticCurve::P256 {
                return Err(ModiError::UnusableKey("ES256 needs a P-256 key".into()));
            }
            DecodingKey::from_ec_components(&ec.x, &ec.y)
        }
        _ => {
            return Err(ModiError::UnusableKey(format!(
                "registered key type does not fit {}",
                algorithm.jose_name()
            )))
        }
    }
    .map_err(|e| ModiError::UnusableKey(e.to_string()))
}

/// Approximate bit length of a base64url big-endian integer, ignoring leading zero bytes.
fn base64_len_to_bits(b64: &str) -> usize {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    match URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')) {
        Ok(bytes) => {
            let significant = bytes.iter().skip_while(|b| **b == 0).count();
            significant * 8
        }
        Err(_) => 0,
    }
}

/// An in-memory [`KidResolver`]: for tests, and for deployments that pin the few consumer keys
/// they accept in configuration instead of asking PDND.
#[derive(Debug, Default)]
pub struct InMemoryKidResolver {
    keys: RwLock<HashMap<String, Jwk>>,
}

impl InMemoryKidResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `jwk` under `kid`.
    pub fn insert(&self, kid: impl Into<String>, jwk: Jwk) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.insert(kid.into(), jwk);
    }

    /// Registers an RSA public key PEM (or the public half of a private key PEM) the way PDND
    /// does: under its RFC 7638 thumbprint, with `alg` RS256 and `use` sig. Returns the kid.
    pub fn insert_rsa_pem(&self, pem: &[u8]) -> Result<String, ModiError> {
        let (n, e) = rsa_components(pem)?;
        let kid = rsa_thumbprint_of(&n, &e);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": n, "e": e, "alg": "RS256", "use": "sig", "kid": kid,
        }))
        .map_err(|err| ModiError::KeyMaterial(format!("JWK: {err}")))?;
        self.insert(kid.clone(), jwk);
        Ok(kid)
    }
}

impl KidResolver for InMemoryKidResolver {
    fn resolve(&self, kid: &str) -> Result<Option<Jwk>, ModiError> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(keys.get(kid).cloned())
    }
}
