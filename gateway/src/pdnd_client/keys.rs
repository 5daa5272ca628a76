//! PDND's key lookup by kid (`GET {pdnd.keys_url}/{kid}`): the public key a caller
//! registered on PDND, for the ModI patterns whose tokens name their signer by `kid`
//! (INTEGRITY_REST_02, AUDIT_REST_02).
//!
//! It is PDND over HTTP, like the token client and the JWKS cache beside it: the provider's
//! ModI stage asks it for a key and never sees a URL, a voucher or a cache. Its failures are
//! [`ModiError`]s because a ModI check is what they fail (503 when PDND cannot be asked).
//!
//! What a caller can make it spend is bounded, since every kid not in the cache is a request to
//! the PDND API, spending the comune's quota there: found keys are kept for
//! `modi.key_cache_ttl_secs`, a 404 is remembered for `modi.unknown_kid_ttl_secs`, and uncached
//! kids are looked up at most `modi.kid_lookups_per_minute` times a minute (then 503 with
//! Retry-After, nothing sent). PDND's API answers nothing without a voucher of its own
//! ([`ApiVoucher`]), renewed once when refused.

use super::token_client::TokenClient;
use super::voucher_cache::{CachePolicy, Clock, VoucherCache, VoucherFetchError, VoucherSpec};
use crate::modi::ModiError;
use jsonwebtoken::jwk::Jwk;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest kid looked up; PDND kids are 43-character thumbprints.
const MAX_KID_LEN: usize = 128;

/// The voucher the PDND API asks of its callers: one of the comune's "API Interop" (M2M)
/// client, requested without `purposeId`.
///
/// It lives in a [`VoucherCache`] of its own (cached, renewed ahead of expiry, one request at
/// a time). A voucher the API refuses although it has not expired (client revoked, key
/// rotated, authority restarted) is dropped by replacing that cache: only the first of the
/// callers that saw the refusal replaces it, the others find the new cache and share its one
/// request.
pub struct ApiVoucher {
    token: TokenClient,
    clock: Arc<dyn Clock>,
    policy: CachePolicy,
    spec: VoucherSpec,
    cache: std::sync::Mutex<Arc<VoucherCache>>,
}

impl ApiVoucher {
    pub fn new(
        token: TokenClient,
        clock: Arc<dyn Clock>,
        policy: CachePolicy,
        spec: VoucherSpec,
    ) -> Self {
        let cache = VoucherCache::new(token.clone(), clock.clone(), policy);
        ApiVoucher {
            token,
            clock,
            policy,
            spec,
            cache: std::sync::Mutex::new(cache),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Arc<VoucherCache>> {
        // Poisoning only means a panic elsewhere while swapping an Arc: the value is whole.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value to send, with the cache it came from (for [`Self::drop_from`]).
    pub async fn authorization(&self) -> Result<(String, Arc<VoucherCache>), VoucherFetchError> {
        let cache = self.cache().clone();
        let voucher = cache.get(&self.spec).await?;
        Ok((voucher.authorization(), cache))
    }

    /// Forgets the voucher obtained from `used`, unless another caller already did.
    pub fn drop_from(&self, used: &Arc<VoucherCache>) {
        let mut cache = self.cache();
        if Arc::ptr_eq(&cache, used) {
            *cache = VoucherCache::new(self.token.clone(), self.clock.clone(), self.policy);
        }
    }
}

/// How much a stream of kids nobody registered may cost: every such kid is a request to the
/// PDND API, spending the comune's quota there, so both the repeat and the rate are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLookupBounds {
    /// How long a kid the key service answered 404 for is remembered as unknown: long enough
    /// that one forged kid sent again and again is one request, short enough for a key just
    /// registered on PDND.
    pub unknown_kid_ttl: Duration,
    /// Lookups of uncached kids per minute, all callers together (a token bucket that holds
    /// as many, refilled evenly).
    pub lookups_per_minute: NonZeroU32,
}

impl Default for KeyLookupBounds {
    fn default() -> Self {
        KeyLookupBounds {
            unknown_kid_ttl: Duration::from_secs(300),
            lookups_per_minute: NonZeroU32::MIN.saturating_add(59),
        }
    }
}

/// Looks up a caller's PDND-registered key by kid (`GET {keys_url}/{kid}`), cached.
///
/// Found keys stay for the configured TTL, unknown kids for
/// [`KeyLookupBounds::unknown_kid_ttl`]; concurrent lookups of one kid share one request (moka).
/// A kid in neither cache needs a token of the lookup bucket
/// ([`KeyLookupBounds::lookups_per_minute`]); with none left the lookup fails at once with
/// [`ModiError::KeyLookupsThrottled`] (503 + Retry-After) and nothing is sent, so kids made up
/// per request cost PDND at most that rate. Cached kids never wait for the bucket. An
/// unreachable key service is not cached: the next request asks again. With an
/// [`ApiVoucher`] every request carries it as `Authorization` (PDND's API answers nothing
/// without one); a 401 drops it and the request is sent once more with a fresh one.
pub struct PdndKeySource {
    base_url: String,
    http: reqwest::Client,
    cache: moka::future::Cache<String, Option<Arc<Jwk>>>,
    lookups: governor::DefaultDirectRateLimiter,
    fetches: AtomicU64,
    voucher: Option<ApiVoucher>,
}

struct KidExpiry {
    known: Duration,
    unknown: Duration,
}

impl moka::Expiry<String, Option<Arc<Jwk>>> for KidExpiry {
    fn expire_after_create(
        &self,
        _kid: &String,
        value: &Option<Arc<Jwk>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.known
        } else {
            self.unknown
        })
    }
}

