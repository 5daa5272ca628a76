//! The outbound proxy: `/fruizioni/{fruizione}/{path...}` on the internal listener.
//!
//! The comune's own systems call another administration's e-service as if it were local; the
//! gateway adds what PDND requires (a voucher for the configured purpose) and forwards method,
//! body and a short list of safe headers to `{remote_base_url}/{path}`. The remote's answer
//! comes back unchanged (status, body, content type, ModI and rate-limit headers). Everything
//! the gateway itself refuses is problem+json, each row one [`ProxyRefusal`] variant, which
//! owns its status, title and `Retry-After`:
//!
//! | situation | status | variant |
//! |---|---|---|
//! | no authenticated internal caller (the API-key guard always sets one) | 401 | `NoCaller` |
//! | no such fruizione | 404 | `UnknownFruizione` |
//! | a fruizione the caller's API key is not allowed | 403 | `CallerNotAllowed` |
//! | `X-User-Id` not text, over 256 bytes or with control characters | 400 | `InvalidUserId` |
//! | a path segment outside the allow-list ([`super::path_guard`]) | 400 | `PathNotAllowed` |
//! | AUDIT_REST_01/02 configured and no `X-User-Id` from the caller | 400 | `AuditHeadersRequired` |
//! | a body to sign whose `Content-Type` is not visible ASCII | 400 | `UnsignableContentType` |
//! | the fruizione's `max_concurrency` calls already in flight | 503, `Retry-After: 1` | `AtCapacity` |
//! | PDND unreachable/overloaded and no valid voucher cached | 503, `Retry-After` | `NoVoucher` |
//! | PDND refused the voucher request (configuration problem) | 502, with the claims sent | `NoVoucher` |
//! | our ModI material could not sign | 500 | `Signing` |
//! | a method the HTTP client cannot send | 405 | `UnsupportedMethod` |
//! | no DPoP proof could be made for a DPoP-bound voucher | 502 | `DpopProof` |
//! | remote unreachable | 502 | `RemoteUnreachable` |
//! | remote too slow (`timeout_ms`) | 504 | `RemoteTimeout` |
//! | remote answer over `max_response_bytes` (read with the limit, never whole) | 502 | `RemoteTooLarge` |
//! | `verify_response` set and the answer's signature or `Digest` does not verify | 502 | `ResponseNotVerified` |
//! | the audit trail known down: the call is not sent | 503, `Retry-After: 5` | `AuditDownBeforeCall` |
//! | the call's audit record could not be committed | 503, `Retry-After: 5` | `AuditNotCommitted` |
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

mod refusal;

pub use refusal::ProxyRefusal;

use super::internal_auth::InternalCaller;
use super::modi_out::{CallerAudit, Evidence, OutboundModi, OutboundModiSetupError};
use crate::config::{Config, FruizioneConfig};
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd_client::voucher_cache::{CachedVoucher, Clock, VoucherCache, VoucherSpec};
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

/// The `DPoP` proof of one call with a DPoP-bound voucher (method, URL without query, `ath` of
/// the voucher), signed by the key the voucher is bound to; `None` for a Bearer voucher.
fn dpop_proof(
    f: &Fruizione,
    voucher: &CachedVoucher,
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
fn signing_failure(name: &str, e: &crate::modi::ModiError) -> ProxyRefusal {
    tracing::error!(fruizione = name, error = %e, "ModI signing failed");
    ProxyRefusal::Signing(name.to_owned())
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
/// audit record before the answer goes back (503 when it cannot be committed). Every refusal
/// of the gateway's own is a [`ProxyRefusal`].
pub async fn proxy(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Fruizioni>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let instance = crate::provider::request_id::of(&req);
    let refused = |r: ProxyRefusal| r.into_response(instance.as_deref());
    // Set by the API-key middleware that wraps this handler; without it nobody is let in.
    let Some(caller) = req.extensions().get::<InternalCaller>().cloned() else {
        tracing::error!("fruizione call without an authenticated caller; refused");
        return refused(ProxyRefusal::NoCaller);
    };
    // Known down (a commit failed and the store still does not answer): the call is not
    // sent at all, so no remote sees a call of the comune that the trail cannot show.
    if !state.audit.is_healthy() && !state.audit.check().await {
        tracing::error!(
            caller = caller.name(),
            "audit trail unavailable; fruizione call not sent"
        );
        return refused(ProxyRefusal::AuditDownBeforeCall);
    }
    let mut trace = Trace::default();
    let answer = forward(&req, body, &state, &caller, &instance, &mut trace)
        .await
        .unwrap_or_else(refused);
    if let Some(name) = trace
        .fruizione
        .as_deref()
        .filter(|n| state.get(n).is_some())
    {
        crate::telemetry::metrics::fruizione(name, answer.status().as_u16(), started.elapsed());
    }
    let record = FruizioneRecord {
        record_id: crate::provider::audit::record_id(),
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
            refused(ProxyRefusal::AuditNotCommitted)
        }
    }
}

/// A call the gateway has agreed to send: its fruizione, the path after the fruizione's name,
/// the caller's audit statement, the content type to sign and the concurrency slot it holds.
struct Admitted<'a> {
    f: &'a Fruizione,
    tail: &'a str,
    statement: Option<CallerAudit>,
    content_type: Option<String>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The call itself: every refusal and the remote's answer, with `trace` filled in on the way.
async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    state: &Fruizioni,
    caller: &InternalCaller,
    instance: &Option<String>,
    trace: &mut Trace,
) -> Result<HttpResponse, ProxyRefusal> {
    let call = admit(req, state, caller, trace)?;
    let (voucher, evidence) = credentials(&call, state, trace).await?;
    let out = outbound(
        req,
        &call,
        &voucher,
        evidence.as_ref(),
        body,
        instance,
        state,
    )?;
    send(call.f, out, state, trace).await
}

