//! The quota stage's rules on both stores, with a clock the tests move (across Rome's midnight,
//! on the two DST days), and its answers over actix.

use super::*;
use crate::config::rate_limits::PurposeRateConfig;
use crate::provider::purpose::PurposeState;
use crate::state::memory::MemoryStore;
use actix_web::middleware::from_fn;
use actix_web::{test, web, App};
use chrono::TimeZone;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock the test sets.
struct TestClock(AtomicI64);

impl TestClock {
    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Arc<TestClock> {
        let t = Utc
            .with_ymd_and_hms(y, m, d, h, min, s)
            .single()
            .expect("a UTC instant");
        Arc::new(TestClock(AtomicI64::new(t.timestamp())))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const A: &str = "6a0c4d7e-1111-4a2b-9c3d-000000000001";
const B: &str = "6a0c4d7e-1111-4a2b-9c3d-000000000002";
const C: &str = "6a0c4d7e-1111-4a2b-9c3d-000000000003";

fn purpose(id: &str, consumer: &str, quota: Option<u64>) -> Purpose {
    Purpose {
        purpose_id: id.to_owned(),
        consumer_name: consumer.to_owned(),
        consumer_id: Some(consumer.to_owned()),
        eservice: "anagrafe".to_owned(),
        operations: vec!["residenza".to_owned()],
        daily_quota: quota,
        state: PurposeState::Active,
        eservice_id: None,
        descriptor_id: None,
        producer_id: None,
    }
}

/// A generous rate, so that only the daily thresholds speak.
fn no_rate_limit() -> RateLimitsConfig {
    RateLimitsConfig {
        requests_per_second: 10_000.0,
        burst: 100_000,
        purposes: Vec::new(),
    }
}

fn stage(
    store: Arc<dyn StateStore>,
    clock: Arc<TestClock>,
    thresholds: DailyThresholds,
    rates: RateLimitsConfig,
) -> QuotaStage {
    QuotaStage {
        eservice: Eservice::Anagrafe,
        thresholds,
        rates: Arc::new(rates),
        store,
        clock,
        day: Default::default(),
    }
}

fn admitted(outcome: Outcome) -> Window {
    match outcome {
        Outcome::Admitted(w) => w,
        Outcome::Refused { window, .. } => panic!("refused: {window:?}"),
    }
}

/// The stores under test: memory always, Redis when the test Redis is there (each run under
/// a prefix of its own).
fn stores() -> Vec<Arc<dyn StateStore>> {
    let mut stores: Vec<Arc<dyn StateStore>> = vec![Arc::new(MemoryStore::new(1_000))];
    if let Some(url) = crate::state::redis::tests::test_url() {
        stores.push(Arc::new(crate::state::redis::tests::store(&url)));
    }
    stores
}

#[tokio::test]
async fn purpose_quota_counts_down_then_refuses_until_rome_midnight() {
    for store in stores() {
        // 12:00 UTC is 13:00 in Rome (CET): 11 hours to midnight.
        let clock = TestClock::at(2026, 11, 30, 12, 0, 0);
        let s = stage(store, clock, DailyThresholds::default(), no_rate_limit());
        let p = purpose(A, "consumer-1", Some(3));
        for remaining in [2, 1, 0] {
            let w = admitted(s.admit(&p, "consumer-1").await.expect("store answers"));
            assert_eq!(w.threshold, Threshold::Purpose);
            assert_eq!((w.limit, w.remaining), (3, remaining));
            assert_eq!(w.reset_secs, 11 * 3600);
        }
        match s.admit(&p, "consumer-1").await.expect("store answers") {
            Outcome::Refused {
                window,
                retry_after_secs,
            } => {
                assert_eq!(window.threshold, Threshold::Purpose);
                assert_eq!((window.limit, window.remaining), (3, 0));
                assert_eq!(retry_after_secs, 11 * 3600);
            }
            other => panic!("the 4th call of a quota of 3 passed: {other:?}"),
        }
        // Another purpose has its own quota.
        let other = purpose(B, "consumer-1", Some(3));
        assert_eq!(
            admitted(s.admit(&other, "consumer-1").await.expect("store")).remaining,
            2
        );
    }
}

#[tokio::test]
async fn consumer_and_total_thresholds_refuse_and_the_tightest_is_told() {
    for store in stores() {
        let clock = TestClock::at(2026, 11, 30, 9, 0, 0);
        let thresholds = DailyThresholds {
            per_consumer: Some(3),
            total: Some(4),
        };
        let s = stage(store, clock, thresholds, no_rate_limit());
        let a = purpose(A, "consumer-1", Some(100));
        let b = purpose(B, "consumer-1", None);
        let c = purpose(C, "consumer-2", None);
        // consumer-1, two purposes, one per-consumer threshold of 3.
        let w = admitted(s.admit(&a, "consumer-1").await.expect("store"));
        assert_eq!((w.threshold, w.remaining), (Threshold::Consumer, 2));
        let w = admitted(s.admit(&b, "consumer-1").await.expect("store"));
        assert_eq!((w.threshold, w.remaining), (Threshold::Consumer, 1));
        let w = admitted(s.admit(&a, "consumer-1").await.expect("store"));
        assert_eq!(
            (w.threshold, w.limit, w.remaining),
            (Threshold::Consumer, 3, 0)
        );
        match s.admit(&b, "consumer-1").await.expect("store") {
            Outcome::Refused { window, .. } => assert_eq!(window.threshold, Threshold::Consumer),
            other => panic!("consumer over its threshold passed: {other:?}"),
        }
        // consumer-1's refused call did not eat the total: consumer-2 still has one call.
        let w = admitted(s.admit(&c, "consumer-2").await.expect("store"));
        assert_eq!(
            (w.threshold, w.limit, w.remaining),
            (Threshold::Total, 4, 0)
        );
        match s.admit(&c, "consumer-2").await.expect("store") {
            Outcome::Refused {
                window,
                retry_after_secs,
            } => {
                assert_eq!(window.threshold, Threshold::Total);
                // 09:00 UTC is 10:00 in Rome: 14 hours to midnight.
                assert_eq!(retry_after_secs, 14 * 3600);
            }
            other => panic!("e-service over its total passed: {other:?}"),
        }
    }
}

/// A stage where only the purpose's daily quota of one call speaks, and that purpose: the day
/// is all these tests look at.
fn one_call_a_day(store: Arc<dyn StateStore>, clock: Arc<TestClock>) -> (QuotaStage, Purpose) {
    let s = stage(store, clock, DailyThresholds::default(), no_rate_limit());
    (s, purpose(A, "c", Some(1)))
}

/// Exhausts a quota of 1 one second before Rome's midnight, then crosses it.
async fn crosses_midnight(store: Arc<dyn StateStore>, clock: Arc<TestClock>, next_day_hours: u64) {
    let (s, p) = one_call_a_day(store, clock.clone());
    assert_eq!(
        admitted(s.admit(&p, "c").await.expect("store")).reset_secs,
        1
    );
    match s.admit(&p, "c").await.expect("store") {
        Outcome::Refused {
            retry_after_secs, ..
        } => assert_eq!(retry_after_secs, 1, "one second to midnight"),
        other => panic!("second call of a quota of 1 passed: {other:?}"),
    }
    clock.advance(1);
    let w = admitted(s.admit(&p, "c").await.expect("store"));
    assert_eq!(w.remaining, 0);
    // The new day is as long as Rome's clocks make it.
    assert_eq!(w.reset_secs, next_day_hours * 3600);
}

#[tokio::test]
async fn the_day_rolls_over_at_rome_midnight_on_ordinary_and_dst_days() {
    for store in stores() {
        // 22:59:59 UTC on 30 November is 23:59:59 in Rome (UTC+1): a day of 24 hours follows.
        crosses_midnight(store.clone(), TestClock::at(2026, 11, 30, 22, 59, 59), 24).await;
        // 28 March 2026, 23:59:59 in Rome (UTC+1); 29 March has 23 hours (02:00 -> 03:00).
        crosses_midnight(store.clone(), TestClock::at(2026, 3, 28, 22, 59, 59), 23).await;
        // 24 October 2026, 23:59:59 in Rome (UTC+2); 25 October has 25 hours (03:00 -> 02:00).
        crosses_midnight(store, TestClock::at(2026, 10, 24, 21, 59, 59), 25).await;
    }
}

#[tokio::test]
async fn a_clock_set_back_counts_on_the_day_it_shows() {
    // The stage keeps the last day it saw; a clock moved back across midnight (an NTP step)
    // must count on the earlier day again, not on the one kept.
    // 23:00:00 UTC on 30 November is midnight in Rome: 1 December begins.
    let clock = TestClock::at(2026, 11, 30, 23, 0, 0);
    let (s, p) = one_call_a_day(Arc::new(MemoryStore::new(100)), clock.clone());
    assert_eq!(
        admitted(s.admit(&p, "c").await.expect("store")).reset_secs,
        24 * 3600
    );
    clock.advance(-1);
    // 30 November, one second before its end: its counter is fresh.
    let w = admitted(s.admit(&p, "c").await.expect("store"));
    assert_eq!((w.remaining, w.reset_secs), (0, 1));
    clock.advance(1);
    // Back on 1 December, whose one call is spent.
    assert!(matches!(
        s.admit(&p, "c").await.expect("store"),
        Outcome::Refused { retry_after_secs, .. } if retry_after_secs == 24 * 3600
    ));
}

#[tokio::test]
async fn utc_midnight_is_not_the_end_of_the_day() {
    // 23:30 UTC is already 00:30 in Rome, and 00:30 UTC still the same Rome day: a counter
    // on UTC days would restart here.
    let clock = TestClock::at(2026, 11, 30, 23, 30, 0);
    let (s, p) = one_call_a_day(Arc::new(MemoryStore::new(100)), clock.clone());
    admitted(s.admit(&p, "c").await.expect("store"));
    clock.advance(3600);
    assert!(matches!(
        s.admit(&p, "c").await.expect("store"),
        Outcome::Refused { .. }
    ));
}

#[tokio::test]
async fn the_rate_refuses_a_burst_and_recovers_without_spending_the_quota() {
    for store in stores() {
        let clock = TestClock::at(2026, 11, 30, 12, 0, 0);
        let rates = RateLimitsConfig {
            requests_per_second: 10_000.0,
            burst: 100_000,
            purposes: vec![PurposeRateConfig {
                purpose_id: A.to_owned(),
                requests_per_second: 5.0,
                burst: 2,
            }],
        };
        let s = stage(store, clock, DailyThresholds::default(), rates);
        let p = purpose(A, "c", Some(10));
        for remaining in [9, 8] {
            assert_eq!(
                admitted(s.admit(&p, "c").await.expect("store")).remaining,
                remaining
            );
        }
        match s.admit(&p, "c").await.expect("store") {
            Outcome::Refused {
                window,
                retry_after_secs,
            } => {
                assert_eq!(window.threshold, Threshold::Rate);
                assert_eq!((window.limit, window.remaining), (2, 0));
                assert_eq!(retry_after_secs, 1);
            }
            other => panic!("a third call in a burst of 2 passed: {other:?}"),
        }
        // After one emission interval (200 ms) one more passes, and the refused call was not
        // counted against the daily quota.
        tokio::time::sleep(Duration::from_millis(260)).await;
        assert_eq!(
            admitted(s.admit(&p, "c").await.expect("store")).remaining,
            7
        );
        // A purpose without a daily threshold is told its rate.
        let free = purpose(B, "c", None);
        let w = admitted(s.admit(&free, "c").await.expect("store"));
        assert_eq!((w.threshold, w.limit), (Threshold::Rate, 100_000));
    }
}

/// A Redis nothing listens on.
fn dead_redis() -> Arc<dyn StateStore> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    Arc::new(
        crate::state::redis::RedisStore::connect_lazy(
            &format!("redis://127.0.0.1:{port}/0"),
            "p:",
            Duration::from_millis(200),
        )
        .expect("url"),
    )
}

/// An app with the quota stage behind a stand-in purpose stage that admits `purpose`.
macro_rules! app {
    ($stage:expr, $purpose:expr) => {{
        let stage = Arc::new($stage);
        let purpose: Arc<Purpose> = Arc::new($purpose);
        test::init_service(
            App::new().service(
                web::resource("/r")
                    .wrap(from_fn(crate::provider::middleware(stage)))
                    .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
                        req.extensions_mut().insert(purpose.clone());
                        next.call(req)
                    }))
                    .to(|| async { HttpResponse::Ok().body("ok") }),
            ),
        )
        .await
    }};
}

