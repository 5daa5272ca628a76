//! The consumer side of the PDND token flow: client assertion in, voucher out.
//!
//! One HTTP exchange with a PDND-compatible token endpoint (the local development authority,
//! PDND collaudo or production: only the URL and audience differ). PDND answers every refusal
//! with the same opaque `015-0008`, so a refusal is reported together with the claims that were
//! sent: that is what an integrator needs to find the mistake. The key never leaves this module.
//! With a [`DpopKey`] the request carries a `DPoP` proof for `POST` to the endpoint (RFC 9449
//! section 5), so that PDND binds the voucher to that key and answers `token_type: DPoP`.

use crate::pdnd::client_assertion::{
    ClientAssertionBuilder, ClientAssertionClaims, SignedAssertion, TokenRequest, TokenResponse,
};
use crate::pdnd::dpop::{DpopKey, DPOP_HEADER};
use crate::pdnd::jwk::RsaPrivateKey;

/// Why no voucher was obtained.
#[derive(Debug, thiserror::Error)]
pub enum TokenClientError {
    #[error("could not sign the client assertion: {0}")]
    Sign(String),
    #[error("token endpoint {endpoint} unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("token endpoint refused the request (HTTP {status}): {body}\nclaims sent: {claims}")]
    Refused {
        status: u16,
        body: String,
        claims: String,
        /// The endpoint's `Retry-After` (429 and 503 usually carry one), in seconds from now.
        retry_after: Option<u64>,
    },
    #[error("token endpoint answered HTTP {status} with an unexpected body: {reason}")]
    BadResponse { status: u16, reason: String },
}

impl TokenClientError {
    /// True when retrying later may succeed (PDND overloaded or down), false for a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenClientError::Unreachable { .. } => true,
            TokenClientError::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// A voucher together with the assertion that obtained it.
#[derive(Debug, Clone)]
pub struct Obtained {
    pub response: TokenResponse,
    pub assertion: SignedAssertion,
}

/// Talks to one token endpoint.
#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    endpoint: String,
}

fn claims_json(claims: &ClientAssertionClaims) -> String {
    serde_json::to_string(claims).unwrap_or_else(|_| "<unserialisable claims>".to_owned())
}

/// `Retry-After` as seconds from `now`: either delay-seconds or an HTTP-date (RFC 9110 10.2.3).
/// A date in the past means "now"; anything unparsable is ignored.
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value)
        .ok()?
        .timestamp();
    Some(u64::try_from(at - now).unwrap_or(0))
}

impl TokenClient {
    pub fn new(http: reqwest::Client, endpoint: impl Into<String>) -> Self {
        TokenClient {
            http,
            endpoint: endpoint.into(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Signs a fresh client assertion and exchanges it for a (Bearer) voucher.
    pub async fn obtain(
        &self,
        builder: &ClientAssertionBuilder,
        key: &RsaPrivateKey,
        now: i64,
    ) -> Result<Obtained, TokenClientError> {
        self.obtain_with_dpop(builder, key, None, now).await
    }

    /// [`TokenClient::obtain`], with a fresh DPoP proof of `dpop` when given.
    pub async fn obtain_with_dpop(
        &self,
        builder: &ClientAssertionBuilder,
        key: &RsaPrivateKey,
        dpop: Option<&DpopKey>,
        now: i64,
    ) -> Result<Obtained, TokenClientError> {
        let assertion = builder
            .sign(key, now)
            .map_err(|e| TokenClientError::Sign(e.to_string()))?;
        let form = TokenRequest::new(&builder.client_id, &assertion);
        let mut request = self.http.post(&self.endpoint).form(&form);
        if let Some(dpop) = dpop {
            let proof = dpop
                .proof("POST", &self.endpoint, None, now)
                .map_err(|e| TokenClientError::Sign(e.to_string()))?;
            request = request.header(DPOP_HEADER, proof);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TokenClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?;
        if !(200..300).contains(&status) {
            return Err(TokenClientError::Refused {
                status,
                body: String::from_utf8_lossy(&body).chars().take(2048).collect(),
                claims: claims_json(&assertion.claims),
                retry_after,
            });
        }
        let response: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| TokenClientError::BadResponse {
                status,
                reason: e.to_string(),
            })?;
        Ok(Obtained {
            response,
            assertion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3", 0), Some(3));
        assert_eq!(parse_retry_after(" 120 ", 0), Some(120));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_770),
            Some(7)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_800),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-1", 0), None);
    }
}