/// The call's voucher and, with an audit pattern, its tracking evidence (made first: for
/// AUDIT_REST_02 the voucher is bound to it and obtained for this call only).
async fn credentials(
    call: &Admitted<'_>,
    state: &Fruizioni,
    trace: &mut Trace,
) -> Result<(Arc<CachedVoucher>, Option<Evidence>), ProxyRefusal> {
    let f = call.f;
    let evidence = match (&f.modi, &call.statement) {
        (Some(modi), Some(statement)) => modi
            .tracking_evidence(statement, state.clock.now())
            .map_err(|e| signing_failure(&f.name, &e))?,
        _ => None,
    };
    let voucher = match evidence.as_ref().and_then(|e| e.voucher_digest.clone()) {
        Some(digest) => {
            let mut spec = f.spec.clone();
            spec.builder.digest = Some(digest);
            state.vouchers.get_for_one_call(&spec).await
        }
        None => state.vouchers.get(&f.spec).await,
    }
    .map_err(|error| {
        tracing::warn!(fruizione = f.name, error = %error, "no voucher for the call");
        ProxyRefusal::NoVoucher {
            fruizione: f.name.clone(),
            error,
        }
    })?;
    trace.voucher_jti = voucher.jti();
    Ok((voucher, evidence))
}

/// The request to the remote: its URL, the voucher (with a DPoP proof when bound), the
/// forwarded headers, the request id, and the ModI headers signed last, just before sending.
fn outbound(
    req: &HttpRequest,
    call: &Admitted<'_>,
    voucher: &CachedVoucher,
    evidence: Option<&Evidence>,
    body: web::Bytes,
    instance: &Option<String>,
    state: &Fruizioni,
) -> Result<reqwest::RequestBuilder, ProxyRefusal> {
    let f = call.f;
    let mut url = String::with_capacity(f.base.len() + call.tail.len() + 1);
    url.push_str(&f.base);
    if !call.tail.is_empty() {
        url.push('/');
        url.push_str(call.tail);
    }
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ProxyRefusal::UnsupportedMethod)?;
    let dpop_proof =
        dpop_proof(f, voucher, method.as_str(), &url, state.clock.now()).map_err(|detail| {
            tracing::error!(
                fruizione = f.name,
                reason = detail,
                "no DPoP proof for the call"
            );
            ProxyRefusal::DpopProof(f.name.clone())
        })?;
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
    if let Some(id) = instance {
        out = out.header(crate::provider::request_id::X_REQUEST_ID, id.as_str());
    }
    if let Some(evidence) = evidence {
        out = out.header(
            crate::modi::AGID_JWT_TRACKING_EVIDENCE,
            evidence.jws.as_str(),
        );
    }
    if let Some(modi) = &f.modi {
        // Signed now, after the voucher wait, so its short lifetime starts when it is sent.
        let signature = modi
            .sign_request(call.content_type.as_deref(), &body, state.clock.now())
            .map_err(|e| signing_failure(&f.name, &e))?;
        if let Some(sig) = signature {
            out = out
                .header(crate::modi::DIGEST, sig.digest)
                .header(crate::modi::AGID_JWT_SIGNATURE, sig.agid_jwt_signature);
        }
    }
    if !body.is_empty() {
        out = out.body(body);
    }
    Ok(out)
}

