//! `[purposes]`: the file of the approved purposes.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

/// The approved purposes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposesConfig {
    /// A TOML file of `[[purpose]]` records, reloaded on SIGHUP or when it changes.
    pub file: PathBuf,
}

impl PurposesConfig {
    /// A file must be named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.file.as_os_str().is_empty() {
            return invalid("purposes.file", "must name the purposes file");
        }
        Ok(())
    }
}
