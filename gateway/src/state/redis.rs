//! [`StateStore`] in Redis, shared by every replica.
//!
//! One connection per process ([`Connector`]): for a single server the crate's
//! `ConnectionManager`, which multiplexes every request over one connection and reconnects by
//! itself; under Sentinel the master the sentinels name, asked again after a failure; on a
//! Cluster the crate's cluster connection (see [`super::redis_conn`] for the URL forms). So no
//! pool and no restart of the gateway are needed. It is created lazily: a Redis down when the
//! gateway starts only makes the requests that need it answer 503 until it is back.
//!
//! Every command is bounded by `[state] timeout_ms` (a hung Redis must not hang requests) and
//! every failure becomes [`StateError`]: the caller refuses, it never guesses. Error texts come
//! from the redis crate, which does not print the URL's password; the URL itself is only ever
//! logged through [`crate::config::redact_url`].
//!
//! Commands: `SET key 1 NX PX ttl` (insert_once), a two-line Lua script for `INCR` + `PEXPIRE`
//! on the first increment (atomic, so a counter can never be left without a TTL), `DEL`, `PING`.
//! Run Redis with `maxmemory-policy noeviction`: eviction would forget live jtis (see
//! `docs/state.md`).

use std::time::Duration;

use redis::{FromRedisValue, Script, ScriptInvocation};

use super::redis_conn::{redact, Connector, Target};
use super::{StateError, StateFuture, StateStore};

/// INCR, and PEXPIRE only when the counter was just created: one round trip, atomic.
const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// The Redis store.
pub struct RedisStore {
    connector: Connector,
    /// `redis`, `redis-sentinel` or `redis-cluster`.
    kind: &'static str,
    prefix: String,
    timeout: Duration,
    incr: Script,
    /// The URL with its password replaced, for `Debug`.
    shown_url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// A store for `url` that connects on first use (must be called inside a tokio runtime).
    pub fn connect_lazy(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StateError> {
        let target = Target::parse(url).map_err(|e| StateError::BadUrl(format!("URL {e}")))?;
        let connector =
            Connector::new(&target, timeout).map_err(|e| StateError::Unavailable(e.to_string()))?;
        Ok(RedisStore {
            connector,
            kind: target.kind(),
            prefix: prefix.to_owned(),
            timeout,
            incr: Script::new(INCR_SCRIPT),
            shown_url: redact(url),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one command on the store's connection, within the timeout (connecting, or asking
    /// the sentinels for the master, counts in it), mapping every failure to [`StateError`].
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StateError> {
        self.bounded(async {
            let mut conn = self.connector.conn().await?;
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs one script call the same way: `EVALSHA`, and `SCRIPT LOAD` + `EVALSHA` when the
    /// server does not know the script yet (on a Cluster the load goes to every master). On a
    /// Cluster every key of the call must hash to one slot (`{hash tag}`).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StateError> {
        self.bounded(async {
            let mut conn = self.connector.conn().await?;
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.connector.failed(Some(&e)).await;
                Err(StateError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.connector.failed(None).await;
                Err(StateError::Timeout(
                    u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                ))
            }
        }
    }
}

/// Milliseconds for `PX`, at least 1 (Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl StateStore for RedisStore {
    fn insert_once<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
            // "OK" when set, nil when the key existed.
            let reply: Option<String> = self.query(&cmd).await?;
            Ok(reply.is_some())
        })
    }

    fn incr<'a>(&'a self, key: &'a str, ttl: Duration) -> StateFuture<'a, u64> {
        Box::pin(async move {
            let mut invocation = self.incr.key(self.key(key));
            invocation.arg(millis(ttl));
            self.invoke(&invocation).await
        })
    }

    fn gcra<'a>(
        &'a self,
        key: &'a str,
        rate: super::gcra::Gcra,
    ) -> StateFuture<'a, super::gcra::GcraDecision> {
        Box::pin(async move {
            // One key, so one slot: the script runs on a Cluster as on one server.
            let invocation = super::gcra::invocation(self.key(key), rate);
            let reply: Vec<i64> = self.invoke(&invocation).await?;
            super::gcra::from_reply(&reply)
                .ok_or_else(|| StateError::Unavailable(format!("GCRA script answered {reply:?}")))
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(key));
            let _: i64 = self.query(&cmd).await?;
            Ok(())
        })
    }

    fn ping(&self) -> StateFuture<'_, ()> {
        Box::pin(async move {
            let reply: String = self.query(&redis::cmd("PING")).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(StateError::Unavailable(format!("PING answered {reply}")))
            }
        })
    }

    fn backend(&self) -> &'static str {
        self.kind
    }
}

/// Tests against a real Redis at `PDNDGW_TEST_REDIS_URL` (started by `tests/run.sh`); without
/// it they print SKIPPED, and fail when `CI` is set.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The test Redis URL, or `None` after printing why the test is skipped.
    pub(crate) fn test_url() -> Option<String> {
        test_support::redis_url()
    }

    /// A store under a prefix of its own, so runs never see each other's keys.
    pub(crate) fn store(url: &str) -> RedisStore {
        let prefix = format!("pdndgw-test:{}:", uuid::Uuid::new_v4());
        RedisStore::connect_lazy(url, &prefix, Duration::from_secs(2)).expect("test Redis URL")
    }

    #[tokio::test]
    async fn passes_the_shared_suite() {
        let Some(url) = test_url() else { return };
        super::super::suite::run(&store(&url), "suite").await;
    }

    #[tokio::test]
    async fn two_clients_share_one_truth() {
        let Some(url) = test_url() else { return };
        let a = store(&url);
        // Another process's store: same Redis, same prefix.
        let b = RedisStore::connect_lazy(&url, &a.prefix, Duration::from_secs(2)).expect("url");
        let ttl = Duration::from_secs(60);
        assert_eq!(a.insert_once("jti", ttl).await, Ok(true));
        assert_eq!(b.insert_once("jti", ttl).await, Ok(false));
        assert_eq!(a.incr("n", ttl).await, Ok(1));
        assert_eq!(b.incr("n", ttl).await, Ok(2));
        // Another prefix is another gateway.
        let other = store(&url);
        assert_eq!(other.insert_once("jti", ttl).await, Ok(true));
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_not_an_answer() {
        // A port nothing listens on: every call must fail, never report "absent".
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let store = RedisStore::connect_lazy(
            &format!("redis://:hunter2-secret@127.0.0.1:{port}/0"),
            "p:",
            Duration::from_millis(200),
        )
        .expect("url");
        let ttl = Duration::from_secs(1);
        let err = store.insert_once("k", ttl).await.unwrap_err();
        assert!(
            matches!(err, StateError::Unavailable(_) | StateError::Timeout(_)),
            "{err:?}"
        );
        assert!(store.incr("k", ttl).await.is_err());
        assert!(store.ping().await.is_err());
        assert!(!err.to_string().contains("hunter2-secret"), "{err}");
        assert!(!format!("{store:?}").contains("hunter2-secret"));
    }
}
