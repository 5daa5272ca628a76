//! The inbound pipeline of the public listener (the comune as erogatore).
//!
//! Stages run in the order docs/architecture.md shows; each is one middleware
//! registered in [`crate::server`]'s `eservice_scope`, in one visible place: request id, audit
//! (around the whole e-service scope, so it sees every outcome), then, around each operation's
//! own resource, the routing decision, voucher, modi-out (response signing), purpose, quota, modi-in
//! (request integrity and tracking evidence), then the handler.

pub mod audit;
pub mod audit_fruizioni;
pub mod audit_lifecycle;
pub mod audit_retention;
pub mod dpop;
pub mod modi;
pub mod purpose;
pub mod quota;
pub mod request_id;
pub mod voucher;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a stage returns: the response of the rest of the pipeline, or its own refusal.
pub type StageFuture =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>>>;

/// One stage of the pipeline: looks at the request, refuses it or passes it on.
pub trait Stage: 'static {
    /// The `reason` its refusals are counted under (`pdnd_gateway_refusals_total`); empty for
    /// a stage that refuses nothing on its own (see [`crate::telemetry::requests`]).
    const NAME: &'static str = "";
    /// The name of its span in traces: its [`Stage::NAME`] unless it has none.
    const SPAN: &'static str = if Self::NAME.is_empty() {
        "stage"
    } else {
        Self::NAME
    };
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> StageFuture;
}

/// A stage as an actix middleware function: `scope.wrap(from_fn(provider::middleware(stage)))`.
pub fn middleware<S: Stage>(
    stage: Arc<S>,
) -> impl Fn(ServiceRequest, Next<BoxBody>) -> StageFuture + 'static {
    move |req, next| {
        crate::telemetry::requests::enter(&req, S::NAME);
        crate::telemetry::traces::in_stage(S::SPAN, stage.clone().call(req, next))
    }
}
