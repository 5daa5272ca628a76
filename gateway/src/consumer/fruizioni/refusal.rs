//! Every answer the outbound proxy gives itself instead of the remote's: one variant per row of
//! the status table in [`super`]'s documentation, with its status, title, detail and
//! `Retry-After` decided here, in one place, so the table and the code cannot drift apart.

use crate::pdnd_client::voucher_cache::VoucherFetchError;
use crate::problem::Problem;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

/// Why a fruizione call was answered by the gateway rather than by the remote e-service.
/// `Display` is the problem's `detail`: what the caller reads, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ProxyRefusal {
    /// 401: the API-key middleware let no caller through (it always should).
    #[error("An internal API key is required.")]
    NoCaller,
    /// 503: the audit trail is known down, so the call is not sent.
    #[error("The audit trail is unavailable, so the call was not sent; retry later.")]
    AuditDownBeforeCall,
    /// 503: the call's record could not be committed, so the remote's answer is dropped.
    #[error("The audit trail is unavailable, so the answer cannot be returned; retry later.")]
    AuditNotCommitted,
    /// 404.
    #[error("No fruizione named `{0}` is configured.")]
    UnknownFruizione(String),
    /// 403: the caller's API key does not list this fruizione.
    #[error("The API key of `{caller}` may not call fruizione `{fruizione}`.")]
    CallerNotAllowed { caller: String, fruizione: String },
    /// 400: `X-User-Id` not text, too long or with control characters.
    #[error("{0}")]
    InvalidUserId(String),
    /// 400: a path segment outside the allow-list.
    #[error("The path is not allowed: {0}.")]
    PathNotAllowed(String),
    /// 400: AUDIT_REST_01/02 configured and the caller's audit headers missing or invalid.
    #[error("{0}")]
    AuditHeadersRequired(String),
    /// 400: a body to sign whose `Content-Type` is not visible ASCII.
    #[error("Content-Type must be visible ASCII to be signed.")]
    UnsignableContentType,
    /// 503 with `Retry-After: 1`: the fruizione's `max_concurrency` calls are in flight.
    #[error("Fruizione `{0}` has reached its limit of calls in flight.")]
    AtCapacity(String),
    /// 503 (PDND unreachable, no voucher cached) or 502 (PDND refused the request).
    #[error("{}", voucher_detail(.fruizione, .error))]
    NoVoucher {
        fruizione: String,
        error: VoucherFetchError,
    },
    /// 500: our own ModI material could not sign (configuration, not the caller).
    #[error(
        "The ModI headers of fruizione `{0}` could not be signed; the gateway's log says why."
    )]
    Signing(String),
    /// 405: a method reqwest cannot send.
    #[error("Unsupported method.")]
    UnsupportedMethod,
    /// 502: no DPoP proof could be made for a DPoP-bound voucher.
    #[error("The DPoP proof of fruizione `{0}` could not be made; the gateway's log says why.")]
    DpopProof(String),
    /// 504: the remote did not answer within `timeout_ms`.
    #[error("The remote e-service of fruizione `{0}` did not answer in time.")]
    RemoteTimeout(String),
    /// 502: the remote could not be reached or broke off.
    #[error("The remote e-service of fruizione `{0}` is unreachable.")]
    RemoteUnreachable(String),
    /// 502: the answer passed `max_response_bytes` (read with the limit, never whole).
    #[error(
        "The answer of fruizione `{fruizione}`'s remote e-service is larger than the {limit} bytes allowed."
    )]
    RemoteTooLarge { fruizione: String, limit: u64 },
    /// 502: `verify_response` is set and the answer's signature or `Digest` does not verify.
    #[error("The answer of fruizione `{fruizione}`'s remote e-service (HTTP {status}) failed ModI verification: {reason}.")]
    ResponseNotVerified {
        fruizione: String,
        status: u16,
        reason: String,
    },
}

fn voucher_detail(fruizione: &str, error: &VoucherFetchError) -> String {
    match error {
        VoucherFetchError::Unavailable { .. } => format!("PDND is unreachable: no voucher could be obtained for fruizione `{fruizione}`. Try again later."),
        VoucherFetchError::Refused { status, claims, .. } => format!("PDND refused the voucher request for fruizione `{fruizione}` (HTTP {status}); check the client, key and purpose. Claims sent: {claims}"),
        VoucherFetchError::Client(_) => format!("No voucher could be obtained for fruizione `{fruizione}`; the gateway's log says why."),
    }
}

