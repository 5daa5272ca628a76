//! The outbound proxy: `/fruizioni/{fruizione}/{path...}` on the internal listener.
//!
//! The comune's own systems call another administration's e-service as if it were local; the
//! gateway adds what PDND requires (a voucher for the configured purpose) and forwards method,
//! body and a short list of safe headers to `{remote_base_url}/{path}`. The remote's answer
//! comes back unchanged (status, body, content type, ModI and rate-limit headers). Everything
//! the gateway itself refuses is problem+json:
//!
//! | situation | status |
//! |---|---|
//! | no such fruizione | 404 |
//! | a fruizione the caller's API key is not allowed | 403 |
//! | `X-User-Id` not text, over 256 bytes or with control characters | 400 |
//! | a path segment outside the allow-list ([`super::path_guard`]) | 400 |
//! | the fruizione's `max_concurrency` calls already in flight | 503, `Retry-After: 1` |
//! | PDND unreachable/overloaded and no valid voucher cached | 503, `Retry-After` |
//! | PDND refused the voucher request (configuration problem) | 502, with the claims sent |
//! | remote unreachable | 502 |
//! | remote too slow (`timeout_ms`) | 504 |
//! | remote answer over `max_response_bytes` (read with the limit, never whole) | 502 |
//! | the call's audit record could not be committed | 503 |
//! | AUDIT_REST_01/02 configured and no `X-User-Id` from the caller | 400 |
//! | `verify_response` set and the answer's signature or `Digest` does not verify | 502 |
//!
//! When the fruizione names ModI patterns ([`super::modi_out`]), the request also carries
//! `Digest` + `Agid-JWT-Signature` (INTEGRITY_REST_01/02) and `Agid-JWT-TrackingEvidence`
//! (AUDIT_REST_01/02, for AUDIT_REST_02 with a voucher bound to it and obtained for this call
//! only). The caller's `X-User-*` / `X-LoA` headers go into the evidence, never to the remote.
//!
//! Every call that passed the API key leaves one record in the audit trail
//! ([`crate::provider::audit_fruizioni`]): caller, fruizione, purpose, voucher `jti`, the remote's
//! status and the one answered, latency, `X-User-Id`. The answer waits for the record's
//! commit, like the e-services' answers; if it cannot be committed the caller gets 503, not the
//! remote's answer. Once a commit has failed, calls are not sent at all (503) until the store
//! answers again, so an outage costs at most the calls already in flight an unrecorded trip.
//!
//! A fruizione with `dpop = true` asks PDND for DPoP-bound vouchers (RFC 9449) with a P-256
//! key generated when the gateway starts, and sends each call with `Authorization: DPoP` and a
//! fresh `DPoP` proof naming that call's method and URL and the voucher's hash (`ath`). The key
//! is ephemeral on purpose: a DPoP key is registered nowhere (the voucher names it in
//! `cnf.jkt`), it only has to outlive the vouchers it obtained, which live in this process's
//! cache too; never written to disk, it cannot leak from there, and a restart simply binds the
//! next vouchers to a new key.
//!
//! Over the concurrency limit the answer is 503, not 429: the limit protects the remote and
//! is shared by every internal caller, so it is the gateway's capacity that is exhausted, not
//! the caller's allowance. Calls are not queued: a caller retries after `Retry-After`.

use super::internal_auth::InternalCaller;
use super::modi_out::{CallerAudit, OutboundModi, OutboundModiSetupError};
use crate::config::{Config, FruizioneConfig};
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd_client::voucher_cache::{Clock, VoucherCache, VoucherFetchError, VoucherSpec};
use crate::problem::Problem;
use crate::provider::audit::AuditLog;
use crate::provider::audit_fruizioni::FruizioneRecord;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The path prefix of the proxy.
pub const PREFIX: &str = "/fruizioni/";

/// Largest request body forwarded.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Request headers passed to the remote (everything else, notably the caller's credentials,
/// cookies and hop-by-hop headers, stays here).
const FORWARDED_REQUEST: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Response headers passed back to the caller besides `content-type`.
const FORWARDED_RESPONSE: &[&str] = &[
    "content-type",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "location",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "digest",
    "agid-jwt-signature",
    "agid-jwt-trackingevidence",
    "x-correlation-id",
];

