//! `[dev]`: the local authority and sample data of `pdnd-gateway dev`.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;

/// The development environment of `pdnd-gateway dev`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    pub authority_listen: SocketAddr,
    pub authority_issuer: String,
    pub voucher_lifetime_secs: i64,
    pub residents: u32,
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            authority_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            authority_issuer: "dev.interop.local".to_owned(),
            voucher_lifetime_secs: 600,
            residents: 1000,
        }
    }
}

impl DevConfig {
    /// The local authority's vouchers must pass the gateway's own lifetime bound
    /// (`pdnd.voucher_max_lifetime_secs`), or `dev` would refuse its own vouchers.
    pub fn validate(&self, voucher_max_lifetime_secs: i64) -> Result<(), ConfigError> {
        if self.voucher_lifetime_secs > voucher_max_lifetime_secs {
            return invalid(
                "dev.voucher_lifetime_secs",
                "must not exceed pdnd.voucher_max_lifetime_secs, or the gateway refuses the local authority's vouchers",
            );
        }
        Ok(())
    }
}
