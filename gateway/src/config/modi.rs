//! `[modi]`: our ModI signing identity and the bounds of the checks of peers' signatures.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

/// The JWS algorithm of our signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5: what every peer (and PDND itself) verifies. The default.
    #[default]
    RS256,
    PS256,
    ES256,
}

impl From<SignatureAlgorithm> for crate::modi::SigningAlgorithm {
    fn from(a: SignatureAlgorithm) -> Self {
        match a {
            SignatureAlgorithm::RS256 => crate::modi::SigningAlgorithm::RS256,
            SignatureAlgorithm::PS256 => crate::modi::SigningAlgorithm::PS256,
            SignatureAlgorithm::ES256 => crate::modi::SigningAlgorithm::ES256,
        }
    }
}

/// Our ModI signing identity and the trust placed in peers' signatures.
///
/// The key and chain are files (mounted from a secret in production, generated in the data
/// directory by `dev`); they are read and checked together at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModiConfig {
    /// PEM private key our responses are signed with.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// PEM certificate chain of that key, leaf first (sent as `x5c`).
    #[serde(default)]
    pub certificate_chain_file: Option<PathBuf>,
    /// `RS256` (default), `PS256` or `ES256`.
    #[serde(default)]
    pub algorithm: SignatureAlgorithm,
    /// PEM bundle of the CAs a caller's `x5c` must chain to (INTEGRITY_REST_01 requests).
    #[serde(default)]
    pub trust_store_file: Option<PathBuf>,
    /// Lifetime (`exp - iat`) of our response signatures: short, they prove one answer.
    #[serde(default = "default_signature_lifetime")]
    pub signature_lifetime_secs: i64,
    /// `iss` (and `sub`) of our signatures: how the receivers name us.
    #[serde(default)]
    pub issuer: String,
    /// Longest `exp - iat` accepted on a caller's signature or tracking evidence; bounds how
    /// long a jti occupies the replay memory.
    #[serde(default = "default_peer_lifetime")]
    pub max_peer_token_lifetime_secs: i64,
    /// Most jtis remembered at once (requests per second x (peer lifetime + leeway)). The same
    /// memory holds the jtis of DPoP proofs, each for 61 s (PDND's 60 s of validity).
    #[serde(default = "default_replay_capacity")]
    pub replay_cache_capacity: usize,
    /// How long a PDND key fetched by kid is kept.
    #[serde(default = "default_key_cache_ttl")]
    pub key_cache_ttl_secs: u64,
    /// Most jtis one client (the voucher's client id) may hold in the replay memory at once;
    /// beyond it that client alone gets 429 until its oldest jti expires. At most
    /// `replay_cache_capacity`.
    #[serde(default = "default_replay_per_client")]
    pub replay_cache_per_client: usize,
    /// How long a kid that PDND answered 404 for is remembered as unknown (not asked again).
    #[serde(default = "default_unknown_kid_ttl")]
    pub unknown_kid_ttl_secs: u64,
    /// Most lookups of uncached kids sent to `pdnd.keys_url` per minute, all callers together
    /// (a token bucket holding as many); beyond it a request needing one gets 503 with
    /// Retry-After and PDND is not asked. Bounds the PDND API quota forged kids can burn.
    #[serde(default = "default_kid_lookups_per_minute")]
    pub kid_lookups_per_minute: u32,
}

impl Default for ModiConfig {
    fn default() -> Self {
        ModiConfig {
            signing_key_file: None,
            certificate_chain_file: None,
            algorithm: SignatureAlgorithm::default(),
            trust_store_file: None,
            signature_lifetime_secs: default_signature_lifetime(),
            issuer: String::new(),
            max_peer_token_lifetime_secs: default_peer_lifetime(),
            replay_cache_capacity: default_replay_capacity(),
            key_cache_ttl_secs: default_key_cache_ttl(),
            replay_cache_per_client: default_replay_per_client(),
            unknown_kid_ttl_secs: default_unknown_kid_ttl(),
            kid_lookups_per_minute: default_kid_lookups_per_minute(),
        }
    }
}

fn default_signature_lifetime() -> i64 {
    60
}
fn default_peer_lifetime() -> i64 {
    300
}
fn default_replay_capacity() -> usize {
    100_000
}
fn default_key_cache_ttl() -> u64 {
    600
}
fn default_replay_per_client() -> usize {
    10_000
}
fn default_unknown_kid_ttl() -> u64 {
    300
}
fn default_kid_lookups_per_minute() -> u32 {
    60
}

impl ModiConfig {
    /// The signing material when `signs` (an e-service signs its responses), then the bounds of
    /// lifetimes, replay memory and key lookups.
    pub fn validate(&self, signs: bool) -> Result<(), ConfigError> {
        if signs {
            let key_named =
                |f: &Option<PathBuf>| f.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
            if !key_named(&self.signing_key_file) {
                return invalid(
                    "modi.signing_key_file",
                    "must name the PEM key responses are signed with (an e-service has sign_responses = true)",
                );
            }
            if !key_named(&self.certificate_chain_file) {
                return invalid(
                    "modi.certificate_chain_file",
                    "must name the PEM certificate chain of the signing key (leaf first)",
                );
            }
            if self.issuer.trim().is_empty() {
                return invalid("modi.issuer", "must name us in the iss of our signatures");
            }
        }
        if !(1..=300).contains(&self.signature_lifetime_secs) {
            return invalid(
                "modi.signature_lifetime_secs",
                "must be between 1 and 300 seconds",
            );
        }
        if !(1..=3600).contains(&self.max_peer_token_lifetime_secs) {
            return invalid(
                "modi.max_peer_token_lifetime_secs",
                "must be between 1 and 3600 seconds",
            );
        }
        if !(1..=10_000_000).contains(&self.replay_cache_capacity) {
            return invalid(
                "modi.replay_cache_capacity",
                "must be between 1 and 10000000",
            );
        }
        if self.key_cache_ttl_secs == 0 {
            return invalid("modi.key_cache_ttl_secs", "must be at least 1 second");
        }
        if !(1..=self.replay_cache_capacity).contains(&self.replay_cache_per_client) {
            return invalid(
                "modi.replay_cache_per_client",
                "must be between 1 and modi.replay_cache_capacity",
            );
        }
        if !(1..=86_400).contains(&self.unknown_kid_ttl_secs) {
            return invalid(
                "modi.unknown_kid_ttl_secs",
                "must be between 1 and 86400 seconds",
            );
        }
        if !(1..=6_000).contains(&self.kid_lookups_per_minute) {
            return invalid("modi.kid_lookups_per_minute", "must be between 1 and 6000");
        }
        Ok(())
    }
}
