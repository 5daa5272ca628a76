//! RSA keys the way PDND handles them, and JSON Web Key sets.
//!
//! PDND accepts only RSA keys of at least 2048 bits, stores them as PEM, and names each one by
//! its RFC 7638 JWK thumbprint (`kid` = base64url(SHA-256(`{"e","kty","n"}`))). A
//! [`RsaPrivateKey`] therefore exists only once that size rule holds; the public half is kept as
//! the JWK members `n` and `e`, which is what signatures are verified with. This module parses
//! and prints keys; it does not fetch or cache JWKS documents.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use openssl::bn::BigNum;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The smallest RSA modulus PDND lets a client or producer register (jwk.ts assertValidRSAKeyLength).
pub const MIN_RSA_BITS: u32 = 2048;

/// What can go wrong turning PEM text or JWK members into a usable RSA key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA private key in PKCS#8 or PKCS#1 PEM: {0}")]
    InvalidPrivatePem(String),
    #[error("not an RSA public key in SPKI (or PKCS#1) PEM: {0}")]
    InvalidPublicPem(String),
    #[error("the key is {0}, not RSA")]
    NotRsa(String),
    #[error("RSA key of {bits} bits is too short: PDND requires at least {MIN_RSA_BITS}")]
    TooShort { bits: u32 },
    #[error("JWK member `{0}` is not valid base64url")]
    InvalidComponent(&'static str),
    #[error("RSA key generation failed: {0}")]
    Generation(String),
}

/// An RSA private key of at least 2048 bits, ready to sign RS256 JWS.
#[derive(Clone)]
pub struct RsaPrivateKey {
    pkcs8_pem: String,
    public: RsaPublicKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even in debug logs.
        f.debug_struct("RsaPrivateKey")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl RsaPrivateKey {
    /// Generates a fresh RSA-2048 key (e.g. for a development authority or a test).
    pub fn generate() -> Result<Self, KeyError> {
        let rsa = Rsa::generate(MIN_RSA_BITS).map_err(|e| KeyError::Generation(e.to_string()))?;
        Self::from_rsa(rsa)
    }

    /// Parses a PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM; keys shorter
    /// than 2048 bits are refused because PDND would never accept their public half.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pkey = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|e| KeyError::InvalidPrivatePem(e.to_string()))?;
        let rsa = pkey
            .rsa()
            .map_err(|_| KeyError::NotRsa(format!("{:?}", pkey.id())))?;
        Self::from_rsa(rsa)
    }

    fn from_rsa(rsa: Rsa<Private>) -> Result<Self, KeyError> {
        let bits = rsa.n().num_bits().unsigned_abs();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooShort { bits });
        }
        let public = RsaPublicKey {
            n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            e: URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        };
        let pkcs1_der = rsa
            .private_key_to_der()
            .map_err(|e| KeyError::InvalidPrivatePem(e.to_string()))?;
        let pkey = PKey::from_rsa(rsa).map_err(|e| KeyError::InvalidPrivatePem(e.to_string()))?;
        let pem_bytes = pkey
            .private_key_to_pem_pkcs8()
            .map_err(|e| KeyError::InvalidPrivatePem(e.to_string()))?;
        let pkcs8_pem =
            String::from_utf8(pem_bytes).map_err(|e| KeyError::InvalidPrivatePem(e.to_string()))?;
        Ok(Self {
            pkcs8_pem,
            public,
            encoding: EncodingKey::from_rsa_der(&pkcs1_der),
        })
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn to_pem(&self) -> String {
        self.pkcs8_pem.clone()
    }

    /// The public half, as JWK members.
    pub fn public(&self) -> &RsaPublicKey {
        &self.public
    }

    /// The `kid` PDND gives this key: the RFC 7638 thumbprint of its public JWK.
    pub fn kid(&self) -> String {
        self.public.thumbprint()
    }

    /// The key in the form jsonwebtoken signs with (PKCS#1 DER inside).
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// An RSA public key as its JWK members: base64url (no padding) big-endian modulus and exponent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsaPublicKey {
    pub n: String,
    pub e: String,
}

