//! `pdnd-gateway dev`: the whole product in one process, nothing else to install.
//!
//! It prepares the data directory (keys, sample client, seeded SQLite), starts a local PDND
//! authorisation server that knows the sample client and purposes, and starts the gateway
//! configured to trust only that authority. The start-up message says what to type next.

pub mod authority_http;
pub mod banner;
pub mod data_dir;
pub mod sample;
pub mod tracing_service;

use crate::config::{ApiKeyConfig, ClientConfig, Config, FruizioneConfig};
use crate::pdnd::authority::{
    Authority, AuthorityConfig, RegisteredApiClient, RegisteredClient, RegisteredPurpose,
};
use crate::provider::purpose::{Purpose, PurposeFile, PurposeState};
use data_dir::DataDir;

/// The `aud` of the dev authority's M2M (API Interop) vouchers, e.g. `dev.interop.local/m2m`
/// (PDND's older M2M audience was `interop.pagopa.it/m2m`).
pub fn m2m_audience(config: &Config) -> String {
    format!("{}/m2m", config.dev.authority_issuer)
}

/// The authority for a data directory and configuration: it signs with the directory's key,
/// knows the sample client, registered for every sample purpose, and the comune's API Interop
/// client, whose voucher its `/keys/{kid}` requires.
pub fn authority(config: &Config, data: &DataDir) -> Authority {
    let producer_id = config.comune.producer_id.clone().unwrap_or_default();
    let purposes = sample::PURPOSES
        .iter()
        .map(|p| {
            let eservice = config.eservices.get(p.eservice);
            RegisteredPurpose {
                purpose_id: p.purpose_id.to_owned(),
                eservice_id: eservice.eservice_id.clone().unwrap_or_default(),
                descriptor_id: eservice.descriptor_id.clone().unwrap_or_default(),
                producer_id: producer_id.clone(),
                audience: eservice.audiences.clone(),
                active: true,
            }
        })
        .chain(std::iter::once(tracing_service::registered_purpose()))
        .collect();
    let client = RegisteredClient {
        client_id: data.client.client_id.clone(),
        consumer_id: sample::CONSUMER_ID.to_owned(),
        public_key: data.client_key.public().clone(),
        purposes,
    };
    Authority::new(
        data.authority_key.clone(),
        AuthorityConfig {
            issuer: config.dev.authority_issuer.clone(),
            assertion_audiences: vec![config.pdnd.client_assertion_audience.clone()],
            voucher_lifetime_secs: config.dev.voucher_lifetime_secs,
        },
        vec![client],
    )
    .with_api_clients(
        m2m_audience(config),
        vec![RegisteredApiClient {
            client_id: data.api_client.client_id.clone(),
            organization_id: producer_id.clone(),
            public_key: data.api_client_key.public().clone(),
        }],
    )
}

/// Fills in what `dev` derives from the data directory: the database, the comune's own
/// client (the sample client, so the voucher CLI works with no arguments), its API Interop
/// client (for the key lookups), and the authority's issuer as the accepted voucher issuer.
pub fn complete_config(config: &mut Config, data: &DataDir) -> Result<(), DevError> {
    if config.database.url.is_empty() {
        config.database.url = data.database_url();
    }
    if config.audit.url.is_empty() {
        config.audit.url = data.audit_url();
    }
    if config.audit.hmac_secret.is_empty() {
        config.audit.hmac_secret = data.audit_secret()?;
    }
    if config.tracing.is_none() {
        config.tracing = Some(tracing_service::dev_section(config));
    }
    if config.purposes.file.as_os_str().is_empty() {
        config.purposes.file = data.purposes_file(&purposes_toml(config))?;
    }
    if !config.fruizioni.iter().any(|f| f.name == SAMPLE_FRUIZIONE) {
        config.fruizioni.push(sample_fruizione(config));
    }
    if config.internal.api_keys.is_empty() {
        // One caller, `dev`, allowed every fruizione; its key is in the data directory.
        config.internal.api_keys = vec![ApiKeyConfig::for_key(
            DEV_CALLER,
            &data.internal_api_key()?,
            config.fruizioni.iter().map(|f| f.name.clone()).collect(),
        )];
    }
    complete_modi(config, data)?;
    if config.pdnd.api_client_id.is_none() && config.pdnd.api_key_file.is_none() {
        config.pdnd.api_client_id = Some(data.api_client.client_id.clone());
        config.pdnd.api_key_file = Some(data.root.join(&data.api_client.key_file));
    }
    if config.client.is_none() {
        config.client = Some(ClientConfig {
            client_id: data.client.client_id.clone(),
            key_file: data.root.join(&data.client.key_file),
            default_purpose_id: Some(sample::ANAGRAFE_FULL.purpose_id.to_owned()),
            assertion_lifetime_secs: 300,
        });
    }
    Ok(())
}

