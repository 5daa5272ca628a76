//! One typed configuration for every environment: development, PDND collaudo (UAT), production.
//!
//! A TOML file is the base and `PDNDGW_<SECTION>__<KEY>` environment variables override single
//! keys (figment). Unknown keys are errors, not silently ignored: a mistyped override must not
//! leave a production gateway on a development default. After parsing, [`Config::validate`]
//! checks what the types cannot (URL schemes, non-empty audiences, bounds) and every error names
//! the key at fault, so an operator can fix it without reading code.
//!
//! Each section is a file of this module with its type, its defaults and its own `validate`;
//! this file holds the whole ([`Config`]), loading, [`ConfigError`], and the checks that span
//! sections. Every section type is re-exported here, so `config::PdndConfig` and the like name
//! it wherever it lives.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::path::Path;

pub mod audit;
pub mod client;
pub mod comune;
pub mod database;
pub mod dev;
pub mod eservices;
pub mod fruizioni;
pub mod internal;
pub mod modi;
pub mod operations;
pub mod pdnd;
pub mod purposes;
pub mod rate_limits;
pub mod secret_strength;
pub mod serve_policy;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tracing;
pub mod voucher_client;

pub use audit::{redact_url, AuditConfig};
pub use client::ClientConfig;
pub use comune::ComuneConfig;
pub use database::DatabaseConfig;
pub use dev::DevConfig;
pub use eservices::{
    AuditPattern, EserviceConfig, EserviceModiConfig, EservicesConfig, RequestIntegrity,
};
pub use fruizioni::{
    FruizioneConfig, OutboundModiPattern, DEFAULT_MAX_RESPONSE_BYTES, MAX_RESPONSE_BYTES_CEILING,
};
pub use internal::{ApiKeyConfig, InternalConfig};
pub use modi::{ModiConfig, SignatureAlgorithm};
pub use pdnd::{PdndConfig, MAX_VOUCHER_LIFETIME_SECS};
pub use purposes::PurposesConfig;
pub use server::{InternalTlsConfig, ServerConfig};
pub use voucher_client::VoucherClientConfig;

/// The development configuration, embedded so that `pdnd-gateway dev` needs no file at all.
pub const DEV_TOML: &str = include_str!("../../config/dev.toml");

/// Environment variables with this prefix override configuration keys.
pub const ENV_PREFIX: &str = "PDNDGW_";

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override could not be parsed into the typed configuration; figment's
    /// message names the key and the source (file or environment variable).
    #[error("configuration error: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but is not acceptable.
    #[error("configuration error: key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub pdnd: PdndConfig,
    pub eservices: EservicesConfig,
    pub comune: ComuneConfig,
    pub database: DatabaseConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Where the approved purposes are read from.
    pub purposes: PurposesConfig,
    /// The comune's own PDND client, used when it acts as fruitore (voucher CLI, fruizioni).
    #[serde(default)]
    pub client: Option<ClientConfig>,
    /// Response cache of the e-services (per e-service TTL and size).
    #[serde(default)]
    pub cache: ::eservices::CacheConfig,
    /// Only read by `pdnd-gateway dev`.
    #[serde(default)]
    pub dev: DevConfig,
    /// Who may use the internal listener's fruizioni.
    #[serde(default)]
    pub internal: InternalConfig,
    /// How the outbound proxy obtains and renews vouchers.
    #[serde(default)]
    pub voucher_client: VoucherClientConfig,
    /// The other administrations' e-services the comune calls (`/fruizioni/{name}/...`).
    #[serde(default)]
    pub fruizioni: Vec<FruizioneConfig>,
    /// ModI security patterns: our signing material and how peers' signatures are checked.
    #[serde(default)]
    pub modi: ModiConfig,
    /// Where the state shared by replicas is kept (anti-replay memory).
    #[serde(default)]
    pub state: state::StateConfig,
    /// Each consumer's request rate (GCRA), a default and overrides per purpose.
    #[serde(default)]
    pub rate_limits: rate_limits::RateLimitsConfig,
    /// The daily PDND tracing deposit (`tracing sync`).
    #[serde(default)]
    pub tracing: Option<tracing::TracingConfig>,
    /// Metrics and traces export (OTLP); `/metrics` needs nothing.
    #[serde(default)]
    pub telemetry: telemetry::TelemetryConfig,
}