/// The checks made before anything leaves (no voucher, no call): the fruizione exists, the
/// caller may call it, its `X-User-Id`, path and audit statement are acceptable, and a
/// concurrency slot is free.
fn admit<'a>(
    req: &'a HttpRequest,
    state: &'a Fruizioni,
    caller: &InternalCaller,
    trace: &mut Trace,
) -> Result<Admitted<'a>, ProxyRefusal> {
    let rest = req.path().strip_prefix(PREFIX).unwrap_or("");
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    trace.fruizione = recordable_name(name);
    let f = state
        .get(name)
        .ok_or_else(|| ProxyRefusal::UnknownFruizione(name.to_owned()))?;
    if !caller.may_call(&f.name) {
        tracing::warn!(
            caller = caller.name(),
            fruizione = f.name,
            "internal caller not allowed this fruizione; call refused"
        );
        return Err(ProxyRefusal::CallerNotAllowed {
            caller: caller.name().to_owned(),
            fruizione: f.name.clone(),
        });
    }
    trace.purpose_id = f.spec.builder.purpose_id.clone();
    trace.client_id = Some(f.spec.builder.client_id.clone());
    trace.user_id = super::modi_out::user_id(req.headers())
        .map_err(|e| ProxyRefusal::InvalidUserId(e.to_string()))?;
    if let Err(refusal) = super::path_guard::check_tail(tail) {
        tracing::warn!(caller = caller.name(), fruizione = f.name, reason = %refusal, "fruizione path refused");
        return Err(ProxyRefusal::PathNotAllowed(refusal.to_string()));
    }
    let statement = match f.modi.as_ref().and_then(OutboundModi::audit) {
        Some(_) => Some(
            CallerAudit::from_headers(req.headers())
                .map_err(|e| ProxyRefusal::AuditHeadersRequired(e.to_string()))?,
        ),
        None => None,
    };
    let content_type = match req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        Some(Ok(ct)) => Some(ct.to_owned()),
        Some(Err(_)) if f.modi.as_ref().is_some_and(OutboundModi::signs_requests) => {
            return Err(ProxyRefusal::UnsignableContentType)
        }
        _ => None,
    };
    let Ok(permit) = f.limit.clone().try_acquire_owned() else {
        tracing::warn!(
            fruizione = f.name,
            "fruizione at its concurrency limit; call refused"
        );
        return Err(ProxyRefusal::AtCapacity(f.name.clone()));
    };
    Ok(Admitted {
        f,
        tail,
        statement,
        content_type,
        _permit: permit,
    })
}

/// Sends the call and passes the remote's answer back: its status, the forwarded headers and
/// a body read within `max_response_bytes`, verified first when `verify_response` is set.
async fn send(
    f: &Fruizione,
    out: reqwest::RequestBuilder,
    state: &Fruizioni,
    trace: &mut Trace,
) -> Result<HttpResponse, ProxyRefusal> {
    let started = std::time::Instant::now();
    let remote_failure = |e: reqwest::Error| {
        if e.is_timeout() {
            tracing::warn!(fruizione = f.name, error = %e, "remote e-service timed out");
            ProxyRefusal::RemoteTimeout(f.name.clone())
        } else {
            tracing::warn!(fruizione = f.name, error = %e, "remote e-service unreachable");
            ProxyRefusal::RemoteUnreachable(f.name.clone())
        }
    };
    let span = crate::telemetry::traces::fruizione_span(&f.name);
    let mut out = out;
    for (name, value) in crate::telemetry::traces::context_headers(&span) {
        out = out.header(name, value);
    }
    let response = tracing::Instrument::instrument(out.send(), span)
        .await
        .map_err(remote_failure)?;
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
        Err(ReadError::Remote(e)) => return Err(remote_failure(e)),
        Err(e @ ReadError::TooLarge { .. }) => {
            tracing::warn!(fruizione = f.name, status = status.as_u16(), error = %e, "remote answer refused");
            return Err(ProxyRefusal::RemoteTooLarge {
                fruizione: f.name.clone(),
                limit: f.max_response_bytes,
            });
        }
    };
    if let Some(modi) = &f.modi {
        let headers: Vec<(&str, &str)> = received_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Err(e) = modi.check_response(status.as_u16(), &headers, &bytes, state.clock.now()) {
            tracing::warn!(fruizione = f.name, status = status.as_u16(), error = %e, "remote answer failed ModI verification");
            return Err(ProxyRefusal::ResponseNotVerified {
                fruizione: f.name.clone(),
                status: status.as_u16(),
                reason: e.to_string(),
            });
        }
    }
    tracing::debug!(
        fruizione = f.name,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fruizione call"
    );
    Ok(answer.body(bytes))
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
mod tests;