/// Why the fruizioni could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FruizioniError {
    #[error("fruizione `{name}`: key file {path}: {reason}")]
    Key {
        name: String,
        path: String,
        reason: String,
    },
    #[error("fruizione `{name}`: CA bundle {path}: {reason}")]
    Ca {
        name: String,
        path: String,
        reason: String,
    },
    #[error("fruizione `{name}`: no PDND client (set client_id/key_file or a [client] section)")]
    NoClient { name: String },
    #[error("fruizione `{name}`: HTTP client: {reason}")]
    Http { name: String, reason: String },
    #[error("fruizione `{name}`: DPoP key: {reason}")]
    Dpop { name: String, reason: String },
    #[error("fruizione `{name}`: ModI: {source}")]
    Modi {
        name: String,
        #[source]
        source: OutboundModiSetupError,
    },
}

/// One configured fruizione, ready to forward.
pub struct Fruizione {
    pub name: String,
    base: String,
    http: reqwest::Client,
    spec: VoucherSpec,
    limit: Arc<Semaphore>,
    modi: Option<OutboundModi>,
    max_response_bytes: u64,
}

/// Every fruizione, with the voucher cache they share.
pub struct Fruizioni {
    by_name: HashMap<String, Fruizione>,
    vouchers: Arc<VoucherCache>,
    /// The time of ModI JWS and of response verification (the voucher cache's clock).
    clock: Arc<dyn Clock>,
    /// Where every call's record is committed before its answer goes back.
    audit: AuditLog,
}

fn load_key(name: &str, path: &Path) -> Result<RsaPrivateKey, FruizioniError> {
    let err = |reason: String| FruizioniError::Key {
        name: name.to_owned(),
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    RsaPrivateKey::from_pem(&pem).map_err(|e| err(e.to_string()))
}

fn http_client(f: &FruizioneConfig) -> Result<reqwest::Client, FruizioniError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(f.timeout_ms.min(5_000)))
        .timeout(Duration::from_millis(f.timeout_ms))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &f.ca_file {
        let err = |reason: String| FruizioniError::Ca {
            name: f.name.clone(),
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| FruizioniError::Http {
        name: f.name.clone(),
        reason: e.to_string(),
    })
}

/// The base URL a fruizione really calls: one aimed at the gateway's own public listen
/// address follows it to the port actually bound (port 0 in tests).
fn effective_base(
    base: &str,
    configured_public: SocketAddr,
    bound_public: Option<SocketAddr>,
) -> String {
    let base = base.trim_end_matches('/').to_owned();
    match bound_public {
        Some(bound) if configured_public != bound => base.replacen(
            &format!("://{configured_public}"),
            &format!("://{bound}"),
            1,
        ),
        _ => base,
    }
}

