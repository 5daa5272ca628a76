//! The process's HTTP client toward PDND (token endpoint, JWKS, key lookups): one
//! `reqwest::Client`, cloned cheaply, with a connection pool inside and bounded timeouts. Its own
//! module so that the provider, the consumer and the server all take it from below them.

use std::time::Duration;

/// One HTTP client for the process (connection pool inside), with bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
}
