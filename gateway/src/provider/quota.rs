//! The quota stage: how much and how fast each consumer may call, once its purpose is known.
//!
//! Two kinds of limit, both kept in the `[state]` store (so replicas on one Redis share them
//! and a restart does not reset them):
//!
//! - **Daily thresholds**, as PDND defines them, counted per Europe/Rome calendar day: the
//!   purpose's approved daily calls (`daily_quota` in the purposes registry), and the
//!   e-service descriptor's `dailyCallsPerConsumer` and `dailyCallsTotal`
//!   (`[eservices.<name>] daily_calls_per_consumer`, `daily_calls_total`). Each is one counter
//!   whose key names the Rome day, so the day rolls over at Rome's midnight whatever the
//!   store's TTL does, on 23- and 25-hour days alike.
//! - **A request rate** with a burst (GCRA, [`crate::state::gcra`]), per consumer and purpose
//!   (`[rate_limits]`), so that a quota is not spent in one flood.
//!
//! What is counted: a call that reached this stage, i.e. whose voucher is valid and whose
//! purpose may call the operation. The rate is checked first, and a call it refuses counts
//! against no daily threshold. The daily counters are then taken narrowest first (purpose,
//! consumer, e-service) and the first one over its threshold refuses the call without touching
//! the wider ones, so a consumer over its own quota never eats the e-service's total; a call
//! refused by a wider threshold stays counted in the narrower ones (it was made).
//!
//! Over a limit: 429 problem+json, of type [`QUOTA_EXCEEDED`] (a daily threshold; `Retry-After`
//! is the seconds to Rome's midnight) or [`RATE_LIMITED`] (the rate; `Retry-After` is the
//! seconds until one more call passes). Every answer after this stage carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` for the *tightest*
//! daily threshold (the one with the fewest calls left, `Reset` = seconds to Rome's midnight),
//! or, when the purpose has no daily threshold at all, for its rate (`Limit` = the burst,
//! `Reset` = seconds until the burst is whole again).
//!
//! A store that cannot answer refuses the call (503, like the replay guard): counting nothing
//! would open every limit at once. See `docs/quotas.md`.

use crate::config::rate_limits::{RateLimitsConfig, MAX_RESET_SECS};
use crate::config::EserviceConfig;
use crate::pdnd_client::voucher_cache::Clock;
use crate::problem::Problem;
use crate::provider::purpose::Purpose;
use crate::state::gcra::{Gcra, GcraDecision};
use crate::state::{StateError, StateStore};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use chrono::{DateTime, Utc};
use eservices::Eservice;
use std::sync::Arc;
use std::time::Duration;

/// The problem `type` of a call over a daily threshold.
pub const QUOTA_EXCEEDED: &str = "urn:pdnd-gateway:problem:quota-exceeded";
/// The problem `type` of a call over the request rate.
pub const RATE_LIMITED: &str = "urn:pdnd-gateway:problem:rate-limited";

pub const LIMIT_HEADER: &str = "x-ratelimit-limit";
pub const REMAINING_HEADER: &str = "x-ratelimit-remaining";
pub const RESET_HEADER: &str = "x-ratelimit-reset";

/// How long a day's counter outlives the day: the key already names its day, so this only
/// makes sure a replica whose clock is a little behind still finds the counter it shares.
const COUNTER_GRACE_SECS: u64 = 3_600;

/// The e-service's daily thresholds (its PDND descriptor's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyThresholds {
    pub per_consumer: Option<u64>,
    pub total: Option<u64>,
}

impl DailyThresholds {
    pub fn from_config(cfg: &EserviceConfig) -> Self {
        DailyThresholds {
            per_consumer: cfg.daily_calls_per_consumer,
            total: cfg.daily_calls_total,
        }
    }
}

/// Which limit an answer describes or a refusal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// The purpose's `daily_quota`.
    Purpose,
    /// The e-service's `daily_calls_per_consumer`.
    Consumer,
    /// The e-service's `daily_calls_total`.
    Total,
    /// The request rate (`[rate_limits]`).
    Rate,
}

