//! The cached JWKS of the PDND voucher-signing keys, refreshed in the background.
//!
//! Fetching PDND's JWKS on the request path would tie our latency and availability to theirs,
//! and never refetching would break on their key rotation. So one background task owns every
//! fetch, and requests only ever read what it last stored:
//!
//! - **Requests never wait on PDND while keys are held.** Keys older than the TTL keep serving
//!   (stale) until a refresh succeeds; a PDND outage costs nothing but log lines.
//! - **One fetch at a time, at most one per back-off interval, whatever the load.** After a
//!   success the next fetch may start `min_interval` later at the earliest (at the TTL
//!   normally); after `n` consecutive failures, `min_interval x 2^(n-1)` capped at
//!   `max_backoff`, plus up to 25 % jitter so several replicas do not hammer PDND in step.
//!   Each fetch is abandoned after `fetch_timeout`.
//! - **An unknown kid asks for a refresh** ([`JwksCache::request_refresh`]) and does not wait
//!   for it: the request is refused now, the next voucher with that kid passes once the task
//!   has fetched, no sooner than the schedule allows (a flood of forged kids is one fetch).
//! - **Only a gateway that has never loaded keys** fails ([`JwksError::NeverLoaded`], 503): its
//!   requests wait for the fetch under way, bounded by the fetch timeout, and only when a fetch
//!   may run now.

use crate::config::PdndConfig;
use crate::pdnd::jwk::JwkSet;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The largest JWKS body read (PDND's holds a few RSA keys, about 2 KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The most jitter added to a back-off, as a fraction of it.
const JITTER_FRACTION: f64 = 0.25;

/// Why no key set is available.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// One fetch failed (kept for the log; requests only see [`JwksError::NeverLoaded`]).
    #[error("JWKS fetch from {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    /// No fetch has ever succeeded, so no voucher can be checked.
    #[error("no PDND key set loaded yet (last attempt: {0})")]
    NeverLoaded(String),
}

/// When the JWKS is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwksSchedule {
    /// Keys older than this are refreshed (and keep serving until a refresh succeeds).
    pub ttl: Duration,
    /// The least time between the end of one fetch and the start of the next; also the first
    /// back-off after a failure.
    pub min_interval: Duration,
    /// The longest back-off (before jitter).
    pub max_backoff: Duration,
    /// One fetch is abandoned after this long.
    pub fetch_timeout: Duration,
}

impl JwksSchedule {
    /// The schedule configured in `[pdnd]`.
    pub fn from_config(pdnd: &PdndConfig) -> Self {
        JwksSchedule {
            ttl: Duration::from_secs(pdnd.jwks_cache_ttl_secs),
            min_interval: Duration::from_secs(pdnd.jwks_min_refetch_interval_secs),
            max_backoff: Duration::from_secs(pdnd.jwks_max_backoff_secs),
            fetch_timeout: Duration::from_millis(pdnd.jwks_fetch_timeout_ms),
        }
    }

    /// The wait after `failures` consecutive failed fetches, before jitter: `min_interval`
    /// doubled per failure after the first, capped at `max_backoff` (and never below
    /// `min_interval`).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.min_interval
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
            .max(self.min_interval)
    }

    /// `backoff(failures)` plus `jitter` (0..=1) times 25 % of it: never shorter than the
    /// back-off itself, so the rate bound holds, never longer than 1.25 x `max_backoff`.
    pub fn jittered_backoff(&self, failures: u32, jitter: f64) -> Duration {
        let base = self.backoff(failures);
        base + base.mul_f64(JITTER_FRACTION * jitter.clamp(0.0, 1.0))
    }
}

/// What the cache holds; the lock is never held across an await.
struct State {
    keys: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
    /// Consecutive failed fetches.
    failures: u32,
    /// The earliest start of the next fetch.
    not_before: Instant,
    in_flight: bool,
    /// A request asked for a fetch (unknown kid, or no keys yet).
    wanted: bool,
    last_error: Option<String>,
}

