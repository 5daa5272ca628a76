//! The purpose registry and the purpose stage: what each approved purpose may call.
//!
//! A PDND voucher proves who calls and for which purpose; the comune still decides what that
//! purpose may see. Each purpose the comune approved on PDND is a [`Purpose`] record: its
//! consumer, its e-service, the operations it may call, its daily quota, and optionally the
//! eserviceId/descriptorId/producerId its vouchers must carry. Records come from a TOML file
//! named in config; the registry is swapped atomically on reload (SIGHUP or a changed file),
//! so a suspension takes effect without a restart.
//!
//! A valid voucher whose purpose is unknown, suspended, for another e-service or not granted
//! the operation gets 403: the caller is authenticated, just not authorised. The detail names
//! the operation and nothing about other purposes or consumers.

use crate::pdnd::voucher::Voucher;
use crate::problem::Problem;
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use eservices::route::Resolved;
use eservices::{Eservice, Operation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Whether a purpose may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PurposeState {
    #[default]
    Active,
    Suspended,
}

/// One approved purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub purpose_id: String,
    /// The consumer administration, as a person reads it.
    pub consumer_name: String,
    /// The consumer's PDND tenant id; vouchers must carry it as consumerId when set.
    #[serde(default)]
    pub consumer_id: Option<String>,
    /// `anagrafe` or `tributi`.
    pub eservice: String,
    /// Operation ids it may call (`residenza`, `verifica-residenza`, `imu-posizione`, ...).
    pub operations: Vec<String>,
    /// Requests per day (enforced by the quota stage).
    #[serde(default)]
    pub daily_quota: Option<u64>,
    #[serde(default)]
    pub state: PurposeState,
    /// When set, the voucher's eserviceId must equal it.
    #[serde(default)]
    pub eservice_id: Option<String>,
    /// When set, the voucher's descriptorId must equal it.
    #[serde(default)]
    pub descriptor_id: Option<String>,
    /// When set, the voucher's producerId must equal it.
    #[serde(default)]
    pub producer_id: Option<String>,
}

/// The file format: `[[purpose]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeFile {
    #[serde(default, rename = "purpose")]
    pub purposes: Vec<Purpose>,
}

/// Registry load failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("purposes file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Why a purpose may not make this call (logged precisely; the caller gets the generic 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("purpose {0} is not registered")]
    Unknown(String),
    #[error("purpose {0} is suspended")]
    Suspended(String),
    #[error("purpose {purpose} is for e-service {registered}, not {called}")]
    OtherEservice {
        purpose: String,
        registered: String,
        called: String,
    },
    #[error("purpose {purpose} is not granted operation {operation}")]
    NotGranted { purpose: String, operation: String },
    #[error("voucher {claim} is {found:?}, the purpose expects {expected}")]
    ClaimMismatch {
        claim: &'static str,
        expected: String,
        found: Option<String>,
    },
}

/// The purposes in force, swapped whole on reload.
#[derive(Default)]
pub struct PurposeRegistry {
    /// Each record behind an `Arc`: the stage hands the caller's record to the later stages
    /// without copying its strings.
    by_id: RwLock<Arc<HashMap<String, Arc<Purpose>>>>,
    /// The file's records and the database's, kept apart so that reloading one source keeps
    /// the other; merged into `by_id` (the database wins for the same purposeId, since it is
    /// the source operators change live).
    from_file: RwLock<Vec<Purpose>>,
    from_db: RwLock<Vec<Purpose>>,
    source: Option<PathBuf>,
    loaded_mtime: RwLock<Option<SystemTime>>,
}

impl PurposeRegistry {
    /// A registry from records (tests, or a database source).
    pub fn from_purposes(purposes: Vec<Purpose>) -> Self {
        let registry = PurposeRegistry::default();
        registry.replace(purposes);
        registry
    }

