//! ModI on the comune's outbound calls: what a fruizione adds to a request and checks on the
//! answer when its configuration names ModI patterns.
//!
//! - INTEGRITY_REST_02: `Digest` and `Agid-JWT-Signature` over the body and `Content-Type`,
//!   signed RS256 with the fruizione's PDND client key, header `kid` = the key's RFC 7638
//!   thumbprint (the id PDND knows it by);
//! - INTEGRITY_REST_01: the same with the configured key and certificate chain (`x5c`);
//! - AUDIT_REST_01/02: an `Agid-JWT-TrackingEvidence` built from what the internal caller says
//!   about its user (`X-User-Id`, `X-User-Location`, `X-LoA`), signed with the client key; for
//!   AUDIT_REST_02 its SHA-256 goes into the voucher request, so that voucher serves this one
//!   call;
//! - `verify_response`: the remote's `Agid-JWT-Signature` (with `aud` = our client id) and
//!   `Digest` are checked against the answer's headers and body bytes.
//!
//! Boundary: the protocol itself is [`crate::modi`]; this module turns a fruizione's
//! configuration into signing material once, and per call turns caller headers, body and
//! `now` into the headers to send. The HTTP proxy ([`super::fruizioni`]) decides the answers.

use crate::config::{FruizioneConfig, OutboundModiPattern};
use crate::modi::{
    self, KeySource, MessageSignature, ModiError, SignatureClaims, SignatureExpectations,
    SigningAlgorithm, SigningMaterial, TrackingClaims, TrustStore,
};
use crate::pdnd::client_assertion::DigestClaim;
use crate::pdnd::jwk::RsaPrivateKey;
use actix_web::http::header::HeaderMap;

/// Caller header naming the user on whose behalf the call is made (required for AUDIT_REST_*).
pub const X_USER_ID: &str = "x-user-id";
/// Caller header naming the user's workstation or office.
pub const X_USER_LOCATION: &str = "x-user-location";
/// Caller header with the level of assurance of the user's authentication.
pub const X_LOA: &str = "x-loa";

/// Lifetime of the JWS we sign per call: they accompany one request, so a minute covers
/// clock skew and a slow network without leaving a long replay window.
pub const JWS_LIFETIME_SECS: i64 = 60;
/// Longest accepted value of a caller's audit header.
const MAX_AUDIT_VALUE: usize = 256;
/// `userLocation` when the caller does not say: the evidence must carry one.
pub const UNKNOWN_LOCATION: &str = "unspecified";
/// `LoA` when the caller does not say.
pub const UNKNOWN_LOA: &str = "unspecified";

/// Why the ModI options of a fruizione could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OutboundModiSetupError {
    #[error("signing material: {0}")]
    Material(ModiError),
    #[error("response trust file {path}: {reason}")]
    Trust { path: String, reason: String },
    #[error("`audience` is required with ModI patterns")]
    NoAudience,
}

/// What the internal caller did wrong with its audit headers (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerHeaderError {
    #[error("header `X-User-Id` is required by this fruizione's ModI audit pattern")]
    MissingUserId,
    #[error("header `{0}` must be UTF-8 text without control characters, at most 256 bytes")]
    Invalid(&'static str),
}

/// The caller's statement about its user, for the tracking evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerAudit {
    pub user_id: String,
    pub user_location: String,
    pub loa: String,
}

