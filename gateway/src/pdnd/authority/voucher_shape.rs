//! The header and claims of a consumer voucher, member for member as PDND writes them.

use crate::pdnd::client_assertion::DigestClaim;
use serde::Serialize;

/// The header PDND puts on vouchers (interopTokenService.ts), in its member order.
#[derive(Serialize)]
pub(super) struct VoucherHeader<'a> {
    pub(super) alg: &'static str,
    #[serde(rename = "use")]
    pub(super) use_: &'static str,
    pub(super) typ: &'static str,
    pub(super) kid: &'a str,
}

/// The claims PDND puts in a consumer voucher (generateInteropConsumerToken).
#[derive(Serialize)]
pub(super) struct VoucherClaims<'a> {
    pub(super) jti: String,
    pub(super) iss: &'a str,
    /// PDND serialises its audience array as ONE comma-joined string (jwtEncoder.ts).
    pub(super) aud: String,
    pub(super) sub: &'a str,
    pub(super) iat: i64,
    pub(super) nbf: i64,
    pub(super) exp: i64,
    #[serde(rename = "purposeId")]
    pub(super) purpose_id: &'a str,
    pub(super) client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) digest: Option<&'a DigestClaim>,
    #[serde(rename = "producerId")]
    pub(super) producer_id: &'a str,
    #[serde(rename = "consumerId")]
    pub(super) consumer_id: &'a str,
    #[serde(rename = "eserviceId")]
    pub(super) eservice_id: &'a str,
    #[serde(rename = "descriptorId")]
    pub(super) descriptor_id: &'a str,
    /// The DPoP binding, when the token request carried a proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cnf: Option<Confirmation<'a>>,
}

/// `cnf` (RFC 7800) of a DPoP-bound voucher: the thumbprint of the proof key (RFC 9449 6.1).
#[derive(Serialize)]
pub(super) struct Confirmation<'a> {
    pub(super) jkt: &'a str,
}
