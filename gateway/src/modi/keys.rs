//! Key material for the ModI patterns: our signing keys and the trust anchors for peers' `x5c`.
//!
//! [`SigningMaterial`] is built once from PEM (files named in config, mounted from a secret or an
//! HSM-backed path) and checked on load: the algorithm fits the key, RSA keys have at least 2048
//! bits, the leaf certificate belongs to the key. [`TrustStore`] holds the CA certificates that
//! a peer's `x5c` chain must lead to, and checks chains with OpenSSL at a caller-given time.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
#[cfg(test)]
use jsonwebtoken::EncodingKey;
use jsonwebtoken::{Algorithm, DecodingKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509NameRef, X509StoreContext, X509};
use sha2::{Digest as _, Sha256};

use super::signer::HeldKey;
use super::ModiError;

/// Smallest RSA modulus accepted, ours or a peer's (PDND refuses smaller keys as well).
pub const MIN_RSA_BITS: u32 = 2048;
/// Most certificates accepted in an `x5c` header: leaf, a few intermediates, maybe the root.
pub const MAX_X5C_CERTS: usize = 6;
/// Longest base64 certificate accepted in `x5c`.
const MAX_X5C_CERT_LEN: usize = 16 * 1024;

/// The JWS algorithms the ModI patterns allow here. `none` and HMAC algorithms cannot be
/// represented, so they can never be selected by a token header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the only algorithm PDND uses and accepts for its keys.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl SigningAlgorithm {
    /// All allowed algorithms, for policies that accept any of them.
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::RS256,
        SigningAlgorithm::PS256,
        SigningAlgorithm::ES256,
    ];

    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::PS256 => "PS256",
            SigningAlgorithm::ES256 => "ES256",
        }
    }

    /// Parses a JOSE `alg`; anything outside the allow-list is `None`.
    pub fn from_jose(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(SigningAlgorithm::RS256),
            "PS256" => Some(SigningAlgorithm::PS256),
            "ES256" => Some(SigningAlgorithm::ES256),
            _ => None,
        }
    }

    pub(crate) fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::RS256 => Algorithm::RS256,
            SigningAlgorithm::PS256 => Algorithm::PS256,
            SigningAlgorithm::ES256 => Algorithm::ES256,
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, SigningAlgorithm::RS256 | SigningAlgorithm::PS256)
    }
}

/// How a receiver finds the public key of a JWS we sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReference {
    /// Certificate chain (`x5c`, standard base64 DER, leaf first): INTEGRITY_REST_01.
    X5c(Vec<String>),
    /// Key id registered on PDND (`kid`): INTEGRITY_REST_02 and AUDIT_REST_02.
    Kid(String),
}

/// A private key ready to sign, with the algorithm it signs with and how receivers find the
/// public half. Exists only after the key, algorithm and certificate were checked together.
#[derive(Clone)]
pub struct SigningMaterial {
    algorithm: SigningAlgorithm,
    /// For the tests that check our signatures against jsonwebtoken's own.
    #[cfg(test)]
    encoding_key: EncodingKey,
    held: HeldKey,
    key_reference: KeyReference,
    chain_der: Vec<Vec<u8>>,
    /// The JWS header segment every signature with this material starts with (base64url of
    /// `{"typ":"JWT","alg":…,"x5c":[…]}` or `…"kid":…`), encoded once. Why: with an `x5c`
    /// chain the header is a few KB, and serialising and encoding it on every signed answer
    /// cost about as much as the rest of the JWS's assembly.
    jws_header: std::sync::Arc<str>,
}

impl std::fmt::Debug for SigningMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes.
        f.debug_struct("SigningMaterial")
            .field("algorithm", &self.algorithm)
            .field("key_reference", &self.key_reference)
            .finish_non_exhaustive()
    }
}

impl SigningMaterial {
    /// Loads a private key (PKCS#8 or PKCS#1/SEC1 PEM) and its certificate chain (PEM, leaf
    /// first) for signing with an `x5c` header (INTEGRITY_REST_01).
    pub fn from_pem(
        key_pem: &[u8],
        chain_pem: &[u8],
        algorithm: SigningAlgorithm,
    ) -> Result<Self, ModiError> {
        let key = load_private_key(key_pem, algorithm)?;
        let chain = X509::stack_from_pem(chain_pem)
            .map_err(|e| ModiError::KeyMaterial(format!("certificate chain PEM: {e}")))?;
        let leaf = chain.first().ok_or_else(|| {
            ModiError::KeyMaterial("certificate chain PEM has no certificate".into())
        })?;
        let leaf_key = leaf
            .public_key()
            .map_err(|e| ModiError::KeyMaterial(format!("leaf certificate key: {e}")))?;
        if !leaf_key.public_eq(&key) {
            return Err(ModiError::KeyMaterial(
                "the first certificate of the chain is not for this private key".into(),
            ));
        }
        let mut chain_der = Vec::with_capacity(chain.len());
        for cert in &chain {
            chain_der.push(
                cert.to_der()
                    .map_err(|e| ModiError::KeyMaterial(format!("certificate to DER: {e}")))?,
            );
        }
        let key_reference =
            KeyReference::X5c(chain_der.iter().map(|der| STANDARD.encode(der)).collect());
        Ok(SigningMaterial {
            algorithm,
            #[cfg(test)]
            encoding_key: encoding_key(&key)?,
            held: held_key(&key, algorithm)?,
            jws_header: jws_header(algorithm, &key_reference)?,
            key_reference,
            chain_der,
        })
    }

