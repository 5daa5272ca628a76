//! PDND tracing and the audit trail's lifecycle, on SQLite and PostgreSQL:
//!
//! - accuracy: a known mix of calls gives exactly the expected rows, with the Rome day
//!   boundary right in winter (UTC+1) and summer (UTC+2);
//! - the sync against the local tracing e-service over real HTTP: a gap becomes MISSING and is
//!   recovered, a second submit is refused and not retried, late records lead to a replace, a
//!   row error is reported with its row number, PDND down loses and duplicates nothing, and a
//!   second run changes nothing;
//! - the purge: old records go, undeposited days stay, the purge is recorded, the codice
//!   fiscale query still finds everything within the period, dry-run deletes nothing;
//! - the one-replica lock.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use e2e::Harness;
use gateway::dev::sample;
use gateway::provider::audit::{format_time, AuditLog, AuditRecord, AuditStore, SubjectHasher};
use gateway::provider::audit_fruizioni::FruizioneRecord;
use gateway::provider::audit_retention::{purge, PurgeError, Retention};
use gateway::tracing_pdnd::client::TracingClient;
use gateway::tracing_pdnd::csv::{build, TracingRow};
use gateway::tracing_pdnd::lock;
use gateway::tracing_pdnd::store;
use gateway::tracing_pdnd::sync::{Action, TracingSync};
use sqlx::Row;
use std::sync::atomic::Ordering;

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty audit database: a new SQLite file, or a new PostgreSQL schema (from
/// `PDNDGW_TEST_POSTGRES_URL`; unset: a visible skip, or a failure when `CI` is set).
async fn fresh_url(db: Db) -> Option<test_support::TestDb> {
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    match db {
        Db::Sqlite => Some(test_support::TestDb::sqlite("pdndgw-tracing")),
        Db::Postgres => {
            let base = test_support::postgres_url()?;
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&base).await.expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .execute(&admin)
                .await
                .expect("schema");
            admin.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            Some(test_support::TestDb::server(format!(
                "{base}{sep}options[search_path]={name}"
            )))
        }
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn erogazione(at: &str, purpose: Option<&str>, jti: Option<&str>, status: u16) -> AuditRecord {
    AuditRecord {
        record_id: uuid::Uuid::new_v4().to_string(),
        time: format_time(utc(at)),
        request_id: uuid::Uuid::new_v4().to_string(),
        consumer_id: Some(sample::CONSUMER_ID.into()),
        client_id: None,
        purpose_id: purpose.map(str::to_owned),
        voucher_jti: jti.map(str::to_owned),
        eservice: "anagrafe".into(),
        operation: Some("residenza".into()),
        status,
        latency_ms: 3,
        subject_hash: None,
        user_id: None,
        user_location: None,
        loa: None,
    }
}

fn fruizione(
    at: &str,
    purpose: &str,
    jti: &str,
    status: u16,
    remote: Option<u16>,
) -> FruizioneRecord {
    FruizioneRecord {
        record_id: uuid::Uuid::new_v4().to_string(),
        time: format_time(utc(at)),
        request_id: uuid::Uuid::new_v4().to_string(),
        caller: "ufficio".into(),
        fruizione: Some("altro-ente".into()),
        method: "POST".into(),
        purpose_id: Some(purpose.into()),
        client_id: None,
        voucher_jti: Some(jti.into()),
        status,
        remote_status: remote,
        latency_ms: 5,
        user_id: None,
    }
}

fn row(purpose: &str, status: u16, jti: &str, n: i64) -> TracingRow {
    TracingRow {
        purpose_id: purpose.into(),
        status,
        token_id: jti.into(),
        requests_count: n,
    }
}

const PA: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const PB: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const PC: &str = "cccccccc-0000-4000-8000-000000000003";

/// The mix of one day whose Rome midnight is `midnight` UTC the day before and `end` UTC.
async fn accuracy(db: Db, date: &str, midnight: &str, last_ms: &str, end: &str) {
    let Some(url) = fresh_url(db).await else {
        return;
    };
    let store = AuditStore::connect(&url).await.expect("store");
    let log = AuditLog::start(store.clone(), 64);
    let records = [
        // The first and last millisecond of the Rome day count; the ones around them do not.
        erogazione(midnight, Some(PA), Some("j1"), 200),
        erogazione(last_ms, Some(PA), Some("j1"), 200),
        erogazione(&before(midnight), Some(PA), Some("j1"), 200),
        erogazione(end, Some(PA), Some("j1"), 200),
        // Several statuses, purposes and vouchers.
        erogazione(midnight, Some(PA), Some("j1"), 404),
        erogazione(last_ms, Some(PA), Some("j1"), 404),
        erogazione(midnight, Some(PA), Some("j9"), 200),
        erogazione(midnight, Some(PB), Some("j2"), 429),
        // Refused before the voucher check: no purpose, no voucher; left out.
        erogazione(midnight, None, None, 401),
        erogazione(midnight, Some(PB), None, 401),
    ];
    for r in records {
        log.record(r).await.expect("record");
    }
    // Fruizioni: the remote's status, or the proxy's when the remote never answered.
    log.record_fruizione(fruizione(midnight, PC, "j3", 200, Some(200)))
        .await
        .expect("record");
    log.record_fruizione(fruizione(last_ms, PC, "j3", 502, Some(503)))
        .await
        .expect("record");
    log.record_fruizione(fruizione(last_ms, PC, "j3", 504, None))
        .await
        .expect("record");
    let file = build(store.pool(), day(date)).await.expect("file");
    assert_eq!(
        file.rows,
        vec![
            row(PA, 200, "j1", 2),
            row(PA, 200, "j9", 1),
            row(PA, 404, "j1", 2),
            row(PB, 429, "j2", 1),
            row(PC, 200, "j3", 1),
            row(PC, 503, "j3", 1),
            row(PC, 504, "j3", 1),
        ],
        "{db:?} {date}"
    );
    let text = file.render();
    assert!(text.starts_with("date,purpose_id,status,token_id,requests_count\n"));
    assert!(text.contains(&format!("{date},{PA},404,j1,2\n")), "{text}");
    // The neighbouring day holds the records outside this one.
    let previous = day(date).pred_opt().expect("day");
    let file = build(store.pool(), previous).await.expect("file");
    assert_eq!(file.rows, vec![row(PA, 200, "j1", 1)]);
}

fn before(t: &str) -> String {
    format_time(utc(t) - chrono::Duration::milliseconds(1))
}

#[tokio::test]
async fn the_file_counts_exactly_the_calls_of_the_rome_day_winter_and_summer() {
    for db in [Db::Sqlite, Db::Postgres] {
        accuracy(
            db,
            "2026-01-15",
            "2026-01-14T23:00:00.000Z",
            "2026-01-15T22:59:59.999Z",
            "2026-01-15T23:00:00.000Z",
        )
        .await;
        accuracy(
            db,
            "2026-07-01",
            "2026-06-30T22:00:00.000Z",
            "2026-07-01T21:59:59.999Z",
            "2026-07-01T22:00:00.000Z",
        )
        .await;
    }
}

/// Noon in Rome on `d`, as UTC.
fn noon(d: &str) -> DateTime<Utc> {
    let naive = day(d).and_hms_opt(12, 0, 0).expect("noon");
    chrono_tz_rome(naive)
}

fn chrono_tz_rome(naive: chrono::NaiveDateTime) -> DateTime<Utc> {
    // Rome is UTC+1 in March; the tests' days are all in March.
    Utc.from_utc_datetime(&(naive - chrono::Duration::hours(1)))
}

/// A dev environment whose `[tracing]` points at its local tracing service with a window of
/// three days, on a fresh audit database of `db` (`None`: PostgreSQL skipped locally).
async fn tracing_harness(db: Db, run_in_serve: bool) -> Option<Harness> {
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_url(db).await?.url.clone()),
    };
    Some(
        Harness::start_with(move |c| {
            if let Some(url) = url {
                c.audit.url = url;
            }
            let mut tracing = gateway::dev::tracing_service::dev_section(c);
            tracing.window_days = 3;
            tracing.run_in_serve = run_in_serve;
            c.tracing = Some(tracing);
        })
        .await,
    )
}