/// A JWKS fetched over HTTP(S) by a background task and cached. Build it with
/// [`JwksCache::start`].
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    schedule: JwksSchedule,
    state: Mutex<State>,
    /// Wakes the background task (a refresh was asked for).
    wake: Arc<Notify>,
    /// Counts finished fetch attempts; waiters for a first load watch it.
    attempts: watch::Sender<u64>,
    fetches: AtomicU64,
    refresher_started: AtomicBool,
    me: Weak<JwksCache>,
}

impl JwksCache {
    /// A cache of the JWKS at `url`, whose background task starts fetching at once (on the
    /// current tokio runtime; without one, at the first use from within one).
    pub fn start(url: String, http: reqwest::Client, schedule: JwksSchedule) -> Arc<Self> {
        let cache = Arc::new_cyclic(|me| JwksCache {
            url,
            http,
            schedule,
            state: Mutex::new(State {
                keys: None,
                fetched_at: None,
                failures: 0,
                not_before: Instant::now(),
                in_flight: false,
                wanted: true,
                last_error: None,
            }),
            wake: Arc::new(Notify::new()),
            attempts: watch::channel(0).0,
            fetches: AtomicU64::new(0),
            refresher_started: AtomicBool::new(false),
            me: me.clone(),
        });
        cache.ensure_refresher();
        cache
    }

