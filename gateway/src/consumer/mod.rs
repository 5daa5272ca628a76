//! The comune as fruitore: obtaining PDND vouchers and calling other administrations.
//!
//! - obtaining vouchers (token client, voucher cache) is in [`crate::pdnd_client`], since the
//!   provider's ModI stage needs it too;
//! - [`internal_auth`]: the named API keys of the comune's own systems on the internal listener;
//! - [`path_guard`]: the allow-list of the path a caller appends to a fruizione's base URL;
//! - [`modi_out`]: the ModI patterns a fruizione applies to its calls and answers;
//! - [`fruizioni`]: the outbound proxy `/fruizioni/{fruizione}/{path...}`.

pub mod fruizioni;
pub mod internal_auth;
pub mod modi_out;
pub mod path_guard;
