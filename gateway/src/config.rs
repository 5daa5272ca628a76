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

pub mod operations;
pub mod secret_strength;
pub mod serve_policy;
pub mod state;
pub mod tracing;

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
    /// The daily PDND tracing deposit (`tracing sync`).
    #[serde(default)]
    pub tracing: Option<tracing::TracingConfig>,
}

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

/// Voucher caching and retries toward the PDND token endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherClientConfig {
    /// Renew this fraction of a voucher's lifetime before it expires (0.2 = the last 20 %).
    #[serde(default = "default_renew_margin")]
    pub renew_margin_fraction: f64,
    /// Attempts per voucher request on PDND 429/5xx/unreachable, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Total time a voucher request may spend retrying.
    #[serde(default = "default_max_retry_ms")]
    pub max_retry_ms: u64,
    /// The first backoff, doubled per attempt and jittered (Retry-After wins when PDND sends it).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_renew_margin() -> f64 {
    0.2
}
fn default_max_attempts() -> u32 {
    4
}
fn default_max_retry_ms() -> u64 {
    10_000
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    5_000
}

impl Default for VoucherClientConfig {
    fn default() -> Self {
        VoucherClientConfig {
            renew_margin_fraction: default_renew_margin(),
            max_attempts: default_max_attempts(),
            max_retry_ms: default_max_retry_ms(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

/// One e-service of another administration that the comune's systems call through the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FruizioneConfig {
    /// The path segment: `/fruizioni/{name}/...` (lowercase letters, digits, `-`).
    pub name: String,
    /// The e-service's base URL; `/fruizioni/{name}/a/b?q` calls `{remote_base_url}/a/b?q`.
    pub remote_base_url: String,
    /// The PDND purpose the comune holds for this e-service.
    pub purpose_id: String,
    /// The PDND client to ask vouchers with; default: the `[client]` section's.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its private key (PEM); required with `client_id`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// ModI patterns applied to the calls: `INTEGRITY_REST_01` or `INTEGRITY_REST_02`, and
    /// `AUDIT_REST_01` or `AUDIT_REST_02` (see [`OutboundModiPattern`]).
    #[serde(default)]
    pub modi: Vec<String>,
    /// The remote e-service's audience (the `aud` of the ModI JWS we send, as declared on its
    /// PDND descriptor); required when `modi` names any pattern.
    #[serde(default)]
    pub audience: Option<String>,
    /// INTEGRITY_REST_01: the private key (PEM) that signs `Agid-JWT-Signature`...
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// ...and its certificate chain (PEM, leaf first), sent as the JWS `x5c`.
    #[serde(default)]
    pub signing_chain_file: Option<PathBuf>,
    /// INTEGRITY_REST_01 algorithm: `RS256` (default), `PS256` or `ES256`. INTEGRITY_REST_02
    /// and the tracking evidence always sign RS256 with the PDND client key.
    #[serde(default)]
    pub signing_algorithm: Option<String>,
    /// Check the remote's signed answer (`Digest` + `Agid-JWT-Signature` with `aud` = our
    /// client id); an answer that does not verify becomes a 502.
    #[serde(default)]
    pub verify_response: bool,
    /// PEM bundle of the CAs the remote's `x5c` must lead to; required with `verify_response`.
    #[serde(default)]
    pub response_trust_file: Option<PathBuf>,
    /// Whole-call timeout toward the remote.
    #[serde(default = "default_fruizione_timeout")]
    pub timeout_ms: u64,
    /// Calls in flight at once; beyond it the proxy answers 503 with Retry-After.
    #[serde(default = "default_fruizione_concurrency")]
    pub max_concurrency: usize,
    /// PEM bundle of CAs trusted for the remote, in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Largest answer body accepted from the remote; a larger one becomes a 502 (read with
    /// this limit while it streams in, never buffered whole).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Ask PDND for DPoP-bound vouchers (RFC 9449) and prove possession of the key on every
    /// call (`Authorization: DPoP` + a fresh `DPoP` proof). The proof key is a P-256 key the
    /// gateway generates at start and never writes down. Default: Bearer vouchers.
    #[serde(default)]
    pub dpop: bool,
}

/// The highest `max_response_bytes` accepted: answers are held in memory whole.
pub const MAX_RESPONSE_BYTES_CEILING: u64 = 256 * 1024 * 1024;

/// 1 MiB: ample for JSON e-service answers.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A ModI pattern a fruizione may apply to its outbound calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboundModiPattern {
    /// `Digest` + `Agid-JWT-Signature` with an `x5c` certificate chain.
    IntegrityRest01,
    /// `Digest` + `Agid-JWT-Signature` with the `kid` of the PDND client key.
    IntegrityRest02,
    /// `Agid-JWT-TrackingEvidence` signed with the PDND client key.
    AuditRest01,
    /// AUDIT_REST_01, with the evidence's digest bound into the voucher.
    AuditRest02,
}

impl OutboundModiPattern {
    /// The names accepted in `fruizioni.modi`.
    pub const NAMES: [&'static str; 4] = [
        "INTEGRITY_REST_01",
        "INTEGRITY_REST_02",
        "AUDIT_REST_01",
        "AUDIT_REST_02",
    ];

    /// Parses a pattern name as written in the guidelines (exact, upper case).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "INTEGRITY_REST_01" => Some(Self::IntegrityRest01),
            "INTEGRITY_REST_02" => Some(Self::IntegrityRest02),
            "AUDIT_REST_01" => Some(Self::AuditRest01),
            "AUDIT_REST_02" => Some(Self::AuditRest02),
            _ => None,
        }
    }
}

impl FruizioneConfig {
    /// The `modi` patterns, typed. Call after [`Config::validate`], which refuses unknown names.
    pub fn modi_patterns(&self) -> Vec<OutboundModiPattern> {
        self.modi
            .iter()
            .filter_map(|n| OutboundModiPattern::parse(n))
            .collect()
    }
}

fn default_fruizione_timeout() -> u64 {
    10_000
}
fn default_fruizione_concurrency() -> usize {
    64
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
    /// Longest time to receive a request's whole body once its headers arrived (ms); slower
    /// bodies get 408, so a trickling client cannot hold a worker.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// TLS for the internal listener (mTLS with `client_ca_file`). Required when
    /// `internal_listen` is not a loopback address, unless the next key opts out.
    #[serde(default)]
    pub internal_tls: Option<InternalTlsConfig>,
    /// Accept `internal_listen` on a non-loopback address in clear text (default `false`):
    /// only when something else confines that network (a NetworkPolicy admitting only the
    /// comune's systems, a service mesh doing mTLS). Logged as a warning at every start.
    #[serde(default)]
    pub internal_allow_plaintext_non_loopback: bool,
    /// Longest wait for in-flight requests at SIGTERM/SIGINT (see [`operations`]).
    #[serde(default = "operations::default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// At SIGTERM, how long `/readyz` says 503 before the listeners close (see [`operations`]).
    #[serde(default)]
    pub shutdown_delay_secs: u64,
    /// Accept private key files readable by their group (Kubernetes Secret volumes with
    /// `fsGroup`); never by others (see [`operations`]).
    #[serde(default)]
    pub allow_group_readable_keys: bool,
}

