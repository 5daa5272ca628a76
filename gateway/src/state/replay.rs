//! The anti-replay memory of ModI and DPoP `jti`s as the provider uses it: in the process
//! (`[state] backend = "memory"`) or in the shared store (`"redis"`), behind one async call.
//!
//! - **Local**: the bounded [`InMemoryReplayGuard`], unchanged: `modi.replay_cache_capacity`
//!   live jtis in all, `modi.replay_cache_per_client` live jtis per client (then 429 with the
//!   time its oldest expires).
//! - **Shared**: each jti is one key `replay:<scope>:<jti>` stored with
//!   [`StateStore::insert_once`] until the token would be refused as expired anyway; a second
//!   replica sees it. The per-client share becomes a counter per fixed window
//!   (`replay-client:<client>:<window start>`, [`StateStore::incr`]): a client may record at
//!   most `modi.replay_cache_per_client` new jtis per window of `max_peer_token_lifetime_secs
//!   + leeway` seconds (the longest a jti stays), across all replicas; over it, 429 until the
//!   window ends. Like the local share it bounds what one client can make the store hold; a
//!   fixed window lets a client reach twice its share around a window's edge, which the sizing
//!   in `docs/state.md` allows for. The global bound is Redis's `maxmemory` with
//!   `noeviction`: when full, Redis refuses writes and the request is refused (503).
//!
//! Either way a jti is checked for replay first (a replay stays 401, whatever the quota), and
//! a store that cannot answer refuses the request ([`ModiError::ReplayStoreUnavailable`], 503):
//! accepting it unchecked could accept a replay.

use std::sync::Arc;
use std::time::Duration;

use super::{StateError, StateStore};
use crate::config::state::StateBackend;
use crate::config::Config;
use crate::modi::{InMemoryReplayGuard, ModiError, ReplayGuard, ReplayScope};

/// Where the provider records the jtis it accepted.
pub enum ReplayMemory {
    /// In this process only.
    Local(Box<dyn ReplayGuard>),
    /// In the store every replica shares.
    Shared(SharedReplay),
}

/// The shared-store form of the replay memory (see the module documentation).
pub struct SharedReplay {
    store: Arc<dyn StateStore>,
    per_client: u64,
    window_secs: i64,
}

impl ReplayMemory {
    /// The in-process memory with a global bound only.
    pub fn local(guard: impl ReplayGuard + 'static) -> Self {
        ReplayMemory::Local(Box::new(guard))
    }

    /// The memory in `store`: at most `per_client` new jtis per client per `window_secs`.
    pub fn shared(store: Arc<dyn StateStore>, per_client: usize, window_secs: i64) -> Self {
        ReplayMemory::Shared(SharedReplay {
            store,
            per_client: u64::try_from(per_client.max(1)).unwrap_or(u64::MAX),
            window_secs: window_secs.max(1),
        })
    }

    /// The memory `[state]` and `[modi]` describe: local for `memory`, `store` for `redis`.
    pub fn from_config(config: &Config, store: Arc<dyn StateStore>) -> Self {
        let m = &config.modi;
        match config.state.backend {
            StateBackend::Memory => ReplayMemory::local(
                InMemoryReplayGuard::new(m.replay_cache_capacity)
                    .with_per_client_cap(m.replay_cache_per_client),
            ),
            StateBackend::Redis => ReplayMemory::shared(
                store,
                m.replay_cache_per_client,
                m.max_peer_token_lifetime_secs
                    .saturating_add(config.pdnd.leeway_secs.max(0)),
            ),
        }
    }

    /// Records `jti` (of the kind `scope`, on behalf of `client` when known) until
    /// `expires_at`; [`ModiError::Replayed`] if it was already recorded and is still live.
    pub async fn store_jti(
        &self,
        scope: ReplayScope,
        client: Option<&str>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        let result = match self {
            ReplayMemory::Local(guard) => guard.store_jti(scope, client, jti, expires_at, now),
            ReplayMemory::Shared(shared) => {
                shared.store_jti(scope, client, jti, expires_at, now).await
            }
        };
        let outcome = match &result {
            Ok(()) => "recorded",
            Err(ModiError::Replayed(_)) => "replayed",
            Err(_) => "error",
        };
        crate::telemetry::metrics::replay_entry(scope_name(scope), outcome);
        result
    }
}

fn scope_name(scope: ReplayScope) -> &'static str {
    match scope {
        ReplayScope::Modi => "modi",
        ReplayScope::DpopProof => "dpop",
    }
}

fn unavailable(e: StateError) -> ModiError {
    match e {
        StateError::Full(_) => ModiError::ReplayCacheFull,
        other => ModiError::ReplayStoreUnavailable(other.to_string()),
    }
}

