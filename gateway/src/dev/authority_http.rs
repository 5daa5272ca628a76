//! The HTTP face of the development PDND authorisation server.
//!
//! Same paths and answers as the real one: `POST /token.oauth2` (form fields),
//! `GET /.well-known/jwks.json`, and `GET /keys/{kid}` (a client's registered key, which ModI
//! INTEGRITY_REST_02 needs). Like the PDND API, `/keys/{kid}` answers only a caller holding a
//! valid M2M voucher of this authority (an API Interop client's, obtained without purposeId);
//! anything else gets 401 problem+json. A refused request gets PDND's opaque 400 `015-0008` body, exactly
//! like production; unlike production, the log line says which rule failed and why.
//!
//! A token request with a `DPoP` header gets a DPoP-bound voucher when the proof is valid for
//! `POST` to [`TokenEndpoint::url`] (the address the authority really bound, never the request's
//! `Host`) and its `jti` is new; otherwise PDND's 400. The jti is remembered as soon as the proof
//! verifies (PDND checks its cache later, after the assertion), so a proof is single use even
//! when the rest of the request fails: a client signs a new one for each request anyway.
//!
//! It also counts token requests ([`TokenStats`], `GET /stats`): the proxy's promise of one
//! request per purpose at a time is checked against these numbers, and the gateway's bounds on
//! key lookups against the count of `/keys/{kid}` requests.

use crate::modi::{InMemoryReplayGuard, ReplayGuard, ReplayScope};
use crate::pdnd::authority::{pdnd_error_body, AssertionRejection, Authority, Rejection};
use crate::pdnd::client_assertion::TokenRequest;
use crate::pdnd::dpop::{VerifiedProof, DPOP_HEADER};
use crate::server::Bound;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Binds the development PDND authority; `stats` counts its token requests.
pub fn bind(
    addr: SocketAddr,
    authority: Authority,
    stats: web::Data<TokenStats>,
    tracing: web::Data<super::tracing_service::TracingService>,
) -> std::io::Result<Bound> {
    // Bound first, so that the token endpoint knows the URL DPoP proofs must name.
    let listener = std::net::TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let endpoint = web::Data::new(TokenEndpoint::new(format!("http://{addr}/token.oauth2")));
    let authority = web::Data::new(authority);
    let http = HttpServer::new(move || {
        App::new()
            .app_data(authority.clone())
            .app_data(stats.clone())
            .app_data(endpoint.clone())
            .configure(routes)
            .app_data(tracing.clone())
            .configure(super::tracing_service::routes)
    })
    .workers(1)
    // The gateway's own shutdown (server::Signals) decides when the authority stops.
    .disable_signals()
    .listen(listener)?;
    Ok(Bound {
        addr,
        server: http.run(),
    })
}

/// Token requests seen by the development authority.
#[derive(Debug, Default)]
pub struct TokenStats {
    requests: AtomicU64,
    issued: AtomicU64,
    key_requests: AtomicU64,
}

impl TokenStats {
    /// Every `POST /token.oauth2`, whatever the outcome.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Those answered with a voucher.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Every `GET /keys/{kid}`, whatever the outcome.
    pub fn key_requests(&self) -> u64 {
        self.key_requests.load(Ordering::SeqCst)
    }
}

async fn stats(stats: Option<web::Data<TokenStats>>) -> HttpResponse {
    let (requests, issued, keys) =
        stats.map_or((0, 0, 0), |s| (s.requests(), s.issued(), s.key_requests()));
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "tokenRequests": requests, "vouchersIssued": issued, "keyRequests": keys
        }))
}

/// Proofs remembered at once; beyond it a proof is refused rather than a jti forgotten.
const PROOF_MEMORY: usize = 100_000;

/// The token endpoint's own URL (the `htu` proofs must name) and the memory of proof `jti`s.
pub struct TokenEndpoint {
    pub url: String,
    proofs: InMemoryReplayGuard,
}

impl TokenEndpoint {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            proofs: InMemoryReplayGuard::new(PROOF_MEMORY),
        }
    }
}

