//! The HTTP side of DPoP-bound vouchers (RFC 9449) for the voucher stage.
//!
//! [`crate::pdnd::dpop::verify`] checks a proof against a method, a URL and a voucher; this
//! module finds those three in the request, then applies the two rules that need state or the
//! voucher: the proof's `jti` is used once ([`ReplayScope::DpopProof`] in the replay memory the
//! ModI checks use) and its key is the one the voucher names in `cnf.jkt`.
//!
//! **Which URL a proof must name.** A caller signs the URL it calls: the e-service's public
//! URL, the one published on PDND and in the OpenAPI `servers`. A reverse proxy or load
//! balancer in front of the gateway changes the scheme (TLS ends there), the host, the port and
//! possibly the path prefix of what the gateway receives, and `Host` / `X-Forwarded-*` are
//! written by whoever sends the request. So the expected `htu` is built from configuration
//! only: [`crate::config::EserviceConfig::public_url`] followed by the request's path below the
//! e-service's own base path (`/residenza` of `/anagrafe/v1/residenza`), as received, so that a
//! proxy mapping `https://api.comune.it/servizi/anagrafe/v1` to `/anagrafe/v1` still works.
//! Nothing the caller sends can move what its proof is compared with; a gateway reachable
//! under several public names needs one of them configured, and proofs for the others fail.

use std::sync::Arc;

use actix_web::dev::ServiceRequest;

use crate::modi::{ModiError, ReplayGuard, ReplayScope};
use crate::pdnd::dpop::{self, DpopError, ProofPolicy, ProofRequest, VerifiedProof, DPOP_HEADER};
use crate::pdnd::voucher::Voucher;

/// What the voucher stage needs to check the proofs of one e-service.
pub struct DpopCheck {
    /// The e-service's public base URL as callers use it (`eservices.<name>.public_url`).
    pub public_url: String,
    /// The path under which the gateway serves the e-service (`/anagrafe/v1`).
    pub base_path: &'static str,
    pub policy: ProofPolicy,
    /// Shared with the ModI checks; DPoP proofs have their own key space in it.
    pub replay: Arc<dyn ReplayGuard>,
}

/// Why a DPoP-scheme request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DpopRefusal {
    #[error("no DPoP header")]
    MissingProof,
    #[error("{0} DPoP headers, exactly one is allowed")]
    SeveralProofs(usize),
    #[error("the DPoP header is not visible ASCII")]
    UnreadableProof,
    #[error("the request path {0} is not under the e-service's base path")]
    PathOutsideEservice(String),
    #[error(transparent)]
    Proof(#[from] DpopError),
    #[error("the voucher has no cnf.jkt: it is not DPoP-bound")]
    VoucherNotBound,
    #[error("the proof key {proof} is not the key the voucher is bound to ({voucher})")]
    KeyNotBound { proof: String, voucher: String },
    #[error("the proof jti was already used")]
    Replayed,
    /// The replay memory is full of live entries: no proof can be accepted safely (503).
    #[error("replay memory unavailable: {0}")]
    ReplayUnavailable(String),
}

impl DpopRefusal {
    /// True when the fault is the voucher's (`invalid_token`), not the proof's.
    pub fn is_token_fault(&self) -> bool {
        matches!(
            self,
            DpopRefusal::VoucherNotBound | DpopRefusal::KeyNotBound { .. }
        )
    }
}

impl DpopCheck {
    /// The URL the caller must have used for `req` (see the module documentation).
    pub fn expected_url(&self, req: &ServiceRequest) -> Result<String, DpopRefusal> {
        let path = req.uri().path();
        let below = path
            .strip_prefix(self.base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .ok_or_else(|| DpopRefusal::PathOutsideEservice(path.to_owned()))?;
        Ok(format!("{}{below}", self.public_url.trim_end_matches('/')))
    }

    /// The single `DPoP` header of a request.
    fn proof_header(req: &ServiceRequest) -> Result<&str, DpopRefusal> {
        let mut values = req.headers().get_all(DPOP_HEADER);
        let first = values.next().ok_or(DpopRefusal::MissingProof)?;
        let more = values.count();
        if more > 0 {
            return Err(DpopRefusal::SeveralProofs(more + 1));
        }
        first.to_str().map_err(|_| DpopRefusal::UnreadableProof)
    }

    /// Every check of a DPoP-scheme request whose voucher already validated; the proof's `jti`
    /// is recorded last, so a request refused for another reason does not consume it.
    pub fn check(
        &self,
        req: &ServiceRequest,
        token: &str,
        voucher: &Voucher,
        now: i64,
    ) -> Result<VerifiedProof, DpopRefusal> {
        let proof = Self::proof_header(req)?;
        let jkt = voucher
            .confirmation_jkt()
            .ok_or(DpopRefusal::VoucherNotBound)?;
        let url = self.expected_url(req)?;
        let request = ProofRequest {
            method: req.method().as_str(),
            url: &url,
            access_token: Some(token),
        };
        let verified = dpop::verify(proof, &request, &self.policy, now)?;
        if !verified.is_bound_to(jkt) {
            return Err(DpopRefusal::KeyNotBound {
                proof: verified.jkt().to_owned(),
                voucher: jkt.to_owned(),
            });
        }
        match self.replay.check_and_store_in(
            ReplayScope::DpopProof,
            verified.jti(),
            verified.replay_expires_at(),
            now,
        ) {
            Ok(()) => Ok(verified),
            Err(ModiError::Replayed(_)) => Err(DpopRefusal::Replayed),
            Err(ModiError::ReplayCacheFull) => {
                Err(DpopRefusal::ReplayUnavailable("replay cache full".into()))
            }
            // Only a jti the memory cannot hold is left, and `verify` already bounds it.
            Err(_) => Err(DpopRefusal::Proof(DpopError::InvalidClaim("jti"))),
        }
    }
}