impl PdndKeySource {
    /// A key source keeping found keys for `ttl`, with the default [`KeyLookupBounds`].
    pub fn new(base_url: &str, http: reqwest::Client, ttl: Duration) -> Self {
        Self::bounded(base_url, http, ttl, KeyLookupBounds::default())
    }

    /// A key source keeping found keys for `ttl`, unknown kids and lookups as `bounds` says.
    pub fn bounded(
        base_url: &str,
        http: reqwest::Client,
        ttl: Duration,
        bounds: KeyLookupBounds,
    ) -> Self {
        PdndKeySource {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(KidExpiry {
                    known: ttl,
                    unknown: bounds.unknown_kid_ttl,
                })
                .build(),
            lookups: governor::RateLimiter::direct(governor::Quota::per_minute(
                bounds.lookups_per_minute,
            )),
            fetches: AtomicU64::new(0),
            voucher: None,
        }
    }

    /// Sends `voucher` with every lookup.
    pub fn with_api_voucher(mut self, voucher: ApiVoucher) -> Self {
        self.voucher = Some(voucher);
        self
    }

    /// Requests sent to the key service since start (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key registered under `kid`: `Ok(None)` when the key service does not know it,
    /// [`ModiError::KeyUnavailable`] when it cannot be asked.
    pub async fn lookup(&self, kid: &str) -> Result<Option<Arc<Jwk>>, ModiError> {
        // The kid comes from a token header and becomes a URL path segment: only the
        // characters of base64url thumbprints and UUIDs, so it cannot walk the path.
        if kid.is_empty()
            || kid.len() > MAX_KID_LEN
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(None);
        }
        self.cache
            .try_get_with(kid.to_owned(), self.fetch(kid))
            .await
            .map_err(|e| (*e).clone())
    }

    /// `GET url`, with the API voucher when there is one; a 401 is answered once by dropping
    /// the voucher and asking again with a fresh one.
    async fn send(&self, url: &str) -> Result<reqwest::Response, ModiError> {
        let unavailable = |reason: String| ModiError::KeyUnavailable(format!("{url}: {reason}"));
        let mut retried = false;
        loop {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let mut request = self.http.get(url);
            let mut used = None;
            if let Some(voucher) = &self.voucher {
                let (authorization, cache) = voucher
                    .authorization()
                    .await
                    .map_err(|e| unavailable(format!("no PDND API voucher: {e}")))?;
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
                used = Some(cache);
            }
            let response = request
                .send()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match (&self.voucher, used) {
                (Some(voucher), Some(cache))
                    if response.status() == reqwest::StatusCode::UNAUTHORIZED && !retried =>
                {
                    tracing::warn!(
                        url,
                        "the PDND API refused its voucher; asking for a new one"
                    );
                    voucher.drop_from(&cache);
                    retried = true;
                }
                _ => return Ok(response),
            }
        }
    }

    /// Takes a token of the lookup bucket, or says when the next one comes.
    fn admit(&self) -> Result<(), ModiError> {
        use governor::clock::Clock as _;
        self.lookups.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ModiError::KeyLookupsThrottled {
                retry_after_secs: wait.as_secs().saturating_add(1),
            }
        })
    }

    async fn fetch(&self, kid: &str) -> Result<Option<Arc<Jwk>>, ModiError> {
        // Only reached on a cache miss (moka runs this as the entry's initialiser).
        self.admit()?;
        let url = format!("{}/{kid}", self.base_url);
        let unavailable = |reason: String| ModiError::KeyUnavailable(format!("{url}: {reason}"));
        let response = self.send(&url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let jwk = parse_key_answer(&bytes, kid).map_err(unavailable)?;
        Ok(Some(Arc::new(jwk)))
    }
}

