//! Request bodies: size limit, JSON parsing and the 400/413/415 answers for bad input.
//!
//! Every operation takes a small JSON body. [`ValidJson`] reads it (at most [`MAX_BODY_BYTES`]),
//! deserialises it into a request type whose fields validate themselves (codice fiscale check
//! character, bounds), and turns any failure into a problem+json whose detail names the field.
//! On success it records the request's [`DataSubject`] in the request extensions for the
//! gateway's audit stage. [`json_config`] gives the same limits and answers to actix's own
//! `web::Json`, for the gateway's routes that use it.

use crate::problem::Problem;
use crate::DataSubject;
use actix_web::dev::Payload;
use actix_web::error::{InternalError, JsonPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

/// The largest body an operation accepts; every valid request is far below it.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long reading a whole request body may take (app data; [`DEFAULT_BODY_READ_DEADLINE`]
/// when none is registered). A client that sends its headers and then trickles the body, or
/// stops, would otherwise hold a worker for as long as the connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadDeadline(pub std::time::Duration);

/// The deadline when the application registers none.
pub const DEFAULT_BODY_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

fn too_slow(deadline: std::time::Duration) -> Problem {
    Problem::new(StatusCode::REQUEST_TIMEOUT).with_detail(format!(
        "The request body was not received within {} ms.",
        deadline.as_millis()
    ))
}

/// A request body that names its data subject (the person or body the lookup is about).
pub trait RequestBody {
    fn data_subject(&self) -> &str;
}

/// A JSON body that parsed and validated; its subject is already in the request extensions.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T> ValidJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

fn too_large() -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .with_detail(format!("The request body exceeds {MAX_BODY_BYTES} bytes."))
}

fn unsupported_media_type() -> Problem {
    Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .with_detail("The request body must be application/json.")
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    // Compared without lower-casing a copy: this runs on every call.
    let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
    let starts =
        |p: &str| essence.len() >= p.len() && essence[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    let ends = |p: &str| {
        essence.len() >= p.len()
            && essence[essence.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
    };
    essence.eq_ignore_ascii_case(b"application/json") || (starts("application/") && ends("+json"))
}

/// Deserialises `bytes` into `T`, with an error that names the failing field.
///
/// A body that parses takes the plain path; only a failing one is parsed again with the path
/// tracked, for the message (tracking the path of every field costs about as much as the
/// parse itself).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(format!("The request body is not valid JSON: {inner}"))
        } else if path.is_empty() || path == "." {
            Problem::bad_request(format!("Invalid request body: {inner}"))
        } else {
            Problem::bad_request(format!("Invalid field `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("The request body is not valid JSON: {e}")))?;
    Ok(value)
}

impl<T> FromRequest for ValidJson<T>
where
    T: DeserializeOwned + RequestBody + 'static,
{
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json(&req) {
                return Err(unsupported_media_type());
            }
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
                return Err(too_large());
            }
            let deadline = req
                .app_data::<BodyReadDeadline>()
                .map(|d| d.0)
                .unwrap_or(DEFAULT_BODY_READ_DEADLINE);
            let read = async {
                let mut body =
                    web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|_| Problem::bad_request("The request body could not be read."))?;
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            };
            let body = tokio::time::timeout(deadline, read)
                .await
                .map_err(|_| too_slow(deadline))??;
            let value: T = parse_body(&body)?;
            req.extensions_mut()
                .insert(DataSubject(value.data_subject().to_owned()));
            Ok(ValidJson(value))
        })
    }
}

/// Maps actix's JSON extractor errors onto the same problems [`ValidJson`] answers.
pub fn json_error_problem(err: &JsonPayloadError) -> Problem {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            too_large()
        }
        JsonPayloadError::ContentType => unsupported_media_type(),
        JsonPayloadError::Deserialize(e) if e.is_syntax() || e.is_eof() => {
            Problem::bad_request(format!("The request body is not valid JSON: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            Problem::bad_request(format!("Invalid request body: {e}"))
        }
        JsonPayloadError::Serialize(_) => Problem::internal(),
        _ => Problem::bad_request("The request body could not be read."),
    }
}

/// The JSON configuration the gateway registers: 16 KiB limit, problem+json errors.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|err, _req| {
            let problem = json_error_problem(&err);
            InternalError::from_response(err, problem.into_response()).into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Inner {
        anno: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Outer {
        codice_fiscale: crate::CodiceFiscale,
        inner: Inner,
    }

    fn detail(body: &str) -> String {
        parse_body::<Outer>(body.as_bytes())
            .unwrap_err()
            .detail
            .unwrap_or_default()
    }

    #[test]
    fn details_name_the_field() {
        assert!(
            detail(r#"{"codiceFiscale":"RSSMRA85T10A562X","inner":{"anno":1}}"#)
                .contains("`codiceFiscale`")
        );
        let d = detail(r#"{"codiceFiscale":"RSSMRA85T10A562S","inner":{"anno":"x"}}"#);
        assert!(d.contains("`inner.anno`"), "{d}");
        let d = detail(r#"{"codiceFiscale":"RSSMRA85T10A562S","inner":{"anno":1},"extra":1}"#);
        assert!(d.contains("unknown field `extra`"), "{d}");
        let d = detail(r#"{"codiceFiscale":"RSSMRA85T10A562S"}"#);
        assert!(d.contains("missing field `inner`"), "{d}");
        assert!(detail("not json").contains("not valid JSON"));
        assert!(
            detail(r#"{"codiceFiscale":"RSSMRA85T10A562S","inner":{"anno":1}} x"#)
                .contains("not valid JSON")
        );
        let ok = parse_body::<Outer>(br#"{"codiceFiscale":"rssmra85t10a562s","inner":{"anno":1}}"#)
            .unwrap();
        assert_eq!(ok.codice_fiscale.as_str(), "RSSMRA85T10A562S");
        assert_eq!(ok.inner.anno, 1);
    }

    #[test]
    fn only_json_media_types_are_json() {
        let is = |ct: &str| {
            is_json(
                &actix_web::test::TestRequest::default()
                    .insert_header((header::CONTENT_TYPE, ct))
                    .to_http_request(),
            )
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;q=1",
            "application/merge-patch+json",
            "APPLICATION/PROBLEM+JSON",
        ] {
            assert!(is(ok), "{ok}");
        }
        for refused in [
            "",
            "text/json",
            "application/jsonx",
            "application/xml",
            "application+json",
            "text/plain; a=application/json",
            "application/json+xml",
        ] {
            assert!(!is(refused), "{refused}");
        }
        assert!(!is_json(
            &actix_web::test::TestRequest::default().to_http_request()
        ));
    }

    #[test]
    fn overflow_maps_to_413() {
        let p = json_error_problem(&JsonPayloadError::Overflow { limit: 1 });
        assert_eq!(p.status, 413);
        assert_eq!(
            json_error_problem(&JsonPayloadError::ContentType).status,
            415
        );
    }
}
