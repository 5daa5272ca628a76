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

use crate::modi::{ModiError, ReplayScope};
use crate::pdnd::dpop::{self, DpopError, ProofPolicy, ProofRequest, VerifiedProof, DPOP_HEADER};
use crate::pdnd::voucher::Voucher;
use crate::state::replay::ReplayMemory;

/// What the voucher stage needs to check the proofs of one e-service.
pub struct DpopCheck {
    /// The e-service's public base URL as callers use it (`eservices.<name>.public_url`).
    pub public_url: String,
    /// The path under which the gateway serves the e-service (`/anagrafe/v1`).
    pub base_path: &'static str,
    pub policy: ProofPolicy,
    /// Shared with the ModI checks; DPoP proofs have their own key space in it.
    pub replay: Arc<ReplayMemory>,
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
    /// The replay memory is full of live entries or cannot be reached: no proof can be
    /// accepted safely (503).
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
    pub async fn check(
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
        let stored = self
            .replay
            .store_jti(
                ReplayScope::DpopProof,
                None,
                verified.jti(),
                verified.replay_expires_at(),
                now,
            )
            .await;
        match stored {
            Ok(()) => Ok(verified),
            Err(ModiError::Replayed(_)) => Err(DpopRefusal::Replayed),
            Err(ModiError::ReplayCacheFull) => {
                Err(DpopRefusal::ReplayUnavailable("replay cache full".into()))
            }
            Err(ModiError::ReplayStoreUnavailable(reason)) => {
                Err(DpopRefusal::ReplayUnavailable(reason))
            }
            // Only a jti the memory cannot hold is left, and `verify` already bounds it.
            Err(_) => Err(DpopRefusal::Proof(DpopError::InvalidClaim("jti"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modi::InMemoryReplayGuard;
    use crate::pdnd::dpop::DpopKey;
    use crate::pdnd::jwk::JwkSet;
    use crate::pdnd::voucher::{validate, VoucherPolicy};
    use crate::pdnd::{jws, test_keys};
    use actix_web::test::TestRequest;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const PUBLIC: &str = "https://api.comune.example.it/servizi/anagrafe/v1/";

    fn check_with(capacity: usize) -> DpopCheck {
        DpopCheck {
            public_url: PUBLIC.into(),
            base_path: "/anagrafe/v1",
            policy: ProofPolicy::default(),
            replay: Arc::new(ReplayMemory::local(InMemoryReplayGuard::new(capacity))),
        }
    }

    /// A voucher bound to `jkt`, as the voucher stage hands it over.
    fn bound_voucher(jkt: &str) -> (String, Voucher) {
        let authority = test_keys::authority();
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": authority.kid()});
        let claims = json!({
            "jti": "v-1", "iss": "interop.pagopa.it", "aud": "anagrafe", "sub": "c",
            "client_id": "c", "purposeId": "p", "iat": NOW, "nbf": NOW, "exp": NOW + 600,
            "cnf": {"jkt": jkt},
        });
        let token = jws::sign_rs256(&header, &claims, authority).unwrap();
        let keys = JwkSet::single(&authority.kid(), authority.public());
        let policy = VoucherPolicy::new(vec!["interop.pagopa.it".into()], vec!["anagrafe".into()]);
        let voucher = validate(&token, &keys, &policy, NOW).unwrap();
        (token, voucher)
    }

    #[test]
    fn the_expected_url_is_the_public_url_whatever_the_request_says() {
        let check = check_with(10);
        // Behind a proxy: another scheme, host, port and prefix than what the gateway sees.
        let req = TestRequest::post()
            .uri("http://10.0.0.5:8080/anagrafe/v1/residenza?x=1")
            .insert_header(("host", "evil.example"))
            .insert_header(("x-forwarded-host", "evil.example"))
            .to_srv_request();
        assert_eq!(
            check.expected_url(&req).unwrap(),
            "https://api.comune.example.it/servizi/anagrafe/v1/residenza"
        );
        let req = TestRequest::post().uri("/anagrafe/v1").to_srv_request();
        assert_eq!(
            check.expected_url(&req).unwrap(),
            "https://api.comune.example.it/servizi/anagrafe/v1"
        );
        // A path that only starts with the same characters is not below the base path.
        let req = TestRequest::post().uri("/anagrafe/v10/x").to_srv_request();
        assert!(matches!(
            check.expected_url(&req),
            Err(DpopRefusal::PathOutsideEservice(_))
        ));
    }

    #[actix_web::test]
    async fn a_good_proof_passes_once_and_a_full_memory_is_unavailable() {
        let key = DpopKey::generate().unwrap();
        let (token, voucher) = bound_voucher(key.jkt());
        let url = "https://api.comune.example.it/servizi/anagrafe/v1/residenza";
        let request = |proof: &str| {
            TestRequest::post()
                .uri("/anagrafe/v1/residenza")
                .insert_header((DPOP_HEADER, proof))
                .to_srv_request()
        };
        let check = check_with(1);
        let proof = key.proof("POST", url, Some(&token), NOW).unwrap();
        let verified = check
            .check(&request(&proof), &token, &voucher, NOW)
            .await
            .unwrap();
        assert_eq!(verified.jkt(), key.jkt());
        assert!(matches!(
            check.check(&request(&proof), &token, &voucher, NOW).await,
            Err(DpopRefusal::Replayed)
        ));
        // The memory (capacity 1) is full of a live jti: a new proof cannot be accepted safely.
        let fresh = key.proof("POST", url, Some(&token), NOW).unwrap();
        let refusal = check
            .check(&request(&fresh), &token, &voucher, NOW)
            .await
            .unwrap_err();
        assert!(matches!(refusal, DpopRefusal::ReplayUnavailable(_)));
        assert!(!refusal.is_token_fault());
    }

    #[actix_web::test]
    async fn an_unreachable_shared_memory_refuses_the_proof_as_unavailable() {
        let key = DpopKey::generate().unwrap();
        let (token, voucher) = bound_voucher(key.jkt());
        let url = "https://api.comune.example.it/servizi/anagrafe/v1/residenza";
        // A Redis URL nothing listens on: the proof cannot be checked, so it is not accepted.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let down = crate::state::redis::RedisStore::connect_lazy(
            &format!("redis://127.0.0.1:{port}/0"),
            "t:",
            std::time::Duration::from_millis(200),
        )
        .unwrap();
        let check = DpopCheck {
            replay: Arc::new(ReplayMemory::shared(Arc::new(down), 10, 360)),
            ..check_with(10)
        };
        let proof = key.proof("POST", url, Some(&token), NOW).unwrap();
        let req = TestRequest::post()
            .uri("/anagrafe/v1/residenza")
            .insert_header((DPOP_HEADER, proof.as_str()))
            .to_srv_request();
        let refusal = check.check(&req, &token, &voucher, NOW).await.unwrap_err();
        assert!(
            matches!(refusal, DpopRefusal::ReplayUnavailable(_)),
            "{refusal:?}"
        );
        assert!(!refusal.is_token_fault());
    }

    #[actix_web::test]
    async fn binding_and_header_refusals_say_whose_fault() {
        let key = DpopKey::generate().unwrap();
        let other = DpopKey::generate().unwrap();
        let (token, voucher) = bound_voucher(key.jkt());
        let url = "https://api.comune.example.it/servizi/anagrafe/v1/residenza";
        let check = check_with(10);
        let foreign = other.proof("POST", url, Some(&token), NOW).unwrap();
        let req = TestRequest::post()
            .uri("/anagrafe/v1/residenza")
            .insert_header((DPOP_HEADER, foreign.as_str()))
            .to_srv_request();
        let refusal = check.check(&req, &token, &voucher, NOW).await.unwrap_err();
        assert!(matches!(refusal, DpopRefusal::KeyNotBound { .. }));
        assert!(refusal.is_token_fault());
        // The refused proof did not consume its jti: the right key's proof still passes.
        let good = key.proof("POST", url, Some(&token), NOW).unwrap();
        let req = TestRequest::post()
            .uri("/anagrafe/v1/residenza")
            .insert_header((DPOP_HEADER, good.as_str()))
            .to_srv_request();
        assert!(check.check(&req, &token, &voucher, NOW).await.is_ok());
        // No header, two headers.
        let req = TestRequest::post()
            .uri("/anagrafe/v1/residenza")
            .to_srv_request();
        assert!(matches!(
            check.check(&req, &token, &voucher, NOW).await,
            Err(DpopRefusal::MissingProof)
        ));
        let req = TestRequest::post()
            .uri("/anagrafe/v1/residenza")
            .append_header((DPOP_HEADER, good.as_str()))
            .append_header((DPOP_HEADER, good.as_str()))
            .to_srv_request();
        assert!(matches!(
            check.check(&req, &token, &voucher, NOW).await,
            Err(DpopRefusal::SeveralProofs(2))
        ));
    }
}
