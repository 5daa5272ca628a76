//! Our private signing key, parsed once into the form the signing primitive uses.
//!
//! `jsonwebtoken::encode` with an `EncodingKey` re-parses the key from DER (and, for RSA,
//! re-validates the whole key pair) on every signature: more than the RSA operation itself
//! costs. A response is signed per request, so the key is parsed at start and held here.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaEncoding, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
};

use super::keys::SigningAlgorithm;
use super::ModiError;

/// A parsed private key and the JWS algorithm it signs with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct HeldKey(Arc<Inner>);

enum Inner {
    Rsa {
        pair: RsaKeyPair,
        padding: &'static dyn RsaEncoding,
    },
    Ec(EcdsaKeyPair),
}

impl HeldKey {
    /// Parses a PKCS#8 DER private key for `algorithm` (the key type was already checked
    /// against the algorithm by the caller; a mismatch is still an error here).
    pub(crate) fn from_pkcs8(der: &[u8], algorithm: SigningAlgorithm) -> Result<Self, ModiError> {
        let rejected =
            |e: aws_lc_rs::error::KeyRejected| ModiError::KeyMaterial(format!("signing key: {e}"));
        let inner = match algorithm {
            SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => Inner::Rsa {
                pair: RsaKeyPair::from_pkcs8(der).map_err(rejected)?,
                padding: if algorithm == SigningAlgorithm::PS256 {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                },
            },
            SigningAlgorithm::ES256 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
        };
        Ok(HeldKey(Arc::new(inner)))
    }

    /// The JWS signature of `message` (the `header.payload` bytes): PKCS#1 v1.5 or PSS for
    /// RSA, the fixed-length `r || s` of RFC 7518 for ES256.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ModiError> {
        let failed = |_| ModiError::KeyMaterial("signing failed".into());
        let rng = SystemRandom::new();
        match &*self.0 {
            Inner::Rsa { pair, padding } => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
            Inner::Ec(pair) => Ok(pair.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
        }
    }
}
