//! Anti-replay for the `jti` of Agid-JWT-Signature and Agid-JWT-TrackingEvidence tokens, and
//! of DPoP proofs (RFC 9449).
//!
//! Verification proves a JWS is authentic; only memory proves it is new. A jti must be
//! remembered until the token would be refused as expired anyway (`exp + leeway`), and no
//! longer. [`InMemoryReplayGuard`] serves a single process; replicas share theirs in Redis
//! through `crate::state::replay` (`SET NX PX`), which keeps this module free of I/O.
//!
//! Status of a replay: **401** (see [`ModiError::http_status`]): a replayed JWS is a credential
//! that is no longer acceptable, like an expired one; 409 would suggest a resource conflict
//! the client could resolve by resending, while the client must sign a fresh message.
//!
//! PDND vouchers are deliberately NOT subject to this: they are reusable until `exp`.
//!
//! One memory serves every kind of token, each in its own key space ([`ReplayScope`]): a jti
//! is unique only among tokens of its kind, so a ModI jti can never consume (or be consumed
//! by) a DPoP proof's, whatever strings the peers choose.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::jws::check_jti;
use super::ModiError;

/// The kind of token a jti belongs to; each kind has its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplayScope {
    /// Agid-JWT-Signature and Agid-JWT-TrackingEvidence (one key space, as before DPoP).
    Modi,
    /// DPoP proofs, at the provider and at the development token endpoint.
    DpopProof,
}

/// Remembers jtis until they expire and refuses the second use of one.
pub trait ReplayGuard: Send + Sync {
    /// Records `jti` of the kind `scope` until `expires_at` (unix seconds), on behalf of
    /// `client` when known (the PDND client id of the voucher the token came with, so that a
    /// guard can give each client a share of its memory). Fails with [`ModiError::Replayed`]
    /// if it is already recorded and not yet expired at `now`.
    fn store_jti(
        &self,
        scope: ReplayScope,
        client: Option<&str>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError>;

    /// A ModI `jti`, with no client known.
    fn check_and_store(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), ModiError> {
        self.store_jti(ReplayScope::Modi, None, jti, expires_at, now)
    }

    /// A ModI `jti` on behalf of `client`.
    fn check_and_store_for(
        &self,
        client: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        self.store_jti(ReplayScope::Modi, Some(client), jti, expires_at, now)
    }

    /// A `jti` in the key space of `scope`, with no client known.
    fn check_and_store_in(
        &self,
        scope: ReplayScope,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        self.store_jti(scope, None, jti, expires_at, now)
    }
}

/// A bounded in-process [`ReplayGuard`].
///
/// Entries expire at their own `expires_at` and are pruned on every call. When the cache is
/// full of live entries it refuses new ones with [`ModiError::ReplayCacheFull`] (503) rather
/// than evicting: evicting a live jti would re-open the replay window it guards. Size it as
/// (requests per second) x (max token lifetime + leeway).
///
/// A client may hold at most `per_client` live entries ([`Self::with_per_client_cap`]): one
/// consumer sending unique jtis as fast as it can then fills its own share, not the memory
/// everybody needs. Over its share that client alone is refused with
/// [`ModiError::ReplayQuotaExceeded`] (**429**, with the time its oldest jti expires as
/// `Retry-After`): the limit is its own rate, the service is not unavailable (503 stays for
/// the whole memory being full), and the status tells a well-behaved client to slow down.
/// Entries stored without a client ([`ReplayGuard::check_and_store`]) count only globally.
#[derive(Debug)]
pub struct InMemoryReplayGuard {
    capacity: usize,
    per_client: usize,
    state: Mutex<State>,
}

type Key = (ReplayScope, String);

#[derive(Debug, Default)]
struct State {
    /// (scope, jti) -> (expires_at, client).
    seen: HashMap<Key, (i64, Option<String>)>,
    by_expiry: BTreeSet<(i64, Key)>,
    /// client -> live entries per expiry second (the first key is when it next gets room).
    by_client: HashMap<String, BTreeMap<i64, usize>>,
}

impl State {
    fn client_len(&self, client: &str) -> usize {
        self.by_client
            .get(client)
            .map_or(0, |expiries| expiries.values().sum())
    }

    fn forget(&mut self, key: &Key) {
        let Some((expires_at, Some(client))) = self.seen.remove(key) else {
            return;
        };
        if let Some(expiries) = self.by_client.get_mut(&client) {
            if let Some(count) = expiries.get_mut(&expires_at) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    expiries.remove(&expires_at);
                }
            }
            if expiries.is_empty() {
                self.by_client.remove(&client);
            }
        }
    }
}

