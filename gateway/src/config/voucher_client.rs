//! `[voucher_client]`: how the outbound proxy obtains, caches and renews vouchers.

use super::{invalid, ConfigError};
use serde::Deserialize;

/// Voucher caching and retries toward the PDND token endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherClientConfig {
    /// Renew this fraction of a voucher's lifetime before it expires (0.2 = the last 20 %).
    #[serde(default = "default_renew_margin")]
    pub renew_margin_fraction: f64,
    /// Attempts per voucher request on PDND 429/5xx/unreachable, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Total time a voucher request may spend retrying.
    #[serde(default = "default_max_retry_ms")]
    pub max_retry_ms: u64,
    /// The first backoff, doubled per attempt and jittered (Retry-After wins when PDND sends it).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_renew_margin() -> f64 {
    0.2
}
fn default_max_attempts() -> u32 {
    4
}
fn default_max_retry_ms() -> u64 {
    10_000
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    5_000
}

impl Default for VoucherClientConfig {
    fn default() -> Self {
        VoucherClientConfig {
            renew_margin_fraction: default_renew_margin(),
            max_attempts: default_max_attempts(),
            max_retry_ms: default_max_retry_ms(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

impl VoucherClientConfig {
    /// The renewal margin is a fraction, attempts and backoffs are bounded and ordered.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.renew_margin_fraction > 0.0 && self.renew_margin_fraction < 1.0) {
            return invalid(
                "voucher_client.renew_margin_fraction",
                "must be between 0 and 1 (exclusive), e.g. 0.2",
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            return invalid("voucher_client.max_attempts", "must be between 1 and 20");
        }
        if self.initial_backoff_ms == 0 || self.max_backoff_ms < self.initial_backoff_ms {
            return invalid(
                "voucher_client.max_backoff_ms",
                "backoffs must be positive, max_backoff_ms >= initial_backoff_ms",
            );
        }
        Ok(())
    }
}
