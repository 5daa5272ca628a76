//! The first stage of the inbound pipeline: the PDND voucher.
//!
//! This is the HTTP adapter around [`crate::pdnd::voucher::validate`]: it takes the bearer
//! credential from the request, gets the keys from the [`JwksCache`] (refetching once on an
//! unknown kid), validates against the e-service's [`VoucherPolicy`] and `now`, and either puts
//! the validated [`Voucher`] into the request extensions for the next stages or answers 401.
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
    parse_bearer(value.as_bytes())
}

/// The bearer token in the raw bytes of an `Authorization` header value (RFC 6750 section
/// 2.1: `Bearer <token>`, scheme case-insensitive, one token), or why the value is not one.
/// Bytes that are not visible ASCII or tab make the value unreadable, as for `HeaderValue::to_str`.
pub fn parse_bearer(value: &[u8]) -> Result<&str, BearerFailure> {
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(BearerFailure::InvalidRequest);
    }
    let value = std::str::from_utf8(value).map_err(|_| BearerFailure::InvalidRequest)?;
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
    /// Validates a token, refetching the JWKS once when its kid is unknown.
    pub async fn check(&self, token: &str, now: i64) -> Result<Voucher, StageFailure> {
        let keys = self.jwks.keys().await.map_err(StageFailure::Keys)?;
        match validate(token, &keys, &self.policy, now) {
            Err(VoucherError::UnknownKid(_)) => {
                let keys = self
                    .jwks
                    .refresh_for_unknown_kid()
                    .await
                    .map_err(StageFailure::Keys)?;
                validate(token, &keys, &self.policy, now).map_err(StageFailure::Voucher)
            }
            other => other.map_err(StageFailure::Voucher),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_values() {
        assert_eq!(parse_bearer(b"Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(parse_bearer(b"bEaReR   abc \t"), Ok("abc"));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer   ",
            b"Basic dXNlcjpwYXNz",
            b"Bearer abc def",
            b"Bearer abc\xc3\xa8",
            b"Bearer abc\x01",
        ] {
            assert_eq!(
                parse_bearer(bad),
                Err(BearerFailure::InvalidRequest),
                "{bad:?}"
            );
        }
    }
}