/// The internal listener's TLS identity and, for mTLS, the CA its callers' certificates must
/// be issued by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1), mode 0600 or stricter.
    pub key_file: PathBuf,
    /// PEM bundle of the CA(s) that issue the comune's systems' client certificates; when set,
    /// a caller without such a certificate cannot even complete the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_workers() -> usize {
    2
}

fn default_body_read_timeout_ms() -> u64 {
    5_000
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
    /// The clientId of the comune's "API Interop" (M2M) client on PDND. The PDND API (hence
    /// `keys_url`) answers only a voucher of such a client, obtained without `purposeId`.
    /// Set together with `api_key_file`; neither in dev without authentication.
    #[serde(default)]
    pub api_client_id: Option<String>,
    /// The PEM private key of the API Interop client (the public half registered on PDND).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// How long a fetched JWKS is trusted before it is fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_ttl_secs: u64,
    /// An unknown kid triggers a refetch at most this often (protects PDND and us from floods);
    /// also the first back-off after a failed fetch.
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_interval_secs: u64,
    /// The longest wait between two fetch attempts while PDND's JWKS keeps failing (the
    /// back-off doubles from `jwks_min_refetch_interval_secs` up to this, jittered).
    #[serde(default = "default_jwks_max_backoff")]
    pub jwks_max_backoff_secs: u64,
    /// One JWKS fetch is abandoned after this long (it runs in the background; requests are
    /// served with the keys already held meanwhile).
    #[serde(default = "default_jwks_fetch_timeout")]
    pub jwks_fetch_timeout_ms: u64,
    /// Tolerated clock skew on exp, nbf and iat.
    #[serde(default = "default_leeway")]
    pub leeway_secs: i64,
    /// Longest accepted voucher lifetime (`exp - iat` and `exp - nbf`). PDND lets each producer
    /// choose its descriptor's voucher lifespan, so the default, 86400 (24 hours), is the
    /// longest lifespan seen in PDND's own material: nothing PDND issues for a sensible
    /// descriptor is refused, a voucher claiming to live for days is. Set it to the lifespan of
    /// the comune's descriptors to be exact.
    #[serde(default = "default_voucher_max_lifetime")]
    pub voucher_max_lifetime_secs: i64,
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
fn default_jwks_max_backoff() -> u64 {
    300
}
fn default_jwks_fetch_timeout() -> u64 {
    3_000
}
fn default_voucher_max_lifetime() -> i64 {
    crate::pdnd::voucher::DEFAULT_MAX_LIFETIME_SECS
}

/// The largest `pdnd.voucher_max_lifetime_secs` accepted: a week. A bearer credential valid for
/// longer would outlive any suspension of its purpose by far.
pub const MAX_VOUCHER_LIFETIME_SECS: i64 = 7 * 86_400;

/// The e-services the comune publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EservicesConfig {
    pub anagrafe: EserviceConfig,
    pub tributi: EserviceConfig,
}

impl EservicesConfig {
    /// The configuration of one e-service.
    pub fn get(&self, eservice: eservices::Eservice) -> &EserviceConfig {
        match eservice {
            eservices::Eservice::Anagrafe => &self.anagrafe,
            eservices::Eservice::Tributi => &self.tributi,
        }
    }
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
    /// Which ModI security patterns this e-service applies.
    #[serde(default)]
    pub modi: EserviceModiConfig,
}

/// The ModI patterns one e-service applies, as declared on its PDND descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EserviceModiConfig {
    /// INTEGRITY_REST_01 on responses: `Digest` + `Agid-JWT-Signature` with our `x5c`.
    #[serde(default = "default_true")]
    pub sign_responses: bool,
    /// What a request must carry to prove its body and headers.
    #[serde(default)]
    pub request_integrity: RequestIntegrity,
    /// Whether a request must carry an `Agid-JWT-TrackingEvidence`, and bound to the voucher.
    #[serde(default)]
    pub audit: AuditPattern,
}

impl Default for EserviceModiConfig {
    fn default() -> Self {
        EserviceModiConfig {
            sign_responses: true,
            request_integrity: RequestIntegrity::None,
            audit: AuditPattern::None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Request integrity pattern required of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestIntegrity {
    #[default]
    None,
    /// `Agid-JWT-Signature` with an `x5c` chain to our trust store.
    #[serde(rename = "integrity_rest_01")]
    IntegrityRest01,
    /// `Agid-JWT-Signature` with the `kid` of a key registered on PDND.
    #[serde(rename = "integrity_rest_02")]
    IntegrityRest02,
}

/// Audit pattern required of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPattern {
    #[default]
    None,
    /// A valid `Agid-JWT-TrackingEvidence` signed with the caller's PDND key.
    #[serde(rename = "audit_rest_01")]
    AuditRest01,
    /// AUDIT_REST_01, and the voucher's `digest` is the SHA-256 of that exact evidence.
    #[serde(rename = "audit_rest_02")]
    AuditRest02,
}

/// The JWS algorithm of our signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5: what every peer (and PDND itself) verifies. The default.
    #[default]
    RS256,
    PS256,
    ES256,
}

impl From<SignatureAlgorithm> for crate::modi::SigningAlgorithm {
    fn from(a: SignatureAlgorithm) -> Self {
        match a {
            SignatureAlgorithm::RS256 => crate::modi::SigningAlgorithm::RS256,
            SignatureAlgorithm::PS256 => crate::modi::SigningAlgorithm::PS256,
            SignatureAlgorithm::ES256 => crate::modi::SigningAlgorithm::ES256,
        }
    }
}

/// Our ModI signing identity and the trust placed in peers' signatures.
///
/// The key and chain are files (mounted from a secret in production, generated in the data
/// directory by `dev`); they are read and checked together at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModiConfig {
    /// PEM private key our responses are signed with.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// PEM certificate chain of that key, leaf first (sent as `x5c`).
    #[serde(default)]
    pub certificate_chain_file: Option<PathBuf>,
    /// `RS256` (default), `PS256` or `ES256`.
    #[serde(default)]
    pub algorithm: SignatureAlgorithm,
    /// PEM bundle of the CAs a caller's `x5c` must chain to (INTEGRITY_REST_01 requests).
    #[serde(default)]
    pub trust_store_file: Option<PathBuf>,
    /// Lifetime (`exp - iat`) of our response signatures: short, they prove one answer.
    #[serde(default = "default_signature_lifetime")]
    pub signature_lifetime_secs: i64,
    /// `iss` (and `sub`) of our signatures: how the receivers name us.
    #[serde(default)]
    pub issuer: String,
    /// Longest `exp - iat` accepted on a caller's signature or tracking evidence; bounds how
    /// long a jti occupies the replay memory.
    #[serde(default = "default_peer_lifetime")]
    pub max_peer_token_lifetime_secs: i64,
    /// Most jtis remembered at once (requests per second x (peer lifetime + leeway)). The same
    /// memory holds the jtis of DPoP proofs, each for 61 s (PDND's 60 s of validity).
    #[serde(default = "default_replay_capacity")]
    pub replay_cache_capacity: usize,
    /// How long a PDND key fetched by kid is kept.
    #[serde(default = "default_key_cache_ttl")]
    pub key_cache_ttl_secs: u64,
    /// Most jtis one client (the voucher's client id) may hold in the replay memory at once;
    /// beyond it that client alone gets 429 until its oldest jti expires. At most
    /// `replay_cache_capacity`.
    #[serde(default = "default_replay_per_client")]
    pub replay_cache_per_client: usize,
    /// How long a kid that PDND answered 404 for is remembered as unknown (not asked again).
    #[serde(default = "default_unknown_kid_ttl")]
    pub unknown_kid_ttl_secs: u64,
    /// Most lookups of uncached kids sent to `pdnd.keys_url` per minute, all callers together
    /// (a token bucket holding as many); beyond it a request needing one gets 503 with
    /// Retry-After and PDND is not asked. Bounds the PDND API quota forged kids can burn.
    #[serde(default = "default_kid_lookups_per_minute")]
    pub kid_lookups_per_minute: u32,
}

