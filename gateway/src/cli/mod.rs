//! The command-line verbs, as library functions so tests walk the same code paths as users.

pub mod api_key;
pub mod audit;
pub mod dpop;
pub mod keys;
pub mod seed;
pub mod tracing;
pub mod verify_response;
pub mod voucher;
