//! modi-in: what the e-service requires of a request (`Digest` + `Agid-JWT-Signature`,
//! `Agid-JWT-TrackingEvidence`), checked against the voucher already accepted, then the jtis
//! recorded against replay; a refusal is problem+json with the status the failure deserves.

use super::{ModiStage, RequestChecks};
use crate::config::{AuditPattern, RequestIntegrity};
use crate::modi::{
    self, KeySource, KidResolver, ModiError, ReplayScope, SignatureExpectations, VerifiedSignature,
    AGID_JWT_SIGNATURE, AGID_JWT_TRACKING_EVIDENCE,
};
use crate::pdnd::voucher::Voucher;
use crate::problem::Problem;
use crate::provider::audit::TrackingInfo;
use crate::provider::{request_id, voucher};
use actix_web::body::{BodyStream, BoxBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, HttpResponse};
use jsonwebtoken::jwk::Jwk;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body read for verification: the handlers' own limit.
pub const MAX_REQUEST_BODY: usize = eservices::MAX_BODY_BYTES;

/// The one key fetched for a token, handed to the synchronous verifier.
struct Prefetched {
    kid: Option<String>,
    jwk: Option<Arc<Jwk>>,
}

impl KidResolver for Prefetched {
    fn resolve(&self, kid: &str) -> Result<Option<Jwk>, ModiError> {
        match (&self.kid, &self.jwk) {
            (Some(k), Some(jwk)) if k == kid => Ok(Some(Jwk::clone(jwk))),
            _ => Ok(None),
        }
    }
}

/// Why a request was refused by the ModI checks.
#[derive(Debug, thiserror::Error)]
pub enum ModiRefusal {
    #[error("Agid-JWT-Signature: {0}")]
    Signature(ModiError),
    #[error("Agid-JWT-Signature: iss {found:?} is not the voucher's client id {expected}")]
    SignatureIssuer {
        expected: String,
        found: Option<String>,
    },
    #[error("Agid-JWT-TrackingEvidence: {0}")]
    Tracking(ModiError),
    #[error("the request body exceeds {MAX_REQUEST_BODY} bytes")]
    BodyTooLarge,
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u128),
    #[error("no validated voucher reached the ModI checks")]
    NoVoucher,
}

impl ModiRefusal {
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ModiRefusal::Signature(e) | ModiRefusal::Tracking(e) => e.http_status(),
            ModiRefusal::SignatureIssuer { .. } => 401,
            ModiRefusal::BodyTooLarge => 413,
            ModiRefusal::BodyUnreadable => 400,
            ModiRefusal::BodyTimeout(_) => 408,
            ModiRefusal::NoVoucher => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn response(&self, request_id: Option<&str>) -> HttpResponse {
        let status = self.status();
        let mut problem = match status {
            StatusCode::INTERNAL_SERVER_ERROR => Problem::internal(),
            StatusCode::SERVICE_UNAVAILABLE => Problem::unavailable(self.unavailable_detail()),
            _ => Problem::new(status).with_detail(self.to_string()),
        };
        if let Some(id) = request_id {
            problem = problem.with_instance(id);
        }
        let mut builder = problem.response_builder();
        if let Some(secs) = self.retry_after_secs() {
            builder.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        if matches!(self, ModiRefusal::BodyTimeout(_)) {
            // The rest of the body may still be on its way: this connection carries no
            // further request.
            builder.force_close();
        }
        problem.into_response_with(builder)
    }

    /// What a 503 tells the caller: which check could not run, not why (the log says why).
    fn unavailable_detail(&self) -> &'static str {
        match self {
            ModiRefusal::Signature(
                ModiError::ReplayStoreUnavailable(_) | ModiError::ReplayCacheFull,
            )
            | ModiRefusal::Tracking(
                ModiError::ReplayStoreUnavailable(_) | ModiError::ReplayCacheFull,
            ) => "The gateway cannot check this request for replay right now; retry later.",
            _ => "The PDND keys needed to check this request are unavailable; retry later.",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ModiRefusal::Signature(e) | ModiRefusal::Tracking(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}

/// The request's headers as (name, value) pairs; values that are not visible ASCII are left
/// out (no ModI header can be such a value, so a signed one would then be reported missing).
fn header_pairs(req: &ServiceRequest) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Reads the request body (bounded in size and in time), leaving it in the request for the
/// handler. A client that sends its headers and then trickles (or stalls) the body gets 408
/// after `deadline` instead of holding the connection and its task for as long as it likes.
async fn take_body(req: &mut ServiceRequest, deadline: Duration) -> Result<Bytes, ModiRefusal> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_REQUEST_BODY) {
        return Err(ModiRefusal::BodyTooLarge);
    }
    let payload = req.take_payload();
    let read = actix_web::body::to_bytes_limited(BodyStream::new(payload), MAX_REQUEST_BODY);
    let body = match tokio::time::timeout(deadline, read).await {
        Err(_) => return Err(ModiRefusal::BodyTimeout(deadline.as_millis())),
        Ok(Err(_)) => return Err(ModiRefusal::BodyTooLarge),
        Ok(Ok(Err(_))) => return Err(ModiRefusal::BodyUnreadable),
        Ok(Ok(Ok(body))) => body,
    };
    req.set_payload(Payload::from(body.clone()));
    Ok(body)
}

impl ModiStage {
    fn expectations(&self, audience: &str, now: i64) -> SignatureExpectations {
        SignatureExpectations {
            audience: audience.to_owned(),
            leeway_secs: self.shared.leeway_secs,
            now,
            max_lifetime_secs: Some(self.shared.max_peer_lifetime_secs),
        }
    }

