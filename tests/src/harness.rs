//! The `dev` environment started in-process: local PDND authority, gateway and seeded SQLite
//! on free loopback ports, in a temporary data directory of its own.

use crate::serial::{self, Shared};
use gateway::config::Config;
use gateway::dev::{self, DevEnvironment};
use serde_json::{json, Value};
use std::path::PathBuf;

/// A running development environment.
pub struct Harness {
    pub env: DevEnvironment,
    pub http: reqwest::Client,
    /// The data directory (removed when the harness drops).
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    /// Keeps timing-sensitive tests from running beside this one ([`crate::serial`]); released
    /// last, once the environment is stopped and its directory gone.
    _shared: Shared,
}

/// Residents seeded by the harness (smaller than `dev`'s default to keep suites quick).
pub const RESIDENTS: u32 = 200;

impl Harness {
    /// Starts authority, gateway and store on port 0.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// Starts with a tweak applied to the development configuration first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let shared = serial::shared().await;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        gateway::telemetry::init("warn", false);
        let mut config = Config::load_dev(None).expect("embedded dev config");
        config.server.public_listen = "127.0.0.1:0".parse().expect("addr");
        config.server.internal_listen = "127.0.0.1:0".parse().expect("addr");
        config.dev.authority_listen = "127.0.0.1:0".parse().expect("addr");
        config.dev.residents = RESIDENTS;
        tweak(&mut config);
        let tmp = crate::temp_dir("e2e");
        let dir = tmp.path().to_path_buf();
        let env = dev::start(config, &dir)
            .await
            .expect("dev environment starts");
        Harness {
            env,
            http: reqwest::Client::new(),
            dir,
            _tmp: tmp,
            _shared: shared,
        }
    }

    /// A URL on the public listener.
    pub fn public(&self, path: &str) -> String {
        format!("http://{}{}", self.env.running.public, path)
    }

    /// A URL on the internal listener.
    pub fn internal(&self, path: &str) -> String {
        format!("http://{}{}", self.env.running.internal, path)
    }

    /// A URL on the local PDND authority.
    pub fn authority(&self, path: &str) -> String {
        let addr = self.env.running.authority.expect("dev runs an authority");
        format!("http://{addr}{path}")
    }

    /// A voucher for a purpose, obtained through the voucher CLI's own code path.
    pub async fn voucher(&self, purpose_id: &str) -> String {
        let plan = gateway::cli::voucher::plan(&self.env.config, Some(purpose_id), None)
            .expect("voucher plan");
        gateway::cli::voucher::obtain(&plan)
            .await
            .expect("voucher obtained")
            .response
            .access_token
    }

    /// A DPoP-bound voucher for a purpose: asked for with a proof of `key` through the voucher
    /// CLI's own code path; the authority answers `token_type: DPoP`.
    pub async fn dpop_voucher(
        &self,
        purpose_id: &str,
        key: &gateway::pdnd::dpop::DpopKey,
    ) -> gateway::pdnd::TokenResponse {
        let mut plan = gateway::cli::voucher::plan(&self.env.config, Some(purpose_id), None)
            .expect("voucher plan");
        plan.dpop = Some(key.clone());
        gateway::cli::voucher::obtain(&plan)
            .await
            .expect("DPoP voucher obtained")
            .response
    }

    /// A voucher bound to a TrackingEvidence (AUDIT_REST_02): `digest` is the lowercase hex
    /// SHA-256 of the JWS, asked for through the voucher CLI's own code path.
    pub async fn voucher_with_digest(&self, purpose_id: &str, digest: &str) -> String {
        let plan = gateway::cli::voucher::plan(&self.env.config, Some(purpose_id), Some(digest))
            .expect("voucher plan with digest");
        gateway::cli::voucher::obtain(&plan)
            .await
            .expect("voucher obtained")
            .response
            .access_token
    }

    /// The dev PKI `dev` generated in the data directory (the gateway signs with its RSA
    /// identity and trusts its CA); the same files, reused.
    pub fn modi_pki(&self) -> gateway::modi::DevPki {
        gateway::modi::generate_dev_pki(
            &self.dir.join(gateway::dev::data_dir::MODI_DIR),
            gateway::dev::data_dir::MODI_COMMON_NAME,
        )
        .expect("the data directory's dev PKI")
    }

    /// The sample client's key as ModI signing material with its PDND kid (INTEGRITY_REST_02,
    /// AUDIT_REST_01/02): the local authority serves its public half at `/keys/{kid}`.
    pub fn client_material(&self) -> gateway::modi::SigningMaterial {
        gateway::modi::SigningMaterial::with_kid(
            self.env.data.client_key.to_pem().as_bytes(),
            self.env.data.client.kid.clone(),
            gateway::modi::SigningAlgorithm::RS256,
        )
        .expect("the sample client key signs RS256")
    }

    /// POSTs raw body bytes with the given headers (nothing added but what reqwest must).
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.http.post(self.public(path)).body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("request sent")
    }

    /// POSTs JSON with a bearer token (or none).
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(self.public(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    /// A codice fiscale the seed wrote.
    pub fn sample_cf(&self) -> String {
        self.env
            .samples
            .first()
            .expect("the seed reports sample subjects")
            .codice_fiscale
            .clone()
    }

    /// The authority's signing key PEM, to forge vouchers that differ from good ones in one
    /// claim only.
    pub fn authority_key_pem(&self) -> String {
        self.env.data.authority_key.to_pem()
    }

    /// The public listener's JWKS cache (fetch count, loaded or not).
    pub fn jwks(&self) -> std::sync::Arc<gateway::pdnd_client::jwks::JwksCache> {
        self.env
            .running
            .jwks
            .clone()
            .expect("the gateway exposes its JWKS cache")
    }

    /// The kid of the authority's key.
    pub fn authority_kid(&self) -> String {
        self.env.data.authority_key.kid()
    }

    /// Claims of a voucher the gateway would accept for anagrafe (to be altered by tests).
    pub fn good_claims(&self, now: i64) -> Value {
        let cfg = &self.env.config;
        json!({
            "iss": cfg.dev.authority_issuer,
            "aud": cfg.eservices.anagrafe.audiences.join(","),
            "sub": self.env.data.client.client_id,
            "client_id": self.env.data.client.client_id,
            "purposeId": dev::sample::ANAGRAFE_FULL.purpose_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "producerId": cfg.comune.producer_id,
            "consumerId": dev::sample::CONSUMER_ID,
            "eserviceId": cfg.eservices.anagrafe.eservice_id,
            "descriptorId": cfg.eservices.anagrafe.descriptor_id,
        })
    }
}