impl SharedReplay {
    async fn store_jti(
        &self,
        scope: ReplayScope,
        client: Option<&str>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        crate::modi::check_jti(jti)?;
        if expires_at <= now {
            // Already past its lifetime: the verifier refuses such a token, nothing to keep.
            return Ok(());
        }
        let key = format!("replay:{}:{jti}", scope_name(scope));
        let ttl = Duration::from_secs(u64::try_from(expires_at - now).unwrap_or(1));
        if !self
            .store
            .insert_once(&key, ttl)
            .await
            .map_err(unavailable)?
        {
            return Err(ModiError::Replayed(jti.to_owned()));
        }
        let Some(client) = client else {
            return Ok(());
        };
        let start = now - now.rem_euclid(self.window_secs);
        let left = (start + self.window_secs - now).max(1);
        let counter = format!("replay-client:{client}:{start}");
        let counted = self
            .store
            .incr(
                &counter,
                Duration::from_secs(u64::try_from(left).unwrap_or(1)),
            )
            .await;
        let refusal = match counted {
            Ok(n) if n <= self.per_client => return Ok(()),
            Ok(_) => ModiError::ReplayQuotaExceeded {
                retry_after_secs: u64::try_from(left).unwrap_or(1),
            },
            Err(e) => unavailable(e),
        };
        // Not accepted, so not consumed: the client may send the same token once it may.
        // If the store is down this fails too and the jti stays until its expiry: safe.
        if let Err(e) = self.store.remove(&key).await {
            tracing::warn!(error = %e, "could not forget the jti of a refused request");
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;

    /// One behaviour for every store the shared memory runs on.
    async fn shared_rules(store: Arc<dyn StateStore>) {
        // A window far in the future of `now`, so the test never crosses its edge.
        let memory = ReplayMemory::shared(store.clone(), 3, 1_000_000);
        let now = 1_000;
        let jti = |s: &str| format!("{s}-{}", uuid::Uuid::new_v4());
        let client = format!("client-{}", uuid::Uuid::new_v4());
        let other = format!("client-{}", uuid::Uuid::new_v4());

        let first = jti("f1");
        let ok = |r: Result<(), ModiError>| assert_eq!(r, Ok(()));
        ok(memory
            .store_jti(ReplayScope::Modi, Some(&client), &first, now + 60, now)
            .await);
        // Seen by a second memory on the same store (another replica).
        let replica = ReplayMemory::shared(store.clone(), 3, 1_000_000);
        assert_eq!(
            replica
                .store_jti(ReplayScope::Modi, Some(&client), &first, now + 60, now)
                .await,
            Err(ModiError::Replayed(first.clone()))
        );
        // Another scope is another key space.
        ok(memory
            .store_jti(ReplayScope::DpopProof, None, &first, now + 60, now)
            .await);
        // The share: two more, then 429 for this client only.
        for _ in 0..2 {
            ok(memory
                .store_jti(ReplayScope::Modi, Some(&client), &jti("f"), now + 60, now)
                .await);
        }
        let over = jti("over");
        let err = memory
            .store_jti(ReplayScope::Modi, Some(&client), &over, now + 60, now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModiError::ReplayQuotaExceeded { retry_after_secs } if retry_after_secs >= 1),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 429);
        // A replay stays a replay over the quota.
        assert_eq!(
            memory
                .store_jti(ReplayScope::Modi, Some(&client), &first, now + 60, now)
                .await,
            Err(ModiError::Replayed(first.clone()))
        );
        // The refused jti was not consumed: not a replay for a client with room.
        ok(memory
            .store_jti(ReplayScope::Modi, Some(&other), &over, now + 60, now)
            .await);
        // No client: no share.
        for _ in 0..5 {
            ok(memory
                .store_jti(ReplayScope::Modi, None, &jti("n"), now + 60, now)
                .await);
        }
        // Expired tokens and bad jtis.
        ok(memory
            .store_jti(ReplayScope::Modi, None, &jti("old"), now, now)
            .await);
        assert!(matches!(
            memory
                .store_jti(ReplayScope::Modi, None, "", now + 60, now)
                .await,
            Err(ModiError::Malformed { .. })
        ));
        assert!(matches!(
            memory
                .store_jti(ReplayScope::Modi, None, &"x".repeat(257), now + 60, now)
                .await,
            Err(ModiError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn shared_rules_on_memory() {
        shared_rules(Arc::new(MemoryStore::new(1_000))).await;
    }

    #[tokio::test]
    async fn shared_rules_on_redis() {
        let Some(url) = crate::state::redis::tests::test_url() else {
            return;
        };
        shared_rules(Arc::new(crate::state::redis::tests::store(&url))).await;
    }

    #[tokio::test]
    async fn full_store_is_cache_full_and_unreachable_store_is_unavailable() {
        let memory = ReplayMemory::shared(Arc::new(MemoryStore::new(1)), 10, 600);
        assert_eq!(
            memory
                .store_jti(ReplayScope::Modi, None, "a", 1_100, 1_000)
                .await,
            Ok(())
        );
        let err = memory
            .store_jti(ReplayScope::Modi, None, "b", 1_100, 1_000)
            .await
            .unwrap_err();
        assert_eq!(err, ModiError::ReplayCacheFull);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let down = crate::state::redis::RedisStore::connect_lazy(
            &format!("redis://127.0.0.1:{port}/0"),
            "p:",
            Duration::from_millis(200),
        )
        .expect("url");
        let memory = ReplayMemory::shared(Arc::new(down), 10, 600);
        let err = memory
            .store_jti(ReplayScope::Modi, Some("c"), "a", 1_100, 1_000)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModiError::ReplayStoreUnavailable(_)),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 503);
        assert!(err.retry_after_secs().is_some());
    }
}
