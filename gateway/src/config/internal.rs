//! `[internal]` (`[[internal.api_key]]`): the named API keys of the comune's own systems on the
//! internal listener, held as digests.

use super::{invalid, ConfigError};
use serde::Deserialize;

/// Authentication of the comune's own systems on the internal listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    /// The internal callers, one `[[internal.api_key]]` block each: who they are, the SHA-256
    /// of their key, and the fruizioni they may call. A call with no accepted key is refused
    /// (401); a fruizione not in the caller's list is refused too (403).
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<ApiKeyConfig>,
}

/// One internal caller (an office or a system of the comune) and its API key.
///
/// The configuration holds the key's SHA-256, never the key: config files and Helm values are
/// shared and versioned, and a digest found there cannot be used to call. The key itself is
/// given only to the caller (generate 32+ random characters, e.g. `openssl rand -hex 32`, and
/// put `printf %s "$KEY" | sha256sum` here; `pdnd-gateway api-key` does both).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who calls with this key (lowercase letters, digits, `-`), e.g. `ufficio-tributi`:
    /// written in the audit trail of every call it makes.
    pub name: String,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    /// SHA-256 of the key being replaced, accepted as well while the caller switches over
    /// (rotation without downtime); remove it once the new key is in use.
    #[serde(default)]
    pub previous_sha256: Option<String>,
    /// The fruizioni (by `name`) this caller may call.
    pub fruizioni: Vec<String>,
}

impl ApiKeyConfig {
    /// The entry of a caller holding `key`, allowed `fruizioni` (for `dev` and tests, which
    /// hold the key itself).
    pub fn for_key(name: &str, key: &str, fruizioni: Vec<String>) -> ApiKeyConfig {
        use sha2::Digest;
        ApiKeyConfig {
            name: name.to_owned(),
            sha256: hex::encode(sha2::Sha256::digest(key.trim().as_bytes())),
            previous_sha256: None,
            fruizioni,
        }
    }
}

impl InternalConfig {
    /// `[[internal.api_key]]`: named, distinct, well-formed digests, and only fruizioni that
    /// exist among `fruizioni` (a typo would otherwise surface as a 403 in production).
    pub fn validate(&self, fruizioni: &[super::FruizioneConfig]) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        for k in &self.api_keys {
            if k.name.is_empty()
                || k.name.len() > 64
                || !k
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return invalid(
                    "internal.api_key.name",
                    &format!("`{}`: use 1-64 lowercase letters, digits and `-`", k.name),
                );
            }
            if !names.insert(k.name.as_str()) {
                return invalid(
                    "internal.api_key.name",
                    &format!("`{}` is used twice", k.name),
                );
            }
            let digests_of_entry = std::iter::once(("internal.api_key.sha256", &k.sha256)).chain(
                k.previous_sha256
                    .iter()
                    .map(|d| ("internal.api_key.previous_sha256", d)),
            );
            for (key, digest) in digests_of_entry {
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return invalid(
                        key,
                        &format!("`{}`: must be the SHA-256 of a key, 64 hex digits", k.name),
                    );
                }
                if !digests.insert(digest.to_ascii_lowercase()) {
                    return invalid(key, &format!("`{}`: the same key is given twice", k.name));
                }
            }
            if k.fruizioni.is_empty() {
                return invalid(
                    "internal.api_key.fruizioni",
                    &format!("`{}`: list the fruizioni this caller may call", k.name),
                );
            }
            if let Some(unknown) = k
                .fruizioni
                .iter()
                .find(|f| !fruizioni.iter().any(|c| &c.name == *f))
            {
                return invalid(
                    "internal.api_key.fruizioni",
                    &format!("`{}`: no fruizione named `{unknown}` is configured", k.name),
                );
            }
        }
        Ok(())
    }
}
