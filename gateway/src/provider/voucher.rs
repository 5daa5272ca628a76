//! The first stage of the inbound pipeline: the PDND voucher.
//!
//! This is the HTTP adapter around [`crate::pdnd::voucher::validate`]: it takes the bearer
//! credential from the request, gets the keys held by the [`JwksCache`] (never waiting on PDND;
//! an unknown kid asks the cache for a refresh and is refused now), validates against the
//! e-service's voucher policy and `now` (through [`VerifiedVouchers`], which answers a voucher
//! seen before without decoding it again), and either puts the validated [`Voucher`] into the
//! request extensions for the next stages or answers 401 (503 only when no key set was ever
//! loaded).
//! The caller never learns why a voucher failed; the log does, by jti or reason only.
//!
//! Two schemes are accepted. `Bearer <voucher>` takes an unbound voucher only: one with
//! `cnf.jkt` is DPoP-bound, and accepting it as Bearer would make a stolen copy as good as the
//! original. `DPoP <voucher>` takes a bound voucher with a `DPoP` proof of this very request,
//! checked by [`super::dpop::DpopCheck`] after the voucher itself; its refusals carry a
//! `WWW-Authenticate: DPoP` challenge (RFC 9449 section 7.1).

use super::dpop::{DpopCheck, DpopRefusal};
use super::request_id;
use crate::pdnd::verified::VerifiedVouchers;
use crate::pdnd::voucher::{Voucher, VoucherError};
use crate::pdnd_client::jwks::JwksCache;
use crate::problem::{self, BearerFailure, DpopFailure};
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
    /// The e-service's voucher policy, with the vouchers already validated under it: a
    /// client's repeated voucher pays the full check once.
    pub vouchers: VerifiedVouchers,
    pub jwks: Arc<JwksCache>,
    /// How `Authorization: DPoP` requests prove possession of the voucher's key.
    pub dpop: DpopCheck,
}

/// The credential of a request: a voucher and the scheme it came under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <voucher>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <voucher>`, to be accompanied by a `DPoP` proof.
    Dpop(&'a str),
}

/// The credential of a request, or how the header is wrong. Scheme names are
/// case-insensitive (RFC 9110 section 11.1).
pub fn credential(req: &ServiceRequest) -> Result<Credential<'_>, BearerFailure> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Err(BearerFailure::Missing);
    };
    parse_credential(value.as_bytes())
}

/// The credential in the raw bytes of an `Authorization` header value (`Bearer <token>`,
/// RFC 6750 section 2.1, or `DPoP <token>`, RFC 9449 section 7.1; scheme case-insensitive, one
/// token), or why the value is not one. Bytes that are not visible ASCII or tab make the value
/// unreadable, as for `HeaderValue::to_str`.
pub fn parse_credential(value: &[u8]) -> Result<Credential<'_>, BearerFailure> {
    // Every byte is looked at, without an early exit, so that the loop is vectorised: a
    // voucher is about 1 KiB and arrives on every request.
    let readable = value.iter().fold(true, |ok, &b| {
        ok & ((b == b'\t') | (0x20..0x7f).contains(&b))
    });
    if !readable {
        return Err(BearerFailure::InvalidRequest);
    }
    let value = std::str::from_utf8(value).map_err(|_| BearerFailure::InvalidRequest)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerFailure::InvalidRequest)?;
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(BearerFailure::InvalidRequest);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credential::Bearer(token))
    } else if scheme.eq_ignore_ascii_case(crate::pdnd::dpop::DPOP_SCHEME) {
        Ok(Credential::Dpop(token))
    } else {
        Err(BearerFailure::InvalidRequest)
    }
}

