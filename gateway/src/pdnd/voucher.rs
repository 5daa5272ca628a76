//! The erogatore's check of an incoming PDND voucher.
//!
//! A [`Voucher`] exists only when a token passed every rule of [`validate`]: bounded length,
//! header `typ: at+jwt` and `alg: RS256` (read by hand, so `alg: none` or an HMAC key-confusion
//! attempt is refused by name before any crypto runs), no `crit` (RFC 7515 section 4.1.11: we
//! implement no JWS extension, so a voucher that makes one critical cannot be accepted), a `kid`
//! present in the PDND JWKS, a valid RS256 signature, an allowed issuer, one of our audiences
//! (PDND sends several as ONE comma-joined string), `exp`/`nbf`/`iat` against the caller's `now`
//! with the policy's leeway, a lifetime no longer than the policy allows, a purpose, and the
//! comune's own identifiers (`producerId`, `eserviceId`, `descriptorId`) where configured. jsonwebtoken only verifies the signature here: its clock is not `now` and its
//! audience matching does not understand PDND's comma-joined `aud`. Vouchers are reusable until
//! they expire, so their `jti` is not checked for replay. Fetching and refreshing the JWKS is the
//! caller's job: [`VoucherError::UnknownKid`] tells it to refetch once and retry.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::client_assertion::DigestClaim;
use super::jwk::JwkSet;
use super::jws::{self, CompactJws, Part};

/// The default bound on a voucher's length; real PDND vouchers are around 1 KiB.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;

/// The header `typ` PDND puts on every voucher (Bearer and DPoP alike).
pub const VOUCHER_TYP: &str = "at+jwt";

/// The default bound on `exp - iat` and `exp - nbf`: 24 hours. PDND lets each producer choose
/// the voucher lifespan of its e-service descriptor, so the gateway cannot know it in advance;
/// 24 hours is the longest lifespan found in PDND's own material, so no voucher PDND issues for
/// a sensibly configured descriptor is refused, while a voucher claiming to live for days (an
/// issuer misconfigured or misused) is. Set it to the descriptor's lifespan to be exact.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 86_400;

/// What a voucher must satisfy, built once from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherPolicy {
    /// Accepted `iss` values, e.g. `interop.pagopa.it` (PROD) or `uat.interop.pagopa.it`.
    pub issuers: Vec<String>,
    /// Our e-service audiences; the voucher must name at least one of them exactly.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Refuse vouchers whose header `typ` is not `at+jwt` (PDND's guidance for producers).
    pub require_at_jwt_typ: bool,
    /// Longer tokens are refused before any decoding.
    pub max_token_len: usize,
    /// Longest accepted `exp - iat` and `exp - nbf`, in seconds.
    pub max_lifetime_secs: i64,
    /// The comune's PDND tenant id: when set, the voucher's `producerId` must equal it.
    pub producer_id: Option<String>,
    /// The e-service's PDND id: when set, the voucher's `eserviceId` must equal it.
    pub eservice_id: Option<String>,
    /// The published descriptor's PDND id: when set, the voucher's `descriptorId` must equal it.
    pub descriptor_id: Option<String>,
}

impl VoucherPolicy {
    /// A policy with no leeway, `typ` required, the default length and lifetime bounds and no
    /// identifier checks.
    pub fn new(issuers: Vec<String>, audiences: Vec<String>) -> Self {
        Self {
            issuers,
            audiences,
            leeway_secs: 0,
            require_at_jwt_typ: true,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            producer_id: None,
            eservice_id: None,
            descriptor_id: None,
        }
    }
}