    /// Runs `check` against each configured audience until one is not a wrong-audience
    /// failure (an e-service usually has one audience, so this is one call).
    fn for_audiences<T>(
        &self,
        now: i64,
        check: impl Fn(&SignatureExpectations) -> Result<T, ModiError>,
    ) -> Result<T, ModiError> {
        let mut last = Err(ModiError::MissingClaim("aud"));
        for audience in &self.audiences {
            last = check(&self.expectations(audience, now));
            if !matches!(last, Err(ModiError::WrongAudience { .. })) {
                return last;
            }
        }
        last
    }

    /// The key named by the token's `kid`, fetched before the synchronous verification.
    async fn prefetch(&self, jws: &str) -> Result<Prefetched, ModiError> {
        let kid = modi::unverified_kid(jws)?;
        let jwk = match (&kid, &self.shared.keys) {
            (Some(kid), Some(keys)) => keys.lookup(kid).await?,
            (Some(_), None) => {
                return Err(ModiError::KeyUnavailable(
                    "pdnd.keys_url is not configured".into(),
                ))
            }
            (None, _) => None,
        };
        Ok(Prefetched { kid, jwk })
    }

    async fn check_signature(
        &self,
        req: &mut ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<VerifiedSignature>, ModiRefusal> {
        let pattern = self.patterns.request_integrity;
        if pattern == RequestIntegrity::None {
            return Ok(None);
        }
        let body = take_body(req, self.shared.body_read_timeout).await?;
        let owned = header_pairs(req);
        let headers: Vec<(&str, &str)> = owned
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let jws = req
            .headers()
            .get(AGID_JWT_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let verified = match pattern {
            RequestIntegrity::IntegrityRest01 => {
                let trust = self.shared.trust.as_ref().ok_or_else(|| {
                    ModiRefusal::Signature(ModiError::KeyMaterial("no trust store loaded".into()))
                })?;
                self.for_audiences(now, |expect| {
                    modi::verify_request(&headers, &body, &KeySource::X5c(trust), expect)
                })
            }
            RequestIntegrity::IntegrityRest02 => {
                let resolver = match self.prefetch(&jws).await {
                    Ok(resolver) => resolver,
                    // No header at all: let the verifier say so.
                    Err(ModiError::Malformed { .. }) if jws.is_empty() => Prefetched {
                        kid: None,
                        jwk: None,
                    },
                    Err(e) => return Err(ModiRefusal::Signature(e)),
                };
                self.for_audiences(now, |expect| {
                    modi::verify_request(&headers, &body, &KeySource::Kid(&resolver), expect)
                })
            }
            RequestIntegrity::None => return Ok(None),
        }
        .map_err(ModiRefusal::Signature)?;
        if pattern == RequestIntegrity::IntegrityRest02
            && verified.iss.as_deref() != Some(voucher.client_id())
        {
            return Err(ModiRefusal::SignatureIssuer {
                expected: voucher.client_id().to_owned(),
                found: verified.iss.clone(),
            });
        }
        Ok(Some(verified))
    }

    async fn check_tracking(
        &self,
        req: &ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<modi::TrackingEvidence>, ModiRefusal> {
        let pattern = self.patterns.audit;
        if pattern == AuditPattern::None {
            return Ok(None);
        }
        let jws = req
            .headers()
            .get(AGID_JWT_TRACKING_EVIDENCE)
            .ok_or_else(|| {
                ModiRefusal::Tracking(ModiError::MissingHeader(AGID_JWT_TRACKING_EVIDENCE.into()))
            })?
            .to_str()
            .map_err(|_| {
                ModiRefusal::Tracking(ModiError::Malformed {
                    what: "header",
                    reason: "not visible ASCII".into(),
                })
            })?
            .trim()
            .to_owned();
        let resolver = self.prefetch(&jws).await.map_err(ModiRefusal::Tracking)?;
        let evidence = self
            .for_audiences(now, |expect| {
                modi::verify_tracking_evidence(&jws, &resolver, expect)
            })
            .map_err(ModiRefusal::Tracking)?;
        modi::check_voucher_identity(&evidence, voucher.client_id(), voucher.purpose_id())
            .map_err(ModiRefusal::Tracking)?;
        if pattern == AuditPattern::AuditRest02 {
            let bound = voucher
                .digest()
                .filter(|d| d.alg == "SHA256")
                .map(|d| d.value.as_str());
            modi::check_voucher_binding(&jws, bound).map_err(ModiRefusal::Tracking)?;
        }
        Ok(Some(evidence))
    }

    /// Every check, then the replay memory: a request refused for another reason does not
    /// consume its jtis.
    async fn check(
        &self,
        req: &mut ServiceRequest,
        voucher: &Voucher,
        now: i64,
    ) -> Result<Option<TrackingInfo>, ModiRefusal> {
        let signature = self.check_signature(req, voucher, now).await?;
        let evidence = self.check_tracking(req, voucher, now).await?;
        let replay = self.shared.replay.as_ref();
        // Counted against the voucher's client: the identity PDND vouches for, which every
        // request here has, whichever key signed the ModI tokens.
        let client = Some(voucher.client_id());
        if let Some(s) = &signature {
            replay
                .store_jti(ReplayScope::Modi, client, &s.jti, s.replay_expires_at, now)
                .await
                .map_err(ModiRefusal::Signature)?;
        }
        if let Some(e) = &evidence {
            replay
                .store_jti(ReplayScope::Modi, client, &e.jti, e.replay_expires_at, now)
                .await
                .map_err(ModiRefusal::Tracking)?;
        }
        Ok(evidence.map(|e| TrackingInfo {
            user_id: Some(e.user_id),
            user_location: Some(e.user_location),
            loa: Some(e.loa),
        }))
    }
}

impl RequestChecks {
    pub async fn run(
        self: Arc<Self>,
        mut req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let stage = &self.0;
        if stage.patterns.request_integrity == RequestIntegrity::None
            && stage.patterns.audit == AuditPattern::None
        {
            return next.call(req).await;
        }
        let request_id = request_id::of(&req);
        let result = match voucher::of(&req) {
            Some(voucher) => stage.check(&mut req, &voucher, voucher::now()).await,
            None => Err(ModiRefusal::NoVoucher),
        };
        match result {
            Ok(tracking) => {
                if let Some(tracking) = tracking {
                    req.extensions_mut().insert(tracking);
                }
                next.call(req).await
            }
            Err(refusal) => {
                if refusal.status().is_server_error() {
                    tracing::error!(request_id, eservice = stage.eservice.id(), reason = %refusal, "ModI checks could not run");
                } else {
                    tracing::info!(request_id, eservice = stage.eservice.id(), reason = %refusal, "ModI refused the request");
                }
                Ok(req.into_response(refusal.response(request_id.as_deref())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_statuses() {
        assert_eq!(
            ModiRefusal::Signature(ModiError::DigestMismatch).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ModiRefusal::Tracking(ModiError::TrackingEvidenceNotBound).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ModiRefusal::SignatureIssuer {
                expected: "a".into(),
                found: None
            }
            .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ModiRefusal::Signature(ModiError::KeyUnavailable("down".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ModiRefusal::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ModiRefusal::BodyTimeout(5000).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            ModiRefusal::Signature(ModiError::ReplayQuotaExceeded {
                retry_after_secs: 9
            })
            .status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn load_refusals_say_when_to_retry() {
        let header = |refusal: ModiRefusal| {
            let resp = refusal.response(Some("req-1"));
            resp.headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let throttled = ModiRefusal::Tracking(ModiError::KeyLookupsThrottled {
            retry_after_secs: 4,
        });
        assert_eq!(header(throttled), Some("4".into()));
        let quota = ModiRefusal::Signature(ModiError::ReplayQuotaExceeded {
            retry_after_secs: 30,
        });
        assert_eq!(header(quota), Some("30".into()));
        assert_eq!(
            header(ModiRefusal::Signature(ModiError::BadSignature)),
            None
        );
        assert_eq!(
            header(ModiRefusal::Signature(ModiError::KeyUnavailable(
                "down".into()
            ))),
            None
        );
    }
}
