//! The gateway as a client of PDND, shared by both sides: what the provider and the consumer
//! need from PDND's servers, over HTTP, with their caches.
//!
//! - [`token_client`]: one exchange with the token endpoint (`/token.oauth2`): a signed client
//!   assertion in, a voucher out;
//! - [`voucher_cache`]: when to exchange: cached, renewed ahead of expiry, single flight,
//!   retries. The outbound proxy asks it for e-service vouchers, the key lookup for the API
//!   Interop voucher that opens PDND's `/keys/{kid}`;
//! - [`jwks`]: PDND's voucher-signing keys, refreshed in the background for the voucher check;
//! - [`keys`]: a caller's PDND-registered key by kid (`/keys/{kid}`), for the ModI checks,
//!   cached, with unknown kids remembered and uncached lookups rate-limited.
//!
//! Layers: the protocol code ([`crate::pdnd`], [`crate::modi`]) below, free of HTTP clients;
//! [`crate::provider`] and [`crate::consumer`] above, importing from here and never from each
//! other's PDND plumbing.

pub mod jwks;
pub mod keys;
pub mod token_client;
pub mod voucher_cache;
