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
#[derive(Clone, Debug)]
pub struct Voucher {
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
        &self.kid
    }
    pub fn jti(&self) -> &str {
        &self.jti
    }
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The consumer's PDND client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn purpose_id(&self) -> &str {
        &self.purpose_id
    }
    /// Every audience the voucher names (a comma-joined `aud` split into its parts).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }
    pub fn iat(&self) -> i64 {
        self.iat
    }
    pub fn nbf(&self) -> i64 {
        self.nbf
    }
    pub fn exp(&self) -> i64 {
        self.exp
    }
    pub fn producer_id(&self) -> Option<&str> {
        self.producer_id.as_deref()
    }
    pub fn consumer_id(&self) -> Option<&str> {
        self.consumer_id.as_deref()
    }
    pub fn eservice_id(&self) -> Option<&str> {
        self.eservice_id.as_deref()
    }
    pub fn descriptor_id(&self) -> Option<&str> {
        self.descriptor_id.as_deref()
    }
    /// The AUDIT_REST_02 binding to a tracking-evidence JWS, when the consumer asked for one.
    pub fn digest(&self) -> Option<&DigestClaim> {
        self.digest.as_ref()
    }
    /// `cnf.jkt` of a DPoP-bound voucher: such a voucher must not be accepted as Bearer.
    pub fn confirmation_jkt(&self) -> Option<&str> {
        self.confirmation_jkt.as_deref()
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
    if exp <= now - policy.leeway_secs {
        return Err(VoucherError::Expired);
    }
    if nbf > now + policy.leeway_secs {
        return Err(VoucherError::NotYetValid);
    }
    if iat > now + policy.leeway_secs {
        return Err(VoucherError::IssuedInFuture);
    }
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

    Ok(Voucher {
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
    })
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
mod tests {
    use super::*;
    use crate::pdnd::authority::{Authority, AuthorityConfig, RegisteredClient, RegisteredPurpose};
    use crate::pdnd::client_assertion::{ClientAssertionBuilder, TokenRequest};
    use crate::pdnd::jwk::RsaPrivateKey;
    use crate::pdnd::jws::{self, b64url};
    use crate::pdnd::test_keys;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "interop.pagopa.it";
    const AUD: &str = "https://comune.example/anagrafe/v1";
    const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    const PURPOSE: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";

    fn keys() -> JwkSet {
        JwkSet::single(
            &test_keys::authority().kid(),
            test_keys::authority().public(),
        )
    }

    fn policy() -> VoucherPolicy {
        let mut p = VoucherPolicy::new(vec![ISS.into()], vec![AUD.into()]);
        p.leeway_secs = 30;
        p
    }

    fn header() -> Value {
        json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": test_keys::authority().kid()})
    }

    fn claims() -> Value {
        json!({
            "jti": "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00", "iss": ISS, "aud": AUD, "sub": CLIENT,
            "client_id": CLIENT, "purposeId": PURPOSE, "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 540,
            "producerId": "p-1", "consumerId": "c-1", "eserviceId": "e-1", "descriptorId": "d-1",
        })
    }

    fn sign_with(key: &RsaPrivateKey, header: &Value, claims: &Value) -> String {
        jws::sign_rs256(header, claims, key).unwrap()
    }

    fn mint(header: &Value, claims: &Value) -> String {
        sign_with(test_keys::authority(), header, claims)
    }

    fn check(token: &str) -> Result<Voucher, VoucherError> {
        validate(token, &keys(), &policy(), NOW)
    }

    fn with_claims(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Voucher, VoucherError> {
        let mut c = claims();
        edit(c.as_object_mut().unwrap());
        check(&mint(&header(), &c))
    }

    fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Result<Voucher, VoucherError> {
        let mut h = header();
        edit(h.as_object_mut().unwrap());
        check(&mint(&h, &claims()))
    }

    // --- accepted ---

    #[test]
    fn valid_voucher_exposes_its_claims() {
        let v = check(&mint(&header(), &claims())).unwrap();
        assert_eq!(v.kid(), test_keys::authority().kid());
        assert_eq!(v.jti(), "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00");
        assert_eq!(v.issuer(), ISS);
        assert_eq!(v.client_id(), CLIENT);
        assert_eq!(v.subject(), CLIENT);
        assert_eq!(v.purpose_id(), PURPOSE);
        assert_eq!(v.audiences(), [AUD]);
        assert_eq!((v.iat(), v.nbf(), v.exp()), (NOW - 60, NOW - 60, NOW + 540));
        assert_eq!(v.producer_id(), Some("p-1"));
        assert_eq!(v.consumer_id(), Some("c-1"));
        assert_eq!(v.eservice_id(), Some("e-1"));
        assert_eq!(v.descriptor_id(), Some("d-1"));
        assert_eq!(v.digest(), None);
        assert_eq!(v.confirmation_jkt(), None);
    }

    #[test]
    fn comma_joined_aud_containing_ours_is_accepted() {
        let v =
            with_claims(|c| drop(c.insert("aud".into(), json!(format!("other-eservice,{AUD}")))))
                .unwrap();
        assert_eq!(v.audiences(), ["other-eservice", AUD]);
    }

    #[test]
    fn aud_array_containing_ours_is_accepted() {
        let v =
            with_claims(|c| drop(c.insert("aud".into(), json!(["other-eservice", AUD])))).unwrap();
        assert_eq!(v.audiences(), ["other-eservice", AUD]);
    }

    #[test]
    fn exp_within_leeway_is_accepted() {
        assert!(with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 29)))).is_ok());
    }

    #[test]
    fn iat_and_nbf_slightly_in_the_future_are_accepted() {
        assert!(with_claims(|c| {
            c.insert("iat".into(), json!(NOW + 30));
            c.insert("nbf".into(), json!(NOW + 30));
        })
        .is_ok());
    }

    #[test]
    fn the_same_voucher_is_accepted_twice() {
        let token = mint(&header(), &claims());
        assert!(check(&token).is_ok());
        assert!(check(&token).is_ok());
    }

    #[test]
    fn typ_not_required_when_policy_allows() {
        let mut p = policy();
        p.require_at_jwt_typ = false;
        let mut h = header();
        h.as_object_mut().unwrap().remove("typ");
        assert!(validate(&mint(&h, &claims()), &keys(), &p, NOW).is_ok());
    }

    #[test]
    fn voucher_minted_by_the_authority_validates() {
        let client = test_keys::client();
        let authority = Authority::new(
            test_keys::authority().clone(),
            AuthorityConfig {
                issuer: ISS.into(),
                assertion_audiences: vec!["auth.interop.pagopa.it/client-assertion".into()],
                voucher_lifetime_secs: 600,
            },
            vec![RegisteredClient {
                client_id: CLIENT.into(),
                consumer_id: "c-1".into(),
                public_key: client.public().clone(),
                purposes: vec![RegisteredPurpose {
                    purpose_id: PURPOSE.into(),
                    eservice_id: "e-1".into(),
                    descriptor_id: "d-1".into(),
                    producer_id: "p-1".into(),
                    audience: vec!["tributi-v1".into(), AUD.into()],
                    active: true,
                }],
            }],
        );
        let evidence = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln";
        let assertion = ClientAssertionBuilder {
            client_id: CLIENT.into(),
            audience: "auth.interop.pagopa.it/client-assertion".into(),
            purpose_id: Some(PURPOSE.into()),
            digest: Some(DigestClaim::sha256_of(evidence)),
            lifetime_secs: 60,
        }
        .sign(client, NOW)
        .unwrap();
        let response = authority
            .issue(&TokenRequest::new(CLIENT, &assertion), NOW)
            .unwrap();
        let v = validate(
            &response.access_token,
            &authority.jwks(),
            &policy(),
            NOW + 10,
        )
        .unwrap();
        assert_eq!(v.client_id(), CLIENT);
        assert_eq!(v.purpose_id(), PURPOSE);
        assert_eq!(v.audiences(), ["tributi-v1", AUD]);
        assert_eq!(v.exp(), NOW + 600);
        assert!(v.digest().unwrap().matches(evidence));
        assert!(!v.digest().unwrap().matches(&format!("{evidence}\n")));
        // ... and expires like any other.
        assert_eq!(
            validate(
                &response.access_token,
                &authority.jwks(),
                &policy(),
                NOW + 630
            )
            .unwrap_err(),
            VoucherError::Expired
        );
    }

    // --- refused ---

    #[test]
    fn alg_none() {
        let mut h = header();
        h["alg"] = json!("none");
        let token = format!(
            "{}.{}.",
            b64url(h.to_string()),
            b64url(claims().to_string())
        );
        assert_eq!(
            check(&token).unwrap_err(),
            VoucherError::UnsupportedAlgorithm("none".into())
        );
        // With signature bytes too, and whatever typ it claims.
        assert_eq!(
            with_header(|h| drop(h.insert("alg".into(), json!("none")))).unwrap_err(),
            VoucherError::UnsupportedAlgorithm("none".into())
        );
        assert_eq!(
            check(&format!("{token}c2ln")).unwrap_err(),
            VoucherError::UnsupportedAlgorithm("none".into())
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_pem() {
        let mut h = header();
        h["alg"] = json!("HS256");
        let input = format!("{}.{}", b64url(h.to_string()), b64url(claims().to_string()));
        let secret = test_keys::authority().public().to_pem().unwrap();
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            check(&format!("{input}.{sig}")).unwrap_err(),
            VoucherError::UnsupportedAlgorithm("HS256".into())
        );
    }

    #[test]
    fn missing_alg() {
        assert_eq!(
            with_header(|h| drop(h.remove("alg"))).unwrap_err(),
            VoucherError::MissingAlgorithm
        );
    }

    #[test]
    fn signed_by_a_key_not_in_the_set() {
        let stranger = test_keys::stranger();
        let mut h = header();
        h["kid"] = json!(stranger.kid());
        assert_eq!(
            check(&sign_with(stranger, &h, &claims())).unwrap_err(),
            VoucherError::UnknownKid(stranger.kid())
        );
        // Same key, but claiming the published kid: the signature does not verify.
        assert_eq!(
            check(&sign_with(stranger, &header(), &claims())).unwrap_err(),
            VoucherError::BadSignature
        );
    }

    #[test]
    fn kid_missing() {
        assert_eq!(
            with_header(|h| drop(h.remove("kid"))).unwrap_err(),
            VoucherError::MissingKid
        );
    }

    #[test]
    fn kid_unknown() {
        assert_eq!(
            with_header(|h| drop(h.insert("kid".into(), json!("rotated-away")))).unwrap_err(),
            VoucherError::UnknownKid("rotated-away".into())
        );
    }

    #[test]
    fn wrong_typ() {
        assert_eq!(
            with_header(|h| drop(h.insert("typ".into(), json!("JWT")))).unwrap_err(),
            VoucherError::WrongType(Some("JWT".into()))
        );
    }

    #[test]
    fn missing_typ() {
        assert_eq!(
            with_header(|h| drop(h.remove("typ"))).unwrap_err(),
            VoucherError::WrongType(None)
        );
    }

    #[test]
    fn wrong_issuer() {
        assert_eq!(
            with_claims(|c| drop(c.insert("iss".into(), json!("uat.interop.pagopa.it"))))
                .unwrap_err(),
            VoucherError::WrongIssuer("uat.interop.pagopa.it".into())
        );
    }

    #[test]
    fn missing_issuer() {
        assert_eq!(
            with_claims(|c| drop(c.remove("iss"))).unwrap_err(),
            VoucherError::MissingClaim("iss")
        );
    }

    #[test]
    fn wrong_audience() {
        assert_eq!(
            with_claims(|c| drop(
                c.insert("aud".into(), json!("https://comune.example/tributi/v1"))
            ))
            .unwrap_err(),
            VoucherError::WrongAudience
        );
        // A prefix or a substring of ours is not ours.
        assert!(matches!(
            with_claims(|c| drop(c.insert("aud".into(), json!(format!("{AUD}/x,{AUD}x"))))),
            Err(VoucherError::WrongAudience)
        ));
    }

    #[test]
    fn aud_array_without_ours() {
        assert!(matches!(
            with_claims(|c| drop(c.insert("aud".into(), json!(["a", "b"])))),
            Err(VoucherError::WrongAudience)
        ));
    }

    #[test]
    fn expired() {
        assert_eq!(
            with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 30)))).unwrap_err(),
            VoucherError::Expired
        );
        assert_eq!(
            with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 3600)))).unwrap_err(),
            VoucherError::Expired
        );
    }

    #[test]
    fn nbf_beyond_leeway() {
        assert_eq!(
            with_claims(|c| drop(c.insert("nbf".into(), json!(NOW + 31)))).unwrap_err(),
            VoucherError::NotYetValid
        );
    }

    #[test]
    fn iat_in_the_future() {
        assert_eq!(
            with_claims(|c| drop(c.insert("iat".into(), json!(NOW + 31)))).unwrap_err(),
            VoucherError::IssuedInFuture
        );
    }

    #[test]
    fn missing_time_claims() {
        for name in ["exp", "nbf", "iat"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(name);
            assert!(
                matches!(check(&mint(&header(), &c)), Err(VoucherError::MissingClaim(n)) if n == name),
                "{name}"
            );
        }
        assert_eq!(
            with_claims(|c| drop(c.insert("exp".into(), json!("1700000600")))).unwrap_err(),
            VoucherError::InvalidClaim("exp")
        );
    }

    #[test]
    fn missing_purpose_id() {
        assert_eq!(
            with_claims(|c| drop(c.remove("purposeId"))).unwrap_err(),
            VoucherError::MissingPurposeId
        );
    }

    #[test]
    fn empty_purpose_id() {
        assert_eq!(
            with_claims(|c| drop(c.insert("purposeId".into(), json!("")))).unwrap_err(),
            VoucherError::MissingPurposeId
        );
    }

    #[test]
    fn m2m_token_without_purpose_is_refused() {
        let result = with_claims(|c| {
            c.remove("purposeId");
            c.insert("role".into(), json!("m2m"));
        });
        assert_eq!(result.unwrap_err(), VoucherError::MissingPurposeId);
    }

    #[test]
    fn malformed_base64() {
        let token = mint(&header(), &claims());
        let [h, p, s] = jws::split(&token).unwrap();
        assert!(matches!(
            check(&format!("{h}.{p}*.{s}")),
            Err(VoucherError::Malformed)
        ));
        assert!(matches!(
            check(&format!("{h}=.{p}.{s}")),
            Err(VoucherError::Malformed)
        ));
    }

    #[test]
    fn malformed_json() {
        let token = format!(
            "{}.{}.c2ln",
            b64url(header().to_string()),
            b64url("{\"iss\":")
        );
        assert!(matches!(check(&token), Err(VoucherError::Malformed)));
    }

    #[test]
    fn two_segments() {
        let token = mint(&header(), &claims());
        let two = token.rsplit_once('.').unwrap().0;
        assert!(matches!(check(two), Err(VoucherError::Malformed)));
    }

    #[test]
    fn token_of_64_kib() {
        let mut c = claims();
        c["padding"] = json!("x".repeat(64 * 1024));
        assert_eq!(
            check(&mint(&header(), &c)).unwrap_err(),
            VoucherError::TooLarge
        );
    }

    #[test]
    fn tampered_payload() {
        let token = mint(&header(), &claims());
        let [h, _, s] = jws::split(&token).unwrap();
        let mut c = claims();
        c["purposeId"] = json!("11111111-2222-4333-8444-555555555555");
        assert_eq!(
            check(&format!("{h}.{}.{s}", b64url(c.to_string()))).unwrap_err(),
            VoucherError::BadSignature
        );
    }

    #[test]
    fn crit_naming_any_extension() {
        for name in ["exp", "b64", "x-pdnd-ext"] {
            assert_eq!(
                with_header(|h| {
                    h.insert("crit".into(), json!([name]));
                    h.insert(name.into(), json!(false));
                })
                .unwrap_err(),
                VoucherError::CriticalExtension(name.into())
            );
        }
    }

    #[test]
    fn crit_of_the_wrong_shape() {
        for crit in [
            json!([]),
            json!("exp"),
            json!([""]),
            json!([7]),
            json!(null),
        ] {
            assert_eq!(
                with_header(|h| drop(h.insert("crit".into(), crit.clone()))).unwrap_err(),
                VoucherError::MalformedCrit,
                "{crit}"
            );
        }
    }

    fn lifetime_policy(max: i64) -> VoucherPolicy {
        let mut p = policy();
        p.max_lifetime_secs = max;
        p
    }

    #[test]
    fn lifetime_up_to_the_maximum_is_accepted() {
        // claims(): iat = nbf = NOW - 60, exp = NOW + 540: a lifetime of 600 s.
        let token = mint(&header(), &claims());
        assert!(validate(&token, &keys(), &lifetime_policy(600), NOW).is_ok());
        assert_eq!(VoucherPolicy::new(vec![], vec![]).max_lifetime_secs, 86_400);
    }

    #[test]
    fn lifetime_from_iat_beyond_the_maximum() {
        let token = mint(&header(), &claims());
        assert_eq!(
            validate(&token, &keys(), &lifetime_policy(599), NOW).unwrap_err(),
            VoucherError::LifetimeTooLong {
                from: "iat",
                lifetime: 600,
                max: 599
            }
        );
        // A week-long voucher against the default bound.
        assert!(matches!(
            with_claims(|c| drop(c.insert("exp".into(), json!(NOW - 60 + 7 * 86_400)))),
            Err(VoucherError::LifetimeTooLong { from: "iat", .. })
        ));
    }

    #[test]
    fn lifetime_from_nbf_beyond_the_maximum() {
        // iat recent, but nbf set far back: exp - nbf is what exceeds the bound.
        let mut c = claims();
        c["nbf"] = json!(NOW - 1_000);
        let token = mint(&header(), &c);
        assert_eq!(
            validate(&token, &keys(), &lifetime_policy(1_000), NOW).unwrap_err(),
            VoucherError::LifetimeTooLong {
                from: "nbf",
                lifetime: 1_540,
                max: 1_000
            }
        );
    }

    fn ids_policy() -> VoucherPolicy {
        let mut p = policy();
        p.producer_id = Some("p-1".into());
        p.eservice_id = Some("e-1".into());
        p.descriptor_id = Some("d-1".into());
        p
    }

    #[test]
    fn configured_identifiers_that_match_are_accepted() {
        let token = mint(&header(), &claims());
        assert!(validate(&token, &keys(), &ids_policy(), NOW).is_ok());
    }

    #[test]
    fn configured_identifiers_that_differ_or_are_missing() {
        for claim in ["producerId", "eserviceId", "descriptorId"] {
            let mut c = claims();
            c[claim] = json!("another-id");
            assert_eq!(
                validate(&mint(&header(), &c), &keys(), &ids_policy(), NOW).unwrap_err(),
                VoucherError::WrongIdentifier(claim),
            );
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                validate(&mint(&header(), &c), &keys(), &ids_policy(), NOW).unwrap_err(),
                VoucherError::MissingClaim(claim),
            );
            // Not configured: not checked.
            assert!(check(&mint(&header(), &c)).is_ok(), "{claim}");
        }
    }

    #[test]
    fn dpop_bound_voucher_exposes_its_thumbprint() {
        let v = with_claims(|c| drop(c.insert("cnf".into(), json!({"jkt": "abc"})))).unwrap();
        assert_eq!(v.confirmation_jkt(), Some("abc"));
    }
}
