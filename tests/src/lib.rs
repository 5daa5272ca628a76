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

// ---------------------------------------------------------------------------------------------
// Fruitore side: the internal listener's fruizioni, a second gateway acting as consumer, and a
// token endpoint whose answers a test scripts.
// ---------------------------------------------------------------------------------------------

impl Harness {
    /// The internal API key `dev` generated (caller `dev`, every fruizione).
    pub fn api_key(&self) -> String {
        self.env
            .data
            .internal_api_key()
            .expect("dev generates an internal API key")
    }

    /// POSTs JSON to `/fruizioni/{fruizione}/{path}` on the internal listener with the API key.
    pub async fn fruizione_post(
        &self,
        fruizione: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .post(self.internal(&format!("/fruizioni/{fruizione}/{path}")))
            .header("X-API-Key", self.api_key())
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Token requests the local authority has seen so far.
    pub fn token_requests(&self) -> u64 {
        self.env.token_stats.requests()
    }

    /// A fruizione calling this harness' anagrafe (public listener) as the sample client with
    /// the full anagrafe purpose; tests adjust limits and timeouts.
    pub fn anagrafe_fruizione(&self, name: &str) -> gateway::config::FruizioneConfig {
        gateway::config::FruizioneConfig {
            name: name.to_owned(),
            remote_base_url: self.public("/anagrafe/v1"),
            purpose_id: dev::sample::ANAGRAFE_FULL.purpose_id.to_owned(),
            client_id: None,
            key_file: None,
            modi: Vec::new(),
            audience: None,
            signing_key_file: None,
            signing_chain_file: None,
            signing_algorithm: None,
            verify_response: false,
            response_trust_file: None,
            timeout_ms: 10_000,
            max_concurrency: 64,
            ca_file: None,
            max_response_bytes: gateway::config::DEFAULT_MAX_RESPONSE_BYTES,
            dpop: false,
        }
    }

    /// Starts a second gateway that acts as the consumer (fruitore) of this one: its own
    /// store, audit trail and listeners, asking vouchers from this harness' authority as the
    /// sample client. `tweak` sets its fruizioni and anything else.
    pub async fn start_consumer(&self, tweak: impl FnOnce(&mut Config)) -> ConsumerGateway {
        let dir = std::env::temp_dir().join(format!("pdndgw-consumer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("consumer data dir");
        let mut config = self.env.config.clone();
        config.server.public_listen = "127.0.0.1:0".parse().expect("addr");
        config.server.internal_listen = "127.0.0.1:0".parse().expect("addr");
        config.database.url = format!("sqlite://{}?mode=rwc", dir.join("comune.db").display());
        config.audit.url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
        config.internal.api_keys = Vec::new();
        config.fruizioni = Vec::new();
        tweak(&mut config);
        // The caller the helpers call as: allowed every fruizione the tweak configured (none
        // when the tweak configured none: a caller must be allowed something).
        let api_key = format!("consumer-{}", uuid::Uuid::new_v4().simple());
        let all: Vec<String> = config.fruizioni.iter().map(|f| f.name.clone()).collect();
        if !all.is_empty() {
            config
                .internal
                .api_keys
                .push(gateway::config::ApiKeyConfig::for_key(
                    CONSUMER_CALLER,
                    &api_key,
                    all,
                ));
        }
        config.validate().expect("consumer config validates");
        let store = eservices::store::SqlStore::connect(&config.database.url)
            .await
            .expect("consumer store");
        store.migrate().await.expect("consumer store migrates");
        let running = gateway::server::start(&config, std::sync::Arc::new(store), None)
            .await
            .expect("consumer gateway starts");
        ConsumerGateway {
            running: Some(running),
            api_key,
            config,
            dir,
            http: reqwest::Client::new(),
        }
    }
}

/// The internal caller name of a [`ConsumerGateway`]'s own API key.
pub const CONSUMER_CALLER: &str = "e2e-caller";

/// A second gateway instance, used as the consumer of a [`Harness`].
pub struct ConsumerGateway {
    running: Option<gateway::server::Running>,
    api_key: String,
    pub config: Config,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

impl ConsumerGateway {
    /// A URL on its public listener (e.g. to call it as a provider configured differently).
    pub fn public(&self, path: &str) -> String {
        let running = self.running.as_ref().expect("running");
        format!("http://{}{}", running.public, path)
    }

    /// A URL on its internal listener.
    pub fn internal(&self, path: &str) -> String {
        let running = self.running.as_ref().expect("running");
        format!("http://{}{}", running.internal, path)
    }

    /// Its internal listener's address.
    pub fn internal_addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").internal
    }

    /// The key of [`CONSUMER_CALLER`], allowed every fruizione.
    pub fn api_key(&self) -> String {
        self.api_key.clone()
    }

    /// Its audit trail.
    pub async fn audit_store(&self) -> gateway::provider::audit::AuditStore {
        gateway::provider::audit::AuditStore::connect(&self.config.audit.url)
            .await
            .expect("consumer audit store")
    }

    /// Calls `/fruizioni/{fruizione}/{path}` with the API key and a JSON body.
    pub async fn call(&self, fruizione: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.internal(&format!("/fruizioni/{fruizione}/{path}")))
            .header("X-API-Key", self.api_key())
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Calls `/fruizioni/{fruizione}/{path}` with the API key, extra headers and a JSON body.
    pub async fn call_with(
        &self,
        fruizione: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.internal(&format!("/fruizioni/{fruizione}/{path}")))
            .header("X-API-Key", self.api_key())
            .json(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("request sent")
    }

    /// The PDND client id its fruizioni ask vouchers with (the `[client]` section's).
    pub fn client_id(&self) -> String {
        self.config
            .client
            .as_ref()
            .expect("the consumer has a [client] section")
            .client_id
            .clone()
    }

    /// Stops its listeners.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for ConsumerGateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One scripted answer of a [`ScriptedTokenEndpoint`].
#[derive(Debug, Clone)]
pub enum Step {
    /// An error status, with `Retry-After` when given, and a PDND-like problem body.
    Fail {
        status: u16,
        retry_after: Option<String>,
    },
    /// A 200 with a made-up token (for tests that never present it to a provider).
    Token { expires_in: i64 },
    /// Relay the request to the upstream authority and its answer back.
    Forward,
}

struct Script {
    steps: std::sync::Mutex<std::collections::VecDeque<Step>>,
    default: std::sync::Mutex<Step>,
    requests: std::sync::atomic::AtomicU64,
    upstream: Option<String>,
    http: reqwest::Client,
}

/// A token endpoint whose answers a test scripts: it plays the queued steps in order, then its
/// default step forever. It counts every request.
pub struct ScriptedTokenEndpoint {
    pub url: String,
    script: std::sync::Arc<Script>,
    handle: actix_web::dev::ServerHandle,
}

async fn scripted_token(
    script: actix_web::web::Data<Script>,
    body: actix_web::web::Bytes,
) -> actix_web::HttpResponse {
    use actix_web::HttpResponse;
    script
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let step = {
        let mut steps = script.steps.lock().expect("script lock");
        steps
            .pop_front()
            .unwrap_or_else(|| script.default.lock().expect("script lock").clone())
    };
    match step {
        Step::Fail {
            status,
            retry_after,
        } => {
            let mut b = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status).expect("scripted status"),
            );
            b.insert_header(("content-type", "application/problem+json"));
            if let Some(r) = retry_after {
                b.insert_header(("retry-after", r));
            }
            b.body(
                json!({"type":"about:blank","status":status,"title":"scripted","detail":"scripted","errors":[{"code":"015-0008","detail":"Unable to generate a token for the given request"}]})
                    .to_string(),
            )
        }
        Step::Token { expires_in } => HttpResponse::Ok().json(json!({
            "access_token": format!("scripted.{}.token", uuid::Uuid::new_v4().simple()),
            "token_type": "Bearer",
            "expires_in": expires_in,
        })),
        Step::Forward => {
            let upstream = script
                .upstream
                .as_deref()
                .expect("Forward needs an upstream");
            match script
                .http
                .post(upstream)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).expect("status"),
                    )
                    .insert_header(("content-type", "application/json"))
                    .body(text)
                }
                Err(_) => HttpResponse::BadGateway().finish(),
            }
        }
    }
}

