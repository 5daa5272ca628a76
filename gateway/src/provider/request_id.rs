//! Request identity: every answer carries `X-Request-Id`.
//!
//! An id the caller sends is echoed when it is sane (so a consumer can correlate its own logs
//! with ours); anything else is replaced by a fresh UUID, so a hostile value never reaches our
//! logs or the audit trail.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

/// The header name.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Accepts 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The id for a request: the caller's when sane, a new UUID otherwise.
pub fn choose(sent: Option<&str>) -> String {
    match sent {
        Some(id) if is_sane(id) => id.to_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Middleware: assigns the id before any other stage and stamps it on the response.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let sent = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let id = choose(sent);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(X_REQUEST_ID), value);
    }
    Ok(res)
}

/// The id stored by [`assign`], for stages and handlers.
pub fn of(req: &impl HttpMessage) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_echoed_others_replaced() {
        assert_eq!(choose(Some("abc-123_x.y")), "abc-123_x.y");
        for bad in ["", "a b", "x\ny", "é", &"a".repeat(65)] {
            let chosen = choose(Some(bad));
            assert_ne!(chosen, bad);
            assert!(uuid::Uuid::parse_str(&chosen).is_ok());
        }
        assert!(uuid::Uuid::parse_str(&choose(None)).is_ok());
    }
}
