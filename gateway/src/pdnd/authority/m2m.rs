//! API Interop (M2M) vouchers: the ones PDND issues to clients that call the PDND API rather
//! than an e-service, and the check the PDND API makes of them.

use super::voucher_shape::{Confirmation, VoucherHeader};
use super::{token_type, AssertionRejection, Authority, RegisteredApiClient, Rejection};
use crate::pdnd::client_assertion::TokenResponse;
use crate::pdnd::jws;
use serde::Serialize;
use serde_json::Value;

/// The claims PDND puts in an API Interop voucher (generateInteropApiToken): no purpose, no
/// e-service, the caller's organisation and role instead.
#[derive(Serialize)]
struct M2mVoucherClaims<'a> {
    jti: String,
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    client_id: &'a str,
    #[serde(rename = "organizationId")]
    organization_id: &'a str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// The `role` of an API Interop voucher of an ordinary (non-admin) M2M client.
pub const M2M_ROLE: &str = "m2m";

/// The caller named by a valid M2M voucher of this authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct M2mCaller {
    pub client_id: String,
    pub organization_id: String,
}

/// Why a bearer token is not a valid M2M voucher of this authority (what the PDND API answers
/// with 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum M2mRefusal {
    #[error("the authority has no API clients, so it issues no M2M vouchers")]
    NotConfigured,
    #[error("not a compact JWS: {0}")]
    Malformed(String),
    #[error("header {member} is {found:?}, expected {expected}")]
    Header {
        member: &'static str,
        expected: String,
        found: Option<String>,
    },
    #[error("the signature does not verify with the authority's key")]
    Signature,
    #[error("iss {0:?} is not this authority")]
    Issuer(Option<String>),
    #[error("aud {0:?} is not the M2M audience (an e-service voucher does not open the PDND API)")]
    Audience(Option<String>),
    #[error("role {0:?} is not an M2M role")]
    Role(Option<String>),
    #[error("claim {0} missing or not of the expected type")]
    Claim(&'static str),
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf in the future)")]
    NotBefore,
}

impl Authority {
    /// Checks a bearer token as the PDND API does before answering: a voucher this authority
    /// signed (`typ: at+jwt`, RS256, its kid), its issuer, the M2M audience, an M2M role, and
    /// `nbf`/`exp` against `now` with no tolerance. A consumer (e-service) voucher is refused
    /// on its audience.
    pub fn verify_m2m_voucher(&self, token: &str, now: i64) -> Result<M2mCaller, M2mRefusal> {
        let audience = self
            .m2m_audience
            .as_deref()
            .ok_or(M2mRefusal::NotConfigured)?;
        let jws =
            jws::CompactJws::parse(token).map_err(|e| M2mRefusal::Malformed(e.to_string()))?;
        for (member, expected) in [
            ("typ", "at+jwt"),
            ("alg", "RS256"),
            ("kid", self.kid.as_str()),
        ] {
            let found = jws.header_str(member);
            if found != Some(expected) {
                return Err(M2mRefusal::Header {
                    member,
                    expected: expected.to_owned(),
                    found: found.map(str::to_owned),
                });
            }
        }
        if !jws.verify_rs256(self.signing_key.public()) {
            return Err(M2mRefusal::Signature);
        }
        let text = |name: &str| jws.payload.get(name).and_then(Value::as_str);
        if text("iss") != Some(self.config.issuer.as_str()) {
            return Err(M2mRefusal::Issuer(text("iss").map(str::to_owned)));
        }
        // PDND serialises audiences as one comma-joined string.
        if !text("aud").is_some_and(|aud| aud.split(',').any(|a| a == audience)) {
            return Err(M2mRefusal::Audience(text("aud").map(str::to_owned)));
        }
        if !matches!(text("role"), Some("m2m" | "m2m-admin")) {
            return Err(M2mRefusal::Role(text("role").map(str::to_owned)));
        }
        let number = |name: &'static str| {
            jws.payload
                .get(name)
                .and_then(Value::as_i64)
                .ok_or(M2mRefusal::Claim(name))
        };
        if number("exp")? <= now {
            return Err(M2mRefusal::Expired);
        }
        if number("nbf")? > now {
            return Err(M2mRefusal::NotBefore);
        }
        let client_id = text("client_id").ok_or(M2mRefusal::Claim("client_id"))?;
        let organization_id = text("organizationId").ok_or(M2mRefusal::Claim("organizationId"))?;
        Ok(M2mCaller {
            client_id: client_id.to_owned(),
            organization_id: organization_id.to_owned(),
        })
    }

    pub(super) fn sign_m2m_voucher(
        &self,
        client: &RegisteredApiClient,
        jkt: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, Rejection> {
        let audience = self.m2m_audience.as_deref().ok_or_else(|| {
            Rejection::one(AssertionRejection::VoucherSigning(
                "API client registered without an M2M audience".to_owned(),
            ))
        })?;
        let header = VoucherHeader {
            alg: "RS256",
            use_: "sig",
            typ: "at+jwt",
            kid: &self.kid,
        };
        let exp = now + self.config.voucher_lifetime_secs;
        let claims = M2mVoucherClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            iss: &self.config.issuer,
            aud: audience,
            sub: &client.client_id,
            iat: now,
            nbf: now,
            exp,
            client_id: &client.client_id,
            organization_id: &client.organization_id,
            role: M2M_ROLE,
            cnf: jkt.map(|jkt| Confirmation { jkt }),
        };
        let access_token = jws::sign_rs256(&header, &claims, &self.signing_key)
            .map_err(|e| Rejection::one(AssertionRejection::VoucherSigning(e.to_string())))?;
        Ok(TokenResponse {
            access_token,
            token_type: Some(token_type(jkt).to_owned()),
            expires_in: exp - now,
        })
    }
}
