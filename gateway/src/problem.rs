//! The single place where the gateway's own failures become HTTP answers.
//!
//! Every error is an RFC 7807 [`Problem`] (`application/problem+json`). The caller learns only
//! what it may know: a refused voucher is "invalid token" whatever the reason (ModI: an
//! authentication error must not help an attacker), while the precise reason goes to the log.

pub use eservices::problem::{Problem, PROBLEM_JSON};

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "pdnd-gateway";

/// How a request failed the bearer-token check (RFC 6750 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerFailure {
    /// No credentials at all: no error code, as RFC 6750 asks.
    Missing,
    /// An `Authorization` header that is not a well-formed bearer credential.
    InvalidRequest,
    /// A bearer token that failed validation.
    InvalidToken,
}

/// A 401 problem with the matching `WWW-Authenticate` challenge.
pub fn unauthorized(failure: BearerFailure, instance: Option<&str>) -> HttpResponse {
    let (challenge, detail) = match failure {
        BearerFailure::Missing => (
            format!("Bearer realm=\"{REALM}\""),
            "A PDND voucher is required: send it as `Authorization: Bearer <voucher>`.",
        ),
        BearerFailure::InvalidRequest => (
            format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
            "The Authorization header must be `Bearer <voucher>`.",
        ),
        BearerFailure::InvalidToken => (
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            "The voucher is not valid for this e-service.",
        ),
    };
    let mut problem = Problem::new(StatusCode::UNAUTHORIZED).with_detail(detail);
    if let Some(id) = instance {
        problem = problem.with_instance(id);
    }
    let mut builder = problem.response_builder();
    builder.insert_header((header::WWW_AUTHENTICATE, challenge));
    problem.into_response_with(builder)
}

/// How a request failed the DPoP check (RFC 9449 section 7.1): the answer's challenge is
/// `DPoP` with the algorithms a proof may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopFailure {
    /// The `DPoP` header is missing, repeated or not a valid proof for this request
    /// (`error="invalid_dpop_proof"`).
    InvalidProof,
    /// The voucher is not valid, is not DPoP-bound, or is bound to another key than the
    /// proof's (`error="invalid_token"`).
    InvalidToken,
}

/// A 401 problem with a `WWW-Authenticate: DPoP` challenge.
pub fn unauthorized_dpop(failure: DpopFailure, instance: Option<&str>) -> HttpResponse {
    let (code, detail) = match failure {
        DpopFailure::InvalidProof => (
            "invalid_dpop_proof",
            "A DPoP-bound voucher needs a valid DPoP proof for this request in the `DPoP` header.",
        ),
        DpopFailure::InvalidToken => (
            "invalid_token",
            "The voucher is not valid for this e-service, or not bound to the proof's key.",
        ),
    };
    let challenge = format!(
        "DPoP realm=\"{REALM}\", error=\"{code}\", algs=\"{}\"",
        crate::pdnd::dpop::ProofAlgorithm::challenge_list()
    );
    let mut problem = Problem::new(StatusCode::UNAUTHORIZED).with_detail(detail);
    if let Some(id) = instance {
        problem = problem.with_instance(id);
    }
    let mut builder = problem.response_builder();
    builder.insert_header((header::WWW_AUTHENTICATE, challenge));
    problem.into_response_with(builder)
}

/// 503: a dependency the gateway cannot serve without (PDND keys, the store) is unreachable.
pub fn unavailable(detail: &str, instance: Option<&str>) -> HttpResponse {
    let mut problem = Problem::unavailable(detail);
    if let Some(id) = instance {
        problem = problem.with_instance(id);
    }
    let mut builder = problem.response_builder();
    builder.insert_header((header::RETRY_AFTER, "5"));
    problem.into_response_with(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_token_carries_the_challenge() {
        let resp = unauthorized(BearerFailure::InvalidToken, Some("req-1"));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let challenge = resp.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert_eq!(
            challenge.to_str().unwrap(),
            "Bearer realm=\"pdnd-gateway\", error=\"invalid_token\""
        );
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }

    #[test]
    fn dpop_failures_carry_a_dpop_challenge() {
        for (failure, code) in [
            (DpopFailure::InvalidProof, "invalid_dpop_proof"),
            (DpopFailure::InvalidToken, "invalid_token"),
        ] {
            let resp = unauthorized_dpop(failure, Some("req-1"));
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let challenge = resp.headers().get(header::WWW_AUTHENTICATE).unwrap();
            assert_eq!(
                challenge.to_str().unwrap(),
                format!(
                    "DPoP realm=\"pdnd-gateway\", error=\"{code}\", algs=\"ES256 RS256 PS256\""
                )
            );
            assert_eq!(
                resp.headers().get(header::CONTENT_TYPE).unwrap(),
                PROBLEM_JSON
            );
        }
    }

    #[test]
    fn missing_credentials_carry_no_error_code() {
        let resp = unauthorized(BearerFailure::Missing, None);
        let challenge = resp.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert!(!challenge.to_str().unwrap().contains("error="));
    }
}
