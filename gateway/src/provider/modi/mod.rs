//! The ModI security patterns in the inbound pipeline, per e-service as configured.
//!
//! Two stages share one [`ModiShared`] (our signing material, the CA trust store, the PDND key
//! source and the replay memory):
//!
//! - [`ResponseSigning`] (modi-out) sits right inside the voucher stage: every answer to a caller
//!   whose voucher was accepted gets `Digest` and `Agid-JWT-Signature` (INTEGRITY_REST_01, our
//!   `x5c`, `aud` = the caller's clientId), purpose refusals and ModI refusals included, since
//!   those are answers the caller may need to prove too. 204/304 are not signed (no body).
//! - [`RequestChecks`] (modi-in) sits inside the purpose stage: when the e-service requires
//!   it, the request's `Digest` + `Agid-JWT-Signature` (INTEGRITY_REST_01 by `x5c`, _02 by PDND
//!   `kid`) and its `Agid-JWT-TrackingEvidence` (AUDIT_REST_01, and the voucher binding of
//!   AUDIT_REST_02) are verified, their jtis recorded against replay, the body put back for the
//!   handler and the tracking claims handed to the audit record
//!   ([`TrackingInfo`](super::audit::TrackingInfo)).
//!
//! What a caller can make these stages hold or spend is bounded: the body is read within
//! `server.body_read_timeout_ms` (then 408), one client holds at most
//! `modi.replay_cache_per_client` jtis of the replay memory (then 429 for it alone), and kids
//! not in the key cache are looked up on PDND at most `modi.kid_lookups_per_minute` times a
//! minute (then 503 with Retry-After, nothing sent), a 404 being remembered for
//! `modi.unknown_kid_ttl_secs`.
//!
//! The protocol rules live in [`crate::modi`]; this module only moves bytes between HTTP and
//! those functions, supplies `now` and asks for PDND keys. The caller holds a valid voucher, so
//! refusals say precisely what was wrong (a PA integrating with us needs that); they are always
//! problem+json with the status of [`ModiError::http_status`](crate::modi::ModiError::http_status).
//!
//! The stages read a PDND key by kid from [`crate::pdnd_client::keys`], which owns the lookup,
//! its caches and its rate. Here, `setup.rs` builds the [`ModiShared`] from the configuration
//! once at start, `request_checks.rs` is modi-in and `response_signing.rs` modi-out.

use crate::config::EserviceModiConfig;
use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::middleware::Next;
use eservices::Eservice;
use std::sync::Arc;

mod request_checks;
mod response_signing;
mod setup;

pub use request_checks::{ModiRefusal, MAX_REQUEST_BODY};
pub use response_signing::MAX_RESPONSE_BODY;
pub use setup::{ModiSetupError, ModiShared, ResponseSigner};

/// One e-service's ModI configuration, used by both of its stages.
pub struct ModiStage {
    pub eservice: Eservice,
    /// The e-service's audiences: `aud` of callers' signatures must be one of them.
    pub audiences: Vec<String>,
    pub patterns: EserviceModiConfig,
    pub shared: Arc<ModiShared>,
}

/// modi-out: signs every answer (see the module documentation).
pub struct ResponseSigning(pub Arc<ModiStage>);

/// modi-in: verifies what the e-service requires of requests.
pub struct RequestChecks(pub Arc<ModiStage>);

impl super::Stage for ResponseSigning {
    const SPAN: &'static str = "signing";
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}

impl super::Stage for RequestChecks {
    const NAME: &'static str = "modi";
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}
