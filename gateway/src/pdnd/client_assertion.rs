//! The client assertion the gateway, as fruitore, sends to PDND's `/token.oauth2`.
//!
//! PDND allows exactly the header `{alg, kid, typ}` and the claims `iss, sub, aud, jti, iat,
//! exp, purposeId` plus an optional `digest {alg, value}`; its FAQ forbids `nbf` and any other
//! claim (enforced server-side behind a feature flag, so a sloppy consumer only finds out the
//! day it is switched on). The types here cannot express anything else. This module also holds
//! the token request and response shapes; sending them is the HTTP layer's job.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::jwk::RsaPrivateKey;
use super::jws::{self, JwsFormatError, Part, SignError};

/// The only `client_assertion_type` PDND accepts (RFC 7523).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The only `grant_type` PDND accepts.
pub const GRANT_TYPE: &str = "client_credentials";

/// The `digest` claim binding a voucher to one `Agid-JWT-TrackingEvidence` JWS (AUDIT_REST_02):
/// lowercase hex SHA-256 of the exact compact JWS string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestClaim {
    pub alg: String,
    pub value: String,
}

impl DigestClaim {
    /// The digest of the compact JWS exactly as it will travel in the header: no trimming, no
    /// trailing newline (PDND's own docs example hashed one by mistake).
    pub fn sha256_of(jws: &str) -> Self {
        Self {
            alg: "SHA256".to_owned(),
            value: hex::encode(Sha256::digest(jws.as_bytes())),
        }
    }

    /// True when this digest is the SHA-256 of `jws` (the erogatore's AUDIT_REST_02 check).
    /// Hex case is ignored, the algorithm must be `SHA256`.
    pub fn matches(&self, jws: &str) -> bool {
        self.alg == "SHA256" && self.value.eq_ignore_ascii_case(&Self::sha256_of(jws).value)
    }
}

/// The claims of a client assertion, in the order PDND documents them. No `nbf`, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(rename = "purposeId", default, skip_serializing_if = "Option::is_none")]
    pub purpose_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestClaim>,
}

/// The header of a client assertion, exactly `{alg, kid, typ}`.
#[derive(Serialize)]
struct AssertionHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// Why a client assertion could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("cannot sign the client assertion: {0}")]
    Sign(#[from] SignError),
    #[error("the client assertion lifetime must be positive, not {0} s")]
    NonPositiveLifetime(i64),
}

/// Builds client assertions for one client (and optionally one purpose and tracking evidence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAssertionBuilder {
    /// The PDND client id (a UUID); becomes `iss` and `sub`.
    pub client_id: String,
    /// The authorisation server's assertion audience, e.g. `auth.interop.pagopa.it/client-assertion`
    /// (no scheme).
    pub audience: String,
    /// Required for e-service vouchers, absent for PDND API (m2m) vouchers.
    pub purpose_id: Option<String>,
    /// AUDIT_REST_02 binding to one tracking-evidence JWS.
    pub digest: Option<DigestClaim>,
    /// `exp - iat`; keep it short (PDND's example uses 600 s).
    pub lifetime_secs: i64,
}

impl ClientAssertionBuilder {
    /// The claims for an assertion issued at `now` with the given `jti`.
    pub fn claims(&self, now: i64, jti: String) -> ClientAssertionClaims {
        ClientAssertionClaims {
            iss: self.client_id.clone(),
            sub: self.client_id.clone(),
            aud: self.audience.clone(),
            jti,
            iat: now,
            exp: now + self.lifetime_secs,
            purpose_id: self.purpose_id.clone(),
            digest: self.digest.clone(),
        }
    }