/// The body of a PDND key lookup for `kid`: a bare JWK, or one wrapped as `{"key": {...}}` as
/// some PDND API versions answer, whose own `kid` (when it has one) is the one asked for.
pub fn parse_key_answer(bytes: &[u8], kid: &str) -> Result<Jwk, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let jwk_value = match value.get("key") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => value,
    };
    let jwk: Jwk = serde_json::from_value(jwk_value).map_err(|e| format!("not a JWK: {e}"))?;
    if jwk.common.key_id.as_deref().is_some_and(|k| k != kid) {
        return Err(format!(
            "answered a key with another kid ({:?})",
            jwk.common.key_id
        ));
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::client_assertion::ClientAssertionBuilder;
    use crate::pdnd_client::voucher_cache::SystemClock;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::AtomicUsize;

    /// A key service answering one kid, counting the requests it gets.
    async fn key_service(hits: Arc<AtomicUsize>) -> (String, actix_web::dev::ServerHandle) {
        let jwk = serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "known-kid",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "e": "AQAB",
        });
        let server = HttpServer::new(move || {
            let hits = hits.clone();
            let jwk = jwk.clone();
            App::new().route(
                "/keys/{kid}",
                web::get().to(move |kid: web::Path<String>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let found = (kid.as_str() == "known-kid").then(|| jwk.clone());
                    async move {
                        match found {
                            Some(jwk) => HttpResponse::Ok().json(serde_json::json!({ "key": jwk })),
                            None => HttpResponse::NotFound().finish(),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        (format!("http://{addr}/keys"), handle)
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_unknown_kids_remembered() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (url, handle) = key_service(hits.clone()).await;
        let source = PdndKeySource::new(&url, reqwest::Client::new(), Duration::from_secs(60));

        let first = source.lookup("known-kid").await.unwrap().expect("known");
        assert_eq!(first.common.key_id.as_deref(), Some("known-kid"));
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the second lookup is cached"
        );

        assert!(source.lookup("unknown-kid").await.unwrap().is_none());
        assert!(source.lookup("unknown-kid").await.unwrap().is_none());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "an unknown kid is remembered"
        );

        // A kid that would walk the URL path is never sent.
        for kid in ["../token.oauth2", "a/b", "", &"k".repeat(200)] {
            assert!(source.lookup(kid).await.unwrap().is_none(), "{kid}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(source.fetch_count(), 2);
        handle.stop(true).await;

        // The key service down: unavailable (503), not unknown (401), and not cached.
        let down = PdndKeySource::new(&url, reqwest::Client::new(), Duration::from_secs(60));
        let err = down.lookup("known-kid").await.unwrap_err();
        assert!(matches!(err, ModiError::KeyUnavailable(_)), "{err}");
        assert_eq!(err.http_status(), 503);
        let _ = down.lookup("known-kid").await;
        assert_eq!(down.fetch_count(), 2);
    }

    #[tokio::test]
    async fn uncached_lookups_are_rate_limited_without_asking_the_key_service() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (url, handle) = key_service(hits.clone()).await;
        let bounds = KeyLookupBounds {
            unknown_kid_ttl: Duration::from_secs(600),
            lookups_per_minute: NonZeroU32::new(3).unwrap(),
        };
        let source = PdndKeySource::bounded(
            &url,
            reqwest::Client::new(),
            Duration::from_secs(60),
            bounds,
        );
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert!(source.lookup("forged-0").await.unwrap().is_none());

        // A flood of made-up kids: one token left in the bucket, then refusals, locally.
        let mut throttled = 0;
        for i in 1..=10 {
            match source.lookup(&format!("forged-{i}")).await {
                Ok(None) => {}
                Err(ModiError::KeyLookupsThrottled { retry_after_secs }) => {
                    assert!((1..=21).contains(&retry_after_secs), "{retry_after_secs}");
                    throttled += 1;
                }
                other => panic!("forged-{i}: {other:?}"),
            }
        }
        assert_eq!(throttled, 9);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "at most the bucket reached it"
        );
        assert_eq!(
            ModiError::KeyLookupsThrottled {
                retry_after_secs: 1
            }
            .http_status(),
            503
        );

        // Cached answers, found or unknown, need no token and still work during the flood.
        assert!(source.lookup("known-kid").await.unwrap().is_some());
        assert!(source.lookup("forged-0").await.unwrap().is_none());
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        handle.stop(true).await;
    }

    /// A PDND API stand-in: a token endpoint numbering its vouchers `v1`, `v2`, ... and a key
    /// service that answers only `Bearer vN` with N >= `accept_from` (401 otherwise).
    struct GuardedApi {
        url: String,
        tokens: Arc<AtomicUsize>,
        hits: Arc<AtomicUsize>,
        handle: actix_web::dev::ServerHandle,
    }

    async fn guarded_api(accept_from: usize) -> GuardedApi {
        let tokens = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let (t, h) = (tokens.clone(), hits.clone());
        let server = HttpServer::new(move || {
            let (t, t2, h) = (t.clone(), t.clone(), h.clone());
            App::new()
                .route(
                    "/token.oauth2",
                    web::post().to(move || {
                        let n = t.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            HttpResponse::Ok().json(serde_json::json!({
                                "access_token": format!("v{n}"), "token_type": "Bearer", "expires_in": 600
                            }))
                        }
                    }),
                )
                .route(
                    "/keys/{kid}",
                    web::get().to(move |req: actix_web::HttpRequest| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let issued = t2.load(Ordering::SeqCst);
                        let accepted = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer v"))
                            .and_then(|n| n.parse::<usize>().ok())
                            .is_some_and(|n| n >= accept_from && n <= issued);
                        async move {
                            if accepted {
                                HttpResponse::NotFound().finish()
                            } else {
                                HttpResponse::Unauthorized().finish()
                            }
                        }
                    }),
                )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        GuardedApi {
            url: format!("http://{addr}"),
            tokens,
            hits,
            handle,
        }
    }

    fn api_source(api: &GuardedApi) -> PdndKeySource {
        let spec = VoucherSpec {
            builder: ClientAssertionBuilder {
                client_id: "a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into(),
                audience: "auth.dev.interop.local/client-assertion".into(),
                purpose_id: None,
                digest: None,
                lifetime_secs: 300,
            },
            key: Arc::new(crate::pdnd::test_keys::client().clone()),
            dpop: None,
        };
        let voucher = ApiVoucher::new(
            TokenClient::new(reqwest::Client::new(), format!("{}/token.oauth2", api.url)),
            Arc::new(SystemClock),
            CachePolicy::default(),
            spec,
        );
        PdndKeySource::new(
            &format!("{}/keys", api.url),
            reqwest::Client::new(),
            Duration::from_secs(60),
        )
        .with_api_voucher(voucher)
    }

    #[tokio::test]
    async fn lookups_carry_the_api_voucher_and_renew_it_once_on_401() {
        // v1 is refused (as if revoked): one 401, a new voucher, the same request again.
        let api = guarded_api(2).await;
        let source = api_source(&api);
        assert!(source.lookup("kid-a").await.unwrap().is_none());
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2, "voucher dropped once");
        assert_eq!(api.hits.load(Ordering::SeqCst), 2, "request sent once more");
        // The new voucher is cached: another kid costs one request and no token.
        assert!(source.lookup("kid-b").await.unwrap().is_none());
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        assert_eq!(api.hits.load(Ordering::SeqCst), 3);
        assert_eq!(source.fetch_count(), 3);
        api.handle.stop(true).await;
    }

    #[tokio::test]
    async fn a_key_service_refusing_every_voucher_is_asked_twice_then_unavailable() {
        let api = guarded_api(usize::MAX).await;
        let source = api_source(&api);
        let err = source.lookup("kid-a").await.unwrap_err();
        assert!(
            matches!(&err, ModiError::KeyUnavailable(m) if m.contains("401")),
            "{err}"
        );
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        assert_eq!(api.hits.load(Ordering::SeqCst), 2, "retried once, not more");
        // Without a voucher the same service refuses at once, and nothing is retried.
        let bare = PdndKeySource::new(
            &format!("{}/keys", api.url),
            reqwest::Client::new(),
            Duration::from_secs(60),
        );
        assert!(bare.lookup("kid-c").await.is_err());
        assert_eq!(api.hits.load(Ordering::SeqCst), 3);
        assert_eq!(api.tokens.load(Ordering::SeqCst), 2);
        api.handle.stop(true).await;
    }
}
