//! The cached JWKS of the PDND voucher-signing keys.
//!
//! Fetching PDND's JWKS on every request would tie our latency and availability to theirs, and
//! never refetching would break on their key rotation. So: keys are kept for a TTL; a voucher
//! with an unknown kid triggers one refetch, at most once per `min_refetch_interval` and with a
//! single request in flight however many callers ask (a flood of forged kids must not become a
//! flood towards PDND). When PDND is unreachable the last good set keeps serving.

use crate::pdnd::jwk::JwkSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Why no key set is available.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS fetch from {url} failed: {reason}")]
    Fetch { url: String, reason: String },
}

#[derive(Default)]
struct Cached {
    keys: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// A JWKS fetched over HTTP(S) and cached.
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    min_refetch_interval: Duration,
    cached: RwLock<Cached>,
    fetching: Mutex<()>,
    fetches: AtomicU64,
}

impl JwksCache {
    pub fn new(
        url: String,
        http: reqwest::Client,
        ttl: Duration,
        min_refetch_interval: Duration,
    ) -> Self {
        JwksCache {
            url,
            http,
            ttl,
            min_refetch_interval,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many fetches were attempted since start (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current key set, fetched when there is none or it is older than the TTL. A failed
    /// refresh of an expired set keeps serving the old one.
    pub async fn keys(&self) -> Result<Arc<JwkSet>, JwksError> {
        {
            let cached = self.cached.read().await;
            if let (Some(keys), Some(at)) = (&cached.keys, cached.fetched_at) {
                if at.elapsed() < self.ttl {
                    return Ok(keys.clone());
                }
            }
        }
        self.refresh(false).await
    }

    /// Called when a voucher names a kid the current set lacks: refetches unless a fetch
    /// happened less than `min_refetch_interval` ago, and returns the (possibly same) set.
    pub async fn refresh_for_unknown_kid(&self) -> Result<Arc<JwkSet>, JwksError> {
        self.refresh(true).await
    }

    async fn refresh(&self, rate_limited: bool) -> Result<Arc<JwkSet>, JwksError> {
        let _single_flight = self.fetching.lock().await;
        // Whoever held the lock before us may have done the work already.
        {
            let cached = self.cached.read().await;
            if let Some(keys) = &cached.keys {
                let fresh = cached.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
                let recently_tried = cached
                    .last_attempt
                    .is_some_and(|at| at.elapsed() < self.min_refetch_interval);
                if (rate_limited && recently_tried) || (!rate_limited && fresh) {
                    return Ok(keys.clone());
                }
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;
        let mut cached = self.cached.write().await;
        cached.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                cached.keys = Some(keys.clone());
                cached.fetched_at = Some(Instant::now());
                Ok(keys)
            }
            Err(e) => match &cached.keys {
                Some(stale) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; serving the last good key set");
                    Ok(stale.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let err = |reason: String| JwksError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(err(format!("HTTP {}", response.status())));
        }
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        serde_json::from_slice::<JwkSet>(&bytes).map_err(|e| err(format!("not a JWKS: {e}")))
    }
}
