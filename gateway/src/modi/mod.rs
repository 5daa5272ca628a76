//! AgID ModI security patterns (Linee guida di interoperabilità, Allegato 2) as pure protocol
//! code: bytes, keys, certificates and `now` in, typed results out.
//!
//! - [`digest`]: the RFC 3230 `Digest` header binding a body to its signature.
//! - [`signature`]: INTEGRITY_REST_01/02, the `Agid-JWT-Signature` over signed headers.
//! - [`tracking`]: AUDIT_REST_01/02, the `Agid-JWT-TrackingEvidence` and its voucher binding.
//! - [`replay`]: jti memory for both.
//! - [`keys`] / [`trust`]: our signing material, the CA trust store, PDND key resolution.
//! - [`response`]: whole-message helpers, including [`verify_response`] for saved evidence.
//! - [`pki`]: a development CA and signing identities.
//!
//! Boundary: no actix, no HTTP client, no configuration reads, no system clock. The HTTP
//! layer extracts headers and body, supplies `now` and a [`KidResolver`] backed by its PDND
//! key cache, and maps [`ModiError::http_status`].

pub mod digest;
mod error;
pub(crate) mod jws;
pub mod keys;
pub mod pki;
pub mod replay;
pub mod response;
pub mod signature;
mod signer;
pub mod tracking;
pub mod trust;

#[cfg(test)]
mod tests;

pub use digest::{digest_header, verify_digest};
pub use error::ModiError;
pub use jws::{check_jti, unverified_kid};
pub use keys::{
    rsa_thumbprint, KeyReference, LeafKey, SigningAlgorithm, SigningMaterial, TrustStore,
};
pub use pki::{generate_dev_pki, DevPki};
pub use replay::{InMemoryReplayGuard, ReplayGuard, ReplayScope};
pub use response::{is_signable_status, sign_response, verify_request, verify_response};
pub use signature::{
    sign, sign_message, verify, MessageSignature, SignatureClaims, SignatureExpectations,
    VerifiedSignature, AGID_JWT_SIGNATURE, DIGEST,
};
pub use tracking::{
    binds_to_voucher, build_tracking_evidence, check_voucher_binding, check_voucher_identity,
    tracking_evidence_digest, verify_tracking_evidence, TrackingClaims, TrackingEvidence,
    AGID_JWT_TRACKING_EVIDENCE,
};
pub use trust::{InMemoryKidResolver, KeySource, KidResolver, Signer};
