//! The answer cache and the state handlers share.
//!
//! Registry data changes at most once per refresh, and the same subject is often looked up by
//! several consumers in a short time, so answers are cached per e-service (moka, TTL + size
//! bound). The cache holds the serialised bytes of 200 and 404 answers, never of errors, so a
//! cached answer is byte-identical to the one first computed; the key is the operation and the
//! normalised (validated, re-serialised) request.

use crate::store::Store;
use crate::{Eservice, Operation};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use moka::future::Cache;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How long and how many answers one e-service keeps. `ttl_secs = 0` or `max_entries = 0`
/// turns its cache off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub ttl_secs: u64,
    pub max_entries: u64,
}

impl Default for CacheConfig {
    /// One minute, ten thousand answers: data refreshes nightly, and a minute bounds how stale
    /// an answer can be after a correction at the registry office.
    fn default() -> Self {
        CacheConfig {
            ttl_secs: 60,
            max_entries: 10_000,
        }
    }
}

/// A cached answer: status (200 or 404) and the exact body bytes sent the first time.
#[derive(Debug, Clone)]
pub(crate) struct CachedAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

pub(crate) type AnswerCache = Cache<(Operation, String), CachedAnswer>;

fn build(config: CacheConfig) -> Option<AnswerCache> {
    (config.ttl_secs > 0 && config.max_entries > 0).then(|| {
        Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(Duration::from_secs(config.ttl_secs))
            .build()
    })
}

/// What every handler reads: the store and the per-e-service caches.
#[derive(Clone)]
pub struct EserviceState {
    pub(crate) store: Arc<dyn Store>,
    anagrafe: Option<AnswerCache>,
    tributi: Option<AnswerCache>,
}

impl EserviceState {
    /// Both e-services get their own cache with the same limits.
    pub fn new(store: Arc<dyn Store>, cache: CacheConfig) -> Self {
        Self::with_caches(store, cache, cache)
    }

    /// Each e-service with its own limits.
    pub fn with_caches(store: Arc<dyn Store>, anagrafe: CacheConfig, tributi: CacheConfig) -> Self {
        EserviceState {
            store,
            anagrafe: build(anagrafe),
            tributi: build(tributi),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn cache(&self, eservice: Eservice) -> Option<&AnswerCache> {
        match eservice {
            Eservice::Anagrafe => self.anagrafe.as_ref(),
            Eservice::Tributi => self.tributi.as_ref(),
        }
    }

    /// Drops every cached answer (after a data refresh).
    pub fn invalidate_all(&self) {
        for cache in [&self.anagrafe, &self.tributi].into_iter().flatten() {
            cache.invalidate_all();
        }
    }
}
