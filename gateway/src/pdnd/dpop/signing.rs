//! The fruitore's side: [`DpopKey`] holds the gateway's P-256 key and signs one proof per
//! request it sends with a DPoP-bound voucher.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde::Serialize;
use serde_json::Value;

use super::{access_token_hash, ProofAlgorithm, DPOP_TYP};
use crate::pdnd::jwk::{EcPublicKey, P256_COORDINATE_LEN};

/// Why a proof key could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum DpopKeyError {
    #[error("P-256 key: {0}")]
    Key(String),
    #[error("ES256 signing failed: {0}")]
    Sign(String),
    #[error("{0} is not an absolute http(s) URL to name in htu")]
    Url(String),
}

/// A P-256 key that signs the gateway's own proofs (ES256), as fruitore.
#[derive(Clone)]
pub struct DpopKey {
    // Visible to the tests, which sign hand-built proofs with our key.
    pub(super) encoding: EncodingKey,
    public: EcPublicKey,
    jkt: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DpopKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

/// The header of our proofs.
#[derive(Serialize)]
struct ProofHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    jwk: &'a Value,
}

/// The claims of our proofs.
#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let ec = EcKey::generate(&group).map_err(|e| DpopKeyError::Key(e.to_string()))?;
        Self::from_ec(ec)
    }

    /// A P-256 private key from PEM (PKCS#8 or SEC1).
    pub fn from_pem(pem: &str) -> Result<Self, DpopKeyError> {
        let pkey = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let ec = pkey
            .ec_key()
            .map_err(|_| DpopKeyError::Key("not an EC key".into()))?;
        Self::from_ec(ec)
    }

    pub(super) fn from_ec(ec: EcKey<openssl::pkey::Private>) -> Result<Self, DpopKeyError> {
        let err = |e: openssl::error::ErrorStack| DpopKeyError::Key(e.to_string());
        if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err(DpopKeyError::Key("ES256 needs a P-256 key".into()));
        }
        let mut ctx = BigNumContext::new().map_err(err)?;
        let mut x = BigNum::new().map_err(err)?;
        let mut y = BigNum::new().map_err(err)?;
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
            .map_err(err)?;
        let width = P256_COORDINATE_LEN as i32;
        let public = EcPublicKey {
            x: URL_SAFE_NO_PAD.encode(x.to_vec_padded(width).map_err(err)?),
            y: URL_SAFE_NO_PAD.encode(y.to_vec_padded(width).map_err(err)?),
        };
        let pkcs8 = PKey::from_ec_key(ec)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(err)?;
        let encoding =
            EncodingKey::from_ec_pem(&pkcs8).map_err(|e| DpopKeyError::Key(e.to_string()))?;
        let jkt = public.thumbprint();
        Ok(Self {
            encoding,
            public,
            jkt,
        })
    }

    /// The public half.
    pub fn public(&self) -> &EcPublicKey {
        &self.public
    }

    /// The RFC 7638 thumbprint: the `cnf.jkt` of vouchers bound to this key.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request: `htu` is `url` without query and fragment; `ath` is set when
    /// a voucher accompanies the request. Each call has a fresh UUID v4 `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<String, DpopKeyError> {
        let mut htu = url::Url::parse(url).map_err(|_| DpopKeyError::Url(url.to_owned()))?;
        if !matches!(htu.scheme(), "http" | "https") {
            return Err(DpopKeyError::Url(url.to_owned()));
        }
        htu.set_query(None);
        htu.set_fragment(None);
        let jwk = self.public.to_jwk();
        let header = ProofHeader {
            typ: DPOP_TYP,
            alg: ProofAlgorithm::ES256.jose_name(),
            jwk: &jwk,
        };
        let claims = ProofClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            htm: method,
            htu: htu.as_str(),
            iat: now,
            ath: access_token.map(access_token_hash),
        };
        let encode = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
        let header = serde_json::to_vec(&header).map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        let claims = serde_json::to_vec(&claims).map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        let signing_input = format!("{}.{}", encode(header), encode(claims));
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, Algorithm::ES256)
                .map_err(|e| DpopKeyError::Sign(e.to_string()))?;
        Ok(format!("{signing_input}.{signature}"))
    }
}
