//! RFC 7807 problem details, the one shape every HTTP error of the product takes.
//!
//! The Italian interoperability guidelines (RAC_REST_NAME_008) require errors as
//! `application/problem+json`. Both crates answer errors (the e-service handlers here, the
//! gateway's pipeline stages there), so the type lives in the lower crate and the gateway's
//! `problem` module maps its own error enums onto it. A `Problem` carries only what the caller
//! may know: never a key, a token, a stack trace or personal data.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 7807 problem: `type`, `title`, `status`, `detail`, `instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "No record matches the subject of the request."
}))]
pub struct Problem {
    /// A URI that identifies the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    #[schema(format = Uri, max_length = 2048)]
    pub type_: String,
    /// A short, human-readable summary of the problem type.
    #[schema(max_length = 256)]
    pub title: String,
    /// The HTTP status code of this occurrence.
    #[schema(minimum = 100, maximum = 599, format = Int32)]
    pub status: u16,
    /// What went wrong in this occurrence, in words a caller can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 4096)]
    pub detail: Option<String>,
    /// A reference to this occurrence (the request id), for support requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 256)]
    pub instance: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// A problem with the status' canonical reason as its title.
    pub fn new(status: StatusCode) -> Self {
        Problem {
            type_: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
        }
    }

    /// Adds the occurrence-specific explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Replaces the title (keep it short and stable: clients may switch on it).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the problem type URI.
    pub fn with_type(mut self, type_: impl Into<String>) -> Self {
        self.type_ = type_.into();
        self
    }

    /// Sets the occurrence reference (the gateway uses the request id).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// 400 with a detail naming what is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 404 with a detail.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    /// 503 with a detail.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE).with_detail(detail)
    }

    /// 500 with a generic detail: the cause goes to the log, never to the caller.
    pub fn internal() -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("The request could not be completed; the error has been logged.")
    }

    /// The HTTP status as a `StatusCode` (500 if the stored number is not a valid status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A response builder with the status and content type set; callers add headers
    /// (e.g. `WWW-Authenticate`, `Retry-After`) and then call [`Problem::into_response_with`].
    pub fn response_builder(&self) -> HttpResponseBuilder {
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        builder
    }

    /// Finishes a builder from [`Problem::response_builder`] with this problem as the body.
    pub fn into_response_with(self, mut builder: HttpResponseBuilder) -> HttpResponse {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        builder.body(body)
    }

    /// The complete response.
    pub fn into_response(self) -> HttpResponse {
        let builder = self.response_builder();
        self.into_response_with(builder)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.clone().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_rfc7807_fields_and_omits_empty_ones() {
        let p = Problem::not_found("No subject matches the request.");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "No subject matches the request.");
        assert!(v.get("instance").is_none());
    }

    #[test]
    fn response_has_problem_content_type() {
        let resp = Problem::bad_request("x").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }
}
