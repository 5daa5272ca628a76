//! The one error type of the ModI module and its single mapping to HTTP statuses.
//!
//! Variants name what went wrong in protocol words so that the log can carry the precise
//! reason while the HTTP layer answers with [`ModiError::http_status`] alone. The mapping lives
//! here, next to the variants, so a new variant cannot be added without deciding its status.

use thiserror::Error;

/// Everything that can go wrong while producing or checking a ModI security pattern.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModiError {
    /// A header, token or claim that is not shaped as the pattern requires (bad base64, bad JSON,
    /// wrong number of JWS segments, wrong claim types, oversized input).
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// A header the pattern requires is absent from the message (name in lower case).
    #[error("missing header {0}")]
    MissingHeader(String),

    /// A claim the pattern requires is absent from a JWS payload.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),

    /// The `Digest` header names only algorithms other than SHA-256.
    #[error("unsupported digest algorithm {0}")]
    UnsupportedDigestAlgorithm(String),

    /// The `Digest` header does not match the body bytes received.
    #[error("digest does not match the body")]
    DigestMismatch,

    /// A header that the pattern requires to be signed (`digest`, and `content-type` /
    /// `content-encoding` when present on the message) is not listed in `signed_headers`.
    #[error("header {0} is not listed in signed_headers")]
    MissingSignedHeader(String),

    /// A header listed in `signed_headers` is absent from the message or has another value.
    #[error("signed header {0} differs from the header on the message")]
    SignedHeaderMismatch(String),

    /// The JWS `alg` is outside the allow-list (never `none` nor an HMAC algorithm), or does not
    /// fit the key it is checked with.
    #[error("algorithm {0} not allowed")]
    AlgorithmNotAllowed(String),

    /// The JWS `typ` is not the one the pattern prescribes.
    #[error("token type {0:?} not accepted")]
    WrongTokenType(Option<String>),

    /// The JWS header does not carry the key reference the trust model needs (`x5c` or `kid`).
    #[error("JWS header carries no {0}")]
    MissingKeyReference(&'static str),

    /// The signature does not verify with the key the header points to.
    #[error("signature does not verify")]
    BadSignature,

    /// The key found for the JWS cannot be used for it (wrong type or size).
    #[error("unusable verification key: {0}")]
    UnusableKey(String),

    /// The `x5c` chain does not lead to a trusted CA at the verification time.
    #[error("certificate chain not trusted: {0}")]
    UntrustedChain(String),

    /// The `kid` is not known to the key resolver (PDND answers 404 for it).
    #[error("unknown key id {0}")]
    UnknownKid(String),

    /// The key resolver could not answer (PDND unreachable); the message may be fine.
    #[error("key resolution unavailable: {0}")]
    KeyUnavailable(String),

    /// `aud` does not name the expected audience.
    #[error("audience {found:?} is not {expected}")]
    WrongAudience { expected: String, found: String },

    /// `exp` is past (beyond the leeway).
    #[error("token expired at {exp}")]
    Expired { exp: i64 },

    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not valid before {not_before}")]
    NotYetValid { not_before: i64 },

    /// `exp - iat` is longer than the policy allows; such a token would pin replay-cache memory.
    #[error("token lifetime {lifetime}s exceeds {max}s")]
    LifetimeTooLong { lifetime: i64, max: i64 },

    /// The `jti` was already seen within its validity.
    #[error("jti {0} already used")]
    Replayed(String),

    /// The replay cache is full of unexpired entries; refusing is safer than forgetting.
    #[error("replay cache full")]
    ReplayCacheFull,

    /// The shared replay memory (Redis) could not be asked: the request is refused, since
    /// accepting it unchecked could accept a replay. The text never holds a secret.
    #[error("replay memory unavailable: {0}")]
    ReplayStoreUnavailable(String),

    /// This caller already holds its whole share of the replay memory: its own jtis are
    /// remembered until they expire, so it may send again in `retry_after_secs` seconds. Other
    /// callers are not affected.
    #[error("too many unexpired jtis from this client; retry in {retry_after_secs}s")]
    ReplayQuotaExceeded { retry_after_secs: u64 },

    /// Too many lookups of unknown kids right now: the request is refused without asking PDND
    /// (whose API quota the lookups spend); retry in `retry_after_secs` seconds.
    #[error("too many lookups of unknown key ids; retry in {retry_after_secs}s")]
    KeyLookupsThrottled { retry_after_secs: u64 },

    /// The `x5c` leaf certificate may not be used to verify digital signatures (its keyUsage
    /// extension lacks digitalSignature), or its extensions cannot be read.
    #[error("leaf certificate not for digital signatures: {0}")]
    CertificateUsage(String),

    /// The Agid-JWT-TrackingEvidence does not hash to the voucher's `digest.value`.
    #[error("tracking evidence not bound to the voucher digest")]
    TrackingEvidenceNotBound,

    /// The Agid-JWT-TrackingEvidence `iss` is absent or is not the voucher's client id: the
    /// evidence speaks for another consumer than the one PDND authorised.
    #[error(
        "tracking evidence iss {} is not the voucher's client id {expected}",
        found.as_deref().unwrap_or("(absent)")
    )]
    TrackingIssuerMismatch {
        expected: String,
        found: Option<String>,
    },

    /// The Agid-JWT-TrackingEvidence `purposeId` is not the voucher's `purposeId`.
    #[error("tracking evidence purposeId {found} is not the voucher's purposeId {expected}")]
    TrackingPurposeMismatch { expected: String, found: String },

    /// Our own key or certificate material is unusable (configuration error, not the peer's).
    #[error("signing material: {0}")]
    KeyMaterial(String),

    /// The dev PKI could not be written or read.
    #[error("dev PKI: {0}")]
    Pki(String),
}

