//! The fixed keys, certificates, policies and instant the fuzz targets check against.
//!
//! They are committed (in `fixtures/`, made once with `openssl genpkey` and `pdnd-gateway
//! keys`) rather than generated per run so that a corpus input signed with them verifies on
//! every run and a finding replays exactly. They sign nothing outside fuzzing and no
//! configuration trusts them.

use std::sync::OnceLock;

use crate::modi::{rsa_thumbprint, TrustStore};
use crate::modi::{InMemoryKidResolver, SignatureExpectations, SigningAlgorithm, SigningMaterial};
use crate::pdnd::authority::{
    Authority, AuthorityConfig, RegisteredApiClient, RegisteredClient, RegisteredPurpose,
};
use crate::pdnd::jwk::{JwkSet, RsaPrivateKey};
use crate::pdnd::voucher::VoucherPolicy;

/// 2026-05-28T20:26:40Z: inside the certificates' validity (2025-2040).
pub const NOW: i64 = 1_780_000_000;
/// The leeway of every time check, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// The longest lifetime the ModI checks accept (`iat` to `exp`), as the provider's default.
pub const MAX_PEER_LIFETIME_SECS: i64 = 300;

/// The voucher issuer the policy accepts.
pub const ISSUER: &str = "interop.pagopa.it";
/// The e-service audience of vouchers and of ModI tokens.
pub const AUDIENCE: &str = "https://comune.example/anagrafe/v1";

/// The registered consumer client of the authority.
pub const CLIENT_ID: &str = "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b";
/// Its active purpose.
pub const PURPOSE_ID: &str = "34f1624b-91cb-4b05-b8c0-cad208a30222";
/// Its suspended purpose.
pub const SUSPENDED_PURPOSE_ID: &str = "7a1c52d0-5e3b-4f7e-9d1a-2b6c8e4f0a13";
/// An API Interop (M2M) client registered with the same key.
pub const API_CLIENT_ID: &str = "0d5f6e7a-8b9c-4d0e-a1f2-3b4c5d6e7f80";
/// The client-assertion audience of the authority.
pub const ASSERTION_AUDIENCE: &str = "auth.dev.interop.local/client-assertion";
/// The audience of the authority's M2M vouchers.
pub const M2M_AUDIENCE: &str = "dev.interop.local/m2m";

const AUTHORITY_KEY: &str = include_str!("fixtures/authority-key.pem");
const CLIENT_KEY: &str = include_str!("fixtures/client-key.pem");
const CA: &str = include_str!("fixtures/ca.pem");
const RSA_KEY: &str = include_str!("fixtures/signing-rsa-key.pem");
const RSA_CHAIN: &str = include_str!("fixtures/signing-rsa-chain.pem");
const EC_KEY: &str = include_str!("fixtures/signing-ec-key.pem");
const EC_CHAIN: &str = include_str!("fixtures/signing-ec-chain.pem");

fn once<T>(cell: &'static OnceLock<T>, make: impl FnOnce() -> T) -> &'static T {
    cell.get_or_init(make)
}

/// The PDND voucher-signing key (the dev authority's).
pub fn authority_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    once(&KEY, || {
        RsaPrivateKey::from_pem(AUTHORITY_KEY).expect("the committed authority key parses")
    })
}

/// The consumer client's key, registered with the authority.
pub fn client_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    once(&KEY, || {
        RsaPrivateKey::from_pem(CLIENT_KEY).expect("the committed client key parses")
    })
}

/// The PDND key set: the authority's key only.
pub fn voucher_keys() -> &'static JwkSet {
    static KEYS: OnceLock<JwkSet> = OnceLock::new();
    once(&KEYS, || {
        let key = authority_key();
        JwkSet::single(&key.kid(), key.public())
    })
}

/// The e-service's voucher policy: one issuer, one audience, typ required, default bound.
pub fn voucher_policy() -> &'static VoucherPolicy {
    static POLICY: OnceLock<VoucherPolicy> = OnceLock::new();
    once(&POLICY, || {
        let mut policy = VoucherPolicy::new(vec![ISSUER.into()], vec![AUDIENCE.into()]);
        policy.leeway_secs = LEEWAY_SECS;
        policy
    })
}

/// The development authority with one consumer client (an active and a suspended purpose) and
/// one API Interop client.
pub fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    once(&AUTHORITY, || {
        let purpose = |purpose_id: &str, active| RegisteredPurpose {
            purpose_id: purpose_id.into(),
            eservice_id: "b0a9a2c6-4f0e-4f5c-9b8e-2d2f0c0e5a11".into(),
            descriptor_id: "c1b2a3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d".into(),
            producer_id: "d2c3b4a5-6f7e-4b8c-9d0e-1f2a3b4c5d6e".into(),
            audience: vec![AUDIENCE.into(), "https://comune.example/other".into()],
            active,
        };
        let client = RegisteredClient {
            client_id: CLIENT_ID.into(),
            consumer_id: "e3d4c5b6-7a8f-4c9d-0e1f-2a3b4c5d6e7f".into(),
            public_key: client_key().public().clone(),
            purposes: vec![
                purpose(PURPOSE_ID, true),
                purpose(SUSPENDED_PURPOSE_ID, false),
            ],
        };
        let api_client = RegisteredApiClient {
            client_id: API_CLIENT_ID.into(),
            organization_id: "f4e5d6c7-8b9a-4d0e-1f2a-3b4c5d6e7f80".into(),
            public_key: client_key().public().clone(),
        };
        let config = AuthorityConfig {
            issuer: ISSUER.into(),
            assertion_audiences: vec![ASSERTION_AUDIENCE.into()],
            voucher_lifetime_secs: 600,
        };
        let key = RsaPrivateKey::from_pem(AUTHORITY_KEY).expect("the committed authority key");
        Authority::new(key, config, vec![client]).with_api_clients(M2M_AUDIENCE, vec![api_client])
    })
}