impl ScriptedTokenEndpoint {
    /// Starts one on a free port; `upstream` is the real token endpoint `Forward` relays to.
    pub async fn start(
        steps: Vec<Step>,
        default: Step,
        upstream: Option<String>,
    ) -> ScriptedTokenEndpoint {
        let script = std::sync::Arc::new(Script {
            steps: std::sync::Mutex::new(steps.into()),
            default: std::sync::Mutex::new(default),
            requests: std::sync::atomic::AtomicU64::new(0),
            upstream,
            http: reqwest::Client::new(),
        });
        let data = actix_web::web::Data::from(script.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .route("/token.oauth2", actix_web::web::post().to(scripted_token))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind scripted endpoint");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        ScriptedTokenEndpoint {
            url: format!("http://{addr}/token.oauth2"),
            script,
            handle,
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.script
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the step played once the queue is empty.
    pub fn set_default(&self, step: Step) {
        *self.script.default.lock().expect("script lock") = step;
    }

    /// Takes the endpoint down (connections refused from now on).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A TCP port that accepts connections and never answers (a hung remote). Dropped with the
/// runtime.
pub async fn silent_remote() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A loopback address nobody listens on.
pub fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A response header as text (None when absent or not visible ASCII).
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An answer read off the wire by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    /// 0 when the connection closed without an answer.
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request with the request target written exactly as given: no client
/// library normalises it (URL parsers resolve dot segments and `%2e`, which is what routing
/// tests must send unchanged).
pub async fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    // A server that refuses a malformed request line may reset the connection after (or
    // instead of) its bare 400: what was read is the answer, nothing read is status 0.
    let _ = stream.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return RawResponse {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    }
    parse_raw_response(&raw)
}

fn parse_raw_response(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// A remote e-service stand-in that counts what reaches it: every request is answered 200
/// with `body_len` bytes, declared by `Content-Length` or sent chunked (no length known in
/// advance). Dropped with the runtime.
pub struct CountingRemote {
    pub addr: std::net::SocketAddr,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CountingRemote {
    pub async fn start(body_len: usize, chunked: bool) -> CountingRemote {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock().expect("paths lock").push(path);
                    let body = vec![b'a'; body_len];
                    let mut out =
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                            .to_vec();
                    if chunked {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        let _ = socket.write_all(&out).await;
                        for part in body.chunks(16 * 1024) {
                            let mut piece = format!("{:x}\r\n", part.len()).into_bytes();
                            piece.extend_from_slice(part);
                            piece.extend_from_slice(b"\r\n");
                            if socket.write_all(&piece).await.is_err() {
                                return;
                            }
                        }
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    } else {
                        out.extend_from_slice(
                            format!("Content-Length: {body_len}\r\n\r\n").as_bytes(),
                        );
                        out.extend_from_slice(&body);
                        let _ = socket.write_all(&out).await;
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        CountingRemote { addr, paths }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.paths.lock().expect("paths lock").len()
    }

    /// The request targets received, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("paths lock").clone()
    }
}

/// Sends `POST {target}` with `{}` exactly as written (no client-side normalisation of dot
/// segments or escapes, which HTTP clients do) and the API key; the status code.
pub async fn raw_post(addr: std::net::SocketAddr, target: &str, key: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