    /// A registry loaded from a file, remembered for reloads.
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let mut registry = PurposeRegistry {
            source: Some(path.to_owned()),
            ..Default::default()
        };
        let purposes = load_file(path)?;
        registry.replace(purposes);
        *registry
            .loaded_mtime
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()) = mtime(path);
        Ok(registry)
    }

    fn replace(&self, purposes: Vec<Purpose>) {
        *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = purposes;
        self.merge();
    }

    /// Replaces the records that came from the database (see [`PurposeDb`]). Invalid records
    /// are refused as a whole, like an invalid file.
    pub fn replace_db(&self, purposes: Vec<Purpose>) -> Result<(), String> {
        validate_purposes(&purposes)?;
        let mut current = self.from_db.write().unwrap_or_else(|p| p.into_inner());
        if *current != purposes {
            *current = purposes;
            drop(current);
            self.merge();
        }
        Ok(())
    }

    fn merge(&self) {
        let file = self.from_file.read().unwrap_or_else(|p| p.into_inner());
        let db = self.from_db.read().unwrap_or_else(|p| p.into_inner());
        let map = file
            .iter()
            .chain(db.iter())
            .map(|p| (p.purpose_id.to_ascii_lowercase(), Arc::new(p.clone())))
            .collect();
        *self.by_id.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
    }

    /// Re-reads the source file. A file that fails to parse leaves the registry as it was
    /// (a typo must not open or close every purpose at once).
    pub fn reload(&self) -> Result<usize, RegistryError> {
        let Some(path) = &self.source else {
            return Ok(self.len());
        };
        let purposes = load_file(path)?;
        let n = purposes.len();
        self.replace(purposes);
        *self.loaded_mtime.write().unwrap_or_else(|p| p.into_inner()) = mtime(path);
        Ok(n)
    }

    /// Reloads when the file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Result<bool, RegistryError> {
        let Some(path) = &self.source else {
            return Ok(false);
        };
        let current = mtime(path);
        let loaded = *self.loaded_mtime.read().unwrap_or_else(|p| p.into_inner());
        if current != loaded {
            self.reload()?;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<Purpose>>> {
        self.by_id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Decides whether the voucher's purpose may call the operation.
    pub fn authorise(
        &self,
        voucher: &Voucher,
        eservice: Eservice,
        operation: Operation,
    ) -> Result<Arc<Purpose>, Refusal> {
        let snapshot = self.snapshot();
        let id = voucher.purpose_id();
        let purpose = snapshot
            .get(super::ascii_lower(id).as_ref())
            .ok_or_else(|| Refusal::Unknown(id.to_owned()))?;
        if purpose.state == PurposeState::Suspended {
            return Err(Refusal::Suspended(id.to_owned()));
        }
        if purpose.eservice != eservice.id() {
            return Err(Refusal::OtherEservice {
                purpose: id.to_owned(),
                registered: purpose.eservice.clone(),
                called: eservice.id().to_owned(),
            });
        }
        if !purpose.operations.iter().any(|o| o == operation.id()) {
            return Err(Refusal::NotGranted {
                purpose: id.to_owned(),
                operation: operation.id().to_owned(),
            });
        }
        let checks: [(&'static str, &Option<String>, Option<&str>); 4] = [
            ("eserviceId", &purpose.eservice_id, voucher.eservice_id()),
            (
                "descriptorId",
                &purpose.descriptor_id,
                voucher.descriptor_id(),
            ),
            ("producerId", &purpose.producer_id, voucher.producer_id()),
            ("consumerId", &purpose.consumer_id, voucher.consumer_id()),
        ];
        for (claim, expected, found) in checks {
            if let Some(expected) = expected {
                if found != Some(expected.as_str()) {
                    return Err(Refusal::ClaimMismatch {
                        claim,
                        expected: expected.clone(),
                        found: found.map(str::to_owned),
                    });
                }
            }
        }
        Ok(Arc::clone(purpose))
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load_file(path: &Path) -> Result<Vec<Purpose>, RegistryError> {
    let err = |reason: String| RegistryError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: PurposeFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    validate_purposes(&file.purposes).map_err(err)?;
    Ok(file.purposes)
}

/// Checks what the types cannot: UUIDs, known e-services, operations of that e-service.
fn validate_purposes(purposes: &[Purpose]) -> Result<(), String> {
    for p in purposes {
        if uuid::Uuid::parse_str(&p.purpose_id).is_err() {
            return Err(format!("purpose_id `{}` is not a UUID", p.purpose_id));
        }
        if let Some(q) = p
            .daily_quota
            .filter(|q| *q > crate::config::eservices::MAX_DAILY_CALLS)
        {
            return Err(format!(
                "purpose {}: daily_quota {q} is above {}",
                p.purpose_id,
                crate::config::eservices::MAX_DAILY_CALLS
            ));
        }
        let Some(eservice) = Eservice::all()
            .iter()
            .copied()
            .find(|e| e.id() == p.eservice)
        else {
            return Err(format!(
                "purpose {}: unknown e-service `{}`",
                p.purpose_id, p.eservice
            ));
        };
        for op in &p.operations {
            if !Operation::all()
                .iter()
                .any(|o| o.id() == op && o.eservice() == eservice)
            {
                return Err(format!(
                    "purpose {}: `{op}` is not an operation of {}",
                    p.purpose_id, p.eservice
                ));
            }
        }
    }
    Ok(())
}

/// Purposes kept in the gateway's database (table `purposes`, beside the audit trail), for
/// comuni that manage approvals in an application rather than a file. Same fields as the
/// file; `operations` is a comma-separated list.
#[derive(Clone)]
pub struct PurposeDb {
    pool: sqlx::AnyPool,
}

const PURPOSES_TABLE: &str = "CREATE TABLE IF NOT EXISTS purposes (
    purpose_id TEXT PRIMARY KEY,
    consumer_name TEXT NOT NULL,
    consumer_id TEXT,
    eservice TEXT NOT NULL,
    operations TEXT NOT NULL,
    daily_quota BIGINT,
    state TEXT NOT NULL DEFAULT 'active',
    eservice_id TEXT,
    descriptor_id TEXT,
    producer_id TEXT
)";

impl PurposeDb {
    /// Uses the pool of the audit store and creates the table if needed.
    pub async fn open(pool: sqlx::AnyPool) -> Result<Self, sqlx::Error> {
        sqlx::query(PURPOSES_TABLE).execute(&pool).await?;
        Ok(PurposeDb { pool })
    }

    /// Uses the pool of the audit store as it is (a `serve` told not to migrate).
    pub fn attach(pool: sqlx::AnyPool) -> Self {
        PurposeDb { pool }
    }

    /// Every record of the table.
    pub async fn load(&self) -> Result<Vec<Purpose>, String> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT purpose_id, consumer_name, consumer_id, eservice, operations, daily_quota, \
             state, eservice_id, descriptor_id, producer_id FROM purposes ORDER BY purpose_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| r.try_get::<Option<String>, _>(c).map_err(|e| e.to_string());
                let state = match get("state")?.as_deref() {
                    Some("suspended") => PurposeState::Suspended,
                    Some("active") | None => PurposeState::Active,
                    Some(other) => return Err(format!("unknown purpose state `{other}`")),
                };
                let quota: Option<i64> = r.try_get("daily_quota").map_err(|e| e.to_string())?;
                Ok(Purpose {
                    purpose_id: get("purpose_id")?.unwrap_or_default(),
                    consumer_name: get("consumer_name")?.unwrap_or_default(),
                    consumer_id: get("consumer_id")?,
                    eservice: get("eservice")?.unwrap_or_default(),
                    operations: get("operations")?
                        .unwrap_or_default()
                        .split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect(),
                    daily_quota: quota
                        .map(|q| {
                            u64::try_from(q).map_err(|_| format!("daily_quota {q} is negative"))
                        })
                        .transpose()?,
                    state,
                    eservice_id: get("eservice_id")?,
                    descriptor_id: get("descriptor_id")?,
                    producer_id: get("producer_id")?,
                })
            })
            .collect()
    }
}

