//! `[tracing]`: where and as which purpose the comune deposits its daily PDND tracing file.
//!
//! PDND's tracing service is itself an e-service: the comune calls it with a voucher for its own
//! purpose on it (obtained with the `[client]` key), so the section names that purpose and the
//! service's base URL. Without the section, `tracing sync` refuses to run and `serve` never
//! deposits anything.

use super::ConfigError;
use serde::Deserialize;

/// The daily deposit of the tracing file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of the tracing e-service, e.g. `https://api.interop.pagopa.it/tracing/v1`
    /// (`/tracings/submit` and the other paths are appended to it).
    pub service_url: String,
    /// The comune's purpose on the tracing e-service (a UUID): the voucher is asked for it.
    pub purpose_id: String,
    /// How many past days `tracing sync` looks at (yesterday included). PDND marks a day
    /// MISSING two days after it; a window of 10 recovers a week-long outage.
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    /// `true`: `serve` runs the sync itself once a day (one replica at a time, through a lock
    /// in the database). `false`: a scheduler (the Helm chart's CronJob) runs `tracing sync`.
    #[serde(default)]
    pub run_in_serve: bool,
}

fn default_window_days() -> u32 {
    10
}

/// The longest window: PDND keeps no deposit older than this worth recovering, and each day
/// costs one query over the trail.
pub const MAX_WINDOW_DAYS: u32 = 90;

impl TracingConfig {
    /// The checks the types cannot make.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        match url::Url::parse(&self.service_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return invalid("tracing.service_url", "must be an http(s) URL"),
        }
        if uuid::Uuid::parse_str(&self.purpose_id).is_err() {
            return invalid(
                "tracing.purpose_id",
                "must be the comune's purpose on the tracing e-service, a UUID",
            );
        }
        if self.window_days == 0 || self.window_days > MAX_WINDOW_DAYS {
            return invalid("tracing.window_days", "must be between 1 and 90 days");
        }
        Ok(())
    }
}

/// Validates an optional `[tracing]` section.
pub fn validate(section: Option<&TracingConfig>) -> Result<(), ConfigError> {
    section.map_or(Ok(()), TracingConfig::validate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> TracingConfig {
        TracingConfig {
            service_url: "https://api.interop.pagopa.it/tracing/v1".into(),
            purpose_id: "0e1114e6-31d1-41a4-811d-a0c3d1b70bbf".into(),
            window_days: 10,
            run_in_serve: false,
        }
    }

    #[test]
    fn accepts_a_complete_section() {
        assert!(good().validate().is_ok());
    }

    #[test]
    fn refuses_each_bad_key_by_name() {
        type Case = (fn(&mut TracingConfig), &'static str);
        let cases: [Case; 4] = [
            (|c| c.service_url = "ftp://x".into(), "tracing.service_url"),
            (|c| c.purpose_id = "not-a-uuid".into(), "tracing.purpose_id"),
            (|c| c.window_days = 0, "tracing.window_days"),
            (|c| c.window_days = 91, "tracing.window_days"),
        ];
        for (spoil, key) in cases {
            let mut c = good();
            spoil(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "service_url = \"https://x/t\"\npurpose_id = \"0e1114e6-31d1-41a4-811d-a0c3d1b70bbf\"\nwindow_day = 3\n";
        assert!(toml::from_str::<TracingConfig>(text).is_err());
        let text = "service_url = \"https://x/t\"\npurpose_id = \"0e1114e6-31d1-41a4-811d-a0c3d1b70bbf\"\n";
        let c: TracingConfig = toml::from_str(text).expect("minimal section");
        assert_eq!((c.window_days, c.run_in_serve), (10, false));
    }
}