fn audit_header(
    headers: &HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<String>, CallerHeaderError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| CallerHeaderError::Invalid(display))?
        .trim();
    if text.len() > MAX_AUDIT_VALUE || text.chars().any(char::is_control) {
        return Err(CallerHeaderError::Invalid(display));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// The caller's `X-User-Id`, when given: trimmed UTF-8, at most 256 bytes, no control
/// characters (it goes into the audit trail of every fruizione call, ModI or not).
pub fn user_id(headers: &HeaderMap) -> Result<Option<String>, CallerHeaderError> {
    audit_header(headers, X_USER_ID, "X-User-Id")
}

impl CallerAudit {
    /// Reads `X-User-Id` (required), `X-User-Location` and `X-LoA` (defaulting to
    /// [`UNKNOWN_LOCATION`] / [`UNKNOWN_LOA`]).
    pub fn from_headers(headers: &HeaderMap) -> Result<CallerAudit, CallerHeaderError> {
        let user_id = audit_header(headers, X_USER_ID, "X-User-Id")?
            .ok_or(CallerHeaderError::MissingUserId)?;
        Ok(CallerAudit {
            user_id,
            user_location: audit_header(headers, X_USER_LOCATION, "X-User-Location")?
                .unwrap_or_else(|| UNKNOWN_LOCATION.to_owned()),
            loa: audit_header(headers, X_LOA, "X-LoA")?.unwrap_or_else(|| UNKNOWN_LOA.to_owned()),
        })
    }
}

/// Which audit pattern a fruizione applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// AUDIT_REST_01: the evidence travels alone; the voucher is the cached one.
    Standalone,
    /// AUDIT_REST_02: the voucher carries the evidence's digest; one voucher per call.
    BoundToVoucher,
}

/// A tracking evidence for one call, and the digest claim to bind the voucher to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The compact JWS, sent byte for byte as `Agid-JWT-TrackingEvidence`.
    pub jws: String,
    /// `Some` for AUDIT_REST_02: the client assertion's `digest`.
    pub voucher_digest: Option<DigestClaim>,
}

/// The ModI behaviour of one fruizione, with its keys loaded. Exists only when the
/// configuration asks for something.
pub struct OutboundModi {
    client_id: String,
    audience: String,
    purpose_id: String,
    /// The client key with its PDND `kid` (INTEGRITY_REST_02, tracking evidence).
    kid_material: SigningMaterial,
    integrity: Option<SigningMaterial>,
    audit: Option<AuditMode>,
    response_trust: Option<TrustStore>,
    leeway_secs: i64,
}

impl std::fmt::Debug for OutboundModi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundModi")
            .field("audience", &self.audience)
            .field(
                "integrity",
                &self.integrity.as_ref().map(|m| m.key_reference()),
            )
            .field("audit", &self.audit)
            .field("verify_response", &self.response_trust.is_some())
            .finish_non_exhaustive()
    }
}