/// The name of the sample fruizione.
pub const SAMPLE_FRUIZIONE: &str = "comune-anagrafe";

/// The internal caller `dev` configures when the configuration names none: allowed every
/// fruizione, its key generated in the data directory (`internal-api-key`).
pub const DEV_CALLER: &str = "dev";

/// The sample fruizione: the comune calling its own anagrafe e-service through the proxy, as
/// the sample client with the full anagrafe purpose, so `dev` shows the whole round trip
/// (internal caller -> proxy -> voucher -> provider -> answer).
pub fn sample_fruizione(config: &Config) -> FruizioneConfig {
    FruizioneConfig {
        name: SAMPLE_FRUIZIONE.to_owned(),
        remote_base_url: format!("http://{}/anagrafe/v1", config.server.public_listen),
        purpose_id: sample::ANAGRAFE_FULL.purpose_id.to_owned(),
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
        max_concurrency: 256,
        ca_file: None,
        max_response_bytes: crate::config::DEFAULT_MAX_RESPONSE_BYTES,
        dpop: false,
    }
}

/// Points the `[modi]` files the configuration leaves unset at the data directory's dev PKI
/// (generated on first run): the RSA or EC identity matching the algorithm, and the dev CA as
/// the trust store, so a caller signing with the same dev PKI passes INTEGRITY_REST_01.
fn complete_modi(config: &mut Config, data: &DataDir) -> Result<(), DevError> {
    let modi = &mut config.modi;
    if modi.signing_key_file.is_some()
        && modi.certificate_chain_file.is_some()
        && modi.trust_store_file.is_some()
    {
        return Ok(());
    }
    let pki = data.modi_pki()?;
    let (key, chain) = match modi.algorithm {
        crate::config::SignatureAlgorithm::ES256 => (pki.ec_key, pki.ec_chain),
        _ => (pki.rsa_key, pki.rsa_chain),
    };
    if modi.signing_key_file.is_none() && modi.certificate_chain_file.is_none() {
        modi.signing_key_file = Some(key);
        modi.certificate_chain_file = Some(chain);
    }
    if modi.trust_store_file.is_none() {
        modi.trust_store_file = Some(pki.ca_cert);
    }
    Ok(())
}

/// The purposes file of the sample purposes, bound to the configured e-service identifiers.
pub fn purposes_toml(config: &Config) -> String {
    let purposes = sample::PURPOSES
        .iter()
        .map(|p| {
            let eservice = config.eservices.get(p.eservice);
            let operations = eservices::Operation::all()
                .iter()
                .filter(|o| o.eservice() == p.eservice)
                .filter(|o| p.operations.is_empty() || p.operations.contains(&o.id()))
                .map(|o| o.id().to_owned())
                .collect();
            Purpose {
                purpose_id: p.purpose_id.to_owned(),
                consumer_name: format!("Sample consumer ({})", p.description),
                consumer_id: Some(sample::CONSUMER_ID.to_owned()),
                eservice: p.eservice.id().to_owned(),
                operations,
                // Counted like any quota (docs/quotas.md), but high enough for load tests.
                daily_quota: Some(1_000_000),
                state: PurposeState::Active,
                eservice_id: eservice.eservice_id.clone(),
                descriptor_id: eservice.descriptor_id.clone(),
                producer_id: config.comune.producer_id.clone(),
            }
        })
        .collect();
    let file = PurposeFile { purposes };
    let body = toml::to_string_pretty(&file).unwrap_or_default();
    format!(
        "# Purposes the comune approved on PDND. Edit and save (or send SIGHUP): the gateway reloads.\n\
         # state = \"suspended\" refuses a purpose with 403 at once.\n\n{body}"
    )
}