async fn sync_loop(db: Db) {
    let Some(h) = tracing_harness(db, false).await else {
        return;
    };
    let config = &h.env.config;
    let svc = h.env.tracing_service.clone();
    let store_ = AuditStore::connect(&config.audit.url).await.expect("store");
    let pool = store_.pool().clone();
    let log = AuditLog::start(store_.clone(), 64);
    let purpose = sample::ANAGRAFE_FULL.purpose_id;
    let sync = TracingSync::from_config(config, pool.clone()).expect("sync");
    let at = |d: &str, clock: &str| {
        svc.clock().set(noon(clock).timestamp());
        noon(d)
    };
    svc.set_since(day("2026-03-10"));

    // Day 1 (10 March) has calls; the run on the 11th deposits the 8th, 9th and 10th.
    log.record(erogazione(
        "2026-03-10T09:00:00.000Z",
        Some(purpose),
        Some("v1"),
        200,
    ))
    .await
    .expect("record");
    let r = sync.run(at("2026-03-11", "2026-03-11")).await.expect("run");
    let actions: Vec<_> = r
        .days
        .iter()
        .map(|d| (d.day.to_string(), d.action.clone()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("2026-03-08".into(), Action::Submitted),
            ("2026-03-09".into(), Action::Submitted),
            ("2026-03-10".into(), Action::Submitted),
        ]
    );
    assert_eq!(r.days[2].requests, 1);
    assert_eq!(r.days[2].state.as_deref(), Some("COMPLETED"));

    // 12 March: PDND is down. Nothing is deposited, nothing recorded, the run fails.
    svc.down.store(true, Ordering::SeqCst);
    let before_down = store::deposits(&pool).await.expect("deposits");
    assert!(sync.run(at("2026-03-12", "2026-03-12")).await.is_err());
    assert_eq!(store::deposits(&pool).await.expect("deposits"), before_down);
    svc.down.store(false, Ordering::SeqCst);

    // 13 March: PDND's job marked the 11th MISSING (the gap); the sync recovers it and
    // submits the 12th; the 10th is untouched.
    let r = sync.run(at("2026-03-13", "2026-03-13")).await.expect("run");
    let actions: Vec<_> = r
        .days
        .iter()
        .map(|d| (d.day.to_string(), d.action.clone()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("2026-03-10".into(), Action::Nothing),
            ("2026-03-11".into(), Action::Recovered),
            ("2026-03-12".into(), Action::Submitted),
        ]
    );
    assert!(r
        .days
        .iter()
        .all(|d| d.state.as_deref() == Some("COMPLETED")));
    assert_eq!(svc.calls.recovers.load(Ordering::SeqCst), 1);

    // Late records on the 10th: its checksum changed, so it is replaced.
    log.record(erogazione(
        "2026-03-10T10:00:00.000Z",
        Some(purpose),
        Some("v1"),
        500,
    ))
    .await
    .expect("record");
    let r = sync.run(at("2026-03-13", "2026-03-13")).await.expect("run");
    assert_eq!(r.days[0].action, Action::Replaced);
    assert_eq!(r.deposits(), 1);
    assert_eq!(svc.calls.replaces.load(Ordering::SeqCst), 1);

    // A row PDND refuses: a call under a purpose PDND does not know, on the 12th.
    log.record(erogazione(
        "2026-03-12T10:00:00.000Z",
        Some(PB),
        Some("v2"),
        200,
    ))
    .await
    .expect("record");
    let r = sync.run(at("2026-03-13", "2026-03-13")).await.expect("run");
    let twelfth = &r.days[2];
    assert_eq!(twelfth.action, Action::Replaced);
    assert_eq!(twelfth.state.as_deref(), Some("ERROR"));
    assert_eq!(twelfth.row_errors.len(), 1, "{:?}", twelfth.row_errors);
    let e = &twelfth.row_errors[0];
    assert_eq!(
        (e.error_code.as_str(), e.purpose_id.as_str(), e.row_number),
        ("PURPOSE_NOT_FOUND", PB, 1)
    );
    let saved = store::day(&pool, "2026-03-12")
        .await
        .expect("day")
        .expect("saved");
    assert!(saved
        .row_errors
        .as_deref()
        .is_some_and(|j| j.contains("\"rowNumber\":1")));

    // Idempotence: nothing changed, so nothing is deposited or written, errors not refetched.
    let days_before = store::days(&pool).await.expect("days");
    let deposits_before = store::deposits(&pool).await.expect("deposits");
    let calls = |s: &gateway::dev::tracing_service::TracingService| {
        (
            s.calls.submit_attempts.load(Ordering::SeqCst),
            s.calls.recovers.load(Ordering::SeqCst),
            s.calls.replaces.load(Ordering::SeqCst),
        )
    };
    let calls_before = calls(&svc);
    for _ in 0..2 {
        let r = sync.run(at("2026-03-13", "2026-03-13")).await.expect("run");
        assert_eq!(r.deposits(), 0);
    }
    assert_eq!(store::days(&pool).await.expect("days"), days_before);
    assert_eq!(
        store::deposits(&pool).await.expect("deposits"),
        deposits_before
    );
    assert_eq!(calls(&svc), calls_before);

    // A second submit of a date is refused; when PDND's list lags behind (the 12th not yet
    // listed) the sync meets that refusal once and goes on, no loop.
    let client = TracingClient::new(
        reqwest::Client::new(),
        &config.tracing.as_ref().expect("tracing").service_url,
    );
    let voucher = h
        .voucher(gateway::dev::tracing_service::TRACING_PURPOSE_ID)
        .await;
    let refused = client
        .submit(
            &voucher,
            day("2026-03-10"),
            "date,purpose_id,status,token_id,requests_count\n",
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(gateway::tracing_pdnd::client::TracingClientError::AlreadyExists)
        ),
        "{refused:?}"
    );
    svc.unlisted.lock().expect("lock").insert(day("2026-03-12"));
    let attempts = svc.calls.submit_attempts.load(Ordering::SeqCst);
    let r = sync.run(at("2026-03-13", "2026-03-13")).await.expect("run");
    assert_eq!(r.days[2].action, Action::AlreadyExists);
    assert_eq!(
        svc.calls.submit_attempts.load(Ordering::SeqCst),
        attempts + 1
    );
    assert_eq!(svc.calls.submits.load(Ordering::SeqCst), 4);

    // The service checks the voucher's purpose: the anagrafe voucher is refused.
    let wrong = h.voucher(purpose).await;
    assert!(client.list(&wrong).await.is_err());
    assert!(client.list("not-a-voucher").await.is_err());
}

