//! Harness for the end-to-end suites: the real `dev` environment (local PDND authority, gateway,
//! seeded SQLite) started in-process on free loopback ports, and helpers to talk to it.
//!
//! Everything goes over real sockets with a real HTTP client; nothing is mocked. Each harness
//! gets its own temporary data directory, so suites run in parallel.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway::config::Config;
use gateway::dev::{self, DevEnvironment};
use serde_json::{json, Value};
use std::path::PathBuf;

/// A running development environment.
pub struct Harness {
    pub env: DevEnvironment,
    pub http: reqwest::Client,
    pub dir: PathBuf,
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
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        gateway::telemetry::init("warn", false);
        let mut config = Config::load_dev(None).expect("embedded dev config");
        config.server.public_listen = "127.0.0.1:0".parse().expect("addr");
        config.server.internal_listen = "127.0.0.1:0".parse().expect("addr");
        config.dev.authority_listen = "127.0.0.1:0".parse().expect("addr");
        config.dev.residents = RESIDENTS;
        tweak(&mut config);
        let dir = std::env::temp_dir().join(format!("pdndgw-e2e-{}", uuid::Uuid::new_v4()));
        let env = dev::start(config, &dir)
            .await
            .expect("dev environment starts");
        Harness {
            env,
            http: reqwest::Client::new(),
            dir,
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

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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

/// A throwaway PostgreSQL server of its own (via `tests/scripts/postgres.sh`), for suites that
/// must stop and restart the database. Stopped and removed on drop.
pub struct Postgres {
    dir: PathBuf,
    pub url: String,
}

const POSTGRES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");

impl Postgres {
    /// Starts one. Where PostgreSQL cannot be had, a local run skips (returns None with a
    /// message) but CI fails: the suites must never silently lose their PostgreSQL half.
    pub fn start() -> Option<Postgres> {
        let dir = std::env::temp_dir().join(format!("pdndgw-pg-{}", uuid::Uuid::new_v4()));
        match Self::run("start", &dir) {
            Ok(out) => {
                let url = out
                    .lines()
                    .find_map(|l| l.strip_prefix("DATABASE_URL="))
                    .expect("postgres.sh prints DATABASE_URL")
                    .to_owned();
                Some(Postgres { dir, url })
            }
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: PostgreSQL unavailable here ({e}); CI runs this suite");
                None
            }
            Err(e) => panic!("PostgreSQL could not be started in CI: {e}"),
        }
    }

    fn run(cmd: &str, dir: &std::path::Path) -> Result<String, String> {
        let out = std::process::Command::new("bash")
            .arg(POSTGRES_SCRIPT)
            .arg(cmd)
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (an outage).
    pub fn stop(&self) {
        Self::run("stop", &self.dir).expect("postgres stops");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        Self::run("start", &self.dir).expect("postgres restarts");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Self::run("stop", &self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