/// Why a voucher was refused. All of these mean HTTP 401 except [`VoucherError::MissingPurposeId`]
/// (a valid token of the wrong kind, 403); the log gets the precise reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    #[error("the voucher is longer than allowed")]
    TooLarge,
    /// Not three base64url segments with JSON-object header and payload.
    #[error("the voucher is not a compact JWS with JSON header and claims")]
    Malformed,
    #[error("the voucher header has no alg")]
    MissingAlgorithm,
    #[error("voucher algorithm {0} is not allowed, only RS256")]
    UnsupportedAlgorithm(String),
    #[error("voucher typ is {0:?}, expected at+jwt")]
    WrongType(Option<String>),
    #[error("the voucher header crit is not a non-empty array of strings")]
    MalformedCrit,
    #[error("the voucher header marks the extension {0:?} critical, and none is implemented")]
    CriticalExtension(String),
    #[error("the voucher header has no kid")]
    MissingKid,
    #[error("voucher kid {0} is not in the PDND key set")]
    UnknownKid(String),
    #[error("the voucher signature is invalid")]
    BadSignature,
    #[error("voucher issuer {0} is not accepted")]
    WrongIssuer(String),
    #[error("the voucher is not meant for this e-service (aud)")]
    WrongAudience,
    #[error("the voucher has expired")]
    Expired,
    #[error("the voucher is not valid yet (nbf)")]
    NotYetValid,
    #[error("the voucher was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the voucher lives {lifetime} s from {from}, longer than the {max} s allowed")]
    LifetimeTooLong {
        from: &'static str,
        lifetime: i64,
        max: i64,
    },
    /// `producerId`, `eserviceId` or `descriptorId` differs from the configured one.
    #[error("the voucher {0} is not the configured one")]
    WrongIdentifier(&'static str),
    #[error("the voucher has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the voucher claim {0} has the wrong type")]
    InvalidClaim(&'static str),
    #[error("the voucher has no purposeId: not an e-service voucher")]
    MissingPurposeId,
}

/// A voucher that passed [`validate`]; the identities it carries can be trusted.
///
/// Cheap to clone (one shared allocation): the same validated voucher is handed to every stage
/// of a request, and [`super::verified::VerifiedVouchers`] hands a remembered one to every
/// request that presents the same token.
#[derive(Clone, Debug)]
pub struct Voucher(Arc<Claims>);

/// The claims of a validated voucher.
#[derive(Debug)]
struct Claims {
    kid: String,
    jti: String,
    issuer: String,
    client_id: String,
    subject: String,
    purpose_id: String,
    audiences: Vec<String>,
    iat: i64,
    nbf: i64,
    exp: i64,
    producer_id: Option<String>,
    consumer_id: Option<String>,
    eservice_id: Option<String>,
    descriptor_id: Option<String>,
    digest: Option<DigestClaim>,
    confirmation_jkt: Option<String>,
}

impl Voucher {
    /// The PDND key that signed it.
    pub fn kid(&self) -> &str {
        &self.0.kid
    }
    pub fn jti(&self) -> &str {
        &self.0.jti
    }
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }
    /// The consumer's PDND client id.
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }
    pub fn subject(&self) -> &str {
        &self.0.subject
    }
    pub fn purpose_id(&self) -> &str {
        &self.0.purpose_id
    }
    /// Every audience the voucher names (a comma-joined `aud` split into its parts).
    pub fn audiences(&self) -> &[String] {
        &self.0.audiences
    }
    pub fn iat(&self) -> i64 {
        self.0.iat
    }
    pub fn nbf(&self) -> i64 {
        self.0.nbf
    }
    pub fn exp(&self) -> i64 {
        self.0.exp
    }
    pub fn producer_id(&self) -> Option<&str> {
        self.0.producer_id.as_deref()
    }
    pub fn consumer_id(&self) -> Option<&str> {
        self.0.consumer_id.as_deref()
    }
    pub fn eservice_id(&self) -> Option<&str> {
        self.0.eservice_id.as_deref()
    }
    pub fn descriptor_id(&self) -> Option<&str> {
        self.0.descriptor_id.as_deref()
    }
    /// The AUDIT_REST_02 binding to a tracking-evidence JWS, when the consumer asked for one.
    pub fn digest(&self) -> Option<&DigestClaim> {
        self.0.digest.as_ref()
    }
    /// `cnf.jkt` of a DPoP-bound voucher: such a voucher must not be accepted as Bearer.
    pub fn confirmation_jkt(&self) -> Option<&str> {
        self.0.confirmation_jkt.as_deref()
    }
}