#[tokio::test]
async fn sync_against_the_local_tracing_service_sqlite() {
    sync_loop(Db::Sqlite).await;
}

#[tokio::test]
async fn sync_against_the_local_tracing_service_postgres() {
    sync_loop(Db::Postgres).await;
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-tracing-test";

async fn purge_on(db: Db) {
    let Some(url) = fresh_url(db).await else {
        return;
    };
    let store_ = AuditStore::connect(&url).await.expect("store");
    let pool = store_.pool().clone();
    let log = AuditLog::start(store_.clone(), 64);
    let hasher = SubjectHasher::new(SECRET).expect("hasher");
    let cf = "RSSMRA80A01H501U";
    let now = utc("2026-06-30T10:00:00.000Z");
    let with_subject = |at: &str| {
        let mut r = erogazione(at, Some(PA), Some("j"), 200);
        r.subject_hash = Some(hasher.hash(cf));
        r
    };
    // 45 days ago (deposit ERROR: kept), 40 days ago (COMPLETED: purged), 10 days ago (kept).
    for at in [
        "2026-05-16T10:00:00.000Z",
        "2026-05-21T10:00:00.000Z",
        "2026-05-21T11:00:00.000Z",
        "2026-06-20T10:00:00.000Z",
    ] {
        log.record(with_subject(at)).await.expect("record");
    }
    log.record_fruizione(fruizione(
        "2026-05-21T12:00:00.000Z",
        PC,
        "f",
        200,
        Some(200),
    ))
    .await
    .expect("record");
    for (d, state) in [("2026-05-16", "ERROR"), ("2026-05-21", "COMPLETED")] {
        store::save_day(
            &pool,
            &store::DayRecord {
                day: d.into(),
                tracing_id: Some("t".into()),
                state: state.into(),
                errors: false,
                checksum: Some("c".into()),
                row_errors: None,
            },
            "now",
        )
        .await
        .expect("save");
    }
    let retention = Retention {
        records_days: Some(30),
        aggregate_days: Some(365),
        require_deposit: true,
    };
    let purges = |pool: sqlx::AnyPool| async move {
        sqlx::query("SELECT records, fruizioni, first_day, last_day, kept_days FROM audit_purges")
            .fetch_all(&pool)
            .await
            .expect("purges")
    };

    // No period: refused, nothing deleted.
    let unset = Retention {
        records_days: None,
        ..retention
    };
    assert!(matches!(
        purge(&pool, unset, now, false).await,
        Err(PurgeError::NoRetention)
    ));
    assert!(PurgeError::NoRetention
        .to_string()
        .contains("audit.retention_days"));

    // Dry run: the counts, nothing deleted, no purge record.
    let dry = purge(&pool, retention, now, true).await.expect("dry run");
    assert_eq!((dry.records, dry.fruizioni), (2, 1));
    assert_eq!(dry.kept_days, vec![day("2026-05-16")]);
    assert_eq!(store_.count().await.expect("count"), 4);
    assert!(purges(pool.clone()).await.is_empty());

    let done = purge(&pool, retention, now, false).await.expect("purge");
    assert_eq!((done.records, done.fruizioni), (2, 1));
    assert_eq!(done.first_day, Some(day("2026-05-21")));
    assert_eq!(store_.count().await.expect("count"), 2);
    let rows = purges(pool.clone()).await;
    assert_eq!(rows.len(), 1);
    let records: i64 = rows[0].try_get("records").expect("records");
    let kept: String = rows[0].try_get("kept_days").expect("kept");
    assert_eq!((records, kept.as_str()), (2, "2026-05-16"));
    // The purged day's calls survive as a daily aggregate.
    let aggregated: i64 = sqlx::query(
        "SELECT requests FROM audit_daily WHERE day = '2026-05-21' AND side = 'erogazioni'",
    )
    .fetch_one(&pool)
    .await
    .expect("aggregate")
    .try_get(0)
    .expect("requests");
    assert_eq!(aggregated, 2);

    // The codice fiscale query still finds everything within the period (and the kept day).
    let filters = gateway::cli::audit::Filters {
        from: None,
        to: None,
        consumer_id: None,
        purpose_id: None,
        codice_fiscale: Some(cf.into()),
        caller: None,
        fruizione: None,
        side: gateway::cli::audit::Side::All,
        limit: None,
    };
    let found = gateway::cli::audit::entries(&store_, &hasher, &filters)
        .await
        .expect("query");
    assert_eq!(found.len(), 2);

    // A second purge finds nothing more to delete.
    let again = purge(&pool, retention, now, false).await.expect("purge");
    assert_eq!((again.records, again.fruizioni), (0, 0));
}

#[tokio::test]
async fn purge_keeps_the_period_and_undeposited_days_sqlite() {
    purge_on(Db::Sqlite).await;
}

#[tokio::test]
async fn purge_keeps_the_period_and_undeposited_days_postgres() {
    purge_on(Db::Postgres).await;
}

async fn lock_on(db: Db) {
    let Some(url) = fresh_url(db).await else {
        return;
    };
    let store_ = AuditStore::connect(&url).await.expect("store");
    let other = AuditStore::connect(&url).await.expect("second replica");
    let now = 1_800_000_000;
    let held = lock::try_acquire(store_.pool(), now, 60)
        .await
        .expect("lock")
        .expect("free");
    assert!(lock::try_acquire(other.pool(), now, 60)
        .await
        .expect("lock")
        .is_none());
    held.release().await.expect("release");
    let again = lock::try_acquire(other.pool(), now, 60)
        .await
        .expect("lock");
    assert!(again.is_some(), "released lock is free again");
    if let (Db::Sqlite, Some(l)) = (db, again) {
        // A crashed holder's row expires.
        drop(l);
        assert!(lock::try_acquire(store_.pool(), now + 61, 60)
            .await
            .expect("lock")
            .is_some());
    }
}

#[tokio::test]
async fn one_replica_at_a_time_holds_the_sync_lock() {
    lock_on(Db::Sqlite).await;
    lock_on(Db::Postgres).await;
}

#[tokio::test]
async fn cli_prints_the_file_and_refuses_a_purge_without_a_period() {
    let Some(url) = fresh_url(Db::Sqlite).await else {
        return;
    };
    let mut config = gateway::config::Config::load_dev(None).expect("dev config");
    config.audit.url = url.url.clone();
    let store_ = AuditStore::connect(&url).await.expect("store");
    AuditLog::start(store_.clone(), 8)
        .record(erogazione(
            "2026-02-02T10:00:00.000Z",
            Some(PA),
            Some("j1"),
            200,
        ))
        .await
        .expect("record");
    let csv = gateway::cli::tracing::TracingCommand::Csv {
        date: "2026-02-02".into(),
    };
    let mut out = Vec::new();
    gateway::cli::tracing::run(&csv, &config, &mut out)
        .await
        .expect("csv");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        format!("date,purpose_id,status,token_id,requests_count\n2026-02-02,{PA},200,j1,1\n")
    );
    let bad = gateway::cli::tracing::TracingCommand::Csv {
        date: "2/2/2026".into(),
    };
    let err = gateway::cli::tracing::run(&bad, &config, &mut Vec::new())
        .await
        .expect_err("bad date");
    assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");

    config.audit.retention_days = None;
    let purge_cmd = gateway::cli::tracing::AuditCommand::Purge { dry_run: false };
    let err = gateway::cli::tracing::run_audit(&purge_cmd, &config, &mut Vec::new())
        .await
        .expect_err("no period");
    assert!(err.to_string().contains("audit.retention_days"), "{err}");
    assert_eq!(store_.count().await.expect("count"), 1);
}

