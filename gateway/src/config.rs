//! One typed configuration for every environment: development, PDND collaudo (UAT), production.
//!
//! A TOML file is the base and `PDNDGW_<SECTION>__<KEY>` environment variables override single
//! keys (figment). Unknown keys are errors, not silently ignored: a mistyped override must not
//! leave a production gateway on a development default. After parsing, [`Config::validate`]
//! checks what the types cannot (URL schemes, non-empty audiences, bounds) and every error names
//! the key at fault, so an operator can fix it without reading code.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    pub cache: eservices::CacheConfig,
    /// Only read by `pdnd-gateway dev`.
    #[serde(default)]
    pub dev: DevConfig,
}

/// Listeners and worker threads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where other administrations reach the e-services (through PDND).
    pub public_listen: SocketAddr,
    /// The comune's own systems: fruizioni, status, admin. Never expose it publicly.
    pub internal_listen: SocketAddr,
    /// HTTP worker threads per listener.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_workers() -> usize {
    2
}

/// Which PDND environment the gateway talks to and how it checks vouchers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdndConfig {
    /// `dev`, `collaudo`, `attestazione` or `produzione`: shown in logs and /status only.
    pub environment: String,
    /// The token endpoint, e.g. `https://auth.uat.interop.pagopa.it/token.oauth2`.
    pub token_endpoint: String,
    /// The `aud` of client assertions, e.g. `auth.uat.interop.pagopa.it/client-assertion`
    /// (no scheme, as PDND expects).
    pub client_assertion_audience: String,
    /// Accepted voucher issuers (`iss`), e.g. `uat.interop.pagopa.it`.
    pub voucher_issuers: Vec<String>,
    /// The JWKS of the voucher-signing keys, e.g. `https://uat.interop.pagopa.it/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Where a consumer's PDND-registered key is looked up by kid (ModI INTEGRITY_REST_02).
    #[serde(default)]
    pub keys_url: Option<String>,
    /// How long a fetched JWKS is trusted before it is fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_ttl_secs: u64,
    /// An unknown kid triggers a refetch at most this often (protects PDND and us from floods).
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_interval_secs: u64,
    /// Tolerated clock skew on exp, nbf and iat.
    #[serde(default = "default_leeway")]
    pub leeway_secs: i64,
}

fn default_jwks_ttl() -> u64 {
    600
}
fn default_jwks_refetch() -> u64 {
    10
}
fn default_leeway() -> i64 {
    60
}

/// The e-services the comune publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EservicesConfig {
    pub anagrafe: EserviceConfig,
    pub tributi: EserviceConfig,
}

/// One published e-service: where consumers reach it and what its vouchers must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EserviceConfig {
    /// The absolute base URL consumers call, e.g. `https://api.comune.example.it/anagrafe/v1`:
    /// the `servers` entry of the e-service's OpenAPI document. PDND's catalogue refuses an
    /// interface document whose server URLs are not absolute.
    pub public_url: String,
    /// The audience(s) configured on the e-service's PDND descriptor.
    pub audiences: Vec<String>,
    /// The PDND eserviceId (checked against the voucher when set).
    #[serde(default)]
    pub eservice_id: Option<String>,
    /// The PDND descriptorId of the published version (checked when set).
    #[serde(default)]
    pub descriptor_id: Option<String>,
}

/// Who the comune is on PDND.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComuneConfig {
    /// The comune's PDND tenant id (`producerId` of vouchers for its e-services).
    #[serde(default)]
    pub producer_id: Option<String>,
    pub name: String,
    /// Who answers consumers' questions about the e-services (`info.contact` of the OpenAPI
    /// documents; the Italian guidelines require a contact).
    #[serde(default)]
    pub contact_email: Option<String>,
    /// The web page of that contact (`info.contact.url`).
    #[serde(default)]
    pub contact_url: Option<String>,
    /// The terms of use of the e-services (`info.termsOfService`).
    #[serde(default)]
    pub terms_of_service_url: Option<String>,
}

/// Where the e-service data (and, later, the audit trail) lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` or `postgres://user:password@host/db`.
    pub url: String,
}

/// The audit trail's store and keyed hash.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `sqlite://path?mode=rwc` (WAL) or `postgres://...`.
    pub url: String,
    /// The HMAC key of data-subject hashes, at least 32 bytes. Give it through the environment
    /// (`PDNDGW_AUDIT__HMAC_SECRET`) or a secret file; losing it makes past records unsearchable
    /// by codice fiscale, leaking it makes hashes guessable.
    #[serde(default)]
    pub hmac_secret: String,
    /// Most records committed in one transaction.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("url", &redact_url(&self.url))
            .field("hmac_secret", &"<redacted>")
            .field("batch_max", &self.batch_max)
            .finish()
    }
}

