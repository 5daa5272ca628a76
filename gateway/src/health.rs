//! The orchestrator's probes on the internal listener: `GET /livez` and `GET /readyz`.
//!
//! They answer different questions, so they check different things. Liveness asks "is this
//! process stuck beyond repair?" and a restart is the answer to a no: it touches no database,
//! because a database outage restarted away on every replica at once only adds to it. Readiness
//! asks "should requests come here now?": every component a served answer needs must answer,
//! each within [`CHECK_TIMEOUT`] (a hung database makes the gateway not ready instead of hanging
//! the probe), and during shutdown it is 503 at once, so a load balancer stops sending before
//! the listeners close.
//!
//! The public `/status` of the Italian guidelines stays what it is (a problem+json about the
//! data store and the audit trail); these two are for Kubernetes and speak plain JSON.
//!
//! A component is one [`Check`]: a name and an async closure. Adding one is one line in
//! [`Readiness::standard`] (or a `push` by whoever builds the server).

use crate::problem::Problem;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures_util::future::{join_all, BoxFuture};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for one component's answer. The checks run concurrently, so a probe answers
/// within about this long whatever hangs: give the readiness probe `timeoutSeconds: 2` or more.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What a component check reports when it fails: a short reason for the probe's body. The
/// precise error (which may name hosts) goes to the log, not the body.
pub type CheckResult = Result<(), String>;

/// One component of readiness: its name in the `/readyz` body and how to ask it.
pub struct Check {
    name: &'static str,
    run: Box<dyn Fn() -> BoxFuture<'static, CheckResult> + Send + Sync>,
}

impl Check {
    /// A check named `name` (`audit`, `registry`, ...) that runs `run` at every probe.
    pub fn new<F, Fut>(name: &'static str, run: F) -> Check
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = CheckResult> + Send + 'static,
    {
        Check {
            name,
            run: Box::new(move || Box::pin(run())),
        }
    }

    /// The shared state store (`[state]`): without it the ModI and DPoP replay checks refuse
    /// every request (503), so a replica whose Redis is unreachable must leave the rotation.
    pub fn state(store: Arc<dyn crate::state::StateStore>) -> Check {
        Check::new("state", move || {
            let store = store.clone();
            async move { unreachable_if_err("state", store.ping().await) }
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Whether the gateway should get requests: its component checks and the shutdown flag.
pub struct Readiness {
    checks: Vec<Check>,
    timeout: Duration,
    shutting_down: AtomicBool,
}

/// One component's line in the `/readyz` body.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ComponentStatus {
    /// `ok` or `fail`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `/readyz` body.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    /// `ready`, `not_ready` or `shutting_down`.
    pub status: &'static str,
    pub components: BTreeMap<&'static str, ComponentStatus>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Readiness {
    /// Readiness over these checks, each bounded by `timeout`.
    pub fn new(checks: Vec<Check>, timeout: Duration) -> Readiness {
        Readiness {
            checks,
            timeout,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The gateway's components: the audit trail (no answer is served without its record),
    /// the e-service data store, the PDND keys (no voucher can be checked without them) and,
    /// when some e-service signs its answers, the ModI signing key.
    pub fn standard(
        audit: crate::provider::audit::AuditLog,
        registry: Arc<dyn eservices::store::Store>,
        jwks: Arc<crate::pdnd_client::jwks::JwksCache>,
        signing: Option<Arc<crate::provider::modi::ModiShared>>,
    ) -> Readiness {
        let mut checks = vec![
            Check::new("audit", move || {
                let audit = audit.clone();
                async move { unreachable_if_err("audit", audit.store().ping().await) }
            }),
            Check::new("registry", move || {
                let registry = registry.clone();
                async move { unreachable_if_err("registry", registry.ping().await) }
            }),
            Check::new("jwks", move || {
                let loaded = jwks.is_loaded();
                async move {
                    loaded
                        .then_some(())
                        .ok_or_else(|| "no PDND key set loaded yet".to_owned())
                }
            }),
        ];
        if let Some(modi) = signing {
            checks.push(Check::new("signing_key", move || {
                let loaded = modi.signer.is_some();
                async move {
                    loaded
                        .then_some(())
                        .ok_or_else(|| "the ModI signing key is not loaded".to_owned())
                }
            }));
        }
        Readiness::new(checks, CHECK_TIMEOUT)
    }

    /// Adds a component (e.g. a shared state store's `ping`).
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// From now on `/readyz` answers 503 (`shutting_down`), whatever the components say.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs every check concurrently, each within the timeout.
    pub async fn report(&self) -> ReadinessReport {
        let timeout = self.timeout;
        let results = join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(timeout, (check.run)()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            (check.name, outcome)
        }))
        .await;
        let mut all_ok = true;
        let mut components = BTreeMap::new();
        for (name, outcome) in results {
            let status = match outcome {
                Ok(()) => ComponentStatus {
                    status: "ok",
                    reason: None,
                },
                Err(reason) => {
                    all_ok = false;
                    tracing::warn!(component = name, reason = %reason, "not ready");
                    ComponentStatus {
                        status: "fail",
                        reason: Some(reason),
                    }
                }
            };
            components.insert(name, status);
        }
        let status = if self.is_shutting_down() {
            "shutting_down"
        } else if all_ok {
            "ready"
        } else {
            "not_ready"
        };
        ReadinessReport { status, components }
    }
}

/// Logs a store's error in full and reports only that it is unreachable.
fn unreachable_if_err<E: std::fmt::Display>(component: &str, result: Result<(), E>) -> CheckResult {
    result.map_err(|e| {
        tracing::warn!(component, error = %e, "readiness check failed");
        "unreachable".to_owned()
    })
}

fn json_no_store(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(body)
}

/// `GET /livez`: 200 while the process can answer at all.
async fn livez() -> HttpResponse {
    json_no_store(StatusCode::OK, &serde_json::json!({ "status": "alive" }))
}

/// `GET /readyz`: 200 when every component is ready, else 503; the body lists each one.
async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_no_store(status, &report)
}

/// A probe path: GET only; any other method gets 405 problem+json with `Allow: GET`.
fn probe<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(|| async {
            let problem = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
                .with_detail("The probe answers GET only.");
            let mut builder = problem.response_builder();
            builder.insert_header(("allow", "GET"));
            problem.into_response_with(builder)
        }))
}

/// The probes, for the internal listener's app (which must hold `web::Data<Readiness>`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(probe("/livez", livez))
        .service(probe("/readyz", readyz));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    fn ok(name: &'static str) -> Check {
        Check::new(name, || async { Ok(()) })
    }