impl Fruizioni {
    /// Builds every fruizione of `config` (keys loaded, HTTP clients and CA bundles ready).
    /// `bound_public` is the address the public listener really bound; `audit` records every
    /// call.
    pub fn from_config(
        config: &Config,
        bound_public: Option<SocketAddr>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Result<Fruizioni, FruizioniError> {
        let token_http = crate::http_client::http_client().map_err(|e| FruizioniError::Http {
            name: "(token endpoint)".into(),
            reason: e.to_string(),
        })?;
        let vc = &config.voucher_client;
        let vouchers = VoucherCache::new(
            crate::pdnd_client::token_client::TokenClient::new(
                token_http,
                config.pdnd.token_endpoint.clone(),
            ),
            clock.clone(),
            crate::pdnd_client::voucher_cache::CachePolicy {
                renew_margin_fraction: vc.renew_margin_fraction,
                retry: crate::pdnd_client::voucher_cache::RetryPolicy {
                    max_attempts: vc.max_attempts,
                    max_elapsed: Duration::from_millis(vc.max_retry_ms),
                    initial_backoff: Duration::from_millis(vc.initial_backoff_ms),
                    max_backoff: Duration::from_millis(vc.max_backoff_ms),
                },
            },
        );
        let mut keys: HashMap<std::path::PathBuf, Arc<RsaPrivateKey>> = HashMap::new();
        let mut by_name = HashMap::new();
        for f in &config.fruizioni {
            let (client_id, key_file, lifetime) = match (&f.client_id, &f.key_file, &config.client)
            {
                (Some(id), Some(file), c) => (
                    id.clone(),
                    file.clone(),
                    c.as_ref().map_or(300, |c| c.assertion_lifetime_secs),
                ),
                (None, None, Some(c)) => (
                    c.client_id.clone(),
                    c.key_file.clone(),
                    c.assertion_lifetime_secs,
                ),
                _ => {
                    return Err(FruizioniError::NoClient {
                        name: f.name.clone(),
                    })
                }
            };
            let key = match keys.get(&key_file) {
                Some(k) => k.clone(),
                None => {
                    let k = Arc::new(load_key(&f.name, &key_file)?);
                    keys.insert(key_file.clone(), k.clone());
                    k
                }
            };
            let modi = OutboundModi::from_config(f, &client_id, &key, config.pdnd.leeway_secs)
                .map_err(|source| FruizioniError::Modi {
                    name: f.name.clone(),
                    source,
                })?;
            let dpop = if f.dpop {
                let key =
                    crate::pdnd::dpop::DpopKey::generate().map_err(|e| FruizioniError::Dpop {
                        name: f.name.clone(),
                        reason: e.to_string(),
                    })?;
                Some(Arc::new(key))
            } else {
                None
            };
            let fruizione = Fruizione {
                name: f.name.clone(),
                base: effective_base(
                    &f.remote_base_url,
                    config.server.public_listen,
                    bound_public,
                ),
                http: http_client(f)?,
                spec: VoucherSpec {
                    builder: ClientAssertionBuilder {
                        client_id,
                        audience: config.pdnd.client_assertion_audience.clone(),
                        purpose_id: Some(f.purpose_id.clone()),
                        digest: None,
                        lifetime_secs: lifetime,
                    },
                    key,
                    dpop,
                },
                limit: Arc::new(Semaphore::new(f.max_concurrency)),
                modi,
                max_response_bytes: f.max_response_bytes,
            };
            by_name.insert(f.name.clone(), fruizione);
        }
        Ok(Fruizioni {
            by_name,
            vouchers,
            clock,
            audit,
        })
    }

    /// The fruizione called `name`.
    pub fn get(&self, name: &str) -> Option<&Fruizione> {
        self.by_name.get(name)
    }

    /// The shared voucher cache.
    pub fn vouchers(&self) -> &Arc<VoucherCache> {
        &self.vouchers
    }

    /// The base URL each fruizione calls (for the start-up message).
    pub fn bases(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .by_name
            .values()
            .map(|f| (f.name.clone(), f.base.clone()))
            .collect();
        v.sort();
        v
    }
}

fn problem(status: StatusCode, detail: impl Into<String>, instance: &Option<String>) -> Problem {
    let p = Problem::new(status).with_detail(detail);
    match instance {
        Some(id) => p.with_instance(id.clone()),
        None => p,
    }
}

fn with_retry_after(p: Problem, secs: u64) -> HttpResponse {
    let mut builder = p.response_builder();
    builder.insert_header((header::RETRY_AFTER, secs.to_string()));
    p.into_response_with(builder)
}

/// Maps a voucher failure to the caller's answer.
fn voucher_failure(name: &str, e: &VoucherFetchError, instance: &Option<String>) -> HttpResponse {
    match e {
        VoucherFetchError::Unavailable { retry_after, .. } => with_retry_after(
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("PDND is unreachable: no voucher could be obtained for fruizione `{name}`. Try again later."),
                instance,
            )
            .with_title("PDND unreachable"),
            retry_after.unwrap_or(5).max(1),
        ),
        VoucherFetchError::Refused { status, claims, .. } => problem(
            StatusCode::BAD_GATEWAY,
            format!("PDND refused the voucher request for fruizione `{name}` (HTTP {status}); check the client, key and purpose. Claims sent: {claims}"),
            instance,
        )
        .with_title("PDND refused the voucher request")
        .into_response(),
        VoucherFetchError::Client(_) => problem(
            StatusCode::BAD_GATEWAY,
            format!("No voucher could be obtained for fruizione `{name}`; the gateway's log says why."),
            instance,
        )
        .into_response(),
    }
}