/// A URL with its password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn default_batch_max() -> usize {
    256
}

/// The approved purposes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposesConfig {
    /// A TOML file of `[[purpose]]` records, reloaded on SIGHUP or when it changes.
    pub file: PathBuf,
}

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

/// The development environment of `pdnd-gateway dev`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    pub authority_listen: SocketAddr,
    pub authority_issuer: String,
    pub voucher_lifetime_secs: i64,
    pub residents: u32,
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            authority_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            authority_issuer: "dev.interop.local".to_owned(),
            voucher_lifetime_secs: 600,
            residents: 1000,
        }
    }
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
            // Variables for the test harness share the prefix but are not configuration.
            base.merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            )
        } else {
            base
        };
        let config: Config = figment.extract()?;
        Ok(config)
    }

    /// Checks what the types cannot. Call after every override is applied (dev fills the
    /// database URL after loading).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("pdnd.token_endpoint", &self.pdnd.token_endpoint)?;
        check_http_url("pdnd.jwks_url", &self.pdnd.jwks_url)?;
        if let Some(keys_url) = &self.pdnd.keys_url {
            check_http_url("pdnd.keys_url", keys_url)?;
        }
        if self.pdnd.client_assertion_audience.trim().is_empty() {
            return invalid("pdnd.client_assertion_audience", "must not be empty");
        }
        if self.pdnd.client_assertion_audience.contains("://") {
            return invalid(
                "pdnd.client_assertion_audience",
                "PDND expects the audience without a scheme, e.g. auth.uat.interop.pagopa.it/client-assertion",
            );
        }
        if self.pdnd.voucher_issuers.is_empty()
            || self
                .pdnd
                .voucher_issuers
                .iter()
                .any(|i| i.trim().is_empty())
        {
            return invalid(
                "pdnd.voucher_issuers",
                "needs at least one non-empty issuer",
            );
        }
        if !(0..=300).contains(&self.pdnd.leeway_secs) {
            return invalid("pdnd.leeway_secs", "must be between 0 and 300 seconds");
        }
        if self.pdnd.jwks_cache_ttl_secs == 0 {
            return invalid("pdnd.jwks_cache_ttl_secs", "must be at least 1 second");
        }
        self.validate_published()?;
        for (key, eservice) in [
            ("eservices.anagrafe.audiences", &self.eservices.anagrafe),
            ("eservices.tributi.audiences", &self.eservices.tributi),
        ] {
            if eservice.audiences.is_empty() || eservice.audiences.iter().any(|a| a.is_empty()) {
                return invalid(key, "needs at least one non-empty audience");
            }
            if eservice.audiences.iter().any(|a| a.contains(',')) {
                return invalid(
                    key,
                    "an audience may not contain ',' (PDND joins several audiences with commas)",
                );
            }
        }
        if !(1..=64).contains(&self.server.workers) {
            return invalid("server.workers", "must be between 1 and 64");
        }
        let url = self.database.url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return invalid(
                "database.url",
                "must start with sqlite: or postgres:// (e.g. sqlite://comune.db?mode=rwc)",
            );
        }
        let audit = self.audit.url.as_str();
        if !(audit.starts_with("sqlite:")
            || audit.starts_with("postgres://")
            || audit.starts_with("postgresql://"))
        {
            return invalid("audit.url", "must start with sqlite: or postgres://");
        }
        if self.audit.hmac_secret.len() < 32 {
            return invalid(
                "audit.hmac_secret",
                "must be at least 32 characters (set PDNDGW_AUDIT__HMAC_SECRET)",
            );
        }
        if !(1..=10_000).contains(&self.audit.batch_max) {
            return invalid("audit.batch_max", "must be between 1 and 10000");
        }
        if self.purposes.file.as_os_str().is_empty() {
            return invalid("purposes.file", "must name the purposes file");
        }
        if let Some(client) = &self.client {
            if uuid::Uuid::parse_str(&client.client_id).is_err() {
                return invalid("client.client_id", "must be the PDND clientId, a UUID");
            }
            if let Some(purpose) = &client.default_purpose_id {
                if uuid::Uuid::parse_str(purpose).is_err() {
                    return invalid(
                        "client.default_purpose_id",
                        "must be a PDND purposeId, a UUID",
                    );
                }
            }
            if !(1..=3600).contains(&client.assertion_lifetime_secs) {
                return invalid(
                    "client.assertion_lifetime_secs",
                    "must be between 1 and 3600",
                );
            }
        }
        Ok(())
    }

    /// Checks what the OpenAPI documents publish: the e-services' public URLs and the contact.
    /// Part of [`Config::validate`]; on its own for `pdnd-gateway openapi`, which needs no
    /// secrets.
    pub fn validate_published(&self) -> Result<(), ConfigError> {
        for (key, eservice) in [
            ("eservices.anagrafe.public_url", &self.eservices.anagrafe),
            ("eservices.tributi.public_url", &self.eservices.tributi),
        ] {
            check_public_url(key, &eservice.public_url)?;
        }
        if let Some(email) = &self.comune.contact_email {
            let at = email.find('@');
            if !at.is_some_and(|i| i > 0 && i + 1 < email.len())
                || email.contains(char::is_whitespace)
            {
                return invalid("comune.contact_email", "must be an e-mail address");
            }
        }
        if let Some(url) = &self.comune.contact_url {
            check_http_url("comune.contact_url", url)?;
        }
        if let Some(url) = &self.comune.terms_of_service_url {
            check_http_url("comune.terms_of_service_url", url)?;
        }
        Ok(())
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
mod tests {
    use super::*;

    fn dev() -> Config {
        let mut c = Config::from_toml_str(DEV_TOML).expect("the embedded dev config parses");
        c.database.url = "sqlite://x.db".into();
        c.audit.url = "sqlite://a.db".into();
        c.audit.hmac_secret = "k".repeat(32);
        c.purposes.file = "purposes.toml".into();
        c
    }

    #[test]
    fn embedded_dev_config_is_valid() {
        dev().validate().expect("dev config validates");
    }

    #[test]
    fn unknown_key_is_named() {
        let toml = format!("{DEV_TOML}\n[extra]\nfoo = 1\n");
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let toml = DEV_TOML.replace("workers = 2", "workers = \"two\"");
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let toml = DEV_TOML.replace("\"127.0.0.1:8080\"", "\"localhost:http\"");
        let err = Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains("public_listen"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = dev();
        c.pdnd.token_endpoint = "ftp://x/token".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pdnd.token_endpoint"));
        let mut c = dev();
        c.pdnd.client_assertion_audience =
            "https://auth.uat.interop.pagopa.it/client-assertion".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pdnd.client_assertion_audience"));
        let mut c = dev();
        c.eservices.tributi.audiences.clear();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("eservices.tributi.audiences"));
        let mut c = dev();
        c.pdnd.leeway_secs = 3600;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pdnd.leeway_secs"));
        for bad in [
            "/anagrafe/v1",
            "api.comune.example.it/anagrafe/v1",
            "https://api.comune.example.it/anagrafe/v1/",
            "https://api.comune.example.it/anagrafe/v1?x=1",
            "ftp://api.comune.example.it/anagrafe/v1",
        ] {
            let mut c = dev();
            c.eservices.anagrafe.public_url = bad.into();
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("eservices.anagrafe.public_url"),
                "{bad}: {err}"
            );
        }
        let mut c = dev();
        c.comune.contact_email = Some("not-an-address".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("comune.contact_email"));
        let mut c = dev();
        c.database.url = "mysql://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database.url"));
        let mut c = dev();
        c.audit.hmac_secret = "short".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("audit.hmac_secret"));
    }

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_keys_and_ignores_test_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PDNDGW_PDND__LEEWAY_SECS", "30");
            jail.set_env("PDNDGW_SERVER__PUBLIC_LISTEN", "0.0.0.0:9999");
            jail.set_env("PDNDGW_TEST_POSTGRES_URL", "postgres://x");
            let c = Config::load_dev(None).map_err(|e| e.to_string())?;
            assert_eq!(c.pdnd.leeway_secs, 30);
            assert_eq!(c.server.public_listen.port(), 9999);
            jail.set_env("PDNDGW_PDND__LEEWAY", "30");
            let err = Config::load_dev(None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("leeway"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn example_configs_parse_and_validate() {
        for (name, text) in [
            (
                "collaudo",
                include_str!("../../config/collaudo.example.toml"),
            ),
            (
                "produzione",
                include_str!("../../config/produzione.example.toml"),
            ),
        ] {
            let c = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
