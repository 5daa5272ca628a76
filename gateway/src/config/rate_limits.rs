//! `[rate_limits]`: how fast each consumer may call, with a burst (GCRA, see
//! `crate::state::gcra`): a default for every purpose and overrides for single purposes
//! (`[[rate_limits.purpose]]`). Counted in the `[state]` store, so replicas on one Redis share
//! one rate. The daily quotas are elsewhere: a purpose's `daily_quota` in the purposes
//! registry, the e-service's thresholds in `[eservices.<name>]`. See `docs/quotas.md`.

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Highest rate accepted (requests per second): beyond it a typo (an extra zero or three)
/// is more likely than a real need, and the limit would protect nothing.
pub const MAX_PER_SECOND: f64 = 100_000.0;
/// Lowest rate accepted: one request a day. Lower is a typo or a purpose to suspend.
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// The largest `X-RateLimit-Reset` and `Retry-After` the quota stage sends (and the OpenAPI
/// documents declare): 25 hours, the longest Rome day; a rate's longer reset is told as this.
pub const MAX_RESET_SECS: u64 = 90_000;
/// Largest burst accepted.
pub const MAX_BURST: u32 = 100_000;

/// The `[rate_limits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Requests per second each consumer may make for one purpose, sustained (default 20).
    #[serde(default = "default_per_second")]
    pub requests_per_second: f64,
    /// Requests an idle consumer may send at once (default 40).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Other rates for single purposes.
    #[serde(default, rename = "purpose")]
    pub purposes: Vec<PurposeRateConfig>,
}

/// The rate of one purpose, instead of the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeRateConfig {
    /// The PDND purposeId (a UUID).
    pub purpose_id: String,
    /// Requests per second, sustained.
    pub requests_per_second: f64,
    /// Requests at once.
    pub burst: u32,
}

fn default_per_second() -> f64 {
    20.0
}

fn default_burst() -> u32 {
    40
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            requests_per_second: default_per_second(),
            burst: default_burst(),
            purposes: Vec::new(),
        }
    }
}

impl RateLimitsConfig {
    /// The rate (requests per second, burst) of a purpose: its override, else the default.
    pub fn for_purpose(&self, purpose_id: &str) -> (f64, u32) {
        self.purposes
            .iter()
            .find(|p| p.purpose_id.eq_ignore_ascii_case(purpose_id))
            .map(|p| (p.requests_per_second, p.burst))
            .unwrap_or((self.requests_per_second, self.burst))
    }

    /// Rates positive, finite and within [`MIN_PER_SECOND`]..=[`MAX_PER_SECOND`]; bursts
    /// 1..=[`MAX_BURST`]; overrides name a UUID, each once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("rate_limits.requests_per_second", self.requests_per_second)?;
        check_burst("rate_limits.burst", self.burst)?;
        let mut seen = std::collections::HashSet::new();
        for p in &self.purposes {
            let Ok(id) = uuid::Uuid::parse_str(&p.purpose_id) else {
                return invalid(
                    "rate_limits.purpose.purpose_id",
                    &format!("`{}` is not a UUID", p.purpose_id),
                );
            };
            if !seen.insert(id) {
                return invalid(
                    "rate_limits.purpose.purpose_id",
                    &format!("purpose {id} has two rates"),
                );
            }
            check_rate(
                "rate_limits.purpose.requests_per_second",
                p.requests_per_second,
            )?;
            check_burst("rate_limits.purpose.burst", p.burst)?;
        }
        Ok(())
    }
}

fn check_rate(key: &'static str, rate: f64) -> Result<(), ConfigError> {
    if !rate.is_finite() || rate <= 0.0 {
        return invalid(
            key,
            &format!("{rate} is not a positive number of requests per second"),
        );
    }
    if !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&rate) {
        return invalid(
            key,
            &format!(
                "{rate} requests per second is outside 1/86400 (one a day) to {MAX_PER_SECOND}"
            ),
        );
    }
    Ok(())
}

fn check_burst(key: &'static str, burst: u32) -> Result<(), ConfigError> {
    if burst == 0 || burst > MAX_BURST {
        return invalid(
            key,
            &format!("{burst} is not a burst from 1 to {MAX_BURST}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(per_second: f64, burst: u32) -> RateLimitsConfig {
        RateLimitsConfig {
            requests_per_second: per_second,
            burst,
            purposes: Vec::new(),
        }
    }

    #[test]
    fn default_is_valid() {
        RateLimitsConfig::default().validate().expect("default");
        with(0.5, 1).validate().expect("one every two seconds");
    }

    #[test]
    fn zero_negative_absurd_rates_are_refused_by_key() {
        for (rate, burst, key) in [
            (0.0, 10, "rate_limits.requests_per_second"),
            (-5.0, 10, "rate_limits.requests_per_second"),
            (f64::NAN, 10, "rate_limits.requests_per_second"),
            (f64::INFINITY, 10, "rate_limits.requests_per_second"),
            (1e9, 10, "rate_limits.requests_per_second"),
            (100_001.0, 10, "rate_limits.requests_per_second"),
            (1e-9, 10, "rate_limits.requests_per_second"),
            (10.0, 0, "rate_limits.burst"),
            (10.0, 1_000_000, "rate_limits.burst"),
        ] {
            let err = with(rate, burst).validate().expect_err(key).to_string();
            assert!(err.contains(key), "{rate}/{burst}: {err}");
        }
        // The bounds themselves are accepted.
        assert!(with(MAX_PER_SECOND, MAX_BURST).validate().is_ok());
        assert!(with(MIN_PER_SECOND, 1).validate().is_ok());
    }

    #[test]
    fn overrides_are_checked_and_found() {
        let id = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
        let mut c = RateLimitsConfig::default();
        c.purposes.push(PurposeRateConfig {
            purpose_id: id.to_owned(),
            requests_per_second: 2.0,
            burst: 3,
        });
        c.validate().expect("valid override");
        assert_eq!(c.for_purpose(&id.to_uppercase()), (2.0, 3));
        assert_eq!(c.for_purpose("other"), (20.0, 40));
        c.purposes[0].requests_per_second = -1.0;
        let err = c.validate().expect_err("negative").to_string();
        assert!(
            err.contains("rate_limits.purpose.requests_per_second"),
            "{err}"
        );
        c.purposes[0].requests_per_second = 2.0;
        c.purposes.push(c.purposes[0].clone());
        let err = c.validate().expect_err("twice").to_string();
        assert!(err.contains("two rates"), "{err}");
        c.purposes.truncate(1);
        c.purposes[0].purpose_id = "not-a-uuid".to_owned();
        assert!(c.validate().is_err());
    }
}