/// The dev CA as the trust store of INTEGRITY_REST_01 (`x5c`) signatures.
pub fn trust_store() -> &'static TrustStore {
    static STORE: OnceLock<TrustStore> = OnceLock::new();
    once(&STORE, || {
        TrustStore::from_pem(CA.as_bytes()).expect("the committed CA parses")
    })
}

/// The `kid` of the RSA signing key, as PDND would register it.
pub fn modi_kid() -> &'static str {
    static KID: OnceLock<String> = OnceLock::new();
    once(&KID, || {
        rsa_thumbprint(RSA_KEY.as_bytes()).expect("the committed RSA key has a thumbprint")
    })
    .as_str()
}

/// The PDND keys of INTEGRITY_REST_02 / AUDIT_REST_02: the RSA signing key under its `kid`.
pub fn kid_resolver() -> &'static InMemoryKidResolver {
    static RESOLVER: OnceLock<InMemoryKidResolver> = OnceLock::new();
    once(&RESOLVER, || {
        let resolver = InMemoryKidResolver::new();
        resolver
            .insert_rsa_pem(RSA_KEY.as_bytes())
            .expect("the committed RSA key registers");
        resolver
    })
}

/// ES256 with the EC leaf's `x5c` chain.
pub fn ec_x5c_material() -> &'static SigningMaterial {
    static MATERIAL: OnceLock<SigningMaterial> = OnceLock::new();
    once(&MATERIAL, || {
        SigningMaterial::from_pem(
            EC_KEY.as_bytes(),
            EC_CHAIN.as_bytes(),
            SigningAlgorithm::ES256,
        )
        .expect("the committed EC identity loads")
    })
}

/// PS256 with the RSA leaf's `x5c` chain.
pub fn rsa_x5c_material() -> &'static SigningMaterial {
    static MATERIAL: OnceLock<SigningMaterial> = OnceLock::new();
    once(&MATERIAL, || {
        SigningMaterial::from_pem(
            RSA_KEY.as_bytes(),
            RSA_CHAIN.as_bytes(),
            SigningAlgorithm::PS256,
        )
        .expect("the committed RSA identity loads")
    })
}

/// RS256 with the RSA key's `kid`.
pub fn kid_material() -> &'static SigningMaterial {
    static MATERIAL: OnceLock<SigningMaterial> = OnceLock::new();
    once(&MATERIAL, || {
        SigningMaterial::with_kid(RSA_KEY.as_bytes(), modi_kid(), SigningAlgorithm::RS256)
            .expect("the committed RSA key loads")
    })
}

/// A valid voucher for [`voucher_policy`] at [`NOW`], signed with the authority key.
pub fn signed_voucher() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    once(&TOKEN, || {
        let key = authority_key();
        let header =
            serde_json::json!({"alg": "RS256", "use": "sig", "typ": "at+jwt", "kid": key.kid()});
        let claims = serde_json::json!({
            "jti": "0c8a6f5e-1b2c-4d3e-8f4a-5b6c7d8e9f00", "iss": ISSUER, "aud": AUDIENCE,
            "sub": CLIENT_ID, "client_id": CLIENT_ID, "purposeId": PURPOSE_ID,
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 540,
        });
        crate::pdnd::jws::sign_rs256(&header, &claims, key).expect("the fixed key signs")
    })
    .as_str()
}

/// A valid tracking evidence for [`modi_expectations`], signed with the `kid` key.
pub fn signed_tracking_evidence() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    once(&TOKEN, || {
        let claims = crate::modi::TrackingClaims {
            iss: CLIENT_ID.into(),
            aud: AUDIENCE.into(),
            user_id: "operatore-042".into(),
            user_location: "ufficio-anagrafe-pc-07".into(),
            loa: "substantial".into(),
            iat: NOW - 10,
            exp: NOW + 50,
            jti: "te-fixed".into(),
            purpose_id: Some(PURPOSE_ID.into()),
        };
        crate::modi::build_tracking_evidence(kid_material(), &claims).expect("the fixed key signs")
    })
    .as_str()
}

/// What the provider expects of a ModI token addressed to it.
pub fn modi_expectations() -> SignatureExpectations {
    SignatureExpectations {
        audience: AUDIENCE.into(),
        leeway_secs: LEEWAY_SECS,
        now: NOW,
        max_lifetime_secs: Some(MAX_PEER_LIFETIME_SECS),
    }
}
