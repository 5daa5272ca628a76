//! A local stand-in for PDND's tracing e-service, on the development authority's listener
//! (`/tracing/v1/...`), so that `pdnd-gateway tracing sync` runs against `dev` with nothing else
//! installed, and its tests talk real HTTP to a real port.
//!
//! What it does as the real service does (PDND's tracing OpenAPI): `POST /tracings/submit`
//! (multipart `file` and `date`), `GET /tracings` (states filter, `offset`, `limit` at most 50),
//! `GET /tracings/{id}/errors`, `/tracings/{id}/recover` (MISSING or ERROR days) and
//! `/tracings/{id}/replace` (COMPLETED days), each accepting `POST` and `PUT` (the manual and the
//! OpenAPI disagree on the method). A second submit of a date is refused with
//! `TRACING_ALREADY_EXISTS`. Every call needs a voucher of this authority for the tracing
//! purpose. Each row is checked (its date equal to the deposit's, status a valid HTTP code,
//! purpose a UUID the authority knows, token id present, count a positive integer) and a file
//! with refused rows goes to ERROR with per-row errors; otherwise it is COMPLETED at once (the
//! real service passes through PENDING). Like PDND's daily job, every day from `since` up to
//! two days before the clock's today with no deposit is listed as MISSING; the clock is
//! injectable ([`TracingService::clock`]) so tests move through days without waiting.
//!
//! State lives in memory: restarting `dev` forgets the deposits (the gateway's own
//! `tracing_days` table then meets an empty list and deposits again).

use crate::pdnd::jwk::JwkSet;
use crate::pdnd::voucher::{validate, VoucherPolicy};
use crate::pdnd_client::voucher_cache::{Clock, ManualClock};
use crate::tracing_pdnd::csv::HEADER;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Days, NaiveDate};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The dev tracing e-service's voucher audience.
pub const TRACING_AUDIENCE: &str = "dev.interop.local/tracing/v1";
/// The sample client's purpose on the dev tracing e-service.
pub const TRACING_PURPOSE_ID: &str = "6f1d2c1e-3a7b-4c5d-8e9f-0a1b2c3d4e90";
/// The dev tracing e-service's id.
pub const TRACING_ESERVICE_ID: &str = "6f1d2c1e-3a7b-4c5d-8e9f-0a1b2c3d4e91";
/// The largest upload accepted (PDND's own limit is not published; this is ample for a day).
pub const MAX_FILE_BYTES: usize = 32 << 20;
/// Where it is mounted on the authority's listener.
pub const BASE_PATH: &str = "/tracing/v1";

#[derive(Debug, Clone)]
struct Tracing {
    id: String,
    date: NaiveDate,
    state: &'static str,
    errors: Vec<serde_json::Value>,
    versions: u32,
}

/// Counters of what was asked (tests check that a second run deposits nothing).
#[derive(Debug, Default)]
pub struct Calls {
    /// Every submit that passed the voucher check, refused or not.
    pub submit_attempts: AtomicU64,
    /// Submits accepted.
    pub submits: AtomicU64,
    pub recovers: AtomicU64,
    pub replaces: AtomicU64,
    pub lists: AtomicU64,
}

/// The emulated service.
pub struct TracingService {
    tracings: Mutex<Vec<Tracing>>,
    keys: JwkSet,
    policy: VoucherPolicy,
    known_purposes: HashSet<String>,
    since: Mutex<NaiveDate>,
    clock: Arc<ManualClock>,
    /// When set, every call answers 503 (PDND down).
    pub down: AtomicBool,
    /// Days the list leaves out although they are deposited: PDND's list lags behind a
    /// deposit just made (tests use it to meet `TRACING_ALREADY_EXISTS`).
    pub unlisted: Mutex<HashSet<NaiveDate>>,
    pub calls: Calls,
}

impl TracingService {
    /// A service trusting vouchers signed with `keys` by `issuer`, knowing `purposes`; the
    /// MISSING marking starts at `since`, with a clock at the system time.
    pub fn new(keys: JwkSet, issuer: &str, purposes: HashSet<String>, since: NaiveDate) -> Self {
        let mut policy =
            VoucherPolicy::new(vec![issuer.to_owned()], vec![TRACING_AUDIENCE.to_owned()]);
        policy.leeway_secs = 60;
        policy.max_lifetime_secs = 2 * 86_400;
        TracingService {
            tracings: Mutex::new(Vec::new()),
            keys,
            policy,
            known_purposes: purposes,
            since: Mutex::new(since),
            clock: Arc::new(ManualClock::new(chrono::Utc::now().timestamp())),
            down: AtomicBool::new(false),
            unlisted: Mutex::new(HashSet::new()),
            calls: Calls::default(),
        }
    }

