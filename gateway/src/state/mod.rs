//! State shared by the replicas of the gateway: one small key-value interface
//! ([`StateStore`]) over the process's memory ([`memory::MemoryStore`]) or Redis
//! ([`redis::RedisStore`]), chosen by `[state] backend`.
//!
//! Why a store and not a cache: what lives here decides whether a request is accepted (a
//! `jti` seen once must be refused the second time, on whichever replica it arrives), so an
//! operation that cannot reach the store fails with [`StateError`] and the caller refuses the
//! request (503) instead of guessing. Nothing here knows HTTP: [`replay::ReplayMemory`]
//! turns store answers into the [`crate::modi::ModiError`]s the ModI and DPoP checks map.
//!
//! Keys are the caller's (the store adds `[state] key_prefix`); every key has a TTL, so the
//! store never holds anything forever. See `docs/state.md` for the key layout and sizing.

pub mod gcra;
pub mod memory;
pub mod redis;
pub mod redis_conn;
#[cfg(test)]
mod redis_ha_tests;
pub mod replay;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::state::{StateBackend, StateConfig};

/// Why the store could not answer. Every variant means "unknown": the caller must not assume
/// the key is absent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store could not be reached or refused the command (Redis down, out of memory,
    /// authentication). The text never contains the URL's password.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within `[state] timeout_ms`.
    #[error("state store did not answer within {0} ms")]
    Timeout(u64),
    /// The in-process store holds its capacity of live keys; forgetting one early could
    /// re-open a replay window, so new keys are refused.
    #[error("state store full ({0} live keys)")]
    Full(usize),
    /// The URL in the configuration is not one the Redis client accepts.
    #[error("state store URL not usable: {0}")]
    BadUrl(String),
}

/// A boxed future, so that the trait stays object safe (`Arc<dyn StateStore>`).
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The operations the gateway needs from shared state. Each is atomic on its own.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Stores `key` for `ttl` if it is absent: `true` when this call stored it, `false` when
    /// it was already there (Redis `SET key 1 NX PX ttl`). The anti-replay primitive.
    fn insert_once<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, bool>;

    /// Adds one to the counter `key` and returns the new value; the first increment starts
    /// its `ttl` (later ones do not extend it), so a counter is a fixed window.
    fn incr<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, u64>;

    /// Applies the request rate `rate` to `key` (see [`gcra`]): admitted or not, atomically,
    /// and the key's state moves only when admitted.
    fn gcra<'a>(&'a self, key: &'a str, rate: gcra::Gcra) -> StateFuture<'a, gcra::GcraDecision>;

    /// Forgets `key` (a jti recorded for a request refused afterwards for another reason).
    fn remove<'a>(&'a self, key: &'a str) -> StateFuture<'a, ()>;

    /// Whether the store answers now (readiness).
    fn ping(&self) -> StateFuture<'_, ()>;

    /// `memory` or `redis`, for logs and health reports.
    fn backend(&self) -> &'static str;
}

/// Live keys the in-process store holds at most when `[state] backend = "memory"` and it
/// serves only counters (the replay memory has its own bound, `modi.replay_cache_capacity`).
pub const MEMORY_CAPACITY: usize = 100_000;

/// The store `[state]` names. Connecting to Redis is lazy: a Redis down at start does not
/// stop the gateway (its requests that need the store answer 503 until Redis is back).
pub fn open(config: &StateConfig) -> Result<Arc<dyn StateStore>, StateError> {
    match (config.backend, config.redis_url()) {
        (StateBackend::Redis, Some(url)) => Ok(Arc::new(redis::RedisStore::connect_lazy(
            url,
            &config.key_prefix,
            Duration::from_millis(config.timeout_ms),
        )?)),
        (StateBackend::Redis, None) => Err(StateError::BadUrl("state.url is not set".into())),
        (StateBackend::Memory, _) => Ok(Arc::new(memory::MemoryStore::new(MEMORY_CAPACITY))),
    }
}

