//! `[telemetry]`: where metrics and traces go besides the Prometheus `/metrics` of the
//! internal listener (which is always there).
//!
//! Without an OTLP endpoint nothing is exported and tracing costs nothing beyond the log
//! lines. The standard OpenTelemetry variables work as well (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`...): a collector already configured for every
//! workload of a cluster reaches the gateway without a line of its configuration; a key set here
//! wins over the variable.

use serde::Deserialize;

use super::{invalid, ConfigError};

/// The `[telemetry]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP (protobuf) receiver, e.g. `http://otel-collector:4318`; the
    /// gateway posts to `/v1/traces` and `/v1/metrics` under it. Unset: the
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variable, else no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of what is exported. Unset: `OTEL_SERVICE_NAME`, else `pdnd-gateway`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// How often metrics are pushed over OTLP (seconds); `/metrics` is read on each scrape.
    #[serde(default = "default_metrics_interval_secs")]
    pub metrics_interval_secs: u64,
}

fn default_metrics_interval_secs() -> u64 {
    60
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: None,
            metrics_interval_secs: default_metrics_interval_secs(),
        }
    }
}

impl TelemetryConfig {
    /// The endpoint is an http(s) URL and the interval is between one second and one hour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return invalid(
                        "telemetry.otlp_endpoint",
                        "must be an http(s) URL such as http://otel-collector:4318",
                    )
                }
            }
        }
        if self.service_name.as_deref().is_some_and(str::is_empty) {
            return invalid("telemetry.service_name", "must not be empty");
        }
        if !(1..=3600).contains(&self.metrics_interval_secs) {
            return invalid(
                "telemetry.metrics_interval_secs",
                "must be between 1 and 3600 seconds",
            );
        }
        Ok(())
    }

    /// The endpoint in force: this section's, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
    }

    /// What [`crate::telemetry::metrics::install`] needs.
    pub fn export(&self) -> crate::telemetry::metrics::Export {
        crate::telemetry::metrics::Export {
            otlp_endpoint: self.endpoint(),
            service_name: self.service_name(),
            interval: std::time::Duration::from_secs(self.metrics_interval_secs),
        }
    }

    /// The `service.name` in force.
    pub fn service_name(&self) -> String {
        self.service_name
            .clone()
            .or_else(|| {
                std::env::var("OTEL_SERVICE_NAME")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
            })
            .unwrap_or_else(|| "pdnd-gateway".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_export_nothing_configured() {
        let c = TelemetryConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.otlp_endpoint, None);
        assert_eq!(c.metrics_interval_secs, 60);
    }

    #[test]
    fn a_bad_endpoint_or_interval_is_refused_by_key() {
        let c = TelemetryConfig {
            otlp_endpoint: Some("collector:4318".into()),
            ..TelemetryConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("telemetry.otlp_endpoint"), "{e}");
        let c = TelemetryConfig {
            metrics_interval_secs: 0,
            ..TelemetryConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("telemetry.metrics_interval_secs"), "{e}");
        let c = TelemetryConfig {
            otlp_endpoint: Some("https://otel.example.it:4318".into()),
            ..TelemetryConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_commented_block_of_the_examples_validates() {
        for text in [
            include_str!("../../../config/collaudo.example.toml"),
            include_str!("../../../config/produzione.example.toml"),
        ] {
            let start = text
                .find("# [telemetry]\n")
                .expect("a commented [telemetry]");
            let block: String = text[start..]
                .lines()
                .take_while(|l| l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("# "))
                .filter(|l| l.starts_with('[') || l.contains(" = "))
                .map(|l| format!("{l}\n"))
                .collect();
            let c =
                crate::config::Config::from_toml_str(&format!("{text}\n{block}")).expect("parses");
            c.validate().expect("validates");
            assert_eq!(
                c.telemetry.otlp_endpoint.as_deref(),
                Some("http://otel-collector.monitoring:4318")
            );
        }
    }
}
