//! `GET /metrics` on the internal listener: the Prometheus text exposition.
//!
//! Internal only, like the probes: the numbers describe the comune's traffic and are of no
//! business to callers of the public listener. Open (no API key) so that Prometheus scrapes it
//! as it scrapes `/livez`; NetworkPolicy or the internal TLS restrict who reaches it.

use actix_web::HttpResponse;
use eservices::problem::Problem;

/// The media type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics() -> HttpResponse {
    match super::metrics::render() {
        Ok(text) => HttpResponse::Ok()
            .insert_header(("content-type", PROMETHEUS_TEXT))
            .insert_header(("cache-control", "no-store"))
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot render the exposition");
            Problem::unavailable("The metrics cannot be rendered now.").into_response()
        }
    }
}
