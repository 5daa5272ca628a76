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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client_assertion::{
    DigestClaim, TokenRequest, TokenResponse, CLIENT_ASSERTION_TYPE, GRANT_TYPE,
};
use super::dpop::{self, DpopError, ProofPolicy, ProofRequest, VerifiedProof};
use super::jwk::{JwkSet, RsaPrivateKey, RsaPublicKey};
use super::jws::{self, Part};
use super::uuid_format::is_pdnd_uuid;

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

/// One PDND rule a client assertion broke. `code()` is PDND's error code, `Display` the
/// precise reason (PDND's own message where it has one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionRejection {
    #[error("Assertion type not valid: {0}")]
    InvalidAssertionType(String),
    #[error("Grant type not valid: {0}")]
    InvalidGrantType(String),
    #[error("Unexpected client assertion audience: {0}")]
    InvalidAudience(String),
    #[error("Audience not found in client assertion")]
    AudienceNotFound,
    #[error("Invalid format for Client assertion: {0}")]
    InvalidFormat(String),
    #[error("Unexpected client assertion: {0}")]
    UnexpectedClientAssertion(String),
    #[error("JTI not found in client assertion")]
    JtiNotFound,
    #[error("IAT not found in client assertion")]
    IssuedAtNotFound,
    #[error("EXP not found in client assertion")]
    ExpNotFound,
    #[error("Issuer not found in client assertion")]
    IssuerNotFound,
    #[error("Subject not found in client assertion")]
    SubjectNotFound,
    #[error("Subject claim value {0} does not correspond to provided client_id parameter")]
    InvalidSubject(String),
    #[error("Purpose Id claim {0} is not a valid UUID")]
    InvalidPurposeIdFormat(String),
    #[error("KID not found in client assertion")]
    KidNotFound,
    #[error("Token expired in client assertion signature validation")]
    TokenExpired,
    /// Another JOSE failure of the signature step, e.g. a `crit` naming an extension jose does
    /// not implement (PDND's 0016 clientAssertionSignatureVerificationError).
    #[error("Client assertion signature verification failed: {0}")]
    SignatureVerification(String),
    #[error("Invalid JWS in client assertion signature validation: {0}")]
    JsonWebToken(String),
    #[error("Client assertion is not valid yet (nbf in the future)")]
    NotBefore,
    #[error("Purpose state is: {0}")]
    InvalidPurposeState(String),
    #[error("Client id {0} is not a valid UUID")]
    InvalidClientIdFormat(String),
    #[error("Subject claim {0} is not a valid UUID")]
    InvalidSubjectFormat(String),
    #[error("Invalid digest claim. Reason: {0}")]
    InvalidDigestClaim(String),
    #[error("Invalid hash length for algorithm {0}")]
    InvalidHashLength(String),
    #[error("Invalid hash algorithm")]
    InvalidHashAlgorithm,
    #[error("ALG not found in client assertion")]
    AlgorithmNotFound,
    #[error("Algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("Claim purposeId does not exist in this assertion")]
    PurposeIdNotProvided,
    #[error("Unexpected format for kid")]
    InvalidKidFormat,
    #[error("Client assertion validation failure [reason: {reason}, part: {part}]")]
    InvalidClaims { part: &'static str, reason: String },
    #[error("Client assertion signature is invalid")]
    InvalidSignature,
    /// No key `kid` registered for client `client_id` (PDND: token-generation-states entry).
    #[error("No key {kid} registered for client {client_id}")]
    EntryNotFound { client_id: String, kid: String },
    /// PDND looks keys up by (clientId, kid, purposeId), so an unknown purpose is also a
    /// missing token-generation-states entry there; this variant names the cause.
    #[error("Client {client_id} is not associated with purpose {purpose_id}")]
    PurposeNotRegistered {
        client_id: String,
        purpose_id: String,
    },
    /// An API Interop (M2M) client's assertion names a purpose: PDND looks the key up by
    /// (clientId, kid, purposeId), and API clients have no entry for any purpose.
    #[error("API Interop client {client_id} has no token-generation entry for purpose {purpose_id} (M2M clients are not associated with purposes)")]
    ApiClientWithPurpose {
        client_id: String,
        purpose_id: String,
    },
    /// The `DPoP` header is not a valid proof for this token endpoint (PDND
    /// dpopProofValidationFailed).
    #[error("DPoP proof not valid: {0}")]
    DpopProofInvalid(DpopError),
    /// The proof's signature does not verify with its own `jwk` (PDND
    /// dpopProofSignatureValidationFailed).
    #[error("DPoP proof signature not valid")]
    DpopProofSignature,
    /// The proof's `jti` was already used (PDND dpopProofJtiAlreadyUsed).
    #[error("DPoP proof jti {0} already used")]
    DpopProofJtiAlreadyUsed(String),
    /// Signing the voucher failed: an internal error (HTTP 500), not the client's fault.
    #[error("Voucher signing failed: {0}")]
    VoucherSigning(String),
}

impl AssertionRejection {
    /// PDND's error code: `client-assertion-validation` codes "0002".."0033"; `entry-not-found`
    /// for the token-generation-states lookup; `internal` for our own failures.
    pub fn code(&self) -> &'static str {
        use AssertionRejection::*;
        match self {
            InvalidAssertionType(_) => "0002",
            InvalidGrantType(_) => "0003",
            InvalidAudience(_) => "0004",
            AudienceNotFound => "0005",
            InvalidFormat(_) => "0006",
            UnexpectedClientAssertion(_) => "0007",
            JtiNotFound => "0008",
            IssuedAtNotFound => "0009",
            ExpNotFound => "0010",
            IssuerNotFound => "0011",
            SubjectNotFound => "0012",
            InvalidSubject(_) => "0013",
            InvalidPurposeIdFormat(_) => "0014",
            KidNotFound => "0015",
            SignatureVerification(_) => "0016",
            TokenExpired => "0017",
            JsonWebToken(_) => "0018",
            NotBefore => "0019",
            InvalidPurposeState(_) => "0020",
            InvalidClientIdFormat(_) => "0023",
            InvalidSubjectFormat(_) => "0024",
            InvalidDigestClaim(_) => "0025",
            InvalidHashLength(_) => "0026",
            InvalidHashAlgorithm => "0027",
            AlgorithmNotFound => "0028",
            AlgorithmNotAllowed(_) => "0029",
            PurposeIdNotProvided => "0030",
            InvalidKidFormat => "0031",
            InvalidClaims { .. } => "0032",
            InvalidSignature => "0033",
            EntryNotFound { .. } | PurposeNotRegistered { .. } | ApiClientWithPurpose { .. } => {
                "entry-not-found"
            }
            // The authorization server's own codes (errors.ts), with its service prefix.
            DpopProofInvalid(_) => "015-0009",
            DpopProofSignature => "015-0010",
            DpopProofJtiAlreadyUsed(_) => "015-0012",
            VoucherSigning(_) => "internal",
        }
    }

    /// True for failures of the authority itself (answer 500, not PDND's 400).
    pub fn is_internal(&self) -> bool {
        matches!(self, AssertionRejection::VoucherSigning(_))
    }
}

