//! The routing decision: which operation a request calls, decided once, by the router.
//!
//! An earlier design let a stage look the operation up from the raw request path while the
//! router matched the percent-decoded one, so `/anagrafe/v1/residenz%61` skipped the purpose
//! check and still reached the handler. The rule now is: **the route that matched is the
//! decision**. Every operation is mounted as its own resource built from [`Operation::path`];
//! the first thing that resource does is put [`Resolved`] into the request extensions, and
//! every later reader (the gateway's purpose, ModI, quota and audit stages, the cache key and
//! the handler itself) reads that one value. Nothing else derives an operation from a path.
//!
//! A request for which no operation's resource matched never meets a stage that touches data:
//! the e-service scope's default service answers [`no_operation`] (404, or 405 with `Allow`
//! when the path is an operation's but the method is not). [`classify`] exists only to choose
//! between those two refusals; it never grants anything.

use crate::problem::Problem;
use crate::{Eservice, Operation};
use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use std::future::{ready, Future, Ready};
use std::pin::Pin;

/// The operation whose resource matched this request. Only [`mark`] creates it, at the
/// matched resource, so its presence means the router really chose that operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resolved(Operation);

impl Resolved {
    pub fn operation(self) -> Operation {
        self.0
    }

    /// The routing decision of a request, if one was made.
    pub fn of(req: &impl HttpMessage) -> Option<Resolved> {
        req.extensions().get::<Resolved>().copied()
    }
}

/// The method every operation of the catalogue is published with.
pub const OPERATION_METHOD: Method = Method::POST;

/// The operations of one e-service, in catalogue order.
pub fn operations(eservice: Eservice) -> impl Iterator<Item = Operation> {
    Operation::all()
        .iter()
        .copied()
        .filter(move |op| op.eservice() == eservice)
}

/// What a middleware at an operation's resource returns.
pub type MarkFuture = Pin<Box<dyn Future<Output = Result<ServiceResponse<BoxBody>, Error>>>>;

/// Middleware for the resource of `op`: records the routing decision before anything else at
/// that resource runs (`web::resource(op.path()).wrap(from_fn(mark(op)))`, outermost).
pub fn mark(op: Operation) -> impl Fn(ServiceRequest, Next<BoxBody>) -> MarkFuture + Clone {
    move |req, next| {
        req.extensions_mut().insert(Resolved(op));
        Box::pin(next.call(req))
    }
}

/// The handler of `op` as an actix route (method guard included).
pub fn handler(op: Operation) -> actix_web::Route {
    use crate::{anagrafe, tributi};
    let route = web::route().method(OPERATION_METHOD);
    match op {
        Operation::Residenza => route.to(anagrafe::residenza),
        Operation::Generalita => route.to(anagrafe::generalita),
        Operation::StatoFamiglia => route.to(anagrafe::stato_famiglia),
        Operation::EsistenzaInVita => route.to(anagrafe::esistenza_in_vita),
        Operation::VerificaResidenza => route.to(anagrafe::verifica_residenza),
        Operation::ImuPosizione => route.to(tributi::imu_posizione),
        Operation::TariPosizione => route.to(tributi::tari_posizione),
        Operation::Regolarita => route.to(tributi::regolarita),
        Operation::Pagamenti => route.to(tributi::pagamenti),
    }
}

/// Mounts an e-service's operations with nothing in front of them but [`mark`], plus the
/// [`no_operation`] default: for the e-service crate's own tests and for embedding without
/// the gateway. The gateway builds the same resources with its stages between the two.
pub fn routes(eservice: Eservice) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        for op in operations(eservice) {
            cfg.service(
                web::resource(op.path())
                    .guard(actix_web::guard::Method(OPERATION_METHOD))
                    .wrap(actix_web::middleware::from_fn(mark(op)))
                    .route(handler(op)),
            );
        }
        cfg.default_service(web::to(move |req: HttpRequest| no_operation(eservice, req)));
    }
}

/// Why no operation's resource matched (for the refusal only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// The path is an operation's, the method is not the one it is published with.
    MethodNotAllowed(Operation),
    /// No operation is published at this path.
    NotFound,
}

/// Classifies a request that matched no operation: `path` is the part after the e-service's
/// base exactly as the router sees it (percent-decoded by actix except `%2F`, `%25`, `%2B`).
/// It uses actix's own [`ResourceDef`] matching on that same string, so it agrees with the
/// router about which paths are an operation's.
pub fn classify(eservice: Eservice, path: &str) -> Unmatched {
    operations(eservice)
        .find(|op| ResourceDef::new(op.path()).is_match(path))
        .map(Unmatched::MethodNotAllowed)
        .unwrap_or(Unmatched::NotFound)
}

/// The e-service scope's default service: 404 problem+json, or 405 with `Allow` for a method
/// the operation does not declare. No data store, cache or handler is reached.
pub async fn no_operation(eservice: Eservice, req: HttpRequest) -> HttpResponse {
    let within = req.match_info().unprocessed().to_owned();
    match classify(eservice, &within) {
        Unmatched::MethodNotAllowed(op) => {
            let problem = Problem::new(StatusCode::METHOD_NOT_ALLOWED).with_detail(format!(
                "The operation `{}` is published for {} only.",
                op.id(),
                OPERATION_METHOD
            ));
            let mut builder = problem.response_builder();
            builder.insert_header((header::ALLOW, OPERATION_METHOD.as_str()));
            problem.into_response_with(builder)
        }
        Unmatched::NotFound => {
            Problem::not_found("No operation is published at this path.").into_response()
        }
    }
}

/// The routing decision as a handler argument. A handler reached without one (a wiring error:
/// it was mounted without [`mark`]) answers 500 rather than serve data on an unknown decision.
impl FromRequest for Resolved {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Resolved::of(req).ok_or_else(|| {
            tracing::error!("handler reached without a routing decision");
            Problem::internal()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_classified_by_its_own_path_only() {
        for &op in Operation::all() {
            assert_eq!(
                classify(op.eservice(), op.path()),
                Unmatched::MethodNotAllowed(op)
            );
            for variant in [
                format!("{}/", op.path()),
                op.path().to_uppercase(),
                format!("/{}", op.path()),
                format!("{};x=1", op.path()),
                op.path().replacen('/', "%2F", 2).replacen("%2F", "/", 1),
            ] {
                if variant == op.path() {
                    continue;
                }
                assert_eq!(
                    classify(op.eservice(), &variant),
                    Unmatched::NotFound,
                    "{variant}"
                );
            }
        }
    }

    #[test]
    fn operations_are_partitioned_by_eservice() {
        let all: Vec<_> = Eservice::all()
            .iter()
            .flat_map(|&e| operations(e))
            .collect();
        assert_eq!(all.len(), Operation::all().len());
    }
}
