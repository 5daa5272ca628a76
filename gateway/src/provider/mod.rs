//! The inbound pipeline of the public listener (the comune as erogatore).
//!
//! Stages run in the order docs/architecture.md shows, registered in [`crate::server`]'s
//! `eservice_scope`, in one visible place: request id, audit (around the whole e-service scope,
//! so it sees every outcome), then, around each operation's own resource, the routing decision,
//! then one middleware ([`chain`]) running voucher, modi-out (response signing), purpose, quota,
//! modi-in (request integrity and tracking evidence), then the handler.

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
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
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
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next) -> StageFuture;
}

/// A place in a chain of stages: a [`Stage`] (with its metrics mark and its span), or the mark
/// that the handler was reached.
pub trait Step {
    fn run(&self, req: ServiceRequest, next: Next) -> StageFuture;
}

impl<S: Stage> Step for Arc<S> {
    fn run(&self, req: ServiceRequest, next: Next) -> StageFuture {
        crate::telemetry::requests::enter(&req, S::NAME);
        crate::telemetry::traces::in_stage(S::SPAN, Arc::clone(self).call(req, next))
    }
}

/// The last step of an operation's chain: marks that the request got through every stage, and
/// traces the handler (answer cache and store) as the `handler` span.
struct ReachedHandler;

impl Step for ReachedHandler {
    fn run(&self, req: ServiceRequest, next: Next) -> StageFuture {
        use crate::telemetry::requests::HANDLER;
        crate::telemetry::requests::enter(&req, HANDLER);
        crate::telemetry::traces::in_stage(HANDLER, next.call(req))
    }
}

/// A stage as a step of [`chain`].
pub fn step<S: Stage>(stage: Arc<S>) -> Rc<dyn Step> {
    Rc::new(stage)
}

/// The step that ends an operation's [`chain`], right before its handler.
pub fn reached_handler() -> Rc<dyn Step> {
    Rc::new(ReachedHandler)
}

type Steps = Rc<[Rc<dyn Step>]>;

/// What a stage passes the request on to: the steps after it in its chain, then whatever the
/// middleware wraps (the handler, or the rest of the scope).
pub struct Next {
    steps: Steps,
    at: usize,
    end: actix_web::middleware::Next<BoxBody>,
}

impl Next {
    /// Runs the rest of the pipeline on `req`.
    pub fn call(self, req: ServiceRequest) -> StageFuture {
        match self.steps.get(self.at).cloned() {
            Some(step) => step.run(
                req,
                Next {
                    at: self.at + 1,
                    ..self
                },
            ),
            None => self.end.call(req),
        }
    }
}

/// A stage as an actix middleware function: `scope.wrap(from_fn(provider::middleware(stage)))`.
pub fn middleware<S: Stage>(
    stage: Arc<S>,
) -> impl Fn(ServiceRequest, actix_web::middleware::Next<BoxBody>) -> StageFuture + 'static {
    chain(vec![step(stage)])
}

/// Stages run in the given order as one actix middleware:
/// `resource.wrap(from_fn(provider::chain(vec![step(voucher), ..])))`.
///
/// Why one middleware and not one each: every actix middleware adds its own service, a shared
/// handle cloned and a boxed future to each request; an operation has six steps.
pub fn chain(
    steps: Vec<Rc<dyn Step>>,
) -> impl Fn(ServiceRequest, actix_web::middleware::Next<BoxBody>) -> StageFuture + 'static {
    let steps: Steps = steps.into();
    move |req, end| {
        Next {
            steps: Rc::clone(&steps),
            at: 0,
            end,
        }
        .call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{web, App, HttpMessage, HttpResponse};
    use std::borrow::Cow;
    use std::cell::RefCell;

    /// Which steps a request went through, in order.
    #[derive(Clone, Default)]
    struct Trace(Rc<RefCell<Vec<&'static str>>>);

    /// Writes its name into the request's [`Trace`], then passes the request on, or refuses it
    /// with 403 when `refuses`.
    struct Named {
        name: &'static str,
        refuses: bool,
    }

    impl Stage for Named {
        fn call(self: Arc<Self>, req: ServiceRequest, next: Next) -> StageFuture {
            if let Some(trace) = req.extensions().get::<Trace>() {
                trace.0.borrow_mut().push(self.name);
            }
            if self.refuses {
                let res = req.into_response(HttpResponse::Forbidden().finish());
                return Box::pin(async move { Ok(res) });
            }
            next.call(req)
        }
    }

    fn named(name: &'static str, refuses: bool) -> Rc<dyn Step> {
        step(Arc::new(Named { name, refuses }))
    }

    /// Calls `/r` through `chain(steps)` and returns the status and the steps it met, the
    /// handler's own mark as "handler".
    async fn through(steps: Vec<Rc<dyn Step>>) -> (u16, Vec<&'static str>) {
        let trace = Trace::default();
        let seen = trace.clone();
        let app = actix_web::test::init_service(
            App::new().service(
                web::resource("/r")
                    .wrap(from_fn(chain(steps)))
                    .wrap(from_fn(
                        move |req: ServiceRequest, next: actix_web::middleware::Next<BoxBody>| {
                            req.extensions_mut().insert(trace.clone());
                            next.call(req)
                        },
                    ))
                    .to(|req: actix_web::HttpRequest| async move {
                        if let Some(trace) = req.extensions().get::<Trace>() {
                            trace.0.borrow_mut().push("handler");
                        }
                        HttpResponse::Ok().finish()
                    }),
            ),
        )
        .await;
        let req = actix_web::test::TestRequest::get().uri("/r").to_request();
        let res = actix_web::test::call_service(&app, req).await;
        let steps = seen.0.borrow().clone();
        (res.status().as_u16(), steps)
    }

    #[actix_web::test]
    async fn a_chain_runs_its_steps_in_order_and_a_refusal_ends_it() {
        let (status, steps) = through(vec![
            named("first", false),
            named("second", false),
            reached_handler(),
        ])
        .await;
        assert_eq!((status, steps), (200, vec!["first", "second", "handler"]));

        let (status, steps) = through(vec![
            named("first", false),
            named("refuses", true),
            named("after", false),
            reached_handler(),
        ])
        .await;
        assert_eq!((status, steps), (403, vec!["first", "refuses"]));

        // No steps at all: straight to what the middleware wraps.
        assert_eq!(through(Vec::new()).await, (200, vec!["handler"]));
    }

    #[test]
    fn ascii_lower_copies_only_what_has_an_upper_case_letter() {
        let id = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01";
        assert!(matches!(ascii_lower(id), Cow::Borrowed(s) if s == id));
        assert!(matches!(ascii_lower("2F4B7C1D-0A6E-É"), Cow::Owned(s) if s == "2f4b7c1d-0a6e-É"));
        assert_eq!(ascii_lower(""), "");
    }
}
