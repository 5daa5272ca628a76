//! The listeners: public (e-services for other administrations), internal (the comune's own
//! systems and operators) and, in `dev` only, the local PDND authority.
//!
//! This is the one place where the inbound pipeline is assembled: reading
//! [`public_app`] top to bottom shows every stage a request walks through.

use crate::config::{Config, EserviceConfig};
use crate::consumer::fruizioni::{self, Fruizioni, FruizioniError};
use crate::consumer::internal_auth::ApiKeys;
use crate::openapi::{self, Documents};
use crate::pdnd::verified::VerifiedVouchers;
use crate::pdnd::voucher::VoucherPolicy;
use crate::pdnd_client::jwks::{JwksCache, JwksSchedule};
use crate::pdnd_client::voucher_cache::SystemClock;
use crate::problem::{Problem, PROBLEM_JSON};
use crate::provider;
use crate::provider::audit::{
    AuditError, AuditLog, AuditSettings, AuditStage, AuditStore, SubjectHasher,
};
use crate::provider::dpop::DpopCheck;
use crate::provider::modi::{
    ModiSetupError, ModiShared, ModiStage, RequestChecks, ResponseSigning,
};
use crate::provider::purpose::{PurposeDb, PurposeRegistry, PurposeStage, RegistryError};
use crate::provider::request_id;
use crate::provider::voucher::VoucherStage;
use crate::state::replay::ReplayMemory;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use eservices::store::Store;
use eservices::{Eservice, EserviceState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod shutdown;
pub use shutdown::{ShutdownError, Signals};

/// The largest voucher accepted (PDND vouchers are about 1 KiB).
pub const MAX_VOUCHER_LEN: usize = 16 * 1024;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("audit store ({url}): {source}")]
    Audit { url: String, source: AuditError },
    #[error(transparent)]
    Purposes(#[from] RegistryError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Fruizioni(#[from] FruizioniError),
    #[error(transparent)]
    ApiKeys(#[from] crate::consumer::internal_auth::ApiKeyError),
    #[error("ModI: {0}")]
    Modi(#[from] ModiSetupError),
    #[error(transparent)]
    OpenApi(#[from] crate::openapi::OpenApiError),
    #[error("internal listener TLS: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("shared state: {0}")]
    State(#[from] crate::state::StateError),
}

/// The stages of one e-service's pipeline.
#[derive(Clone)]
pub struct EserviceStages {
    pub audit: Arc<AuditStage>,
    pub voucher: Arc<VoucherStage>,
    pub purpose: Arc<PurposeStage>,
    /// Daily thresholds and request rate (`provider::quota`).
    pub quota: Arc<crate::provider::quota::QuotaStage>,
    /// modi-out: signs the answers (INTEGRITY_REST_01).
    pub modi_out: Arc<ResponseSigning>,
    /// modi-in: request integrity and tracking evidence, where required.
    pub modi_in: Arc<RequestChecks>,
}

/// Everything the public listener's apps share.
#[derive(Clone)]
pub struct PublicState {
    pub eservices: web::Data<EserviceState>,
    pub anagrafe: EserviceStages,
    pub tributi: EserviceStages,
    pub health: web::Data<Health>,
    pub purposes: Arc<PurposeRegistry>,
    /// The e-services' OpenAPI documents, rendered once.
    pub documents: web::Data<Documents>,
    /// How long a request body may take to arrive.
    pub body_read_deadline: eservices::BodyReadDeadline,
}

/// What `/status` reports on.
pub struct Health {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub environment: String,
}

/// The voucher policy of one e-service, from configuration: the comune's producerId and the
/// e-service's eserviceId and descriptorId, where configured, are required of every voucher.
pub fn voucher_policy(config: &Config, eservice: &EserviceConfig) -> VoucherPolicy {
    VoucherPolicy {
        issuers: config.pdnd.voucher_issuers.clone(),
        audiences: eservice.audiences.clone(),
        leeway_secs: config.pdnd.leeway_secs,
        require_at_jwt_typ: true,
        max_token_len: MAX_VOUCHER_LEN,
        max_lifetime_secs: config.pdnd.voucher_max_lifetime_secs,
        producer_id: config.comune.producer_id.clone(),
        eservice_id: eservice.eservice_id.clone(),
        descriptor_id: eservice.descriptor_id.clone(),
    }
}

/// The DPoP rules of one e-service: proofs name its configured public URL (never what the
/// request's `Host` says, see [`crate::provider::dpop`]), PDND's 60 s / 10 s time window, and
/// the replay memory the ModI checks use, in its own key space.
pub fn dpop_check(
    eservice: Eservice,
    cfg: &EserviceConfig,
    replay: Arc<crate::state::replay::ReplayMemory>,
) -> DpopCheck {
    DpopCheck {
        public_url: cfg.public_url.clone(),
        base_path: eservice.base_path(),
        policy: crate::pdnd::dpop::ProofPolicy::default(),
        replay,
    }
}

impl PublicState {
    // Each argument is one piece `start` builds once and every e-service's stages share.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        http: reqwest::Client,
        audit: AuditLog,
        hasher: SubjectHasher,
        purposes: Arc<PurposeRegistry>,
        modi: Arc<ModiShared>,
        state_store: Arc<dyn crate::state::StateStore>,
    ) -> Result<Self, crate::openapi::OpenApiError> {
        let jwks = JwksCache::start(
            config.pdnd.jwks_url.clone(),
            http,
            JwksSchedule::from_config(&config.pdnd),
        );
        let rates = Arc::new(config.rate_limits.clone());
        let stages = |eservice, cfg: &EserviceConfig| {
            let modi_stage = Arc::new(ModiStage {
                eservice,
                audiences: cfg.audiences.clone(),
                patterns: cfg.modi,
                shared: modi.clone(),
            });
            EserviceStages {
                audit: Arc::new(AuditStage {
                    eservice,
                    log: audit.clone(),
                    hasher: hasher.clone(),
                }),
                voucher: Arc::new(VoucherStage {
                    eservice,
                    vouchers: VerifiedVouchers::new(voucher_policy(config, cfg)),
                    jwks: jwks.clone(),
                    dpop: dpop_check(eservice, cfg, modi.replay.clone()),
                }),
                purpose: Arc::new(PurposeStage {
                    eservice,
                    registry: purposes.clone(),
                }),
                quota: Arc::new(crate::provider::quota::QuotaStage {
                    eservice,
                    thresholds: crate::provider::quota::DailyThresholds::from_config(cfg),
                    rates: rates.clone(),
                    store: state_store.clone(),
                    clock: Arc::new(SystemClock),
                    day: Default::default(),
                }),
                modi_out: Arc::new(ResponseSigning(modi_stage.clone())),
                modi_in: Arc::new(RequestChecks(modi_stage)),
            }
        };
        Ok(PublicState {
            eservices: web::Data::new(EserviceState::new(store.clone(), config.cache)),
            anagrafe: stages(Eservice::Anagrafe, &config.eservices.anagrafe),
            tributi: stages(Eservice::Tributi, &config.eservices.tributi),
            health: web::Data::new(Health {
                store,
                audit: audit.clone(),
                environment: config.pdnd.environment.clone(),
            }),
            purposes: purposes.clone(),
            documents: web::Data::new(Documents::new(config)?),
            body_read_deadline: eservices::BodyReadDeadline(Duration::from_millis(
                config.server.body_read_timeout_ms,
            )),
        })
    }
}

/// How long `/status` asks a monitor to wait after a 503 (`Retry-After`).
const STATUS_RETRY_AFTER_SECS: u32 = 5;

/// `GET /status`: the Italian guidelines' health check (RAC_REST_NAME_011), a problem+json body
/// with 200 when the gateway can serve, 503 when its data store or audit trail is unreachable
/// (it would refuse to serve anyway: no data without an audit record).
async fn status(health: web::Data<Health>) -> HttpResponse {
    let store = health.store.ping().await;
    let audit = health.audit.check().await;
    let problem = match (store, audit) {
        (Ok(()), true) => Problem::new(StatusCode::OK).with_detail(format!(
            "Serving; PDND environment: {}.",
            health.environment
        )),
        (Err(e), _) => {
            tracing::error!(error = %e, "status: store unreachable");
            Problem::unavailable("The data store is unreachable.")
        }
        (Ok(()), false) => {
            tracing::error!("status: audit trail unreachable");
            Problem::unavailable("The audit trail is unreachable.")
        }
    };
    let mut builder = HttpResponse::build(problem.status_code());
    builder.insert_header(("content-type", PROBLEM_JSON));
    builder.insert_header(("cache-control", "no-store"));
    if problem.status_code() == StatusCode::SERVICE_UNAVAILABLE {
        builder.insert_header(("retry-after", STATUS_RETRY_AFTER_SECS.to_string()));
    }
    problem.into_response_with(builder)
}

/// `GET {path}` answering [`status`]; any other method gets 405 problem+json with `Allow: GET`.
fn status_resource(path: &str) -> actix_web::Resource {
    web::resource(path)
        .route(web::get().to(status))
        .default_service(web::to(|| async {
            let problem = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
                .with_detail("The status is published for GET only.");
            let mut builder = problem.response_builder();
            builder.insert_header(("allow", "GET"));
            problem.into_response_with(builder)
        }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::not_found("No operation is published at this path.")
        .with_instance(req.path())
        .into_response()
}

/// The public listener's application: the inbound pipeline, in order.
pub fn public_app(
    state: PublicState,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        // 1. request id, before anything can fail
        .wrap(from_fn(request_id::assign))
        // 0. the request's span (continuing the caller's traceparent), around everything;
        // without an exporter the layer is left out, not only its span
        .wrap(Condition::new(
            crate::telemetry::traces::enabled(),
            from_fn(crate::telemetry::traces::request),
        ))
        .app_data(state.eservices.clone())
        .app_data(state.health.clone())
        .app_data(eservices::json_config())
        .app_data(state.body_read_deadline)
        .service(status_resource("/status"))
        .service(status_resource("/anagrafe/v1/status"))
        .service(status_resource("/tributi/v1/status"))
        // The contracts: public, like /status (their documentation page, after the scopes).
        .configure(openapi::routes(state.documents.clone()))
        .service(eservice_scope(Eservice::Anagrafe, &state.anagrafe))
        .service(eservice_scope(Eservice::Tributi, &state.tributi))
        .configure(openapi::docs_routes)
        .default_service(web::to(not_found))
}

/// One e-service's scope with its pipeline.
///
/// The routing decision is made once, by the router: every operation is its own resource
/// (built from [`eservices::Operation::path`]) and the stages that authorise and serve it are
/// wrapped around that resource, so they run only for a request the router really matched to
/// that operation, and all of them read the same [`eservices::route::Resolved`] value that
/// [`eservices::route::mark`] records first. A request that matches no operation (an unknown
/// path, any spelling the router does not take for an operation's path, a method an operation
/// does not declare) falls to the scope's default service: 404 or 405 problem+json, before any
/// stage that touches data. Only the audit stage wraps the whole scope, so it records those
/// refusals too.
///
/// actix runs the last `wrap` first, so the stages are listed innermost first; a request meets
/// them as: audit -> mark -> voucher -> modi-out (signs whatever comes back, refusals of the
/// later stages included) -> purpose -> quota -> modi-in -> handler.
fn eservice_scope(
    eservice: Eservice,
    stages: &EserviceStages,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let mut scope = web::scope(eservice.base_path())
        .wrap(from_fn(provider::middleware(stages.audit.clone())))
        .wrap(from_fn(crate::telemetry::requests::observe(eservice)))
        .default_service(web::to(move |req: HttpRequest| {
            eservices::route::no_operation(eservice, req)
        }));
    for op in eservices::route::operations(eservice) {
        scope = scope.service(
            web::resource(op.path())
                .guard(actix_web::guard::Method(eservices::route::OPERATION_METHOD))
                .wrap(from_fn(crate::telemetry::requests::reached_handler))
                .wrap(from_fn(provider::middleware(stages.modi_in.clone())))
                .wrap(from_fn(provider::middleware(stages.quota.clone())))
                .wrap(from_fn(provider::middleware(stages.purpose.clone())))
                .wrap(from_fn(provider::middleware(stages.modi_out.clone())))
                .wrap(from_fn(provider::middleware(stages.voucher.clone())))
                .wrap(from_fn(eservices::route::mark(op)))
                .route(eservices::route::handler(op)),
        );
    }
    scope
}

/// Everything the internal listener's apps share.
#[derive(Clone)]
pub struct InternalState {
    pub health: web::Data<Health>,
    pub fruizioni: web::Data<Fruizioni>,
    pub api_keys: web::Data<ApiKeys>,
    /// `/readyz`'s components and the shutdown flag.
    pub readiness: web::Data<crate::health::Readiness>,
    /// The shared-state store (`[state]`); its `ping()` is its health.
    pub state: web::Data<dyn crate::state::StateStore>,
}

/// The internal listener's application: `/status`, the probes `/livez` and `/readyz` (open)
/// and the fruizioni (API key required).
pub fn internal_app(
    state: InternalState,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(from_fn(request_id::assign))
        .wrap(Condition::new(
            crate::telemetry::traces::enabled(),
            from_fn(crate::telemetry::traces::request),
        ))
        .app_data(state.health)
        .app_data(state.fruizioni)
        .app_data(state.api_keys)
        .app_data(state.readiness)
        .app_data(state.state)
        .service(status_resource("/status"))
        .configure(crate::health::routes)
        .route(
            "/metrics",
            web::get().to(crate::telemetry::endpoint::metrics),
        )
        .configure(fruizioni::routes)
        .default_service(web::to(not_found))
}

/// A started server and the address it really bound (port 0 becomes a real port).
pub struct Bound {
    pub addr: SocketAddr,
    pub server: Server,
}

/// Binds the public listener. Signals are handled by [`Running::wait`], not by actix; a
/// graceful stop waits `shutdown` at most for requests in flight.
pub fn bind_public(
    addr: SocketAddr,
    workers: usize,
    shutdown: Duration,
    state: PublicState,
) -> std::io::Result<Bound> {
    let http = HttpServer::new(move || public_app(state.clone()))
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown.as_secs())
        .bind(addr)?;
    let addr = first_addr(&http.addrs(), addr);
    Ok(Bound {
        addr,
        server: http.run(),
    })
}

/// Binds the internal listener, over TLS when `tls` is given (signals and `shutdown` as for
/// [`bind_public`]).
pub fn bind_internal(
    addr: SocketAddr,
    workers: usize,
    shutdown: Duration,
    state: InternalState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Bound> {
    let http = HttpServer::new(move || internal_app(state.clone()))
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown.as_secs());
    let http = match tls {
        Some(tls) => http.bind_rustls_0_23(addr, tls)?,
        None => http.bind(addr)?,
    };
    let addr = first_addr(&http.addrs(), addr);
    Ok(Bound {
        addr,
        server: http.run(),
    })
}

fn first_addr(addrs: &[SocketAddr], fallback: SocketAddr) -> SocketAddr {
    addrs.first().copied().unwrap_or(fallback)
}

/// Running servers, stopped together.
pub struct Running {
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub authority: Option<SocketAddr>,
    /// The public listener's JWKS cache (for `/status`-like diagnostics and tests).
    pub jwks: Option<Arc<JwksCache>>,
    authority_handle: Option<ServerHandle>,
    handles: Vec<ServerHandle>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Told first at shutdown, so `/readyz` turns 503 before the listeners close.
    readiness: Option<web::Data<crate::health::Readiness>>,
    /// Flushed last at shutdown.
    audit: Option<AuditLog>,
    shutdown_timeout: Duration,
    /// At SIGTERM, how long `/readyz` says 503 before the listeners close.
    shutdown_delay: Duration,
}

impl Running {
    /// Spawns the servers on the current runtime.
    pub fn spawn(public: Bound, internal: Bound, authority: Option<Bound>) -> Running {
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        let authority_addr = authority.as_ref().map(|a| a.addr);
        let authority_handle = authority.as_ref().map(|a| a.server.handle());
        for bound in [
            Some(public.server),
            Some(internal.server),
            authority.map(|a| a.server),
        ]
        .into_iter()
        .flatten()
        {
            handles.push(bound.handle());
            tasks.push(tokio::spawn(bound));
        }
        Running {
            public: public.addr,
            internal: internal.addr,
            authority: authority_addr,
            jwks: None,
            authority_handle,
            handles,
            tasks,
            readiness: None,
            audit: None,
            shutdown_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see [`shutdown`]): `/readyz`
    /// 503, listeners closed, requests in flight finished within `server.shutdown_timeout_secs`,
    /// the audit queue flushed. Also returns when a server ends on its own.
    pub async fn wait(self, signals: Signals) -> Result<(), ShutdownError> {
        shutdown::serve_until_signal(self, signals).await
    }

    /// Stops only the development authority (tests of a PDND outage).
    pub async fn stop_authority(&self) {
        if let Some(handle) = &self.authority_handle {
            handle.stop(false).await;
        }
    }

    /// Stops every server gracefully.
    pub async fn stop(self) {
        for handle in &self.handles {
            handle.stop(true).await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the public and internal listeners for a configuration and store: opens the audit
/// trail, loads the purposes (and watches them), then binds.
pub async fn start(
    config: &Config,
    store: Arc<dyn Store>,
    authority: Option<Bound>,
) -> Result<Running, StartError> {
    let http = crate::http_client::http_client()?;
    crate::telemetry::install(&config.telemetry.export());
    // Without migrate_on_start the schema was checked by the caller and is not touched here.
    let migrate = config.database.migrate_on_start;
    let audit_store = if migrate {
        AuditStore::connect(&config.audit.url).await
    } else {
        AuditStore::open(&config.audit.url).await
    }
    .map_err(|source| StartError::Audit {
        url: crate::config::redact_url(&config.audit.url),
        source,
    })?;
    let audit = AuditLog::start_with(
        audit_store.clone(),
        AuditSettings {
            batch_max: config.audit.batch_max,
            commit_timeout: Duration::from_millis(config.audit.commit_timeout_ms),
            commit_delay: Duration::from_millis(config.audit.commit_delay_ms),
            best_effort_per_sec: config.audit.best_effort_per_sec,
        },
    );
    let hasher = SubjectHasher::new(config.audit.hmac_secret.as_bytes()).map_err(|source| {
        StartError::Audit {
            url: crate::config::redact_url(&config.audit.url),
            source,
        }
    })?;
    let purposes = Arc::new(PurposeRegistry::from_file(&config.purposes.file)?);
    let purpose_db = if migrate {
        PurposeDb::open(audit_store.pool().clone())
            .await
            .map_err(|e| StartError::Audit {
                url: crate::config::redact_url(&config.audit.url),
                source: AuditError::Store(e),
            })?
    } else {
        PurposeDb::attach(audit_store.pool().clone())
    };
    if let Ok(rows) = purpose_db.load().await {
        if let Err(e) = purposes.replace_db(rows) {
            tracing::error!(error = %e, "purposes table invalid; only the file's purposes apply");
        }
    }
    crate::provider::purpose::spawn_reloader(purposes.clone(), Some(purpose_db));
    let state_store = crate::state::open(&config.state)?;
    crate::state::log_startup(state_store.as_ref()).await;
    let replay = Arc::new(ReplayMemory::from_config(config, state_store.clone()));
    let modi = Arc::new(ModiShared::from_config(config, http.clone(), replay)?);
    let fruizioni_audit = audit.clone();
    let shutdown_audit = audit.clone();
    let signs = [&config.eservices.anagrafe, &config.eservices.tributi]
        .iter()
        .any(|e| e.modi.sign_responses);
    let signing = signs.then(|| modi.clone());
    let state = PublicState::new(
        config,
        store.clone(),
        http,
        audit.clone(),
        hasher,
        purposes,
        modi,
        state_store.clone(),
    )?;
    let jwks = state.anagrafe.voucher.jwks.clone();
    let health = state.health.clone();
    let mut readiness = crate::health::Readiness::standard(audit, store, jwks.clone(), signing);
    readiness.push(crate::health::Check::state(state_store.clone()));
    let readiness = web::Data::new(readiness);
    let shutdown = config.shutdown_timeout();
    let public = bind_public(
        config.server.public_listen,
        config.server.workers,
        shutdown,
        state,
    )?;
    // Built after the public listener is bound: a fruizione aimed at the gateway itself (dev)
    // follows it to the port really bound.
    let fruizioni = Fruizioni::from_config(
        config,
        Some(public.addr),
        Arc::new(SystemClock),
        fruizioni_audit,
    )?;
    let internal_state = InternalState {
        health,
        fruizioni: web::Data::new(fruizioni),
        api_keys: web::Data::new(ApiKeys::from_config(&config.internal.api_keys)?),
        readiness: readiness.clone(),
        state: web::Data::from(state_store),
    };
    let tls = match &config.server.internal_tls {
        Some(tls) => Some(crate::tls::internal_server_config(tls)?),
        None => None,
    };
    if config.internal_plaintext_exposed() {
        tracing::warn!(
            internal = %config.server.internal_listen,
            "the internal listener serves clear text beyond loopback \
             (server.internal_allow_plaintext_non_loopback = true): API keys and fruizioni \
             data cross the network unencrypted"
        );
    }
    let internal = bind_internal(
        config.server.internal_listen,
        config.server.workers,
        shutdown,
        internal_state,
        tls,
    )?;
    let mut running = Running::spawn(public, internal, authority);
    running.jwks = Some(jwks);
    running.readiness = Some(readiness);
    running.audit = Some(shutdown_audit);
    running.shutdown_timeout = shutdown;
    running.shutdown_delay = config.shutdown_delay();
    Ok(running)
}