    /// Signs a fresh assertion (new UUID v4 `jti`) with `key`; the header is exactly
    /// `{"alg":"RS256","kid":<thumbprint>,"typ":"JWT"}`.
    pub fn sign(&self, key: &RsaPrivateKey, now: i64) -> Result<SignedAssertion, AssertionError> {
        if self.lifetime_secs <= 0 {
            return Err(AssertionError::NonPositiveLifetime(self.lifetime_secs));
        }
        let claims = self.claims(now, uuid::Uuid::new_v4().to_string());
        let kid = key.kid();
        let header = AssertionHeader {
            alg: "RS256",
            kid: &kid,
            typ: "JWT",
        };
        let jws = jws::sign_rs256(&header, &claims, key)?;
        Ok(SignedAssertion { jws, claims })
    }
}

/// A signed client assertion and the claims inside it (for logging what was sent: PDND's
/// answer to a bad assertion never says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAssertion {
    pub jws: String,
    pub claims: ClientAssertionClaims,
}

/// The form fields of `POST /token.oauth2` (application/x-www-form-urlencoded).
///
/// Every field defaults when absent on parsing, so the authority can name the missing one
/// (e.g. an empty `grant_type` is refused as an invalid grant type) rather than fail the form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_assertion: String,
    #[serde(default)]
    pub client_assertion_type: String,
    #[serde(default)]
    pub grant_type: String,
}

impl TokenRequest {
    /// The request PDND expects for `assertion`, with `client_id` sent explicitly.
    pub fn new(client_id: &str, assertion: &SignedAssertion) -> Self {
        Self {
            client_id: Some(client_id.to_owned()),
            client_assertion: assertion.jws.clone(),
            client_assertion_type: CLIENT_ASSERTION_TYPE.to_owned(),
            grant_type: GRANT_TYPE.to_owned(),
        }
    }
}

/// PDND's 200 answer. Older PDND answers (and docs) omit `token_type`; it then means Bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    pub expires_in: i64,
}

impl TokenResponse {
    /// The `Authorization` scheme to present the voucher with: `DPoP` for DPoP-bound vouchers,
    /// `Bearer` otherwise (including when `token_type` is absent).
    pub fn authorization_scheme(&self) -> &'static str {
        match self.token_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("DPoP") => "DPoP",
            _ => "Bearer",
        }
    }
}

