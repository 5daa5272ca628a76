//! What the authority answers when it refuses: each broken rule with PDND's error code, all of
//! a request's broken rules together, and PDND's opaque body for every refusal.

use crate::pdnd::dpop::DpopError;
use serde_json::Value;

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
    pub(super) fn one(error: AssertionRejection) -> Self {
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
