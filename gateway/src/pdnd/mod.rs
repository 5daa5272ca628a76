//! PDND protocol code, free of actix, HTTP clients, the clock and config reads.
//!
//! Everything here takes bytes, keys and `now` (unix seconds) and returns typed results, so every
//! rule of PDND Interoperabilità can be tested with fixed inputs and the HTTP layer stays a thin
//! adapter:
//!
//! - [`jwk`]: RSA keys as PDND wants them (>= 2048 bits, RFC 7638 thumbprint as `kid`) and JWK sets;
//! - [`jws`]: the compact JWS plumbing shared by the other modules (split, decode, sign, verify);
//! - [`client_assertion`]: what the gateway sends to `/token.oauth2` as fruitore;
//! - [`authority`]: the development authorisation server, checking assertions in PDND's order;
//! - [`voucher`]: the erogatore's check of an incoming voucher;
//! - [`verified`]: the memory of voucher signatures already verified;
//! - [`dpop`]: DPoP proofs (RFC 9449) that bind a voucher to its holder's key.

pub mod authority;
pub mod client_assertion;
pub mod dpop;
pub mod jwk;
pub mod jws;
pub mod uuid_format;
pub mod verified;
pub mod voucher;

pub use authority::{
    pdnd_error_body, AssertionRejection, Authority, AuthorityConfig, RegisteredClient,
    RegisteredPurpose, Rejection,
};
pub use client_assertion::{
    decode_unverified, AssertionError, ClientAssertionBuilder, ClientAssertionClaims, DigestClaim,
    SignedAssertion, TokenRequest, TokenResponse, CLIENT_ASSERTION_TYPE,
};
pub use jwk::{JwkSet, KeyError, RsaPrivateKey, RsaPublicKey};
pub use voucher::{validate, Voucher, VoucherError, VoucherPolicy};

#[cfg(test)]
pub(crate) mod test_keys;