impl RsaPublicKey {
    /// Parses an SPKI (`BEGIN PUBLIC KEY`) PEM, as PDND stores client keys; PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`) is accepted too. Keys shorter than 2048 bits are refused, as PDND
    /// refuses to register them.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let rsa = match PKey::public_key_from_pem(pem.as_bytes()) {
            Ok(pkey) => pkey
                .rsa()
                .map_err(|_| KeyError::NotRsa(format!("{:?}", pkey.id())))?,
            Err(spki_error) => Rsa::public_key_from_pem_pkcs1(pem.as_bytes())
                .map_err(|_| KeyError::InvalidPublicPem(spki_error.to_string()))?,
        };
        let bits = rsa.n().num_bits().unsigned_abs();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooShort { bits });
        }
        Ok(Self {
            n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            e: URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        })
    }

    /// The key as SPKI PEM (`BEGIN PUBLIC KEY`), the form PDND's `GET /keys/{kid}` and its back
    /// office deal in.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let (n, e) = self.components()?;
        let n = BigNum::from_slice(&n).map_err(|_| KeyError::InvalidComponent("n"))?;
        let e = BigNum::from_slice(&e).map_err(|_| KeyError::InvalidComponent("e"))?;
        let rsa = Rsa::from_public_components(n, e)
            .map_err(|e| KeyError::InvalidPublicPem(e.to_string()))?;
        let pkey = PKey::from_rsa(rsa).map_err(|e| KeyError::InvalidPublicPem(e.to_string()))?;
        let pem = pkey
            .public_key_to_pem()
            .map_err(|e| KeyError::InvalidPublicPem(e.to_string()))?;
        String::from_utf8(pem).map_err(|e| KeyError::InvalidPublicPem(e.to_string()))
    }

    /// The decoded modulus and exponent bytes.
    pub fn components(&self) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
        let n = URL_SAFE_NO_PAD
            .decode(&self.n)
            .map_err(|_| KeyError::InvalidComponent("n"))?;
        let e = URL_SAFE_NO_PAD
            .decode(&self.e)
            .map_err(|_| KeyError::InvalidComponent("e"))?;
        if n.is_empty() {
            return Err(KeyError::InvalidComponent("n"));
        }
        if e.is_empty() {
            return Err(KeyError::InvalidComponent("e"));
        }
        Ok((n, e))
    }

    /// RFC 7638 thumbprint: base64url(SHA-256) of the canonical JSON `{"e":..,"kty":"RSA","n":..}`
    /// (members in lexicographic order, no whitespace). This is the `kid` PDND assigns.
    pub fn thumbprint(&self) -> String {
        // n and e are base64url, so they never need JSON escaping; the format is canonical.
        let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, self.e, self.n);
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK for a JWKS document or `GET /keys/{kid}`.
    pub fn to_jwk(&self, kid: &str) -> Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": self.n,
            "e": self.e,
        })
    }
}

/// The length in bytes of each P-256 coordinate.
pub const P256_COORDINATE_LEN: usize = 32;

/// A P-256 (`crv: "P-256"`) public key as its JWK members: base64url (no padding) big-endian
/// coordinates `x` and `y`. PDND registers only RSA keys for clients, but DPoP proofs (RFC 9449)
/// carry their own key, and ES256 is what PDND recommends for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcPublicKey {
    pub x: String,
    pub y: String,
}

impl EcPublicKey {
    /// The decoded coordinates, each exactly 32 bytes.
    pub fn coordinates(&self) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
        let x = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| KeyError::InvalidComponent("x"))?;
        let y = URL_SAFE_NO_PAD
            .decode(&self.y)
            .map_err(|_| KeyError::InvalidComponent("y"))?;
        if x.len() != P256_COORDINATE_LEN {
            return Err(KeyError::InvalidComponent("x"));
        }
        if y.len() != P256_COORDINATE_LEN {
            return Err(KeyError::InvalidComponent("y"));
        }
        Ok((x, y))
    }

    /// RFC 7638 thumbprint: base64url(SHA-256) of `{"crv":"P-256","kty":"EC","x":..,"y":..}`
    /// (members in lexicographic order, no whitespace).
    pub fn thumbprint(&self) -> String {
        // x and y are base64url, so they never need JSON escaping; the format is canonical.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.x, self.y
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK, exactly the required members (what a DPoP proof header carries).
    pub fn to_jwk(&self) -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y})
    }
}

/// A JSON Web Key Set (`{"keys":[...]}`) as published at `/.well-known/jwks.json`.
///
/// Keys stay raw JSON so that a set holding EC or encryption keys next to PDND's RSA signing
/// keys still parses; [`JwkSet::find`] picks out only what can verify an RS256 signature.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Value>,
}

impl JwkSet {
    /// A set holding one RSA signing key.
    pub fn single(kid: &str, key: &RsaPublicKey) -> Self {
        Self {
            keys: vec![key.to_jwk(kid)],
        }
    }

