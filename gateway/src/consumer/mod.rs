//! The comune as fruitore: obtaining PDND vouchers and calling other administrations.
//!
//! - [`token_client`]: one exchange with a token endpoint (the `voucher` CLI uses it as is);
//! - [`voucher_cache`]: when to exchange: cached, renewed ahead of expiry, single flight, retries;
//! - [`internal_auth`]: the named API keys of the comune's own systems on the internal listener;
//! - [`path_guard`]: the allow-list of the path a caller appends to a fruizione's base URL;
//! - [`modi_out`]: the ModI patterns a fruizione applies to its calls and answers;
//! - [`fruizioni`]: the outbound proxy `/fruizioni/{fruizione}/{path...}`.

pub mod fruizioni;
pub mod internal_auth;
pub mod modi_out;
pub mod path_guard;
pub mod token_client;
pub mod voucher_cache;
