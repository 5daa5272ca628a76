//! AUDIT_REST_01/02: the `Agid-JWT-TrackingEvidence` JWS, which carries who in the consumer's
//! domain caused a request (user, workstation, level of assurance).
//!
//! As consumer we build it, signed with our PDND-registered RSA key (`kid`), and put its
//! SHA-256 into the client assertion `digest` ([`tracking_evidence_digest`]) so PDND copies it
//! into the voucher. As provider we verify it with the consumer's PDND key and check that the
//! voucher's `digest.value` is the hash of exactly these bytes ([`binds_to_voucher`]): that
//! binding is what makes AUDIT_REST_02 more than a self-declared header.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::jws::{self, check_audience, check_window, jti_claim, string_claim};
use super::keys::{KeyReference, SigningAlgorithm, SigningMaterial};
use super::signature::{encode, SignatureExpectations};
use super::trust::{KeySource, KidResolver};
use super::{ModiError, ReplayGuard};

/// HTTP header carrying the tracking evidence (lower case; PDND's FAQ once spells it
/// `Agid-JWT-Tracking-Evidence`, a typo: match this name case-insensitively).
pub const AGID_JWT_TRACKING_EVIDENCE: &str = "agid-jwt-trackingevidence";

/// The audit claims a consumer declares about the request it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingClaims {
    /// Our PDND client id.
    pub iss: String,
    /// The provider's audience (the e-service URL).
    pub aud: String,
    /// Identifier of the user in our domain who caused the request (not necessarily the
    /// codice fiscale; an opaque id the comune can trace back is enough).
    pub user_id: String,
    /// Identifier of the workstation or office the request came from.
    pub user_location: String,
    /// Level of assurance of the user's authentication in our domain (e.g. `substantial`).
    pub loa: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The PDND purpose the request is made for.
    pub purpose_id: Option<String>,
}

#[derive(Serialize)]
struct WireTracking<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    #[serde(rename = "userID")]
    user_id: &'a str,
    #[serde(rename = "userLocation")]
    user_location: &'a str,
    #[serde(rename = "LoA")]
    loa: &'a str,
    #[serde(rename = "purposeId", skip_serializing_if = "Option::is_none")]
    purpose_id: Option<&'a str>,
}

/// Builds an `Agid-JWT-TrackingEvidence`: header `{alg: RS256, kid, typ: JWT}`, claims
/// `iss, aud, iat, exp, jti, userID, userLocation, LoA[, purposeId]`.
///
/// `material` must be an RS256 key with a `kid` (the key registered on PDND): the provider
/// looks the key up on PDND, which only holds RSA keys.
pub fn build_tracking_evidence(
    material: &SigningMaterial,
    claims: &TrackingClaims,
) -> Result<String, ModiError> {
    if material.algorithm() != SigningAlgorithm::RS256 {
        return Err(ModiError::KeyMaterial(
            "tracking evidence is signed with RS256".into(),
        ));
    }
    if !matches!(material.key_reference(), KeyReference::Kid(_)) {
        return Err(ModiError::KeyMaterial(
            "tracking evidence needs the kid of a PDND-registered key".into(),
        ));
    }
    let wire = WireTracking {
        iss: &claims.iss,
        aud: &claims.aud,
        iat: claims.iat,
        exp: claims.exp,
        jti: &claims.jti,
        user_id: &claims.user_id,
        user_location: &claims.user_location,
        loa: &claims.loa,
        purpose_id: claims.purpose_id.as_deref(),
    };
    encode(material, &wire)
}

/// A tracking evidence whose signature, audience and time window were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingEvidence {
    pub user_id: String,
    pub user_location: String,
    pub loa: String,
    /// Check it with a [`ReplayGuard`] (see [`TrackingEvidence::check_replay`]).
    pub jti: String,
    pub iss: Option<String>,
    pub audience: String,
    pub purpose_id: Option<String>,
    /// The PDND key id it verified with.
    pub kid: String,
    pub iat: i64,
    pub exp: i64,
    /// `exp + leeway`: how long the jti must be remembered.
    pub replay_expires_at: i64,
    /// Lower-case hex SHA-256 of the compact JWS, to compare with the voucher digest.
    pub digest: String,
    /// Any other claims the parties agreed on, untouched.
    pub other_claims: Map<String, Value>,
}

impl TrackingEvidence {
    /// Records the jti in `guard`, failing with [`ModiError::Replayed`] on a second use.
    pub fn check_replay(&self, guard: &dyn ReplayGuard, now: i64) -> Result<(), ModiError> {
        guard.check_and_store(&self.jti, self.replay_expires_at, now)
    }

    /// [`Self::check_replay`], counted against `client`'s share of the guard's memory.
    pub fn check_replay_for(
        &self,
        guard: &dyn ReplayGuard,
        client: &str,
        now: i64,
    ) -> Result<(), ModiError> {
        guard.check_and_store_for(client, &self.jti, self.replay_expires_at, now)
    }
}

/// Claims interpreted by [`verify_tracking_evidence`]; the rest go to `other_claims`.
const KNOWN_CLAIMS: [&str; 11] = [
    "iss",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "userID",
    "userLocation",
    "LoA",
    "loa",
    "purposeId",
];