    /// The clock of the MISSING marking (unix seconds).
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The first day PDND expects a deposit for.
    pub fn set_since(&self, day: NaiveDate) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = day;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracing>> {
        self.tracings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// PDND's job: days from `since` to two days ago without a deposit become MISSING.
    fn mark_missing(&self) {
        let today = crate::tracing_pdnd::csv::rome_day(
            chrono::DateTime::from_timestamp(self.clock.now(), 0).unwrap_or_default(),
        );
        let Some(last) = today.checked_sub_days(Days::new(2)) else {
            return;
        };
        let mut day = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        let mut tracings = self.lock();
        while day <= last {
            if !tracings.iter().any(|t| t.date == day) {
                tracings.push(Tracing {
                    id: uuid::Uuid::new_v4().to_string(),
                    date: day,
                    state: "MISSING",
                    errors: Vec::new(),
                    versions: 0,
                });
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
    }

    /// The rows' errors of a file deposited for `date`.
    fn check_file(&self, file: &str, date: NaiveDate) -> Result<Vec<serde_json::Value>, String> {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| format!("unreadable CSV: {e}"))?;
        if header.iter().collect::<Vec<_>>() != HEADER {
            return Err(format!("the header must be {}", HEADER.join(",")));
        }
        let mut errors = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let row_number = i + 1;
            let record = record.map_err(|e| format!("row {row_number}: {e}"))?;
            let field = |n: usize| record.get(n).unwrap_or("");
            let purpose = field(1);
            let mut refuse = |code: &str, message: String| {
                errors.push(json!({"purposeId": purpose, "errorCode": code, "message": message, "rowNumber": row_number}));
            };
            if NaiveDate::parse_from_str(field(0), "%Y-%m-%d").ok() != Some(date) {
                refuse(
                    "INVALID_DATE",
                    format!("the row's date {} is not the deposit's {date}", field(0)),
                );
            }
            if uuid::Uuid::parse_str(purpose).is_err() {
                refuse("INVALID_PURPOSE_ID", "the purpose id is not a UUID".into());
            } else if !self.known_purposes.contains(purpose) {
                refuse("PURPOSE_NOT_FOUND", "no such purpose on PDND".into());
            }
            if !field(2)
                .parse::<u16>()
                .is_ok_and(|s| (100..=599).contains(&s))
            {
                refuse(
                    "INVALID_STATUS_CODE",
                    format!("{} is not an HTTP status code", field(2)),
                );
            }
            if field(3).trim().is_empty() {
                refuse("INVALID_TOKEN_ID", "the token id is empty".into());
            }
            if !field(4).parse::<u64>().is_ok_and(|n| n > 0) {
                refuse(
                    "INVALID_REQUESTS_COUNT",
                    format!("{} is not a positive count", field(4)),
                );
            }
        }
        Ok(errors)
    }

    fn any_errors(tracings: &[Tracing]) -> bool {
        tracings.iter().any(|t| t.state == "ERROR")
    }
}

/// [`problem`], boxed (a refusal travels in a `Result`).
fn refusal(status: u16, code: &str, detail: &str) -> Box<HttpResponse> {
    Box::new(problem(status, code, detail))
}

/// PDND's problem body.
fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    let body = json!({
        "type": "about:blank", "status": status, "title": code,
        "correlationId": uuid::Uuid::new_v4().to_string(), "detail": detail,
        "errors": [{"code": code, "detail": detail}]
    });
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .insert_header((header::CONTENT_TYPE, crate::problem::PROBLEM_JSON))
    .json(body)
}

/// The caller's voucher, checked: `Some` is the refusal to send.
fn admit(req: &HttpRequest, service: &TracingService) -> Option<HttpResponse> {
    check_voucher(req, service).err().map(|r| *r)
}

fn check_voucher(req: &HttpRequest, service: &TracingService) -> Result<(), Box<HttpResponse>> {
    if service.down.load(Ordering::SeqCst) {
        return Err(refusal(
            503,
            "SERVICE_UNAVAILABLE",
            "the tracing service is down",
        ));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| refusal(401, "UNAUTHORIZED", "a voucher is required"))?;
    let voucher = validate(
        token.trim(),
        &service.keys,
        &service.policy,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "tracing service: voucher refused");
        refusal(401, "UNAUTHORIZED", "invalid voucher")
    })?;
    if voucher.purpose_id() != TRACING_PURPOSE_ID {
        tracing::warn!(
            purpose_id = voucher.purpose_id(),
            "tracing service: voucher for another purpose"
        );
        return Err(refusal(
            403,
            "FORBIDDEN",
            "the voucher is not for the tracing purpose",
        ));
    }
    Ok(())
}