    /// How many fetches were started since start (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// True once a key set has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.lock().keys.is_some()
    }

    /// The key set held, stale or not, without waiting. Only when none was ever loaded does it
    /// wait, for the fetch that may run now (bounded by the fetch timeout), and then fail.
    pub async fn keys(&self) -> Result<Arc<JwkSet>, JwksError> {
        if let Some(keys) = self.lock().keys.clone() {
            return Ok(keys);
        }
        let mut finished = self.attempts.subscribe();
        let fetch_may_run = {
            let mut state = self.lock();
            state.wanted = true;
            state.in_flight || Instant::now() >= state.not_before
        };
        self.ensure_refresher();
        self.wake.notify_one();
        if fetch_may_run {
            let wait = self.schedule.fetch_timeout + Duration::from_millis(500);
            let _ = tokio::time::timeout(wait, finished.changed()).await;
        }
        let state = self.lock();
        state.keys.clone().ok_or_else(|| {
            JwksError::NeverLoaded(
                state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "none finished yet".to_owned()),
            )
        })
    }

    /// Asks the background task for a fetch (a voucher named a kid the set lacks) and returns
    /// at once; the fetch starts when the schedule allows, however many ask.
    pub fn request_refresh(&self) {
        self.lock().wanted = true;
        self.ensure_refresher();
        self.wake.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (every update is
        // a few plain assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ensure_refresher(&self) {
        if self.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(refresher(self.me.clone(), self.wake.clone()));
            }
            Err(_) => self.refresher_started.store(false, Ordering::Release),
        }
    }

    /// When the next fetch should start.
    fn next_due(&self, now: Instant) -> Instant {
        let state = self.lock();
        let wanted_at = match (state.wanted, state.fetched_at) {
            (false, Some(at)) if state.keys.is_some() => at + self.schedule.ttl,
            _ => now,
        };
        wanted_at.max(state.not_before)
    }

    async fn fetch_once(&self) {
        {
            let mut state = self.lock();
            state.in_flight = true;
            state.wanted = false;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(self.schedule.fetch_timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(self.error(format!(
                "no complete answer within {} ms",
                self.schedule.fetch_timeout.as_millis()
            ))),
        };
        let now = Instant::now();
        crate::telemetry::metrics::get()
            .jwks_refreshes
            .add(1, &[crate::telemetry::metrics::outcome(result.is_ok())]);
        {
            let mut state = self.lock();
            state.in_flight = false;
            match result {
                Ok(keys) => {
                    tracing::debug!(kids = ?keys.kids(), "JWKS refreshed");
                    state.keys = Some(Arc::new(keys));
                    state.fetched_at = Some(now);
                    state.failures = 0;
                    state.not_before = now + self.schedule.min_interval;
                    state.last_error = None;
                }
                Err(e) => {
                    state.failures = state.failures.saturating_add(1);
                    let jitter = rand::thread_rng().gen_range(0.0..=1.0);
                    let delay = self.schedule.jittered_backoff(state.failures, jitter);
                    state.not_before = now + delay;
                    if state.keys.is_some() {
                        tracing::warn!(error = %e, failures = state.failures, retry_in_ms = delay.as_millis() as u64, "JWKS refresh failed; serving the last good key set");
                    } else {
                        tracing::error!(error = %e, failures = state.failures, retry_in_ms = delay.as_millis() as u64, "JWKS fetch failed; no key set loaded, vouchers cannot be checked");
                    }
                    state.last_error = Some(e.to_string());
                }
            }
        }
        self.attempts.send_modify(|n| *n += 1);
    }

    fn error(&self, reason: String) -> JwksError {
        JwksError::Fetch {
            url: self.url.clone(),
            reason,
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let mut response = self
            .http
            .get(&self.url)
            .timeout(self.schedule.fetch_timeout)
            .send()
            .await
            .map_err(|e| self.error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(self.error(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(self.error(format!("the answer exceeds {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = serde_json::from_slice::<JwkSet>(&body)
            .map_err(|e| self.error(format!("not a JWKS: {e}")))?;
        // An empty set would make every voucher fail: treat it as a failed fetch and keep the
        // keys held.
        if keys.keys.is_empty() {
            return Err(self.error("the JWKS holds no key".to_owned()));
        }
        Ok(keys)
    }
}

/// The background task: sleeps until the next fetch is due (or a refresh is asked for),
/// fetches, repeats; it ends once the cache is dropped.
async fn refresher(cache: Weak<JwksCache>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due = strong.next_due(now);
        if due > now {
            drop(strong);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = wake.notified() => {}
            }
            continue;
        }
        strong.fetch_once().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::test_keys;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn schedule(ttl_ms: u64, min_ms: u64, max_ms: u64, timeout_ms: u64) -> JwksSchedule {
        JwksSchedule {
            ttl: Duration::from_millis(ttl_ms),
            min_interval: Duration::from_millis(min_ms),
            max_backoff: Duration::from_millis(max_ms),
            fetch_timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_cap() {
        let s = schedule(1_000, 10_000, 300_000, 3_000);
        let secs = |n| s.backoff(n).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(4), secs(5)],
            [10, 20, 40, 80, 160]
        );
        assert_eq!(secs(6), 300);
        assert_eq!(secs(u32::MAX), 300);
        // A cap below the minimum never shortens the minimum.
        let s = schedule(1_000, 10_000, 5_000, 3_000);
        assert_eq!(s.backoff(1).as_secs(), 10);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter_and_never_shortens() {
        let s = schedule(1_000, 10_000, 300_000, 3_000);
        assert_eq!(s.jittered_backoff(1, 0.0), Duration::from_secs(10));
        assert_eq!(s.jittered_backoff(1, 1.0), Duration::from_millis(12_500));
        assert_eq!(s.jittered_backoff(9, 1.0), Duration::from_secs(375));
        assert_eq!(s.jittered_backoff(1, 7.0), Duration::from_millis(12_500));
        assert_eq!(s.jittered_backoff(1, -1.0), Duration::from_secs(10));
    }

    /// How the stub JWKS server answers the n-th request (from 0).
    #[derive(Clone, Copy)]
    enum Answer {
        Jwks,
        Hang,
        Status500,
    }

    /// A JWKS server on a loopback port answering by a script; counts requests.
    struct Stub {
        url: String,
        requests: Arc<AtomicUsize>,
    }

    async fn stub(script: fn(usize) -> Answer) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let body = serde_json::to_string(&JwkSet::single(
            &test_keys::authority().kid(),
            test_keys::authority().public(),
        ))
        .unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let answer = match script(n) {
                        Answer::Jwks => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Answer::Status500 => {
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                        }
                        // Holds the connection open and never answers.
                        Answer::Hang => std::future::pending::<String>().await,
                    };
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Stub { url, requests }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gave up waiting for {what}");
    }

    #[tokio::test]
    async fn first_load_is_awaited_and_then_served_from_memory() {
        let stub = stub(|_| Answer::Jwks).await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(600_000, 50, 1_000, 2_000),
        );
        let keys = cache.keys().await.expect("first load");
        assert!(keys.find(&test_keys::authority().kid()).is_some());
        for _ in 0..20 {
            cache.keys().await.expect("cached");
        }
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hanging_jwks_server_delays_no_request() {
        // The first answer loads the keys; every later request hangs, and the fetch timeout
        // (a minute) is far longer than the test: a request that waited on it would not return.
        let stub = stub(|n| if n == 0 { Answer::Jwks } else { Answer::Hang }).await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(100, 50, 1_000, 60_000),
        );
        cache.keys().await.expect("first load");
        // The TTL passes; the background refresh is now stuck on the hanging server.
        wait_for("a second, hanging fetch", || {
            stub.requests.load(Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(cache.fetch_count(), 2);
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            for _ in 0..100 {
                cache.keys().await.expect("stale keys served");
                cache.request_refresh();
            }
        })
        .await;
        assert!(answered.is_ok(), "a request waited on the hanging fetch");
        // Asking for refreshes while one hangs started no other fetch.
        assert_eq!(cache.fetch_count(), 2);
        assert_eq!(stub.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_kid_requests_are_one_fetch_per_interval() {
        let stub = stub(|_| Answer::Jwks).await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(600_000, 60_000, 120_000, 2_000),
        );
        cache.keys().await.expect("first load");
        // A flood right after a fetch: the minute-long interval holds every one of them.
        for _ in 0..1_000 {
            cache.request_refresh();
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.fetch_count(), 1);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_the_interval_has_passed() {
        let stub = stub(|_| Answer::Jwks).await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(600_000, 100, 1_000, 2_000),
        );
        cache.keys().await.expect("first load");
        for _ in 0..100 {
            cache.request_refresh();
        }
        wait_for("the refresh asked for", || cache.fetch_count() == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.fetch_count(), 2, "a hundred requests, one fetch");
    }

    #[tokio::test]
    async fn a_cache_that_never_loaded_fails_and_backs_off() {
        let stub = stub(|_| Answer::Status500).await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(600_000, 60_000, 120_000, 2_000),
        );
        let err = cache.keys().await.expect_err("no keys");
        assert!(
            matches!(&err, JwksError::NeverLoaded(reason) if reason.contains("500")),
            "{err}"
        );
        assert!(!cache.is_loaded());
        // In back-off: further requests fail at once, without a fetch each.
        for _ in 0..50 {
            assert!(cache.keys().await.is_err());
        }
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(stub.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_refreshes_keep_the_keys_and_back_off() {
        let stub = stub(|n| {
            if n == 0 {
                Answer::Jwks
            } else {
                Answer::Status500
            }
        })
        .await;
        let cache = JwksCache::start(
            stub.url.clone(),
            reqwest::Client::new(),
            schedule(50, 100, 10_000, 2_000),
        );
        cache.keys().await.expect("first load");
        wait_for("a failed refresh", || cache.fetch_count() >= 2).await;
        // Back-off after the first failure: 100 ms, then 200, 400...: in a second at most
        // 1 + 4 more fetches (100 + 200 + 400 + 800 > 1000 already counts the slack).
        let at = cache.fetch_count();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(1) {
            cache.keys().await.expect("stale keys served");
            cache.request_refresh();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let during = cache.fetch_count() - at;
        assert!(during <= 4, "{during} fetches in a second of back-off");
        assert!(cache.is_loaded());
    }
}
