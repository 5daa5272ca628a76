//! Who may use the internal listener's fruizioni: the comune's own systems, by API key.
//!
//! A call through `/fruizioni` leaves the comune under the comune's PDND identity, so the
//! internal listener is not trusted just for being internal, and every caller is named: each
//! `[[internal.api_key]]` entry is an office or system (`ufficio-tributi`) with the fruizioni it
//! may call, and its name goes into the audit record of each of its calls. The configuration
//! holds only the key's SHA-256; the key is presented as `X-API-Key: <key>` or
//! `Authorization: ApiKey <key>`, hashed, and compared with every configured digest in
//! constant time (fixed-length digests, no early exit), so neither content nor length leaks
//! through timing.

use crate::config::ApiKeyConfig;
use crate::problem::Problem;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// The header internal callers put their key in.
pub const X_API_KEY: &str = "x-api-key";

/// An authenticated internal caller; the middleware puts it into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalCaller {
    name: Arc<str>,
    fruizioni: Arc<HashSet<String>>,
}

impl InternalCaller {
    /// The caller's configured name (for logs and the audit trail).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the caller may call the fruizione called `fruizione`.
    pub fn may_call(&self, fruizione: &str) -> bool {
        self.fruizioni.contains(fruizione)
    }
}

/// Why the keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("internal.api_key `{name}`: sha256 and previous_sha256 must be 64 hex digits")]
    BadDigest { name: String },
}

/// The accepted keys, kept as digests only, each with its caller.
pub struct ApiKeys {
    entries: Vec<([u8; 32], InternalCaller)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys(<{} keys>)", self.entries.len())
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
    /// The keys of `[[internal.api_key]]`.
    pub fn from_config(entries: &[ApiKeyConfig]) -> Result<Self, ApiKeyError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let bad = || ApiKeyError::BadDigest {
                name: e.name.clone(),
            };
            let caller = InternalCaller {
                name: Arc::from(e.name.as_str()),
                fruizioni: Arc::new(e.fruizioni.iter().cloned().collect()),
            };
            // The current key and, during a rotation, the one it replaces: the same caller.
            for hex_digest in std::iter::once(&e.sha256).chain(e.previous_sha256.iter()) {
                let bytes = hex::decode(hex_digest.trim()).map_err(|_| bad())?;
                let digest: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
                out.push((digest, caller.clone()));
            }
        }
        Ok(ApiKeys { entries: out })
    }

    /// The caller holding `presented`, if any. Every digest is compared, match or not.
    pub fn identify(&self, presented: &str) -> Option<&InternalCaller> {
        let d = digest(presented);
        self.entries.iter().fold(None, |found, (k, caller)| {
            let hit = ct_eq(k, &d);
            match found {
                Some(f) => Some(f),
                None if hit => Some(caller),
                None => None,
            }
        })
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

/// Middleware: lets through requests with an accepted key, with their [`InternalCaller`] in
/// the extensions, and refuses the rest with 401 problem+json. The app must hold
/// `web::Data<ApiKeys>` (none means nobody is let through).
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let caller = match (req.app_data::<web::Data<ApiKeys>>(), presented(&req)) {
        (Some(keys), Some(key)) => keys.identify(key).cloned(),
        _ => None,
    };
    let Some(caller) = caller else {
        tracing::warn!(
            path = req.path(),
            key_sent = presented(&req).is_some(),
            "internal call refused: no valid API key"
        );
        let id = crate::provider::request_id::of(req.request());
        return Ok(req.into_response(refused(id)).map_into_right_body());
    };
    req.extensions_mut().insert(caller);
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    const OTHER: &str = "another-key-another-key-another-key";

    fn keys() -> ApiKeys {
        ApiKeys::from_config(&[
            ApiKeyConfig::for_key("ufficio-tributi", KEY, vec!["inps-isee".into()]),
            ApiKeyConfig::for_key("protocollo", OTHER, vec!["inps-isee".into(), "anpr".into()]),
        ])
        .unwrap()
    }

    #[test]
    fn only_configured_keys_are_accepted_and_named() {
        let keys = keys();
        assert_eq!(
            keys.identify(KEY).map(|c| c.name()),
            Some("ufficio-tributi")
        );
        assert_eq!(keys.identify(OTHER).map(|c| c.name()), Some("protocollo"));
        assert!(keys.identify("0123456789abcdef0123456789abcdeF").is_none());
        assert!(keys.identify("").is_none());
        assert!(keys.identify(&KEY[..31]).is_none());
        assert!(ApiKeys::from_config(&[]).unwrap().identify(KEY).is_none());
        assert!(!format!("{keys:?}").contains("0123"));
    }

    #[test]
    fn each_caller_may_call_only_its_fruizioni() {
        let keys = keys();
        let tributi = keys.identify(KEY).unwrap();
        assert!(tributi.may_call("inps-isee"));
        assert!(!tributi.may_call("anpr"));
        assert!(!tributi.may_call(""));
        let protocollo = keys.identify(OTHER).unwrap();
        assert!(protocollo.may_call("anpr"));
    }

    #[test]
    fn during_a_rotation_both_keys_name_the_same_caller() {
        let mut entry = ApiKeyConfig::for_key("ufficio-tributi", KEY, vec!["inps-isee".into()]);
        entry.previous_sha256 = Some(ApiKeyConfig::for_key("x", OTHER, vec![]).sha256);
        let keys = ApiKeys::from_config(&[entry.clone()]).unwrap();
        assert_eq!(
            keys.identify(KEY).map(|c| c.name()),
            Some("ufficio-tributi")
        );
        assert_eq!(
            keys.identify(OTHER).map(|c| c.name()),
            Some("ufficio-tributi")
        );
        entry.previous_sha256 = None;
        let keys = ApiKeys::from_config(&[entry]).unwrap();
        assert!(keys.identify(OTHER).is_none());
    }

    #[test]
    fn malformed_digests_are_refused_at_start() {
        for bad in ["", "zz", &"a".repeat(62), &"g".repeat(64)] {
            let entry = ApiKeyConfig {
                name: "x".into(),
                sha256: bad.to_owned(),
                previous_sha256: None,
                fruizioni: vec!["f".into()],
            };
            assert!(ApiKeys::from_config(&[entry]).is_err(), "{bad}");
        }
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