/// The parts of a `multipart/form-data` body by name (small bodies only: dev).
fn multipart(req: &HttpRequest, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| content_type.starts_with("multipart/form-data") && !b.is_empty())
        .ok_or("a multipart/form-data body with a boundary is required")?;
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in text.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
        let (head, content) = chunk
            .split_once("\r\n\r\n")
            .ok_or("a part without headers")?;
        let name = head
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("name="))
            .next()
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or("a part without a name")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        parts.push((name, content.to_owned()));
    }
    Ok(parts)
}

fn part<'a>(parts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn submit(
    req: HttpRequest,
    body: web::Bytes,
    service: web::Data<TracingService>,
) -> HttpResponse {
    if let Some(r) = admit(&req, &service) {
        return r;
    }
    let parts = match multipart(&req, &body) {
        Ok(p) => p,
        Err(e) => return problem(400, "INVALID_REQUEST", &e),
    };
    let (Some(file), Some(date)) = (part(&parts, "file"), part(&parts, "date")) else {
        return problem(
            400,
            "INVALID_REQUEST",
            "the fields file and date are required",
        );
    };
    let Ok(date) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return problem(400, "INVALID_REQUEST", "date must be YYYY-MM-DD");
    };
    service.calls.submit_attempts.fetch_add(1, Ordering::SeqCst);
    service.mark_missing();
    let errors = match service.check_file(file, date) {
        Ok(e) => e,
        Err(e) => return problem(400, "INVALID_FILE", &e),
    };
    let mut tracings = service.lock();
    if tracings.iter().any(|t| t.date == date) {
        return problem(
            409,
            "TRACING_ALREADY_EXISTS",
            &format!("a tracing for {date} already exists"),
        );
    }
    service.calls.submits.fetch_add(1, Ordering::SeqCst);
    let id = uuid::Uuid::new_v4().to_string();
    tracings.push(Tracing {
        id: id.clone(),
        date,
        state: if errors.is_empty() {
            "COMPLETED"
        } else {
            "ERROR"
        },
        errors,
        versions: 1,
    });
    HttpResponse::Ok()
        .json(json!({"tracingId": id, "errors": TracingService::any_errors(&tracings)}))
}