/// Verifies an `Agid-JWT-TrackingEvidence` (provider side): RS256 only, `typ` JWT, the key
/// found through `resolver` by `kid` (PDND `GET /keys/{kid}`), `aud` == our audience,
/// `iat`/`nbf`/`exp` with leeway, `jti`, `userID`, `userLocation` and `LoA` present (`loa`,
/// as in the IT-Wallet profile, accepted too).
///
/// The binding to the voucher is a separate check ([`binds_to_voucher`] /
/// [`check_voucher_binding`]) because only AUDIT_REST_02 requires it.
pub fn verify_tracking_evidence(
    jws: &str,
    resolver: &dyn KidResolver,
    expect: &SignatureExpectations,
) -> Result<TrackingEvidence, ModiError> {
    let verified = jws::verify_signature(
        jws,
        &KeySource::Kid(resolver),
        &[SigningAlgorithm::RS256],
        "JWT",
        expect.now,
    )?;
    let claims = &verified.claims;
    let audience = check_audience(claims, &expect.audience)?;
    let window = check_window(
        claims,
        expect.now,
        expect.leeway_secs,
        expect.max_lifetime_secs,
    )?;
    let jti = jti_claim(claims)?;
    let required =
        |name: &'static str| string_claim(claims, name)?.ok_or(ModiError::MissingClaim(name));
    let loa = match string_claim(claims, "LoA")? {
        Some(loa) => loa,
        None => string_claim(claims, "loa")?.ok_or(ModiError::MissingClaim("LoA"))?,
    };
    let kid = match verified.signer {
        super::Signer::Kid(kid) => kid,
        super::Signer::Certificate(_) => {
            return Err(ModiError::MissingKeyReference("kid"));
        }
    };
    let other_claims = claims
        .iter()
        .filter(|(k, _)| !KNOWN_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(TrackingEvidence {
        user_id: required("userID")?,
        user_location: required("userLocation")?,
        loa,
        jti,
        iss: string_claim(claims, "iss")?,
        audience,
        purpose_id: string_claim(claims, "purposeId")?,
        kid,
        iat: window.iat,
        exp: window.exp,
        replay_expires_at: window.exp.saturating_add(expect.leeway_secs.max(0)),
        digest: tracking_evidence_digest(jws),
        other_claims,
    })
}

/// Lower-case hex SHA-256 of the exact compact JWS bytes: the `digest.value` a consumer puts
/// in its client assertion (with `digest.alg` = `SHA256`). No trailing newline: hashing
/// `echo` output instead of `echo -n` is the mistake PDND's own documentation example makes.
pub fn tracking_evidence_digest(jws: &str) -> String {
    hex::encode(Sha256::digest(jws.as_bytes()))
}

/// Whether `jws` is the tracking evidence the voucher was issued for: its SHA-256 (hex) equals
/// the voucher's `digest.value`. Hex case is ignored (the value is a number, PDND only checks
/// its length); nothing else is normalised.
pub fn binds_to_voucher(jws: &str, voucher_digest_value: &str) -> bool {
    let ours = tracking_evidence_digest(jws);
    ours.len() == voucher_digest_value.len() && ours.eq_ignore_ascii_case(voucher_digest_value)
}

/// Checks that a verified tracking evidence speaks for the caller PDND authorised (AUDIT_REST_01
/// and _02 alike): `iss` is required and must be the voucher's client id, and `purposeId`, when
/// present, must be the voucher's `purposeId`.
///
/// `iss` is required because the evidence is a statement by the consumer about its own user:
/// without it, or with another client's id, a consumer could file evidence in somebody else's
/// name in our audit trail, signed with any key PDND holds for it.
///
/// `purposeId` is optional because AgID's AUDIT_REST_01 schema (and GovWay's, the reference
/// implementation) names only `userID`, `userLocation` and `LoA` besides the standard claims;
/// only the IT-Wallet profile requires it. Refusing evidence without it would refuse
/// conforming consumers, and the voucher (checked before) already carries the purpose. But an
/// evidence that declares another purpose than the voucher's contradicts the authorisation the
/// request runs under, so a present one must match.
pub fn check_voucher_identity(
    evidence: &TrackingEvidence,
    voucher_client_id: &str,
    voucher_purpose_id: &str,
) -> Result<(), ModiError> {
    if evidence.iss.as_deref() != Some(voucher_client_id) {
        return Err(ModiError::TrackingIssuerMismatch {
            expected: voucher_client_id.to_owned(),
            found: evidence.iss.clone(),
        });
    }
    match &evidence.purpose_id {
        Some(found) if found != voucher_purpose_id => Err(ModiError::TrackingPurposeMismatch {
            expected: voucher_purpose_id.to_owned(),
            found: found.clone(),
        }),
        _ => Ok(()),
    }
}

/// [`binds_to_voucher`] as a check: a voucher without `digest` cannot vouch for any evidence.
pub fn check_voucher_binding(
    jws: &str,
    voucher_digest_value: Option<&str>,
) -> Result<(), ModiError> {
    match voucher_digest_value {
        Some(value) if binds_to_voucher(jws, value) => Ok(()),
        _ => Err(ModiError::TrackingEvidenceNotBound),
    }
}