/// Checks `token` against `keys` and `policy` at `now` (unix seconds).
pub fn validate(
    token: &str,
    keys: &JwkSet,
    policy: &VoucherPolicy,
    now: i64,
) -> Result<Voucher, VoucherError> {
    if token.len() > policy.max_token_len {
        return Err(VoucherError::TooLarge);
    }
    let malformed = |_: jws::JwsFormatError| VoucherError::Malformed;
    // The header alone first: an unsigned `alg: none` token (empty signature segment) must be
    // refused for its algorithm, not reported as a formatting problem.
    let [header_b64, _, _] = jws::split(token).map_err(malformed)?;
    let header = jws::decode_object(header_b64, Part::Header).map_err(malformed)?;

    // alg before typ: a downgrade attempt is logged as such whatever its typ says.
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => return Err(VoucherError::UnsupportedAlgorithm(alg.clone())),
        Some(other) => return Err(VoucherError::UnsupportedAlgorithm(other.to_string())),
        None => return Err(VoucherError::MissingAlgorithm),
    }
    if policy.require_at_jwt_typ {
        match header.get("typ") {
            Some(Value::String(typ)) if typ == VOUCHER_TYP => {}
            Some(Value::String(typ)) => return Err(VoucherError::WrongType(Some(typ.clone()))),
            Some(other) => return Err(VoucherError::WrongType(Some(other.to_string()))),
            None => return Err(VoucherError::WrongType(None)),
        }
    }
    // No extension is implemented, so any critical one makes the voucher unacceptable.
    jws::check_crit(&header, &[]).map_err(|e| match e {
        jws::CritError::Malformed => VoucherError::MalformedCrit,
        jws::CritError::Unsupported(name) => VoucherError::CriticalExtension(name),
    })?;
    let kid = header.get("kid").and_then(Value::as_str);
    let kid = kid
        .filter(|k| !k.is_empty())
        .ok_or(VoucherError::MissingKid)?;
    let key = keys
        .find(kid)
        .ok_or_else(|| VoucherError::UnknownKid(kid.to_owned()))?;
    let jws = CompactJws::parse(token).map_err(malformed)?;
    if !jws.verify_rs256(&key) {
        return Err(VoucherError::BadSignature);
    }

    let claims = &jws.payload;
    let issuer = string_claim(claims, "iss")?;
    if !policy.issuers.contains(&issuer) {
        return Err(VoucherError::WrongIssuer(issuer));
    }
    let audiences = audience_claim(claims)?;
    let whole_aud = claims.get("aud").and_then(Value::as_str);
    let ours = |a: &str| policy.audiences.iter().any(|p| p == a);
    // An audience that itself contains a comma still matches as the whole string.
    if !audiences.iter().any(|a| ours(a)) && !whole_aud.is_some_and(ours) {
        return Err(VoucherError::WrongAudience);
    }

    let exp = time_claim(claims, "exp")?;
    let nbf = time_claim(claims, "nbf")?;
    let iat = time_claim(claims, "iat")?;
    check_times(exp, nbf, iat, policy, now)?;
    for (from, start) in [("iat", iat), ("nbf", nbf)] {
        let lifetime = exp.saturating_sub(start);
        if lifetime > policy.max_lifetime_secs {
            return Err(VoucherError::LifetimeTooLong {
                from,
                lifetime,
                max: policy.max_lifetime_secs,
            });
        }
    }

    let purpose_id = match claims.get("purposeId") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(VoucherError::MissingPurposeId)
        }
        Some(_) => return Err(VoucherError::InvalidClaim("purposeId")),
    };
    let digest = match claims.get("digest") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            serde_json::from_value::<DigestClaim>(d.clone())
                .map_err(|_| VoucherError::InvalidClaim("digest"))?,
        ),
    };
    let confirmation_jkt = match claims.get("cnf") {
        None | Some(Value::Null) => None,
        Some(cnf) => Some(
            cnf.get("jkt")
                .and_then(Value::as_str)
                .ok_or(VoucherError::InvalidClaim("cnf"))?
                .to_owned(),
        ),
    };

    let producer_id = optional_string_claim(claims, "producerId")?;
    let eservice_id = optional_string_claim(claims, "eserviceId")?;
    let descriptor_id = optional_string_claim(claims, "descriptorId")?;
    for (name, expected, found) in [
        ("producerId", &policy.producer_id, &producer_id),
        ("eserviceId", &policy.eservice_id, &eservice_id),
        ("descriptorId", &policy.descriptor_id, &descriptor_id),
    ] {
        match (expected, found) {
            (None, _) => {}
            (Some(_), None) => return Err(VoucherError::MissingClaim(name)),
            (Some(e), Some(f)) if e == f => {}
            (Some(_), Some(_)) => return Err(VoucherError::WrongIdentifier(name)),
        }
    }

    Ok(Voucher(Arc::new(Claims {
        kid: kid.to_owned(),
        jti: string_claim(claims, "jti")?,
        issuer,
        client_id: string_claim(claims, "client_id")?,
        subject: string_claim(claims, "sub")?,
        purpose_id,
        audiences,
        iat,
        nbf,
        exp,
        producer_id,
        consumer_id: optional_string_claim(claims, "consumerId")?,
        eservice_id,
        descriptor_id,
        digest,
        confirmation_jkt,
    })))
}