/// The purpose stage of one e-service.
pub struct PurposeStage {
    pub eservice: Eservice,
    pub registry: Arc<PurposeRegistry>,
}

fn forbidden(operation: Option<Operation>, request_id: Option<&str>) -> HttpResponse {
    let detail = match operation {
        Some(op) => format!(
            "The purpose of this voucher is not authorised for the operation `{}`.",
            op.id()
        ),
        None => "The purpose of this voucher is not authorised for this request.".to_owned(),
    };
    let mut problem = Problem::new(StatusCode::FORBIDDEN).with_detail(detail);
    if let Some(id) = request_id {
        problem = problem.with_instance(id);
    }
    problem.into_response()
}

impl PurposeStage {
    pub async fn run(
        self: Arc<Self>,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let request_id = super::request_id::of(&req);
        // The router's decision, recorded at the resource that matched (see
        // `eservices::route`). This stage only ever runs inside an operation's resource; if it
        // ran without a decision it would be a wiring error, and it refuses rather than guess.
        let Some(operation) = Resolved::of(&req).map(Resolved::operation) else {
            tracing::error!(
                request_id,
                "purpose stage reached without a routing decision"
            );
            return Ok(req.into_response(forbidden(None, request_id.as_deref())));
        };
        let Some(voucher) = super::voucher::of(&req) else {
            tracing::error!(request_id, "purpose stage reached without a voucher");
            return Ok(req.into_response(forbidden(Some(operation), request_id.as_deref())));
        };
        match self.registry.authorise(&voucher, self.eservice, operation) {
            Ok(purpose) => {
                req.extensions_mut().insert(purpose);
                next.call(req).await
            }
            Err(refusal) => {
                tracing::info!(request_id, jti = voucher.jti(), reason = %refusal, "purpose refused");
                Ok(req.into_response(forbidden(Some(operation), request_id.as_deref())))
            }
        }
    }
}

/// Reloads the registry on SIGHUP and when its file changes, and re-reads the database's
/// records (both checked every 2 seconds).
pub fn spawn_reloader(registry: Arc<PurposeRegistry>, db: Option<PurposeDb>) {
    let watched = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Some(db) = &db {
                match db.load().await {
                    Ok(purposes) => {
                        if let Err(e) = watched.replace_db(purposes) {
                            tracing::error!(error = %e, "purposes table invalid; keeping its previous records");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purposes table unreadable; keeping its previous records")
                    }
                }
            }
            match watched.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(purposes = watched.len(), "purposes file changed: reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "purposes file changed but is invalid; keeping the previous registry")
                }
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the purposes file is still watched");
            return;
        };
        while hup.recv().await.is_some() {
            match registry.reload() {
                Ok(n) => tracing::info!(purposes = n, "SIGHUP: purposes reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: purposes file invalid; keeping the previous registry")
                }
            }
        }
    });
}

impl super::Stage for PurposeStage {
    const NAME: &'static str = "purpose";
    fn call(self: Arc<Self>, req: ServiceRequest, next: Next<BoxBody>) -> super::StageFuture {
        Box::pin(self.run(req, next))
    }
}
