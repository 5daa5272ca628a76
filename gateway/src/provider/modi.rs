//! The ModI security patterns in the inbound pipeline, per e-service as configured.
//!
//! Two stages share one [`ModiShared`] (our signing material, the CA trust store, the PDND key
//! source and the replay memory):
//!
//! - [`ResponseSigning`] (modi-out) sits right inside the voucher stage: every answer to a caller
//!   whose voucher was accepted gets `Digest` and `Agid-JWT-Signature` (INTEGRITY_REST_01, our
//!   `x5c`, `aud` = the caller's clientId), purpose refusals and ModI refusals included, since
//!   those are answers the caller may need to prove too. 204/304 are not signed (no body).
//! - [`RequestChecks`] (modi-in) sits inside the purpose stage: when the e-service requires
//!   it, the request's `Digest` + `Agid-JWT-Signature` (INTEGRITY_REST_01 by `x5c`, _02 by PDND
//!   `kid`) and its `Agid-JWT-TrackingEvidence` (AUDIT_REST_01, and the voucher binding of
//!   AUDIT_REST_02) are verified, their jtis recorded against replay, the body put back for the
//!   handler and the tracking claims handed to the audit record ([`TrackingInfo`]).
//!
//! What a caller can make these stages hold or spend is bounded: the body is read within
//! `server.body_read_timeout_ms` (then 408), one client holds at most
//! `modi.replay_cache_per_client` jtis of the replay memory (then 429 for it alone), and kids
//! not in the key cache are looked up on PDND at most `modi.kid_lookups_per_minute` times a
//! minute (then 503 with Retry-After, nothing sent), a 404 being remembered for
//! `modi.unknown_kid_ttl_secs`.
//!
//! The protocol rules live in [`crate::modi`]; this module only moves bytes between HTTP and
//! those functions, supplies `now` and fetches PDND keys. The caller holds a valid voucher, so
//! refusals say precisely what was wrong (a PA integrating with us needs that); they are always
//! problem+json with the status of [`ModiError::http_status`].

use super::audit::TrackingInfo;
use super::request_id;
use crate::config::{AuditPattern, Config, EserviceModiConfig, RequestIntegrity};
use crate::modi::{
    self, KeySource, KidResolver, ModiError, ReplayScope, SignatureClaims, SignatureExpectations,
    SigningMaterial, TrustStore, VerifiedSignature, AGID_JWT_SIGNATURE, AGID_JWT_TRACKING_EVIDENCE,
};
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd::voucher::Voucher;
use crate::pdnd_client::token_client::TokenClient;
use crate::pdnd_client::voucher_cache::{
    CachePolicy, Clock, RetryPolicy, SystemClock, VoucherCache, VoucherFetchError, VoucherSpec,
};
use crate::problem::Problem;
use crate::state::replay::ReplayMemory;
use actix_web::body::{BodyStream, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, HttpResponse};
use eservices::Eservice;
use jsonwebtoken::jwk::Jwk;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body read for verification: the handlers' own limit.
pub const MAX_REQUEST_BODY: usize = eservices::MAX_BODY_BYTES;
/// Largest response body buffered for signing; our answers are a few KiB.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;
/// Longest kid looked up; PDND kids are 43-character thumbprints.
const MAX_KID_LEN: usize = 128;

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

/// The voucher the PDND API asks of its callers: one of the comune's "API Interop" (M2M)
/// client, requested without `purposeId`.
///
/// It lives in a [`VoucherCache`] of its own (cached, renewed ahead of expiry, one request at
/// a time). A voucher the API refuses although it has not expired (client revoked, key
/// rotated, authority restarted) is dropped by replacing that cache: only the first of the
/// callers that saw the refusal replaces it, the others find the new cache and share its one
/// request.
pub struct ApiVoucher {
    token: TokenClient,
    clock: Arc<dyn Clock>,
    policy: CachePolicy,
    spec: VoucherSpec,
    cache: std::sync::Mutex<Arc<VoucherCache>>,
}

