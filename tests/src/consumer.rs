//! Fruitore side: the internal listener's fruizioni and a second gateway acting as consumer.

use crate::Harness;
use gateway::config::Config;
use gateway::dev;
use serde_json::Value;
use std::path::PathBuf;

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
        let tmp = crate::temp_dir("consumer");
        let dir = tmp.path().to_path_buf();
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
            _tmp: tmp,
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
    /// Its data directory (removed when it drops).
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
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