impl OutboundModi {
    /// Loads what `f` asks for (the configuration is validated: pattern names known, files and
    /// audience present). `None` when the fruizione uses no ModI option.
    pub fn from_config(
        f: &FruizioneConfig,
        client_id: &str,
        client_key: &RsaPrivateKey,
        leeway_secs: i64,
    ) -> Result<Option<OutboundModi>, OutboundModiSetupError> {
        let patterns = f.modi_patterns();
        if patterns.is_empty() && !f.verify_response {
            return Ok(None);
        }
        let kid_material = SigningMaterial::with_kid(
            client_key.to_pem().as_bytes(),
            client_key.kid(),
            SigningAlgorithm::RS256,
        )
        .map_err(OutboundModiSetupError::Material)?;
        let mut integrity = None;
        let mut audit = None;
        for p in &patterns {
            match p {
                OutboundModiPattern::IntegrityRest02 => integrity = Some(kid_material.clone()),
                OutboundModiPattern::IntegrityRest01 => {
                    let (Some(key), Some(chain)) = (&f.signing_key_file, &f.signing_chain_file)
                    else {
                        return Err(OutboundModiSetupError::Material(ModiError::KeyMaterial(
                            "INTEGRITY_REST_01 needs signing_key_file and signing_chain_file"
                                .into(),
                        )));
                    };
                    let algorithm = f
                        .signing_algorithm
                        .as_deref()
                        .map_or(Some(SigningAlgorithm::RS256), SigningAlgorithm::from_jose)
                        .ok_or_else(|| {
                            OutboundModiSetupError::Material(ModiError::KeyMaterial(
                                "signing_algorithm is not RS256, PS256 or ES256".into(),
                            ))
                        })?;
                    integrity = Some(
                        SigningMaterial::from_pem_files(key, chain, algorithm)
                            .map_err(OutboundModiSetupError::Material)?,
                    );
                }
                OutboundModiPattern::AuditRest01 => audit = Some(AuditMode::Standalone),
                OutboundModiPattern::AuditRest02 => audit = Some(AuditMode::BoundToVoucher),
            }
        }
        let response_trust = match (&f.verify_response, &f.response_trust_file) {
            (true, Some(path)) => {
                let err = |reason: String| OutboundModiSetupError::Trust {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                Some(TrustStore::from_pem(&pem).map_err(|e| err(e.to_string()))?)
            }
            (true, None) => {
                return Err(OutboundModiSetupError::Trust {
                    path: "(none)".into(),
                    reason: "verify_response needs response_trust_file".into(),
                })
            }
            _ => None,
        };
        let audience = match &f.audience {
            Some(a) if !a.trim().is_empty() => a.trim().to_owned(),
            // Only response verification: nothing we send names the remote.
            _ if patterns.is_empty() => String::new(),
            _ => return Err(OutboundModiSetupError::NoAudience),
        };
        Ok(Some(OutboundModi {
            client_id: client_id.to_owned(),
            audience,
            purpose_id: f.purpose_id.clone(),
            kid_material,
            integrity,
            audit,
            response_trust,
            leeway_secs,
        }))
    }

    /// The audit pattern applied, if any: the proxy then needs a [`CallerAudit`].
    pub fn audit(&self) -> Option<AuditMode> {
        self.audit
    }

    /// Whether requests carry `Digest` + `Agid-JWT-Signature` (INTEGRITY_REST_01/02).
    pub fn signs_requests(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether the remote's answers are verified.
    pub fn verifies_response(&self) -> bool {
        self.response_trust.is_some()
    }

    /// The tracking evidence for one call (AUDIT_REST_01/02), `None` without an audit pattern.
    pub fn tracking_evidence(
        &self,
        caller: &CallerAudit,
        now: i64,
    ) -> Result<Option<Evidence>, ModiError> {
        let Some(mode) = self.audit else {
            return Ok(None);
        };
        let jws = modi::build_tracking_evidence(
            &self.kid_material,
            &TrackingClaims {
                iss: self.client_id.clone(),
                aud: self.audience.clone(),
                user_id: caller.user_id.clone(),
                user_location: caller.user_location.clone(),
                loa: caller.loa.clone(),
                iat: now,
                exp: now + JWS_LIFETIME_SECS,
                jti: uuid::Uuid::new_v4().to_string(),
                purpose_id: Some(self.purpose_id.clone()),
            },
        )?;
        let voucher_digest = (mode == AuditMode::BoundToVoucher).then(|| DigestClaim {
            alg: "SHA256".to_owned(),
            value: modi::tracking_evidence_digest(&jws),
        });
        Ok(Some(Evidence {
            jws,
            voucher_digest,
        }))
    }

    /// `Digest` and `Agid-JWT-Signature` for the body and `Content-Type` exactly as they will
    /// be sent (INTEGRITY_REST_01/02), `None` without an integrity pattern.
    pub fn sign_request(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Option<MessageSignature>, ModiError> {
        let Some(material) = &self.integrity else {
            return Ok(None);
        };
        let claims = SignatureClaims {
            iss: self.client_id.clone(),
            sub: self.client_id.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + JWS_LIFETIME_SECS,
        };
        modi::sign_message(material, &claims, content_type, None, body).map(Some)
    }

    /// Checks the remote's signed answer when `verify_response` is set: `Agid-JWT-Signature`
    /// with an `x5c` chain to the configured CAs and `aud` = our client id, signed headers equal
    /// to the actual ones, `Digest` equal to the body. 204/304 carry no body and are not signed.
    pub fn check_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), ModiError> {
        let Some(trust) = &self.response_trust else {
            return Ok(());
        };
        if !modi::is_signable_status(status) {
            return Ok(());
        }
        let expect = SignatureExpectations {
            audience: self.client_id.clone(),
            leeway_secs: self.leeway_secs,
            now,
            max_lifetime_secs: None,
        };
        modi::verify_response(status, headers, body, &KeySource::X5c(trust), &expect).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modi::{InMemoryKidResolver, KidResolver};
    use actix_web::http::header::{HeaderName, HeaderValue};

    const CLIENT: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
    const PURPOSE: &str = "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01";
    const AUD: &str = "https://api.example.gov.it/isee/v1";
    const NOW: i64 = 1_760_000_000;

    fn fruizione(modi: &[&str]) -> FruizioneConfig {
        FruizioneConfig {
            name: "isee".into(),
            remote_base_url: "https://api.example.gov.it/isee/v1".into(),
            purpose_id: PURPOSE.into(),
            client_id: None,
            key_file: None,
            modi: modi.iter().map(|m| m.to_string()).collect(),
            audience: Some(AUD.into()),
            signing_key_file: None,
            signing_chain_file: None,
            signing_algorithm: None,
            verify_response: false,
            response_trust_file: None,
            timeout_ms: 1000,
            max_concurrency: 1,
            ca_file: None,
            max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
            dpop: false,
        }
    }

    fn key() -> RsaPrivateKey {
        crate::pdnd::test_keys::client().clone()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_bytes(v).expect("value"),
            );
        }
        h
    }

    fn resolver(key: &RsaPrivateKey) -> InMemoryKidResolver {
        let r = InMemoryKidResolver::new();
        let kid = r.insert_rsa_pem(key.to_pem().as_bytes()).expect("register");
        assert_eq!(kid, key.kid(), "the kid is the RFC 7638 thumbprint");
        r
    }

    fn expect(now: i64) -> SignatureExpectations {
        SignatureExpectations {
            audience: AUD.into(),
            leeway_secs: 0,
            now,
            max_lifetime_secs: Some(JWS_LIFETIME_SECS),
        }
    }

    #[test]
    fn nothing_configured_is_none() {
        let out = OutboundModi::from_config(&fruizione(&[]), CLIENT, &key(), 30).expect("loads");
        assert!(out.is_none());
    }

    #[test]
    fn integrity_rest_02_signs_body_and_content_type_with_the_client_kid() {
        let key = key();
        let out = OutboundModi::from_config(&fruizione(&["INTEGRITY_REST_02"]), CLIENT, &key, 30)
            .expect("loads")
            .expect("configured");
        assert_eq!(out.audit(), None);
        let body = br#"{"codiceFiscale":"RSSMRA80A01H501U"}"#;
        let sig = out
            .sign_request(Some("application/json"), body, NOW)
            .expect("signs")
            .expect("integrity configured");
        let sent = [
            ("content-type", "application/json"),
            ("digest", sig.digest.as_str()),
            ("agid-jwt-signature", sig.agid_jwt_signature.as_str()),
        ];
        let r = resolver(&key);
        let v =
            modi::verify_request(&sent, body, &KeySource::Kid(&r), &expect(NOW)).expect("verifies");
        assert_eq!(v.iss.as_deref(), Some(CLIENT));
        assert_eq!(v.sub.as_deref(), Some(CLIENT));
        assert_eq!(v.exp - v.iat, JWS_LIFETIME_SECS);
        let names: Vec<_> = v.signed_headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["digest", "content-type"]);
        // Another body, or the right body a minute and more later, does not pass.
        assert_eq!(
            modi::verify_request(&sent, b"{}", &KeySource::Kid(&r), &expect(NOW)).unwrap_err(),
            ModiError::DigestMismatch
        );
        assert!(matches!(
            modi::verify_request(&sent, body, &KeySource::Kid(&r), &expect(NOW + 61)),
            Err(ModiError::Expired { .. })
        ));
        // Two calls, two jti.
        let again = out
            .sign_request(Some("application/json"), body, NOW)
            .expect("signs")
            .expect("configured");
        assert_ne!(again.agid_jwt_signature, sig.agid_jwt_signature);
    }