impl ApiVoucher {
    pub fn new(
        token: TokenClient,
        clock: Arc<dyn Clock>,
        policy: CachePolicy,
        spec: VoucherSpec,
    ) -> Self {
        let cache = VoucherCache::new(token.clone(), clock.clone(), policy);
        ApiVoucher {
            token,
            clock,
            policy,
            spec,
            cache: std::sync::Mutex::new(cache),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Arc<VoucherCache>> {
        // Poisoning only means a panic elsewhere while swapping an Arc: the value is whole.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value to send, with the cache it came from (for [`Self::drop_from`]).
    pub async fn authorization(&self) -> Result<(String, Arc<VoucherCache>), VoucherFetchError> {
        let cache = self.cache().clone();
        let voucher = cache.get(&self.spec).await?;
        Ok((voucher.authorization(), cache))
    }

    /// Forgets the voucher obtained from `used`, unless another caller already did.
    pub fn drop_from(&self, used: &Arc<VoucherCache>) {
        let mut cache = self.cache();
        if Arc::ptr_eq(&cache, used) {
            *cache = VoucherCache::new(self.token.clone(), self.clock.clone(), self.policy);
        }
    }
}

/// How much a stream of kids nobody registered may cost: every such kid is a request to the
/// PDND API, spending the comune's quota there, so both the repeat and the rate are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLookupBounds {
    /// How long a kid the key service answered 404 for is remembered as unknown: long enough
    /// that one forged kid sent again and again is one request, short enough for a key just
    /// registered on PDND.
    pub unknown_kid_ttl: Duration,
    /// Lookups of uncached kids per minute, all callers together (a token bucket that holds
    /// as many, refilled evenly).
    pub lookups_per_minute: NonZeroU32,
}

impl Default for KeyLookupBounds {
    fn default() -> Self {
        KeyLookupBounds {
            unknown_kid_ttl: Duration::from_secs(300),
            lookups_per_minute: NonZeroU32::MIN.saturating_add(59),
        }
    }
}

/// Looks up a caller's PDND-registered key by kid (`GET {keys_url}/{kid}`), cached.
///
/// Found keys stay for the configured TTL, unknown kids for
/// [`KeyLookupBounds::unknown_kid_ttl`]; concurrent lookups of one kid share one request (moka).
/// A kid in neither cache needs a token of the lookup bucket
/// ([`KeyLookupBounds::lookups_per_minute`]); with none left the lookup fails at once with
/// [`ModiError::KeyLookupsThrottled`] (503 + Retry-After) and nothing is sent, so kids made up
/// per request cost PDND at most that rate. Cached kids never wait for the bucket. An
/// unreachable key service is not cached: the next request asks again. With an
/// [`ApiVoucher`] every request carries it as `Authorization` (PDND's API answers nothing
/// without one); a 401 drops it and the request is sent once more with a fresh one.
pub struct PdndKeySource {
    base_url: String,
    http: reqwest::Client,
    cache: moka::future::Cache<String, Option<Arc<Jwk>>>,
    lookups: governor::DefaultDirectRateLimiter,
    fetches: AtomicU64,
    voucher: Option<ApiVoucher>,
}

struct KidExpiry {
    known: Duration,
    unknown: Duration,
}

impl moka::Expiry<String, Option<Arc<Jwk>>> for KidExpiry {
    fn expire_after_create(
        &self,
        _kid: &String,
        value: &Option<Arc<Jwk>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.known
        } else {
            self.unknown
        })
    }
}

impl PdndKeySource {
    /// A key source keeping found keys for `ttl`, with the default [`KeyLookupBounds`].
    pub fn new(base_url: &str, http: reqwest::Client, ttl: Duration) -> Self {
        Self::bounded(base_url, http, ttl, KeyLookupBounds::default())
    }

    /// A key source keeping found keys for `ttl`, unknown kids and lookups as `bounds` says.
    pub fn bounded(
        base_url: &str,
        http: reqwest::Client,
        ttl: Duration,
        bounds: KeyLookupBounds,
    ) -> Self {
        PdndKeySource {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(KidExpiry {
                    known: ttl,
                    unknown: bounds.unknown_kid_ttl,
                })
                .build(),
            lookups: governor::RateLimiter::direct(governor::Quota::per_minute(
                bounds.lookups_per_minute,
            )),
            fetches: AtomicU64::new(0),
            voucher: None,
        }
    }

    /// Sends `voucher` with every lookup.
    pub fn with_api_voucher(mut self, voucher: ApiVoucher) -> Self {
        self.voucher = Some(voucher);
        self
    }