/// Decodes header and claims of a JWS without verifying anything, to show what was sent.
pub fn decode_unverified(jws: &str) -> Result<(Value, Value), JwsFormatError> {
    let [header, payload, _] = jws::split(jws)?;
    let header = jws::decode_object(header, Part::Header)?;
    let payload = jws::decode_object(payload, Part::Payload)?;
    Ok((Value::Object(header), Value::Object(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::jws::CompactJws;
    use crate::pdnd::test_keys;

    const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";
    const NOW: i64 = 1_616_170_068;
    /// PDND's documentation: its sample tracking-evidence JWS.
    const EVIDENCE: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlptWXhaR0UyWWpRdE16WTJZeTAwTldJNUxUaGpOR0l0TURKbVltUXlaR0l5TW1aaCIsInR5cCI6ImF0K2p3dCJ9.eyJqdGkiOiJkc2Zkc2Zkc2ZkcyIsImEiOiJiIn0.2QcY5UpoE2PgJhe1FKnHx-SZZq_NS6AKDTlfFdpVP9Q";

    fn builder() -> ClientAssertionBuilder {
        ClientAssertionBuilder {
            client_id: CLIENT.into(),
            audience: "auth.interop.pagopa.it/client-assertion".into(),
            purpose_id: Some(PURPOSE.into()),
            digest: None,
            lifetime_secs: 600,
        }
    }

    #[test]
    fn assertion_has_exactly_pdnd_header_and_claims() {
        let key = test_keys::client();
        let signed = builder().sign(key, NOW).unwrap();
        let (header, claims) = decode_unverified(&signed.jws).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"})
        );
        let claims = claims.as_object().unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "purposeId", "sub"]
        );
        assert!(!claims.contains_key("nbf"));
        assert_eq!(claims["iss"], CLIENT);
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["aud"], "auth.interop.pagopa.it/client-assertion");
        assert_eq!(claims["purposeId"], PURPOSE);
        assert!(claims["iat"].is_i64() && claims["exp"].is_i64());
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 600);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        assert_eq!(claims["jti"], signed.claims.jti.as_str());
        assert!(CompactJws::parse(&signed.jws)
            .unwrap()
            .verify_rs256(key.public()));
    }

    #[test]
    fn m2m_assertion_has_no_purpose_and_digest_is_added_when_given() {
        let mut b = builder();
        b.purpose_id = None;
        let (_, claims) =
            decode_unverified(&b.sign(test_keys::client(), NOW).unwrap().jws).unwrap();
        assert!(claims.get("purposeId").is_none());
        assert!(claims.get("digest").is_none());

        b.digest = Some(DigestClaim::sha256_of(EVIDENCE));
        let (_, claims) =
            decode_unverified(&b.sign(test_keys::client(), NOW).unwrap().jws).unwrap();
        assert_eq!(
            claims["digest"],
            serde_json::json!({"alg": "SHA256", "value": "79ba8c02000c582fbd1631197e83640d0fb0ecb33f1ef641e7c633ac3df556e5"})
        );
    }

    #[test]
    fn every_assertion_gets_a_fresh_jti() {
        let key = test_keys::client();
        let a = builder().sign(key, NOW).unwrap();
        let b = builder().sign(key, NOW).unwrap();
        assert_ne!(a.claims.jti, b.claims.jti);
        assert_ne!(a.jws, b.jws);
    }

    #[test]
    fn non_positive_lifetime_is_refused() {
        let mut b = builder();
        b.lifetime_secs = 0;
        assert!(matches!(
            b.sign(test_keys::client(), NOW),
            Err(AssertionError::NonPositiveLifetime(0))
        ));
    }

    #[test]
    fn digest_of_the_pdnd_vector() {
        let digest = DigestClaim::sha256_of(EVIDENCE);
        assert_eq!(digest.alg, "SHA256");
        assert_eq!(
            digest.value,
            "79ba8c02000c582fbd1631197e83640d0fb0ecb33f1ef641e7c633ac3df556e5"
        );
        assert!(digest.matches(EVIDENCE));
        let with_newline = DigestClaim::sha256_of(&format!("{EVIDENCE}\n"));
        assert_eq!(
            with_newline.value,
            "5db26201b684761d2b970329ab8596773164ba1b43b1559980e20045941b8065"
        );
        assert_ne!(with_newline, digest);
        assert!(!with_newline.matches(EVIDENCE));
        assert!(!digest.matches(&format!("{EVIDENCE}\n")));
    }

    #[test]
    fn token_request_form_fields() {
        let signed = builder().sign(test_keys::client(), NOW).unwrap();
        let request = TokenRequest::new(CLIENT, &signed);
        let form = serde_json::to_value(&request).unwrap();
        assert_eq!(form["client_id"], CLIENT);
        assert_eq!(form["client_assertion"], signed.jws.as_str());
        assert_eq!(form["client_assertion_type"], CLIENT_ASSERTION_TYPE);
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form.as_object().unwrap().len(), 4);
        let parsed: TokenRequest = serde_json::from_value(form).unwrap();
        assert_eq!(parsed, request);
    }

    #[test]
    fn token_response_with_and_without_token_type() {
        let old: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":600}"#).unwrap();
        assert_eq!(old.token_type, None);
        assert_eq!(old.authorization_scheme(), "Bearer");
        let dpop: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","token_type":"DPoP","expires_in":60}"#)
                .unwrap();
        assert_eq!(dpop.authorization_scheme(), "DPoP");
        assert!(serde_json::from_str::<TokenResponse>(r#"{"access_token":"abc"}"#).is_err());
    }

    #[test]
    fn decode_unverified_rejects_non_jws() {
        assert_eq!(
            decode_unverified("abc").unwrap_err(),
            JwsFormatError::SegmentCount(1)
        );
    }
}
