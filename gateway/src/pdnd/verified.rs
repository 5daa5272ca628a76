//! A memory of vouchers already validated, so that a client sending the same voucher on every
//! call (as PDND clients do until it expires) pays the full check once.
//!
//! Everything [`validate`] decides, except the clock rules, is a function of three things: the
//! token's exact bytes, the key set and the policy. The memory holds the policy itself, keys
//! each entry by the token's exact bytes (compared in full, not by a hash of them), and is tied
//! to one key set: when the JWKS cache hands over another set (a refresh, a rotation, a key
//! withdrawn), the memory is emptied and each voucher is checked in full again. So a remembered
//! voucher is only ever answered for the same bytes, under the same keys and the same policy
//! that validated it; `exp`, `nbf` and `iat` are checked against `now` on every request.
//!
//! Only successes are remembered, so a forged or expired token costs its full check each time,
//! and nobody can fill the memory without vouchers PDND really signed. What a remembered voucher
//! saves is the base64 and JSON decoding of header and claims, the key lookup and the RSA
//! verification: most of the voucher stage's work on the provider's hot path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::jwk::JwkSet;
use super::voucher::{check_times, validate, Voucher, VoucherError, VoucherPolicy};

/// Entries kept at most; when full, the memory starts over (the next call per voucher is checked
/// in full again). An entry holds its token (about 1 KiB for a PDND voucher) and the voucher's
/// claims, so the bound keeps the memory to a few MiB; one voucher per client at a time makes
/// 4,096 more clients than a comune's e-service has at once.
pub const DEFAULT_CAPACITY: usize = 4_096;

/// The vouchers validated under one policy. Shared by the workers of one e-service's voucher
/// stage.
#[derive(Debug)]
pub struct VerifiedVouchers {
    policy: VoucherPolicy,
    capacity: usize,
    memory: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// The key set every entry was validated under. Held, so its address cannot be reused by
    /// another set while the entries refer to it.
    keys: Option<Arc<JwkSet>>,
    vouchers: HashMap<Box<str>, Voucher>,
}

impl VerifiedVouchers {
    pub fn new(policy: VoucherPolicy) -> Self {
        Self::with_capacity(policy, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(policy: VoucherPolicy, capacity: usize) -> Self {
        VerifiedVouchers {
            policy,
            capacity: capacity.max(1),
            memory: Mutex::new(Memory::default()),
        }
    }

    /// The policy every voucher is checked against.
    pub fn policy(&self) -> &VoucherPolicy {
        &self.policy
    }

    /// [`validate`] of `token` against `keys` and this memory's policy at `now`: answered from
    /// memory (the clock rules checked again) when these exact bytes passed under this exact key
    /// set, checked in full (and remembered on success) otherwise. The answer is the one
    /// [`validate`] gives.
    pub fn validate(
        &self,
        token: &str,
        keys: &Arc<JwkSet>,
        now: i64,
    ) -> Result<Voucher, VoucherError> {
        // Before any lookup: an oversized token is refused without being hashed.
        if token.len() > self.policy.max_token_len {
            return Err(VoucherError::TooLarge);
        }
        if let Some(voucher) = self.recall(token, keys) {
            check_times(
                voucher.exp(),
                voucher.nbf(),
                voucher.iat(),
                &self.policy,
                now,
            )?;
            return Ok(voucher);
        }
        let voucher = validate(token, keys, &self.policy, now)?;
        self.remember(token, keys, &voucher);
        Ok(voucher)
    }

    /// How many vouchers are remembered.
    pub fn len(&self) -> usize {
        self.lock().vouchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn recall(&self, token: &str, keys: &Arc<JwkSet>) -> Option<Voucher> {
        let memory = self.lock();
        match &memory.keys {
            Some(held) if Arc::ptr_eq(held, keys) => memory.vouchers.get(token).cloned(),
            _ => None,
        }
    }

    fn remember(&self, token: &str, keys: &Arc<JwkSet>, voucher: &Voucher) {
        let mut memory = self.lock();
        let same_keys = memory.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys));
        if !same_keys {
            // Another key set: nothing remembered under the old one may answer any more.
            memory.vouchers.clear();
            memory.keys = Some(keys.clone());
        }
        if memory.vouchers.len() >= self.capacity {
            memory.vouchers.clear();
        }
        memory.vouchers.insert(token.into(), voucher.clone());
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot leave the map inconsistent (insert/clear only).
        self.memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
