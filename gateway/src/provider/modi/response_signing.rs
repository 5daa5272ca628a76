//! modi-out: every answer to a caller whose voucher was accepted leaves with `Digest` and
//! `Agid-JWT-Signature` (INTEGRITY_REST_01, our `x5c`, `aud` = the caller's clientId); an answer
//! that cannot be signed becomes a 500 rather than leave unsigned.

use super::setup::ResponseSigner;
use super::ResponseSigning;
use crate::modi::{self, SignatureClaims, AGID_JWT_SIGNATURE};
use crate::problem::Problem;
use crate::provider::{request_id, voucher};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::Error;
use std::sync::Arc;

/// Largest response body buffered for signing; our answers are a few KiB.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

impl ResponseSigning {
    pub async fn run(
        self: Arc<Self>,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let stage = &self.0;
        let signer = match (&stage.shared.signer, stage.patterns.sign_responses) {
            (Some(signer), true) => signer,
            _ => return next.call(req).await,
        };
        let Some(voucher) = voucher::of(&req) else {
            // Only reachable if the stage order changes: nobody to address the signature to.
            return next.call(req).await;
        };
        let res = next.call(req).await?;
        if !modi::is_signable_status(res.status().as_u16()) {
            return Ok(res);
        }
        let request_id = request_id::of(res.request());
        match sign(res, signer, voucher.client_id(), voucher::now()).await {
            Ok(signed) => Ok(signed),
            Err((req, reason)) => {
                // An unsigned answer would be refused by a careful receiver anyway; say so.
                tracing::error!(request_id, eservice = stage.eservice.id(), reason = %reason, "response not signed; answering 500");
                let mut problem = Problem::internal();
                if let Some(id) = &request_id {
                    problem = problem.with_instance(id);
                }
                Ok(ServiceResponse::new(req, problem.into_response()))
            }
        }
    }
}

/// Buffers the body, computes `Digest` and signs it with the `Content-Type` and
/// `Content-Encoding` exactly as they will be sent. The body bytes are not changed.
async fn sign(
    res: ServiceResponse<BoxBody>,
    signer: &ResponseSigner,
    audience: &str,
    now: i64,
) -> Result<ServiceResponse<BoxBody>, (actix_web::HttpRequest, String)> {
    let (req, res) = res.into_parts();
    let (mut res, body) = res.into_parts();
    let body = match actix_web::body::to_bytes_limited(body, MAX_RESPONSE_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err((req, format!("response body unreadable: {e}"))),
        Err(_) => return Err((req, format!("response body over {MAX_RESPONSE_BODY} bytes"))),
    };
    let header = |name: &HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(&CONTENT_TYPE);
    let content_encoding = header(&CONTENT_ENCODING);
    let claims = SignatureClaims {
        iss: signer.issuer.clone(),
        sub: signer.issuer.clone(),
        aud: audience.to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        nbf: now,
        exp: now + signer.lifetime_secs,
    };
    let signature = match modi::sign_response(
        res.status().as_u16(),
        &signer.material,
        &claims,
        content_type.as_deref(),
        content_encoding.as_deref(),
        &body,
    ) {
        Ok(Some(signature)) => signature,
        Ok(None) => {
            return Ok(ServiceResponse::new(req, res.set_body(BoxBody::new(body))));
        }
        Err(e) => return Err((req, e.to_string())),
    };
    for (name, value) in [
        (modi::DIGEST, signature.digest),
        (AGID_JWT_SIGNATURE, signature.agid_jwt_signature),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                res.headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
            Err(e) => return Err((req, format!("{name} header: {e}"))),
        }
    }
    let res = res.set_body(body.boxed());
    Ok(ServiceResponse::new(req, res))
}
