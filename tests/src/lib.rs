//! Harness for the end-to-end suites (`tests/tests/e2e/`, one test binary): the real `dev`
//! environment (local PDND authority, gateway, seeded SQLite) started in-process on free
//! loopback ports, and helpers to talk to it.
//!
//! Everything goes over real sockets with a real HTTP client; nothing is mocked. Each harness
//! gets its own temporary data directory, so tests run in parallel; the timing-sensitive ones
//! take [`exclusive`] and run alone ([`serial`] says why).
//!
//! - [`harness`]: the `dev` environment ([`Harness`]);
//! - [`consumer`]: fruizioni, and a second gateway as consumer ([`ConsumerGateway`]);
//! - [`stubs`]: remote parties shared by several suites (scripted token endpoint, silent and
//!   counting remotes, closed port);
//! - [`services`]: a PostgreSQL of a suite's own; the "skip locally, fail in CI" rule for
//!   PostgreSQL and Redis is `test_support`'s, re-exported here;
//! - [`metrics`]: `/metrics` parsed by Prometheus' reference parser;
//! - [`raw`]: HTTP/1.1 by hand; [`jws`]: vouchers by hand;
//! - [`temp_dir`]: a temporary directory removed when dropped.

pub mod consumer;
pub mod harness;
pub mod jws;
pub mod metrics;
pub mod raw;
pub mod serial;
pub mod services;
pub mod stubs;

pub use consumer::{ConsumerGateway, CONSUMER_CALLER};
pub use harness::{Harness, RESIDENTS};
pub use jws::{now, raw_jws, sign_rs256, voucher_header};
pub use raw::{header, raw_post, raw_request, RawResponse};
pub use serial::{exclusive, Exclusive};
pub use services::Postgres;
pub use stubs::{closed_port, silent_remote, CountingRemote, ScriptedTokenEndpoint, Step};
pub use test_support::{postgres_url, redis_url};

/// A new temporary directory named `pdndgw-{prefix}-…`, removed with everything in it when
/// the value drops (also when the test panics), so that runs leave nothing behind.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pdndgw-{prefix}-"))
        .tempdir()
        .expect("a temporary directory")
}