    /// The RSA signing key named `kid`, if the set has one. Entries of another key type, meant
    /// for encryption (`use` other than `sig`), declared for another algorithm than RS256, or
    /// whose `n`/`e` are not valid base64url are ignored.
    pub fn find(&self, kid: &str) -> Option<RsaPublicKey> {
        self.keys.iter().find_map(|jwk| {
            let member = |name: &str| jwk.get(name).and_then(Value::as_str);
            if member("kid") != Some(kid) || member("kty") != Some("RSA") {
                return None;
            }
            if jwk.get("use").is_some() && member("use") != Some("sig") {
                return None;
            }
            if jwk.get("alg").is_some() && member("alg") != Some("RS256") {
                return None;
            }
            let key = RsaPublicKey {
                n: member("n")?.to_owned(),
                e: member("e")?.to_owned(),
            };
            key.components().ok().map(|_| key)
        })
    }

    /// The `kid`s of all entries, in order (for logs and diagnostics).
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter_map(|k| k.get("kid").and_then(Value::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::test_keys;

    /// RFC 7638 section 3.1: the example RSA key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_example_thumbprint() {
        let key = RsaPublicKey {
            n: RFC7638_N.into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// RFC 7638 section 3.1's method applied to the P-256 example key of RFC 7517 appendix A.1
    /// (thumbprint computed independently with `openssl dgst -sha256 -binary | basenc
    /// --base64url` over the canonical JSON).
    #[test]
    fn ec_thumbprint_follows_rfc7638() {
        let key = EcPublicKey {
            x: "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4".into(),
            y: "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM".into(),
        };
        assert_eq!(
            key.thumbprint(),
            "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
        assert!(key.coordinates().is_ok());
        let short = EcPublicKey {
            x: "AAAA".into(),
            y: key.y.clone(),
        };
        assert!(matches!(
            short.coordinates(),
            Err(KeyError::InvalidComponent("x"))
        ));
    }

    #[test]
    fn kid_is_43_base64url_chars_and_matches_thumbprint() {
        let key = test_keys::client();
        let kid = key.kid();
        assert_eq!(kid.len(), 43);
        assert!(kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(kid, key.public().thumbprint());
        assert_ne!(kid, test_keys::authority().kid());
    }

    #[test]
    fn private_pem_round_trip_keeps_the_key() {
        let key = test_keys::client();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = RsaPrivateKey::from_pem(&pem).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(again.kid(), key.kid());
    }

    #[test]
    fn pkcs1_private_pem_is_accepted() {
        let key = test_keys::client();
        let rsa = PKey::private_key_from_pem(key.to_pem().as_bytes())
            .unwrap()
            .rsa()
            .unwrap();
        let pkcs1 = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(RsaPrivateKey::from_pem(&pkcs1).unwrap().kid(), key.kid());
    }

    #[test]
    fn short_rsa_keys_are_refused() {
        let rsa = Rsa::generate(1024).unwrap();
        let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            RsaPrivateKey::from_pem(&pem),
            Err(KeyError::TooShort { bits: 1024 })
        ));
        let public = String::from_utf8(rsa.public_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            RsaPublicKey::from_pem(&public),
            Err(KeyError::TooShort { bits: 1024 })
        ));
    }

    #[test]
    fn garbage_and_non_rsa_pem_are_refused() {
        assert!(matches!(
            RsaPrivateKey::from_pem("hello"),
            Err(KeyError::InvalidPrivatePem(_))
        ));
        assert!(matches!(
            RsaPublicKey::from_pem("hello"),
            Err(KeyError::InvalidPublicPem(_))
        ));
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let pkey = PKey::from_ec_key(ec).unwrap();
        let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            RsaPrivateKey::from_pem(&pem),
            Err(KeyError::NotRsa(_))
        ));
    }

    #[test]
    fn public_pem_round_trip() {
        let key = test_keys::client().public().clone();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(RsaPublicKey::from_pem(&pem).unwrap(), key);
    }

    #[test]
    fn jwk_has_the_members_pdnd_publishes() {
        let key = test_keys::client().public().clone();
        let jwk = key.to_jwk("abc");
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["kid"], "abc");
        assert_eq!(jwk["n"], key.n.as_str());
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk.as_object().unwrap().len(), 6);
    }

    #[test]
    fn jwk_set_finds_only_rsa_signing_keys() {
        let key = test_keys::client().public().clone();
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "k2", "use": "enc", "n": key.n, "e": key.e},
            {"kty": "RSA", "kid": "k3", "alg": "RS512", "n": key.n, "e": key.e},
            {"kty": "RSA", "kid": "k4", "n": "!!", "e": key.e},
            {"kty": "RSA", "kid": "k5", "n": key.n, "e": key.e},
        ]}))
        .unwrap();
        for kid in ["k1", "k2", "k3", "k4", "missing"] {
            assert_eq!(set.find(kid), None, "{kid}");
        }
        assert_eq!(set.find("k5"), Some(key));
        assert_eq!(set.kids(), ["k1", "k2", "k3", "k4", "k5"]);
    }
}
