//! The one path every operation's answer takes: cache, store lookup, serialisation, errors.
//!
//! Handlers only say which lookup to run and how to shape its result; this module decides the
//! status (200, 404, 503, 500), the content type, the `Cache-Status` (RFC 9211) and `Cache-Control` headers and
//! what is cached.

use crate::cache::CachedAnswer;
use crate::problem::{Problem, PROBLEM_JSON};
use crate::route::Resolved;
use crate::store::StoreError;
use crate::{EserviceState, Operation};
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// Header saying whether the answer came from the cache (RFC 9211 `Cache-Status`, with the
/// gateway as the cache's name: a standard header rather than an `X-` one).
pub const CACHE_STATUS: &str = "Cache-Status";

/// `Cache-Status` of an answer served from the cache.
pub const CACHE_HIT: &str = "pdnd-gateway; hit";

/// `Cache-Status` of an answer looked up now (the request went forward to the store).
pub const CACHE_MISS: &str = "pdnd-gateway; fwd=miss";

/// The detail of every 404: it does not say which table missed, only that nothing matched.
const NOT_FOUND_DETAIL: &str = "No record matches the subject of the request.";

fn respond(answer: &CachedAnswer, hit: bool) -> HttpResponse {
    let content_type = if answer.status == StatusCode::OK {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    HttpResponse::build(answer.status)
        .insert_header((header::CONTENT_TYPE, content_type))
        // Personal data: no shared or private cache may keep it (problems already say so).
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((CACHE_STATUS, if hit { CACHE_HIT } else { CACHE_MISS }))
        .body(answer.body.clone())
}

fn store_problem(op: Operation, err: &StoreError) -> Problem {
    if err.is_unavailable() {
        tracing::warn!(operation = op.id(), error = %err, "store unavailable");
        Problem::unavailable("The data store is temporarily unavailable; retry later.")
    } else {
        tracing::error!(operation = op.id(), error = %err, "store error");
        Problem::internal()
    }
}

/// Seconds a caller is asked to wait after a 503 (`Retry-After`, as the Italian guidelines
/// ask of every 503).
pub const RETRY_AFTER_SECS: u32 = 5;

fn problem_response(problem: Problem) -> HttpResponse {
    let unavailable = problem.status_code() == StatusCode::SERVICE_UNAVAILABLE;
    let mut builder = problem.response_builder();
    if unavailable {
        builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
    }
    problem.into_response_with(builder)
}

/// Runs `lookup` (or takes its answer from the cache) and builds the response.
///
/// `resolved` is the router's decision for this request and is what the cache key and the logs
/// use; `expected` is the operation the handler implements. They are equal by construction
/// (each handler is mounted only at its own operation's resource); if a wiring error ever made
/// them differ, the answer is 500 and no lookup runs. `key` is the normalised request;
/// `lookup` yields `Some(answer)` or `None` for an unknown subject.
pub(crate) async fn answer<A, F, Fut>(
    state: &EserviceState,
    resolved: Resolved,
    expected: Operation,
    key: String,
    lookup: F,
) -> HttpResponse
where
    A: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<A>, StoreError>>,
{
    let op = resolved.operation();
    if op != expected {
        tracing::error!(
            resolved = op.id(),
            handler = expected.id(),
            "routing decision and handler disagree; refusing"
        );
        return problem_response(Problem::internal());
    }
    let compute = async move {
        let found = lookup().await?;
        let (status, body) = match found {
            Some(a) => (
                StatusCode::OK,
                serde_json::to_vec(&a).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
            None => (
                StatusCode::NOT_FOUND,
                serde_json::to_vec(&Problem::not_found(NOT_FOUND_DETAIL))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
        };
        Ok::<_, StoreError>(CachedAnswer {
            status,
            body: Bytes::from(body),
        })
    };
    match state.cache(op.eservice()) {
        Some(cache) => match cache.entry((op, key)).or_try_insert_with(compute).await {
            Ok(entry) => {
                let fresh = entry.is_fresh();
                respond(entry.value(), !fresh)
            }
            Err(err) => problem_response(store_problem(op, &Arc::clone(&err))),
        },
        None => match compute.await {
            Ok(answer) => respond(&answer, false),
            Err(err) => problem_response(store_problem(op, &err)),
        },
    }
}

/// The cache key of a validated request: its canonical JSON.
pub(crate) fn key<T: Serialize>(request: &T) -> String {
    serde_json::to_string(request).unwrap_or_default()
}

/// The error answers every lookup operation shares, for the OpenAPI annotations
/// (`responses((status = 200, ...), (status = 404, ...), LookupErrors)`); the answers themselves
/// are built where the errors happen.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum LookupErrors {
    #[response(
        status = 400,
        description = "Invalid request body",
        content_type = "application/problem+json"
    )]
    BadRequest(crate::problem::Problem),
    #[response(
        status = 408,
        description = "Body not received in time",
        content_type = "application/problem+json"
    )]
    Timeout(crate::problem::Problem),
    #[response(
        status = 413,
        description = "Body over 16 KiB",
        content_type = "application/problem+json"
    )]
    TooLarge(crate::problem::Problem),
    #[response(
        status = 415,
        description = "Body not application/json",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(crate::problem::Problem),
    #[response(
        status = 500,
        description = "Internal error",
        content_type = "application/problem+json"
    )]
    Internal(crate::problem::Problem),
    #[response(
        status = 503,
        description = "Data store unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(crate::problem::Problem),
}
