//! The HTTP face of the development PDND authorisation server.
//!
//! Same paths and answers as the real one: `POST /token.oauth2` (form fields),
//! `GET /.well-known/jwks.json`, and `GET /keys/{kid}` (a client's registered key, which ModI
//! INTEGRITY_REST_02 needs). Like the PDND API, `/keys/{kid}` answers only a caller holding a
//! valid M2M voucher of this authority (an API Interop client's, obtained without purposeId);
//! anything else gets 401 problem+json. A refused request gets PDND's opaque 400 `015-0008` body, exactly
//! like production; unlike production, the log line says which rule failed and why.
//!
//! It also counts token requests ([`TokenStats`], `GET /stats`): the proxy's promise of one
//! request per purpose at a time is checked against these numbers, and the gateway's bounds on
//! key lookups against the count of `/keys/{kid}` requests.

use crate::pdnd::authority::{pdnd_error_body, Authority};
use crate::pdnd::client_assertion::TokenRequest;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::atomic::{AtomicU64, Ordering};

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

fn refused(correlation_id: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header((header::CONTENT_TYPE, crate::problem::PROBLEM_JSON))
        .json(pdnd_error_body(correlation_id))
}

async fn token(
    authority: web::Data<Authority>,
    stats: Option<web::Data<TokenStats>>,
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
    match authority.issue(&form, now) {
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
/// `web::Data<TokenStats>`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/token.oauth2", web::post().to(token))
        .route("/stats", web::get().to(stats))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/keys/{kid}", web::get().to(client_key));
}