/// Says at start which store holds the shared state and whether it answers; a store down at
/// start is a warning, not a refusal to start (see [`open`]).
pub async fn log_startup(store: &dyn StateStore) {
    match store.ping().await {
        Ok(()) => tracing::info!(backend = store.backend(), "shared state store ready"),
        Err(e) => tracing::warn!(
            backend = store.backend(),
            error = %e,
            "shared state store not answering: requests that need it answer 503 until it does"
        ),
    }
}

/// The suite both stores must pass: one behaviour whatever the backend. Each call gets a
/// fresh key namespace (`ns`), so a shared Redis can run it repeatedly.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    pub async fn run(store: &dyn StateStore, ns: &str) {
        let key = |k: &str| format!("{ns}:{k}");
        let long = Duration::from_secs(60);
        let short = Duration::from_millis(300);

        // insert_once: first wins, second sees it.
        assert_eq!(store.insert_once(&key("a"), long).await, Ok(true));
        assert_eq!(store.insert_once(&key("a"), long).await, Ok(false));
        assert_eq!(store.insert_once(&key("b"), long).await, Ok(true));

        // A key lives for its ttl, then may be stored again.
        assert_eq!(store.insert_once(&key("short"), short).await, Ok(true));
        assert_eq!(store.insert_once(&key("short"), short).await, Ok(false));
        tokio::time::sleep(short + Duration::from_millis(200)).await;
        assert_eq!(store.insert_once(&key("short"), short).await, Ok(true));

        // remove: the key may be stored again at once; removing an absent key is fine.
        store.remove(&key("a")).await.expect("remove");
        assert_eq!(store.insert_once(&key("a"), long).await, Ok(true));
        store.remove(&key("never")).await.expect("remove absent");

        // incr counts from 1 per key.
        assert_eq!(store.incr(&key("c"), long).await, Ok(1));
        assert_eq!(store.incr(&key("c"), long).await, Ok(2));
        assert_eq!(store.incr(&key("c"), long).await, Ok(3));
        assert_eq!(store.incr(&key("d"), long).await, Ok(1));

        // The first increment fixes the window: later ones do not extend it.
        assert_eq!(store.incr(&key("w"), short).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.incr(&key("w"), short).await, Ok(2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            store.incr(&key("w"), short).await,
            Ok(1),
            "window restarted"
        );

        // Concurrent insert_once of one key: exactly one winner.
        let race = key("race");
        let winners =
            futures_util::future::join_all((0..16).map(|_| store.insert_once(&race, long))).await;
        let won = winners.iter().filter(|r| **r == Ok(true)).count();
        assert_eq!(won, 1, "{winners:?}");
        // Concurrent incr: no lost update.
        let many = key("many");
        let counts = futures_util::future::join_all((0..16).map(|_| store.incr(&many, long))).await;
        let mut values: Vec<u64> = counts.into_iter().map(|r| r.expect("incr")).collect();
        values.sort_unstable();
        assert_eq!(values, (1..=16).collect::<Vec<u64>>());

        // gcra: the burst at once, then a refusal that moves nothing, then one more after
        // the emission interval.
        let rate = gcra::Gcra {
            emission_interval: Duration::from_millis(400),
            burst: 3,
        };
        for remaining in [2, 1, 0] {
            let d = store.gcra(&key("rate"), rate).await.expect("gcra");
            assert!(d.allowed, "{d:?}");
            assert_eq!(d.remaining, remaining);
        }
        let refused = store.gcra(&key("rate"), rate).await.expect("gcra");
        assert!(!refused.allowed, "{refused:?}");
        assert!(refused.retry_after > Duration::ZERO, "{refused:?}");
        assert!(refused.retry_after <= rate.emission_interval, "{refused:?}");
        // Another key has its own burst.
        assert!(store.gcra(&key("rate2"), rate).await.expect("gcra").allowed);
        tokio::time::sleep(refused.retry_after + Duration::from_millis(50)).await;
        let recovered = store.gcra(&key("rate"), rate).await.expect("gcra");
        assert!(recovered.allowed, "{recovered:?}");
        assert!(!store.gcra(&key("rate"), rate).await.expect("gcra").allowed);

        assert_eq!(store.ping().await, Ok(()));
    }
}