async fn redeposit(
    req: HttpRequest,
    body: web::Bytes,
    path: web::Path<(String, String)>,
    service: web::Data<TracingService>,
) -> HttpResponse {
    if let Some(r) = admit(&req, &service) {
        return r;
    }
    let (id, action) = path.into_inner();
    let allowed: &[&str] = match action.as_str() {
        "recover" => &["MISSING", "ERROR"],
        "replace" => &["COMPLETED"],
        _ => return problem(404, "NOT_FOUND", "no such operation"),
    };
    let parts = match multipart(&req, &body) {
        Ok(p) => p,
        Err(e) => return problem(400, "INVALID_REQUEST", &e),
    };
    let Some(file) = part(&parts, "file") else {
        return problem(400, "INVALID_REQUEST", "the field file is required");
    };
    service.mark_missing();
    let Some(date) = service.lock().iter().find(|t| t.id == id).map(|t| t.date) else {
        return problem(404, "TRACING_NOT_FOUND", "no such tracing");
    };
    let errors = match service.check_file(file, date) {
        Ok(e) => e,
        Err(e) => return problem(400, "INVALID_FILE", &e),
    };
    let mut tracings = service.lock();
    let Some(t) = tracings.iter_mut().find(|t| t.id == id) else {
        return problem(404, "TRACING_NOT_FOUND", "no such tracing");
    };
    if !allowed.contains(&t.state) {
        return problem(
            400,
            "INVALID_STATE",
            &format!("a {} tracing cannot be {action}ed", t.state),
        );
    }
    let counter = if action == "recover" {
        &service.calls.recovers
    } else {
        &service.calls.replaces
    };
    counter.fetch_add(1, Ordering::SeqCst);
    t.state = if errors.is_empty() {
        "COMPLETED"
    } else {
        "ERROR"
    };
    t.errors = errors;
    t.versions += 1;
    HttpResponse::Ok()
        .json(json!({"tracingId": id, "errors": TracingService::any_errors(&tracings)}))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    states: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

fn page_bounds(q: &PageQuery) -> Option<(usize, usize)> {
    match (q.offset, q.limit) {
        (Some(o), Some(l)) if (1..=50).contains(&l) => Some((o, l)),
        _ => None,
    }
}

fn bad_page() -> HttpResponse {
    problem(
        400,
        "INVALID_REQUEST",
        "offset and limit (1 to 50) are required",
    )
}

async fn list(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    service: web::Data<TracingService>,
) -> HttpResponse {
    if let Some(r) = admit(&req, &service) {
        return r;
    }
    let Some((offset, limit)) = page_bounds(&q) else {
        return bad_page();
    };
    service.calls.lists.fetch_add(1, Ordering::SeqCst);
    service.mark_missing();
    let states: Option<Vec<&str>> = q.states.as_deref().map(|s| s.split(',').collect());
    let unlisted = service
        .unlisted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let tracings = service.lock();
    let mut matching: Vec<&Tracing> = tracings
        .iter()
        .filter(|t| states.as_ref().is_none_or(|s| s.contains(&t.state)))
        .filter(|t| !unlisted.contains(&t.date))
        .collect();
    matching.sort_by_key(|t| t.date);
    let results: Vec<_> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(
            |t| json!({"tracingId": t.id, "date": t.date, "state": t.state, "version": t.versions}),
        )
        .collect();
    HttpResponse::Ok().json(json!({"results": results, "totalCount": matching.len()}))
}

async fn errors(
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
    service: web::Data<TracingService>,
) -> HttpResponse {
    if let Some(r) = admit(&req, &service) {
        return r;
    }
    let Some((offset, limit)) = page_bounds(&q) else {
        return bad_page();
    };
    let tracings = service.lock();
    let Some(t) = tracings.iter().find(|t| t.id == *id) else {
        return problem(404, "TRACING_NOT_FOUND", "no such tracing");
    };
    let results: Vec<_> = t.errors.iter().skip(offset).take(limit).cloned().collect();
    HttpResponse::Ok().json(json!({"results": results, "totalCount": t.errors.len()}))
}

/// Registers the service under [`BASE_PATH`]; the app must hold `web::Data<TracingService>`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(BASE_PATH)
            // A day's file of a busy comune is larger than actix's 256 KiB default.
            .app_data(web::PayloadConfig::new(MAX_FILE_BYTES))
            .route("/tracings/submit", web::post().to(submit))
            .route("/tracings", web::get().to(list))
            .route("/tracings/{id}/errors", web::get().to(errors))
            .route("/tracings/{id}/{action}", web::post().to(redeposit))
            .route("/tracings/{id}/{action}", web::put().to(redeposit)),
    );
}

/// The tracing purpose the dev authority registers for the sample client.
pub fn registered_purpose() -> crate::pdnd::authority::RegisteredPurpose {
    crate::pdnd::authority::RegisteredPurpose {
        purpose_id: TRACING_PURPOSE_ID.to_owned(),
        eservice_id: TRACING_ESERVICE_ID.to_owned(),
        descriptor_id: TRACING_ESERVICE_ID.to_owned(),
        producer_id: TRACING_ESERVICE_ID.to_owned(),
        audience: vec![TRACING_AUDIENCE.to_owned()],
        active: true,
    }
}

/// The service `dev` mounts: it trusts the dev authority, knows the sample purposes, and
/// expects deposits from three days ago (so a fresh `dev` shows a MISSING day recovered).
pub fn for_dev(
    config: &crate::config::Config,
    authority: &crate::pdnd::authority::Authority,
) -> TracingService {
    let purposes = super::sample::PURPOSES
        .iter()
        .map(|p| p.purpose_id.to_owned())
        .collect();
    let today = crate::tracing_pdnd::csv::rome_day(chrono::Utc::now());
    let since = today.checked_sub_days(Days::new(3)).unwrap_or(today);
    TracingService::new(
        authority.jwks(),
        &config.dev.authority_issuer,
        purposes,
        since,
    )
}

/// The `[tracing]` section `dev` fills in: the local service, the sample tracing purpose.
pub fn dev_section(config: &crate::config::Config) -> crate::config::tracing::TracingConfig {
    crate::config::tracing::TracingConfig {
        service_url: format!("http://{}{BASE_PATH}", config.dev.authority_listen),
        purpose_id: TRACING_PURPOSE_ID.to_owned(),
        window_days: 10,
        run_in_serve: false,
    }
}
