//! `[database]`: where the e-service data lives.

use super::{invalid, ConfigError};
use serde::Deserialize;

/// Where the e-service data (and, later, the audit trail) lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` or `postgres://user:password@host/db`.
    pub url: String,
    /// Whether `serve` creates/upgrades the schemas at start (see [`super::operations`]).
    #[serde(default = "super::operations::default_migrate_on_start")]
    pub migrate_on_start: bool,
}

impl DatabaseConfig {
    /// SQLite or PostgreSQL, nothing else.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return invalid(
                "database.url",
                "must start with sqlite: or postgres:// (e.g. sqlite://comune.db?mode=rwc)",
            );
        }
        Ok(())
    }
}