    /// Loads a private key to sign with a `kid` header: the id under which its public half is
    /// registered on PDND (INTEGRITY_REST_02, AUDIT_REST_02). See [`rsa_thumbprint`].
    pub fn with_kid(
        key_pem: &[u8],
        kid: impl Into<String>,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, ModiError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(ModiError::KeyMaterial("empty kid".into()));
        }
        let key = load_private_key(key_pem, algorithm)?;
        let key_reference = KeyReference::Kid(kid);
        Ok(SigningMaterial {
            algorithm,
            #[cfg(test)]
            encoding_key: encoding_key(&key)?,
            held: held_key(&key, algorithm)?,
            jws_header: jws_header(algorithm, &key_reference)?,
            key_reference,
            chain_der: Vec::new(),
        })
    }

    /// Reads [`SigningMaterial::from_pem`]'s inputs from files.
    pub fn from_pem_files(
        key_path: &Path,
        chain_path: &Path,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, ModiError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| ModiError::KeyMaterial(format!("{}: {e}", p.display())))
        };
        Self::from_pem(&read(key_path)?, &read(chain_path)?, algorithm)
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn key_reference(&self) -> &KeyReference {
        &self.key_reference
    }

    /// The certificate chain, leaf first, as DER (empty for `kid` material).
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    #[cfg(test)]
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding_key
    }

    /// The key parsed once, for the per-message signatures.
    pub(crate) fn held_key(&self) -> &HeldKey {
        &self.held
    }

    /// The encoded JWS header segment of every signature with this material (no trailing dot).
    pub(crate) fn jws_header(&self) -> &str {
        &self.jws_header
    }
}