    /// Requests sent to the key service since start (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key registered under `kid`: `Ok(None)` when the key service does not know it,
    /// [`ModiError::KeyUnavailable`] when it cannot be asked.
    pub async fn lookup(&self, kid: &str) -> Result<Option<Arc<Jwk>>, ModiError> {
        // The kid comes from a token header and becomes a URL path segment: only the
        // characters of base64url thumbprints and UUIDs, so it cannot walk the path.
        if kid.is_empty()
            || kid.len() > MAX_KID_LEN
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(None);
        }
        self.cache
            .try_get_with(kid.to_owned(), self.fetch(kid))
            .await
            .map_err(|e| (*e).clone())
    }

    /// `GET url`, with the API voucher when there is one; a 401 is answered once by dropping
    /// the voucher and asking again with a fresh one.
    async fn send(&self, url: &str) -> Result<reqwest::Response, ModiError> {
        let unavailable = |reason: String| ModiError::KeyUnavailable(format!("{url}: {reason}"));
        let mut retried = false;
        loop {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let mut request = self.http.get(url);
            let mut used = None;
            if let Some(voucher) = &self.voucher {
                let (authorization, cache) = voucher
                    .authorization()
                    .await
                    .map_err(|e| unavailable(format!("no PDND API voucher: {e}")))?;
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
                used = Some(cache);
            }
            let response = request
                .send()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match (&self.voucher, used) {
                (Some(voucher), Some(cache))
                    if response.status() == reqwest::StatusCode::UNAUTHORIZED && !retried =>
                {
                    tracing::warn!(
                        url,
                        "the PDND API refused its voucher; asking for a new one"
                    );
                    voucher.drop_from(&cache);
                    retried = true;
                }
                _ => return Ok(response),
            }
        }
    }

    /// Takes a token of the lookup bucket, or says when the next one comes.
    fn admit(&self) -> Result<(), ModiError> {
        use governor::clock::Clock as _;
        self.lookups.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ModiError::KeyLookupsThrottled {
                retry_after_secs: wait.as_secs().saturating_add(1),
            }
        })
    }

    async fn fetch(&self, kid: &str) -> Result<Option<Arc<Jwk>>, ModiError> {
        // Only reached on a cache miss (moka runs this as the entry's initialiser).
        self.admit()?;
        let url = format!("{}/{kid}", self.base_url);
        let unavailable = |reason: String| ModiError::KeyUnavailable(format!("{url}: {reason}"));
        let response = self.send(&url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let jwk = parse_key_answer(&bytes, kid).map_err(unavailable)?;
        Ok(Some(Arc::new(jwk)))
    }
}

/// The body of a PDND key lookup for `kid`: a bare JWK, or one wrapped as `{"key": {...}}` as
/// some PDND API versions answer, whose own `kid` (when it has one) is the one asked for.
pub fn parse_key_answer(bytes: &[u8], kid: &str) -> Result<Jwk, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let jwk_value = match value.get("key") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => value,
    };
    let jwk: Jwk = serde_json::from_value(jwk_value).map_err(|e| format!("not a JWK: {e}"))?;
    if jwk.common.key_id.as_deref().is_some_and(|k| k != kid) {
        return Err(format!(
            "answered a key with another kid ({:?})",
            jwk.common.key_id
        ));
    }
    Ok(jwk)
}

/// The one key fetched for a token, handed to the synchronous verifier.
struct Prefetched {
    kid: Option<String>,
    jwk: Option<Arc<Jwk>>,
}

impl KidResolver for Prefetched {
    fn resolve(&self, kid: &str) -> Result<Option<Jwk>, ModiError> {
        match (&self.kid, &self.jwk) {
            (Some(k), Some(jwk)) if k == kid => Ok(Some(Jwk::clone(jwk))),
            _ => Ok(None),
        }
    }
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

/// One e-service's ModI configuration, used by both of its stages.
pub struct ModiStage {
    pub eservice: Eservice,
    /// The e-service's audiences: `aud` of callers' signatures must be one of them.
    pub audiences: Vec<String>,
    pub patterns: EserviceModiConfig,
    pub shared: Arc<ModiShared>,
}

/// modi-out: signs every answer (see the module documentation).
pub struct ResponseSigning(pub Arc<ModiStage>);

/// modi-in: verifies what the e-service requires of requests.
pub struct RequestChecks(pub Arc<ModiStage>);

/// Why a request was refused by the ModI checks.
#[derive(Debug, thiserror::Error)]
pub enum ModiRefusal {
    #[error("Agid-JWT-Signature: {0}")]
    Signature(ModiError),
    #[error("Agid-JWT-Signature: iss {found:?} is not the voucher's client id {expected}")]
    SignatureIssuer {
        expected: String,
        found: Option<String>,
    },
    #[error("Agid-JWT-TrackingEvidence: {0}")]
    Tracking(ModiError),
    #[error("the request body exceeds {MAX_REQUEST_BODY} bytes")]
    BodyTooLarge,
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u128),
    #[error("no validated voucher reached the ModI checks")]
    NoVoucher,
}

