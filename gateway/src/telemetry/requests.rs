//! Request metrics of the public listener: one duration per request, and which stage refused.
//!
//! [`observe`] wraps an e-service's whole scope (audit included), so it times everything a
//! caller waits for. Which stage refused is known without wrapping every stage's future: each
//! stage, on entry, writes its name into one [`Reached`] cell the request carries
//! ([`enter`], called by [`crate::provider::middleware`]), and the handler's resource writes
//! [`HANDLER`]. An error answer whose deepest mark is a stage was that stage's refusal; one
//! marked by the handler is the handler's own answer (a 404 for an unknown subject) and counts
//! only in the duration. So a new stage is counted by its [`crate::provider::Stage::NAME`]
//! alone.

use super::metrics;
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use eservices::route::Resolved;
use eservices::Eservice;
use opentelemetry::KeyValue;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// The mark of the handler's resource: the request got through every stage.
pub const HANDLER: &str = "handler";

/// The deepest place in the pipeline a request reached.
pub struct Reached(Cell<&'static str>);

/// Records that the request entered `stage` (cheap: one lookup, no allocation). An empty name
/// (a stage that refuses nothing by itself, like audit) leaves the mark as it is.
pub fn enter(req: &ServiceRequest, stage: &'static str) {
    if stage.is_empty() {
        return;
    }
    if let Some(reached) = req.extensions().get::<Reached>() {
        reached.0.set(stage);
    }
}

type WrapFuture = Pin<Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>>>;

/// Innermost wrapper of an operation's resource: marks that the handler was reached, and
/// traces it (answer cache and store) as the `handler` span.
pub fn reached_handler(req: ServiceRequest, next: Next<BoxBody>) -> WrapFuture {
    enter(&req, HANDLER);
    super::traces::in_stage(HANDLER, Box::pin(next.call(req)))
}

/// Outermost wrapper of an e-service's scope: times the request and counts refusals and
/// answer-cache hits.
pub fn observe(
    eservice: Eservice,
) -> impl Fn(ServiceRequest, Next<BoxBody>) -> WrapFuture + Clone + 'static {
    move |req, next| {
        req.extensions_mut().insert(Reached(Cell::new("")));
        let started = Instant::now();
        Box::pin(async move {
            let result = next.call(req).await;
            let status = match &result {
                Ok(res) => res.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            let (operation, reached, cache) = match &result {
                Ok(res) => {
                    let ext = res.request().extensions();
                    let operation = Resolved::of(res.request()).map(|r| r.operation().id());
                    let reached = ext.get::<Reached>().map_or("", |r| r.0.get());
                    let cache = res
                        .headers()
                        .get(eservices::CACHE_STATUS)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == eservices::CACHE_HIT);
                    (operation, reached, cache)
                }
                Err(_) => (None, "", None),
            };
            record(
                eservice,
                operation.unwrap_or("none"),
                status.as_u16(),
                reached,
                cache,
                started,
            );
            result
        })
    }
}

fn record(
    eservice: Eservice,
    operation: &'static str,
    status: u16,
    reached: &'static str,
    cache: Option<bool>,
    started: Instant,
) {
    let m = metrics::get();
    let eservice = KeyValue::new("eservice", eservice.id());
    m.request_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            eservice.clone(),
            KeyValue::new("operation", operation),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ],
    );
    if status >= 400 && !reached.is_empty() && reached != HANDLER {
        m.refusals
            .add(1, &[eservice.clone(), KeyValue::new("reason", reached)]);
    }
    if let Some(hit) = cache {
        m.cache.add(
            1,
            &[
                eservice,
                KeyValue::new("result", if hit { "hit" } else { "miss" }),
            ],
        );
    }
}
