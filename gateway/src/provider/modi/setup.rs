//! The ModI stages' set-up, once at start: our signing material, the CA trust store for
//! callers' `x5c` and the PDND key source (with its API voucher), each loaded only when some
//! e-service needs it, so a bad file stops the start and names the configuration key at fault.

use crate::config::{Config, RequestIntegrity};
use crate::modi::{ModiError, SigningMaterial, TrustStore};
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd_client::keys::{ApiVoucher, KeyLookupBounds, PdndKeySource};
use crate::pdnd_client::token_client::TokenClient;
use crate::pdnd_client::voucher_cache::{CachePolicy, RetryPolicy, SystemClock, VoucherSpec};
use crate::state::replay::ReplayMemory;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Why the ModI stages could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ModiSetupError {
    #[error("configuration key `{key}`: {source}")]
    Material {
        key: &'static str,
        source: ModiError,
    },
    #[error("configuration key `{0}` must be set")]
    Missing(&'static str),
}

/// Our response-signing identity.
pub struct ResponseSigner {
    pub material: SigningMaterial,
    /// `iss` and `sub` of our signatures.
    pub issuer: String,
    pub lifetime_secs: i64,
}

/// What both ModI stages of every e-service share.
pub struct ModiShared {
    /// `None` when no e-service signs responses.
    pub signer: Option<ResponseSigner>,
    /// CAs for callers' `x5c` (INTEGRITY_REST_01); `None` when none requires it.
    pub trust: Option<TrustStore>,
    /// PDND keys by kid; `None` when `pdnd.keys_url` is unset.
    pub keys: Option<Arc<PdndKeySource>>,
    /// jtis of callers' signatures and tracking evidence (one memory for both), in this
    /// process or in the store the replicas share (`[state]`).
    pub replay: Arc<ReplayMemory>,
    pub leeway_secs: i64,
    pub max_peer_lifetime_secs: i64,
    /// How long the request body may take to arrive (then 408).
    pub body_read_timeout: Duration,
}

impl ModiShared {
    /// Loads key, chain and trust store named in `[modi]` (only what some e-service needs)
    /// and checks them together; a bad file stops the start with the key at fault.
    pub fn from_config(
        config: &Config,
        http: reqwest::Client,
        replay: Arc<ReplayMemory>,
    ) -> Result<Self, ModiSetupError> {
        let services = [
            &config.eservices.anagrafe.modi,
            &config.eservices.tributi.modi,
        ];
        let m = &config.modi;
        let signer = if services.iter().any(|s| s.sign_responses) {
            let key = m
                .signing_key_file
                .as_deref()
                .ok_or(ModiSetupError::Missing("modi.signing_key_file"))?;
            let chain = m
                .certificate_chain_file
                .as_deref()
                .ok_or(ModiSetupError::Missing("modi.certificate_chain_file"))?;
            let material = SigningMaterial::from_pem_files(key, chain, m.algorithm.into())
                .map_err(|source| ModiSetupError::Material {
                    key: "modi.signing_key_file",
                    source,
                })?;
            if let Some(not_after) = material
                .chain_der()
                .first()
                .and_then(|der| crate::telemetry::metrics::certificate_not_after(der))
            {
                crate::telemetry::metrics::watch_expiry("modi_signing", not_after);
            }
            Some(ResponseSigner {
                material,
                issuer: m.issuer.clone(),
                lifetime_secs: m.signature_lifetime_secs,
            })
        } else {
            None
        };
        let trust = if services
            .iter()
            .any(|s| s.request_integrity == RequestIntegrity::IntegrityRest01)
        {
            let path = m
                .trust_store_file
                .as_deref()
                .ok_or(ModiSetupError::Missing("modi.trust_store_file"))?;
            let pem = std::fs::read(path).map_err(|e| ModiSetupError::Material {
                key: "modi.trust_store_file",
                source: ModiError::KeyMaterial(format!("{}: {e}", path.display())),
            })?;
            Some(
                TrustStore::from_pem(&pem).map_err(|source| ModiSetupError::Material {
                    key: "modi.trust_store_file",
                    source,
                })?,
            )
        } else {
            None
        };
        let voucher = api_voucher(config, http.clone())?;
        let bounds = KeyLookupBounds {
            unknown_kid_ttl: Duration::from_secs(m.unknown_kid_ttl_secs),
            lookups_per_minute: NonZeroU32::new(m.kid_lookups_per_minute)
                .ok_or(ModiSetupError::Missing("modi.kid_lookups_per_minute"))?,
        };
        let keys = config.pdnd.keys_url.as_deref().map(|url| {
            let source = PdndKeySource::bounded(
                url,
                http,
                Duration::from_secs(m.key_cache_ttl_secs),
                bounds,
            );
            Arc::new(match voucher {
                Some(v) => source.with_api_voucher(v),
                None => source,
            })
        });
        Ok(ModiShared {
            signer,
            trust,
            keys,
            replay,
            leeway_secs: config.pdnd.leeway_secs,
            body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
            max_peer_lifetime_secs: m.max_peer_token_lifetime_secs,
        })
    }
}

/// The API Interop voucher of `[pdnd] api_client_id` / `api_key_file`, when configured: same
/// token endpoint and assertion audience as every voucher, no purpose, the fruizioni's retry
/// policy.
fn api_voucher(
    config: &Config,
    http: reqwest::Client,
) -> Result<Option<ApiVoucher>, ModiSetupError> {
    let (Some(client_id), Some(key_file)) = (&config.pdnd.api_client_id, &config.pdnd.api_key_file)
    else {
        return Ok(None);
    };
    let bad_key = |reason: String| ModiSetupError::Material {
        key: "pdnd.api_key_file",
        source: ModiError::KeyMaterial(format!("{}: {reason}", key_file.display())),
    };
    let pem = std::fs::read_to_string(key_file).map_err(|e| bad_key(e.to_string()))?;
    let key = RsaPrivateKey::from_pem(&pem).map_err(|e| bad_key(e.to_string()))?;
    let vc = &config.voucher_client;
    let policy = CachePolicy {
        renew_margin_fraction: vc.renew_margin_fraction,
        retry: RetryPolicy {
            max_attempts: vc.max_attempts,
            max_elapsed: Duration::from_millis(vc.max_retry_ms),
            initial_backoff: Duration::from_millis(vc.initial_backoff_ms),
            max_backoff: Duration::from_millis(vc.max_backoff_ms),
        },
    };
    let spec = VoucherSpec {
        builder: ClientAssertionBuilder {
            client_id: client_id.clone(),
            audience: config.pdnd.client_assertion_audience.clone(),
            purpose_id: None,
            digest: None,
            lifetime_secs: config
                .client
                .as_ref()
                .map_or(300, |c| c.assertion_lifetime_secs),
        },
        key: Arc::new(key),
        dpop: None,
    };
    Ok(Some(ApiVoucher::new(
        TokenClient::new(http, config.pdnd.token_endpoint.clone()),
        Arc::new(SystemClock),
        policy,
        spec,
    )))
}