    #[test]
    fn audit_rest_02_evidence_is_bound_and_carries_the_caller() {
        let key = key();
        let out = OutboundModi::from_config(&fruizione(&["AUDIT_REST_02"]), CLIENT, &key, 30)
            .expect("loads")
            .expect("configured");
        assert_eq!(out.audit(), Some(AuditMode::BoundToVoucher));
        assert!(out
            .sign_request(None, b"", NOW)
            .expect("no integrity")
            .is_none());
        let caller = CallerAudit::from_headers(&headers(&[
            ("x-user-id", b"operatore.42"),
            ("x-loa", b"substantial"),
        ]))
        .expect("headers");
        assert_eq!(caller.user_location, UNKNOWN_LOCATION);
        let ev = out
            .tracking_evidence(&caller, NOW)
            .expect("builds")
            .expect("audit configured");
        let digest = ev.voucher_digest.clone().expect("bound to the voucher");
        assert_eq!(digest.alg, "SHA256");
        assert!(digest.matches(&ev.jws));
        assert!(modi::binds_to_voucher(&ev.jws, &digest.value));
        let r = resolver(&key);
        let t = modi::verify_tracking_evidence(&ev.jws, &r as &dyn KidResolver, &expect(NOW))
            .expect("verifies");
        assert_eq!(t.user_id, "operatore.42");
        assert_eq!(t.loa, "substantial");
        assert_eq!(t.purpose_id.as_deref(), Some(PURPOSE));
        assert_eq!(t.iss.as_deref(), Some(CLIENT));
        assert_eq!(t.kid, key.kid());

        // AUDIT_REST_01: an evidence, no voucher binding.
        let out01 = OutboundModi::from_config(&fruizione(&["AUDIT_REST_01"]), CLIENT, &key, 30)
            .expect("loads")
            .expect("configured");
        let ev01 = out01
            .tracking_evidence(&caller, NOW)
            .expect("builds")
            .expect("audit");
        assert_eq!(ev01.voucher_digest, None);
    }

