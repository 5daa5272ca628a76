//! Vouchers for the outbound proxy: obtained once, shared, renewed ahead of expiry.
//!
//! [`TokenClient`] does one exchange; this module decides *when* to do one. Vouchers are cached
//! per (token endpoint, clientId, purposeId, digest, DPoP key): a voucher bound to a TrackingEvidence
//! digest (AUDIT_REST_02) is good for that evidence only, so it gets its own entry; the proxy
//! asks for those with [`VoucherCache::get_for_one_call`], which keeps the retries but stores
//! nothing (an evidence accompanies one call, so nobody could reuse the voucher). Rules:
//!
//! - a voucher is served until `expires_at`; from `renew_at` (a configurable fraction of its
//!   lifetime before expiry, 20 % by default) the first caller starts a renewal in the
//!   background and everybody keeps using the still-valid one;
//! - when no valid voucher exists, exactly one request per key goes to PDND (single flight):
//!   the other callers wait for its outcome, success or failure, instead of asking again;
//! - PDND 429, 5xx or an unreachable endpoint are retried with jittered exponential backoff,
//!   honouring `Retry-After`, within a bounded number of attempts and total time; a 400 is a
//!   refusal and is never retried (PDND answers the same opaque `015-0008` every time).
//!
//! A DPoP-bound voucher (RFC 9449) is asked for with a proof of the spec's [`DpopKey`]; the
//! cached voucher keeps the thumbprint it is bound to, so each call can prove possession of
//! the same key.
//!
//! Time comes from a [`Clock`], so renewal is tested by moving a clock rather than sleeping.

use super::token_client::{TokenClient, TokenClientError};
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::dpop::DpopKey;
use crate::pdnd::jwk::RsaPrivateKey;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where "now" comes from (unix seconds).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How transient token-endpoint failures are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// No wait starts that would end later than this after the first attempt.
    pub max_elapsed: Duration,
    /// The first backoff; doubled at each attempt, then jittered to 50-100 %.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The jittered backoff before attempt `attempt + 1` (`attempt` starts at 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// The cache's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    /// Renewal starts this fraction of the voucher's lifetime before it expires (0 < f < 1).
    pub renew_margin_fraction: f64,
    pub retry: RetryPolicy,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            renew_margin_fraction: 0.2,
            retry: RetryPolicy::default(),
        }
    }
}

/// What to ask PDND for, and the key to sign the client assertion with.
#[derive(Clone)]
pub struct VoucherSpec {
    pub builder: ClientAssertionBuilder,
    pub key: Arc<RsaPrivateKey>,
    /// The key DPoP-bound vouchers are asked for with; `None` for Bearer vouchers.
    pub dpop: Option<Arc<DpopKey>>,
}

/// The cache key: (token endpoint, clientId, purposeId, digest, DPoP key thumbprint).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub endpoint: String,
    pub client_id: String,
    pub purpose_id: Option<String>,
    pub digest: Option<String>,
    /// A voucher bound to one key is of no use to a caller holding another.
    pub dpop_jkt: Option<String>,
}

/// A voucher ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedVoucher {
    pub access_token: String,
    /// `Bearer` or `DPoP`, from the token response's `token_type`.
    pub scheme: &'static str,
    /// The thumbprint of the key a DPoP voucher is bound to (the key that asked for it); every
    /// call with it needs a proof signed by that key.
    pub dpop_jkt: Option<String>,
    /// Unix seconds; the voucher is not sent from then on.
    pub expires_at: i64,
    /// Unix seconds; from then on a renewal is started.
    pub renew_at: i64,
}

impl CachedVoucher {
    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("{} {}", self.scheme, self.access_token)
    }

    /// The voucher's `jti` (for the audit trail), read from its payload without verifying it:
    /// the token came from PDND over TLS and is not trusted for anything else here. `None` for
    /// a token that is not a JWT or has no string `jti` of at most 256 bytes.
    pub fn jti(&self) -> Option<String> {
        use base64::Engine;
        let payload = self.access_token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let jti = claims.get("jti")?.as_str()?;
        (jti.len() <= 256 && !jti.chars().any(char::is_control)).then(|| jti.to_owned())
    }
}

