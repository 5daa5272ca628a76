//! pdnd-gateway: the comune's PDND interoperability adapter.
//!
//! As erogatore (provider) it validates PDND vouchers and serves the comune's e-services; as
//! fruitore (consumer) it obtains vouchers and calls other administrations. `main.rs` only parses
//! the command line; everything it wires lives in these modules.

pub mod cli;
pub mod config;
pub mod consumer;
pub mod dev;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http_client;
pub mod migrate;
pub mod modi;
pub mod openapi;
pub mod pdnd;
pub mod pdnd_client;
pub mod problem;
pub mod provider;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod tracing_pdnd;
