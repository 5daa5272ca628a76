//! The keys that decide how the gateway runs under an orchestrator (Kubernetes), with their
//! defaults and bounds:
//!
//! - `server.shutdown_timeout_secs` (default 30): at SIGTERM or SIGINT the listeners stop
//!   accepting and requests in flight get this long to finish (their audit records included).
//!   Kubernetes' `terminationGracePeriodSeconds` must exceed it, or the kubelet kills the
//!   process before it is done.
//! - `server.shutdown_delay_secs` (default 0): at SIGTERM, `/readyz` turns 503 at once but the
//!   listeners keep accepting this long before they close, so that a load balancer that routes
//!   by readiness sees the 503 and stops sending before connections start being refused. On
//!   Kubernetes 5 is a sensible value; `terminationGracePeriodSeconds` must then exceed the
//!   delay plus the timeout. SIGINT (Ctrl-C) skips the delay.
//! - `server.allow_group_readable_keys` (default false): Kubernetes mounts a Secret with
//!   `fsGroup` as mode 0440, group `fsGroup`; the key-file check refuses group bits unless this
//!   is set. Others may never read a key, whatever this says.
//! - `database.migrate_on_start` (default true): `serve` creates or upgrades the schemas of the
//!   e-service store and the audit trail before listening. With several replicas, or a database
//!   user without DDL rights, set it to false and run `pdnd-gateway migrate` once per release
//!   (a Job); a `serve` that does not migrate refuses to start on a schema that is missing or
//!   behind.
//!
//! The fields live in [`super::ServerConfig`] and [`super::DatabaseConfig`]; their defaults and
//! checks are here.

use super::{Config, ConfigError};

/// The longest shutdown bound accepted: beyond an hour a stuck request is a fault, not work.
pub const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 3600;

/// The longest delay before the listeners close: load balancers notice a 503 within seconds.
pub const MAX_SHUTDOWN_DELAY_SECS: u64 = 300;

pub(super) fn default_shutdown_timeout_secs() -> u64 {
    30
}

pub(super) fn default_migrate_on_start() -> bool {
    true
}

impl Config {
    /// The shutdown bound is at least a second (zero would cut every request in flight) and at
    /// most [`MAX_SHUTDOWN_TIMEOUT_SECS`].
    pub(super) fn validate_operations(&self) -> Result<(), ConfigError> {
        let secs = self.server.shutdown_timeout_secs;
        if !(1..=MAX_SHUTDOWN_TIMEOUT_SECS).contains(&secs) {
            return Err(ConfigError::Invalid {
                key: "server.shutdown_timeout_secs",
                reason: format!(
                    "must be between 1 and {MAX_SHUTDOWN_TIMEOUT_SECS} (seconds); \
                     Kubernetes' terminationGracePeriodSeconds must exceed it"
                ),
            });
        }
        if self.server.shutdown_delay_secs > MAX_SHUTDOWN_DELAY_SECS {
            return Err(ConfigError::Invalid {
                key: "server.shutdown_delay_secs",
                reason: format!("must be at most {MAX_SHUTDOWN_DELAY_SECS} (seconds)"),
            });
        }
        Ok(())
    }

    /// How long `/readyz` says 503 at SIGTERM before the listeners close.
    pub fn shutdown_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.server.shutdown_delay_secs)
    }

    /// The shutdown bound as a [`std::time::Duration`].
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.server.shutdown_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_shut_down_within_30_s_migrate_at_start_and_refuse_group_readable_keys() {
        let c = Config::from_toml_str(crate::config::DEV_TOML).expect("dev config");
        assert_eq!(c.server.shutdown_timeout_secs, 30);
        assert!(c.database.migrate_on_start);
        assert!(!c.server.allow_group_readable_keys);
        assert_eq!(c.server.shutdown_delay_secs, 0);
    }

    #[test]
    fn the_shutdown_delay_is_at_most_five_minutes() {
        for (secs, ok) in [(0, true), (5, true), (300, true), (301, false)] {
            let text = crate::config::DEV_TOML.replace(
                "body_read_timeout_ms = 5000",
                &format!("body_read_timeout_ms = 5000\nshutdown_delay_secs = {secs}"),
            );
            let c = Config::from_toml_str(&text).expect("parses");
            let result = c.validate_operations();
            assert_eq!(result.is_ok(), ok, "{secs}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("server.shutdown_delay_secs"), "{e}");
            }
        }
    }

    #[test]
    fn the_shutdown_bound_must_be_between_one_second_and_an_hour() {
        for (secs, ok) in [
            (0, false),
            (1, true),
            (30, true),
            (3600, true),
            (3601, false),
        ] {
            let text = crate::config::DEV_TOML.replace(
                "body_read_timeout_ms = 5000",
                &format!("body_read_timeout_ms = 5000\nshutdown_timeout_secs = {secs}"),
            );
            let c = Config::from_toml_str(&text).expect("parses");
            let result = c.validate_operations();
            assert_eq!(result.is_ok(), ok, "{secs}: {result:?}");
            if let Err(e) = result {
                assert!(
                    e.to_string().contains("server.shutdown_timeout_secs"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn the_new_keys_parse_and_a_misspelt_one_is_an_error() {
        let text = crate::config::DEV_TOML
            .replace(
                "body_read_timeout_ms = 5000",
                "body_read_timeout_ms = 5000\nallow_group_readable_keys = true",
            )
            .replace(
                "url = \"\"\n\n[modi]",
                "url = \"\"\nmigrate_on_start = false\n\n[modi]",
            );
        let c = Config::from_toml_str(&text).expect("parses");
        assert!(c.server.allow_group_readable_keys);
        assert!(!c.database.migrate_on_start);
        let misspelt = crate::config::DEV_TOML.replace(
            "url = \"\"\n\n[modi]",
            "url = \"\"\nmigrate_on_stat = false\n\n[modi]",
        );
        let err = Config::from_toml_str(&misspelt)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("migrate_on_stat")),
            "a misspelt key must not pass: {err:?}"
        );
    }

    /// The examples carry every key of this module, commented; uncommented they parse and pass.
    #[test]
    fn the_examples_commented_keys_parse_and_validate() {
        for text in [
            include_str!("../../../config/collaudo.example.toml"),
            include_str!("../../../config/produzione.example.toml"),
        ] {
            let mut uncommented = String::new();
            let mut found = 0;
            for line in text.lines() {
                let key = [
                    "# shutdown_delay_secs =",
                    "# shutdown_timeout_secs =",
                    "# allow_group_readable_keys =",
                    "# migrate_on_start =",
                ]
                .iter()
                .any(|k| line.starts_with(k));
                if key {
                    found += 1;
                    uncommented.push_str(&line[2..]);
                } else {
                    uncommented.push_str(line);
                }
                uncommented.push('\n');
            }
            assert_eq!(
                found, 4,
                "a key of docs/operations.md is missing from an example"
            );
            let c = Config::from_toml_str(&uncommented).expect("parses");
            assert_eq!(c.server.shutdown_delay_secs, 5);
            assert_eq!(c.server.shutdown_timeout_secs, 30);
            assert!(!c.server.allow_group_readable_keys);
            assert!(c.database.migrate_on_start);
            c.validate_operations().expect("valid");
        }
    }
}
