//! Vouchers made by hand: signed with any key and claims, or malformed on purpose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Now, in unix seconds.
pub fn now() -> i64 {
    chrono_now()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs arbitrary header + claims with an RSA PEM key (RS256) through jsonwebtoken.
pub fn sign_rs256(header: jsonwebtoken::Header, claims: &Value, key_pem: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("rsa key");
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

/// A JWS with any header JSON, claims JSON and raw signature bytes (for malformed tokens).
pub fn raw_jws(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An RS256 header like PDND's.
pub fn voucher_header(kid: &str) -> jsonwebtoken::Header {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.typ = Some("at+jwt".to_owned());
    h.kid = Some(kid.to_owned());
    h
}

/// The `jti` claim of a JWS (a voucher), read without checking its signature.
pub fn jti_of(jws: &str) -> String {
    let payload = jws.split('.').nth(1).expect("a JWS payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["jti"].as_str().expect("a jti").to_owned()
}