    fn failing(name: &'static str) -> Check {
        Check::new(name, || async { Err("unreachable".to_owned()) })
    }

    fn hanging(name: &'static str) -> Check {
        Check::new(name, || async {
            std::future::pending::<()>().await;
            Ok(())
        })
    }

    async fn call(readiness: Readiness, path: &str) -> (StatusCode, serde_json::Value) {
        let app = test::init_service(
            actix_web::App::new()
                .app_data(web::Data::new(readiness))
                .configure(routes),
        )
        .await;
        let resp = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let status = resp.status();
        let body: serde_json::Value = test::read_body_json(resp).await;
        (status, body)
    }

    #[actix_web::test]
    async fn ready_when_every_component_answers() {
        let r = Readiness::new(vec![ok("audit"), ok("registry")], CHECK_TIMEOUT);
        let (status, body) = call(r, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["components"]["audit"]["status"], "ok");
        assert_eq!(body["components"]["registry"]["status"], "ok");
    }

    #[actix_web::test]
    async fn one_failing_component_makes_it_503_and_is_named() {
        let r = Readiness::new(vec![ok("audit"), failing("registry")], CHECK_TIMEOUT);
        let (status, body) = call(r, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["components"]["audit"]["status"], "ok");
        assert_eq!(body["components"]["registry"]["status"], "fail");
        assert_eq!(body["components"]["registry"]["reason"], "unreachable");
    }

    #[actix_web::test]
    async fn a_hung_component_is_a_failure_within_the_timeout_not_a_hung_probe() {
        let r = Readiness::new(
            vec![hanging("audit"), hanging("registry"), ok("jwks")],
            Duration::from_millis(100),
        );
        let started = std::time::Instant::now();
        let (status, body) = call(r, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["components"]["audit"]["status"], "fail");
        assert_eq!(body["components"]["jwks"]["status"], "ok");
        assert!(body["components"]["registry"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("100 ms")));
        // Concurrent checks: two hung ones cost one timeout, not two (a generous margin).
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[actix_web::test]
    async fn shutting_down_is_503_even_when_everything_answers() {
        let r = Readiness::new(vec![ok("audit")], CHECK_TIMEOUT);
        r.begin_shutdown();
        let (status, body) = call(r, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "shutting_down");
        assert_eq!(body["components"]["audit"]["status"], "ok");
    }

    #[actix_web::test]
    async fn a_pushed_component_takes_part() {
        let mut r = Readiness::new(vec![ok("audit")], CHECK_TIMEOUT);
        r.push(failing("state"));
        let (status, body) = call(r, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["components"]["state"]["status"], "fail");
    }

    #[actix_web::test]
    async fn livez_runs_no_check() {
        // Every component fails or hangs: liveness does not care.
        let r = Readiness::new(vec![failing("audit"), hanging("registry")], CHECK_TIMEOUT);
        let (status, body) = call(r, "/livez").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "alive");
    }

    #[actix_web::test]
    async fn other_methods_get_405_with_allow() {
        let app = test::init_service(
            actix_web::App::new()
                .app_data(web::Data::new(Readiness::new(vec![], CHECK_TIMEOUT)))
                .configure(routes),
        )
        .await;
        for path in ["/livez", "/readyz"] {
            let resp =
                test::call_service(&app, test::TestRequest::post().uri(path).to_request()).await;
            assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(
                resp.headers().get("allow").and_then(|v| v.to_str().ok()),
                Some("GET")
            );
        }
    }
}
