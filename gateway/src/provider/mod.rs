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

/// `s` in ASCII lower case, copied only when it has an upper-case letter: PDND's ids are
/// lower-case UUIDs already, and the stages compare them on every call.
pub(crate) fn ascii_lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

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

#[cfg(test)]
mod tests {
    use super::ascii_lower;
    use std::borrow::Cow;

    #[test]
    fn ascii_lower_copies_only_what_has_an_upper_case_letter() {
        let id = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01";
        assert!(matches!(ascii_lower(id), Cow::Borrowed(s) if s == id));
        assert!(matches!(ascii_lower("2F4B7C1D-0A6E-É"), Cow::Owned(s) if s == "2f4b7c1d-0a6e-É"));
        assert_eq!(ascii_lower(""), "");
    }
}