/// The bearer token in an `Authorization` header value (a DPoP credential is not one).
pub fn parse_bearer(value: &[u8]) -> Result<&str, BearerFailure> {
    match parse_credential(value)? {
        Credential::Bearer(token) => Ok(token),
        Credential::Dpop(_) => Err(BearerFailure::InvalidRequest),
    }
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
        let result = self.vouchers.validate(token, &keys, now);
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
        let (token, dpop) = match credential(&req) {
            Ok(Credential::Bearer(token)) => (token.to_owned(), false),
            Ok(Credential::Dpop(token)) => (token.to_owned(), true),
            Err(failure) => {
                tracing::info!(request_id, eservice = self.eservice.id(), reason = ?failure, "voucher refused: no usable Authorization header");
                let resp = problem::unauthorized(failure, request_id.as_deref());
                return Ok(req.into_response(resp));
            }
        };
        let now = now();
        let voucher = match self.check(&token, now).await {
            Ok(voucher) => voucher,
            Err(failure) => {
                let resp = failure.response(request_id.as_deref(), self.eservice, dpop);
                return Ok(req.into_response(resp));
            }
        };
        if dpop {
            if let Err(refusal) = self.dpop.check(&req, &token, &voucher, now).await {
                let resp = dpop_refusal(&refusal, request_id.as_deref(), self.eservice);
                return Ok(req.into_response(resp));
            }
        } else if voucher.confirmation_jkt().is_some() {
            tracing::info!(
                request_id,
                eservice = self.eservice.id(),
                jti = voucher.jti(),
                "voucher refused: DPoP-bound voucher presented as Bearer"
            );
            let resp = problem::unauthorized(BearerFailure::InvalidToken, request_id.as_deref());
            return Ok(req.into_response(resp));
        }
        tracing::debug!(
            request_id,
            jti = voucher.jti(),
            purpose_id = voucher.purpose_id(),
            dpop,
            "voucher accepted"
        );
        req.extensions_mut().insert(voucher);
        next.call(req).await
    }
}

/// The answer to a refused DPoP request: 401 with the DPoP challenge, or 503 when the replay
/// memory cannot take the proof.
fn dpop_refusal(
    refusal: &DpopRefusal,
    request_id: Option<&str>,
    eservice: Eservice,
) -> HttpResponse {
    match refusal {
        DpopRefusal::ReplayUnavailable(reason) => {
            tracing::error!(
                request_id,
                eservice = eservice.id(),
                reason,
                "DPoP proof cannot be checked for replay"
            );
            problem::unavailable(
                "The gateway cannot check DPoP proofs for replay right now; retry later.",
                request_id,
            )
        }
        refusal => {
            tracing::info!(request_id, eservice = eservice.id(), reason = %refusal, "DPoP request refused");
            let failure = if refusal.is_token_fault() {
                DpopFailure::InvalidToken
            } else {
                DpopFailure::InvalidProof
            };
            problem::unauthorized_dpop(failure, request_id)
        }
    }
}

/// Why the stage refused a request.
#[derive(Debug)]
pub enum StageFailure {
    /// The voucher is not valid (401).
    Voucher(VoucherError),
    /// No key set could be obtained (503: we cannot tell valid from invalid).
    Keys(crate::pdnd_client::jwks::JwksError),
}

impl StageFailure {
    /// The answer; `dpop` when the voucher came under the DPoP scheme, whose challenge differs.
    fn response(&self, request_id: Option<&str>, eservice: Eservice, dpop: bool) -> HttpResponse {
        match self {
            StageFailure::Voucher(e) => {
                tracing::info!(request_id, eservice = eservice.id(), reason = %e, "voucher refused");
                if dpop {
                    problem::unauthorized_dpop(DpopFailure::InvalidToken, request_id)
                } else {
                    problem::unauthorized(BearerFailure::InvalidToken, request_id)
                }
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
    const NAME: &'static str = "voucher";
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
        assert_eq!(parse_credential(b"dpop abc"), Ok(Credential::Dpop("abc")));
        assert_eq!(
            parse_bearer(b"DPoP abc"),
            Err(BearerFailure::InvalidRequest)
        );
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

    /// Each byte outside tab and 0x20..=0x7e makes the value unreadable, wherever it stands in
    /// a voucher-sized value (the check has no early exit, so every position is looked at).
    #[test]
    fn every_unreadable_byte_is_refused_at_any_position() {
        let token = "a".repeat(1024);
        for bad in [0x00u8, 0x08, 0x0a, 0x1f, 0x7f, 0x80, 0xc3, 0xff] {
            for at in [0, 1, 17, 512, 1023] {
                let mut value = format!("Bearer {token}").into_bytes();
                value[7 + at] = bad;
                assert_eq!(
                    parse_bearer(&value),
                    Err(BearerFailure::InvalidRequest),
                    "byte {bad:#04x} at {at}"
                );
            }
        }
        for good in [b' ', b'!', b'~'] {
            let value = [b"Bearer a".as_slice(), &[good], b"b"].concat();
            let parsed = parse_bearer(&value);
            if good == b' ' {
                assert_eq!(parsed, Err(BearerFailure::InvalidRequest));
            } else {
                assert_eq!(parsed.map(str::len), Ok(3), "{good:#04x}");
            }
        }
    }
}
