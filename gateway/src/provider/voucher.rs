//! The first stage of the inbound pipeline: the PDND voucher.
//!
//! This is the HTTP adapter around [`crate::pdnd::voucher::validate`]: it takes the bearer
//! credential from the request, gets the keys held by the [`JwksCache`] (never waiting on PDND;
//! an unknown kid asks the cache for a refresh and is refused now), validates against the
//! e-service's [`VoucherPolicy`] and `now`, and either puts the validated [`Voucher`] into the
//! request extensions for the next stages or answers 401 (503 only when no key set was ever
//! loaded).
//! The caller never learns why a voucher failed; the log does, by jti or reason only.

use super::jwks::JwksCache;
use super::request_id;
use crate::pdnd::voucher::{validate, Voucher, VoucherError, VoucherPolicy};
use crate::problem::{self, BearerFailure};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use eservices::Eservice;
use std::sync::Arc;

/// What one e-service's voucher stage needs.
pub struct VoucherStage {
    pub eservice: Eservice,
    pub policy: VoucherPolicy,
    pub jwks: Arc<JwksCache>,
}

/// The bearer token of a request, or how the header is wrong.
pub fn bearer_token(req: &ServiceRequest) -> Result<&str, BearerFailure> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Err(BearerFailure::Missing);
    };
    let value = value.to_str().map_err(|_| BearerFailure::InvalidRequest)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerFailure::InvalidRequest)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(BearerFailure::InvalidRequest);
    }
    Ok(token)
}

/// The current time in unix seconds: the only clock read of the voucher check.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl VoucherStage {
    /// Validates a token with the keys held; an unknown kid asks for a background refresh
    /// (rate-limited by the cache) and is refused without waiting for it.
    pub async fn check(&self, token: &str, now: i64) -> Result<Voucher, StageFailure> {
        let keys = self.jwks.keys().await.map_err(StageFailure::Keys)?;
        let result = validate(token, &keys, &self.policy, now);
        if let Err(VoucherError::UnknownKid(_)) = &result {
            self.jwks.request_refresh();
        }
        result.map_err(StageFailure::Voucher)
    }

    /// The middleware body: on success the voucher is in the extensions and the request goes on.
    pub async fn run(
        self: Arc<Self>,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let request_id = request_id::of(&req);
        let token = match bearer_token(&req) {
            Ok(token) => token.to_owned(),
            Err(failure) => {
                tracing::info!(request_id, eservice = self.eservice.id(), reason = ?failure, "voucher refused: no usable Authorization header");
                let resp = problem::unauthorized(failure, request_id.as_deref());
                return Ok(req.into_response(resp));
            }
        };
        match self.check(&token, now()).await {
            Ok(voucher) => {
                tracing::debug!(
                    request_id,
                    jti = voucher.jti(),
                    purpose_id = voucher.purpose_id(),
                    "voucher accepted"
                );
                req.extensions_mut().insert(voucher);
                next.call(req).await
            }
            Err(failure) => {
                let resp = failure.response(request_id.as_deref(), self.eservice);
                Ok(req.into_response(resp))
            }
        }
    }
}

/// Why the stage refused a request.
#[derive(Debug)]
pub enum StageFailure {
    /// The voucher is not valid (401).
    Voucher(VoucherError),
    /// No key set could be obtained (503: we cannot tell valid from invalid).
    Keys(super::jwks::JwksError),
}

impl StageFailure {
    fn response(&self, request_id: Option<&str>, eservice: Eservice) -> HttpResponse {
        match self {
            StageFailure::Voucher(e) => {
                tracing::info!(request_id, eservice = eservice.id(), reason = %e, "voucher refused");
                problem::unauthorized(BearerFailure::InvalidToken, request_id)
            }
            StageFailure::Keys(e) => {
                tracing::error!(request_id, error = %e, "voucher keys unavailable");
                problem::unavailable(
                    "The PDND keys needed to check vouchers are unavailable; retry later.",
                    request_id,
                )
            }
        }
    }
}

/// The validated voucher of a request, for later stages and handlers.
pub fn of(req: &impl HttpMessage) -> Option<Voucher> {
    req.extensions().get::<Voucher>().cloned()
}

impl super::Stage for VoucherStage {
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}