impl ProxyRefusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        use ProxyRefusal::*;
        match self {
            NoCaller => StatusCode::UNAUTHORIZED,
            UnknownFruizione(_) => StatusCode::NOT_FOUND,
            CallerNotAllowed { .. } => StatusCode::FORBIDDEN,
            InvalidUserId(_)
            | PathNotAllowed(_)
            | AuditHeadersRequired(_)
            | UnsignableContentType => StatusCode::BAD_REQUEST,
            UnsupportedMethod => StatusCode::METHOD_NOT_ALLOWED,
            Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AuditDownBeforeCall | AuditNotCommitted | AtCapacity(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NoVoucher { error, .. } => match error {
                VoucherFetchError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                VoucherFetchError::Refused { .. } | VoucherFetchError::Client(_) => {
                    StatusCode::BAD_GATEWAY
                }
            },
            DpopProof(_)
            | RemoteUnreachable(_)
            | RemoteTooLarge { .. }
            | ResponseNotVerified { .. } => StatusCode::BAD_GATEWAY,
            RemoteTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The problem's title where it says more than the status' reason phrase (clients may
    /// switch on it, so these stay stable).
    pub fn title(&self) -> Option<&'static str> {
        use ProxyRefusal::*;
        match self {
            InvalidUserId(_) => Some("Invalid X-User-Id"),
            PathNotAllowed(_) => Some("Path not allowed"),
            AuditHeadersRequired(_) => Some("Audit headers required"),
            NoVoucher { error, .. } => match error {
                VoucherFetchError::Unavailable { .. } => Some("PDND unreachable"),
                VoucherFetchError::Refused { .. } => Some("PDND refused the voucher request"),
                VoucherFetchError::Client(_) => None,
            },
            RemoteTooLarge { .. } => Some("Remote answer too large"),
            ResponseNotVerified { .. } => Some("Remote answer not verified"),
            _ => None,
        }
    }

    /// Seconds the caller should wait before retrying, sent as `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        use ProxyRefusal::*;
        match self {
            AuditDownBeforeCall | AuditNotCommitted => Some(5),
            AtCapacity(_) => Some(1),
            NoVoucher {
                error: VoucherFetchError::Unavailable { retry_after, .. },
                ..
            } => Some(retry_after.unwrap_or(5).max(1)),
            _ => None,
        }
    }

    /// The problem+json answer, `instance` being the request id.
    pub fn into_response(self, instance: Option<&str>) -> HttpResponse {
        let mut problem = Problem::new(self.status()).with_detail(self.to_string());
        if let Some(title) = self.title() {
            problem = problem.with_title(title);
        }
        if let Some(id) = instance {
            problem = problem.with_instance(id);
        }
        match self.retry_after() {
            Some(secs) => {
                let mut builder = problem.response_builder();
                builder.insert_header((header::RETRY_AFTER, secs.to_string()));
                problem.into_response_with(builder)
            }
            None => problem.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_the_status_of_the_documented_table() {
        let f = || "inps".to_owned();
        let cases = [
            (ProxyRefusal::NoCaller, 401, None),
            (ProxyRefusal::AuditDownBeforeCall, 503, Some(5)),
            (ProxyRefusal::AuditNotCommitted, 503, Some(5)),
            (ProxyRefusal::UnknownFruizione(f()), 404, None),
            (
                ProxyRefusal::CallerNotAllowed {
                    caller: "ufficio".into(),
                    fruizione: f(),
                },
                403,
                None,
            ),
            (ProxyRefusal::InvalidUserId("bad".into()), 400, None),
            (ProxyRefusal::PathNotAllowed("..".into()), 400, None),
            (ProxyRefusal::AuditHeadersRequired("x".into()), 400, None),
            (ProxyRefusal::UnsignableContentType, 400, None),
            (ProxyRefusal::AtCapacity(f()), 503, Some(1)),
            (ProxyRefusal::Signing(f()), 500, None),
            (ProxyRefusal::UnsupportedMethod, 405, None),
            (ProxyRefusal::DpopProof(f()), 502, None),
            (ProxyRefusal::RemoteTimeout(f()), 504, None),
            (ProxyRefusal::RemoteUnreachable(f()), 502, None),
            (
                ProxyRefusal::RemoteTooLarge {
                    fruizione: f(),
                    limit: 10,
                },
                502,
                None,
            ),
            (
                ProxyRefusal::ResponseNotVerified {
                    fruizione: f(),
                    status: 200,
                    reason: "digest".into(),
                },
                502,
                None,
            ),
        ];
        for (refusal, status, retry) in cases {
            assert_eq!(refusal.status().as_u16(), status, "{refusal:?}");
            assert_eq!(refusal.retry_after(), retry, "{refusal:?}");
            let answer = refusal.into_response(Some("req-1"));
            assert_eq!(answer.status().as_u16(), status);
            assert_eq!(
                answer.headers().get(header::RETRY_AFTER).map(|v| v
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()),
                retry
            );
            assert_eq!(
                answer.headers().get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json"
            );
        }
    }

    #[test]
    fn voucher_failures_follow_what_pdnd_did() {
        let unavailable = ProxyRefusal::NoVoucher {
            fruizione: "inps".into(),
            error: VoucherFetchError::Unavailable {
                endpoint: "https://pdnd/token.oauth2".into(),
                attempts: 3,
                last: "connection refused".into(),
                retry_after: Some(0),
            },
        };
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.title(), Some("PDND unreachable"));
        // A Retry-After of 0 would invite a busy loop.
        assert_eq!(unavailable.retry_after(), Some(1));
        assert!(unavailable.to_string().contains("`inps`"));
    }
}
