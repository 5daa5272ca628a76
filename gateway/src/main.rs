//! The `pdnd-gateway` command: parses the command line and hands over to the library.

use clap::{Parser, Subcommand, ValueEnum};
use gateway::config::Config;
use gateway::{cli, dev, server, telemetry};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc instead of glibc's `malloc`. Why: a request allocates about a hundred times, and the
/// audit writer's thread frees what the workers allocated, which glibc pays for with its arenas'
/// locks. On the unsigned audited path (docs/performance.md, eighth round) it cut 9% of the
/// instructions and about 10% of the CPU of an answer, for a few MB more resident memory that
/// does not grow (mimalloc, tried before, grew).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "pdnd-gateway",
    version,
    about = "PDND interoperability adapter and e-service gateway for a comune"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format of `dev` and `serve`: `text` for a person, `json` for a collector
    /// (default: text on a terminal, JSON anywhere else).
    #[arg(long, value_enum, global = true)]
    log_format: Option<telemetry::LogFormat>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EserviceArg {
    Anagrafe,
    Tributi,
}

impl From<EserviceArg> for eservices::Eservice {
    fn from(e: EserviceArg) -> Self {
        match e {
            EserviceArg::Anagrafe => eservices::Eservice::Anagrafe,
            EserviceArg::Tributi => eservices::Eservice::Tributi,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally: a PDND authority, the gateway and a seeded SQLite database.
    Dev {
        /// Where keys, the sample client and the database live (created on first run).
        #[arg(long, default_value = ".pdnd-gateway")]
        data_dir: PathBuf,
        /// A TOML file layered over the embedded development configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the gateway with a configuration file (PDND collaudo or production).
    Serve {
        #[arg(long, env = "PDNDGW_CONFIG")]
        config: PathBuf,
        /// Do not create or upgrade the schemas (as `database.migrate_on_start = false`): refuse
        /// to start on a schema that is missing or behind; `migrate` brings it up to date.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Create or upgrade the database schemas (e-service store and audit trail) and exit:
    /// the step before a rollout whose replicas run `serve --no-migrate`.
    Migrate {
        #[arg(long, env = "PDNDGW_CONFIG")]
        config: PathBuf,
    },
    /// Obtain a PDND voucher as the comune's client and print it.
    Voucher {
        /// A configuration with a [client] section; without it, the `dev` data directory is used.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".pdnd-gateway")]
        data_dir: PathBuf,
        /// The purpose to ask for (default: the configured one, in dev the full access to --eservice).
        #[arg(long)]
        purpose_id: Option<String>,
        /// In dev, which e-service's sample purpose to use when no --purpose-id is given.
        #[arg(long, value_enum, default_value = "anagrafe")]
        eservice: EserviceArg,
        /// AUDIT_REST_02: the SHA-256 (hex) of the Agid-JWT-TrackingEvidence the call will carry.
        #[arg(long)]
        digest: Option<String>,
        /// Print the decoded header and claims instead of the voucher.
        #[arg(long)]
        decode: bool,
        /// Ask for a DPoP-bound voucher with this P-256 key (PEM; created when missing); sign
        /// each request's proof with `dpop-proof --key` and the same file.
        #[arg(long)]
        dpop_key: Option<PathBuf>,
    },
    /// Print a DPoP proof (RFC 9449) for one request, to send as the `DPoP` header with
    /// `Authorization: DPoP <voucher>`.
    DpopProof {
        /// The P-256 key the voucher is bound to (`voucher --dpop-key`).
        #[arg(long)]
        key: PathBuf,
        /// The URL the request goes to (the e-service's public URL plus the path).
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "POST")]
        method: String,
        /// The voucher sent with the request (its hash becomes `ath`).
        #[arg(long)]
        voucher: Option<String>,
    },
    /// Query the audit trail: who called what, about whom, when.
    Audit {
        #[command(subcommand)]
        action: Option<cli::tracing::AuditCommand>,
        /// A configuration file; without it, the `dev` data directory's audit trail.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".pdnd-gateway", global = true)]
        data_dir: PathBuf,
        /// From this time (RFC 3339 or YYYY-MM-DD, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Until this time (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Only this consumer (PDND consumerId).
        #[arg(long)]
        consumer: Option<String>,
        /// Only this purpose.
        #[arg(long)]
        purpose: Option<String>,
        /// Only requests about this codice fiscale or partita IVA (hashed, never stored).
        #[arg(long)]
        codice_fiscale: Option<String>,
        /// Only calls through /fruizioni by this internal caller (`[[internal.api_key]] name`).
        #[arg(long)]
        caller: Option<String>,
        /// Only calls through this fruizione.
        #[arg(long)]
        fruizione: Option<String>,
        /// Which side of the trail: e-services called by others, fruizioni called by the
        /// comune, or both merged by time.
        #[arg(long, value_enum, default_value = "all")]
        side: cli::audit::Side,
        /// At most this many records.
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long, value_enum, default_value = "table")]
        format: cli::audit::AuditOutputFormat,
    },
    /// PDND tracing: the daily file of calls, and its deposit on PDND (docs/tracing.md).
    Tracing {
        #[command(subcommand)]
        command: cli::tracing::TracingCommand,
        /// A configuration file; without it, the `dev` data directory's.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".pdnd-gateway", global = true)]
        data_dir: PathBuf,
    },
    /// Make the API key of a new internal caller of the fruizioni: prints the key (hand it to
    /// the caller; it is not kept) and the `[[internal.api_key]]` block with its SHA-256.
    ApiKey {
        /// The caller's name (lowercase letters, digits, `-`), e.g. ufficio-tributi.
        #[arg(long)]
        name: String,
        /// A fruizione it may call; repeat for several.
        #[arg(long = "fruizione", required = true)]
        fruizioni: Vec<String>,
    },
    /// Create (or complete) a development PKI for the ModI patterns: dev CA, RSA and EC signing
    /// keys with their certificate chains. Never for production keys.
    Keys {
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Common name of the signing certificates (the CA is "<name> dev CA").
        #[arg(long, default_value = "localhost")]
        common_name: String,
    },
    /// Check a saved response (`curl -si` output) of a ModI-signed e-service: Digest against the
    /// body, Agid-JWT-Signature chained to --ca and addressed to --audience.
    VerifyResponse {
        /// PEM bundle of the CA(s) the producer's certificate must chain to.
        #[arg(long)]
        ca: PathBuf,
        /// Your PDND clientId: the aud the producer signed the response for.
        #[arg(long)]
        audience: String,
        /// The saved response: status line, headers, blank line, body.
        #[arg(long)]
        response: PathBuf,
        /// Judge the signature's time window at this instant (unix seconds or RFC 3339);
        /// default: the response's Date header, else now.
        #[arg(long)]
        at: Option<String>,
        /// Tolerated clock skew in seconds.
        #[arg(long, default_value_t = 60)]
        leeway_secs: i64,
    },
    /// Print an e-service's OpenAPI document (the contract uploaded to PDND).
    Openapi {
        #[arg(long, value_enum)]
        eservice: EserviceArg,
        #[arg(long, value_enum, default_value = "yaml")]
        format: gateway::openapi::DocumentFormat,
        /// The configuration whose public URLs and contact the document names; without it, the
        /// embedded development configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write deterministic synthetic data (residents, families, IMU, TARI, payments) into a store.
    /// Refuses a database holding data it did not write, unless --replace is given.
    Seed {
        /// `sqlite://file.db?mode=rwc` or `postgres://...`. Only from this flag, never from
        /// the environment, so a shell set up for the real register cannot aim the seed at it.
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 1000)]
        residents: u32,
        /// Overwrite a database that holds data the seed did not write (its catalogue tables
        /// are emptied first).
        #[arg(long)]
        replace: bool,
    },
}