/// What `dev` started, for the start-up message and for tests.
pub struct DevEnvironment {
    pub running: crate::server::Running,
    pub config: Config,
    pub data: DataDir,
    pub residents: u32,
    pub samples: Vec<eservices::store::SampleSubject>,
    /// Token requests seen by the local authority.
    pub token_stats: std::sync::Arc<authority_http::TokenStats>,
    /// The local tracing e-service (its clock and counters, for tests).
    pub tracing_service: std::sync::Arc<tracing_service::TracingService>,
}

/// Failures starting the development environment.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] eservices::store::StoreError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
}

/// Prepares the data directory and database, then starts authority, public and internal
/// listeners. The gateway's PDND endpoints are pointed at the authority actually bound, so
/// port 0 (tests) works like the default ports.
pub async fn start(mut config: Config, root: &std::path::Path) -> Result<DevEnvironment, DevError> {
    let data = DataDir::prepare(root)?;
    complete_config(&mut config, &data)?;
    // The seed empties the catalogue first: never on a database holding data it did not write
    // (PDNDGW_DATABASE__URL aimed at a real register), even one without persons.
    let found = eservices::store::seed_guard::inspect(&config.database.url).await?;
    let store = eservices::store::SqlStore::connect(&config.database.url).await?;
    store.migrate().await?;
    let foreign = matches!(
        found,
        eservices::store::seed_guard::Ownership::Foreign { .. }
    );
    if foreign {
        tracing::warn!("the database holds data the seed did not write: it is served as it is");
    }
    let (residents, samples) = if !foreign && store.is_empty().await? {
        tracing::info!(
            residents = config.dev.residents,
            "seeding the development database"
        );
        let summary = eservices::store::seed(&store, config.dev.residents).await?;
        save_samples(&data.samples_path(), &summary.samples);
        (summary.residents, summary.samples)
    } else {
        (0, load_samples(&data.samples_path()))
    };
    let token_stats = std::sync::Arc::new(authority_http::TokenStats::default());
    let authority = authority(&config, &data);
    let tracing_service = std::sync::Arc::new(tracing_service::for_dev(&config, &authority));
    let authority = authority_http::bind(
        config.dev.authority_listen,
        authority,
        actix_web::web::Data::from(token_stats.clone()),
        actix_web::web::Data::from(tracing_service.clone()),
    )?;
    let base = format!("http://{}", authority.addr);
    if let Some(t) = config.tracing.as_mut() {
        t.service_url = t.service_url.replacen(
            &format!("://{}", config.dev.authority_listen),
            &format!("://{}", authority.addr),
            1,
        );
    }
    config.pdnd.token_endpoint = format!("{base}/token.oauth2");
    config.pdnd.jwks_url = format!("{base}/.well-known/jwks.json");
    config.pdnd.keys_url = Some(format!("{base}/keys"));
    config.pdnd.voucher_issuers = vec![config.dev.authority_issuer.clone()];
    config.validate()?;
    // Loopback http to the local authority and sample fruizione, never clear text beyond.
    config.check_transport(crate::config::serve_policy::HttpAllowance::Local)?;
    let store: std::sync::Arc<dyn eservices::store::Store> = std::sync::Arc::new(store);
    let running = crate::server::start(&config, store, Some(authority)).await?;
    Ok(DevEnvironment {
        running,
        config,
        data,
        residents,
        samples,
        token_stats,
        tracing_service,
    })
}

/// Remembers the seed's sample subjects for the start-up message of later runs (best effort:
/// without the file the message just shows none).
fn save_samples(path: &std::path::Path, samples: &[eservices::store::SampleSubject]) {
    let rows: Vec<[&str; 4]> = samples
        .iter()
        .map(|s| {
            [
                s.codice_fiscale.as_str(),
                s.cognome.as_str(),
                s.nome.as_str(),
                s.description.as_str(),
            ]
        })
        .collect();
    if let Ok(text) = serde_json::to_string_pretty(&rows) {
        let _ = std::fs::write(path, text);
    }
}

fn load_samples(path: &std::path::Path) -> Vec<eservices::store::SampleSubject> {
    let rows: Vec<[String; 4]> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    rows.into_iter()
        .map(
            |[codice_fiscale, cognome, nome, description]| eservices::store::SampleSubject {
                codice_fiscale,
                cognome,
                nome,
                description,
            },
        )
        .collect()
}
