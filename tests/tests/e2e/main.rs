//! The end-to-end suites, one module each, in one test binary: one link step and one binary on
//! disk instead of one per suite. Tests of all suites run in parallel; the timing-sensitive
//! ones (timeouts, retries and backoff, a database stopped and restarted, vouchers expiring,
//! reloads) take `e2e::exclusive()` and run alone (see the `serial` module of the `e2e`
//! library).
//!
//! Run one suite with its module path as the filter: `cargo test -p e2e --test e2e routing::`.

mod audit_outage;
mod authority_http;
mod bounded_requests;
mod dev_flow;
mod dpop;
mod fruizioni_accountability;
mod fruizioni_modi;
mod fruizioni_proxy;
mod internal_tls;
mod jwks_cache;
mod metrics;
mod modi;
mod modi_bounds;
mod openapi_docs;
mod pdnd_api_keys;
mod purposes;
mod quotas;
mod routing;
mod traces;
mod tracing_pdnd;
mod voucher_check;
mod voucher_refusal;
mod voucher_retries;
mod voucher_single_flight;