/// Every rule the token request broke, in the order PDND checks them. Only the failures of the
/// first failing step are listed, as PDND stops at the first step that fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub errors: Vec<AssertionRejection>,
}

impl Rejection {
    fn one(error: AssertionRejection) -> Self {
        Self {
            errors: vec![error],
        }
    }

    /// True when the authority itself failed (HTTP 500 rather than PDND's generic 400).
    pub fn is_internal(&self) -> bool {
        self.errors.iter().any(AssertionRejection::is_internal)
    }
}

impl From<AssertionRejection> for Rejection {
    /// A request that broke one rule.
    fn from(error: AssertionRejection) -> Self {
        Self::one(error)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("token request refused:")?;
        for (i, e) in self.errors.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            write!(f, "{sep}[{}] {e}", e.code())?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

/// PDND's answer to any refused token request: HTTP 400, `application/problem+json`, the same
/// body whatever the cause, so the consumer cannot learn which rule it broke.
pub fn pdnd_error_body(correlation_id: &str) -> Value {
    serde_json::json!({
        "type": "about:blank",
        "status": 400,
        "title": "The request contains bad syntax or cannot be fulfilled.",
        "detail": "Bad request",
        "errors": [{"code": "015-0008", "detail": "Unable to generate a token for the given request"}],
        "correlationId": correlation_id,
    })
}

/// The header PDND puts on vouchers (interopTokenService.ts), in its member order.
#[derive(Serialize)]
struct VoucherHeader<'a> {
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The claims PDND puts in a consumer voucher (generateInteropConsumerToken).
#[derive(Serialize)]
struct VoucherClaims<'a> {
    jti: String,
    iss: &'a str,
    /// PDND serialises its audience array as ONE comma-joined string (jwtEncoder.ts).
    aud: String,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(rename = "purposeId")]
    purpose_id: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a DigestClaim>,
    #[serde(rename = "producerId")]
    producer_id: &'a str,
    #[serde(rename = "consumerId")]
    consumer_id: &'a str,
    #[serde(rename = "eserviceId")]
    eservice_id: &'a str,
    #[serde(rename = "descriptorId")]
    descriptor_id: &'a str,
    /// The DPoP binding, when the token request carried a proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// `cnf` (RFC 7800) of a DPoP-bound voucher: the thumbprint of the proof key (RFC 9449 6.1).
#[derive(Serialize)]
struct Confirmation<'a> {
    jkt: &'a str,
}

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