impl ModiRefusal {
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ModiRefusal::Signature(e) | ModiRefusal::Tracking(e) => e.http_status(),
            ModiRefusal::SignatureIssuer { .. } => 401,
            ModiRefusal::BodyTooLarge => 413,
            ModiRefusal::BodyUnreadable => 400,
            ModiRefusal::BodyTimeout(_) => 408,
            ModiRefusal::NoVoucher => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn response(&self, request_id: Option<&str>) -> HttpResponse {
        let status = self.status();
        let mut problem = match status {
            StatusCode::INTERNAL_SERVER_ERROR => Problem::internal(),
            StatusCode::SERVICE_UNAVAILABLE => Problem::unavailable(self.unavailable_detail()),
            _ => Problem::new(status).with_detail(self.to_string()),
        };
        if let Some(id) = request_id {
            problem = problem.with_instance(id);
        }
        let mut builder = problem.response_builder();
        if let Some(secs) = self.retry_after_secs() {
            builder.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        if matches!(self, ModiRefusal::BodyTimeout(_)) {
            // The rest of the body may still be on its way: this connection carries no
            // further request.
            builder.force_close();
        }
        problem.into_response_with(builder)
    }

    /// What a 503 tells the caller: which check could not run, not why (the log says why).
    fn unavailable_detail(&self) -> &'static str {
        match self {
            ModiRefusal::Signature(
                ModiError::ReplayStoreUnavailable(_) | ModiError::ReplayCacheFull,
            )
            | ModiRefusal::Tracking(
                ModiError::ReplayStoreUnavailable(_) | ModiError::ReplayCacheFull,
            ) => "The gateway cannot check this request for replay right now; retry later.",
            _ => "The PDND keys needed to check this request are unavailable; retry later.",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ModiRefusal::Signature(e) | ModiRefusal::Tracking(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}

/// The request's headers as (name, value) pairs; values that are not visible ASCII are left
/// out (no ModI header can be such a value, so a signed one would then be reported missing).
fn header_pairs(req: &ServiceRequest) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Reads the request body (bounded in size and in time), leaving it in the request for the
/// handler. A client that sends its headers and then trickles (or stalls) the body gets 408
/// after `deadline` instead of holding the connection and its task for as long as it likes.
async fn take_body(req: &mut ServiceRequest, deadline: Duration) -> Result<Bytes, ModiRefusal> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_REQUEST_BODY) {
        return Err(ModiRefusal::BodyTooLarge);
    }
    let payload = req.take_payload();
    let read = actix_web::body::to_bytes_limited(BodyStream::new(payload), MAX_REQUEST_BODY);
    let body = match tokio::time::timeout(deadline, read).await {
        Err(_) => return Err(ModiRefusal::BodyTimeout(deadline.as_millis())),
        Ok(Err(_)) => return Err(ModiRefusal::BodyTooLarge),
        Ok(Ok(Err(_))) => return Err(ModiRefusal::BodyUnreadable),
        Ok(Ok(Ok(body))) => body,
    };
    req.set_payload(Payload::from(body.clone()));
    Ok(body)
}

impl ModiStage {
    fn expectations(&self, audience: &str, now: i64) -> SignatureExpectations {
        SignatureExpectations {
            audience: audience.to_owned(),
            leeway_secs: self.shared.leeway_secs,
            now,
            max_lifetime_secs: Some(self.shared.max_peer_lifetime_secs),
        }
    }

    /// Runs `check` against each configured audience until one is not a wrong-audience
    /// failure (an e-service usually has one audience, so this is one call).
    fn for_audiences<T>(
        &self,
        now: i64,
        check: impl Fn(&SignatureExpectations) -> Result<T, ModiError>,
    ) -> Result<T, ModiError> {
        let mut last = Err(ModiError::MissingClaim("aud"));
        for audience in &self.audiences {
            last = check(&self.expectations(audience, now));
            if !matches!(last, Err(ModiError::WrongAudience { .. })) {
                return last;
            }
        }
        last
    }

    /// The key named by the token's `kid`, fetched before the synchronous verification.
    async fn prefetch(&self, jws: &str) -> Result<Prefetched, ModiError> {
        let kid = modi::unverified_kid(jws)?;
        let jwk = match (&kid, &self.shared.keys) {
            (Some(kid), Some(keys)) => keys.lookup(kid).await?,
            (Some(_), None) => {
                return Err(ModiError::KeyUnavailable(
                    "pdnd.keys_url is not configured".into(),
                ))
            }
            (None, _) => None,
        };
        Ok(Prefetched { kid, jwk })
    }