impl Default for ModiConfig {
    fn default() -> Self {
        ModiConfig {
            signing_key_file: None,
            certificate_chain_file: None,
            algorithm: SignatureAlgorithm::default(),
            trust_store_file: None,
            signature_lifetime_secs: default_signature_lifetime(),
            issuer: String::new(),
            max_peer_token_lifetime_secs: default_peer_lifetime(),
            replay_cache_capacity: default_replay_capacity(),
            key_cache_ttl_secs: default_key_cache_ttl(),
            replay_cache_per_client: default_replay_per_client(),
            unknown_kid_ttl_secs: default_unknown_kid_ttl(),
            kid_lookups_per_minute: default_kid_lookups_per_minute(),
        }
    }
}

fn default_signature_lifetime() -> i64 {
    60
}
fn default_peer_lifetime() -> i64 {
    300
}
fn default_replay_capacity() -> usize {
    100_000
}
fn default_key_cache_ttl() -> u64 {
    600
}
fn default_replay_per_client() -> usize {
    10_000
}
fn default_unknown_kid_ttl() -> u64 {
    300
}
fn default_kid_lookups_per_minute() -> u32 {
    60
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
    /// Whether `serve` creates/upgrades the schemas at start (see [`operations`]).
    #[serde(default = "operations::default_migrate_on_start")]
    pub migrate_on_start: bool,
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
    /// Longest wait for an audit commit (ms); beyond it the request answers 503, so a hung
    /// database cannot hang the requests waiting on it.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
    /// Records per second of requests refused before the voucher check, written without
    /// making their answer wait (best effort; the excess is counted in the log).
    #[serde(default = "default_best_effort_per_sec")]
    pub best_effort_per_sec: u32,
    /// Days per-request records are kept (`audit purge`); unset, the purge refuses to run.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Days the daily aggregates per purpose and status are kept (longer than the records).
    #[serde(default)]
    pub aggregate_retention_days: Option<u32>,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("url", &redact_url(&self.url))
            .field("hmac_secret", &"<redacted>")
            .field("batch_max", &self.batch_max)
            .field("commit_timeout_ms", &self.commit_timeout_ms)
            .field("best_effort_per_sec", &self.best_effort_per_sec)
            .field("retention_days", &self.retention_days)
            .field("aggregate_retention_days", &self.aggregate_retention_days)
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

fn default_commit_timeout_ms() -> u64 {
    5_000
}

fn default_best_effort_per_sec() -> u32 {
    200
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

    /// Checks what the types cannot. Call after every override is applied (dev fills the
    /// database URL after loading).
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing::validate(self.tracing.as_ref())?;
        check_http_url("pdnd.token_endpoint", &self.pdnd.token_endpoint)?;
        check_http_url("pdnd.jwks_url", &self.pdnd.jwks_url)?;
        if let Some(keys_url) = &self.pdnd.keys_url {
            check_http_url("pdnd.keys_url", keys_url)?;
        }
        match (&self.pdnd.api_client_id, &self.pdnd.api_key_file) {
            (None, None) => {}
            (Some(id), Some(file)) => {
                if uuid::Uuid::parse_str(id).is_err() {
                    return invalid(
                        "pdnd.api_client_id",
                        "must be the clientId of the PDND API Interop client, a UUID",
                    );
                }
                if file.as_os_str().is_empty() {
                    return invalid(
                        "pdnd.api_key_file",
                        "must name the client's private key file",
                    );
                }
            }
            (Some(_), None) => {
                return invalid(
                    "pdnd.api_key_file",
                    "must be set together with pdnd.api_client_id",
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "pdnd.api_client_id",
                    "must be set together with pdnd.api_key_file",
                )
            }
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
        self.validate_voucher_checks()?;
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
        self.validate_modi()?;
        self.state.validate()?;
        if !(1..=64).contains(&self.server.workers) {
            return invalid("server.workers", "must be between 1 and 64");
        }
        self.validate_internal_exposure()?;
        self.validate_operations()?;
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
        if !(100..=120_000).contains(&self.server.body_read_timeout_ms) {
            return invalid(
                "server.body_read_timeout_ms",
                "must be between 100 and 120000 milliseconds",
            );
        }
        if !(50..=60_000).contains(&self.audit.commit_timeout_ms) {
            return invalid(
                "audit.commit_timeout_ms",
                "must be between 50 and 60000 milliseconds",
            );
        }
        if !(1..=100_000).contains(&self.audit.best_effort_per_sec) {
            return invalid("audit.best_effort_per_sec", "must be between 1 and 100000");
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
        self.validate_consumer()
    }

    /// The JWKS refresh schedule, the voucher lifetime bound and the identifiers every voucher
    /// is checked against.
    fn validate_voucher_checks(&self) -> Result<(), ConfigError> {
        let pdnd = &self.pdnd;
        if !(1..=3_600).contains(&pdnd.jwks_min_refetch_interval_secs) {
            return invalid(
                "pdnd.jwks_min_refetch_interval_secs",
                "must be between 1 and 3600 seconds (0 would let every unknown kid reach PDND)",
            );
        }
        if !(pdnd.jwks_min_refetch_interval_secs..=3_600).contains(&pdnd.jwks_max_backoff_secs) {
            return invalid(
                "pdnd.jwks_max_backoff_secs",
                "must be between pdnd.jwks_min_refetch_interval_secs and 3600 seconds",
            );
        }
        if !(100..=30_000).contains(&pdnd.jwks_fetch_timeout_ms) {
            return invalid(
                "pdnd.jwks_fetch_timeout_ms",
                "must be between 100 and 30000 milliseconds",
            );
        }
        if !(1..=MAX_VOUCHER_LIFETIME_SECS).contains(&pdnd.voucher_max_lifetime_secs) {
            return invalid(
                "pdnd.voucher_max_lifetime_secs",
                "must be between 1 second and 604800 (a week)",
            );
        }
        if self.dev.voucher_lifetime_secs > pdnd.voucher_max_lifetime_secs {
            return invalid(
                "dev.voucher_lifetime_secs",
                "must not exceed pdnd.voucher_max_lifetime_secs, or the gateway refuses the local authority's vouchers",
            );
        }
        let ids = [
            ("comune.producer_id", &self.comune.producer_id),
            (
                "eservices.anagrafe.eservice_id",
                &self.eservices.anagrafe.eservice_id,
            ),
            (
                "eservices.anagrafe.descriptor_id",
                &self.eservices.anagrafe.descriptor_id,
            ),
            (
                "eservices.tributi.eservice_id",
                &self.eservices.tributi.eservice_id,
            ),
            (
                "eservices.tributi.descriptor_id",
                &self.eservices.tributi.descriptor_id,
            ),
        ];
        for (key, id) in ids {
            if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
                return invalid(
                    key,
                    "must be the PDND identifier or be left out (every voucher is checked against it)",
                );
            }
        }
        Ok(())
    }

    /// The fruitore side: voucher client, fruizioni, internal API keys.
    fn validate_consumer(&self) -> Result<(), ConfigError> {
        let vc = &self.voucher_client;
        if !(vc.renew_margin_fraction > 0.0 && vc.renew_margin_fraction < 1.0) {
            return invalid(
                "voucher_client.renew_margin_fraction",
                "must be between 0 and 1 (exclusive), e.g. 0.2",
            );
        }
        if !(1..=20).contains(&vc.max_attempts) {
            return invalid("voucher_client.max_attempts", "must be between 1 and 20");
        }
        if vc.initial_backoff_ms == 0 || vc.max_backoff_ms < vc.initial_backoff_ms {
            return invalid(
                "voucher_client.max_backoff_ms",
                "backoffs must be positive, max_backoff_ms >= initial_backoff_ms",
            );
        }
        if !self.fruizioni.is_empty() && self.internal.api_keys.is_empty() {
            return invalid(
                "internal.api_key",
                "fruizioni are configured but no API key is: every call would be refused",
            );
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.fruizioni {
            if f.name.is_empty()
                || !f
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return invalid(
                    "fruizioni.name",
                    &format!("`{}`: use lowercase letters, digits and `-`", f.name),
                );
            }
            if !names.insert(f.name.as_str()) {
                return invalid("fruizioni.name", &format!("`{}` is used twice", f.name));
            }
            check_http_url("fruizioni.remote_base_url", &f.remote_base_url)?;
            if uuid::Uuid::parse_str(&f.purpose_id).is_err() {
                return invalid(
                    "fruizioni.purpose_id",
                    &format!("`{}`: must be a PDND purposeId, a UUID", f.name),
                );
            }
            match (&f.client_id, &f.key_file) {
                (Some(id), Some(_)) => {
                    if uuid::Uuid::parse_str(id).is_err() {
                        return invalid(
                            "fruizioni.client_id",
                            &format!("`{}`: must be a PDND clientId, a UUID", f.name),
                        );
                    }
                }
                (None, None) if self.client.is_some() => {}
                (None, None) => {
                    return invalid(
                        "fruizioni.client_id",
                        &format!(
                            "`{}`: no client_id/key_file and no [client] section to default to",
                            f.name
                        ),
                    )
                }
                _ => {
                    return invalid(
                        "fruizioni.key_file",
                        &format!("`{}`: client_id and key_file go together", f.name),
                    )
                }
            }
            validate_fruizione_modi(f)?;
            if !(1..=300_000).contains(&f.timeout_ms) {
                return invalid(
                    "fruizioni.timeout_ms",
                    &format!("`{}`: must be between 1 and 300000", f.name),
                );
            }
            if !(1..=100_000).contains(&f.max_concurrency) {
                return invalid(
                    "fruizioni.max_concurrency",
                    &format!("`{}`: must be between 1 and 100000", f.name),
                );
            }
            if !(1..=MAX_RESPONSE_BYTES_CEILING).contains(&f.max_response_bytes) {
                return invalid(
                    "fruizioni.max_response_bytes",
                    &format!(
                        "`{}`: must be between 1 and {MAX_RESPONSE_BYTES_CEILING} (256 MiB)",
                        f.name
                    ),
                );
            }
        }
        self.validate_api_keys()
    }

    /// `[[internal.api_key]]`: named, distinct, well-formed digests, and only fruizioni that
    /// exist (a typo would otherwise surface as a 403 in production).
    fn validate_api_keys(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        for k in &self.internal.api_keys {
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
                .find(|f| !self.fruizioni.iter().any(|c| &c.name == *f))
            {
                return invalid(
                    "internal.api_key.fruizioni",
                    &format!("`{}`: no fruizione named `{unknown}` is configured", k.name),
                );
            }
        }
        Ok(())
    }

    /// The `[modi]` section against what the e-services require of it.
    fn validate_modi(&self) -> Result<(), ConfigError> {
        let modi = &self.modi;
        let services = [
            ("eservices.anagrafe.modi", &self.eservices.anagrafe.modi),
            ("eservices.tributi.modi", &self.eservices.tributi.modi),
        ];
        let signs = services.iter().any(|(_, m)| m.sign_responses);
        if signs {
            let key_named =
                |f: &Option<PathBuf>| f.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
            if !key_named(&modi.signing_key_file) {
                return invalid(
                    "modi.signing_key_file",
                    "must name the PEM key responses are signed with (an e-service has sign_responses = true)",
                );
            }
            if !key_named(&modi.certificate_chain_file) {
                return invalid(
                    "modi.certificate_chain_file",
                    "must name the PEM certificate chain of the signing key (leaf first)",
                );
            }
            if modi.issuer.trim().is_empty() {
                return invalid("modi.issuer", "must name us in the iss of our signatures");
            }
        }
        if !(1..=300).contains(&modi.signature_lifetime_secs) {
            return invalid(
                "modi.signature_lifetime_secs",
                "must be between 1 and 300 seconds",
            );
        }
        if !(1..=3600).contains(&modi.max_peer_token_lifetime_secs) {
            return invalid(
                "modi.max_peer_token_lifetime_secs",
                "must be between 1 and 3600 seconds",
            );
        }
        if !(1..=10_000_000).contains(&modi.replay_cache_capacity) {
            return invalid(
                "modi.replay_cache_capacity",
                "must be between 1 and 10000000",
            );
        }
        if modi.key_cache_ttl_secs == 0 {
            return invalid("modi.key_cache_ttl_secs", "must be at least 1 second");
        }
        if !(1..=modi.replay_cache_capacity).contains(&modi.replay_cache_per_client) {
            return invalid(
                "modi.replay_cache_per_client",
                "must be between 1 and modi.replay_cache_capacity",
            );
        }
        if !(1..=86_400).contains(&modi.unknown_kid_ttl_secs) {
            return invalid(
                "modi.unknown_kid_ttl_secs",
                "must be between 1 and 86400 seconds",
            );
        }
        if !(1..=6_000).contains(&modi.kid_lookups_per_minute) {
            return invalid("modi.kid_lookups_per_minute", "must be between 1 and 6000");
        }
        for (key, m) in services {
            if m.request_integrity == RequestIntegrity::IntegrityRest01
                && modi
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

/// A fruizione's ModI options: known pattern names, at most one integrity and one audit
/// pattern, and the files and audience each pattern needs.
fn validate_fruizione_modi(f: &FruizioneConfig) -> Result<(), ConfigError> {
    use OutboundModiPattern as P;
    let name = &f.name;
    let mut patterns = Vec::with_capacity(f.modi.len());
    for p in &f.modi {
        match OutboundModiPattern::parse(p) {
            Some(parsed) if patterns.contains(&parsed) => {
                return invalid("fruizioni.modi", &format!("`{name}`: `{p}` listed twice"))
            }
            Some(parsed) => patterns.push(parsed),
            None => {
                return invalid(
                    "fruizioni.modi",
                    &format!(
                        "`{name}`: unknown pattern `{p}` (known: {})",
                        OutboundModiPattern::NAMES.join(", ")
                    ),
                )
            }
        }
    }
    let has = |p: P| patterns.contains(&p);
    if has(P::IntegrityRest01) && has(P::IntegrityRest02) {
        return invalid(
            "fruizioni.modi",
            &format!("`{name}`: INTEGRITY_REST_01 and INTEGRITY_REST_02 exclude each other"),
        );
    }
    if has(P::AuditRest01) && has(P::AuditRest02) {
        return invalid(
            "fruizioni.modi",
            &format!("`{name}`: AUDIT_REST_01 and AUDIT_REST_02 exclude each other"),
        );
    }
    if !patterns.is_empty() {
        match &f.audience {
            Some(a) if !a.trim().is_empty() => {}
            _ => {
                return invalid(
                    "fruizioni.audience",
                    &format!(
                        "`{name}`: required with `modi` (the remote e-service's audience on PDND)"
                    ),
                )
            }
        }
    }
    let x5c_files = f.signing_key_file.is_some() || f.signing_chain_file.is_some();
    if has(P::IntegrityRest01) {
        if f.signing_key_file.is_none() {
            return invalid(
                "fruizioni.signing_key_file",
                &format!("`{name}`: INTEGRITY_REST_01 needs the signing key (PEM)"),
            );
        }
        if f.signing_chain_file.is_none() {
            return invalid(
                "fruizioni.signing_chain_file",
                &format!("`{name}`: INTEGRITY_REST_01 needs the certificate chain (PEM)"),
            );
        }
    } else if x5c_files || f.signing_algorithm.is_some() {
        return invalid(
            "fruizioni.signing_key_file",
            &format!("`{name}`: signing_key_file, signing_chain_file and signing_algorithm are only used by INTEGRITY_REST_01"),
        );
    }
    if let Some(alg) = &f.signing_algorithm {
        if !["RS256", "PS256", "ES256"].contains(&alg.as_str()) {
            return invalid(
                "fruizioni.signing_algorithm",
                &format!("`{name}`: `{alg}` is not RS256, PS256 or ES256"),
            );
        }
    }
    match (f.verify_response, &f.response_trust_file) {
        (true, None) => invalid(
            "fruizioni.response_trust_file",
            &format!("`{name}`: verify_response needs the CA bundle the remote's x5c leads to"),
        ),
        (false, Some(_)) => invalid(
            "fruizioni.verify_response",
            &format!("`{name}`: response_trust_file is set but verify_response is not"),
        ),
        _ => Ok(()),
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
        c.modi.signing_key_file = Some("signing-key.pem".into());
        c.modi.certificate_chain_file = Some("signing-chain.pem".into());
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

    fn with_fruizione(c: &mut Config) {
        c.internal.api_keys = vec![ApiKeyConfig::for_key(
            "ufficio-tributi",
            &"k".repeat(32),
            vec!["inps-isee".into()],
        )];
        c.fruizioni = vec![FruizioneConfig {
            name: "inps-isee".into(),
            remote_base_url: "https://api.example.gov.it/isee/v1".into(),
            purpose_id: "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01".into(),
            client_id: None,
            key_file: None,
            modi: vec![],
            audience: None,
            signing_key_file: None,
            signing_chain_file: None,
            signing_algorithm: None,
            verify_response: false,
            response_trust_file: None,
            timeout_ms: 5000,
            max_concurrency: 8,
            ca_file: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            dpop: false,
        }];
        c.client = Some(ClientConfig {
            client_id: "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into(),
            key_file: "client.pem".into(),
            default_purpose_id: None,
            assertion_lifetime_secs: 300,
        });
    }

    #[test]
    fn fruizioni_are_checked_key_by_key() {
        let mut c = dev();
        with_fruizione(&mut c);
        c.validate().expect("a sound fruizione validates");
        type Breakage = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Breakage)> = vec![
            (
                "internal.api_key",
                Box::new(|c| c.internal.api_keys.clear()),
            ),
            (
                "internal.api_key.name",
                Box::new(|c| c.internal.api_keys[0].name = "Ufficio Tributi".into()),
            ),
            (
                "internal.api_key.name",
                Box::new(|c| c.internal.api_keys[0].name = "x".repeat(65)),
            ),
            (
                "internal.api_key.name",
                Box::new(|c| {
                    let mut k =
                        ApiKeyConfig::for_key("x", &"j".repeat(32), vec!["inps-isee".into()]);
                    k.name = c.internal.api_keys[0].name.clone();
                    c.internal.api_keys.push(k)
                }),
            ),
            (
                "internal.api_key.sha256",
                Box::new(|c| c.internal.api_keys[0].sha256 = "k".repeat(32)),
            ),
            (
                "internal.api_key.sha256",
                Box::new(|c| c.internal.api_keys[0].sha256 = "g".repeat(64)),
            ),
            (
                "internal.api_key.sha256",
                Box::new(|c| {
                    let mut k = c.internal.api_keys[0].clone();
                    k.name = "ufficio-anagrafe".into();
                    k.sha256 = k.sha256.to_ascii_uppercase();
                    c.internal.api_keys.push(k)
                }),
            ),
            (
                "internal.api_key.previous_sha256",
                Box::new(|c| c.internal.api_keys[0].previous_sha256 = Some("x".into())),
            ),
            (
                "internal.api_key.previous_sha256",
                Box::new(|c| {
                    c.internal.api_keys[0].previous_sha256 =
                        Some(c.internal.api_keys[0].sha256.clone())
                }),
            ),
            (
                "internal.api_key.fruizioni",
                Box::new(|c| c.internal.api_keys[0].fruizioni.clear()),
            ),
            (
                "internal.api_key.fruizioni",
                Box::new(|c| c.internal.api_keys[0].fruizioni = vec!["inps-iseee".into()]),
            ),
            (
                "fruizioni.name",
                Box::new(|c| c.fruizioni[0].name = "Has Space".into()),
            ),
            (
                "fruizioni.name",
                Box::new(|c| {
                    let f = c.fruizioni[0].clone();
                    c.fruizioni.push(f)
                }),
            ),
            (
                "fruizioni.remote_base_url",
                Box::new(|c| c.fruizioni[0].remote_base_url = "ftp://x".into()),
            ),
            (
                "fruizioni.purpose_id",
                Box::new(|c| c.fruizioni[0].purpose_id = "nope".into()),
            ),
            ("fruizioni.client_id", Box::new(|c| c.client = None)),
            (
                "fruizioni.key_file",
                Box::new(|c| {
                    c.fruizioni[0].client_id = Some("8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into())
                }),
            ),
            (
                "fruizioni.timeout_ms",
                Box::new(|c| c.fruizioni[0].timeout_ms = 0),
            ),
            (
                "fruizioni.max_concurrency",
                Box::new(|c| c.fruizioni[0].max_concurrency = 0),
            ),
            (
                "fruizioni.max_response_bytes",
                Box::new(|c| c.fruizioni[0].max_response_bytes = 0),
            ),
            (
                "fruizioni.max_response_bytes",
                Box::new(|c| c.fruizioni[0].max_response_bytes = MAX_RESPONSE_BYTES_CEILING + 1),
            ),
            (
                "voucher_client.renew_margin_fraction",
                Box::new(|c| c.voucher_client.renew_margin_fraction = 1.0),
            ),
            (
                "voucher_client.max_attempts",
                Box::new(|c| c.voucher_client.max_attempts = 0),
            ),
        ];
        for (key, break_it) in cases {
            let mut c = dev();
            with_fruizione(&mut c);
            break_it(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn fruizioni_modi_options_are_checked() {
        let modi = |c: &mut Config, patterns: &[&str]| {
            let f = &mut c.fruizioni[0];
            f.modi = patterns.iter().map(|p| p.to_string()).collect();
            f.audience = Some("https://api.example.gov.it/isee/v1".into());
        };
        for sound in [
            &["INTEGRITY_REST_02", "AUDIT_REST_02"][..],
            &["AUDIT_REST_01"],
            &["INTEGRITY_REST_02"],
        ] {
            let mut c = dev();
            with_fruizione(&mut c);
            modi(&mut c, sound);
            c.validate().unwrap_or_else(|e| panic!("{sound:?}: {e}"));
            assert_eq!(c.fruizioni[0].modi_patterns().len(), sound.len());
        }
        let mut c = dev();
        with_fruizione(&mut c);
        modi(&mut c, &["INTEGRITY_REST_01"]);
        c.fruizioni[0].signing_key_file = Some("k.pem".into());
        c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
        c.fruizioni[0].signing_algorithm = Some("ES256".into());
        c.fruizioni[0].verify_response = true;
        c.fruizioni[0].response_trust_file = Some("ca.pem".into());
        c.validate()
            .expect("INTEGRITY_REST_01 with its files validates");
        assert_eq!(
            c.fruizioni[0].modi_patterns(),
            vec![OutboundModiPattern::IntegrityRest01]
        );

        type Breakage = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, &str, Breakage)> = vec![
            (
                "fruizioni.modi",
                "ID_AUTH_REST_03",
                Box::new(move |c| modi(c, &["ID_AUTH_REST_03"])),
            ),
            (
                "fruizioni.modi",
                "integrity_rest_02",
                Box::new(move |c| modi(c, &["integrity_rest_02"])),
            ),
            (
                "fruizioni.modi",
                "twice",
                Box::new(move |c| modi(c, &["AUDIT_REST_02", "AUDIT_REST_02"])),
            ),
            (
                "fruizioni.modi",
                "exclude",
                Box::new(move |c| modi(c, &["INTEGRITY_REST_01", "INTEGRITY_REST_02"])),
            ),
            (
                "fruizioni.modi",
                "exclude",
                Box::new(move |c| modi(c, &["AUDIT_REST_01", "AUDIT_REST_02"])),
            ),
            (
                "fruizioni.audience",
                "required",
                Box::new(move |c| {
                    modi(c, &["INTEGRITY_REST_02"]);
                    c.fruizioni[0].audience = None;
                }),
            ),
            (
                "fruizioni.audience",
                "required",
                Box::new(move |c| {
                    modi(c, &["AUDIT_REST_01"]);
                    c.fruizioni[0].audience = Some(" ".into());
                }),
            ),
            (
                "fruizioni.signing_key_file",
                "INTEGRITY_REST_01",
                Box::new(move |c| {
                    modi(c, &["INTEGRITY_REST_01"]);
                    c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
                }),
            ),
            (
                "fruizioni.signing_chain_file",
                "INTEGRITY_REST_01",
                Box::new(move |c| {
                    modi(c, &["INTEGRITY_REST_01"]);
                    c.fruizioni[0].signing_key_file = Some("k.pem".into());
                }),
            ),
            (
                "fruizioni.signing_key_file",
                "only used",
                Box::new(move |c| {
                    modi(c, &["INTEGRITY_REST_02"]);
                    c.fruizioni[0].signing_key_file = Some("k.pem".into());
                }),
            ),
            (
                "fruizioni.signing_algorithm",
                "HS256",
                Box::new(move |c| {
                    modi(c, &["INTEGRITY_REST_01"]);
                    c.fruizioni[0].signing_key_file = Some("k.pem".into());
                    c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
                    c.fruizioni[0].signing_algorithm = Some("HS256".into());
                }),
            ),
            (
                "fruizioni.response_trust_file",
                "verify_response",
                Box::new(|c| c.fruizioni[0].verify_response = true),
            ),
            (
                "fruizioni.verify_response",
                "response_trust_file",
                Box::new(|c| c.fruizioni[0].response_trust_file = Some("ca.pem".into())),
            ),
        ];
        for (key, detail, break_it) in cases {
            let mut c = dev();
            with_fruizione(&mut c);
            break_it(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
            assert!(err.contains(detail), "{key}: {err}");
            assert!(err.contains("inps-isee"), "{key}: {err}");
        }
    }

    #[test]
    fn commented_modi_fruizione_of_the_collaudo_example_validates() {
        let text = include_str!("../../config/collaudo.example.toml");
        let start = text
            .find("# [[fruizioni]]\n# name = \"ente-tributi\"")
            .expect("the example has a commented ModI fruizione");
        // Uncomment the block's own lines, keep its commented alternatives commented.
        let block: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::from_toml_str(&format!("{text}\n{block}")).expect("parses");
        c.validate().expect("validates");
        let f = c
            .fruizioni
            .iter()
            .find(|f| f.name == "ente-tributi")
            .expect("uncommented");
        assert_eq!(
            f.modi_patterns(),
            vec![
                OutboundModiPattern::IntegrityRest02,
                OutboundModiPattern::AuditRest02
            ]
        );
        assert!(f.audience.is_some());
    }

    #[test]
    fn api_keys_hold_only_digests() {
        let entry = ApiKeyConfig::for_key(
            "ufficio-tributi",
            " secret-key-secret-key-secret-key-1 ",
            vec!["inps".into()],
        );
        assert_eq!(
            entry.sha256,
            // printf %s secret-key-secret-key-secret-key-1 | sha256sum
            "c18bd81bf8ee4ae440d48c2f4d10d7271767abe4b7c67f2920fabbd1ad46e4d2"
        );
        let mut c = dev();
        c.internal.api_keys = vec![entry];
        assert!(!format!("{c:?}").contains("secret-key"));
    }

    #[test]
    fn fruizioni_parse_from_toml() {
        let toml = format!(
            "{DEV_TOML}\n[[internal.api_key]]\nname = \"ufficio-isee\"\nsha256 = \"{}\"\nfruizioni = [\"inps\"]\n\n[[fruizioni]]\nname = \"inps\"\nremote_base_url = \"https://x.gov.it/v1\"\npurpose_id = \"2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01\"\nmax_concurrency = 3\n",
            "ab".repeat(32)
        );
        let c = Config::from_toml_str(&toml).expect("parses");
        assert_eq!(c.fruizioni.len(), 1);
        assert_eq!(c.internal.api_keys[0].name, "ufficio-isee");
        assert_eq!(c.internal.api_keys[0].fruizioni, ["inps"]);
        assert_eq!(c.fruizioni[0].max_response_bytes, 1024 * 1024);
        assert_eq!(c.fruizioni[0].max_concurrency, 3);
        assert_eq!(c.fruizioni[0].timeout_ms, 10_000);
        assert_eq!(c.voucher_client.renew_margin_fraction, 0.2);
        let bad = toml.replace("max_concurrency = 3", "max_concurency = 3");
        let err = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("max_concurency"), "{err}");
        // The old anonymous list is refused by name, not silently ignored.
        let old = format!(
            "{DEV_TOML}\n[internal]\napi_keys = [\"{}\"]\n",
            "k".repeat(32)
        );
        let err = Config::from_toml_str(&old).unwrap_err().to_string();
        assert!(err.contains("api_keys"), "{err}");
        // DPoP is off unless asked for, and a string is not a yes.
        assert!(!c.fruizioni[0].dpop);
        let dpop = Config::from_toml_str(&format!("{toml}dpop = true\n")).expect("parses");
        assert!(dpop.fruizioni[0].dpop);
        let err = Config::from_toml_str(&format!("{toml}dpop = \"yes\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dpop"), "{err}");
    }

    #[test]
    fn modi_patterns_parse_per_eservice() {
        let toml = DEV_TOML
            .replace(
                "request_integrity = \"none\"   #",
                "request_integrity = \"integrity_rest_02\"   #",
            )
            .replace(
                "audit = \"none\"               #",
                "audit = \"audit_rest_02\" #",
            );
        let c = Config::from_toml_str(&toml).unwrap();
        assert_eq!(
            c.eservices.anagrafe.modi,
            EserviceModiConfig {
                sign_responses: true,
                request_integrity: RequestIntegrity::IntegrityRest02,
                audit: AuditPattern::AuditRest02,
            }
        );
        assert_eq!(c.eservices.tributi.modi, EserviceModiConfig::default());
        assert_eq!(c.modi.algorithm, SignatureAlgorithm::RS256);
        assert_eq!(c.modi.signature_lifetime_secs, 60);

        let bad = DEV_TOML.replace(
            "request_integrity = \"none\"   #",
            "request_integrity = \"integrity_rest_03\"   #",
        );
        let err = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("request_integrity"), "{err}");
        let bad = DEV_TOML.replace("algorithm = \"RS256\"", "algorithm = \"HS256\"");
        let err = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("algorithm"), "{err}");
        let bad = DEV_TOML.replace("sign_responses = true", "sign_responses = \"yes\"");
        let err = Config::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("sign_responses"), "{err}");
    }

    #[test]
    fn api_client_is_both_keys_or_neither() {
        let err = |c: Config| c.validate().unwrap_err().to_string();
        let mut c = dev();
        c.pdnd.api_client_id = None;
        c.pdnd.api_key_file = None;
        c.validate().expect("valid without an API client");
        let mut c = dev();
        c.pdnd.api_client_id = Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into());
        c.pdnd.api_key_file = Some("api-client-key.pem".into());
        c.validate().expect("valid with both");
        let mut c = dev();
        c.pdnd.api_client_id = Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into());
        c.pdnd.api_key_file = None;
        assert!(err(c).contains("`pdnd.api_key_file`"));
        let mut c = dev();
        c.pdnd.api_client_id = None;
        c.pdnd.api_key_file = Some("api-client-key.pem".into());
        assert!(err(c).contains("`pdnd.api_client_id`"));
        let mut c = dev();
        c.pdnd.api_client_id = Some("not-a-uuid".into());
        c.pdnd.api_key_file = Some("api-client-key.pem".into());
        let e = err(c);
        assert!(
            e.contains("`pdnd.api_client_id`") && e.contains("UUID"),
            "{e}"
        );
        let toml = DEV_TOML.replace(
            "[pdnd]\n",
            "[pdnd]\napi_client_id = \"a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f\"\napi_key_file = \"k.pem\"\n",
        );
        let c = Config::from_toml_str(&toml).unwrap();
        assert_eq!(
            c.pdnd.api_client_id.as_deref(),
            Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f")
        );
        assert_eq!(c.pdnd.api_key_file, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn modi_validation_names_the_key() {
        let err = |c: Config| c.validate().unwrap_err().to_string();
        let mut c = dev();
        c.modi.signing_key_file = None;
        assert!(err(c).contains("modi.signing_key_file"));
        let mut c = dev();
        c.modi.certificate_chain_file = None;
        assert!(err(c).contains("modi.certificate_chain_file"));
        let mut c = dev();
        c.modi.issuer = " ".into();
        assert!(err(c).contains("modi.issuer"));
        // Nobody signs: no signing material needed.
        let mut c = dev();
        c.modi.signing_key_file = None;
        c.modi.certificate_chain_file = None;
        c.eservices.anagrafe.modi.sign_responses = false;
        c.eservices.tributi.modi.sign_responses = false;
        c.validate().expect("valid without signing material");
        let mut c = dev();
        c.eservices.tributi.modi.request_integrity = RequestIntegrity::IntegrityRest01;
        let e = err(c);
        assert!(
            e.contains("modi.trust_store_file") && e.contains("eservices.tributi.modi"),
            "{e}"
        );
        let mut c = dev();
        c.eservices.anagrafe.modi.audit = AuditPattern::AuditRest01;
        c.pdnd.keys_url = None;
        let e = err(c);
        assert!(
            e.contains("pdnd.keys_url") && e.contains("eservices.anagrafe.modi"),
            "{e}"
        );
        let mut c = dev();
        c.modi.signature_lifetime_secs = 0;
        assert!(err(c).contains("modi.signature_lifetime_secs"));
        let mut c = dev();
        c.modi.max_peer_token_lifetime_secs = 86_400;
        assert!(err(c).contains("modi.max_peer_token_lifetime_secs"));
        let mut c = dev();
        c.modi.replay_cache_capacity = 0;
        assert!(err(c).contains("modi.replay_cache_capacity"));
    }

    #[test]
    fn modi_bounds_have_safe_defaults_and_refuse_hostile_values() {
        let err = |c: Config| c.validate().unwrap_err().to_string();
        let c = dev();
        assert_eq!(c.modi.replay_cache_per_client, 10_000);
        assert_eq!(c.modi.unknown_kid_ttl_secs, 300);
        assert_eq!(c.modi.kid_lookups_per_minute, 60);
        assert_eq!(c.server.body_read_timeout_ms, 5_000);
        // A per-client share larger than the whole memory means no share at all.
        let mut c = dev();
        c.modi.replay_cache_capacity = 1_000;
        c.modi.replay_cache_per_client = 1_001;
        assert!(err(c).contains("modi.replay_cache_per_client"));
        let mut c = dev();
        c.modi.replay_cache_per_client = 0;
        assert!(err(c).contains("modi.replay_cache_per_client"));
        let mut c = dev();
        c.modi.unknown_kid_ttl_secs = 0;
        assert!(err(c).contains("modi.unknown_kid_ttl_secs"));
        let mut c = dev();
        c.modi.kid_lookups_per_minute = 0;
        assert!(err(c).contains("modi.kid_lookups_per_minute"));
        let mut c = dev();
        c.modi.kid_lookups_per_minute = 1_000_000;
        assert!(err(c).contains("modi.kid_lookups_per_minute"));
        // No body deadline, or one that holds a connection for minutes.
        for ms in [0, 600_000] {
            let mut c = dev();
            c.server.body_read_timeout_ms = ms;
            assert!(err(c).contains("server.body_read_timeout_ms"), "{ms}");
        }
    }

    #[test]
    fn voucher_checks_defaults_and_hostile_values() {
        let c = dev();
        assert_eq!(c.pdnd.voucher_max_lifetime_secs, 86_400);
        assert_eq!(c.pdnd.jwks_max_backoff_secs, 300);
        assert_eq!(c.pdnd.jwks_fetch_timeout_ms, 3_000);
        c.validate().unwrap();
        type Tweak = fn(&mut Config);
        let cases: [(&str, Tweak); 11] = [
            ("pdnd.voucher_max_lifetime_secs", |c| {
                c.pdnd.voucher_max_lifetime_secs = 0
            }),
            ("pdnd.voucher_max_lifetime_secs", |c| {
                c.pdnd.voucher_max_lifetime_secs = -600
            }),
            ("pdnd.voucher_max_lifetime_secs", |c| {
                c.pdnd.voucher_max_lifetime_secs = 30 * 86_400
            }),
            ("dev.voucher_lifetime_secs", |c| {
                c.pdnd.voucher_max_lifetime_secs = 300
            }),
            ("pdnd.jwks_min_refetch_interval_secs", |c| {
                c.pdnd.jwks_min_refetch_interval_secs = 0
            }),
            ("pdnd.jwks_max_backoff_secs", |c| {
                c.pdnd.jwks_max_backoff_secs = 5
            }),
            ("pdnd.jwks_max_backoff_secs", |c| {
                c.pdnd.jwks_max_backoff_secs = 86_400
            }),
            ("pdnd.jwks_fetch_timeout_ms", |c| {
                c.pdnd.jwks_fetch_timeout_ms = 0
            }),
            ("pdnd.jwks_fetch_timeout_ms", |c| {
                c.pdnd.jwks_fetch_timeout_ms = 600_000
            }),
            ("comune.producer_id", |c| {
                c.comune.producer_id = Some(" ".into())
            }),
            ("eservices.tributi.descriptor_id", |c| {
                c.eservices.tributi.descriptor_id = Some(String::new())
            }),
        ];
        for (key, tweak) in cases {
            let mut c = dev();
            tweak(&mut c);
            let e = c.validate().expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    // The closure's error type is figment's own, fixed by `Jail::expect_with`.
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