fn header(res: &ServiceResponse<BoxBody>, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[actix_web::test]
async fn answers_carry_the_headers_and_the_refusal_is_a_typed_429() {
    let clock = TestClock::at(2026, 11, 30, 12, 0, 0);
    let s = stage(
        Arc::new(MemoryStore::new(100)),
        clock,
        DailyThresholds::default(),
        no_rate_limit(),
    );
    let app = app!(s, purpose(A, "c", Some(2)));
    for remaining in ["1", "0"] {
        let res = test::call_service(&app, test::TestRequest::get().uri("/r").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-limit").as_deref(), Some("2"));
        assert_eq!(
            header(&res, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
        assert_eq!(header(&res, "x-ratelimit-reset").as_deref(), Some("39600"));
    }
    let res = test::call_service(&app, test::TestRequest::get().uri("/r").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("39600"));
    assert_eq!(header(&res, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&res, "x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header(&res, "x-ratelimit-reset").as_deref(), Some("39600"));
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["type"], QUOTA_EXCEEDED);
    assert_eq!(body["status"], 429);
}

#[actix_web::test]
async fn a_rate_refusal_has_its_own_type() {
    let clock = TestClock::at(2026, 11, 30, 12, 0, 0);
    let rates = RateLimitsConfig {
        requests_per_second: 0.1,
        burst: 1,
        purposes: Vec::new(),
    };
    let s = stage(
        Arc::new(MemoryStore::new(100)),
        clock,
        DailyThresholds::default(),
        rates,
    );
    let app = app!(s, purpose(A, "c", None));
    let res = test::call_service(&app, test::TestRequest::get().uri("/r").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-limit").as_deref(), Some("1"));
    let res = test::call_service(&app, test::TestRequest::get().uri("/r").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&res, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry), "{retry}");
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["type"], RATE_LIMITED);
}

#[actix_web::test]
async fn a_store_outage_refuses_with_503() {
    let clock = TestClock::at(2026, 11, 30, 12, 0, 0);
    let s = stage(
        dead_redis(),
        clock,
        DailyThresholds::default(),
        no_rate_limit(),
    );
    let app = app!(s, purpose(A, "c", Some(5)));
    let res = test::call_service(&app, test::TestRequest::get().uri("/r").to_request()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&res, "retry-after").is_some());
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json")
    );
}
