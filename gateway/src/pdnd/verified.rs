//! A memory of voucher signatures already verified, so that a client sending the same voucher
//! on every call (as PDND clients do until it expires) pays the RSA verification once.
//!
//! What is remembered is a timeless fact: "these exact signed bytes carry a valid RS256
//! signature by this exact key". The entry is keyed by SHA-256 over the signing input, the
//! signature and the key's `n` and `e`, so a different header, payload, signature or key (a
//! rotated key under the same kid) never matches. Every other rule of the voucher check (alg,
//! typ, kid present in the current key set, iss, aud, `exp`/`nbf`/`iat` against the current
//! time, lifetime, purpose) still runs on every request, and a key removed from the JWKS stops
//! matching because the key is looked up in the current set first. Only successes are
//! remembered, so a forged token costs its full verification each time.

use std::collections::HashSet;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::jwk::RsaPublicKey;
use super::jws::CompactJws;

/// Entries kept at most; when full, the memory starts over (the next call per voucher verifies
/// again). Bounded so that many distinct valid vouchers cannot grow it without limit.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// The remembered verifications. Shared by the workers of one e-service's voucher stage.
#[derive(Debug)]
pub struct VerifiedSignatures {
    capacity: usize,
    seen: Mutex<HashSet<[u8; 32]>>,
}

impl Default for VerifiedSignatures {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl VerifiedSignatures {
    pub fn with_capacity(capacity: usize) -> Self {
        VerifiedSignatures {
            capacity: capacity.max(1),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// True when `jws` carries a valid RS256 signature by `key`: from memory if these bytes
    /// verified under this key before, by verifying (and remembering a success) otherwise.
    pub fn verify_rs256(&self, jws: &CompactJws<'_>, key: &RsaPublicKey) -> bool {
        let id = entry_id(jws, key);
        if self.lock().contains(&id) {
            return true;
        }
        let valid = jws.verify_rs256(key);
        if valid {
            let mut seen = self.lock();
            if seen.len() >= self.capacity {
                seen.clear();
            }
            seen.insert(id);
        }
        valid
    }

    /// How many verifications are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A panic while holding the lock cannot leave the set inconsistent (insert/clear only).
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn entry_id(jws: &CompactJws<'_>, key: &RsaPublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    // Lengths first: the concatenation of the parts is unambiguous.
    for part in [jws.signing_input, jws.signature_b64, &key.n, &key.e] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}
