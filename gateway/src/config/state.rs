//! `[state]`: where the state several replicas must share is kept (the anti-replay memory of
//! ModI and DPoP `jti`s, later counters).
//!
//! `memory` (the default) keeps it in the process: right for one replica, wrong for two behind
//! a load balancer (a request replayed to the other replica would be accepted). `redis` keeps
//! it in one Redis that every replica uses. The URL may carry a password, so it is redacted in
//! `Debug` and belongs in the environment (`PDNDGW_STATE__URL`), not in a versioned file.

pub mod redis_url;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Which store holds the shared state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// In the process: one replica only.
    #[default]
    Memory,
    /// One Redis shared by every replica.
    Redis,
}

/// The `[state]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackend,
    /// `redis://[user:password@]host:port/db` (`rediss://` for TLS), or under Sentinel
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/master_name[/db]`, or a
    /// Cluster's `redis+cluster://[user:password@]host:port[,host:port...]` (see
    /// `state::redis_conn`); required with `backend = "redis"`. A secret: give it as
    /// `PDNDGW_STATE__URL`.
    #[serde(default)]
    pub url: Option<String>,
    /// Prefix of every key, so that several gateways (or environments) may share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis command (ms); beyond it the store counts as unavailable and
    /// the requests that need it are refused (503), never accepted unchecked.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Memory,
            url: None,
            key_prefix: default_key_prefix(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl std::fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_deref().map(redis_url::redact))
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_key_prefix() -> String {
    "pdndgw:".to_owned()
}

fn default_timeout_ms() -> u64 {
    200
}

impl StateConfig {
    /// The URL when the backend is Redis (validated: present and `redis://` / `rediss://`).
    pub fn redis_url(&self) -> Option<&str> {
        match self.backend {
            StateBackend::Redis => self.url.as_deref(),
            StateBackend::Memory => None,
        }
    }

    /// Checks what the types cannot; every error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == StateBackend::Redis {
            let Some(url) = self.url.as_deref().filter(|u| !u.trim().is_empty()) else {
                return invalid(
                    "state.url",
                    "is required with backend = \"redis\" (give it as PDNDGW_STATE__URL)",
                );
            };
            if let Err(why) = redis_url::Target::parse(url) {
                return Err(ConfigError::Invalid {
                    key: "state.url",
                    reason: format!(
                        "{why}; forms: redis://host:port/db (rediss:// for TLS), \
                         redis+sentinel://host:port[,host:port]/master[/db], \
                         redis+cluster://host:port[,host:port]"
                    ),
                });
            }
        }
        if self.key_prefix.len() > 64 || self.key_prefix.chars().any(char::is_whitespace) {
            return invalid(
                "state.key_prefix",
                "must be at most 64 characters without spaces",
            );
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return invalid("state.timeout_ms", "must be between 1 and 60000 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: Option<&str>) -> StateConfig {
        StateConfig {
            backend: StateBackend::Redis,
            url: url.map(str::to_owned),
            ..StateConfig::default()
        }
    }

    fn key_of(result: Result<(), ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn memory_is_the_default_and_valid() {
        let config = StateConfig::default();
        assert_eq!(config.backend, StateBackend::Memory);
        assert!(config.validate().is_ok());
        assert_eq!(config.redis_url(), None);
    }

    #[test]
    fn redis_needs_a_url_and_the_error_names_it() {
        assert_eq!(key_of(redis(None).validate()), "state.url");
        assert_eq!(key_of(redis(Some("  ")).validate()), "state.url");
        assert_eq!(
            key_of(redis(Some("http://redis:6379")).validate()),
            "state.url"
        );
        assert!(redis(Some("redis://redis:6379/0")).validate().is_ok());
        assert!(redis(Some("rediss://redis:6380/0")).validate().is_ok());
        assert!(redis(Some("redis+sentinel://s1:26379,s2:26379/mymaster/0"))
            .validate()
            .is_ok());
        assert!(redis(Some("redis+cluster://n1:7000,n2:7001,n3:7002"))
            .validate()
            .is_ok());
    }

    #[test]
    fn malformed_sentinel_and_cluster_urls_are_refused_at_load() {
        for url in [
            "redis+sentinel://:pw-x@s1:26379",
            "redis+sentinel://s1:26379,s2/mymaster",
            "redis+cluster://n1:7000/2",
            "redis+cluster://n1:port",
        ] {
            let err = redis(Some(url)).validate().expect_err(url);
            let ConfigError::Invalid {
                key,
                reason: message,
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!(*key, "state.url");
            assert!(message.contains("redis+sentinel://"), "{message}");
            assert!(!message.contains("pw-x"), "{message}");
        }
    }

    #[test]
    fn bounds_are_checked() {
        let mut config = StateConfig {
            timeout_ms: 0,
            ..StateConfig::default()
        };
        assert_eq!(key_of(config.validate()), "state.timeout_ms");
        config.timeout_ms = 200;
        config.key_prefix = "has space".into();
        assert_eq!(key_of(config.validate()), "state.key_prefix");
    }

    #[test]
    fn debug_hides_the_password() {
        let config = redis(Some("redis://:s3cr3t-pass@redis:6379/0"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-pass"), "{shown}");
        assert!(shown.contains("redis:6379"), "{shown}");
        let config = redis(Some("redis+sentinel://:s3cr3t-pass@s1:1,s2:2/m"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-pass"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<StateConfig, _> = toml::from_str("backend = \"redis\"\nurll = \"x\"");
        assert!(parsed.is_err());
        let parsed: Result<StateConfig, _> = toml::from_str("backend = \"memcached\"");
        assert!(parsed.is_err());
    }
}