/// The rules of a voucher that depend on the time: `exp`, `nbf` and `iat` against `now` with
/// the policy's leeway. Every other rule depends only on the token, the key set and the policy,
/// which is why a remembered voucher needs only these again.
pub(super) fn check_times(
    exp: i64,
    nbf: i64,
    iat: i64,
    policy: &VoucherPolicy,
    now: i64,
) -> Result<(), VoucherError> {
    if exp <= now - policy.leeway_secs {
        return Err(VoucherError::Expired);
    }
    if nbf > now + policy.leeway_secs {
        return Err(VoucherError::NotYetValid);
    }
    if iat > now + policy.leeway_secs {
        return Err(VoucherError::IssuedInFuture);
    }
    Ok(())
}

/// A required, non-empty string claim.
fn string_claim(claims: &Map<String, Value>, name: &'static str) -> Result<String, VoucherError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(VoucherError::MissingClaim(name)),
        Some(Value::String(_)) => Err(VoucherError::MissingClaim(name)),
        Some(_) => Err(VoucherError::InvalidClaim(name)),
    }
}

/// An optional string claim (the producer-verification claims PDND emits behind a flag).
fn optional_string_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, VoucherError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(VoucherError::InvalidClaim(name)),
    }
}

/// A required NumericDate; fractional seconds are truncated.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<i64, VoucherError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(VoucherError::MissingClaim(name)),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(f.trunc() as i64),
            _ => Err(VoucherError::InvalidClaim(name)),
        },
        Some(_) => Err(VoucherError::InvalidClaim(name)),
    }
}

/// `aud` as PDND sends it (one string, comma-joined when there are several) or as a JSON array.
fn audience_claim(claims: &Map<String, Value>) -> Result<Vec<String>, VoucherError> {
    match claims.get("aud") {
        None | Some(Value::Null) => Err(VoucherError::MissingClaim("aud")),
        Some(Value::String(s)) => Ok(s.split(',').map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(VoucherError::InvalidClaim("aud"))
            })
            .collect(),
        Some(_) => Err(VoucherError::InvalidClaim("aud")),
    }
}

#[cfg(test)]
mod tests;