/// What the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub threshold: Threshold,
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// The stage's decision on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Admitted(Window),
    Refused {
        window: Window,
        retry_after_secs: u64,
    },
}

/// The quota stage of one e-service.
pub struct QuotaStage {
    pub eservice: Eservice,
    pub thresholds: DailyThresholds,
    pub rates: Arc<RateLimitsConfig>,
    pub store: Arc<dyn StateStore>,
    /// The time the Rome day is read from (a test moves it across midnight).
    pub clock: Arc<dyn Clock>,
    /// The Rome day last seen, kept until the clock leaves it.
    pub day: RomeDayCache,
}

/// A Rome calendar day: its name as the counters' keys spell it and the UTC seconds it spans.
#[derive(Debug, Clone)]
struct RomeDay {
    name: Arc<str>,
    starts: i64,
    ends: i64,
}

/// The Rome day of the last call, so that a call on the same day takes its name and its end
/// from here. Why: working them out (the time zone's rules, the date formatted) on every call
/// was about an eighth of the stage's time, and they change once a day.
#[derive(Debug, Default)]
pub struct RomeDayCache(std::sync::Mutex<Option<RomeDay>>);

impl RomeDayCache {
    /// The day holding `now` (UTC seconds): its name and the seconds left until it ends.
    fn at(&self, now: i64) -> (Arc<str>, i64) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let day = match last.as_ref() {
            // Either bound may be crossed: a clock set back lands on an earlier day.
            Some(day) if (day.starts..day.ends).contains(&now) => day,
            _ => {
                let at = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
                let date = super::audit_lifecycle::rome_day(at);
                last.insert(RomeDay {
                    name: date.to_string().into(),
                    starts: super::audit_lifecycle::day_start(date).timestamp(),
                    ends: super::audit_lifecycle::next_midnight(at).timestamp(),
                })
            }
        };
        (day.name.clone(), day.ends - now)
    }
}