    #[test]
    fn caller_headers_are_checked() {
        assert_eq!(
            CallerAudit::from_headers(&headers(&[("x-loa", b"high")])),
            Err(CallerHeaderError::MissingUserId)
        );
        assert_eq!(
            CallerAudit::from_headers(&headers(&[("x-user-id", b"  ")])),
            Err(CallerHeaderError::MissingUserId)
        );
        assert_eq!(
            CallerAudit::from_headers(&headers(&[("x-user-id", &[0xff, 0xfe])])),
            Err(CallerHeaderError::Invalid("X-User-Id"))
        );
        let long = "u".repeat(300);
        assert_eq!(
            CallerAudit::from_headers(&headers(&[
                ("x-user-id", b"u1"),
                ("x-user-location", long.as_bytes())
            ])),
            Err(CallerHeaderError::Invalid("X-User-Location"))
        );
        let ok = CallerAudit::from_headers(&headers(&[
            ("x-user-id", "Niccolò".as_bytes()),
            ("x-user-location", b"ufficio-anagrafe-3"),
        ]))
        .expect("UTF-8 user ids are fine");
        assert_eq!(ok.user_id, "Niccolò");
        assert_eq!(ok.user_location, "ufficio-anagrafe-3");
        assert_eq!(ok.loa, UNKNOWN_LOA);
    }