/// The `DPoP` proof of one call with a DPoP-bound voucher (method, URL without query, `ath` of
/// the voucher), signed by the key the voucher is bound to; `None` for a Bearer voucher.
fn dpop_proof(
    f: &Fruizione,
    voucher: &crate::pdnd_client::voucher_cache::CachedVoucher,
    method: &str,
    url: &str,
    now: i64,
) -> Result<Option<String>, String> {
    let Some(jkt) = &voucher.dpop_jkt else {
        if voucher.scheme == crate::pdnd::dpop::DPOP_SCHEME {
            return Err("PDND answered token_type DPoP to a request without a proof".into());
        }
        return Ok(None);
    };
    let key = f
        .spec
        .dpop
        .as_ref()
        .filter(|k| k.jkt() == jkt)
        .ok_or("the voucher is bound to a key this fruizione does not hold")?;
    key.proof(method, url, Some(&voucher.access_token), now)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Our own ModI material could not sign (a configuration or key problem, not the caller's).
fn signing_failure(
    name: &str,
    e: &crate::modi::ModiError,
    instance: &Option<String>,
) -> HttpResponse {
    tracing::error!(fruizione = name, error = %e, "ModI signing failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("The ModI headers of fruizione `{name}` could not be signed; the gateway's log says why."),
        instance,
    )
    .into_response()
}

/// What a call leaves for its audit record, filled in as it goes.
#[derive(Debug, Default)]
struct Trace {
    fruizione: Option<String>,
    purpose_id: Option<String>,
    client_id: Option<String>,
    voucher_jti: Option<String>,
    remote_status: Option<u16>,
    user_id: Option<String>,
}

/// A fruizione name as asked for, kept for the record only when it is a well-formed one
/// (it comes from the URL and may be anything).
fn recordable_name(name: &str) -> Option<String> {
    (!name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    .then(|| name.to_owned())
}

/// Why a remote answer could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("answer larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Remote(#[from] reqwest::Error),
}

/// Reads the remote's body chunk by chunk, giving up as soon as it passes `limit` (a declared
/// `Content-Length` over it is refused before reading anything).
async fn read_bounded(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The handler of every method under `/fruizioni/`: forwards the call, then commits its
/// audit record before the answer goes back (503 when it cannot be committed).
pub async fn proxy(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Fruizioni>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let instance = crate::provider::request_id::of(&req);
    // Set by the API-key middleware that wraps this handler; without it nobody is let in.
    let Some(caller) = req.extensions().get::<InternalCaller>().cloned() else {
        tracing::error!("fruizione call without an authenticated caller; refused");
        return problem(
            StatusCode::UNAUTHORIZED,
            "An internal API key is required.",
            &instance,
        )
        .into_response();
    };
    // Known down (a commit failed and the store still does not answer): the call is not
    // sent at all, so no remote sees a call of the comune that the trail cannot show.
    if !state.audit.is_healthy() && !state.audit.check().await {
        tracing::error!(
            caller = caller.name(),
            "audit trail unavailable; fruizione call not sent"
        );
        return crate::problem::unavailable(
            "The audit trail is unavailable, so the call was not sent; retry later.",
            instance.as_deref(),
        );
    }
    let mut trace = Trace::default();
    let answer = forward(&req, body, &state, &caller, &instance, &mut trace).await;
    let record = FruizioneRecord {
        record_id: uuid::Uuid::new_v4().to_string(),
        time: crate::provider::audit::format_time(chrono::Utc::now()),
        request_id: instance.clone().unwrap_or_default(),
        caller: caller.name().to_owned(),
        fruizione: trace.fruizione,
        method: req.method().as_str().to_owned(),
        purpose_id: trace.purpose_id,
        client_id: trace.client_id,
        voucher_jti: trace.voucher_jti,
        status: answer.status().as_u16(),
        remote_status: trace.remote_status,
        latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        user_id: trace.user_id,
    };
    match state.audit.record_fruizione(record).await {
        Ok(()) => answer,
        Err(e) => {
            // The remote's answer is dropped unsent: no record, no answer.
            tracing::error!(request_id = instance.as_deref().unwrap_or(""), caller = caller.name(), error = %e, "fruizione audit record not committed; answering 503");
            crate::problem::unavailable(
                "The audit trail is unavailable, so the answer cannot be returned; retry later.",
                instance.as_deref(),
            )
        }
    }
}

/// The call itself: every refusal and the remote's answer, with `trace` filled in on the way.
async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    state: &Fruizioni,
    caller: &InternalCaller,
    instance: &Option<String>,
    trace: &mut Trace,
) -> HttpResponse {
    let instance = instance.clone();
    let rest = req.path().strip_prefix(PREFIX).unwrap_or("");
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    trace.fruizione = recordable_name(name);
    let Some(f) = state.get(name) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("No fruizione named `{name}` is configured."),
            &instance,
        )
        .into_response();
    };
    if !caller.may_call(&f.name) {
        tracing::warn!(
            caller = caller.name(),
            fruizione = f.name,
            "internal caller not allowed this fruizione; call refused"
        );
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "The API key of `{}` may not call fruizione `{}`.",
                caller.name(),
                f.name
            ),
            &instance,
        )
        .into_response();
    }
    trace.purpose_id = f.spec.builder.purpose_id.clone();
    trace.client_id = Some(f.spec.builder.client_id.clone());
    match super::modi_out::user_id(req.headers()) {
        Ok(user) => trace.user_id = user,
        Err(e) => {
            return problem(StatusCode::BAD_REQUEST, e.to_string(), &instance)
                .with_title("Invalid X-User-Id")
                .into_response()
        }
    }
    if let Err(refusal) = super::path_guard::check_tail(tail) {
        tracing::warn!(caller = caller.name(), fruizione = f.name, reason = %refusal, "fruizione path refused");
        return problem(
            StatusCode::BAD_REQUEST,
            format!("The path is not allowed: {refusal}."),
            &instance,
        )
        .with_title("Path not allowed")
        .into_response();
    }
    // The caller's audit statement is checked before anything leaves (no voucher, no call).
    let statement = match f.modi.as_ref().and_then(OutboundModi::audit) {
        Some(_) => match CallerAudit::from_headers(req.headers()) {
            Ok(c) => Some(c),
            Err(e) => {
                return problem(StatusCode::BAD_REQUEST, e.to_string(), &instance)
                    .with_title("Audit headers required")
                    .into_response()
            }
        },
        None => None,
    };
    let content_type = match req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        Some(Ok(ct)) => Some(ct.to_owned()),
        Some(Err(_)) if f.modi.as_ref().is_some_and(OutboundModi::signs_requests) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Content-Type must be visible ASCII to be signed.",
                &instance,
            )
            .into_response()
        }
        _ => None,
    };
    let Ok(_permit) = f.limit.clone().try_acquire_owned() else {
        tracing::warn!(
            fruizione = f.name,
            "fruizione at its concurrency limit; call refused"
        );
        return with_retry_after(
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Fruizione `{}` has reached its limit of calls in flight.",
                    f.name
                ),
                &instance,
            ),
            1,
        );
    };
    let now = state.clock.now();
    let evidence = match (&f.modi, &statement) {
        (Some(modi), Some(statement)) => match modi.tracking_evidence(statement, now) {
            Ok(e) => e,
            Err(e) => return signing_failure(&f.name, &e, &instance),
        },
        _ => None,
    };
    let bound_digest = evidence.as_ref().and_then(|e| e.voucher_digest.clone());
    let voucher = match bound_digest {
        Some(digest) => {
            let mut spec = f.spec.clone();
            spec.builder.digest = Some(digest);
            state.vouchers.get_for_one_call(&spec).await
        }
        None => state.vouchers.get(&f.spec).await,
    };
    let voucher = match voucher {
        Ok(v) => {
            trace.voucher_jti = v.jti();
            v
        }
        Err(e) => {
            tracing::warn!(fruizione = f.name, error = %e, "no voucher for the call");
            return voucher_failure(&f.name, &e, &instance);
        }
    };
    let mut url = String::with_capacity(f.base.len() + tail.len() + 1);
    url.push_str(&f.base);
    if !tail.is_empty() {
        url.push('/');
        url.push_str(tail);
    }
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Unsupported method.",
            &instance,
        )
        .into_response();
    };
    let dpop_proof = match dpop_proof(f, &voucher, method.as_str(), &url, state.clock.now()) {
        Ok(proof) => proof,
        Err(detail) => {
            tracing::error!(
                fruizione = f.name,
                reason = detail,
                "no DPoP proof for the call"
            );
            return problem(
                StatusCode::BAD_GATEWAY,
                format!("The DPoP proof of fruizione `{}` could not be made; the gateway's log says why.", f.name),
                &instance,
            )
            .into_response();
        }
    };
    let mut out = f
        .http
        .request(method, &url)
        .header(reqwest::header::AUTHORIZATION, voucher.authorization());
    if let Some(proof) = dpop_proof {
        out = out.header(crate::pdnd::dpop::DPOP_HEADER, proof);
    }
    for name in FORWARDED_REQUEST {
        if let Some(v) = req.headers().get(*name) {
            out = out.header(*name, v.as_bytes());
        }
    }
    if let Some(id) = &instance {
        out = out.header(crate::provider::request_id::X_REQUEST_ID, id.as_str());
    }
    if let Some(evidence) = &evidence {
        out = out.header(
            crate::modi::AGID_JWT_TRACKING_EVIDENCE,
            evidence.jws.as_str(),
        );
    }
    if let Some(modi) = &f.modi {
        // Signed now, after the voucher wait, so its short lifetime starts when it is sent.
        match modi.sign_request(content_type.as_deref(), &body, state.clock.now()) {
            Ok(Some(sig)) => {
                out = out
                    .header(crate::modi::DIGEST, sig.digest)
                    .header(crate::modi::AGID_JWT_SIGNATURE, sig.agid_jwt_signature);
            }
            Ok(None) => {}
            Err(e) => return signing_failure(&f.name, &e, &instance),
        }
    }
    if !body.is_empty() {
        out = out.body(body);
    }
    let started = std::time::Instant::now();
    let remote_failure = |e: reqwest::Error| {
        if e.is_timeout() {
            tracing::warn!(fruizione = f.name, error = %e, "remote e-service timed out");
            problem(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "The remote e-service of fruizione `{}` did not answer in time.",
                    f.name
                ),
                &instance,
            )
            .into_response()
        } else {
            tracing::warn!(fruizione = f.name, error = %e, "remote e-service unreachable");
            problem(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The remote e-service of fruizione `{}` is unreachable.",
                    f.name
                ),
                &instance,
            )
            .into_response()
        }
    };
    let response = match out.send().await {
        Ok(r) => r,
        Err(e) => return remote_failure(e),
    };
    trace.remote_status = Some(response.status().as_u16());
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut answer = HttpResponse::build(status);
    for name in FORWARDED_RESPONSE {
        for v in response.headers().get_all(*name) {
            answer.append_header((*name, v.as_bytes()));
        }
    }
    let received_headers: Vec<(String, String)> = match &f.modi {
        Some(modi) if modi.verifies_response() => response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    };
    let bytes = match read_bounded(response, f.max_response_bytes).await {
        Ok(b) => web::Bytes::from(b),
        Err(ReadError::Remote(e)) => return remote_failure(e),
        Err(e @ ReadError::TooLarge { .. }) => {
            tracing::warn!(fruizione = f.name, status = status.as_u16(), error = %e, "remote answer refused");
            return problem(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The answer of fruizione `{}`'s remote e-service is larger than the {} bytes allowed.",
                    f.name, f.max_response_bytes
                ),
                &instance,
            )
            .with_title("Remote answer too large")
            .into_response();
        }
    };
    if let Some(modi) = &f.modi {
        let headers: Vec<(&str, &str)> = received_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Err(e) = modi.check_response(status.as_u16(), &headers, &bytes, state.clock.now()) {
            tracing::warn!(fruizione = f.name, status = status.as_u16(), error = %e, "remote answer failed ModI verification");
            return problem(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The answer of fruizione `{}`'s remote e-service (HTTP {}) failed ModI verification: {e}.",
                    f.name,
                    status.as_u16()
                ),
                &instance,
            )
            .with_title("Remote answer not verified")
            .into_response();
        }
    }
    tracing::debug!(
        fruizione = f.name,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fruizione call"
    );
    answer.body(bytes)
}

/// Registers the proxy under `/fruizioni` with its API-key guard; the app must hold
/// `web::Data<Fruizioni>` and `web::Data<ApiKeys>`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/fruizioni")
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .wrap(actix_web::middleware::from_fn(
                super::internal_auth::require_api_key,
            ))
            .default_service(web::to(proxy)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_names_are_recorded() {
        assert_eq!(recordable_name("inps-isee").as_deref(), Some("inps-isee"));
        for bad in ["", "Inps", "a b", "x\u{7}", &"a".repeat(65)] {
            assert_eq!(recordable_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn own_public_address_follows_the_bound_port() {
        let configured: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bound: SocketAddr = "127.0.0.1:43210".parse().unwrap();
        assert_eq!(
            effective_base("http://127.0.0.1:0/anagrafe/v1/", configured, Some(bound)),
            "http://127.0.0.1:43210/anagrafe/v1"
        );
        assert_eq!(
            effective_base("https://api.example.gov.it/v1", configured, Some(bound)),
            "https://api.example.gov.it/v1"
        );
        assert_eq!(
            effective_base(
                "http://127.0.0.1:8080/x",
                "127.0.0.1:8080".parse().unwrap(),
                None
            ),
            "http://127.0.0.1:8080/x"
        );
    }
}
