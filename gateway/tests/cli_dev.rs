//! The `pdnd-gateway` binary as a newcomer runs it: `dev` in one process, `voucher` and `audit`
//! in others, talking over real sockets. Also the crash test of the audit trail: requests at
//! high concurrency, `kill -9` midway, restart, and every 2xx the client saw has its record.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");

mod common;
use common::dev_process::DevProcess;

fn data_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pdndgw-cli-{name}-{}", uuid::Uuid::new_v4()))
}

/// Starts `dev` on free ports (debug log).
fn start_dev(dir: &Path) -> DevProcess {
    start_dev_with(dir, &[])
}

/// [`start_dev`] with extra command-line arguments.
fn start_dev_with(dir: &Path, extra: &[&str]) -> DevProcess {
    DevProcess::start(dir, extra, &[("RUST_LOG", "debug")])
}

fn voucher(dir: &Path, authority: &str, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["voucher", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env(
            "PDNDGW_PDND__TOKEN_ENDPOINT",
            format!("http://{authority}/token.oauth2"),
        )
        .output()
        .expect("voucher runs")
}

fn audit(dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["audit", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("audit runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn dev_voucher_call_and_audit_from_the_command_line() {
    let dir = data_dir("walk");
    let dev = start_dev(&dir);
    let out = voucher(&dir, &dev.authority, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{}/anagrafe/v1/residenza", dev.public))
        .bearer_auth(&token)
        .header("X-Request-Id", "walkthrough-1")
        .json(&json!({ "codiceFiscale": dev.sample_cf }))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    // A refused voucher and an invalid codice fiscale, so the log has something to leak.
    let resp = http
        .post(format!("http://{}/anagrafe/v1/residenza", dev.public))
        .bearer_auth(format!("{token}x"))
        .json(&json!({ "codiceFiscale": dev.sample_cf }))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 401);

    // JSON log lines carry the request id and the voucher's jti, never the voucher itself nor
    // a codice fiscale.
    let log = std::fs::read_to_string(&dev.log).expect("server log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "no JSON log lines:\n{log}");
    assert!(
        log.contains("walkthrough-1"),
        "request id not logged:\n{log}"
    );
    let jti = gateway::pdnd::client_assertion::decode_unverified(&token)
        .expect("voucher")
        .1["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    assert!(log.contains(&jti), "voucher jti not logged");
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!log.contains(signature), "the voucher is in the log");
    assert!(
        !log.contains(&dev.sample_cf),
        "a codice fiscale is in the log"
    );

    // --decode shows PDND's shape.
    let out = voucher(&dir, &dev.authority, &["--decode"]);
    let decoded: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(decoded["header"]["typ"], "at+jwt");
    assert!(decoded["claims"]["purposeId"].is_string());

    // A refused request shows the claims that were sent, and no key material.
    let out = voucher(
        &dir,
        &dev.authority,
        &["--purpose-id", "00000000-0000-4000-8000-000000000000"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("015-0008") && stderr.contains("purposeId"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");

    // The audit finds the call by codice fiscale, and nothing for another subject.
    let found = audit(
        &dir,
        &["--codice-fiscale", &dev.sample_cf, "--format", "jsonl"],
    );
    let records: Vec<Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    assert_eq!(records.len(), 1, "{found}");
    assert_eq!(records[0]["operation"], "residenza");
    assert_eq!(records[0]["status"], 200);
    assert!(
        !found.contains(&dev.sample_cf),
        "the trail must not hold the codice fiscale"
    );
    let other = audit(
        &dir,
        &["--codice-fiscale", "RSSMRA80A01H501U", "--format", "csv"],
    );
    assert_eq!(other.lines().count(), 1, "header only: {other}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kill_9_loses_no_audit_record_of_a_served_answer() {
    let dir = data_dir("crash");
    let mut dev = start_dev(&dir);
    let out = voucher(&dir, &dev.authority, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let served: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let total = 2_000usize;
    let concurrency = 16usize;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (http, served, stop) = (http.clone(), served.clone(), stop.clone());
        let (url, token, cf) = (
            format!("http://{}/anagrafe/v1/residenza", dev.public),
            token.clone(),
            dev.sample_cf.clone(),
        );
        workers.push(tokio::spawn(async move {
            for i in (w..total).step_by(concurrency) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("crash-{i}");
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("X-Request-Id", &id)
                    .json(&json!({ "codiceFiscale": cf }))
                    .send()
                    .await;
                if let Ok(resp) = resp {
                    if resp.status().is_success() && resp.bytes().await.is_ok() {
                        served.lock().expect("lock").push(id);
                    }
                }
            }
        }));
    }
    // Kill the server once a good share of the requests has been answered.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if served.lock().expect("lock").len() >= total / 3 {
            break;
        }
    }
    dev.child.kill().expect("kill -9");
    let _ = dev.child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let served = served.lock().expect("lock").clone();
    assert!(
        served.len() >= total / 3 && served.len() < total,
        "served {}",
        served.len()
    );

    // Restart on the same data directory (recovery of the WAL), then check every served id.
    drop(dev);
    let dev = start_dev(&dir);
    let store = gateway::provider::audit::AuditStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("audit.db").display()
    ))
    .await
    .expect("audit store");
    let records = store.query(&Default::default()).await.expect("query");
    let recorded: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.request_id.as_str())
        .collect();
    let missing: Vec<&String> = served
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} served answers have no audit record: {:?}",
        missing.len(),
        served.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "served {} answers before kill -9; all {} have audit records ({} records in all)",
        served.len(),
        served.len(),
        records.len()
    );
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Log lines go to a file here, not a terminal: JSON by default (the walkthrough test above
/// parses them), compact text when asked, and the start-up message is the same either way.
#[test]
fn dev_logs_text_when_asked() {
    let dir = data_dir("text-log");
    let dev = start_dev_with(&dir, &["--log-format", "text"]);
    // The start-up itself logs (workers starting, listeners bound).
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&dev.log).expect("server log");
        if log.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!log.trim().is_empty(), "no log lines");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "a JSON line in text mode: {line}"
        );
    }
    assert!(log.contains("INFO"), "{log}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unreachable_collector_is_logged_and_requests_still_served() {
    // A port nothing listens on: every export fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port");
    let dir = data_dir("otlp-down");
    let endpoint = format!("http://{closed}");
    let dev = DevProcess::start(
        &dir,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("PDNDGW_TELEMETRY__METRICS_INTERVAL_SECS", "1"),
        ],
    );
    let out = voucher(&dir, &dev.authority, &[]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/anagrafe/v1/residenza", dev.public))
        .bearer_auth(token.trim())
        .json(&json!({ "codiceFiscale": dev.sample_cf }))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        resp.status(),
        200,
        "a dead collector must not fail requests"
    );
    let started = std::time::Instant::now();
    let mut log = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        log = std::fs::read_to_string(&dev.log).unwrap_or_default();
        if log.contains("PeriodicReader.ExportError") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        log.contains("PeriodicReader.ExportError") && log.contains("OTLP export exhausted retries"),
        "the failed export is not in the log:\n{log}"
    );
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