    #[test]
    fn responses_verify_against_the_trust_file() {
        let dir = std::env::temp_dir().join(format!("modi-out-{}", uuid::Uuid::new_v4()));
        let pki = modi::generate_dev_pki(&dir, "ente.example.it").expect("pki");
        let mut f = fruizione(&[]);
        f.audience = None;
        f.verify_response = true;
        f.response_trust_file = Some(pki.ca_cert.clone());
        let out = OutboundModi::from_config(&f, CLIENT, &key(), 30)
            .expect("loads")
            .expect("configured");
        assert!(out.verifies_response());
        let material = pki
            .signing_material(SigningAlgorithm::RS256)
            .expect("material");
        let body = br#"{"isee":12345.67}"#;
        let claims = SignatureClaims {
            iss: "ente".into(),
            sub: "ente".into(),
            aud: CLIENT.into(),
            jti: "r-1".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 100,
        };
        let sig = modi::sign_response(
            200,
            &material,
            &claims,
            Some("application/json"),
            None,
            body,
        )
        .expect("signs")
        .expect("signable");
        let sent = [
            ("content-type", "application/json"),
            ("digest", sig.digest.as_str()),
            ("agid-jwt-signature", sig.agid_jwt_signature.as_str()),
        ];
        out.check_response(200, &sent, body, NOW).expect("verifies");
        assert_eq!(
            out.check_response(200, &sent, br#"{"isee":1.0}"#, NOW),
            Err(ModiError::DigestMismatch)
        );
        assert_eq!(
            out.check_response(200, &sent[..1], body, NOW),
            Err(ModiError::MissingHeader("agid-jwt-signature".into()))
        );
        // Signed for another client: wrong audience.
        let other = modi::sign_response(
            200,
            &material,
            &SignatureClaims {
                aud: "someone-else".into(),
                ..claims
            },
            Some("application/json"),
            None,
            body,
        )
        .expect("signs")
        .expect("signable");
        let sent_other = [
            ("content-type", "application/json"),
            ("digest", other.digest.as_str()),
            ("agid-jwt-signature", other.agid_jwt_signature.as_str()),
        ];
        assert!(matches!(
            out.check_response(200, &sent_other, body, NOW),
            Err(ModiError::WrongAudience { .. })
        ));
        // Nothing to verify on a 204.
        out.check_response(204, &[], b"", NOW).expect("204 passes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn integrity_rest_01_sends_the_chain() {
        let dir = std::env::temp_dir().join(format!("modi-out-{}", uuid::Uuid::new_v4()));
        let pki = modi::generate_dev_pki(&dir, "comune.example.it").expect("pki");
        let mut f = fruizione(&["INTEGRITY_REST_01"]);
        f.signing_key_file = Some(pki.ec_key.clone());
        f.signing_chain_file = Some(pki.ec_chain.clone());
        f.signing_algorithm = Some("ES256".into());
        let out = OutboundModi::from_config(&f, CLIENT, &key(), 30)
            .expect("loads")
            .expect("configured");
        let sig = out
            .sign_request(Some("application/json"), b"{}", NOW)
            .expect("signs")
            .expect("integrity");
        let sent = [
            ("content-type", "application/json"),
            ("digest", sig.digest.as_str()),
            ("agid-jwt-signature", sig.agid_jwt_signature.as_str()),
        ];
        let trust = pki.trust_store().expect("trust");
        let v = modi::verify_request(&sent, b"{}", &KeySource::X5c(&trust), &expect(NOW))
            .expect("verifies through the chain");
        assert_eq!(v.algorithm, SigningAlgorithm::ES256);
        // A key that does not match the chain is refused at load.
        f.signing_key_file = Some(pki.rsa_key.clone());
        f.signing_algorithm = None;
        assert!(matches!(
            OutboundModi::from_config(&f, CLIENT, &key(), 30),
            Err(OutboundModiSetupError::Material(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