/// The base64url of the JWS header for `algorithm` and `key_reference`, with `typ: JWT`.
fn jws_header(
    algorithm: SigningAlgorithm,
    key_reference: &KeyReference,
) -> Result<std::sync::Arc<str>, ModiError> {
    let mut header = jsonwebtoken::Header::new(algorithm.jwt_algorithm());
    header.typ = Some("JWT".into());
    match key_reference {
        KeyReference::X5c(chain) => header.x5c = Some(chain.clone()),
        KeyReference::Kid(kid) => header.kid = Some(kid.clone()),
    }
    let json = serde_json::to_vec(&header)
        .map_err(|e| ModiError::KeyMaterial(format!("signing: header: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json).into())
}

fn load_private_key(
    key_pem: &[u8],
    algorithm: SigningAlgorithm,
) -> Result<PKey<openssl::pkey::Private>, ModiError> {
    let key = PKey::private_key_from_pem(key_pem)
        .map_err(|e| ModiError::KeyMaterial(format!("private key PEM: {e}")))?;
    check_key_fits(key.id(), key.bits(), ec_curve_of(&key), algorithm)
        .map_err(ModiError::KeyMaterial)?;
    Ok(key)
}

fn ec_curve_of<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Option<Nid> {
    key.ec_key().ok().and_then(|ec| ec.group().curve_name())
}

/// The one place that decides whether a key may be used with an algorithm.
fn check_key_fits(
    id: Id,
    bits: u32,
    curve: Option<Nid>,
    algorithm: SigningAlgorithm,
) -> Result<(), String> {
    match (algorithm.is_rsa(), id) {
        (true, Id::RSA) if bits >= MIN_RSA_BITS => Ok(()),
        (true, Id::RSA) => Err(format!(
            "RSA key of {bits} bits, at least {MIN_RSA_BITS} required"
        )),
        (false, Id::EC) if curve == Some(Nid::X9_62_PRIME256V1) => Ok(()),
        (false, Id::EC) => Err("ES256 needs a P-256 key".into()),
        _ => Err(format!("key type does not fit {}", algorithm.jose_name())),
    }
}

/// jsonwebtoken reads PKCS#8 reliably for both RSA and EC; normalise to it.
#[cfg(test)]
fn encoding_key(key: &PKey<openssl::pkey::Private>) -> Result<EncodingKey, ModiError> {
    let pkcs8 = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| ModiError::KeyMaterial(format!("private key to PKCS#8: {e}")))?;
    let result = match key.id() {
        Id::RSA => EncodingKey::from_rsa_pem(&pkcs8),
        _ => EncodingKey::from_ec_pem(&pkcs8),
    };
    result.map_err(|e| ModiError::KeyMaterial(format!("signing key: {e}")))
}

fn held_key(
    key: &PKey<openssl::pkey::Private>,
    algorithm: SigningAlgorithm,
) -> Result<HeldKey, ModiError> {
    let pkcs8 = key
        .private_key_to_pkcs8()
        .map_err(|e| ModiError::KeyMaterial(format!("private key to PKCS#8: {e}")))?;
    HeldKey::from_pkcs8(&pkcs8, algorithm)
}

/// RFC 7638 JWK SHA-256 thumbprint of an RSA public key given as PEM (SPKI or PKCS#1) or of the
/// public half of an RSA private key PEM: the `kid` PDND assigns to a registered key.
pub fn rsa_thumbprint(pem: &[u8]) -> Result<String, ModiError> {
    let (n, e) = rsa_components(pem)?;
    Ok(rsa_thumbprint_of(&n, &e))
}

/// Thumbprint from base64url `n` and `e`: SHA-256 over the members in lexicographic order.
pub(crate) fn rsa_thumbprint_of(n_b64: &str, e_b64: &str) -> String {
    let canonical = format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Base64url `n` and `e` of an RSA key PEM (public, PKCS#1 public, or private).
pub(crate) fn rsa_components(pem: &[u8]) -> Result<(String, String), ModiError> {
    let rsa = openssl::rsa::Rsa::public_key_from_pem(pem)
        .or_else(|_| openssl::rsa::Rsa::public_key_from_pem_pkcs1(pem))
        .or_else(|_| {
            PKey::private_key_from_pem(pem).and_then(|k| {
                let r = k.rsa()?;
                openssl::rsa::Rsa::from_public_components(r.n().to_owned()?, r.e().to_owned()?)
            })
        })
        .map_err(|e| ModiError::KeyMaterial(format!("RSA key PEM: {e}")))?;
    Ok((
        URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
    ))
}

/// The public key of a verified leaf certificate and who it belongs to.
#[derive(Clone)]
pub struct LeafKey {
    key: PKey<Public>,
    /// Subject of the leaf certificate, `CN=…, O=…` (for logs and audit).
    pub subject: String,
    /// Issuer of the leaf certificate.
    pub issuer: String,
    /// Lower-case hex serial number of the leaf certificate.
    pub serial: String,
    /// Lower-case hex SHA-256 of the leaf certificate DER.
    pub fingerprint_sha256: String,
}

impl std::fmt::Debug for LeafKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafKey")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl LeafKey {
    /// The leaf public key as SPKI PEM.
    pub fn public_key_pem(&self) -> Result<Vec<u8>, ModiError> {
        self.key
            .public_key_to_pem()
            .map_err(|e| ModiError::UnusableKey(format!("leaf key to PEM: {e}")))
    }

    /// A jsonwebtoken key for `algorithm`, refusing keys that do not fit it (an RSA certificate
    /// cannot verify an ES256 JWS, a 1024-bit RSA key is refused).
    pub(crate) fn decoding_key(
        &self,
        algorithm: SigningAlgorithm,
    ) -> Result<DecodingKey, ModiError> {
        check_key_fits(
            self.key.id(),
            self.key.bits(),
            ec_curve_of(&self.key),
            algorithm,
        )
        .map_err(ModiError::UnusableKey)?;
        let pem = self.public_key_pem()?;
        let key = if algorithm.is_rsa() {
            DecodingKey::from_rsa_pem(&pem)
        } else {
            DecodingKey::from_ec_pem(&pem)
        };
        key.map_err(|e| ModiError::UnusableKey(e.to_string()))
    }
}

/// CA certificates a peer's `x5c` chain must lead to (INTEGRITY_REST_01 / ID_AUTH_REST_01).
#[derive(Clone)]
pub struct TrustStore {
    anchors: Vec<X509>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects: Vec<String> = self
            .anchors
            .iter()
            .map(|c| name_to_string(c.subject_name()))
            .collect();
        f.debug_struct("TrustStore")
            .field("anchors", &subjects)
            .finish()
    }
}

impl TrustStore {
    /// Reads one or more CA certificates from PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ModiError> {
        let anchors = X509::stack_from_pem(pem)
            .map_err(|e| ModiError::KeyMaterial(format!("trust store PEM: {e}")))?;
        if anchors.is_empty() {
            return Err(ModiError::KeyMaterial(
                "trust store PEM has no certificate".into(),
            ));
        }
        Ok(TrustStore { anchors })
    }

    /// Verifies an `x5c` chain (standard base64 DER, leaf first) up to one of the anchors at
    /// time `now` (unix seconds; OpenSSL checks every certificate's validity period at that
    /// instant, not at the system clock) and returns the leaf's public key.
    pub fn verify_chain(&self, x5c: &[String], now: i64) -> Result<LeafKey, ModiError> {
        if x5c.is_empty() {
            return Err(ModiError::MissingKeyReference("x5c"));
        }
        if x5c.len() > MAX_X5C_CERTS {
            return Err(ModiError::malformed(
                "x5c",
                format!("more than {MAX_X5C_CERTS} certificates"),
            ));
        }
        let mut certs = Vec::with_capacity(x5c.len());
        for (i, b64) in x5c.iter().enumerate() {
            if b64.len() > MAX_X5C_CERT_LEN {
                return Err(ModiError::malformed(
                    "x5c",
                    format!("certificate {i} too large"),
                ));
            }
            let der = STANDARD
                .decode(b64)
                .map_err(|e| ModiError::malformed("x5c", format!("certificate {i} base64: {e}")))?;
            let cert = X509::from_der(&der)
                .map_err(|e| ModiError::malformed("x5c", format!("certificate {i} DER: {e}")))?;
            certs.push((cert, der));
        }
        let openssl_err = |e: openssl::error::ErrorStack| ModiError::UntrustedChain(e.to_string());

        // A store per call: the verification time lives in the store's parameters, and `now`
        // changes with every call. Anchors are reference-counted, so this is cheap.
        let mut param = X509VerifyParam::new().map_err(openssl_err)?;
        param.set_time(now as _);
        param.set_depth(MAX_X5C_CERTS as i32);
        let mut builder = X509StoreBuilder::new().map_err(openssl_err)?;
        for anchor in &self.anchors {
            builder.add_cert(anchor.clone()).map_err(openssl_err)?;
        }
        builder.set_param(&param).map_err(openssl_err)?;
        let store = builder.build();

        let mut untrusted = Stack::new().map_err(openssl_err)?;
        for (cert, _) in certs.iter().skip(1) {
            untrusted.push(cert.clone()).map_err(openssl_err)?;
        }
        let (leaf, leaf_der) = &certs[0];
        let mut context = X509StoreContext::new().map_err(openssl_err)?;
        let (ok, result) = context
            .init(&store, leaf, &untrusted, |ctx| {
                let ok = ctx.verify_cert()?;
                Ok((ok, ctx.error()))
            })
            .map_err(openssl_err)?;
        if !ok {
            return Err(ModiError::UntrustedChain(result.error_string().to_string()));
        }
        check_leaf_usage(leaf_der)?;
        let key = leaf
            .public_key()
            .map_err(|e| ModiError::UnusableKey(format!("leaf public key: {e}")))?;
        let serial = leaf
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_ascii_lowercase()))
            .map_err(openssl_err)?;
        let fingerprint = leaf
            .digest(MessageDigest::sha256())
            .map(|d| hex::encode(d.as_ref()))
            .unwrap_or_else(|_| hex::encode(Sha256::digest(leaf_der)));
        Ok(LeafKey {
            key,
            subject: name_to_string(leaf.subject_name()),
            issuer: name_to_string(leaf.issuer_name()),
            serial,
            fingerprint_sha256: fingerprint,
        })
    }
}

/// The leaf of an `x5c` chain signs messages, so it must be a certificate for digital
/// signatures: when it has a keyUsage extension (RFC 5280 §4.2.1.3), digitalSignature must be
/// in it. A CA's key (keyCertSign only) or an encryption key (keyEncipherment only) that
/// chains to a trusted CA is still not an identity for signing requests; OpenSSL's chain check
/// does not look at the leaf's keyUsage without a purpose, so it is checked here. A leaf whose
/// extensions cannot be read (e.g. keyUsage twice) is refused too. No keyUsage extension at
/// all means no restriction.
fn check_leaf_usage(der: &[u8]) -> Result<(), ModiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| ModiError::CertificateUsage(format!("leaf unreadable: {e}")))?;
    match cert.key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(usage)) if usage.value.digital_signature() => Ok(()),
        Ok(Some(usage)) => Err(ModiError::CertificateUsage(format!(
            "keyUsage is {} without digitalSignature",
            usage.value
        ))),
        Err(e) => Err(ModiError::CertificateUsage(format!("keyUsage: {e}"))),
    }
}

fn name_to_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