#[tokio::test]
async fn the_local_tracing_service_checks_rows_dates_vouchers_and_states() {
    let h = Harness::start().await;
    let base = &h
        .env
        .config
        .tracing
        .as_ref()
        .expect("dev fills [tracing]")
        .service_url;
    let client = TracingClient::new(reqwest::Client::new(), base);
    let voucher = h
        .voucher(gateway::dev::tracing_service::TRACING_PURPOSE_ID)
        .await;
    let known = sample::ANAGRAFE_FULL.purpose_id;
    let file = format!(
        "date,purpose_id,status,token_id,requests_count\n\
         2026-04-01,{known},200,j1,3\n\
         2026-04-02,{known},200,j1,1\n\
         2026-04-01,{known},999,j1,1\n\
         2026-04-01,not-a-uuid,200,j1,1\n"
    );
    let d = client
        .submit(&voucher, day("2026-04-01"), &file)
        .await
        .expect("submit");
    let errors = client
        .errors(&voucher, &d.tracing_id)
        .await
        .expect("errors");
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.row_number, e.error_code.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "INVALID_DATE"),
            (3, "INVALID_STATUS_CODE"),
            (4, "INVALID_PURPOSE_ID")
        ]
    );
    let listed = client.list(&voucher).await.expect("list");
    let t = listed
        .iter()
        .find(|t| t.tracing_id == d.tracing_id)
        .expect("listed");
    assert_eq!(t.state, "ERROR");

    // Recover with the corrected file, by PUT (the method the OpenAPI names).
    let good =
        format!("date,purpose_id,status,token_id,requests_count\n2026-04-01,{known},200,j1,3\n");
    let put = |action: &str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(good.clone().into_bytes()).file_name("t.csv"),
        );
        h.http
            .put(format!("{base}/tracings/{}/{action}", d.tracing_id))
            .bearer_auth(&voucher)
            .multipart(form)
            .send()
    };
    assert_eq!(put("recover").await.expect("recover").status(), 200);
    // A COMPLETED day cannot be recovered, only replaced.
    assert_eq!(put("recover").await.expect("recover").status(), 400);
    assert_eq!(put("replace").await.expect("replace").status(), 200);

    // A busy day's file (over actix's default 256 KiB body limit) is accepted.
    let mut big = String::from("date,purpose_id,status,token_id,requests_count\n");
    for i in 0..5000 {
        big.push_str(&format!(
            "2026-04-03,{known},200,{}-{i},1\n",
            uuid::Uuid::new_v4()
        ));
    }
    assert!(big.len() > 300 * 1024);
    let d = client
        .submit(&voucher, day("2026-04-03"), &big)
        .await
        .expect("a large file");
    assert!(client
        .errors(&voucher, &d.tracing_id)
        .await
        .expect("errors")
        .is_empty());

    // A file with another header is refused; a voucher is required; limit is at most 50.
    let bad_date = client
        .submit(&voucher, day("2026-04-05"), "date,purpose_id\n")
        .await;
    assert!(bad_date.is_err(), "a wrong header is refused");
    let no_voucher = h
        .http
        .get(format!("{base}/tracings?offset=0&limit=10"))
        .send()
        .await
        .expect("list");
    assert_eq!(no_voucher.status(), 401);
    let too_many = h
        .http
        .get(format!("{base}/tracings?offset=0&limit=51"))
        .bearer_auth(&voucher)
        .send()
        .await
        .expect("list");
    assert_eq!(too_many.status(), 400);
}

