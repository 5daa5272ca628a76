//! Target of the key material PDND serves: the JWKS the voucher check trusts and the key
//! lookup answers the ModI checks verify `kid`-signed tokens with. A hostile or broken answer
//! must never make a token signed by another key verify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};

use super::fixtures::{self, NOW};
use super::{mode, Outcome};
use crate::modi::trust::jwk_decoding_key;
use crate::modi::{verify_tracking_evidence, KidResolver, ModiError, SigningAlgorithm};
use crate::pdnd::jwk::JwkSet;
use crate::pdnd::voucher::validate;
use crate::pdnd_client::keys::parse_key_answer;

/// Modes: 0 a JWKS document (`/.well-known/jwks.json`); 1 a key lookup answer for the fixed
/// ModI `kid`.
pub fn pdnd_keys(data: &[u8]) -> Outcome {
    let Some((mode, rest)) = mode(data, 2) else {
        return Outcome::Refused;
    };
    match mode {
        0 => jwks(rest),
        _ => key_answer(rest),
    }
}

fn jwks(data: &[u8]) -> Outcome {
    let Ok(set) = serde_json::from_slice::<JwkSet>(data) else {
        return Outcome::Refused;
    };
    for kid in set.kids() {
        if let Some(key) = set.find(kid) {
            assert!(key.components().is_ok(), "find returned an unusable key");
            assert!(!key.thumbprint().is_empty());
        }
    }
    let authority = fixtures::authority_key();
    let accepted = validate(
        fixtures::signed_voucher(),
        &set,
        fixtures::voucher_policy(),
        NOW,
    )
    .is_ok();
    if accepted {
        let key = set
            .find(&authority.kid())
            .expect("a voucher validated with a key of its kid");
        let (n, e) = key.components().expect("a found key decodes");
        let (our_n, our_e) = authority
            .public()
            .components()
            .expect("the fixed key decodes");
        assert_eq!(
            (unsigned(&n), unsigned(&e)),
            (unsigned(&our_n), unsigned(&our_e)),
            "a voucher verified with another key"
        );
    }
    accepted.into()
}

/// The one key a lookup answered.
struct Answered(Jwk);

impl KidResolver for Answered {
    fn resolve(&self, kid: &str) -> Result<Option<Jwk>, ModiError> {
        Ok((kid == fixtures::modi_kid()).then(|| self.0.clone()))
    }
}

fn key_answer(data: &[u8]) -> Outcome {
    let Ok(jwk) = parse_key_answer(data, fixtures::modi_kid()) else {
        return Outcome::Refused;
    };
    if let Some(kid) = &jwk.common.key_id {
        assert_eq!(kid, fixtures::modi_kid());
    }
    for algorithm in SigningAlgorithm::ALL {
        let _ = jwk_decoding_key(&jwk, algorithm);
    }
    let verified = verify_tracking_evidence(
        fixtures::signed_tracking_evidence(),
        &Answered(jwk.clone()),
        &fixtures::modi_expectations(),
    );
    if verified.is_ok() {
        let ours = fixtures::kid_resolver()
            .resolve(fixtures::modi_kid())
            .ok()
            .flatten()
            .expect("the fixed kid resolves");
        assert_eq!(
            rsa_numbers(&jwk),
            rsa_numbers(&ours),
            "evidence verified with another key"
        );
    }
    Outcome::Accepted
}

/// An RSA JWK's modulus and exponent as numbers (big-endian, no leading zeros).
fn rsa_numbers(jwk: &Jwk) -> (Vec<u8>, Vec<u8>) {
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        panic!("evidence verified with a non-RSA key {:?}", jwk.algorithm);
    };
    let decode = |b64: &str| {
        URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map(|bytes| unsigned(&bytes).to_vec())
            .expect("a key that verified decodes")
    };
    (decode(&rsa.n), decode(&rsa.e))
}

fn unsigned(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[zeros..]
}
