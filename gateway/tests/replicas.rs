//! Two replicas of the real binary behind no load balancer but the test itself: two
//! `pdnd-gateway serve` processes on their own ports, each with its own configuration file,
//! sharing one PostgreSQL (register, audit trail and purposes table; fresh schemas per test) and
//! one Redis (`[state] backend = "redis"`), as two pods of the chart do.
//!
//! `serve` accepts only `https://` toward PDND, so the test runs a stand-in PDND over TLS: the
//! development authority (the same code `dev` runs: token endpoint, JWKS, `/keys/{kid}`) with a
//! certificate of a CA the test makes, which the replicas trust through `SSL_CERT_FILE` (in a
//! cluster: the public CAs of the image). The schemas are created once by `pdnd-gateway
//! migrate`, as the chart's hook Job does, and the replicas start with `--no-migrate`. Every
//! request carries INTEGRITY_REST_02 (Agid-JWT-Signature with a jti the gateway must see only
//! once; the caller's key comes from the stand-in's `/keys/{kid}`).
//!
//! What is shown: a request accepted by A and replayed to B is refused with Redis (and accepted
//! with `backend = "memory"`, the difference Redis makes); both replicas write the one audit
//! trail; a purpose suspended in the table stops both; `kill -9` of one under load loses no
//! audit record of an answered request; Redis down answers 503, Redis back serves again; the
//! daily calls of an e-service are counted once across both replicas and across a restart.
//!
//! Needs `PDNDGW_TEST_POSTGRES_URL` and `PDNDGW_TEST_REDIS_URL` (`tests/run.sh` sets both):
//! unset locally, each test says SKIPPED; unset with `CI`, it fails.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use gateway::config::{Config, InternalTlsConfig};
use gateway::dev::authority_http::TokenStats;
use gateway::dev::data_dir::DataDir;
use gateway::dev::sample;
use gateway::modi::{SignatureClaims, SigningAlgorithm, SigningMaterial};
use gateway::pdnd::authority::Authority;
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::AssertSqlSafe;

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");
const REDIS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/redis.sh");
const RESIDENZA: &str = "/anagrafe/v1/residenza";
const JSON: &str = "application/json";
/// The e-services' public URLs (and voucher audiences): names, never dialled.
const ANAGRAFE_URL: &str = "https://api.comune-replicas.test/anagrafe/v1";
const TRIBUTI_URL: &str = "https://api.comune-replicas.test/tributi/v1";

