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
//!
//! The two sides live apart: `verification.rs` (the erogatore's check, the larger and the one
//! every hostile input meets) and `signing.rs` (our own proofs, as fruitore); what both need
//! (the constants, [`ProofAlgorithm`], [`ProofKey`], [`access_token_hash`]) stays here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use sha2::{Digest as _, Sha256};

use super::jwk::{EcPublicKey, RsaPublicKey};

mod signing;
#[cfg(test)]
mod tests;
mod verification;

pub use signing::{DpopKey, DpopKeyError};
pub use verification::{
    normalize_htu, verify, DpopError, ProofPolicy, ProofRequest, VerifiedProof,
};

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

/// `ath`: BASE64URL(SHA-256(the voucher's ASCII bytes)) (RFC 9449 section 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}