/// A client assertion whose claims passed step 3 (nothing verified yet).
struct DecodedAssertion<'a> {
    signing_input: &'a str,
    signature_b64: &'a str,
    header: Map<String, Value>,
    payload: Map<String, Value>,
    kid: String,
    sub: String,
    purpose_id: Option<String>,
    digest: Option<DigestClaim>,
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

    fn sign_m2m_voucher(
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
fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

/// Step 2: `client_assertion_type` and `grant_type`, both reported when both are wrong.
fn check_request_parameters(request: &TokenRequest) -> Result<(), Rejection> {
    let mut errors = Vec::new();
    if request.client_assertion_type != CLIENT_ASSERTION_TYPE {
        errors.push(AssertionRejection::InvalidAssertionType(
            request.client_assertion_type.clone(),
        ));
    }
    if request.grant_type != GRANT_TYPE {
        errors.push(AssertionRejection::InvalidGrantType(
            request.grant_type.clone(),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection { errors })
    }
}

/// JavaScript truthiness, which is what PDND's `if (!claim)` presence checks test: absent,
/// `null`, `false`, `0` and `""` all count as missing.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// A claim value as PDND would print it in a message.
fn shown(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn is_kid_format(kid: &str) -> bool {
    kid.len() == 43
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Step 3 (verifyClientAssertion): decode without verifying, then check every claim, collecting
/// all failures in PDND's order: jti, iat, exp, iss, sub (+client_id), purposeId, kid, aud,
/// alg, digest.
fn decode_assertion<'a>(
    token: &'a str,
    client_id: Option<&str>,
    audiences: &[String],
) -> Result<DecodedAssertion<'a>, Rejection> {
    use AssertionRejection::*;
    // jose.decodeJwt reads the payload first (JWTInvalid -> 0006), then decodeProtectedHeader
    // reads the header (a TypeError -> 0007).
    let [header_b64, payload_b64, signature_b64] =
        jws::split(token).map_err(|e| Rejection::one(InvalidFormat(e.to_string())))?;
    let payload = jws::decode_object(payload_b64, Part::Payload)
        .map_err(|e| Rejection::one(InvalidFormat(e.to_string())))?;
    let header = jws::decode_object(header_b64, Part::Header)
        .map_err(|e| Rejection::one(UnexpectedClientAssertion(e.to_string())))?;

    let mut errors = Vec::new();
    let claim = |name: &str| payload.get(name);
    if !truthy(claim("jti")) {
        errors.push(JtiNotFound);
    }
    if !truthy(claim("iat")) {
        errors.push(IssuedAtNotFound);
    }
    if !truthy(claim("exp")) {
        errors.push(ExpNotFound);
    }
    if !truthy(claim("iss")) {
        errors.push(IssuerNotFound);
    }

    let sub = claim("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !truthy(claim("sub")) {
        errors.push(SubjectNotFound);
    } else if !is_pdnd_uuid(&sub) {
        errors.push(InvalidSubjectFormat(shown(claim("sub"))));
    } else if let Some(client_id) = client_id.filter(|c| !c.is_empty()) {
        if !is_pdnd_uuid(client_id) {
            errors.push(InvalidClientIdFormat(client_id.to_owned()));
        } else if sub != client_id {
            errors.push(InvalidSubject(sub.clone()));
        }
    }

    let purpose_id = claim("purposeId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    if truthy(claim("purposeId")) && !purpose_id.is_some_and(is_pdnd_uuid) {
        errors.push(InvalidPurposeIdFormat(
            purpose_id.unwrap_or_default().to_owned(),
        ));
    }

    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !truthy(header.get("kid")) {
        errors.push(KidNotFound);
    } else if !is_kid_format(&kid) {
        errors.push(InvalidKidFormat);
    }

    match claim("aud") {
        aud if !truthy(aud) => errors.push(AudienceNotFound),
        Some(Value::Array(received)) => {
            if !audiences
                .iter()
                .any(|a| received.iter().any(|r| r.as_str() == Some(a)))
            {
                errors.push(InvalidAudience(shown(claim("aud"))));
            }
        }
        aud => {
            if !audiences
                .iter()
                .any(|a| aud.and_then(Value::as_str) == Some(a))
            {
                errors.push(InvalidAudience(shown(aud)));
            }
        }
    }

    match header.get("alg") {
        alg if !truthy(alg) => errors.push(AlgorithmNotFound),
        Some(Value::String(alg)) if alg == "RS256" => {}
        alg => errors.push(AlgorithmNotAllowed(shown(alg))),
    }

    let digest = match check_digest(claim("digest")) {
        Ok(digest) => digest,
        Err(mut digest_errors) => {
            errors.append(&mut digest_errors);
            None
        }
    };

    if !errors.is_empty() {
        return Err(Rejection { errors });
    }
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(DecodedAssertion {
        signing_input,
        signature_b64,
        purpose_id: purpose_id.map(str::to_owned),
        header,
        payload,
        kid,
        sub,
        digest,
    })
}

/// The `digest` claim: optional, but when present exactly `{alg, value}` (both strings, no
/// other member), `value` 64 characters long and `alg` exactly `SHA256`.
fn check_digest(digest: Option<&Value>) -> Result<Option<DigestClaim>, Vec<AssertionRejection>> {
    use AssertionRejection::*;
    if !truthy(digest) {
        return Ok(None);
    }
    let Some(Value::Object(members)) = digest else {
        return Err(vec![InvalidDigestClaim(format!(
            "expected an object, got {}",
            shown(digest)
        ))]);
    };
    if let Some(extra) = members.keys().find(|k| *k != "alg" && *k != "value") {
        return Err(vec![InvalidDigestClaim(format!(
            "unrecognized key `{extra}`"
        ))]);
    }
    let (Some(Value::String(alg)), Some(Value::String(value))) =
        (members.get("alg"), members.get("value"))
    else {
        return Err(vec![InvalidDigestClaim(
            "`alg` and `value` must be strings".to_owned(),
        )]);
    };
    let mut errors = Vec::new();
    if value.chars().count() != 64 {
        errors.push(InvalidHashLength(alg.clone()));
    }
    if alg != "SHA256" {
        errors.push(InvalidHashAlgorithm);
    }
    if errors.is_empty() {
        Ok(Some(DigestClaim {
            alg: alg.clone(),
            value: value.clone(),
        }))
    } else {
        Err(errors)
    }
}

/// Step 3, second half: PDND's zod schemas for header and payload types (0032), reached only
/// when every claim check passed. Strict mode also refuses members PDND does not allow.
fn check_claim_types(assertion: &DecodedAssertion<'_>, strict: bool) -> Result<(), Rejection> {
    let (header, payload) = (&assertion.header, &assertion.payload);
    let mut header_problems = Vec::new();
    let is_string = |v: Option<&Value>| matches!(v, Some(Value::String(_)));
    let is_number = |v: Option<&Value>| matches!(v, Some(Value::Number(_)));
    for name in ["kid", "alg"] {
        if !is_string(header.get(name)) {
            header_problems.push(format!("{name} must be a string"));
        }
    }
    if header.get("typ").is_some() && !is_string(header.get("typ")) {
        header_problems.push("typ must be a string".to_owned());
    }

    let mut payload_problems = Vec::new();
    for name in ["jti", "iss", "sub"] {
        if !is_string(payload.get(name)) {
            payload_problems.push(format!("{name} must be a string"));
        }
    }
    for name in ["iat", "exp"] {
        if !is_number(payload.get(name)) {
            payload_problems.push(format!("{name} must be a number"));
        }
    }
    let aud_ok = match payload.get("aud") {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        _ => false,
    };
    if !aud_ok {
        payload_problems.push("aud must be a string or an array of strings".to_owned());
    }
    if let Some(purpose) = payload.get("purposeId") {
        if !purpose.as_str().is_some_and(is_pdnd_uuid) {
            payload_problems.push("purposeId must be a UUID".to_owned());
        }
    }
    if let Some(digest) = payload.get("digest") {
        if !digest.is_null() && !digest.is_object() {
            payload_problems.push("digest must be an object or null".to_owned());
        }
    }

    if strict {
        const HEADER: [&str; 3] = ["kid", "alg", "typ"];
        const PAYLOAD: [&str; 8] = [
            "iss",
            "sub",
            "aud",
            "jti",
            "iat",
            "exp",
            "purposeId",
            "digest",
        ];
        for name in header.keys().filter(|k| !HEADER.contains(&k.as_str())) {
            header_problems.push(format!("unrecognized key `{name}`"));
        }
        for name in payload.keys().filter(|k| !PAYLOAD.contains(&k.as_str())) {
            payload_problems.push(format!("unrecognized key `{name}`"));
        }
    }

    let mut errors = Vec::new();
    if !header_problems.is_empty() {
        errors.push(AssertionRejection::InvalidClaims {
            part: "header",
            reason: header_problems.join(", "),
        });
    }
    if !payload_problems.is_empty() {
        errors.push(AssertionRejection::InvalidClaims {
            part: "payload",
            reason: payload_problems.join(", "),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection { errors })
    }
}

/// Step 5 (verifyClientAssertionSignature): `jose.jwtVerify` with RS256 and no clock tolerance:
/// the header's `crit` first, then the signature, then `nbf` (> now fails), then `exp`
/// (<= now fails).
fn verify_signature(
    assertion: &DecodedAssertion<'_>,
    key: &RsaPublicKey,
    now: i64,
) -> Result<(), Rejection> {
    use AssertionRejection::*;
    let unencoded_payload = check_crit_as_jose(&assertion.header)?;
    if jws::decode_bytes(assertion.signature_b64, Part::Signature).is_err() {
        return Err(Rejection::one(JsonWebToken(
            "the signature is not base64url".to_owned(),
        )));
    }
    if !jws::verify_rs256(assertion.signing_input, assertion.signature_b64, key) {
        return Err(Rejection::one(InvalidSignature));
    }
    if unencoded_payload {
        // jose's jwtVerify, after a good signature (the signing input is the same bytes).
        return Err(Rejection::one(SignatureVerification(
            "JWTs MUST NOT use unencoded payload".to_owned(),
        )));
    }
    let now = now as f64;
    if let Some(nbf) = assertion.payload.get("nbf") {
        // jose reports a non-numeric nbf as a failed nbf claim too, which PDND maps to 0019.
        if nbf.as_f64().is_none_or(|nbf| nbf > now) {
            return Err(Rejection::one(NotBefore));
        }
    }
    // Step 3 established that exp is a number.
    if assertion
        .payload
        .get("exp")
        .and_then(Value::as_f64)
        .is_none_or(|exp| exp <= now)
    {
        return Err(Rejection::one(TokenExpired));
    }
    Ok(())
}

/// The `crit` rules of jose's JWS verification (validateCrit), which PDND's jwtVerify applies
/// before the signature: `crit` must be a non-empty array of non-empty strings (JWSInvalid,
/// PDND's 0018); jose implements one extension, `b64` (RFC 7797), so any other name is
/// refused as not recognised (JOSENotSupported, 0016); a listed `b64` must be present and a
/// boolean (0018). Returns whether the payload is declared unencoded (`b64: false`), which
/// jwtVerify refuses once the signature has verified.
fn check_crit_as_jose(header: &Map<String, Value>) -> Result<bool, Rejection> {
    use AssertionRejection::*;
    let names = jws::critical_extensions(header).map_err(|_| {
        Rejection::one(JsonWebToken(
            "\"crit\" (Critical) Header Parameter MUST be an array of non-empty strings when present"
                .to_owned(),
        ))
    })?;
    for name in &names {
        if *name != "b64" {
            return Err(Rejection::one(SignatureVerification(format!(
                "Extension Header Parameter \"{name}\" is not recognized"
            ))));
        }
        if header.get(*name).is_none() {
            return Err(Rejection::one(JsonWebToken(format!(
                "Extension Header Parameter \"{name}\" is missing"
            ))));
        }
    }
    if !names.contains(&"b64") {
        return Ok(false);
    }
    match header.get("b64") {
        Some(Value::Bool(b64)) => Ok(!b64),
        _ => Err(Rejection::one(JsonWebToken(
            "The \"b64\" (base64url-encode payload) Header Parameter must be a boolean".to_owned(),
        ))),
    }
}

/// Step 6 for consumer clients: a purpose is required, must be one the client is associated
/// with, and must be active.
fn check_purpose<'c>(
    client: &'c RegisteredClient,
    purpose_id: Option<&str>,
) -> Result<&'c RegisteredPurpose, Rejection> {
    let purpose_id =
        purpose_id.ok_or_else(|| Rejection::one(AssertionRejection::PurposeIdNotProvided))?;
    let purpose = client
        .purposes
        .iter()
        .find(|p| p.purpose_id == purpose_id)
        .ok_or_else(|| {
            Rejection::one(AssertionRejection::PurposeNotRegistered {
                client_id: client.client_id.clone(),
                purpose_id: purpose_id.to_owned(),
            })
        })?;
    if !purpose.active {
        return Err(Rejection::one(AssertionRejection::InvalidPurposeState(
            "INACTIVE".to_owned(),
        )));
    }
    Ok(purpose)
}

#[cfg(test)]
mod tests {
    use super::AssertionRejection as R;
    use super::*;
    use crate::pdnd::client_assertion::{decode_unverified, ClientAssertionBuilder};
    use crate::pdnd::jws::{b64url, CompactJws};
    use crate::pdnd::test_keys;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    const CONSUMER: &str = "6b3f3fd2-6e1c-4f2b-9b2a-5b1f7d7c0a11";
    const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";
    const SUSPENDED: &str = "5d1c1e6a-2b1f-4a57-8a77-3f0c6a2c9e01";
    const UNREGISTERED: &str = "0f4d2a9e-8c3b-4c1d-9e7f-1a2b3c4d5e6f";
    const AUD: &str = "auth.uat.interop.pagopa.it/client-assertion";
    const NOW: i64 = 1_700_000_000;
    const EVIDENCE_DIGEST: &str =
        "79ba8c02000c582fbd1631197e83640d0fb0ecb33f1ef641e7c633ac3df556e5";

    fn purpose(purpose_id: &str, active: bool) -> RegisteredPurpose {
        RegisteredPurpose {
            purpose_id: purpose_id.into(),
            eservice_id: "e1a2b3c4-0000-4000-8000-000000000001".into(),
            descriptor_id: "d1a2b3c4-0000-4000-8000-000000000002".into(),
            producer_id: "b1a2b3c4-0000-4000-8000-000000000003".into(),
            audience: vec![
                "https://comune.example/anagrafe/v1".into(),
                "anagrafe-v1".into(),
            ],
            active,
        }
    }

    fn authority() -> Authority {
        Authority::new(
            test_keys::authority().clone(),
            AuthorityConfig {
                issuer: "uat.interop.pagopa.it".into(),
                assertion_audiences: vec![
                    AUD.into(),
                    "auth.interop.pagopa.it/client-assertion".into(),
                ],
                voucher_lifetime_secs: 600,
            },
            vec![RegisteredClient {
                client_id: CLIENT.into(),
                consumer_id: CONSUMER.into(),
                public_key: test_keys::client().public().clone(),
                purposes: vec![purpose(PURPOSE, true), purpose(SUSPENDED, false)],
            }],
        )
    }

    fn header() -> Value {
        json!({"alg": "RS256", "kid": test_keys::client().kid(), "typ": "JWT"})
    }

    fn claims() -> Value {
        json!({
            "iss": CLIENT, "sub": CLIENT, "aud": AUD, "jti": "23387ac1-c192-4573-8350-207a4213d4be",
            "iat": NOW - 10, "exp": NOW + 590, "purposeId": PURPOSE,
        })
    }

    fn forge(header: &Value, claims: &Value) -> String {
        jws::sign_rs256(header, claims, test_keys::client()).unwrap()
    }

    fn request(assertion: String) -> TokenRequest {
        TokenRequest {
            client_id: Some(CLIENT.into()),
            client_assertion: assertion,
            client_assertion_type: CLIENT_ASSERTION_TYPE.into(),
            grant_type: "client_credentials".into(),
        }
    }

    fn refused(request: &TokenRequest) -> Vec<AssertionRejection> {
        authority()
            .issue(request, NOW)
            .expect_err("the request must be refused")
            .errors
    }

    fn refused_token(token: String) -> Vec<AssertionRejection> {
        refused(&request(token))
    }

    fn with_claims(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<AssertionRejection> {
        let mut c = claims();
        edit(c.as_object_mut().unwrap());
        refused_token(forge(&header(), &c))
    }

    fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<AssertionRejection> {
        let mut h = header();
        edit(h.as_object_mut().unwrap());
        refused_token(forge(&h, &claims()))
    }

    // --- step 2: request parameters ---

    #[test]
    fn wrong_assertion_type() {
        let mut r = request(forge(&header(), &claims()));
        r.client_assertion_type = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into();
        assert_eq!(
            refused(&r),
            [R::InvalidAssertionType(
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into()
            )]
        );
    }

    #[test]
    fn wrong_grant_type() {
        let mut r = request(forge(&header(), &claims()));
        r.grant_type = "authorization_code".into();
        assert_eq!(
            refused(&r),
            [R::InvalidGrantType("authorization_code".into())]
        );
    }

    #[test]
    fn both_request_parameters_wrong_are_both_reported() {
        let mut r = request(forge(&header(), &claims()));
        r.grant_type = String::new();
        r.client_assertion_type = String::new();
        assert_eq!(
            refused(&r),
            [
                R::InvalidAssertionType(String::new()),
                R::InvalidGrantType(String::new())
            ]
        );
    }

    // --- step 3: decoding and claims ---

    #[test]
    fn malformed_jws() {
        assert!(matches!(
            refused_token("abc.def".into()).as_slice(),
            [R::InvalidFormat(_)]
        ));
        assert!(matches!(
            refused_token(String::new()).as_slice(),
            [R::InvalidFormat(_)]
        ));
        let bad_payload = format!("{}.%%%.c2ln", b64url(header().to_string()));
        assert!(matches!(
            refused_token(bad_payload).as_slice(),
            [R::InvalidFormat(_)]
        ));
    }

    #[test]
    fn undecodable_header() {
        let token = format!(
            "{}.{}.c2ln",
            b64url("not json"),
            b64url(claims().to_string())
        );
        assert!(matches!(
            refused_token(token).as_slice(),
            [R::UnexpectedClientAssertion(_)]
        ));
    }

    #[test]
    fn missing_jti() {
        assert_eq!(with_claims(|c| drop(c.remove("jti"))), [R::JtiNotFound]);
        assert_eq!(
            with_claims(|c| drop(c.insert("jti".into(), json!("")))),
            [R::JtiNotFound]
        );
    }

    #[test]
    fn missing_iat() {
        assert_eq!(
            with_claims(|c| drop(c.remove("iat"))),
            [R::IssuedAtNotFound]
        );
        assert_eq!(
            with_claims(|c| drop(c.insert("iat".into(), json!(0)))),
            [R::IssuedAtNotFound]
        );
    }

    #[test]
    fn missing_exp() {
        assert_eq!(with_claims(|c| drop(c.remove("exp"))), [R::ExpNotFound]);
    }

    #[test]
    fn missing_iss() {
        assert_eq!(with_claims(|c| drop(c.remove("iss"))), [R::IssuerNotFound]);
    }

    #[test]
    fn missing_sub() {
        assert_eq!(with_claims(|c| drop(c.remove("sub"))), [R::SubjectNotFound]);
    }

    #[test]
    fn sub_not_a_uuid() {
        assert_eq!(
            with_claims(|c| drop(c.insert("sub".into(), json!("client-1")))),
            [R::InvalidSubjectFormat("client-1".into())]
        );
    }

    #[test]
    fn client_id_not_a_uuid() {
        let mut r = request(forge(&header(), &claims()));
        r.client_id = Some("client-1".into());
        assert_eq!(refused(&r), [R::InvalidClientIdFormat("client-1".into())]);
    }

    #[test]
    fn sub_differs_from_client_id() {
        let other = "11111111-2222-4333-8444-555555555555";
        assert_eq!(
            with_claims(|c| drop(c.insert("sub".into(), json!(other)))),
            [R::InvalidSubject(other.into())]
        );
    }

    #[test]
    fn purpose_id_not_a_uuid() {
        assert_eq!(
            with_claims(|c| drop(c.insert("purposeId".into(), json!("purpose-1")))),
            [R::InvalidPurposeIdFormat("purpose-1".into())]
        );
    }

    #[test]
    fn missing_kid() {
        assert_eq!(with_header(|h| drop(h.remove("kid"))), [R::KidNotFound]);
    }

    #[test]
    fn kid_not_a_thumbprint() {
        // A UUID kid (as in non-normative samples) is not a 43-character thumbprint.
        assert_eq!(
            with_header(|h| drop(
                h.insert("kid".into(), json!("0f4d2a9e-8c3b-4c1d-9e7f-1a2b3c4d5e6f"))
            )),
            [R::InvalidKidFormat]
        );
        let dotted = format!("{}.", &test_keys::client().kid()[..42]);
        assert_eq!(
            with_header(|h| drop(h.insert("kid".into(), json!(dotted)))),
            [R::InvalidKidFormat]
        );
    }

    #[test]
    fn missing_aud() {
        assert_eq!(
            with_claims(|c| drop(c.remove("aud"))),
            [R::AudienceNotFound]
        );
    }

    #[test]
    fn wrong_aud() {
        let with_scheme = "https://auth.uat.interop.pagopa.it/client-assertion";
        assert_eq!(
            with_claims(|c| drop(c.insert("aud".into(), json!(with_scheme)))),
            [R::InvalidAudience(with_scheme.into())]
        );
        assert!(matches!(
            with_claims(|c| drop(c.insert("aud".into(), json!(["somewhere-else"])))).as_slice(),
            [R::InvalidAudience(_)]
        ));
    }

    #[test]
    fn missing_alg() {
        assert_eq!(
            with_header(|h| drop(h.remove("alg"))),
            [R::AlgorithmNotFound]
        );
    }

    #[test]
    fn alg_none_is_not_allowed() {
        let mut h = header();
        h["alg"] = json!("none");
        let token = format!(
            "{}.{}.",
            b64url(h.to_string()),
            b64url(claims().to_string())
        );
        assert_eq!(
            refused_token(token),
            [R::AlgorithmNotAllowed("none".into())]
        );
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_not_allowed() {
        let mut h = header();
        h["alg"] = json!("HS256");
        let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
        let secret = test_keys::client().public().to_pem().unwrap();
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            refused_token(format!("{input}.{sig}")),
            [R::AlgorithmNotAllowed("HS256".into())]
        );
    }

    #[test]
    fn digest_with_an_extra_key() {
        let digest = json!({"alg": "SHA256", "value": EVIDENCE_DIGEST, "jws": "x"});
        assert!(matches!(
            with_claims(|c| drop(c.insert("digest".into(), digest))).as_slice(),
            [R::InvalidDigestClaim(_)]
        ));
    }

    #[test]
    fn digest_of_the_wrong_length() {
        let digest = json!({"alg": "SHA256", "value": &EVIDENCE_DIGEST[..63]});
        assert_eq!(
            with_claims(|c| drop(c.insert("digest".into(), digest))),
            [R::InvalidHashLength("SHA256".into())]
        );
    }

    #[test]
    fn digest_with_the_wrong_algorithm() {
        let digest = json!({"alg": "SHA-256", "value": EVIDENCE_DIGEST});
        assert_eq!(
            with_claims(|c| drop(c.insert("digest".into(), digest))),
            [R::InvalidHashAlgorithm]
        );
        let both = json!({"alg": "MD5", "value": "abc"});
        assert_eq!(
            with_claims(|c| drop(c.insert("digest".into(), both))),
            [R::InvalidHashLength("MD5".into()), R::InvalidHashAlgorithm]
        );
    }

    #[test]
    fn claim_errors_are_all_collected_in_pdnd_order() {
        let mut c = claims();
        let map = c.as_object_mut().unwrap();
        map.remove("jti");
        map.remove("iss");
        map.insert("aud".into(), json!("elsewhere"));
        let mut h = header();
        h["alg"] = json!("RS512");
        assert_eq!(
            refused_token(forge(&h, &c)),
            [
                R::JtiNotFound,
                R::IssuerNotFound,
                R::InvalidAudience("elsewhere".into()),
                R::AlgorithmNotAllowed("RS512".into())
            ]
        );
    }

    #[test]
    fn claim_of_the_wrong_type() {
        assert!(matches!(
            with_claims(|c| drop(c.insert("iat".into(), json!("1700000000")))).as_slice(),
            [R::InvalidClaims {
                part: "payload",
                ..
            }]
        ));
        assert!(matches!(
            with_claims(|c| drop(c.insert("purposeId".into(), json!("")))).as_slice(),
            [R::InvalidClaims {
                part: "payload",
                ..
            }]
        ));
        assert!(matches!(
            with_header(|h| drop(h.insert("typ".into(), json!(1)))).as_slice(),
            [R::InvalidClaims { part: "header", .. }]
        ));
    }

    #[test]
    fn extra_claims_refused_only_in_strict_mode() {
        let mut c = claims();
        c["nbf"] = json!(NOW - 10);
        let r = request(forge(&header(), &c));
        assert!(authority().issue(&r, NOW).is_ok());
        let strict = authority().with_strict_claims(true);
        let errors = strict.issue(&r, NOW).unwrap_err().errors;
        assert!(
            matches!(errors.as_slice(), [R::InvalidClaims { part: "payload", reason }] if reason.contains("nbf")),
            "{errors:?}"
        );
    }

    // --- step 4: key lookup ---

    #[test]
    fn unknown_kid() {
        let stranger = test_keys::stranger();
        let mut h = header();
        h["kid"] = json!(stranger.kid());
        let token = jws::sign_rs256(&h, &claims(), stranger).unwrap();
        assert_eq!(
            refused_token(token),
            [R::EntryNotFound {
                client_id: CLIENT.into(),
                kid: stranger.kid()
            }]
        );
    }

    #[test]
    fn unknown_client() {
        let other = "11111111-2222-4333-8444-555555555555";
        let mut c = claims();
        c["sub"] = json!(other);
        c["iss"] = json!(other);
        let mut r = request(forge(&header(), &c));
        r.client_id = None;
        assert!(
            matches!(refused(&r).as_slice(), [R::EntryNotFound { client_id, .. }] if client_id == other)
        );
    }

    // --- step 5: signature and time ---

    #[test]
    fn bad_signature() {
        let token = forge(&header(), &claims());
        let [h, _, s] = jws::split(&token).unwrap();
        let mut c = claims();
        c["purposeId"] = json!(SUSPENDED);
        let tampered = format!("{h}.{}.{s}", b64url(c.to_string()));
        assert_eq!(refused_token(tampered), [R::InvalidSignature]);
        // Signed by another key under the registered kid.
        let forged = jws::sign_rs256(&header(), &claims(), test_keys::stranger()).unwrap();
        assert_eq!(refused_token(forged), [R::InvalidSignature]);
    }

    #[test]
    fn expired() {
        assert_eq!(
            with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 1)))),
            [R::TokenExpired]
        );
        // No clock tolerance: exp == now is already expired.
        assert_eq!(
            with_claims(|c| drop(c.insert("exp".into(), json!(NOW)))),
            [R::TokenExpired]
        );
    }

    #[test]
    fn crit_naming_an_extension_jose_does_not_know() {
        for name in ["exp", "x-pdnd", "kid"] {
            let errors = with_header(|h| drop(h.insert("crit".into(), json!([name]))));
            assert_eq!(
                errors,
                [R::SignatureVerification(format!(
                    "Extension Header Parameter \"{name}\" is not recognized"
                ))]
            );
            assert_eq!(errors[0].code(), "0016");
        }
    }

    #[test]
    fn crit_of_the_wrong_shape() {
        for crit in [
            json!([]),
            json!("b64"),
            json!([""]),
            json!([1]),
            json!(null),
        ] {
            let errors = with_header(|h| drop(h.insert("crit".into(), crit.clone())));
            assert!(
                matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("non-empty strings")),
                "{crit}: {errors:?}"
            );
        }
    }

    #[test]
    fn crit_b64_follows_jose() {
        // Listed but absent, or not a boolean: malformed JWS (0018).
        let errors = with_header(|h| drop(h.insert("crit".into(), json!(["b64"]))));
        assert!(
            matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("missing")),
            "{errors:?}"
        );
        let errors = with_header(|h| {
            h.insert("crit".into(), json!(["b64"]));
            h.insert("b64".into(), json!("false"));
        });
        assert!(
            matches!(errors.as_slice(), [R::JsonWebToken(m)] if m.contains("boolean")),
            "{errors:?}"
        );
        // An unencoded payload is refused after the signature verified (0016).
        let errors = with_header(|h| {
            h.insert("crit".into(), json!(["b64"]));
            h.insert("b64".into(), json!(false));
        });
        assert_eq!(
            errors,
            [R::SignatureVerification(
                "JWTs MUST NOT use unencoded payload".into()
            )]
        );
        // `b64: true` is the ordinary encoding: jose, hence PDND, accepts it.
        let mut h = header();
        h["crit"] = json!(["b64"]);
        h["b64"] = json!(true);
        assert!(authority()
            .issue(&request(forge(&h, &claims())), NOW)
            .is_ok());
    }

    #[test]
    fn crit_is_checked_before_the_signature() {
        let mut h = header();
        h["crit"] = json!(["x-ext"]);
        let forged = jws::sign_rs256(&h, &claims(), test_keys::stranger()).unwrap();
        assert!(matches!(
            refused_token(forged).as_slice(),
            [R::SignatureVerification(_)]
        ));
    }

    #[test]
    fn nbf_in_the_future() {
        assert_eq!(
            with_claims(|c| drop(c.insert("nbf".into(), json!(NOW + 1)))),
            [R::NotBefore]
        );
    }

    // --- step 6: purpose ---

    #[test]
    fn purpose_id_missing_for_a_consumer_client() {
        assert_eq!(
            with_claims(|c| drop(c.remove("purposeId"))),
            [R::PurposeIdNotProvided]
        );
    }

    #[test]
    fn purpose_not_registered_for_the_client() {
        assert_eq!(
            with_claims(|c| drop(c.insert("purposeId".into(), json!(UNREGISTERED)))),
            [R::PurposeNotRegistered {
                client_id: CLIENT.into(),
                purpose_id: UNREGISTERED.into()
            }]
        );
    }

    #[test]
    fn suspended_purpose() {
        assert_eq!(
            with_claims(|c| drop(c.insert("purposeId".into(), json!(SUSPENDED)))),
            [R::InvalidPurposeState("INACTIVE".into())]
        );
    }

    // --- accepted ---

    #[test]
    fn accepted_assertion_gets_a_voucher_shaped_like_pdnd() {
        let authority = authority();
        let builder = ClientAssertionBuilder {
            client_id: CLIENT.into(),
            audience: AUD.into(),
            purpose_id: Some(PURPOSE.into()),
            digest: Some(crate::pdnd::DigestClaim {
                alg: "SHA256".into(),
                value: EVIDENCE_DIGEST.into(),
            }),
            lifetime_secs: 600,
        };
        let assertion = builder.sign(test_keys::client(), NOW).unwrap();
        let response = authority
            .issue(&TokenRequest::new(CLIENT, &assertion), NOW + 5)
            .unwrap();
        assert_eq!(response.token_type.as_deref(), Some("Bearer"));
        assert_eq!(response.expires_in, 600);

        let (header, claims) = decode_unverified(&response.access_token).unwrap();
        assert_eq!(
            header,
            json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
        );
        let claims = claims.as_object().unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "aud",
                "client_id",
                "consumerId",
                "descriptorId",
                "digest",
                "eserviceId",
                "exp",
                "iat",
                "iss",
                "jti",
                "nbf",
                "producerId",
                "purposeId",
                "sub"
            ]
        );
        assert_eq!(claims["iss"], "uat.interop.pagopa.it");
        assert_eq!(
            claims["aud"],
            "https://comune.example/anagrafe/v1,anagrafe-v1"
        );
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["client_id"], CLIENT);
        assert_eq!(claims["purposeId"], PURPOSE);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        assert_eq!(claims["iat"], NOW + 5);
        assert_eq!(claims["nbf"], NOW + 5);
        assert_eq!(claims["exp"], NOW + 605);
        assert_eq!(claims["producerId"], "b1a2b3c4-0000-4000-8000-000000000003");
        assert_eq!(claims["consumerId"], CONSUMER);
        assert_eq!(claims["eserviceId"], "e1a2b3c4-0000-4000-8000-000000000001");
        assert_eq!(
            claims["descriptorId"],
            "d1a2b3c4-0000-4000-8000-000000000002"
        );
        assert_eq!(
            claims["digest"],
            json!({"alg": "SHA256", "value": EVIDENCE_DIGEST})
        );

        let jws = CompactJws::parse(&response.access_token).unwrap();
        let key = authority.jwks().find(authority.kid()).unwrap();
        assert!(jws.verify_rs256(&key));
        assert!(!jws.verify_rs256(test_keys::client().public()));
    }

    #[test]
    fn accepted_without_client_id_with_aud_array_and_no_digest() {
        let mut c = claims();
        c["aud"] = json!(["other", AUD]);
        let mut r = request(forge(&header(), &c));
        r.client_id = None;
        let response = authority().issue(&r, NOW).unwrap();
        let (_, claims) = decode_unverified(&response.access_token).unwrap();
        assert!(claims.get("digest").is_none());
        assert_eq!(claims["client_id"], CLIENT);
    }

    #[test]
    fn jwks_and_client_keys() {
        let authority = authority();
        let jwks = authority.jwks();
        assert_eq!(jwks.kids(), [test_keys::authority().kid().as_str()]);
        assert_eq!(
            jwks.find(&test_keys::authority().kid()).as_ref(),
            Some(test_keys::authority().public())
        );
        let kid = test_keys::client().kid();
        let jwk = authority.client_key(&kid).unwrap();
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(jwk["n"], test_keys::client().public().n.as_str());
        assert_eq!(authority.client_key(&test_keys::stranger().kid()), None);
    }

    // --- API Interop (M2M) clients ---

    const API_CLIENT: &str = "a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f";
    const ORGANIZATION: &str = "b1a2b3c4-0000-4000-8000-000000000003";
    const M2M_AUD: &str = "dev.interop.local/m2m";

    fn api_authority() -> Authority {
        authority().with_api_clients(
            M2M_AUD,
            vec![RegisteredApiClient {
                client_id: API_CLIENT.into(),
                organization_id: ORGANIZATION.into(),
                public_key: test_keys::stranger().public().clone(),
            }],
        )
    }

    fn api_builder() -> ClientAssertionBuilder {
        ClientAssertionBuilder {
            client_id: API_CLIENT.into(),
            audience: AUD.into(),
            purpose_id: None,
            digest: None,
            lifetime_secs: 600,
        }
    }

    fn m2m_voucher(authority: &Authority, now: i64) -> String {
        let assertion = api_builder().sign(test_keys::stranger(), now).unwrap();
        authority
            .issue(&TokenRequest::new(API_CLIENT, &assertion), now)
            .expect("an API client needs no purposeId")
            .access_token
    }

    #[test]
    fn api_client_without_purpose_gets_an_m2m_voucher() {
        let authority = api_authority();
        let token = m2m_voucher(&authority, NOW);
        let (header, claims) = decode_unverified(&token).unwrap();
        assert_eq!(
            header,
            json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
        );
        let claims = claims.as_object().unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "aud",
                "client_id",
                "exp",
                "iat",
                "iss",
                "jti",
                "nbf",
                "organizationId",
                "role",
                "sub"
            ]
        );
        assert_eq!(claims["aud"], M2M_AUD);
        assert_eq!(claims["iss"], "uat.interop.pagopa.it");
        assert_eq!(claims["sub"], API_CLIENT);
        assert_eq!(claims["client_id"], API_CLIENT);
        assert_eq!(claims["organizationId"], ORGANIZATION);
        assert_eq!(claims["role"], "m2m");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 600);
        assert!(CompactJws::parse(&token)
            .unwrap()
            .verify_rs256(test_keys::authority().public()));
        assert_eq!(
            authority.verify_m2m_voucher(&token, NOW + 1),
            Ok(M2mCaller {
                client_id: API_CLIENT.into(),
                organization_id: ORGANIZATION.into()
            })
        );
        assert_eq!(
            authority.verify_m2m_voucher(&token, NOW + 600),
            Err(M2mRefusal::Expired)
        );
        assert_eq!(
            authority.verify_m2m_voucher(&token, NOW - 1),
            Err(M2mRefusal::NotBefore)
        );
    }

    #[test]
    fn consumer_client_without_purpose_still_refused_beside_api_clients() {
        let authority = api_authority();
        let mut c = claims();
        c.as_object_mut().unwrap().remove("purposeId");
        let refused = authority
            .issue(&request(forge(&header(), &c)), NOW)
            .expect_err("a consumer client needs a purposeId");
        assert_eq!(refused.errors, [R::PurposeIdNotProvided]);
    }

    #[test]
    fn api_client_with_a_purpose_id_has_no_entry() {
        let assertion = ClientAssertionBuilder {
            purpose_id: Some(PURPOSE.into()),
            ..api_builder()
        }
        .sign(test_keys::stranger(), NOW)
        .unwrap();
        let refused = api_authority()
            .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
            .expect_err("an API client has no entry for a purpose");
        assert_eq!(
            refused.errors,
            [R::ApiClientWithPurpose {
                client_id: API_CLIENT.into(),
                purpose_id: PURPOSE.into()
            }]
        );
        assert_eq!(refused.errors[0].code(), "entry-not-found");
        assert!(!refused.is_internal());
        // Even a purpose the consumer client is registered for, and before the signature:
        // a forged signature gets the same answer.
        let forged = ClientAssertionBuilder {
            purpose_id: Some(PURPOSE.into()),
            ..api_builder()
        }
        .sign(test_keys::client(), NOW)
        .unwrap();
        let [h, p, _] = jws::split(&assertion.jws).unwrap();
        let [_, _, s] = jws::split(&forged.jws).unwrap();
        let mut request = TokenRequest::new(API_CLIENT, &assertion);
        request.client_assertion = format!("{h}.{p}.{s}");
        let refused = api_authority().issue(&request, NOW).expect_err("no entry");
        assert!(matches!(
            refused.errors.as_slice(),
            [R::ApiClientWithPurpose { .. }]
        ));
    }

    #[test]
    fn api_client_with_a_foreign_key_is_unknown() {
        // The API client's id with the consumer client's key: no (clientId, kid) entry.
        let assertion = api_builder().sign(test_keys::client(), NOW).unwrap();
        let refused = api_authority()
            .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
            .expect_err("wrong key");
        assert_eq!(
            refused.errors,
            [R::EntryNotFound {
                client_id: API_CLIENT.into(),
                kid: test_keys::client().kid()
            }]
        );
        // Without with_api_clients the same client does not exist at all.
        let assertion = api_builder().sign(test_keys::stranger(), NOW).unwrap();
        assert!(authority()
            .issue(&TokenRequest::new(API_CLIENT, &assertion), NOW)
            .is_err());
    }

    #[test]
    fn m2m_verification_refuses_e_service_vouchers_and_forgeries() {
        let api = api_authority();
        let consumer = api
            .issue(&request(forge(&header(), &claims())), NOW)
            .unwrap()
            .access_token;
        assert_eq!(
            api.verify_m2m_voucher(&consumer, NOW),
            Err(M2mRefusal::Audience(Some(
                "https://comune.example/anagrafe/v1,anagrafe-v1".into()
            )))
        );
        let token = m2m_voucher(&api, NOW);
        // Same claims, signed by someone else under the authority's kid.
        let (h, c) = decode_unverified(&token).unwrap();
        let forged = jws::sign_rs256(&h, &c, test_keys::stranger()).unwrap();
        assert_eq!(
            api.verify_m2m_voucher(&forged, NOW),
            Err(M2mRefusal::Signature)
        );
        let mut wrong_role = c.clone();
        wrong_role["role"] = json!("admin");
        let wrong_role = jws::sign_rs256(&h, &wrong_role, test_keys::authority()).unwrap();
        assert_eq!(
            api.verify_m2m_voucher(&wrong_role, NOW),
            Err(M2mRefusal::Role(Some("admin".into())))
        );
        assert!(matches!(
            api.verify_m2m_voucher("not-a-token", NOW),
            Err(M2mRefusal::Malformed(_))
        ));
        // An authority without API clients accepts no bearer at all.
        assert_eq!(
            authority().verify_m2m_voucher(&token, NOW),
            Err(M2mRefusal::NotConfigured)
        );
        // The API client's key is served like any client key.
        let kid = test_keys::stranger().kid();
        assert_eq!(api.client_key(&kid).unwrap()["kid"], kid.as_str());
    }

    #[test]
    fn rejection_display_and_codes() {
        let rejection = Rejection {
            errors: vec![R::JtiNotFound, R::InvalidAudience("x".into())],
        };
        assert_eq!(
            rejection.to_string(),
            "token request refused: [0008] JTI not found in client assertion; [0004] Unexpected client assertion audience: x"
        );
        assert!(!rejection.is_internal());
        assert_eq!(R::InvalidSignature.code(), "0033");
        assert_eq!(R::PurposeIdNotProvided.code(), "0030");
        let body = pdnd_error_body("abc");
        assert_eq!(body["status"], 400);
        assert_eq!(body["errors"][0]["code"], "015-0008");
        assert_eq!(body["correlationId"], "abc");
    }

    // --- DPoP ---

    const TOKEN_URL: &str = "https://auth.uat.interop.pagopa.it/token.oauth2";

    fn dpop_key() -> &'static crate::pdnd::dpop::DpopKey {
        static KEY: std::sync::OnceLock<crate::pdnd::dpop::DpopKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| crate::pdnd::dpop::DpopKey::generate().unwrap())
    }

    fn good_request() -> TokenRequest {
        let builder = ClientAssertionBuilder {
            client_id: CLIENT.into(),
            audience: AUD.into(),
            purpose_id: Some(PURPOSE.into()),
            digest: None,
            lifetime_secs: 600,
        };
        TokenRequest::new(CLIENT, &builder.sign(test_keys::client(), NOW).unwrap())
    }

    #[test]
    fn valid_proof_binds_the_voucher_to_its_key() {
        let authority = authority();
        let proof = dpop_key().proof("POST", TOKEN_URL, None, NOW).unwrap();
        let verified = authority.check_dpop_proof(&proof, TOKEN_URL, NOW).unwrap();
        let response = authority
            .issue_bound(&good_request(), Some(&verified), NOW)
            .unwrap();
        assert_eq!(response.token_type.as_deref(), Some("DPoP"));
        assert_eq!(response.authorization_scheme(), "DPoP");
        let (header, claims) = decode_unverified(&response.access_token).unwrap();
        // The voucher's header is PDND's usual one: at+jwt, not dpop+jwt.
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(claims["cnf"], json!({"jkt": dpop_key().jkt()}));
        // The provider's check sees the binding.
        let policy = crate::pdnd::voucher::VoucherPolicy::new(
            vec!["uat.interop.pagopa.it".into()],
            vec!["anagrafe-v1".into()],
        );
        let voucher =
            crate::pdnd::voucher::validate(&response.access_token, &authority.jwks(), &policy, NOW)
                .unwrap();
        assert_eq!(voucher.confirmation_jkt(), Some(dpop_key().jkt()));
        // Without a proof: Bearer, no cnf (the control).
        let plain = authority.issue(&good_request(), NOW).unwrap();
        assert_eq!(plain.token_type.as_deref(), Some("Bearer"));
        let (_, claims) = decode_unverified(&plain.access_token).unwrap();
        assert!(claims.get("cnf").is_none());
    }

    #[test]
    fn proof_for_another_endpoint_method_or_time_is_refused() {
        let authority = authority();
        for (proof, at) in [
            (
                dpop_key().proof("POST", "https://evil.example/token.oauth2", None, NOW),
                NOW,
            ),
            (dpop_key().proof("GET", TOKEN_URL, None, NOW), NOW),
            (dpop_key().proof("POST", TOKEN_URL, None, NOW), NOW + 61),
        ] {
            let rejection = authority
                .check_dpop_proof(&proof.unwrap(), TOKEN_URL, at)
                .unwrap_err();
            assert!(
                matches!(rejection.errors.as_slice(), [R::DpopProofInvalid(_)]),
                "{rejection}"
            );
            assert_eq!(rejection.errors[0].code(), "015-0009");
        }
    }

    #[test]
    fn proof_signed_by_another_key_is_a_signature_failure() {
        let proof = dpop_key().proof("POST", TOKEN_URL, None, NOW).unwrap();
        let other = crate::pdnd::dpop::DpopKey::generate().unwrap();
        let forged = other.proof("POST", TOKEN_URL, None, NOW).unwrap();
        // The header (and its jwk) of the first proof, the claims and signature of the second.
        let [h, _, _] = jws::split(&proof).unwrap();
        let [_, p, sig] = jws::split(&forged).unwrap();
        let rejection = authority()
            .check_dpop_proof(&format!("{h}.{p}.{sig}"), TOKEN_URL, NOW)
            .unwrap_err();
        assert_eq!(rejection.errors, [R::DpopProofSignature]);
        assert_eq!(R::DpopProofSignature.code(), "015-0010");
        assert_eq!(R::DpopProofJtiAlreadyUsed("j".into()).code(), "015-0012");
    }
}