impl InMemoryReplayGuard {
    /// A guard for at most `capacity` live jtis, with no share per client beyond that.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        InMemoryReplayGuard {
            capacity,
            per_client: capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Lets one client hold at most `per_client` live jtis (at least 1, at most the capacity).
    pub fn with_per_client_cap(mut self, per_client: usize) -> Self {
        self.per_client = per_client.clamp(1, self.capacity);
        self
    }

    /// Live entries (for metrics).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live entries stored on behalf of `client`.
    pub fn len_for(&self, client: &str) -> usize {
        self.lock().client_len(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // would accept a replay (inserts go to `seen` first), so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store(
        &self,
        scope: ReplayScope,
        client: Option<&str>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        check_jti(jti)?;
        let mut state = self.lock();
        // Prune everything expired at `now`.
        while let Some(first) = state.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, key)) = state.by_expiry.pop_first() {
                state.forget(&key);
            }
        }
        let key = (scope, jti.to_string());
        if state.seen.contains_key(&key) {
            return Err(ModiError::Replayed(jti.to_string()));
        }
        if expires_at <= now {
            // Already past its lifetime: the verifier refuses such a token, nothing to keep.
            return Ok(());
        }
        if let Some(client) = client {
            if state.client_len(client) >= self.per_client {
                let next_room = state
                    .by_client
                    .get(client)
                    .and_then(|expiries| expiries.keys().next().copied())
                    .unwrap_or(now);
                let wait = next_room.saturating_sub(now).max(1);
                return Err(ModiError::ReplayQuotaExceeded {
                    retry_after_secs: u64::try_from(wait).unwrap_or(1),
                });
            }
        }
        if state.seen.len() >= self.capacity {
            return Err(ModiError::ReplayCacheFull);
        }
        state
            .seen
            .insert(key.clone(), (expires_at, client.map(str::to_owned)));
        state.by_expiry.insert((expires_at, key));
        if let Some(client) = client {
            *state
                .by_client
                .entry(client.to_owned())
                .or_default()
                .entry(expires_at)
                .or_default() += 1;
        }
        Ok(())
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    fn store_jti(
        &self,
        scope: ReplayScope,
        client: Option<&str>,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        self.store(scope, client, jti, expires_at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modi::jws::MAX_JTI_LEN;

    #[test]
    fn second_use_is_a_replay() {
        let guard = InMemoryReplayGuard::new(10);
        assert_eq!(guard.check_and_store("a", 1100, 1000), Ok(()));
        assert_eq!(
            guard.check_and_store("a", 1100, 1001),
            Err(ModiError::Replayed("a".into()))
        );
        assert_eq!(guard.check_and_store("b", 1100, 1001), Ok(()));
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn entries_expire_at_their_own_time() {
        let guard = InMemoryReplayGuard::new(10);
        assert_eq!(guard.check_and_store("short", 1010, 1000), Ok(()));
        assert_eq!(guard.check_and_store("long", 2000, 1000), Ok(()));
        assert_eq!(
            guard.check_and_store("short", 1010, 1009),
            Err(ModiError::Replayed("short".into()))
        );
        // At 1010 "short" is gone, "long" is not.
        assert_eq!(guard.check_and_store("short", 1020, 1010), Ok(()));
        assert_eq!(
            guard.check_and_store("long", 2000, 1010),
            Err(ModiError::Replayed("long".into()))
        );
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn full_cache_refuses_instead_of_forgetting() {
        let guard = InMemoryReplayGuard::new(2);
        assert_eq!(guard.check_and_store("a", 1100, 1000), Ok(()));
        assert_eq!(guard.check_and_store("b", 1200, 1000), Ok(()));
        assert_eq!(
            guard.check_and_store("c", 1200, 1000),
            Err(ModiError::ReplayCacheFull)
        );
        // "a" still remembered despite the pressure.
        assert_eq!(
            guard.check_and_store("a", 1100, 1000),
            Err(ModiError::Replayed("a".into()))
        );
        // Once "a" expires there is room again.
        assert_eq!(guard.check_and_store("c", 1200, 1100), Ok(()));
    }

    #[test]
    fn bad_jti_is_refused() {
        let guard = InMemoryReplayGuard::new(2);
        assert!(matches!(
            guard.check_and_store("", 1100, 1000),
            Err(ModiError::Malformed { .. })
        ));
        let long = "x".repeat(MAX_JTI_LEN + 1);
        assert!(matches!(
            guard.check_and_store(&long, 1100, 1000),
            Err(ModiError::Malformed { .. })
        ));
    }

    #[test]
    fn one_client_over_its_share_is_refused_alone() {
        let guard = InMemoryReplayGuard::new(10).with_per_client_cap(3);
        for (jti, exp) in [("f1", 1100), ("f2", 1050), ("f3", 1200)] {
            assert_eq!(guard.check_and_store_for("flood", jti, exp, 1000), Ok(()));
        }
        // The fourth unique jti of the same client: 429, retry when its oldest (1050) expires.
        let err = guard
            .check_and_store_for("flood", "f4", 1200, 1000)
            .unwrap_err();
        assert_eq!(
            err,
            ModiError::ReplayQuotaExceeded {
                retry_after_secs: 50
            }
        );
        assert_eq!(err.http_status(), 429);
        assert_eq!(guard.len_for("flood"), 3);
        // A replay is still a replay, not a quota refusal.
        assert_eq!(
            guard.check_and_store_for("flood", "f1", 1100, 1001),
            Err(ModiError::Replayed("f1".into()))
        );
        // Everybody else keeps working, up to their own share.
        for jti in ["o1", "o2", "o3"] {
            assert_eq!(guard.check_and_store_for("other", jti, 1200, 1001), Ok(()));
        }
        assert_eq!(guard.check_and_store("unscoped", 1200, 1001), Ok(()));
        assert_eq!(guard.len(), 7);
        // Once f2 expires the flooding client has room for one more, and only one.
        assert_eq!(guard.check_and_store_for("flood", "f4", 1200, 1050), Ok(()));
        assert!(matches!(
            guard.check_and_store_for("flood", "f5", 1200, 1050),
            Err(ModiError::ReplayQuotaExceeded { .. })
        ));
        assert_eq!(guard.len_for("flood"), 3);
        // All of its entries expired (pruned by any later call): its bookkeeping goes too.
        assert_eq!(guard.check_and_store_for("other", "o4", 1300, 1250), Ok(()));
        assert_eq!(guard.len_for("flood"), 0);
    }

    #[test]
    fn the_global_bound_still_holds_across_clients() {
        let guard = InMemoryReplayGuard::new(4).with_per_client_cap(3);
        assert_eq!(guard.check_and_store_for("a", "a1", 1100, 1000), Ok(()));
        assert_eq!(guard.check_and_store_for("a", "a2", 1100, 1000), Ok(()));
        assert_eq!(guard.check_and_store_for("b", "b1", 1100, 1000), Ok(()));
        assert_eq!(guard.check_and_store_for("c", "c1", 1100, 1000), Ok(()));
        assert_eq!(
            guard.check_and_store_for("d", "d1", 1100, 1000),
            Err(ModiError::ReplayCacheFull)
        );
        // The cap is clamped to the capacity.
        let guard = InMemoryReplayGuard::new(2).with_per_client_cap(50);
        assert_eq!(guard.check_and_store_for("a", "a1", 1100, 1000), Ok(()));
        assert_eq!(guard.check_and_store_for("a", "a2", 1100, 1000), Ok(()));
        assert_eq!(
            guard.check_and_store_for("a", "a3", 1100, 1000),
            Err(ModiError::ReplayQuotaExceeded {
                retry_after_secs: 100
            })
        );
    }

    #[test]
    fn scopes_do_not_collide() {
        let guard = InMemoryReplayGuard::new(10);
        assert_eq!(guard.check_and_store("same", 1100, 1000), Ok(()));
        // The same string as a DPoP proof jti is another token.
        assert_eq!(
            guard.check_and_store_in(ReplayScope::DpopProof, "same", 1100, 1000),
            Ok(())
        );
        assert_eq!(
            guard.check_and_store_in(ReplayScope::DpopProof, "same", 1100, 1001),
            Err(ModiError::Replayed("same".into()))
        );
        assert_eq!(
            guard.check_and_store_in(ReplayScope::Modi, "same", 1100, 1001),
            Err(ModiError::Replayed("same".into()))
        );
        assert_eq!(guard.len(), 2);
        // Both expire on their own.
        assert_eq!(
            guard.check_and_store_in(ReplayScope::DpopProof, "same", 1200, 1100),
            Ok(())
        );
    }
}