/// `[tracing] run_in_serve`: two replicas start the daily task on one database; the window's
/// days are deposited once each, by whichever replica took the lock, and never twice.
async fn daily_task_on(db: Db) {
    let Some(h) = tracing_harness(db, true).await else {
        return;
    };
    let config = h.env.config.clone();
    let svc = h.env.tracing_service.clone();
    let now = Utc::now();
    svc.clock().set(now.timestamp());
    svc.set_since(gateway::tracing_pdnd::csv::rome_day(now) - chrono::Duration::days(30));
    let pool = AuditStore::connect(&config.audit.url)
        .await
        .expect("store")
        .pool()
        .clone();
    let replicas = [
        gateway::tracing_pdnd::sync::spawn_daily(config.clone(), pool.clone()).expect("task a"),
        gateway::tracing_pdnd::sync::spawn_daily(config.clone(), pool.clone()).expect("task b"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let deposits = loop {
        let d = store::deposits(&pool).await.expect("deposits");
        if d.len() >= 3 || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Give a second run every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = store::deposits(&pool).await.expect("deposits");
    assert_eq!(after, deposits, "a second replica deposited again");
    let mut days: Vec<_> = after.iter().map(|(d, _)| d.clone()).collect();
    days.sort();
    days.dedup();
    assert_eq!(days.len(), 3, "{after:?}");
    // Days PDND already marked MISSING (older than two days) are recovered, the others
    // submitted; either way one deposit reached the service per day.
    assert!(
        after.iter().all(|(_, a)| a == "submit" || a == "recover"),
        "{after:?}"
    );
    assert_eq!(
        svc.calls.submits.load(Ordering::SeqCst) + svc.calls.recovers.load(Ordering::SeqCst),
        3
    );
    for task in replicas {
        task.abort();
    }
}

#[tokio::test]
async fn run_in_serve_deposits_each_day_once_across_two_replicas_sqlite() {
    daily_task_on(Db::Sqlite).await;
}

#[tokio::test]
async fn run_in_serve_deposits_each_day_once_across_two_replicas_postgres() {
    daily_task_on(Db::Postgres).await;
}
