//! Anti-replay for the `jti` of Agid-JWT-Signature and Agid-JWT-TrackingEvidence tokens, and
//! of DPoP proofs (RFC 9449).
//!
//! Verification proves a JWS is authentic; only memory proves it is new. A jti must be
//! remembered until the token would be refused as expired anyway (`exp + leeway`), and no
//! longer. The trait lets a multi-replica deployment put this memory in a shared store
//! (Redis `SET NX EX`); [`InMemoryReplayGuard`] serves a single process.
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

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::jws::MAX_JTI_LEN;
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
    /// Records the ModI `jti` until `expires_at` (unix seconds). Fails with
    /// [`ModiError::Replayed`] if it is already recorded and not yet expired at `now`.
    fn check_and_store(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), ModiError> {
        self.check_and_store_in(ReplayScope::Modi, jti, expires_at, now)
    }

    /// [`ReplayGuard::check_and_store`] in the key space of `scope`.
    fn check_and_store_in(
        &self,
        scope: ReplayScope,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError>;
}

/// A bounded in-process [`ReplayGuard`].
///
/// Entries expire at their own `expires_at` and are pruned on every call. When the cache is
/// full of live entries it refuses new ones with [`ModiError::ReplayCacheFull`] (503) rather
/// than evicting: evicting a live jti would re-open the replay window it guards. Size it as
/// (requests per second) x (max token lifetime + leeway).
#[derive(Debug)]
pub struct InMemoryReplayGuard {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    seen: HashMap<(ReplayScope, String), i64>,
    by_expiry: BTreeSet<(i64, ReplayScope, String)>,
}

impl InMemoryReplayGuard {
    pub fn new(capacity: usize) -> Self {
        InMemoryReplayGuard {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Live entries (for metrics).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the two maps inconsistent in a way that
        // would accept a replay (inserts go to `seen` first), so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    fn check_and_store_in(
        &self,
        scope: ReplayScope,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ModiError> {
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(ModiError::malformed("claim", "jti empty or too long"));
        }
        let mut state = self.lock();
        // Prune everything expired at `now`.
        while let Some(first) = state.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, scope, jti)) = state.by_expiry.pop_first() {
                state.seen.remove(&(scope, jti));
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
        if state.seen.len() >= self.capacity {
            return Err(ModiError::ReplayCacheFull);
        }
        state.seen.insert(key, expires_at);
        state.by_expiry.insert((expires_at, scope, jti.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