fn main() -> ExitCode {
    // Both ring and aws-lc-rs are in the tree; rustls needs to be told which one to use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Dev { data_dir, config } => {
            let format = telemetry::LogFormat::for_stderr(log_format);
            telemetry::init("info", format == telemetry::LogFormat::Json);
            let config = Config::load_dev(config.as_deref())?;
            let signals = server::Signals::install()?;
            let env = dev::start(config, &data_dir).await?;
            dev::banner::print(&env, &data_dir);
            env.running.wait(signals).await?;
        }
        Command::Serve { config, no_migrate } => {
            let format = telemetry::LogFormat::for_stderr(log_format);
            telemetry::init("info", format == telemetry::LogFormat::Json);
            let mut config = Config::load_file(&config)?;
            config.validate_for_serve()?;
            config.database.migrate_on_start &= !no_migrate;
            if !config.database.migrate_on_start {
                gateway::migrate::verify(&config).await?;
            }
            let store = eservices::store::SqlStore::connect(&config.database.url).await?;
            if config.database.migrate_on_start {
                store.migrate().await?;
            }
            let signals = server::Signals::install()?;
            let running = server::start(&config, std::sync::Arc::new(store), None).await?;
            cli::tracing::start_in_serve(&config).await?;
            tracing::info!(public = %running.public, internal = %running.internal, environment = config.pdnd.environment, "pdnd-gateway serving");
            running.wait(signals).await?;
        }
        Command::Migrate { config } => {
            telemetry::init("info", false);
            let config = Config::load_file(&config)?;
            config.validate()?;
            println!("{}", gateway::migrate::run(&config).await?);
        }
        Command::Voucher {
            config,
            data_dir,
            purpose_id,
            eservice,
            digest,
            decode,
            dpop_key,
        } => {
            telemetry::init("warn", false);
            // In dev the sample purposes are known; with a real configuration the configured
            // default purpose applies unless --purpose-id names another.
            let dev_purpose = config
                .is_none()
                .then(|| dev::sample::default_purpose(eservice.into()).purpose_id);
            let config = load_or_dev(config.as_deref(), &data_dir)?;
            let purpose = purpose_id.as_deref().or(dev_purpose);
            let mut plan = cli::voucher::plan(&config, purpose, digest.as_deref())?;
            if let Some(path) = &dpop_key {
                plan.dpop = Some(cli::dpop::load_or_create_key(path)?);
            }
            let obtained = cli::voucher::obtain(&plan).await?;
            if decode {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&cli::voucher::decoded(&obtained))?
                );
            } else {
                println!("{}", obtained.response.access_token);
            }
        }
        Command::DpopProof {
            key,
            url,
            method,
            voucher,
        } => {
            let now = chrono::Utc::now().timestamp();
            println!(
                "{}",
                cli::dpop::proof(&key, &method, &url, voucher.as_deref(), now)?
            );
        }
        Command::Audit {
            action: Some(action),
            config,
            data_dir,
            ..
        } => {
            telemetry::init("warn", false);
            let config = load_or_dev(config.as_deref(), &data_dir)?;
            cli::tracing::run_audit(&action, &config, &mut std::io::stdout().lock()).await?;
        }
        Command::Tracing {
            command,
            config,
            data_dir,
        } => {
            telemetry::init("info", false);
            let config = load_or_dev(config.as_deref(), &data_dir)?;
            cli::tracing::run(&command, &config, &mut std::io::stdout().lock()).await?;
        }
        Command::Audit {
            action: None,
            config,
            data_dir,
            from,
            to,
            consumer,
            purpose,
            codice_fiscale,
            caller,
            fruizione,
            side,
            limit,
            format,
        } => {
            telemetry::init("warn", false);
            let config = load_or_dev(config.as_deref(), &data_dir)?;
            let store = gateway::provider::audit::AuditStore::connect(&config.audit.url).await?;
            let hasher =
                gateway::provider::audit::SubjectHasher::new(config.audit.hmac_secret.as_bytes())?;
            let filters = cli::audit::Filters {
                from,
                to,
                consumer_id: consumer,
                purpose_id: purpose,
                codice_fiscale,
                caller,
                fruizione,
                side,
                limit,
            };
            let records = cli::audit::entries(&store, &hasher, &filters).await?;
            cli::audit::write(&mut std::io::stdout().lock(), &records, format)?;
        }
        Command::ApiKey { name, fruizioni } => {
            let (key, entry) = cli::api_key::generate(&name, &fruizioni);
            eprintln!("API key for `{name}` (give it to the caller; it is not stored anywhere):");
            println!("{key}");
            eprintln!("\nAdd to the configuration:\n");
            eprintln!("{}", cli::api_key::toml_block(&entry));
        }
        Command::Keys { dir, common_name } => {
            let report = cli::keys::generate(&dir, &common_name)?;
            println!("{report}");
        }
        Command::VerifyResponse {
            ca,
            audience,
            response,
            at,
            leeway_secs,
        } => {
            let args = cli::verify_response::VerifyArgs {
                ca,
                audience,
                response,
                at,
                leeway_secs,
            };
            let now = chrono::Utc::now().timestamp();
            let verified = cli::verify_response::verify(&args, now)?;
            println!("{verified}");
        }
        Command::Openapi {
            eservice,
            format,
            config,
        } => {
            let config = match config {
                Some(path) => Config::load_file(&path)?,
                None => Config::load_dev(None)?,
            };
            // Only what the document shows is checked: the secrets of a real configuration
            // usually come from the environment of the running gateway, not of this command.
            config.validate_published()?;
            let doc = gateway::openapi::document(eservice.into(), &config);
            print!("{}", gateway::openapi::render(&doc, format)?);
        }
        Command::Seed {
            database_url,
            residents,
            replace,
        } => {
            telemetry::init("info", false);
            let started = std::time::Instant::now();
            let summary = cli::seed::run(&database_url, residents, replace)
                .await?
                .summary;
            println!(
                "seeded {} residents into {} in {:.1} s",
                summary.residents,
                gateway::config::redact_url(&database_url),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// A configuration file (validated), or the `dev` one completed from its data directory.
fn load_or_dev(
    config: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Config> {
    match config {
        Some(path) => {
            let c = Config::load_file(path)?;
            c.validate()?;
            // A real configuration talks to the real PDND: never in clear text.
            c.check_transport(gateway::config::serve_policy::HttpAllowance::None)?;
            Ok(c)
        }
        None => {
            let mut c = Config::load_dev(None)?;
            let data = dev::data_dir::DataDir::open_existing(data_dir)?;
            dev::complete_config(&mut c, &data)?;
            Ok(c)
        }
    }
}
