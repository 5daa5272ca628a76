//! [`StateStore`] in the process's memory: one replica only.
//!
//! Bounded like the replay memory it stands beside: at most `capacity` live keys. When full of
//! live keys it refuses new ones ([`StateError::Full`]) rather than evicting one: evicting a
//! live `jti` would re-open the replay window it guards, and evicting a live counter would
//! reset a limit. Expired keys are pruned on every call, in expiry order.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gcra::{self, Gcra, GcraDecision};
use super::{StateError, StateFuture, StateStore};

/// The in-process store.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    /// The zero of the GCRA times kept as numbers (microseconds since the store was made).
    origin: Instant,
    entries: Mutex<Entries>,
}

/// Each key is one shared string in both maps: a rate limit's key, updated on every call,
/// moves in the expiry order without being copied.
#[derive(Debug, Default)]
struct Entries {
    /// key -> (expires, value).
    values: HashMap<Arc<str>, (Instant, u64)>,
    by_expiry: BTreeSet<(Instant, Arc<str>)>,
}

impl Entries {
    fn prune(&mut self, now: Instant) {
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.values.remove(&key);
            }
        }
    }

    /// Sets `key`'s value and expiry, creating it when new.
    fn set(&mut self, key: &str, expires: Instant, value: u64) {
        let existing = self
            .values
            .get_key_value(key)
            .map(|(shared, (old_expires, _))| (Arc::clone(shared), *old_expires));
        let Some((shared, old_expires)) = existing else {
            let shared: Arc<str> = Arc::from(key);
            self.values.insert(Arc::clone(&shared), (expires, value));
            self.by_expiry.insert((expires, shared));
            return;
        };
        if old_expires != expires {
            let old = (old_expires, shared);
            self.by_expiry.remove(&old);
            self.by_expiry.insert((expires, old.1));
        }
        if let Some(entry) = self.values.get_mut(key) {
            *entry = (expires, value);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((shared, (expires, _))) = self.values.remove_entry(key) {
            self.by_expiry.remove(&(expires, shared));
        }
    }
}

impl MemoryStore {
    /// A store of at most `capacity` live keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            capacity: capacity.max(1),
            origin: Instant::now(),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Live keys (for tests and metrics).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.prune(now);
        entries.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update leaves both maps consistent before it can panic, so a poisoned lock
        // holds usable data: keep serving rather than failing every request.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert_once_now(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.prune(now);
        if entries.values.contains_key(key) {
            return Ok(false);
        }
        if entries.values.len() >= self.capacity {
            return Err(StateError::Full(self.capacity));
        }
        entries.set(key, now + ttl, 1);
        Ok(true)
    }

    fn incr_now(&self, key: &str, ttl: Duration) -> Result<u64, StateError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.prune(now);
        if let Some((_, value)) = entries.values.get_mut(key) {
            *value = value.saturating_add(1);
            return Ok(*value);
        }
        if entries.values.len() >= self.capacity {
            return Err(StateError::Full(self.capacity));
        }
        entries.set(key, now + ttl, 1);
        Ok(1)
    }

    fn gcra_now(&self, key: &str, rate: Gcra) -> Result<GcraDecision, StateError> {
        let now = Instant::now();
        let micros = |t: Instant| u64::try_from((t - self.origin).as_micros()).unwrap_or(u64::MAX);
        let mut entries = self.lock();
        entries.prune(now);
        let stored = entries.values.get(key).map(|(_, tat)| *tat);
        if stored.is_none() && entries.values.len() >= self.capacity {
            return Err(StateError::Full(self.capacity));
        }
        let (decision, new_tat) = gcra::decide(stored, micros(now), rate);
        if let Some(tat) = new_tat {
            entries.set(key, now + decision.reset_after, tat);
        }
        Ok(decision)
    }

    fn remove_now(&self, key: &str) {
        self.lock().remove(key);
    }
}

impl StateStore for MemoryStore {
    fn insert_once<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, bool> {
        let result = self.insert_once_now(key, ttl);
        Box::pin(async move { result })
    }

    fn incr<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, u64> {
        let result = self.incr_now(key, ttl);
        Box::pin(async move { result })
    }

    fn gcra<'a>(&'a self, key: &'a str, rate: Gcra) -> StateFuture<'a, GcraDecision> {
        let result = self.gcra_now(key, rate);
        Box::pin(async move { result })
    }

    fn remove<'a>(&'a self, key: &'a str) -> StateFuture<'a, ()> {
        self.remove_now(key);
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> StateFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_shared_suite() {
        let store = MemoryStore::new(1_000);
        super::super::suite::run(&store, "suite").await;
    }

    #[tokio::test]
    async fn full_store_refuses_instead_of_forgetting() {
        let store = MemoryStore::new(2);
        let long = Duration::from_secs(60);
        assert_eq!(store.insert_once("a", long).await, Ok(true));
        assert_eq!(store.incr("b", long).await, Ok(1));
        assert_eq!(store.insert_once("c", long).await, Err(StateError::Full(2)));
        assert_eq!(store.incr("d", long).await, Err(StateError::Full(2)));
        // Existing keys still answer truthfully under pressure.
        assert_eq!(store.insert_once("a", long).await, Ok(false));
        assert_eq!(store.incr("b", long).await, Ok(2));
        // Room again once one goes.
        store.remove("a").await.expect("remove");
        assert_eq!(store.insert_once("c", long).await, Ok(true));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn a_key_updated_again_and_again_stays_one_entry_in_both_orders() {
        let store = MemoryStore::new(10);
        let rate = Gcra::per_second(1_000.0, 1_000);
        for _ in 0..100 {
            assert!(store.gcra("rate:k", rate).await.expect("gcra").allowed);
        }
        store
            .remove("other")
            .await
            .expect("remove of a missing key");
        {
            let entries = store.lock();
            assert_eq!(entries.values.len(), 1);
            assert_eq!(entries.by_expiry.len(), 1);
            let (expires, key) = entries.by_expiry.first().expect("one");
            assert_eq!(&**key, "rate:k");
            assert_eq!(entries.values.get("rate:k").map(|v| v.0), Some(*expires));
        }
        store.remove("rate:k").await.expect("remove");
        let entries = store.lock();
        assert!(entries.values.is_empty() && entries.by_expiry.is_empty());
    }

    #[tokio::test]
    async fn expired_keys_free_their_room() {
        let store = MemoryStore::new(1);
        assert_eq!(
            store.insert_once("a", Duration::from_millis(50)).await,
            Ok(true)
        );
        assert_eq!(
            store.insert_once("b", Duration::from_secs(60)).await,
            Err(StateError::Full(1))
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            store.insert_once("b", Duration::from_secs(60)).await,
            Ok(true)
        );
    }
}
