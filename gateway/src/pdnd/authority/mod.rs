//! The logic of the development PDND authorisation server (`POST /token.oauth2`).
//!
//! It exists so the gateway (and anyone integrating with it) can be exercised end to end without
//! PDND's collaudo environment, and it is only useful if it refuses exactly what PDND refuses.
//! The checks therefore follow PagoPA's reference implementation (interop-be-monorepo,
//! `authorization-server` tokenService.generateToken and `client-assertion-validation`) step by
//! step and in its order: request parameters; claims decoded without verification, with every
//! failing claim collected; claim types; the key lookup (`(clientId, kid, purposeId)` when the
//! assertion names a purpose, so an API Interop client asking with one finds no entry); the
//! header's `crit`, the RS256 signature and `nbf`/`exp` with no clock tolerance, as
//! `jose.jwtVerify` checks them; the purpose. Rate limiting is not modelled.
//! DPoP (RFC 9449) is: a token request with a valid proof ([`Authority::check_dpop_proof`],
//! PDND's step 1) gets a voucher bound to the proof's key (`cnf.jkt`) and `token_type: DPoP`
//! ([`Authority::issue_bound`]); a proof's `jti` is single use, which the HTTP face enforces.
//! Vouchers are shaped byte for byte like PDND's (`typ: at+jwt`, `use: sig`, `aud` as ONE
//! comma-joined string). The HTTP layer answers every [`Rejection`] with PDND's opaque
//! [`pdnd_error_body`] and logs its `Display`, which names each failed rule.

//!
//! The rules live in [`rules`] (one function per step), the refusals in [`rejection`], the
//! voucher's shape in [`voucher_shape`], API Interop (M2M) clients in [`m2m`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client_assertion::{DigestClaim, TokenRequest, TokenResponse};
use super::dpop::{self, DpopError, ProofPolicy, ProofRequest, VerifiedProof};
use super::jwk::{JwkSet, RsaPrivateKey, RsaPublicKey};
use super::jws;

mod m2m;
mod rejection;
mod rules;
mod voucher_shape;

pub use m2m::{M2mCaller, M2mRefusal, M2M_ROLE};
pub use rejection::{pdnd_error_body, AssertionRejection, Rejection};
use rules::{
    check_claim_types, check_purpose, check_request_parameters, decode_assertion, verify_signature,
};
use voucher_shape::{Confirmation, VoucherClaims, VoucherHeader};

/// A purpose (finalità) a client may obtain vouchers for, with the e-service it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredPurpose {
    pub purpose_id: String,
    pub eservice_id: String,
    pub descriptor_id: String,
    pub producer_id: String,
    /// The audiences of the e-service descriptor; the voucher's `aud` joins them with ",".
    pub audience: Vec<String>,
    /// PDND's purpose, agreement and descriptor state all ACTIVE.
    pub active: bool,
}

/// A consumer client with its one registered public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredClient {
    pub client_id: String,
    pub consumer_id: String,
    pub public_key: RsaPublicKey,
    pub purposes: Vec<RegisteredPurpose>,
}

/// An "API Interop" (M2M) client: it calls the PDND API (e.g. `GET /keys/{kid}`), not an
/// e-service, so its assertions carry no `purposeId` and its vouchers name its organisation
/// and role instead of a purpose (interopTokenService.generateInteropApiToken).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredApiClient {
    pub client_id: String,
    /// The tenant the client belongs to: the voucher's `organizationId`.
    pub organization_id: String,
    pub public_key: RsaPublicKey,
}

/// What the authority is: its issuer name, the assertion audiences it answers to, and how long
/// its vouchers last (on PDND, the producer's descriptor voucher lifespan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityConfig {
    /// The voucher `iss`, e.g. `interop.pagopa.it` or `uat.interop.pagopa.it`.
    pub issuer: String,
    /// Accepted client-assertion `aud` values, e.g. `auth.uat.interop.pagopa.it/client-assertion`.
    pub assertion_audiences: Vec<String>,
    pub voucher_lifetime_secs: i64,
}

/// The development authorisation server: registered clients and the voucher-signing key.
#[derive(Clone, Debug)]
pub struct Authority {
    signing_key: RsaPrivateKey,
    kid: String,
    config: AuthorityConfig,
    /// Each client with the thumbprint of its key, the `kid` its assertions must carry.
    clients: Vec<(String, RegisteredClient)>,
    /// API Interop clients, each with the thumbprint of its key.
    api_clients: Vec<(String, RegisteredApiClient)>,
    /// The `aud` of M2M vouchers (PDND: GENERATED_INTEROP_TOKEN_M2M_AUDIENCE).
    m2m_audience: Option<String>,
    strict_claims: bool,
}

impl Authority {
    pub fn new(
        signing_key: RsaPrivateKey,
        config: AuthorityConfig,
        clients: Vec<RegisteredClient>,
    ) -> Self {
        let kid = signing_key.kid();
        let clients = clients
            .into_iter()
            .map(|c| (c.public_key.thumbprint(), c))
            .collect();
        Self {
            signing_key,
            kid,
            config,
            clients,
            api_clients: Vec::new(),
            m2m_audience: None,
            strict_claims: false,
        }
    }

    /// Also registers API Interop (M2M) clients: they may omit `purposeId` and get vouchers
    /// with `aud` = `m2m_audience` (e.g. `dev.interop.local/m2m`; on PDND
    /// `api.interop.pagopa.it/v2`), `organizationId` and `role: "m2m"`, which
    /// [`Authority::verify_m2m_voucher`] accepts for the PDND API routes.
    pub fn with_api_clients(
        mut self,
        m2m_audience: impl Into<String>,
        clients: Vec<RegisteredApiClient>,
    ) -> Self {
        self.m2m_audience = Some(m2m_audience.into());
        self.api_clients = clients
            .into_iter()
            .map(|c| (c.public_key.thumbprint(), c))
            .collect();
        self
    }