impl ModiError {
    /// The HTTP status the gateway answers with.
    ///
    /// Shape and integrity failures of the message (400) are separated from failures of the
    /// sender's credentials (401), following the ModI conformance cases: a wrong Digest or
    /// signed header is a bad request, a bad signature, untrusted key, wrong audience or
    /// stale token is an authentication failure.
    ///
    /// A replayed `jti` answers **401**, not 409: the replayed JWS is a credential that is no
    /// longer acceptable, exactly like an expired one, and nothing about the target resource
    /// conflicts. 409 would invite the client to "resolve a conflict" and retry the same bytes;
    /// 401 tells it to sign a fresh message. It also matches the PDND conformance cases
    /// (TrackingEvidence / Agid-JWT-Signature jti replay -> 401).
    pub fn http_status(&self) -> u16 {
        match self {
            ModiError::Malformed { .. }
            | ModiError::MissingHeader(_)
            | ModiError::MissingClaim(_)
            | ModiError::UnsupportedDigestAlgorithm(_)
            | ModiError::DigestMismatch
            | ModiError::MissingSignedHeader(_)
            | ModiError::SignedHeaderMismatch(_) => 400,
            ModiError::AlgorithmNotAllowed(_)
            | ModiError::WrongTokenType(_)
            | ModiError::MissingKeyReference(_)
            | ModiError::BadSignature
            | ModiError::UnusableKey(_)
            | ModiError::UntrustedChain(_)
            | ModiError::UnknownKid(_)
            | ModiError::WrongAudience { .. }
            | ModiError::Expired { .. }
            | ModiError::NotYetValid { .. }
            | ModiError::LifetimeTooLong { .. }
            | ModiError::Replayed(_)
            | ModiError::CertificateUsage(_)
            | ModiError::TrackingEvidenceNotBound
            | ModiError::TrackingIssuerMismatch { .. }
            | ModiError::TrackingPurposeMismatch { .. } => 401,
            ModiError::ReplayQuotaExceeded { .. } => 429,
            ModiError::KeyUnavailable(_)
            | ModiError::ReplayCacheFull
            | ModiError::ReplayStoreUnavailable(_)
            | ModiError::KeyLookupsThrottled { .. } => 503,
            ModiError::KeyMaterial(_) | ModiError::Pki(_) => 500,
        }
    }

    /// Seconds after which the same request may succeed, for a `Retry-After` header: only
    /// for refusals caused by load, not by the message.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ModiError::ReplayQuotaExceeded { retry_after_secs }
            | ModiError::KeyLookupsThrottled { retry_after_secs } => Some(*retry_after_secs),
            // Redis restarts or fails over in seconds; the connection is re-established alone.
            ModiError::ReplayStoreUnavailable(_) => Some(2),
            _ => None,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        ModiError::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_split() {
        assert_eq!(ModiError::malformed("digest", "x").http_status(), 400);
        assert_eq!(ModiError::DigestMismatch.http_status(), 400);
        assert_eq!(
            ModiError::SignedHeaderMismatch("digest".into()).http_status(),
            400
        );
        assert_eq!(
            ModiError::MissingSignedHeader("content-type".into()).http_status(),
            400
        );
        assert_eq!(ModiError::MissingHeader("digest".into()).http_status(), 400);
        assert_eq!(ModiError::BadSignature.http_status(), 401);
        assert_eq!(ModiError::UntrustedChain("x".into()).http_status(), 401);
        assert_eq!(ModiError::UnknownKid("k".into()).http_status(), 401);
        assert_eq!(
            ModiError::WrongAudience {
                expected: "a".into(),
                found: "b".into()
            }
            .http_status(),
            401
        );
        assert_eq!(ModiError::Expired { exp: 1 }.http_status(), 401);
        assert_eq!(ModiError::NotYetValid { not_before: 1 }.http_status(), 401);
        assert_eq!(ModiError::Replayed("j".into()).http_status(), 401);
        assert_eq!(ModiError::KeyUnavailable("down".into()).http_status(), 503);
        assert_eq!(ModiError::KeyMaterial("bad".into()).http_status(), 500);
        assert_eq!(
            ModiError::ReplayQuotaExceeded {
                retry_after_secs: 7
            }
            .http_status(),
            429
        );
        assert_eq!(
            ModiError::KeyLookupsThrottled {
                retry_after_secs: 2
            }
            .http_status(),
            503
        );
        assert_eq!(ModiError::CertificateUsage("x".into()).http_status(), 401);
        assert_eq!(
            ModiError::TrackingPurposeMismatch {
                expected: "a".into(),
                found: "b".into()
            }
            .http_status(),
            401
        );
    }

    #[test]
    fn only_load_refusals_carry_a_retry_after() {
        assert_eq!(
            ModiError::ReplayQuotaExceeded {
                retry_after_secs: 7
            }
            .retry_after_secs(),
            Some(7)
        );
        assert_eq!(
            ModiError::KeyLookupsThrottled {
                retry_after_secs: 2
            }
            .retry_after_secs(),
            Some(2)
        );
        assert_eq!(ModiError::Replayed("j".into()).retry_after_secs(), None);
        assert_eq!(
            ModiError::KeyUnavailable("x".into()).retry_after_secs(),
            None
        );
    }
}