    async fn check_signature(
        &self,
        req: &mut ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<VerifiedSignature>, ModiRefusal> {
        let pattern = self.patterns.request_integrity;
        if pattern == RequestIntegrity::None {
            return Ok(None);
        }
        let body = take_body(req, self.shared.body_read_timeout).await?;
        let owned = header_pairs(req);
        let headers: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let jws = req
            .headers()
            .get(AGID_JWT_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let verified = match pattern {
            RequestIntegrity::IntegrityRest01 => {
                let trust = self.shared.trust.as_ref().ok_or_else(|| {
                    ModiRefusal::Signature(ModiError::KeyMaterial("no trust store loaded".into()))
                })?;
                self.for_audiences(now, |expect| {
                    modi::verify_request(&headers, &body, &KeySource::X5c(trust), expect)
                })
            }
            RequestIntegrity::IntegrityRest02 => {
                let resolver = match self.prefetch(&jws).await {
                    Ok(resolver) => resolver,
                    // No header at all: let the verifier say so.
                    Err(ModiError::Malformed { .. }) if jws.is_empty() => Prefetched {
                        kid: None,
                        jwk: None,
                    },
                    Err(e) => return Err(ModiRefusal::Signature(e)),
                };
                self.for_audiences(now, |expect| {
                    modi::verify_request(&headers, &body, &KeySource::Kid(&resolver), expect)
                })
            }
            RequestIntegrity::None => return Ok(None),
        }
        .map_err(ModiRefusal::Signature)?;
        if pattern == RequestIntegrity::IntegrityRest02
            && verified.iss.as_deref() != Some(voucher.client_id())
        {
            return Err(ModiRefusal::SignatureIssuer {
                expected: voucher.client_id().to_owned(),
                found: verified.iss.clone(),
            });
        }
        Ok(Some(verified))
    }

    async fn check_tracking(
        &self,
        req: &ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<modi::TrackingEvidence>, ModiRefusal> {
        let pattern = self.patterns.audit;
        if pattern == AuditPattern::None {
            return Ok(None);
        }
        let jws = req
            .headers()
            .get(AGID_JWT_TRACKING_EVIDENCE)
            .ok_or_else(|| {
                ModiRefusal::Tracking(ModiError::MissingHeader(AGID_JWT_TRACKING_EVIDENCE.into()))
            })?
            .to_str()
            .map_err(|_| {
                ModiRefusal::Tracking(ModiError::Malformed {
                    what: "header",
                    reason: "not visible ASCII".into(),
                })
            })?
            .trim()
            .to_owned();
        let resolver = self.prefetch(&jws).await.map_err(ModiRefusal::Tracking)?;
        let evidence = self
            .for_audiences(now, |expect| {
                modi::verify_tracking_evidence(&jws, &resolver, expect)
            })
            .map_err(ModiRefusal::Tracking)?;
        modi::check_voucher_identity(&evidence, voucher.client_id(), voucher.purpose_id())
            .map_err(ModiRefusal::Tracking)?;
        if pattern == AuditPattern::AuditRest02 {
            let bound = voucher
                .digest()
                .filter(|d| d.alg == "SHA256")
                .map(|d| d.value.as_str());
            modi::check_voucher_binding(&jws, bound).map_err(ModiRefusal::Tracking)?;
        }
        Ok(Some(evidence))
    }

    /// Every check, then the replay memory: a request refused for another reason does not
    /// consume its jtis.
    async fn check(
        &self,
        req: &mut ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<TrackingInfo>, ModiRefusal> {
        let signature = self.check_signature(req, voucher, now).await?;
        let evidence = self.check_tracking(req, voucher, now).await?;
        let replay = self.shared.replay.as_ref();
        // Counted against the voucher's client: the identity PDND vouches for, which every
        // request here has, whichever key signed the ModI tokens.
        let client = Some(voucher.client_id());
        if let Some(s) = &signature {
            replay
                .store_jti(ReplayScope::Modi, client, &s.jti, s.replay_expires_at, now)
                .await
                .map_err(ModiRefusal::Signature)?;
        }
        if let Some(e) = &evidence {
            replay
                .store_jti(ReplayScope::Modi, client, &e.jti, e.replay_expires_at, now)
                .await
                .map_err(ModiRefusal::Tracking)?;
        }
        Ok(evidence.map(|e| TrackingInfo {
            user_id: Some(e.user_id),
            user_location: Some(e.user_location),
            loa: Some(e.loa),
        }))
    }
}

impl RequestChecks {
    pub async fn run(
        self: Arc<Self>,
        mut req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let stage = &self.0;
        if stage.patterns.request_integrity == RequestIntegrity::None
            && stage.patterns.audit == AuditPattern::None
        {
            return next.call(req).await;
        }
        let request_id = request_id::of(&req);
        let result = match super::voucher::of(&req) {
            Some(voucher) => stage.check(&mut req, &voucher, super::voucher::now()).await,
            None => Err(ModiRefusal::NoVoucher),
        };
        match result {
            Ok(tracking) => {
                if let Some(tracking) = tracking {
                    req.extensions_mut().insert(tracking);
                }
                next.call(req).await
            }
            Err(refusal) => {
                if refusal.status().is_server_error() {
                    tracing::error!(request_id, eservice = stage.eservice.id(), reason = %refusal, "ModI checks could not run");
                } else {
                    tracing::info!(request_id, eservice = stage.eservice.id(), reason = %refusal, "ModI refused the request");
                }
                Ok(req.into_response(refusal.response(request_id.as_deref())))
            }
        }
    }
}

impl ResponseSigning {
    pub async fn run(
        self: Arc<Self>,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let stage = &self.0;
        let signer = match (&stage.shared.signer, stage.patterns.sign_responses) {
            (Some(signer), true) => signer,
            _ => return next.call(req).await,
        };
        let Some(voucher) = super::voucher::of(&req) else {
            // Only reachable if the stage order changes: nobody to address the signature to.
            return next.call(req).await;
        };
        let res = next.call(req).await?;
        if !modi::is_signable_status(res.status().as_u16()) {
            return Ok(res);
        }
        let request_id = request_id::of(res.request());
        match sign(res, signer, voucher.client_id(), super::voucher::now()).await {
            Ok(signed) => Ok(signed),
            Err((req, reason)) => {
                // An unsigned answer would be refused by a careful receiver anyway; say so.
                tracing::error!(request_id, eservice = stage.eservice.id(), reason = %reason, "response not signed; answering 500");
                let mut problem = Problem::internal();
                if let Some(id) = &request_id {
                    problem = problem.with_instance(id);
                }
                Ok(ServiceResponse::new(req, problem.into_response()))
            }
        }
    }
}

/// Buffers the body, computes `Digest` and signs it with the `Content-Type` and
/// `Content-Encoding` exactly as they will be sent. The body bytes are not changed.
async fn sign(
    res: ServiceResponse<BoxBody>,
    signer: &ResponseSigner,
    audience: &str,
    now: i64,
) -> Result<ServiceResponse<BoxBody>, (actix_web::HttpRequest, String)> {
    let (req, res) = res.into_parts();
    let (mut res, body) = res.into_parts();
    let body = match actix_web::body::to_bytes_limited(body, MAX_RESPONSE_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err((req, format!("response body unreadable: {e}"))),
        Err(_) => return Err((req, format!("response body over {MAX_RESPONSE_BODY} bytes"))),
    };
    let header = |name: &HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(&CONTENT_TYPE);
    let content_encoding = header(&CONTENT_ENCODING);
    let claims = SignatureClaims {
        iss: signer.issuer.clone(),
        sub: signer.issuer.clone(),
        aud: audience.to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        nbf: now,
        exp: now + signer.lifetime_secs,
    };
    let signature = match modi::sign_response(
        res.status().as_u16(),
        &signer.material,
        &claims,
        content_type.as_deref(),
        content_encoding.as_deref(),
        &body,
    ) {
        Ok(Some(signature)) => signature,
        Ok(None) => {
            return Ok(ServiceResponse::new(req, res.set_body(BoxBody::new(body))));
        }
        Err(e) => return Err((req, e.to_string())),
    };
    for (name, value) in [
        (modi::DIGEST, signature.digest),
        (AGID_JWT_SIGNATURE, signature.agid_jwt_signature),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                res.headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
            Err(e) => return Err((req, format!("{name} header: {e}"))),
        }
    }
    let res = res.set_body(body.boxed());
    Ok(ServiceResponse::new(req, res))
}

impl super::Stage for ResponseSigning {
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}

impl super::Stage for RequestChecks {
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpServer};
    use std::sync::atomic::AtomicUsize;

    /// A key service answering one kid, counting the requests it gets.
    async fn key_service(hits: Arc<AtomicUsize>) -> (String, actix_web::dev::ServerHandle) {
        let jwk = serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "known-kid",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "e": "AQAB",
        });
        let server = HttpServer::new(move || {
            let hits = hits.clone();
            let jwk = jwk.clone();
            App::new().route(
                "/keys/{kid}",
                web::get().to(move |kid: web::Path<String>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let found = (kid.as_str() == "known-kid").then(|| jwk.clone());
                    async move {
                        match found {
                            Some(jwk) => HttpResponse::Ok().json(serde_json::json!({ "key": jwk })),
                            None => HttpResponse::NotFound().finish(),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        (format!("http://{addr}/keys"), handle)
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_unknown_kids_remembered() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (url, handle) = key_service(hits.clone()).await;
        let source = PdndKeySource::new(&url, reqwest::Client::new(), Duration::from_secs(60));

        let first = source.lookup("known-kid").await.unwrap().expect("known");
        assert_eq!(first.common.key_id.as_deref(), Some("known-kid"));
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the second lookup is cached"
        );

        assert!(source.lookup("unknown-kid").await.unwrap().is_none());
        assert!(source.lookup("unknown-kid").await.unwrap().is_none());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "an unknown kid is remembered"
        );

        // A kid that would walk the URL path is never sent.
        for kid in ["../token.oauth2", "a/b", "", &"k".repeat(200)] {
            assert!(source.lookup(kid).await.unwrap().is_none(), "{kid}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(source.fetch_count(), 2);
        handle.stop(true).await;

        // The key service down: unavailable (503), not unknown (401), and not cached.
        let down = PdndKeySource::new(&url, reqwest::Client::new(), Duration::from_secs(60));
        let err = down.lookup("known-kid").await.unwrap_err();
        assert!(matches!(err, ModiError::KeyUnavailable(_)), "{err}");
        assert_eq!(err.http_status(), 503);
        let _ = down.lookup("known-kid").await;
        assert_eq!(down.fetch_count(), 2);
    }

    #[tokio::test]
    async fn uncached_lookups_are_rate_limited_without_asking_the_key_service() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (url, handle) = key_service(hits.clone()).await;
        let bounds = KeyLookupBounds {
            unknown_kid_ttl: Duration::from_secs(600),
            lookups_per_minute: NonZeroU32::new(3).unwrap(),
        };
        let source = PdndKeySource::bounded(
            &url,
            reqwest::Client::new(),
            Duration::from_secs(60),
            bounds,
        );
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert!(source.lookup("forged-0").await.unwrap().is_none());

        // A flood of made-up kids: one token left in the bucket, then refusals, locally.
        let mut throttled = 0;
        for i in 1..=10 {
            match source.lookup(&format!("forged-{i}")).await {
                Ok(None) => {}
                Err(ModiError::KeyLookupsThrottled { retry_after_secs }) => {
                    assert!((1..=21).contains(&retry_after_secs), "{retry_after_secs}");
                    throttled += 1;
                }
                other => panic!("forged-{i}: {other:?}"),
            }
        }
        assert_eq!(throttled, 9);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "at most the bucket reached it"
        );
        assert_eq!(
            ModiError::KeyLookupsThrottled {
                retry_after_secs: 1
            }
            .http_status(),
            503
        );

        // Cached answers, found or unknown, need no token and still work during the flood.
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert!(source.lookup("forged-0").await.unwrap().is_none());
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        handle.stop(true).await;
    }

    /// A PDND API stand-in: a token endpoint numbering its vouchers `v1`, `v2`, ... and a key
    /// service that answers only `Bearer vN` with N >= `accept_from` (401 otherwise).
    struct GuardedApi {
        url: String,
        tokens: Arc<AtomicUsize>,
        hits: Arc<AtomicUsize>,
        handle: actix_web::dev::ServerHandle,
    }

    async fn guarded_api(accept_from: usize) -> GuardedApi {
        let tokens = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let (t, h) = (tokens.clone(), hits.clone());
        let server = HttpServer::new(move || {
            let (t, t2, h) = (t.clone(), t.clone(), h.clone());
            App::new()
                .route(
                    "/token.oauth2",
                    web::post().to(move || {
                        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            HttpResponse::Ok().json(serde_json::json!({
                                "access_token": format!("v{n}"), "token_type": "Bearer", "expires_in": 600
                            }))
                        }
                    }),
                )
                .route(
                    "/keys/{kid}",
                    web::get().to(move |req: actix_web::HttpRequest| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let issued = t2.load(Ordering::SeqCst);
                        let accepted = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer v"))
                            .and_then(|n| n.parse::<usize>().ok())
                            .is_some_and(|n| n >= accept_from && n <= issued);
                        async move {
                            if accepted {
                                HttpResponse::NotFound().finish()
                            } else {
                                HttpResponse::Unauthorized().finish()
                            }
                        }
                    }),
                )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        GuardedApi {
            url: format!("http://{addr}"),
            tokens,
            hits,
            handle,
        }
    }

    fn api_source(api: &GuardedApi) -> PdndKeySource {
        let spec = VoucherSpec {
            builder: ClientAssertionBuilder {
                client_id: "a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into(),
                audience: "auth.dev.interop.local/client-assertion".into(),
                purpose_id: None,
                digest: None,
                lifetime_secs: 300,
            },
            key: Arc::new(crate::pdnd::test_keys::client().clone()),
            dpop: None,
        };
        let voucher = ApiVoucher::new(
            TokenClient::new(reqwest::Client::new(), format!("{}/token.oauth2", api.url)),
            Arc::new(SystemClock),
            CachePolicy::default(),
            spec,
        );
        PdndKeySource::new(
            &format!("{}/keys", api.url),
            reqwest::Client::new(),
            Duration::from_secs(60),
        )
        .with_api_voucher(voucher)
    }

    #[tokio::test]
    async fn lookups_carry_the_api_voucher_and_renew_it_once_on_401() {
        // v1 is refused (as if revoked): one 401, a new voucher, the same request again.
        let api = guarded_api(2).await;
        let source = api_source(&api);
        assert!(source.lookup("kid-a").await.unwrap().is_none());
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2, "voucher dropped once");
        assert_eq!(api.hits.load(Ordering::SeqCst), 2, "request sent once more");
        // The new voucher is cached: another kid costs one request and no token.
        assert!(source.lookup("kid-b").await.unwrap().is_none());
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        assert_eq!(api.hits.load(Ordering::SeqCst), 3);
        assert_eq!(source.fetch_count(), 3);
        api.handle.stop(true).await;
    }

    #[tokio::test]
    async fn a_key_service_refusing_every_voucher_is_asked_twice_then_unavailable() {
        let api = guarded_api(usize::MAX).await;
        let source = api_source(&api);
        let err = source.lookup("kid-a").await.unwrap_err();
        assert!(
            matches!(&err, ModiError::KeyUnavailable(m) if m.contains("401")),
            "{err}"
        );
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        assert_eq!(api.hits.load(Ordering::SeqCst), 2, "retried once, not more");
        // Without a voucher the same service refuses at once, and nothing is retried.
        let bare = PdndKeySource::new(
            &format!("{}/keys", api.url),
            reqwest::Client::new(),
            Duration::from_secs(60),
        );
        assert!(bare.lookup("kid-c").await.is_err());
        assert_eq!(api.hits.load(Ordering::SeqCst), 3);
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        api.handle.stop(true).await;
    }

    #[test]
    fn refusal_statuses() {
        assert_eq!(
            ModiRefusal::Signature(ModiError::DigestMismatch).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ModiRefusal::Tracking(ModiError::TrackingEvidenceNotBound).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ModiRefusal::SignatureIssuer {
                expected: "a".into(),
                found: None
            }
            .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ModiRefusal::Signature(ModiError::KeyUnavailable("down".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ModiRefusal::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ModiRefusal::BodyTimeout(5000).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            ModiRefusal::Signature(ModiError::ReplayQuotaExceeded {
                retry_after_secs: 9
            })
            .status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn load_refusals_say_when_to_retry() {
        let header = |refusal: ModiRefusal| {
            let resp = refusal.response(Some("req-1"));
            resp.headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let throttled = ModiRefusal::Tracking(ModiError::KeyLookupsThrottled {
            retry_after_secs: 4,
        });
        assert_eq!(header(throttled), Some("4".into()));
        let quota = ModiRefusal::Signature(ModiError::ReplayQuotaExceeded {
            retry_after_secs: 30,
        });
        assert_eq!(header(quota), Some("30".into()));
        assert_eq!(
            header(ModiRefusal::Signature(ModiError::BadSignature)),
            None
        );
        assert_eq!(
            header(ModiRefusal::Signature(ModiError::KeyUnavailable(
                "down".into()
            ))),
            None
        );
    }
}
