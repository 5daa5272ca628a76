//! `[pdnd]`: which PDND environment the gateway talks to and the bounds of its voucher checks.

use super::{check_http_url, invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

/// Which PDND environment the gateway talks to and how it checks vouchers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdndConfig {
    /// `dev`, `collaudo`, `attestazione` or `produzione`: shown in logs and /status only.
    pub environment: String,
    /// The token endpoint, e.g. `https://auth.uat.interop.pagopa.it/token.oauth2`.
    pub token_endpoint: String,
    /// The `aud` of client assertions, e.g. `auth.uat.interop.pagopa.it/client-assertion`
    /// (no scheme, as PDND expects).
    pub client_assertion_audience: String,
    /// Accepted voucher issuers (`iss`), e.g. `uat.interop.pagopa.it`.
    pub voucher_issuers: Vec<String>,
    /// The JWKS of the voucher-signing keys, e.g. `https://uat.interop.pagopa.it/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Where a consumer's PDND-registered key is looked up by kid (ModI INTEGRITY_REST_02).
    #[serde(default)]
    pub keys_url: Option<String>,
    /// The clientId of the comune's "API Interop" (M2M) client on PDND. The PDND API (hence
    /// `keys_url`) answers only a voucher of such a client, obtained without `purposeId`.
    /// Set together with `api_key_file`; neither in dev without authentication.
    #[serde(default)]
    pub api_client_id: Option<String>,
    /// The PEM private key of the API Interop client (the public half registered on PDND).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// How long a fetched JWKS is trusted before it is fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_ttl_secs: u64,
    /// An unknown kid triggers a refetch at most this often (protects PDND and us from floods);
    /// also the first back-off after a failed fetch.
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_interval_secs: u64,
    /// The longest wait between two fetch attempts while PDND's JWKS keeps failing (the
    /// back-off doubles from `jwks_min_refetch_interval_secs` up to this, jittered).
    #[serde(default = "default_jwks_max_backoff")]
    pub jwks_max_backoff_secs: u64,
    /// One JWKS fetch is abandoned after this long (it runs in the background; requests are
    /// served with the keys already held meanwhile).
    #[serde(default = "default_jwks_fetch_timeout")]
    pub jwks_fetch_timeout_ms: u64,
    /// Tolerated clock skew on exp, nbf and iat.
    #[serde(default = "default_leeway")]
    pub leeway_secs: i64,
    /// Longest accepted voucher lifetime (`exp - iat` and `exp - nbf`). PDND lets each producer
    /// choose its descriptor's voucher lifespan, so the default, 86400 (24 hours), is the
    /// longest lifespan seen in PDND's own material: nothing PDND issues for a sensible
    /// descriptor is refused, a voucher claiming to live for days is. Set it to the lifespan of
    /// the comune's descriptors to be exact.
    #[serde(default = "default_voucher_max_lifetime")]
    pub voucher_max_lifetime_secs: i64,
}

fn default_jwks_ttl() -> u64 {
    600
}
fn default_jwks_refetch() -> u64 {
    10
}
fn default_leeway() -> i64 {
    60
}
fn default_jwks_max_backoff() -> u64 {
    300
}
fn default_jwks_fetch_timeout() -> u64 {
    3_000
}
fn default_voucher_max_lifetime() -> i64 {
    crate::pdnd::voucher::DEFAULT_MAX_LIFETIME_SECS
}

/// The largest `pdnd.voucher_max_lifetime_secs` accepted: a week. A bearer credential valid for
/// longer would outlive any suspension of its purpose by far.
pub const MAX_VOUCHER_LIFETIME_SECS: i64 = 7 * 86_400;

impl PdndConfig {
    /// Endpoint URLs, the PDND API client pair, the assertion audience, the issuers, and the
    /// JWKS refresh schedule and voucher lifetime bound every voucher check relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("pdnd.token_endpoint", &self.token_endpoint)?;
        check_http_url("pdnd.jwks_url", &self.jwks_url)?;
        if let Some(keys_url) = &self.keys_url {
            check_http_url("pdnd.keys_url", keys_url)?;
        }
        match (&self.api_client_id, &self.api_key_file) {
            (None, None) => {}
            (Some(id), Some(file)) => {
                if uuid::Uuid::parse_str(id).is_err() {
                    return invalid(
                        "pdnd.api_client_id",
                        "must be the clientId of the PDND API Interop client, a UUID",
                    );
                }
                if file.as_os_str().is_empty() {
                    return invalid(
                        "pdnd.api_key_file",
                        "must name the client's private key file",
                    );
                }
            }
            (Some(_), None) => {
                return invalid(
                    "pdnd.api_key_file",
                    "must be set together with pdnd.api_client_id",
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "pdnd.api_client_id",
                    "must be set together with pdnd.api_key_file",
                )
            }
        }
        if self.client_assertion_audience.trim().is_empty() {
            return invalid("pdnd.client_assertion_audience", "must not be empty");
        }
        if self.client_assertion_audience.contains("://") {
            return invalid(
                "pdnd.client_assertion_audience",
                "PDND expects the audience without a scheme, e.g. auth.uat.interop.pagopa.it/client-assertion",
            );
        }
        if self.voucher_issuers.is_empty()
            || self.voucher_issuers.iter().any(|i| i.trim().is_empty())
        {
            return invalid(
                "pdnd.voucher_issuers",
                "needs at least one non-empty issuer",
            );
        }
        if !(0..=300).contains(&self.leeway_secs) {
            return invalid("pdnd.leeway_secs", "must be between 0 and 300 seconds");
        }
        if self.jwks_cache_ttl_secs == 0 {
            return invalid("pdnd.jwks_cache_ttl_secs", "must be at least 1 second");
        }
        if !(1..=3_600).contains(&self.jwks_min_refetch_interval_secs) {
            return invalid(
                "pdnd.jwks_min_refetch_interval_secs",
                "must be between 1 and 3600 seconds (0 would let every unknown kid reach PDND)",
            );
        }
        if !(self.jwks_min_refetch_interval_secs..=3_600).contains(&self.jwks_max_backoff_secs) {
            return invalid(
                "pdnd.jwks_max_backoff_secs",
                "must be between pdnd.jwks_min_refetch_interval_secs and 3600 seconds",
            );
        }
        if !(100..=30_000).contains(&self.jwks_fetch_timeout_ms) {
            return invalid(
                "pdnd.jwks_fetch_timeout_ms",
                "must be between 100 and 30000 milliseconds",
            );
        }
        if !(1..=MAX_VOUCHER_LIFETIME_SECS).contains(&self.voucher_max_lifetime_secs) {
            return invalid(
                "pdnd.voucher_max_lifetime_secs",
                "must be between 1 second and 604800 (a week)",
            );
        }
        Ok(())
    }
}