impl Config {
    /// Loads a configuration file with environment overrides (for `serve`).
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Invalid {
                key: "--config",
                reason: format!("{} is not a readable file", path.display()),
            });
        }
        Self::from_figment(Figment::from(Toml::file(path)))
    }

    /// The embedded development configuration, optionally layered with a file, then the
    /// environment (for `dev` and the CLI verbs that default to it).
    pub fn load_dev(extra: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEV_TOML));
        if let Some(path) = extra {
            figment = figment.merge(Toml::file(path));
        }
        Self::from_figment(figment)
    }

    fn from_figment(base: Figment) -> Result<Config, ConfigError> {
        Self::from_figment_with_env(base, true)
    }

    /// Parses without environment overrides (tests build configurations this way).
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment_with_env(Figment::from(Toml::string(toml)), false)
    }

    fn from_figment_with_env(base: Figment, env: bool) -> Result<Config, ConfigError> {
        let figment = if env {
            // Variables for the test harness share the prefix but are not configuration; nor
            // is PDNDGW_CONFIG, which names the file itself (`serve`, `migrate`).
            base.merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        !key.starts_with("test_") && key != "config"
                    })
                    .split("__"),
            )
        } else {
            base
        };
        let config: Config = figment.extract()?;
        Ok(config)
    }

    /// Checks what the types cannot: each section's own `validate`, then what spans sections.
    /// Call after every override is applied (dev fills the database URL after loading).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.pdnd.validate()?;
        self.dev.validate(self.pdnd.voucher_max_lifetime_secs)?;
        self.comune.validate_producer_id()?;
        self.eservices.validate_identifiers()?;
        self.validate_published()?;
        self.eservices.validate()?;
        self.validate_modi()?;
        self.server.validate()?;
        self.validate_internal_exposure()?;
        self.validate_operations()?;
        self.state.validate()?;
        self.rate_limits.validate()?;
        tracing::validate(self.tracing.as_ref())?;
        self.telemetry.validate()?;
        self.database.validate()?;
        self.audit.validate()?;
        self.purposes.validate()?;
        if let Some(client) = &self.client {
            client.validate()?;
        }
        self.validate_consumer()
    }

    /// The fruitore side: voucher client, fruizioni, internal API keys.
    fn validate_consumer(&self) -> Result<(), ConfigError> {
        self.voucher_client.validate()?;
        if !self.fruizioni.is_empty() && self.internal.api_keys.is_empty() {
            return invalid(
                "internal.api_key",
                "fruizioni are configured but no API key is: every call would be refused",
            );
        }
        fruizioni::validate_all(&self.fruizioni, self.client.is_some())?;
        self.internal.validate(&self.fruizioni)
    }

    /// The `[modi]` section against what the e-services require of it.
    fn validate_modi(&self) -> Result<(), ConfigError> {
        let services = [
            ("eservices.anagrafe.modi", &self.eservices.anagrafe.modi),
            ("eservices.tributi.modi", &self.eservices.tributi.modi),
        ];
        self.modi
            .validate(services.iter().any(|(_, m)| m.sign_responses))?;
        for (key, m) in services {
            if m.request_integrity == RequestIntegrity::IntegrityRest01
                && self
                    .modi
                    .trust_store_file
                    .as_ref()
                    .is_none_or(|p| p.as_os_str().is_empty())
            {
                return invalid(
                    "modi.trust_store_file",
                    &format!("{key}.request_integrity = integrity_rest_01 needs the CA bundle callers' x5c chains lead to"),
                );
            }
            let needs_keys = m.request_integrity == RequestIntegrity::IntegrityRest02
                || m.audit != AuditPattern::None;
            if needs_keys && self.pdnd.keys_url.is_none() {
                return invalid(
                    "pdnd.keys_url",
                    &format!("{key} needs callers' PDND keys by kid (integrity_rest_02 or an audit pattern)"),
                );
            }
        }
        Ok(())
    }

    /// Checks what the OpenAPI documents publish: the e-services' public URLs and the contact.
    /// Part of [`Config::validate`]; on its own for `pdnd-gateway openapi`, which needs no
    /// secrets.
    pub fn validate_published(&self) -> Result<(), ConfigError> {
        self.eservices.validate_published()?;
        self.comune.validate_published()
    }
}

fn invalid<T>(key: &'static str, reason: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    })
}

fn check_http_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
        Ok(u) => invalid(
            key,
            &format!("scheme `{}` is not http or https", u.scheme()),
        ),
        Err(e) => invalid(key, &format!("`{value}` is not a URL ({e})")),
    }
}

/// An e-service's public base URL: absolute http(s), with a host, no query, fragment or
/// trailing slash (it is the prefix every operation path is appended to).
fn check_public_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    check_http_url(key, value)?;
    let example = "e.g. https://api.comune.example.it/anagrafe/v1";
    match url::Url::parse(value) {
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            invalid(key, &format!("`{value}` has no host ({example})"))
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => invalid(
            key,
            &format!("`{value}` must not have a query or fragment ({example})"),
        ),
        _ if value.ends_with('/') => {
            invalid(key, &format!("`{value}` must not end with `/` ({example})"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