/// The request's DPoP proof, checked: `Ok(None)` without a `DPoP` header.
fn dpop_proof(
    req: &HttpRequest,
    authority: &Authority,
    endpoint: Option<&TokenEndpoint>,
    now: i64,
) -> Result<Option<VerifiedProof>, Rejection> {
    let invalid = |reason: &str| {
        Rejection::from(AssertionRejection::DpopProofInvalid(
            crate::pdnd::dpop::DpopError::Malformed(reason.to_owned()),
        ))
    };
    let mut headers = req.headers().get_all(DPOP_HEADER);
    let Some(first) = headers.next() else {
        return Ok(None);
    };
    if headers.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let proof = first
        .to_str()
        .map_err(|_| invalid("the DPoP header is not visible ASCII"))?;
    let endpoint = endpoint.ok_or_else(|| invalid("this authority has no DPoP endpoint URL"))?;
    let verified = authority.check_dpop_proof(proof, &endpoint.url, now)?;
    endpoint
        .proofs
        .check_and_store_in(
            ReplayScope::DpopProof,
            verified.jti(),
            verified.replay_expires_at(),
            now,
        )
        .map_err(|_| {
            Rejection::from(AssertionRejection::DpopProofJtiAlreadyUsed(
                verified.jti().to_owned(),
            ))
        })?;
    Ok(Some(verified))
}

fn refused(correlation_id: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header((header::CONTENT_TYPE, crate::problem::PROBLEM_JSON))
        .json(pdnd_error_body(correlation_id))
}

async fn token(
    req: HttpRequest,
    authority: web::Data<Authority>,
    stats: Option<web::Data<TokenStats>>,
    endpoint: Option<web::Data<TokenEndpoint>>,
    form: Result<web::Form<TokenRequest>, actix_web::Error>,
) -> HttpResponse {
    if let Some(s) = &stats {
        s.requests.fetch_add(1, Ordering::SeqCst);
    }
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let form = match form {
        Ok(form) => form.into_inner(),
        Err(e) => {
            tracing::warn!(correlation_id, reason = %e, "token request refused: the form is not a PDND token request");
            return refused(&correlation_id);
        }
    };
    let now = chrono::Utc::now().timestamp();
    // PDND's step 1: the proof, before anything about the assertion.
    let proof = match dpop_proof(
        &req,
        &authority,
        endpoint.as_ref().map(|e| e.get_ref()),
        now,
    ) {
        Ok(proof) => proof,
        Err(rejection) => {
            tracing::warn!(correlation_id, client_id = form.client_id.as_deref().unwrap_or(""), reasons = %rejection, "token request refused");
            return refused(&correlation_id);
        }
    };
    match authority.issue_bound(&form, proof.as_ref(), now) {
        Ok(response) => {
            if let Some(s) = &stats {
                s.issued.fetch_add(1, Ordering::SeqCst);
            }
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
                .json(response)
        }
        Err(rejection) => {
            tracing::warn!(correlation_id, client_id = form.client_id.as_deref().unwrap_or(""), reasons = %rejection, "token request refused");
            refused(&correlation_id)
        }
    }
}

async fn jwks(authority: web::Data<Authority>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(authority.jwks())
}

/// The PDND API's refusal of a caller without a valid M2M voucher.
fn api_unauthorized(path: &str, error: Option<&str>) -> HttpResponse {
    let challenge = match error {
        Some(code) => format!("Bearer error=\"{code}\""),
        None => "Bearer".to_owned(),
    };
    let problem = crate::problem::Problem::new(actix_web::http::StatusCode::UNAUTHORIZED)
        .with_detail("The PDND API requires the voucher of an API Interop (M2M) client.")
        .with_instance(path);
    let mut builder = problem.response_builder();
    builder.insert_header((header::WWW_AUTHENTICATE, challenge));
    problem.into_response_with(builder)
}

async fn client_key(
    authority: web::Data<Authority>,
    stats: Option<web::Data<TokenStats>>,
    kid: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    if let Some(s) = &stats {
        s.key_requests.fetch_add(1, Ordering::SeqCst);
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")));
    let token = match bearer {
        None => return api_unauthorized(req.path(), None),
        Some(None) => return api_unauthorized(req.path(), Some("invalid_request")),
        Some(Some(token)) => token.trim(),
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(reason) = authority.verify_m2m_voucher(token, now) {
        tracing::warn!(%reason, path = req.path(), "PDND API call refused: not a valid M2M voucher");
        return api_unauthorized(req.path(), Some("invalid_token"));
    }
    match authority.client_key(&kid) {
        Some(jwk) => HttpResponse::Ok().json(jwk),
        None => crate::problem::Problem::not_found("No key with this kid is registered.")
            .with_instance(req.path())
            .into_response(),
    }
}

/// Registers the authority's routes; the app must hold `web::Data<Authority>` (and may hold
/// `web::Data<TokenStats>`, and `web::Data<TokenEndpoint>`, without which DPoP proofs are
/// refused).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/token.oauth2", web::post().to(token))
        .route("/stats", web::get().to(stats))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/keys/{kid}", web::get().to(client_key));
}
