//! Who may use the internal listener's fruizioni: the comune's own systems, by API key.
//!
//! A call through `/fruizioni` leaves the comune under the comune's PDND identity, so the
//! internal listener is not trusted just for being internal. Keys are configured as a static
//! list (`[internal] api_keys`), presented as `X-API-Key: <key>` or `Authorization: ApiKey <key>`,
//! and compared in constant time: the presented key and every configured key are hashed with
//! SHA-256 and the fixed-length digests compared without early exit, so neither content nor
//! length leaks through timing.

use crate::problem::Problem;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use sha2::{Digest, Sha256};

/// The header internal callers put their key in.
pub const X_API_KEY: &str = "x-api-key";

/// The accepted keys, kept as digests only.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys(<{} keys>)", self.digests.len())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl ApiKeys {
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k.as_ref().trim())).collect(),
        }
    }

    /// True when `presented` is one of the keys. Every key is compared, match or not.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        self.digests
            .iter()
            .fold(false, |found, k| ct_eq(k, &d) | found)
    }
}

/// The key a request presents, if any.
pub fn presented(req: &ServiceRequest) -> Option<&str> {
    if let Some(v) = req.headers().get(X_API_KEY) {
        return v.to_str().ok().map(str::trim);
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("ApiKey").then_some(key.trim())
}

fn refused(instance: Option<String>) -> actix_web::HttpResponse {
    let mut problem = Problem::new(StatusCode::UNAUTHORIZED).with_detail(
        "An internal API key is required: send it as `X-API-Key: <key>` or `Authorization: ApiKey <key>`.",
    );
    if let Some(id) = instance {
        problem = problem.with_instance(id);
    }
    let mut builder = problem.response_builder();
    builder.insert_header((
        header::WWW_AUTHENTICATE,
        "ApiKey realm=\"pdnd-gateway-internal\"",
    ));
    problem.into_response_with(builder)
}

/// Middleware: lets through requests with an accepted key, refuses the rest with 401
/// problem+json. The app must hold `web::Data<ApiKeys>` (none means nobody is let through).
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let accepted = match (req.app_data::<web::Data<ApiKeys>>(), presented(&req)) {
        (Some(keys), Some(key)) => keys.accepts(key),
        _ => false,
    };
    if !accepted {
        tracing::warn!(
            path = req.path(),
            key_sent = presented(&req).is_some(),
            "internal call refused: no valid API key"
        );
        let id = crate::provider::request_id::of(req.request());
        return Ok(req.into_response(refused(id)).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_configured_keys_are_accepted() {
        let keys = ApiKeys::new(&[KEY, "another-key-another-key-another-key"]);
        assert!(keys.accepts(KEY));
        assert!(keys.accepts("another-key-another-key-another-key"));
        assert!(!keys.accepts("0123456789abcdef0123456789abcdeF"));
        assert!(!keys.accepts(""));
        assert!(!keys.accepts(&KEY[..31]));
        assert!(!ApiKeys::new::<&str>(&[]).accepts(KEY));
        assert!(!format!("{keys:?}").contains("0123"));
    }

    #[test]
    fn key_is_read_from_either_header() {
        let req = TestRequest::default()
            .insert_header((X_API_KEY, KEY))
            .to_srv_request();
        assert_eq!(presented(&req), Some(KEY));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("ApiKey {KEY}")))
            .to_srv_request();
        assert_eq!(presented(&req), Some(KEY));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Bearer {KEY}")))
            .to_srv_request();
        assert_eq!(presented(&req), None);
        let req = TestRequest::default().to_srv_request();
        assert_eq!(presented(&req), None);
    }
}
