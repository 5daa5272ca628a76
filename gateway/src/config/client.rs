//! `[client]`: the comune's own PDND client, used when it acts as fruitore.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

/// The comune's PDND client (fruitore side).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The PDND clientId (a UUID).
    pub client_id: String,
    /// PEM file of the RSA private key whose public half is registered on the PDND client.
    pub key_file: PathBuf,
    /// The purpose used when none is named on the command line.
    #[serde(default)]
    pub default_purpose_id: Option<String>,
    /// Lifetime of each client assertion.
    #[serde(default = "default_assertion_lifetime")]
    pub assertion_lifetime_secs: i64,
}

fn default_assertion_lifetime() -> i64 {
    300
}

impl ClientConfig {
    /// The identifiers are UUIDs and the assertion lifetime is bounded.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if uuid::Uuid::parse_str(&self.client_id).is_err() {
            return invalid("client.client_id", "must be the PDND clientId, a UUID");
        }
        if let Some(purpose) = &self.default_purpose_id {
            if uuid::Uuid::parse_str(purpose).is_err() {
                return invalid(
                    "client.default_purpose_id",
                    "must be a PDND purposeId, a UUID",
                );
            }
        }
        if !(1..=3600).contains(&self.assertion_lifetime_secs) {
            return invalid(
                "client.assertion_lifetime_secs",
                "must be between 1 and 3600",
            );
        }
        Ok(())
    }
}