    /// The `aud` of this authority's M2M vouchers, if it has API clients.
    pub fn m2m_audience(&self) -> Option<&str> {
        self.m2m_audience.as_deref()
    }

    /// Also refuse header members other than `kid, alg, typ` and claims other than `iss, sub,
    /// aud, jti, iat, exp, purposeId, digest` (e.g. `nbf`), as PDND does once its
    /// `FEATURE_FLAG_CLIENT_ASSERTION_STRICT_CLAIMS_VALIDATION` is on. Off by default, like PDND.
    pub fn with_strict_claims(mut self, strict: bool) -> Self {
        self.strict_claims = strict;
        self
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// The `kid` of the voucher-signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The authority's voucher-signing key(s), as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet::single(&self.kid, self.signing_key.public())
    }

    /// A registered client's public JWK by `kid` (PDND API `GET /keys/{kid}`), consumer or
    /// API client alike.
    pub fn client_key(&self, kid: &str) -> Option<Value> {
        self.clients
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(k, c)| c.public_key.to_jwk(k))
            .or_else(|| {
                self.api_clients
                    .iter()
                    .find(|(k, _)| k == kid)
                    .map(|(k, c)| c.public_key.to_jwk(k))
            })
    }

    /// Checks a token request as PDND does and, if every rule holds, issues a voucher.
    pub fn issue(&self, request: &TokenRequest, now: i64) -> Result<TokenResponse, Rejection> {
        self.issue_bound(request, None, now)
    }

    /// PDND's step 1 for a request with a `DPoP` header: a valid proof for `POST` to
    /// `token_url` (the URL clients are configured with, never taken from the request), with
    /// PDND's 60 s / 10 s window and no `ath` (no voucher exists yet). The `jti` is the caller's
    /// to remember.
    pub fn check_dpop_proof(
        &self,
        proof: &str,
        token_url: &str,
        now: i64,
    ) -> Result<VerifiedProof, Rejection> {
        let request = ProofRequest {
            method: "POST",
            url: token_url,
            access_token: None,
        };
        dpop::verify(proof, &request, &ProofPolicy::default(), now).map_err(|e| {
            Rejection::one(match e {
                DpopError::BadSignature => AssertionRejection::DpopProofSignature,
                other => AssertionRejection::DpopProofInvalid(other),
            })
        })
    }

    /// [`Authority::issue`], binding the voucher to `proof`'s key when there is one: `cnf.jkt`
    /// in the voucher, `token_type: "DPoP"` in the answer.
    pub fn issue_bound(
        &self,
        request: &TokenRequest,
        proof: Option<&VerifiedProof>,
        now: i64,
    ) -> Result<TokenResponse, Rejection> {
        let jkt = proof.map(VerifiedProof::jkt);
        check_request_parameters(request)?;
        let assertion = decode_assertion(
            &request.client_assertion,
            request.client_id.as_deref(),
            &self.config.assertion_audiences,
        )?;
        check_claim_types(&assertion, self.strict_claims)?;

        let client_id = match request.client_id.as_deref() {
            Some(id) if !id.is_empty() => id,
            _ => assertion.sub.as_str(),
        };
        let client = self
            .clients
            .iter()
            .find(|(kid, c)| c.client_id == client_id && *kid == assertion.kid)
            .map(|(_, c)| c);
        let Some(client) = client else {
            // PDND looks the key up by (clientId, kid) for API clients, and generates their
            // token whatever the assertion says of purposes (validateClientKindAndPlatformState).
            let api_client = self
                .api_clients
                .iter()
                .find(|(kid, c)| c.client_id == client_id && *kid == assertion.kid)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    Rejection::one(AssertionRejection::EntryNotFound {
                        client_id: client_id.to_owned(),
                        kid: assertion.kid.clone(),
                    })
                })?;
            // With a purposeId PDND looks for a (clientId, kid, purposeId) entry, which an API
            // client never has: refused before its signature is even checked.
            if let Some(purpose_id) = &assertion.purpose_id {
                return Err(Rejection::one(AssertionRejection::ApiClientWithPurpose {
                    client_id: client_id.to_owned(),
                    purpose_id: purpose_id.clone(),
                }));
            }
            verify_signature(&assertion, &api_client.public_key, now)?;
            return self.sign_m2m_voucher(api_client, jkt, now);
        };

        verify_signature(&assertion, &client.public_key, now)?;
        let purpose = check_purpose(client, assertion.purpose_id.as_deref())?;
        self.sign_voucher(client, purpose, assertion.digest.as_ref(), jkt, now)
    }

    fn sign_voucher(
        &self,
        client: &RegisteredClient,
        purpose: &RegisteredPurpose,
        digest: Option<&DigestClaim>,
        jkt: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, Rejection> {
        let header = VoucherHeader {
            alg: "RS256",
            use_: "sig",
            typ: "at+jwt",
            kid: &self.kid,
        };
        let exp = now + self.config.voucher_lifetime_secs;
        let claims = VoucherClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            iss: &self.config.issuer,
            aud: purpose.audience.join(","),
            sub: &client.client_id,
            iat: now,
            nbf: now,
            exp,
            purpose_id: &purpose.purpose_id,
            client_id: &client.client_id,
            digest,
            producer_id: &purpose.producer_id,
            consumer_id: &client.consumer_id,
            eservice_id: &purpose.eservice_id,
            descriptor_id: &purpose.descriptor_id,
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

/// The answer's `token_type`: `DPoP` for a bound voucher, `Bearer` otherwise.
pub(super) fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

#[cfg(test)]
mod tests;
