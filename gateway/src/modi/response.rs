//! Signed messages as whole units: find the ModI headers on a request or response and check
//! them, or produce them for a response we send.
//!
//! [`verify_response`] is the library entry point for a receiving administration that keeps
//! responses as evidence: given what was saved (status, headers, body bytes) it says whether the
//! producer's signature holds, and if not, exactly why.

use super::keys::SigningMaterial;
use super::signature::{
    sign_message, single_header, verify, MessageSignature, SignatureClaims, SignatureExpectations,
    VerifiedSignature, AGID_JWT_SIGNATURE,
};
use super::trust::KeySource;
use super::ModiError;

/// Statuses that carry no body: nothing to digest, so signers (PDND included) skip them.
const BODYLESS: [u16; 2] = [204, 304];

/// Checks `Agid-JWT-Signature` and `Digest` of a received request.
pub fn verify_request(
    headers: &[(&str, &str)],
    body: &[u8],
    trust: &KeySource<'_>,
    expect: &SignatureExpectations,
) -> Result<VerifiedSignature, ModiError> {
    let jws = single_header(headers, AGID_JWT_SIGNATURE)?
        .ok_or_else(|| ModiError::MissingHeader(AGID_JWT_SIGNATURE.into()))?;
    verify(jws, trust, expect, headers, body)
}

/// Checks a saved response: its `Agid-JWT-Signature` (with `aud` = the receiver's client id in
/// `expect.audience`, key from `trust`), its signed headers and its `Digest` against the body.
///
/// The status line is not covered by ModI signatures, so `status` decides nothing about
/// validity; it is part of the signature of this function because 204/304 responses are never
/// signed (no body), and for them the [`ModiError::MissingHeader`] answer means "nothing to
/// verify" rather than "unsigned": [`is_signable_status`] tells the caller which case it is.
/// To re-verify evidence long after receipt, set `expect.now` to the time of receipt.
pub fn verify_response(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    trust: &KeySource<'_>,
    expect: &SignatureExpectations,
) -> Result<VerifiedSignature, ModiError> {
    let _not_covered_by_the_signature = status;
    verify_request(headers, body, trust, expect)
}

/// Whether a response with this status carries a body that ModI signs (not 204/304).
pub fn is_signable_status(status: u16) -> bool {
    !BODYLESS.contains(&status)
}

/// Signs a response we send; `None` for 204/304, which have no body to sign.
pub fn sign_response(
    status: u16,
    material: &SigningMaterial,
    claims: &SignatureClaims,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<Option<MessageSignature>, ModiError> {
    if !is_signable_status(status) {
        return Ok(None);
    }
    sign_message(material, claims, content_type, content_encoding, body).map(Some)
}