/// Why no voucher could be served. Cloneable: one failed flight answers every caller waiting
/// for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherFetchError {
    /// PDND overloaded or unreachable, retries exhausted, and no valid voucher cached.
    #[error("PDND token endpoint {endpoint} unreachable after {attempts} attempt(s): {last}")]
    Unavailable {
        endpoint: String,
        attempts: u32,
        last: String,
        /// What PDND last asked us to wait, if anything.
        retry_after: Option<u64>,
    },
    /// PDND refused the request (4xx other than 429): a configuration problem, not retried.
    #[error("PDND token endpoint refused the voucher request (HTTP {status}): {body}; claims sent: {claims}")]
    Refused {
        status: u16,
        body: String,
        claims: String,
    },
    /// The client assertion could not be signed, or PDND's answer was not a token response.
    #[error("voucher request failed: {0}")]
    Client(String),
}

#[derive(Default)]
struct EntryState {
    current: Option<Arc<CachedVoucher>>,
    /// Flights completed for this key; a waiter that sees it move knows the outcome is fresh.
    completed: u64,
    last_error: Option<VoucherFetchError>,
    /// No background renewal starts before this (after a failed one).
    renew_not_before: i64,
}

#[derive(Default)]
struct Entry {
    state: Mutex<EntryState>,
    /// Held by the one request in flight for this key.
    flight: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    fn state(&self) -> std::sync::MutexGuard<'_, EntryState> {
        // A poisoned lock only means a thread panicked while holding it; the state is a few
        // plain values and always consistent, so keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entries beyond this are pruned of expired vouchers (digest-bound ones accumulate).
const PRUNE_ABOVE: usize = 10_000;

/// The voucher cache of one token endpoint.
pub struct VoucherCache {
    token: TokenClient,
    clock: Arc<dyn Clock>,
    policy: CachePolicy,
    entries: Mutex<HashMap<CacheKey, Arc<Entry>>>,
}

impl VoucherCache {
    pub fn new(token: TokenClient, clock: Arc<dyn Clock>, policy: CachePolicy) -> Arc<Self> {
        Arc::new(VoucherCache {
            token,
            clock,
            policy,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The token endpoint this cache talks to.
    pub fn endpoint(&self) -> &str {
        self.token.endpoint()
    }

    /// The key a spec is cached under.
    pub fn key(&self, spec: &VoucherSpec) -> CacheKey {
        CacheKey {
            endpoint: self.token.endpoint().to_owned(),
            client_id: spec.builder.client_id.clone(),
            purpose_id: spec.builder.purpose_id.clone(),
            digest: spec.builder.digest.as_ref().map(|d| d.value.clone()),
            dpop_jkt: spec.dpop.as_ref().map(|k| k.jkt().to_owned()),
        }
    }

    fn entry(&self, key: CacheKey) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > PRUNE_ABOVE {
            let now = self.clock.now();
            entries.retain(|_, e| {
                Arc::strong_count(e) > 1
                    || e.state()
                        .current
                        .as_ref()
                        .is_some_and(|v| now < v.expires_at)
            });
        }
        entries.entry(key).or_default().clone()
    }

    /// A valid voucher for `spec`: cached, or obtained now (one request per key at a time).
    pub async fn get(
        self: &Arc<Self>,
        spec: &VoucherSpec,
    ) -> Result<Arc<CachedVoucher>, VoucherFetchError> {
        let entry = self.entry(self.key(spec));
        let now = self.clock.now();
        let seen = {
            let state = entry.state();
            if let Some(v) = &state.current {
                if now < v.renew_at {
                    crate::telemetry::metrics::voucher_cache(true);
                    return Ok(v.clone());
                }
                if now < v.expires_at {
                    // Renewal window: renew in the background, serve the valid voucher now.
                    if now >= state.renew_not_before {
                        if let Ok(guard) = entry.flight.clone().try_lock_owned() {
                            let cache = self.clone();
                            let entry = entry.clone();
                            let spec = spec.clone();
                            tokio::spawn(async move {
                                let _guard = guard;
                                cache.renew(&entry, &spec).await
                            });
                        }
                    }
                    crate::telemetry::metrics::voucher_cache(true);
                    return Ok(v.clone());
                }
            }
            state.completed
        };
        crate::telemetry::metrics::voucher_cache(false);
        // No valid voucher: join the flight, or be it.
        let _guard = entry.flight.lock().await;
        {
            let state = entry.state();
            let now = self.clock.now();
            if let Some(v) = state.current.as_ref().filter(|v| now < v.expires_at) {
                return Ok(v.clone());
            }
            if state.completed != seen {
                if let Some(e) = &state.last_error {
                    return Err(e.clone());
                }
            }
        }
        self.renew(&entry, spec).await
    }

    /// A voucher for a spec no other call will ask for again (AUDIT_REST_02: bound to the
    /// digest of one tracking evidence): obtained now with the usual retries, never cached,
    /// so per-call vouchers do not pile up in memory until they expire.
    pub async fn get_for_one_call(
        &self,
        spec: &VoucherSpec,
    ) -> Result<Arc<CachedVoucher>, VoucherFetchError> {
        self.obtain(spec).await.map(Arc::new)
    }

    /// One flight (the caller holds the entry's flight lock): obtain, record, answer.
    async fn renew(
        &self,
        entry: &Entry,
        spec: &VoucherSpec,
    ) -> Result<Arc<CachedVoucher>, VoucherFetchError> {
        let outcome = self.obtain(spec).await;
        let mut state = entry.state();
        state.completed += 1;
        match outcome {
            Ok(v) => {
                let v = Arc::new(v);
                state.current = Some(v.clone());
                state.last_error = None;
                Ok(v)
            }
            Err(e) => {
                let now = self.clock.now();
                let wait = match &e {
                    VoucherFetchError::Unavailable { retry_after, .. } => {
                        retry_after.map_or(1, |s| i64::try_from(s).unwrap_or(i64::MAX))
                    }
                    _ => 5,
                };
                state.renew_not_before = now.saturating_add(wait.max(1));
                state.last_error = Some(e.clone());
                match state.current.as_ref().filter(|v| now < v.expires_at) {
                    Some(v) => {
                        tracing::warn!(endpoint = self.endpoint(), error = %e, expires_at = v.expires_at, "voucher renewal failed; the cached voucher is still valid and stays in use");
                        Ok(v.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Asks PDND, retrying what may succeed later.
    async fn obtain(&self, spec: &VoucherSpec) -> Result<CachedVoucher, VoucherFetchError> {
        let retry = &self.policy.retry;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let asked_at = self.clock.now();
            let obtained = self
                .token
                .obtain_with_dpop(&spec.builder, &spec.key, spec.dpop.as_deref(), asked_at)
                .await;
            crate::telemetry::metrics::get()
                .token_requests
                .add(1, &[crate::telemetry::metrics::outcome(obtained.is_ok())]);
            let err = match obtained {
                Ok(obtained) => {
                    let lifetime = obtained.response.expires_in.max(0);
                    let margin =
                        (lifetime as f64 * self.policy.renew_margin_fraction).ceil() as i64;
                    let expires_at = asked_at.saturating_add(lifetime);
                    tracing::info!(
                        endpoint = self.endpoint(),
                        client_id = spec.builder.client_id,
                        purpose_id = spec.builder.purpose_id.as_deref().unwrap_or(""),
                        assertion_jti = obtained.assertion.claims.jti,
                        expires_in = lifetime,
                        attempt,
                        "voucher obtained"
                    );
                    let scheme = obtained.response.authorization_scheme();
                    // Bound only when we asked with a key and PDND says so.
                    let dpop_jkt = spec
                        .dpop
                        .as_ref()
                        .filter(|_| scheme == crate::pdnd::dpop::DPOP_SCHEME)
                        .map(|k| k.jkt().to_owned());
                    return Ok(CachedVoucher {
                        scheme,
                        dpop_jkt,
                        access_token: obtained.response.access_token,
                        expires_at,
                        renew_at: expires_at.saturating_sub(margin.max(1)),
                    });
                }
                Err(e) => e,
            };
            if !err.is_transient() {
                return Err(match err {
                    TokenClientError::Refused {
                        status,
                        body,
                        claims,
                        ..
                    } => {
                        // PDND never says why; the claims we sent are what an operator needs.
                        tracing::error!(
                            endpoint = self.endpoint(),
                            status,
                            body,
                            claims,
                            "PDND refused the voucher request; not retried"
                        );
                        VoucherFetchError::Refused {
                            status,
                            body,
                            claims,
                        }
                    }
                    other => {
                        tracing::error!(endpoint = self.endpoint(), error = %other, "voucher request failed; not retried");
                        VoucherFetchError::Client(other.to_string())
                    }
                });
            }
            let retry_after = match &err {
                TokenClientError::Refused { retry_after, .. } => *retry_after,
                _ => None,
            };
            let unavailable = |attempts| VoucherFetchError::Unavailable {
                endpoint: self.endpoint().to_owned(),
                attempts,
                last: err.to_string(),
                retry_after,
            };
            if attempt >= retry.max_attempts.max(1) {
                tracing::error!(endpoint = self.endpoint(), attempt, error = %err, "PDND token endpoint unavailable; attempts exhausted");
                return Err(unavailable(attempt));
            }
            let wait = match retry_after {
                Some(secs) => Duration::from_secs(secs),
                None => retry.backoff(attempt),
            };
            if started.elapsed() + wait > retry.max_elapsed {
                tracing::error!(endpoint = self.endpoint(), attempt, wait_ms = wait.as_millis() as u64, error = %err, "PDND token endpoint unavailable; waiting longer would exceed the retry budget");
                return Err(unavailable(attempt));
            }
            tracing::warn!(endpoint = self.endpoint(), attempt, wait_ms = wait.as_millis() as u64, error = %err, "PDND token endpoint unavailable; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_is_read_from_the_payload_or_absent() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let voucher = |token: String| CachedVoucher {
            access_token: token,
            scheme: "Bearer",
            expires_at: 0,
            renew_at: 0,
            dpop_jkt: None,
        };
        let good = format!("{}.{}.sig", enc("{}"), enc(r#"{"jti":"abc-123"}"#));
        assert_eq!(voucher(good).jti().as_deref(), Some("abc-123"));
        for bad in [
            "opaque-token".to_owned(),
            format!("{}.{}.sig", enc("{}"), enc(r#"{"jti":7}"#)),
            format!("{}.{}.sig", enc("{}"), enc("not json")),
            format!("{}.!!!.sig", enc("{}")),
            format!(
                "{}.{}.sig",
                enc("{}"),
                enc(&format!(r#"{{"jti":"{}"}}"#, "x".repeat(300)))
            ),
        ] {
            assert_eq!(voucher(bad.clone()).jti(), None, "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(
                b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100),
                "{b1:?}"
            );
            let b3 = p.backoff(3);
            assert!(
                b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400),
                "{b3:?}"
            );
            let b9 = p.backoff(9);
            assert!(
                b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000),
                "{b9:?}"
            );
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(5);
        assert_eq!(c.now(), 105);
        c.set(7);
        assert_eq!(c.now(), 7);
    }
}
