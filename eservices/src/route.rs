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
    operation_at(eservice, path)
        .map(Unmatched::MethodNotAllowed)
        .unwrap_or(Unmatched::NotFound)
}

/// The operation of `eservice` whose resource matches `path` (the part after the e-service's
/// base, as the router sees it), by the router's own [`ResourceDef`] matching.
fn operation_at(eservice: Eservice, path: &str) -> Option<Operation> {
    operations(eservice).find(|op| ResourceDef::new(op.path()).is_match(path))
}

/// The operation the gateway's router gives a request target (path and query, as sent on the
/// request line), computed with the router's own pieces: actix's [`Url`] (which percent-decodes
/// all but `%2F`, `%25`, `%2B`), the e-service scope's prefix match and each operation's
/// [`ResourceDef`]. It exists for the fuzz target and the test that hold the routing decision to
/// its promise: a target reaches an operation only when it decodes to exactly that operation's
/// path. `None` for anything the router gives to no operation.
///
/// [`Url`]: actix_web::dev::Url
pub fn resolve_target(target: &str) -> Option<Operation> {
    use actix_web::dev::{Path, Url};
    let uri: actix_web::http::Uri = target.parse().ok()?;
    for &eservice in Eservice::all() {
        let mut path = Path::new(Url::new(uri.clone()));
        if !ResourceDef::prefix(eservice.base_path()).capture_match_info(&mut path) {
            continue;
        }
        return operation_at(eservice, path.unprocessed());
    }
    None
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
    fn targets_resolve_only_when_they_decode_to_an_operation_path() {
        assert_eq!(
            resolve_target("/anagrafe/v1/residenza"),
            Some(Operation::Residenza)
        );
        assert_eq!(
            resolve_target("/%61nagrafe/v1/residenz%61?x=1"),
            Some(Operation::Residenza)
        );
        assert_eq!(
            resolve_target("/tributi/v1/imu/posizione"),
            Some(Operation::ImuPosizione)
        );
        for refused in [
            "/tributi/v1/imu%2Fposizione",
            "/anagrafe/v1/residenza/",
            "/anagrafe/v1//residenza",
            "/anagrafe/v1/./residenza",
            "/anagrafe/v1/x/../residenza",
            "/anagrafe/v1/residenza;x=1",
            "/Anagrafe/v1/residenza",
            "/anagrafe/v2/residenza",
            "/tributi/v1/residenza",
            "residenza",
        ] {
            assert_eq!(resolve_target(refused), None, "{refused}");
        }
    }

    /// The resolver agrees with the router itself: the same targets sent to the mounted routes
    /// reach the operation [`resolve_target`] names, or none.
    #[actix_web::test]
    async fn the_resolver_agrees_with_the_router() {
        use actix_web::{test, App};
        let app = test::init_service(
            App::new()
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        if let Some(op) = Resolved::of(res.request()) {
                            res.headers_mut().insert(
                                header::HeaderName::from_static("x-test-operation"),
                                header::HeaderValue::from_static(op.operation().id()),
                            );
                        }
                        Ok(res)
                    }
                })
                .service(web::scope("/anagrafe/v1").configure(routes(Eservice::Anagrafe)))
                .service(web::scope("/tributi/v1").configure(routes(Eservice::Tributi))),
        )
        .await;
        let mut targets = Vec::new();
        for op in Operation::all() {
            let path = format!("{}{}", op.eservice().base_path(), op.path());
            for i in 1..path.len() {
                let b = path.as_bytes()[i];
                targets.push(format!("{}%{b:02X}{}", &path[..i], &path[i + 1..]));
                targets.push(format!("{}%{b:02x}{}", &path[..i], &path[i + 1..]));
            }
            targets.push(format!("{path}/"));
            targets.push(format!("{path}?q=1"));
            targets.push(path.to_uppercase());
            targets.push(path.replacen('/', "//", 2));
            targets.push(path);
        }
        for target in targets {
            let req = test::TestRequest::post().uri(&target).to_request();
            let res = test::call_service(&app, req).await;
            let routed = res
                .headers()
                .get("x-test-operation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            assert_eq!(
                routed,
                resolve_target(&target).map(|op| op.id().to_owned()),
                "{target}"
            );
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
