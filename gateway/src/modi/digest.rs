//! The `Digest` header of INTEGRITY_REST_01/02 (RFC 3230 instance digest, `SHA-256=<base64>`).
//!
//! ModI binds the body to the signed headers through this value: the signature covers the
//! header, the header covers the body. This module only computes and checks the header value
//! against body bytes; whether the header was signed is the job of [`super::signature`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest as _, Sha256};

use super::ModiError;

/// The only algorithm ModI prescribes for the `Digest` header.
const SHA_256: &str = "SHA-256";
/// Longest header value we parse; a real one is 52 bytes.
const MAX_HEADER_LEN: usize = 1024;

/// The `Digest` header value for `body`: `SHA-256=<base64(sha256(body))>`.
pub fn digest_header(body: &[u8]) -> String {
    format!("{SHA_256}={}", STANDARD.encode(Sha256::digest(body)))
}

/// Checks a received `Digest` header against the body bytes, byte for byte.
///
/// RFC 3230 allows a comma-separated list of `algorithm=value` instances and says unknown
/// algorithms are ignored; the SHA-256 instance must be present and every SHA-256 instance must
/// match. A header naming only other algorithms is [`ModiError::UnsupportedDigestAlgorithm`]
/// (ModI requires SHA-256; weaker ones like MD5/SHA are not a substitute).
pub fn verify_digest(header: &str, body: &[u8]) -> Result<(), ModiError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(ModiError::malformed("digest", "header too long"));
    }
    let mut first_other: Option<String> = None;
    let mut checked = false;
    for instance in header.split(',') {
        let instance = instance.trim();
        let Some((algorithm, value)) = instance.split_once('=') else {
            return Err(ModiError::malformed("digest", "instance without '='"));
        };
        let algorithm = algorithm.trim();
        if algorithm.is_empty() {
            return Err(ModiError::malformed("digest", "empty algorithm"));
        }
        if !algorithm.eq_ignore_ascii_case(SHA_256) {
            first_other.get_or_insert_with(|| algorithm.to_string());
            continue;
        }
        let expected = STANDARD
            .decode(value.trim())
            .map_err(|e| ModiError::malformed("digest", format!("value is not base64: {e}")))?;
        if expected.len() != 32 {
            return Err(ModiError::malformed(
                "digest",
                format!("SHA-256 value has {} bytes, not 32", expected.len()),
            ));
        }
        if expected.as_slice() != Sha256::digest(body).as_slice() {
            return Err(ModiError::DigestMismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(ModiError::UnsupportedDigestAlgorithm(
            first_other.unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"testo":"Ciao mondo"}"#;
    const BODY_DIGEST: &str = "SHA-256=XPLevcS/HwVMCRq67PMbZd7RWF/zmIKEZPwrdiKIB5o=";

    #[test]
    fn fixed_vector_from_the_modi_example() {
        assert_eq!(digest_header(BODY), BODY_DIGEST);
        // The spaced variant of the guidelines' example body has another digest.
        assert_eq!(
            digest_header(br#"{"testo": "Ciao mondo"}"#),
            "SHA-256=hPq3xjgxGMr98LL2/lP2Y66DVCTcXdwL+YpNQD/gmvk="
        );
        assert_eq!(
            digest_header(b""),
            "SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn matching_digest_verifies() {
        assert_eq!(verify_digest(BODY_DIGEST, BODY), Ok(()));
        // Algorithm token is case-insensitive; surrounding whitespace is tolerated.
        assert_eq!(
            verify_digest(
                " sha-256=XPLevcS/HwVMCRq67PMbZd7RWF/zmIKEZPwrdiKIB5o= ",
                BODY
            ),
            Ok(())
        );
        // Unknown extra instances are ignored as RFC 3230 says.
        assert_eq!(
            verify_digest(
                &format!("MD5=HUXZLQLMuI/KZ5KDcJPcOA==, {BODY_DIGEST}"),
                BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn changed_body_is_a_mismatch() {
        assert_eq!(
            verify_digest(BODY_DIGEST, br#"{"testo":"Ciao mondo!"}"#),
            Err(ModiError::DigestMismatch)
        );
        assert_eq!(
            verify_digest(
                &format!("{BODY_DIGEST}, SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
                BODY
            ),
            Err(ModiError::DigestMismatch)
        );
    }

    #[test]
    fn other_algorithms_are_unsupported() {
        let sha512 = "SHA-512=WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==";
        assert_eq!(
            verify_digest(sha512, BODY),
            Err(ModiError::UnsupportedDigestAlgorithm("SHA-512".into()))
        );
        assert_eq!(
            verify_digest("MD5=HUXZLQLMuI/KZ5KDcJPcOA==", BODY),
            Err(ModiError::UnsupportedDigestAlgorithm("MD5".into()))
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for header in [
            "",
            "SHA-256",
            "=abc",
            "SHA-256=not base64!",
            "SHA-256=AAAA",
            "SHA-256=XPLevcS_HwVMCRq67PMbZd7RWF_zmIKEZPwrdiKIB5o=",
        ] {
            assert!(
                matches!(
                    verify_digest(header, BODY),
                    Err(ModiError::Malformed { .. })
                ),
                "{header:?} accepted or misclassified"
            );
        }
        let long = format!("SHA-256={}", "A".repeat(2000));
        assert!(matches!(
            verify_digest(&long, BODY),
            Err(ModiError::Malformed { .. })
        ));
    }
}
