//! The HTTP client of PDND's tracing e-service: submit, list, errors, recover, replace.
//!
//! Every call carries the comune's voucher for its purpose on the tracing e-service (the caller
//! passes it in; [`super::sync`] takes it from the consumer side's voucher cache).
//!
//! Recover and replace: PDND's tracing manual documents them as `POST`, while the service's
//! published OpenAPI says `PUT`. The client sends `POST` and, if the service answers 405 Method
//! Not Allowed, sends the same request again as `PUT`: it works with whichever the deployed
//! service accepts, and a refusal for any other reason is not retried.

use chrono::NaiveDate;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

/// Most items PDND returns in one page (`limit` at most 50).
pub const PAGE: usize = 50;

/// Failures talking to the tracing service.
#[derive(Debug, thiserror::Error)]
pub enum TracingClientError {
    /// Unreachable, 5xx or 429: try again on the next run.
    #[error("tracing service unavailable: {0}")]
    Unavailable(String),
    /// A deposit for this date already exists (`TRACING_ALREADY_EXISTS`).
    #[error("PDND already holds a deposit for this date")]
    AlreadyExists,
    /// Any other refusal: the answer's status and body, for the log.
    #[error("tracing service refused the request ({status}): {body}")]
    Refused { status: u16, body: String },
    /// A 2xx answer that is not what the OpenAPI describes.
    #[error("unexpected answer from the tracing service: {0}")]
    BadAnswer(String),
}

/// The answer to a deposit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deposited {
    pub tracing_id: String,
    /// True when the tenant has errors somewhere in its history, not necessarily this file.
    #[serde(default)]
    pub errors: bool,
}

/// One deposit in PDND's list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteTracing {
    pub tracing_id: String,
    pub date: NaiveDate,
    pub state: String,
}

/// One row PDND refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    #[serde(default)]
    pub purpose_id: String,
    pub error_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub row_number: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(alias = "errors")]
    results: Vec<T>,
    total_count: i64,
}

/// A client of one tracing service.
#[derive(Clone)]
pub struct TracingClient {
    http: reqwest::Client,
    base: String,
}

fn unavailable(e: reqwest::Error) -> TracingClientError {
    TracingClientError::Unavailable(e.to_string())
}

impl TracingClient {
    /// `base`: the `[tracing] service_url`.
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        TracingClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, TracingClientError> {
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TracingClientError::Unavailable(format!("HTTP {status}")));
        }
        let body = response.text().await.map_err(unavailable)?;
        if !status.is_success() {
            if body.contains("TRACING_ALREADY_EXISTS") {
                return Err(TracingClientError::AlreadyExists);
            }
            return Err(TracingClientError::Refused {
                status: status.as_u16(),
                body: body.chars().take(512).collect(),
            });
        }
        serde_json::from_str(&body).map_err(|e| TracingClientError::BadAnswer(e.to_string()))
    }

    fn form(
        csv: &str,
        date: Option<NaiveDate>,
    ) -> Result<reqwest::multipart::Form, TracingClientError> {
        let name = date.map_or_else(|| "tracing.csv".to_owned(), |d| format!("tracing-{d}.csv"));
        let file = reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
            .file_name(name)
            .mime_str("text/csv")
            .map_err(|e| TracingClientError::BadAnswer(e.to_string()))?;
        let form = reqwest::multipart::Form::new().part("file", file);
        Ok(match date {
            Some(d) => form.text("date", d.format("%Y-%m-%d").to_string()),
            None => form,
        })
    }

    /// `POST /tracings/submit`: the first deposit of `date`.
    pub async fn submit(
        &self,
        voucher: &str,
        date: NaiveDate,
        csv: &str,
    ) -> Result<Deposited, TracingClientError> {
        let response = self
            .http
            .post(format!("{}/tracings/submit", self.base))
            .bearer_auth(voucher)
            .multipart(Self::form(csv, Some(date))?)
            .send()
            .await
            .map_err(unavailable)?;
        Self::answer(response).await
    }

    /// `/tracings/{id}/recover` (a MISSING or ERROR day) or `/tracings/{id}/replace` (a
    /// COMPLETED one): `POST`, then `PUT` if the service answers 405 (see the module doc).
    pub async fn redeposit(
        &self,
        voucher: &str,
        tracing_id: &str,
        action: Redeposit,
        csv: &str,
    ) -> Result<Deposited, TracingClientError> {
        let id =
            percent_encoding::utf8_percent_encode(tracing_id, percent_encoding::NON_ALPHANUMERIC);
        let url = format!("{}/tracings/{id}/{}", self.base, action.path());
        for method in [Method::POST, Method::PUT] {
            let response = self
                .http
                .request(method, &url)
                .bearer_auth(voucher)
                .multipart(Self::form(csv, None)?)
                .send()
                .await
                .map_err(unavailable)?;
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            return Self::answer(response).await;
        }
        Err(TracingClientError::Refused {
            status: 405,
            body: "neither POST nor PUT is allowed".into(),
        })
    }

    /// `GET /tracings`: every deposit PDND holds, all states, page by page.
    pub async fn list(&self, voucher: &str) -> Result<Vec<RemoteTracing>, TracingClientError> {
        self.pages(
            voucher,
            "/tracings",
            &[("states", "PENDING,COMPLETED,MISSING,ERROR")],
        )
        .await
    }

    /// `GET /tracings/{id}/errors`: the rows PDND refused.
    pub async fn errors(
        &self,
        voucher: &str,
        tracing_id: &str,
    ) -> Result<Vec<RowError>, TracingClientError> {
        let id =
            percent_encoding::utf8_percent_encode(tracing_id, percent_encoding::NON_ALPHANUMERIC);
        self.pages(voucher, &format!("/tracings/{id}/errors"), &[])
            .await
    }

    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        voucher: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, TracingClientError> {
        let mut all = Vec::new();
        loop {
            let offset = all.len().to_string();
            let limit = PAGE.to_string();
            let mut params: Vec<(&str, &str)> = query.to_vec();
            params.extend([("offset", offset.as_str()), ("limit", limit.as_str())]);
            let qs = serde_urlencoded::to_string(&params)
                .map_err(|e| TracingClientError::BadAnswer(e.to_string()))?;
            let response = self
                .http
                .get(format!("{}{path}?{qs}", self.base))
                .bearer_auth(voucher)
                .send()
                .await
                .map_err(unavailable)?;
            let page: Page<T> = Self::answer(response).await?;
            let got = page.results.len();
            all.extend(page.results);
            // An empty page ends the loop even if totalCount promised more.
            if got == 0 || i64::try_from(all.len()).unwrap_or(i64::MAX) >= page.total_count {
                return Ok(all);
            }
        }
    }
}

/// The two ways to deposit a day again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeposit {
    /// A MISSING or ERROR day.
    Recover,
    /// A COMPLETED day whose records changed.
    Replace,
}

impl Redeposit {
    pub fn path(self) -> &'static str {
        match self {
            Redeposit::Recover => "recover",
            Redeposit::Replace => "replace",
        }
    }
}