/// A test's environment variable, with the project's rule (unset locally is a visible skip,
/// unset with `CI` a failure), written once in `test-support`.
fn required_env(name: &str) -> Option<String> {
    test_support::service_url(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh PostgreSQL schema on the test server, as a URL whose search_path is that schema.
async fn fresh_schema(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let schema = format!("r_{}", uuid::Uuid::new_v4().simple());
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// The stand-in PDND: the development authority on two listeners, HTTPS for the replicas and
/// plain HTTP on loopback for the test's own voucher requests.
struct Pdnd {
    https: SocketAddr,
    http: SocketAddr,
    /// The CA that issued the HTTPS listener's certificate (the replicas' `SSL_CERT_FILE`).
    ca_file: PathBuf,
    /// Token and key requests it answered, on either listener.
    stats: Arc<TokenStats>,
    handle: actix_web::dev::ServerHandle,
}

impl Pdnd {
    fn start(dir: &Path, authority: Authority) -> Pdnd {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "replicas test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("CA as issuer");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("leaf")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");
        let ca_file = dir.join("pdnd-ca.pem");
        let cert_file = dir.join("pdnd-tls.crt");
        let key_file = dir.join("pdnd-tls.key");
        std::fs::write(&ca_file, ca_cert.pem()).expect("CA file");
        std::fs::write(&cert_file, leaf.pem()).expect("cert file");
        std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key file");
        let tls = gateway::tls::internal_server_config(&InternalTlsConfig {
            cert_file,
            key_file,
            client_ca_file: None,
        })
        .expect("TLS server configuration");

        let https = TcpListener::bind("127.0.0.1:0").expect("bind");
        let http = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (https_addr, http_addr) = (
            https.local_addr().expect("addr"),
            http.local_addr().expect("addr"),
        );
        let authority = web::Data::new(authority);
        let stats = Arc::new(TokenStats::default());
        let stats_data = web::Data::from(stats.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(authority.clone())
                .app_data(stats_data.clone())
                .configure(gateway::dev::authority_http::routes)
        })
        .workers(1)
        .disable_signals()
        .listen(http)
        .and_then(|s| s.listen_rustls_0_23(https, tls))
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Pdnd {
            https: https_addr,
            http: http_addr,
            ca_file,
            stats,
            handle,
        }
    }
}

impl Drop for Pdnd {
    fn drop(&mut self) {
        // Stops accepting at once; the future only reports when the workers are gone.
        drop(self.handle.stop(false));
    }
}

/// One `pdnd-gateway serve` process.
struct Replica {
    child: Child,
    public: SocketAddr,
    internal: SocketAddr,
    log: PathBuf,
}

impl Replica {
    /// Writes the replica's configuration (its listeners, then `shared`) and starts `serve
    /// --no-migrate` on it; returns once `/readyz` says ready, as the kubelet waits.
    async fn spawn(dir: &Path, name: &str, shared: &str, ca_file: &Path) -> Replica {
        let public: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let internal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config_file = dir.join(format!("{name}.toml"));
        let text = format!(
            "[server]\npublic_listen = \"{public}\"\ninternal_listen = \"{internal}\"\n\
             workers = 2\n\n{shared}"
        );
        std::fs::write(&config_file, text).expect("replica config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args(["--log-format", "text", "serve", "--no-migrate", "--config"])
            .arg(&config_file)
            .env("SSL_CERT_FILE", ca_file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("replica starts");
        let mut replica = Replica {
            child,
            public,
            internal,
            log,
        };
        replica.wait_ready().await;
        replica
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("replica exited ({status}): {}", self.log_text());
            }
            if let Ok(resp) = http
                .get(format!("http://{}/readyz", self.internal))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if resp.status() == 200 {
                    return;
                }
                last = resp.text().await.ok();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "replica never ready (last /readyz: {last:?}): {}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// `/readyz` of the internal listener: its status and body.
    async fn readyz(&self, http: &reqwest::Client) -> (u16, Value) {
        let resp = http
            .get(format!("http://{}/readyz", self.internal))
            .send()
            .await
            .expect("readyz answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("readyz body is JSON"))
    }

    /// `kill -9`: no shutdown, no flush.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two replicas and what a client needs to call them.
struct Pair {
    dir: PathBuf,
    /// The configuration both replicas share (a third one, started later, gets it too).
    shared: String,
    pdnd: Pdnd,
    a: Replica,
    b: Replica,
    audit_url: String,
    http: reqwest::Client,
    voucher: String,
    material: SigningMaterial,
    client_id: String,
    cfs: Vec<String>,
}

impl Pair {
    /// Seeds the register, runs `migrate`, starts the stand-in PDND, then A and B.
    /// `state_toml` is their `[state]` section, `anagrafe_toml` more keys of
    /// `[eservices.anagrafe]`.
    async fn start(state_toml: &str, anagrafe_toml: &str) -> Option<Pair> {
        let postgres = required_env("PDNDGW_TEST_POSTGRES_URL")?;
        let dir = std::env::temp_dir().join(unique("pdndgw-replicas"));
        let data = DataDir::prepare(&dir.join("data")).expect("keys and sample client");
        let register = fresh_schema(&postgres).await;
        let audit_url = fresh_schema(&postgres).await;
        let seeded = gateway::cli::seed::run(&register, 30, false)
            .await
            .expect("the register is seeded");

        // What the stand-in knows: the development identities, our e-services' audiences.
        let mut config = Config::load_dev(None).expect("dev defaults");
        config.eservices.anagrafe.public_url = ANAGRAFE_URL.to_owned();
        config.eservices.anagrafe.audiences = vec![ANAGRAFE_URL.to_owned()];
        config.eservices.tributi.public_url = TRIBUTI_URL.to_owned();
        config.eservices.tributi.audiences = vec![TRIBUTI_URL.to_owned()];
        let pdnd = Pdnd::start(&dir, gateway::dev::authority(&config, &data));
        let pki = data.modi_pki().expect("ModI PKI");
        let purposes = dir.join("purposes.toml");
        std::fs::write(&purposes, gateway::dev::purposes_toml(&config)).expect("purposes");
        let hmac = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let (anagrafe, tributi, p) = (
            &config.eservices.anagrafe,
            &config.eservices.tributi,
            pdnd.https,
        );
        let id = |v: &Option<String>| v.clone().unwrap_or_default();
        let shared = format!(
            r#"[pdnd]
environment = "collaudo"
token_endpoint = "https://{p}/token.oauth2"
client_assertion_audience = "{assertion_aud}"
voucher_issuers = ["{issuer}"]
jwks_url = "https://{p}/.well-known/jwks.json"
keys_url = "https://{p}/keys"
api_client_id = "{api_client}"
api_key_file = "{api_key}"

[eservices.anagrafe]
public_url = "{ANAGRAFE_URL}"
audiences = ["{ANAGRAFE_URL}"]
eservice_id = "{a_id}"
descriptor_id = "{a_desc}"
{anagrafe_toml}

[eservices.anagrafe.modi]
sign_responses = true
request_integrity = "integrity_rest_02"
audit = "none"

[eservices.tributi]
public_url = "{TRIBUTI_URL}"
audiences = ["{TRIBUTI_URL}"]
eservice_id = "{t_id}"
descriptor_id = "{t_desc}"

[comune]
producer_id = "{producer}"
name = "Comune di Prova"
contact_email = "interoperabilita@comune.example.it"

[database]
url = "{register}"

[audit]
url = "{audit_url}"
hmac_secret = "{hmac}"

[purposes]
file = "{purposes}"

[modi]
signing_key_file = "{modi_key}"
certificate_chain_file = "{modi_chain}"
trust_store_file = "{modi_ca}"
algorithm = "RS256"
issuer = "comune-di-prova.replicas.test"

[rate_limits]
requests_per_second = 10000.0
burst = 100000

{state_toml}
"#,
            assertion_aud = config.pdnd.client_assertion_audience,
            issuer = config.dev.authority_issuer,
            api_client = data.api_client.client_id,
            api_key = data.root.join(&data.api_client.key_file).display(),
            a_id = id(&anagrafe.eservice_id),
            a_desc = id(&anagrafe.descriptor_id),
            t_id = id(&tributi.eservice_id),
            t_desc = id(&tributi.descriptor_id),
            producer = id(&config.comune.producer_id),
            purposes = purposes.display(),
            modi_key = pki.rsa_key.display(),
            modi_chain = pki.rsa_chain.display(),
            modi_ca = pki.ca_cert.display(),
        );

        // The chart's hook Job: the schemas, once, before any replica.
        let job = dir.join("migrate.toml");
        std::fs::write(
            &job,
            format!(
                "[server]\npublic_listen = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\n{shared}"
            ),
        )
        .expect("job config");
        let out = Command::new(BIN)
            .args(["migrate", "--config"])
            .arg(&job)
            .output()
            .expect("migrate runs");
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let a = Replica::spawn(&dir, "a", &shared, &pdnd.ca_file).await;
        let b = Replica::spawn(&dir, "b", &shared, &pdnd.ca_file).await;

        // The client: the sample client, with a voucher from the stand-in (its HTTP side).
        gateway::dev::complete_config(&mut config, &data).expect("client section");
        config.pdnd.token_endpoint = format!("http://{}/token.oauth2", pdnd.http);
        let plan =
            gateway::cli::voucher::plan(&config, Some(sample::ANAGRAFE_FULL.purpose_id), None)
                .expect("voucher plan");
        let voucher = gateway::cli::voucher::obtain(&plan)
            .await
            .expect("voucher")
            .response
            .access_token;
        let material = SigningMaterial::with_kid(
            data.client_key.to_pem().as_bytes(),
            data.client.kid.clone(),
            SigningAlgorithm::RS256,
        )
        .expect("client key signs");
        Some(Pair {
            dir,
            shared,
            pdnd,
            a,
            b,
            audit_url,
            http: reqwest::Client::new(),
            voucher,
            material,
            client_id: data.client.client_id.clone(),
            cfs: seeded
                .summary
                .samples
                .into_iter()
                .map(|s| s.codice_fiscale)
                .collect(),
        })
    }

    /// A third replica on the same configuration.
    async fn another(&self, name: &str) -> Replica {
        Replica::spawn(&self.dir, name, &self.shared, &self.pdnd.ca_file).await
    }

    /// A signed residenza request: body, Digest and Agid-JWT-Signature headers.
    fn signed(&self, cf: &str) -> (Vec<u8>, Vec<(String, String)>) {
        let t = chrono::Utc::now().timestamp();
        let claims = SignatureClaims {
            iss: self.client_id.clone(),
            sub: self.client_id.clone(),
            aud: ANAGRAFE_URL.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: t,
            nbf: t,
            exp: t + 60,
        };
        let body = serde_json::to_vec(&json!({ "codiceFiscale": cf })).expect("json");
        let signed = gateway::modi::sign_message(&self.material, &claims, Some(JSON), None, &body)
            .expect("signs");
        let headers = vec![
            ("authorization".into(), format!("Bearer {}", self.voucher)),
            ("content-type".into(), JSON.into()),
            ("digest".into(), signed.digest),
            ("agid-jwt-signature".into(), signed.agid_jwt_signature),
        ];
        (body, headers)
    }

    /// Sends a prepared request to `replica` with `request_id`.
    async fn send(
        &self,
        replica: &Replica,
        request: &(Vec<u8>, Vec<(String, String)>),
        request_id: &str,
    ) -> Result<reqwest::Response, reqwest::Error> {
        send(&self.http, replica.url(RESIDENZA), request, request_id).await
    }

    async fn audit_pool(&self) -> sqlx::AnyPool {
        AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.audit_url)
            .await
            .expect("audit database")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.a.kill();
        self.b.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn send(
    http: &reqwest::Client,
    url: String,
    (body, headers): &(Vec<u8>, Vec<(String, String)>),
    request_id: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = http
        .post(url)
        .header("x-request-id", request_id)
        .timeout(Duration::from_secs(10))
        .body(body.clone());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.send().await
}

/// The audit status recorded for `request_id`, if any.
async fn audited_status(pool: &sqlx::AnyPool, request_id: &str) -> Option<i64> {
    use sqlx::Row;
    sqlx::query("SELECT status FROM audit_log WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(pool)
        .await
        .expect("audit query")
        .map(|row| row.get::<i64, _>("status"))
}

fn redis_state(url: &str) -> String {
    format!(
        "[state]\nbackend = \"redis\"\nurl = \"{url}\"\nkey_prefix = \"{}:\"\ntimeout_ms = 300\n",
        unique("replicas")
    )
}

async fn problem(resp: reqwest::Response) -> (u16, String, Option<String>, Value) {
    let status = resp.status().as_u16();
    let content_type = header(&resp, "content-type").unwrap_or_default();
    let retry_after = header(&resp, "retry-after");
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, content_type, retry_after, body)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_request_accepted_by_one_replica_is_refused_by_the_other() {
    let Some(redis) = required_env("PDNDGW_TEST_REDIS_URL") else {
        return;
    };
    let Some(pair) = Pair::start(&redis_state(&redis), "").await else {
        return;
    };
    // Started and ready, neither replica has needed the caller's key yet.
    assert_eq!(pair.pdnd.stats.key_requests(), 0);
    let request = pair.signed(&pair.cfs[0]);
    let at_a = unique("at-a");
    let resp = pair
        .send(&pair.a, &request, &at_a)
        .await
        .expect("A answers");
    assert_eq!(resp.status(), 200, "{}", pair.a.log_text());

    // The same bytes to B: its jti is already in the shared memory.
    let at_b = unique("replay-at-b");
    let resp = pair
        .send(&pair.b, &request, &at_b)
        .await
        .expect("B answers");
    let (status, content_type, _, body) = problem(resp).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already used"),
        "{body}"
    );
    // B still accepts a fresh request.
    let fresh = unique("fresh-at-b");
    let resp = pair
        .send(&pair.b, &pair.signed(&pair.cfs[0]), &fresh)
        .await
        .expect("B answers");
    assert_eq!(resp.status(), 200);

    // One audit trail holds what both replicas answered.
    let pool = pair.audit_pool().await;
    assert_eq!(audited_status(&pool, &at_a).await, Some(200), "A's record");
    assert_eq!(audited_status(&pool, &at_b).await, Some(401), "B's refusal");
    assert_eq!(audited_status(&pool, &fresh).await, Some(200), "B's record");
    // Each replica took the caller's INTEGRITY_REST_02 key from the stand-in PDND over TLS,
    // with an M2M voucher of its own from the same stand-in.
    let stats = &pair.pdnd.stats;
    assert!(stats.key_requests() >= 2, "{}", stats.key_requests());
    assert!(
        stats.issued() >= 3,
        "the test's voucher and one per replica"
    );
}

#[tokio::test]
async fn with_memory_state_the_other_replica_accepts_the_replay() {
    // The same scenario without Redis: each process remembers only its own jtis, so the
    // replay is accepted by B. This is what `[state] backend = "redis"` prevents.
    let Some(pair) = Pair::start("[state]\nbackend = \"memory\"\n", "").await else {
        return;
    };
    let request = pair.signed(&pair.cfs[0]);
    let resp = pair.send(&pair.a, &request, &unique("a")).await.expect("A");
    assert_eq!(resp.status(), 200);
    let resp = pair
        .send(&pair.a, &request, &unique("a2"))
        .await
        .expect("A");
    assert_eq!(resp.status(), 401, "A itself refuses its own replay");
    let resp = pair.send(&pair.b, &request, &unique("b")).await.expect("B");
    assert_eq!(resp.status(), 200, "B cannot know A's jtis");
}

#[tokio::test]
async fn a_purpose_suspended_in_the_table_stops_both_replicas() {
    let Some(redis) = required_env("PDNDGW_TEST_REDIS_URL") else {
        return;
    };
    let Some(pair) = Pair::start(&redis_state(&redis), "").await else {
        return;
    };
    for replica in [&pair.a, &pair.b] {
        let resp = pair
            .send(replica, &pair.signed(&pair.cfs[0]), &unique("before"))
            .await
            .expect("answers");
        assert_eq!(resp.status(), 200);
    }
    let operations: Vec<&str> = eservices::Operation::all()
        .iter()
        .filter(|o| o.eservice() == eservices::Eservice::Anagrafe)
        .map(|o| o.id())
        .collect();
    let pool = pair.audit_pool().await;
    sqlx::query(
        "INSERT INTO purposes (purpose_id, consumer_name, eservice, operations, state) \
         VALUES ($1, 'sample consumer', 'anagrafe', $2, 'suspended')",
    )
    .bind(sample::ANAGRAFE_FULL.purpose_id)
    .bind(operations.join(","))
    .execute(&pool)
    .await
    .expect("suspend");
    let suspended_at = Instant::now();
    for (name, replica) in [("A", &pair.a), ("B", &pair.b)] {
        loop {
            let resp = pair
                .send(replica, &pair.signed(&pair.cfs[0]), &unique("after"))
                .await
                .expect("answers");
            if resp.status() == 403 {
                break;
            }
            assert_eq!(resp.status(), 200);
            assert!(
                suspended_at.elapsed() < Duration::from_secs(10),
                "{name} still serves a suspended purpose"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("both replicas refused within {:?}", suspended_at.elapsed());
}

#[tokio::test]
async fn killing_one_replica_under_load_loses_no_audited_answer() {
    let Some(redis) = required_env("PDNDGW_TEST_REDIS_URL") else {
        return;
    };
    let Some(mut pair) = Pair::start(&redis_state(&redis), "").await else {
        return;
    };
    let urls = [pair.a.url(RESIDENZA), pair.b.url(RESIDENZA)];
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new((pair.http.clone(), urls));
    // Four clients, round-robin over both replicas, each request with its own id and jti.
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, killed, sent, shared) =
            (stop.clone(), killed.clone(), sent.clone(), shared.clone());
        let requests: Vec<_> = (0..400)
            .map(|i| pair.signed(&pair.cfs[i % pair.cfs.len()]))
            .collect();
        workers.push(tokio::spawn(async move {
            let (http, urls) = &*shared;
            let mut answered = Vec::new();
            for (i, request) in requests.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let replica = (w + i) % 2;
                let id = format!("load-{w}-{i}-{}", uuid::Uuid::new_v4().simple());
                let after_kill = killed.load(Ordering::Relaxed);
                sent.fetch_add(1, Ordering::Relaxed);
                if let Ok(resp) = send(http, urls[replica].clone(), request, &id).await {
                    answered.push(Answer {
                        replica,
                        id,
                        status: resp.status().as_u16(),
                        after_kill,
                    });
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_kill = sent.load(Ordering::Relaxed);
    pair.a.kill();
    killed.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered: Vec<Answer> = Vec::new();
    for w in workers {
        answered.extend(w.await.expect("worker"));
    }
    let total = sent.load(Ordering::Relaxed);
    let ok = answered.iter().filter(|a| a.status / 100 == 2).count();
    let b_after_kill = answered
        .iter()
        .filter(|a| a.replica == 1 && a.after_kill && a.status == 200)
        .count();
    eprintln!(
        "sent {total} ({at_kill} before the kill), {} answered, {ok} of them 2xx, \
         {b_after_kill} answered 200 by B after the kill",
        answered.len()
    );
    assert!(at_kill > 10, "the load ran before the kill");
    assert!(total > at_kill + 10, "the load went on after the kill");
    assert!(b_after_kill > 0, "B kept serving after A was killed");
    // Every answer is the register's (found or not found), none a failure of the pair.
    let odd: Vec<_> = answered
        .iter()
        .filter(|a| a.status != 200 && a.status != 404)
        .map(|a| (a.replica, a.status))
        .take(5)
        .collect();
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    // Every answer the client received has its audit record, with the status it got.
    let pool = pair.audit_pool().await;
    let mut missing = Vec::new();
    for a in &answered {
        if audited_status(&pool, &a.id).await != Some(i64::from(a.status)) {
            missing.push((a.replica, a.id.clone(), a.status));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered requests lack their audit record: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
}

/// One answer the load client received.
struct Answer {
    replica: usize,
    id: String,
    status: u16,
    after_kill: bool,
}

/// A Redis of the test's own, stopped and started again on the same port.
struct OwnRedis {
    dir: PathBuf,
    url: String,
}

impl OwnRedis {
    fn run(cmd: &str, dir: &Path) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(REDIS_SCRIPT)
            .arg(cmd)
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start() -> Option<OwnRedis> {
        let dir = std::env::temp_dir().join(unique("pdndgw-redis"));
        match Self::run("start", &dir) {
            Ok(out) => {
                let url = out
                    .lines()
                    .find_map(|l| l.strip_prefix("REDIS_URL="))
                    .expect("redis.sh prints REDIS_URL")
                    .to_owned();
                Some(OwnRedis { dir, url })
            }
            Err(e) => {
                test_support::skip_or_fail(&format!("Redis could not be started: {e}"));
                None
            }
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = Self::run("stop", &self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn redis_down_is_503_and_redis_back_serves_again_without_restart() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(pair) = Pair::start(&redis_state(&redis.url), "").await else {
        return;
    };
    let resp = pair
        .send(&pair.a, &pair.signed(&pair.cfs[0]), &unique("up"))
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);

    OwnRedis::run("stop", &redis.dir).expect("redis stops");
    for replica in [&pair.a, &pair.b] {
        let id = unique("down");
        let resp = pair
            .send(replica, &pair.signed(&pair.cfs[0]), &id)
            .await
            .expect("answers");
        let (status, content_type, retry_after, body) = problem(resp).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(content_type, "application/problem+json");
        assert!(retry_after.is_some(), "Retry-After");
        // The first stage that needs the store refuses: the quota stage, before the replay
        // memory of the ModI checks.
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("quota") || detail.contains("replay"),
            "{body}"
        );
        assert_eq!(body["instance"], json!(id));
    }
    // Both leave the rotation: `/readyz` names the state store as what fails.
    for replica in [&pair.a, &pair.b] {
        let (status, body) = replica.readyz(&pair.http).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["components"]["state"]["status"], "fail", "{body}");
        assert_eq!(body["components"]["audit"]["status"], "ok", "{body}");
    }
    // The log says why, without the URL's secrets (this URL has none; the reason is there).
    let log = pair.a.log_text();
    assert!(
        log.contains("quota store unavailable") || log.contains("replay memory unavailable"),
        "{log}"
    );

    OwnRedis::run("start", &redis.dir).expect("redis restarts");
    for (name, replica) in [("A", &pair.a), ("B", &pair.b)] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let resp = pair
                .send(replica, &pair.signed(&pair.cfs[0]), &unique("back"))
                .await
                .expect("answers");
            if resp.status() == 200 {
                break;
            }
            assert_eq!(resp.status(), 503);
            assert!(Instant::now() < deadline, "{name} did not recover");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (status, body) = pair.a.readyz(&pair.http).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"]["state"]["status"], "ok", "{body}");
    // And the memory works again across replicas.
    let request = pair.signed(&pair.cfs[0]);
    let resp = pair.send(&pair.a, &request, &unique("x")).await.expect("A");
    assert_eq!(resp.status(), 200);
    let resp = pair.send(&pair.b, &request, &unique("y")).await.expect("B");
    assert_eq!(resp.status(), 401);
}

/// A replica pair whose anagrafe allows `total` calls a day in all, on one Redis.
async fn pair_with_daily_total(total: u64) -> Option<Pair> {
    let redis = required_env("PDNDGW_TEST_REDIS_URL")?;
    Pair::start(
        &redis_state(&redis),
        &format!("daily_calls_total = {total}"),
    )
    .await
}

/// One call to `replica`: its status and rate-limit headers (limit, remaining, reset).
async fn counted_call(
    pair: &Pair,
    replica: &Replica,
) -> (u16, [Option<u64>; 3], reqwest::Response) {
    let resp = pair
        .send(replica, &pair.signed(&pair.cfs[0]), &unique("quota"))
        .await
        .expect("the replica answers");
    let number = |name: &str| header(&resp, name).and_then(|v| v.parse().ok());
    let headers = [
        number("x-ratelimit-limit"),
        number("x-ratelimit-remaining"),
        number("x-ratelimit-reset"),
    ];
    (resp.status().as_u16(), headers, resp)
}

#[tokio::test]
async fn the_daily_total_is_counted_once_across_two_replicas() {
    let Some(pair) = pair_with_daily_total(3).await else {
        return;
    };
    for (replica, remaining) in [(&pair.a, 2), (&pair.b, 1), (&pair.a, 0)] {
        let (status, [limit, left, reset], _) = counted_call(&pair, replica).await;
        assert_eq!(status, 200, "{}", replica.log_text());
        assert_eq!((limit, left), (Some(3), Some(remaining)));
        assert!(
            reset.is_some_and(|r| (1..=90_000).contains(&r)),
            "{reset:?}"
        );
    }
    // The fourth call of the day, to either replica, is over the e-service's total.
    for replica in [&pair.b, &pair.a] {
        let (status, [limit, left, reset], resp) = counted_call(&pair, replica).await;
        assert_eq!(status, 429);
        assert_eq!((limit, left), (Some(3), Some(0)));
        // Inside response signing: the refusal is signed like any answer.
        assert!(
            header(&resp, "agid-jwt-signature").is_some(),
            "429 unsigned"
        );
        let (_, content_type, retry_after, body) = problem(resp).await;
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            body["type"], "urn:pdnd-gateway:problem:quota-exceeded",
            "{body}"
        );
        let retry_after: Option<u64> = retry_after.and_then(|v| v.parse().ok());
        assert_eq!(
            retry_after, reset,
            "Retry-After is the seconds to Rome's midnight"
        );
    }
}

#[tokio::test]
async fn a_restarted_gateway_continues_the_days_count() {
    let Some(mut pair) = pair_with_daily_total(3).await else {
        return;
    };
    for remaining in [2, 1] {
        let (status, [_, left, _], _) = counted_call(&pair, &pair.a).await;
        assert_eq!(
            (status, left),
            (200, Some(remaining)),
            "{}",
            pair.a.log_text()
        );
    }
    // Both processes gone; a new one on the same Redis continues where they were.
    pair.a.kill();
    pair.b.kill();
    let restarted = pair.another("restarted").await;
    let (status, [_, left, _], _) = counted_call(&pair, &restarted).await;
    assert_eq!((status, left), (200, Some(0)), "{}", restarted.log_text());
    let (status, _, _) = counted_call(&pair, &restarted).await;
    assert_eq!(status, 429, "the count restarted with the process");
}