/// Whole seconds, rounded up (a client told 0 would call again at once).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl QuotaStage {
    /// Applies the rate, then the daily thresholds, to one call of `purpose` by `consumer`.
    pub async fn admit(&self, purpose: &Purpose, consumer: &str) -> Result<Outcome, StateError> {
        let (day, to_midnight) = self.day.at(self.clock.now());
        let to_midnight = u64::try_from(to_midnight.max(1)).unwrap_or(1);
        let eservice = self.eservice.id();
        let purpose_id = super::ascii_lower(&purpose.purpose_id);

        let (per_second, burst) = self.rates.for_purpose(&purpose_id);
        let rate = self
            .store
            .gcra(
                &["rate", eservice, consumer, &purpose_id].join(":"),
                Gcra::per_second(per_second, burst),
            )
            .await?;
        let rate_window = |d: &GcraDecision| Window {
            threshold: Threshold::Rate,
            limit: u64::from(burst),
            remaining: u64::from(d.remaining),
            reset_secs: ceil_secs(d.reset_after),
        };
        if !rate.allowed {
            return Ok(Outcome::Refused {
                window: rate_window(&rate),
                retry_after_secs: ceil_secs(rate.retry_after).max(1),
            });
        }

        let ttl = Duration::from_secs(to_midnight + COUNTER_GRACE_SECS);
        // Each key is built only for a threshold that is set.
        let counters: [(Threshold, Option<u64>, &[&str]); 3] = [
            (
                Threshold::Purpose,
                purpose.daily_quota,
                &["quota", &day, "purpose", &purpose_id],
            ),
            (
                Threshold::Consumer,
                self.thresholds.per_consumer,
                &["quota", &day, "consumer", eservice, consumer],
            ),
            (
                Threshold::Total,
                self.thresholds.total,
                &["quota", &day, "total", eservice],
            ),
        ];
        let mut tightest: Option<Window> = None;
        for (threshold, limit, parts) in counters {
            let Some(limit) = limit else { continue };
            let count = self.store.incr(&parts.join(":"), ttl).await?;
            let window = Window {
                threshold,
                limit,
                remaining: limit.saturating_sub(count),
                reset_secs: to_midnight,
            };
            if count > limit {
                return Ok(Outcome::Refused {
                    window,
                    retry_after_secs: to_midnight,
                });
            }
            if tightest.is_none_or(|t| window.remaining < t.remaining) {
                tightest = Some(window);
            }
        }
        Ok(Outcome::Admitted(
            tightest.unwrap_or_else(|| rate_window(&rate)),
        ))
    }

    pub async fn run(
        self: Arc<Self>,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let request_id = super::request_id::of(&req);
        // The purpose stage's decision; this stage runs only after it admitted the call.
        let Some(purpose) = req.extensions().get::<Arc<Purpose>>().cloned() else {
            tracing::error!(request_id, "quota stage reached without a purpose");
            let mut problem = Problem::internal();
            if let Some(id) = &request_id {
                problem = problem.with_instance(id.clone());
            }
            return Ok(req.into_response(problem.into_response()));
        };
        let voucher = super::voucher::of(&req);
        let consumer = voucher
            .as_ref()
            .and_then(|v| v.consumer_id())
            .or(purpose.consumer_id.as_deref())
            .unwrap_or(&purpose.consumer_name);
        let consumer = super::ascii_lower(consumer).into_owned();
        match self.admit(&purpose, &consumer).await {
            Ok(Outcome::Admitted(window)) => {
                let mut res = next.call(req).await?;
                set_headers(res.headers_mut(), &window);
                Ok(res)
            }
            Ok(Outcome::Refused {
                window,
                retry_after_secs,
            }) => {
                tracing::info!(
                    request_id,
                    purpose = purpose.purpose_id,
                    threshold = ?window.threshold,
                    limit = window.limit,
                    "call over a limit"
                );
                let response = too_many(&window, retry_after_secs, request_id.as_deref());
                Ok(req.into_response(response))
            }
            Err(e) => {
                tracing::error!(request_id, error = %e, "quota store unavailable: call refused");
                Ok(req.into_response(crate::problem::unavailable(
                    "The quota of this purpose cannot be checked now; retry later.",
                    request_id.as_deref(),
                )))
            }
        }
    }
}

fn set_headers(headers: &mut HeaderMap, window: &Window) {
    for (name, value) in [
        (LIMIT_HEADER, window.limit),
        (REMAINING_HEADER, window.remaining),
        (RESET_HEADER, window.reset_secs.min(MAX_RESET_SECS)),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// The 429 answer: its problem `type` says which kind of limit, its detail which threshold.
pub fn too_many(window: &Window, retry_after_secs: u64, request_id: Option<&str>) -> HttpResponse {
    let (type_, detail) = match window.threshold {
        Threshold::Purpose => (
            QUOTA_EXCEEDED,
            "The daily quota of this purpose is exhausted until midnight (Europe/Rome).",
        ),
        Threshold::Consumer => (
            QUOTA_EXCEEDED,
            "The daily calls of this consumer to this e-service are exhausted until midnight (Europe/Rome).",
        ),
        Threshold::Total => (
            QUOTA_EXCEEDED,
            "The daily calls of this e-service are exhausted until midnight (Europe/Rome).",
        ),
        Threshold::Rate => (
            RATE_LIMITED,
            "Calls of this purpose are arriving faster than its rate; retry after the seconds in Retry-After.",
        ),
    };
    let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_type(type_)
        .with_detail(detail);
    if let Some(id) = request_id {
        problem = problem.with_instance(id);
    }
    let mut builder = problem.response_builder();
    let retry_after_secs = retry_after_secs.min(MAX_RESET_SECS);
    builder.insert_header((RETRY_AFTER, retry_after_secs.to_string()));
    let mut response = problem.into_response_with(builder);
    set_headers(response.headers_mut(), window);
    response
}

impl super::Stage for QuotaStage {
    const NAME: &'static str = "quota";

    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}

#[cfg(test)]
mod tests;
