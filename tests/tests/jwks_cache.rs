//! The JWKS cache against the real local authority: fetched once, refetched on an unknown kid
//! at most once per interval however many callers ask, and the last good set kept when the
//! authority is unreachable.

use e2e::Harness;
use gateway::provider::jwks::JwksCache;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn unknown_kid_flood_causes_at_most_one_fetch() {
    let h = Harness::start().await;
    let cache = Arc::new(JwksCache::new(
        h.authority("/.well-known/jwks.json"),
        reqwest::Client::new(),
        Duration::from_secs(600),
        Duration::from_millis(300),
    ));
    let keys = cache.keys().await.expect("jwks");
    assert!(keys.find(&h.authority_kid()).is_some());
    assert_eq!(cache.fetch_count(), 1);
    // Cached: no new fetch.
    cache.keys().await.expect("jwks");
    assert_eq!(cache.fetch_count(), 1);
    // Right after a fetch an unknown kid does not refetch (rate limit)...
    cache.refresh_for_unknown_kid().await.expect("jwks");
    assert_eq!(cache.fetch_count(), 1);
    // ...after the interval it refetches once, and a flood right after does not.
    tokio::time::sleep(Duration::from_millis(350)).await;
    cache.refresh_for_unknown_kid().await.expect("jwks");
    assert_eq!(cache.fetch_count(), 2);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            cache.refresh_for_unknown_kid().await.is_ok()
        }));
    }
    for t in tasks {
        assert!(t.await.expect("task"));
    }
    assert_eq!(
        cache.fetch_count(),
        2,
        "a flood of unknown kids must not reach the authority"
    );
}

#[tokio::test]
async fn concurrent_first_use_fetches_once_and_stale_keys_survive_an_outage() {
    let h = Harness::start().await;
    let cache = Arc::new(JwksCache::new(
        h.authority("/.well-known/jwks.json"),
        reqwest::Client::new(),
        Duration::from_millis(300),
        Duration::from_millis(100),
    ));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { cache.keys().await.is_ok() }));
    }
    for t in tasks {
        assert!(t.await.expect("task"));
    }
    assert_eq!(cache.fetch_count(), 1, "single flight on a cold cache");

    // A cache pointed at nothing has no keys to offer.
    let dead = JwksCache::new(
        "http://127.0.0.1:9/.well-known/jwks.json".to_owned(),
        reqwest::Client::new(),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    assert!(dead.keys().await.is_err());

    // The authority goes away: once the TTL has passed the refresh fails, the old keys stay.
    let kid = h.authority_kid();
    h.env.running.stop_authority().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let keys = cache.keys().await.expect("stale keys kept");
    assert!(keys.find(&kid).is_some());
    assert_eq!(cache.fetch_count(), 2);
}
